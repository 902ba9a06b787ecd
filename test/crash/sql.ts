/**
 * SQL against a pgbyok server as its users reach it: the administrator through the real psql over TLS on the
 * public port, and the platform's `pgbyok` superuser over the server's unix socket (root, peer auth). Superuser
 * sessions run with `search_path=pg_catalog,pg_temp`, so user tables are named `public.t`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Pgbyok } from '../harness.js';

export interface PsqlResult { status: number | null; stdout: string; stderr: string }

export function adminConn(p: Pgbyok, port: number, user = 'dbadmin'): string {
  return `host=localhost port=${port} dbname=postgres user=${user} sslmode=verify-full sslrootcert=${join(p.home, 'tls', 'ca.pem')} connect_timeout=5`;
}

/** psql as the administrator; never throws. */
export function psqlAs(p: Pgbyok, port: number, password: string, sql: string, user = 'dbadmin'): PsqlResult {
  const r = spawnSync('psql', [adminConn(p, port, user), '-XAt', '-v', 'ON_ERROR_STOP=1', '-c', sql], {
    env: { ...process.env, PGPASSWORD: password }, encoding: 'utf8', timeout: 30_000,
  });
  return { status: r.status, stdout: (r.stdout ?? '').trim(), stderr: r.stderr ?? '' };
}

/** psql as the administrator; throws with psql's stderr when it fails. */
export function psqlOk(p: Pgbyok, port: number, password: string, sql: string, user = 'dbadmin'): string {
  const r = psqlAs(p, port, password, sql, user);
  if (r.status !== 0) throw new Error(`psql on port ${port} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

/** The private port PostgreSQL itself listens on (behind the public one), from its postmaster.pid. */
export function privatePort(p: Pgbyok, region: string, name: string): number | undefined {
  const pid = join(p.home, 'regions', region, 'mnt', name, 'data', 'pgdata', 'postmaster.pid');
  if (!existsSync(pid)) return undefined;
  return Number(readFileSync(pid, 'utf8').split('\n')[3]);
}

/** SQL as the `pgbyok` superuser over the server's unix socket (as root); undefined when the server does not run. */
export function superSql(p: Pgbyok, region: string, name: string, sql: string): PsqlResult | undefined {
  const port = privatePort(p, region, name);
  if (!port) return undefined;
  const r = spawnSync('psql', ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-h', join(p.home, 'regions', region, 'run', name), '-p', String(port), '-U', 'pgbyok', '-d', 'postgres', '-c', sql], {
    encoding: 'utf8', timeout: 30_000,
  });
  return { status: r.status, stdout: (r.stdout ?? '').trim(), stderr: r.stderr ?? '' };
}
