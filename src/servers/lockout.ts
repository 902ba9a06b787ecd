import type { KeyFailure } from '../keyaccess/key-access.js';
import { activity, ACTIVITY_OPERATIONS, type ServerKit } from './kit.js';
import type { Server } from './model/server.js';
import { nextState } from './model/state-machine.js';

/**
 * When the key is lost, PostgreSQL gets this long for a clean (fast) shutdown before it is stopped
 * immediately: the data must become unreachable promptly. An immediate stop loses nothing committed.
 */
const KEY_LOSS_STOP_SECONDS = 2;

/**
 * Key access is gone: the port refuses at once (never dark) with the reason, the state follows the
 * table's `keyLost` (Inaccessible; a stopped server stays Stopped with its key status Invalid), sessions
 * end, PostgreSQL stops, the key leaves the kernel.
 */
export async function lockOut(k: ServerKit, s: Server, reason: string, failure: KeyFailure): Promise<void> {
  const fresh = k.repo.byId(s.id) ?? s;
  const to = nextState(fresh.state, 'keyLost');
  if (to === 'Stopped') {
    k.repo.update(s.id, { keyStatus: 'Invalid' }, 'Stopped');
    return;
  }
  await k.instances.refuse(fresh, failure);
  if (to && k.repo.transition(s.id, fresh.state, to, { keyStatus: 'Invalid', inaccessibleReason: reason }) && fresh.state !== 'Inaccessible') {
    activity(k, fresh, ACTIVITY_OPERATIONS.ServerInaccessible, 'Failed', `Server ${s.name} is Inaccessible: its customer-managed key cannot be reached (${reason}).`);
  }
  k.backups.forget(s);
  await k.instances.shutdown(fresh, 'fast', KEY_LOSS_STOP_SECONDS);
}
