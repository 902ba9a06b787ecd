import { mkdirSync, readFileSync, writeFileSync, renameSync, existsSync, chmodSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Everything pgbyok keeps lives under one directory, so `PGBYOK_HOME` isolates a whole installation. Its
 * default is `~/.pgbyok`, except as root: root's home is private (0700 on Debian), and each server's own OS
 * account must reach its data directory inside the home, so root's default is `/var/lib/pgbyok`.
 */
export function resolveHome(flag?: string): string {
  return flag ?? process.env.PGBYOK_HOME ?? defaultHome();
}

export function defaultHome(): string {
  return process.getuid?.() === 0 ? '/var/lib/pgbyok' : join(homedir(), '.pgbyok');
}

export interface HomePaths {
  root: string;
  db: string;
  masterKey: string;
  settings: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  /** The vault listener's certificate (every name under `vault.<domain>`). */
  vaultCert: string;
  vaultKey: string;
  trustedServiceCert: string;
  trustedServiceKey: string;
  adminCredential: string;
  cliProfile: string;
  logs: string;
}

export function homePaths(root: string): HomePaths {
  return {
    root,
    db: join(root, 'pgbyok.db'),
    masterKey: join(root, 'secrets', 'master.key'),
    settings: join(root, 'settings.json'),
    caCert: join(root, 'tls', 'ca.pem'),
    caKey: join(root, 'secrets', 'ca.key.pem'),
    serverCert: join(root, 'tls', 'server.pem'),
    serverKey: join(root, 'secrets', 'server.key.pem'),
    vaultCert: join(root, 'tls', 'vault.pem'),
    vaultKey: join(root, 'secrets', 'vault.key.pem'),
    trustedServiceCert: join(root, 'tls', 'trusted-service.pem'),
    trustedServiceKey: join(root, 'secrets', 'trusted-service.key.pem'),
    adminCredential: join(root, 'secrets', 'admin.json'),
    cliProfile: join(root, 'secrets', 'cli-profile.json'),
    logs: join(root, 'logs'),
  };
}

export function ensureHomeDirs(p: HomePaths): void {
  // 0711: the postgres OS user must traverse to its data directory inside a volume, but may list nothing.
  mkdirSync(p.root, { recursive: true, mode: 0o711 });
  chmodSync(p.root, 0o711);
  mkdirSync(join(p.root, 'secrets'), { recursive: true, mode: 0o700 });
  chmodSync(join(p.root, 'secrets'), 0o700);
  mkdirSync(join(p.root, 'tls'), { recursive: true, mode: 0o755 });
  mkdirSync(p.logs, { recursive: true, mode: 0o700 });
}

/** Writes a file atomically (temp + rename) with the given mode, so a crash never leaves half a secret. */
export function writeFileAtomic(path: string, data: string | Buffer, mode: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

/** Settings chosen at first start and kept: the platform port, the vaults' port and the default region. */
export interface Settings {
  port: number;
  host: string;
  /** The one HTTPS port of every vault (absent in a home made before vaults had names; chosen on its next start). */
  vaultPort?: number;
  /** The domain vaults and servers are named under (as last started; `PGBYOK_DOMAIN` decides). */
  domain?: string;
  defaultLocation: string;
  defaultTenantId: string;
}

export function readSettings(p: HomePaths): Settings | undefined {
  if (!existsSync(p.settings)) return undefined;
  return JSON.parse(readFileSync(p.settings, 'utf8')) as Settings;
}

export function writeSettings(p: HomePaths, s: Settings): void {
  writeFileAtomic(p.settings, JSON.stringify(s, null, 2) + '\n', 0o644);
}

/** The origin every client uses: loopback by IP, so no resolver (and no ::1 vs 127.0.0.1 race) is involved. */
export function originOf(host: string, port: number): string {
  return `https://${host}:${port}`;
}
