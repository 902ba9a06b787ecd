import { ApiError } from '../../lib/errors.js';
import type { ServerState } from './server.js';

/**
 * The one table of a server's states: state × event → next state. A verb is allowed exactly when the
 * table has its event in the server's state, every change of `servers.state` is one of these
 * transitions (applied by the repository as compare-and-set), and a refusal's message is made from the
 * table. Pure: no I/O, unit-tested row by row.
 */
export type ServerEvent =
  // Verbs a user sends (each opens an operation).
  | 'stop' | 'start' | 'restart' | 'update' | 'updateKey' | 'revalidate' | 'promote' | 'backup' | 'delete' | 'setParameter'
  // Verbs that read a server as the source of a new one (they change nothing of it).
  | 'replicate' | 'restoreFrom'
  // What workflows and the key monitor report.
  | 'provisioned' | 'stopped' | 'started' | 'startFailed' | 'keyLost' | 'revalidated' | 'updatedRunning' | 'updatedStopped'
  | 'promoted'
  // An operation that could not finish hands the server back (a half-built one goes to Dropping).
  | 'abandoned';

export const SERVER_STATES: ServerState[] = ['Provisioning', 'Ready', 'Starting', 'Stopping', 'Stopped', 'Updating', 'Inaccessible', 'Dropping'];

export const TRANSITIONS: Record<ServerState, Partial<Record<ServerEvent, ServerState>>> = {
  Provisioning: { provisioned: 'Ready', abandoned: 'Dropping', delete: 'Dropping' },
  Ready: {
    stop: 'Stopping', restart: 'Ready', update: 'Updating', updateKey: 'Updating', revalidate: 'Ready', promote: 'Updating',
    backup: 'Ready', delete: 'Dropping', setParameter: 'Ready', replicate: 'Ready', restoreFrom: 'Ready', keyLost: 'Inaccessible',
  },
  Stopping: { stopped: 'Stopped', abandoned: 'Stopped' },
  Stopped: {
    start: 'Starting', update: 'Updating', updateKey: 'Updating', delete: 'Dropping', setParameter: 'Stopped', restoreFrom: 'Stopped',
    // A stopped server keeps its state when its key goes: only its key status says Invalid.
    keyLost: 'Stopped',
  },
  Starting: { started: 'Ready', startFailed: 'Stopped', keyLost: 'Inaccessible', abandoned: 'Stopped' },
  Updating: { updatedRunning: 'Ready', updatedStopped: 'Stopped', promoted: 'Ready', keyLost: 'Inaccessible', abandoned: 'Ready' },
  Inaccessible: {
    // A new key or identity is how access comes back after an identity was deleted.
    updateKey: 'Updating', revalidate: 'Inaccessible', revalidated: 'Ready', delete: 'Dropping', restoreFrom: 'Inaccessible', keyLost: 'Inaccessible',
  },
  Dropping: {},
};

/** The verbs in words, for refusals. */
const VERB_WORDS: Partial<Record<ServerEvent, string>> = {
  stop: 'stop', start: 'start', restart: 'restart', update: 'update', updateKey: 'change the key of', revalidate: 'revalidate',
  promote: 'promote', backup: 'back up', delete: 'delete', setParameter: 'set a parameter of', replicate: 'replicate', restoreFrom: 'restore from',
};

/** What a user can do about a state that refuses the verb. */
const STATE_HINTS: Partial<Record<ServerState, string>> = {
  Inaccessible: 'its customer-managed key cannot be reached: restore access to the key, then revalidate',
  Provisioning: 'wait until it is Ready',
  Starting: 'wait until it is Ready',
  Stopping: 'wait until it is Stopped',
  Updating: 'wait until the update ends',
  Dropping: 'it is being deleted',
};

export function nextState(state: ServerState, event: ServerEvent): ServerState | undefined {
  return TRANSITIONS[state]?.[event];
}

/** The states in which an event is allowed (from the table). */
export function statesAllowing(event: ServerEvent): ServerState[] {
  return SERVER_STATES.filter((s) => TRANSITIONS[s][event] !== undefined);
}

/** The 409 a verb gets in a state the table does not allow it in; the message is made from the table. */
export function refusal(name: string, state: ServerState, event: ServerEvent): ApiError {
  const verb = VERB_WORDS[event] ?? event;
  const allowed = statesAllowing(event);
  const hint = STATE_HINTS[state];
  return new ApiError(409, 'ServerStateConflict',
    `Cannot ${verb} server ${name} while it is ${state}${hint ? ` (${hint})` : ''}; ${verb} is allowed when the server is ${allowed.join(' or ')}.`);
}

/** The next state, or the table's 409. */
export function transition(name: string, state: ServerState, event: ServerEvent): ServerState {
  const next = nextState(state, event);
  if (!next) throw refusal(name, state, event);
  return next;
}
