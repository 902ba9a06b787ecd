import { activity, ACTIVITY_OPERATIONS, applyTransition, serverOf, type ServerKit } from '../../kit.js';
import type { StepContext, Workflow } from '../runner.js';

type Ctx = StepContext<{ reason?: string }>;

/**
 * A read replica becomes a primary of its own: recovery ends, its slot and role on the source go, it is
 * recorded as a primary and gets its first full backup (WAL archiving runs from then on).
 */
export function promoteWorkflow(k: ServerKit): Workflow<{ reason?: string }> {
  const server = (ctx: Ctx) => serverOf(k, ctx.op.serverId);
  return {
    kind: 'Promote',
    steps: [
      {
        name: 'promote',
        run: async (ctx) => {
          const s = server(ctx);
          if (!k.instances.isUp(s)) await k.instances.bringUp(s);
          const pg = k.pgOf(s);
          if (await pg.isInRecovery()) await pg.promote();
        },
      },
      {
        name: 'release-source',
        skip: (ctx) => !server(ctx).sourceServer,
        run: async (ctx) => k.replication.releaseSource(server(ctx)),
      },
      {
        name: 'record-primary',
        run: (ctx) => {
          const s = server(ctx);
          k.repo.update(s.id, { replicationRole: 'Primary', sourceServer: null });
          return { from: s.sourceServer ?? null };
        },
      },
      {
        name: 'first-backup',
        done: (ctx) => k.backups.list(server(ctx)).length > 0,
        run: async (ctx) => {
          const s = server(ctx);
          return { backup: (await k.backups.baseBackup(s, k.pgOf(s))).id };
        },
      },
      {
        name: 'finish',
        run: (ctx) => {
          const s = server(ctx);
          if (s.state === 'Updating') applyTransition(k, s, 'promoted', { readyAt: k.clock.now() });
          const from = (ctx.outputOf('record-primary') as { from?: string } | undefined)?.from;
          activity(k, s, ACTIVITY_OPERATIONS.promote, 'Succeeded', `Read replica ${s.name} promoted${ctx.input.reason ? ` (${ctx.input.reason})` : ''}; it no longer follows ${from ?? 'its source'}.`, ctx.op.caller);
        },
      },
    ],
    async compensate(ctx) {
      const s = k.repo.byId(ctx.op.serverId);
      if (s?.state === 'Updating') applyTransition(k, s, 'abandoned');
    },
  };
}
