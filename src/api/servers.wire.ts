import type { Server } from '../servers/servers.repo.js';
import type { FirewallRule } from '../servers/model/server.js';
import type { Operation, OperationStep } from '../servers/operations/operations.repo.js';
import type { DatabaseView } from '../servers/databases.js';
import type { ParameterView } from '../servers/parameters.service.js';
import type { BackupManifest } from '../backups/backups.service.js';
import { STORAGE_SIZES_GB, TIERS, VERSIONS, DEFAULT_STORAGE_GB } from '../servers/capabilities.js';

/** Azure Flexible Server shapes, kept apart from the domain model; ids come from the caller (built from placement). */

export const FS_TYPE = 'Microsoft.DBforPostgreSQL/flexibleServers';
const iso = (s: number) => new Date(s * 1000).toISOString();

/** The ARM ids a server body names: its own, its identities', its source's. */
export interface ServerIds {
  id: string;
  identity: (ref: string | undefined) => string | null;
  source?: string;
  tags: Record<string, string>;
  /** The server's DNS name under the domain. */
  fqdn: string;
}

export function serverWire(s: Server, ids: ServerIds, earliestRestoreDate?: string) {
  const enc = s.current.encryption;
  const cmk = enc.type === 'AzureKeyVault';
  const primaryIdentity = ids.identity(enc.primaryUserAssignedIdentityId);
  const geoIdentity = ids.identity(s.geo?.encryption.primaryUserAssignedIdentityId);
  const identities = [primaryIdentity, geoIdentity].filter((x): x is string => !!x);
  const replica = s.replicationRole === 'AsyncReplica';
  return {
    id: ids.id,
    name: s.name,
    type: FS_TYPE,
    location: s.location,
    tags: ids.tags,
    sku: { name: s.sku.name, tier: s.sku.tier },
    identity: identities.length ? { type: 'UserAssigned', userAssignedIdentities: Object.fromEntries(identities.map((i) => [i, {}])) } : { type: 'None' },
    properties: {
      state: s.state,
      version: s.version,
      minorVersion: '',
      fullyQualifiedDomainName: ids.fqdn,
      port: s.port,
      administratorLogin: s.adminLogin,
      storage: { storageSizeGB: s.storageGb, autoGrow: 'Disabled' },
      authConfig: { activeDirectoryAuth: 'Disabled', passwordAuth: 'Enabled' },
      backup: {
        backupRetentionDays: s.backupRetentionDays, geoRedundantBackup: s.geo ? 'Enabled' : 'Disabled', ...(s.geo ? { geoBackupRegion: s.geo.region } : {}),
        ...(earliestRestoreDate ? { earliestRestoreDate } : {}),
      },
      dataEncryption: {
        type: enc.type,
        primaryKeyURI: enc.primaryKeyURI ?? null,
        primaryUserAssignedIdentityId: primaryIdentity,
        primaryEncryptionKeyStatus: cmk ? s.keyStatus : null,
        geoBackupKeyURI: s.geo?.encryption.primaryKeyURI ?? null,
        geoBackupUserAssignedIdentityId: geoIdentity,
        geoBackupEncryptionKeyStatus: s.geo?.encryption.type === 'AzureKeyVault' ? s.geo.keyStatus : null,
      },
      network: { publicNetworkAccess: 'Enabled' },
      highAvailability: { mode: 'Disabled', state: 'NotEnabled' },
      replicationRole: s.replicationRole,
      replicaCapacity: replica ? 0 : 5,
      replica: {
        role: s.replicationRole, capacity: replica ? 0 : 5,
        ...(replica ? { replicationState: s.state === 'Ready' ? 'Active' : s.state === 'Provisioning' ? 'Provisioning' : 'Reconfiguring' } : {}),
      },
      ...(ids.source ? { sourceServerResourceId: ids.source } : {}),
      ...(s.inaccessibleReason ? { inaccessibleReason: s.inaccessibleReason } : {}),
      maintenanceWindow: { customWindow: 'Disabled', dayOfWeek: 0, startHour: 0, startMinute: 0 },
    },
    systemData: { createdAt: iso(s.created), lastModifiedAt: iso(s.updated) },
  };
}

/** pgbyok's own operation record (the tenant path; the CLI reads its steps). */
export function operationWire(o: Operation & { steps?: OperationStep[] }) {
  return {
    id: `/tenants/${o.tenantId}/providers/Microsoft.DBforPostgreSQL/operations/${o.id}`,
    name: o.id,
    status: o.status,
    operation: o.kind,
    resource: o.serverName,
    startTime: iso(o.started),
    ...(o.ended ? { endTime: iso(o.ended) } : {}),
    ...(o.errorCode && o.status !== 'Succeeded' ? { error: { code: o.errorCode, message: o.error ?? '' } } : {}),
    ...(o.steps ? { steps: o.steps.map((st) => ({ seq: st.seq, name: st.name, status: st.status, attempts: st.attempts })) } : {}),
  };
}

/** ARM's async-operation status: InProgress until it ends, then Succeeded, Failed or Canceled. */
export const asyncStatus = (o: Operation) =>
  o.status === 'Queued' || o.status === 'InProgress' ? 'InProgress' : o.status === 'Cancelled' ? 'Canceled' : o.status;

/** The document at `Azure-AsyncOperation`. */
export function asyncOperationWire(o: Operation, id: string) {
  const status = asyncStatus(o);
  return {
    id,
    name: o.id,
    status,
    startTime: iso(o.started),
    ...(o.ended ? { endTime: iso(o.ended) } : {}),
    ...(status === 'Failed' || status === 'Canceled' ? { error: { code: o.errorCode ?? 'OperationFailed', message: o.error ?? `The ${o.kind} operation of ${o.serverName} did not complete.` } } : {}),
  };
}

export function databaseWire(serverId: string, d: DatabaseView) {
  return { id: `${serverId}/databases/${d.name}`, name: d.name, type: `${FS_TYPE}/databases`, properties: { charset: d.charset, collation: d.collation } };
}

export function firewallRuleWire(serverId: string, r: FirewallRule) {
  return { id: `${serverId}/firewallRules/${r.name}`, name: r.name, type: `${FS_TYPE}/firewallRules`, properties: { startIpAddress: r.startIpAddress, endIpAddress: r.endIpAddress } };
}

export function configurationWire(serverId: string, p: ParameterView) {
  const { name, ...properties } = p;
  return { id: `${serverId}/configurations/${name}`, name, type: `${FS_TYPE}/configurations`, properties };
}

export function backupWire(serverId: string, m: BackupManifest & { wrappedBy?: string }) {
  return {
    id: `${serverId}/backups/${m.id}`,
    name: m.id,
    type: `${FS_TYPE}/backups`,
    properties: {
      backupType: m.type, completedTime: m.endTime, source: 'Automatic',
      startTime: m.startTime, sizeBytes: m.sizeBytes, encryptionKeyEpoch: m.epoch, encryptionKeyVersion: m.wrappedBy ?? null,
    },
  };
}

/** Capabilities as api-version 2022-12-01 has them (az 2.45 reads tiers, SKUs, sizes and versions from this). */
export function capabilitiesV2022(location: string) {
  return {
    value: [{
      name: 'FlexibleServerCapabilities', zone: 'none', supportedHAMode: [], geoBackupSupported: true, zoneRedundantHaSupported: false,
      zoneRedundantHaAndGeoBackupSupported: false, fastProvisioningSupported: false, supportedFastProvisioningEditions: [], status: 'Available', location,
      supportedFlexibleServerEditions: Object.entries(TIERS).map(([tier, skus]) => ({
        name: tier, status: 'Available',
        supportedStorageEditions: [{ name: 'ManagedDisk', status: 'Available', supportedStorageMB: STORAGE_SIZES_GB.map((gb) => ({ name: `${gb}GB`, storageSizeMB: gb * 1024, supportedIops: 0, status: 'Available' })) }],
        supportedServerVersions: VERSIONS.map((v) => ({
          name: v, status: 'Available', supportedVersionsToUpgrade: [],
          supportedVcores: skus.map((s) => ({ name: s.name, vCores: s.vCores, supportedIops: 0, supportedMemoryPerVcoreMB: 4096, status: 'Available' })),
        })),
      })),
      supportedHyperscaleNodeEditions: [],
    }],
  };
}

/** Capabilities as api-versions 2023-03-01-preview and later have them (the 2025-08-01 SDK deserializes this). */
export function capabilitiesV2023() {
  return {
    value: [{
      name: 'FlexibleServerCapabilities',
      supportedServerEditions: Object.entries(TIERS).map(([tier, skus]) => ({
        name: tier, defaultSkuName: skus[0].name,
        supportedStorageEditions: [{
          name: 'ManagedDisk', defaultStorageSizeMb: DEFAULT_STORAGE_GB * 1024,
          supportedStorageMb: STORAGE_SIZES_GB.map((gb) => ({ storageSizeMb: gb * 1024, maximumStorageSizeMb: gb * 1024, supportedIops: 0, supportedIopsTiers: [] })),
        }],
        supportedServerSkus: skus.map((s) => ({ name: s.name, vCores: s.vCores, supportedIops: 0, supportedMemoryPerVcoreMb: 4096, supportedZones: [], supportedHaMode: [], supportedFeatures: [] })),
      })),
      supportedServerVersions: VERSIONS.map((v) => ({ name: v, supportedVersionsToUpgrade: [], supportedFeatures: [] })),
      supportedFeatures: [],
      fastProvisioningSupported: 'Disabled', supportedFastProvisioningEditions: [], geoBackupSupported: 'Enabled', zoneRedundantHaSupported: 'Disabled',
      zoneRedundantHaAndGeoBackupSupported: 'Disabled', storageAutoGrowthSupported: 'Disabled', onlineResizeSupported: 'Disabled', restricted: 'Disabled',
    }],
  };
}
