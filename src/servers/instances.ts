import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import type { KeyFailure } from '../keyaccess/key-access.js';
import { createFrontDoors } from './front-door.js';
import { firewallRefusal } from './firewall-rules.js';
import type { Custody } from './custody.js';
import type { Server } from './model/server.js';
import { freePort } from '../lib/ports.js';
import { inaccessibleRefusal, type ResponderTls } from './responder.js';
import type { ServerRuntime } from './runtime.js';
import type { ServerPostgres } from './server-postgres.js';
import type { ServersRepo } from './servers.repo.js';

/**
 * Instance supervision: a server's data is reachable exactly while its key is in the kernel and its
 * PostgreSQL runs behind the front door. Bring-up unwraps, unlocks, starts and serves; shutdown stops
 * PostgreSQL and takes the key out of the kernel; a locked server's port refuses with the reason.
 */
export interface InstancesDeps {
  repo: ServersRepo;
  runtime: ServerRuntime;
  pgOf: ServerPostgres;
  custody: Custody;
  logger: Logger;
  responderTls: ResponderTls;
}

const LOOPBACK = ['127.0.0.1', '::1'];
const describe = (e: unknown) => (e instanceof Error ? e.message : String(e));

export function createInstances(d: InstancesDeps) {
  const fronts = createFrontDoors({
    hosts: LOOPBACK, tls: d.responderTls, log: (server, message, e) => d.logger.error({ server, err: describe(e) }, message),
    admission: (name, address) => { const s = d.repo.byName(name); return s ? firewallRefusal(d.repo.firewallRules(s.id), address) : undefined; },
  });
  /** Why each locked server's key failed, for the refusal at its front door. */
  const lockFailures = new Map<string, KeyFailure>();
  /** Servers whose front door pipes to PostgreSQL now. */
  const serving = new Set<string>();

  const usedPorts = () => new Set([...d.repo.usedPorts(), ...d.runtime.privatePorts()]);

  const serve = async (s: Server) => {
    lockFailures.delete(s.name);
    await fronts.serve(s, d.runtime.privatePortOf(s));
    serving.add(s.name);
  };

  /** `failure` unknown (after a restart, before the monitor's first look): the refusal says access was lost. */
  const refuse = async (s: Server, failure: KeyFailure | undefined) => {
    if (failure) lockFailures.set(s.name, failure);
    serving.delete(s.name);
    await fronts.refuse(s, () => inaccessibleRefusal(s.name, lockFailures.get(s.name)));
  };

  const close = async (s: Pick<Server, 'name'>) => {
    serving.delete(s.name);
    await fronts.close(s.name);
  };

  /** Stops PostgreSQL (sessions first) and removes the DEK from the kernel; a stop past `timeoutSeconds` is made immediate. */
  const shutdown = async (s: Server, mode: 'fast' | 'immediate' = 'fast', timeoutSeconds = 120) => {
    const volume = d.runtime.volumeOf(s);
    const pg = d.pgOf(s, volume);
    try {
      if (pg.isRunning()) {
        try {
          await pg.terminateSessions();
        } catch {
          // Sessions end with the stop anyway.
        }
        try {
          await pg.stop(mode, timeoutSeconds);
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

  /** The volume unlocked with the DEK from the vault (it leaves this process on its way to the kernel). */
  const unlock = async (s: Server) => {
    const volume = d.runtime.volumeOf(s);
    volume.unlock(await d.custody.openDek(s, volume));
    return volume;
  };

  /** Before an instance object is made for a start: PostgreSQL listens on its own loopback port. */
  const assignPrivatePort = (s: Server) => d.runtime.assignPrivatePort(s, () => freePort(usedPorts()));

  const startPostgres = async (s: Server) => {
    await assignPrivatePort(s);
    await d.pgOf(s).start();
  };

  return {
    usedPorts,
    newPublicPort: () => freePort(usedPorts()),
    serve,
    refuse,
    close,
    shutdown,
    unlock,
    startPostgres,
    assignPrivatePort,
    /** Until the server is brought up after a restart of the platform, its port answers as PostgreSQL does while it starts. */
    holdPort: (s: Server) => fronts.refuse(s, () => ({ message: 'the database system is starting up' })),
    lockFailure: (name: string) => lockFailures.get(name),
    noteLockFailure: (name: string, failure: KeyFailure) => void lockFailures.set(name, failure),
    /** Unwrap, unlock, start, serve. Throws KeyAccessError when the key refuses. */
    async bringUp(s: Server) {
      await d.custody.checkKeyAttributes(s.current.encryption);
      await unlock(s);
      await startPostgres(s);
      // A replica recorded as a primary while it was down (its primary was deleted) finishes its promotion.
      if (s.replicationRole === 'Primary' && !s.restoreSpec && (await d.pgOf(s).isInRecovery())) await d.pgOf(s).promote();
      await serve(s);
    },
    /** Whether the server's data is reachable now: key in the kernel, PostgreSQL running, front door piping. */
    isUp(s: Server): boolean {
      const volume = d.runtime.volumeOf(s);
      return serving.has(s.name) && existsSync(volume.image) && volume.isUnlocked() && d.pgOf(s, volume).isRunning();
    },
  };
}

export type Instances = ReturnType<typeof createInstances>;
