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
 * requests follow the exhaustive matrix (default 4000), `PGBYOK_FUZZ_MAX_SECONDS` bounds the run (default 150).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPgbyok, type Pgbyok } from './harness.js';
import type { Caller } from './fuzz/callers.js';
import { MGMT_ROUTES, PUBLIC_ROUTES, VAULT_ROUTES, type RouteSpec } from './fuzz/catalog.js';
import { describeRequest, Findings } from './fuzz/findings.js';
import { setupFixtures, type Fixtures } from './fuzz/fixtures.js';
import { buildRequest, outcome, tokenRequests, type FuzzRequest } from './fuzz/generator.js';
import { knownBadInputs } from './fuzz/known.js';
import { fuzzSeed, Rng } from './fuzz/prng.js';
import { mapLimit, rawSender, type RawResponse } from './fuzz/send.js';
import { diffFingerprints, stateReader, type Fingerprint } from './fuzz/state.js';

function intEnv(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new Error(`${name} must be a positive whole number, not '${v}'`);
  return Number(v);
}

const SEED = fuzzSeed();
const RANDOM_REQUESTS = intEnv('PGBYOK_FUZZ_REQUESTS', 4000);
const MAX_SECONDS = intEnv('PGBYOK_FUZZ_MAX_SECONDS', 150);
const MIN_REQUESTS = 2000;
const CONCURRENCY = 8;
const BATCH = 120;
/** Of the random requests, this share comes from unauthorized callers (in parallel batches), the rest from authorized ones. */
const REFUSED_SHARE = 0.75;
const ALL_ROUTES: RouteSpec[] = [...VAULT_ROUTES, ...MGMT_ROUTES, ...PUBLIC_ROUTES];
const NO_MUTATION = { path: false, body: false, query: false };

/** Fails with the findings' account (once, not as a diff against an empty string). */
function noFindings(report: string): void {
  if (report) assert.fail(report);
}

describe('security fuzz: authorization matrix and bad input', { timeout: (MAX_SECONDS + 120) * 1000 }, () => {
  let p: Pgbyok;
  let f: Fixtures;
  let state: ReturnType<typeof stateReader>;
  let sender: ReturnType<typeof rawSender>;
  const rng = new Rng(SEED);
  const findings = new Findings(SEED);
  const started = Date.now();
  const deadline = started + MAX_SECONDS * 1000;
  let n = 0;
  const next = () => n++;

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
      const answered = reqs.filter((_q, i) => { const r = results[i]; return !(r instanceof Error) && r.status < 400; });
      findings.stateChanges.push(`  ${what}: refused requests changed state:\n    ${diff.join('\n    ')}\n    requests of the batch answered < 400:\n${answered.slice(0, 10).map((q) => `      ${describeRequest(q)}`).join('\n')}`);
    }
  }

  before(async () => {
    console.log(`# security fuzz seed ${SEED} (replay: PGBYOK_FUZZ_SEED=${SEED})`);
    p = await startPgbyok();
    f = await setupFixtures(p, rng);
    state = stateReader(p.home);
    sender = rawSender(new URL(p.origin).hostname, p.ca, CONCURRENCY);
  });

  after(async () => {
    for (const line of findings.summary((Date.now() - started) / 1000)) console.log(`# ${line}`);
    sender?.close();
    state?.close();
    await p?.stop();
  });

  const refusedRoutes = (c: Caller) => ALL_ROUTES.filter((r) => outcome(r, c).refused);

  test('the bad inputs of issue 9 (and those this fuzz found) are 400s in the API\'s own envelope; state unchanged', async () => {
    const from = findings.mark();
    await refusedBatch(knownBadInputs(f, rng, next), 'known bad inputs');
    // The key whose update was refused still serves.
    const right = f.callers.find((c) => c.cls === 'right')!;
    const enc = buildRequest(next(), VAULT_ROUTES.find((r) => r.id === 'vault.encrypt')!, right, f.targets, rng, f.ports, NO_MUTATION);
    findings.record(enc, await send(enc));
    noFindings(findings.since(from, 'known bad inputs'));
  });

  test('authorization matrix: every route × every unauthorized caller is refused (401/403, in its envelope); state unchanged', async () => {
    const from = findings.mark();
    const reqs: FuzzRequest[] = [];
    for (const c of f.callers) for (const route of refusedRoutes(c)) reqs.push(buildRequest(next(), route, c, f.targets, rng, f.ports, NO_MUTATION));
    // The matrix once more with letters of the path percent-encoded (`/%74enants`): servers decode them before routing.
    for (const c of f.callers) for (const route of refusedRoutes(c)) reqs.push(buildRequest(next(), route, c, f.targets, rng, f.ports, { ...NO_MUTATION, path: true }));
    // And every tenant-scoped management route addressed to a tenant that is not the caller's, by every caller with a valid token.
    const tenantScoped = MGMT_ROUTES.filter((r) => r.tenantScoped);
    for (const c of f.callers.filter((x) => x.roles !== undefined || x.cls === 'otherTenant')) {
      for (const route of tenantScoped) reqs.push(buildRequest(next(), route, c, f.targets, rng, f.ports, { ...NO_MUTATION, foreignTenant: true }));
    }
    const tokenReqs = tokenRequests(n, f.tokenInputs, rng, f.ports, false);
    n += tokenReqs.length;
    reqs.push(...tokenReqs);
    for (let i = 0; i < reqs.length; i += BATCH) await refusedBatch(reqs.slice(i, i + BATCH), `matrix batch ${i / BATCH}`);
    noFindings(findings.since(from, `authorization matrix: ${reqs.length} refused requests`));
  });

  test('fuzz, unauthorized callers: mutated paths, queries and bodies are refused, never 5xx; state unchanged', async () => {
    const from = findings.mark();
    const want = Math.round(RANDOM_REQUESTS * REFUSED_SHARE);
    const unauthorized = f.callers.filter((c) => c.cls !== 'right');
    let sent = 0;
    while (sent < want && Date.now() < deadline) {
      const reqs: FuzzRequest[] = [];
      while (reqs.length < Math.min(BATCH, want - sent)) {
        if (rng.chance(0.04)) {
          const cases = tokenRequests(n, f.tokenInputs, rng, f.ports, rng.chance(0.5));
          n += cases.length;
          reqs.push(rng.pick(cases));
          continue;
        }
        const foreignTenant = rng.chance(0.08);
        const caller = rng.pick(foreignTenant ? f.callers : unauthorized);
        const route = rng.pick(foreignTenant ? MGMT_ROUTES.filter((r) => r.tenantScoped) : refusedRoutes(caller));
        reqs.push(buildRequest(next(), route, caller, f.targets, rng, f.ports, { path: rng.chance(0.6), body: rng.chance(0.55), query: rng.chance(0.15), foreignTenant }));
      }
      await refusedBatch(reqs, `fuzz batch at #${reqs[0].n}`);
      sent += reqs.length;
    }
    assert.ok(sent >= want, `only ${sent} of ${want} refused fuzz requests fit in ${MAX_SECONDS} s (PGBYOK_FUZZ_MAX_SECONDS)`);
    noFindings(findings.since(from, `fuzz of unauthorized callers: ${sent} requests`));
  });

  test('fuzz, authorized callers: never refused by authorization, never 5xx; a request they are refused changes nothing', async () => {
    const from = findings.mark();
    const destructive = (r: RouteSpec) => r.method === 'DELETE' || /recover|purge|restore/.test(r.id);
    const allowed = f.callers.flatMap((c) => ALL_ROUTES.filter((r) => !outcome(r, c).refused).map((route) => ({ c, route })))
      .sort((a, b) => Number(destructive(a.route)) - Number(destructive(b.route)));
    let last: Fingerprint = state.fingerprint();
    const one = async (q: FuzzRequest) => {
      const res = await send(q);
      findings.record(q, res);
      const now = state.fingerprint();
      if (!(res instanceof Error) && res.status >= 400) {
        const diff = diffFingerprints(last, now);
        if (diff.length) findings.stateChanges.push(`  ${describeRequest(q)} was refused with ${res.status} but changed state:\n    ${diff.join('\n    ')}`);
      }
      last = now;
      return res;
    };
    // Every allowed (route, caller) once as it should be (what only deletes, last), then mutated at random.
    const canonical: string[] = [];
    for (const { c, route } of allowed) {
      const res = await one(buildRequest(next(), route, c, f.targets, rng, f.ports, NO_MUTATION));
      if (!(res instanceof Error) && res.status >= 300) canonical.push(`${route.id} as ${c.cls}: ${res.status} ${res.json?.error?.code ?? ''}`);
    }
    console.log(`# authorized callers, each allowed route once: ${allowed.length - canonical.length} of ${allowed.length} answered 2xx; the others (4xx for what the fixtures lack, never for authorization): ${canonical.join('; ')}`);
    const want = RANDOM_REQUESTS - Math.round(RANDOM_REQUESTS * REFUSED_SHARE);
    let sent = 0;
    for (; sent < want && Date.now() < deadline; sent++) {
      const { c, route } = rng.pick(allowed);
      await one(buildRequest(next(), route, c, f.targets, rng, f.ports, { path: rng.chance(0.4), body: rng.chance(0.5), query: rng.chance(0.15) }));
    }
    assert.ok(sent >= want, `only ${sent} of ${want} authorized fuzz requests fit in ${MAX_SECONDS} s (PGBYOK_FUZZ_MAX_SECONDS)`);
    noFindings(findings.since(from, `fuzz of authorized callers: ${allowed.length + sent} requests`));
  });

  test(`at least ${MIN_REQUESTS} requests, none answered 5xx; still serving; the audit chain verifies`, async () => {
    assert.ok(findings.sent >= MIN_REQUESTS, `only ${findings.sent} requests were sent`);
    assert.deepEqual(findings.fiveHundreds.map((x) => `${describeRequest(x.request)} -> ${x.res.status}`), [], 'no answer is a 5xx');
    const health = await p.http('GET', `${p.origin}/health`);
    assert.equal(health.status, 200);
    assert.equal(p.cli('audit', 'verify').valid, true);
  });
});
