/**
 * What the walkthrough tests share: the README's first command run in a temporary PGBYOK_HOME, and what a
 * platform of that home could leave behind (its `pgbyok up`, PostgreSQL processes, mounts, loop devices).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../src/lib/ports.js';
import { ROOT } from './harness.js';

export interface WalkthroughRun {
  status: number | null;
  /** stdout and stderr together, as a terminal shows them (the script writes its refusals to stdout). */
  output: string;
}

export const newHome = () => mkdtempSync(join(tmpdir(), 'pgbyok-walk-'));

/**
 * `npm run walkthrough` with PGBYOK_HOME=home. A vault port of its own (as root the default is 443, which
 * another platform on this machine may hold); `wrap` runs it as another user (e.g. setpriv ... --).
 */
export async function runWalkthrough(home: string, env: Record<string, string> = {}, wrap: string[] = [], timeoutMs = 120_000): Promise<WalkthroughRun> {
  const cmd = [...wrap, 'npm', 'run', '--silent', 'walkthrough'];
  const r = spawnSync(cmd[0], cmd.slice(1), {
    cwd: ROOT,
    env: { ...process.env, PGBYOK_HOME: home, PGBYOK_VAULT_PORT: String(await freePort()), ...env },
    encoding: 'utf8',
    timeout: timeoutMs,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return { status: r.status, output: `${r.stdout}${r.stderr}${r.error ? `\n(${r.error.message})` : ''}` };
}

/** The pid of every process that runs with this PGBYOK_HOME or names it (pgbyok up, its PostgreSQL servers). */
export function processesOf(home: string): number[] {
  const pids: number[] = [];
  for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (env.includes(`PGBYOK_HOME=${home}`) || cmd.includes(home)) pids.push(Number(pid));
    } catch {
      // Gone already, or not ours to read.
    }
  }
  return pids.filter((p) => p !== process.pid);
}

/** What is left of a platform of `home`: processes, mounts and loop devices under it. */
export function leftovers(home: string): string[] {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m) => m?.startsWith(home));
  const loops = spawnSync('losetup', ['-a'], { encoding: 'utf8' }).stdout?.split('\n').filter((l) => l.includes(home)) ?? [];
  return [...processesOf(home).map((p) => `process ${p}: ${readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ')}`), ...mounts.map((m) => `mount ${m}`), ...loops.map((l) => `loop ${l}`)];
}

/** Waits up to `timeoutMs` for `pid` to exit. */
export async function exited(pid: number, timeoutMs = 60_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 200));
  }
}
