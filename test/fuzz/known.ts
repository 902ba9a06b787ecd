import type { Fixtures } from './fixtures.js';
import type { Expectation, FuzzRequest } from './generator.js';
import type { Rng } from './prng.js';

/**
 * Bad inputs known to have answered 500: the two issue 9 names (a JWK with invalid components, a Basic
 * credential with `%` at the token endpoint) and those this fuzz found. Each must be a 400 (401 at the token
 * endpoint) in the API's own envelope, sent by the right principal so that nothing but the input is wrong.
 */
/** An object whose toString and valueOf are not functions: String() and template strings throw on it. */
const HOSTILE = { toString: 1, valueOf: 1 };

export function knownBadInputs(f: Fixtures, rng: Rng, next: () => number): FuzzRequest[] {
  const { targets: t, ports } = f;
  const right = f.callers.find((c) => c.cls === 'right')!;
  const [good, other] = t.jwks;
  const request = (what: string, raw: FuzzRequest['raw'], expect: Expectation): FuzzRequest => ({
    n: next(), routeId: `known: ${what}`, mutations: { path: 'none', body: 'known', query: 'none' }, label: `known bad input: ${what}`, raw, expect,
  });
  const badParameter = (envelope: 'kv' | 'arm', message: RegExp): Expectation => ({ refused: true, status: 400, code: 'BadParameter', envelope, exact: true, statuses: [400], message });
  const vault = (method: string, path: string, body: unknown, message: RegExp, query = '') =>
    request(`${method} ${path}${query} ${message}`, {
      method, port: ports.vault, path: `${path}?api-version=7.5${query}`,
      headers: { host: t.vaultHost, authorization: right.vault!, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    }, badParameter('kv', message));
  const importing = (key: Record<string, unknown>, message: RegExp) => vault('PUT', `/keys/fz-known-${rng.name(6)}`, { key }, message);
  const form = 'grant_type=client_credentials&scope=https%3A%2F%2Fvault.azure.net%2F.default';
  const basic = (s: string) => `Basic ${Buffer.from(s).toString('base64')}`;
  const token = (what: string, headers: Record<string, string>, body: string) =>
    request(`token endpoint, ${what}`, { method: 'POST', port: ports.platform, path: `/${t.tid}/oauth2/v2.0/token`, headers, body },
      { refused: true, status: 401, code: '', envelope: 'aad', exact: false, statuses: [400, 401] });

  return [
    // Issue 9: a JWK with invalid components was a RangeError in the PSS encoder.
    importing(t.smallJwk, /'n'.*1024-bit/),
    importing({ ...good, n: 'AQAB' }, /'n'/),
    importing({ ...good, n: '' }, /'n'/),
    importing({ ...good, p: '!!!' }, /'p'/),
    importing({ ...good, e: 'AQAA' }, /'e'/),
    importing({ ...good, d: other.d }, /'d'/),
    importing({ ...good, dq: other.dq }, /'dq'/),
    importing({ ...good, qi: 'AQAB' }, /'qi'/),
    importing({ ...good, key_ops: 'sign' }, /key_ops/),
    // Found by this fuzz: key times no date can show, rotation durations past that, a backup whose header is
    // JSON null, paging SQLite cannot bind.
    vault('PATCH', `/keys/k1/${t.keyVersion}`, { attributes: { nbf: 1e308 } }, /'nbf'/),
    vault('POST', '/keys/fz-known-time/create', { kty: 'RSA', attributes: { exp: 9e15 } }, /'exp'/),
    vault('PUT', '/keys/k1/rotationpolicy', { lifetimeActions: [{ trigger: { timeAfterCreate: ['P1D'] }, action: { type: 'Rotate' } }] }, /ISO 8601/),
    vault('PUT', '/keys/k1/rotationpolicy', { attributes: { expiryTime: 'P99999999999999999999Y' } }, /1000 years/),
    // Found by this fuzz: objects no String() or template string can turn into text, in an error message.
    importing({ kty: HOSTILE }, /Key type/),
    vault('PUT', '/keys/k1/rotationpolicy', { lifetimeActions: [{ trigger: { timeAfterCreate: 'P90D' }, action: { type: HOSTILE } }] }, /Lifetime action type/),
    vault('POST', '/keys/restore', { value: Buffer.concat([Buffer.from([0, 4]), Buffer.from('null'), Buffer.alloc(40)]).toString('base64url') }, /corrupt/),
    vault('GET', '/keys', undefined, /skiptoken/, '&$skiptoken=1e20'),
    vault('GET', '/deletedkeys', undefined, /skiptoken/, '&$skiptoken=9e99'),
    request('event subscription whose includedEventTypes is not a list', {
      method: 'PUT', port: ports.platform,
      path: `/tenants/${t.tid}/providers/Microsoft.KeyVault/vaults/${t.victimVault}/eventSubscriptions/fz-known?api-version=2023-07-01`,
      headers: { authorization: right.mgmt!, 'content-type': 'application/json' },
      body: JSON.stringify({ properties: { destination: { properties: { endpointUrl: 'https://127.0.0.1:9/x' } }, filter: { includedEventTypes: 'KeyExpired' } } }),
    }, badParameter('arm', /includedEventTypes/)),
    // Issue 9: a Basic credential containing % was a URIError at the token endpoint.
    token('Basic credential with %', { 'content-type': 'application/x-www-form-urlencoded', authorization: basic('%E0%A4%A:%') }, form),
    token('Basic secret with %', { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(`${f.tokenInputs.admin.clientId}:100%`) }, form),
    // Found by this fuzz: a JSON body may carry non-strings where a form carries strings.
    token('JSON body with an object client_id', { 'content-type': 'application/json' },
      JSON.stringify({ grant_type: 'client_credentials', scope: 'https://vault.azure.net/.default', client_id: { a: 1 }, client_secret: 'x' })),
    ...(['grant_type', 'scope', 'client_id'] as const).map((field) => token(`JSON body whose ${field} no template string can print`, { 'content-type': 'application/json' },
      JSON.stringify({ grant_type: 'client_credentials', scope: 'https://vault.azure.net/.default', client_id: rng.uuid(), client_secret: 'x', [field]: HOSTILE }))),
  ];
}
