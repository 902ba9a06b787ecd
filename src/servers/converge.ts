import { KeyAccessError } from '../keyaccess/key-access.js';
import { activity, ACTIVITY_OPERATIONS, applyTransition, describe, subscribeEvents, type ServerKit } from './kit.js';
import { lockOut } from './lockout.js';
import type { Server } from './model/server.js';

/**
 * Makes what runs match what is recorded, for a server with no open operation: after a restart of the
 * platform, after an operation ended, and when the supervisor finds a dead PostgreSQL.
 * - Ready: the key in the kernel, PostgreSQL running, the front door piping (or Inaccessible, if the key refuses).
 * - Inaccessible: nothing running, the front door refusing with the reason.
 * - Stopped: nothing running, nothing listening.
 * - Provisioning or Dropping: a Delete operation removes what is there.
 * - Starting, Stopping, Updating (an operation that could not finish handing it back): abandoned, by the table.
 */
export async function converge(k: ServerKit, s: Server): Promise<void> {
  switch (s.state) {
    case 'Ready': {
      if (k.instances.isUp(s)) return;
      try {
        await k.instances.bringUp(s);
        await k.replication.sweepOrphanSlots(s);
      } catch (e) {
        if (!(e instanceof KeyAccessError)) throw e;
        await lockOut(k, s, e.message, e.reason);
      }
      return;
    }
    case 'Inaccessible':
      await k.instances.refuse(s, k.instances.lockFailure(s.name));
      await k.instances.shutdown(s, 'immediate');
      return;
    case 'Stopped':
      await k.instances.close(s);
      await k.instances.shutdown(s, 'fast');
      return;
    case 'Provisioning':
      applyTransition(k, s, 'abandoned');
      k.runner.enqueue({ kind: 'Delete', tenantId: s.tenantId, serverId: s.id, serverName: s.name, caller: 'pgbyok (removing a server that could not be created)' });
      return;
    case 'Dropping':
      k.runner.enqueue({ kind: 'Delete', tenantId: s.tenantId, serverId: s.id, serverName: s.name, caller: 'pgbyok (finishing a delete)' });
      return;
    default: {
      const back = applyTransition(k, s, 'abandoned');
      if (back) await converge(k, back);
    }
  }
}

/** After a restart of the platform: every server without an open operation converges; open operations resume. */
export async function reconcileAll(k: ServerKit & { locks: { run<T>(name: string, fn: () => Promise<T>): Promise<T> } }): Promise<void> {
  const open = new Set(k.runner.openServers());
  // No Ready server's port is dark while the others come back one by one.
  for (const s of k.repo.all()) if (s.state === 'Ready' || s.state === 'Updating') await k.instances.holdPort(s);
  for (const s of k.repo.all()) {
    // Renewed at every start (idempotent): subscriptions made before the hook code was stable, or lost with a restored vault.
    if (s.state !== 'Dropping' && s.state !== 'Provisioning') await subscribeEvents(k, s);
    if (open.has(s.name)) continue;
    await k.locks.run(s.name, async () => {
      const fresh = k.repo.byId(s.id);
      if (!fresh) return;
      try {
        await converge(k, fresh);
        const after = k.repo.byId(s.id);
        if (after?.state === 'Ready') activity(k, after, ACTIVITY_OPERATIONS.reconcile, 'Succeeded', `Server ${after.name} is Ready after a restart of the platform.`);
      } catch (e) {
        k.logger.error({ server: s.name, err: describe(e) }, 'reconcile failed');
        activity(k, fresh, ACTIVITY_OPERATIONS.reconcile, 'Failed', `Reconciling ${fresh.name} failed; pgbyok tries again at its next start.`);
      }
    });
  }
  k.runner.resumeAll();
}
