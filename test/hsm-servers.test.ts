/**
 * Root tier: a flexible server under a customer-managed key in a Managed HSM, made through ARM paths on a real
 * platform (SoftHSM2 token, loop devices, fscrypt, PostgreSQL). The HSM is created and activated as a
 * customer does it (ARM PUT, security-domain download with three certificates), the server's identity holds
 * Managed HSM Crypto Service Encryption User at the key, and the server follows the key as it follows a vault
 * key: disabled → Inaccessible, enabled → Ready, role removed → Inaccessible, re-assigned → Ready, rotated →
 * re-wrapped (the volume and the backups), restored and replicated under the same key. The key monitor's interval is set
 * long (60 s), so every change reaching the server within seconds came through the HSM's events.
 * Skips (saying so) where SoftHSM2 is not installed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually, MGMT_RESOURCE, startPgbyok, type Pgbyok } from './harness.js';
import { downloadCertificates, hsmSkip, securityDomainHolders, type SecurityDomainHolder } from './hsm-fixtures.js';

const skip = hsmSkip;
const REGION = 'eastus';
const PASSWORD = 'Passw0rd!x';
const KV = 'api-version=7.5';
const FS = 'providers/Microsoft.DBforPostgreSQL/flexibleServers';
const CSEU = '33413926-3206-4cdd-b39a-83574fe37a17';
const CRYPTO_USER = '21dbd100-6940-42c2-9190-5d6cb909625b';
/** Within seconds: an event, not the monitor's 60 s pass. */
const SOON_MS = 15_000;

let p: Pgbyok;
let mgmtToken = '';
let hsmToken = '';
let rg = '';
let holders: SecurityDomainHolder[] = [];

const arm = (method: string, path: string, body?: unknown, api = 'api-version=2022-12-01') =>
  p.http(method, `${p.origin}${path}${path.includes('?') ? '&' : '?'}${api}`, { token: mgmtToken, body });
/** A call on an HSM's data plane as the administrator. */
const hsmCall = (hsmUri: string, method: string, path: string, body?: unknown) =>
  p.http(method, `${hsmUri.replace(/\/$/, '')}${path}${path.includes('?') ? '&' : '?'}${KV}`, { token: hsmToken, body });

async function createHsm(name: string, location = REGION): Promise<string> {
  const r = await arm('PUT', `${rg}/providers/Microsoft.KeyVault/managedHSMs/${name}`, {
    location, sku: { family: 'B', name: 'Standard_B1' },
    properties: { tenantId: p.admin.tenantId, initialAdminObjectIds: [p.admin.objectId], softDeleteRetentionInDays: 90, enablePurgeProtection: true },
  }, 'api-version=2024-11-01');
  assert.equal(r.status, 201, r.text);
  return r.json.properties.hsmUri;
}

/** Activation: the security domain downloaded, encrypted to three certificates (two needed). */
async function activate(hsmUri: string): Promise<void> {
  const certificates = downloadCertificates(holders);
  const r = await hsmCall(hsmUri, 'POST', '/securitydomain/download', { certificates, required: 2 });
  assert.equal(r.status, 202, r.text);
  assert.equal((await hsmCall(hsmUri, 'GET', '/securitydomain/download/pending')).json.status, 'Success');
}

const assign = async (hsmUri: string, scope: string, role: string, principalId: string): Promise<string> => {
  const name = randomUUID();
  const r = await hsmCall(hsmUri, 'PUT', `${scope}/providers/Microsoft.Authorization/roleAssignments/${name}`, {
    properties: { roleDefinitionId: `/Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/${role}`, principalId },
  });
  assert.equal(r.status, 201, r.text);
  return name;
};

const serverBody = (keyUri: string, identityId: string) => ({
  location: REGION, sku: { name: 'Standard_D2s_v3', tier: 'GeneralPurpose' },
  identity: { type: 'UserAssigned', userAssignedIdentities: { [identityId]: {} } },
  properties: {
    administratorLogin: 'dbadmin', administratorLoginPassword: PASSWORD, version: '15', storage: { storageSizeGB: 1 },
    dataEncryption: { primaryKeyURI: keyUri, primaryUserAssignedIdentityId: identityId, type: 'AzureKeyVault' },
    backup: { backupRetentionDays: 7, geoRedundantBackup: 'Disabled' }, createMode: 'Create',
  },
});

/** Polls an Azure-AsyncOperation URL until the operation has ended; answers its status. */
async function asyncEnd(r: { status: number; headers: Record<string, unknown>; text: string }): Promise<string> {
  assert.equal(r.status, 202, r.text);
  const url = String(r.headers['azure-asyncoperation']);
  return eventually(async () => {
    const s = await p.http('GET', url, { token: mgmtToken });
    assert.equal(s.status, 200, s.text);
    return s.json.status !== 'InProgress' && s.json.status;
  }, `operation ${url}`, 120_000, 300);
}

const show = async (server: string) => (await arm('GET', server)).json;
async function waitState(server: string, state: string, what: string, timeoutMs = SOON_MS): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await show(server);
    if (s.properties.state === state) return s;
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${s.properties.state} ${s.properties.inaccessibleReason ?? ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const conn = (port: number) => `host=localhost port=${port} dbname=postgres user=dbadmin sslmode=verify-full sslrootcert=${join(p.home, 'tls', 'ca.pem')}`;
const psql = (port: number, sql: string) => execFileSync('psql', [conn(port), '-XAtc', sql, '-v', 'ON_ERROR_STOP=1'], {
  env: { ...process.env, PGPASSWORD: PASSWORD }, encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'],
}).trim();
/** psql on an Inaccessible server: refused with pgbyok's answer in PostgreSQL's protocol. */
function assertRefused(port: number, why: RegExp): void {
  const r = spawnSync('psql', [conn(port), '-XAtc', 'SELECT 1'], { env: { ...process.env, PGPASSWORD: PASSWORD }, encoding: 'utf8', timeout: 20_000 });
  assert.notEqual(r.status, 0, 'psql is refused');
  assert.match(r.stderr, /is inaccessible/);
  assert.match(r.stderr, why);
}
const snapshot = (port: number) => psql(port, "SELECT count(*) || ':' || md5(string_agg(note, ',' ORDER BY id)) FROM t");
/** The key version that wraps the server's DEK, as its volume header says. */
const wrappedBy = (name: string) => JSON.parse(readFileSync(join(p.home, 'regions', REGION, 'mnt', name, 'volume.json'), 'utf8')).meta.wrappedBy as string;

before(async () => {
  if (skip) return;
  p = await startPgbyok({ PGBYOK_KEY_MONITOR_INTERVAL_MS: '60000', PGBYOK_ARCHIVE_INTERVAL_MS: '500' });
  try {
    mgmtToken = await p.token(p.admin, MGMT_RESOURCE);
    hsmToken = await p.token(p.admin, 'https://managedhsm.localhost');
    const sub = (await arm('GET', '/subscriptions')).json.value[0].subscriptionId;
    rg = `/subscriptions/${sub}/resourceGroups/rg-hsm`;
    assert.equal((await arm('PUT', rg, { location: REGION }, 'api-version=2021-04-01')).status, 201);
    holders = securityDomainHolders();
  } catch (e) {
    await p.stop();
    throw e;
  }
});
after(async () => {
  await p?.stop();
});

test('a CMK server on a Managed HSM key: validated like a vault key, and it follows the key (disable, role removal, rotation, restore, replica) within seconds', { skip }, async () => {
  const hsmUri = await createHsm('hsm-srv');
  const identity = await arm('PUT', `${rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-hsm`, { location: REGION }, 'api-version=2022-01-31-preview');
  assert.equal(identity.status, 201, identity.text);
  const identityId: string = identity.json.id;
  const principalId: string = identity.json.properties.principalId;
  const name = 'pg-hsm';
  const server = `${rg}/${FS}/${name}`;

  // Not activated: refused, naming the security domain.
  const early = await arm('PUT', server, serverBody(`${hsmUri}keys/kek`, identityId));
  assert.equal(early.status, 400, early.text);
  assert.equal(early.json.error.innererror.code, 'ManagedHsmNotActivated');
  assert.match(early.json.error.message, /security domain/);

  await activate(hsmUri);
  await assign(hsmUri, '', CRYPTO_USER, p.admin.objectId);
  const key = await hsmCall(hsmUri, 'POST', '/keys/kek/create', { kty: 'RSA-HSM', key_size: 2048, key_ops: ['wrapKey', 'unwrapKey'] });
  assert.equal(key.status, 200, key.text);
  const keyUri = `${hsmUri}keys/kek`;

  // The identity without a role at the key: refused, saying which role to assign and how.
  const noRole = await arm('PUT', server, serverBody(keyUri, identityId));
  assert.equal(noRole.status, 400, noRole.text);
  assert.equal(noRole.json.error.innererror.code, 'IdentityMissingKeyPermissions');
  assert.ok(noRole.json.error.message.includes(`'Managed HSM Crypto Service Encryption User' role (${CSEU})`), noRole.json.error.message);
  assert.ok(noRole.json.error.message.includes(`pgbyok hsm role assignment create --hsm-name hsm-srv --role "Managed HSM Crypto Service Encryption User" --assignee ${principalId} --scope /keys/kek`), noRole.json.error.message);
  assert.equal((await arm('GET', server)).status, 404, 'nothing was created');

  const grant = await assign(hsmUri, '/keys/kek', CSEU, principalId);
  assert.equal(await asyncEnd(await arm('PUT', server, serverBody(keyUri, identityId))), 'Succeeded');
  const made = await show(server);
  assert.equal(made.properties.state, 'Ready');
  assert.equal(made.properties.dataEncryption.primaryKeyURI, keyUri);
  assert.equal(made.properties.dataEncryption.primaryEncryptionKeyStatus, 'Valid');
  const firstVersion: string = key.json.key.kid;
  assert.equal(wrappedBy(name), firstVersion, 'the DEK is wrapped by the HSM key');
  const port: number = made.properties.port;
  psql(port, "CREATE TABLE t (id serial PRIMARY KEY, note text NOT NULL); INSERT INTO t (note) SELECT 'hsm-' || g FROM generate_series(1, 200) g");
  const rows = snapshot(port);
  assert.match(rows, /^200:/);

  // Key disabled: Inaccessible within seconds; enabled: Ready by itself, every row there.
  assert.equal((await hsmCall(hsmUri, 'PATCH', '/keys/kek/', { attributes: { enabled: false } })).status, 200);
  const disabled = await waitState(server, 'Inaccessible', 'Inaccessible after the HSM key was disabled');
  assert.match(disabled.properties.inaccessibleReason, /disabled/);
  assert.equal(disabled.properties.dataEncryption.primaryEncryptionKeyStatus, 'Invalid');
  assertRefused(port, /disabled/);
  assert.equal((await hsmCall(hsmUri, 'PATCH', '/keys/kek/', { attributes: { enabled: true } })).status, 200);
  await waitState(server, 'Ready', 'Ready after the HSM key was enabled');
  assert.equal(snapshot(port), rows);

  // The role assignment removed: Inaccessible within seconds; assigned again: Ready, every row there.
  const removedAt = Date.now();
  assert.equal((await hsmCall(hsmUri, 'DELETE', `/keys/kek/providers/Microsoft.Authorization/roleAssignments/${grant}`)).status, 200);
  const revoked = await waitState(server, 'Inaccessible', 'Inaccessible after the role assignment was removed');
  assert.ok(Date.now() - removedAt < SOON_MS);
  assert.match(revoked.properties.inaccessibleReason, /role assignment/);
  assertRefused(port, /permission/);
  const early2 = await arm('POST', `${server}/revalidate`);
  if (early2.status === 202) assert.notEqual(await asyncEnd(early2), 'Succeeded', 'no revalidation without the role');
  await assign(hsmUri, '/keys/kek', CSEU, principalId);
  // The HSM's event already makes the monitor revalidate; an explicit revalidate meets it or runs itself.
  const revalidate = await arm('POST', `${server}/revalidate`);
  assert.ok(revalidate.status === 202 || revalidate.status === 409, revalidate.text);
  await waitState(server, 'Ready', 'Ready after the role was assigned again and revalidate');
  assert.equal(snapshot(port), rows);

  // A backup, then rotation: the monitor (told by the HSM's event) re-wraps the DEK and the backup keys.
  psql(port, "INSERT INTO t (note) VALUES ('after-rotation-prep')");
  const backup = p.cli('server', 'backup', 'create', '--name', name);
  assert.ok(backup.name);
  const rotated = await hsmCall(hsmUri, 'POST', '/keys/kek/rotate');
  assert.equal(rotated.status, 200, rotated.text);
  const newVersion: string = rotated.json.key.kid;
  assert.notEqual(newVersion, firstVersion);
  await eventually(() => wrappedBy(name) === newVersion, 'the DEK re-wrapped by the new version', SOON_MS);
  await eventually(() => {
    const listed = p.cli('server', 'backup', 'list', '--name', name);
    return listed.length >= 2 && listed.every((b: any) => b.properties.encryptionKeyVersion === newVersion);
  }, 'the backup keys re-wrapped by the new version', 30_000, 500);
  assert.equal((await show(server)).properties.state, 'Ready');
  const finalRows = snapshot(port);

  // A restore to the latest point, under the same HSM key.
  const restored = p.cli('server', 'restore', '--source', name, '--name', `${name}-r`);
  assert.equal(restored.properties.state, 'Ready');
  assert.equal(restored.properties.dataEncryption.primaryKeyURI, keyUri);
  assert.equal(snapshot(restored.properties.port), finalRows, 'the restored server has every row');
  assert.equal(wrappedBy(`${name}-r`), newVersion);
  p.cli('server', 'delete', '--name', `${name}-r`, '--yes');

  // A read replica under the same HSM key: its own DEK, wrapped by the HSM; writes reach it.
  const replica = p.cli('server', 'replica', 'create', '--source', name, '--name', `${name}-rep`);
  assert.equal(replica.properties.state, 'Ready');
  assert.equal(replica.properties.dataEncryption.primaryKeyURI, keyUri);
  assert.equal(wrappedBy(`${name}-rep`), newVersion);
  psql(port, "INSERT INTO t (note) VALUES ('for-the-replica')");
  await eventually(() => psql(replica.properties.port, "SELECT count(*) FROM t WHERE note = 'for-the-replica'") === '1', 'the write to reach the replica', 30_000, 300);
  p.cli('server', 'delete', '--name', `${name}-rep`, '--yes');

  assert.equal(await asyncEnd(await arm('DELETE', server)), 'Succeeded');
  assert.equal((await arm('GET', server)).status, 404);
});

test('geo-redundant backup under an HSM key of the paired region: the backups reach westus wrapped by its HSM, and a geo-restore builds the server there', { skip }, async () => {
  const east = (await arm('GET', `${rg}/providers/Microsoft.KeyVault/managedHSMs/hsm-srv`, undefined, 'api-version=2024-11-01')).json.properties.hsmUri as string;
  const eastIdentity = (await arm('GET', `${rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-hsm`, undefined, 'api-version=2022-01-31-preview')).json;
  const west = await createHsm('hsm-west', 'westus');
  await activate(west);
  await assign(west, '', CRYPTO_USER, p.admin.objectId);
  assert.equal((await hsmCall(west, 'POST', '/keys/geo/create', { kty: 'RSA-HSM', key_size: 2048, key_ops: ['wrapKey', 'unwrapKey'] })).status, 200);
  const westIdentity = await arm('PUT', `${rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-hsm-west`, { location: 'westus' }, 'api-version=2022-01-31-preview');
  assert.equal(westIdentity.status, 201, westIdentity.text);
  await assign(west, '/keys/geo', CSEU, westIdentity.json.properties.principalId);

  const name = 'pg-hsm-geo';
  const server = `${rg}/${FS}/${name}`;
  const body = serverBody(`${east}keys/kek`, eastIdentity.id);
  body.identity.userAssignedIdentities[westIdentity.json.id] = {};
  Object.assign(body.properties.dataEncryption, { geoBackupKeyURI: `${west}keys/geo`, geoBackupUserAssignedIdentityId: westIdentity.json.id });
  body.properties.backup.geoRedundantBackup = 'Enabled';
  assert.equal(await asyncEnd(await arm('PUT', server, body)), 'Succeeded');
  const made = await show(server);
  assert.equal(made.properties.dataEncryption.geoBackupKeyURI, `${west}keys/geo`);
  psql(made.properties.port, "CREATE TABLE g (v text); INSERT INTO g VALUES ('geo-row')");
  const westStore = join(p.home, 'regions', 'westus', 'backups');
  await eventually(() => existsSync(westStore) && readdirSync(westStore, { recursive: true }).some((f) => String(f).includes('base')), 'the geo copies in westus', 120_000, 500);

  const restoredName = `${name}-w`;
  const restored = `${rg}/${FS}/${restoredName}`;
  const geo = await arm('PUT', restored, {
    location: 'westus',
    identity: { type: 'UserAssigned', userAssignedIdentities: { [westIdentity.json.id]: {} } },
    properties: { createMode: 'GeoRestore', sourceServerResourceId: server },
  });
  assert.equal(await asyncEnd(geo), 'Succeeded');
  const there = await show(restored);
  assert.equal(there.location, 'westus');
  assert.equal(there.properties.dataEncryption.primaryKeyURI, `${west}keys/geo`, 'the geo-restored server runs under the west HSM key');
  assert.equal(psql(there.properties.port, 'SELECT v FROM g'), 'geo-row');
  assert.equal(await asyncEnd(await arm('DELETE', restored)), 'Succeeded');
  assert.equal(await asyncEnd(await arm('DELETE', server)), 'Succeeded');
});
