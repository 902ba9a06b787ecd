import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PostgresError } from './errors.js';

/**
 * The two PostgreSQL modules every server needs before it may start: pgbyok's guard (built from pg/guard
 * by scripts/install-pg-guard.sh) and Debian's pgextwlist (the extension allow-list). Without them the
 * administrator could grant itself the server-file roles or be unable to create allowed extensions, so a
 * server without them does not start.
 */
export const LIBDIR = '/usr/lib/postgresql/15/lib';
/** The two modules' files under the library directory. */
export const GUARD_MODULE = 'pgbyok_guard.so';
export const EXTWLIST_MODULE = 'plugins/pgextwlist.so';

export function requireSecurityModules(libdir = LIBDIR): void {
  if (!existsSync(join(libdir, GUARD_MODULE))) {
    throw new PostgresError(`pgbyok's PostgreSQL module is missing (${join(libdir, GUARD_MODULE)}): build and install it as root with scripts/install-pg-guard.sh`, 'PrerequisiteMissing');
  }
  if (!existsSync(join(libdir, EXTWLIST_MODULE))) {
    throw new PostgresError('The extension allow-list module is missing: apt-get install postgresql-15-pgextwlist', 'PrerequisiteMissing');
  }
}
