import { existsSync, readdirSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { IntegrityError } from '../../../backups/sealed-stream.js';
import { errors } from '../../../lib/errors.js';
import { activity, ACTIVITY_OPERATIONS, applyTransition, serverOf, subscribeEvents, type ServerKit } from '../../kit.js';
import type { Server } from '../../model/server.js';
import type { OperationKind } from '../catalog.js';
import type { StepContext, StepDef, Workflow } from '../runner.js';

/**
 * Create, Restore, GeoRestore and CreateReplica: a new server's volume, its data (initdb, a restore of
 * the source's backups, or a clone of the source), PostgreSQL, its first full backup, then Ready. A
 * server that cannot be finished is handed to a Delete operation, which removes every part it has.
 */
type Ctx = StepContext<Record<string, never>>;

/** The end of PostgreSQL's logs in a data directory (for the platform log only, never for the tenant). */
function logTail(dataDir: string): string {
  try {
    const dir = join(dataDir, 'log');
    return readdirSync(dir).sort().slice(-2).map((f) => readFileSync(join(dir, f), 'utf8').split('\n').slice(-15).join('\n')).join('\n');
  } catch {
    return '';
  }
}

export function provisionWorkflow(k: ServerKit, kind: Extract<OperationKind, 'Create' | 'Restore' | 'GeoRestore' | 'CreateReplica'>): Workflow {
  const server = (ctx: Ctx) => serverOf(k, ctx.op.serverId);
  const volumeOf = (s: Server) => k.runtime.volumeOf(s);
  const header = (s: Server) => {
    const v = volumeOf(s);
    if (!existsSync(v.image)) return undefined;
    v.attach();
    return v.readHeader();
  };
  const replica = kind === 'CreateReplica';

  const initialize = async (s: Server) => {
    const volume = volumeOf(s);
    await k.instances.assignPrivatePort(s);
    const pg = k.pgOf(s, volume);
    // An initialization cut short left a partial data directory: it starts afresh.
    if (existsSync(pg.opts.dataDir)) rmSync(pg.opts.dataDir, { recursive: true, force: true });
    if (s.restoreSpec) {
      const spec = s.restoreSpec;
      const base = k.backups.list({ id: spec.sourceId, location: spec.sourceLocation }).find((m) => m.id === spec.baseBackupId);
      if (!base) throw errors.badParameter(`The base backup ${spec.baseBackupId} of ${spec.sourceName} is gone.`, 'BackupNotFound');
      try {
        await k.backups.restoreInto({ id: spec.sourceId, location: spec.sourceLocation, name: spec.sourceName }, base, pg, spec.restoreTime);
      } catch (e) {
        // Tampering or damage in the store is the tenant's business: it is said in words, without internals.
        if (e instanceof IntegrityError) throw errors.badParameter(`The backups of ${spec.sourceName} failed their integrity check (${e.message}); nothing was restored.`, 'BackupIntegrityCheckFailed');
        throw e;
      }
      pg.installTls(await k.tlsFor(s.name));
      try {
        await k.instances.startPostgres(s);
        await pg.waitForPromotion();
      } catch (e) {
        // Why recovery stopped is in PostgreSQL's own log, inside the volume that compensation destroys: it goes to the platform log.
        k.logger.error({ server: s.name, restoreTime: spec.restoreTime, baseBackup: spec.baseBackupId, postgresLog: logTail(pg.opts.dataDir) }, 'the restore\'s recovery did not finish');
        throw e;
      }
      await k.backups.cleanupRestore(pg);
    } else if (replica) {
      await k.replication.cloneFromSource(s);
    } else {
      await pg.init(s.adminLogin, await k.tlsFor(s.name));
    }
    volume.updateHeader((h) => ({ ...h, initialized: true }));
  };

  const steps: StepDef<Record<string, never>>[] = [
    {
      name: 'create-volume',
      done: (ctx) => !!header(server(ctx))?.meta,
      run: async (ctx) => {
        const s = server(ctx);
        const volume = volumeOf(s);
        // A volume whose creation was cut short holds nothing of the user's: it is made afresh.
        if (existsSync(volume.image)) await volume.destroy();
        if (existsSync(`${volume.image}.creating`)) unlinkSync(`${volume.image}.creating`);
        volume.create(s.storageGb);
        k.custody.writeHeaderMeta(s, volume);
      },
    },
    { name: 'unlock', volatile: true, run: async (ctx) => void (await k.instances.unlock(server(ctx))) },
    {
      name: 'initialize',
      done: (ctx) => !!header(server(ctx))?.initialized,
      run: async (ctx) => initialize(server(ctx)),
    },
    { name: 'start', volatile: true, run: async (ctx) => k.instances.startPostgres(server(ctx)) },
    replica
      ? { name: 'await-streaming', run: async (ctx) => k.replication.waitForStreaming(server(ctx)) }
      : { name: 'set-admin-password', run: async (ctx) => { const s = server(ctx); await k.pgOf(s).setAdminPassword(s.adminVerifier); } },
    ...(replica ? [] : [{
      // Taken before Ready, so the earliest restore point is the moment the server became Ready.
      name: 'first-backup',
      done: (ctx: Ctx) => k.backups.list(server(ctx)).length > 0,
      run: async (ctx: Ctx) => {
        const s = server(ctx);
        const m = await k.backups.baseBackup(s, k.pgOf(s));
        return { backup: m.id };
      },
    }]),
    { name: 'subscribe-events', run: async (ctx) => subscribeEvents(k, server(ctx)) },
    {
      name: 'serve',
      run: async (ctx) => {
        const s = server(ctx);
        await k.instances.serve(s);
        if (s.state === 'Ready') return;
        const ready = applyTransition(k, s, 'provisioned', { keyStatus: 'Valid', inaccessibleReason: null, restoreSpec: null, readyAt: k.clock.now() });
        if (!ready) throw new Error(`server ${s.name} left Provisioning while it was being created`);
        activity(k, s, ACTIVITY_OPERATIONS.write, 'Succeeded', s.restoreSpec
          ? `Server ${s.name} restored from ${s.restoreSpec.sourceName} to ${s.restoreSpec.restoreTime ?? 'the latest restorable time'} (${s.current.encryption.type}).`
          : `Server ${s.name} created (${s.current.encryption.type}).`, ctx.op.caller);
      },
    },
  ];

  return {
    kind,
    steps,
    async compensate(ctx, failure) {
      const s = k.repo.byId(ctx.op.serverId);
      if (!s) return;
      activity(k, s, ACTIVITY_OPERATIONS.write, 'Warning', `Server ${s.name} could not be created (${failure.code}); its half-built parts are removed.`, ctx.op.caller);
      // The Delete operation that removes it is opened once this one has ended (workflows/index.ts).
      if (s.state === 'Provisioning') applyTransition(k, s, 'abandoned');
    },
  };
}
