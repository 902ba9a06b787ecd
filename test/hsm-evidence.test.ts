/**
 * Root tier: the evidence that an HSM key's private key never leaves the PKCS#11 token. A key whose private
 * half the test knows is brought into a managed HSM the way a customer brings one (BYOK: wrapped to a
 * key-exchange key generated in the HSM), a CMK server runs on it and takes a backup; then every file of the
 * platform's home (SQLite with its WAL, the logs, the backup store, the token's own files) is searched for
 * the private key in every encoding it could take. A key generated inside the HSM has no sealed private key
 * in SQLite at all, only its token id.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { eventually, MGMT_RESOURCE, startPgbyok, type Pgbyok } from './harness.js';
import { downloadCertificates, hsmSkip, securityDomainHolders } from './hsm-fixtures.js';
import Database from 'better-sqlite3';
import { keyHsmOf, makeByok } from '../src/vault/byok.js';

const skip = hsmSkip;
const API = 'api-version=2024-11-01';
const PG_API = 'api-version=2024-08-01';
const KV = 'api-version=7.5';
const REGION = 'eastus';
const ROLE = { cryptoUser: '21dbd100-6940-42c2-9190-5d6cb909625b', cseu: '33413926-3206-4cdd-b39a-83574fe37a17' };

let p: Pgbyok;
let mgmt: string;
let sub = '';

const arm = (method: string, path: string, body?: unknown, api = API) =>
  p.http(method, `${p.origin}${path}${path.includes('?') ? '&' : '?'}${api}`, { token: mgmt, body });

before(async () => {
  if (skip) return;
  p = await startPgbyok({ PGBYOK_KEY_MONITOR_INTERVAL_MS: '1000' });
  try {
    mgmt = await p.token(p.admin, MGMT_RESOURCE);
    sub = (await p.http('GET', `${p.origin}/subscriptions?api-version=2022-12-01`, { token: mgmt })).json.value[0].subscriptionId;
    assert.equal((await arm('PUT', `/subscriptions/${sub}/resourceGroups/rg-evidence`, { location: REGION }, 'api-version=2021-04-01')).status, 201);
  } catch (e) {
    await p.stop();
    throw e;
  }
});
after(async () => {
  await p?.stop();
});

/** Every file under `dir`. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return filesUnder(path);
    return e.isFile() && statSync(path).size < 512 * 1024 * 1024 ? [path] : [];
  });
}

/** The encodings a private key could leak in: PKCS#8 DER, PEM body, the private exponent and primes raw, hex, base64, base64url. */
function secretsOf(key: KeyObject): { label: string; bytes: Buffer }[] {
  const der = key.export({ format: 'der', type: 'pkcs8' });
  const jwk = key.export({ format: 'jwk' }) as Record<string, string>;
  const out: { label: string; bytes: Buffer }[] = [{ label: 'PKCS#8 DER', bytes: der }];
  for (const part of ['d', 'p', 'q']) {
    const raw = Buffer.from(jwk[part], 'base64url');
    out.push({ label: `${part} raw`, bytes: raw.subarray(0, 64) });
    out.push({ label: `${part} hex`, bytes: Buffer.from(raw.subarray(0, 64).toString('hex')) });
    out.push({ label: `${part} base64url`, bytes: Buffer.from(jwk[part].slice(0, 80)) });
    out.push({ label: `${part} base64`, bytes: Buffer.from(raw.toString('base64').slice(0, 80)) });
  }
  out.push({ label: 'PEM body', bytes: Buffer.from(der.toString('base64').slice(40, 120)) });
  return out;
}

test('a BYOK key in a managed HSM backs a CMK server; its private key is nowhere in SQLite, the logs, the backup store or the token files', { skip, timeout: 300_000 }, async () => {
  const rg = `/subscriptions/${sub}/resourceGroups/rg-evidence`;
  const hsm = await arm('PUT', `${rg}/providers/Microsoft.KeyVault/managedHSMs/hsm-evidence`, {
    location: REGION, sku: { family: 'B', name: 'Standard_B1' }, properties: { tenantId: p.admin.tenantId, initialAdminObjectIds: [p.admin.objectId], softDeleteRetentionInDays: 90 },
  });
  assert.equal(hsm.status, 201, hsm.text);
  const hsmUri = (hsm.json.properties.hsmUri as string).replace(/\/$/, '');
  const hsmToken = await p.token(p.admin, `https://managedhsm.localhost:${new URL(hsmUri).port || 443}`);
  const data = (method: string, path: string, body?: unknown) => p.http(method, `${hsmUri}${path}${path.includes('?') ? '&' : '?'}${KV}`, { token: hsmToken, body });

  // Activation: three certificates, a quorum of two.
  const certificates = downloadCertificates(securityDomainHolders());
  assert.equal((await data('POST', '/securitydomain/download', { certificates, required: 2 })).status, 202);
  assert.equal((await data('PUT', `/providers/Microsoft.Authorization/roleAssignments/${randomUUID()}`, { properties: { roleDefinitionId: ROLE.cryptoUser, principalId: p.admin.objectId } })).status, 201);

  // BYOK: a key-exchange key generated in the HSM, the customer's key wrapped to it outside, imported.
  const kek = await data('POST', '/keys/kek/create', { kty: 'RSA-HSM', key_size: 2048, key_ops: ['import'] });
  assert.equal(kek.status, 200, kek.text);
  const customer = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const byok = makeByok({ kid: kek.json.key.kid, key: { kty: 'RSA', n: kek.json.key.n, e: kek.json.key.e } }, customer);
  const imported = await data('PUT', '/keys/cmk', { key: { kty: 'RSA-HSM', key_ops: ['wrapKey', 'unwrapKey'], key_hsm: keyHsmOf(byok) }, Hsm: true });
  assert.equal(imported.status, 200, imported.text);
  assert.equal(imported.json.key.kty, 'RSA-HSM');
  assert.equal(imported.json.key.n, (customer.export({ format: 'jwk' }) as { n: string }).n, 'the imported key is the customer\'s');
  const keyUri = `${hsmUri}/keys/cmk`;

  // A CMK server on it, with its identity holding Crypto Service Encryption User at the key.
  const identity = await arm('PUT', `${rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-evidence`, { location: REGION }, 'api-version=2023-01-31');
  assert.equal(identity.status, 201, identity.text);
  assert.equal((await data('PUT', `/keys/cmk/providers/Microsoft.Authorization/roleAssignments/${randomUUID()}`, { properties: { roleDefinitionId: ROLE.cseu, principalId: identity.json.properties.principalId } })).status, 201);
  const server = `${rg}/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg-evidence`;
  const created = await arm('PUT', server, {
    location: REGION, sku: { name: 'Standard_D2s_v3', tier: 'GeneralPurpose' },
    identity: { type: 'UserAssigned', userAssignedIdentities: { [identity.json.id]: {} } },
    properties: {
      administratorLogin: 'dbadmin', administratorLoginPassword: 'Passw0rd!x', version: '15', storage: { storageSizeGB: 1 },
      dataEncryption: { type: 'AzureKeyVault', primaryKeyURI: keyUri, primaryUserAssignedIdentityId: identity.json.id },
    },
  }, PG_API);
  assert.ok(created.status === 201 || created.status === 202, created.text);
  await eventually(async () => (await arm('GET', server, undefined, PG_API)).json?.properties?.state === 'Ready', 'the server to be Ready', 180_000, 500);
  const before = (await arm('GET', `${server}/backups`, undefined, PG_API)).json.value.length;
  const backup = await arm('POST', `${server}/backups`, {}, PG_API);
  assert.ok([200, 201, 202].includes(backup.status), backup.text);
  await eventually(async () => (await arm('GET', `${server}/backups`, undefined, PG_API)).json.value.length > before, 'the backup to be listed', 120_000, 500);

  // Keys in the HSM: SQLite holds their token ids and no sealed private key.
  const db = new Database(join(p.home, 'pgbyok.db'), { readonly: true });
  const rows = db.prepare('SELECT name, length(sealed_private) AS sealed, token_key_id FROM key_versions WHERE token_key_id IS NOT NULL').all() as { name: string; sealed: number; token_key_id: string }[];
  db.close();
  assert.deepEqual(rows.map((r) => r.name).sort(), ['cmk', 'kek']);
  for (const r of rows) {
    assert.equal(r.sealed, 0, `an HSM key version keeps no sealed private key: ${r.name}`);
    assert.match(r.token_key_id, /^[0-9a-f]{32}$/);
  }

  // Every file of the home: SQLite (and its WAL), logs, the backup store, the token's own files.
  const files = filesUnder(p.home);
  assert.ok(files.some((f) => f.includes(`${join('hsm', 'tokens')}`)), 'the token files are searched too');
  assert.ok(files.some((f) => /backups/.test(f)), 'the backup store is searched');
  const secrets = secretsOf(customer);
  for (const f of files) {
    const content = readFileSync(f);
    for (const s of secrets) assert.equal(content.indexOf(s.bytes), -1, `${f} holds the private key (${s.label})`);
  }
  assert.equal((await arm('DELETE', server, undefined, PG_API)).status >= 200, true);
});
