import { AUTH_FAILURES, holdsDuty, tokenOf, type Caller } from './callers.js';
import { fillSegment, poison, type RouteSpec, type Targets } from './catalog.js';
import type { Rng } from './prng.js';
import type { RawRequest, RawResponse } from './send.js';

/**
 * The generator: turns (route, caller, mutations) into a raw request and the outcome the authorization
 * matrix expects for it, and checks a response against that outcome. Everything random comes from the
 * seeded `Rng`, so a seed reproduces a run's requests.
 */

export type Envelope = 'kv' | 'arm' | 'aad' | 'any';

/** What must come back. `exact`: this status and code; otherwise one of `statuses`, still in the envelope. */
export type Expectation =
  | { refused: true; status: number; code: string; inner?: string; envelope: Envelope; exact: boolean; statuses: number[]; challenge?: boolean; message?: RegExp }
  | { refused: false; envelope: Envelope; exact: boolean };

export interface FuzzRequest {
  n: number;
  label: string;
  routeId: string;
  mutations: Mutations;
  raw: RawRequest;
  expect: Expectation;
}

export interface Mutations {
  path: string;
  body: string;
  query: string;
}

const NONE: Mutations = { path: 'none', body: 'none', query: 'none' };
const VAULT_API_VERSIONS = ['7.0', '7.2', '7.3', '7.4', '7.5', '7.6', '2025-07-01'];

/** The outcome the matrix expects of a route and a caller, before any mutation. */
export function outcome(route: RouteSpec, caller: Caller, foreignTenant = false): { refused: true; status: number; code: string; inner?: string; challenge?: boolean } | { refused: false } {
  if (route.refusesAll) return { refused: true, ...route.refusesAll };
  const authFailed = (AUTH_FAILURES as readonly string[]).includes(caller.cls);
  // A path naming a tenant that is not the caller's: refused whoever calls (see `buildRequest`'s foreignTenant).
  const armPath = route.path[0] === 'subscriptions';
  if (foreignTenant && route.surface === 'mgmt' && route.tenantScoped) {
    if (!armPath) return { refused: true, status: 401, code: 'Unauthorized' };
    // ARM: a bad token fails first; another tenant's subscription is 401, one that does not exist 404 (see buildRequest).
    if (authFailed) return { refused: true, status: 401, code: 'Unauthorized' };
    return caller.cls === 'otherTenant' ? { refused: true, status: 404, code: 'SubscriptionNotFound' } : { refused: true, status: 401, code: 'InvalidAuthenticationTokenTenant' };
  }
  if (route.surface === 'vault') {
    if (authFailed || caller.cls === 'otherTenant') return { refused: true, status: 401, code: 'Unauthorized', challenge: true };
    if (caller.keyPermissions === undefined || caller.keyPermissions.includes(route.permission!)) return { refused: false };
    return { refused: true, status: 403, code: 'Forbidden', inner: 'AccessDenied' };
  }
  if (authFailed) return { refused: true, status: 401, code: 'Unauthorized' };
  if (caller.cls === 'otherTenant') {
    if (route.tenantScoped) return armPath ? { refused: true, status: 401, code: 'InvalidAuthenticationTokenTenant' } : { refused: true, status: 401, code: 'Unauthorized' };
    if (route.duty === 'manageTenants') return { refused: true, status: 403, code: 'AuthorizationFailed' };
    return { refused: false };
  }
  if (route.duty === null || route.duty === undefined || holdsDuty(caller.roles ?? [], route.duty)) return { refused: false };
  return { refused: true, status: 403, code: 'AuthorizationFailed' };
}

// ---------------------------------------------------------------- path mutations

const hex = (c: string, r: Rng) => {
  const h = c.charCodeAt(0).toString(16).padStart(2, '0');
  return `%${r.chance(0.5) ? h.toUpperCase() : h}`;
};

/** Percent-encodes 1-3 letters (sometimes of the first segment: `/%74enants`); servers decode these before routing. */
function pctLetters(path: string, r: Rng): string {
  const chars = [...path];
  const letters = chars.map((c, i) => (/[A-Za-z]/.test(c) ? i : -1)).filter((i) => i >= 0);
  if (!letters.length) return path;
  const firstSeg = letters.filter((i) => i < (path.indexOf('/', 1) < 0 ? path.length : path.indexOf('/', 1)));
  const picks = new Set<number>();
  if (firstSeg.length && r.chance(0.5)) picks.add(r.pick(firstSeg));
  for (let k = r.int(1, 3); k > 0; k--) picks.add(r.pick(letters));
  for (const i of picks) chars[i] = hex(chars[i], r);
  return chars.join('');
}

const slashes = (path: string) => [...path].map((c, i) => (c === '/' && i > 0 ? i : -1)).filter((i) => i > 0);
const replaceAt = (s: string, i: number, len: number, by: string) => s.slice(0, i) + by + s.slice(i + len);

/**
 * Path mutations; `preserving` ones leave the route a server must pick unchanged. `badPct` makes the URL
 * invalid (a 400 before any route or token is looked at); all others stay valid URLs.
 */
export const PATH_MUTATIONS: { name: string; weight: number; preserving: boolean; apply: (p: string, r: Rng) => string }[] = [
  { name: 'none', weight: 30, preserving: true, apply: (p) => p },
  { name: 'pctLetter', weight: 26, preserving: true, apply: pctLetters },
  { name: 'pctSlash', weight: 7, preserving: false, apply: (p, r) => { const s = slashes(p); return s.length ? replaceAt(p, r.pick(s), 1, r.pick(['%2F', '%2f'])) : p; } },
  { name: 'doubleSlash', weight: 7, preserving: false, apply: (p, r) => replaceAt(p, r.pick([0, ...slashes(p)]), 1, '//') },
  { name: 'dotSegment', weight: 8, preserving: false, apply: (p, r) => replaceAt(p, r.pick([0, ...slashes(p)]), 1, r.pick(['/./', '/x/../', '/%2e/', '/%2E%2E/x/', '/../'])) },
  { name: 'upper', weight: 6, preserving: false, apply: (p, r) => { const segs = p.split('/'); const i = r.int(1, Math.max(1, segs.length - 1)); segs[i] = segs[i].toUpperCase(); return segs.join('/'); } },
  { name: 'trailingSlash', weight: 6, preserving: false, apply: (p) => `${p}/` },
  { name: 'badPct', weight: 4, preserving: false, apply: (p, r) => `${p}${r.pick(['%', '%zz', '%E0%A4%A', '%00', '%uD83D'])}` },
  { name: 'unicode', weight: 3, preserving: false, apply: (p, r) => `${p}${r.pick(['%C3%A9', '%F0%9F%92%A5', '%EF%BB%BF'])}` },
];

// ---------------------------------------------------------------- body mutations

/** Values of other types; the last is an object no template string or String() can turn into text. */
const OTHER_TYPES: unknown[] = [42, -1, 1e308, 0.5, true, false, null, '', 'x', '\u0000', '💥💥', [], [1, 'a'], {}, { a: { b: 1 } }, { toString: 1, valueOf: 1 }];
const BAD_B64URL = ['+/+/', '====', 'abc=def', '%%', 'ÿþ', ' ', '.', 'A'.repeat(4001) + '*', 'AAAA\nAAAA'];
const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/** Every path to a value inside a JSON value (arrays and objects). */
function valuePaths(v: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [];
  if (Array.isArray(v)) v.forEach((x, i) => out.push([...prefix, i], ...valuePaths(x, [...prefix, i])));
  else if (isObject(v)) for (const [k, x] of Object.entries(v)) out.push([...prefix, k], ...valuePaths(x, [...prefix, k]));
  return out;
}

function setAt(root: unknown, path: (string | number)[], value: unknown, remove = false): void {
  let cur = root as any;
  for (const k of path.slice(0, -1)) cur = cur[k];
  const last = path[path.length - 1];
  if (remove) {
    if (Array.isArray(cur)) cur.splice(last as number, 1);
    else delete cur[last];
  } else cur[last] = value;
}

const clone = <T>(v: T): T => (v === undefined ? v : JSON.parse(JSON.stringify(v)));

interface Body {
  text?: string;
  contentType?: string;
  mutated: boolean;
  name: string;
}

function jsonBody(v: unknown, name = 'none', mutated = false): Body {
  return { text: JSON.stringify(v), contentType: 'application/json', mutated, name };
}

/** A body for the route: its valid body, or one mutation of it. */
function makeBody(route: RouteSpec, t: Targets, r: Rng, mutate: boolean): Body {
  const valid = route.body?.(t, r);
  if (!mutate) return valid === undefined ? { mutated: false, name: 'none' } : jsonBody(valid);
  const base = valid === undefined ? { unexpected: 'body' } : clone(valid);
  const finish = (v: unknown, name: string) => jsonBody(route.poisoned ? poison(v) : v, name, true);
  const paths = valuePaths(base);
  const kind = r.pick(valid === undefined
    ? ['garbageJson', 'object', 'contentType', 'huge']
    : ['wrongType', 'wrongType', 'drop', 'huge', 'garbageJson', 'contentType', 'notObject', 'proto', 'deepNest', 'empty', 'specific', 'specific', 'extra', 'edgeNumber']);
  switch (kind) {
    case 'wrongType':
    case 'drop': {
      if (!paths.length) return finish(r.pick(OTHER_TYPES), 'notObject');
      const at = r.pick(paths);
      setAt(base, at, r.pick(OTHER_TYPES), kind === 'drop');
      return finish(base, `${kind}(${at.join('.')})`);
    }
    case 'edgeNumber': {
      const numbers = paths.filter((p) => typeof p.reduce((o: any, k) => o?.[k], base) === 'number');
      if (!numbers.length) return finish(base, 'none');
      const at = r.pick(numbers);
      setAt(base, at, r.pick([1e308, 9e15, -9e15, 2 ** 53 + 2, -1, 0, 253_402_300_800, 0.5]));
      return finish(base, `edgeNumber(${at.join('.')})`);
    }
    case 'extra':
      (base as Record<string, unknown>)[r.name(6)] = r.pick(OTHER_TYPES);
      return finish(base, 'extraField');
    case 'huge': {
      const size = r.pick([1_000, 70_000, 300_000]);
      const strings = paths.filter((p) => typeof p.reduce((o: any, k) => o?.[k], base) === 'string');
      if (strings.length) setAt(base, r.pick(strings), 'A'.repeat(size));
      else (base as Record<string, unknown>).padding = 'A'.repeat(size);
      return finish(base, `huge(${size})`);
    }
    case 'notObject':
      return finish(r.pick([[base], 'text', 12, null, true]), 'notObject');
    case 'object':
      return jsonBody({ [r.name(5)]: r.pick(OTHER_TYPES) }, 'unexpectedBody', true);
    case 'empty':
      return { text: '', contentType: 'application/json', mutated: true, name: 'empty' };
    case 'garbageJson':
      return { text: r.pick(['{', '{"a":', '{"kty":"RSA",}', "{'a':1}", 'NaN', '[1,2', '\u0000', '{"a":1}garbage', '\ufeff{}', 'null null']), contentType: 'application/json', mutated: true, name: 'invalidJson' };
    case 'contentType': {
      const ct = r.pick(['text/plain', 'application/xml', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=zz', 'application/jsonx', 'APPLICATION/JSON', 'application/json; charset=latin1', '']);
      const text = route.poisoned && ct.toLowerCase().startsWith('application/json') ? JSON.stringify(poison(base)) : JSON.stringify(base);
      return { text, contentType: ct || undefined, mutated: true, name: `contentType(${ct || 'none'})` };
    }
    case 'proto': {
      const text = JSON.stringify(base).replace(/^\{/, '{"__proto__":{"admin":true,"enabled":false},"constructor":{"prototype":{"x":1}},');
      return { text: route.poisoned ? JSON.stringify(poison(JSON.parse(text))) : text, contentType: 'application/json', mutated: true, name: 'protoKeys' };
    }
    case 'deepNest': {
      const depth = r.pick([100, 5_000]);
      return { text: `${'['.repeat(depth)}${']'.repeat(depth)}`, contentType: 'application/json', mutated: true, name: `deepNest(${depth})` };
    }
    case 'specific':
    default: {
      if (route.id === 'vault.import' && isObject(base) && isObject(base.key)) {
        const key = base.key;
        const part = r.pick(['n', 'e', 'd', 'p', 'q', 'dp', 'dq', 'qi', 'kty', 'key_ops']);
        const other = r.pick(t.jwks.filter((j) => j.n !== key.n).concat([t.smallJwk]));
        const bad = r.pick<unknown>(['', '!!!', 'AA', 'AQ', 'AQAB', 'AQAB=', other[part], 12345, null, 'A'.repeat(5000), 'sign', ['sign', 7]]);
        if (r.chance(0.15)) base.key = clone(t.smallJwk);
        else if (r.chance(0.1)) delete key[part];
        else key[part] = bad;
        return finish(base, `jwk(${part})`);
      }
      if (route.id === 'vault.restore' && isObject(base)) {
        base.value = tamperedBackup(t.backup, r);
        return finish(base, 'tamperedBackup');
      }
      const b64Fields = paths.filter((p) => ['value', 'digest'].includes(String(p[p.length - 1])));
      if (b64Fields.length) {
        const at = r.pick(b64Fields);
        setAt(base, at, r.pick(BAD_B64URL));
        return finish(base, `base64url(${at.join('.')})`);
      }
      if (paths.length) {
        const at = r.pick(paths);
        // No short durations: a rotation policy that came due would rotate keys in the background mid-run.
        setAt(base, at, r.pick(['', ' ', 'a'.repeat(300), '../../etc/passwd', '<script>', "' OR 1=1 --", '%00', 'P1D', 'P0D', 'all', 'Owner']));
        return finish(base, `oddString(${at.join('.')})`);
      }
      return finish(base, 'none');
    }
  }
}

/** A key backup blob (`[2-byte header length | JSON header | nonce | ciphertext | tag]`) broken in one way. */
function tamperedBackup(backup: string, r: Rng): string {
  const raw = Buffer.from(backup, 'base64url');
  const withHeader = (json: string) => {
    const h = Buffer.from(json);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(h.length);
    return Buffer.concat([len, h, raw.subarray(2 + raw.readUInt16BE(0))]);
  };
  const out = r.pick<() => Buffer>([
    () => { const b = Buffer.from(raw); b[r.int(0, b.length - 1)] ^= 1 << r.int(0, 7); return b; },
    () => raw.subarray(0, r.int(0, raw.length - 1)),
    () => withHeader(r.pick(['null', '1', '"x"', '[]', '{}', '{"format":"pgbyok-key-backup","v":1}', '{"format":"pgbyok-key-backup","v":1,"tenantId":null}', `{"format":"pgbyok-key-backup","v":2,"tenantId":"${r.uuid()}"}`])),
    () => { const b = Buffer.from(raw); b.writeUInt16BE(r.pick([0, 1, 0xffff, b.length]), 0); return b; },
    () => Buffer.concat([raw, Buffer.alloc(r.int(1, 64))]),
  ])();
  return out.toString('base64url');
}

// ---------------------------------------------------------------- queries

function makeQuery(route: RouteSpec, t: Targets, r: Rng, mutate: boolean): { qs: string; mutated: boolean; name: string } {
  const params: [string, string][] = Object.entries(route.query?.(t, r) ?? {});
  // ARM paths need an api-version (before any duty is checked), and PostgreSQL's provider checks its own list.
  const arm = route.path[0] === 'subscriptions' && route.path.length > 1;
  const pgArm = arm && route.path.includes('Microsoft.DBforPostgreSQL');
  const apiVersion = route.surface === 'vault' ? r.pick(VAULT_API_VERSIONS) : pgArm ? '2024-08-01' : '2023-07-01';
  const render = (ps: [string, string][]) => ps.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
  if (!mutate) return { qs: render([['api-version', apiVersion], ...params]), mutated: false, name: 'none' };
  const kind = r.pick(['missing', 'unknownVersion', 'encodedName', 'duplicated', 'garbage']);
  switch (kind) {
    case 'missing': return { qs: render(params), mutated: route.surface === 'vault' || arm, name: 'noApiVersion' };
    case 'unknownVersion': return { qs: render([['api-version', r.pick(['7.9', '', '2016-10-01', '7.5 ', 'x'.repeat(500)])], ...params]), mutated: route.surface === 'vault' || arm, name: 'unknownApiVersion' };
    case 'encodedName': return { qs: `api%2Dversion=${apiVersion}${params.length ? '&' + render(params) : ''}`, mutated: false, name: 'encodedApiVersionName' };
    case 'duplicated': return { qs: render([['api-version', r.pick(['9.9', apiVersion])], ['api-version', apiVersion], ...params]), mutated: route.surface === 'vault' || pgArm, name: 'duplicatedApiVersion' };
    default: {
      // First, so that it is the value a server reads (URLSearchParams.get takes the first of a name).
      const garbage = r.pick(['top=abc', 'since=notadate', 'since=275760-09-13T00:00:00.000Z', 'top=-1', '%zz=%zz', 'maxresults=0', 'maxresults=1e1', '$skiptoken=-5', '$skiptoken=1e20', '$skiptoken=9e99', '$skiptoken=0x10', 'top=99999999999999999999', 'top=1e3', 'caller=%00']);
      return { qs: `${garbage}&${render([['api-version', apiVersion], ...params])}`, mutated: route.surface === 'vault' || route.id.includes('audit') || route.id.includes('activity'), name: `garbageParam(${garbage})` };
    }
  }
}

// ---------------------------------------------------------------- requests

export interface Ports {
  platform: number;
  vault: number;
}

/**
 * Statuses a refusal may take when a mutation means the route cannot be told exactly (a mutated path may
 * also name another tenant, hence 401 for a 403 refusal).
 */
const LOOSE = [400, 401, 403, 404, 405, 413, 414, 415];

/** Which parts of a request to mutate (none: the request exactly as the route wants it, on the fixtures). */
export interface MutationChoice {
  path: boolean;
  body: boolean;
  query: boolean;
  /** Management routes under /tenants/{tid}: address another tenant than the caller's (another real one, or none). */
  foreignTenant?: boolean;
}

/** Builds one request of `route` from `caller`, with the chosen mutations, and what it must be answered. */
export function buildRequest(n: number, route: RouteSpec, caller: Caller, t: Targets, r: Rng, ports: Ports, mutate: MutationChoice): FuzzRequest {
  const foreign = !!mutate.foreignTenant && route.surface === 'mgmt' && !!route.tenantScoped;
  const addressed = foreign
    ? { ...t, tid: caller.cls === 'otherTenant' || r.chance(0.3) ? r.uuid() : t.otherTid, sub: caller.cls === 'otherTenant' ? r.uuid() : t.otherSub }
    : t;
  const realTargets = !mutate.path && !mutate.body && !mutate.query;
  const canonical = '/' + route.path.map((s) => fillSegment(s, addressed, r, realTargets)).join('/');
  const pm = mutate.path ? weighted(PATH_MUTATIONS, r) : PATH_MUTATIONS[0];
  const path = pm.apply(canonical, r);
  const body = makeBody(route, t, r, mutate.body);
  const query = makeQuery(route, t, r, mutate.query);
  const headers: Record<string, string> = {};
  const auth = route.surface === 'public' ? caller.mgmt : tokenOf(caller, route.surface);
  if (auth !== undefined) headers.authorization = auth;
  // Every vault is on one port; the Host header names the vault (the sender connects by address).
  if (route.surface === 'vault') headers.host = t.vaultHost;
  if (body.contentType !== undefined && body.text !== undefined) headers['content-type'] = body.contentType;
  const m: Mutations = { path: foreign ? `foreignTenant+${pm.name}` : pm.name, body: body.name, query: query.name };

  const o = outcome(route, caller, foreign);
  const envelope: Envelope = route.surface === 'vault' ? 'kv' : 'arm';
  const preserving = pm.preserving;
  let expect: Expectation;
  if (o.refused) {
    // Authentication comes first on the vault (before routing and body), and before the body on management.
    const exact = route.surface === 'vault' && o.status === 401
      ? pm.name !== 'badPct'
      : o.status === 401 && (AUTH_FAILURES as readonly string[]).includes(caller.cls)
        ? preserving
        : preserving && !body.mutated && !query.mutated;
    expect = { refused: true, status: o.status, code: o.code, inner: o.inner, challenge: o.challenge, envelope, exact, statuses: LOOSE };
  } else {
    expect = { refused: false, envelope, exact: preserving && !body.mutated && !query.mutated };
  }
  return {
    n,
    routeId: route.id,
    mutations: m,
    label: `${route.id} as ${caller.cls} (${caller.label}) [path=${m.path} body=${m.body} query=${m.query}]`,
    raw: { method: route.method, port: route.surface === 'vault' ? ports.vault : ports.platform, path: `${path}?${query.qs}`, headers, body: body.text },
    expect,
  };
}

function weighted<T extends { weight: number }>(items: T[], r: Rng): T {
  let x = r.next() * items.reduce((s, i) => s + i.weight, 0);
  for (const i of items) if ((x -= i.weight) < 0) return i;
  return items[items.length - 1];
}

// ---------------------------------------------------------------- the token endpoint

export interface TokenInputs {
  tid: string;
  admin: { clientId: string; clientSecret: string };
  other: { clientId: string; clientSecret: string };
  deleted: { clientId: string; clientSecret: string };
}

/** Refused token requests: each case, the statuses it may take, and whether the AAD envelope is required. */
export function tokenCases(x: TokenInputs, r: Rng): { label: string; path: string; headers: Record<string, string>; body: string; statuses: number[]; error?: string; envelope: Envelope }[] {
  const scope = 'https://vault.azure.net/.default';
  const form = (f: Record<string, string>) => new URLSearchParams(f).toString();
  const ok = { grant_type: 'client_credentials', scope };
  const basic = (s: string) => `Basic ${Buffer.from(s).toString('base64')}`;
  const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
  const path = `/${x.tid}/oauth2/v2.0/token`;
  return [
    { label: 'wrong secret', path, headers: FORM, body: form({ ...ok, client_id: x.admin.clientId, client_secret: `wrong-${r.name(12)}` }), statuses: [401], error: 'invalid_client', envelope: 'aad' },
    { label: 'unknown client', path, headers: FORM, body: form({ ...ok, client_id: r.uuid(), client_secret: 'x' }), statuses: [401], error: 'invalid_client', envelope: 'aad' },
    { label: "another tenant's client here", path, headers: FORM, body: form({ ...ok, client_id: x.other.clientId, client_secret: x.other.clientSecret }), statuses: [401], error: 'invalid_client', envelope: 'aad' },
    { label: 'deleted client', path, headers: FORM, body: form({ ...ok, client_id: x.deleted.clientId, client_secret: x.deleted.clientSecret }), statuses: [401], error: 'invalid_client', envelope: 'aad' },
    { label: 'missing secret', path, headers: FORM, body: form({ ...ok, client_id: x.admin.clientId }), statuses: [400], error: 'invalid_request', envelope: 'aad' },
    { label: 'password grant', path, headers: FORM, body: form({ ...ok, grant_type: 'password', username: 'a', password: 'b' }), statuses: [400], error: 'unsupported_grant_type', envelope: 'aad' },
    { label: 'no grant type', path, headers: FORM, body: form({ scope, client_id: x.admin.clientId, client_secret: 'x' }), statuses: [400], error: 'unsupported_grant_type', envelope: 'aad' },
    { label: 'unknown scope', path, headers: FORM, body: form({ ...ok, scope: 'https://evil.example/.default', client_id: x.admin.clientId, client_secret: 'x' }), statuses: [400], error: 'invalid_scope', envelope: 'aad' },
    { label: 'unknown tenant', path: `/${r.uuid()}/oauth2/v2.0/token`, headers: FORM, body: form({ ...ok, client_id: x.admin.clientId, client_secret: 'x' }), statuses: [400], error: 'invalid_request', envelope: 'aad' },
    { label: 'Basic credential with % (URIError)', path, headers: { ...FORM, authorization: basic(`%E0%A4%A:${r.pick(['%', '%zz', '100%'])}`) }, body: form(ok), statuses: [400, 401], envelope: 'aad' },
    { label: 'Basic secret with % only', path, headers: { ...FORM, authorization: basic(`${x.admin.clientId}:%${r.pick(['', 'G1', '%'])}`) }, body: form(ok), statuses: [400, 401], envelope: 'aad' },
    { label: 'Basic unknown client', path, headers: { ...FORM, authorization: basic(`${r.uuid()}:secret`) }, body: form(ok), statuses: [401], error: 'invalid_client', envelope: 'aad' },
    { label: 'Basic not base64', path, headers: { ...FORM, authorization: 'Basic !!!%%%' }, body: form(ok), statuses: [400, 401], envelope: 'aad' },
    { label: 'Basic without a colon', path, headers: { ...FORM, authorization: basic('justaname') }, body: form(ok), statuses: [400, 401], envelope: 'aad' },
    { label: 'JSON body with an object client_id', path, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...ok, client_id: { $ne: null }, client_secret: ['x'] }), statuses: [400, 401], envelope: 'aad' },
    { label: 'JSON body whose values no template string can print', path, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...ok, [r.pick(['grant_type', 'scope', 'client_id'])]: { toString: 1, valueOf: 1 }, client_id: r.uuid(), client_secret: 'x' }), statuses: [400, 401], envelope: 'aad' },
    { label: 'JSON body with numbers', path, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...ok, client_id: 1, client_secret: 2 }), statuses: [400, 401], envelope: 'aad' },
    { label: 'repeated client_id', path, headers: FORM, body: `${form(ok)}&client_id=${r.uuid()}&client_id=${x.admin.clientId}&client_secret=x`, statuses: [400, 401], envelope: 'aad' },
    { label: 'huge secret, unknown client', path, headers: FORM, body: form({ ...ok, client_id: r.uuid(), client_secret: 'x'.repeat(100_000) }), statuses: [401], error: 'invalid_client', envelope: 'aad' },
    { label: 'form body with bad percent-encoding', path, headers: FORM, body: `grant_type=client_credentials&scope=%zz&client_id=%E0%A4%A&client_secret=%`, statuses: [400, 401], envelope: 'aad' },
    { label: 'JSON body, invalid JSON', path, headers: { 'content-type': 'application/json' }, body: '{"grant_type":', statuses: [400], envelope: 'any' },
    { label: 'text/plain body', path, headers: { 'content-type': 'text/plain' }, body: form({ ...ok, client_id: x.admin.clientId, client_secret: 'x' }), statuses: [400, 415], envelope: 'any' },
  ];
}

/** The token endpoint's refusals as requests; with `mutatePath`, each path may be mutated (then a 404 is a refusal too). */
export function tokenRequests(start: number, x: TokenInputs, r: Rng, ports: Ports, mutatePath: boolean): FuzzRequest[] {
  return tokenCases(x, r).map((c, i) => {
    const pm = mutatePath ? weighted(PATH_MUTATIONS, r) : PATH_MUTATIONS[0];
    const expect: Expectation = pm.preserving
      ? { refused: true, status: c.statuses[0], code: c.error ?? '', envelope: c.envelope, exact: false, statuses: c.statuses }
      : { refused: true, status: 404, code: '', envelope: 'any', exact: false, statuses: [...new Set([...c.statuses, 400, 404, 405])] };
    return {
      n: start + i,
      routeId: `token: ${c.label}`,
      mutations: { ...NONE, path: pm.name },
      label: `token endpoint: ${c.label} [path=${pm.name}]`,
      raw: { method: 'POST', port: ports.platform, path: pm.apply(c.path, r), headers: c.headers, body: c.body },
      expect,
    };
  });
}

// ---------------------------------------------------------------- checking a response

function envelopeProblem(res: RawResponse, envelope: Envelope): string | undefined {
  const j = res.json;
  const kvShape = j && typeof j.error === 'object' && j.error !== null && typeof j.error.code === 'string' && typeof j.error.message === 'string';
  const aadShape = j && typeof j.error === 'string' && typeof j.error_description === 'string';
  if (envelope === 'aad') return aadShape ? undefined : 'not in the identity platform\'s {"error":"...","error_description":"..."} envelope';
  if (envelope === 'any') return kvShape || aadShape ? undefined : 'not in any error envelope';
  return kvShape ? undefined : 'not in the {"error":{"code","message"}} envelope';
}

/** Why a response breaks its expectation (undefined: it does not). */
export function problemWith(res: RawResponse, e: Expectation): string | undefined {
  if (res.status >= 500) return `answered ${res.status} (a 5xx)`;
  if (!e.refused) {
    if (res.status >= 400) {
      const env = envelopeProblem(res, e.envelope);
      if (env) return `answered ${res.status} ${env}`;
      const code = res.json.error.code;
      const inner = res.json.error.innererror?.code;
      if (e.exact && (res.status === 401 || code === 'AuthorizationFailed' || inner === 'AccessDenied')) return `the authorized caller was refused: ${res.status} ${code}`;
    }
    return undefined;
  }
  if (e.exact ? res.status !== e.status : !e.statuses.includes(res.status)) {
    return `expected a refusal with ${e.exact ? e.status : e.statuses.join('|')}, got ${res.status}`;
  }
  const env = envelopeProblem(res, e.envelope);
  if (env) return `refused with ${res.status} but ${env}`;
  if (e.envelope === 'aad' && e.code && res.json.error !== e.code) return `expected error ${e.code}, got ${res.json.error}`;
  if (e.message && !e.message.test(e.envelope === 'aad' ? res.json.error_description : res.json.error.message)) return `the message does not match ${e.message}`;
  if (e.envelope === 'kv' || e.envelope === 'arm') {
    const code = res.json.error.code;
    if (e.exact && code !== e.code) return `expected error code ${e.code}, got ${code}`;
    if (e.exact && e.inner && res.json.error.innererror?.code !== e.inner) return `expected innererror ${e.inner}, got ${res.json.error.innererror?.code}`;
    // ARM names a token of the wrong tenant for a subscription InvalidAuthenticationTokenTenant; every other 401 is Unauthorized.
    if (res.status === 401 && code !== 'Unauthorized' && code !== 'InvalidAuthenticationTokenTenant') return `401 with code ${code}`;
    if (e.exact && e.challenge && !String(res.headers['www-authenticate'] ?? '').startsWith('Bearer authorization=')) return 'a vault 401 without the WWW-Authenticate challenge';
  }
  return undefined;
}
