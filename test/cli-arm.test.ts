/**
 * The CLI on ARM's resource model: its subscription and resource groups, `group` and `account` as az has
 * them, `configure --defaults`, and every resource command working without -g (a default group per location,
 * the group found by name) and with it. Against a real `pgbyok up`, through bin/pgbyok.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startPgbyok, vaultName, type Pgbyok } from './harness.js';
import { CliContext } from '../src/cli/client.js';
import { serverAddress } from '../src/cli/servers-address.js';

let p: Pgbyok;
let sub: string;
const ID_TYPE = 'Microsoft.ManagedIdentity/userAssignedIdentities';
const armId = (group: string, type: string, name: string, s = sub) => `/subscriptions/${s}/resourceGroups/${group}/providers/${type}/${name}`;

before(async () => {
  p = await startPgbyok();
  const token = await p.token(p.admin, 'https://management.azure.com');
  sub = (await p.http('GET', `${p.origin}/subscriptions?api-version=2022-12-01`, { token })).json.value[0].subscriptionId;
});
after(() => p?.stop());

test('account show and list: the tenant\'s default subscription, the signed-in principal, cached in the profile', () => {
  const me = p.cli('account', 'show');
  assert.equal(me.name, 'pgbyok-admin', 'the principal, as before');
  assert.deepEqual(me.roles, ['Owner']);
  assert.equal(me.tenantId, p.admin.tenantId);
  assert.equal(me.subscriptionId, sub);
  assert.equal(me.subscription.id, `/subscriptions/${sub}`);
  assert.equal(me.user.name, p.admin.clientId);
  const config = JSON.parse(readFileSync(join(p.home, 'cli-config.json'), 'utf8'));
  assert.equal(config.subscriptions[p.admin.tenantId], sub);
  const list = p.cli('account', 'list');
  assert.deepEqual(list.map((s: any) => [s.id, s.isDefault, s.tenantId]), [[sub, true, p.admin.tenantId]]);
  const table = p.cliRaw(['account', 'list', '-o', 'table']);
  assert.match(table.stdout, new RegExp(`Default subscription\\s+${sub}\\s+Enabled\\s+true`));
});

test('group create|show|list|exists|delete, as az group', () => {
  const g = p.cli('group', 'create', '--name', 'rg-cli', '--location', 'westus', '--tags', 'team=db');
  assert.deepEqual(g, { id: `/subscriptions/${sub}/resourceGroups/rg-cli`, name: 'rg-cli', type: 'Microsoft.Resources/resourceGroups', location: 'westus', tags: { team: 'db' }, properties: { provisioningState: 'Succeeded' } });
  assert.equal(p.cli('group', 'show', '-g', 'rg-cli').location, 'westus');
  assert.equal(p.cli('group', 'exists', '-n', 'rg-cli'), true);
  assert.equal(p.cli('group', 'exists', '-n', 'rg-none'), false);
  assert.ok(p.cli('group', 'list').some((x: any) => x.name === 'rg-cli'));
  assert.match(p.cliRaw(['group', 'list', '-o', 'table']).stdout, /rg-cli\s+westus\s+Succeeded/);
  const missing = p.cliRaw(['group', 'show', '-n', 'rg-none']);
  assert.notEqual(missing.status, 0);
  assert.match(missing.stderr, /ResourceGroupNotFound/);

  p.cli('group', 'create', '-n', 'rg-doomed', '-l', 'eastus');
  p.cli('identity', 'create', '--name', 'id-doomed', '-g', 'rg-doomed');
  const unconfirmed = p.cliRaw(['group', 'delete', '-n', 'rg-doomed']);
  assert.notEqual(unconfirmed.status, 0);
  assert.match(unconfirmed.stderr, /--yes/);
  assert.equal(p.cli('group', 'exists', '-n', 'rg-doomed'), true, 'nothing deleted without --yes');
  assert.equal(p.cliRaw(['group', 'delete', '-n', 'rg-doomed', '--yes']).status, 0);
  assert.equal(p.cli('group', 'exists', '-n', 'rg-doomed'), false);
  assert.notEqual(p.cliRaw(['identity', 'show', '--name', 'id-doomed']).status, 0, 'what the group held went with it');
});

test('identities without -g go to pgbyok-<location> (made on demand) and are found by name; with -g they go and are looked for there', () => {
  const plain = p.cli('identity', 'create', '--name', 'id-plain', '--location', 'northeurope');
  assert.equal(plain.id, armId('pgbyok-northeurope', ID_TYPE, 'id-plain'));
  assert.equal(plain.resourceGroup, 'pgbyok-northeurope');
  assert.equal(p.cli('group', 'show', '-n', 'pgbyok-northeurope').location, 'northeurope');
  assert.equal(p.cli('identity', 'show', '--name', 'id-plain').principalId, plain.principalId);

  p.cli('group', 'create', '-n', 'rg-ids', '-l', 'westeurope');
  const grouped = p.cli('identity', 'create', '--name', 'id-grouped', '-g', 'rg-ids');
  assert.equal(grouped.id, armId('rg-ids', ID_TYPE, 'id-grouped'));
  assert.equal(grouped.location, 'westeurope', 'without --location, the group\'s');
  assert.equal(p.cli('identity', 'show', '--name', 'id-grouped').resourceGroup, 'rg-ids', 'found by name without -g');
  assert.equal(p.cli('identity', 'show', '--name', 'id-grouped', '--resource-group', 'rg-ids').id, grouped.id);
  const wrong = p.cliRaw(['identity', 'show', '--name', 'id-grouped', '-g', 'pgbyok-northeurope']);
  assert.notEqual(wrong.status, 0);
  assert.match(wrong.stderr, /ResourceNotFound/);
  assert.deepEqual(p.cli('identity', 'list', '-g', 'rg-ids').map((i: any) => i.name), ['id-grouped']);
  assert.ok(p.cli('identity', 'list').some((i: any) => i.name === 'id-plain'), 'the subscription-wide list');
  const nowhere = p.cliRaw(['identity', 'show', '--name', 'id-nowhere']);
  assert.equal(nowhere.status, 3);
  assert.match(nowhere.stderr, /The Resource 'Microsoft\.ManagedIdentity\/userAssignedIdentities\/id-nowhere' was not found in subscription/);
  p.cli('identity', 'delete', '--name', 'id-grouped');
  assert.deepEqual(p.cli('identity', 'list', '-g', 'rg-ids'), []);
});

test('a vault in its own group: show, update, set-policy, network rules, delete, recover (back into its group) and purge without -g', () => {
  p.cli('group', 'create', '-n', 'rg-kv', '-l', 'eastus');
  const name = vaultName('g');
  const v = p.cli('vault', 'create', '--name', name, '-g', 'rg-kv', '--retention-days', '7');
  assert.equal(v.id, armId('rg-kv', 'Microsoft.KeyVault/vaults', name));
  assert.equal(v.resourceGroup, 'rg-kv');
  assert.equal(v.location, 'eastus');
  assert.equal(p.cli('vault', 'show', '--name', name).id, v.id);
  assert.equal(p.cli('vault', 'update', '--name', name, '--default-action', 'Deny', '--bypass', 'AzureServices').properties.networkAcls.defaultAction, 'Deny');
  const id = p.cli('identity', 'create', '--name', 'kv-user');
  const pol = p.cli('vault', 'set-policy', '--name', name, '--object-id', id.principalId, '--key-permissions', 'get', 'wrapKey');
  assert.ok(pol.id.startsWith(v.id));
  assert.deepEqual(pol.properties.accessPolicies.find((a: any) => a.objectId === id.principalId).permissions.keys.sort(), ['get', 'wrapKey']);
  assert.deepEqual(p.cli('vault', 'network-rule', 'add', '--name', name, '--ip-address', '10.1.2.3').properties.networkAcls.ipRules, [{ value: '10.1.2.3/32' }]);
  assert.ok(p.cli('vault', 'list', '-g', 'rg-kv').some((x: any) => x.name === name));
  assert.ok(!p.cli('vault', 'list', '-g', 'rg-cli').some((x: any) => x.name === name));

  assert.ok(p.cli('vault', 'delete', '--name', name).properties.scheduledPurgeDate);
  const gone = p.cli('vault', 'list-deleted').find((d: any) => d.name === name);
  assert.equal(gone.properties.vaultId, v.id);
  assert.notEqual(p.cliRaw(['vault', 'show', '--name', name]).status, 0);
  const back = p.cli('vault', 'recover', '--name', name);
  assert.equal(back.id, v.id, 'recovered into its own group');
  assert.equal(back.properties.vaultUri, v.properties.vaultUri);
  p.cli('vault', 'delete', '--name', name);
  p.cli('vault', 'purge', '--name', name);
  assert.ok(!p.cli('vault', 'list-deleted').some((d: any) => d.name === name));
});

test('configure --defaults group= and location= are used by creates and lookups; env wins; group= unsets', () => {
  p.cli('group', 'create', '-n', 'rg-default', '-l', 'westus');
  assert.equal(p.cliRaw(['configure', '--defaults', 'group=rg-default', 'location=westus']).status, 0);
  assert.deepEqual(p.cli('configure', '--list-defaults').map((d: any) => [d.name, d.value]), [['group', 'rg-default'], ['location', 'westus']]);
  try {
    const v = p.cli('vault', 'create', '--name', vaultName('d'));
    assert.equal(v.resourceGroup, 'rg-default');
    assert.equal(v.location, 'westus');
    assert.equal(p.cli('identity', 'create', '--name', 'id-defaulted').resourceGroup, 'rg-default');
    assert.equal(p.cli('identity', 'show', '--name', 'id-defaulted').resourceGroup, 'rg-default');
    assert.notEqual(p.cliRaw(['identity', 'show', '--name', 'id-plain']).status, 0, 'the default group is used like -g, as az does');
    assert.equal(p.cli('identity', 'show', '--name', 'id-plain', '-g', 'pgbyok-northeurope').name, 'id-plain', '-g overrides it');
    const env = p.cliRaw(['identity', 'create', '--name', 'id-env', '-o', 'json'], { PGBYOK_DEFAULTS_GROUP: 'rg-kv' });
    assert.equal(env.status, 0, env.stderr);
    assert.equal(JSON.parse(env.stdout).resourceGroup, 'rg-kv');
    assert.notEqual(p.cliRaw(['configure', '--defaults', 'colour=blue']).status, 0);
  } finally {
    p.cli('configure', '--defaults', 'group=', 'location=');
  }
  assert.deepEqual(p.cli('configure', '--list-defaults'), []);
  assert.equal(p.cli('identity', 'show', '--name', 'id-plain').resourceGroup, 'pgbyok-northeurope');
});

test('--subscription and PGBYOK_SUBSCRIPTION pick another subscription; account subscription create and account set', () => {
  const made = p.cli('account', 'subscription', 'create', '--alias', 'team-b', '--display-name', 'Team B');
  assert.equal(made.name, 'Team B');
  assert.equal(made.isDefault, false);
  assert.equal(p.cli('account', 'alias', 'show', '-n', 'team-b').properties.subscriptionId, made.id);
  const other = made.id;

  const inOther = p.cli('identity', 'create', '--name', 'id-team-b', '--subscription', 'Team B');
  assert.equal(inOther.id, armId('pgbyok-eastus', ID_TYPE, 'id-team-b', other));
  assert.equal(p.cli('group', 'list', '--subscription', other).length, 1);
  const viaEnv = p.cliRaw(['identity', 'show', '--name', 'id-team-b'], { PGBYOK_SUBSCRIPTION: other });
  assert.equal(viaEnv.status, 0, viaEnv.stderr);
  assert.notEqual(p.cliRaw(['identity', 'show', '--name', 'id-team-b']).status, 0, 'not in the default subscription');
  assert.match(p.cliRaw(['group', 'list', '--subscription', 'nope']).stderr, /Subscription 'nope' not found/);

  p.cli('account', 'set', '--subscription', other);
  try {
    assert.equal(p.cli('account', 'show').subscriptionId, other);
    assert.equal(p.cli('identity', 'show', '--name', 'id-team-b').id, inOther.id);
    assert.deepEqual(p.cli('account', 'list').filter((s: any) => s.isDefault).map((s: any) => s.id), [other]);
  } finally {
    p.cli('account', 'set', '--subscription', sub);
  }
  assert.equal(p.cli('account', 'show').subscriptionId, sub);
});

test('separation of duties holds on the ARM paths: a DBA makes identities (and the default group) but no vault', () => {
  const dba = p.cli('sp', 'create', '--name', 'dba-arm');
  p.cli('role', 'assign', '--assignee', dba.objectId, '--role', 'DBA');
  assert.equal(p.cliRaw(['login', '--client-id', dba.appId, '--client-secret', dba.password]).status, 0);
  try {
    assert.equal(p.cli('identity', 'create', '--name', 'dba-made', '--location', 'southindia').resourceGroup, 'pgbyok-southindia');
    const v = p.cliRaw(['vault', 'create', '--name', vaultName('dba')]);
    assert.notEqual(v.status, 0);
    assert.match(v.stderr, /AuthorizationFailed|authorization/i);
  } finally {
    p.cli('logout');
  }
});

test('servers are addressed in their group: -g names it, an identity goes as its ARM id, a server not in the group is not found', async () => {
  p.cli('group', 'create', '-n', 'rg-srv', '-l', 'eastus');
  p.cli('identity', 'create', '--name', 'id-srv', '-g', 'rg-srv');
  const srv = serverAddress(new CliContext(p.home), { resourceGroup: 'rg-kv' });
  assert.match(await srv.path('pg-x'), /^\/subscriptions\/[^/]+\/resourceGroups\/rg-kv\/providers\/Microsoft\.DBforPostgreSQL\/flexibleServers\/pg-x$/);
  assert.equal(await srv.identity('id-srv'), armId('rg-srv', ID_TYPE, 'id-srv'), 'found in its own group, whatever -g says');
  assert.equal(await srv.identity('no-such-identity'), 'no-such-identity', 'a name not found goes as given: the server names the problem');
  const r = p.cliRaw(['server', 'show', '--name', 'pg-x', '-g', 'rg-kv']);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /ResourceNotFound|not found/);
});
