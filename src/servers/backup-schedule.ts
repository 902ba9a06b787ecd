import { describe, type ServerKit } from './kit.js';
import { OperationConflict } from './operations/operations.repo.js';
import type { ServerLocks } from './server-locks.js';

/**
 * The backup schedule of every Ready primary: WAL sealed into the store, a Backup operation when the
 * newest full backup is older than the interval, and pruning past the retention.
 */
export function createBackupSchedule(k: ServerKit, d: { locks: ServerLocks; backupIntervalMs: () => number }) {
  return {
    async pass(): Promise<void> {
      for (const s of k.repo.all()) {
        if (k.runner.stopping || s.state !== 'Ready' || s.replicationRole !== 'Primary') continue;
        await d.locks.run(s.name, async () => {
          const fresh = k.repo.byId(s.id);
          if (!fresh || fresh.state !== 'Ready' || fresh.replicationRole !== 'Primary' || !k.pgOf(fresh).isRunning()) return;
          await k.backups.archive(fresh, k.pgOf(fresh));
          const newest = k.backups.list(fresh).at(-1);
          if (!newest || k.clock.now() - Date.parse(newest.endTime) > d.backupIntervalMs()) {
            try {
              k.runner.enqueue({ kind: 'Backup', tenantId: fresh.tenantId, serverId: fresh.id, serverName: fresh.name, caller: 'pgbyok (backup schedule)' });
            } catch (e) {
              if (!(e instanceof OperationConflict)) throw e;
            }
          }
          k.backups.prune(fresh, fresh.backupRetentionDays);
        }).catch((e) => k.logger.warn({ server: s.name, err: describe(e) }, 'backup pass failed'));
      }
    },
  };
}
