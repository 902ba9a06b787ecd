/**
 * Real kernel encryption under real PostgreSQL 15, as root: loop devices, ext4, fscrypt v2, initdb, psql and
 * pgbench. Everything created here (processes, mounts, loop devices, images, keys) is removed in `after`,
 * also when a test fails.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureHomeDirs, homePaths } from '../src/lib/home.js';
import { ensureTls, issueServerCertificate } from '../src/pki/ca.js';
import { keyStatus } from '../src/storage/fscrypt.js';
import { newDek, Volume, VolumeError, volumePaths } from '../src/storage/volume.js';
import { PostgresError, PostgresInstance } from '../src/postgres/instance.js';
import { serverOsUserName } from '../src/postgres/os-user.js';
import { scramSha256Verifier } from '../src/postgres/scram.js';
import { eventually, fileContains, ROOT } from './harness.js';

const home = mkdtempSync(join(tmpdir(), 'pgbyok-storage-'));
const paths = homePaths(home);
const volumes: Volume[] = [];
const instances: PostgresInstance[] = [];
const children: ChildProcess[] = [];
const MARKER = `PGBYOK-MARKER-${randomBytes(6).toString('hex')}`;
const PASSWORD = 'S3cure-pass!';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function makeServer(name: string, sizeGiB = 1) {
  const volume = new Volume(name, volumePaths(home, 'eastus', name));
  volumes.push(volume);
  volume.create(sizeGiB);
  const dek = newDek();
  volume.unlock(Buffer.from(dek));
  const port = await freePort();
  const pg = new PostgresInstance({
    dataDir: join(volume.dataDir, 'pgdata'), socketDir: join(home, 'regions', 'eastus', 'run', name), port, clusterName: name, isUnlocked: () => volume.isUnlocked(),
    osUser: serverOsUserName(randomUUID()), adminLogin: 'dbadmin', restrictParents: (owner) => volume.restrictTo(owner),
  });
  instances.push(pg);
  const tls = await issueServerCertificate(paths, name, ['localhost'], ['127.0.0.1']);
  await pg.init('dbadmin', { ...tls, ca: readFileSync(paths.caCert, 'utf8') });
  volume.updateHeader((h) => ({ ...h, initialized: true }));
  await pg.start();
  await pg.setAdminPassword(scramSha256Verifier(PASSWORD));
  return { volume, pg, dek, port };
}


function psql(port: number, sql: string, extraEnv: Record<string, string> = {}): string {
  return execFileSync('psql', [`host=127.0.0.1 port=${port} user=dbadmin dbname=postgres sslmode=verify-full sslrootcert=${paths.caCert}`, '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-c', sql], {
    env: { ...process.env, PGPASSWORD: PASSWORD, ...extraEnv }, encoding: 'utf8',
  }).trim();
}

before(async () => {
  ensureHomeDirs(paths);
  await ensureTls(paths);
});

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  for (const pg of instances) {
    try {
      await pg.stop('immediate');
    } catch {
      const pid = pg.pid();
      if (pid) process.kill(pid, 'SIGKILL');
    }
  }
  for (const pg of instances) {
    try {
      await pg.dispose();
    } catch (e) {
      process.stderr.write(`removing the OS account ${pg.opts.osUser} failed: ${(e as Error).message}\n`);
    }
  }
  for (const v of volumes) {
    try {
      await v.destroy();
    } catch (e) {
      process.stderr.write(`cleanup of volume ${v.name} failed: ${(e as Error).message}\n`);
    }
  }
  rmSync(home, { recursive: true, force: true });
});

test('without root, creating a volume fails at once and says what is missing', () => {
  const script = `import('${join(ROOT, 'dist', 'src', 'storage', 'volume.js')}').then(m => { try { new m.Volume('x', m.volumePaths('/tmp/none', 'eastus', 'x')).create(1); } catch (e) { console.log(e.code + ': ' + e.message); } })`;
  const r = spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, '-e', script], { encoding: 'utf8' });
  assert.match(r.stdout, /^PrerequisiteMissing: .*root/);
  assert.ok(!existsSync('/tmp/none'));
});

test('data, WAL and file names never reach the image in plaintext; a locked volume is unreadable and PostgreSQL cannot start; the same DEK brings every row back; a wrong DEK changes nothing', async () => {
  const { volume, pg, dek, port } = await makeServer('enc1');
  assert.equal(volume.status().locked, false);
  psql(port, `CREATE TABLE t (id serial PRIMARY KEY, note text); INSERT INTO t (note) SELECT '${MARKER}-' || g FROM generate_series(1, 2000) g;`);
  const md5 = psql(port, 'SELECT md5(string_agg(note, \',\' ORDER BY id)) FROM t');
  // WAL, temp files and logs are all inside the encrypted data directory.
  assert.equal(psql(port, "SELECT setting FROM pg_settings WHERE name = 'data_directory'"), join(volume.dataDir, 'pgdata'));
  assert.equal(psql(port, "SELECT setting FROM pg_settings WHERE name = 'log_directory'"), 'log');
  assert.equal(psql(port, 'SHOW temp_tablespaces'), '');
  assert.equal(psql(port, 'SHOW data_checksums'), 'on');
  assert.equal(psql(port, 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'), 't');
  assert.match(await pg.sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'dbadmin'"), /^SCRAM-SHA-256\$/);
  // A sort that spills to temp files while holding the marker.
  psql(port, `SET work_mem = '64kB'; SELECT count(*) FROM (SELECT note || repeat('x', 200) AS n FROM t ORDER BY 1 DESC) s`);
  await pg.sql('CHECKPOINT');
  // A control: plaintext outside the encrypted directory must be found by the same search.
  const control = `PGBYOK-CONTROL-${randomBytes(6).toString('hex')}`;
  writeFileSync(join(volume.mountpoint, 'control.txt'), control);
  execFileSync('sync');

  const [marker, ctl, pgVersion, hba] = fileContains(volume.image, [MARKER, control, 'PG_VERSION', 'pg_hba.conf'].map((s) => Buffer.from(s)));
  assert.equal(ctl, true, 'the search finds plaintext that is outside the encrypted directory');
  assert.equal(marker, false, 'the marker is nowhere on the raw image');
  assert.equal(pgVersion, false, 'file names are encrypted');
  assert.equal(hba, false, 'file names are encrypted');

  await pg.stop('fast');
  await volume.lock();
  const st = volume.status();
  assert.equal(st.locked, true);
  assert.equal(st.keyStatus, 'absent');
  const names = readdirSync(volume.dataDir);
  assert.ok(!names.includes('pgdata') && !names.includes('.pgbyok-probe') && names.length === 2, `names are ciphertext: ${names.join(',')}`);
  for (const n of names) {
    const p = join(volume.dataDir, n);
    if (statSync(p).isDirectory()) {
      const inner = readdirSync(p);
      assert.ok(!inner.includes('PG_VERSION') && !inner.includes('base') && inner.length > 10, 'inner names are ciphertext too');
      assert.throws(() => readFileSync(join(p, inner.find((x) => statSync(join(p, x)).isFile())!)), /ENOKEY|Required key|system error -126/);
    } else {
      assert.throws(() => readFileSync(p), /ENOKEY|Required key|system error -126/);
    }
  }
  await assert.rejects(pg.start(), (e: unknown) => e instanceof PostgresError && e.code === 'Locked');
  const raw = spawnSync('runuser', ['-u', pg.opts.osUser, '--', '/usr/lib/postgresql/15/bin/pg_ctl', 'start', '-w', '-D', join(volume.dataDir, 'pgdata')], { encoding: 'utf8' });
  assert.notEqual(raw.status, 0, 'PostgreSQL itself cannot start on the locked directory');

  assert.throws(() => volume.unlock(randomBytes(64)), (e: unknown) => e instanceof VolumeError && e.code === 'WrongKey');
  assert.equal(volume.status().locked, true, 'a wrong DEK changed nothing');
  assert.deepEqual(readdirSync(volume.dataDir).sort(), names.sort());

  const copy = Buffer.from(dek);
  volume.unlock(copy);
  assert.ok(copy.every((b) => b === 0), 'the DEK buffer is zeroed after use');
  await pg.start();
  assert.equal(psql(port, 'SELECT md5(string_agg(note, \',\' ORDER BY id)) FROM t'), md5);
  assert.equal(psql(port, 'SELECT count(*) FROM t'), '2000');
  assert.equal((await pg.health()).query, true);
});

test('psql and pgbench run against an instance on an encrypted volume', async () => {
  const { port } = await makeServer('bench1');
  const conn = `host=127.0.0.1 port=${port} user=dbadmin dbname=postgres sslmode=require`;
  execFileSync('pgbench', ['-i', '-s', '2', '-q', conn], { env: { ...process.env, PGPASSWORD: PASSWORD }, stdio: 'pipe' });
  const out = execFileSync('pgbench', ['-c', '2', '-j', '2', '-T', '5', '-n', conn], { env: { ...process.env, PGPASSWORD: PASSWORD }, encoding: 'utf8' });
  const processed = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? 0);
  assert.ok(processed > 0, out);
  assert.match(out, /number of failed transactions: 0/);
  assert.equal(psql(port, 'SELECT count(*) FROM pgbench_accounts'), '200000');
  const badPassword = spawnSync('psql', [`${conn} password=wrong`, '-c', 'select 1'], { encoding: 'utf8', env: { ...process.env, PGPASSWORD: '' } });
  assert.notEqual(badPassword.status, 0);
  const plain = spawnSync('psql', [`host=127.0.0.1 port=${port} user=dbadmin dbname=postgres sslmode=disable`, '-c', 'select 1'], { encoding: 'utf8', env: { ...process.env, PGPASSWORD: PASSWORD } });
  assert.notEqual(plain.status, 0, 'connections without TLS are refused');
});

test('an instance killed with SIGKILL, and its host process too, comes back with every committed row', async () => {
  const { volume, pg, dek, port } = await makeServer('crash1');
  psql(port, "CREATE TABLE t (id serial PRIMARY KEY, note text); INSERT INTO t (note) SELECT 'before-' || g FROM generate_series(1, 500) g");
  await pg.stop('fast');
  // A separate host process opens the volume, starts PostgreSQL and commits more rows; then both die.
  const host = spawn(process.execPath, [join(ROOT, 'dist', 'test', 'fixtures', 'crash-host.js'), home, 'crash1', String(port), pg.opts.osUser], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(host);
  host.stdin!.end(dek.toString('base64'));
  await new Promise<void>((resolve, reject) => {
    host.stdout!.on('data', (d) => String(d).includes('ready') && resolve());
    host.once('exit', (code) => reject(new Error(`host exited ${code}`)));
  });
  const postmaster = pg.pid()!;
  assert.ok(postmaster);
  process.kill(postmaster, 'SIGKILL');
  host.kill('SIGKILL');
  // SIGKILL is delivered asynchronously: wait for the postmaster to be gone (dead or a zombie), not just signalled.
  await eventually(() => !pg.isRunning(), 'the killed postmaster to die', 10_000, 50);

  // The key belongs to the filesystem, so it survived the host; attach is idempotent and finds the mount.
  volume.attach();
  assert.equal(volume.status().keyStatus, 'present');
  await pg.start();
  assert.equal(psql(port, 'SELECT count(*) FROM t'), '1000');
  assert.equal(psql(port, "SELECT count(*) FROM t WHERE note LIKE 'after-crash-%'"), '500');
});

test('locking a volume whose files are still open reports the holder and does not claim to be locked', async () => {
  const { volume, pg } = await makeServer('busy1');
  await pg.stop('fast');
  const holder = spawn('sleep', ['60'], { cwd: join(volume.dataDir, 'pgdata') });
  children.push(holder);
  await new Promise((r) => setTimeout(r, 200));
  await assert.rejects(volume.lock({ timeoutMs: 500 }), (e: unknown) => e instanceof VolumeError && e.code === 'Busy' && e.message.includes(String(holder.pid)));
  const st = volume.status();
  assert.equal(st.locked, false, 'plaintext is still reachable, so it is not locked');
  assert.equal(st.keyStatus, 'incompletely-removed');
  holder.kill('SIGKILL');
  await new Promise((r) => holder.once('exit', r));
  await volume.lock();
  assert.equal(volume.status().locked, true);
  assert.equal(keyStatus(volume.mountpoint, Buffer.from(volume.status().keyIdentifier!, 'hex')).status, 'absent');
});

test('a volume grows to a larger size and keeps its data', async () => {
  const { volume, pg, dek, port } = await makeServer('grow1');
  psql(port, "CREATE TABLE t (note text); INSERT INTO t SELECT 'row-' || g FROM generate_series(1, 100) g");
  const sizeBefore = statfsSync(volume.mountpoint).blocks * statfsSync(volume.mountpoint).bsize;
  try {
    volume.grow(2);
  } catch (e) {
    // Online resize needs CAP_SYS_RESOURCE; where the kernel refuses it, grow offline.
    assert.ok(e instanceof VolumeError && e.code === 'OnlineResizeUnavailable', String(e));
    await pg.stop('fast');
    await volume.lock();
    volume.detach();
    volume.growOffline(2);
    volume.unlock(Buffer.from(dek));
    await pg.start();
  }
  const sizeAfter = statfsSync(volume.mountpoint).blocks * statfsSync(volume.mountpoint).bsize;
  assert.ok(sizeAfter > sizeBefore * 1.8, `${sizeBefore} -> ${sizeAfter}`);
  assert.equal(psql(port, 'SELECT count(*) FROM t'), '100');
});

test('attach after a crash reuses the mount, or cleans a stale loop device and mounts once', async () => {
  const { volume, pg, dek } = await makeServer('stale1');
  await pg.stop('fast');
  await volume.lock();
  volume.detach();
  // A crash between losetup and mount leaves loop devices of the image that nothing mounts.
  const stale = [1, 2].map(() => execFileSync('losetup', ['--find', '--show', volume.image], { encoding: 'utf8' }).trim());
  volume.attach();
  const loops = execFileSync('losetup', ['-j', volume.image, '-n', '-O', 'NAME'], { encoding: 'utf8' }).trim().split('\n');
  assert.equal(loops.length, 1, `one loop device is left: ${loops.join(',')}`);
  assert.ok(stale.includes(loops[0]));
  volume.attach();
  assert.equal(volume.status().mounted, true);
  volume.unlock(Buffer.from(dek));
  await pg.start();
  assert.equal((await pg.health()).query, true);
});

test('destroy crypto-shreds: the key leaves the kernel, the loop device and mount go, the image is deleted', async () => {
  const { volume, pg } = await makeServer('shred1');
  await pg.stop('fast');
  const image = volume.image;
  const loop = volume.status().loopDevice!;
  await volume.destroy();
  assert.equal(existsSync(image), false);
  assert.equal(existsSync(volume.mountpoint), false);
  assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(volume.mountpoint));
  assert.ok(!execFileSync('losetup', ['-a'], { encoding: 'utf8' }).includes(image));
  assert.ok(loop.startsWith('/dev/loop'));
  const digest = createHash('sha256').update(image).digest('hex');
  assert.ok(digest);
});
