/**
 * Handler tier: Microsoft.Authorization (role definitions, role assignments at ARM scopes, scope-aware
 * management duties) and Key Vault's RBAC permission model (enableRbacAuthorization: the Key Vault data roles
 * authorize the data plane, access policies are ignored, a removed assignment stops access at once, and a
 * data-role change is announced as VaultAccessPolicyChanged). In process, over HTTPS, on the manual clock.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { httpCall } from '../src/lib/http-client.js';
import { kv, MANAGEMENT_SCOPE, startInProc, startWebhook, VAULT_SCOPE, type InProc, type Webhook } from './inproc.js';

const API = 'api-version=2022-04-01';
const KV_API = 'api-version=2023-07-01';
const ROLE = {
  owner: '8e3af657-a8ff-443c-a75c-2fe8c4bcb635',
  contributor: 'b24988ac-6180-42a0-ab88-20f7382dd24c',
  reader: 'acdd72a7-3385-48ef-bd42-f606fba81ae7',
  kvAdmin: '00482a5a-887f-4fb3-b363-3b7fe8e74483',
  cryptoOfficer: '14b46e9e-c2b7-41b4-b07b-48a6ebf60603',
  cryptoUser: '12338af0-0e69-4776-bea7-57ae8d297424',
  cseu: 'e147488a-f6f5-4113-8e2d-b22465e65bf6',
};

let p: InProc;
let admin: string;
let sub: string;
let app: { objectId: string; clientId: string; secret: string };
let hook: Webhook;

const tokenFor = async (clientId: string, secret: string, scope: string) => {
  const res = await httpCall({
    method: 'POST', url: `${p.platform.origin}/${p.admin.tenantId}/oauth2/v2.0/token`, ca: readFileSync(p.platform.paths.caCert, 'utf8'),
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret, scope }).toString(),
  });
  assert.equal(res.status, 200, res.text);
  return JSON.parse(res.text).access_token as string;
};
const appMgmt = () => tokenFor(app.clientId, app.secret, MANAGEMENT_SCOPE);
const appVault = () => tokenFor(app.clientId, app.secret, VAULT_SCOPE);

const arm = (method: string, path: string, body?: unknown, token = admin) =>
  p.call(method, `${path}${path.includes('?') ? '&' : '?'}${path.includes('Microsoft.Authorization') ? API : KV_API}`, { token, body });
const assign = (scope: string, role: string, principalId: string, id: string = randomUUID()) =>
  arm('PUT', `${scope}/providers/Microsoft.Authorization/roleAssignments/${id}`, { properties: { roleDefinitionId: `/subscriptions/${sub}/providers/Microsoft.Authorization/roleDefinitions/${role}`, principalId, principalType: 'ServicePrincipal' } });
const unassign = (scope: string, id: string) => arm('DELETE', `${scope}/providers/Microsoft.Authorization/roleAssignments/${id}`);

const b64 = (b: Buffer) => b.toString('base64url');

before(async () => {
  p = await startInProc();
  admin = await p.token(MANAGEMENT_SCOPE);
  sub = (await p.call('GET', '/subscriptions?api-version=2022-12-01', { token: admin })).body.value[0].subscriptionId;
  for (const g of ['rg-rbac', 'rg-other']) assert.equal((await arm('PUT', `/subscriptions/${sub}/resourcegroups/${g}`, { location: 'eastus' })).status, 201);
  const sp = await p.call('POST', `/tenants/${p.admin.tenantId}/servicePrincipals?${API}`, { token: admin, body: { displayName: 'rbac-app' } });
  assert.equal(sp.status, 200, JSON.stringify(sp.body));
  app = { objectId: sp.body.id, clientId: sp.body.appId, secret: sp.body.password };
  hook = await startWebhook();
});
after(async () => {
  await hook?.close();
  await p?.stop();
});

test('role definitions: Azure\'s built-in GUIDs and shapes at every scope, filtered by roleName; an unknown one is RoleDefinitionDoesNotExist', async () => {
  const all = await arm('GET', `/subscriptions/${sub}/providers/Microsoft.Authorization/roleDefinitions`);
  assert.equal(all.status, 200);
  const names = new Map(all.body.value.map((d: any) => [d.properties.roleName, d.name]));
  assert.equal(names.get('Owner'), ROLE.owner);
  assert.equal(names.get('Contributor'), ROLE.contributor);
  assert.equal(names.get('Reader'), ROLE.reader);
  assert.equal(names.get('Key Vault Administrator'), ROLE.kvAdmin);
  assert.equal(names.get('Key Vault Crypto Officer'), ROLE.cryptoOfficer);
  assert.equal(names.get('Key Vault Crypto User'), ROLE.cryptoUser);
  for (const own of ['Security Officer', 'DBA', 'System Administrator']) assert.ok(names.has(own), own);

  const f = await arm('GET', `/subscriptions/${sub}/resourceGroups/rg-rbac/providers/Microsoft.Authorization/roleDefinitions?$filter=${encodeURIComponent("roleName eq 'Key Vault Crypto Service Encryption User'")}`);
  assert.equal(f.body.value.length, 1);
  const cseu = f.body.value[0];
  assert.deepEqual(cseu, {
    id: `/subscriptions/${sub}/providers/Microsoft.Authorization/roleDefinitions/${ROLE.cseu}`, name: ROLE.cseu, type: 'Microsoft.Authorization/roleDefinitions',
    properties: {
      roleName: 'Key Vault Crypto Service Encryption User', type: 'BuiltInRole', description: cseu.properties.description, assignableScopes: ['/'],
      permissions: [{
        actions: ['Microsoft.EventGrid/eventSubscriptions/write', 'Microsoft.EventGrid/eventSubscriptions/read', 'Microsoft.EventGrid/eventSubscriptions/delete'], notActions: [],
        dataActions: ['Microsoft.KeyVault/vaults/keys/read', 'Microsoft.KeyVault/vaults/keys/wrap/action', 'Microsoft.KeyVault/vaults/keys/unwrap/action'], notDataActions: [],
      }],
      createdOn: null, updatedOn: null, createdBy: null, updatedBy: null,
    },
  });
  const root = await p.call('GET', `/providers/Microsoft.Authorization/roleDefinitions/${ROLE.owner}?${API}`, { token: admin });
  assert.equal(root.status, 200);
  assert.equal(root.body.id, `/providers/Microsoft.Authorization/roleDefinitions/${ROLE.owner}`);
  assert.deepEqual(root.body.properties.permissions[0].dataActions, [], 'management roles carry no data actions');
  const missing = await arm('GET', `/subscriptions/${sub}/providers/Microsoft.Authorization/roleDefinitions/${randomUUID()}`);
  assert.equal(missing.status, 404);
  assert.equal(missing.body.error.code, 'RoleDefinitionDoesNotExist');
});

test('role assignments, ARM style: PUT 201 then 200, GET, list by principal and atScope(), Azure\'s refusals, DELETE 200 then 204', async () => {
  const scope = `/subscriptions/${sub}/resourceGroups/rg-rbac`;
  const id = randomUUID();
  const made = await assign(scope, ROLE.reader, app.objectId, id);
  assert.equal(made.status, 201, JSON.stringify(made.body));
  assert.equal(made.body.id, `${scope}/providers/Microsoft.Authorization/roleAssignments/${id}`);
  assert.equal(made.body.name, id);
  assert.equal(made.body.type, 'Microsoft.Authorization/roleAssignments');
  assert.equal(made.body.properties.scope, scope);
  assert.equal(made.body.properties.principalId, app.objectId);
  assert.equal(made.body.properties.principalType, 'ServicePrincipal');
  assert.equal(made.body.properties.roleDefinitionId, `/subscriptions/${sub}/providers/Microsoft.Authorization/roleDefinitions/${ROLE.reader}`);
  assert.equal((await assign(scope, ROLE.reader, app.objectId, id)).status, 200, 'the same PUT again is answered as it is');

  const dup = await assign(scope, ROLE.reader, app.objectId);
  assert.equal(dup.status, 409);
  assert.equal(dup.body.error.code, 'RoleAssignmentExists');
  const badId = await assign(scope, ROLE.reader, app.objectId, 'not-a-guid');
  assert.equal(badId.status, 400);
  assert.equal(badId.body.error.code, 'InvalidRoleAssignmentId');
  const nobody = await assign(scope, ROLE.reader, randomUUID());
  assert.equal(nobody.status, 400);
  assert.equal(nobody.body.error.code, 'PrincipalNotFound');
  const noRole = await assign(scope, randomUUID(), app.objectId);
  assert.equal(noRole.status, 404);
  assert.equal(noRole.body.error.code, 'RoleDefinitionDoesNotExist');
  const noVault = await assign(`${scope}/providers/Microsoft.KeyVault/vaults/kv-nope`, ROLE.cseu, app.objectId);
  assert.equal(noVault.status, 404);

  const one = await arm('GET', `${scope}/providers/Microsoft.Authorization/roleAssignments/${id}`);
  assert.equal(one.status, 200);
  assert.equal(one.body.name, id);
  const atSub = await arm('GET', `/subscriptions/${sub}/providers/Microsoft.Authorization/roleAssignments?$filter=${encodeURIComponent(`principalId eq '${app.objectId}'`)}`);
  assert.deepEqual(atSub.body.value.map((a: any) => a.name), [id], 'a subscription lists what is below it');
  const atScopeOnly = await arm('GET', `/subscriptions/${sub}/providers/Microsoft.Authorization/roleAssignments?$filter=atScope()`);
  assert.ok(!atScopeOnly.body.value.some((a: any) => a.name === id), 'atScope() leaves out what is below');
  assert.ok(atScopeOnly.body.value.some((a: any) => a.properties.scope === '/' && a.properties.principalId === p.admin.objectId), 'and keeps the tenant-wide Owner');
  const old = await p.call('GET', `/tenants/${p.admin.tenantId}/providers/Microsoft.Authorization/roleAssignments?${API}`, { token: admin });
  assert.ok(old.body.value.some((a: any) => a.name === id && a.properties.roleDefinitionName === 'Reader' && a.properties.scope === scope), 'the tenant path lists every scope');

  const rootId = randomUUID();
  const atRoot = await p.call('PUT', `/providers/Microsoft.Authorization/roleAssignments/${rootId}?${API}`, {
    token: admin, body: { properties: { roleDefinitionId: `/providers/Microsoft.Authorization/roleDefinitions/${ROLE.reader}`, principalId: app.objectId } },
  });
  assert.equal(atRoot.status, 201, JSON.stringify(atRoot.body));
  assert.equal(atRoot.body.properties.scope, '/');
  assert.equal(atRoot.body.id, `/providers/Microsoft.Authorization/roleAssignments/${rootId}`);
  assert.equal((await p.call('DELETE', `/providers/Microsoft.Authorization/roleAssignments/${rootId}?${API}`, { token: admin })).status, 200);

  const gone = await unassign(scope, id);
  assert.equal(gone.status, 200);
  assert.equal(gone.body.name, id);
  assert.equal((await unassign(scope, id)).status, 204);
  assert.equal((await arm('GET', `${scope}/providers/Microsoft.Authorization/roleAssignments/${id}`)).body.error.code, 'RoleAssignmentNotFound');
});

test('management duties follow scope: Contributor on a group manages vaults there only; Reader reads but does not write; Owner on a group may assign there only', async () => {
  const token = await appMgmt();
  const vaultIn = (g: string, name: string) => `/subscriptions/${sub}/resourceGroups/${g}/providers/Microsoft.KeyVault/vaults/${name}`;
  const before = await arm('PUT', vaultIn('rg-rbac', 'kv-scoped'), { location: 'eastus', properties: {} }, token);
  assert.equal(before.status, 403);
  assert.equal(before.body.error.code, 'AuthorizationFailed');
  assert.match(before.body.error.message, new RegExp(`^The client 'rbac-app' with object id '${app.objectId}' does not have authorization to perform action 'Microsoft.KeyVault/vaults/write' over scope '${vaultIn('rg-rbac', 'kv-scoped').replace(/\//g, '\\/')}' or the scope is invalid\\.`));

  const c = randomUUID();
  assert.equal((await assign(`/subscriptions/${sub}/resourceGroups/rg-rbac`, ROLE.contributor, app.objectId, c)).status, 201);
  const ok = await arm('PUT', vaultIn('rg-rbac', 'kv-scoped'), { location: 'eastus', properties: {} }, token);
  assert.equal(ok.status, 201, JSON.stringify(ok.body));
  assert.equal((await arm('GET', vaultIn('rg-rbac', 'kv-scoped'), undefined, token)).status, 200);
  const elsewhere = await arm('PUT', vaultIn('rg-other', 'kv-scoped2'), { location: 'eastus', properties: {} }, token);
  assert.equal(elsewhere.status, 403, 'a group assignment counts in that group only');
  const tenantWide = await p.call('GET', `/tenants/${p.admin.tenantId}/providers/Microsoft.KeyVault/vaults?${KV_API}`, { token });
  assert.equal(tenantWide.status, 403, 'nor tenant-wide');
  assert.equal((await assign(`/subscriptions/${sub}/resourceGroups/rg-rbac`, ROLE.reader, app.objectId)).status, 201);
  const selfGrant = await p.call('PUT', `/subscriptions/${sub}/resourceGroups/rg-rbac/providers/Microsoft.Authorization/roleAssignments/${randomUUID()}?${API}`, {
    token, body: { properties: { roleDefinitionId: `/providers/Microsoft.Authorization/roleDefinitions/${ROLE.owner}`, principalId: app.objectId } },
  });
  assert.equal(selfGrant.status, 403, 'Contributor cannot assign roles');
  assert.equal((await unassign(`/subscriptions/${sub}/resourceGroups/rg-rbac`, c)).status, 200);
  assert.equal((await arm('GET', vaultIn('rg-rbac', 'kv-scoped'), undefined, token)).status, 200, 'the Reader assignment still reads');
  assert.equal((await arm('DELETE', vaultIn('rg-rbac', 'kv-scoped'), undefined, token)).status, 403, 'and does not delete');

  const o = randomUUID();
  assert.equal((await assign(`/subscriptions/${sub}/resourceGroups/rg-other`, ROLE.owner, app.objectId, o)).status, 201);
  const grantInOther = await p.call('PUT', `/subscriptions/${sub}/resourceGroups/rg-other/providers/Microsoft.Authorization/roleAssignments/${randomUUID()}?${API}`, {
    token, body: { properties: { roleDefinitionId: `/providers/Microsoft.Authorization/roleDefinitions/${ROLE.reader}`, principalId: p.admin.objectId } },
  });
  assert.equal(grantInOther.status, 201, 'an Owner of a group assigns roles in it');
  const grantAtSub = await p.call('PUT', `/subscriptions/${sub}/providers/Microsoft.Authorization/roleAssignments/${randomUUID()}?${API}`, {
    token, body: { properties: { roleDefinitionId: `/providers/Microsoft.Authorization/roleDefinitions/${ROLE.owner}`, principalId: app.objectId } },
  });
  assert.equal(grantAtSub.status, 403, 'and not above it');
  assert.equal((await unassign(`/subscriptions/${sub}/resourceGroups/rg-other`, o)).status, 200);
});

test('an RBAC vault: the Key Vault data roles authorize its data plane, management roles and access policies do not, a removed assignment stops access at once', async () => {
  const vaultId = `/subscriptions/${sub}/resourceGroups/rg-rbac/providers/Microsoft.KeyVault/vaults/kv-rbac`;
  const created = await arm('PUT', vaultId, { location: 'eastus', properties: { enableRbacAuthorization: true, softDeleteRetentionInDays: 90, enablePurgeProtection: true } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.properties.enableRbacAuthorization, true);
  assert.deepEqual(created.body.properties.accessPolicies, [], 'the creator gets no access policy on an RBAC vault');
  const vaultUri = (created.body.properties.vaultUri as string).replace(/\/$/, '');
  const sub1 = await p.mgmt('PUT', '/vaults/kv-rbac/eventSubscriptions/rbac-watch', { properties: { destination: { properties: { endpointUrl: hook.url } } } });
  assert.equal(sub1.status, 200, JSON.stringify(sub1.body));

  // The tenant-wide Owner has no data actions.
  const adminKv = await p.token(VAULT_SCOPE);
  const refused = await p.call('POST', kv(vaultUri, '/keys/cmk/create'), { token: adminKv, body: { kty: 'RSA', key_size: 2048 } });
  assert.equal(refused.status, 403);
  assert.equal(refused.body.error.code, 'Forbidden');
  assert.equal(refused.body.error.innererror.code, 'ForbiddenByRbac');
  assert.match(refused.body.error.message, /^Caller is not authorized to perform action on resource\./);
  assert.match(refused.body.error.message, /Action: 'Microsoft\.KeyVault\/vaults\/keys\/create\/action'/);
  assert.match(refused.body.error.message, /Assignment: \(not found\)/);
  assert.match(refused.body.error.message, /DecidingEffect: 'Deny'/);
  assert.match(refused.body.error.message, /Vault: kv-rbac;location=eastus/);

  const officer = randomUUID();
  assert.equal((await assign(vaultId, ROLE.cryptoOfficer, p.admin.objectId, officer)).status, 201);
  const key = await p.call('POST', kv(vaultUri, '/keys/cmk/create'), { token: adminKv, body: { kty: 'RSA', key_size: 2048 } });
  assert.equal(key.status, 200, JSON.stringify(key.body));

  // The application: refused without a role, even with an access policy of every permission.
  const pol = await arm('PUT', `${vaultId}/accessPolicies/add`, { properties: { accessPolicies: [{ tenantId: p.admin.tenantId, objectId: app.objectId, permissions: { keys: ['all'] } }] } });
  assert.equal(pol.status, 200, JSON.stringify(pol.body));
  const CHANGED = 'Microsoft.KeyVault.VaultAccessPolicyChanged';
  const changes = () => hook.events.filter((e) => e.eventType === CHANGED && e.data.VaultName === 'kv-rbac').length;
  const nextChange = (after: number) => hook.next(() => changes() > after);
  await nextChange(0); // the access-policy change itself
  const appKv = await appVault();
  const get = () => p.call('GET', kv(vaultUri, '/keys/cmk'), { token: appKv });
  const denied = await get();
  assert.equal(denied.status, 403, 'access policies are ignored on an RBAC vault');
  assert.equal(denied.body.error.innererror.code, 'ForbiddenByRbac');
  assert.match(denied.body.error.message, new RegExp(`Caller: appid=${app.clientId};oid=${app.objectId}`));
  assert.match(denied.body.error.message, /Action: 'Microsoft\.KeyVault\/vaults\/keys\/read'/);
  assert.match(denied.body.error.message, new RegExp(`Resource: '${vaultId.toLowerCase().replace(/\//g, '\\/')}\\/keys\\/cmk'`));

  // Crypto Service Encryption User on the vault's group: get, wrap and unwrap; not sign, not create.
  const changedBefore = changes();
  const cseu = randomUUID();
  assert.equal((await assign(`/subscriptions/${sub}/resourceGroups/rg-rbac`, ROLE.cseu, app.objectId, cseu)).status, 201);
  assert.equal((await get()).status, 200);
  const dek = randomBytes(32);
  const wrapped = await p.call('POST', kv(vaultUri, '/keys/cmk//wrapkey'), { token: appKv, body: { alg: 'RSA-OAEP-256', value: b64(dek) } });
  assert.equal(wrapped.status, 200, JSON.stringify(wrapped.body));
  const unwrapped = await p.call('POST', kv(vaultUri, '/keys/cmk//unwrapkey'), { token: appKv, body: { alg: 'RSA-OAEP-256', value: wrapped.body.value } });
  assert.equal(unwrapped.status, 200);
  assert.equal(unwrapped.body.value, b64(dek));
  const sign = await p.call('POST', kv(vaultUri, '/keys/cmk//sign'), { token: appKv, body: { alg: 'RS256', value: b64(randomBytes(32)) } });
  assert.equal(sign.status, 403);
  assert.match(sign.body.error.message, /Action: 'Microsoft\.KeyVault\/vaults\/keys\/sign\/action'/);
  assert.equal((await p.call('POST', kv(vaultUri, '/keys/app-key/create'), { token: appKv, body: { kty: 'RSA', key_size: 2048 } })).status, 403);

  // The change was announced to the vault's subscribers (what the key monitor listens to).
  await nextChange(changedBefore);

  // Removed: refused on the very next request, and announced again.
  const countBeforeDelete = changes();
  assert.equal((await unassign(`/subscriptions/${sub}/resourceGroups/rg-rbac`, cseu)).status, 200);
  assert.equal((await get()).status, 403, 'refused right after the assignment is deleted');
  await nextChange(countBeforeDelete);

  // Crypto Officer at the subscription: creates keys.
  const co = randomUUID();
  assert.equal((await assign(`/subscriptions/${sub}`, ROLE.cryptoOfficer, app.objectId, co)).status, 201);
  assert.equal((await p.call('POST', kv(vaultUri, '/keys/app-key/create'), { token: appKv, body: { kty: 'RSA', key_size: 2048 } })).status, 200);
  assert.equal((await unassign(`/subscriptions/${sub}`, co)).status, 200);

  // A tenant-wide Key Vault Crypto User through pgbyok's older route (role by name) counts too.
  const byName = await p.call('POST', `/tenants/${p.admin.tenantId}/providers/Microsoft.Authorization/roleAssignments?${API}`, { token: admin, body: { properties: { principalId: app.objectId, roleDefinitionName: 'Key Vault Crypto User' } } });
  assert.equal(byName.status, 200, JSON.stringify(byName.body));
  assert.equal((await p.call('POST', kv(vaultUri, '/keys/cmk//sign'), { token: appKv, body: { alg: 'RS256', value: b64(randomBytes(32)) } })).status, 200);
  assert.equal((await p.call('DELETE', `/tenants/${p.admin.tenantId}/providers/Microsoft.Authorization/roleAssignments/${byName.body.name}?${API}`, { token: admin })).status, 200);
  assert.equal((await get()).status, 403);

  // Back to access policies: the application's policy counts again, role assignments do not.
  const patched = await arm('PATCH', vaultId, { properties: { enableRbacAuthorization: false } });
  assert.equal(patched.status, 200);
  assert.equal(patched.body.properties.enableRbacAuthorization, false);
  assert.equal((await get()).status, 200, 'the access policy counts on a vault without RBAC');
  const adminNow = await p.call('GET', kv(vaultUri, '/keys/cmk'), { token: adminKv });
  assert.equal(adminNow.status, 403, 'and the Crypto Officer assignment does not');
  assert.equal(adminNow.body.error.innererror.code, 'AccessDenied');
  assert.equal((await unassign(vaultId, officer)).status, 200);
});
