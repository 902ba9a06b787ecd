/**
 * Handler tier: Microsoft.DBforPostgreSQL as ARM serves it, for what needs no loop device — capabilities in
 * both shapes (by api-version), checkNameAvailability, api-version refusals, and bodies refused before
 * anything is created. In process, on the manual clock.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { MANAGEMENT_SCOPE, startInProc, type InProc } from './inproc.js';

let p: InProc;
let token: string;
let sub: string;
const NS = '/providers/Microsoft.DBforPostgreSQL';

before(async () => {
  p = await startInProc();
  token = await p.token(MANAGEMENT_SCOPE);
  sub = (await p.call('GET', '/subscriptions?api-version=2022-12-01', { token })).body.value[0].subscriptionId;
  assert.equal((await arm('PUT', '/resourcegroups/rg-pg', { location: 'eastus' }, '2021-04-01')).status, 201);
});
after(() => p?.stop());

const arm = (method: string, path: string, body?: unknown, api = '2022-12-01') =>
  p.call(method, `/subscriptions/${sub}${path}${path.includes('?') ? '&' : '?'}api-version=${api}`, { token, body });

test('capabilities in the 2022-12-01 shape: what az 2.45 validates (tiers, SKUs, sizes incl. its 128 GiB default, version 15 only)', async () => {
  const r = await arm('GET', `${NS}/locations/eastus/capabilities`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const c = r.body.value[0];
  assert.equal(c.zoneRedundantHaSupported, false);
  const tiers = Object.fromEntries(c.supportedFlexibleServerEditions.map((t: any) => [t.name, t]));
  assert.deepEqual(Object.keys(tiers).sort(), ['Burstable', 'GeneralPurpose', 'MemoryOptimized']);
  const gp = tiers.GeneralPurpose;
  assert.deepEqual(gp.supportedServerVersions.map((v: any) => v.name), ['15']);
  assert.ok(gp.supportedServerVersions[0].supportedVcores.some((s: any) => s.name === 'Standard_D2s_v3' && s.vCores === 2));
  const sizes = gp.supportedStorageEditions[0].supportedStorageMB.map((s: any) => s.storageSizeMB / 1024);
  assert.ok(sizes.includes(128) && sizes.includes(32), `sizes ${sizes}`);
  assert.equal((await arm('GET', `${NS}/locations/nowhere/capabilities`)).body.error.code, 'LocationNotAvailableForResourceType');
});

test('capabilities in the 2025-08-01 shape the v9 SDK deserializes (supportedServerEditions, supportedServerSkus, supportedStorageMb)', async () => {
  const r = await arm('GET', `${NS}/locations/eastus/capabilities`, undefined, '2025-08-01');
  assert.equal(r.status, 200);
  const c = r.body.value[0];
  assert.equal(c.supportedFlexibleServerEditions, undefined);
  assert.deepEqual(c.supportedServerVersions.map((v: any) => v.name), ['15']);
  const gp = c.supportedServerEditions.find((e: any) => e.name === 'GeneralPurpose');
  assert.equal(gp.defaultSkuName, 'Standard_D2s_v3');
  assert.ok(gp.supportedServerSkus.some((s: any) => s.name === 'Standard_D4s_v3' && s.vCores === 4));
  assert.ok(gp.supportedStorageEditions[0].supportedStorageMb.some((s: any) => s.storageSizeMb === 32768));
  assert.equal(c.geoBackupSupported, 'Enabled');
  assert.equal(c.zoneRedundantHaSupported, 'Disabled');
});

test('checkNameAvailability: by location (az 2.45) and by subscription (newer versions)', async () => {
  const free = await arm('POST', `${NS}/locations/eastus/checkNameAvailability`, { name: 'pg-free', type: 'Microsoft.DBforPostgreSQL/flexibleServers' });
  assert.equal(free.status, 200);
  assert.equal(free.body.nameAvailable, true);
  const bad = await arm('POST', `${NS}/checkNameAvailability`, { name: 'Bad_Name', type: 'Microsoft.DBforPostgreSQL/flexibleServers' }, '2025-08-01');
  assert.equal(bad.body.nameAvailable, false);
  assert.equal(bad.body.reason, 'Invalid');
  assert.equal(typeof bad.body.message, 'string');
});

test('api-version: the provider\'s published versions are accepted, others refused naming the supported ones', async () => {
  for (const v of ['2022-12-01', '2023-06-01-preview', '2024-08-01', '2025-08-01']) {
    assert.equal((await arm('GET', `${NS}/flexibleServers`, undefined, v)).status, 200, v);
  }
  const r = await arm('GET', `${NS}/flexibleServers`, undefined, '2021-06-01');
  assert.equal(r.status, 400);
  assert.equal(r.body.error.code, 'InvalidApiVersionParameter');
  assert.match(r.body.error.message, /2022-12-01.*2025-08-01/);
  // The tenant path is pgbyok's own: no api-version (the older CLI) is fine there.
  assert.equal((await p.call('GET', `/tenants/${p.admin.tenantId}${NS}/flexibleServers`, { token })).status, 200);
});

test('bodies pgbyok does not offer are refused with a clear ARM error, and nothing is created', async () => {
  const base = { location: 'eastus', properties: { administratorLogin: 'dbadmin', administratorLoginPassword: 'Passw0rd!x', version: '15', storage: { storageSizeGB: 32 } } };
  const cases: [string, unknown, string][] = [
    ['zone-redundant HA', { ...base, properties: { ...base.properties, highAvailability: { mode: 'ZoneRedundant' } } }, 'BadParameter'],
    ['version 13', { ...base, properties: { ...base.properties, version: '13' } }, 'BadParameter'],
    ['an unknown SKU', { ...base, sku: { name: 'Standard_X99', tier: 'GeneralPurpose' } }, 'InvalidSkuName'],
    ['a SKU of another tier', { ...base, sku: { name: 'Standard_B1ms', tier: 'GeneralPurpose' } }, 'InvalidSkuTier'],
    ['an unknown createMode', { ...base, properties: { ...base.properties, createMode: 'ReviveDropped' } }, 'BadParameter'],
    ['Entra authentication', { ...base, properties: { ...base.properties, authConfig: { activeDirectoryAuth: 'Enabled' } } }, 'BadParameter'],
    ['a delegated subnet', { ...base, properties: { ...base.properties, network: { delegatedSubnetResourceId: '/subscriptions/x/subnets/y' } } }, 'BadParameter'],
    ['a system-assigned identity', { ...base, identity: { type: 'SystemAssigned' } }, 'BadParameter'],
    ['a key without an identity', { ...base, properties: { ...base.properties, dataEncryption: { type: 'AzureKeyVault', primaryKeyURI: 'https://x/keys/k' } } }, 'BadParameter'],
  ];
  for (const [what, body, code] of cases) {
    const r = await arm('PUT', `/resourceGroups/rg-pg${NS}/flexibleServers/pg-refused`, body);
    assert.equal(r.status, 400, `${what}: ${r.status} ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.code, code, what);
    assert.ok(r.body.error.message.length > 10, what);
  }
  assert.equal((await arm('GET', `/resourceGroups/rg-pg${NS}/flexibleServers/pg-refused`)).status, 404);
  assert.deepEqual((await arm('GET', `/resourceGroups/rg-pg${NS}/flexibleServers`)).body.value, []);
  assert.deepEqual((await arm('GET', `/resources?$filter=resourceType eq 'Microsoft.DBforPostgreSQL/flexibleServers'`, undefined, '2021-04-01')).body.value, []);
  const missing = await arm('PUT', `/resourceGroups/rg-nope${NS}/flexibleServers/pg-refused`, base);
  assert.equal(missing.body.error.code, 'ResourceGroupNotFound');
});

test('a server that does not exist is ARM\'s ResourceNotFound at every sub-resource', async () => {
  for (const path of ['', '/databases', '/firewallRules/r1', '/configurations', '/backups', '/replicas', '/capabilities']) {
    const r = await arm('GET', `/resourceGroups/rg-pg${NS}/flexibleServers/pg-none${path}`);
    assert.equal(r.status, 404, path);
    assert.equal(r.body.error.code, 'ResourceNotFound', path);
  }
});
