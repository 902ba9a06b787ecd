/**
 * Handler tier: a key version's activation (nbf) and expiry (exp), and the KeyNearExpiry / KeyExpired events
 * a scheduler pass sends, on the platform's own clock (moved by hand) and a local webhook.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { kv, startInProc, startWebhook, type InProc, type Webhook } from './inproc.js';

const DAY = 86400;
let p: InProc;
let hook: Webhook;
let vault: string;
let token: string;

before(async () => {
  p = await startInProc();
  hook = await startWebhook();
  vault = await p.createVault('handler-keys');
  const sub = await p.mgmt('PUT', '/vaults/handler-keys/eventSubscriptions/expiry', {
    properties: { destination: { properties: { endpointUrl: hook.url } }, filter: { includedEventTypes: ['KeyNearExpiry', 'KeyExpired', 'KeyNewVersionCreated'] } },
  });
  assert.equal(sub.status, 200);
  token = await p.token();
});

after(async () => {
  await p?.stop();
  await hook?.close();
});

/** A token minted now on the platform clock (tests move time by days, far past any token's lifetime). */
const fresh = async () => (token = await p.token());

const createKey = async (name: string, attributes: { nbf?: number; exp?: number }) => {
  const r = await p.call('POST', kv(vault, `/keys/${name}/create`), { token: await fresh(), body: { kty: 'RSA', key_size: 2048, attributes } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.key.kid as string;
};

const wrap = (kid: string) => p.call('POST', kv(kid, '/wrapkey'), { token, body: { alg: 'RSA-OAEP-256', value: randomBytes(32).toString('base64url') } });

/** Waits for the events a pass sent by sending one more after it (a new key) and waiting for that one. */
let marks = 0;
const settled = async () => {
  const name = `mark-${++marks}`;
  await createKey(name, {});
  await hook.next((e) => e.eventType === 'Microsoft.KeyVault.KeyNewVersionCreated' && e.subject === name);
};
const eventsOf = (key: string) => hook.events.filter((e) => e.subject === key && e.eventType !== 'Microsoft.KeyVault.KeyNewVersionCreated').map((e) => e.eventType);

test('a key version is refused before its activation date and after its expiry, with the Key Vault error codes', async () => {
  const nbf = p.now() + 3600;
  const exp = nbf + 3600;
  const iso = (t: number) => new Date(t * 1000).toISOString().replace(/\./g, '\\.');
  const kid = await createKey('window', { nbf, exp });

  const early = await wrap(kid);
  assert.equal(early.status, 403);
  assert.equal(early.body.error.code, 'Forbidden');
  assert.equal(early.body.error.innererror.code, 'KeyNotYetValid');
  assert.match(early.body.error.message, new RegExp(`not allowed before the key's activation date ${iso(nbf)}`));

  p.advance(3600);
  await fresh();
  const active = await wrap(kid);
  assert.equal(active.status, 200, JSON.stringify(active.body));

  p.advance(3600);
  await fresh();
  const late = await wrap(kid);
  assert.equal(late.status, 403);
  assert.equal(late.body.error.innererror.code, 'KeyExpired');
  assert.match(late.body.error.message, new RegExp(`not allowed on an expired key \\(expired ${iso(exp)}\\)`));

  // What was wrapped while the key was valid still unwraps, as Azure documents.
  const unwrapped = await p.call('POST', kv(kid, '/unwrapkey'), { token, body: { alg: 'RSA-OAEP-256', value: active.body.value } });
  assert.equal(unwrapped.status, 200);
});

test('a pass sends KeyNearExpiry once when a key comes within 30 days of expiry, and later KeyExpired once, never both in one pass', async () => {
  const exp = p.now() + 40 * DAY;
  const kid = await createKey('nearing', { exp });
  await p.tick();
  await settled();
  assert.deepEqual(eventsOf('nearing'), [], 'not yet within the 30-day window');

  p.advance(10 * DAY + 1);
  await p.tick();
  const near = await hook.next((e) => e.subject === 'nearing' && e.eventType === 'Microsoft.KeyVault.KeyNearExpiry');
  assert.equal(near.data.Version, kid.split('/').pop());
  assert.equal(near.data.EXP, exp);
  assert.equal(near.eventTime, new Date(p.now() * 1000).toISOString(), 'the event carries the platform clock');
  await p.tick();
  await settled();
  assert.deepEqual(eventsOf('nearing'), ['Microsoft.KeyVault.KeyNearExpiry'], 'a second pass sends nothing new');

  p.advance(30 * DAY);
  await p.tick();
  await hook.next((e) => e.subject === 'nearing' && e.eventType === 'Microsoft.KeyVault.KeyExpired');
  await p.tick();
  await settled();
  assert.deepEqual(eventsOf('nearing'), ['Microsoft.KeyVault.KeyNearExpiry', 'Microsoft.KeyVault.KeyExpired']);
});

test('a key already past its expiry when a pass first sees it gets KeyExpired only, not a late KeyNearExpiry', async () => {
  // Both windows are crossed between two passes: inside 30 days at creation, expired by the next pass.
  await createKey('lapsed', { exp: p.now() + 60 });
  p.advance(61);
  await p.tick();
  await hook.next((e) => e.subject === 'lapsed' && e.eventType === 'Microsoft.KeyVault.KeyExpired');
  await p.tick();
  await settled();
  assert.deepEqual(eventsOf('lapsed'), ['Microsoft.KeyVault.KeyExpired']);
});
