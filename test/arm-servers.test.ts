/**
 * Root tier: a customer-managed-key flexible server made and run entirely through ARM paths, as az 2.45
 * (api-version 2022-12-01) addresses it — the identity by its ARM id, the async-operation URL polled, then a
 * database, a firewall rule, a configuration, a restart and the delete. Real loop devices and PostgreSQL.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { eventually, MGMT_RESOURCE, startPgbyok, vaultName, type Pgbyok } from './harness.js';

const API = 'api-version=2022-12-01';
const REGION = 'eastus';
const FS = 'providers/Microsoft.DBforPostgreSQL/flexibleServers';

let p: Pgbyok;
let token: string;
let sub: string;
let rg: string;

before(async () => {
  p = await startPgbyok();
  try {
    token = await p.token(p.admin, MGMT_RESOURCE);
    sub = (await p.http('GET', `${p.origin}/subscriptions?api-version=2022-12-01`, { token })).json.value[0].subscriptionId;
    rg = `/subscriptions/${sub}/resourceGroups/rg-arm`;
    assert.equal((await arm('PUT', rg, { location: REGION }, 'api-version=2021-04-01')).status, 201);
  } catch (e) {
    await p.stop();
    throw e;
  }
});
after(async () => p?.stop());

const arm = (method: string, path: string, body?: unknown, api = API) =>
  p.http(method, `${p.origin}${path}${path.includes('?') ? '&' : '?'}${api}`, { token, body });

/** Polls an Azure-AsyncOperation URL (absolute, with its api-version) until it has ended; answers the document. */
async function asyncEnd(url: string, timeoutMs = 120_000): Promise<any> {
  return eventually(async () => {
    const r = await p.http('GET', url, { token });
    assert.equal(r.status, 200, r.text);
    return r.json.status !== 'InProgress' && r.json;
  }, `operation ${url}`, timeoutMs, 300);
}

/** A 202 with ARM's three polling headers, for this subscription and location; answers them. */
function polling(r: { status: number; headers: Record<string, unknown>; text: string }) {
  assert.equal(r.status, 202, r.text);
  const async = String(r.headers['azure-asyncoperation']);
  const location = String(r.headers.location);
  const base = `${p.origin}/subscriptions/${sub}/providers/Microsoft.DBforPostgreSQL/locations/${REGION}`;
  assert.ok(async.startsWith(`${base}/azureAsyncOperation/`) && async.endsWith(API), async);
  assert.ok(location.startsWith(`${base}/operationResults/`), location);
  assert.ok(Number(r.headers['retry-after']) > 0);
  return { async, location };
}

test('a CMK server through ARM paths: ARM identity id, async-operation polling, database, firewall rule, configuration, restart, delete', async () => {
  // The identity at its ARM path; the vault and key through the CLI.
  const identity = await arm('PUT', `${rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-arm`, { location: REGION }, 'api-version=2022-01-31-preview');
  assert.equal(identity.status, 201, identity.text);
  const identityId = identity.json.id as string;
  assert.equal(identityId, `${rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-arm`);
  const vault = p.cli('vault', 'create', '--name', vaultName('arm'), '--location', REGION, '--retention-days', '90', '--enable-purge-protection').name;
  p.cli('vault', 'set-policy', '--name', vault, '--object-id', identity.json.properties.principalId, '--key-permissions', 'get', 'list', 'wrapKey', 'unwrapKey');
  const keyUri = String(p.cli('key', 'create', '--vault-name', vault, '--name', 'kek').key.kid).replace(/\/[^/]+$/, '');

  const name = 'pg-arm';
  const server = `${rg}/${FS}/${name}`;
  assert.equal((await arm('POST', `/subscriptions/${sub}/providers/Microsoft.DBforPostgreSQL/locations/${REGION}/checkNameAvailability`, { name, type: 'Microsoft.DBforPostgreSQL/flexibleServers' })).json.nameAvailable, true);
  // az 2.45's body, as it sends it (storage made small for the test).
  const created = await arm('PUT', server, {
    location: REGION, sku: { name: 'Standard_D2s_v3', tier: 'GeneralPurpose' },
    identity: { type: 'UserAssigned', userAssignedIdentities: { [identityId]: {} } },
    properties: {
      administratorLogin: 'dbadmin', administratorLoginPassword: 'Passw0rd!x', version: '15', storage: { storageSizeGB: 1 },
      authConfig: { activeDirectoryAuth: 'Disabled', passwordAuth: 'Enabled', tenantId: '' },
      dataEncryption: { primaryKeyURI: keyUri, primaryUserAssignedIdentityId: identityId, type: 'AzureKeyVault' },
      backup: { backupRetentionDays: 7, geoRedundantBackup: 'Disabled' },
      network: { delegatedSubnetResourceId: '', privateDnsZoneArmResourceId: '' }, highAvailability: { mode: 'Disabled' }, createMode: 'Create',
    },
  });
  const { async, location } = polling(created);
  const inProgress = await p.http('GET', location, { token });
  assert.ok(inProgress.status === 202 || inProgress.status === 200, inProgress.text);
  const done = await asyncEnd(async);
  assert.equal(done.status, 'Succeeded', JSON.stringify(done));
  assert.ok(done.startTime && done.endTime && done.name);
  const result = await p.http('GET', location, { token });
  assert.equal(result.status, 200, result.text);
  assert.equal(result.json.id, server);

  const got = (await arm('GET', server)).json;
  assert.equal(got.id, server);
  assert.deepEqual(got.sku, { name: 'Standard_D2s_v3', tier: 'GeneralPurpose' });
  assert.deepEqual(Object.keys(got.identity.userAssignedIdentities), [identityId]);
  assert.equal(got.properties.state, 'Ready');
  assert.equal(got.properties.dataEncryption.primaryUserAssignedIdentityId, identityId);
  assert.equal(got.properties.dataEncryption.primaryEncryptionKeyStatus, 'Valid');
  assert.equal(got.properties.highAvailability.mode, 'Disabled');
  assert.ok((await arm('GET', `${rg}/${FS}`)).json.value.some((s: any) => s.id === server));
  assert.ok((await arm('GET', `/subscriptions/${sub}/${FS}`)).json.value.some((s: any) => s.id === server));
  assert.equal((await arm('POST', `/subscriptions/${sub}/providers/Microsoft.DBforPostgreSQL/locations/${REGION}/checkNameAvailability`, { name, type: 'Microsoft.DBforPostgreSQL/flexibleServers' })).json.reason, 'AlreadyExists');

  // az's database PUT: a real database in the server's PostgreSQL.
  const db = await arm('PUT', `${server}/databases/flexibleserverdb`, { properties: { charset: 'utf8', collation: 'en_US.utf8' } });
  assert.equal(db.status, 201, db.text);
  assert.equal(db.json.id, `${server}/databases/flexibleserverdb`);
  assert.equal(db.json.properties.charset, 'UTF8');
  assert.equal((await arm('PUT', `${server}/databases/flexibleserverdb`, { properties: { charset: 'utf8' } })).status, 200, 'PUT again answers the database');
  assert.ok((await arm('GET', `${server}/databases`)).json.value.some((x: any) => x.name === 'flexibleserverdb'));
  assert.equal((await arm('PUT', `${server}/databases/latin`, { properties: { charset: 'latin1' } })).status, 400);

  // A firewall rule: stored, returned and enforced.
  const rule = await arm('PUT', `${server}/firewallRules/office`, { properties: { startIpAddress: '10.0.0.1', endIpAddress: '10.0.0.9' } });
  assert.equal(rule.status, 201, rule.text);
  assert.equal(rule.json.id, `${server}/firewallRules/office`);
  assert.deepEqual((await arm('GET', `${server}/firewallRules/office`)).json.properties, { startIpAddress: '10.0.0.1', endIpAddress: '10.0.0.9' });
  assert.equal((await arm('PUT', `${server}/firewallRules/bad`, { properties: { startIpAddress: '10.0.0.9', endIpAddress: '10.0.0.1' } })).status, 400);
  assert.equal((await arm('GET', `${server}/firewallRules`)).json.value.length, 1);
  // Enforced at the server's port: a rule that does not cover this machine refuses psql, with PostgreSQL's own words.
  const port = (await arm('GET', server)).json.properties.port as number;
  const psql = () => spawnSync('psql', [`host=localhost port=${port} dbname=postgres user=dbadmin sslmode=verify-full sslrootcert=${join(p.home, 'tls', 'ca.pem')}`, '-XAtc', 'SELECT 1'], { env: { ...process.env, PGPASSWORD: 'Passw0rd!x' }, encoding: 'utf8', timeout: 30_000 });
  const refused = psql();
  assert.notEqual(refused.status, 0, 'no rule admits 127.0.0.1');
  assert.match(refused.stderr, /no pg_hba\.conf entry for host "127\.0\.0\.1"/);
  assert.equal((await arm('PUT', `${server}/firewallRules/here`, { properties: { startIpAddress: '127.0.0.1', endIpAddress: '127.0.0.1' } })).status, 201);
  const admitted = psql();
  assert.equal(admitted.status, 0, admitted.stderr);
  assert.equal(admitted.stdout.trim(), '1');
  assert.equal((await arm('DELETE', `${server}/firewallRules/here`)).status, 200);
  assert.equal((await arm('DELETE', `${server}/firewallRules/office`)).status, 200);
  assert.equal(psql().status, 0, 'no rule left: the port admits every address that reaches it again');
  assert.equal((await arm('GET', `${server}/firewallRules/office`)).status, 404);

  // A configuration: a dynamic parameter is applied by an operation.
  const conf = await arm('PUT', `${server}/configurations/work_mem`, { properties: { value: '8192', source: 'user-override' } });
  assert.ok(conf.status === 200 || conf.status === 202, conf.text);
  if (conf.status === 202) assert.equal((await asyncEnd(polling(conf).async)).status, 'Succeeded');
  const wm = await arm('GET', `${server}/configurations/work_mem`);
  assert.equal(wm.json.id, `${server}/configurations/work_mem`);
  assert.equal(wm.json.properties.value, '8192');

  // restart: a POST whose operation result is empty when done.
  const restart = polling(await arm('POST', `${server}/restart`, { restartWithFailover: false }));
  assert.equal((await asyncEnd(restart.async)).status, 'Succeeded');
  assert.equal((await p.http('GET', restart.location, { token })).status, 204);
  assert.ok((await arm('GET', `${server}/databases/flexibleserverdb`)).status === 200, 'the database survives the restart');
  assert.equal((await arm('DELETE', `${server}/databases/flexibleserverdb`)).status, 200);

  // The old tenant path still answers with pgbyok's operation URL (the CLI polls it).
  const old = await p.http('POST', `${p.origin}/tenants/${p.admin.tenantId}/${FS}/${name}/revalidate`, { token });
  assert.equal(old.status, 202);
  assert.match(String(old.headers['azure-asyncoperation']), /\/tenants\/[^/]+\/providers\/Microsoft\.DBforPostgreSQL\/operations\//);
  await eventually(async () => (await p.http('GET', String(old.headers['azure-asyncoperation']), { token })).json.status === 'Succeeded', 'revalidate', 60_000, 300);

  const del = polling(await arm('DELETE', server));
  assert.equal((await asyncEnd(del.async)).status, 'Succeeded');
  assert.equal((await arm('GET', server)).status, 404);
  assert.equal((await arm('GET', `${rg}/${FS}`)).json.value.length, 0);
});
