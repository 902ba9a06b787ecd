/**
 * The authorization matrix and a seeded, bounded fuzz of the vault and management APIs (issue 9, part 7),
 * against one real `pgbyok up` over HTTPS on loopback. What it holds pgbyok to:
 *
 *  - no answer is a 5xx;
 *  - every route × every unauthorized caller is refused: 401 (no, malformed, forged, expired or
 *    badly-claimed token, wrong audience, deleted principal, another tenant) or 403 (no role duty, no key
 *    permission), in the surface's envelope (Key Vault's and ARM's `{"error":{"code","message"}}`, the
 *    identity platform's `{"error":"invalid_client",...}` at the token endpoint) — also with the path
 *    percent-encoded (`/%74enants`), and with the path, query or body mutated;
 *  - no refused request changes any state: the SQLite tables (all but the audit log and the token signing
 *    keys) hash the same before and after each batch of refused requests, and in the phase of the right
 *    principal, before and after each request it is refused.
 *
 * The seed is printed; `PGBYOK_FUZZ_SEED=<n>` replays a run, `PGBYOK_FUZZ_REQUESTS` sets how many random
 * requests follow the exhaustive matrix (default 2000), `PGBYOK_FUZZ_MAX_SECONDS` bounds the run (default 150).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateRsaKeySync } from '../src/lib/rsa-keygen.js';
import { MGMT_RESOURCE, startPgbyok, type Cred, type Pgbyok } from './harness.js';
import { buildCallers, type Caller } from './fuzz/callers.js';
import { MGMT_ROUTES, PUBLIC_ROUTES, VAULT_ROUTES, type RouteSpec, type Targets } from './fuzz/catalog.js';
import { buildRequest, outcome, problemWith, tokenRequests, type FuzzRequest, type Ports, type TokenInputs } from './fuzz/generator.js';
import { fuzzSeed, Rng } from './fuzz/prng.js';
import { mapLimit, rawSender, type RawResponse } from './fuzz/send.js';
import { diffFingerprints, stateReader, type Fingerprint } from './fuzz/state.js';

const SEED = fuzzSeed();
const RANDOM_REQUESTS = Number(process.env.PGBYOK_FUZZ_REQUESTS ?? 2000);
const MAX_SECONDS = Number(process.env.PGBYOK_FUZZ_MAX_SECONDS ?? 150);
const MIN_REQUESTS = 2000;
const CONCURRENCY = 8;
const BATCH = 120;
const ALL_ROUTES: RouteSpec[] = [...VAULT_ROUTES, ...MGMT_ROUTES, ...PUBLIC_ROUTES];

/** What a run found: broken expectations, every 5xx, and counts for the summary. */
class Findings {
  problems: { request: FuzzRequest; why: string; res?: RawResponse }[] = [];
  fiveHundreds: { request: FuzzRequest; res: RawResponse }[] = [];
  stateChanges: string[] = [];
  statuses = new Map<number, number>();
  sent = 0;

  record(q: FuzzRequest, res: RawResponse | Error): void {
    this.sent++;
    if (res instanceof Error) {
      this.problems.push({ request: q, why: `no answer: ${res.message}` });
      return;
    }
    this.statuses.set(res.status, (this.statuses.get(res.status) ?? 0) + 1);
    if (res.status >= 500) this.fiveHundreds.push({ request: q, res });
    const why = problemWith(res, q.expect);
    if (why) this.problems.push({ request: q, why, res });
  }

  /** A readable account, grouped by what went wrong and the path mutation, with the routes and a few examples. */
  report(title: string, from = 0): string {
    const problems = this.problems.slice(from);
    const groups = new Map<string, typeof problems>();
    for (const p of problems) {
      const key = `${p.why} [path mutation: ${p.request.mutations.path}]`;
      groups.set(key, [...(groups.get(key) ?? []), p]);
    }
    const lines = [...groups].sort((a, b) => b[1].length - a[1].length).slice(0, 40).map(([k, ps]) => {
      const routes = [...new Set(ps.map((p) => p.request.routeId))];
      const ex = ps.slice(0, 2).map((p) => `      e.g. #${p.request.n} ${p.request.raw.method} ${p.request.raw.path.slice(0, 160)} [${p.request.label}] -> ${p.res ? `${p.res.status} ${p.res.text.slice(0, 200)}` : 'no answer'}`);
      return `  ${ps.length}× ${k}\n      routes (${routes.length}): ${routes.slice(0, 12).join(', ')}${routes.length > 12 ? ', ...' : ''}\n${ex.join('\n')}`;
    });
    return `${title} (seed ${SEED}; replay with PGBYOK_FUZZ_SEED=${SEED}): ${problems.length} problems in ${groups.size} kinds\n${lines.join('\n')}`;
  }
}

describe('security fuzz: authorization matrix and bad input', { timeout: (MAX_SECONDS + 120) * 1000 }, () => {
  let p: Pgbyok;
  let state: ReturnType<typeof stateReader>;
  let sender: ReturnType<typeof rawSender>;
  let targets: Targets;
  let callers: Caller[];
  let tokenInputs: TokenInputs;
  let ports: Ports;
  let adminMgmt: string;
  const rng = new Rng(SEED);
  const findings = new Findings();
  const started = Date.now();
  const deadline = started + MAX_SECONDS * 1000;
  let n = 0;

  const send = async (q: FuzzRequest): Promise<RawResponse | Error> => {
    try {
      return await sender.send(q.raw);
    } catch (e) {
      return e as Error;
    }
  };

  /** Refused requests, in parallel; the state must be the same after the batch as before it. */
  async function refusedBatch(reqs: FuzzRequest[], what: string): Promise<void> {
    const before = state.fingerprint();
    const results = await mapLimit(reqs, CONCURRENCY, send);
    const after = state.fingerprint();
    reqs.forEach((q, i) => findings.record(q, results[i]));
    const diff = diffFingerprints(before, after);
    if (diff.length) {
      const accepted = reqs.filter((_q, i) => { const r = results[i]; return !(r instanceof Error) && r.status < 400; });
      findings.stateChanges.push(`${what}: refused requests changed state:\n    ${diff.join('\n    ')}\n    requests of the batch that were answered < 400:\n${accepted.slice(0, 10).map((q) => `      #${q.n} ${q.raw.method} ${q.raw.path.slice(0, 160)} [${q.label}]`).join('\n')}`);
    }
  }

  /** A setup call as the administrator over the harness's client; it must succeed. */
  async function admin(method: string, path: string, body?: unknown, token = adminMgmt): Promise<any> {
    const res = await p.http(method, `${p.origin}${path}${path.includes('?') ? '&' : '?'}api-version=2023-07-01`, { token, body });
    assert.ok(res.status < 300, `setup ${method} ${path}: ${res.status} ${res.text}`);
    return res.json;
  }

  before(async () => {
    console.log(`# security fuzz seed ${SEED} (replay: PGBYOK_FUZZ_SEED=${SEED})`);
    p = await startPgbyok();
    const tid = p.admin.tenantId;
    const [adminVault, mgmtToken] = await Promise.all([p.token(p.admin), p.token(p.admin, MGMT_RESOURCE)]);
    adminMgmt = mgmtToken;
    const T = `/tenants/${tid}`;
    const KV = `${T}/providers/Microsoft.KeyVault`;

    const other = await admin('POST', '/tenants', { name: `other${rng.name(6)}` });
    const otherCred: Cred = { tenantId: other.tenantId, clientId: other.admin.appId, clientSecret: other.admin.password };
    const sp = async (name: string) => {
      const r = await admin('POST', `${T}/servicePrincipals`, { displayName: name });
      return { objectId: r.id as string, cred: { tenantId: tid, clientId: r.appId, clientSecret: r.password } as Cred };
    };
    const [noRole, dba, secOff, reader, gone, victimSp] = await Promise.all(['fz-norole', 'fz-dba', 'fz-secoff', 'fz-reader', 'fz-deleted', 'fz-victim'].map(sp));
    const role = (objectId: string, roleDefinitionName: string) =>
      admin('POST', `${T}/providers/Microsoft.Authorization/roleAssignments`, { properties: { principalId: objectId, roleDefinitionName } });
    await role(dba.objectId, 'DBA');
    await role(secOff.objectId, 'Security Officer');
    const victimRa = await role(victimSp.objectId, 'DBA');
    await admin('PUT', `${T}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/fz-identity`, { location: 'eastus' });
    await admin('PUT', `${T}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/fz-victim-identity`, { location: 'eastus' });

    const vault = `fzv${rng.name(8)}`;
    const victimVault = `fzvictim${rng.name(6)}`;
    const deletedVault = `fzdel${rng.name(8)}`;
    const body = { location: 'eastus', properties: { softDeleteRetentionInDays: 7 } };
    const v = await admin('PUT', `${KV}/vaults/${vault}`, body);
    await admin('PUT', `${KV}/vaults/${victimVault}`, body);
    await admin('PUT', `${KV}/vaults/${deletedVault}`, body);
    await admin('DELETE', `${KV}/vaults/${deletedVault}`);
    const readerPermissions = ['get', 'list'] as const;
    await admin('PUT', `${KV}/vaults/${vault}/accessPolicies/add`, { properties: { accessPolicies: [{ objectId: reader.objectId, permissions: { keys: [...readerPermissions] } }] } });
    await admin('PUT', `${KV}/vaults/${victimVault}/eventSubscriptions/fz-sub1`, { properties: { destination: { properties: { endpointUrl: 'https://127.0.0.1:9/fz' } } } });
    await admin('PUT', `${T}/providers/Microsoft.Insights/actionGroups/fz-ag1`, { properties: { webhookReceivers: [{ name: 'w', serviceUri: 'https://127.0.0.1:9/ag' }] } });
    await admin('PUT', `${T}/providers/Microsoft.Insights/activityLogAlerts/fz-ar1`, { properties: { condition: 'Any', actionGroup: 'fz-ag1' } });

    const vaultUri: string = v.properties.vaultUri;
    const vaultCall = async (method: string, path: string, b?: unknown) => {
      const res = await p.http(method, `${vaultUri}${path}?api-version=7.5`, { token: adminVault, body: b });
      assert.ok(res.status < 300, `setup ${method} ${path}: ${res.status} ${res.text}`);
      return res.json;
    };
    const k1 = await vaultCall('POST', 'keys/k1/create', { kty: 'RSA', key_size: 2048 });
    await vaultCall('POST', 'keys/dk1/create', { kty: 'RSA', key_size: 2048 });
    await vaultCall('DELETE', 'keys/dk1');
    const backup = (await vaultCall('POST', 'keys/k1/backup')).value;

    const tokens = async (c: Cred) => Promise.all([p.token(c), p.token(c, MGMT_RESOURCE)]) as Promise<[string, string]>;
    const [otherT, goneT, noRoleT, dbaT, secOffT, readerT] = await Promise.all([otherCred, gone.cred, noRole.cred, dba.cred, secOff.cred, reader.cred].map(tokens));
    await admin('DELETE', `${T}/servicePrincipals/${gone.objectId}`);

    const jwk = (bits: number) => generateRsaKeySync(bits).export({ format: 'jwk' }) as Record<string, string>;
    targets = {
      tid, otherTid: other.tenantId, vault, vaultPort: Number(new URL(vaultUri).port), keyVersion: k1.key.kid.split('/').pop(), backup,
      victimVault, deletedVault, identity: 'fz-identity', victimIdentity: 'fz-victim-identity', victimSp: victimSp.objectId,
      victimRoleAssignment: victimRa.name, objectIds: [victimSp.objectId, rng.uuid()], subscription: 'fz-sub1', actionGroup: 'fz-ag1',
      alertRule: 'fz-ar1', jwks: [jwk(2048), jwk(2048)], smallJwk: jwk(1024),
    };
    ports = { platform: Number(new URL(p.origin).port), vault: targets.vaultPort };
    callers = await buildCallers({
      home: p.home, origin: p.origin, tid, otherTid: other.tenantId, admin: [adminVault, adminMgmt], other: otherT, deleted: goneT,
      noRole: noRoleT, dba: dbaT, securityOfficer: secOffT, reader: readerT, readerPermissions: [...readerPermissions], someObjectId: noRole.objectId,
    });
    tokenInputs = { tid, admin: p.admin, other: otherCred, deleted: gone.cred };
    state = stateReader(p.home);
    sender = rawSender(new URL(p.origin).hostname, p.ca, CONCURRENCY);
  });

  after(async () => {
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const statuses = [...findings.statuses].sort(([a], [b]) => a - b).map(([s, c]) => `${s}:${c}`).join(' ');
    console.log(`# security fuzz seed ${SEED}: ${findings.sent} requests in ${seconds} s; statuses ${statuses}; ${findings.fiveHundreds.length} answered 5xx`);
    for (const f of findings.fiveHundreds.slice(0, 25)) {
      console.log(`#   5xx #${f.request.n} ${f.request.raw.method} ${f.request.raw.path.slice(0, 160)} [${f.request.label}] -> ${f.res.status} ${f.res.text.slice(0, 160)}`);
    }
    sender?.close();
    state?.close();
    await p?.stop();
  });

  const refusedRoutes = (c: Caller) => ALL_ROUTES.filter((r) => outcome(r, c).refused);

  test('the bad inputs of issue 9 (and those this fuzz found) are 400s in the API\'s own envelope; state unchanged', async () => {
    const from = findings.problems.length;
    const changesFrom = findings.stateChanges.length;
    const right = callers.find((c) => c.cls === 'right')!;
    const [good, other] = targets.jwks;
    const vault = (method: string, path: string, body: unknown, message: RegExp): FuzzRequest => ({
      n: n++, routeId: `known: ${method} ${path}`, mutations: { path: 'none', body: 'known', query: 'none' }, label: `known bad input: ${method} ${path} ${message}`,
      raw: { method, port: ports.vault, path: `${path}?api-version=7.5`, headers: { authorization: right.vault!, 'content-type': 'application/json' }, body: JSON.stringify(body) },
      expect: { refused: true, status: 400, code: 'BadParameter', envelope: 'kv', exact: true, statuses: [400], message },
    });
    const importing = (key: Record<string, unknown>, message: RegExp) => vault('PUT', `/keys/fz-known-${rng.name(6)}`, { key }, message);
    const token = (label: string, headers: Record<string, string>, body: string): FuzzRequest => ({
      n: n++, routeId: `known: token ${label}`, mutations: { path: 'none', body: 'known', query: 'none' }, label: `known bad input: token endpoint, ${label}`,
      raw: { method: 'POST', port: ports.platform, path: `/${targets.tid}/oauth2/v2.0/token`, headers, body },
      expect: { refused: true, status: 401, code: '', envelope: 'aad', exact: false, statuses: [400, 401] },
    });
    const form = 'grant_type=client_credentials&scope=https%3A%2F%2Fvault.azure.net%2F.default';
    const basic = (s: string) => `Basic ${Buffer.from(s).toString('base64')}`;
    const reqs = [
      // Issue 9: a JWK with invalid components was a RangeError in the PSS encoder.
      importing(targets.smallJwk, /'n'.*1024-bit/),
      importing({ ...good, n: 'AQAB' }, /'n'/),
      importing({ ...good, n: '' }, /'n'/),
      importing({ ...good, p: '!!!' }, /'p'/),
      importing({ ...good, e: 'AQAA' }, /'e'/),
      importing({ ...good, d: other.d }, /'d'/),
      importing({ ...good, dq: other.dq }, /'dq'/),
      importing({ ...good, qi: 'AQAB' }, /'qi'/),
      importing({ ...good, key_ops: 'sign' }, /key_ops/),
      // Found by this fuzz: key times a date cannot show, a non-string rotation trigger.
      vault('PATCH', `/keys/k1/${targets.keyVersion}`, { attributes: { nbf: 1e308 } }, /'nbf'/),
      vault('POST', '/keys/fz-known-time/create', { kty: 'RSA', attributes: { exp: 9e15 } }, /'exp'/),
      vault('PUT', '/keys/k1/rotationpolicy', { lifetimeActions: [{ trigger: { timeAfterCreate: ['P1D'] }, action: { type: 'Rotate' } }] }, /ISO 8601/),
      {
        n: n++, routeId: 'known: event subscription filter', mutations: { path: 'none', body: 'known', query: 'none' }, label: 'known bad input: includedEventTypes not a list',
        raw: {
          method: 'PUT', port: ports.platform, path: `/tenants/${targets.tid}/providers/Microsoft.KeyVault/vaults/${targets.victimVault}/eventSubscriptions/fz-known?api-version=2023-07-01`,
          headers: { authorization: right.mgmt!, 'content-type': 'application/json' },
          body: JSON.stringify({ properties: { destination: { properties: { endpointUrl: 'https://127.0.0.1:9/x' } }, filter: { includedEventTypes: 'KeyExpired' } } }),
        },
        expect: { refused: true, status: 400, code: 'BadParameter', envelope: 'arm', exact: true, statuses: [400], message: /includedEventTypes/ },
      } satisfies FuzzRequest,
      // Issue 9: a Basic credential containing % was a URIError at the token endpoint.
      token('Basic credential with %', { 'content-type': 'application/x-www-form-urlencoded', authorization: basic('%E0%A4%A:%') }, form),
      token('Basic secret with %', { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(`${tokenInputs.admin.clientId}:100%`) }, form),
      // Found by this fuzz: a JSON body may carry non-strings where a form carries strings.
      token('JSON body with an object client_id', { 'content-type': 'application/json' }, JSON.stringify({ grant_type: 'client_credentials', scope: 'https://vault.azure.net/.default', client_id: { a: 1 }, client_secret: 'x' })),
    ];
    await refusedBatch(reqs, 'known bad inputs');
    // The key whose update was refused still serves.
    const enc = buildRequest(n++, VAULT_ROUTES.find((r) => r.id === 'vault.encrypt')!, right, { ...targets }, rng, ports, { path: false, body: false, query: false });
    findings.record(enc, await send(enc));
    const changes = findings.stateChanges.slice(changesFrom);
    assert.equal(findings.problems.length - from + changes.length, 0, `${findings.report('known bad inputs', from)}\n${changes.join('\n')}`);
  });

  test('authorization matrix: every route × every unauthorized caller is refused (401/403, in its envelope); state unchanged', async () => {
    const from = findings.problems.length;
    const reqs: FuzzRequest[] = [];
    for (const c of callers) for (const route of refusedRoutes(c)) reqs.push(buildRequest(n++, route, c, targets, rng, ports, { path: false, body: false, query: false }));
    // The same matrix once more with the path's letters percent-encoded, as a server decodes them before routing.
    for (const c of callers) for (const route of refusedRoutes(c)) reqs.push(buildRequest(n++, route, c, targets, rng, ports, { path: true, body: false, query: false }));
    const tokenReqs = tokenRequests(n, tokenInputs, rng, ports, false);
    n += tokenReqs.length;
    reqs.push(...tokenReqs);
    for (let i = 0; i < reqs.length; i += BATCH) await refusedBatch(reqs.slice(i, i + BATCH), `matrix batch ${i / BATCH}`);
    const problems = findings.problems.slice(from);
    assert.equal(problems.length + findings.stateChanges.length, 0,
      `${findings.report(`authorization matrix: ${reqs.length} refused requests`, from)}\n${findings.stateChanges.join('\n')}`);
  });

  test('fuzz, unauthorized callers: mutated paths, queries and bodies are refused, never 5xx; state unchanged', async () => {
    const from = findings.problems.length;
    const changesFrom = findings.stateChanges.length;
    const want = Math.round(RANDOM_REQUESTS * 0.75);
    let sent = 0;
    while (sent < want && Date.now() < deadline) {
      const reqs: FuzzRequest[] = [];
      while (reqs.length < Math.min(BATCH, want - sent)) {
        if (rng.chance(0.04)) {
          const cases = tokenRequests(n, tokenInputs, rng, ports, rng.chance(0.5));
          reqs.push(rng.pick(cases));
          n += cases.length;
          continue;
        }
        const caller = rng.pick(callers.filter((c) => c.cls !== 'right'));
        const route = rng.pick(refusedRoutes(caller));
        reqs.push(buildRequest(n++, route, caller, targets, rng, ports, { path: rng.chance(0.6), body: rng.chance(0.55), query: rng.chance(0.15) }));
      }
      await refusedBatch(reqs, `fuzz batch at #${reqs[0].n}`);
      sent += reqs.length;
    }
    assert.ok(sent >= want, `only ${sent} of ${want} refused fuzz requests fit in ${MAX_SECONDS} s (PGBYOK_FUZZ_MAX_SECONDS)`);
    const changes = findings.stateChanges.slice(changesFrom);
    assert.equal(findings.problems.length - from + changes.length, 0,
      `${findings.report(`fuzz of refused callers: ${sent} requests`, from)}\n${changes.join('\n')}`);
  });

  test('fuzz, authorized callers: the right principal is never refused by authorization, never 5xx; a refused request changes nothing', async () => {
    const from = findings.problems.length;
    const allowed = callers.flatMap((c) => ALL_ROUTES.filter((r) => !outcome(r, c).refused).map((route) => ({ c, route })));
    const changes: string[] = [];
    let last: Fingerprint = state.fingerprint();
    const one = async (q: FuzzRequest) => {
      const res = await send(q);
      findings.record(q, res);
      const now = state.fingerprint();
      if (!(res instanceof Error) && res.status >= 400) {
        const diff = diffFingerprints(last, now);
        if (diff.length) changes.push(`#${q.n} ${q.raw.method} ${q.raw.path.slice(0, 160)} [${q.label}] was refused with ${res.status} but changed state:\n    ${diff.join('\n    ')}`);
      }
      last = now;
    };
    // Every allowed (route, caller) once as it should be, then mutated at random.
    for (const { c, route } of allowed) await one(buildRequest(n++, route, c, targets, rng, ports, { path: false, body: false, query: false }));
    const want = RANDOM_REQUESTS - Math.round(RANDOM_REQUESTS * 0.75);
    let sent = 0;
    for (; sent < want && Date.now() < deadline; sent++) {
      const { c, route } = rng.pick(allowed);
      await one(buildRequest(n++, route, c, targets, rng, ports, { path: rng.chance(0.4), body: rng.chance(0.5), query: rng.chance(0.15) }));
    }
    assert.ok(sent >= want, `only ${sent} of ${want} authorized fuzz requests fit in ${MAX_SECONDS} s (PGBYOK_FUZZ_MAX_SECONDS)`);
    assert.equal(findings.problems.length - from + changes.length, 0,
      `${findings.report(`fuzz of authorized callers: ${allowed.length + sent} requests`, from)}\n${changes.join('\n')}`);
  });

  test(`at least ${MIN_REQUESTS} requests, none answered 5xx; still serving; the audit chain verifies`, async () => {
    assert.ok(findings.sent >= MIN_REQUESTS, `only ${findings.sent} requests were sent`);
    assert.deepEqual(findings.fiveHundreds.map((f) => `${f.request.raw.method} ${f.request.raw.path.slice(0, 120)} [${f.request.label}] -> ${f.res.status}`), [], 'no answer is a 5xx');
    const health = await p.http('GET', `${p.origin}/health`);
    assert.equal(health.status, 200);
    assert.equal(p.cli('audit', 'verify').valid, true);
  });
});
