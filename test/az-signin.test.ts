/**
 * The sign-in Debian's az 2.45 completes unchanged (contract items 1.1, 2.1a, 2.2a): `az cloud register` with
 * only the resource-manager endpoint, `az login --service-principal`, `az account get-access-token`. Real
 * az, real platform, no network to Microsoft. Skipped when az is not installed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { decodeJwt } from 'jose';
import { startPgbyok, type Pgbyok } from './harness.js';
import { azPython, azSession, findAz, type AzSession } from './az.js';

const az = findAz();

describe('az 2.45 signs in to pgbyok unchanged', { skip: az ? false : 'az (azure-cli) is not installed' }, () => {
  let p: Pgbyok;
  let s: AzSession;

  before(async () => {
    p = await startPgbyok();
    s = azSession({ az: az!, caFile: join(p.home, 'tls', 'ca.pem') });
  });
  after(async () => {
    s?.close();
    await p?.stop();
  });

  test('az cloud register --endpoint-resource-manager alone configures the cloud from //metadata/endpoints', async () => {
    await s.json('cloud', 'register', '-n', 'pgbyok', '--endpoint-resource-manager', `${p.origin}/`);
    await s.json('cloud', 'set', '-n', 'pgbyok');
    const cloud = await s.json('cloud', 'show', '-n', 'pgbyok');
    assert.equal(cloud.isActive, true);
    assert.equal(cloud.endpoints.resourceManager, `${p.origin}/`);
    assert.equal(cloud.endpoints.activeDirectory, `${p.origin}/adfs`);
    assert.equal(cloud.endpoints.activeDirectoryResourceId, 'https://management.azure.com/');
    assert.equal(cloud.endpoints.activeDirectoryGraphResourceId, `${p.origin}/graph/`);
  });

  test('with ARM_CLOUD_METADATA_URL az takes the whole cloud from pgbyok: key vault DNS suffix and Microsoft Graph resource id too', async () => {
    // `az cloud register` reads only the 2015-01-01 names (login, audience, graph, gallery); az's own cloud
    // list (2019-05-01 shape) also carries suffixes.keyVaultDns and microsoftGraphResourceId.
    const fromUrl = azSession({ az: az!, caFile: join(p.home, 'tls', 'ca.pem'), env: { ARM_CLOUD_METADATA_URL: `${p.origin}/metadata/endpoints?api-version=2019-05-01` } });
    try {
      await fromUrl.json('cloud', 'set', '-n', 'pgbyok');
      const cloud = await fromUrl.json('cloud', 'show');
      assert.equal(cloud.name, 'pgbyok');
      assert.equal(cloud.endpoints.resourceManager, `${p.origin}/`);
      assert.equal(cloud.endpoints.activeDirectory, `${p.origin}/adfs`);
      assert.equal(cloud.endpoints.activeDirectoryResourceId, 'https://management.azure.com/');
      assert.equal(cloud.endpoints.microsoftGraphResourceId, `${p.origin}/graph/`);
      assert.equal(cloud.suffixes.keyvaultDns, `.vault.localhost:${JSON.parse(readFileSync(join(p.home, 'settings.json'), 'utf8')).vaultPort}`);
    } finally {
      fromUrl.close();
    }
  });

  test('MSAL as az 2.45 builds it (ADFS authority from the cloud, ARM scope with //) gets a token pgbyok accepts', async () => {
    // The same library calls `az login --service-principal` makes, without the subscription listing that follows.
    const script = [
      'import json, msal',
      'import os',
      'app = msal.ConfidentialClientApplication(os.environ["T_CLIENT_ID"], client_credential=os.environ["T_SECRET"], authority=os.environ["T_AUTHORITY"])',
      'print(json.dumps(app.acquire_token_for_client(["https://management.azure.com//.default"])))',
    ].join('\n');
    const out = await new Promise<string>((resolve, reject) => {
      const env = { ...s.env, T_CLIENT_ID: p.admin.clientId, T_SECRET: p.admin.clientSecret, T_AUTHORITY: `${p.origin}/adfs` };
      execFile(azPython(az!), ['-c', script], { env, timeout: 60_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout));
    });
    const result = JSON.parse(out);
    assert.ok(result.access_token, JSON.stringify(result));
    assert.equal(decodeJwt(result.access_token).tid, p.admin.tenantId);
    const vaults = await p.http('GET', `${p.origin}/tenants/${p.admin.tenantId}/providers/Microsoft.KeyVault/vaults?api-version=2023-07-01`, { token: result.access_token });
    assert.equal(vaults.status, 200, vaults.text);
  });

  test('az login --service-principal and az account get-access-token', async () => {
    const accounts = await s.json('login', '--service-principal', '-u', p.admin.clientId, `--password=${p.admin.clientSecret}`, '--tenant', p.admin.tenantId, '--allow-no-subscriptions');
    assert.ok(Array.isArray(accounts) && accounts.length >= 1);
    assert.equal(accounts[0].tenantId, p.admin.tenantId);
    const token = await s.json('account', 'get-access-token');
    assert.equal(token.tenant, p.admin.tenantId);
    assert.equal(decodeJwt(token.accessToken).tid, p.admin.tenantId);
    const vaults = await p.http('GET', `${p.origin}/tenants/${p.admin.tenantId}/providers/Microsoft.KeyVault/vaults?api-version=2023-07-01`, { token: token.accessToken });
    assert.equal(vaults.status, 200, vaults.text);
  });
});
