/**
 * The README's first command on a machine where a prerequisite is missing: PostgreSQL's extension allow-list
 * module (Debian's postgresql-15-pgextwlist, which every server loads) is removed for real; `npm run walkthrough`
 * must name it and its fix, install it with `pgbyok doctor --fix`, and then run the whole job on a server that
 * needs it. The package is a leaf (nothing depends on it) and cheap to reinstall; it is reinstalled in after()
 * whatever happens, from a .deb fetched before the removal if the registry is gone by then.
 * Runs alone, after every other suite (`npm test`: dist/test/serial/), because the other servers need it.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, cleanupLeftovers } from '../harness.js';
import { leftovers, newHome, runWalkthrough } from '../walkthrough-run.js';

const PACKAGE = 'postgresql-15-pgextwlist';
const MODULE = '/usr/lib/postgresql/15/lib/plugins/pgextwlist.so';
const APT_ENV = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
/** apt-get, waiting for the dpkg lock rather than failing when someone else holds it. */
const apt = (...args: string[]) => spawnSync('apt-get', ['-q', '-y', '-o', 'DPkg::Lock::Timeout=300', ...args], { env: APT_ENV, encoding: 'utf8' });
const installed = () => spawnSync('dpkg-query', ['-W', '-f=${Status}', PACKAGE], { encoding: 'utf8' }).stdout === 'install ok installed';

const debDir = mkdtempSync(join(tmpdir(), 'pgbyok-deb-'));
const home = newHome();
let removed = false;

after(() => {
  // Whatever happened: the package is installed again, from the registry or else from the .deb fetched first.
  if (removed || !installed()) {
    const r = apt('install', PACKAGE);
    if (!installed()) {
      const deb = readdirSync(debDir).find((f) => f.endsWith('.deb'));
      const d = deb ? spawnSync('dpkg', ['-i', join(debDir, deb)], { env: APT_ENV, encoding: 'utf8' }) : undefined;
      if (!installed()) process.stderr.write(`COULD NOT REINSTALL ${PACKAGE}: ${r.stderr}${d?.stderr ?? ''}\n`);
    }
  }
  cleanupLeftovers(home);
  rmSync(home, { recursive: true, force: true });
  rmSync(debDir, { recursive: true, force: true });
});

test(`a prerequisite missing (${PACKAGE}): the first README command names it and its fix, installs it, and the whole job runs`, {
  skip: process.getuid?.() !== 0 && 'removing and installing a Debian package needs root',
  timeout: 300_000,
}, async (t) => {
  // The package as the registry has it now: proves apt-get reaches the registry, and is the fallback of after().
  chmodSync(debDir, 0o777); // apt-get download fetches as the _apt user
  let fetched = spawnSync('apt-get', ['download', '-q', PACKAGE], { cwd: debDir, encoding: 'utf8' });
  if (fetched.status !== 0) {
    apt('update');
    fetched = spawnSync('apt-get', ['download', '-q', PACKAGE], { cwd: debDir, encoding: 'utf8' });
  }
  if (fetched.status !== 0) return t.skip(`apt-get cannot reach the package registry: ${fetched.stderr.trim().split('\n').at(-1)}`);

  removed = true;
  const gone = apt('remove', PACKAGE);
  assert.equal(gone.status, 0, gone.stderr);
  assert.ok(!installed() && !existsSync(MODULE), `${PACKAGE} is removed`);

  const r = await runWalkthrough(home, { PGBYOK_WALKTHROUGH_KEEP: '0' }, [], 240_000);
  const out = r.output;
  assert.equal(r.status, 0, out);
  // What the set-up said, in the test's report.
  for (const line of out.slice(0, out.indexOf('== 1. ')).replace(/\x1b\[[0-9;]*m/g, '').split('\n')) t.diagnostic(line);
  // The doctor named the missing check and its fix, then fixed it.
  const missing = /^MISSING +[^\n]*pgextwlist[^\n]*— fix: ([^\n]*)$/m.exec(out);
  assert.ok(missing, `the doctor names the missing module:\n${out.slice(0, 3000)}`);
  assert.match(missing[1], new RegExp(PACKAGE), 'its fix names the Debian package');
  assert.match(out.slice(missing.index), /^ok +[^\n]*pgextwlist/m, 'after the fix the check passes');
  assert.ok(installed() && existsSync(MODULE), `${PACKAGE} is installed again by --fix`);
  // ...and the server that loads it ran through the whole job.
  assert.match(out, /server pg-walk-\w+ is Ready, key status Valid/);
  assert.match(out, /server pg-walk-\w+: not found; its volume image \S+: gone/);
  assert.match(out, /pgbyok \(pid \d+\) stopped\./);
  assert.deepEqual(leftovers(home), []);

  const doctor = spawnSync(process.execPath, [BIN, 'doctor'], { env: { ...process.env, PGBYOK_HOME: home }, encoding: 'utf8' });
  assert.equal(doctor.status, 0, `the doctor finds nothing missing now:\n${doctor.stdout}${doctor.stderr}`);
  assert.match(doctor.stdout, /^ok +[^\n]*pgextwlist/m);
});
