import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PostgresError } from './errors.js';

/** Where PostgreSQL's programs are, and how pgbyok starts and runs them: as a server's OS account, or as root. */

/** Debian's directory of PostgreSQL 15's programs (postgresql-15 and postgresql-client-15). */
export const DEBIAN_BINDIR = '/usr/lib/postgresql/15/bin';

let cachedBin: string | undefined;
/** The PostgreSQL 15 binaries: `pg_config --bindir`, else Debian's path; a clear error when absent. */
export function postgresBinDir(): string {
  if (cachedBin) return cachedBin;
  const candidates: string[] = [];
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim());
  } catch {
    // pg_config is optional: fall back to the Debian layout.
  }
  candidates.push(DEBIAN_BINDIR);
  for (const dir of candidates) {
    if (['initdb', 'pg_ctl', 'postgres'].every((b) => existsSync(join(dir, b)))) {
      const version = execFileSync(join(dir, 'postgres'), ['--version'], { encoding: 'utf8' });
      if (!/\(PostgreSQL\) 15\./.test(version)) continue;
      cachedBin = dir;
      return dir;
    }
  }
  throw new PostgresError('PostgreSQL 15 server binaries were not found (initdb, pg_ctl, postgres). Install them with: apt-get install postgresql-15', 'PrerequisiteMissing');
}

/** Starts a command as the given OS account, with piped stdio (for tools whose output is streamed). */
export function spawnAs(user: string, argv: string[], timeoutMs?: number): ChildProcess {
  return spawn('runuser', ['-u', user, '--', ...argv], { stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutMs });
}

/** The settings every superuser session of pgbyok's starts with (see spawnAsRoot). */
export const SUPERUSER_SESSION_OPTIONS = '-c search_path=pg_catalog,pg_temp -c default_transaction_read_only=off';

/** Starts one of pgbyok's own tools as root (the only OS user the socket's ident map admits). */
export function spawnAsRoot(argv: string[], timeoutMs?: number): ChildProcess {
  // No PG* variable of the platform's environment (a password, a service, options) reaches pgbyok's logins.
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PG')));
  // Options sent at connection start outrank what the administrator may set per database or per role
  // (ALTER DATABASE postgres SET search_path = public, ...): pgbyok's superuser sessions resolve every
  // function and operator from pg_catalog first, so no object the administrator creates can stand in
  // for a built-in and run as the superuser.
  env.PGOPTIONS = SUPERUSER_SESSION_OPTIONS;
  return spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutMs, env });
}


export interface ToolResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs one of PostgreSQL's programs to its end and collects its output (it never rejects: a tool that could
 * not start has status null): as the given OS account, or as root for the clients that log in as pgbyok
 * over the socket. Asynchronous on purpose: the platform's one event loop also serves the vault and the
 * API, and must not freeze while initdb or a start runs.
 */
export function runTool(tool: string, args: string[], as: 'root' | { user: string }, timeoutMs = 300_000): Promise<ToolResult> {
  return new Promise((resolve) => {
    const argv = [join(postgresBinDir(), tool), ...args];
    const child = as === 'root' ? spawnAsRoot(argv, timeoutMs) : spawnAs(as.user, argv, timeoutMs);
    child.stdin!.end();
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('error', (e) => resolve({ status: null, stdout, stderr: stderr + String(e) }));
    child.once('close', (status) => resolve({ status, stdout, stderr }));
  });
}
