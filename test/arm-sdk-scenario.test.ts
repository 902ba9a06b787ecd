/**
 * Root tier: the whole customer-managed-key scenario driven by Azure's own management SDKs from npm, unchanged
 * — @azure/arm-resources, @azure/arm-msi, @azure/arm-keyvault, @azure/arm-authorization and
 * @azure/arm-postgresql-flexible — and the official key vault SDK with its challenge-resource check on:
 * identity; a vault with an access policy and one with RBAC; keys; a server on that key and identity;
 * Inaccessible when the key is disabled and Ready when it is enabled; point-in-time restore; a replica;
 * parameters and a database; delete. Only the endpoint and the CA are pgbyok's.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { ResourceManagementClient } from '@azure/arm-resources';
import { SubscriptionClient } from '@azure/arm-resources-subscriptions';
import { ManagedServiceIdentityClient } from '@azure/arm-msi';
import { KeyVaultManagementClient } from '@azure/arm-keyvault';
import { AuthorizationManagementClient } from '@azure/arm-authorization';
import { PostgreSQLManagementFlexibleServerClient, type Server } from '@azure/arm-postgresql-flexible';
import { KeyClient } from '@azure/keyvault-keys';
import type { TokenCredential } from '@azure/identity';
import { eventually, startPgbyok, vaultName, type Pgbyok } from './harness.js';

const RG = 'rg-sdk';
const LOCATION = 'eastus';
const SCOPE = 'https://management.azure.com/.default';
/** Azure's built-in "Key Vault Crypto Service Encryption User". */
const CRYPTO_SERVICE_ENCRYPTION_USER = 'e147488a-f6f5-4113-8e2d-b22465e65bf6';

let p: Pgbyok;
let cred: TokenCredential;
let sub: string;
let rm: ResourceManagementClient;
let msi: ManagedServiceIdentityClient;
let kv: KeyVaultManagementClient;
let authz: AuthorizationManagementClient;
let pg: PostgreSQLManagementFlexibleServerClient;

before(async () => {
  p = await startPgbyok();
  cred = p.credential(p.admin);
  const options = { endpoint: p.origin, credentialScopes: [SCOPE], credentials: { scopes: [SCOPE] }, tlsOptions: { ca: p.ca } };
  // The subscription, as `az login` finds it: the first one the tenant has.
  for await (const s of new SubscriptionClient(cred, options).subscriptions.list()) { sub ??= s.subscriptionId!; }
  assert.ok(sub, 'the tenant has a subscription');
  rm = new ResourceManagementClient(cred, sub, options);
  msi = new ManagedServiceIdentityClient(cred, sub, options);
  kv = new KeyVaultManagementClient(cred, sub, options);
  authz = new AuthorizationManagementClient(cred, sub, { ...options, baseUri: p.origin } as any);
  pg = new PostgreSQLManagementFlexibleServerClient(cred, sub, { ...options, updateIntervalInMs: 1000 } as any);
});

after(async () => {
  await p?.stop();
});

const keyClient = (vaultUri: string) => new KeyClient(vaultUri, cred, { tlsOptions: { ca: p.ca } } as any);

test('the CMK scenario through the official management SDKs', async () => {
  // 1. Group and identity.
  const group = await rm.resourceGroups.createOrUpdate(RG, { location: LOCATION });
  assert.equal(group.id, `/subscriptions/${sub}/resourceGroups/${RG}`);
  const identity = await msi.userAssignedIdentities.createOrUpdate(RG, 'id-sdk', { location: LOCATION });
  assert.equal(identity.id, `/subscriptions/${sub}/resourceGroups/${RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-sdk`);

  // 2. A vault with an access policy for the identity, and one that authorizes with RBAC.
  const common = { tenantId: p.admin.tenantId, sku: { family: 'A' as const, name: 'standard' as const }, enableSoftDelete: true, softDeleteRetentionInDays: 90, enablePurgeProtection: true };
  const policyVault = await kv.vaults.beginCreateOrUpdateAndWait(RG, vaultName('sdkp'), {
    location: LOCATION,
    properties: {
      ...common,
      accessPolicies: [
        { tenantId: p.admin.tenantId, objectId: p.admin.objectId, permissions: { keys: ['all'] } },
        { tenantId: p.admin.tenantId, objectId: identity.principalId!, permissions: { keys: ['get', 'list', 'wrapKey', 'unwrapKey'] } },
      ],
    },
  });
  const rbacVault = await kv.vaults.beginCreateOrUpdateAndWait(RG, vaultName('sdkr'), {
    location: LOCATION, properties: { ...common, enableRbacAuthorization: true, accessPolicies: [] },
  });
  assert.equal(rbacVault.properties.enableRbacAuthorization, true);
  // The administrator creates keys as Crypto Officer; the identity only wraps and unwraps.
  const officer = (await authz.roleDefinitions.list(rbacVault.id!, { filter: "roleName eq 'Key Vault Crypto Officer'" }).next()).value;
  await authz.roleAssignments.create(rbacVault.id!, randomUUID(), { roleDefinitionId: officer.id, principalId: p.admin.objectId, principalType: 'ServicePrincipal' } as any);
  await authz.roleAssignments.create(rbacVault.id!, randomUUID(), {
    roleDefinitionId: `/subscriptions/${sub}/providers/Microsoft.Authorization/roleDefinitions/${CRYPTO_SERVICE_ENCRYPTION_USER}`, principalId: identity.principalId!, principalType: 'ServicePrincipal',
  } as any);

  // 3. Keys, with the official key SDK and its challenge-resource check on.
  const rbacKeys = keyClient(rbacVault.properties.vaultUri!);
  const kek = await rbacKeys.createRsaKey('kek', { keySize: 2048 });
  const policyKek = await keyClient(policyVault.properties.vaultUri!).createRsaKey('kek-restore', { keySize: 2048 });
  const keyUri = kek.id!.replace(/\/[^/]+$/, '');

  // 4. A server under that key and identity (az and the SDK first ask what the region offers and whether the name is free).
  const caps = [];
  for await (const c of pg.capabilitiesByLocation.list(LOCATION)) caps.push(c);
  assert.ok(caps[0].supportedServerEditions?.some((e) => e.name === 'GeneralPurpose'), 'the region offers General Purpose');
  assert.equal((await pg.nameAvailability.checkWithLocation(LOCATION, { name: 'pg-sdk', type: 'Microsoft.DBforPostgreSQL/flexibleServers' })).nameAvailable, true);
  const server: Server = {
    location: LOCATION,
    sku: { name: 'Standard_D2s_v3', tier: 'GeneralPurpose' },
    identity: { type: 'UserAssigned', userAssignedIdentities: { [identity.id!]: {} } },
    administratorLogin: 'sdkadmin', administratorLoginPassword: 'Passw0rd!sdk', version: '15',
    storage: { storageSizeGB: 32 },
    dataEncryption: { type: 'AzureKeyVault', primaryKeyURI: keyUri, primaryUserAssignedIdentityId: identity.id! },
    createMode: 'Create',
  } as Server;
  const created = await pg.servers.beginCreateOrUpdateAndWait(RG, 'pg-sdk', server);
  assert.equal(created.state, 'Ready');
  assert.equal(created.id, `/subscriptions/${sub}/resourceGroups/${RG}/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg-sdk`);
  assert.equal(created.dataEncryption?.primaryKeyURI, keyUri);
  assert.equal(created.dataEncryption?.primaryEncryptionKeyStatus, 'Valid');
  assert.deepEqual(Object.keys(created.identity?.userAssignedIdentities ?? {}), [identity.id]);

  // 5. The customer disables the key: Inaccessible. Enables it: Ready again.
  await rbacKeys.updateKeyProperties('kek', { enabled: false });
  const down = await eventually(async () => { const s = await pg.servers.get(RG, 'pg-sdk'); return s.state === 'Inaccessible' && s; }, 'Inaccessible after the key was disabled', 60_000, 500);
  assert.equal(down.dataEncryption?.primaryEncryptionKeyStatus, 'Invalid');
  await rbacKeys.updateKeyProperties('kek', { enabled: true });
  await eventually(async () => (await pg.servers.get(RG, 'pg-sdk')).state === 'Ready', 'Ready after the key was enabled', 60_000, 500);

  // 8 (on the running server). Parameters and a database.
  const param = await pg.configurations.beginUpdateAndWait(RG, 'pg-sdk', 'work_mem', { value: '8192', source: 'user-override' });
  assert.equal(param.value, '8192');
  assert.equal((await pg.configurations.get(RG, 'pg-sdk', 'work_mem')).value, '8192');
  const db = await pg.databases.beginCreateAndWait(RG, 'pg-sdk', 'appdb', { charset: 'UTF8', collation: 'en_US.utf8' });
  assert.equal(db.name, 'appdb');
  const rule = await pg.firewallRules.beginCreateOrUpdateAndWait(RG, 'pg-sdk', 'all', { startIpAddress: '0.0.0.0', endIpAddress: '255.255.255.255' });
  assert.equal(rule.endIpAddress, '255.255.255.255');
  await pg.servers.beginRestartAndWait(RG, 'pg-sdk');
  const databases: string[] = [];
  for await (const x of pg.databases.listByServer(RG, 'pg-sdk')) databases.push(x.name!);
  assert.ok(databases.includes('appdb'), databases.join(','));
  await pg.databases.beginDeleteAndWait(RG, 'pg-sdk', 'appdb');
  await pg.firewallRules.beginDeleteAndWait(RG, 'pg-sdk', 'all');

  // 6. Point-in-time restore, under the other vault's key.
  const earliest = (await pg.servers.get(RG, 'pg-sdk')).backup?.earliestRestoreDate;
  assert.ok(earliest, 'the server has an earliest restore date');
  const restored = await pg.servers.beginCreateOrUpdateAndWait(RG, 'pg-sdk-pitr', {
    location: LOCATION, createMode: 'PointInTimeRestore', sourceServerResourceId: created.id, pointInTimeUTC: new Date(),
    identity: { type: 'UserAssigned', userAssignedIdentities: { [identity.id!]: {} } },
    dataEncryption: { type: 'AzureKeyVault', primaryKeyURI: policyKek.id!.replace(/\/[^/]+$/, ''), primaryUserAssignedIdentityId: identity.id! },
  } as Server);
  assert.equal(restored.state, 'Ready');

  // 7. A read replica.
  const replica = await pg.servers.beginCreateOrUpdateAndWait(RG, 'pg-sdk-replica', {
    location: LOCATION, createMode: 'Replica', sourceServerResourceId: created.id,
    identity: { type: 'UserAssigned', userAssignedIdentities: { [identity.id!]: {} } },
    dataEncryption: { type: 'AzureKeyVault', primaryKeyURI: keyUri, primaryUserAssignedIdentityId: identity.id! },
  } as Server);
  assert.equal(replica.state, 'Ready');
  const replicas: string[] = [];
  for await (const r of pg.replicas.listByServer(RG, 'pg-sdk')) replicas.push(r.name!);
  assert.deepEqual(replicas, ['pg-sdk-replica']);

  // Every resource is listed in its group.
  const inGroup: string[] = [];
  for await (const r of rm.resources.listByResourceGroup(RG)) inGroup.push(`${r.type}/${r.name}`);
  for (const want of ['Microsoft.DBforPostgreSQL/flexibleServers/pg-sdk', 'Microsoft.ManagedIdentity/userAssignedIdentities/id-sdk', `Microsoft.KeyVault/vaults/${rbacVault.name}`]) {
    assert.ok(inGroup.includes(want), `${want} is listed in ${RG}: ${inGroup.join(', ')}`);
  }

  // 9. Delete.
  for (const name of ['pg-sdk-replica', 'pg-sdk-pitr', 'pg-sdk']) await pg.servers.beginDeleteAndWait(RG, name);
  await assert.rejects(pg.servers.get(RG, 'pg-sdk'), (e: any) => e.statusCode === 404);
});
