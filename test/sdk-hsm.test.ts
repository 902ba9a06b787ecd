/**
 * The official `@azure/keyvault-keys` SDK, unchanged, against a pgbyok Managed HSM's URL (handler tier: the
 * platform in this process, over real HTTPS, the SDK's challenge-resource verification on). What a Managed HSM
 * user sees: refusal before activation and without a role, RSA-HSM and oct-HSM keys used in the PKCS#11 token,
 * random bytes, backup and restore, soft-delete and recovery. Skips, saying why, where SoftHSM2 is missing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, createHash, createPublicKey, publicEncrypt, randomBytes, randomUUID, verify as nodeVerify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { CryptographyClient, KeyClient, type KeyVaultKey } from '@azure/keyvault-keys';
import { MANAGEMENT_SCOPE, startInProc, type InProc } from './inproc.js';
import { rejectsWith, sdkCredential, sdkOptions } from './harness.js';
import { downloadCertificates, hsmSkip as skip, securityDomainHolders } from './hsm-fixtures.js';

const CRYPTO_USER = '21dbd100-6940-42c2-9190-5d6cb909625b';
const CRYPTO_OFFICER = '515eb02d-2335-4d2d-92f2-b1cbdf9c3778';
const POLL = { intervalInMs: 50 };

let p: InProc;
let opts: ReturnType<typeof sdkOptions>;
let cred: ReturnType<typeof sdkCredential>;
let hsmUri: string;
let client: KeyClient;

const cc = (id: string) => new CryptographyClient(id, cred, opts);
const b64u = (b: Uint8Array) => Buffer.from(b).toString('base64url');
const publicKeyOf = (k: KeyVaultKey) => createPublicKey({ key: { kty: 'RSA', n: b64u(k.key!.n!), e: b64u(k.key!.e!) }, format: 'jwk' });

/** A call to the HSM's own routes over HTTP (the security domain, role assignments: not in @azure/keyvault-keys). */
const hsmCall = async (method: string, path: string, body?: unknown) =>
  p.call(method, `${hsmUri}${path.replace(/^\//, '')}?api-version=7.5`, { token: await p.token(`https://managedhsm.localhost:${p.platform.names.vaultPort}/.default`), body });
const grant = async (role: string) => {
  const r = await hsmCall('PUT', `/providers/Microsoft.Authorization/roleAssignments/${randomUUID()}`, { properties: { roleDefinitionId: role, principalId: p.admin.objectId } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
};

before(async () => {
  if (skip) return;
  p = await startInProc();
  const ca = readFileSync(p.platform.paths.caCert, 'utf8');
  opts = sdkOptions({ ca });
  cred = sdkCredential(p.platform.origin, ca, p.admin);
  const mgmt = await p.token(MANAGEMENT_SCOPE);
  const sub = (await p.call('GET', '/subscriptions?api-version=2022-12-01', { token: mgmt })).body.value[0].subscriptionId;
  assert.equal((await p.call('PUT', `/subscriptions/${sub}/resourcegroups/rg-sdk?api-version=2024-11-01`, { token: mgmt, body: { location: 'eastus' } })).status, 201);
  // Without purge protection, so that a key can be purged and its backup restored under its own name.
  const made = await p.call('PUT', `/subscriptions/${sub}/resourceGroups/rg-sdk/providers/Microsoft.KeyVault/managedHSMs/hsm-sdk?api-version=2024-11-01`, {
    token: mgmt,
    body: {
      location: 'eastus', sku: { family: 'B', name: 'Standard_B1' },
      properties: { tenantId: p.admin.tenantId, initialAdminObjectIds: [p.admin.objectId], softDeleteRetentionInDays: 7, enablePurgeProtection: false },
    },
  });
  assert.equal(made.status, 201, JSON.stringify(made.body));
  hsmUri = made.body.properties.hsmUri;
  assert.equal(hsmUri, `https://hsm-sdk.managedhsm.localhost:${p.platform.names.vaultPort}/`);
  client = new KeyClient(hsmUri, cred, opts);
});
after(async () => {
  await p?.stop();
});

test('before activation the SDK is refused: createRsaKey answers 403 naming the security domain', { skip }, async () => {
  const err = await rejectsWith(client.createRsaKey('early', { hsm: true, keySize: 2048 }), 403, /not activated.*security domain/);
  assert.equal(err.code, 'Forbidden');
});

test('activated, the administrator has no key role: 403 AccessDenied; Crypto User may create', { skip }, async () => {
  const r = await hsmCall('POST', '/securitydomain/download', { certificates: downloadCertificates(securityDomainHolders()), required: 2 });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  assert.equal((await hsmCall('GET', '/securitydomain/download/pending')).body.status, 'Success');

  const err = await rejectsWith(client.createRsaKey('norole', { hsm: true }), 403, /Not authorized to access Microsoft\.KeyVault\/managedHsm\/keys\/create on \/keys\/norole/);
  assert.equal(err.code, 'Forbidden');
  await grant(`Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/${CRYPTO_USER}`);
  assert.equal((await client.createRsaKey('norole', { hsm: true })).name, 'norole');
});

test('RSA-HSM: wrap/unwrap and encrypt/decrypt with RSA-OAEP, sign/verify RS256; RSA-OAEP-256 is refused (400) by the token', { skip }, async () => {
  const k = await client.createRsaKey('rsa', { hsm: true, keySize: 2048 });
  assert.equal(k.keyType, 'RSA-HSM');
  assert.equal(k.key?.n?.length, 256);
  assert.equal(k.key?.d, undefined, 'no private part');
  assert.ok(k.id?.startsWith(`${hsmUri}keys/rsa/`), k.id);
  assert.equal(k.properties.recoverableDays, 7);
  assert.equal(k.properties.recoveryLevel, 'CustomizedRecoverable+Purgeable');
  for (const op of ['encrypt', 'decrypt', 'sign', 'verify', 'wrapKey', 'unwrapKey'] as const) assert.ok(k.keyOperations?.includes(op), op);

  const crypto = cc(k.id!);
  const dek = randomBytes(32);
  // The SDK wraps and encrypts with the public key itself (it could read the key); the token unwraps and decrypts.
  const w = await crypto.wrapKey('RSA-OAEP', dek);
  assert.equal(w.keyID, k.id);
  assert.equal(w.result.length, 256);
  assert.deepEqual(Buffer.from((await crypto.unwrapKey('RSA-OAEP', w.result)).result), dek);
  const plaintext = Buffer.from('hello, managed HSM');
  const e = await crypto.encrypt({ algorithm: 'RSA-OAEP', plaintext });
  assert.deepEqual(Buffer.from((await crypto.decrypt({ algorithm: 'RSA-OAEP', ciphertext: e.result })).result), plaintext);
  // The token's signature: checked by the HSM (verify), by the SDK itself (verifyData), and by node:crypto.
  const data = Buffer.from('sign me in the token');
  const digest = createHash('sha256').update(data).digest();
  const s = await crypto.sign('RS256', digest);
  assert.equal(s.result.length, 256);
  assert.equal((await crypto.verify('RS256', digest, s.result)).result, true);
  assert.equal((await crypto.verifyData('RS256', data, s.result)).result, true);
  assert.equal(nodeVerify('sha256', data, publicKeyOf(k), Buffer.from(s.result)), true);
  const bad = Buffer.from(s.result);
  bad[0] ^= 1;
  assert.equal((await crypto.verify('RS256', digest, bad)).result, false);
  // No OAEP with SHA-256 in SoftHSM2: the SDK sends it to the HSM, which says so.
  await rejectsWith(crypto.wrapKey('RSA-OAEP-256', dek), 400, /does not offer RSA-OAEP-256 .*use RSA-OAEP \(SHA-1\)/);
  await rejectsWith(crypto.decrypt({ algorithm: 'RSA-OAEP-256', ciphertext: e.result }), 400, /does not offer RSA-OAEP-256 .*use RSA-OAEP \(SHA-1\)/);
  // The public key is the token's: what node:crypto encrypts to it, the HSM decrypts.
  const outside = publicEncrypt({ key: publicKeyOf(k), padding: constants.RSA_PKCS1_OAEP_PADDING }, dek);
  assert.deepEqual(Buffer.from((await crypto.unwrapKey('RSA-OAEP', outside)).result), dek);
});

test('oct-HSM: AES key wrap (A256KW, CKM_AES_KEY_WRAP_PAD) and A256GCM with additional data, all in the token', { skip }, async () => {
  const k = await client.createOctKey('aes', { hsm: true, keySize: 256 });
  assert.equal(k.keyType, 'oct-HSM');
  assert.equal(k.key?.k, undefined, 'no key material');
  assert.ok(!k.keyOperations?.includes('sign'), 'no signatures with an AES key');
  const crypto = cc(k.id!);
  const dek = randomBytes(32);
  for (const alg of ['A256KW', 'CKM_AES_KEY_WRAP_PAD'] as const) {
    const w = await crypto.wrapKey(alg, dek);
    assert.equal(w.algorithm, alg);
    assert.equal(w.result.length, 40, `${alg}: 32 bytes wrapped with an 8-byte integrity block`);
    assert.deepEqual(Buffer.from((await crypto.unwrapKey(alg, w.result)).result), dek, alg);
  }
  // SoftHSM2's padded wrap is not RFC 5649 for lengths off a multiple of 8: refused rather than wrapped wrongly.
  await rejectsWith(crypto.wrapKey('CKM_AES_KEY_WRAP_PAD', randomBytes(21)), 400, /multiple of 8.*21 bytes/);
  await rejectsWith(crypto.wrapKey('RSA-OAEP', dek), 400, /not supported for oct-HSM/);

  const plaintext = Buffer.from('sealed by AES-256-GCM in the token');
  const aad = Buffer.from('context');
  const e = await crypto.encrypt({ algorithm: 'A256GCM', plaintext, additionalAuthenticatedData: aad });
  assert.equal(e.algorithm, 'A256GCM');
  assert.equal(e.iv?.length, 12, 'the HSM chose a 96-bit IV');
  assert.equal(e.authenticationTag?.length, 16);
  assert.equal(e.result.length, plaintext.length);
  const d = await crypto.decrypt({ algorithm: 'A256GCM', ciphertext: e.result, iv: e.iv!, authenticationTag: e.authenticationTag!, additionalAuthenticatedData: aad });
  assert.deepEqual(Buffer.from(d.result), plaintext);
  const tag = Buffer.from(e.authenticationTag!);
  tag[0] ^= 1;
  await rejectsWith(crypto.decrypt({ algorithm: 'A256GCM', ciphertext: e.result, iv: e.iv!, authenticationTag: tag, additionalAuthenticatedData: aad }), 400);
  await rejectsWith(crypto.decrypt({ algorithm: 'A256GCM', ciphertext: e.result, iv: e.iv!, authenticationTag: e.authenticationTag! }), 400);
});

test('getRandomBytes answers bytes from the token', { skip }, async () => {
  const a = await client.getRandomBytes(16);
  const b = await client.getRandomBytes(16);
  assert.equal(a.length, 16);
  assert.notDeepEqual(Buffer.from(a), Buffer.from(b));
  await rejectsWith(client.getRandomBytes(0), 400);
});

test('backupKey, purge, restoreKeyBackup: the same key, versions and all, unwraps what it wrapped', { skip }, async () => {
  const v1 = await client.createRsaKey('bak', { hsm: true });
  const v2 = await client.rotateKey('bak');
  assert.equal(v2.keyType, 'RSA-HSM');
  const dek = randomBytes(32);
  const w1 = await cc(v1.id!).wrapKey('RSA-OAEP', dek);
  const blob = await client.backupKey('bak');
  assert.ok(blob instanceof Uint8Array && blob.length > 100);
  await rejectsWith(client.restoreKeyBackup(blob), 409);

  await (await client.beginDeleteKey('bak', POLL)).pollUntilDone();
  // Crypto User may not read deleted keys nor purge them; Crypto Officer may.
  await rejectsWith(client.purgeDeletedKey('bak'), 403, /deletedKeys\/delete/);
  await grant(CRYPTO_OFFICER);
  await client.purgeDeletedKey('bak');
  await rejectsWith(client.getKey('bak'), 404);
  await rejectsWith(client.getDeletedKey('bak'), 404);

  const restored = await client.restoreKeyBackup(blob);
  assert.equal(restored.name, 'bak');
  assert.equal(restored.keyType, 'RSA-HSM');
  assert.equal(restored.properties.version, v2.properties.version);
  assert.deepEqual(Buffer.from(restored.key!.n!), Buffer.from(v2.key!.n!));
  const versions: string[] = [];
  for await (const v of client.listPropertiesOfKeyVersions('bak')) versions.push(v.version!);
  assert.deepEqual(versions.sort(), [v1.properties.version!, v2.properties.version!].sort());
  assert.deepEqual(Buffer.from((await cc(w1.keyID!).unwrapKey('RSA-OAEP', w1.result)).result), dek);
});

test('beginDeleteKey, getDeletedKey, beginRecoverDeletedKey: the key comes back and works', { skip }, async () => {
  const k = await client.createRsaKey('del', { hsm: true });
  const dek = randomBytes(32);
  const w = await cc(k.id!).wrapKey('RSA-OAEP', dek);
  const deleted = await (await client.beginDeleteKey('del', POLL)).pollUntilDone();
  assert.equal(deleted.name, 'del');
  assert.ok(deleted.properties.recoveryId?.endsWith('/deletedkeys/del'), deleted.properties.recoveryId);
  await rejectsWith(client.getKey('del'), 404);
  await rejectsWith(cc(k.id!).unwrapKey('RSA-OAEP', w.result), 404);

  const dk = await client.getDeletedKey('del');
  assert.equal(dk.properties.version, k.properties.version);
  assert.equal(dk.keyType, 'RSA-HSM');
  assert.ok(dk.properties.deletedOn instanceof Date);
  const days = (dk.properties.scheduledPurgeDate!.getTime() - dk.properties.deletedOn!.getTime()) / 86400_000;
  assert.equal(days, 7);
  const listed: string[] = [];
  for await (const d of client.listDeletedKeys()) listed.push(d.name);
  assert.ok(listed.includes('del'));
  await rejectsWith(client.createRsaKey('del', { hsm: true }), 409);

  const recovered = await (await client.beginRecoverDeletedKey('del', POLL)).pollUntilDone();
  assert.equal(recovered.name, 'del');
  assert.equal((await client.getKey('del')).properties.version, k.properties.version);
  assert.deepEqual(Buffer.from((await cc(w.keyID!).unwrapKey('RSA-OAEP', w.result)).result), dek);
  await rejectsWith(client.getDeletedKey('del'), 404);
});
