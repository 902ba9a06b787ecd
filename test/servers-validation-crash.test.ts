/**
 * Servers under a customer-managed key, the hard parts: every rule `server create` validates (each refusal
 * before anything exists), re-wrap on rotation of a versionless key (and none for a pinned version, no data
 * rewritten), re-wrap surviving SIGKILLs of the platform, reconciliation after a kill, and a clean SIGTERM.
 * Everything is observed as a user sees it: the CLI, the activity log, and the real psql.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createIdentity, eventually, MGMT_RESOURCE, startPgbyok, vaultName, VAULT_RESOURCE, type Pgbyok } from './harness.js';

const PASSWORD = 'Passw0rd!x';
const ADMIN = 'dbadmin';
const REWRAP_OP = 'Microsoft.DBforPostgreSQL/flexibleServers/dataEncryption/rewrap';

let p: Pgbyok;

before(async () => {
  p = await startPgbyok({ PGBYOK_KEY_MONITOR_INTERVAL_MS: '1000' });
});

after(async () => {
  await p?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A vault (CMK-ready unless told otherwise), with its URI. */
function mkVault(opts: { retention?: number; purgeProtection?: boolean } = {}): { name: string; uri: string } {
  const name = vaultName();
  const args = ['vault', 'create', '--name', name, '--location', 'eastus', '--retention-days', String(opts.retention ?? 90)];
  if (opts.purgeProtection ?? true) args.push('--enable-purge-protection');
  const v = p.cli(...args);
  return { name, uri: v.properties.vaultUri };
}

function mkKey(vault: { name: string }, key: string, ...extra: string[]): { kid: string; version: string } {
  const k = p.cli('key', 'create', '--vault-name', vault.name, '--name', key, '--kty', 'RSA', '--size', '2048', ...extra);
  return { kid: k.key.kid, version: k.key.kid.split('/').pop() };
}

function allow(vault: { name: string }, principalId: string, perms = ['get', 'list', 'wrapKey', 'unwrapKey']) {
  p.cli('vault', 'set-policy', '--name', vault.name, '--object-id', principalId, '--key-permissions', ...perms);
}

/** One vault + key + identity allowed on it: the ingredients of a CMK server. */
function cmkSetup(prefix: string) {
  const vault = mkVault();
  const key = mkKey(vault, 'kek');
  const idName = `${prefix}-${Date.now().toString(36)}`;
  const id = createIdentity(p, idName);
  allow(vault, id.objectId);
  return { vault, key, idName, id, versionless: `${vault.uri}keys/kek`, versioned: key.kid };
}

function createServer(name: string, keyUri: string, identity: string): any {
  const s = p.cli('server', 'create', '--name', name, '--location', 'eastus', '--admin-user', ADMIN, '--admin-password', PASSWORD, '--key', keyUri, '--identity', identity);
  assert.equal(s.properties.state, 'Ready', `server ${name} is Ready after create`);
  return s;
}

const show = (name: string) => p.cli('server', 'show', '--name', name);
const portOf = (name: string): number => show(name).properties.port;

function psql(port: number, sql: string): { status: number | null; stdout: string; stderr: string } {
  const conn = `host=localhost port=${port} dbname=postgres user=${ADMIN} sslmode=verify-full sslrootcert=${join(p.home, 'tls', 'ca.pem')} connect_timeout=5`;
  const r = spawnSync('psql', [conn, '-XAtc', sql], { env: { ...process.env, PGPASSWORD: PASSWORD }, encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stdout: (r.stdout ?? '').trim(), stderr: r.stderr ?? '' };
}

function psqlOk(port: number, sql: string): string {
  const r = psql(port, sql);
  assert.equal(r.status, 0, `psql failed: ${r.stderr}`);
  return r.stdout;
}

const FINGERPRINT = "SELECT count(*) || ':' || md5(string_agg(id || ',' || v, ';' ORDER BY id)) FROM t";

/** A table with rows; returns its fingerprint (count and md5) and its file path. */
function fillRows(name: string, rows = 2000): { fingerprint: string; filepath: string } {
  const port = portOf(name);
  psqlOk(port, `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, ${rows}) g;`);
  return { fingerprint: psqlOk(port, FINGERPRINT), filepath: psqlOk(port, "SELECT pg_relation_filepath('t')") };
}

/** Waits until the server is Ready and its rows read back exactly as recorded. */
async function readyWithRows(name: string, fingerprint: string, timeoutMs = 20_000): Promise<void> {
  let lastState = '?';
  let lastErr = '';
  await eventually(() => {
    const s = show(name);
    lastState = s.properties.state;
    if (lastState !== 'Ready') return undefined;
    const r = psql(s.properties.port, FINGERPRINT);
    if (r.status !== 0) {
      lastErr = r.stderr;
      return undefined;
    }
    assert.equal(r.stdout, fingerprint, `rows of ${name} intact`);
    return true;
  }, `${name} Ready with its rows (last state ${lastState}, last psql error ${lastErr.trim()})`, timeoutMs);
}

const activityOf = (name: string): any[] => p.cli('activity-log', 'list', '--resource', name, '--top', '500');
const rewraps = (name: string) => activityOf(name).filter((e) => e.operation === REWRAP_OP);

async function killPlatform(): Promise<void> {
  const child = p.child();
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

function deleteServer(name: string) {
  p.cli('server', 'delete', '--name', name, '--yes');
}

const volumesDir = () => join(p.home, 'regions', 'eastus', 'volumes');

// ---------------------------------------------------------------------------------------------------------
// A. Refusals at creation.

/** `server create` with these arguments is refused naming `rule`, and leaves no server and no image behind. */
function assertRefused(name: string, args: string[], rule: RegExp, extra?: RegExp) {
  const r = p.cliRaw(['server', 'create', '--name', name, '--location', 'eastus', ...args]);
  assert.notEqual(r.status, 0, `create ${name} must be refused; stdout: ${r.stdout}`);
  assert.match(r.stderr, rule);
  if (extra) assert.match(r.stderr, extra);
  const servers: any[] = p.cli('server', 'list');
  assert.ok(!servers.some((s) => s.name === name), `${name} must not be listed`);
  const images = existsSync(volumesDir()) ? readdirSync(volumesDir()) : [];
  assert.ok(!images.some((f) => f.startsWith(name)), `no image of ${name}: ${images.join(', ')}`);
  const known = new Set(servers.map((s) => `${s.name}.img`));
  assert.deepEqual(images.filter((f) => !known.has(f)), [], 'no image without a server');
  return r;
}

const cmkArgs = (key: string, identity: string) => ['--admin-user', ADMIN, '--admin-password', PASSWORD, '--key', key, '--identity', identity];

test('A: every rule of a customer-managed key is checked before anything is created', { timeout: 180_000 }, async (t) => {
  const good = cmkSetup('ida');

  await t.test('vault with 30 retention days', () => {
    const v = mkVault({ retention: 30 });
    mkKey(v, 'kek');
    allow(v, good.id.objectId);
    assertRefused('ret30', cmkArgs(`${v.uri}keys/kek`, good.idName), /\(KeyVaultRetentionNot90Days\)/, /90/);
  });

  await t.test('vault without purge protection', () => {
    const v = mkVault({ purgeProtection: false });
    mkKey(v, 'kek');
    allow(v, good.id.objectId);
    assertRefused('nopurge', cmkArgs(`${v.uri}keys/kek`, good.idName), /\(KeyVaultPurgeProtectionDisabled\)/, /purge protection/i);
  });

  await t.test('disabled key', () => {
    mkKey(good.vault, 'disabled', '--disabled');
    assertRefused('keydisabled', cmkArgs(`${good.vault.uri}keys/disabled`, good.idName), /\(KeyDisabled\)/, /disabled/);
  });

  await t.test('key not active yet', () => {
    mkKey(good.vault, 'future', '--not-before', new Date(Date.now() + 3_600_000).toISOString());
    assertRefused('keyfuture', cmkArgs(`${good.vault.uri}keys/future`, good.idName), /\(KeyNotYetActive\)/);
  });

  await t.test('expired key', () => {
    const past = new Date(Date.now() - 3_600_000).toISOString();
    // The vault creates a key whose expiry is past, as Key Vault does; only the server refuses it.
    mkKey(good.vault, 'expired', '--expires', past);
    assertRefused('keyexpired', cmkArgs(`${good.vault.uri}keys/expired`, good.idName), /\(KeyExpired\)/, /expir/);
  });

  await t.test('key without wrapKey/unwrapKey operations', () => {
    mkKey(good.vault, 'signonly', '--ops', 'sign', 'verify');
    assertRefused('keysignonly', cmkArgs(`${good.vault.uri}keys/signonly`, good.idName), /\(KeyOperationNotPermitted\)/, /wrapKey/);
  });

  for (const missing of ['get', 'list', 'wrapKey', 'unwrapKey']) {
    await t.test(`identity without the ${missing} permission`, () => {
      const idName = `no${missing.toLowerCase()}-${Date.now().toString(36)}`;
      const id = createIdentity(p, idName);
      allow(good.vault, id.objectId, ['get', 'list', 'wrapKey', 'unwrapKey'].filter((x) => x !== missing));
      assertRefused(`no${missing.toLowerCase()}`, cmkArgs(good.versionless, idName), /\(IdentityMissingKeyPermissions\)/, new RegExp(`'${missing}'`));
    });
  }

  await t.test('identity with no access policy at all', () => {
    const idName = `nopolicy-${Date.now().toString(36)}`;
    createIdentity(p, idName);
    assertRefused('nopolicy', cmkArgs(good.versionless, idName), /\(IdentityMissingKeyPermissions\)/, /'get'/);
  });

  await t.test('identity that does not exist', () => {
    assertRefused('noidentity', cmkArgs(good.versionless, 'no-such-identity'), /\(IdentityNotFound\)/, /no-such-identity/);
  });

  await t.test('--key without --identity', () => {
    assertRefused('keyonly', ['--admin-user', ADMIN, '--admin-password', PASSWORD, '--key', good.versionless], /\(KeyAndIdentityRequired\)/);
  });

  await t.test('a URI that is not a key URI', () => {
    assertRefused('badkeyuri', cmkArgs(`${good.vault.uri}secrets/kek`, good.idName), /\(InvalidKeyUri\)/, /not a key URI/);
  });

  await t.test('a key in a vault of another tenant', async () => {
    const tenant = p.cli('tenant', 'create', '--name', `t${Date.now()}`);
    const cred = { tenantId: tenant.tenantId, clientId: tenant.admin.appId, clientSecret: tenant.admin.password };
    const mgmt = await p.token(cred, MGMT_RESOURCE);
    const vname = vaultName('xt');
    const v = await p.http('PUT', `${p.origin}/tenants/${tenant.tenantId}/providers/Microsoft.KeyVault/vaults/${vname}?api-version=2023-07-01`, {
      token: mgmt, body: { location: 'eastus', properties: { softDeleteRetentionInDays: 90, enablePurgeProtection: true } },
    });
    assert.ok(v.status === 200 || v.status === 201, `vault in the other tenant: ${v.status} ${v.text}`);
    const vaultUri: string = v.json.properties.vaultUri;
    const k = await p.http('POST', `${vaultUri}keys/k/create?api-version=7.5`, { token: await p.token(cred, VAULT_RESOURCE), body: { kty: 'RSA', key_size: 2048, attributes: {} } });
    assert.equal(k.status, 200, k.text);
    assertRefused('crosstenant', cmkArgs(`${vaultUri}keys/k`, good.idName), /\(CrossTenantKeyVault\)/, /tenant/);
  });

  await t.test('invalid server name', () => {
    assertRefused('S_1', cmkArgs(good.versionless, good.idName), /\(InvalidServerName\)/, /S_1/);
  });

  await t.test('weak administrator password', () => {
    assertRefused('weakpw', ['--admin-user', ADMIN, '--admin-password', 'password', '--key', good.versionless, '--identity', good.idName], /\(InvalidAdministrator\)/, /password/);
  });

  await t.test('reserved administrator login', () => {
    assertRefused('reservedlogin', ['--admin-user', 'postgres', '--admin-password', PASSWORD, '--key', good.versionless, '--identity', good.idName], /\(InvalidAdministrator\)/, /'postgres'/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// B. Rotation.

test('B: a versionless key is followed by a re-wrap on rotation, a pinned version is not; no data is rewritten', { timeout: 240_000 }, async (t) => {
  const c = cmkSetup('idb');
  const pinned = mkKey(c.vault, 'pinned');

  createServer('rot-vl', c.versionless, c.idName);
  createServer('rot-pin', pinned.kid, c.idName);
  const vl = fillRows('rot-vl');
  const pin = fillRows('rot-pin');

  await t.test('update --remove-key on a CMK server is refused and points to restore', () => {
    const r = p.cliRaw(['server', 'update', '--name', 'rot-pin', '--remove-key']);
    assert.notEqual(r.status, 0, r.stdout);
    assert.match(r.stderr, /\(CmkRemovalNotSupported\)/);
    assert.match(r.stderr, /restore/);
    const s = show('rot-pin');
    assert.equal(s.properties.dataEncryption.type, 'AzureKeyVault');
    assert.equal(s.properties.state, 'Ready');
  });

  await t.test('versionless: rotate -> re-wrap, rows and files untouched, works after restart', async () => {
    assert.equal(rewraps('rot-vl').length, 0, 'no re-wrap before any rotation');
    const rotated = p.cli('key', 'rotate', '--vault-name', c.vault.name, '--name', 'kek');
    const newKid: string = rotated.key.kid;
    assert.notEqual(newKid, c.key.kid);
    const entry = await eventually(() => rewraps('rot-vl')[0], 'a re-wrap activity for rot-vl', 10_000);
    assert.match(entry.message, new RegExp(newKid.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')));
    const port = portOf('rot-vl');
    assert.equal(psqlOk(port, FINGERPRINT), vl.fingerprint);
    assert.equal(psqlOk(port, "SELECT pg_relation_filepath('t')"), vl.filepath, 'no data was rewritten');

    p.cli('server', 'restart', '--name', 'rot-vl');
    await readyWithRows('rot-vl', vl.fingerprint);
  });

  await t.test('versionless: with only the old version disabled, the server stops and starts (DEK wrapped by the new one)', async () => {
    p.cli('key', 'set-attributes', '--vault-name', c.vault.name, '--name', 'kek', '--version', c.key.version, '--enabled', 'false');
    await sleep(2500); // two monitor passes: the server must stay Ready
    assert.equal(show('rot-vl').properties.state, 'Ready');
    p.cli('server', 'stop', '--name', 'rot-vl');
    assert.equal(show('rot-vl').properties.state, 'Stopped');
    const started = p.cli('server', 'start', '--name', 'rot-vl');
    assert.equal(started.properties.state, 'Ready');
    await readyWithRows('rot-vl', vl.fingerprint, 5_000);
    assert.equal(psqlOk(portOf('rot-vl'), "SELECT pg_relation_filepath('t')"), vl.filepath);
  });

  await t.test('versioned: rotate -> no re-wrap, keeps working', async () => {
    const before = rewraps('rot-pin').length;
    p.cli('key', 'rotate', '--vault-name', c.vault.name, '--name', 'pinned');
    await sleep(5000);
    assert.equal(rewraps('rot-pin').length, before, 'a pinned key version is never re-wrapped');
    const s = show('rot-pin');
    assert.equal(s.properties.state, 'Ready');
    assert.equal(s.properties.dataEncryption.primaryKeyURI, pinned.kid);
    assert.equal(psqlOk(s.properties.port, FINGERPRINT), pin.fingerprint);
    assert.equal(psqlOk(s.properties.port, "SELECT pg_relation_filepath('t')"), pin.filepath);
  });

  deleteServer('rot-vl');
  deleteServer('rot-pin');
});

// ---------------------------------------------------------------------------------------------------------
// C. Crash safety of re-wrap.

test('C: SIGKILL of the platform at random points of a re-wrap never loses a server or a row', { timeout: 300_000 }, async () => {
  const c = cmkSetup('idc');
  createServer('crash', c.versionless, c.idName);
  const { fingerprint } = fillRows('crash');

  let latest = c.key.kid;
  for (let i = 0; i < 5; i++) {
    latest = p.cli('key', 'rotate', '--vault-name', c.vault.name, '--name', 'kek').key.kid;
    const delay = Math.floor(Math.random() * 1500);
    await sleep(delay);
    await killPlatform();
    await p.restart();
    await readyWithRows('crash', fingerprint).catch((e) => {
      throw new Error(`round ${i + 1} (kill after ${delay} ms): ${(e as Error).message}`);
    });
  }
  // And the rotations are followed in the end: the DEK ends up wrapped by the latest version.
  const escaped = latest.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  await eventually(() => rewraps('crash').some((e) => new RegExp(`-> ${escaped}`).test(e.message)), 're-wrap to the latest version', 15_000);
  await readyWithRows('crash', fingerprint, 5_000);
  deleteServer('crash');
});

// ---------------------------------------------------------------------------------------------------------
// D. Reconciliation after a kill.

let dFingerprints: Record<string, string> = {};

test('D: after a SIGKILL, reconciliation brings back the server whose key is fine and locks the one whose key was disabled', { timeout: 180_000 }, async () => {
  const c1 = cmkSetup('idd1');
  const c2 = cmkSetup('idd2');
  createServer('recon-1', c1.versionless, c1.idName);
  createServer('recon-2', c2.versionless, c2.idName);
  const r1 = fillRows('recon-1');
  const r2 = fillRows('recon-2');
  dFingerprints = { 'recon-1': r1.fingerprint, 'recon-2': r2.fingerprint };

  p.cli('key', 'set-attributes', '--vault-name', c2.vault.name, '--name', 'kek', '--enabled', 'false');
  await killPlatform();
  await p.restart();

  await readyWithRows('recon-1', r1.fingerprint);
  const s2 = await eventually(() => {
    const s = show('recon-2');
    return s.properties.state === 'Inaccessible' ? s : undefined;
  }, 'recon-2 Inaccessible');
  assert.match(s2.properties.inaccessibleReason ?? '', /disabled/);
  const refused = await eventually(() => {
    const r = psql(s2.properties.port, 'SELECT 1');
    return r.status !== 0 && /is inaccessible/.test(r.stderr) ? r : undefined;
  }, 'psql to recon-2 refused with "is inaccessible"', 10_000);
  assert.notEqual(refused.status, 0);

  p.cli('key', 'set-attributes', '--vault-name', c2.vault.name, '--name', 'kek', '--enabled', 'true');
  await readyWithRows('recon-2', r2.fingerprint);
  await readyWithRows('recon-1', r1.fingerprint, 5_000);
});

// ---------------------------------------------------------------------------------------------------------
// E. SIGTERM.

test('E: SIGTERM leaves no mount, loop device or postgres of the home behind; a restart brings every server back', { timeout: 120_000 }, async () => {
  const servers: any[] = p.cli('server', 'list');
  assert.ok(servers.length >= 1, 'there are servers to shut down');
  const fingerprints: Record<string, string> = {};
  for (const s of servers) {
    assert.equal(s.properties.state, 'Ready', `${s.name} is Ready before the SIGTERM`);
    fingerprints[s.name] = dFingerprints[s.name] ?? psqlOk(s.properties.port, FINGERPRINT);
  }

  const child = p.child();
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const token = await p.token(p.admin, MGMT_RESOURCE);
  const restartUrl = `${p.origin}/tenants/${p.admin.tenantId}/providers/Microsoft.DBforPostgreSQL/flexibleServers/${servers[0].name}/restart?api-version=2023-07-01`;
  child.kill('SIGTERM');
  // While the servers are being stopped the API still answers, but takes no new server work.
  const refusals: any[] = [];
  while (child.exitCode === null && child.signalCode === null) {
    const r = await p.http('POST', restartUrl, { token }).catch(() => undefined);
    if (!r) break; // the listener has closed
    if (r.status === 202) await sleep(20); // the signal is not handled yet
    else refusals.push(r);
    if (refusals.length) break;
  }
  assert.equal(refusals.length, 1, 'a server change sent during shutdown was answered');
  assert.equal(refusals[0].status, 503);
  assert.equal(refusals[0].json.error.code, 'ServiceUnavailable');
  assert.match(refusals[0].json.error.message, /shutting down/);
  const code = await Promise.race([exited, sleep(30_000).then(() => 'timeout' as const)]);
  assert.notEqual(code, 'timeout', 'pgbyok up exits after SIGTERM');

  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(p.home));
  assert.deepEqual(mounts, [], 'no mount of the home is left');
  const loops = spawnSync('losetup', ['-a'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.includes(p.home));
  assert.deepEqual(loops, [], 'no loop device of the home is left');
  const postgres = readdirSync('/proc').filter((e) => /^\d+$/.test(e)).filter((pid) => {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      return cmd.includes(p.home) && /postgres/.test(cmd);
    } catch {
      return false;
    }
  });
  assert.deepEqual(postgres, [], 'no PostgreSQL of the home is left');

  await p.restart();
  for (const s of servers) await readyWithRows(s.name, fingerprints[s.name]);
  for (const s of servers) deleteServer(s.name);
});
