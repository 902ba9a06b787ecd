/**
 * The locked server's front door (issue 9, part 6), against the real platform and PostgreSQL: pgbyok holds a
 * server's public port and pipes it to PostgreSQL (TLS end to end); while the server locks, a client
 * polling the port every 50 ms never finds it dark and reads pgbyok's refusal (SQLSTATE 57P03, the reason
 * in words, no key URI) within a second of the first refusal; pg_isready reads "rejecting connections";
 * once the key is back the server serves through the front again.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { eventually, startPgbyok, type Pgbyok } from './harness.js';
import { connInfo, createCmkServer, PASSWORD, type CmkServer } from './cmk-scenario.js';
import { probe, type ProbeAnswer } from './pg-wire-probe.js';

let p: Pgbyok;
let s: CmkServer;

before(async () => {
  p = await startPgbyok({ PGBYOK_KEY_MONITOR_INTERVAL_MS: '500' });
  try {
    s = createCmkServer(p, 'door');
  } catch (e) {
    await p.stop();
    throw e;
  }
});

after(async () => {
  await p?.stop();
});

const psql = (sql: string, sslmode = 'verify-full') =>
  spawnSync('psql', [connInfo(p, s.port, sslmode), '-XAtqc', sql], { env: { ...process.env, PGPASSWORD: PASSWORD }, encoding: 'utf8', timeout: 30_000 });

const state = () => p.cli('server', 'show', '--name', s.name).properties.state as string;
const isPgbyokRefusal = (a: ProbeAnswer) => a.kind === 'error' && /is inaccessible/.test(a.message);

test('while Ready the public port is PostgreSQL itself, through the front: TLS verified end to end', () => {
  const r = psql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid(); CREATE TABLE t AS SELECT 'row-' || g AS v FROM generate_series(1, 100) g; SELECT count(*) FROM t");
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split('\n'), ['t', '100'], 'the session is TLS inside PostgreSQL (pg_stat_ssl), verified with verify-full');
});

/** Probes the port every 50 ms while `during` runs; returns every answer with its time. */
async function pollWhile(during: (answers: { at: number; a: ProbeAnswer }[]) => Promise<void>): Promise<{ at: number; a: ProbeAnswer }[]> {
  const answers: { at: number; a: ProbeAnswer }[] = [];
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const at = Date.now();
      answers.push({ at, a: await probe(s.port) });
      await new Promise((r) => setTimeout(r, Math.max(0, 50 - (Date.now() - at))));
    }
  })();
  try {
    await eventually(() => answers.length >= 5, 'the poller to start');
    await during(answers);
  } finally {
    polling = false;
    await poller;
  }
  return answers;
}

/** The distinct answers seen, for the test's diagnostics. */
const summary = (answers: { a: ProbeAnswer }[]) =>
  [...new Set(answers.map((x) => (x.a.kind === 'error' ? `${x.a.code} ${x.a.message.slice(0, 40)}` : x.a.kind)))].join(' | ');

test('a restart of PostgreSQL never leaves the port dark: PostgreSQL or a readable 57P03 answers', async (t) => {
  const answers = await pollWhile(async () => {
    p.cli('server', 'restart', '--name', s.name);
    await eventually(() => psql('SELECT 1').status === 0, 'PostgreSQL back after the restart');
  });
  t.diagnostic(`polls: ${answers.length}; answers: ${summary(answers)}`);
  const odd = answers.filter((x) => x.a.kind !== 'error' || (x.a.code !== '28000' && x.a.code !== '57P03'));
  assert.deepEqual(odd, [], 'every poll was answered in the protocol');
});

test('a lock never leaves the port dark; the refusal is 57P03, names the reason and not the key; pg_isready reads rejecting; the key back, the front serves again', async (t) => {
  const answers = await pollWhile(async (answers) => {
    p.cli('key', 'set-attributes', '--vault-name', s.vault, '--name', s.keyName, '--enabled', 'false');
    await eventually(() => answers.some((x) => isPgbyokRefusal(x.a)), "pgbyok's refusal on the port", 20_000, 50);
    await eventually(() => state() === 'Inaccessible', 'Inaccessible', 20_000);
    // A few more polls while PostgreSQL is stopped and the volume locked.
    const n = answers.length;
    await eventually(() => answers.length >= n + 10, 'polls after the lock', 10_000, 50);
  });

  const kinds = answers.map((x) => x.a.kind);
  t.diagnostic(`polls: ${answers.length}; answers: ${summary(answers)}`);
  assert.ok(!kinds.includes('refused'), `the port was never dark: ${kinds.join(',')}`);
  const firstRefusal = answers.findIndex((x) => x.a.kind !== 'error' || !/no pg_hba.conf entry|pg_hba.conf rejects/.test(x.a.message));
  const firstPgbyok = answers.findIndex((x) => isPgbyokRefusal(x.a));
  assert.ok(firstRefusal >= 0 && firstPgbyok >= firstRefusal);
  t.diagnostic(`first refusal to pgbyok's refusal: ${answers[firstPgbyok].at - answers[firstRefusal].at} ms`);
  assert.ok(answers[firstPgbyok].at - answers[firstRefusal].at <= 1000,
    `pgbyok's refusal came ${answers[firstPgbyok].at - answers[firstRefusal].at} ms after the first refusal (${JSON.stringify(answers[firstRefusal].a)})`);
  // From the first pgbyok refusal on, every answer is pgbyok's.
  assert.ok(answers.slice(firstPgbyok).every((x) => isPgbyokRefusal(x.a)), JSON.stringify(answers.slice(firstPgbyok).map((x) => x.a)));

  const refusal = answers[firstPgbyok].a as Extract<ProbeAnswer, { kind: 'error' }>;
  assert.equal(refusal.code, '57P03');
  assert.equal(refusal.fields.S, 'FATAL');
  assert.match(refusal.message, /^server "srv-door" is inaccessible: its customer-managed key cannot be used because the key is disabled$/);
  const everything = Object.values(refusal.fields).join('\n');
  assert.ok(!everything.includes(s.keyUri) && !everything.includes(new URL(s.keyUri).host), `no key URI or vault address in the refusal: ${everything}`);

  const ready = spawnSync('pg_isready', ['-h', 'localhost', '-p', String(s.port)], { encoding: 'utf8' });
  assert.equal(ready.status, 1, ready.stdout);
  assert.match(ready.stdout, /rejecting connections/);

  const viaTls = psql('SELECT 1', 'require');
  assert.notEqual(viaTls.status, 0);
  assert.match(viaTls.stderr, /is inaccessible: its customer-managed key cannot be used because the key is disabled/);
  assert.ok(!viaTls.stderr.includes(s.keyUri));
  // Who may read the server still sees which key it is.
  assert.equal(p.cli('server', 'show', '--name', s.name).properties.dataEncryption.primaryKeyURI, s.keyUri);

  p.cli('key', 'set-attributes', '--vault-name', s.vault, '--name', s.keyName, '--enabled', 'true');
  await eventually(() => state() === 'Ready', 'Ready again once the key is enabled', 30_000);
  const back = psql('SELECT count(*) FROM t');
  assert.equal(back.status, 0, back.stderr);
  assert.equal(back.stdout.trim(), '100');
  assert.equal((await probe(s.port)).kind, 'error', 'PostgreSQL answers the plain startup itself again (hostnossl reject)');
  assert.equal(execFileSync('pg_isready', ['-h', 'localhost', '-p', String(s.port)], { encoding: 'utf8' }).includes('accepting connections'), true);
});

test('the reason in words for a deleted identity, without the key URI', async () => {
  p.cli('identity', 'delete', '--name', s.identityName);
  await eventually(() => state() === 'Inaccessible', 'Inaccessible after the identity was deleted', 30_000);
  const a = await eventually(async () => {
    const x = await probe(s.port);
    return isPgbyokRefusal(x) && x;
  }, "pgbyok's refusal");
  assert.equal(a.kind === 'error' && a.code, '57P03');
  assert.match(a.kind === 'error' ? a.message : '', /because the server's managed identity was deleted$/);
});
