import { randomUUID } from 'node:crypto';
import { ApiError, errors } from '../lib/errors.js';
import { KeyAccessError } from '../keyaccess/key-access.js';
import type { IdentityInfo } from '../keyaccess/directory.js';
import { scramSha256Verifier } from '../postgres/scram.js';
import { activity, ACTIVITY_OPERATIONS, describe, type ServerKit } from './kit.js';
import type { DataEncryption, RestoreSpec, Server } from './model/server.js';
import { requireHighAvailability, requireSku } from './capabilities.js';
import type { OperationKind } from './operations/catalog.js';
import type { Operation } from './operations/operations.repo.js';
import { PAIRED_REGIONS, requireRegion } from './regions.js';
import type { ServerLocks } from './server-locks.js';
import type { Caller, CmkValidation } from './validation/cmk.js';
import {
  requireAdministrator, requireRestoreTime, requireRetention, requireServerName, requireStorageSize, requireVersion,
} from './validation/input.js';

export interface CreateServerInput {
  name: string;
  location: string;
  version?: string;
  storageSizeGB?: number;
  administratorLogin: string;
  administratorLoginPassword: string;
  keyUri?: string;
  identity?: string;
  backupRetentionDays?: number;
  geoRedundantBackup?: boolean;
  geoBackupKeyUri?: string;
  geoBackupIdentity?: string;
  /** The compute SKU (Standard_D2s_v3, GeneralPurpose when not given). */
  sku?: { name?: string; tier?: string };
  highAvailability?: { mode?: string };
}

export interface RestoreServerInput {
  /** Restore from the geo-redundant copies in the source's paired region. */
  geo?: boolean;
  /** 'SystemManaged' restores a CMK server to one without a customer key (the only way to remove CMK). */
  encryptionType?: string;
  source: string;
  name: string;
  restoreTime?: string;
  location?: string;
  keyUri?: string;
  identity?: string;
  sku?: { name?: string; tier?: string };
}

export interface ReplicaInput {
  source: string;
  name: string;
  location?: string;
  keyUri?: string;
  identity?: string;
  sku?: { name?: string; tier?: string };
}

/**
 * The verbs that make a new server (create, replica, point-in-time and geo restore): every input rule and
 * every rule of the customer key is checked first, then the server row and its operation are recorded in
 * one transaction, so a bad request creates nothing and two creates of one name get one 409.
 */
export function createProvisioning(k: ServerKit, d: {
  validateCmk: CmkValidation;
  locks: ServerLocks;
  requireServer: (tenantId: string, name: string) => Server;
  allow: (s: Server, event: 'replicate' | 'restoreFrom') => void;
  refuseWhileStopping: () => void;
}) {
  const nameInUse = (name: string) => new ApiError(409, 'ServerNameInUse', `A server named '${name}' already exists.`);

  const checkNewName = (name: string) => {
    requireServerName(name);
    if (k.repo.byName(name)) throw nameInUse(name);
  };

  const wrapNewDek = async (encryption: DataEncryption, region: string) => {
    try {
      return await k.custody.wrapNewDek(encryption, region);
    } catch (e) {
      throw errors.badParameter(`The new server's DEK could not be wrapped: ${e instanceof KeyAccessError ? e.message : 'the key service failed'}`, 'KeyAccessFailed');
    }
  };

  /** The row and its operation in one transaction; a name taken meanwhile is a 409, a port taken meanwhile gets another. */
  const record = async (server: Omit<Server, 'port'>, kind: OperationKind, caller: Caller, message: string): Promise<{ server: Server; operation: Operation }> => {
    for (let tries = 0; ; tries++) {
      d.refuseWhileStopping();
      const s: Server = { ...server, port: await k.instances.newPublicPort() };
      try {
        const operation = k.runner.enqueue({ kind, tenantId: s.tenantId, serverId: s.id, serverName: s.name, caller: caller.name }, () => k.repo.insert(s));
        activity(k, s, ACTIVITY_OPERATIONS.write, 'Started', message, caller.name);
        return { server: s, operation };
      } catch (e) {
        const m = e instanceof Error ? e.message : '';
        if (/UNIQUE constraint failed: servers\.name/.test(m)) throw nameInUse(s.name);
        if (/UNIQUE constraint failed: servers\.port/.test(m) && tries < 5) continue;
        throw e;
      }
    }
  };

  const base = (caller: Caller, name: string, location: string, encryption: DataEncryption, wrapped: { kid: string; wrapped: string }) => {
    const now = Math.floor(k.clock.now() / 1000);
    return {
      id: randomUUID(), tenantId: caller.tenantId, name, location, state: 'Provisioning' as const, version: '15',
      current: { encryption, wrappedDek: wrapped.wrapped, wrappedBy: wrapped.kid }, keyStatus: 'Valid' as const, created: now, updated: now,
    };
  };

  return {
    async create(caller: Caller, input: CreateServerInput): Promise<{ server: Server; operation: Operation; identity?: IdentityInfo }> {
      checkNewName(input.name);
      const location = requireRegion(input.location);
      requireVersion(input.version);
      const sku = requireSku(input.sku);
      requireHighAvailability(input.highAvailability);
      const storageGb = requireStorageSize(input.storageSizeGB);
      requireAdministrator(input.administratorLogin, input.administratorLoginPassword);
      const backupRetentionDays = requireRetention(input.backupRetentionDays);

      let encryption: DataEncryption = { type: 'SystemManaged' };
      let identity: IdentityInfo | undefined;
      if (input.keyUri || input.identity) ({ encryption, identity } = await d.validateCmk(caller, input.keyUri, input.identity, location));
      let geo: Server['geo'];
      if (input.geoRedundantBackup) {
        const region = PAIRED_REGIONS[location];
        if (encryption.type === 'AzureKeyVault' || input.geoBackupKeyUri || input.geoBackupIdentity) {
          if (!input.geoBackupKeyUri || !input.geoBackupIdentity) {
            throw errors.badParameter(`Geo-redundant backup of a server with a customer-managed key needs --geo-backup-key (a key in a vault of ${region}) and --geo-backup-identity (an identity of ${region}).`, 'GeoKeyRequired');
          }
          const geoIdentity = await k.directory.identity(caller.tenantId, caller.token, input.geoBackupIdentity);
          if (identity && geoIdentity?.id === identity.id) {
            throw errors.badParameter('The geo-backup identity must differ from the primary identity (the same user-assigned identity cannot serve both vaults).', 'SameIdentityForGeoBackup');
          }
          const g = await d.validateCmk(caller, input.geoBackupKeyUri, input.geoBackupIdentity, region, 'geo');
          geo = { region, encryption: g.encryption, keyStatus: 'Valid' };
        } else {
          geo = { region, encryption: { type: 'SystemManaged' }, keyStatus: 'Valid' };
        }
      } else if (input.geoBackupKeyUri || input.geoBackupIdentity) {
        throw errors.badParameter('A geo-backup key needs --geo-redundant-backup Enabled.', 'GeoBackupDisabled');
      }
      const wrapped = await wrapNewDek(encryption, location);
      const server = {
        ...base(caller, input.name, location, encryption, wrapped), storageGb, adminLogin: input.administratorLogin,
        adminVerifier: scramSha256Verifier(input.administratorLoginPassword), backupRetentionDays, replicationRole: 'Primary' as const, geo, sku,
      };
      const r = await record(server, 'Create', caller, `Creating server ${server.name} (${encryption.type}${encryption.primaryKeyURI ? ', key ' + encryption.primaryKeyURI : ''}).`);
      return { ...r, identity };
    },

    /**
     * A read replica: its own volume and DEK (under its own key), a streaming copy of the source over TLS.
     * A replica in another region needs a key from a vault of that region and an identity of that region.
     */
    async createReplica(caller: Caller, input: ReplicaInput) {
      const source = d.requireServer(caller.tenantId, input.source);
      d.allow(source, 'replicate');
      if (source.replicationRole !== 'Primary') throw errors.badParameter(`${source.name} is itself a replica; replicate its primary.`, 'SourceIsReplica');
      checkNewName(input.name);
      const sku = requireSku(input.sku, source.sku);
      const location = requireRegion(input.location ?? source.location);
      let encryption: DataEncryption = source.current.encryption;
      if (input.keyUri || input.identity) {
        encryption = (await d.validateCmk(caller, input.keyUri, input.identity, location, 'replica')).encryption;
      } else if (encryption.type === 'AzureKeyVault' && location !== source.location) {
        throw errors.badParameter(`A read replica in ${location} of a server with a customer-managed key needs its own key in a vault of ${location} and an identity of ${location}: give --key and --identity.`, 'ReplicaKeyRequired');
      }
      const wrapped = await wrapNewDek(encryption, location);
      const server = {
        ...base(caller, input.name, location, encryption, wrapped), storageGb: source.storageGb, adminLogin: source.adminLogin,
        adminVerifier: source.adminVerifier, backupRetentionDays: source.backupRetentionDays, replicationRole: 'AsyncReplica' as const, sourceServer: source.name, sku,
      };
      return record(server, 'CreateReplica', caller, `Creating read replica ${server.name} of ${source.name} in ${location} (${encryption.type}).`);
    },

    /**
     * Point-in-time restore into a new server: from the source's newest base backup that ended before the
     * time, plus its WAL up to the time. The new server is encrypted too: under the source's key and
     * identity, or under the key and identity given (SystemManaged to CMK and back are both allowed).
     * Opening the backups needs the source's key, and that is checked before anything is created.
     */
    async restore(caller: Caller, input: RestoreServerInput) {
      const source = d.requireServer(caller.tenantId, input.source);
      d.allow(source, 'restoreFrom');
      checkNewName(input.name);
      const sku = requireSku(input.sku, source.sku);
      let restoreTime = requireRestoreTime(input.restoreTime, k.clock.now());
      if (input.geo && !source.geo) throw errors.badParameter(`${source.name} has no geo-redundant backup.`, 'GeoBackupDisabled');
      // A geo-restore reads the paired region's copies, opened with the geo key, into a server of that region.
      const storeRegion = input.geo ? source.geo!.region : source.location;
      const location = requireRegion(input.location ?? storeRegion);
      let encryption = input.geo ? source.geo!.encryption : source.current.encryption;
      if (input.encryptionType === 'SystemManaged') {
        if (input.keyUri || input.identity) throw errors.badParameter('A restore to SystemManaged encryption takes no key or identity.');
        encryption = { type: 'SystemManaged' };
      } else if (input.keyUri || input.identity) {
        encryption = (await d.validateCmk(caller, input.keyUri, input.identity, location)).encryption;
      }
      // The newest WAL of a running source goes into the store first, so "now" is restorable. "The latest
      // restorable time" is the moment of the request: a restore resumed later replays to it, not beyond.
      if (source.state === 'Ready') {
        await d.locks.run(source.name, async () => {
          const fresh = k.repo.byName(source.name);
          if (fresh?.state !== 'Ready' || !k.pgOf(fresh).isRunning()) return;
          const requested = new Date(k.clock.now()).toISOString();
          // The flush commits after `requested`, so recovery has a record past its target to stop at; a flush
          // that did not reach the store leaves the target open (recovery replays what the store has).
          if (await k.backups.flushWal(fresh, k.pgOf(fresh))) restoreTime ??= requested;
        }).catch((e) => k.logger.warn({ server: source.name, err: describe(e) }, 'could not flush WAL before a restore'));
      }
      let baseBackup;
      try {
        baseBackup = await k.backups.planRestore({ id: source.id, name: source.name, location: storeRegion }, restoreTime);
      } catch (e) {
        if (e instanceof KeyAccessError) {
          throw errors.badParameter(`The backups of ${source.name} are encrypted under its key, which cannot be reached: ${e.message}. A restore needs the source server's key; restore access to it and try again.`, 'SourceKeyUnavailable');
        }
        throw errors.badParameter(`Cannot restore ${source.name}${restoreTime ? ' to ' + restoreTime : ''}: ${describe(e)}.`, 'NoRestorePoint');
      }
      const wrapped = await wrapNewDek(encryption, location);
      const restoreSpec: RestoreSpec = { sourceId: source.id, sourceName: source.name, sourceLocation: storeRegion, restoreTime, baseBackupId: baseBackup.id };
      const server = {
        ...base(caller, input.name, location, encryption, wrapped), version: source.version, storageGb: source.storageGb, adminLogin: source.adminLogin,
        adminVerifier: source.adminVerifier, backupRetentionDays: source.backupRetentionDays, restoreSpec, replicationRole: 'Primary' as const, sku,
      };
      return record(server, input.geo ? 'GeoRestore' : 'Restore', caller,
        `${input.geo ? 'Geo-restoring' : 'Restoring'} ${source.name} to ${restoreTime ?? 'the latest restorable time'} into ${server.name} in ${location} (${encryption.type}).`);
    },
  };
}
