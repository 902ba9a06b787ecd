/**
 * Audit that refuses before it acts, audited managed-identity tokens, an authenticated chain head, verify
 * scoped to the caller's tenant; and a platform that will not start on a bad setting or a taken home.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { BIN, createIdentity, MGMT_RESOURCE, startPgbyok, vaultName, type Pgbyok } from './harness.js';

const API = 'api-version=7.5';
const MGMT = 'api-version=2023-07-01';

describe('audit fails closed', () => {
  let p: Pgbyok;
  let tid: string;
  before(async () => {
    p = await startPgbyok();
    tid = p.admin.tenantId;
  });
  after(async () => p?.stop());

  const withDb = <T>(fn: (db: Database.Database) => T): T => {
    const db = new Database(join(p.home, 'pgbyok.db'));
    try {
      return fn(db);
    } finally {
      db.close();
    }
  };

  test('with audit writes failing, every mutation is refused and nothing changes', async () => {
    const V = vaultName('af');
    p.cli('vault', 'create', '--name', V, '--location', 'eastus', '--enable-purge-protection');
    p.cli('key', 'create', '--vault-name', V, '--name', 'k1');
    p.cli('key', 'create', '--vault-name', V, '--name', 'k2');
    const other = createIdentity(p, 'af-other');
    const vaultUri = p.cli('vault', 'show', '--name', V).properties.vaultUri.replace(/\/$/, '');
    const vt = await p.token(p.admin);
    const mt = await p.token(p.admin, MGMT_RESOURCE);
    const mg = (path: string) => `${p.origin}/tenants/${tid}/providers/${path}?${MGMT}`;
    const policiesBefore = JSON.stringify(p.cli('vault', 'show', '--name', V).properties.accessPolicies);
    const rolesBefore = p.cli('role', 'list').length;

    withDb((db) => db.exec("CREATE TRIGGER audit_down BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full'); END;"));
    const attempts: [string, Promise<Awaited<ReturnType<Pgbyok['http']>>>][] = [
      ['key create', p.http('POST', `${vaultUri}/keys/k3/create?${API}`, { token: vt, body: { kty: 'RSA', key_size: 2048 } })],
      ['key disable', p.http('PATCH', `${vaultUri}/keys/k1?${API}`, { token: vt, body: { attributes: { enabled: false } } })],
      ['key delete', p.http('DELETE', `${vaultUri}/keys/k2?${API}`, { token: vt })],
      ['all-keys access policy', p.http('PUT', mg(`Microsoft.KeyVault/vaults/${V}/accessPolicies/add`), {
        token: mt, body: { properties: { accessPolicies: [{ objectId: other.objectId, permissions: { keys: ['all'] } }] } },
      })],
      ['identity', p.http('PUT', mg('Microsoft.ManagedIdentity/userAssignedIdentities/af-new'), { token: mt, body: { location: 'eastus' } })],
      ['Owner role', p.http('POST', mg('Microsoft.Authorization/roleAssignments'), {
        token: mt, body: { properties: { principalId: other.objectId, roleDefinitionName: 'Owner' } },
      })],
    ];
    for (const [what, pending] of attempts) {
      const r = await pending;
      assert.equal(r.status, 500, `${what}: ${r.text}`);
      assert.equal(r.json?.error?.innererror?.code, 'AuditFailure', `${what}: ${r.text}`);
    }
    withDb((db) => db.exec('DROP TRIGGER audit_down'));

    const keys = p.cli('key', 'list', '--vault-name', V).map((k: any) => k.name ?? k.kid.split('/').pop()).sort();
    assert.deepEqual(keys, ['k1', 'k2'], 'k3 was not created and k2 not deleted');
    assert.equal(p.cli('key', 'show', '--vault-name', V, '--name', 'k1').attributes.enabled, true, 'k1 still enabled');
    assert.equal(JSON.stringify(p.cli('vault', 'show', '--name', V).properties.accessPolicies), policiesBefore, 'policies unchanged');
    assert.equal(p.cliRaw(['identity', 'show', '--name', 'af-new']).status !== 0, true, 'identity not created');
    assert.equal(p.cli('role', 'list').length, rolesBefore, 'no role assigned');
    assert.equal(p.cli('audit', 'verify').valid, true);
  });

  test('managed-identity token issuance and its refusals are audited in the identity\'s tenant', async () => {
    createIdentity(p, 'mi-audited');
    const resId = `/tenants/${tid}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/mi-audited`;
    const url = `${p.origin}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net&msi_res_id=${encodeURIComponent(resId)}`;
    const cert = readFileSync(join(p.home, 'tls', 'trusted-service.pem'), 'utf8');
    const key = readFileSync(join(p.home, 'secrets', 'trusted-service.key.pem'), 'utf8');
    const ok = await p.http('GET', url, { cert, key });
    assert.equal(ok.status, 200, ok.text);
    const refused = await p.http('GET', url);
    assert.equal(refused.status, 403, refused.text);
    const recs: any[] = p.cli('audit', 'list', '--operation', 'ManagedIdentityToken');
    const byId = new Map(recs.map((r) => [r.requestId, r]));
    assert.equal(byId.get(ok.headers['x-ms-request-id'])?.result, 'Success');
    assert.equal(byId.get(ok.headers['x-ms-request-id'])?.callerName, 'mi-audited');
    assert.equal(byId.get(refused.headers['x-ms-request-id'])?.result, 'Failure');
  });

  test('audit verify counts the caller\'s tenant only', async () => {
    const t2 = p.cli('tenant', 'create', '--name', `t2-${Date.now()}`);
    // Requests in the other tenant add records there, not here.
    const cred = { tenantId: t2.tenantId, clientId: t2.admin.appId, clientSecret: t2.admin.password };
    const t2Token = await p.token(cred, MGMT_RESOURCE);
    for (let i = 0; i < 5; i++) await p.http('GET', `${p.origin}/tenants/${cred.tenantId}/providers/Microsoft.KeyVault/vaults?${MGMT}`, { token: t2Token });
    const report = p.cli('audit', 'verify');
    assert.equal(report.valid, true);
    const [total, mine] = withDb((db) => [
      (db.prepare('SELECT count(*) AS n FROM audit_log').get() as { n: number }).n,
      (db.prepare("SELECT count(*) AS n FROM audit_log WHERE json_extract(record, '$.tenantId') = ?").get(tid) as { n: number }).n,
    ]);
    assert.ok(report.records < total, `verify reports ${report.records} of ${total} records`);
    // Only verify's own outcome record is written after it counted.
    assert.ok(mine - report.records >= 0 && mine - report.records <= 1, `verify counts this tenant's records (${report.records} of ${mine})`);
  });

  test('cutting records off the end and rewriting the head is caught, also across a restart', async () => {
    // Stopped, so that nothing is appended while the log is cut.
    await p.restart(() => withDb((db) => {
      const last = (db.prepare('SELECT max(seq) AS s FROM audit_log').get() as { s: number }).s;
      db.prepare('DELETE FROM audit_log WHERE seq > ?').run(last - 10);
      const row = db.prepare('SELECT seq, hash FROM audit_log WHERE seq = ?').get(last - 10) as { seq: number; hash: string };
      const head = (db.prepare("SELECT v FROM meta WHERE k = 'audit_head'").get() as { v: string }).v;
      // The attacker keeps the head's shape, pointing it at the new last record.
      db.prepare("UPDATE meta SET v = ? WHERE k = 'audit_head'").run([row.seq, row.hash, ...head.split(':').slice(2)].join(':'));
    }));
    // Started on the cut log, the platform does not launder it: the chain goes on, and verify says what was found.
    const again = p.cliRaw(['audit', 'verify']);
    assert.equal(again.status, 1, again.stdout + again.stderr);
    assert.match(JSON.parse(again.stdout).reason, /at start-up the log's head named record \d+ with an HMAC that does not hold/);
  });
});

describe('configuration fails closed', () => {
  test('a bad setting stops `pgbyok up` with a message naming it', () => {
    const home = mkdtempSync(join(tmpdir(), 'pgbyok-cfg-'));
    try {
      const r = spawnSync(process.execPath, [BIN, 'up'], { env: { ...process.env, PGBYOK_HOME: home, PGBYOK_KEY_MONITOR_INTERVAL_MS: 'soon' }, encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 2, r.stdout + r.stderr);
      assert.match(r.stderr, /PGBYOK_KEY_MONITOR_INTERVAL_MS='soon' is not valid: it must be a whole number from 100 to 3600000/);
      assert.doesNotMatch(r.stdout, /pgbyok is up/);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  test('a domain that is no DNS name stops `pgbyok up` naming PGBYOK_DOMAIN', () => {
    const home = mkdtempSync(join(tmpdir(), 'pgbyok-cfg-'));
    try {
      const r = spawnSync(process.execPath, [BIN, 'up'], { env: { ...process.env, PGBYOK_HOME: home, PGBYOK_DOMAIN: 'not_a..domain' }, encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 2, r.stdout + r.stderr);
      assert.match(r.stderr, /PGBYOK_DOMAIN='not_a\.\.domain' is not valid: it must be a DNS name/);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  test('a second `pgbyok up` on the same home exits at once and says why', async () => {
    const p = await startPgbyok();
    try {
      const started = Date.now();
      const r = spawnSync(process.execPath, [BIN, 'up'], { env: { ...process.env, PGBYOK_HOME: p.home }, encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 2, r.stdout + r.stderr);
      assert.match(r.stderr, /already running on .* \(pid \d+\)/);
      assert.ok(Date.now() - started < 10_000);
      assert.equal(p.cliRaw(['status']).status, 0, 'the first one keeps serving');
    } finally {
      await p.stop();
    }
  });
});
