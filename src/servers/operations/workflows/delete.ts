import { existsSync } from 'node:fs';
import { activity, ACTIVITY_OPERATIONS, applyTransition, describe, unsubscribeEvents, type ServerKit } from '../../kit.js';
import type { Server } from '../../model/server.js';
import { OperationConflict } from '../operations.repo.js';
import { RetryLater } from '../step-errors.js';
import type { StepContext, Workflow } from '../runner.js';

/**
 * Crypto-shredding, to the last part: the data goes out of reach, the replicas become standalone, the
 * replication slot on a source, the event subscription in the customer's vault, every backup object and
 * backup key, the volume and the OS account go, and finally the row with the wrapped DEK. Delete only
 * goes forward: each step is safe to repeat, and a step that cannot finish is retried at the next start.
 */
export function deleteWorkflow(k: ServerKit): Workflow {
  // The server is read once per step; after 'remove-server' nothing of it is left to read.
  const server = (ctx: StepContext<unknown>): Server | undefined => k.repo.byId(ctx.op.serverId);
  const each = (fn: (s: Server, ctx: StepContext<unknown>) => unknown) => async (ctx: StepContext<unknown>) => {
    const s = server(ctx);
    if (s) return fn(s, ctx);
    return undefined;
  };

  return {
    kind: 'Delete',
    steps: [
      {
        name: 'shutdown',
        run: each(async (s) => {
          await k.instances.close(s);
          await k.instances.shutdown(s, 'immediate');
          k.backups.forget(s);
        }),
      },
      {
        // Azure's behaviour: the replicas of a deleted primary become standalone servers.
        name: 'detach-replicas',
        run: each(async (s) => {
          const promoted: string[] = [];
          for (const r of k.repo.all().filter((x) => x.sourceServer === s.name && x.replicationRole === 'AsyncReplica')) {
            if (r.state !== 'Ready') {
              // Not running: recorded as a primary now, and promoted when it next comes up.
              k.repo.update(r.id, { replicationRole: 'Primary', sourceServer: null });
              promoted.push(r.name);
              continue;
            }
            try {
              k.runner.enqueue({ kind: 'Promote', tenantId: r.tenantId, serverId: r.id, serverName: r.name, input: { reason: `its primary ${s.name} was deleted` }, caller: 'pgbyok (primary deleted)' },
                () => {
                  if (!applyTransition(k, r, 'promote')) throw new RetryLater('ReplicaBusy', `Replica ${r.name} changed state; it is promoted on the next attempt.`);
                });
              promoted.push(r.name);
            } catch (e) {
              if (e instanceof OperationConflict && e.open?.kind === 'Promote') continue;
              if (e instanceof OperationConflict) throw new RetryLater('ReplicaBusy', `Replica ${r.name} has an operation in progress; it is promoted once that ends.`);
              throw e;
            }
          }
          return { promoted };
        }),
      },
      {
        name: 'release-source',
        skip: (ctx) => server(ctx)?.replicationRole !== 'AsyncReplica',
        run: each(async (s) => {
          try {
            await k.replication.releaseSource(s);
          } catch (e) {
            // A source that stays unreachable gets its orphan slots swept when it next comes up.
            if (!(e instanceof RetryLater)) throw e;
            k.logger.warn({ server: s.name, err: describe(e) }, 'the source keeps the replica\'s slot until it is Ready again');
          }
        }),
      },
      { name: 'unsubscribe-events', run: each(async (s) => unsubscribeEvents(k, s, s.current.encryption)) },
      { name: 'delete-backups', run: each((s) => k.backups.deleteAll(s)) },
      {
        name: 'destroy-volume',
        run: each(async (s) => {
          const volume = k.runtime.volumeOf(s);
          await volume.destroy();
          await k.pgOf(s, volume).dispose();
          k.runtime.releasePrivatePort(s.name);
          return { destroyed: !existsSync(volume.image) };
        }),
      },
      {
        name: 'remove-server',
        run: each((s, ctx) => {
          k.repo.delete(s.id);
          activity(k, s, ACTIVITY_OPERATIONS.delete, 'Succeeded', `Server ${s.name} deleted; its volume was destroyed, its backups and backup keys removed and its wrapped DEK erased.`, ctx.op.caller);
        }),
      },
    ],
  };
}
