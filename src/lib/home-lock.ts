import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
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

/**
 * One running platform per `$PGBYOK_HOME`: `pgbyok.pid` is created exclusively and holds the owner's pid.
 * A file left by a process that has died (kill -9, a crash) is taken over at once. Written by hand on
 * purpose: Node has no flock, and mtime-based lock libraries (proper-lockfile) would refuse a restart for
 * their staleness period right after a crash — the moment an operator restarts.
 * Returns the release function.
 */
export function acquireHomeLock(root: string): () => void {
  const path = join(root, 'pgbyok.pid');
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const owner = Number(readFileSync(path, 'utf8').trim());
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) {
        throw new HomeLockedError(`pgbyok is already running on ${root} (pid ${owner}); stop it first, or use another --home.`);
      }
      unlinkSync(path); // left by a process that is gone
      continue;
    }
    writeSync(fd, `${process.pid}\n`);
    closeSync(fd);
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
  throw new HomeLockedError(`Could not take the lock ${path}; another pgbyok is starting on ${root}.`);
}
