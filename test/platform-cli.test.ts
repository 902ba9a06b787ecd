/**
 * The platform as a new user meets it through the CLI: first start, the walkthrough, separation of duties,
 * events, automatic rotation, nothing unsealed on disk, restart, and a tampered audit log being caught.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { execFileSync, spawnSync } from 'node:child_process';
import { createPrivateKey, randomBytes } from 'node:crypto';
import { generateRsaKeySync } from '../src/lib/rsa-keygen.js';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { BIN, createIdentity, eventually, startPgbyok, vaultName, type Pgbyok } from './harness.js';

let p: Pgbyok;
const events: any[] = [];
let hook: Server;
let hookUrl: string;
const scratch = mkdtempSync(join(tmpdir(), 'pgbyok-cli-'));

before(async () => {
  p = await startPgbyok({ PGBYOK_SCHEDULER_INTERVAL_MS: '250' });
  hook = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      events.push(...JSON.parse(body));
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', () => r()));
  hookUrl = `http://127.0.0.1:${(hook.address() as { port: number }).port}/events`;
});

after(async () => {
  await p?.stop();
  hook?.close();
  rmSync(scratch, { recursive: true, force: true });
});

test('status fails before pgbyok was ever started, and reports where everything is once it runs', () => {
  const fresh = mkdtempSync(join(tmpdir(), 'pgbyok-none-'));
  try {
    const r = spawnSync(process.execPath, [BIN, 'status', '-o', 'json'], { env: { ...process.env, PGBYOK_HOME: fresh }, encoding: 'utf8' });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /pgbyok up/);
  } finally {
    rmSync(fresh, { recursive: true, force: true });
  }
  const s = p.cli('status', '-o', 'json');
  assert.equal(s.authorityHost, p.origin);
  assert.equal(s.managementUrl, p.origin);
  assert.equal(s.tenantId, p.admin.tenantId);
  assert.equal(s.caCertPath, join(p.home, 'tls', 'ca.pem'));
  for (const secret of ['admin.json', 'master.key', 'ca.key.pem', 'server.key.pem']) {
    assert.equal(statSync(join(p.home, 'secrets', secret)).mode & 0o777, 0o600, secret);
  }
});

test('the walkthrough: identity, vault, access policy, key lifecycle, in Azure shapes', () => {
  const id = p.cli('identity', 'create', '--name', 'app1');
  for (const f of ['id', 'name', 'clientId', 'principalId', 'tenantId', 'clientSecret']) assert.ok(id[f], f);
  assert.equal(id.tenantId, p.admin.tenantId);
  assert.equal(p.cli('identity', 'show', '--name', 'app1').clientSecret, undefined, 'the secret is shown once only');

  const name = vaultName();
  const v = p.cli('vault', 'create', '--name', name, '--location', 'eastus', '--retention-days', '7');
  assert.equal(v.name, name);
  assert.equal(v.location, 'eastus');
  assert.equal(v.properties.vaultUri, `https://${name.toLowerCase()}.vault.localhost:${JSON.parse(readFileSync(join(p.home, 'settings.json'), 'utf8')).vaultPort}/`);
  assert.equal(v.properties.tenantId, p.admin.tenantId);
  assert.equal(v.properties.enableSoftDelete, true);
  assert.equal(v.properties.softDeleteRetentionInDays, 7);
  assert.equal(v.properties.enablePurgeProtection, false);

  const withPolicy = p.cli('vault', 'set-policy', '--name', name, '--object-id', id.principalId, '--key-permissions', 'get', 'list', 'wrapKey', 'unwrapKey');
  const policy = withPolicy.properties.accessPolicies.find((a: any) => a.objectId === id.principalId);
  assert.deepEqual(policy.permissions.keys.sort(), ['get', 'list', 'unwrapKey', 'wrapKey']);

  const k = p.cli('key', 'create', '--vault-name', name, '--name', 'kek', '--kty', 'RSA', '--size', '2048');
  assert.match(k.key.kid, new RegExp(`^${v.properties.vaultUri}keys/kek/[0-9a-f]{32}$`));
  assert.equal(k.key.kty, 'RSA');
  assert.ok(k.key.n && k.key.e);
  assert.equal(k.key.d, undefined);
  assert.equal(k.attributes.enabled, true);

  const disabled = p.cli('key', 'set-attributes', '--vault-name', name, '--name', 'kek', '--enabled', 'false', '--expires', '2030-01-01T00:00:00Z');
  assert.equal(disabled.attributes.enabled, false);
  assert.equal(disabled.attributes.exp, Date.parse('2030-01-01T00:00:00Z') / 1000);
  const shown = p.cliRaw(['key', 'show', '--vault-name', name, '--name', 'kek']);
  assert.notEqual(shown.status, 0);
  assert.match(shown.stderr, /disabled/);
  p.cli('key', 'set-attributes', '--vault-name', name, '--name', 'kek', '--enabled', 'true');

  const rotated = p.cli('key', 'rotate', '--vault-name', name, '--name', 'kek');
  assert.notEqual(rotated.key.kid, k.key.kid);
  assert.equal(p.cli('key', 'list-versions', '--vault-name', name, '--name', 'kek').length, 2);
  assert.equal(p.cli('key', 'show', '--vault-name', name, '--name', 'kek').key.kid, rotated.key.kid);

  const wrapped = p.cli('key', 'wrap', '--vault-name', name, '--name', 'kek', '--value', randomBytes(32).toString('base64'));
  assert.equal(wrapped.kid, rotated.key.kid);

  const deleted = p.cli('key', 'delete', '--vault-name', name, '--name', 'kek');
  assert.ok(deleted.recoveryId && deleted.scheduledPurgeDate);
  assert.equal(p.cli('key', 'list', '--vault-name', name).length, 0);
  assert.equal(p.cli('key', 'list-deleted', '--vault-name', name).length, 1);
  p.cli('key', 'recover', '--vault-name', name, '--name', 'kek');
  assert.equal(p.cli('key', 'list', '--vault-name', name).length, 1);
  p.cli('key', 'delete', '--vault-name', name, '--name', 'kek');
  p.cli('key', 'purge', '--vault-name', name, '--name', 'kek');
  assert.equal(p.cli('key', 'list-deleted', '--vault-name', name).length, 0);

  const table = p.cliRaw(['vault', 'list', '-o', 'table']);
  assert.equal(table.status, 0);
  assert.match(table.stdout, new RegExp(`${name}\\s+eastus`));
});

test('purge protection keeps a deleted key until its date, and cannot be switched off', () => {
  const name = vaultName('pp');
  p.cli('vault', 'create', '--name', name, '--location', 'eastus', '--enable-purge-protection');
  p.cli('key', 'create', '--vault-name', name, '--name', 'k');
  p.cli('key', 'delete', '--vault-name', name, '--name', 'k');
  const purge = p.cliRaw(['key', 'purge', '--vault-name', name, '--name', 'k']);
  assert.notEqual(purge.status, 0);
  assert.match(purge.stderr, /purge protection/);
  assert.equal(p.cli('key', 'list-deleted', '--vault-name', name).length, 1);
  const reuse = p.cliRaw(['key', 'create', '--vault-name', name, '--name', 'k']);
  assert.match(reuse.stderr, /deleted but recoverable/);
  const vault = p.cli('vault', 'show', '--name', name);
  assert.equal(vault.properties.enablePurgeProtection, true);
});

test('separation of duties: a DBA cannot touch vaults, a security officer cannot make identities', () => {
  const dba = p.cli('sp', 'create', '--name', 'dba1');
  const so = p.cli('sp', 'create', '--name', 'secofficer1');
  p.cli('role', 'assign', '--assignee', dba.objectId, '--role', 'DBA');
  p.cli('role', 'assign', '--assignee', so.appId, '--role', 'Security Officer');
  const as = (who: any, args: string[]) => {
    const login = p.cliRaw(['login', '--client-id', who.appId, '--client-secret', who.password]);
    assert.equal(login.status, 0, login.stderr);
    try {
      return p.cliRaw(args);
    } finally {
      p.cli('logout');
    }
  };
  const dbaVault = as(dba, ['vault', 'create', '--name', vaultName('dba'), '--location', 'eastus']);
  assert.notEqual(dbaVault.status, 0);
  assert.match(dbaVault.stderr, /AuthorizationFailed|authorization/);
  assert.equal(as(dba, ['identity', 'create', '--name', 'server-id-1']).status, 0);

  const soVault = as(so, ['vault', 'create', '--name', vaultName('so'), '--location', 'eastus']);
  assert.equal(soVault.status, 0, soVault.stderr);
  const soIdentity = as(so, ['identity', 'create', '--name', 'so-made']);
  assert.notEqual(soIdentity.status, 0);
  const soRole = as(so, ['role', 'assign', '--assignee', so.appId, '--role', 'Owner']);
  assert.notEqual(soRole.status, 0, 'only an Owner assigns roles');
  const whoami = p.cli('account', 'show');
  assert.equal(whoami.name, 'pgbyok-admin');
  assert.deepEqual(whoami.roles, ['Owner']);
});

test('imported keys (PEM and PKCS#12) never appear unsealed in any file pgbyok writes', async () => {
  const name = vaultName('imp');
  p.cli('vault', 'create', '--name', name, '--location', 'eastus');
  const privateKey = generateRsaKeySync(2048);
  const pemFile = join(scratch, 'k.pem');
  writeFileSync(pemFile, privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const imported = p.cli('key', 'import', '--vault-name', name, '--name', 'pem-key', '--pem-file', pemFile);
  const jwk = privateKey.export({ format: 'jwk' }) as Record<string, string>;
  assert.equal(imported.key.n, jwk.n);

  // A PKCS#12 file made by OpenSSL, password protected.
  const pfxKey = join(scratch, 'p.key');
  const pfxCert = join(scratch, 'p.crt');
  const pfx = join(scratch, 'p.pfx');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', pfxKey, '-out', pfxCert, '-subj', '/CN=pgbyok-test', '-days', '1'], { stdio: 'ignore' });
  execFileSync('openssl', ['pkcs12', '-export', '-inkey', pfxKey, '-in', pfxCert, '-out', pfx, '-passout', 'pass:s3cret'], { stdio: 'ignore' });
  const pfxJwk = createPrivateKey(readFileSync(pfxKey)).export({ format: 'jwk' }) as Record<string, string>;
  const fromPfx = p.cli('key', 'import', '--vault-name', name, '--name', 'pfx-key', '--pfx-file', pfx, '--pfx-password', 's3cret');
  assert.equal(fromPfx.key.n, pfxJwk.n);
  const wrongPassword = p.cliRaw(['key', 'import', '--vault-name', name, '--name', 'pfx-bad', '--pfx-file', pfx, '--pfx-password', 'nope']);
  assert.notEqual(wrongPassword.status, 0);

  // Let SQLite write everything out, then search every file under the home for the private parts.
  await new Promise((r) => setTimeout(r, 300));
  const needles: Buffer[] = [];
  for (const j of [jwk, pfxJwk]) {
    for (const part of ['d', 'p', 'q', 'dp', 'dq']) {
      const raw = Buffer.from(j[part], 'base64url');
      needles.push(raw.subarray(0, 32), Buffer.from(j[part].slice(0, 40)), Buffer.from(raw.toString('base64').slice(0, 40)), Buffer.from(raw.toString('hex').slice(0, 40)));
    }
  }
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const f = join(dir, e.name);
      if (e.isDirectory()) walk(f);
      else files.push(f);
    }
  };
  walk(p.home);
  assert.ok(files.some((f) => f.endsWith('pgbyok.db')));
  for (const f of files) {
    const content = readFileSync(f);
    for (const n of needles) assert.equal(content.indexOf(n), -1, `private key material found in ${f}`);
  }
});

test('vault events reach a webhook subscriber: new version, disabled, access policy changed', async () => {
  const name = vaultName('ev');
  p.cli('vault', 'create', '--name', name, '--location', 'eastus');
  const sub = p.cli('vault', 'event-subscription', 'create', '--vault-name', name, '--name', 'hook1', '--endpoint', hookUrl);
  assert.equal(sub.properties.destination.properties.endpointUrl, hookUrl);
  const k = p.cli('key', 'create', '--vault-name', name, '--name', 'k1');
  const version = k.key.kid.split('/').pop();
  const created = await eventually(() => events.find((e) => e.eventType === 'Microsoft.KeyVault.KeyNewVersionCreated' && e.data.VaultName === name), 'KeyNewVersionCreated');
  assert.equal(created.data.ObjectName, 'k1');
  assert.equal(created.data.Version, version);
  assert.equal(created.subject, 'k1');

  p.cli('key', 'set-attributes', '--vault-name', name, '--name', 'k1', '--enabled', 'false');
  await eventually(() => events.find((e) => e.eventType === 'Microsoft.KeyVault.KeyDisabled' && e.data.VaultName === name), 'KeyDisabled');

  const id = createIdentity(p, 'ev-identity');
  p.cli('vault', 'set-policy', '--name', name, '--object-id', id.objectId, '--key-permissions', 'get');
  await eventually(() => events.find((e) => e.eventType === 'Microsoft.KeyVault.VaultAccessPolicyChanged' && e.data.VaultName === name), 'VaultAccessPolicyChanged');

  p.cli('key', 'delete', '--vault-name', name, '--name', 'k1');
  await eventually(() => events.find((e) => e.eventType === 'Microsoft.KeyVault.KeyDeleted' && e.data.VaultName === name), 'KeyDeleted');
});

test('a rotation policy rotates the key on its own, and expiry raises near-expiry and expired events', async () => {
  const name = vaultName('rot');
  p.cli('vault', 'create', '--name', name, '--location', 'eastus');
  p.cli('vault', 'event-subscription', 'create', '--vault-name', name, '--name', 'hook2', '--endpoint', hookUrl, '--included-event-types', 'KeyNearExpiry', 'KeyExpired', 'KeyNewVersionCreated');
  p.cli('key', 'create', '--vault-name', name, '--name', 'auto');
  const policy = p.cli('key', 'rotation-policy', 'update', '--vault-name', name, '--name', 'auto', '--rotate-after', 'PT2S', '--expiry-time', 'P30D');
  assert.deepEqual(policy.lifetimeActions.find((a: any) => a.action.type === 'Rotate').trigger, { timeAfterCreate: 'PT2S' });
  const versions = await eventually(() => {
    const v = p.cli('key', 'list-versions', '--vault-name', name, '--name', 'auto');
    return v.length >= 2 ? v : undefined;
  }, 'automatic rotation', 15_000);
  const newest = p.cli('key', 'show', '--vault-name', name, '--name', 'auto');
  assert.ok(versions.length >= 2);
  assert.ok(Math.abs(newest.attributes.exp - (newest.attributes.created + 30 * 86400)) <= 1, 'the new version expires per expiryTime');

  // No race with the wall clock (the handler tier moves time by hand): a key a day from expiry is near it at
  // every pass; moved into the past, it is expired at the next one, which owes it KeyExpired only.
  const tomorrow = new Date(Date.now() + 86_400_000).toISOString();
  p.cli('key', 'create', '--vault-name', name, '--name', 'short', '--expires', tomorrow);
  await eventually(() => events.find((e) => e.eventType === 'Microsoft.KeyVault.KeyNearExpiry' && e.data.ObjectName === 'short'), 'KeyNearExpiry');
  p.cli('key', 'set-attributes', '--vault-name', name, '--name', 'short', '--expires', new Date(Date.now() - 1000).toISOString());
  await eventually(() => events.find((e) => e.eventType === 'Microsoft.KeyVault.KeyExpired' && e.data.ObjectName === 'short'), 'KeyExpired', 15_000);
  assert.equal(events.filter((e) => e.eventType === 'Microsoft.KeyVault.KeyNearExpiry' && e.data.ObjectName === 'short').length, 1, 'an expired key gets no late KeyNearExpiry');
  assert.ok(!events.some((e) => e.eventType === 'Microsoft.KeyVault.KeyDisabled' && e.data.VaultName === name), 'the subscription filter holds');
});

test('a deleted vault stops answering, is recovered with its keys, and purge obeys purge protection', async () => {
  const name = vaultName('del');
  const v = p.cli('vault', 'create', '--name', name, '--location', 'eastus', '--enable-purge-protection');
  const k = p.cli('key', 'create', '--vault-name', name, '--name', 'k');
  const token = await p.token(p.admin);
  const get = () => p.http('GET', `${k.key.kid}?api-version=7.6`, { token });
  assert.equal((await get()).status, 200);

  const deleted = p.cli('vault', 'delete', '--name', name);
  assert.ok(deleted.properties.scheduledPurgeDate);
  // The one vault listener stays open; a soft-deleted vault is just not served there.
  const gone = await get();
  assert.equal(gone.status, 404, gone.text);
  assert.equal(gone.json.error.code, 'VaultNotFound');
  assert.ok(p.cli('vault', 'list-deleted').some((d: any) => d.name === name));
  assert.notEqual(p.cliRaw(['vault', 'show', '--name', name]).status, 0);
  assert.match(p.cliRaw(['vault', 'create', '--name', name, '--location', 'eastus']).stderr, /soft-deleted vault named '[^']+' exists/);
  const purge = p.cliRaw(['vault', 'purge', '--name', name]);
  assert.notEqual(purge.status, 0);
  assert.match(purge.stderr, /purge protection/);

  const recovered = p.cli('vault', 'recover', '--name', name);
  assert.equal(recovered.properties.vaultUri, v.properties.vaultUri);
  assert.equal((await get()).status, 200, 'keys come back with the vault');

  const mgmt = await p.token(p.admin, 'https://management.azure.com');
  const off = await p.http('PATCH', `${p.origin}/tenants/${p.admin.tenantId}/providers/Microsoft.KeyVault/vaults/${name}?api-version=2023-07-01`, {
    token: mgmt, body: { properties: { enablePurgeProtection: false } },
  });
  assert.equal(off.status, 400);
  assert.match(off.json.error.message, /cannot be set to false/);
  const retention = await p.http('PATCH', `${p.origin}/tenants/${p.admin.tenantId}/providers/Microsoft.KeyVault/vaults/${name}?api-version=2023-07-01`, {
    token: mgmt, body: { properties: { softDeleteRetentionInDays: 30 } },
  });
  assert.equal(retention.status, 400);

  const plain = vaultName('delp');
  p.cli('vault', 'create', '--name', plain, '--location', 'eastus');
  p.cli('vault', 'delete', '--name', plain);
  p.cli('vault', 'purge', '--name', plain);
  assert.ok(!p.cli('vault', 'list-deleted').some((d: any) => d.name === plain));
  p.cli('vault', 'create', '--name', plain, '--location', 'eastus');
});

test('after a restart the same vaults, keys, identities and tokens still work', async () => {
  const name = vaultName('rs');
  const v = p.cli('vault', 'create', '--name', name, '--location', 'eastus');
  p.cli('key', 'create', '--vault-name', name, '--name', 'k');
  const id = createIdentity(p, 'restart-id');
  p.cli('vault', 'set-policy', '--name', name, '--object-id', id.objectId, '--key-permissions', 'get', 'wrapKey', 'unwrapKey');
  const token = await p.token(id);
  const wrap = await p.http('POST', `${v.properties.vaultUri}keys/k//wrapkey?api-version=7.5`, { token, body: { alg: 'RSA-OAEP-256', value: randomBytes(32).toString('base64url') } });
  assert.equal(wrap.status, 200);
  await p.restart();
  const after = p.cli('vault', 'show', '--name', name);
  assert.equal(after.properties.vaultUri, v.properties.vaultUri);
  const unwrap = await p.http('POST', `${wrap.json.kid}/unwrapkey?api-version=7.5`, { token, body: { alg: 'RSA-OAEP-256', value: wrap.json.value } });
  assert.equal(unwrap.status, 200, unwrap.text);
});

test('pgbyok up stops cleanly on SIGTERM', async () => {
  const child = p.child();
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
  await p.restart();
  assert.equal(p.cliRaw(['status']).status, 0);
});

test('audit verify passes, then catches a record edited behind the service\'s back', () => {
  const ok = p.cli('audit', 'verify');
  assert.equal(ok.valid, true);
  assert.ok(ok.records > 50);
  const unwraps = p.cli('audit', 'list', '--operation', 'KeyWrap');
  assert.ok(unwraps.length > 0, 'the wraps are in the audit log');
  assert.ok(unwraps.every((r: any) => r.operation === 'KeyWrap' && r.vault && r.callerObjectId && ['::1', '127.0.0.1'].includes(r.sourceAddress)));

  const db = new Database(join(p.home, 'pgbyok.db'));
  try {
    db.prepare("UPDATE audit_log SET record = replace(record, '\"Failure\"', '\"Success\"') WHERE seq = (SELECT MIN(seq) FROM audit_log WHERE record LIKE '%Failure%')").run();
  } finally {
    db.close();
  }
  const r = p.cliRaw(['audit', 'verify']);
  assert.equal(r.status, 1);
  const report = JSON.parse(r.stdout);
  assert.equal(report.valid, false);
  assert.match(report.reason, /edited/);
});
