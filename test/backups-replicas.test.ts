/**
 * Encrypted backups, point-in-time restore, read replicas and geo-redundant backup under customer keys,
 * on a real platform (root, loop devices, fscrypt, PostgreSQL 15).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createIdentity, eventually, fileContains, startPgbyok, vaultName, type Pgbyok } from './harness.js';

let p: Pgbyok;
const PASSWORD = 'Passw0rd!x';
const MARKER = `BACKUP-MARKER-${Date.now().toString(36)}`;

before(async () => {
  p = await startPgbyok({ PGBYOK_ARCHIVE_INTERVAL_MS: '500', PGBYOK_KEY_MONITOR_INTERVAL_MS: '1000' });
});
after(async () => p?.stop());

interface Cmk { vault: string; keyUri: string; identity: string; objectId: string }

/** An identity, a CMK-ready vault (90 days, purge protection) and a key in a region, with the policy. */
function cmk(region = 'eastus', tag = 'k'): Cmk {
  const identity = `id-${tag}-${Date.now().toString(36)}`;
  const id = p.cli('identity', 'create', '--name', identity, '--location', region);
  const vault = vaultName(tag);
  p.cli('vault', 'create', '--name', vault, '--location', region, '--retention-days', '90', '--enable-purge-protection');
  const k = p.cli('key', 'create', '--vault-name', vault, '--name', 'kek');
  p.cli('vault', 'set-policy', '--name', vault, '--object-id', id.principalId, '--key-permissions', 'get', 'list', 'wrapKey', 'unwrapKey');
  return { vault, keyUri: k.key.kid.replace(/\/[0-9a-f]{32}$/, ''), identity, objectId: id.principalId };
}

function createServer(name: string, c?: Cmk, extra: string[] = []) {
  return p.cli('server', 'create', '--name', name, '--location', 'eastus', '--admin-user', 'dbadmin', '--admin-password', PASSWORD,
    ...(c ? ['--key', c.keyUri, '--identity', c.identity] : []), ...extra);
}

function psql(port: number, sql: string): string {
  return execFileSync('psql', [`host=localhost port=${port} dbname=postgres user=dbadmin sslmode=verify-full sslrootcert=${p.home}/tls/ca.pem`, '-XAtc', sql], {
    env: { ...process.env, PGPASSWORD: PASSWORD }, encoding: 'utf8',
  }).trim();
}

const portOf = (name: string) => p.cli('server', 'show', '--name', name).properties.port as number;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function storeFiles(region: string): string[] {
  const root = join(p.home, 'regions', region, 'backups');
  const walk = (d: string): string[] => (existsSync(d) ? readdirSync(d).flatMap((f) => (statSync(join(d, f)).isDirectory() ? walk(join(d, f)) : [join(d, f)])) : []);
  return walk(root);
}


let source: { name: string; cmk: Cmk; port: number; times: Record<string, string> };

test('a server is backed up when created and archives its WAL; the stores hold no plaintext', async () => {
  const c = cmk('eastus', 'bk');
  const name = `bk-src-${Date.now().toString(36)}`;
  createServer(name, c);
  const port = portOf(name);
  const backups = await eventually(() => { const b = p.cli('server', 'backup', 'list', '--name', name); return b.length ? b : undefined; }, 'the first backup');
  assert.equal(backups[0].properties.backupType, 'Full');
  assert.match(backups[0].properties.encryptionKeyVersion, new RegExp(`^${c.keyUri}/[0-9a-f]{32}$`), 'each backup shows the key version that wraps it');
  assert.ok(backups[0].properties.sizeBytes > 0 && Date.parse(backups[0].properties.completedTime) > 0);
  psql(port, `CREATE TABLE t (id int PRIMARY KEY, note text, at timestamptz DEFAULT clock_timestamp())`);
  const times: Record<string, string> = {};
  for (const id of [1, 2, 3]) {
    psql(port, `INSERT INTO t (id, note) VALUES (${id}, '${MARKER}-${id}')`);
    await sleep(1200);
    times[`after${id}`] = new Date().toISOString();
    await sleep(1200);
  }
  const manual = p.cli('server', 'backup', 'create', '--name', name);
  assert.ok(manual.name);
  // The manual backup ended by switching and archiving the WAL that holds the rows (the administrator, as on
  // Azure, may not call pg_switch_wal itself).
  const files = storeFiles('eastus');
  assert.ok(files.some((f) => f.includes('/wal/')), 'WAL is archived into the store');
  assert.ok(files.some((f) => f.includes('/base/')), 'base backups are in the store');
  for (const f of files) {
    assert.equal(fileContains(f, [Buffer.from(MARKER)])[0], false, `marker found in ${f}`);
  }
  source = { name, cmk: c, port, times };
});

test('point-in-time restore to a time between two writes has exactly the rows committed before it', async () => {
  const target = `${source.name}-pitr`;
  const r = p.cli('server', 'restore', '--source', source.name, '--name', target, '--restore-time', source.times.after2);
  assert.equal(r.properties.state, 'Ready');
  assert.equal(r.properties.dataEncryption.primaryKeyURI, source.cmk.keyUri, 'by default under the source key');
  assert.equal(psql(portOf(target), 'SELECT string_agg(id::text, \',\' ORDER BY id) FROM t'), '1,2');
  const latest = p.cli('server', 'restore', '--source', source.name, '--name', `${source.name}-latest`);
  assert.equal(psql(latest.properties.port, 'SELECT string_agg(id::text, \',\' ORDER BY id) FROM t'), '1,2,3');
  psql(latest.properties.port, "INSERT INTO t (id, note) VALUES (4, 'writable after restore')");
  p.cli('server', 'delete', '--name', `${source.name}-latest`, '--yes');
});

test('a restore can change the key: to another customer key, and to a service-managed key', async () => {
  const other = cmk('eastus', 'rk');
  const underOther = p.cli('server', 'restore', '--source', source.name, '--name', `${source.name}-rk`, '--key', other.keyUri, '--identity', other.identity);
  assert.equal(underOther.properties.dataEncryption.primaryKeyURI, other.keyUri);
  assert.equal(psql(underOther.properties.port, 'SELECT count(*) FROM t'), '3');
  const sm = p.cli('server', 'restore', '--source', source.name, '--name', `${source.name}-sm`, '--system-managed-key');
  assert.equal(sm.properties.dataEncryption.type, 'SystemManaged');
  assert.equal(psql(sm.properties.port, 'SELECT count(*) FROM t'), '3');
  // And a SystemManaged server restored under a customer key (the seeds' way to add CMK).
  const plainName = `bk-plain-${Date.now().toString(36)}`;
  createServer(plainName);
  psql(portOf(plainName), 'CREATE TABLE x (v int); INSERT INTO x VALUES (42)');
  await eventually(() => p.cli('server', 'backup', 'list', '--name', plainName).length > 0, 'backup of the plain server');
  const toCmk = p.cli('server', 'restore', '--source', plainName, '--name', `${plainName}-cmk`, '--key', other.keyUri, '--identity', other.identity);
  assert.equal(toCmk.properties.dataEncryption.type, 'AzureKeyVault');
  assert.equal(psql(toCmk.properties.port, 'SELECT v FROM x'), '42');
  for (const n of [`${source.name}-rk`, `${source.name}-sm`, plainName, `${plainName}-cmk`]) p.cli('server', 'delete', '--name', n, '--yes');
});

test('a flipped byte in a backup chunk makes the restore fail with an integrity error and creates nothing', async () => {
  // The source's newest base backup: the one a restore to "latest" starts from.
  const manifest = storeFiles('eastus').filter((f) => f.includes('/backups/') && f.endsWith('.json'))
    .map((f) => ({ f, m: JSON.parse(readFileSync(f, 'utf8')) }))
    .filter(({ m }) => m.serverName === source.name)
    .sort((a, b) => a.m.endTime.localeCompare(b.m.endTime)).at(-1)!;
  const base = join(manifest.f.split('/backups/' + manifest.m.id)[0], 'base', `${manifest.m.id}.tar.sealed`);
  assert.ok(existsSync(base), base);
  const original = readFileSync(base);
  try {
    const tampered = Buffer.from(original);
    tampered[Math.floor(tampered.length / 2)] ^= 0x40;
    writeFileSync(base, tampered);
    const r = p.cliRaw(['server', 'restore', '--source', source.name, '--name', `${source.name}-bad`]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /integrity/);
    assert.notEqual(p.cliRaw(['server', 'show', '--name', `${source.name}-bad`]).status, 0, 'no server was created');
    assert.ok(!existsSync(join(p.home, 'regions', 'eastus', 'volumes', `${source.name}-bad.img`)), 'no volume is left');
  } finally {
    writeFileSync(base, original);
  }
});

test('revoking the source key makes a restore fail clearly; when access returns it works', async () => {
  p.cli('key', 'set-attributes', '--vault-name', source.cmk.vault, '--name', 'kek', '--enabled', 'false');
  await eventually(() => p.cli('server', 'show', '--name', source.name).properties.state === 'Inaccessible', 'source Inaccessible');
  const r = p.cliRaw(['server', 'restore', '--source', source.name, '--name', `${source.name}-rev`]);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /SourceKeyUnavailable/);
  assert.match(r.stderr, /needs the source server's key/);
  assert.notEqual(p.cliRaw(['server', 'show', '--name', `${source.name}-rev`]).status, 0);
  p.cli('key', 'set-attributes', '--vault-name', source.cmk.vault, '--name', 'kek', '--enabled', 'true');
  await eventually(() => p.cli('server', 'show', '--name', source.name).properties.state === 'Ready', 'source Ready again');
  const ok = p.cli('server', 'restore', '--source', source.name, '--name', `${source.name}-rev`);
  assert.equal(psql(ok.properties.port, 'SELECT count(*) FROM t'), '3');
  p.cli('server', 'delete', '--name', `${source.name}-rev`, '--yes');
});

test('rotating the key re-wraps the backup keys without re-encrypting any backup', async () => {
  const keysDir = storeFiles('eastus').filter((f) => f.includes('/keys/'));
  const bases = storeFiles('eastus').filter((f) => f.includes('/base/'));
  const digest = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
  const before = new Map(bases.map((f) => [f, digest(f)]));
  const rotated = p.cli('key', 'rotate', '--vault-name', source.cmk.vault, '--name', 'kek');
  const newVersion = rotated.key.kid;
  const serverDir = keysDir[0].split('/keys/')[0];
  await eventually(() => readdirSync(join(serverDir, 'keys')).every((f) => JSON.parse(readFileSync(join(serverDir, 'keys', f), 'utf8')).wrappedBy === newVersion), 'backup keys re-wrapped', 30_000);
  for (const [f, d] of before) if (f.startsWith(serverDir)) assert.equal(digest(f), d, 'backup data is not re-encrypted');
  const listed = p.cli('server', 'backup', 'list', '--name', source.name);
  assert.ok(listed.length >= 2 && listed.every((b: any) => b.properties.encryptionKeyVersion === newVersion), 'backup list shows the latest key version');
  const r = p.cli('server', 'restore', '--source', source.name, '--name', `${source.name}-rot`);
  assert.equal(psql(r.properties.port, 'SELECT count(*) FROM t'), '3');
  p.cli('server', 'delete', '--name', `${source.name}-rot`, '--yes');
});

test('a read replica receives writes, follows its own key, and can be promoted', async () => {
  const replica = `${source.name}-r1`;
  const rc = cmk('eastus', 'rep');
  const r = p.cli('server', 'replica', 'create', '--source', source.name, '--name', replica, '--key', rc.keyUri, '--identity', rc.identity);
  assert.equal(r.properties.replicationRole, 'AsyncReplica');
  psql(source.port, "INSERT INTO t (id, note) VALUES (10, 'after the replica')");
  await eventually(() => psql(r.properties.port, 'SELECT count(*) FROM t WHERE id = 10') === '1', 'the write to reach the replica');
  const readOnly = spawnSync('psql', [`host=localhost port=${r.properties.port} dbname=postgres user=dbadmin sslmode=require`, '-XAtc', 'INSERT INTO t (id) VALUES (99)'], { env: { ...process.env, PGPASSWORD: PASSWORD }, encoding: 'utf8' });
  assert.match(readOnly.stderr, /read-only/);
  assert.equal(p.cli('server', 'replica', 'list', '--name', source.name).length, 1);

  // The replica's key, not the primary's, decides about the replica.
  p.cli('key', 'set-attributes', '--vault-name', rc.vault, '--name', 'kek', '--enabled', 'false');
  await eventually(() => p.cli('server', 'show', '--name', replica).properties.state === 'Inaccessible', 'replica Inaccessible');
  assert.equal(p.cli('server', 'show', '--name', source.name).properties.state, 'Ready');
  p.cli('key', 'set-attributes', '--vault-name', rc.vault, '--name', 'kek', '--enabled', 'true');
  await eventually(() => p.cli('server', 'show', '--name', replica).properties.state === 'Ready', 'replica Ready again', 30_000);
  psql(source.port, "INSERT INTO t (id, note) VALUES (11, 'while it was back')");
  await eventually(() => psql(r.properties.port, 'SELECT count(*) FROM t WHERE id = 11') === '1', 'replication to resume');

  const promoted = p.cli('server', 'replica', 'promote', '--name', replica);
  assert.equal(promoted.properties.replicationRole, 'Primary');
  psql(r.properties.port, "INSERT INTO t (id, note) VALUES (12, 'on the promoted replica')");
  p.cli('server', 'delete', '--name', replica, '--yes');
});

test('a replica in another region needs a key and an identity of that region', async () => {
  const r = p.cliRaw(['server', 'replica', 'create', '--source', source.name, '--name', `${source.name}-w1`, '--location', 'westus']);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /ReplicaKeyRequired/);
  const east = cmk('eastus', 'we');
  const wrongVault = p.cliRaw(['server', 'replica', 'create', '--source', source.name, '--name', `${source.name}-w1`, '--location', 'westus', '--key', east.keyUri, '--identity', east.identity]);
  assert.match(wrongVault.stderr, /KeyVaultRegionMismatch/);
  const west = cmk('westus', 'ww');
  const ok = p.cli('server', 'replica', 'create', '--source', source.name, '--name', `${source.name}-w1`, '--location', 'westus', '--key', west.keyUri, '--identity', west.identity);
  assert.equal(ok.location, 'westus');
  assert.equal(psql(ok.properties.port, 'SELECT count(*) >= 3 FROM t'), 't');
  p.cli('server', 'delete', '--name', `${source.name}-w1`, '--yes');
});

test('geo-redundant backup goes to the paired region under a different identity; geo-restore builds a server there', async () => {
  const east = cmk('eastus', 'ge');
  const west = cmk('westus', 'gw');
  const same = p.cliRaw(['server', 'create', '--name', 'geo-same', '--location', 'eastus', '--admin-user', 'dbadmin', '--admin-password', PASSWORD,
    '--key', east.keyUri, '--identity', east.identity, '--geo-redundant-backup', 'Enabled', '--geo-backup-key', west.keyUri, '--geo-backup-identity', east.identity]);
  assert.match(same.stderr, /SameIdentityForGeoBackup/);
  const name = `geo-${Date.now().toString(36)}`;
  const s = createServer(name, east, ['--geo-redundant-backup', 'Enabled', '--geo-backup-key', west.keyUri, '--geo-backup-identity', west.identity]);
  assert.equal(s.properties.backup.geoRedundantBackup, 'Enabled');
  assert.equal(s.properties.dataEncryption.geoBackupKeyURI, west.keyUri);
  psql(s.properties.port, `CREATE TABLE g (v text); INSERT INTO g VALUES ('${MARKER}-geo')`);
  await eventually(() => storeFiles('westus').some((f) => f.includes('/base/')), 'geo copies');
  for (const f of storeFiles('westus')) assert.equal(fileContains(f, [Buffer.from(MARKER)])[0], false, `marker in ${f}`);
  const restored = p.cli('server', 'geo-restore', '--source', name, '--name', `${name}-geo`);
  assert.equal(restored.location, 'westus');
  assert.equal(restored.properties.dataEncryption.primaryKeyURI, west.keyUri);
  assert.equal(psql(restored.properties.port, 'SELECT v FROM g'), `${MARKER}-geo`);
  p.cli('server', 'delete', '--name', `${name}-geo`, '--yes');
  p.cli('server', 'delete', '--name', name, '--yes');
});
