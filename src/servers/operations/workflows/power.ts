import { errors } from '../../../lib/errors.js';
import { KeyAccessError } from '../../../keyaccess/key-access.js';
import { activity, ACTIVITY_OPERATIONS, applyTransition, serverOf, type ServerKit } from '../../kit.js';
import { lockOut } from '../../lockout.js';
import { CancelOperation } from '../step-errors.js';
import type { Workflow } from '../runner.js';

/** Stop, start, restart and revalidate: the server's data made unreachable, reachable again, or re-checked. */
export function powerWorkflows(k: ServerKit): Workflow[] {
  const server = (ctx: { op: { serverId: string } }) => serverOf(k, ctx.op.serverId);

  const stop: Workflow = {
    kind: 'Stop',
    steps: [
      {
        name: 'shutdown',
        run: async (ctx) => {
          const s = server(ctx);
          await k.instances.shutdown(s, 'fast');
          await k.instances.close(s);
          k.backups.forget(s);
        },
      },
      {
        name: 'finish',
        run: (ctx) => {
          const s = server(ctx);
          if (s.state === 'Stopping') applyTransition(k, s, 'stopped');
          activity(k, s, ACTIVITY_OPERATIONS.stop, 'Succeeded', `Server ${s.name} stopped; its key is out of the kernel.`, ctx.op.caller);
        },
      },
    ],
    async compensate(ctx) {
      const s = server(ctx);
      if (s.state === 'Stopping') applyTransition(k, s, 'abandoned');
    },
  };

  const start: Workflow = {
    kind: 'Start',
    steps: [
      {
        name: 'bring-up',
        run: async (ctx) => {
          const s = server(ctx);
          try {
            await k.instances.bringUp(s);
          } catch (e) {
            // The key refuses: the server is Inaccessible (with the reason), not merely stopped.
            if (e instanceof KeyAccessError && !e.transient) await lockOut(k, s, e.message, e.reason);
            throw e;
          }
        },
      },
      {
        name: 'finish',
        run: (ctx) => {
          const s = server(ctx);
          if (s.state === 'Starting') applyTransition(k, s, 'started', { keyStatus: 'Valid', inaccessibleReason: null, keyUnreachableSince: null });
          activity(k, s, ACTIVITY_OPERATIONS.start, 'Succeeded', `Server ${s.name} started.`, ctx.op.caller);
        },
      },
    ],
    async compensate(ctx) {
      const s = server(ctx);
      if (s.state !== 'Starting') return;
      await k.instances.shutdown(s, 'immediate');
      await k.instances.close(s);
      applyTransition(k, s, 'startFailed');
    },
  };

  const restart: Workflow = {
    kind: 'Restart',
    steps: [{
      name: 'restart',
      run: async (ctx) => {
        const s = server(ctx);
        if (s.state !== 'Ready') throw new CancelOperation(`Server ${s.name} is ${s.state}; there is nothing to restart.`);
        if (!k.instances.isUp(s)) await k.instances.bringUp(s);
        else await k.pgOf(s).restart('fast');
        activity(k, s, ACTIVITY_OPERATIONS.restart, 'Succeeded', `Server ${s.name} restarted.`, ctx.op.caller);
      },
    }],
  };

  const revalidate: Workflow = {
    kind: 'Revalidate',
    steps: [
      {
        name: 'bring-up',
        run: async (ctx) => {
          const s = server(ctx);
          try {
            if (s.state === 'Ready') {
              // A Ready server is checked as the monitor checks it; a failure locks it.
              await k.custody.checkKeyAttributes(s.current.encryption);
              await k.keys.probe(s.current.wrappedBy, k.locator.principalOf(s.current.encryption));
              return;
            }
            await k.instances.bringUp(s);
          } catch (e) {
            if (!(e instanceof KeyAccessError)) throw e;
            await lockOut(k, s, e.message, e.reason);
            throw errors.badParameter(`Revalidation failed: ${e.message}. The server stays Inaccessible.`, 'KeyAccessFailed');
          }
        },
      },
      {
        name: 'finish',
        run: (ctx) => {
          const s = server(ctx);
          if (s.state === 'Inaccessible') applyTransition(k, s, 'revalidated', { keyStatus: 'Valid', inaccessibleReason: null, keyUnreachableSince: null });
          activity(k, s, ACTIVITY_OPERATIONS.revalidate, 'Succeeded', `Data encryption of ${s.name} revalidated; the server is Ready.`, ctx.op.caller);
        },
      },
    ],
  };

  const backup: Workflow = {
    kind: 'Backup',
    steps: [{
      name: 'base-backup',
      run: async (ctx) => {
        const s = server(ctx);
        if (s.state !== 'Ready') throw new CancelOperation(`Server ${s.name} is ${s.state}; only a Ready server is backed up.`);
        if (!k.instances.isUp(s)) await k.instances.bringUp(s);
        const m = await k.backups.baseBackup(s, k.pgOf(s));
        activity(k, s, ACTIVITY_OPERATIONS.backup, 'Succeeded', `Full backup ${m.id} of ${s.name} (${Math.round(m.sizeBytes / 1024)} KiB, encrypted).`, ctx.op.caller);
        return { backup: m.id };
      },
    }],
  };

  const parameters: Workflow = {
    kind: 'ParameterUpdate',
    steps: [{
      name: 'apply',
      run: async (ctx) => {
        const s = server(ctx);
        const pg = k.pgOf(s);
        if (s.state === 'Ready' && pg.isRunning()) {
          pg.writeParameters();
          await pg.reload();
        }
      },
    }],
  };

  return [stop, start, restart, revalidate, backup, parameters];
}
