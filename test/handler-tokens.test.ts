/**
 * Handler tier: access-token expiry and signing-key rotation, on the platform's own clock (moved by hand).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeProtectedHeader, decodeJwt } from 'jose';
import { kv, startInProc, type InProc } from './inproc.js';

const LIFETIME = 600;
const TOLERANCE = 30;
const ROTATION = 7200;

let p: InProc;
let vault: string;
let kid: string;

before(async () => {
  p = await startInProc({
    PGBYOK_TOKEN_LIFETIME_SECONDS: String(LIFETIME),
    PGBYOK_CLOCK_TOLERANCE_SECONDS: String(TOLERANCE),
    PGBYOK_SIGNING_KEY_ROTATION_SECONDS: String(ROTATION),
  });
  vault = await p.createVault('handler-tokens');
  const k = await p.call('POST', kv(vault, '/keys/k1/create'), { token: await p.token(), body: { kty: 'RSA', key_size: 2048 } });
  assert.equal(k.status, 200);
  kid = k.body.key.kid;
});

after(() => p?.stop());

const getKey = (token: string) => p.call('GET', kv(kid, ''), { token });

test('an access token is accepted until its lifetime and the clock tolerance have passed, then refused in Key Vault\'s 401 envelope', async () => {
  const token = await p.token();
  const claims = decodeJwt(token);
  assert.equal(claims.iat, p.now(), 'issued on the platform clock');
  assert.equal(claims.exp, p.now() + LIFETIME);
  assert.equal((await getKey(token)).status, 200);

  p.advance(LIFETIME + TOLERANCE - 1);
  assert.equal((await getKey(token)).status, 200, 'still inside the clock tolerance');

  p.advance(2);
  const refused = await getKey(token);
  assert.equal(refused.status, 401);
  assert.equal(refused.body.error.code, 'Unauthorized');
  assert.match(refused.body.error.message, /^AKV10022: The bearer token is expired\.$/);
  assert.match(String(refused.headers['www-authenticate']), new RegExp(`^Bearer authorization="${p.platform.origin}/${p.admin.tenantId}", resource="${p.platform.names.vaultChallengeResource}"$`));

  // A fresh token, issued at the new "now", works again.
  assert.equal((await getKey(await p.token())).status, 200);
});

test('after the rotation period a scheduler pass makes a new signing key; tokens of the old key verify until they expire', async () => {
  const jwks = async () => (await p.call('GET', `/${p.admin.tenantId}/discovery/v2.0/keys`)).body.keys.map((k: { kid: string }) => k.kid) as string[];
  const oldToken = await p.token();
  const oldKid = decodeProtectedHeader(oldToken).kid!;
  assert.deepEqual(await jwks(), [oldKid]);

  // The rotation is due only when the scheduler runs: no pass, no new key.
  p.advance(ROTATION);
  const beforePass = await p.token();
  assert.equal(decodeProtectedHeader(beforePass).kid, oldKid);
  await p.tick();
  const newToken = await p.token();
  const newKid = decodeProtectedHeader(newToken).kid!;
  assert.notEqual(newKid, oldKid, 'new tokens are signed by the new key');
  assert.deepEqual(await jwks(), [newKid, oldKid], 'the retired key stays published');

  assert.equal((await getKey(beforePass)).status, 200, 'a token of the retired key still verifies');
  assert.equal((await getKey(newToken)).status, 200);

  // Once every token of the old key has expired, the next pass drops it: its tokens are refused, the new ones are not.
  p.advance(LIFETIME + TOLERANCE);
  await p.tick();
  assert.deepEqual(await jwks(), [newKid]);
  const refused = await getKey(beforePass);
  assert.equal(refused.status, 401);
  assert.equal(refused.body.error.code, 'Unauthorized');
  assert.match(refused.body.error.message, /^AKV10022: /);
  assert.equal((await getKey(await p.token())).status, 200);
});
