import assert from 'node:assert/strict';
import { generateRsaKeySync } from '../../src/lib/rsa-keygen.js';
import { MGMT_RESOURCE, type Cred, type Pgbyok } from '../harness.js';
import { buildCallers, type Caller } from './callers.js';
import type { Targets } from './catalog.js';
import type { Ports, TokenInputs } from './generator.js';
import type { Rng } from './prng.js';

export interface Fixtures {
  targets: Targets;
  callers: Caller[];
  tokenInputs: TokenInputs;
  ports: Ports;
}

/**
 * What the fuzzer needs before its first request, made by the bootstrap administrator over the ordinary
 * APIs: a second tenant, one principal per caller class (a deleted one among them), a main vault with keys,
 * and victim resources (vault, identity, service principal, role assignment, event subscription, action
 * group, alert rule) for the routes that change or delete something.
 */
export async function setupFixtures(p: Pgbyok, rng: Rng): Promise<Fixtures> {
  const tid = p.admin.tenantId;
  const [adminVault, adminMgmt] = await Promise.all([p.token(p.admin), p.token(p.admin, MGMT_RESOURCE)]);
  const call = async (method: string, url: string, token: string, body?: unknown): Promise<any> => {
    const res = await p.http(method, url, { token, body });
    assert.ok(res.status < 300, `fixture ${method} ${url}: ${res.status} ${res.text}`);
    return res.json;
  };
  const mgmt = (method: string, path: string, body?: unknown) => call(method, `${p.origin}${path}?api-version=2023-07-01`, adminMgmt, body);
  const T = `/tenants/${tid}`;
  const KV = `${T}/providers/Microsoft.KeyVault`;

  const other = await mgmt('POST', '/tenants', { name: `other${rng.name(6)}` });
  const otherCred: Cred = { tenantId: other.tenantId, clientId: other.admin.appId, clientSecret: other.admin.password };
  const sp = async (name: string) => {
    const r = await mgmt('POST', `${T}/servicePrincipals`, { displayName: name });
    return { objectId: r.id as string, cred: { tenantId: tid, clientId: r.appId, clientSecret: r.password } as Cred };
  };
  const [noRole, dba, secOff, reader, gone, victimSp] = await Promise.all(['fz-norole', 'fz-dba', 'fz-secoff', 'fz-reader', 'fz-deleted', 'fz-victim'].map(sp));
  const role = (principalId: string, roleDefinitionName: string) =>
    mgmt('POST', `${T}/providers/Microsoft.Authorization/roleAssignments`, { properties: { principalId, roleDefinitionName } });
  await role(dba.objectId, 'DBA');
  await role(secOff.objectId, 'Security Officer');
  const victimRa = await role(victimSp.objectId, 'DBA');
  for (const name of ['fz-identity', 'fz-victim-identity']) {
    await mgmt('PUT', `${T}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${name}`, { location: 'eastus' });
  }

  const vault = `fzv${rng.name(8)}`;
  const victimVault = `fzvictim${rng.name(6)}`;
  const deletedVault = `fzdel${rng.name(8)}`;
  const vaultBody = { location: 'eastus', properties: { softDeleteRetentionInDays: 7 } };
  const v = await mgmt('PUT', `${KV}/vaults/${vault}`, vaultBody);
  await mgmt('PUT', `${KV}/vaults/${victimVault}`, vaultBody);
  await mgmt('PUT', `${KV}/vaults/${deletedVault}`, vaultBody);
  await mgmt('DELETE', `${KV}/vaults/${deletedVault}`);
  const readerPermissions = ['get', 'list'] as const;
  await mgmt('PUT', `${KV}/vaults/${vault}/accessPolicies/add`, { properties: { accessPolicies: [{ objectId: reader.objectId, permissions: { keys: [...readerPermissions] } }] } });
  await mgmt('PUT', `${KV}/vaults/${victimVault}/eventSubscriptions/fz-sub1`, { properties: { destination: { properties: { endpointUrl: 'https://127.0.0.1:9/fz' } } } });
  await mgmt('PUT', `${T}/providers/Microsoft.Insights/actionGroups/fz-ag1`, { properties: { webhookReceivers: [{ name: 'w', serviceUri: 'https://127.0.0.1:9/ag' }] } });
  await mgmt('PUT', `${T}/providers/Microsoft.Insights/activityLogAlerts/fz-ar1`, { properties: { condition: 'Any', actionGroup: 'fz-ag1' } });

  const vaultUri: string = v.properties.vaultUri;
  const key = (method: string, path: string, body?: unknown) => call(method, `${vaultUri}${path}?api-version=7.5`, adminVault, body);
  const k1 = await key('POST', 'keys/k1/create', { kty: 'RSA', key_size: 2048 });
  await key('POST', 'keys/dk1/create', { kty: 'RSA', key_size: 2048 });
  await key('DELETE', 'keys/dk1');
  const backup: string = (await key('POST', 'keys/k1/backup')).value;

  const tokens = (c: Cred) => Promise.all([p.token(c), p.token(c, MGMT_RESOURCE)]) as Promise<[string, string]>;
  const [otherT, goneT, noRoleT, dbaT, secOffT, readerT] = await Promise.all([otherCred, gone.cred, noRole.cred, dba.cred, secOff.cred, reader.cred].map(tokens));
  await mgmt('DELETE', `${T}/servicePrincipals/${gone.objectId}`);

  // ARM's view: the tenants' default subscriptions, the group the fixtures above went to, an empty group to delete.
  const sub: string = (await call('GET', `${p.origin}/subscriptions?api-version=2022-12-01`, adminMgmt)).value[0].subscriptionId;
  const otherSub: string = (await call('GET', `${p.origin}/subscriptions?api-version=2022-12-01`, otherT[1])).value[0].subscriptionId;
  await call('PUT', `${p.origin}/subscriptions/${sub}/resourceGroups/fz-victim-rg?api-version=2021-04-01`, adminMgmt, { location: 'eastus' });

  const jwk = (bits: number) => generateRsaKeySync(bits).export({ format: 'jwk' }) as Record<string, string>;
  const targets: Targets = {
    tid, otherTid: other.tenantId, vault, vaultPort: Number(new URL(vaultUri).port), vaultHost: new URL(vaultUri).host, keyVersion: k1.key.kid.split('/').pop(), backup,
    victimVault, deletedVault, identity: 'fz-identity', victimIdentity: 'fz-victim-identity', victimSp: victimSp.objectId,
    victimRoleAssignment: victimRa.name, subscription: 'fz-sub1', sub, otherSub, rg: 'pgbyok-eastus', victimGroup: 'fz-victim-rg', actionGroup: 'fz-ag1',
    alertRule: 'fz-ar1', jwks: [jwk(2048), jwk(2048)], smallJwk: jwk(1024),
  };
  const callers = await buildCallers({
    home: p.home, origin: p.origin, tid, otherTid: other.tenantId, admin: [adminVault, adminMgmt], other: otherT, deleted: goneT,
    noRole: noRoleT, dba: dbaT, securityOfficer: secOffT, reader: readerT, readerPermissions: [...readerPermissions], someObjectId: noRole.objectId,
  });
  return {
    targets,
    callers,
    tokenInputs: { tid, admin: p.admin, other: otherCred, deleted: gone.cred },
    ports: { platform: Number(new URL(p.origin).port), vault: targets.vaultPort },
  };
}
