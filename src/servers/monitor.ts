import pLimit from 'p-limit';
import { KeyAccessError, parseKeyUri } from '../keyaccess/key-access.js';
import { converge } from './converge.js';
import { activity, ACTIVITY_OPERATIONS, applyTransition, describe, type ServerKit } from './kit.js';
import { lockOut } from './lockout.js';
import type { Server } from './model/server.js';
import { OperationConflict } from './operations/operations.repo.js';
import type { ServerLocks } from './server-locks.js';

export interface MonitorDeps {
  locks: ServerLocks;
  graceMs: () => number;
  /** How many servers are checked at once. */
  concurrency?: number;
}

/** The grace policy for a vault that cannot be reached: pure, so it is tested without a clock. */
export function graceExpired(unreachableSinceMs: number | undefined, nowMs: number, graceMs: number): boolean {
  return unreachableSinceMs !== undefined && nowMs - unreachableSinceMs > graceMs;
}

/**
 * The key monitor: every customer-key server is checked as Azure checks it (get the key, wrap and unwrap
 * a random probe with the version that wraps the DEK; the DEK itself is never unwrapped here), many at a
 * time over kept-alive connections, so detection does not slow down with the number of servers. A lost
 * key locks the server; access that comes back opens a Revalidate operation; a new version of a
 * versionless key opens an Update that re-wraps. It is also the supervisor: a Ready server whose
 * PostgreSQL died is brought up again.
 */
export function createKeyMonitor(k: ServerKit, d: MonitorDeps) {
  const limit = pLimit(d.concurrency ?? 16);
  const soon = new Map<string, NodeJS.Timeout>();
  let stopping = false;

  const open = (s: Server, spec: Parameters<ServerKit['runner']['enqueue']>[0], before?: () => void) => {
    try {
      k.runner.enqueue(spec, before);
    } catch (e) {
      // Something else is already running on it: the next pass looks again.
      if (!(e instanceof OperationConflict)) k.logger.warn({ server: s.name, err: describe(e) }, 'the key monitor could not open an operation');
    }
  };

  const check = async (s: Server): Promise<void> => {
    if (s.current.encryption.type !== 'AzureKeyVault' || !['Ready', 'Inaccessible', 'Stopped'].includes(s.state)) return;
    if (k.runner.hasOpen(s.name)) return;
    const enc = s.current.encryption;
    try {
      const latestKid = await k.custody.checkKeyAttributes(enc);
      await k.keys.probe(s.current.wrappedBy, k.locator.principalOf(enc));
      if (s.keyUnreachableSince) k.repo.update(s.id, { keyUnreachableSince: null });
      if (s.state === 'Stopped') {
        if (s.keyStatus !== 'Valid') k.repo.update(s.id, { keyStatus: 'Valid' }, 'Stopped');
        return;
      }
      if (s.state === 'Inaccessible') {
        activity(k, s, ACTIVITY_OPERATIONS.ServerAvailable, 'Succeeded', `Access to the key of ${s.name} is back; revalidating automatically.`);
        open(s, { kind: 'Revalidate', tenantId: s.tenantId, serverId: s.id, serverName: s.name, caller: 'pgbyok (key monitor)' });
        return;
      }
      if (!parseKeyUri(enc.primaryKeyURI!).version && latestKid && latestKid !== s.current.wrappedBy) {
        open(s, {
          kind: 'Update', tenantId: s.tenantId, serverId: s.id, serverName: s.name, caller: 'pgbyok (key monitor)',
          input: { target: enc, why: 'the key has a new version', resumeState: 'Ready' },
        }, () => {
          if (!applyTransition(k, s, 'updateKey')) throw new OperationConflict(undefined);
        });
        return;
      }
      // The supervisor half: a Ready server whose PostgreSQL died is started again.
      if (!k.pgOf(s).isRunning()) {
        activity(k, s, ACTIVITY_OPERATIONS.start, 'Warning', `PostgreSQL of ${s.name} was not running; starting it.`);
        await converge(k, s);
      }
    } catch (e) {
      if (!(e instanceof KeyAccessError)) {
        k.logger.error({ server: s.name, err: describe(e) }, 'key check failed');
        return;
      }
      if (e.transient) {
        const now = k.clock.now();
        const since = s.keyUnreachableSince ?? now;
        if (!s.keyUnreachableSince) {
          k.repo.update(s.id, { keyUnreachableSince: now });
          activity(k, s, ACTIVITY_OPERATIONS.KeyAccessFailure, 'Warning', `Key of ${s.name} unreachable: ${e.message}; grace period ${d.graceMs() / 1000}s.`);
        }
        if (s.state === 'Ready' && graceExpired(since, now, d.graceMs())) await lockOut(k, s, `${e.message} for longer than the grace period`, e.reason);
        return;
      }
      if (s.state === 'Stopped') {
        if (s.keyStatus !== 'Invalid') {
          activity(k, s, ACTIVITY_OPERATIONS.KeyAccessFailure, 'Failed', `Key access for stopped server ${s.name} failed: ${e.message}; it cannot start until access is restored.`);
          await lockOut(k, s, e.message, e.reason);
        }
        return;
      }
      if (s.state !== 'Inaccessible' || s.inaccessibleReason !== e.message) {
        activity(k, s, ACTIVITY_OPERATIONS.KeyAccessFailure, 'Failed', `Key access for ${s.name} failed: ${e.message}.`);
      }
      if (s.state === 'Inaccessible') {
        if (s.inaccessibleReason !== e.message) k.repo.update(s.id, { inaccessibleReason: e.message }, 'Inaccessible');
        k.instances.noteLockFailure(s.name, e.reason);
        return;
      }
      await lockOut(k, s, e.message, e.reason);
    }
  };

  const checkNamed = (name: string) => d.locks.run(name, async () => {
    const s = k.repo.byName(name);
    if (s) await check(s);
  });

  return {
    check: checkNamed,
    /** One pass over every server, `concurrency` at a time. */
    async pass(): Promise<void> {
      await Promise.all(k.repo.all().map((s) => limit(() => (stopping ? undefined : checkNamed(s.name).catch((e) => k.logger.error({ server: s.name, err: describe(e) }, 'monitor pass failed'))))));
    },
    /** An immediate check (debounced), e.g. when the vault announces a change. */
    checkSoon(name: string, delayMs = 100) {
      if (soon.has(name) || stopping) return;
      soon.set(name, setTimeout(() => {
        soon.delete(name);
        void checkNamed(name).catch(() => undefined);
      }, delayMs));
    },
    /** Vault events: every server that uses the key (or the vault) is checked at once. */
    onVaultEvents(events: { eventType: string; data: { Id?: string; VaultName?: string; ObjectType?: string; ObjectName?: string } }[]) {
      for (const ev of events) {
        let origin: string | undefined;
        try {
          origin = ev.data.Id ? new URL(ev.data.Id).origin : undefined;
        } catch {
          continue;
        }
        for (const s of k.repo.all()) {
          const uri = s.current.encryption.primaryKeyURI;
          if (!uri) continue;
          const key = parseKeyUri(uri);
          if (key.origin !== origin) continue;
          if (ev.data.ObjectType === 'Key' && ev.data.ObjectName !== key.name) continue;
          this.checkSoon(s.name);
        }
      }
    },
    stop() {
      stopping = true;
      for (const t of soon.values()) clearTimeout(t);
      soon.clear();
    },
  };
}

export type KeyMonitor = ReturnType<typeof createKeyMonitor>;
