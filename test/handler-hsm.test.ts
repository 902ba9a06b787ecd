/**
 * Managed HSMs in the handler tier: the ARM resource, activation by security-domain download, local RBAC on
 * every data-plane call, keys generated and used inside the PKCS#11 token (SoftHSM2), backup bound to the
 * security domain, and the recovery of the domain into a fresh HSM where the old HSM's key backup restores and
 * unwraps what the old HSM wrapped. Skips (saying so) where SoftHSM2 is not installed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, createPublicKey, generateKeyPairSync, publicEncrypt, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { MANAGEMENT_SCOPE, startInProc, type InProc } from './inproc.js';
import { downloadCertificates, hsmSkip as skip, securityDomainHolders, type SecurityDomainHolder } from './hsm-fixtures.js';
import { parseSecurityDomain } from '../src/hsm/security-domain.js';
import { recoverSecret, restoreBlob } from '../src/hsm/security-domain-client.js';
import { httpCall } from '../src/lib/http-client.js';
import { keyHsmOf, makeByok } from '../src/vault/byok.js';

const API = 'api-version=2024-11-01';
const KV = 'api-version=7.5';
const CSEU = '33413926-3206-4cdd-b39a-83574fe37a17';
const CRYPTO_USER = '21dbd100-6940-42c2-9190-5d6cb909625b';

let p: InProc;
let sub = '';
let holders: SecurityDomainHolder[] = [];
let app: { objectId: string; clientId: string; secret: string };

const arm = async (method: string, path: string, body?: unknown) =>
  p.call(method, `${path}${path.includes('?') ? '&' : '?'}${API}`, { token: await p.token(MANAGEMENT_SCOPE), body });
const hsmScope = () => `https://managedhsm.localhost:${p.platform.names.vaultPort}/.default`;
const appToken = async () => {
  const res = await httpCall({
    method: 'POST', url: `${p.platform.origin}/${p.admin.tenantId}/oauth2/v2.0/token`, ca: readFileSync(p.platform.paths.caCert, 'utf8'),
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: app.clientId, client_secret: app.secret, scope: hsmScope() }).toString(),
  });
  return JSON.parse(res.text).access_token as string;
};
const data = async (hsmUri: string, method: string, path: string, body?: unknown, token?: string) =>
  p.call(method, `${hsmUri.replace(/\/$/, '')}${path}${path.includes('?') ? '&' : '?'}${KV}`, { token: token ?? await p.token(hsmScope()), body });

const group = () => `/subscriptions/${sub}/resourceGroups/rg-hsm/providers/Microsoft.KeyVault/managedHSMs`;
async function createHsm(name: string, extra: Record<string, unknown> = {}) {
  const r = await arm('PUT', `${group()}/${name}`, {
    location: 'eastus', sku: { family: 'B', name: 'Standard_B1' },
    properties: { tenantId: p.admin.tenantId, initialAdminObjectIds: [p.admin.objectId], softDeleteRetentionInDays: 90, ...extra },
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body;
}
async function activate(hsmUri: string): Promise<string> {
  const r = await data(hsmUri, 'POST', '/securitydomain/download', { certificates: downloadCertificates(holders), required: 2 });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  assert.match(String(r.headers['azure-asyncoperation']), /\/securitydomain\/download\/pending$/);
  const status = await data(hsmUri, 'GET', '/securitydomain/download/pending');
  assert.equal(status.body.status, 'Success');
  return r.body.value as string;
}

before(async () => {
  if (skip) return;
  p = await startInProc();
  sub = (await p.call('GET', '/subscriptions?api-version=2022-12-01', { token: await p.token(MANAGEMENT_SCOPE) })).body.value[0].subscriptionId;
  assert.equal((await arm('PUT', `/subscriptions/${sub}/resourcegroups/rg-hsm`, { location: 'eastus' })).status, 201);
  holders = securityDomainHolders();
  const sp = await p.call('POST', `/tenants/${p.admin.tenantId}/servicePrincipals?api-version=2023-07-01`, { token: await p.token(MANAGEMENT_SCOPE), body: { displayName: 'hsm-app' } });
  assert.equal(sp.status, 200, JSON.stringify(sp.body));
  app = { objectId: sp.body.id, clientId: sp.body.appId, secret: sp.body.password };
});
after(async () => {
  await p?.stop();
});

test('a managed HSM through ARM: NotActivated, key operations refused until the security domain is downloaded; RSA-HSM and oct-HSM keys work in the token', { skip }, async () => {
  const made = await createHsm('hsm-one');
  assert.equal(made.type, 'Microsoft.KeyVault/managedHSMs');
  assert.equal(made.properties.enablePurgeProtection, true, 'purge protection is on by default, as in Azure');
  assert.equal(made.properties.securityDomainProperties.activationStatus, 'NotActivated');
  const hsmUri: string = made.properties.hsmUri;
  assert.equal(hsmUri, `https://hsm-one.managedhsm.localhost:${p.platform.names.vaultPort}/`);

  const unauth = await p.call('GET', `${hsmUri}keys?${KV}`);
  assert.equal(unauth.status, 401);
  assert.match(String(unauth.headers['www-authenticate']), new RegExp(`resource="https://managedhsm\\.localhost:${p.platform.names.vaultPort}"`));

  const early = await data(hsmUri, 'POST', '/keys/k1/create', { kty: 'RSA-HSM', key_size: 2048 });
  assert.equal(early.status, 403);
  assert.equal(early.body.error.innererror.code, 'HsmNotActivated');

  await activate(hsmUri);
  const shown = await arm('GET', `${group()}/hsm-one`);
  assert.equal(shown.body.properties.securityDomainProperties.activationStatus, 'Active');

  // The administrator activates and manages roles; keys need a crypto role, as in Managed HSM.
  const noRole = await data(hsmUri, 'POST', '/keys/k1/create', { kty: 'RSA-HSM', key_size: 2048 });
  assert.equal(noRole.status, 403, JSON.stringify(noRole.body));
  assert.equal(noRole.body.error.innererror.code, 'AccessDenied');
  const grant = await data(hsmUri, 'PUT', `/providers/Microsoft.Authorization/roleAssignments/${randomUUID()}`, {
    properties: { roleDefinitionId: `Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/${CRYPTO_USER}`, principalId: p.admin.objectId },
  });
  assert.equal(grant.status, 201, JSON.stringify(grant.body));

  const key = await data(hsmUri, 'POST', '/keys/k1/create', { kty: 'RSA-HSM', key_size: 2048 });
  assert.equal(key.status, 200, JSON.stringify(key.body));
  assert.equal(key.body.key.kty, 'RSA-HSM');
  const dek = randomBytes(32);
  // A wrap with the public key, outside, unwraps inside the token.
  const pub = createPublicKey({ key: { kty: 'RSA', n: key.body.key.n, e: key.body.key.e }, format: 'jwk' });
  const outside = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, dek);
  const un = await data(hsmUri, 'POST', `/keys/k1/${key.body.key.kid.split('/').pop()}/unwrapkey`, { alg: 'RSA-OAEP', value: outside.toString('base64url') });
  assert.equal(un.status, 200, JSON.stringify(un.body));
  assert.deepEqual(Buffer.from(un.body.value, 'base64url'), dek);
  const w = await data(hsmUri, 'POST', '/keys/k1//wrapkey', { alg: 'RSA-OAEP', value: dek.toString('base64url') });
  assert.equal(w.status, 200);
  const back = await data(hsmUri, 'POST', '/keys/k1//unwrapkey', { alg: 'RSA-OAEP', value: w.body.value });
  assert.deepEqual(Buffer.from(back.body.value, 'base64url'), dek);
  const oaep256 = await data(hsmUri, 'POST', '/keys/k1//wrapkey', { alg: 'RSA-OAEP-256', value: dek.toString('base64url') });
  assert.equal(oaep256.status, 400);
  assert.match(oaep256.body.error.message, /RSA-OAEP/);

  const aes = await data(hsmUri, 'POST', '/keys/a1/create', { kty: 'oct-HSM', key_size: 256 });
  assert.equal(aes.status, 200, JSON.stringify(aes.body));
  const enc = await data(hsmUri, 'POST', '/keys/a1//encrypt', { alg: 'A256GCM', value: Buffer.from('hello hsm').toString('base64url') });
  assert.equal(enc.status, 200, JSON.stringify(enc.body));
  const dec = await data(hsmUri, 'POST', '/keys/a1//decrypt', { alg: 'A256GCM', value: enc.body.value, iv: enc.body.iv, tag: enc.body.tag });
  assert.equal(Buffer.from(dec.body.value, 'base64url').toString(), 'hello hsm');
  const rng = await data(hsmUri, 'POST', '/rng', { count: 16 });
  assert.equal(rng.status, 200);
  assert.equal(Buffer.from(rng.body.value, 'base64url').length, 16);
});

test('local RBAC: Crypto Service Encryption User at /keys/k may wrap and unwrap that key only; removing the assignment stops it at once', { skip }, async () => {
  const hsmUri = (await arm('GET', `${group()}/hsm-one`)).body.properties.hsmUri;
  await data(hsmUri, 'POST', '/keys/k2/create', { kty: 'RSA-HSM', key_size: 2048 });
  const token = await appToken();
  const refused = await data(hsmUri, 'POST', '/keys/k1//wrapkey', { alg: 'RSA-OAEP', value: randomBytes(32).toString('base64url') }, token);
  assert.equal(refused.status, 403);
  const name = randomUUID();
  const granted = await data(hsmUri, 'PUT', `/keys/k1/providers/Microsoft.Authorization/roleAssignments/${name}`, {
    properties: { roleDefinitionId: `/Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/${CSEU}`, principalId: app.objectId },
  });
  assert.equal(granted.status, 201, JSON.stringify(granted.body));
  assert.equal(granted.body.properties.scope, '/keys/k1');
  const wrapped = await data(hsmUri, 'POST', '/keys/k1//wrapkey', { alg: 'RSA-OAEP', value: randomBytes(32).toString('base64url') }, token);
  assert.equal(wrapped.status, 200, JSON.stringify(wrapped.body));
  assert.equal((await data(hsmUri, 'POST', '/keys/k2//wrapkey', { alg: 'RSA-OAEP', value: randomBytes(32).toString('base64url') }, token)).status, 403, 'k2 is outside /keys/k1');
  assert.equal((await data(hsmUri, 'POST', '/keys/k1//sign', { alg: 'RS256', value: randomBytes(32).toString('base64url') }, token)).status, 403, 'sign is not among its data actions');
  const list = await data(hsmUri, 'GET', '/keys/k1/providers/Microsoft.Authorization/roleAssignments');
  assert.ok(list.body.value.some((a: any) => a.name === name));
  assert.equal((await data(hsmUri, 'DELETE', `/keys/k1/providers/Microsoft.Authorization/roleAssignments/${name}`)).status, 200);
  assert.equal((await data(hsmUri, 'POST', '/keys/k1//wrapkey', { alg: 'RSA-OAEP', value: randomBytes(32).toString('base64url') }, token)).status, 403, 'the next request after the delete is refused');
  // Role management at one key reaches nothing above it: the HSM's Administrator assignment at / stays out of sight and reach.
  const policyAdmin = await data(hsmUri, 'PUT', `/keys/k1/providers/Microsoft.Authorization/roleAssignments/${randomUUID()}`, {
    properties: { roleDefinitionId: '4bd23610-cdcf-4971-bdee-bdc562cc28e4', principalId: app.objectId },
  });
  assert.equal(policyAdmin.status, 201, JSON.stringify(policyAdmin.body));
  const top = (await data(hsmUri, 'GET', '/providers/Microsoft.Authorization/roleAssignments')).body.value.find((a: any) => a.properties.scope === '/' && a.properties.principalId === p.admin.objectId);
  assert.ok(top, 'the administrator holds an assignment at /');
  const seen = await data(hsmUri, 'GET', `/keys/k1/providers/Microsoft.Authorization/roleAssignments?$filter=${encodeURIComponent(`principalId eq '${p.admin.objectId}'`)}`, undefined, token);
  assert.equal(seen.status, 200, JSON.stringify(seen.body));
  assert.ok(seen.body.value.every((a: any) => a.properties.scope.startsWith('/keys/k1')), 'nothing above /keys/k1 is listed there');
  assert.equal((await data(hsmUri, 'GET', `/keys/k1/providers/Microsoft.Authorization/roleAssignments/${top.name}`, undefined, token)).status, 404);
  assert.equal((await data(hsmUri, 'DELETE', `/keys/k1/providers/Microsoft.Authorization/roleAssignments/${top.name}`, undefined, token)).status, 404);
  assert.equal((await data(hsmUri, 'DELETE', `/providers/Microsoft.Authorization/roleAssignments/${top.name}`, undefined, token)).status, 403);
  assert.equal((await data(hsmUri, 'GET', `/providers/Microsoft.Authorization/roleAssignments/${top.name}`)).status, 200, 'still there');
  const defs = await data(hsmUri, 'GET', '/providers/Microsoft.Authorization/roleDefinitions');
  const names = defs.body.value.map((d: any) => d.properties.roleName);
  for (const r of ['Managed HSM Administrator', 'Managed HSM Crypto Officer', 'Managed HSM Crypto User', 'Managed HSM Crypto Service Encryption User', 'Managed HSM Crypto Auditor', 'Managed HSM Backup']) assert.ok(names.includes(r), r);
});

test('disaster recovery: the security domain uploaded into a fresh HSM with 2 of 3 keys; the old key backup restores there and unwraps what the old HSM wrapped', { skip }, async () => {
  const first = await createHsm('hsm-dr-a');
  const fileText = await activate(first.properties.hsmUri);
  const a = first.properties.hsmUri;
  await data(a, 'PUT', `/providers/Microsoft.Authorization/roleAssignments/${randomUUID()}`, { properties: { roleDefinitionId: CRYPTO_USER, principalId: p.admin.objectId } });
  const key = await data(a, 'POST', '/keys/kek/create', { kty: 'RSA-HSM', key_size: 3072 });
  assert.equal(key.status, 200, JSON.stringify(key.body));
  const dek = randomBytes(32);
  const wrapped = (await data(a, 'POST', '/keys/kek//wrapkey', { alg: 'RSA-OAEP', value: dek.toString('base64url') })).body.value;
  const backup = await data(a, 'POST', '/keys/kek/backup');
  assert.equal(backup.status, 200, JSON.stringify(backup.body));

  // A backup does not restore into an HSM of another security domain.
  const other = await createHsm('hsm-other');
  await activate(other.properties.hsmUri);
  await data(other.properties.hsmUri, 'PUT', `/providers/Microsoft.Authorization/roleAssignments/${randomUUID()}`, { properties: { roleDefinitionId: CRYPTO_USER, principalId: p.admin.objectId } });
  const foreign = await data(other.properties.hsmUri, 'POST', '/keys/restore', { value: backup.body.value });
  assert.equal(foreign.status, 400);
  assert.match(foreign.body.error.message, /another security domain/);

  const fresh = await createHsm('hsm-dr-b');
  const b = fresh.properties.hsmUri;
  const transfer = await data(b, 'GET', '/securitydomain/upload');
  assert.equal(transfer.status, 200, JSON.stringify(transfer.body));
  const file = parseSecurityDomain(fileText);
  await assert.rejects(recoverSecret(file, holders.slice(0, 1)), /2/);
  const secret = await recoverSecret(file, [holders[0], holders[2]]);
  const up = await data(b, 'POST', '/securitydomain/upload', { value: restoreBlob(file, secret, transfer.body.transfer_key) });
  secret.fill(0);
  assert.equal(up.status, 202, JSON.stringify(up.body));
  assert.equal((await data(b, 'GET', '/securitydomain/upload/pending')).body.status, 'Success');
  assert.equal((await arm('GET', `${group()}/hsm-dr-b`)).body.properties.securityDomainProperties.activationStatus, 'Active');

  await data(b, 'PUT', `/providers/Microsoft.Authorization/roleAssignments/${randomUUID()}`, { properties: { roleDefinitionId: CRYPTO_USER, principalId: p.admin.objectId } });
  const restored = await data(b, 'POST', '/keys/restore', { value: backup.body.value });
  assert.equal(restored.status, 200, JSON.stringify(restored.body));
  assert.equal(restored.body.key.n, key.body.key.n, 'the same key');
  const version = key.body.key.kid.split('/').pop();
  const un = await data(b, 'POST', `/keys/kek/${version}/unwrapkey`, { alg: 'RSA-OAEP', value: wrapped });
  assert.equal(un.status, 200, JSON.stringify(un.body));
  assert.deepEqual(Buffer.from(un.body.value, 'base64url'), dek);
});

test('soft-delete with purge protection: a deleted HSM is listed, recovered, and refuses purge', { skip }, async () => {
  await createHsm('hsm-del');
  assert.equal((await arm('DELETE', `${group()}/hsm-del`)).status, 200);
  const gone = await arm('GET', `/subscriptions/${sub}/providers/Microsoft.KeyVault/deletedManagedHSMs`);
  assert.ok(gone.body.value.some((h: any) => h.name === 'hsm-del' && h.properties.purgeProtectionEnabled === true));
  const purge = await arm('POST', `/subscriptions/${sub}/providers/Microsoft.KeyVault/locations/eastus/deletedManagedHSMs/hsm-del/purge`);
  assert.equal(purge.status, 409, JSON.stringify(purge.body));
  const back = await arm('PUT', `${group()}/hsm-del`, { location: 'eastus', properties: { createMode: 'recover' } });
  assert.equal(back.status, 200, JSON.stringify(back.body));
  const name = await arm('POST', `/subscriptions/${sub}/providers/Microsoft.KeyVault/checkMhsmNameAvailability`, { name: 'hsm-del' });
  assert.equal(name.body.nameAvailable, false);
});

test('BYOK (.byok key transfer blob): imported into a vault under a software key-exchange key and into an HSM under one generated in the token', { skip }, async () => {
  const customer = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const n = (customer.export({ format: 'jwk' }) as { n: string }).n;
  const vaultUri = await p.createVault('kv-byok', { enablePurgeProtection: true });
  const vaultToken = await p.token();
  const hsmUri = (await arm('GET', `${group()}/hsm-one`)).body.properties.hsmUri;
  for (const [where, call] of [
    ['vault', (m: string, path: string, body?: unknown) => p.call(m, `${vaultUri}${path}${path.includes('?') ? '&' : '?'}${KV}`, { token: vaultToken, body })],
    ['hsm', (m: string, path: string, body?: unknown) => data(hsmUri, m, path, body)],
  ] as const) {
    const kek = await call('POST', '/keys/kek-byok/create', { kty: where === 'vault' ? 'RSA' : 'RSA-HSM', key_size: 2048, key_ops: ['import'] });
    assert.equal(kek.status, 200, `${where}: ${JSON.stringify(kek.body)}`);
    assert.deepEqual(kek.body.key.key_ops, ['import']);
    const blob = makeByok({ kid: kek.body.key.kid, key: { kty: 'RSA', n: kek.body.key.n, e: kek.body.key.e } }, customer);
    const imported = await call('PUT', '/keys/byok-key', { key: { kty: 'RSA-HSM', key_hsm: keyHsmOf(blob) }, Hsm: true });
    assert.equal(imported.status, 200, `${where}: ${JSON.stringify(imported.body)}`);
    assert.equal(imported.body.key.n, n, `${where}: the customer's key`);
    const dek = randomBytes(32);
    const wrapped = publicEncrypt({ key: createPublicKey(customer), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, dek);
    const un = await call('POST', `/keys/byok-key/${imported.body.key.kid.split('/').pop()}/unwrapkey`, { alg: 'RSA-OAEP', value: wrapped.toString('base64url') });
    assert.equal(un.status, 200, `${where}: ${JSON.stringify(un.body)}`);
    assert.deepEqual(Buffer.from(un.body.value, 'base64url'), dek);
    // A key-exchange key does nothing but import; a blob made for another KEK is refused, naming it.
    assert.equal((await call('POST', '/keys/kek-byok//wrapkey', { alg: 'RSA-OAEP', value: dek.toString('base64url') })).status, 400);
    const foreign = makeByok({ kid: `https://elsewhere.vault.localhost/keys/kek/${'0'.repeat(32)}`, key: { kty: 'RSA', n: kek.body.key.n, e: kek.body.key.e } }, customer);
    const refused = await call('PUT', '/keys/byok-foreign', { key: { kty: 'RSA-HSM', key_hsm: keyHsmOf(foreign) }, Hsm: true });
    assert.equal(refused.status, 400);
    assert.match(refused.body.error.message, /another vault or HSM/);
  }
  const plain = await data(hsmUri, 'PUT', '/keys/plain', { key: customer.export({ format: 'jwk' }) });
  assert.equal(plain.status, 400, 'plaintext key material never enters an HSM');
});
