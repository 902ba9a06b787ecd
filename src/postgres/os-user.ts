import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { PostgresError } from './errors.js';

/**
 * Each server's PostgreSQL runs as an OS account of its own, so no server can open another's files or
 * socket: a system account without a home or a login shell, named after the server's id, removed with
 * the server.
 */

const run = promisify(execFile);

export interface OsUser {
  name: string;
  uid: number;
  gid: number;
}

const NAME_RE = /^pgbyok-[0-9a-f]{16}$/;

/** The account of a server: `pgbyok-` and 16 hex digits of its id (23 characters; Linux allows 32). */
export function serverOsUserName(serverId: string): string {
  const hex = serverId.replace(/[^0-9a-f]/gi, '').toLowerCase().slice(0, 16);
  if (hex.length !== 16) throw new PostgresError(`cannot derive an OS account from server id '${serverId}'`, 'Invalid');
  return `pgbyok-${hex}`;
}

/** The account's uid and gid from /etc/passwd, or undefined when it does not exist. */
export function lookupOsUser(name: string): OsUser | undefined {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 4) return { name, uid: Number(f[2]), gid: Number(f[3]) };
  }
  return undefined;
}

/** The account, which must exist; a clear error otherwise. */
export function requireOsUser(name: string): OsUser {
  const u = lookupOsUser(name);
  if (!u) throw new PostgresError(`the OS account ${name} of this server does not exist`, 'PrerequisiteMissing');
  return u;
}

/** useradd/userdel take the passwd lock; another process holding it makes them fail at once, so retry briefly. */
async function withPasswdLock(argv: [string, ...string[]], okStatuses: number[] = [0]): Promise<void> {
  let last = '';
  for (let attempt = 0; attempt < 25; attempt++) {
    try {
      await run(argv[0], argv.slice(1));
      return;
    } catch (e) {
      const err = e as { code?: number | string; stderr?: string };
      if (typeof err.code === 'number' && okStatuses.includes(err.code)) return;
      if (err.code === 'ENOENT') throw new PostgresError(`${argv[0]} is missing; it comes with the passwd package`, 'PrerequisiteMissing');
      last = String(err.stderr ?? e).trim();
      // The passwd lock held by another process, or (userdel) the account's last processes still exiting.
      if (!/lock|try again|currently used by process/i.test(last)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new PostgresError(`${argv.join(' ')} failed: ${last}`, 'Failed');
}

/** Creates the account (with a group of its own) unless it exists; returns it. */
export async function ensureOsUser(name: string): Promise<OsUser> {
  const existing = lookupOsUser(name);
  if (existing) return existing;
  if (!NAME_RE.test(name)) throw new PostgresError(`'${name}' is not a pgbyok server account name`, 'Invalid');
  // 9: the name exists already (another process created it in the meantime).
  await withPasswdLock(['useradd', '--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', '--user-group', '--comment', 'pgbyok PostgreSQL server', name], [0, 9]);
  return requireOsUser(name);
}

/** Removes the account and its group; an account that is already gone is fine. */
export async function removeOsUser(name: string): Promise<void> {
  if (!NAME_RE.test(name) || !lookupOsUser(name)) return;
  // 6: no such user.
  await withPasswdLock(['userdel', name], [0, 6]);
}
