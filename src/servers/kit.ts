import type { Logger } from 'pino';
import type { BackupsService } from '../backups/backups.service.js';
import type { Clock } from '../lib/clock.js';
import type { HomePaths } from '../lib/home.js';
import type { Directory } from '../keyaccess/directory.js';
import type { KeyLocator } from '../keyaccess/encryption.js';
import { parseKeyUri, type KeyAccess } from '../keyaccess/key-access.js';
import type { Custody } from './custody.js';
import type { Instances } from './instances.js';
import { serverResourceId, type DataEncryption, type Server, type ServerState } from './model/server.js';
import { transition, type ServerEvent } from './model/state-machine.js';
import { ACTIVITY_OPERATIONS, type Monitoring } from './monitoring.js';
import type { Runner } from './operations/runner.js';
import { CancelOperation } from './operations/step-errors.js';
import type { Replication } from './replication.js';
import type { ServerRuntime } from './runtime.js';
import type { ServerPostgres } from './server-postgres.js';
import type { ServerPatch, ServersRepo } from './servers.repo.js';

export { ACTIVITY_OPERATIONS };

/** The parts every workflow and the key monitor work with, built once by the servers service. */
export interface ServerKit {
  repo: ServersRepo;
  runtime: ServerRuntime;
  pgOf: ServerPostgres;
  custody: Custody;
  instances: Instances;
  replication: Replication;
  backups: BackupsService;
  directory: Directory;
  keys: KeyAccess;
  locator: KeyLocator;
  monitoring: Monitoring;
  runner: Runner;
  clock: Clock;
  logger: Logger;
  home: HomePaths;
  tlsFor: (serverName: string) => Promise<{ cert: string; key: string; ca: string }>;
  eventsEndpoint: () => string;
}

export const describe = (e: unknown): string => (e instanceof Error ? e.message : String(e));

export function activity(k: Pick<ServerKit, 'monitoring'>, s: Pick<Server, 'tenantId' | 'name'>, operation: string, status: 'Started' | 'Succeeded' | 'Failed' | 'Warning', message: string, caller?: string) {
  k.monitoring.record({
    tenantId: s.tenantId, resourceId: serverResourceId(s.tenantId, s.name), serverName: s.name, operation, status,
    level: status === 'Failed' ? 'Error' : status === 'Warning' ? 'Warning' : 'Informational', caller, message,
  });
}

/** The operation's server, read fresh; an operation whose server is gone has nothing left to do. */
export function serverOf(k: Pick<ServerKit, 'repo'>, id: string): Server {
  const s = k.repo.byId(id);
  if (!s) throw new CancelOperation('The server no longer exists.');
  return s;
}

/**
 * Applies a transition of the state machine to the stored server, as compare-and-set on the state it was
 * decided from. Returns the server as stored afterwards, or undefined when the state had moved on.
 */
export function applyTransition(k: Pick<ServerKit, 'repo'>, s: Server, event: ServerEvent, patch: Omit<ServerPatch, 'state'> = {}): Server | undefined {
  const to = transition(s.name, s.state, event);
  return k.repo.transition(s.id, s.state, to, patch) ? k.repo.byId(s.id) : undefined;
}

/** The event that hands an updated server back in the state it had before. */
export const returnEvent = (resumeState: ServerState): ServerEvent =>
  resumeState === 'Stopped' ? 'updatedStopped' : resumeState === 'Inaccessible' ? 'keyLost' : 'updatedRunning';

const subscriptionName = (s: Pick<Server, 'name'>) => `pgbyok-server-${s.name}`.slice(0, 64);

/** Vault events are a speed-up (polling still watches the key): failures are warnings. */
export async function subscribeEvents(k: ServerKit, s: Server, enc: DataEncryption = s.current.encryption) {
  if (enc.type !== 'AzureKeyVault') return;
  try {
    await k.directory.subscribeVaultEvents(parseKeyUri(enc.primaryKeyURI!).origin, subscriptionName(s), k.eventsEndpoint());
  } catch (e) {
    k.logger.warn({ server: s.name, err: describe(e) }, 'could not subscribe to vault events');
  }
}

export async function unsubscribeEvents(k: ServerKit, s: Pick<Server, 'name'>, enc: DataEncryption) {
  if (enc.type !== 'AzureKeyVault') return;
  try {
    await k.directory.unsubscribeVaultEvents(parseKeyUri(enc.primaryKeyURI!).origin, subscriptionName(s));
  } catch (e) {
    k.logger.warn({ server: s.name, err: describe(e) }, 'could not remove the vault event subscription');
  }
}
