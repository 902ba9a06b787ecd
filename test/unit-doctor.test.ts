/**
 * `pgbyok doctor`'s decision table on fake machines (nothing on this one is probed): every missing
 * prerequisite is named with its fix and its package, --vaults-only starts without what servers need, the
 * PKCS#11 module counts only where managed HSMs are used, ports held by pgbyok itself are no problem, the
 * message with which `pgbyok up` stops, and what `--fix` runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { failing, runChecks, type CheckResult } from '../src/doctor/checks.js';
import { fixMissing } from '../src/doctor/fix.js';
import type { Probe } from '../src/doctor/probe.js';
import { reportLine, reportLines, upRefusal, vaultsOnlyNotice } from '../src/doctor/report.js';
import { loadConfig } from '../src/lib/config.js';

/** A machine that has everything except what is listed. */
interface Lacks {
  uid?: number;
  files?: string[];
  commands?: string[];
  names?: string[];
  busyPorts?: number[];
  kernel?: string;
  running?: number;
  hsms?: boolean;
}

function machine(l: Lacks = {}): Probe {
  return {
    uid: () => l.uid ?? 0,
    exists: (p) => !(l.files ?? []).includes(p),
    command: (c) => ((l.commands ?? []).includes(c) ? undefined : `/usr/bin/${c}`),
    resolve: async (h) => ((l.names ?? []).includes(h) ? 'ENOTFOUND' : undefined),
    portFree: async (p) => !(l.busyPorts ?? []).includes(p),
    kernel: () => l.kernel ?? '6.1.0-18-amd64',
    filesystemOf: () => 'ext4',
    runningPid: () => l.running,
    hsmsExist: async () => l.hsms ?? false,
  };
}

const HOME = '/nonexistent/pgbyok-home';
const check = (l: Lacks, o: { env?: Record<string, string>; vaultsOnly?: boolean; home?: string } = {}) =>
  runChecks({ probe: machine(l), home: o.home ?? HOME, config: loadConfig(o.env ?? {}), vaultsOnly: o.vaultsOnly ?? false });
const named = (rs: CheckResult[], name: string) => rs.find((r) => r.check === name)!;

test('a machine with everything passes every check, and up may start', async () => {
  const rs = await check({});
  assert.deepEqual(rs.filter((r) => !r.ok), []);
  assert.deepEqual(failing(rs), []);
  assert.equal(upRefusal(rs), undefined);
  assert.ok(reportLines(rs).every((l) => l.startsWith('ok   ')));
  assert.deepEqual(rs.map((r) => r.check), [
    'root', 'loop devices', 'fscrypt', 'losetup', 'mount', 'umount', 'mkfs.ext4', 'resize2fs', 'e2fsck', 'OS accounts', 'runuser',
    'PostgreSQL 15 server', 'psql', 'pgextwlist', 'pgbyok guard module', 'openssl', 'vault names', 'server names', 'PKCS#11 module',
    'platform port', 'vault port',
  ]);
});

// One missing piece each: [what the machine lacks, the check that names it, its fix, its package, who needs it].
const CASES: [string, Lacks, string, RegExp, string | undefined, 'servers' | 'always'][] = [
  ['not root', { uid: 1000 }, 'root', /run pgbyok as root/, undefined, 'servers'],
  ['no loop devices', { files: ['/dev/loop-control'] }, 'loop devices', /modprobe loop/, undefined, 'servers'],
  ['no ext4 encryption', { files: ['/sys/fs/ext4/features/encryption'] }, 'fscrypt', /CONFIG_FS_ENCRYPTION=y/, undefined, 'servers'],
  ['a kernel before fscrypt v2', { kernel: '5.3.18-lp152' }, 'fscrypt', /Linux 5\.4 or newer/, undefined, 'servers'],
  ['no losetup', { commands: ['losetup'] }, 'losetup', /apt-get install util-linux/, 'util-linux', 'servers'],
  ['no mkfs.ext4', { commands: ['mkfs.ext4'] }, 'mkfs.ext4', /apt-get install e2fsprogs/, 'e2fsprogs', 'servers'],
  ['no resize2fs', { commands: ['resize2fs'] }, 'resize2fs', /apt-get install e2fsprogs/, 'e2fsprogs', 'servers'],
  ['no useradd', { commands: ['useradd'] }, 'OS accounts', /apt-get install passwd/, 'passwd', 'servers'],
  ['no initdb', { files: ['/usr/lib/postgresql/15/bin/initdb'] }, 'PostgreSQL 15 server', /apt-get install postgresql-15/, 'postgresql-15', 'servers'],
  ['no psql', { commands: ['psql'] }, 'psql', /apt-get install postgresql-client-15/, 'postgresql-client-15', 'servers'],
  ['no pgextwlist', { files: ['/usr/lib/postgresql/15/lib/plugins/pgextwlist.so'] }, 'pgextwlist', /apt-get install postgresql-15-pgextwlist/, 'postgresql-15-pgextwlist', 'servers'],
  ['no guard module', { files: ['/usr/lib/postgresql/15/lib/pgbyok_guard.so'] }, 'pgbyok guard module', /bash scripts\/install-pg-guard\.sh/, undefined, 'servers'],
  ['no openssl', { commands: ['openssl'] }, 'openssl', /apt-get install openssl/, 'openssl', 'always'],
  ['vault names do not resolve', { names: ['probe.vault.localhost'] }, 'vault names', /libnss-myhostname/, 'libnss-myhostname', 'always'],
  ['server names do not resolve', { names: ['probe.postgres.database.localhost'] }, 'server names', /libnss-myhostname/, 'libnss-myhostname', 'servers'],
  ['the vault port is taken', { busyPorts: [443] }, 'vault port', /free it .*or set PGBYOK_VAULT_PORT to a free port/, undefined, 'always'],
];

for (const [what, lacks, name, fix, pkg, needed] of CASES) {
  test(`${what}: '${name}' is MISSING, with its fix`, async () => {
    const rs = await check(lacks);
    assert.deepEqual(failing(rs).map((r) => r.check), [name], 'only that check fails');
    const r = named(rs, name);
    assert.match(r.fix, fix);
    assert.equal(r.package, pkg);
    assert.equal(r.needed, needed);
    assert.match(reportLine(r), new RegExp(`^MISSING ${name.replace(/[.#]/g, '\\$&')}: .+ — fix: `));
    const refusal = upRefusal(rs)!;
    assert.ok(refusal.includes(reportLine(r)), 'up says the same line');
    // What only servers need lets a vaults-only platform start; what vaults need too does not.
    const vaultsOnly = await check(lacks, { vaultsOnly: true });
    assert.equal(upRefusal(vaultsOnly) === undefined, needed === 'servers');
  });
}

test('the guard check says when gcc, which builds it, is missing too', async () => {
  const r = named(await check({ files: ['/usr/lib/postgresql/15/lib/pgbyok_guard.so'], commands: ['gcc'] }), 'pgbyok guard module');
  assert.match(r.detail, /needs gcc/);
});

test('a real domain needs a wildcard DNS record, not a package', async () => {
  const rs = await check({ names: ['probe.vault.pgbyok.example.com'] }, { env: { PGBYOK_DOMAIN: 'pgbyok.example.com' } });
  const r = named(rs, 'vault names');
  assert.equal(r.ok, false);
  assert.match(r.fix, /wildcard DNS record \*\.vault\.pgbyok\.example\.com/);
  assert.equal(r.package, undefined);
});

test('--vaults-only (or PGBYOK_VAULTS_ONLY=1) passes without any server prerequisite, and says what servers would need', async () => {
  const bare: Lacks = {
    uid: 1000, files: ['/dev/loop-control', '/usr/lib/postgresql/15/bin/initdb', '/usr/lib/postgresql/15/lib/pgbyok_guard.so', '/usr/lib/postgresql/15/lib/plugins/pgextwlist.so'],
    commands: ['losetup', 'mkfs.ext4', 'psql'],
  };
  const full = await check(bare);
  assert.equal(failing(full).length, 8);
  assert.ok(failing(full).every((r) => r.needed === 'servers'));
  const refusal = upRefusal(full)!;
  assert.match(refusal, /^pgbyok cannot start: prerequisites are missing\.$/m);
  assert.match(refusal, /^MISSING root: /m);
  assert.match(refusal, /^MISSING PostgreSQL 15 server: missing: \/usr\/lib\/postgresql\/15\/bin\/initdb — fix: apt-get install postgresql-15$/m);
  assert.match(refusal, /run `pgbyok doctor --fix` \(as root\) to install what is missing, or `pgbyok up --vaults-only` to serve vaults and managed HSMs without PostgreSQL servers$/);

  for (const o of [{ vaultsOnly: true }, { env: { PGBYOK_VAULTS_ONLY: '1' }, vaultsOnly: loadConfig({ PGBYOK_VAULTS_ONLY: '1' }).PGBYOK_VAULTS_ONLY }]) {
    const rs = await check(bare, o);
    assert.deepEqual(failing(rs), []);
    assert.equal(upRefusal(rs), undefined);
    assert.ok(rs.filter((r) => r.needed === 'servers').every((r) => !r.required));
    const notice = vaultsOnlyNotice(rs);
    assert.match(notice, /^Vaults only \(--vaults-only\): vaults and managed HSMs are served; PostgreSQL servers cannot be created\./);
    assert.match(notice, /servers would need: root, loop devices, losetup, mkfs\.ext4, PostgreSQL 15 server, psql, pgextwlist, pgbyok guard module/);
  }
  // And a platform that lacks what vaults need does not start even so, saying that vaults cannot be served either.
  const worse = await check({ ...bare, commands: [...bare.commands!, 'openssl'] }, { vaultsOnly: true });
  assert.deepEqual(failing(worse).map((r) => r.check), ['openssl']);
  assert.match(upRefusal(worse)!, /cannot serve vaults either/);
  assert.throws(() => loadConfig({ PGBYOK_VAULTS_ONLY: 'sure' }), /PGBYOK_VAULTS_ONLY='sure' is not valid: it must be 1 or 0 \(true or false\)/);
});

test('the PKCS#11 module is optional until managed HSMs are used', async () => {
  const softhsm = '/usr/lib/softhsm/libsofthsm2.so';
  const unused = named(await check({ files: [softhsm] }), 'PKCS#11 module');
  assert.deepEqual([unused.ok, unused.required, unused.package], [false, false, 'softhsm2']);
  assert.match(reportLine(unused), /^optional PKCS#11 module: \/usr\/lib\/softhsm\/libsofthsm2\.so is missing; optional, for managed HSMs — fix: apt-get install softhsm2$/);
  assert.deepEqual(failing(await check({ files: [softhsm] })), []);

  const used = await check({ files: [softhsm], hsms: true });
  assert.deepEqual(failing(used).map((r) => r.check), ['PKCS#11 module']);
  assert.match(named(used, 'PKCS#11 module').detail, /this home has managed HSMs/);
  assert.deepEqual(failing(await check({ files: [softhsm], hsms: true }, { vaultsOnly: true })).map((r) => r.check), ['PKCS#11 module'], 'vaults-only platforms serve HSMs');

  const own = await check({ files: ['/opt/hsm/lib.so'] }, { env: { PGBYOK_PKCS11_MODULE: '/opt/hsm/lib.so' } });
  const r = named(own, 'PKCS#11 module');
  assert.deepEqual([r.ok, r.required, r.package], [false, true, undefined]);
  assert.match(r.fix, /set PGBYOK_PKCS11_MODULE/);
});

test('ports: those up would use are checked; one held by pgbyok itself is no problem', async () => {
  const home = mkdtempSync(join(tmpdir(), 'pgbyok-doctor-'));
  try {
    // Before the first start the platform port is any free one; PGBYOK_PORT names one.
    assert.match(named(await check({ busyPorts: [40000] }, { home }), 'platform port').detail, /a free port, chosen at the first start/);
    const env = named(await check({ busyPorts: [40000] }, { home, env: { PGBYOK_PORT: '40000', PGBYOK_VAULT_PORT: '40001' } }), 'platform port');
    assert.equal(env.ok, false);
    assert.match(env.fix, /ss -ltnp 'sport = :40000'.*set PGBYOK_PORT to a free port/);
    assert.match(named(await check({ busyPorts: [40001] }, { home, env: { PGBYOK_VAULT_PORT: '40001' } }), 'vault port').detail, /40001 \(from PGBYOK_VAULT_PORT\) is in use/);

    // Once started, the kept ports win over the environment.
    writeFileSync(join(home, 'settings.json'), JSON.stringify({ port: 41000, vaultPort: 41001, host: '127.0.0.1', defaultLocation: 'eastus', defaultTenantId: 't' }));
    const kept = await check({ busyPorts: [41000, 41001] }, { home, env: { PGBYOK_PORT: '40000' } });
    assert.deepEqual(failing(kept).map((r) => r.check), ['platform port', 'vault port']);
    assert.match(named(kept, 'vault port').fix, /change it in .*settings\.json/);
    const running = await check({ busyPorts: [41000, 41001], running: 4242 }, { home });
    assert.deepEqual(failing(running), []);
    assert.match(named(running, 'platform port').detail, /^41000 \(kept in .*\): pgbyok is running \(pid 4242\)/);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});

test('--fix installs the missing packages non-interactively, drops Debian\'s cluster, builds the guard, and leaves the rest to the report', async () => {
  const lacks: Lacks = {
    files: ['/usr/lib/postgresql/15/bin/initdb', '/usr/lib/postgresql/15/lib/pgbyok_guard.so', '/usr/lib/softhsm/libsofthsm2.so', '/dev/loop-control'],
    commands: ['gcc', 'openssl'],
  };
  const probe = machine(lacks);
  const ran: { argv: string[]; env?: Record<string, string> }[] = [];
  let installs = 0;
  const problems = fixMissing(await check(lacks), {
    probe, repoRoot: '/src/pgbyok', log: () => {},
    // The first install fails as on a machine without package lists.
    run: (argv, env) => (ran.push({ argv, env }), argv[1] === 'install' && installs++ === 0 ? 100 : 0),
  });
  assert.deepEqual(problems, []);
  assert.deepEqual(ran.map((r) => r.argv.join(' ')), [
    'apt-get install -y -q postgresql-15 openssl softhsm2 gcc',
    'apt-get update -q',
    'apt-get install -y -q postgresql-15 openssl softhsm2 gcc',
    'pg_dropcluster --stop 15 main',
    'bash /src/pgbyok/scripts/install-pg-guard.sh',
  ]);
  assert.equal(ran[0].env?.DEBIAN_FRONTEND, 'noninteractive');

  // With --vaults-only only the vault side is installed; nothing missing runs nothing.
  const vaultSide: string[] = [];
  fixMissing(await check(lacks, { vaultsOnly: true }), { probe, repoRoot: '/src/pgbyok', log: () => {}, run: (argv) => (vaultSide.push(argv.join(' ')), 0) });
  assert.deepEqual(vaultSide, ['apt-get install -y -q openssl softhsm2']);
  const none: string[] = [];
  fixMissing(await check({}), { probe: machine(), repoRoot: '/src/pgbyok', log: () => {}, run: (argv) => (none.push(argv.join(' ')), 0) });
  assert.deepEqual(none, []);

  // A failed install is reported, not hidden.
  const failed = fixMissing(await check({ commands: ['openssl'] }), { probe, repoRoot: '/src/pgbyok', log: () => {}, run: () => 1 });
  assert.deepEqual(failed, ['apt-get install openssl failed (see its output above)']);
});
