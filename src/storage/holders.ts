import { readdirSync, readlinkSync } from 'node:fs';

/**
 * Which processes keep a directory in use, read from /proc: an open file descriptor, a working directory
 * or a root below the path. A volume cannot be locked while anything holds its encrypted directory, so
 * these are the processes a lock names or stops first.
 */

/** Processes that hold something open (fd, cwd or root) below a path: the users a lock must stop first. */
export function holdersOf(path: string): number[] {
  const pids: number[] = [];
  const inside = (p: string) => p === path || p.startsWith(path + '/');
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    try {
      const links = ['cwd', 'root'].map((l) => `/proc/${pid}/${l}`);
      for (const fd of readdirSync(`/proc/${pid}/fd`)) links.push(`/proc/${pid}/fd/${fd}`);
      if (links.some((l) => {
        try {
          return inside(readlinkSync(l));
        } catch {
          return false;
        }
      })) pids.push(pid);
    } catch {
      // The process went away, or is not ours to read.
    }
  }
  return pids;
}
