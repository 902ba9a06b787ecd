import { randomBytes, randomUUID } from 'node:crypto';
import { chownSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ApiError, errors } from '../lib/errors.js';
import type { HomePaths } from '../lib/home.js';
import { PostgresError, validateAdminLogin, validateAdminPassword } from '../postgres/instance.js';
import { scramSha256Verifier } from '../postgres/scram.js';
import { keyIdentifier } from '../storage/fscrypt.js';
import { newDek, VolumeError } from '../storage/volume.js';
import type { Directory, IdentityInfo } from '../keyaccess/directory.js';
import { KeyAccessError, parseKeyUri, type KeyAccess, type KeyFailure, type KeyPrincipal } from '../keyaccess/key-access.js';
import { ACTIVITY_OPERATIONS, type Monitoring } from './monitoring.js';
import { inaccessibleRefusal } from './responder.js';
import { createFrontDoors } from './front-door.js';
import type { DataEncryption, Operation, RestoreSpec, Server, ServersRepo, WrappedDek } from './servers.repo.js';
import type { ServerRuntime } from './runtime.js';
import { createServerPostgres } from './server-postgres.js';
import { createParametersService } from './parameters.service.js';
import type { BackupsService } from '../backups/backups.service.js';

/** Who asked, with the token they asked with (used to read vaults and identities on their behalf). */
export interface Caller {
  tenantId: string;
  objectId: string;
  name: string;
  token: string;
}

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
}

export interface UpdateServerInput {
  storageSizeGB?: number;
  keyUri?: string;
  identity?: string;
  /** 'SystemManaged' asks to remove the customer key, which is refused (restore is the way). */
  encryptionType?: string;
}

export interface ServersDeps {
  repo: ServersRepo;
  runtime: ServerRuntime;
  backups: BackupsService;
  /** How often WAL is sealed into the store, and how old the newest base backup may get. */
  archiveIntervalMs: () => number;
  backupIntervalMs: () => number;
  home: HomePaths;
  logger: Logger;
  keys: KeyAccess;
  directory: Directory;
  monitoring: Monitoring;
  tlsFor: (serverName: string) => Promise<{ cert: string; key: string; ca: string }>;
  /** Where the vaults should send events for the control plane. */
  eventsEndpoint: () => string;
  monitorIntervalMs: () => number;
  vaultGraceMs: () => number;
  /** A certificate for localhost, so clients that insist on TLS can read why a server refuses them. */
  responderTls: { key: string; cert: string };
}

const SERVER_NAME_RE = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;

/** Azure's region pairs (the ones pgbyok knows): geo-redundant backups go to the pair. */
export const PAIRED_REGIONS: Record<string, string> = {
  eastus: 'westus', westus: 'eastus', eastus2: 'centralus', centralus: 'eastus2', westus2: 'westcentralus', westcentralus: 'westus2',
  northeurope: 'westeurope', westeurope: 'northeurope', uksouth: 'ukwest', ukwest: 'uksouth', japaneast: 'japanwest', japanwest: 'japaneast',
};
const RSA_SIZES = [2048, 3072, 4096];
/**
 * When the key is lost, PostgreSQL gets this long for a clean (fast) shutdown before it is stopped
 * immediately: the shutdown checkpoint can take many seconds on a busy server, and the data must become
 * unreachable promptly. An immediate stop loses nothing committed; the next start replays the WAL.
 */
const KEY_LOSS_STOP_SECONDS = 2;
const LOOPBACK = ['127.0.0.1', '::1'];

export const serverResourceId = (tenantId: string, name: string) => `/tenants/${tenantId}/providers/Microsoft.DBforPostgreSQL/flexibleServers/${name}`;

async function freePort(used: Set<number>): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createNetServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    if (!used.has(port)) return port;
  }
}

/** Whether a key URI (versioned or not) names the key that made a versioned kid. */
function sameKey(keyUri: string, kid: string): boolean {
  const a = parseKeyUri(keyUri);
  const b = parseKeyUri(kid);
  return a.origin === b.origin && a.name === b.name && (!a.version || a.version === b.version);
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * The server lifecycle under a customer's key: create (validated as Azure validates), the key monitor,
 * Inaccessible and revalidate, re-wrap on rotation or key change, stop/start/restart/delete, and
 * reconciliation after a restart of the platform. Every operation on one server runs under that server's
 * lock, and every multi-step change is recorded before it is made, so a kill at any point is recoverable.
 */
export function createServersService(d: ServersDeps) {
  const locks = new Map<string, Promise<unknown>>();
  const fronts = createFrontDoors({ hosts: LOOPBACK, tls: d.responderTls, log: (server, message, e) => d.logger.error({ server, err: describe(e) }, message) });
  /** Why each locked server's key failed, for the refusal at its front door. */
  const lockFailures = new Map<string, KeyFailure>();
  const checkTimers = new Map<string, NodeJS.Timeout>();
  const timers = new Set<NodeJS.Timeout>();
  let stopping = false;

  /** Runs `fn` after every earlier operation on the same server. */
  const withLock = <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const prev = locks.get(name) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(fn);
    locks.set(name, next);
    void next.finally(() => { if (locks.get(name) === next) locks.delete(name); }).catch(() => undefined);
    return next;
  };

  const { volumeOf, principalOf, keyUriOf } = d.runtime;
  const pgOf = createServerPostgres(d);

  const save = (s: Server) => {
    s.updated = Math.floor(Date.now() / 1000);
    d.repo.save(s);
  };

  const activity = (s: Server, operation: string, status: 'Started' | 'Succeeded' | 'Failed' | 'Warning', message: string, caller?: string) => {
    d.monitoring.record({
      tenantId: s.tenantId, resourceId: serverResourceId(s.tenantId, s.name), serverName: s.name, operation, status,
      level: status === 'Failed' ? 'Error' : status === 'Warning' ? 'Warning' : 'Informational', caller, message,
    });
  };

  /** The volume header mirrors the wrapped DEK, so a volume says by itself which key opens it. */
  const writeHeaderMeta = (s: Server, volume = volumeOf(s)) => {
    volume.updateHeader((h) => ({
      ...h,
      meta: {
        server: s.name,
        dataEncryption: s.current.encryption,
        wrappedDek: s.current.wrappedDek,
        wrappedBy: s.current.wrappedBy,
        ...(s.pending ? { pending: s.pending } : {}),
      },
    }));
  };

  /**
   * Unwraps the server's DEK through the vault. A re-wrap cut short leaves two wraps of the same DEK; either
   * opens the server, and the pending one is promoted once it has proved itself. The DEK is checked
   * against the volume's key identifier, so a wrong key never reaches the kernel.
   */
  const openDek = async (s: Server, volume = volumeOf(s), alternate?: DataEncryption): Promise<Buffer> => {
    let expected: string | undefined;
    try {
      volume.attach();
      expected = volume.readHeader().keyIdentifier;
    } catch (e) {
      if (!(e instanceof VolumeError && e.code === 'NotFound')) throw e;
    }
    let last: unknown = new KeyAccessError('KeyNotFound', 'the server has no wrapped DEK');
    // With a new identity for the same key (the old one deleted), the new identity may unwrap the current wrap.
    const attempts: [WrappedDek, KeyPrincipal][] = [];
    for (const w of [s.current, s.pending].filter(Boolean) as WrappedDek[]) {
      attempts.push([w, principalOf(w.encryption)]);
      if (alternate?.type === 'AzureKeyVault' && w.encryption.type === 'AzureKeyVault' && sameKey(alternate.primaryKeyURI!, w.wrappedBy)) {
        attempts.push([w, principalOf(alternate)]);
      }
    }
    for (const [w, principal] of attempts) {
      let dek: Buffer;
      try {
        dek = await d.keys.unwrap(w.wrappedBy, w.wrappedDek, principal);
      } catch (e) {
        last = e;
        continue;
      }
      if (expected && keyIdentifier(dek).toString('hex') !== expected) {
        dek.fill(0);
        last = new KeyAccessError('WrongKey', 'the unwrapped key does not open this server\'s volume');
        continue;
      }
      if (w === s.pending) {
        s.current = s.pending;
        s.pending = undefined;
        save(s);
        if (expected) writeHeaderMeta(s, volume);
      }
      return dek;
    }
    throw last;
  };

  /** The customer's key must be usable for new protection too: enabled, active, not expired. */
  const checkKeyAttributes = async (s: Server): Promise<string | undefined> => {
    const enc = s.current.encryption;
    if (enc.type !== 'AzureKeyVault') return undefined;
    const info = await d.keys.getKey(enc.primaryKeyURI!, principalOf(enc));
    const now = Date.now() / 1000;
    if (!info.enabled) throw new KeyAccessError('KeyDisabled', 'the key is disabled');
    if (info.exp !== undefined && info.exp <= now) throw new KeyAccessError('KeyExpired', `the key expired at ${new Date(info.exp * 1000).toISOString()}`);
    if (info.nbf !== undefined && info.nbf > now) throw new KeyAccessError('KeyNotYetValid', 'the key is not active yet');
    return info.kid;
  };

  /** Stopped or gone: nothing listens on the server's public port. */
  const closeFront = (s: Server) => fronts.close(s.name);

  /** The public port explains why the server is locked (the reason in words, never the key URI); piped sessions are cut. */
  const refuseAtFront = (s: Server, failure: KeyFailure) => {
    lockFailures.set(s.name, failure);
    return fronts.refuse(s, () => inaccessibleRefusal(s.name, lockFailures.get(s.name)));
  };

  /** The public port pipes to PostgreSQL, which listens on its private loopback port. */
  const serveAtFront = (s: Server) => {
    lockFailures.delete(s.name);
    return fronts.serve(s, d.runtime.privatePortOf(s));
  };

  const usedPorts = () => new Set([...d.repo.usedPorts(), ...d.runtime.privatePorts()]);
  const assignPrivatePort = (s: Server) => d.runtime.assignPrivatePort(s, () => freePort(usedPorts()));

  /**
   * Stops PostgreSQL (sessions first) and removes the DEK from the kernel; never leaves plaintext reachable.
   * A stop that outlasts `stopTimeoutSeconds` is made immediate.
   */
  const shutdownData = async (s: Server, mode: 'fast' | 'immediate' = 'fast', stopTimeoutSeconds = 120) => {
    const volume = volumeOf(s);
    const pg = pgOf(s, volume);
    try {
      if (pg.isRunning()) {
        try {
          await pg.terminateSessions();
        } catch {
          // Sessions end with the stop anyway.
        }
        try {
          await pg.stop(mode, stopTimeoutSeconds);
        } catch {
          await pg.stop('immediate');
        }
      }
    } catch (e) {
      const pid = pg.pid();
      if (pid) process.kill(pid, 'SIGKILL');
      d.logger.warn({ server: s.name, err: describe(e) }, 'PostgreSQL did not stop cleanly; killed');
    }
    if (existsSync(volume.image)) {
      volume.attach();
      await volume.lock({ killHolders: true });
    }
  };

  /**
   * Key access is gone: the port refuses at once (never dark), sessions end, PostgreSQL stops, the key
   * leaves the kernel.
   */
  const goInaccessible = async (s: Server, reason: string, failure: KeyFailure) => {
    await refuseAtFront(s, failure);
    const was = s.state;
    s.state = 'Inaccessible';
    s.keyStatus = 'Invalid';
    s.inaccessibleReason = reason;
    save(s);
    if (was !== 'Inaccessible') {
      activity(s, ACTIVITY_OPERATIONS.ServerInaccessible, 'Failed', `Server ${s.name} is Inaccessible: its customer-managed key cannot be reached (${reason}).`);
    }
    d.backups.forget(s);
    await shutdownData(s, 'fast', KEY_LOSS_STOP_SECONDS);
  };

  /** Unwrap, unlock, start; the server is Ready afterwards. Throws KeyAccessError when the key refuses. */
  const bringUp = async (s: Server) => {
    await checkKeyAttributes(s);
    const volume = volumeOf(s);
    const dek = await openDek(s, volume);
    volume.unlock(dek);
    await assignPrivatePort(s);
    const pg = pgOf(s, volume);
    await pg.start();
    await serveAtFront(s);
  };

  const subscribeEvents = async (s: Server) => {
    const enc = s.current.encryption;
    if (enc.type !== 'AzureKeyVault') return;
    try {
      await d.directory.subscribeVaultEvents(parseKeyUri(enc.primaryKeyURI!).origin, `pgbyok-server-${s.name}`.slice(0, 64), d.eventsEndpoint());
    } catch (e) {
      // Events are a speed-up; polling still watches the key.
      d.logger.warn({ server: s.name, err: describe(e) }, 'could not subscribe to vault events');
    }
  };

  const keyFailureMessage = (e: unknown) => (e instanceof KeyAccessError ? e.message : describe(e));

  /** Validates a customer key as Azure does before anything is created; every refusal names its rule. */
  const validateCmk = async (caller: Caller, keyUri: string | undefined, identityRef: string | undefined, region: string, sameRegion?: 'replica' | 'geo'): Promise<{ encryption: DataEncryption; identity: IdentityInfo }> => {
    if (!keyUri || !identityRef) {
      throw errors.badParameter('A customer-managed key needs both --key (the key URI) and --identity (a user-assigned identity that can reach it).', 'KeyAndIdentityRequired');
    }
    let parsed;
    try {
      parsed = parseKeyUri(keyUri);
    } catch (e) {
      throw errors.badParameter((e as Error).message, 'InvalidKeyUri');
    }
    const identity = await d.directory.identity(caller.tenantId, caller.token, identityRef);
    if (!identity) {
      throw errors.badParameter(`The identity '${identityRef}' is not a user-assigned managed identity of tenant ${caller.tenantId}.`, 'IdentityNotFound');
    }
    const vault = await d.directory.vaultForKey(caller.tenantId, caller.token, parsed.origin);
    if (!vault) {
      throw errors.badParameter(`The key's vault ${parsed.origin} is not a vault of tenant ${caller.tenantId}: the vault and the server must be in the same tenant (cross-tenant key vaults are not supported).`, 'CrossTenantKeyVault');
    }
    if (!vault.enableSoftDelete) throw errors.badParameter(`Vault '${vault.name}' must have soft-delete enabled.`, 'KeyVaultSoftDeleteDisabled');
    if (vault.softDeleteRetentionInDays !== 90) {
      throw errors.badParameter(`Vault '${vault.name}' keeps deleted keys ${vault.softDeleteRetentionInDays} days; a customer-managed key needs a vault with 90 retention days (it cannot be changed after creation: create a new vault).`, 'KeyVaultRetentionNot90Days');
    }
    if (!vault.enablePurgeProtection) {
      throw errors.badParameter(`Vault '${vault.name}' must have purge protection enabled (pgbyok vault update --name ${vault.name} --enable-purge-protection).`, 'KeyVaultPurgeProtectionDisabled');
    }
    if (sameRegion && vault.location !== region) {
      throw errors.badParameter(`A ${sameRegion === 'replica' ? 'read replica' : 'geo-redundant backup'} in ${region} needs its key in a vault of ${region}; vault '${vault.name}' is in ${vault.location}.`, 'KeyVaultRegionMismatch');
    }
    if (sameRegion && identity.location !== region) {
      throw errors.badParameter(`A ${sameRegion === 'replica' ? 'read replica' : 'geo-redundant backup'} in ${region} needs an identity created in ${region}; '${identity.name}' is in ${identity.location}.`, 'IdentityRegionMismatch');
    }
    const principal: KeyPrincipal = { kind: 'identity', resourceId: identity.id };
    const step = async <T>(permission: string, fn: () => Promise<T>): Promise<T> => {
      try {
        return await fn();
      } catch (e) {
        if (e instanceof KeyAccessError) {
          if (e.reason === 'PermissionDenied') {
            throw errors.badParameter(`The identity '${identity.name}' lacks the '${permission}' key permission on vault '${vault.name}'; it needs get, list, wrapKey and unwrapKey (pgbyok vault set-policy --name ${vault.name} --object-id ${identity.principalId} --key-permissions get list wrapKey unwrapKey).`, 'IdentityMissingKeyPermissions');
          }
          if (e.reason === 'KeyDisabled') throw errors.badParameter('The key is disabled; it must be enabled.', 'KeyDisabled');
          if (e.reason === 'KeyNotFound') throw errors.badParameter(`The key ${keyUri} does not exist.`, 'KeyNotFound');
          if (e.reason === 'KeyExpired') throw errors.badParameter('The key has expired; its expiration date must be in the future.', 'KeyExpired');
          if (e.reason === 'KeyNotYetValid') throw errors.badParameter('The key\'s activation date is in the future; it must be in the past.', 'KeyNotYetActive');
          throw errors.badParameter(`The key cannot be reached with identity '${identity.name}': ${e.message}`, e.reason);
        }
        throw e;
      }
    };
    const info = await step('get', () => d.keys.getKey(keyUri, principal));
    if (info.kty !== 'RSA' && info.kty !== 'RSA-HSM') throw errors.badParameter(`The key must be an RSA key; it is ${info.kty}.`, 'KeyNotRsa');
    if (!RSA_SIZES.includes(info.keySize)) throw errors.badParameter(`The key must be RSA ${RSA_SIZES.join(', ')}; it is ${info.keySize} bits.`, 'KeySizeNotSupported');
    if (!info.enabled) throw errors.badParameter('The key is disabled; it must be enabled.', 'KeyDisabled');
    const now = Date.now() / 1000;
    if (info.nbf !== undefined && info.nbf > now) throw errors.badParameter('The key\'s activation date is in the future; it must be in the past.', 'KeyNotYetActive');
    if (info.exp !== undefined && info.exp <= now) throw errors.badParameter('The key has expired; its expiration date must be in the future.', 'KeyExpired');
    for (const op of ['wrapKey', 'unwrapKey']) {
      if (!info.keyOps.includes(op)) throw errors.badParameter(`The key does not permit ${op} (its key_ops are ${info.keyOps.join(', ')}).`, 'KeyOperationNotPermitted');
    }
    await step('list', () => d.keys.listVersions(keyUri, principal));
    const probe = newDek();
    try {
      const w = await step('wrapKey', () => d.keys.wrap(keyUri, probe, principal));
      const back = await step('unwrapKey', () => d.keys.unwrap(w.kid, w.wrapped, principal));
      if (!back.equals(probe)) throw errors.badParameter('The key did not unwrap what it wrapped.', 'KeyRoundTripFailed');
      back.fill(0);
    } finally {
      probe.fill(0);
    }
    return {
      encryption: { type: 'AzureKeyVault', primaryKeyURI: keyUri, primaryUserAssignedIdentityId: identity.id },
      identity,
    };
  };

  /** Wraps the DEK under the target key and swaps it in, in two recorded steps; no data is re-encrypted. */
  const rewrap = async (s: Server, target: DataEncryption, why: string, caller?: string) => {
    const volume = volumeOf(s);
    const dek = await openDek(s, volume, target);
    try {
      const { kid, wrapped } = await d.keys.wrap(await keyUriOf(target, s.location), dek, principalOf(target));
      s.pending = { encryption: target, wrappedDek: wrapped, wrappedBy: kid };
      save(s);
      writeHeaderMeta(s, volume);
      const before = s.current.wrappedBy;
      s.current = s.pending;
      s.pending = undefined;
      save(s);
      writeHeaderMeta(s, volume);
      const backups = await d.backups.rewrapEpochs(s);
      activity(s, ACTIVITY_OPERATIONS.rewrap, 'Succeeded', `Data-encryption key of ${s.name} re-wrapped (${why}): ${before} -> ${kid}; ${backups} backup key(s) re-wrapped too. No data was re-encrypted.`, caller);
    } finally {
      dek.fill(0);
    }
  };

  const newOperation = (s: Server, kind: string): Operation => {
    const op: Operation = { id: randomUUID(), tenantId: s.tenantId, serverName: s.name, kind, status: 'InProgress', started: Math.floor(Date.now() / 1000) };
    d.repo.insertOp(op);
    return op;
  };
  const finishOp = (op: Operation, error?: unknown) => {
    op.status = error ? 'Failed' : 'Succeeded';
    op.error = error ? describe(error) : undefined;
    op.ended = Math.floor(Date.now() / 1000);
    d.repo.saveOp(op);
  };

  /** Runs an operation on a server in the background, under its lock, recording the outcome. */
  const runOp = (s: Server, kind: string, fn: (s: Server) => Promise<void>, existing?: Operation): Operation => {
    const op = existing ?? newOperation(s, kind);
    void withLock(s.name, async () => {
      // Accepted just before shutdown began: left open, as a crash would leave it; the next start's reconcile resumes it.
      if (stopping) return;
      const fresh = d.repo.byId(s.id) ?? s;
      try {
        await fn(fresh);
        finishOp(op);
      } catch (e) {
        d.logger.error({ server: s.name, op: kind, err: describe(e) }, 'operation failed');
        finishOp(op, e);
      }
    });
    return op;
  };

  const replicationNames = (replica: string) => ({ role: `pgbyok_repl_${replica.replace(/-/g, '_')}`, slot: `pgbyok_${replica.replace(/-/g, '_')}` });

  /**
   * A replica's first copy: a replication role with a fresh password (its SCRAM verifier on the source,
   * the password in a passfile inside the replica's encrypted directory), a slot, pg_basebackup over TLS.
   */
  const cloneFromSource = async (s: Server, volume: ReturnType<typeof volumeOf>, pg: ReturnType<typeof pgOf>) => {
    const source = d.repo.byName(s.sourceServer!);
    if (!source || source.state !== 'Ready') throw new Error(`the source server ${s.sourceServer} is not Ready`);
    const srcPg = pgOf(source);
    const { role, slot } = replicationNames(s.name);
    const password = randomBytes(24).toString('base64url');
    await srcPg.sql(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${role}') THEN CREATE ROLE ${role} WITH REPLICATION LOGIN; END IF; END $$`);
    await srcPg.sql(`ALTER ROLE ${role} PASSWORD '${scramSha256Verifier(password)}'`);
    await srcPg.sql(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '${slot}'`);
    const passfile = join(volume.dataDir, '.pgpass');
    writeFileSync(passfile, `localhost:${source.port}:*:${role}:${password}\n`, { mode: 0o600 });
    const { uid, gid } = await pg.ensureOwner();
    chownSync(passfile, uid, gid);
    await pg.cloneFrom({ host: 'localhost', port: source.port, user: role, passfile, slot, caFile: d.home.caCert });
    pg.installTls(await d.tlsFor(s.name));
  };

  const waitForStreaming = async (pg: ReturnType<typeof pgOf>) => {
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if ((await pg.sql("SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), '')")) === 'streaming') return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error('the replica did not start streaming from its source');
  };

  /** Best effort: a replica that is gone or promoted no longer holds WAL on its source. */
  const releaseSource = async (replica: Server) => {
    const source = replica.sourceServer ? d.repo.byName(replica.sourceServer) : undefined;
    if (!source || source.state !== 'Ready') return;
    const { role, slot } = replicationNames(replica.name);
    try {
      const srcPg = pgOf(source);
      await srcPg.sql(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '${slot}' AND NOT active`);
      await srcPg.sql(`DROP ROLE IF EXISTS ${role}`);
    } catch (e) {
      d.logger.warn({ server: replica.name, err: describe(e) }, 'could not release the replication slot on the source');
    }
  };

  /** Creates (or, after a crash, finishes creating) the volume, PostgreSQL and its admin; resumable. */
  const provision = async (s: Server) => {
    const volume = volumeOf(s);
    try {
      if (existsSync(volume.image)) {
        volume.attach();
        if (!volume.readHeader().initialized) {
          // Nothing of the user's is on a volume that never finished initdb: start it afresh.
          await volume.destroy();
        }
      }
      if (!existsSync(volume.image)) {
        volume.create(s.storageGb);
        writeHeaderMeta(s, volume);
      }
      const dek = await openDek(s, volume);
      volume.unlock(dek);
      await assignPrivatePort(s);
      const pg = pgOf(s, volume);
      if (!volume.readHeader().initialized) {
        if (existsSync(pg.opts.dataDir)) rmSync(pg.opts.dataDir, { recursive: true, force: true });
        if (s.restoreSpec) {
          const spec = s.restoreSpec;
          const base = d.backups.list({ id: spec.sourceId, location: spec.sourceLocation }).find((m) => m.id === spec.baseBackupId);
          if (!base) throw new Error(`the base backup ${spec.baseBackupId} of ${spec.sourceName} is gone`);
          await d.backups.restoreInto({ id: spec.sourceId, location: spec.sourceLocation, name: spec.sourceName }, base, pg, spec.restoreTime);
          pg.installTls(await d.tlsFor(s.name));
          await pg.start();
          await pg.waitForPromotion();
          await d.backups.cleanupRestore(pg);
        } else if (s.replicationRole === 'AsyncReplica') {
          await cloneFromSource(s, volume, pg);
        } else {
          await pg.init(s.adminLogin, await d.tlsFor(s.name));
        }
        volume.updateHeader((h) => ({ ...h, initialized: true }));
      }
      await pg.start();
      if (s.replicationRole === 'AsyncReplica') await waitForStreaming(pg);
      else await pg.setAdminPassword(s.adminVerifier);
      await serveAtFront(s);
      await subscribeEvents(s);
      s.state = 'Ready';
      s.keyStatus = 'Valid';
      s.inaccessibleReason = undefined;
      const restoredFrom = s.restoreSpec;
      s.restoreSpec = undefined;
      save(s);
      activity(s, ACTIVITY_OPERATIONS.write, 'Succeeded', restoredFrom
        ? `Server ${s.name} restored from ${restoredFrom.sourceName} to ${restoredFrom.restoreTime ?? 'the latest restorable time'} (${s.current.encryption.type}).`
        : `Server ${s.name} created (${s.current.encryption.type}).`);
      // Every primary gets a full backup when it is created; WAL archiving runs from then on.
      if (s.replicationRole === 'Primary') void withLock(s.name, () => takeBaseBackup(s.name)).catch(() => undefined);
    } catch (e) {
      activity(s, ACTIVITY_OPERATIONS.write, 'Failed', `Creating server ${s.name} failed: ${describe(e)}`);
      await closeFront(s);
      try {
        await shutdownData(s, 'immediate');
        await volume.destroy();
        await pgOf(s, volume).dispose();
      } catch (cleanup) {
        d.logger.error({ server: s.name, err: describe(cleanup) }, 'cleanup after a failed create failed');
      }
      d.repo.delete(s.id);
      throw e;
    }
  };

  /** One look at a server's key: definitive failures make it Inaccessible; a blip gets a grace period. */
  const checkServer = async (s: Server): Promise<void> => {
    if (s.current.encryption.type !== 'AzureKeyVault' || !['Ready', 'Inaccessible'].includes(s.state)) return;
    try {
      // What Azure's periodic check costs: get the key, then wrap and unwrap a random probe with the version
      // that wraps the DEK. The DEK itself is never unwrapped here, so a pass leaves no copy of it.
      const latestKid = await checkKeyAttributes(s);
      const enc = s.current.encryption;
      await d.keys.probe(s.current.wrappedBy, principalOf(enc));
      if (s.keyUnreachableSince) {
        s.keyUnreachableSince = undefined;
        save(s);
      }
      if (s.state === 'Inaccessible') {
        activity(s, ACTIVITY_OPERATIONS.ServerAvailable, 'Succeeded', `Access to the key of ${s.name} is back; revalidating automatically.`);
        await revalidateNow(s);
      } else if (!parseKeyUri(enc.primaryKeyURI!).version && latestKid && latestKid !== s.current.wrappedBy) {
        await rewrap(s, enc, 'the key has a new version');
      }
    } catch (e) {
      if (!(e instanceof KeyAccessError)) {
        d.logger.error({ server: s.name, err: describe(e) }, 'key check failed');
        return;
      }
      if (e.transient) {
        const now = Date.now();
        if (!s.keyUnreachableSince) {
          s.keyUnreachableSince = now;
          save(s);
          activity(s, ACTIVITY_OPERATIONS.KeyAccessFailure, 'Warning', `Key of ${s.name} unreachable: ${e.message}; grace period ${d.vaultGraceMs() / 1000}s.`);
        }
        if (s.state === 'Ready' && now - s.keyUnreachableSince > d.vaultGraceMs()) await goInaccessible(s, `${e.message} for longer than the grace period`, e.reason);
        return;
      }
      if (s.state !== 'Inaccessible' || s.inaccessibleReason !== e.message) {
        activity(s, ACTIVITY_OPERATIONS.KeyAccessFailure, 'Failed', `Key access for ${s.name} failed: ${e.message}.`);
      }
      if (s.state === 'Inaccessible') {
        if (s.inaccessibleReason !== e.message) {
          s.inaccessibleReason = e.message;
          save(s);
        }
        lockFailures.set(s.name, e.reason);
        return;
      }
      await goInaccessible(s, e.message, e.reason);
    }
  };

  const revalidateNow = async (s: Server, caller?: string) => {
    try {
      await bringUp(s);
    } catch (e) {
      if (e instanceof KeyAccessError) {
        s.inaccessibleReason = e.message;
        save(s);
        await refuseAtFront(s, e.reason);
        throw errors.badParameter(`Revalidation failed: ${e.message}. The server stays Inaccessible.`, 'KeyAccessFailed');
      }
      throw e;
    }
    s.state = 'Ready';
    s.keyStatus = 'Valid';
    s.inaccessibleReason = undefined;
    s.keyUnreachableSince = undefined;
    save(s);
    activity(s, ACTIVITY_OPERATIONS.revalidate, 'Succeeded', `Data encryption of ${s.name} revalidated; the server is Ready.`, caller);
  };

  /** Schedules an immediate key check (debounced), e.g. when the vault announces a change. */
  const checkSoon = (name: string, delayMs = 100) => {
    if (checkTimers.has(name) || stopping) return;
    checkTimers.set(name, setTimeout(() => {
      checkTimers.delete(name);
      const s = d.repo.byName(name);
      if (s) void withLock(name, async () => checkServer(d.repo.byName(name) ?? s)).catch(() => undefined);
    }, delayMs));
  };

  /** A full backup of a Ready server (under its lock); failures are logged and the schedule retries. */
  const takeBaseBackup = async (name: string) => {
    const s = d.repo.byName(name);
    if (!s || s.state !== 'Ready') return undefined;
    try {
      const m = await d.backups.baseBackup(s, pgOf(s));
      activity(s, ACTIVITY_OPERATIONS.backup, 'Succeeded', `Full backup ${m.id} of ${s.name} (${Math.round(m.sizeBytes / 1024)} KiB, encrypted).`);
      return m;
    } catch (e) {
      activity(s, ACTIVITY_OPERATIONS.backup, 'Failed', `Backup of ${s.name} failed: ${describe(e)}`);
      throw e;
    }
  };

  /** WAL into the store, a base backup when the newest is too old, and pruning past the retention. */
  const backupPass = async () => {
    for (const s of d.repo.all()) {
      if (stopping || s.state !== 'Ready' || s.replicationRole !== 'Primary') continue;
      await withLock(s.name, async () => {
        const fresh = d.repo.byName(s.name);
        if (!fresh || fresh.state !== 'Ready' || fresh.replicationRole !== 'Primary') return;
        const pg = pgOf(fresh);
        await d.backups.archive(fresh, pg);
        const newest = d.backups.list(fresh).at(-1);
        if (!newest || Date.now() - Date.parse(newest.endTime) > d.backupIntervalMs()) await takeBaseBackup(fresh.name);
        d.backups.prune(fresh, fresh.backupRetentionDays);
      }).catch((e) => d.logger.warn({ server: s.name, err: describe(e) }, 'backup pass failed'));
    }
  };

  const checkNewName = (name: string) => {
    if (!SERVER_NAME_RE.test(name)) {
      throw errors.badParameter(`The server name '${name}' is invalid: 3-63 lowercase letters, digits and '-', not starting or ending with '-'.`, 'InvalidServerName');
    }
    if (d.repo.byName(name)) throw errors.conflict(`A server named '${name}' already exists.`, 'ServerNameInUse');
  };

  /** A fresh DEK, wrapped by the vault under the given encryption; only the wrap is kept. */
  const wrapNewDek = async (encryption: DataEncryption, region: string): Promise<{ kid: string; wrapped: string }> => {
    const dek = newDek();
    try {
      return await d.keys.wrap(await keyUriOf(encryption, region), dek, principalOf(encryption));
    } catch (e) {
      throw errors.badParameter(`The new server's DEK could not be wrapped: ${keyFailureMessage(e)}`, 'KeyAccessFailed');
    } finally {
      dek.fill(0);
    }
  };

  const requireServer = (tenantId: string, name: string): Server => {
    const s = d.repo.byName(name);
    if (!s || s.tenantId !== tenantId) throw errors.notFound('ResourceNotFound', `The server '${name}' was not found.`);
    return s;
  };

  /** No new work once shutdown has begun: it could start a server after shutdown has stopped it. */
  const refuseWhileStopping = () => {
    if (stopping) throw errors.serviceUnavailable('pgbyok is shutting down; send the request again once it is back.');
  };

  const requireState = (s: Server, allowed: string[], action: string) => {
    refuseWhileStopping();
    if (!allowed.includes(s.state)) {
      throw new ApiError(409, 'ServerStateConflict', `Cannot ${action} server ${s.name} while it is ${s.state}${s.state === 'Inaccessible' ? ' (revalidate it first)' : ''}.`);
    }
  };

  const monitorPass = async () => {
    for (const s of d.repo.all()) {
      if (stopping) return;
      if (s.state === 'Ready' || s.state === 'Inaccessible') {
        await withLock(s.name, async () => {
          const fresh = d.repo.byName(s.name);
          if (!fresh) return;
          await checkServer(fresh);
          // The supervisor half: a Ready server whose PostgreSQL died is started again.
          if (fresh.state === 'Ready') {
            const pg = pgOf(fresh);
            if (!pg.isRunning()) {
              activity(fresh, ACTIVITY_OPERATIONS.start, 'Warning', `PostgreSQL of ${fresh.name} was not running; starting it.`);
              try {
                await bringUp(fresh);
              } catch (e) {
                if (e instanceof KeyAccessError) await goInaccessible(fresh, e.message, e.reason);
                else d.logger.error({ server: fresh.name, err: describe(e) }, 'restart failed');
              }
            }
          }
        }).catch((e) => d.logger.error({ server: s.name, err: describe(e) }, 'monitor pass failed'));
      }
    }
  };

  /** Runs `pass` every `interval()` ms until shutdown, never overlapping itself. */
  const repeat = (interval: () => number, pass: () => Promise<void>) => {
    if (stopping) return;
    const t = setTimeout(async () => {
      timers.delete(t);
      await pass();
      repeat(interval, pass);
    }, interval());
    t.unref();
    timers.add(t);
  };

  const parameters = createParametersService({
    repo: d.repo, pgOf, requireServer, requireState, runOp,
    activity: (s, message, caller) => activity(s, ACTIVITY_OPERATIONS.write, 'Succeeded', message, caller),
  });

  return {
    resourceId: serverResourceId,
    parameters,
    get: requireServer,
    list: (tenantId: string) => d.repo.list(tenantId),
    operation: (tenantId: string, id: string) => {
      const op = d.repo.op(id);
      if (!op || op.tenantId !== tenantId) throw errors.notFound('OperationNotFound', `No operation ${id}.`);
      return op;
    },

    async create(caller: Caller, input: CreateServerInput): Promise<{ server: Server; operation: Operation; identity?: IdentityInfo }> {
      checkNewName(input.name);
      if (!/^[a-z0-9]{2,40}$/.test(input.location ?? '')) throw errors.badParameter(`location '${input.location}' is invalid: use a region name such as eastus.`);
      if ((input.version ?? '15') !== '15') throw errors.badParameter(`PostgreSQL version ${input.version} is not offered; pgbyok runs the machine's PostgreSQL 15.`, 'UnsupportedVersion');
      const storageGb = input.storageSizeGB ?? 32;
      if (!Number.isInteger(storageGb) || storageGb < 1 || storageGb > 16384) throw errors.badParameter('storageSizeGB must be a whole number from 1 to 16384.');
      try {
        validateAdminLogin(input.administratorLogin);
        validateAdminPassword(input.administratorLoginPassword);
      } catch (e) {
        if (e instanceof PostgresError) throw errors.badParameter(e.message, 'InvalidAdministrator');
        throw e;
      }
      const backupRetentionDays = input.backupRetentionDays ?? 7;
      if (!Number.isInteger(backupRetentionDays) || backupRetentionDays < 7 || backupRetentionDays > 35) {
        throw errors.badParameter('backupRetentionDays must be a whole number from 7 to 35.');
      }

      let encryption: DataEncryption = { type: 'SystemManaged' };
      let identity: IdentityInfo | undefined;
      if (input.keyUri || input.identity) {
        ({ encryption, identity } = await validateCmk(caller, input.keyUri, input.identity, input.location));
      }
      let geo: Server['geo'];
      if (input.geoRedundantBackup) {
        const region = PAIRED_REGIONS[input.location];
        if (!region) throw errors.badParameter(`Region ${input.location} has no paired region for geo-redundant backup (known: ${Object.keys(PAIRED_REGIONS).join(', ')}).`, 'NoPairedRegion');
        if (encryption.type === 'AzureKeyVault' || input.geoBackupKeyUri || input.geoBackupIdentity) {
          if (!input.geoBackupKeyUri || !input.geoBackupIdentity) {
            throw errors.badParameter(`Geo-redundant backup of a server with a customer-managed key needs --geo-backup-key (a key in a vault of ${region}) and --geo-backup-identity (an identity of ${region}).`, 'GeoKeyRequired');
          }
          const geoIdentity = await d.directory.identity(caller.tenantId, caller.token, input.geoBackupIdentity);
          if (identity && geoIdentity?.id === identity.id) {
            throw errors.badParameter('The geo-backup identity must differ from the primary identity (the same user-assigned identity cannot serve both vaults).', 'SameIdentityForGeoBackup');
          }
          const g = await validateCmk(caller, input.geoBackupKeyUri, input.geoBackupIdentity, region, 'geo');
          geo = { region, encryption: g.encryption, keyStatus: 'Valid' };
        } else {
          geo = { region, encryption: { type: 'SystemManaged' }, keyStatus: 'Valid' };
        }
      } else if (input.geoBackupKeyUri || input.geoBackupIdentity) {
        throw errors.badParameter('A geo-backup key needs --geo-redundant-backup Enabled.', 'GeoBackupDisabled');
      }
      const wrapped = await wrapNewDek(encryption, input.location);
      const now = Math.floor(Date.now() / 1000);
      const server: Server = {
        id: randomUUID(), tenantId: caller.tenantId, name: input.name, location: input.location, state: 'Provisioning', version: '15',
        storageGb, adminLogin: input.administratorLogin, adminVerifier: scramSha256Verifier(input.administratorLoginPassword),
        port: await freePort(usedPorts()), current: { encryption, wrappedDek: wrapped.wrapped, wrappedBy: wrapped.kid },
        keyStatus: 'Valid', backupRetentionDays, replicationRole: 'Primary', geo, created: now, updated: now,
      };
      refuseWhileStopping();
      d.repo.insert(server);
      activity(server, ACTIVITY_OPERATIONS.write, 'Started', `Creating server ${server.name} (${encryption.type}${encryption.primaryKeyURI ? ', key ' + encryption.primaryKeyURI : ''}).`, caller.name);
      const operation = runOp(server, 'Create', provision);
      return { server, operation, identity };
    },

    /**
     * A read replica: its own volume and DEK (under its own key), a streaming copy of the source over TLS.
     * A replica in another region needs a key from a vault of that region and an identity of that region.
     */
    async createReplica(caller: Caller, input: { source: string; name: string; location?: string; keyUri?: string; identity?: string }) {
      const source = requireServer(caller.tenantId, input.source);
      requireState(source, ['Ready'], 'replicate');
      if (source.replicationRole !== 'Primary') throw errors.badParameter(`${source.name} is itself a replica; replicate its primary.`, 'SourceIsReplica');
      checkNewName(input.name);
      const location = input.location ?? source.location;
      if (!/^[a-z0-9]{2,40}$/.test(location)) throw errors.badParameter(`location '${location}' is invalid.`);
      let encryption: DataEncryption = source.current.encryption.type === 'SystemManaged' ? { type: 'SystemManaged' } : source.current.encryption;
      if (input.keyUri || input.identity) {
        encryption = (await validateCmk(caller, input.keyUri, input.identity, location, 'replica')).encryption;
      } else if (encryption.type === 'AzureKeyVault' && location !== source.location) {
        throw errors.badParameter(`A read replica in ${location} of a server with a customer-managed key needs its own key in a vault of ${location} and an identity of ${location}: give --key and --identity.`, 'ReplicaKeyRequired');
      }
      const wrapped = await wrapNewDek(encryption, location);
      const now = Math.floor(Date.now() / 1000);
      const server: Server = {
        id: randomUUID(), tenantId: caller.tenantId, name: input.name, location, state: 'Provisioning', version: source.version,
        storageGb: source.storageGb, adminLogin: source.adminLogin, adminVerifier: source.adminVerifier,
        port: await freePort(usedPorts()), current: { encryption, wrappedDek: wrapped.wrapped, wrappedBy: wrapped.kid },
        keyStatus: 'Valid', backupRetentionDays: source.backupRetentionDays, replicationRole: 'AsyncReplica', sourceServer: source.name,
        created: now, updated: now,
      };
      refuseWhileStopping();
      d.repo.insert(server);
      activity(server, ACTIVITY_OPERATIONS.write, 'Started', `Creating read replica ${server.name} of ${source.name} in ${location} (${encryption.type}).`, caller.name);
      return { server, operation: runOp(server, 'CreateReplica', provision) };
    },

    replicas: (caller: Caller, name: string) => d.repo.list(caller.tenantId).filter((r) => r.sourceServer === requireServer(caller.tenantId, name).name),

    promote(caller: Caller, name: string) {
      const s = requireServer(caller.tenantId, name);
      requireState(s, ['Ready'], 'promote');
      if (s.replicationRole !== 'AsyncReplica') throw errors.badParameter(`${name} is not a read replica.`, 'NotAReplica');
      return runOp(s, 'Promote', async (fresh) => {
        await pgOf(fresh).promote();
        await releaseSource(fresh);
        const from = fresh.sourceServer;
        fresh.replicationRole = 'Primary';
        fresh.sourceServer = undefined;
        save(fresh);
        activity(fresh, ACTIVITY_OPERATIONS.promote, 'Succeeded', `Read replica ${name} promoted; it no longer follows ${from}.`, caller.name);
        void withLock(name, () => takeBaseBackup(name)).catch(() => undefined);
      });
    },

    /**
     * Point-in-time restore into a new server: from the source's newest base backup that ended before the
     * time, plus its WAL up to the time. The new server is encrypted too: under the source's key and
     * identity, or under the key and identity given (SystemManaged to CMK and back are both allowed).
     * Opening the backups needs the source's key, and that is checked before anything is created.
     */
    async restore(caller: Caller, input: RestoreServerInput): Promise<{ server: Server; operation: Operation }> {
      const source = requireServer(caller.tenantId, input.source);
      checkNewName(input.name);
      let restoreTime: string | undefined;
      if (input.restoreTime) {
        const t = Date.parse(input.restoreTime);
        if (Number.isNaN(t)) throw errors.badParameter(`The restore time '${input.restoreTime}' is not an ISO 8601 time.`);
        if (t > Date.now() + 1000) throw errors.badParameter(`The restore time ${input.restoreTime} is in the future.`, 'RestoreTimeInFuture');
        restoreTime = new Date(t).toISOString();
      }
      if (input.geo && !source.geo) throw errors.badParameter(`${source.name} has no geo-redundant backup.`, 'GeoBackupDisabled');
      // A geo-restore reads the paired region's copies, opened with the geo key, into a server of that region.
      const storeRegion = input.geo ? source.geo!.region : source.location;
      const location = input.location ?? storeRegion;
      let encryption = input.geo ? source.geo!.encryption : source.current.encryption;
      if (input.encryptionType === 'SystemManaged') {
        if (input.keyUri || input.identity) throw errors.badParameter('A restore to SystemManaged encryption takes no key or identity.');
        encryption = { type: 'SystemManaged' };
      } else if (input.keyUri || input.identity) {
        encryption = (await validateCmk(caller, input.keyUri, input.identity, location)).encryption;
      }

      // The newest WAL of a running source goes into the store first, so "now" is restorable.
      if (source.state === 'Ready') {
        await withLock(source.name, async () => {
          const fresh = d.repo.byName(source.name);
          if (fresh?.state === 'Ready') await d.backups.flushWal(fresh, pgOf(fresh));
        }).catch((e) => d.logger.warn({ server: source.name, err: describe(e) }, 'could not flush WAL before a restore'));
      }
      let base;
      try {
        base = await d.backups.planRestore({ id: source.id, name: source.name, location: storeRegion }, restoreTime);
      } catch (e) {
        if (e instanceof KeyAccessError) {
          throw errors.badParameter(`The backups of ${source.name} are encrypted under its key, which cannot be reached: ${e.message}. A restore needs the source server's key; restore access to it and try again.`, 'SourceKeyUnavailable');
        }
        throw errors.badParameter(`Cannot restore ${source.name}${restoreTime ? ' to ' + restoreTime : ''}: ${describe(e)}.`, 'NoRestorePoint');
      }

      const wrapped = await wrapNewDek(encryption, location);
      const now = Math.floor(Date.now() / 1000);
      const spec: RestoreSpec = { sourceId: source.id, sourceName: source.name, sourceLocation: storeRegion, restoreTime, baseBackupId: base.id };
      const server: Server = {
        id: randomUUID(), tenantId: caller.tenantId, name: input.name, location, state: 'Provisioning', version: source.version,
        storageGb: source.storageGb, adminLogin: source.adminLogin, adminVerifier: source.adminVerifier,
        port: await freePort(usedPorts()), current: { encryption, wrappedDek: wrapped.wrapped, wrappedBy: wrapped.kid },
        keyStatus: 'Valid', backupRetentionDays: source.backupRetentionDays, restoreSpec: spec, replicationRole: 'Primary', created: now, updated: now,
      };
      refuseWhileStopping();
      d.repo.insert(server);
      activity(server, ACTIVITY_OPERATIONS.write, 'Started', `${input.geo ? 'Geo-restoring' : 'Restoring'} ${source.name} to ${restoreTime ?? 'the latest restorable time'} into ${server.name} in ${location} (${encryption.type}).`, caller.name);
      return { server, operation: runOp(server, 'Restore', provision) };
    },

    /** An on-demand full backup. */
    backup(caller: Caller, name: string) {
      const s = requireServer(caller.tenantId, name);
      requireState(s, ['Ready'], 'back up');
      return runOp(s, 'Backup', async () => {
        const m = await takeBaseBackup(name);
        if (!m) throw new Error('the server is not Ready');
      });
    },

    backups(caller: Caller, name: string) {
      return d.backups.listWithKeys(requireServer(caller.tenantId, name));
    },

    async update(caller: Caller, name: string, input: UpdateServerInput): Promise<{ server: Server; operation: Operation }> {
      const s = requireServer(caller.tenantId, name);
      // An Inaccessible server may get a new key or identity: that is how access is restored after an
      // identity was deleted. Storage changes need it running or stopped.
      requireState(s, input.keyUri || input.identity ? ['Ready', 'Stopped', 'Inaccessible'] : ['Ready', 'Stopped'], 'update');
      if (input.encryptionType === 'SystemManaged' && s.current.encryption.type === 'AzureKeyVault') {
        throw errors.badParameter(`Customer-managed key encryption cannot be removed from server ${name}. Restore it to a new server without a customer key instead (pgbyok server restore).`, 'CmkRemovalNotSupported');
      }
      let target: DataEncryption | undefined;
      if (input.keyUri || input.identity) {
        const keyUri = input.keyUri ?? s.current.encryption.primaryKeyURI;
        const identity = input.identity ?? s.current.encryption.primaryUserAssignedIdentityId;
        target = (await validateCmk(caller, keyUri, identity, s.location)).encryption;
      }
      if (input.storageSizeGB !== undefined && (!Number.isInteger(input.storageSizeGB) || input.storageSizeGB <= s.storageGb || input.storageSizeGB > 16384)) {
        throw errors.badParameter(`storageSizeGB can only grow: give a whole number larger than ${s.storageGb}.`, 'StorageCannotShrink');
      }
      if (s.state === 'Stopped' && input.storageSizeGB !== undefined) throw new ApiError(409, 'ServerStateConflict', 'Start the server before growing its storage.');
      let wasState = s.state;
      s.state = 'Updating';
      save(s);
      const operation = runOp(s, 'Update', async (fresh) => {
        try {
          if (target) {
            await rewrap(fresh, target, `data encryption changed to ${target.primaryKeyURI} with identity ${target.primaryUserAssignedIdentityId}`, caller.name);
            await subscribeEvents(fresh);
            if (wasState === 'Inaccessible') {
              await revalidateNow(fresh, caller.name);
              wasState = 'Ready';
            }
          }
          if (input.storageSizeGB !== undefined) {
            const volume = volumeOf(fresh);
            try {
              volume.grow(input.storageSizeGB);
            } catch (e) {
              if (!(e instanceof VolumeError && e.code === 'OnlineResizeUnavailable')) throw e;
              // This kernel refuses online resize here: grow offline around a short stop.
              await shutdownData(fresh);
              volume.detach();
              volume.growOffline(input.storageSizeGB);
              await bringUp(fresh);
            }
            fresh.storageGb = input.storageSizeGB;
          }
          activity(fresh, ACTIVITY_OPERATIONS.write, 'Succeeded', `Server ${name} updated.`, caller.name);
        } finally {
          fresh.state = wasState;
          save(fresh);
        }
      });
      return { server: s, operation };
    },

    stop(caller: Caller, name: string) {
      const s = requireServer(caller.tenantId, name);
      requireState(s, ['Ready'], 'stop');
      s.state = 'Stopping';
      save(s);
      return runOp(s, 'Stop', async (fresh) => {
        await shutdownData(fresh, 'fast');
        await closeFront(fresh);
        fresh.state = 'Stopped';
        save(fresh);
        activity(fresh, ACTIVITY_OPERATIONS.stop, 'Succeeded', `Server ${name} stopped; its key is out of the kernel.`, caller.name);
      });
    },

    start(caller: Caller, name: string) {
      const s = requireServer(caller.tenantId, name);
      requireState(s, ['Stopped'], 'start');
      s.state = 'Starting';
      save(s);
      return runOp(s, 'Start', async (fresh) => {
        try {
          await bringUp(fresh);
        } catch (e) {
          if (e instanceof KeyAccessError) {
            await goInaccessible(fresh, e.message, e.reason);
            throw new Error(`the server could not start: ${e.message}`);
          }
          fresh.state = 'Stopped';
          save(fresh);
          throw e;
        }
        fresh.state = 'Ready';
        fresh.keyStatus = 'Valid';
        save(fresh);
        activity(fresh, ACTIVITY_OPERATIONS.start, 'Succeeded', `Server ${name} started.`, caller.name);
      });
    },

    restart(caller: Caller, name: string) {
      const s = requireServer(caller.tenantId, name);
      requireState(s, ['Ready'], 'restart');
      return runOp(s, 'Restart', async (fresh) => {
        await pgOf(fresh).restart('fast');
        activity(fresh, ACTIVITY_OPERATIONS.restart, 'Succeeded', `Server ${name} restarted.`, caller.name);
      });
    },

    revalidate(caller: Caller, name: string) {
      const s = requireServer(caller.tenantId, name);
      requireState(s, ['Inaccessible', 'Ready'], 'revalidate');
      return runOp(s, 'Revalidate', async (fresh) => {
        if (fresh.state === 'Ready') {
          await checkServer(fresh);
          if ((d.repo.byName(name) ?? fresh).state !== 'Ready') throw new Error('the key check failed; the server is now Inaccessible');
          return;
        }
        await revalidateNow(fresh, caller.name);
      });
    },

    /** Crypto-shredding: lock, destroy the volume, erase the wrapped DEK. */
    delete(caller: Caller, name: string) {
      const s = requireServer(caller.tenantId, name);
      requireState(s, ['Ready', 'Stopped', 'Inaccessible'], 'delete');
      s.state = 'Dropping';
      save(s);
      return runOp(s, 'Delete', async (fresh) => {
        await closeFront(fresh);
        await shutdownData(fresh, 'immediate');
        await volumeOf(fresh).destroy();
        await pgOf(fresh).dispose();
        d.runtime.releasePrivatePort(fresh.name);
        d.backups.deleteAll(fresh);
        if (fresh.replicationRole === 'AsyncReplica') await releaseSource(fresh);
        d.repo.delete(fresh.id);
        activity(fresh, ACTIVITY_OPERATIONS.delete, 'Succeeded', `Server ${name} deleted; its volume was destroyed and its wrapped DEK erased.`, caller.name);
      });
    },

    /** Resource health, as Azure Resource Health reports it. */
    async health(caller: Caller, name: string) {
      const s = requireServer(caller.tenantId, name);
      let state: 'Available' | 'Inaccessible' | 'Degraded' | 'Stopped' | 'Unknown' = 'Unknown';
      let reason: string | undefined;
      if (s.state === 'Inaccessible') {
        state = 'Inaccessible';
        reason = s.inaccessibleReason;
      } else if (s.state === 'Stopped') {
        state = 'Stopped';
      } else if (s.state === 'Ready') {
        const h = await pgOf(s).health();
        state = h.query ? (s.keyUnreachableSince ? 'Degraded' : 'Available') : 'Degraded';
        if (!h.query) reason = h.accepting ? 'PostgreSQL accepts connections but cannot run a query' : 'PostgreSQL is not accepting connections';
        if (s.keyUnreachableSince) reason = 'the key vault is unreachable (grace period running)';
      } else {
        reason = `the server is ${s.state}`;
      }
      return { state, reason, serverState: s.state, primaryEncryptionKeyStatus: s.keyStatus, checkedAt: new Date().toISOString() };
    },

    activity: (tenantId: string, resource: string | undefined, top?: number) =>
      d.monitoring.activity(tenantId, resource ? (resource.startsWith('/') ? resource : serverResourceId(tenantId, resource)) : undefined, top),

    /** Vault events: check every server that uses the key (or the vault) at once. */
    onVaultEvents(events: { eventType: string; data: { Id?: string; VaultName?: string; ObjectType?: string; ObjectName?: string } }[]) {
      for (const ev of events) {
        let origin: string | undefined;
        try {
          origin = ev.data.Id ? new URL(ev.data.Id).origin : undefined;
        } catch {
          continue;
        }
        for (const s of d.repo.all()) {
          const uri = s.current.encryption.primaryKeyURI;
          if (!uri) continue;
          const k = parseKeyUri(uri);
          if (k.origin !== origin) continue;
          if (ev.data.ObjectType === 'Key' && ev.data.ObjectName !== k.name) continue;
          checkSoon(s.name);
        }
      }
    },

    /** After a restart of the platform: every server back to what it was, or Inaccessible with the reason. */
    async reconcile(): Promise<void> {
      for (const s of d.repo.all()) {
        await withLock(s.name, async () => {
          const open = d.repo.openOps(s.name);
          try {
            if (s.state === 'Provisioning') {
              const op = open.find((o) => o.kind === 'Create') ?? newOperation(s, 'Create');
              try {
                await provision(s);
                finishOp(op);
              } catch (e) {
                finishOp(op, e);
              }
              return;
            }
            for (const op of open) finishOp(op, new Error('interrupted by a restart of the platform; the server was reconciled'));
            if (s.state === 'Dropping') {
              await closeFront(s);
              await shutdownData(s, 'immediate');
              await volumeOf(s).destroy();
              await pgOf(s).dispose();
              d.runtime.releasePrivatePort(s.name);
              d.repo.delete(s.id);
              activity(s, ACTIVITY_OPERATIONS.delete, 'Succeeded', `Deletion of ${s.name} finished after a restart.`);
              return;
            }
            if (s.state === 'Stopped' || s.state === 'Stopping') {
              await shutdownData(s);
              s.state = 'Stopped';
              save(s);
              return;
            }
            // Ready, Starting, Updating, Inaccessible: bring it up if its key allows.
            try {
              await bringUp(s);
              s.state = 'Ready';
              s.keyStatus = 'Valid';
              s.inaccessibleReason = undefined;
              save(s);
              await subscribeEvents(s);
              activity(s, ACTIVITY_OPERATIONS.reconcile, 'Succeeded', `Server ${s.name} is Ready after a restart of the platform.`);
            } catch (e) {
              if (!(e instanceof KeyAccessError)) throw e;
              await subscribeEvents(s);
              await goInaccessible(s, e.message, e.reason);
            }
          } catch (e) {
            d.logger.error({ server: s.name, err: describe(e) }, 'reconcile failed');
            activity(s, ACTIVITY_OPERATIONS.reconcile, 'Failed', `Reconciling ${s.name} failed: ${describe(e)}`);
          }
        });
      }
      repeat(d.monitorIntervalMs, monitorPass);
      repeat(d.archiveIntervalMs, backupPass);
    },

    /** SIGTERM: every server stopped, every key out of the kernel, no mount and no loop device left. */
    async shutdown(): Promise<void> {
      stopping = true;
      for (const t of timers) clearTimeout(t);
      for (const t of checkTimers.values()) clearTimeout(t);
      // Each server's step waits for the operation running on it, under the same per-server lock.
      for (const s of d.repo.all()) {
        await withLock(s.name, async () => {
          try {
            await closeFront(s);
            await shutdownData(d.repo.byId(s.id) ?? s, 'fast');
            volumeOf(s).detach();
          } catch (e) {
            d.logger.error({ server: s.name, err: describe(e) }, 'shutdown of a server failed');
          }
        });
      }
    },
  };
}

export type ServersService = ReturnType<typeof createServersService>;
