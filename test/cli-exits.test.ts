/**
 * What a script sees of the CLI (through bin/pgbyok): a usage error is one line and exit 2; `status` tells
 * "not running" (3) from "not signed in" (4) from running (0); `pgbyok doctor` on this machine; and the
 * check at `pgbyok up`: without root it stops naming what is missing, and `--vaults-only` starts anyway,
 * says so, and refuses to create a server.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chownSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, eventually, startPgbyok } from './harness.js';
import { freePort } from '../src/lib/ports.js';

const scratch = mkdtempSync(join(tmpdir(), 'pgbyok-exits-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const pgbyok = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [BIN, ...args], { env: { ...process.env, PGBYOK_HOME: join(scratch, 'never-started'), ...env }, encoding: 'utf8', timeout: 60_000 });
const lines = (s: string) => s.split('\n').filter(Boolean);

test('an unknown command, an unknown command of a group and an unknown option exit 2 with one line naming it', () => {
  for (const [args, line] of [
    [['frobnicate'], "pgbyok: unknown command 'frobnicate' (see 'pgbyok --help')"],
    [['vault', 'frobnicate'], "pgbyok: unknown command 'frobnicate' for 'pgbyok vault' (see 'pgbyok vault --help')"],
    [['server', 'backup', 'frobnicate'], "pgbyok: unknown command 'frobnicate' for 'pgbyok server backup' (see 'pgbyok server backup --help')"],
    [['vault', 'lst'], "pgbyok: unknown command 'lst' for 'pgbyok vault' (did you mean list? see 'pgbyok vault --help')"],
    [['vault', 'list', '--bogus'], "pgbyok: unknown option '--bogus' (see 'pgbyok vault list --help')"],
    [['--bogus', 'status'], "pgbyok: unknown option '--bogus' (see 'pgbyok --help')"],
    [['login'], "pgbyok: required option '--client-id <id>' not specified (see 'pgbyok login --help')"],
  ] as [string[], string][]) {
    const r = pgbyok(args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.deepEqual(lines(r.stderr), [line]);
    assert.equal(r.stdout, '');
  }
  // A value an option does not take is a usage error too.
  for (const [args, line] of [
    [['-o', 'xml', 'status'], "ERROR: --output must be json, table or none, not 'xml'."],
    [['audit', 'list', '--top', 'many'], "ERROR: --top must be a whole number, not 'many'."],
  ] as [string[], string][]) {
    const r = pgbyok(args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.deepEqual(lines(r.stderr), [line]);
  }
  // A group alone shows its commands, on stderr, as a usage error; --help is no error.
  const group = pgbyok(['vault']);
  assert.equal(group.status, 2);
  assert.match(group.stderr, /^Usage: pgbyok vault /);
  const help = pgbyok(['vault', '--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /^Usage: pgbyok vault /);
});

test('status before any start, and with nothing listening, says "not running" and exits 3; other commands say the same, not "log in"', async () => {
  const never = pgbyok(['status']);
  assert.equal(never.status, 3, never.stderr);
  assert.deepEqual(lines(never.stderr), [`ERROR: pgbyok is not running (home ${join(scratch, 'never-started')} has never been started): start it with 'pgbyok up'`]);
  const create = pgbyok(['vault', 'create', '--name', 'kv1']);
  assert.equal(create.status, 3, create.stderr);
  assert.match(create.stderr, /has not been started .*run 'pgbyok up' first/);
  assert.doesNotMatch(create.stderr, /login/);

  const stopped = join(scratch, 'stopped');
  const port = await freePort();
  spawnSync('mkdir', ['-p', stopped]);
  writeFileSync(join(stopped, 'settings.json'), JSON.stringify({ port, host: '127.0.0.1', vaultPort: 1, domain: 'localhost', defaultLocation: 'eastus', defaultTenantId: 't' }));
  const down = pgbyok(['status'], { PGBYOK_HOME: stopped });
  assert.equal(down.status, 3, down.stderr);
  assert.deepEqual(lines(down.stderr), [`ERROR: pgbyok is not running (no platform at https://127.0.0.1:${port}): start it with 'pgbyok up'`]);
});

test('a running platform: status exits 0; without a usable credential it exits 4 naming pgbyok login; doctor says pgbyok holds its ports', async () => {
  const p = await startPgbyok();
  try {
    const ok = p.cliRaw(['status']);
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout).status, 'Running');

    const admin = join(p.home, 'secrets', 'admin.json');
    renameSync(admin, `${admin}.away`);
    try {
      const none = p.cliRaw(['status']);
      assert.equal(none.status, 4, none.stderr);
      assert.match(none.stderr, new RegExp(`^ERROR: pgbyok is running at ${p.origin.replace(/\./g, '\\.')}, but this CLI is not signed in: No credential found: .*admin\\.json.* Use 'pgbyok login'`));
      assert.equal(p.cliRaw(['vault', 'list']).status, 4);
    } finally {
      renameSync(`${admin}.away`, admin);
    }
    writeFileSync(join(p.home, 'secrets', 'cli-profile.json'), JSON.stringify({ tenantId: p.admin.tenantId, clientId: p.admin.clientId, clientSecret: 'wrong' }));
    const refused = p.cliRaw(['status']);
    assert.equal(refused.status, 4, refused.stderr);
    assert.match(refused.stderr, /not signed in: Sign-in failed/);
    assert.equal(p.cliRaw(['logout']).status, 0);
    assert.equal(p.cliRaw(['status']).status, 0);

    const doctor = p.cliRaw(['doctor']);
    assert.equal(doctor.status, 0, doctor.stdout + doctor.stderr);
    assert.match(doctor.stdout, /^ok   platform port: \d+ \(kept in .*settings\.json\): pgbyok is running \(pid \d+\) and holds it$/m);
    assert.match(doctor.stdout, /^ok   vault port: \d+ \(kept in .*settings\.json\): pgbyok is running \(pid \d+\) and holds it$/m);
  } finally {
    await p.stop();
  }
});

test('pgbyok doctor -o json on this machine: every check ok, exit 0, quickly', async () => {
  // A free vault port of its own, as the harness gives each platform (443, root's default, may be another's).
  const vaultPort = String(await freePort());
  const started = Date.now();
  const r = pgbyok(['doctor', '-o', 'json'], { PGBYOK_VAULT_PORT: vaultPort });
  const ms = Date.now() - started;
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const checks = JSON.parse(r.stdout) as { check: string; ok: boolean; detail: string; fix: string; needed: string; required: boolean }[];
  assert.ok(checks.length >= 20);
  assert.deepEqual(checks.filter((c) => !c.ok), []);
  for (const c of checks) {
    assert.ok(['servers', 'always', 'hsm'].includes(c.needed), c.check);
    assert.equal(typeof c.fix, 'string');
  }
  for (const name of ['root', 'loop devices', 'fscrypt', 'mkfs.ext4', 'PostgreSQL 15 server', 'psql', 'pgextwlist', 'pgbyok guard module', 'openssl', 'vault names', 'server names', 'PKCS#11 module', 'platform port', 'vault port']) {
    assert.ok(checks.some((c) => c.check === name), name);
  }
  assert.ok(ms < 5000, `doctor took ${ms} ms`);
});

test('a busy vault port stops up (exit 1) with the doctor\'s line, before anything is started', async () => {
  const holder = createServer();
  const port = await new Promise<number>((r) => holder.listen(0, '127.0.0.1', () => r((holder.address() as { port: number }).port)));
  try {
    const home = join(scratch, 'busy');
    const r = pgbyok(['up'], { PGBYOK_HOME: home, PGBYOK_VAULT_PORT: String(port) });
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, new RegExp(`^MISSING vault port: ${port} \\(from PGBYOK_VAULT_PORT\\) is in use by another program — fix: free it`, 'm'));
    assert.match(r.stderr, /pgbyok cannot serve vaults either until these are fixed/);
    assert.doesNotMatch(r.stdout, /pgbyok is up/);
  } finally {
    holder.close();
  }
});

test('without root, up stops naming root and the two ways on; --vaults-only starts, says so first, and refuses to create a server', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root to run pgbyok as nobody');
  const home = mkdtempSync(join(tmpdir(), 'pgbyok-vaults-only-'));
  chownSync(home, 65534, 65534);
  const env = { ...process.env, PGBYOK_HOME: home, PGBYOK_LOG_LEVEL: 'warn' };
  const asNobody = (args: string[]) => spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, BIN, ...args], { env, encoding: 'utf8', timeout: 60_000 });
  try {
    const refused = asNobody(['up']);
    assert.equal(refused.status, 1, refused.stdout + refused.stderr);
    assert.match(refused.stderr, /^MISSING root: .* — fix: run pgbyok as root$/m);
    assert.match(refused.stderr, /run `pgbyok doctor --fix` \(as root\) to install what is missing, or `pgbyok up --vaults-only` to serve vaults and managed HSMs without PostgreSQL servers/);
    const doctor = asNobody(['doctor']);
    assert.equal(doctor.status, 1);
    assert.equal(asNobody(['doctor', '--vaults-only']).status, 0);
    const fix = asNobody(['doctor', '--fix']);
    assert.equal(fix.status, 1);
    assert.match(fix.stderr, /--fix needs root/);

    const child = spawn('runuser', ['-u', 'nobody', '--', process.execPath, BIN, 'up', '--vaults-only'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    try {
      await eventually(() => child.exitCode !== null || out.includes('pgbyok is up.'), 'pgbyok up --vaults-only', 30_000, 100);
      assert.equal(child.exitCode, null, out);
      const stdoutLines = lines(out).filter((l) => !/allowUnionTypes/.test(l));
      assert.equal(stdoutLines[0], 'Vaults only (--vaults-only): vaults and managed HSMs are served; PostgreSQL servers cannot be created.');
      assert.equal(asNobody(['status', '-o', 'none']).status, 0);
      const kv = asNobody(['vault', 'create', '--name', `vo${Date.now() % 100000}`, '--location', 'eastus']);
      assert.equal(kv.status, 0, kv.stderr);
      const server = asNobody(['server', 'create', '--name', 'vo-s1', '--location', 'eastus', '--admin-user', 'a', '--admin-password', 'Secr3t-pass-word']);
      assert.notEqual(server.status, 0);
      assert.match(server.stderr, /\(VaultsOnly\) This platform was started with --vaults-only: .*creates no PostgreSQL servers/);
    } finally {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
    }
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
