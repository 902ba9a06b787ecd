import { accessSync, constants as fsConstants, existsSync, statSync } from 'node:fs';
import { lookup } from 'node:dns/promises';
import { createServer } from 'node:net';
import { release } from 'node:os';
import { delimiter, join } from 'node:path';
import { lockOwner } from '../lib/home-lock.js';
import { mounts } from '../storage/devices.js';

/**
 * Everything the doctor asks of the machine, behind one small interface so the whole decision table can
 * run on fakes. The real probe uses node's APIs only (no shelling out): stat, a PATH walk, getaddrinfo
 * (through nsswitch, as every client of the platform resolves), a trial listen.
 */
export interface Probe {
  uid(): number;
  exists(path: string): boolean;
  /** The executable a command name runs (PATH first, then the system directories), or undefined. */
  command(name: string): string | undefined;
  /** Undefined when the name resolves; otherwise why it does not. */
  resolve(host: string): Promise<string | undefined>;
  portFree(port: number): Promise<boolean>;
  /** The running kernel's release (`6.1.0-18-amd64`). */
  kernel(): string;
  /** The type of the filesystem that holds `path` (or its nearest existing parent), if known. */
  filesystemOf(path: string): string | undefined;
  /** The pid of the live pgbyok that holds the home's lock, if one does. */
  runningPid(home: string): number | undefined;
  /** Whether the home's database has a managed HSM. */
  hsmsExist(dbPath: string): Promise<boolean>;
}

/** System directories a root shell has on PATH, looked in too (a non-root PATH lacks the sbin ones). */
const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
const RESOLVE_TIMEOUT_MS = 3000;

function executable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

export const realProbe: Probe = {
  uid: () => process.getuid?.() ?? -1,
  exists: (path) => existsSync(path),
  command(name) {
    const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...SYSTEM_DIRS];
    return dirs.map((d) => join(d, name)).find(executable);
  },
  async resolve(host) {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string>((r) => (timer = setTimeout(() => r(`no answer within ${RESOLVE_TIMEOUT_MS / 1000} s`), RESOLVE_TIMEOUT_MS)));
    try {
      return await Promise.race([lookup(host).then(() => undefined, (e: NodeJS.ErrnoException) => e.code ?? e.message), timeout]);
    } finally {
      clearTimeout(timer);
    }
  },
  portFree: (port) => new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  }),
  kernel: () => release(),
  filesystemOf(path) {
    try {
      const table = mounts();
      let best: { target: string; fstype: string } | undefined;
      for (const m of table) {
        if ((path === m.target || path.startsWith(m.target.endsWith('/') ? m.target : `${m.target}/`)) && (!best || m.target.length >= best.target.length)) best = m;
      }
      return best?.fstype;
    } catch {
      return undefined;
    }
  },
  runningPid: (home) => lockOwner(home),
  async hsmsExist(dbPath) {
    if (!existsSync(dbPath)) return false;
    try {
      // Loaded here only: the doctor runs (and names what is missing) even where a native build failed.
      const { default: Database } = await import('better-sqlite3');
      const { createVaultRepo } = await import('../vault/vault.repo.js');
      const db = new Database(dbPath, { readonly: true, fileMustExist: true });
      try {
        return createVaultRepo(db).anyHsm();
      } finally {
        db.close();
      }
    } catch {
      // A database that cannot be read may hold HSMs: the module is then asked for (fail closed).
      return true;
    }
  },
};

/** One thing the host must offer (root, a file, a command) and what to do when it is missing. */
export interface HostRequirement {
  check: string;
  needs: { root: true } | { file: string } | { command: string };
  /** What is wrong when it is missing. */
  problem: string;
  /** The command or step that fixes it. */
  fix: string;
  /** The Debian package that provides it, when one does. */
  package?: string;
}

/** Where the requirement is met (the file or the command's path), or undefined when it is not. */
export function metBy(r: HostRequirement, probe: Probe): string | undefined {
  if ('root' in r.needs) return probe.uid() === 0 ? 'uid 0' : undefined;
  if ('file' in r.needs) return probe.exists(r.needs.file) ? r.needs.file : undefined;
  return probe.command(r.needs.command);
}

export function unmet(rs: readonly HostRequirement[], probe: Probe): HostRequirement[] {
  return rs.filter((r) => metBy(r, probe) === undefined);
}
