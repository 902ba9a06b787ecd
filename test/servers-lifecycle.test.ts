/**
 * Servers with a customer-managed key, end to end against one real platform: real loop devices, fscrypt and
 * PostgreSQL 15, reached with the real `psql`. The key disabled (CLI and official SDK), deleted, expired, its
 * access policy revoked, the identity deleted: the server goes Inaccessible (sessions end, PostgreSQL stops,
 * the volume is locked, the port answers with a PostgreSQL ErrorResponse, an activity entry and an alert
 * are raised) and comes back with every row after revalidation. Also stop/start/restart/delete, adding a
 * CMK online, connection strings, alerts and separation of duties.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { createServer, type Server as HttpServer } from 'node:http';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KeyClient } from '@azure/keyvault-keys';
import { createIdentity, eventually, MGMT_RESOURCE, sdkOptions, startPgbyok, vaultName, type Pgbyok } from './harness.js';

const PASSWORD = 'Passw0rd!x';
const API = 'api-version=2023-07-01';
const REGION = 'eastus';

let p: Pgbyok;
/** One vault for every scenario: each scenario has its own key and identity, so none disturbs another. */
let vault: string;
let vaultUri: string;
/** The longest a `server create` took so far (the expiring key must outlive one). */
let slowestCreateMs = 0;

before(async () => {
  p = await startPgbyok({ PGBYOK_KEY_MONITOR_INTERVAL_MS: '1000', PGBYOK_VAULT_GRACE_MS: '3000' });
  try {
    const v = createVault('srv');
    vault = v.name;
    vaultUri = v.properties.vaultUri;
  } catch (e) {
    await p.stop();
    throw e;
  }
});

after(async () => {
  if (!p) return;
  // A platform that died under the tests: show why before its home is removed.
  const child = p.child();
  if (child.exitCode !== null || child.signalCode !== null) {
    const log = join(p.home, 'logs', 'pgbyok.log');
    const tail = existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-40).join('\n') : '(no log)';
    process.stderr.write(`pgbyok up exited (${child.exitCode ?? child.signalCode}) during the tests; end of its log:\n${tail}\n`);
  }
  await p.stop();
});

// ---------------------------------------------------------------------------------------------------------
// Helpers

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function connInfo(port: number): string {
  return `host=localhost port=${port} dbname=postgres user=dbadmin sslmode=verify-full sslrootcert=${join(p.home, 'tls', 'ca.pem')}`;
}

/** Runs SQL through the real psql; throws (with psql's stderr) when it fails. */
function psql(port: number, sql: string): string {
  return execFileSync('psql', [connInfo(port), '-XAtc', sql, '-v', 'ON_ERROR_STOP=1'], {
    env: { ...process.env, PGPASSWORD: PASSWORD }, encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

function psqlRaw(port: number, sql: string) {
  const r = spawnSync('psql', [connInfo(port), '-XAtc', sql], { env: { ...process.env, PGPASSWORD: PASSWORD }, encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Writes marker rows; returns what every later read must find. */
function seed(port: number, marker: string, n = 500): string {
  psql(port, `CREATE TABLE t (id serial PRIMARY KEY, note text NOT NULL); INSERT INTO t (note) SELECT '${marker}-' || g || '-' || md5(g::text) FROM generate_series(1, ${n}) g;`);
  const snap = snapshot(port);
  assert.match(snap, new RegExp(`^${n}:[0-9a-f]{32}$`));
  return snap;
}

/** Every row read back: the count and the md5 of all of them in order. */
function snapshot(port: number): string {
  return psql(port, "SELECT count(*) || ':' || md5(string_agg(note, ',' ORDER BY id)) FROM t");
}

let mgmtToken: { token: string; until: number } | undefined;
async function adminMgmtToken(): Promise<string> {
  if (!mgmtToken || mgmtToken.until < Date.now()) mgmtToken = { token: await p.token(p.admin, MGMT_RESOURCE), until: Date.now() + 20 * 60_000 };
  return mgmtToken.token;
}

/** `server show` over the management API (the CLI's own call), without blocking the event loop. */
async function show(name: string): Promise<any> {
  const res = await p.http('GET', `${p.origin}/tenants/${p.admin.tenantId}/providers/Microsoft.DBforPostgreSQL/flexibleServers/${name}?${API}`, { token: await adminMgmtToken() });
  if (res.status !== 200) throw new Error(`server show ${name}: HTTP ${res.status} ${res.text}`);
  return res.json;
}

/** Polls the server every 200 ms until `pred` holds; fails with the last state seen. */
async function waitServer(name: string, pred: (s: any) => boolean, what: string, timeoutMs = 15_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  let last: any;
  while (Date.now() < deadline) {
    last = await show(name);
    if (pred(last)) return last;
    await sleep(200);
  }
  assert.fail(`server ${name}: timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${JSON.stringify(last?.properties)}`);
}

const isState = (state: string) => (s: any) => s.properties.state === state;

/** A vault a customer key may live in: soft-delete for 90 days and purge protection. */
function createVault(prefix: string): any {
  return p.cli('vault', 'create', '--name', vaultName(prefix), '--location', REGION, '--retention-days', '90', '--enable-purge-protection');
}

/** A fresh identity with a fresh key (in the shared vault unless told), and the access policy a server needs. */
function cmkSetup(tag: string, keyArgs: string[] = [], inVault = vault) {
  const identityName = `id-${tag}`;
  const identity = createIdentity(p, identityName);
  p.cli('vault', 'set-policy', '--name', inVault, '--object-id', identity.objectId, '--key-permissions', 'get', 'list', 'wrapKey', 'unwrapKey');
  const keyName = `kek-${tag}`;
  const key = p.cli('key', 'create', '--vault-name', inVault, '--name', keyName, ...keyArgs);
  const keyUri = String(key.key.kid).replace(/\/[^/]+$/, '');
  return { identity, identityName, keyName, keyUri };
}

function createServer_(name: string, extra: string[]): any {
  const started = Date.now();
  const s = p.cli('server', 'create', '--name', name, '--location', REGION, '--admin-user', 'dbadmin', '--admin-password', PASSWORD, ...extra);
  slowestCreateMs = Math.max(slowestCreateMs, Date.now() - started);
  assert.equal(s.name, name);
  assert.equal(s.properties.state, 'Ready');
  assert.equal(s.properties.administratorLogin, 'dbadmin');
  // Its own DNS name under the domain, which its certificate covers (verify-full checks the name).
  assert.equal(s.properties.fullyQualifiedDomainName, `${name}.postgres.database.localhost`);
  assert.ok(Number.isInteger(s.properties.port) && s.properties.port > 0);
  const viaName = execFileSync('psql', [connInfo(s.properties.port).replace('host=localhost', `host=${s.properties.fullyQualifiedDomainName}`), '-XAtc', 'SELECT 1'], {
    env: { ...process.env, PGPASSWORD: PASSWORD }, encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
  assert.equal(viaName, '1');
  return s;
}

function createCmkServer(name: string, keyUri: string, identityName: string): any {
  const s = createServer_(name, ['--key', keyUri, '--identity', identityName]);
  const enc = s.properties.dataEncryption;
  assert.equal(enc.type, 'AzureKeyVault');
  assert.equal(enc.primaryKeyURI, keyUri);
  assert.match(enc.primaryUserAssignedIdentityId, new RegExp(`/userAssignedIdentities/${identityName}$`));
  assert.equal(enc.primaryEncryptionKeyStatus, 'Valid');
  return s;
}

/** Best-effort removal of a server a failed test left behind (keeps loop devices few). */
function dropQuietly(name: string): void {
  const r = p.cliRaw(['server', 'delete', '--name', name, '--yes']);
  void r;
}

const volumeImage = (name: string) => join(p.home, 'regions', REGION, 'volumes', `${name}.img`);
const mountpoint = (name: string) => join(p.home, 'regions', REGION, 'mnt', name);

function mountsUnder(prefix: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m): m is string => !!m && (m === prefix || m.startsWith(prefix + '/')));
}

/** PIDs of PostgreSQL processes whose command line names this server's volume. */
function postgresOf(name: string): number[] {
  const needle = mountpoint(name) + '/';
  const pids: number[] = [];
  for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(needle) && /postgres/.test(cmd)) pids.push(Number(pid));
    } catch {
      // Gone.
    }
  }
  return pids;
}

/**
 * Locked: PostgreSQL is gone and the encrypted directory shows only ciphertext names. The port refuses from
 * the moment the platform decides to lock, before PostgreSQL has stopped (within its 2 s key-loss stop).
 */
async function assertLocked(name: string): Promise<void> {
  await eventually(() => postgresOf(name).length === 0, `PostgreSQL of ${name} to stop`, 10_000, 100).catch(() => undefined);
  assert.deepEqual(postgresOf(name), [], 'PostgreSQL of the server is stopped');
  // The key leaves the kernel right after PostgreSQL has stopped.
  const dataDir = join(mountpoint(name), 'data');
  const plainNames = () => (existsSync(dataDir) ? readdirSync(dataDir) : []).includes('pgdata');
  await eventually(() => !plainNames(), `the DEK of ${name} to leave the kernel`, 10_000, 100).catch(() => undefined);
  if (existsSync(dataDir)) {
    const names = readdirSync(dataDir);
    assert.ok(!names.includes('pgdata'), `the data directory is locked (names are ciphertext): ${names.join(',')}`);
  }
}

/**
 * After access is lost: the port answers with pgbyok's refusal, in PostgreSQL's protocol. The key check that
 * notices the loss runs on the monitor's schedule, so psql is retried for a few seconds.
 */
async function expectInaccessibleAnswer(port: number): Promise<string> {
  const deadline = Date.now() + 10_000;
  let last = { status: 0 as number | null, stdout: '', stderr: '' };
  while (Date.now() < deadline) {
    last = psqlRaw(port, 'SELECT 1');
    if (last.status !== 0 && /is inaccessible/.test(last.stderr)) break;
    await sleep(250);
  }
  assert.notEqual(last.status, 0, 'psql must fail on an Inaccessible server');
  assert.match(last.stderr, /is inaccessible/);
  assert.match(last.stderr, /customer-managed key/);
  return last.stderr;
}

/** Access is back: the key monitor alone must bring the server back (no revalidate is sent). */
async function backToReady(name: string): Promise<any> {
  return waitServer(name, isState('Ready'), 'Ready again by the key monitor alone, without revalidate', 20_000);
}

function assertReadyValid(s: any): void {
  assert.equal(s.properties.state, 'Ready');
  assert.equal(s.properties.dataEncryption.primaryEncryptionKeyStatus, 'Valid');
  assert.equal(s.properties.inaccessibleReason, undefined);
}

// ---------------------------------------------------------------------------------------------------------
// Scenarios

test('1. key disabled with the CLI: Inaccessible within seconds (sessions ended, PostgreSQL stopped, volume locked, a PostgreSQL ErrorResponse on the port, health, activity log); re-enable + revalidate brings every row back', async () => {
  const name = 'srv-disable-cli';
  const { keyName, keyUri, identityName } = cmkSetup('s1');
  try {
    const s = createCmkServer(name, keyUri, identityName);
    const port = s.properties.port;
    const rows = seed(port, `MARKER-${name}`);

    // An open session that must be ended.
    const session = spawn('psql', [connInfo(port), '-XAtc', 'SELECT pg_sleep(120)'], { env: { ...process.env, PGPASSWORD: PASSWORD }, stdio: 'ignore' });
    const sessionEnded = new Promise<number | null>((r) => session.once('exit', (code) => r(code)));
    const sessionDeadline = Date.now() + 10_000;
    while (psql(port, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'") === '0') {
      assert.ok(Date.now() < sessionDeadline, 'the long session started');
      await sleep(100);
    }

    const t0 = Date.now();
    p.cli('key', 'set-attributes', '--vault-name', vault, '--name', keyName, '--enabled', 'false');
    const down = await waitServer(name, isState('Inaccessible'), 'Inaccessible after the key was disabled', 15_000);
    assert.ok(Date.now() - t0 < 15_000);
    assert.equal(down.properties.dataEncryption.primaryEncryptionKeyStatus, 'Invalid');
    assert.match(down.properties.inaccessibleReason, /disabled/);
    const viaCli = p.cli('server', 'show', '--name', name);
    assert.equal(viaCli.properties.state, 'Inaccessible');
    assert.equal(viaCli.properties.dataEncryption.primaryEncryptionKeyStatus, 'Invalid');
    assert.match(viaCli.properties.inaccessibleReason, /disabled/);

    const stderr = await expectInaccessibleAnswer(port);
    assert.match(stderr, /disabled/, 'the refusal carries the reason');
    const code = await Promise.race([sessionEnded, sleep(15_000).then(() => 'still running' as const)]);
    if (code === 'still running') session.kill('SIGKILL');
    assert.notEqual(code, 'still running', 'the open session was terminated');
    assert.notEqual(code, 0, 'the open session ended with an error');
    await assertLocked(name);
    assert.ok(existsSync(volumeImage(name)));

    const health = p.cli('server', 'health', '--name', name);
    assert.equal(health.state, 'Inaccessible');
    assert.match(health.reason, /disabled/);
    assert.equal(health.primaryEncryptionKeyStatus, 'Invalid');

    const log = p.cli('activity-log', 'list', '--resource', name);
    const entry = log.find((e: any) => /\/inaccessible$/.test(e.operation));
    assert.ok(entry, `an activity entry for going Inaccessible: ${JSON.stringify(log.map((e: any) => e.operation))}`);
    assert.match(entry.message, /disabled/);

    // Revalidate while still disabled: refused, stays Inaccessible.
    const early = p.cliRaw(['server', 'revalidate', '--name', name]);
    assert.notEqual(early.status, 0, 'revalidation cannot succeed while the key is disabled');
    assert.equal((await show(name)).properties.state, 'Inaccessible');

    p.cli('key', 'set-attributes', '--vault-name', vault, '--name', keyName, '--enabled', 'true');
    const back = p.cli('server', 'revalidate', '--name', name);
    assertReadyValid(back);
    assert.equal(snapshot(port), rows, 'every row is back');
  } finally {
    dropQuietly(name);
  }
});

test('2. key disabled and re-enabled with the official Azure SDK: Inaccessible, then Ready again by the key monitor alone, every row intact', async () => {
  const name = 'srv-disable-sdk';
  const { keyName, keyUri, identityName } = cmkSetup('s2');
  try {
    const s = createCmkServer(name, keyUri, identityName);
    const port = s.properties.port;
    const rows = seed(port, `MARKER-${name}`);
    const client = new KeyClient(vaultUri, p.credential(p.admin), sdkOptions(p));

    const disabled = await client.updateKeyProperties(keyName, { enabled: false });
    assert.equal(disabled.properties.enabled, false);
    const down = await waitServer(name, isState('Inaccessible'), 'Inaccessible after the SDK disabled the key', 15_000);
    assert.equal(down.properties.dataEncryption.primaryEncryptionKeyStatus, 'Invalid');
    assert.match(down.properties.inaccessibleReason, /disabled/);
    await expectInaccessibleAnswer(port);

    const enabled = await client.updateKeyProperties(keyName, { enabled: true });
    assert.equal(enabled.properties.enabled, true);
    // No revalidate: the monitor sees access return and brings the server back by itself.
    const back = await waitServer(name, isState('Ready'), 'Ready again without revalidate', 20_000);
    assertReadyValid(back);
    assert.equal(snapshot(port), rows, 'every row is back');
    const log = p.cli('activity-log', 'list', '--resource', name);
    assert.ok(log.some((e: any) => /\/available$/.test(e.operation)), 'the automatic return is in the activity log');
  } finally {
    dropQuietly(name);
  }
});

test('3. key deleted: Inaccessible; key recovered: Ready again with every row', async () => {
  const name = 'srv-key-deleted';
  const { keyName, keyUri, identityName } = cmkSetup('s3');
  try {
    const s = createCmkServer(name, keyUri, identityName);
    const port = s.properties.port;
    const rows = seed(port, `MARKER-${name}`);

    const deleted = p.cli('key', 'delete', '--vault-name', vault, '--name', keyName);
    assert.ok(deleted.recoveryId);
    const down = await waitServer(name, isState('Inaccessible'), 'Inaccessible after the key was deleted', 15_000);
    assert.equal(down.properties.dataEncryption.primaryEncryptionKeyStatus, 'Invalid');
    assert.match(down.properties.inaccessibleReason, /not exist|deleted|not found/i);
    await expectInaccessibleAnswer(port);
    await assertLocked(name);

    p.cli('key', 'recover', '--vault-name', vault, '--name', keyName);
    const back = await backToReady(name);
    assertReadyValid(back);
    assert.equal(snapshot(port), rows, 'every row is back');
  } finally {
    dropQuietly(name);
  }
});

test('4. access policy revoked: Inaccessible; policy restored: Ready again with every row', async () => {
  const name = 'srv-policy';
  const { identity, keyUri, identityName } = cmkSetup('s4');
  try {
    const s = createCmkServer(name, keyUri, identityName);
    const port = s.properties.port;
    const rows = seed(port, `MARKER-${name}`);

    p.cli('vault', 'delete-policy', '--name', vault, '--object-id', identity.objectId);
    const down = await waitServer(name, isState('Inaccessible'), 'Inaccessible after the access policy was revoked', 15_000);
    assert.equal(down.properties.dataEncryption.primaryEncryptionKeyStatus, 'Invalid');
    assert.match(down.properties.inaccessibleReason, /permission/i);
    await expectInaccessibleAnswer(port);

    p.cli('vault', 'set-policy', '--name', vault, '--object-id', identity.objectId, '--key-permissions', 'get', 'list', 'wrapKey', 'unwrapKey');
    const back = await backToReady(name);
    assertReadyValid(back);
    assert.equal(snapshot(port), rows, 'every row is back');
  } finally {
    dropQuietly(name);
  }
});

test('5. identity deleted: Inaccessible; a new identity given to the server brings it back Ready with every row', async () => {
  const name = 'srv-identity';
  const { keyUri, identityName } = cmkSetup('s5');
  try {
    const s = createCmkServer(name, keyUri, identityName);
    const port = s.properties.port;
    const rows = seed(port, `MARKER-${name}`);

    p.cli('identity', 'delete', '--name', identityName);
    const down = await waitServer(name, isState('Inaccessible'), 'Inaccessible after the identity was deleted', 15_000);
    assert.equal(down.properties.dataEncryption.primaryEncryptionKeyStatus, 'Invalid');
    assert.match(down.properties.inaccessibleReason, /identity/i);
    await expectInaccessibleAnswer(port);

    const replacement = createIdentity(p, 'id-s5-new');
    p.cli('vault', 'set-policy', '--name', vault, '--object-id', replacement.objectId, '--key-permissions', 'get', 'list', 'wrapKey', 'unwrapKey');
    const updated = p.cli('server', 'update', '--name', name, '--identity', 'id-s5-new');
    assertReadyValid(updated);
    assert.equal(updated.properties.dataEncryption.primaryKeyURI, keyUri);
    assert.equal(updated.properties.dataEncryption.primaryUserAssignedIdentityId, replacement.id);
    assert.equal(snapshot(port), rows, 'every row is back');
    // And it stays Ready under the monitor with the new identity.
    await sleep(2500);
    assertReadyValid(await show(name));
  } finally {
    dropQuietly(name);
  }
});

test('6. key expiry: Inaccessible once the key expires; expiry extended: Ready again with every row', async () => {
  const name = 'srv-expiry';
  const identity = createIdentity(p, 'id-s6');
  p.cli('vault', 'set-policy', '--name', vault, '--object-id', identity.objectId, '--key-permissions', 'get', 'list', 'wrapKey', 'unwrapKey');
  // 8 s, or longer when this machine needs longer to create a server and write rows.
  const lifetimeMs = Math.max(8_000, slowestCreateMs + 5_000);
  const expires = new Date(Date.now() + lifetimeMs);
  const key = p.cli('key', 'create', '--vault-name', vault, '--name', 'kek-s6', '--expires', expires.toISOString());
  assert.equal(key.attributes.exp, Math.floor(expires.getTime() / 1000));
  const keyUri = String(key.key.kid).replace(/\/[^/]+$/, '');
  try {
    const s = createCmkServer(name, keyUri, 'id-s6');
    const port = s.properties.port;
    assert.ok(Date.now() < expires.getTime(), 'the server was created before the key expired');
    const rows = seed(port, `MARKER-${name}`);
    assert.ok(Date.now() < expires.getTime() - 500, 'rows written before the key expired');

    const down = await waitServer(name, isState('Inaccessible'), 'Inaccessible after the key expired', expires.getTime() - Date.now() + 15_000);
    assert.ok(Date.now() >= expires.getTime() - 1000, 'not before the expiry');
    assert.equal(down.properties.dataEncryption.primaryEncryptionKeyStatus, 'Invalid');
    assert.match(down.properties.inaccessibleReason, /expired/);
    await expectInaccessibleAnswer(port);

    p.cli('key', 'set-attributes', '--vault-name', vault, '--name', 'kek-s6', '--expires', new Date(Date.now() + 86_400_000).toISOString());
    const back = await backToReady(name);
    assertReadyValid(back);
    assert.equal(snapshot(port), rows, 'every row is back');
  } finally {
    dropQuietly(name);
  }
});

test('7. stop, start, restart, delete: a stopped server is locked; delete destroys the volume and leaves no mount or loop device', async () => {
  const name = 'srv-lifecycle';
  const { keyUri, identityName } = cmkSetup('s7');
  try {
    const s = createCmkServer(name, keyUri, identityName);
    const port = s.properties.port;
    const rows = seed(port, `MARKER-${name}`);

    const stopped = p.cli('server', 'stop', '--name', name);
    assert.equal(stopped.properties.state, 'Stopped');
    assert.equal((await show(name)).properties.state, 'Stopped');
    assert.notEqual(psqlRaw(port, 'SELECT 1').status, 0, 'psql fails on a stopped server');
    assert.ok(existsSync(volumeImage(name)), 'the image stays');
    await assertLocked(name);
    assert.equal(p.cli('server', 'health', '--name', name).state, 'Stopped');

    const started = p.cli('server', 'start', '--name', name);
    assertReadyValid(started);
    assert.equal(snapshot(port), rows, 'every row after start');

    const restarted = p.cli('server', 'restart', '--name', name);
    assertReadyValid(restarted);
    assert.equal(snapshot(port), rows, 'every row after restart');

    const deleted = p.cliRaw(['server', 'delete', '--name', name, '--yes']);
    assert.equal(deleted.status, 0, deleted.stderr);
    const gone = p.cliRaw(['server', 'show', '--name', name]);
    assert.notEqual(gone.status, 0);
    assert.match(gone.stderr, /not found/i);
    assert.equal(existsSync(volumeImage(name)), false, 'the image is destroyed');
    assert.deepEqual(mountsUnder(mountpoint(name)), [], 'no mount of the server remains');
    const live = new Set((p.cli('server', 'list') as any[]).map((x) => x.name));
    const strays = mountsUnder(p.home).filter((m) => !live.has(m.split('/').pop()!));
    assert.deepEqual(strays, [], 'no mount under the home belongs to no server');
    const loops = execFileSync('losetup', ['-a'], { encoding: 'utf8' });
    assert.ok(!loops.includes(volumeImage(name)), `no loop device for the image: ${loops}`);
    assert.deepEqual(postgresOf(name), []);
  } finally {
    dropQuietly(name);
  }
});

test('8. a server without a customer key gets one online; the key then governs it; removing it is refused', async () => {
  const name = 'srv-add-cmk';
  const { keyName, keyUri, identityName, identity } = cmkSetup('s8');
  try {
    const s = createServer_(name, []);
    assert.equal(s.properties.dataEncryption.type, 'SystemManaged');
    const port = s.properties.port;
    const rows = seed(port, `MARKER-${name}`);

    const updated = p.cli('server', 'update', '--name', name, '--key', keyUri, '--identity', identityName);
    assert.equal(updated.properties.state, 'Ready');
    assert.equal(updated.properties.dataEncryption.type, 'AzureKeyVault');
    assert.equal(updated.properties.dataEncryption.primaryKeyURI, keyUri);
    assert.equal(updated.properties.dataEncryption.primaryUserAssignedIdentityId, identity.id);
    assert.equal(updated.properties.dataEncryption.primaryEncryptionKeyStatus, 'Valid');
    assert.equal(snapshot(port), rows, 'every row after adding the key');

    const removal = p.cliRaw(['server', 'update', '--name', name, '--remove-key']);
    assert.notEqual(removal.status, 0, 'removing the customer key is refused');
    assert.match(removal.stderr, /restore/i);
    assert.equal((await show(name)).properties.dataEncryption.type, 'AzureKeyVault');

    p.cli('key', 'set-attributes', '--vault-name', vault, '--name', keyName, '--enabled', 'false');
    const down = await waitServer(name, isState('Inaccessible'), 'Inaccessible after the added key was disabled', 15_000);
    assert.equal(down.properties.dataEncryption.primaryEncryptionKeyStatus, 'Invalid');
    assert.match(down.properties.inaccessibleReason, /disabled/);
    await expectInaccessibleAnswer(port);

    p.cli('key', 'set-attributes', '--vault-name', vault, '--name', keyName, '--enabled', 'true');
    assertReadyValid(await backToReady(name));
    assert.equal(snapshot(port), rows, 'every row is back');
  } finally {
    dropQuietly(name);
  }
});

test('9. show-connection-string gives a psql command that connects as is; server list -o table lists the server', () => {
  const name = 'srv-connstr';
  const { keyUri, identityName } = cmkSetup('s9');
  try {
    const s = createCmkServer(name, keyUri, identityName);
    const cs = p.cli('server', 'show-connection-string', '--name', name).connectionStrings;
    assert.match(cs.psql, /^psql "[^"]+"$/);
    assert.ok(cs.psql.includes(`port=${s.properties.port}`));
    // Run exactly what was printed; only the password comes from the environment.
    const out = execFileSync('bash', ['-c', `${cs.psql} -XAtc "SELECT current_user || ':' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"`], {
      env: { ...process.env, PGPASSWORD: PASSWORD }, encoding: 'utf8', timeout: 30_000,
    }).trim();
    assert.equal(out, 'dbadmin:true', 'connected as the administrator, over TLS');

    const table = p.cliRaw(['server', 'list', '-o', 'table']);
    assert.equal(table.status, 0, table.stderr);
    assert.match(table.stdout, new RegExp(`${name}\\s+${REGION}\\s+Ready\\s+${s.properties.port}\\s+AzureKeyVault\\s+Valid`));
  } finally {
    dropQuietly(name);
  }
});

test('10. an alert rule on ServerInaccessible POSTs the common alert schema to the action group webhook', async () => {
  const name = 'srv-alerts';
  const posts: any[] = [];
  const hook: HttpServer = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      try {
        posts.push({ path: req.url, body: JSON.parse(body) });
      } catch {
        posts.push({ path: req.url, raw: body });
      }
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(hook.address() as { port: number }).port}/alerts`;
  try {
    const { keyName, keyUri, identityName } = cmkSetup('s10');
    p.cli('monitor', 'action-group', 'create', '--name', 'ag', '--webhook', url);
    p.cli('monitor', 'alert', 'create', '--name', 'a1', '--action-group', 'ag', '--condition', 'ServerInaccessible');
    const s = createCmkServer(name, keyUri, identityName);
    const resourceId = s.id;
    assert.match(resourceId, new RegExp(`/providers/Microsoft\\.DBforPostgreSQL/flexibleServers/${name}$`));

    p.cli('key', 'set-attributes', '--vault-name', vault, '--name', keyName, '--enabled', 'false');
    await waitServer(name, isState('Inaccessible'), 'Inaccessible', 15_000);
    const deadline = Date.now() + 15_000;
    let alert: any;
    while (!alert && Date.now() < deadline) {
      alert = posts.find((x) => x.body?.data?.essentials?.alertTargetIDs?.includes(resourceId));
      if (!alert) await sleep(200);
    }
    assert.ok(alert, `an alert for ${resourceId} reached the webhook; received: ${JSON.stringify(posts)}`);
    assert.equal(alert.body.schemaId, 'azureMonitorCommonAlertSchema');
    assert.equal(alert.body.data.essentials.alertRule, 'a1');
    assert.equal(alert.body.data.essentials.monitorCondition, 'Fired');
    assert.match(alert.body.data.alertContext.operationName, /\/inaccessible$/);

    p.cli('key', 'set-attributes', '--vault-name', vault, '--name', keyName, '--enabled', 'true');
    await backToReady(name);
  } finally {
    p.cliRaw(['monitor', 'alert', 'delete', '--name', 'a1']);
    p.cliRaw(['monitor', 'action-group', 'delete', '--name', 'ag']);
    dropQuietly(name);
    hook.closeAllConnections();
    hook.close();
  }
});

test('11. separation of duties: a security officer cannot see or create servers; a DBA creates one but cannot touch keys or access policies', () => {
  const name = 'srv-dba';
  const { keyName, keyUri, identityName, identity } = cmkSetup('s11');
  const so = p.cli('sp', 'create', '--name', 'so-servers');
  const dba = p.cli('sp', 'create', '--name', 'dba-servers');
  p.cli('role', 'assign', '--assignee', so.objectId, '--role', 'Security Officer');
  p.cli('role', 'assign', '--assignee', dba.objectId, '--role', 'DBA');
  const as = <T>(who: any, fn: () => T): T => {
    const login = p.cliRaw(['login', '--client-id', who.appId, '--client-secret', who.password]);
    assert.equal(login.status, 0, login.stderr);
    try {
      return fn();
    } finally {
      const out = p.cliRaw(['logout']);
      assert.equal(out.status, 0, out.stderr);
    }
  };
  try {
    // The security officer keeps keys, not servers.
    as(so, () => {
      const create = p.cliRaw(['server', 'create', '--name', 'srv-by-so', '--location', REGION, '--admin-user', 'dbadmin', '--admin-password', PASSWORD, '--key', keyUri, '--identity', identityName]);
      assert.notEqual(create.status, 0, 'a security officer cannot create a server');
      assert.match(create.stderr, /\(AuthorizationFailed\)/);
      const showIt = p.cliRaw(['server', 'show', '--name', 'srv-by-so']);
      assert.notEqual(showIt.status, 0);
      assert.match(showIt.stderr, /\(AuthorizationFailed\)/);
      const list = p.cliRaw(['server', 'list']);
      assert.notEqual(list.status, 0, 'a security officer cannot list servers');
      assert.match(list.stderr, /\(AuthorizationFailed\)/);
    });
    assert.notEqual(p.cliRaw(['server', 'show', '--name', 'srv-by-so']).status, 0, 'nothing was created');

    // The DBA keeps servers, not keys.
    as(dba, () => {
      const created = createCmkServer(name, keyUri, identityName);
      assert.equal(created.properties.dataEncryption.primaryUserAssignedIdentityId, identity.id);
      const showIt = p.cliRaw(['server', 'show', '--name', name]);
      assert.equal(showIt.status, 0, showIt.stderr);
      const disable = p.cliRaw(['key', 'set-attributes', '--vault-name', vault, '--name', keyName, '--enabled', 'false']);
      assert.notEqual(disable.status, 0, 'a DBA cannot disable the key');
      assert.match(disable.stderr, /Forbidden|AccessDenied|does not have keys/);
      const policy = p.cliRaw(['vault', 'set-policy', '--name', vault, '--object-id', dba.objectId, '--key-permissions', 'all']);
      assert.notEqual(policy.status, 0, 'a DBA cannot grant itself key permissions');
      assert.match(policy.stderr, /AuthorizationFailed/);
    });
    const keyNow = p.cli('key', 'show', '--vault-name', vault, '--name', keyName);
    assert.equal(keyNow.attributes.enabled, true, 'the key was not touched');
    const policies = p.cli('vault', 'show', '--name', vault).properties.accessPolicies;
    assert.ok(!policies.some((a: any) => a.objectId === dba.objectId && a.permissions.keys.length), 'the DBA got no access policy');
    assert.equal(p.cli('server', 'show', '--name', name).properties.state, 'Ready');
  } finally {
    p.cliRaw(['logout']);
    dropQuietly(name);
  }
});

test('12. the vault firewall closed to the platform: Inaccessible; reopened: Ready again with every row', async () => {
  const name = 'srv-firewall';
  // Its own vault: closing a firewall would disturb every other scenario's key.
  const fwVault = createVault('fw').name;
  const { keyUri, identityName } = cmkSetup('s12', [], fwVault);
  try {
    const s = createCmkServer(name, keyUri, identityName);
    const port = s.properties.port;
    const rows = seed(port, `MARKER-${name}`);

    const closed = p.cli('vault', 'update', '--name', fwVault, '--default-action', 'Deny', '--bypass', 'None');
    assert.equal(closed.properties.networkAcls.defaultAction, 'Deny');
    const down = await waitServer(name, isState('Inaccessible'), 'Inaccessible after the firewall closed', 15_000);
    assert.equal(down.properties.dataEncryption.primaryEncryptionKeyStatus, 'Invalid');
    assert.match(down.properties.inaccessibleReason, /firewall/);
    await expectInaccessibleAnswer(port);
    await assertLocked(name);

    p.cli('vault', 'update', '--name', fwVault, '--default-action', 'Allow');
    const back = await backToReady(name);
    assertReadyValid(back);
    assert.equal(snapshot(port), rows, 'every row is back');
  } finally {
    dropQuietly(name);
  }
});

test('13. the vault deleted: Inaccessible (its name answers VaultNotFound, which no grace period waits out); vault recovered: Ready again with every row', async () => {
  const name = 'srv-vault-gone';
  const goneVault = createVault('gone').name;
  const { keyUri, identityName } = cmkSetup('s13', [], goneVault);
  try {
    const s = createCmkServer(name, keyUri, identityName);
    const port = s.properties.port;
    const rows = seed(port, `MARKER-${name}`);
    p.cli('vault', 'delete', '--name', goneVault);
    // The one vault listener still answers the name, definitively: the vault does not exist. Only a vault that
    // cannot be reached at all (a transport failure, a 5xx) gets the grace period (unit-grace).
    const down = await waitServer(name, isState('Inaccessible'), 'Inaccessible once the vault is deleted', 20_000);
    assert.match(down.properties.inaccessibleReason, /vault was deleted|vault does not exist/);
    await expectInaccessibleAnswer(port);
    await assertLocked(name);

    p.cli('vault', 'recover', '--name', goneVault);
    const back = await backToReady(name);
    assertReadyValid(back);
    assert.equal(snapshot(port), rows, 'every row is back');
  } finally {
    dropQuietly(name);
  }
});
