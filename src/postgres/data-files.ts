import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXTENSION_SCRIPTS, hbaConf, identConf } from './config.js';
import { requireOsUser, type OsUser } from './os-user.js';
import { effectiveValues, userConf } from './parameters.js';

/**
 * The files pgbyok itself writes into a server's PGDATA, each owned by the server's OS account: a fresh
 * empty PGDATA, the TLS files, the include lines it adds to postgresql.conf, and the files rewritten
 * before every start (client authentication, the user's parameters, the extension scripts) so that nothing
 * a user or a restored backup left there can drift.
 */

/** A PGDATA and the OS account that owns it (an instance's options are one). */
export interface OwnedDataDir {
  dataDir: string;
  osUser: string;
}

/** Writes a file inside PGDATA (a path relative to it), owned by the server's account. */
export function writeOwned(d: OwnedDataDir, name: string, content: string, mode = 0o600): void {
  const { uid, gid } = requireOsUser(d.osUser);
  const path = join(d.dataDir, name);
  writeFileSync(path, content, { mode });
  chownSync(path, uid, gid);
}

/** Appends `directive` to postgresql.conf (after `separator`) unless it is there already. */
export function includeInConf(d: OwnedDataDir, directive: string, separator = '\n'): void {
  const conf = readFileSync(join(d.dataDir, 'postgresql.conf'), 'utf8');
  if (!conf.includes(directive)) writeOwned(d, 'postgresql.conf', `${conf}${separator}${directive}\n`);
}

/** A fresh, empty PGDATA owned by the account (0700). */
export function freshDataDir(dataDir: string, { uid, gid }: OsUser): void {
  if (existsSync(dataDir)) rmSync(dataDir, { recursive: true, force: true });
  mkdirSync(dataDir, { mode: 0o700 });
  chownSync(dataDir, uid, gid);
}

/** The server's TLS certificate and key (inside the encrypted directory), and the CA clients trust. */
export function installTls(d: OwnedDataDir, tls: { cert: string; key: string; ca: string }): void {
  writeOwned(d, 'server.crt', tls.cert);
  writeOwned(d, 'server.key', tls.key);
  writeOwned(d, 'root.crt', tls.ca);
}

/** The user's parameters, in their own file (read at the next reload or start). */
export function writeParameters(d: OwnedDataDir & { parameters?: Record<string, string> }): void {
  writeOwned(d, 'pgbyok-parameters.conf', userConf(effectiveValues(d.parameters ?? {})));
}

/**
 * What pgbyok rewrites before every start: client authentication, the user's parameters, the extension
 * scripts, an empty postgresql.auto.conf, and the log and WAL staging directories. The managed settings
 * go on the command line instead (see config.ts).
 */
export function writeStartFiles(d: OwnedDataDir & { walStagingDir?: string; parameters?: Record<string, string> }): void {
  const { uid, gid } = requireOsUser(d.osUser);
  const dir = (path: string) => {
    if (!existsSync(path)) mkdirSync(path, { mode: 0o700 });
    chownSync(path, uid, gid);
    chmodSync(path, 0o700);
  };
  if (d.walStagingDir) dir(d.walStagingDir);
  dir(join(d.dataDir, 'log'));
  writeOwned(d, 'pg_hba.conf', hbaConf());
  writeOwned(d, 'pg_ident.conf', identConf());
  writeParameters(d);
  includeInConf(d, "include 'pgbyok-parameters.conf'");
  // An empty postgresql.auto.conf: ALTER SYSTEM is pgbyok's superuser's alone, and even it does not outlive a start.
  writeOwned(d, 'postgresql.auto.conf', '# Managed by pgbyok: server parameters are set through the API.\n');
  const scripts = join(d.dataDir, 'pgbyok-extensions');
  dir(scripts);
  for (const [ext, sql] of Object.entries(EXTENSION_SCRIPTS)) {
    dir(join(scripts, ext));
    writeOwned(d, join('pgbyok-extensions', ext, 'after-create.sql'), sql);
  }
}
