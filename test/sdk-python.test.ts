/**
 * The official Python SDK (Debian's python3-azure: azure-keyvault-keys 4.8.0b3, azure-identity 1.13) against
 * a vault named under `localhost`, with challenge-resource verification on (the default) and the SDK's own
 * default api-version (7.4-preview.1). Skipped, saying why, on a machine without that SDK.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, startPgbyok, vaultName, type Pgbyok } from './harness.js';

const SCRIPT = join(ROOT, 'test', 'fixtures', 'python-keyvault.py');

/** The first Python that has the SDK (pyenv's python3 may shadow Debian's, which has it). */
function findPython(): string | undefined {
  const candidates = [process.env.PGBYOK_TEST_PYTHON, 'python3', '/usr/bin/python3'].filter((c): c is string => !!c);
  return candidates.find((py) => spawnSync(py, ['-c', 'import azure.keyvault.keys, azure.identity'], { stdio: 'ignore' }).status === 0);
}

const python = findPython();
const skip = python ? false : "the Python Key Vault SDK is not installed (python3 -c 'import azure.keyvault.keys' fails; Debian: apt-get install python3-azure)";

describe('official Python SDK against pgbyok', { skip, timeout: 120_000 }, () => {
  let p: Pgbyok;
  before(async () => {
    p = await startPgbyok();
  });
  after(async () => {
    if (p) await p.stop();
  });

  test('create, get, wrap/unwrap and list with challenge-resource verification on and the default api-version', () => {
    const name = vaultName('py');
    const vaultUri: string = p.cli('vault', 'create', '--name', name, '--location', 'eastus').properties.vaultUri;
    assert.match(vaultUri, new RegExp(`^https://${name}\\.vault\\.localhost:\\d+/$`));
    const r = spawnSync(python!, [SCRIPT], {
      encoding: 'utf8', timeout: 90_000,
      env: {
        ...process.env,
        REQUESTS_CA_BUNDLE: join(p.home, 'tls', 'ca.pem'),
        SSL_CERT_FILE: join(p.home, 'tls', 'ca.pem'),
        PGBYOK_VAULT_URL: vaultUri, PGBYOK_AUTHORITY: p.origin,
        PGBYOK_TENANT_ID: p.admin.tenantId, PGBYOK_CLIENT_ID: p.admin.clientId, PGBYOK_CLIENT_SECRET: p.admin.clientSecret,
      },
    });
    assert.equal(r.status, 0, `the Python SDK script failed:\n${r.stderr}\n${r.stdout}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    assert.equal(out.apiVersion, '7.4-preview.1', "the SDK's default api-version was used");
    assert.ok(out.kid.startsWith(`${vaultUri}keys/`), `the kid is under the vault URI: ${out.kid}`);
    assert.equal(out.wrappedBy, out.kid);
    assert.equal(out.listed, true);
  });
});
