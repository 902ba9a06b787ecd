/**
 * Looking for a secret in another process: its V8 heap (a heap snapshot, which holds every live string and
 * collects garbage first) and its whole readable memory (/proc/PID/mem, root only), which also sees
 * Buffer contents, off-heap backing stores, worker threads and native (OpenSSL) memory.
 */
import { closeSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { eventually } from './harness.js';

/** Every textual form a key might take in a JavaScript process. */
export function keyForms(key: Buffer): Record<string, string> {
  return {
    base64url: key.toString('base64url'),
    base64: key.toString('base64'),
    hex: key.toString('hex'),
    HEX: key.toString('hex').toUpperCase(),
    latin1: key.toString('latin1'),
  };
}

/**
 * Makes the process (started with --heapsnapshot-signal=SIGUSR2 --diagnostic-dir=DIR) write a heap
 * snapshot, and returns the names of `forms` found in any of its strings. The snapshot is removed.
 */
export async function heapSnapshotFinds(pid: number, dir: string, forms: Record<string, string>): Promise<string[]> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  const file = await eventually(() => readdirSync(dir).find((f) => f.endsWith('.heapsnapshot') && !before.has(f)), 'a heap snapshot', 60_000);
  const path = join(dir, file);
  // Written synchronously by the platform's main thread: complete once it parses.
  const snapshot = await eventually(() => {
    if (statSync(path).size < 1000) return undefined;
    return JSON.parse(readFileSync(path, 'utf8')) as { strings: string[] };
  }, 'a complete heap snapshot', 120_000, 500);
  rmSync(path, { force: true });
  if (snapshot.strings.length < 1000) throw new Error('the heap snapshot holds implausibly few strings');
  return Object.entries(forms).filter(([, form]) => snapshot.strings.some((s) => s.includes(form))).map(([k]) => k);
}

/** How many times each needle occurs in the process's readable, writable memory (root reads any process). */
export function processMemoryCounts(pid: number, needles: Record<string, Buffer>): Record<string, number> {
  const counts: Record<string, number> = Object.fromEntries(Object.keys(needles).map((k) => [k, 0]));
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter(Boolean);
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  const chunk = Buffer.alloc(16 * 1024 * 1024);
  const overlap = Math.max(...Object.values(needles).map((n) => n.length));
  try {
    for (const line of maps) {
      const [range, perms, , , , path = ''] = line.split(/\s+/);
      if (!perms.startsWith('rw') || path === '[vvar]' || path === '[vsyscall]') continue;
      const [start, end] = range.split('-').map((h) => parseInt(h, 16));
      for (let at = start; at < end; at += chunk.length - overlap) {
        const want = Math.min(chunk.length, end - at);
        let n: number;
        try {
          n = readSync(fd, chunk, 0, want, at);
        } catch {
          break;
        }
        const view = chunk.subarray(0, n);
        for (const [k, needle] of Object.entries(needles)) {
          // Occurrences that lie wholly in the overlap were counted by the previous window.
          for (let i = view.indexOf(needle); i >= 0; i = view.indexOf(needle, i + 1)) if (at === start || i + needle.length > overlap) counts[k]++;
        }
        if (at + want >= end) break;
      }
    }
  } finally {
    closeSync(fd);
  }
  return counts;
}
