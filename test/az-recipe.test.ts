/**
 * Root tier: the README's az recipe, run as written with Debian's unmodified azure-cli 2.45 — cloud, login,
 * group, identity, key vault, access policy, key, a CMK flexible server (`--key --identity`), the server
 * Inaccessible while the key is disabled and Ready once it is enabled, delete. The vaults listen on 443, as
 * az's key vault URLs carry no port. Skipped when az is not installed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { eventually, startPgbyok, vaultName, type Pgbyok } from './harness.js';
import { azSession, findAz, type AzSession } from './az.js';

const az = findAz();

const skip = !az ? 'az (azure-cli) is not installed' : process.getuid?.() !== 0 ? 'the vaults must listen on 443, which needs root' : false;

describe('the README az recipe', { skip }, () => {
  let p: Pgbyok;
  let s: AzSession;
  const kv = vaultName('az');

  before(async () => {
    p = await startPgbyok({ PGBYOK_VAULT_PORT: '443' });
    s = azSession({
      az: az!, caFile: join(p.home, 'tls', 'ca.pem'), timeoutMs: 300_000,
      env: { ARM_CLOUD_METADATA_URL: `${p.origin}/metadata/endpoints?api-version=2019-05-01` },
    });
  });
  after(async () => {
    s?.close();
    await p?.stop();
  });

  test('cloud, login, identity, vault, key, and a CMK server that follows its key', async () => {
    // 1. The cloud comes from pgbyok's metadata endpoint; sign in as a service principal.
    await s.json('cloud', 'set', '-n', 'pgbyok');
    const account = await s.json('login', '--service-principal', '-u', p.admin.clientId, `--password=${p.admin.clientSecret}`, '--tenant', p.admin.tenantId);
    assert.equal(account[0].tenantId, p.admin.tenantId);

    // 2. A group, an identity, a vault with purge protection, and the identity's access policy.
    await s.json('group', 'create', '-n', 'rg-az', '-l', 'eastus');
    const identity = await s.json('identity', 'create', '-g', 'rg-az', '-n', 'id-az');
    assert.match(identity.id, /^\/subscriptions\/[^/]+\/resourceGroups\/rg-az\/providers\/Microsoft\.ManagedIdentity\/userAssignedIdentities\/id-az$/);
    const vault = await s.json('keyvault', 'create', '-g', 'rg-az', '-n', kv, '-l', 'eastus', '--retention-days', '90', '--enable-purge-protection', 'true', '--no-self-perms');
    assert.equal(vault.properties.vaultUri, `https://${kv}.vault.localhost/`);
    await s.json('keyvault', 'set-policy', '-n', kv, '--object-id', identity.principalId, '--key-permissions', 'get', 'list', 'wrapKey', 'unwrapKey');
    await s.json('keyvault', 'set-policy', '-n', kv, '--object-id', p.admin.objectId, '--key-permissions', 'all');
    const policies = (await s.json('keyvault', 'show', '-n', kv)).properties.accessPolicies.map((x: any) => x.objectId).sort();
    assert.deepEqual(policies, [identity.principalId, p.admin.objectId].sort());

    // 3. The key (Debian's `az keyvault key` commands cannot load their SDK: az rest speaks the keys API).
    const keyApi = (method: string, path: string, body?: unknown) =>
      s.json('rest', '--method', method, '--url', `https://${kv}.vault.localhost/keys/${path}?api-version=7.4`, '--resource', 'https://vault.localhost', ...(body ? ['--body', JSON.stringify(body)] : []));
    const key = await keyApi('post', 'kek/create', { kty: 'RSA', key_size: 2048 });
    const keyUri = String(key.key.kid).replace(/\/[^/]+$/, '');

    // 4. The server, under that key and identity.
    const server = await s.json('postgres', 'flexible-server', 'create', '-g', 'rg-az', '-n', 'pg-az', '-l', 'eastus', '--version', '15', '--storage-size', '32',
      '--public-access', 'None', '--key', keyUri, '--identity', 'id-az', '--admin-user', 'azadmin', '--admin-password', 'Passw0rd!az1', '--yes');
    assert.ok(server, 'az printed the new server');
    const show = () => s.json('postgres', 'flexible-server', 'show', '-g', 'rg-az', '-n', 'pg-az');
    const ready = await show();
    assert.equal(ready.state, 'Ready');
    assert.equal(ready.dataEncryption.primaryKeyUri ?? ready.dataEncryption.primaryKeyURI, keyUri);

    // 5. The customer disables the key: Inaccessible; enables it: Ready.
    await keyApi('patch', 'kek/', { attributes: { enabled: false } });
    await eventually(async () => (await show()).state === 'Inaccessible', 'Inaccessible (az postgres flexible-server show) after the key was disabled', 60_000, 1000);
    await keyApi('patch', 'kek/', { attributes: { enabled: true } });
    await eventually(async () => (await show()).state === 'Ready', 'Ready again after the key was enabled', 60_000, 1000);

    // 6. Delete.
    await s.json('postgres', 'flexible-server', 'delete', '-g', 'rg-az', '-n', 'pg-az', '--yes');
    const list = await s.json('postgres', 'flexible-server', 'list', '-g', 'rg-az');
    assert.deepEqual(list, []);
  });
});
