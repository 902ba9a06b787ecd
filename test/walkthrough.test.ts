/**
 * The README's first command (`npm run walkthrough`), as a new user runs it: the set-up, then the main job on
 * a real encrypted server, each step shown as it happens; pgbyok keeps running and the printed command stops
 * it, leaving nothing behind. Without root: the doctor says why, and the vault part runs alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { accessSync, chownSync, constants, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { cleanupLeftovers, ROOT } from './harness.js';
import { exited, leftovers, newHome, runWalkthrough } from './walkthrough-run.js';

const isRoot = process.getuid?.() === 0;

/** The text of step `n` (from its headline to the next one). */
function stepText(output: string, n: string): string {
  const start = output.indexOf(`== ${n}. `);
  assert.notEqual(start, -1, `step ${n} is shown:\n${output}`);
  const next = output.indexOf('\n== ', start + 1);
  return output.slice(start, next === -1 ? undefined : next);
}

test('as root: the set-up, then the seven steps on a real server; the printed command stops pgbyok and nothing is left', { skip: !isRoot && 'encrypted servers need root', timeout: 180_000 }, async () => {
  const home = newHome();
  let pid: number | undefined;
  try {
    const r = await runWalkthrough(home);
    assert.equal(r.status, 0, r.output);
    const out = r.output;
    // The set-up: the doctor checked (on a machine set up already, it finds everything present).
    assert.match(out, /\$ pgbyok doctor\n(ok|optional) /);
    assert.doesNotMatch(out.slice(0, out.indexOf('== 1. ')), /^MISSING/m, 'nothing is missing');
    assert.match(out, /\$ pgbyok up > \S+ 2>&1 &\n\$ until pgbyok status/);

    const s1 = stepText(out, '1');
    assert.match(s1, /vault https:\/\/kv-walk-\w+\.vault\.localhost:\d+\/: soft-delete 90 days, purge protection on/);
    assert.match(s1, /key https:\/\/\S+\/keys\/kek\/[0-9a-f]{32} \(RSA 2048\)/);
    assert.match(s1, /--key-permissions get list wrapKey unwrapKey/);

    const s2 = stepText(out, '2');
    assert.match(s2, /\$ pgbyok server create --name (pg-walk-\w+) .*--key https:\/\/\S+\/keys\/kek --identity id-walk-\w+ --storage-size 1\n/);
    assert.match(s2, /server pg-walk-\w+ is Ready, key status Valid/);
    assert.match(s2, /connect: host localhost, port \d+, user dbadmin, password \S+ \(generated, shown once\)/);
    assert.match(s2, /\$ psql 'host=localhost port=\d+ dbname=postgres user=dbadmin sslmode=verify-full sslrootcert=\S+\/tls\/ca\.pem'/);
    assert.match(s2, /rows_written \n-+\n +3\n/);

    const s3 = stepText(out, '3');
    assert.match(s3, /server pg-walk-\w+ is Inaccessible: the key is disabled/);
    assert.match(s3, /FATAL: +server "pg-walk-\w+" is inaccessible: its customer-managed key cannot be used because the key is disabled/);

    const s4 = stepText(out, '4');
    assert.match(s4, /\$ pgbyok key set-attributes --vault-name kv-walk-\w+ --name kek --enabled true/);
    assert.match(s4, /encrypted at rest\n.*under the customer's key\n.*in a vault the customer controls\n\(3 rows\)/);

    const s5 = stepText(out, '5');
    const [, oldVersion] = /key https:\/\/\S+\/keys\/kek\/([0-9a-f]{32})/.exec(s1)!;
    const [, newVersion] = /new key version: ([0-9a-f]{32})/.exec(s5) ?? [];
    assert.ok(newVersion && newVersion !== oldVersion, `a new key version: ${s5}`);
    assert.match(s5, new RegExp(`re-wrapped \\(the key has a new version\\): \\S+/keys/kek/${oldVersion} -> \\S+/keys/kek/${newVersion}; .*No data was re-encrypted\\.`));
    assert.match(s5, /rows_after_rotation \n-+\n +3\n/);

    const s6 = stepText(out, '6');
    assert.match(s6, /KeyUnwrap +kv-walk-\w+ +kek +id-walk-\w+ +Success/, 'the server identity\'s unwraps are in the audit log');
    assert.match(s6, /id-walk-\w+ +Failure +Forbidden\/KeyDisabled/, 'and its refusals while the key was disabled');
    assert.match(s6, /true +\d+/, 'audit verify reports a valid chain');
    assert.match(s6, /Failed +Server pg-walk-\w+ is Inaccessible/, 'the activity log shows the server going Inaccessible');

    const s7 = stepText(out, '7');
    assert.match(s7, /\$ pgbyok server delete --name pg-walk-\w+ --yes/);
    assert.match(s7, /deleted; its volume was destroyed, its backups and backup keys removed and its wrapped DEK erased/);
    assert.match(s7, /server pg-walk-\w+: not found; its volume image \S+: gone/);

    // pgbyok keeps running, and the script says how to stop it; that command stops it and leaves nothing.
    const stop = /pgbyok keeps running \(pid (\d+)\) under (\S+); stop it with: kill (\d+)/.exec(out);
    assert.ok(stop, `how to stop pgbyok is printed:\n${out.slice(-600)}`);
    assert.equal(stop[2], home);
    pid = Number(stop[1]);
    assert.equal(stop[3], stop[1]);
    assert.equal(Number(readFileSync(join(home, 'pgbyok.pid'), 'utf8')), pid, 'the printed pid is the pgbyok up of this home');
    process.kill(pid, 'SIGTERM');
    assert.ok(await exited(pid), 'kill PID stops pgbyok');
    assert.deepEqual(leftovers(home), [], 'no process, mount or loop device of its home is left');
  } finally {
    if (pid) try { process.kill(pid, 'SIGKILL'); } catch { /* stopped */ }
    cleanupLeftovers(home);
    rmSync(home, { recursive: true, force: true });
  }
});

/** Runs as `nobody` when the suite runs as root (else as the user it runs as); `false` when that user cannot read the checkout. */
function asNonRoot(): { wrap: string[]; skip: string | false } {
  if (!isRoot) return { wrap: [], skip: false };
  const wrap = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '--'];
  const probe = spawnSync(wrap[0], [...wrap.slice(1), 'test', '-r', join(ROOT, 'dist', 'src', 'cli', 'main.js')]);
  return { wrap, skip: probe.status === 0 ? false : `user nobody cannot read ${ROOT} (a checkout under a private directory)` };
}

test('without root: the doctor says why the servers cannot run, the vault part runs, and KEEP=0 stops what it started', async (t) => {
  const { wrap, skip } = asNonRoot();
  if (skip) return t.skip(skip);
  const home = newHome();
  try {
    if (isRoot) {
      chownSync(home, 65534, 65534);
      accessSync(home, constants.W_OK);
    }
    const r = await runWalkthrough(join(home, 'home'), { PGBYOK_WALKTHROUGH_KEEP: '0', HOME: home, npm_config_cache: join(home, 'npm-cache') }, wrap);
    const out = r.output;
    assert.equal(r.status, 0, out);
    assert.match(out, /\$ pgbyok doctor\n/);
    assert.match(out, /^MISSING\s+root\b/m, 'the doctor names root as missing');
    assert.match(out, /Encrypted servers need root .*\n.*This run does the vault part only\. For the whole job, as root: sudo npm run walkthrough/);
    assert.match(out, /\$ pgbyok doctor --vaults-only -o none\n {3}\(what a platform of vaults only needs is all there\)/);
    assert.match(out, /\$ pgbyok up --vaults-only > /);
    assert.match(out, /unwrapped DEK matches the original\./);
    assert.match(out, /\(KeyDisabled\) Operation unwrapKey is not allowed on a disabled key/);
    assert.match(out, /the DEK wrapped before the rotation still unwraps\./);
    assert.match(out, /Failure +Forbidden\/KeyDisabled/);
    assert.match(out, /true +\d+/, 'audit verify reports a valid chain');
    assert.doesNotMatch(out, /--client-secret (?!\*\*\*)/, 'the identity\'s secret is not printed in a command line');
    assert.match(out, /pgbyok \(pid \d+\) stopped\./);
    assert.deepEqual(leftovers(join(home, 'home')), [], 'the pgbyok up it started is gone');
  } finally {
    cleanupLeftovers(join(home, 'home'));
    rmSync(home, { recursive: true, force: true });
  }
});
