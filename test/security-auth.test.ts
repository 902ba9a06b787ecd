/**
 * The security boundary of the HTTP surfaces: every registered route (platform port and vault ports) is
 * enumerated from the running platform, and an unauthenticated request to each — plain and in every
 * spelling a router might treat differently from a string test — is refused and changes nothing. Also:
 * a route that declares no duty, or a duty its scope does not enforce, stops start-up.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import Fastify from 'fastify';
import { startPlatform, type Platform } from '../src/platform.js';
import { requireSecuredRoutes, secureScope } from '../src/http/route-auth.js';
import { httpCall } from '../src/lib/http-client.js';

/** A request with the path sent exactly as given (no URL normalisation of `..`, `//` or `%2F`). */
function rawRequest(origin: string, method: string, path: string, ca: string, body?: string): Promise<{ status: number; text: string }> {
  const u = new URL(origin);
  return new Promise((resolve, reject) => {
    const r = request({
      host: u.hostname, port: u.port, method, path, ca,
      headers: body === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
    });
    r.on('error', reject);
    if (body !== undefined) r.write(body);
    r.end();
  });
}

/** The spellings of one path that a router and a string test might disagree on. */
export function pathVariants(path: string): [string, string][] {
  const segs = path.split('/').slice(1);
  const first = segs[0] ?? '';
  const pct = first ? `%${first.charCodeAt(0).toString(16)}${first.slice(1)}` : first;
  const rest = segs.slice(1).join('/');
  const tail = rest ? `/${rest}` : '';
  return [
    ['plain', path],
    ['percent-encoded letter', `/${pct}${tail}`],
    ['every letter of the first segment percent-encoded', `/${[...first].map((c) => `%${c.charCodeAt(0).toString(16)}`).join('')}${tail}`],
    ['%2F', rest ? `/${first}%2F${rest}` : `${path}%2F`],
    ['leading //', `/${path}`],
    ['inner //', rest ? `/${first}//${rest}` : `${path}//`],
    ['dot segment', `/x/..${path}`],
    ['single-dot segment', `/${first}/.${tail}`],
    ['upper case', `/${first.toUpperCase()}${tail}`],
    ['trailing slash', `${path}/`],
  ];
}

/** A digest of every table that holds state (the audit log and rotating signing keys excluded). */
function stateDigest(dbPath: string): string {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    const h = createHash('sha256');
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN ('audit_log', 'signing_keys') ORDER BY name").all() as { name: string }[];
    for (const { name } of tables) {
      const rows = db.prepare(`SELECT * FROM "${name}"${name === 'meta' ? " WHERE k <> 'audit_head'" : ''}`).all();
      const lines = rows.map((r) => JSON.stringify(r, (_k, v) => (Buffer.isBuffer(v) ? v.toString('hex') : v))).sort();
      h.update(`${name}\n${lines.join('\n')}\n`);
    }
    return h.digest('hex');
  } finally {
    db.close();
  }
}

describe('every route refuses an unauthenticated caller, however the path is spelled', () => {
  let home: string;
  let platform: Platform;
  let ca: string;
  let tid: string;
  let vaultOrigin: string;

  before(async () => {
    home = mkdtempSync(join(tmpdir(), 'pgbyok-auth-'));
    platform = await startPlatform({ home });
    ca = readFileSync(join(home, 'tls', 'ca.pem'), 'utf8');
    const admin = JSON.parse(readFileSync(join(home, 'secrets', 'admin.json'), 'utf8'));
    tid = admin.tenantId;
    const token = async (resource: string) => {
      const r = await httpCall({
        method: 'POST', url: `${platform.origin}/${tid}/oauth2/v2.0/token`, ca,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', client_id: admin.clientId, client_secret: admin.clientSecret, scope: `${resource}/.default` }).toString(),
      });
      return JSON.parse(r.text).access_token as string;
    };
    const mgmt = await token('https://management.azure.com');
    const call = async (method: string, url: string, t: string, body?: unknown) => {
      const r = await httpCall({ method, url, ca, headers: { authorization: `Bearer ${t}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
      assert.ok(r.status < 300, `${method} ${url}: ${r.status} ${r.text}`);
      return JSON.parse(r.text || '{}');
    };
    const kv = `${platform.origin}/tenants/${tid}/providers/Microsoft.KeyVault/vaults/kv1?api-version=2023-07-01`;
    const v = await call('PUT', kv, mgmt, { location: 'eastus', properties: { enablePurgeProtection: true } });
    vaultOrigin = new URL(v.properties.vaultUri).origin;
    await call('PUT', `${platform.origin}/tenants/${tid}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1?api-version=2023-07-01`, mgmt, { location: 'eastus' });
    const vt = await token('https://vault.azure.net');
    await call('POST', `${vaultOrigin}/keys/k1/create?api-version=7.5`, vt, { kty: 'RSA', key_size: 2048 });
  });

  after(async () => {
    await platform?.close();
    rmSync(home, { recursive: true, force: true });
  });

  test('the route list covers the vault, identity and management surfaces, each route secured by its scope', () => {
    const routes = platform.routes();
    const scopes = new Set(routes.map((r) => r.securedBy));
    for (const s of ['vault', 'public', 'trusted', 'hooks', 'management']) assert.ok(scopes.has(s), `scope ${s} present`);
    assert.ok(routes.filter((r) => r.app === 'vault').length >= 20);
    assert.ok(routes.some((r) => r.url === '/:tenant/oauth2/v2.0/token'));
    assert.ok(routes.some((r) => r.url.includes('/Microsoft.DBforPostgreSQL/flexibleServers/:name')));
    // Only these answer without any credential.
    const open = routes.filter((r) => r.kind === 'public').map((r) => `${r.method} ${r.url}`).sort();
    assert.deepEqual(open, [
      'GET /:tenant/discovery/v2.0/keys', 'GET /:tenant/v2.0/.well-known/openid-configuration', 'GET /discovery/vaults/:name', 'GET /health',
      'HEAD /:tenant/discovery/v2.0/keys', 'HEAD /:tenant/v2.0/.well-known/openid-configuration', 'HEAD /discovery/vaults/:name', 'HEAD /health',
      'GET /adfs/.well-known/openid-configuration', 'GET /adfs/discovery/keys', 'GET /metadata/endpoints',
      'HEAD /adfs/.well-known/openid-configuration', 'HEAD /adfs/discovery/keys', 'HEAD /metadata/endpoints',
      'POST /:tenant/oauth2/v2.0/token', 'POST /adfs/oauth2/token',
    ].sort());
  });

  test('no unauthenticated request to any route, in any spelling, succeeds or changes state', async () => {
    const dbPath = join(home, 'pgbyok.db');
    const before = stateDigest(dbPath);
    // Real names, so that a request that got through would find something to act on.
    const nameFor = (url: string) =>
      url.includes('/Microsoft.KeyVault/') ? 'kv1' : url.includes('/userAssignedIdentities/') ? 'id1' : /^\/(deleted)?keys\//.test(url) ? 'k1' : 'x';
    const concrete = (url: string) => url
      .replace(':tid', tid).replace(':tenant', tid).replace(':version', '0123456789abcdef0123456789abcdef')
      .replace(':name', nameFor(url)).replace(/:[a-zA-Z]+/g, 'x');
    const failures: string[] = [];
    let sent = 0;
    for (const r of platform.routes()) {
      if (r.kind === 'public' || r.method === 'HEAD') continue;
      const origin = r.app === 'vault' ? vaultOrigin : platform.origin;
      const query = r.app === 'vault' ? '?api-version=7.5' : '?api-version=2023-07-01';
      const body = r.method === 'GET' || r.method === 'DELETE' ? undefined : '{}';
      for (const [variant, path] of pathVariants(concrete(r.url))) {
        const res = await rawRequest(origin, r.method, path + query, ca, body);
        sent++;
        const expectedPlain = r.kind === 'trustedService' || r.kind === 'hookCode' ? [403] : [401];
        const ok = variant === 'plain' ? expectedPlain.includes(res.status) : res.status >= 400 && res.status < 500;
        if (!ok || !/"error"/.test(res.text)) failures.push(`${r.method} ${path} (${variant}, route ${r.url}): ${res.status} ${res.text.slice(0, 160)}`);
      }
    }
    assert.ok(sent > 500, `sent ${sent} requests`);
    assert.deepEqual(failures, [], `refused with 4xx in the API's envelope:\n${failures.join('\n')}`);
    assert.equal(stateDigest(dbPath), before, 'no state changed');
  });
});

describe('routes are declared or the app does not start', () => {
  test('a route with no duty and not marked public stops start-up', async () => {
    const app = Fastify();
    requireSecuredRoutes(app);
    secureScope(app, { name: 'management', enforces: ['duty'], surface: 'management', hooks: () => {} }, (scope) => {
      scope.get('/tenants/:tid/things', { config: { operation: 'ThingList' } }, async () => ({}));
    });
    await assert.rejects(async () => { await app.ready(); }, /must declare exactly one of/);
  });

  test('a route declaring a duty inside the public scope stops start-up (its duty would not be checked)', async () => {
    const app = Fastify();
    requireSecuredRoutes(app);
    secureScope(app, { name: 'public', enforces: ['public'], surface: 'identity', hooks: () => {} }, (scope) => {
      scope.get('/tenants/:tid/things', { config: { operation: 'ThingList', duty: 'readPlatform' } }, async () => ({}));
    });
    await assert.rejects(async () => { await app.ready(); }, /does not enforce/);
  });

  test('a declared route registered outside every scope stops start-up', async () => {
    const app = Fastify();
    requireSecuredRoutes(app);
    app.get('/tenants/:tid/things', { config: { operation: 'ThingList', duty: 'readPlatform' } }, async () => ({}));
    await assert.rejects(async () => { await app.ready(); }, /outside every security scope/);
  });
});
