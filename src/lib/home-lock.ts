import { linkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export class HomeLockedError extends Error {}

/** Whether a process with this pid is alive (signal 0 probes without signalling). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid of the live process that holds the lock of `root`, if one does (what `pgbyok doctor` reports). */
export function lockOwner(root: string): number | undefined {
  try {
    const owner = Number(readFileSync(join(root, 'pgbyok.pid'), 'utf8').trim());
    return Number.isInteger(owner) && owner > 0 && alive(owner) ? owner : undefined;
  } catch {
    return undefined;
  }
}

/**
 * One running platform per `$PGBYOK_HOME`: `pgbyok.pid` is created exclusively and holds the owner's pid.
 * It is written whole beside it and then hard-linked into place (link fails when the name exists), so no
 * one ever reads an empty lock file. A file left by a process that has died (kill -9, a crash) is taken
 * over at once. Written by hand on
 * purpose: Node has no flock, and mtime-based lock libraries (proper-lockfile) would refuse a restart for
 * their staleness period right after a crash — the moment an operator restarts.
 * Returns the release function.
 */
export function acquireHomeLock(root: string): () => void {
  const path = join(root, 'pgbyok.pid');
  const mine = `${path}.${process.pid}`;
  writeFileSync(mine, `${process.pid}\n`, { mode: 0o600 });
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(mine, path);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        if (attempt > 0) throw new HomeLockedError(`Could not take the lock ${path}; another pgbyok is starting on ${root}.`);
        const content = readFileSync(path, 'utf8');
        const owner = Number(content.trim());
        if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) {
          throw new HomeLockedError(`pgbyok is already running on ${root} (pid ${owner}); stop it first, or use another --home.`);
        }
        // Left by a process that is gone: removed only if it is still that file.
        if (readFileSync(path, 'utf8') === content) unlinkSync(path);
      }
    }
  } finally {
    unlinkSync(mine);
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    try {
      if (Number(readFileSync(path, 'utf8').trim()) === process.pid) unlinkSync(path);
    } catch {
      // already gone
    }
  };
}
