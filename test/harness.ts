/**
 * Test harness: runs the real `bin/pgbyok up` in a child process with its own PGBYOK_HOME, and talks to it
 * over HTTPS exactly as a user or an SDK would. Everything it starts is stopped by `stop()`, also on failure.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, cpSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClientSecretCredential } from '@azure/identity';
import { httpCall, type HttpResponse } from '../src/lib/http-client.js';
import { freePort } from '../src/lib/ports.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(ROOT, 'bin', 'pgbyok');
/** The vaults' own audience under the default domain (vaults also accept Azure's `https://vault.azure.net`). */
export const VAULT_RESOURCE = 'https://vault.localhost';
export const MGMT_RESOURCE = 'https://management.azure.com';

export interface Cred {
  tenantId: string;
  clientId: string;
  clientSecret: string;
}

export interface Pgbyok {
  home: string;
  origin: string;
  ca: string;
  admin: Cred & { objectId: string };
  /** Runs the CLI against this instance; returns parsed JSON (or undefined for no output). Throws on non-zero exit. */
  cli(...args: string[]): any;
  /** Runs the CLI and returns its exit status and output without throwing. */
  cliRaw(args: string[], env?: Record<string, string>): { status: number | null; stdout: string; stderr: string };
  /** A bearer token for a principal and resource, from the token endpoint. */
  token(cred: Cred, resource?: string): Promise<string>;
  /** An HTTPS request with our CA. */
  http(method: string, url: string, opts?: { token?: string; body?: unknown; rawBody?: string | Buffer; headers?: Record<string, string>; localAddress?: string; cert?: string; key?: string }): Promise<HttpResponse & { json: any }>;
  /** An @azure/identity credential for a principal, trusting our CA. */
  credential(cred: Cred): ClientSecretCredential;
  /**
   * Stops and starts the platform; `whileStopped` runs in between (to change its files as an attacker would).
   * `env` is added to the environment of this life only (the next restart goes back to the first one); a
   * platform that already exited (a crash, a self-kill) is simply started again.
   */
  restart(whileStopped?: () => void | Promise<void>, opts?: { env?: Record<string, string> }): Promise<void>;
  /**
   * Waits for the platform to exit by itself and says how (a fail point makes it SIGKILL itself); fails if
   * it is still running after `timeoutMs`.
   */
  waitForExit(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** A management-plane call under `/tenants/{tid}/providers/` as the platform admin (token cached), with the api-version. */
  mgmt(method: string, path: string, body?: unknown): Promise<HttpResponse & { json: any }>;
  stop(): Promise<void>;
  child: () => ChildProcess;
}

/** Polls `fn` until it returns a truthy value (errors count as "not yet"); fails naming `what` and the last error. */
export async function eventually<T>(fn: () => T | undefined | false | Promise<T | undefined | false>, what: string, timeoutMs = 20_000, stepMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

export async function startPgbyok(env: Record<string, string> = {}): Promise<Pgbyok> {
  const home = mkdtempSync(join(tmpdir(), 'pgbyok-test-'));
  // A free vault port of its own (as root the default would be 443, which another platform may hold).
  const childEnv = { ...process.env, PGBYOK_HOME: home, PGBYOK_LOG_LEVEL: 'warn', PGBYOK_VAULT_PORT: String(await freePort()), ...env };
  let child: ChildProcess;
  let output = '';

  const launch = async (lifeEnv: Record<string, string> = {}) => {
    child = spawn(process.execPath, [BIN, 'up'], { env: { ...childEnv, ...lifeEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    // An exit ends the wait at once (errors inside eventually() only mean "not yet").
    const state = await eventually(() => (child.exitCode !== null ? 'exited' : output.includes('pgbyok is up.') && 'up'), 'pgbyok up', 30_000, 100);
    if (state === 'exited') throw new Error(`pgbyok up exited ${child.exitCode}: ${output}`);
  };
  try {
    await launch();
  } catch (e) {
    // A platform that never came up leaves nothing behind either.
    if (child!.exitCode === null && child!.signalCode === null) child!.kill('SIGKILL');
    cleanupLeftovers(home);
    rmSync(home, { recursive: true, force: true });
    throw e;
  }

  const ca = readFileSync(join(home, 'tls', 'ca.pem'), 'utf8');
  const admin = JSON.parse(readFileSync(join(home, 'secrets', 'admin.json'), 'utf8'));
  const settings = JSON.parse(readFileSync(join(home, 'settings.json'), 'utf8'));
  const origin = `https://${settings.host}:${settings.port}`;

  const cliRaw = (args: string[], extraEnv: Record<string, string> = {}) => {
    const r = spawnSync(process.execPath, [BIN, ...args], { env: { ...childEnv, ...extraEnv }, encoding: 'utf8' });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  };

  const http: Pgbyok['http'] = async (method, url, opts = {}) => {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    let body: string | Buffer | undefined = opts.rawBody;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await httpCall({ method, url, headers, body, ca, localAddress: opts.localAddress, cert: opts.cert, key: opts.key });
    let json: any;
    try {
      json = res.text ? JSON.parse(res.text) : undefined;
    } catch {
      json = undefined;
    }
    return { ...res, json };
  };

  const waitForExit: Pgbyok['waitForExit'] = async (timeoutMs = 60_000) => {
    const c = child;
    if (c.exitCode === null && c.signalCode === null) {
      const exited = new Promise((r) => c.once('exit', r));
      const timedOut = await Promise.race([exited.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), timeoutMs).unref())]);
      if (timedOut) throw new Error(`pgbyok up was still running ${timeoutMs} ms later; end of its output:\n${output.slice(-2000)}`);
    }
    return { code: c.exitCode, signal: c.signalCode };
  };

  let mgmtToken: { token: string; until: number } | undefined;
  const mgmt: Pgbyok['mgmt'] = async (method, path, body) => {
    if (!mgmtToken || mgmtToken.until < Date.now()) {
      const res = await http('POST', `${origin}/${admin.tenantId}/oauth2/v2.0/token`, {
        rawBody: new URLSearchParams({ grant_type: 'client_credentials', client_id: admin.clientId, client_secret: admin.clientSecret, scope: `${MGMT_RESOURCE}/.default` }).toString(),
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      });
      if (res.status !== 200) throw new Error(`token request failed: ${res.status} ${res.text}`);
      mgmtToken = { token: res.json.access_token, until: Date.now() + 20 * 60_000 };
    }
    const sep = path.includes('?') ? '&' : '?';
    return http(method, `${origin}/tenants/${admin.tenantId}/providers/${path}${sep}api-version=2023-07-01`, { token: mgmtToken.token, body });
  };

  return {
    home,
    origin,
    ca,
    admin,
    child: () => child,
    waitForExit,
    mgmt,
    cli: (...args) => {
      const r = cliRaw(args);
      if (r.status !== 0) throw new Error(`pgbyok ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
      return r.stdout.trim() ? JSON.parse(r.stdout) : undefined;
    },
    cliRaw,
    async token(cred, resource = VAULT_RESOURCE) {
      const res = await http('POST', `${origin}/${cred.tenantId}/oauth2/v2.0/token`, {
        rawBody: new URLSearchParams({ grant_type: 'client_credentials', client_id: cred.clientId, client_secret: cred.clientSecret, scope: `${resource}/.default` }).toString(),
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      });
      if (res.status !== 200) throw new Error(`token request failed: ${res.status} ${res.text}`);
      return res.json.access_token;
    },
    http,
    credential: (cred) => sdkCredential(origin, ca, cred),
    async restart(whileStopped, opts = {}) {
      await stop();
      await whileStopped?.();
      output = '';
      await launch(opts.env);
    },
    async stop() {
      await stop();
      cleanupLeftovers(home);
      // PGBYOK_TEST_KEEP_LOGS=DIR keeps the platform's log of each home there, to read after a failure.
      const keep = process.env.PGBYOK_TEST_KEEP_LOGS;
      if (keep && existsSync(join(home, 'logs'))) cpSync(join(home, 'logs'), join(keep, home.split('/').pop()!), { recursive: true });
      rmSync(home, { recursive: true, force: true });
    },
  };
}

/**
 * What a platform killed with SIGKILL leaves behind under its home: PostgreSQL processes, mounts and loop
 * devices. A clean shutdown leaves none of these; this makes tests clean up even when it did not happen.
 */
export function cleanupLeftovers(home: string): void {
  for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.includes(home) && /postgres/.test(cmd)) process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m) => m?.startsWith(home));
  for (const m of mounts) spawnSync('umount', ['-l', m]);
  const loops = spawnSync('losetup', ['-a'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.includes(home));
  for (const l of loops) spawnSync('losetup', ['-d', l.split(':')[0]]);
  removeServerAccounts(home);
}

/** The OS accounts of the servers under `home` (each owns its socket directory), which outlive a stopped platform. */
function removeServerAccounts(home: string): void {
  const owners = new Map(readFileSync('/etc/passwd', 'utf8').split('\n').map((l) => l.split(':')).map((f) => [Number(f[2]), f[0]] as const));
  for (const run of globRunDirs(home)) {
    const name = owners.get(statSync(run).uid);
    if (name && /^pgbyok-[0-9a-f]{16}$/.test(name)) spawnSync('userdel', [name]);
  }
}

function globRunDirs(home: string): string[] {
  const regions = join(home, 'regions');
  if (!existsSync(regions)) return [];
  return readdirSync(regions).flatMap((r) => {
    const run = join(regions, r, 'run');
    return existsSync(run) ? readdirSync(run).map((n) => join(run, n)) : [];
  });
}

/** An @azure/identity credential for a principal of a platform at `origin` (its token endpoint), trusting its CA. */
export function sdkCredential(origin: string, ca: string, cred: Cred): ClientSecretCredential {
  return new ClientSecretCredential(cred.tenantId, cred.clientId, cred.clientSecret, {
    authorityHost: origin, disableInstanceDiscovery: true, tlsOptions: { ca },
  });
}

/** Client options every SDK client needs against a vault or HSM: only our CA (challenge-resource verification stays on). */
export function sdkOptions(p: { ca: string }) {
  return { tlsOptions: { ca: p.ca } };
}

/** Awaits a promise that must reject with the SDK's RestError of `status`; returns the error for further checks. */
export async function rejectsWith(p: Promise<unknown>, status: number, message?: RegExp): Promise<any> {
  let err: any;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected a ${status} error, but the call succeeded`);
  assert.equal(err.statusCode, status, `expected statusCode ${status}, got ${err.statusCode}: ${err.message}`);
  if (message) assert.match(err.message, message);
  return err;
}

/** A fresh vault name (vault names are unique per installation). */
export function vaultName(prefix = 'v'): string {
  return `${prefix}${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`.slice(0, 24);
}

/** Creates an identity and returns its credential and object id. */
export function createIdentity(p: Pgbyok, name: string): Cred & { objectId: string; id: string } {
  const r = p.cli('identity', 'create', '--name', name);
  return { tenantId: r.tenantId, clientId: r.clientId, clientSecret: r.clientSecret, objectId: r.principalId, id: r.id };
}

/** Searches a file for byte strings in 64 MiB windows (with overlap), without loading it whole. */
export function fileContains(path: string, needles: Buffer[]): boolean[] {
  const found = needles.map(() => false);
  const fd = openSync(path, 'r');
  const chunk = Buffer.alloc(64 * 1024 * 1024);
  const overlap = Math.max(...needles.map((n) => n.length));
  let position = 0;
  try {
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, position);
      if (n <= 0) break;
      const view = chunk.subarray(0, n);
      needles.forEach((needle, i) => { if (!found[i] && view.includes(needle)) found[i] = true; });
      if (n < chunk.length) break;
      position += n - overlap;
    }
  } finally {
    closeSync(fd);
  }
  return found;
}
