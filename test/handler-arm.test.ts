/**
 * Handler tier: ARM's resource model as az and the SDKs address it — subscriptions, resource groups, ARM
 * ids, the generic resources list, PUT as create-or-update for identities and vaults, soft-deleted vaults by
 * location, and ARM's error codes. In process, on the manual clock.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { MANAGEMENT_SCOPE, startInProc, type InProc } from './inproc.js';

const API = 'api-version=2023-07-01';
let p: InProc;
let token: string;
let sub: string;

before(async () => {
  p = await startInProc();
  token = await p.token(MANAGEMENT_SCOPE);
  const subs = await p.call('GET', `/subscriptions?api-version=2019-11-01`, { token });
  assert.equal(subs.status, 200);
  sub = subs.body.value[0].subscriptionId;
});
after(() => p?.stop());

const arm = (method: string, path: string, body?: unknown) =>
  p.call(method, `/subscriptions/${sub}${path}${path.includes('?') ? '&' : '?'}${API}`, { token, body });

test('GET /subscriptions lists the tenant\'s default subscription as az login needs it', async () => {
  const subs = await p.call('GET', '/subscriptions?api-version=2022-12-01', { token });
  assert.equal(subs.body.value.length, 1);
  const s = subs.body.value[0];
  assert.equal(s.tenantId, p.admin.tenantId);
  assert.equal(s.state, 'Enabled');
  assert.equal(s.id, `/subscriptions/${s.subscriptionId}`);
  const one = await arm('GET', '');
  assert.equal(one.status, 200);
  assert.equal(one.body.subscriptionId, sub);
  const tenants = await p.call('GET', '/tenants?api-version=2022-12-01', { token });
  assert.ok(tenants.body.value.some((t: any) => t.tenantId === p.admin.tenantId));
});

test('a subscription that does not exist is SubscriptionNotFound; a missing api-version is refused', async () => {
  const r = await p.call('GET', `/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups?${API}`, { token });
  assert.equal(r.status, 404);
  assert.equal(r.body.error.code, 'SubscriptionNotFound');
  const v = await p.call('GET', `/subscriptions/${sub}/resourceGroups`, { token });
  assert.equal(v.status, 400);
  assert.equal(v.body.error.code, 'MissingApiVersionParameter');
});

test('resource groups: HEAD 404, PUT 201, HEAD 204, GET, list; a resource under a missing group is ResourceGroupNotFound and creates nothing', async () => {
  assert.equal((await arm('HEAD', '/resourcegroups/rg-a')).status, 404);
  const missing = await arm('PUT', '/resourceGroups/rg-nope/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-x', { location: 'eastus' });
  assert.equal(missing.status, 404);
  assert.equal(missing.body.error.code, 'ResourceGroupNotFound');
  assert.equal((await arm('GET', '/resourceGroups/rg-nope')).status, 404);
  const created = await arm('PUT', '/resourcegroups/rg-a', { location: 'eastus', tags: { team: 'db' } });
  assert.equal(created.status, 201);
  assert.deepEqual(created.body, { id: `/subscriptions/${sub}/resourceGroups/rg-a`, name: 'rg-a', type: 'Microsoft.Resources/resourceGroups', location: 'eastus', tags: { team: 'db' }, properties: { provisioningState: 'Succeeded' } });
  assert.equal((await arm('HEAD', '/resourcegroups/RG-A')).status, 204);
  assert.equal((await arm('PUT', '/resourcegroups/rg-a', { location: 'westus' })).body.error.code, 'InvalidResourceGroupLocation');
  assert.equal((await arm('PUT', '/resourcegroups/bad%20name!', { location: 'eastus' })).body.error.code, 'InvalidResourceGroup');
  assert.ok((await arm('GET', '/resourcegroups')).body.value.some((g: any) => g.name === 'rg-a'));
  const ids = (await arm('GET', '/providers/Microsoft.ManagedIdentity/userAssignedIdentities')).body;
  assert.ok(Array.isArray(ids.value));
  assert.ok(!JSON.stringify(ids).includes('id-x'), 'the refused request created nothing');
});

test('identities and vaults get ARM ids; PUT is create-or-update; the generic list finds them by type', async () => {
  await arm('PUT', '/resourcegroups/rg-kv', { location: 'eastus' });
  const idPath = '/resourceGroups/rg-kv/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-arm';
  const id1 = await arm('PUT', idPath, { location: 'eastus' });
  assert.equal(id1.status, 201);
  assert.equal(id1.body.id, `/subscriptions/${sub}/resourceGroups/rg-kv/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-arm`);
  const again = await arm('PUT', idPath, { location: 'eastus' });
  assert.equal(again.status, 200);
  assert.equal(again.body.properties.principalId, id1.body.properties.principalId);
  assert.equal(again.body.clientSecret, undefined);

  const vaultPath = '/resourceGroups/rg-kv/providers/Microsoft.KeyVault/vaults/kv-arm';
  const body = {
    location: 'eastus',
    properties: { tenantId: p.admin.tenantId, sku: { family: 'A', name: 'standard' }, accessPolicies: [], enableSoftDelete: true, softDeleteRetentionInDays: 90, enablePurgeProtection: true, networkAcls: { bypass: 'AzureServices', defaultAction: 'Allow' } },
  };
  const v = await arm('PUT', vaultPath, body);
  assert.equal(v.status, 201, JSON.stringify(v.body));
  assert.deepEqual(v.body.properties.accessPolicies, [], 'Azure stores exactly what was sent');
  assert.equal(v.body.id, `/subscriptions/${sub}/resourceGroups/rg-kv/providers/Microsoft.KeyVault/vaults/kv-arm`);

  // az keyvault set-policy: GET, then PUT the whole vault back with one more policy.
  const got = (await arm('GET', vaultPath)).body;
  got.properties.accessPolicies.push({ tenantId: p.admin.tenantId, objectId: id1.body.properties.principalId, permissions: { keys: ['get', 'wrapKey', 'unwrapKey'], secrets: [], certificates: [] } });
  const put = await arm('PUT', vaultPath, { location: got.location, properties: got.properties });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  assert.deepEqual(put.body.properties.accessPolicies.map((x: any) => [x.objectId, x.permissions.keys.sort()]), [[id1.body.properties.principalId, ['get', 'unwrapKey', 'wrapKey']]]);
  // delete-policy: the list without it.
  const none = await arm('PUT', vaultPath, { location: 'eastus', properties: { ...got.properties, accessPolicies: [] } });
  assert.deepEqual(none.body.properties.accessPolicies, []);
  // Purge protection only goes from false to true; a refused PUT changes nothing.
  const off = await arm('PUT', vaultPath, { location: 'eastus', properties: { ...got.properties, enablePurgeProtection: false, accessPolicies: [] , networkAcls: { defaultAction: 'Deny', bypass: 'None' } } });
  assert.equal(off.status, 400);
  assert.match(off.body.error.message, /cannot be set to false/);
  assert.equal((await arm('GET', vaultPath)).body.properties.networkAcls.defaultAction, 'Allow');

  const listed = await arm('GET', `/resources?$filter=${encodeURIComponent("resourceType eq 'Microsoft.KeyVault/vaults'")}`);
  assert.equal(listed.status, 200);
  assert.deepEqual(listed.body.value.map((r: any) => r.id), [v.body.id]);
  const bad = await arm('GET', `/resources?$filter=${encodeURIComponent("location eq 'x'")}`);
  assert.equal(bad.body.error.code, 'InvalidFilterInQueryString');
  // The same vault is not in another group.
  await arm('PUT', '/resourcegroups/rg-other', { location: 'eastus' });
  assert.equal((await arm('GET', '/resourceGroups/rg-other/providers/Microsoft.KeyVault/vaults/kv-arm')).status, 404);
  assert.equal((await arm('GET', '/providers/Microsoft.KeyVault/vaults')).body.value.length >= 1, true);
});

test('soft-deleted vaults are at locations/{loc}/deletedVaults/{name}; createMode recover brings one back; deletedManagedHSMs answers', async () => {
  await arm('PUT', '/resourcegroups/rg-del', { location: 'eastus' });
  const path = '/resourceGroups/rg-del/providers/Microsoft.KeyVault/vaults/kv-del';
  assert.equal((await arm('PUT', path, { location: 'eastus', properties: { tenantId: p.admin.tenantId, accessPolicies: [] } })).status, 201);
  assert.equal((await arm('DELETE', path)).status, 200);
  const gone = await arm('GET', '/providers/Microsoft.KeyVault/locations/eastus/deletedVaults/kv-del');
  assert.equal(gone.status, 200);
  assert.equal(gone.body.properties.vaultId, `/subscriptions/${sub}${path}`);
  const again = await arm('PUT', path, { location: 'eastus', properties: { tenantId: p.admin.tenantId, accessPolicies: [] } });
  assert.equal(again.status, 409);
  const back = await arm('PUT', path, { location: 'eastus', properties: { tenantId: p.admin.tenantId, createMode: 'recover' } });
  assert.equal(back.status, 200, JSON.stringify(back.body));
  assert.equal((await arm('GET', path)).status, 200);
  const hsms = await arm('GET', '/providers/Microsoft.KeyVault/deletedManagedHSMs');
  assert.deepEqual([hsms.status, hsms.body], [200, { value: [] }]);
});

test('deleting a resource group deletes what it holds', async () => {
  await arm('PUT', '/resourcegroups/rg-gone', { location: 'eastus' });
  await arm('PUT', '/resourceGroups/rg-gone/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-gone', { location: 'eastus' });
  await arm('PUT', '/resourceGroups/rg-gone/providers/Microsoft.KeyVault/vaults/kv-gone', { location: 'eastus', properties: { tenantId: p.admin.tenantId, accessPolicies: [] } });
  const del = await arm('DELETE', '/resourcegroups/rg-gone');
  assert.ok([200, 202].includes(del.status), JSON.stringify(del.body));
  assert.equal((await arm('HEAD', '/resourcegroups/rg-gone')).status, 404);
  assert.equal((await arm('GET', '/providers/Microsoft.KeyVault/locations/eastus/deletedVaults/kv-gone')).status, 200, 'the vault is soft-deleted, as Azure does');
});

test('the older tenant paths keep working and put new resources in the location\'s default group', async () => {
  const r = await p.call('PUT', `/tenants/${p.admin.tenantId}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-old`, { token, body: { location: 'westus' } });
  assert.equal(r.status, 200);
  assert.equal(r.body.id, `/subscriptions/${sub}/resourceGroups/pgbyok-westus/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-old`);
  assert.equal((await arm('HEAD', '/resourcegroups/pgbyok-westus')).status, 204);
});

test('a create placed before it acts: refused, it leaves no group behind; without a location it goes to the default location\'s group', async () => {
  const bad = await p.call('PUT', `/tenants/${p.admin.tenantId}/providers/Microsoft.KeyVault/vaults/x!?api-version=2023-07-01`, { token, body: { location: 'northeurope', properties: {} } });
  assert.equal(bad.status, 400);
  assert.equal((await arm('HEAD', '/resourcegroups/pgbyok-northeurope')).status, 404, 'the refused vault made no default group');
  const noLocation = await p.call('PUT', `/tenants/${p.admin.tenantId}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-noloc?api-version=2023-01-31`, { token, body: {} });
  assert.equal(noLocation.status, 200);
  assert.equal(noLocation.body.location, 'eastus');
  assert.match(noLocation.body.id, /\/resourceGroups\/pgbyok-eastus\/providers\//);
});
