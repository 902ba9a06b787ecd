import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { BackupsService } from '../backups/backups.service.js';
import type { Clock } from '../lib/clock.js';
import { ApiError, errors } from '../lib/errors.js';
import type { HomePaths } from '../lib/home.js';
import type { Directory } from '../keyaccess/directory.js';
import type { KeyLocator } from '../keyaccess/encryption.js';
import type { KeyAccess } from '../keyaccess/key-access.js';
import { scramSha256Verifier } from '../postgres/scram.js';
import { createBackupSchedule } from './backup-schedule.js';
import { createCustody } from './custody.js';
import { requireHighAvailability, requireSku } from './capabilities.js';
import { createDatabases } from './databases.js';
import { createFirewallRules } from './firewall-rules.js';
import { reconcileAll } from './converge.js';
import { createInstances } from './instances.js';
import { describe, type ServerKit } from './kit.js';
import { serverResourceId, type DataEncryption, type Server } from './model/server.js';
import { refusal, transition, type ServerEvent } from './model/state-machine.js';
import { createKeyMonitor } from './monitor.js';
import type { Monitoring } from './monitoring.js';
import type { OperationKind } from './operations/catalog.js';
import { createOperationsRepo, OperationConflict, type Operation } from './operations/operations.repo.js';
import { createRunner } from './operations/runner.js';
import { registerWorkflows } from './operations/workflows/index.js';
import type { UpdateInput } from './operations/workflows/update.js';
import { createParametersService } from './parameters.service.js';
import { createProvisioning } from './provisioning.js';
import { createReplication } from './replication.js';
import type { ResponderTls } from './responder.js';
import type { ServerRuntime } from './runtime.js';
import { createServerLocks } from './server-locks.js';
import { createServerPostgres } from './server-postgres.js';
import type { ServersRepo } from './servers.repo.js';
import { createCmkValidation, type Caller } from './validation/cmk.js';
import { requireAdminPassword, requireServerName, requireStorageGrowth } from './validation/input.js';
import type { Db } from '../store/db.js';

export type { Caller } from './validation/cmk.js';
export type { CreateServerInput, RestoreServerInput } from './provisioning.js';
export { PAIRED_REGIONS } from './regions.js';
export { serverResourceId };

export interface UpdateServerInput {
  storageSizeGB?: number;
  keyUri?: string;
  identity?: string;
  /** 'SystemManaged' asks to remove the customer key, which is refused (restore is the way). */
  encryptionType?: string;
  administratorLoginPassword?: string;
  sku?: { name?: string; tier?: string };
  highAvailability?: { mode?: string };
  /** Accepted when it is what the server has (az update sends the whole backup object); changes are refused. */
  backupRetentionDays?: number;
  geoRedundantBackup?: 'Enabled' | 'Disabled';
}

export interface ServersDeps {
  db: Db;
  repo: ServersRepo;
  runtime: ServerRuntime;
  backups: BackupsService;
  archiveIntervalMs: () => number;
  backupIntervalMs: () => number;
  home: HomePaths;
  logger: Logger;
  keys: KeyAccess;
  locator: KeyLocator;
  directory: Directory;
  monitoring: Monitoring;
  clock: Clock;
  tlsFor: (serverName: string) => Promise<{ cert: string; key: string; ca: string }>;
  eventsEndpoint: () => string;
  monitorIntervalMs: () => number;
  vaultGraceMs: () => number;
  responderTls: ResponderTls;
  /** Test fail point (see operations/runner.ts). */
  crashAfterStep?: string;
}

/** Verbs whose repetition while one runs is the same request: the caller gets the open operation. */
const JOINABLE: OperationKind[] = ['Revalidate', 'Backup'];

/**
 * The control plane's façade: each verb validates, checks the state machine, records an operation (and
 * its transition) in one transaction and returns it; the operations engine does the work. The parts:
 * validation/ (input and customer-key rules), custody (the DEK), instances (supervision and the front
 * door), monitor (the key monitor), replication, operations/ (the engine and one workflow per kind),
 * converge (reconcile after a restart), regions.
 */
export function createServersService(d: ServersDeps) {
  const locks = createServerLocks();
  const pgOf = createServerPostgres(d);
  const custody = createCustody({ repo: d.repo, runtime: d.runtime, keys: d.keys, locator: d.locator, clock: d.clock });
  const instances = createInstances({ repo: d.repo, runtime: d.runtime, pgOf, custody, logger: d.logger, responderTls: d.responderTls });
  const replication = createReplication({ repo: d.repo, runtime: d.runtime, pgOf, home: d.home, logger: d.logger, tlsFor: d.tlsFor });
  const opsRepo = createOperationsRepo(d.db, d.clock);
  const runner = createRunner({
    repo: opsRepo, locks, logger: d.logger, clock: d.clock, crashAfter: d.crashAfterStep,
    // Stable for this home on this host, so after a crash it takes its own leases back at once.
    owner: `${hostname()}:${d.home.root}`,
  });
  const k: ServerKit = {
    repo: d.repo, runtime: d.runtime, pgOf, custody, instances, replication, backups: d.backups, directory: d.directory, keys: d.keys,
    locator: d.locator, monitoring: d.monitoring, runner, clock: d.clock, logger: d.logger, home: d.home, tlsFor: d.tlsFor, eventsEndpoint: d.eventsEndpoint,
  };
  registerWorkflows(k, runner);
  const monitor = createKeyMonitor(k, { locks, graceMs: d.vaultGraceMs });
  const schedule = createBackupSchedule(k, { locks, backupIntervalMs: d.backupIntervalMs });
  const timers = new Set<NodeJS.Timeout>();
  let stopping = false;

  /** No new work once shutdown has begun: it could start a server after shutdown has stopped it. */
  const refuseWhileStopping = () => {
    if (stopping) throw errors.serviceUnavailable('pgbyok is shutting down; send the request again once it is back.');
  };

  const requireServer = (tenantId: string, name: string): Server => {
    const s = d.repo.byName(name);
    if (!s || s.tenantId !== tenantId) throw errors.notFound('ResourceNotFound', `The server '${name}' was not found.`);
    return s;
  };

  /** The table's answer for a verb that changes nothing of the server (replicate from it, restore from it). */
  const allow = (s: Server, event: ServerEvent) => {
    refuseWhileStopping();
    transition(s.name, s.state, event);
  };

  const inProgress = (s: Server, e: OperationConflict) => new ApiError(409, 'OperationInProgress',
    `Server ${s.name} has an operation in progress${e.open ? ` (${e.open.kind} ${e.open.id})` : ''}; send the request again once it has ended.`);

  /** A verb on an existing server: the transition and the operation, recorded together. */
  const begin = (s: Server, event: ServerEvent, kind: OperationKind, caller?: string, input: Record<string, unknown> = {}, also?: () => void): Operation => {
    refuseWhileStopping();
    const to = transition(s.name, s.state, event);
    try {
      return runner.enqueue({ kind, tenantId: s.tenantId, serverId: s.id, serverName: s.name, input, caller }, () => {
        if (!d.repo.transition(s.id, s.state, to)) throw refusal(s.name, d.repo.byId(s.id)?.state ?? s.state, event);
        also?.();
      });
    } catch (e) {
      // Asking again for what is already under way (the key monitor's own revalidate, say) joins it.
      if (e instanceof OperationConflict && e.open && e.open.kind === kind && JOINABLE.includes(kind) && !Object.keys(input).length) return e.open;
      if (e instanceof OperationConflict) throw inProgress(s, e);
      throw e;
    }
  };

  const validateCmk = createCmkValidation({ directory: d.directory, keys: d.keys, clock: d.clock });
  const provisioning = createProvisioning(k, { validateCmk, locks, requireServer, allow, refuseWhileStopping });
  const parameters = createParametersService({
    repo: d.repo, pgOf, requireServer, allow,
    enqueue: (s, caller, store) => begin(s, 'setParameter', 'ParameterUpdate', caller, {}, store),
    activity: (s, message, caller) => d.monitoring.record({
      tenantId: s.tenantId, resourceId: serverResourceId(s.tenantId, s.name), serverName: s.name, operation: 'Microsoft.DBforPostgreSQL/flexibleServers/write',
      status: 'Succeeded', level: 'Informational', caller, message,
    }),
  });

  /** Runs `pass` every `interval()` ms until shutdown, never overlapping itself. */
  const repeat = (interval: () => number, pass: () => Promise<void>) => {
    if (stopping) return;
    const t = setTimeout(async () => {
      timers.delete(t);
      await pass().catch((e) => d.logger.error({ err: describe(e) }, 'scheduled pass failed'));
      repeat(interval, pass);
    }, interval());
    t.unref();
    timers.add(t);
  };

  /** The earliest restore point: when the server became Ready, or the oldest backup retention keeps, whichever is later. */
  const earliestRestore = (s: Server): string | undefined => {
    if (!s.readyAt || s.replicationRole !== 'Primary') return undefined;
    const oldest = d.backups.list(s)[0];
    const t = Math.max(s.readyAt, oldest ? Date.parse(oldest.endTime) : 0);
    return new Date(t).toISOString();
  };

  const databases = createDatabases({ requireServer, pgOf, locks });
  const firewallRules = createFirewallRules({ repo: d.repo, requireServer });

  return {
    resourceId: serverResourceId,
    parameters,
    databases,
    firewallRules,
    get: requireServer,
    /** checkNameAvailability: server names are unique in the installation (as they are in Azure, being DNS names). */
    nameAvailability(name: string, type: string): { nameAvailable: boolean; reason?: 'Invalid' | 'AlreadyExists'; message: string } {
      if (type.toLowerCase() !== 'microsoft.dbforpostgresql/flexibleservers') return { nameAvailable: false, reason: 'Invalid', message: `The type '${type}' is not Microsoft.DBforPostgreSQL/flexibleServers.` };
      try {
        requireServerName(name);
      } catch (e) {
        return { nameAvailable: false, reason: 'Invalid', message: (e as Error).message };
      }
      if (d.repo.byName(name)) return { nameAvailable: false, reason: 'AlreadyExists', message: `Specified server name '${name}' is already used.` };
      return { nameAvailable: true, message: '' };
    },
    list: (tenantId: string) => d.repo.list(tenantId),
    earliestRestore,
    operation: (tenantId: string, id: string) => {
      const op = opsRepo.byId(id);
      if (!op || op.tenantId !== tenantId) throw errors.notFound('OperationNotFound', `No operation ${id}.`);
      return { ...op, steps: opsRepo.steps(id) };
    },
    operations: (tenantId: string, top = 100) => opsRepo.list(tenantId, top).map((op) => ({ ...op, steps: opsRepo.steps(op.id) })),

    create: provisioning.create,
    createReplica: provisioning.createReplica,
    restore: provisioning.restore,
    replicas: (caller: Caller, name: string) => d.repo.list(caller.tenantId).filter((r) => r.sourceServer === requireServer(caller.tenantId, name).name),

    backup: (caller: Caller, name: string) => begin(requireServer(caller.tenantId, name), 'backup', 'Backup', caller.name),
    backups: (caller: Caller, name: string) => d.backups.listWithKeys(requireServer(caller.tenantId, name)),

    async update(caller: Caller, name: string, input: UpdateServerInput): Promise<{ server: Server; operation: Operation }> {
      let s = requireServer(caller.tenantId, name);
      const keyChange = !!(input.keyUri || input.identity);
      const event: ServerEvent = keyChange ? 'updateKey' : 'update';
      allow(s, event);
      if (input.encryptionType === 'SystemManaged' && s.current.encryption.type === 'AzureKeyVault') {
        throw errors.badParameter(`Customer-managed key encryption cannot be removed from server ${name}. Restore it to a new server without a customer key instead (pgbyok server restore).`, 'CmkRemovalNotSupported');
      }
      const sku = input.sku ? requireSku({ name: input.sku.name ?? s.sku.name, tier: input.sku.tier ?? (input.sku.name ? undefined : s.sku.tier) }) : s.sku;
      requireHighAvailability(input.highAvailability);
      if (input.backupRetentionDays !== undefined && input.backupRetentionDays !== s.backupRetentionDays) {
        throw errors.badParameter(`Changing the backup retention of ${name} (${s.backupRetentionDays} days) is not offered yet.`, 'BackupRetentionChangeNotSupported');
      }
      if (input.geoRedundantBackup !== undefined && (input.geoRedundantBackup === 'Enabled') !== !!s.geo) {
        throw errors.badParameter('Geo-redundant backup is chosen when a server is created; it cannot be changed afterwards (as in Azure).', 'GeoRedundantBackupChangeNotSupported');
      }
      // The same storage size again (az update sends the whole storage object) is no change.
      if (input.storageSizeGB !== undefined && input.storageSizeGB === s.storageGb) input = { ...input, storageSizeGB: undefined };
      if (input.storageSizeGB !== undefined) requireStorageGrowth(s.storageGb, input.storageSizeGB);
      if (input.administratorLoginPassword !== undefined) requireAdminPassword(input.administratorLoginPassword);
      if (s.state !== 'Ready' && (input.storageSizeGB !== undefined || input.administratorLoginPassword !== undefined)) {
        throw new ApiError(409, 'ServerStateConflict', `Start server ${name} before growing its storage or resetting its administrator password (it is ${s.state}).`);
      }
      let target: DataEncryption | undefined;
      if (keyChange) {
        const keyUri = input.keyUri ?? s.current.encryption.primaryKeyURI;
        const identity = input.identity ?? s.current.encryption.primaryUserAssignedIdentityId;
        target = (await validateCmk(caller, keyUri, identity, s.location)).encryption;
      }
      s = requireServer(caller.tenantId, name);
      const op: UpdateInput = {
        resumeState: s.state as UpdateInput['resumeState'],
        ...(target ? { target, why: `data encryption changed to ${target.primaryKeyURI} with identity ${target.primaryUserAssignedIdentityId}` } : {}),
        ...(input.storageSizeGB !== undefined ? { storageGb: input.storageSizeGB } : {}),
        ...(input.administratorLoginPassword !== undefined ? { adminVerifier: scramSha256Verifier(input.administratorLoginPassword) } : {}),
      };
      // The SKU is a label: recorded with the operation, in its transaction.
      const skuChanged = sku.name !== s.sku.name || sku.tier !== s.sku.tier;
      const operation = begin(s, event, 'Update', caller.name, op, skuChanged ? () => void d.repo.update(s.id, { sku }) : undefined);
      return { server: d.repo.byId(s.id)!, operation };
    },

    stop: (caller: Caller, name: string) => begin(requireServer(caller.tenantId, name), 'stop', 'Stop', caller.name),
    start: (caller: Caller, name: string) => begin(requireServer(caller.tenantId, name), 'start', 'Start', caller.name),
    restart: (caller: Caller, name: string) => begin(requireServer(caller.tenantId, name), 'restart', 'Restart', caller.name),
    revalidate: (caller: Caller, name: string) => begin(requireServer(caller.tenantId, name), 'revalidate', 'Revalidate', caller.name),
    promote(caller: Caller, name: string) {
      const s = requireServer(caller.tenantId, name);
      if (s.replicationRole !== 'AsyncReplica') throw errors.badParameter(`${name} is not a read replica.`, 'NotAReplica');
      return begin(s, 'promote', 'Promote', caller.name);
    },
    /** Crypto-shredding: see operations/workflows/delete.ts. */
    delete: (caller: Caller, name: string) => begin(requireServer(caller.tenantId, name), 'delete', 'Delete', caller.name),

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
      return { state, reason, serverState: s.state, primaryEncryptionKeyStatus: s.keyStatus, checkedAt: new Date(d.clock.now()).toISOString() };
    },

    onVaultEvents: (events: Parameters<typeof monitor.onVaultEvents>[0]) => monitor.onVaultEvents(events),

    /** After a restart of the platform: servers converge, open operations resume, the monitor and the schedule start. */
    async reconcile(): Promise<void> {
      await reconcileAll({ ...k, locks });
      void monitor.pass();
      repeat(d.monitorIntervalMs, () => monitor.pass());
      repeat(d.archiveIntervalMs, () => schedule.pass());
    },

    /** SIGTERM: operations stop at a step boundary (the next start resumes them), every server stopped, every key out of the kernel. */
    async shutdown(): Promise<void> {
      stopping = true;
      monitor.stop();
      for (const t of timers) clearTimeout(t);
      await runner.stop();
      for (const s of d.repo.all()) {
        await locks.run(s.name, async () => {
          try {
            await instances.close(s);
            await instances.shutdown(d.repo.byId(s.id) ?? s, 'fast');
            d.runtime.volumeOf(s).detach();
          } catch (e) {
            d.logger.error({ server: s.name, err: describe(e) }, 'shutdown of a server failed');
          }
        });
      }
    },
  };
}

export type ServersService = ReturnType<typeof createServersService>;
