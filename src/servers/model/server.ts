import type { DataEncryption, GeoBackup, WrappedDek } from '../../keyaccess/encryption.js';

export type { DataEncryption, GeoBackup, WrappedDek };

export type ServerState = 'Provisioning' | 'Ready' | 'Starting' | 'Stopping' | 'Stopped' | 'Updating' | 'Inaccessible' | 'Dropping';

export interface Server {
  id: string;
  tenantId: string;
  name: string;
  location: string;
  state: ServerState;
  version: string;
  storageGb: number;
  adminLogin: string;
  adminVerifier: string;
  port: number;
  current: WrappedDek;
  /** A re-wrap in flight: both wraps open the same DEK until it is committed. */
  pending?: WrappedDek;
  keyStatus: 'Valid' | 'Invalid';
  inaccessibleReason?: string;
  keyUnreachableSince?: number;
  backupRetentionDays: number;
  /** The compute SKU asked for (recorded and returned; pgbyok does not size compute by it). */
  sku: Sku;
  /** Set while a server is being created from another's backups. */
  restoreSpec?: RestoreSpec;
  /** Primary, or an asynchronous streaming replica of `sourceServer`. */
  replicationRole: 'Primary' | 'AsyncReplica';
  sourceServer?: string;
  /** Geo-redundant backup: copies of the backups in the paired region, under the geo key. */
  geo?: GeoBackup;
  /** When the server first became Ready (ms): its earliest restore point. */
  readyAt?: number;
  created: number;
  updated: number;
}

export interface Sku {
  name: string;
  tier: 'Burstable' | 'GeneralPurpose' | 'MemoryOptimized';
}

export interface FirewallRule {
  name: string;
  startIpAddress: string;
  endIpAddress: string;
}

export interface RestoreSpec {
  sourceId: string;
  sourceName: string;
  sourceLocation: string;
  restoreTime?: string;
  baseBackupId: string;
}

export const serverResourceId = (tenantId: string, name: string) => `/tenants/${tenantId}/providers/Microsoft.DBforPostgreSQL/flexibleServers/${name}`;
