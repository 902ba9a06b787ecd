/**
 * `npm run bench [-- --quick]`: pgbyok measured against what people use today, side by side in one run
 * (interleaved rounds, medians, ratios). Writes bench/results.json and BENCHMARKS.md (with SVG charts) and
 * leaves nothing behind: servers, mounts, loop devices, images, processes. Needs root (loop devices,
 * fscrypt) and PostgreSQL 15; installs gocryptfs from Debian if it is missing. `--only monitor` measures only
 * key-loss detection versus the number of servers (bench/monitor.ts) and updates just that part of the report;
 * `--only hsm` measures only the Managed HSM's unwrap throughput beside the vault's (bench/hsm.ts), likewise.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureHomeDirs, homePaths } from '../src/lib/home.js';
import { issueServerCertificate } from '../src/pki/ca.js';
import { PostgresInstance } from '../src/postgres/instance.js';
import { addKey, keyStatus, setPolicy } from '../src/storage/fscrypt.js';
import { cleanupLeftovers, fileContains, startPgbyok, type Pgbyok } from '../test/harness.js';
import { barChart, httpsJson, interleaved, log, machine, measureUnwraps, median, percentile, round } from './lib.js';
import { measureMonitor, monitorSection } from './monitor.js';
import { hsmSection, measureHsm } from './hsm.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const quick = process.argv.includes('--quick');
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;
if (only !== undefined && only !== 'monitor' && only !== 'hsm') throw new Error(`--only takes 'monitor' or 'hsm', not '${only}'`);
const cfg = quick
  ? { scale: 5, seconds: 5, rounds: 3, trials: 5, vaultSeconds: 8, clients: 64, provision: 3, backupScale: 5 }
  : { scale: 50, seconds: 30, rounds: 3, trials: 20, vaultSeconds: 60, clients: 64, provision: 5, backupScale: 70 };
const PASSWORD = 'Bench-Passw0rd!';
const MARKER = `PGBYOK-BENCH-MARKER-${randomBytes(4).toString('hex')}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Variant = 'plain' | 'fscrypt_manual' | 'pgbyok' | 'gocryptfs';

interface Pg {
  variant: Variant;
  pg: PostgresInstance;
  cleanup: () => void;
}

const cleanups: (() => void | Promise<void>)[] = [];
let platform: Pgbyok | undefined;

function sh(cmd: string, args: string[], opts: { input?: string } = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input: opts.input, stdio: [opts.input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
}

/** An ext4 image (the same kind pgbyok makes) on a loop device, mounted; nothing on it is encrypted. */
function loopMount(dir: string, name: string, gib: number): string {
  const image = join(dir, `${name}.img`);
  const mnt = join(dir, name);
  mkdirSync(mnt, { recursive: true, mode: 0o711 });
  closeSync(openSync(image, 'w'));
  execFileSync('truncate', ['-s', `${gib}G`, image]);
  sh('mkfs.ext4', ['-q', '-F', '-O', 'encrypt', '-E', 'lazy_itable_init=1,lazy_journal_init=1', image]);
  sh('mount', ['-o', 'loop,nosuid,nodev,noatime', image, mnt]);
  execFileSync('chmod', ['711', mnt]);
  cleanups.push(async () => {
    // A FUSE daemon may still hold the mount for a moment after its own unmount: retry, then detach lazily.
    for (let i = 0; i < 20 && spawnSync('umount', [mnt]).status !== 0 && existsSync(join(mnt, 'lost+found')); i++) await sleep(250);
    if (readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${mnt} `)) spawnSync('umount', ['-l', mnt]);
    for (const line of spawnSync('losetup', ['-j', image], { encoding: 'utf8' }).stdout.split('\n')) {
      if (line) spawnSync('losetup', ['-d', line.split(':')[0]]);
    }
    rmSync(image, { force: true });
  });
  return mnt;
}

async function instanceOn(dir: string, variant: Variant, port: number, paths: ReturnType<typeof homePaths>): Promise<PostgresInstance> {
  const staging = join(dir, 'wal-staging');
  const pg = new PostgresInstance({ dataDir: join(dir, 'pgdata'), socketDir: join(dir, '..', `run-${variant}`), port, clusterName: variant.replace('_', '-'), isUnlocked: () => true, walStagingDir: staging, osUser: 'postgres', adminLogin: 'dbadmin' });
  await pg.init('dbadmin', { ...(await issueServerCertificate(paths, variant, ['localhost'], ['127.0.0.1'])), ca: readFileSync(paths.caCert, 'utf8') });
  await pg.start();
  await pg.setAdminPassword('SCRAM-SHA-256$4096:AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=');
  // Archiving is on for every variant (pgbyok's servers archive); the others' staged WAL is simply dropped.
  const timer = setInterval(() => {
    try {
      for (const f of readdirSync(staging)) rmSync(join(staging, f), { force: true });
    } catch {
      // not there yet
    }
  }, 1000);
  timer.unref();
  cleanups.push(async () => {
    clearInterval(timer);
    try {
      await pg.stop('immediate');
    } catch {
      // already gone
    }
  });
  return pg;
}

function pgbench(pg: PostgresInstance, args: string[]): string {
  // As root over the socket: the only login the socket admits, mapped to pgbyok's superuser.
  const r = spawnSync('pgbench', ['-h', pg.opts.socketDir, '-p', String(pg.opts.port), '-U', 'pgbyok', ...args, 'postgres'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`pgbench ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout + r.stderr;
}

const tpsOf = (out: string) => Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(out)?.[1] ?? NaN);

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function ensureGocryptfs(): string | undefined {
  const has = () => spawnSync('which', ['gocryptfs']).status === 0;
  if (!has()) {
    log('installing gocryptfs (Debian package) for the peer comparison');
    spawnSync('apt-get', ['update', '-q'], { stdio: 'ignore' });
    spawnSync('apt-get', ['install', '-y', '-q', 'gocryptfs', 'fuse3'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
  return has() ? undefined : 'gocryptfs could not be installed from Debian';
}

/** The CMK setup (identity, vault with 90 days and purge protection, key, policy) and a server on it. */
function cmkServer(p: Pgbyok, name: string, storage = 8) {
  const t = Date.now();
  const id = p.cli('identity', 'create', '--name', `${name}-id`);
  const vault = `${name}-kv`.slice(0, 24).replace(/-$/, '');
  const v = p.cli('vault', 'create', '--name', vault, '--location', 'eastus', '--retention-days', '90', '--enable-purge-protection');
  const k = p.cli('key', 'create', '--vault-name', vault, '--name', 'kek');
  p.cli('vault', 'set-policy', '--name', vault, '--object-id', id.principalId, '--key-permissions', 'get', 'list', 'wrapKey', 'unwrapKey');
  const keyUri = k.key.kid.replace(/\/[0-9a-f]{32}$/, '');
  const setupSeconds = (Date.now() - t) / 1000;
  const server = p.cli('server', 'create', '--name', name, '--location', 'eastus', '--admin-user', 'dbadmin', '--admin-password', PASSWORD,
    '--key', keyUri, '--identity', id.name, '--storage-size', String(storage));
  return { server, vaultUri: v.properties.vaultUri as string, vault, keyUri, objectId: id.principalId as string, setupSeconds };
}

/**
 * The server's PostgreSQL, reached as root over its socket. Its public port belongs to pgbyok's front door;
 * PostgreSQL itself listens on a private port, which its postmaster.pid names (kept across its restarts).
 */
function pgbyokInstance(p: Pgbyok, name: string): PostgresInstance {
  const mnt = join(p.home, 'regions', 'eastus', 'mnt', name);
  const dataDir = join(mnt, 'data', 'pgdata');
  const osUser = execFileSync('stat', ['-c', '%U', dataDir], { encoding: 'utf8' }).trim();
  const port = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[3]);
  return new PostgresInstance({ dataDir, socketDir: join(p.home, 'regions', 'eastus', 'run', name), port, clusterName: name, isUnlocked: () => true, osUser });
}

/** One connection attempt in the PostgreSQL protocol: the server's first reply (an error, or not). */
function probe(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const body = Buffer.concat([Buffer.from([0, 3, 0, 0]), Buffer.from('user\0dbadmin\0database\0postgres\0\0')]);
    const len = Buffer.alloc(4);
    len.writeInt32BE(body.length + 4);
    let got = '';
    s.on('connect', () => s.write(Buffer.concat([len, body])));
    s.on('data', (d) => { got += d.toString('latin1'); s.destroy(); });
    s.on('error', (e) => resolve(`error:${e.message}`));
    s.on('close', () => resolve(got));
    s.setTimeout(2000, () => s.destroy());
  });
}

/** The vault's unwrap throughput with one of its RSA-2048 keys (`keyUrl`, without a version), under the bench's load. */
async function vaultUnwraps(p: Pgbyok, keyUrl: string, token: string) {
  log(`vault: ${cfg.clients} clients unwrapping for ${cfg.vaultSeconds}s`);
  return measureUnwraps(p, { keyUrl, token, alg: 'RSA-OAEP-256', clients: cfg.clients, seconds: cfg.vaultSeconds, pid: p.child().pid! });
}

async function main() {
  const started = Date.now();
  const results: any = { generatedAt: new Date().toISOString(), mode: quick ? 'quick' : 'full', config: cfg, machine: machine() };
  log(`mode ${results.mode}; machine ${results.machine.cpuModel}, ${results.machine.cores} cores, xts(aes) driver ${results.machine.xtsAesDriver}`);
  // The RSA reference is taken first, on a quiet machine: the fairest (hardest) bar for the vault.
  log('openssl speed rsa2048 on all cores (reference for the vault)');
  const speed = sh('openssl', ['speed', '-seconds', '5', '-multi', String(results.machine.cores), 'rsa2048']);
  const opensslSign = Number(/rsa 2048 bits\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)/.exec(speed)?.[1] ?? NaN);
  const work = mkdtempSync(join(tmpdir(), 'pgbyok-bench-'));
  execFileSync('chmod', ['711', work]);
  cleanups.push(() => rmSync(work, { recursive: true, force: true }));

  platform = await startPgbyok({ PGBYOK_LOG_LEVEL: 'warn' });
  const p = platform;
  const paths = homePaths(p.home);
  ensureHomeDirs(paths);

  // 1. pgbench: plain ext4, fscrypt set up by hand, pgbyok, gocryptfs — identical PostgreSQL settings.
  log('pgbench: setting up four PostgreSQL instances');
  const inst: Partial<Record<Variant, PostgresInstance>> = {};
  inst.plain = await instanceOn(loopMount(work, 'plain', 8), 'plain', await freePort(), paths);
  const manualMnt = loopMount(work, 'fscrypt', 8);
  const manualKey = randomBytes(64);
  const manualId = addKey(manualMnt, manualKey);
  mkdirSync(join(manualMnt, 'data'), { mode: 0o711 });
  setPolicy(join(manualMnt, 'data'), manualId);
  manualKey.fill(0);
  inst.fscrypt_manual = await instanceOn(join(manualMnt, 'data'), 'fscrypt_manual', await freePort(), paths);
  const main = cmkServer(p, 'bench-main');
  inst.pgbyok = pgbyokInstance(p, 'bench-main');
  // 3 (run first). Vault unwrap throughput over HTTPS with tokens, every request audited. Measured while the
  // machine is quiet, as the OpenSSL reference is: after pgbench, checkpoints and WAL archiving would share the cores.
  const vaultToken = await p.token(p.admin);
  // The server's first base backup runs in the background after creation: let it finish first.
  for (let i = 0; i < 120 && !p.cli('server', 'backup', 'list', '--name', 'bench-main').length; i++) await sleep(500);
  const vault = await vaultUnwraps(p, `${main.vaultUri}keys/kek`, vaultToken);
  results.vault = {
    ...vault, openssl_rsa2048_sign_per_s: opensslSign, ratio_vs_openssl: round(vault.unwrap_per_s / opensslSign, 3),
  };
  // 3b. The Managed HSM's unwrap throughput (keys in the PKCS#11 token), with the same load, right after the vault's.
  results.hsm = await measureHsm({ p, clients: cfg.clients, seconds: cfg.vaultSeconds, vaultUnwrapPerS: vault.unwrap_per_s, quick, cleanups });

  // 4 (run second, also on a quiet machine). Provisioning: server create with a customer key, to Ready and a
  // successful query. Later phases leave the platform busy (WAL archiving, crash recoveries of the revocation trials).
  log(`provisioning: ${cfg.provision} CMK servers`);
  const provisionTimes: number[] = [];
  for (let i = 0; i < cfg.provision; i++) {
    const name = `bench-prov-${i}`;
    const t = Date.now();
    const s = cmkServer(p, name, 4);
    const pg = pgbyokInstance(p, name);
    await pg.sql('SELECT 1');
    provisionTimes.push((Date.now() - t) / 1000 - s.setupSeconds);
    p.cli('server', 'delete', '--name', name, '--yes');
  }
  results.provisioning = { servers: cfg.provision, median_s: round(median(provisionTimes), 2), runs_s: provisionTimes.map((x) => round(x, 2)) };

  let gocryptfsProblem = ensureGocryptfs();
  if (!gocryptfsProblem) {
    const gmnt = join(loopMount(work, 'gocryptfs-cipher', 8), 'cipher');
    mkdirSync(gmnt, { mode: 0o700 });
    const plainDir = join(work, 'gocryptfs-plain');
    mkdirSync(plainDir, { mode: 0o711 });
    const passfile = join('/dev/shm', `pgbyok-bench-${process.pid}`);
    writeFileSync(passfile, randomBytes(24).toString('hex'), { mode: 0o600 });
    cleanups.push(() => rmSync(passfile, { force: true }));
    sh('gocryptfs', ['-init', '-q', '-passfile', passfile, gmnt]);
    // gocryptfs daemonizes and keeps stdio open: do not wait on its pipes.
    execFileSync('gocryptfs', ['-q', '-nosyslog', '-allow_other', '-passfile', passfile, gmnt, plainDir], { stdio: 'ignore' });
    cleanups.push(async () => {
      spawnSync('umount', [plainDir]);
      for (let i = 0; i < 40 && spawnSync('pgrep', ['-f', `gocryptfs.*${gmnt}`]).status === 0; i++) await sleep(250);
    });
    execFileSync('chmod', ['711', plainDir]);
    inst.gocryptfs = await instanceOn(plainDir, 'gocryptfs', await freePort(), paths);
  }
  let variants = (Object.keys(inst) as Variant[]);
  // The same tuning everywhere (as the reference measurements used): 256 MB of shared buffers.
  for (const v of variants) {
    if (v === 'pgbyok') {
      p.cli('server', 'parameter', 'set', '--server-name', 'bench-main', '--name', 'shared_buffers', '--value', '32768');
      p.cli('server', 'restart', '--name', 'bench-main');
    } else {
      inst[v]!.opts.parameters = { shared_buffers: '32768' };
      await inst[v]!.restart('fast');
    }
  }
  results.postgresSettings = { shared_buffers: '256MB', fsync: 'on', synchronous_commit: 'on', archive_mode: 'on (every variant)' };
  const initSeconds: Record<string, number> = {};
  for (const v of variants) {
    log(`pgbench -i -s ${cfg.scale} on ${v}`);
    const t = Date.now();
    try {
      pgbench(inst[v]!, ['-i', '-s', String(cfg.scale), '-q']);
    } catch (e) {
      // The peer is not ours: when it fails, the run says so and goes on without it.
      if (v !== 'gocryptfs') throw e;
      gocryptfsProblem = `PostgreSQL on gocryptfs failed during pgbench -i: ${String((e as Error).message).split('\n').filter((l) => /error|PANIC|FATAL/.test(l)).join(' ').slice(0, 300)}`;
      log(gocryptfsProblem);
      await inst.gocryptfs!.stop('immediate').catch(() => undefined);
      delete inst.gocryptfs;
      continue;
    }
    await inst[v]!.sql('CHECKPOINT');
    initSeconds[v] = round((Date.now() - t) / 1000);
  }
  variants = (Object.keys(inst) as Variant[]);
  const runs: Record<string, Record<Variant, number[]>> = {};
  for (const [mode, extra] of [['rw', []], ['ro', ['-S']]] as const) {
    log(`pgbench ${mode}: ${cfg.rounds} interleaved rounds of ${cfg.seconds}s on ${variants.join(', ')}`);
    runs[mode] = await interleaved(cfg.rounds, variants, async (v) => tpsOf(pgbench(inst[v]!, ['-c', '4', '-j', '2', '-T', String(cfg.seconds), '-n', ...extra])));
  }
  const summarize = (r: Record<Variant, number[]>) => ({
    plain_tps: round(median(r.plain)), fscrypt_manual_tps: round(median(r.fscrypt_manual)), pgbyok_tps: round(median(r.pgbyok)),
    gocryptfs_tps: r.gocryptfs ? round(median(r.gocryptfs)) : null,
    rounds: r,
    ratio_pgbyok_vs_plain: round(median(r.pgbyok) / median(r.plain), 3),
    ratio_pgbyok_vs_fscrypt_manual: round(median(r.pgbyok) / median(r.fscrypt_manual), 3),
    ratio_pgbyok_vs_gocryptfs: r.gocryptfs ? round(median(r.pgbyok) / median(r.gocryptfs), 3) : null,
  });
  results.pgbench = { scale: cfg.scale, seconds: cfg.seconds, clients: 4, threads: 2, init_seconds: initSeconds, rw: summarize(runs.rw), ro: summarize(runs.ro), gocryptfs_note: gocryptfsProblem ?? null };
  for (const v of variants) if (v !== 'pgbyok') await inst[v]!.stop('fast');

  // 2. Revocation to lockout, and access restored to Ready, by disabling the key and by revoking the policy.
  log(`revocation: ${cfg.trials} trials each for key disable and access-policy revocation`);
  const mgmtToken = await p.token(p.admin, 'https://management.azure.com');
  const header = JSON.parse(readFileSync(join(p.home, 'regions', 'eastus', 'mnt', 'bench-main', 'volume.json'), 'utf8'));
  const mnt = join(p.home, 'regions', 'eastus', 'mnt', 'bench-main');
  const keyId = Buffer.from(header.keyIdentifier, 'hex');
  const port = main.server.properties.port;
  await inst.pgbyok.sql(`CREATE TABLE public.marker (v text); INSERT INTO public.marker VALUES ('${MARKER}')`);
  const lockedOut = async () => {
    const reply = await probe(port);
    let absent = false;
    try {
      absent = keyStatus(mnt, keyId).status === 'absent';
    } catch {
      absent = !existsSync(join(mnt, 'volume.json'));
    }
    return reply.includes('inaccessible') && absent;
  };
  const readyAgain = async () => {
    try {
      return (await inst.pgbyok!.sql('SELECT count(*) FROM public.marker')) === '1';
    } catch {
      return false;
    }
  };
  const waitFor = async (cond: () => boolean | Promise<boolean>, limitMs: number) => {
    const t = Date.now();
    while (!(await cond())) {
      if (Date.now() - t > limitMs) throw new Error('timed out');
      await sleep(25);
    }
    return (Date.now() - t) / 1000;
  };
  const policyUrl = (kind: string) => `${p.origin}/tenants/${p.admin.tenantId}/providers/Microsoft.KeyVault/vaults/${main.vault}/accessPolicies/${kind}?api-version=2023-07-01`;
  const policyBody = { properties: { accessPolicies: [{ objectId: main.objectId, permissions: { keys: ['get', 'list', 'wrapKey', 'unwrapKey'] } }] } };
  const trialsOf = async (revoke: () => Promise<unknown>, restore: () => Promise<unknown>) => {
    const lockout: number[] = [];
    const back: number[] = [];
    for (let i = 0; i < cfg.trials; i++) {
      const t0 = Date.now();
      await revoke();
      await waitFor(lockedOut, 120_000);
      lockout.push((Date.now() - t0) / 1000);
      const t1 = Date.now();
      await restore();
      await waitFor(readyAgain, 120_000);
      back.push((Date.now() - t1) / 1000);
    }
    return { lockout, back };
  };
  const keyUrl = `${main.vaultUri}keys/kek/?api-version=7.6`;
  const disable = await trialsOf(
    () => httpsJson(p, 'PATCH', keyUrl, vaultToken, { attributes: { enabled: false } }),
    () => httpsJson(p, 'PATCH', keyUrl, vaultToken, { attributes: { enabled: true } }),
  );
  const policy = await trialsOf(
    () => httpsJson(p, 'PUT', policyUrl('remove'), mgmtToken, policyBody),
    () => httpsJson(p, 'PUT', policyUrl('add'), mgmtToken, policyBody),
  );
  const stats = (xs: number[]) => ({ trials: xs.length, p50_s: round(percentile(xs, 50), 3), p99_s: round(percentile(xs, 99), 3), max_s: round(Math.max(...xs), 3) });
  results.revocation = { ...stats([...disable.lockout, ...policy.lockout]), key_disable: stats(disable.lockout), access_policy: stats(policy.lockout) };
  results.restore = { ...stats([...disable.back, ...policy.back]), key_enable: stats(disable.back), access_policy: stats(policy.back) };

  // 5. Backup and point-in-time restore of a database, against unencrypted pg_basebackup + replay.
  log(`backup: pgbench -i -s ${cfg.backupScale} on pgbyok and on plain ext4`);
  pgbench(inst.pgbyok, ['-i', '-s', String(cfg.backupScale), '-q']);
  const dbBytes = Number(await inst.pgbyok.sql('SELECT pg_database_size(current_database())'));
  let t = Date.now();
  p.cli('server', 'backup', 'create', '--name', 'bench-main');
  const backupSeconds = (Date.now() - t) / 1000;
  t = Date.now();
  p.cli('server', 'restore', '--source', 'bench-main', '--name', 'bench-restored');
  const restoreSeconds = (Date.now() - t) / 1000;
  p.cli('server', 'delete', '--name', 'bench-restored', '--yes');
  await inst.plain.stop('fast');
  await inst.plain.start();
  pgbench(inst.plain, ['-i', '-s', String(cfg.backupScale), '-q']);
  const baseDir = join(work, 'plain', 'baseline');
  mkdirSync(baseDir, { mode: 0o700 });
  t = Date.now();
  const bb = spawnSync('pg_basebackup', ['-h', inst.plain.opts.socketDir, '-p', String(inst.plain.opts.port), '-U', 'pgbyok', '-D', baseDir, '-X', 'stream', '-c', 'fast'], { encoding: 'utf8' });
  if (bb.status !== 0) throw new Error(`baseline pg_basebackup failed: ${bb.stderr}`);
  execFileSync('chown', ['-R', 'postgres:postgres', baseDir]);
  const baselinePg = new PostgresInstance({ dataDir: baseDir, socketDir: join(work, 'run-baseline'), port: await freePort(), clusterName: 'baseline', isUnlocked: () => true, osUser: 'postgres' });
  await baselinePg.start();
  await baselinePg.sql('SELECT count(*) FROM public.pgbench_branches');
  const baselineSeconds = (Date.now() - t) / 1000;
  await baselinePg.stop('immediate');
  results.backup = {
    database_mb: round(dbBytes / 1048576, 1), backup_s: round(backupSeconds, 2), backup_mb_s: round(dbBytes / 1048576 / backupSeconds, 1),
    restore_s: round(restoreSeconds, 2), baseline_restore_s: round(baselineSeconds, 2), ratio_vs_baseline: round(restoreSeconds / baselineSeconds, 2),
  };

  // 6. Nothing in the clear: every file pgbyok wrote is searched for the DEK and the marker row.
  log('scanning every file under the platform home for the DEK and the marker');
  await inst.pgbyok.sql('CHECKPOINT');
  execFileSync('sync');
  const dek = await unwrapServerDek(p, 'bench-main');
  const needles = [dek, Buffer.from(MARKER)];
  let hits = 0;
  let scanned = 0;
  for (const f of walk(p.home)) {
    if (f.startsWith(join(p.home, 'regions', 'eastus', 'mnt'))) continue; // the mounted plaintext view
    scanned++;
    if (fileContains(f, needles).some(Boolean)) {
      hits++;
      log(`found a secret in ${f}`);
    }
  }
  dek.fill(0);
  results.secrets_scan = { files: scanned, hits };

  // 7. Key-loss detection versus the number of servers, on a platform of its own (bench/monitor.ts).
  results.monitor = await measureMonitor({ quick, cleanups, machine: results.machine });

  results.durationSeconds = round((Date.now() - started) / 1000, 1);
  writeReport(results);
  log(`done in ${results.durationSeconds}s`);
}

/** The server's DEK, unwrapped as its identity through the vault (to search for it). */
async function unwrapServerDek(p: Pgbyok, name: string): Promise<Buffer> {
  const header = JSON.parse(readFileSync(join(p.home, 'regions', 'eastus', 'mnt', name, 'volume.json'), 'utf8'));
  const identity = header.meta.dataEncryption.primaryUserAssignedIdentityId as string;
  const cert = readFileSync(join(p.home, 'tls', 'trusted-service.pem'), 'utf8');
  const key = readFileSync(join(p.home, 'secrets', 'trusted-service.key.pem'), 'utf8');
  const { httpCall } = await import('../src/lib/http-client.js');
  const tok = await httpCall({ method: 'GET', url: `${p.origin}/metadata/identity/oauth2/token?resource=${encodeURIComponent('https://vault.azure.net')}&msi_res_id=${encodeURIComponent(identity)}`, ca: p.ca, cert, key });
  const token = JSON.parse(tok.text).access_token;
  const r = await httpsJson(p, 'POST', `${header.meta.wrappedBy}/unwrapkey?api-version=7.6`, token, { alg: 'RSA-OAEP-256', value: header.meta.wrappedDek });
  return Buffer.from(r.json.value, 'base64url');
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const f = join(dir, e.name);
    if (e.isDirectory()) {
      if (readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${f} `)) continue;
      out.push(...walk(f));
    } else if (e.isFile()) out.push(f);
  }
  return out;
}


function verdict(ok: boolean | null): string {
  return ok === null ? 'n/a' : ok ? 'met' : '**missed**';
}

function writeReport(r: any) {
  const benchDir = join(ROOT, 'bench');
  mkdirSync(join(benchDir, 'charts'), { recursive: true });
  writeFileSync(join(benchDir, 'results.json'), JSON.stringify(r, null, 2) + '\n');
  const m = r.machine;
  const chart = (file: string, svg: string) => writeFileSync(join(benchDir, 'charts', file), svg);
  const pgRows = (mode: 'rw' | 'ro') => [
    { label: 'plain ext4', value: r.pgbench[mode].plain_tps },
    { label: 'fscrypt by hand', value: r.pgbench[mode].fscrypt_manual_tps },
    { label: 'pgbyok (CMK)', value: r.pgbench[mode].pgbyok_tps },
    ...(r.pgbench[mode].gocryptfs_tps !== null ? [{ label: 'gocryptfs', value: r.pgbench[mode].gocryptfs_tps }] : []),
  ];
  chart('pgbench-rw.svg', barChart(`pgbench TPC-B (scale ${r.pgbench.scale}, -c4 -j2, ${r.pgbench.seconds}s), median tps`, 'tps', pgRows('rw')));
  chart('pgbench-ro.svg', barChart(`pgbench select-only (scale ${r.pgbench.scale}), median tps`, 'tps', pgRows('ro')));
  chart('revocation.svg', barChart('Seconds to lockout and back (p50 / p99)', 's', [
    { label: 'lockout p50', value: r.revocation.p50_s }, { label: 'lockout p99', value: r.revocation.p99_s, target: 5 },
    { label: 'back p50', value: r.restore.p50_s }, { label: 'back p99', value: r.restore.p99_s, target: 10 },
  ]));
  chart('vault.svg', barChart('Vault RSA-2048 unwrap/s vs OpenSSL sign/s', 'ops/s', [
    { label: 'vault unwrap/s', value: r.vault.unwrap_per_s, target: 0.7 * r.vault.openssl_rsa2048_sign_per_s },
    { label: 'openssl sign/s', value: r.vault.openssl_rsa2048_sign_per_s },
  ]));
  const accel = m.xtsAesAccelerated;
  const rw = r.pgbench.rw;
  const ro = r.pgbench.ro;
  const md = `# pgbyok benchmarks

Latest ${r.mode} run: ${r.generatedAt}, ${r.durationSeconds} s. Re-run with \`npm run bench\` (full, about 35 minutes) or
\`npm run bench -- --quick\` (a few minutes). Raw figures: [bench/results.json](bench/results.json). Every comparison ran
side by side in one run, in interleaved rounds (${r.config.rounds} rounds, medians).

## Machine

| | |
|---|---|
| CPU | ${m.cpuModel}, ${m.cores} cores, flags ${m.cpuFlags.join(' ')} |
| kernel | ${m.kernel} |
| kernel \`xts(aes)\` driver | \`${m.xtsAesDriver}\` (${accel ? 'accelerated' : 'generic C, no AES-NI driver'}) |
| PostgreSQL | ${m.postgres} |
| Node | ${m.node} |

## Results against the targets

| what | result | target | verdict |
|---|---|---|---|
| encryption overhead, TPC-B (pgbyok / plain ext4) | ${rw.ratio_pgbyok_vs_plain} (${rw.pgbyok_tps} vs ${rw.plain_tps} tps) | ≥ 0.97 where the kernel has an accelerated \`xts(aes)\` | ${accel ? verdict(rw.ratio_pgbyok_vs_plain >= 0.97) : 'not applicable here (no accelerated driver), reported'} |
| encryption overhead, select-only | ${ro.ratio_pgbyok_vs_plain} (${ro.pgbyok_tps} vs ${ro.plain_tps} tps) | same | ${accel ? verdict(ro.ratio_pgbyok_vs_plain >= 0.97) : 'not applicable here, reported'} |
| what pgbyok adds, TPC-B (pgbyok / fscrypt by hand) | ${rw.ratio_pgbyok_vs_fscrypt_manual} | ≥ 0.99 | ${verdict(rw.ratio_pgbyok_vs_fscrypt_manual >= 0.99)} |
| what pgbyok adds, select-only | ${ro.ratio_pgbyok_vs_fscrypt_manual} | ≥ 0.99 | ${verdict(ro.ratio_pgbyok_vs_fscrypt_manual >= 0.99)} |
| peer, TPC-B (pgbyok / gocryptfs) | ${rw.ratio_pgbyok_vs_gocryptfs ?? 'n/a'} | ≥ 1.4 | ${verdict(rw.ratio_pgbyok_vs_gocryptfs === null ? null : rw.ratio_pgbyok_vs_gocryptfs >= 1.4)} |
| peer, select-only | ${ro.ratio_pgbyok_vs_gocryptfs ?? 'n/a'} | ≥ 1.4 | ${verdict(ro.ratio_pgbyok_vs_gocryptfs === null ? null : ro.ratio_pgbyok_vs_gocryptfs >= 1.4)} |
| revocation to lockout (key disabled or policy revoked; ${r.revocation.trials} trials) | p50 ${r.revocation.p50_s} s, p99 ${r.revocation.p99_s} s | p99 ≤ 5 s (Azure documents up to 60 min) | ${verdict(r.revocation.p99_s <= 5)} |
| access restored to Ready (no manual revalidate) | p50 ${r.restore.p50_s} s, p99 ${r.restore.p99_s} s | p99 ≤ 10 s | ${verdict(r.restore.p99_s <= 10)} |
| vault unwrap throughput (RSA-OAEP-256, ${r.vault.clients} clients, HTTPS + token + audit) | ${r.vault.unwrap_per_s}/s, p99 ${r.vault.p99_ms} ms (${r.vault.errors} errors) | ≥ 70 % of \`openssl speed -multi ${m.cores} rsa2048\` = ${round(0.7 * r.vault.openssl_rsa2048_sign_per_s, 0)}/s | ${verdict(r.vault.ratio_vs_openssl >= 0.7)} (${round(r.vault.ratio_vs_openssl * 100, 1)} %) |
| provisioning (CMK server to Ready and a query) | median ${r.provisioning.median_s} s | ≤ 5 s (Azure takes minutes) | ${verdict(r.provisioning.median_s <= 5)} |
| backup of a ${r.backup.database_mb} MB database | ${r.backup.backup_mb_s} MB/s (${r.backup.backup_s} s) | reported | |
| point-in-time restore | ${r.backup.restore_s} s vs ${r.backup.baseline_restore_s} s unencrypted pg_basebackup + start | ≤ 2 × | ${verdict(r.backup.ratio_vs_baseline <= 2)} (${r.backup.ratio_vs_baseline} ×) |
| platform memory | ${r.vault.rss_idle_mb} MB idle, ${r.vault.rss_mb} MB under the vault load | reported | |
| secrets on disk (DEK and a marker row, ${r.secrets_scan.files} files) | ${r.secrets_scan.hits} hits | 0 | ${verdict(r.secrets_scan.hits === 0)} |

![TPC-B](bench/charts/pgbench-rw.svg)
![select-only](bench/charts/pgbench-ro.svg)
![revocation](bench/charts/revocation.svg)
![vault](bench/charts/vault.svg)

## pgbench detail (tps per round)

| variant | TPC-B rounds | select-only rounds | init (s) |
|---|---|---|---|
${(['plain', 'fscrypt_manual', 'pgbyok', 'gocryptfs'] as const).filter((v) => rw.rounds[v]).map((v) => `| ${v} | ${rw.rounds[v].map((x: number) => round(x, 0)).join(', ')} | ${ro.rounds[v].map((x: number) => round(x, 0)).join(', ')} | ${r.pgbench.init_seconds[v]} |`).join('\n')}

${monitorSection(r.monitor)}
${r.hsm ? `${hsmSection(r.hsm)}\n` : ''}## Where targets are missed, and why

${explain(r)}
`;
  writeFileSync(join(ROOT, 'BENCHMARKS.md'), md);
}

function explain(r: any): string {
  const notes: string[] = [];
  const m = r.machine;
  if (!m.xtsAesAccelerated) {
    notes.push(`- **Encryption overhead.** This kernel encrypts with \`${m.xtsAesDriver}\`, a constant-time generic C AES (there is no AES-NI driver in it), so every page read from disk and every page written costs a software AES-XTS pass; OpenSSL in user space does the same cipher about 100 times faster on this CPU. That is why pgbyok (and fscrypt by hand, which is the same data path) trails plain ext4 here. What closes it: a kernel with \`CONFIG_CRYPTO_AES_NI_INTEL\` (drivers \`xts-aes-aesni\` / \`xts-aes-vaes-avx512\`), as every stock distribution kernel has, or inline-encryption hardware. The ≥ 0.97 target applies only there.`);
  }
  for (const mode of ['rw', 'ro'] as const) {
    const x = r.pgbench[mode];
    if (x.ratio_pgbyok_vs_fscrypt_manual < 0.99) {
      notes.push(`- **What pgbyok adds (${mode === 'rw' ? 'TPC-B' : 'select-only'}): ${x.ratio_pgbyok_vs_fscrypt_manual}.** The data path is the same kernel fscrypt and every variant archives its WAL; what pgbyok adds is sealing that WAL into the encrypted backup store (AES-256-GCM in the platform process), the base backup taken at creation, and the key monitor, all on the same two cores as the benchmark, plus run-to-run noise on this VM (see the per-round figures). Nothing sits between PostgreSQL and the kernel.`);
    }
  }
  const ro = r.pgbench.ro;
  if (!m.xtsAesAccelerated && ro.ratio_pgbyok_vs_plain < 0.5) {
    notes.push(`- **Select-only: ${ro.pgbyok_tps} vs ${ro.plain_tps} tps.** The ${r.pgbench.scale}-scale database is larger than shared_buffers, so most reads come from the kernel page cache, and this VM evicts page cache continuously (see shared/reference/fscrypt-postgres-facts.md): each miss is a 4 KiB software AES-XTS decrypt at about 50 MB/s. The same cost hits fscrypt by hand (${ro.fscrypt_manual_tps} tps). With AES-NI (or a larger shared_buffers) the decrypts become rare and cheap.`);
  }
  for (const mode of ['rw', 'ro'] as const) {
    const x = r.pgbench[mode];
    if (x.ratio_pgbyok_vs_gocryptfs !== null && x.ratio_pgbyok_vs_gocryptfs < 1.4) {
      notes.push(`- **Peer (${mode === 'rw' ? 'TPC-B' : 'select-only'}): ${x.ratio_pgbyok_vs_gocryptfs} × gocryptfs.** gocryptfs encrypts in user space with OpenSSL/Go AES-GCM using the CPU's AES instructions, so on a kernel without an AES-NI driver it decrypts bulk reads far faster than the kernel's generic AES; it loses on the small synchronous writes PostgreSQL makes (FUSE round trips), which is why TPC-B is closer. The reference measurements on this machine kind (shared/reference/fscrypt-postgres-facts.md, prewarmed cache) had fscrypt at 1.45 × (TPC-B) and 1.97 × (select-only) gocryptfs; what moves the ratio is how many reads miss the page cache, and each miss costs a software AES pass in the kernel. What closes it: a kernel with an accelerated \`xts(aes)\` driver, where a miss costs almost nothing.`);
    }
  }
  if (r.pgbench.gocryptfs_note) notes.push(`- **Peer not measured in this run.** ${r.pgbench.gocryptfs_note}`);
  if (r.revocation.p99_s > 5) {
    notes.push(`- **Revocation to lockout: p99 ${r.revocation.p99_s} s (p50 ${r.revocation.p50_s} s).** The vault's event reaches the control plane within milliseconds; the tail is stopping PostgreSQL. On key loss pgbyok allows a clean (fast) shutdown 2 s, whose checkpoint writes the dirty pages through this kernel's software AES, then makes it immediate, waits for every process to exit and removes the key. The slow trials are the first ones after the pgbench runs, when shared buffers are full of dirty pages. What would close it: an accelerated AES driver that makes the checkpoint cheap, or skipping the clean attempt.`);
  }
  if (r.vault.ratio_vs_openssl < 0.7) {
    notes.push(`- **Vault throughput: ${round(r.vault.ratio_vs_openssl * 100, 1)} % of OpenSSL's multi-core RSA sign rate.** Measured first, on a quiet machine, as the OpenSSL reference is. The RSA private operations run on a pool of worker threads, but this machine has ${m.cores} cores for everything: the platform used ${r.vault.platform_cpu_cores ?? '?'} of them (RSA workers, plus the event loop's TLS, token verification, JSON and an audit record appended to SQLite per request) and the ${r.vault.clients} load-generating clients ${r.vault.load_generator_cpu_cores ?? '?'}. OpenSSL's figure is the RSA operation alone on every core. What would close it: the load generator on another machine, and more cores (the pool grows with them).`);
  }
  if (r.backup.ratio_vs_baseline > 2) {
    notes.push(`- **Restore time ${r.backup.ratio_vs_baseline} × the unencrypted baseline.** The restore decrypts the backup (AES-256-GCM in user space, fast), but writes every page through fscrypt's software AES on this kernel, and creates a new volume and server; the baseline writes to plain ext4.`);
  }
  if (!notes.length) notes.push('Every target was met in this run.');
  return notes.join('\n');
}

let cleaning: Promise<void> | undefined;
async function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch {
        // keep cleaning
      }
    }
    if (platform) {
      const home = platform.home;
      await platform.stop();
      cleanupLeftovers(home);
    }
  })();
  return cleaning;
}

// Interrupted (Ctrl-C, timeout): still leave nothing behind.
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`${sig}: cleaning up`);
    void cleanupAll().finally(() => process.exit(130));
  });
}

if (process.argv.includes('--report-only')) {
  // Re-renders BENCHMARKS.md and the charts from bench/results.json, without measuring anything.
  writeReport(JSON.parse(readFileSync(join(ROOT, 'bench', 'results.json'), 'utf8')));
  process.exit(0);
}

/**
 * `--only monitor|hsm`: measures that part alone; the rest of results.json and BENCHMARKS.md is kept as it is.
 * The HSM's figure is put beside a vault figure measured just before it, on a platform of its own.
 */
async function partOnly(part: 'monitor' | 'hsm') {
  const m = machine();
  log(`mode ${quick ? 'quick' : 'full'} (${part} only); machine ${m.cpuModel}, ${m.cores} cores, xts(aes) driver ${m.xtsAesDriver}`);
  const resultsFile = join(ROOT, 'bench', 'results.json');
  const results = existsSync(resultsFile) ? JSON.parse(readFileSync(resultsFile, 'utf8')) : {};
  if (part === 'monitor') results.monitor = await measureMonitor({ quick, cleanups, machine: m });
  else {
    platform = await startPgbyok({ PGBYOK_LOG_LEVEL: 'warn' });
    const p = platform;
    const v = p.cli('vault', 'create', '--name', 'bench-hsm-kv', '--location', 'eastus');
    p.cli('key', 'create', '--vault-name', 'bench-hsm-kv', '--name', 'kek');
    const vault = await vaultUnwraps(p, `${v.properties.vaultUri}keys/kek`, await p.token(p.admin));
    results.hsm = await measureHsm({ p, clients: cfg.clients, seconds: cfg.vaultSeconds, vaultUnwrapPerS: vault.unwrap_per_s, quick, cleanups });
  }
  writeFileSync(resultsFile, JSON.stringify(results, null, 2) + '\n');
  const mdFile = join(ROOT, 'BENCHMARKS.md');
  const md = existsSync(mdFile) ? readFileSync(mdFile, 'utf8') : '# pgbyok benchmarks\n\n';
  const section = part === 'monitor' ? monitorSection(results.monitor) : hsmSection(results.hsm);
  const marked = new RegExp(`<!-- ${part}:start -->[\\s\\S]*?<!-- ${part}:end -->\\n`);
  const anchor = '## Where targets are missed, and why';
  writeFileSync(mdFile, marked.test(md) ? md.replace(marked, () => section) : md.includes(anchor) ? md.replace(anchor, () => `${section}\n${anchor}`) : `${md}\n${section}`);
  log(`${part}: results.json and BENCHMARKS.md updated`);
}

(only ? partOnly(only) : main())
  .catch((e) => {
    log(`FAILED: ${(e as Error).stack ?? e}`);
    process.exitCode = 1;
  })
  .finally(async () => {
    await cleanupAll();
  });
