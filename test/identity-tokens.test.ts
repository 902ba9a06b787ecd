/** The token service as MSAL and a vault see it: discovery, claims, JWKS, and signing-key rotation. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { startPgbyok, vaultName, VAULT_RESOURCE, type Pgbyok } from './harness.js';

let p: Pgbyok;

before(async () => {
  p = await startPgbyok({ PGBYOK_SIGNING_KEY_ROTATION_SECONDS: '2', PGBYOK_SCHEDULER_INTERVAL_MS: '200' });
});
after(async () => p?.stop());

test('OIDC discovery answers on the authority the client used, with its issuer on the same origin', async () => {
  const doc = await p.http('GET', `${p.origin}/${p.admin.tenantId}/v2.0/.well-known/openid-configuration`);
  assert.equal(doc.status, 200);
  assert.equal(doc.json.issuer, `${p.origin}/${p.admin.tenantId}/v2.0`);
  assert.equal(doc.json.token_endpoint, `${p.origin}/${p.admin.tenantId}/oauth2/v2.0/token`);
  assert.ok(doc.json.authorization_endpoint && doc.json.jwks_uri);
  const unknown = await p.http('GET', `${p.origin}/no-such-tenant/v2.0/.well-known/openid-configuration`);
  assert.equal(unknown.status, 400);
});

test('@azure/identity gets a token whose claims carry tid, oid, aud, iat, exp and verify against the JWKS', async () => {
  const token = await p.credential(p.admin).getToken(`${VAULT_RESOURCE}/.default`);
  assert.ok(token?.token);
  const claims = decodeJwt(token!.token);
  assert.equal(claims.tid, p.admin.tenantId);
  assert.equal(claims.oid, p.admin.objectId);
  assert.equal(claims.aud, VAULT_RESOURCE);
  assert.equal(claims.iss, `${p.origin}/${p.admin.tenantId}/v2.0`);
  assert.ok(typeof claims.iat === 'number' && typeof claims.exp === 'number' && claims.exp - claims.iat! >= 3000);
  const jwks = await p.http('GET', `${p.origin}/${p.admin.tenantId}/discovery/v2.0/keys`);
  await jwtVerify(token!.token, createLocalJWKSet(jwks.json), { audience: VAULT_RESOURCE });
});

test('signing keys rotate: new tokens use a new key, the JWKS keeps the old one, old tokens stay valid', async () => {
  const vault = p.cli('vault', 'create', '--name', vaultName('tok'), '--location', 'eastus');
  p.cli('key', 'create', '--vault-name', vault.name, '--name', 'k');
  const before = await p.token(p.admin);
  const kidBefore = decodeProtectedHeader(before).kid;
  await new Promise((r) => setTimeout(r, 2600));
  const afterToken = await p.token(p.admin);
  const kidAfter = decodeProtectedHeader(afterToken).kid;
  assert.notEqual(kidAfter, kidBefore);
  const jwks = await p.http('GET', `${p.origin}/${p.admin.tenantId}/discovery/v2.0/keys`);
  const kids = jwks.json.keys.map((k: { kid: string }) => k.kid);
  assert.ok(kids.includes(kidBefore) && kids.includes(kidAfter));
  for (const t of [before, afterToken]) {
    const r = await p.http('POST', `${vault.properties.vaultUri}keys/k//wrapkey?api-version=7.6`, {
      token: t, body: { alg: 'RSA-OAEP-256', value: randomBytes(16).toString('base64url') },
    });
    assert.equal(r.status, 200, r.text);
  }
});

test('a management token is not a vault token, and a vault token is not a management token', async () => {
  const mgmt = await p.token(p.admin, 'https://management.azure.com');
  const vaultToken = await p.token(p.admin);
  const onMgmt = await p.http('GET', `${p.origin}/tenants/${p.admin.tenantId}/providers/Microsoft.KeyVault/vaults?api-version=2023-07-01`, { token: vaultToken });
  assert.equal(onMgmt.status, 401);
  assert.equal(onMgmt.json.error.code, 'Unauthorized');
  const ok = await p.http('GET', `${p.origin}/tenants/${p.admin.tenantId}/providers/Microsoft.KeyVault/vaults?api-version=2023-07-01`, { token: mgmt });
  assert.equal(ok.status, 200);
});
