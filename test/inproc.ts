/**
 * The handler tier's platform: `startPlatform` in this process, in a temporary home, with a clock the test
 * moves by hand, spoken to over real HTTPS with the CA of that home. No root, no loop devices, no child
 * process, no sleeping: time moves only when a test says so, and the scheduler runs only when it calls tick().
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { startPlatform, type AdminCredential, type Platform } from '../src/platform.js';
import { loadConfig } from '../src/lib/config.js';
import { manualClock } from '../src/lib/clock.js';
import { httpCall } from '../src/lib/http-client.js';
import { freePort } from '../src/lib/ports.js';
import type { EventGridEvent } from '../src/vault/events.js';

export const VAULT_SCOPE = 'https://vault.localhost/.default';
export const MANAGEMENT_SCOPE = 'https://management.azure.com/.default';
const MGMT_API = 'api-version=2023-07-01';
const KV_API = 'api-version=7.6';

/** A fixed start far from the wall clock, so that anything still reading Date.now() for a decision shows. */
export const START = Date.UTC(2031, 0, 1);

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

export interface InProc {
  platform: Platform;
  clock: ReturnType<typeof manualClock>;
  admin: AdminCredential;
  /** Moves the platform's clock forward by whole seconds. */
  advance(seconds: number): void;
  /** The platform clock, in whole seconds since the epoch. */
  now(): number;
  /** One scheduler pass, as the interval would run it. */
  tick(): Promise<void>;
  call(method: string, url: string, opts?: { token?: string; body?: unknown }): Promise<Reply>;
  /** A client-credentials token for the bootstrap administrator. */
  token(scope?: string): Promise<string>;
  /** Creates a vault in the administrator's tenant; answers its URI without the trailing slash. */
  createVault(name: string, properties?: Record<string, unknown>): Promise<string>;
  mgmt(method: string, path: string, body?: unknown): Promise<Reply>;
  stop(): Promise<void>;
}

/** Settings for an in-process platform: quiet, RSA on the event loop, and an interval that never fires in a test. */
export function handlerConfig(overrides: Record<string, string> = {}) {
  return loadConfig({ PGBYOK_LOG_LEVEL: 'silent', PGBYOK_RSA_WORKERS: '0', PGBYOK_SCHEDULER_INTERVAL_MS: '3600000', ...overrides });
}

export async function startInProc(overrides: Record<string, string> = {}): Promise<InProc> {
  const home = mkdtempSync(join(tmpdir(), 'pgbyok-handler-'));
  const clock = manualClock(START);
  let platform: Platform;
  try {
    // A free vault port of its own (as root the default would be 443, which another platform may hold).
    const config = handlerConfig({ PGBYOK_VAULT_PORT: String(await freePort()), ...overrides });
    platform = await startPlatform({ home, clock, config, logger: pino({ level: 'silent' }) });
  } catch (e) {
    rmSync(home, { recursive: true, force: true });
    throw e;
  }
  const ca = readFileSync(platform.paths.caCert, 'utf8');
  const admin = JSON.parse(readFileSync(platform.paths.adminCredential, 'utf8')) as AdminCredential;

  const call = async (method: string, url: string, opts: { token?: string; body?: unknown } = {}): Promise<Reply> => {
    const res = await httpCall({
      method, url: url.startsWith('https://') ? url : `${platform.origin}${url}`, ca,
      headers: { ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}), ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
    let body: unknown;
    try {
      body = res.text ? JSON.parse(res.text) : undefined;
    } catch {
      body = res.text;
    }
    return { status: res.status, headers: res.headers, body };
  };

  const token = async (scope = VAULT_SCOPE) => {
    const res = await httpCall({
      method: 'POST', url: `${platform.origin}/${admin.tenantId}/oauth2/v2.0/token`, ca,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: admin.clientId, client_secret: admin.clientSecret, scope }).toString(),
    });
    if (res.status !== 200) throw new Error(`no token: ${res.status} ${res.text}`);
    return JSON.parse(res.text).access_token as string;
  };

  const mgmt = async (method: string, path: string, body?: unknown) =>
    call(method, `/tenants/${admin.tenantId}/providers/Microsoft.KeyVault${path}${path.includes('?') ? '&' : '?'}${MGMT_API}`, { token: await token(MANAGEMENT_SCOPE), body });

  return {
    platform, clock, admin, call, token, mgmt,
    advance: (seconds) => clock.advance(seconds * 1000),
    now: () => Math.floor(clock.now() / 1000),
    tick: () => platform.tick(),
    async createVault(name, properties = {}) {
      const r = await mgmt('PUT', `/vaults/${name}`, { location: 'eastus', properties });
      if (r.status !== 200) throw new Error(`vault create: ${r.status} ${JSON.stringify(r.body)}`);
      return (r.body.properties.vaultUri as string).replace(/\/$/, '');
    },
    async stop() {
      try {
        await platform.close();
      } finally {
        rmSync(home, { recursive: true, force: true });
      }
    },
  };
}

/** A key-vault data-plane URL with its api-version. */
export const kv = (vaultUri: string, path: string) => `${vaultUri}${path}${path.includes('?') ? '&' : '?'}${KV_API}`;

/** A local webhook that keeps every Event Grid event it is sent; `next(pred)` waits for the first match (10 s at most). */
export interface Webhook {
  url: string;
  events: EventGridEvent[];
  next(pred: (e: EventGridEvent) => boolean): Promise<EventGridEvent>;
  close(): Promise<void>;
}

export async function startWebhook(): Promise<Webhook> {
  const events: EventGridEvent[] = [];
  const waiters: { pred: (e: EventGridEvent) => boolean; resolve: (e: EventGridEvent) => void }[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      for (const e of JSON.parse(body) as EventGridEvent[]) {
        events.push(e);
        for (const w of [...waiters]) {
          if (w.pred(e)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(e);
          }
        }
      }
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/events`,
    events,
    next(pred) {
      const seen = events.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const guard = setTimeout(() => reject(new Error(`no such event arrived; got ${events.map((e) => e.eventType).join(', ') || 'none'}`)), 10_000);
        waiters.push({ pred, resolve: (e) => { clearTimeout(guard); resolve(e); } });
      });
    },
    close: () => new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    }),
  };
}
