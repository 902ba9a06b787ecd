/**
 * The crash matrix of issue 10: for every workflow kind and every boundary (right after the operation is
 * recorded, and right after each of its steps) the platform is killed there by its fail point
 * (PGBYOK_CRASH_AFTER_STEP=<Kind>:<boundary>: it SIGKILLs itself), restarted without it, and then every
 * invariant must hold (test/crash/invariants.ts) and the interrupted operation must have ended as its kind
 * requires (test/crash/cases.ts).
 *
 * One home and a few servers serve every case: one platform life per crash point. A case's checks run in the
 * next life, which already carries the next case's fail point; cases are ordered so that two neighbours are
 * never of the same kind, and whatever a case needs first is made with operations of other kinds.
 *
 * PGBYOK_CRASH_DRY=1 runs the chosen cases without their fail point (each operation ends before the restart).
 * PGBYOK_CRASH_CASES picks cases: `quick` (the default: the suite's tier, see QUICK), `all` (71 cases),
 * `none` (only the baseline, which runs on a platform without the engine), or a comma list of kinds or
 * `Kind:boundary`; PGBYOK_CRASH_SHARD=i/n runs every n-th of them (for the full matrix in parallel jobs).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { eventually, startPgbyok, type Pgbyok } from './harness.js';
import { boundariesOf, CRASH_ENV, crashPoint, OPEN, platformSteps, WORKFLOW_STEPS } from './crash/contract.js';
import { assertBackupKeysUnder, caseEnded, KINDS, lifeKeys, trimPool, verifyCase, type Ctx } from './crash/cases.js';
import { checkInvariants, settle, storeIdOf } from './crash/invariants.js';
import { commitRows, createServer, deleteServer, EAST, FS, operation, run, setupWorld, type World } from './crash/world.js';

const BASE_ENV = { PGBYOK_KEY_MONITOR_INTERVAL_MS: '1000', PGBYOK_ARCHIVE_INTERVAL_MS: '1000', PGBYOK_VAULT_GRACE_MS: '3000' };
/** Neighbours are of different kinds: a resumed operation never meets a fail point meant for the next case. */
const ORDER = ['Create', 'Delete', 'CreateReplica', 'Promote', 'Restore', 'Stop', 'Start', 'GeoRestore', 'Update', 'Restart', 'Revalidate', 'Backup'];

let p: Pgbyok;
let w: World;
let engine: { steps?: Record<string, string[]>; error?: string };

/** Every case, round-robin over the kinds: boundary r of each kind, then boundary r + 1. */
function allCases(): { kind: string; boundary: string }[] {
  const lists = ORDER.map((k) => boundariesOf(k).map((b) => ({ kind: k, boundary: b })));
  const out: { kind: string; boundary: string }[] = [];
  for (let r = 0; lists.some((l) => l.length > r); r++) for (const l of lists) if (l[r]) out.push(l[r]);
  return out;
}

/**
 * The suite's tier (the whole matrix does not fit its time budget): every kind once accepted, and after the
 * step where a kill hurts most (the ones issue 10 names among them).
 */
const QUICK_STEP: Record<string, string> = {
  Create: 'first-backup', Restore: 'first-backup', GeoRestore: 'initialize', CreateReplica: 'await-streaming', Update: 'rewrap-backups',
  Stop: 'shutdown', Start: 'bring-up', Restart: 'restart', Revalidate: 'bring-up', Promote: 'release-source', Delete: 'delete-backups', Backup: 'base-backup',
};
const QUICK = new Set(ORDER.flatMap((k) => [crashPoint(k, 'accepted'), crashPoint(k, QUICK_STEP[k])]));

function selectedCases() {
  const pick = process.env.PGBYOK_CRASH_CASES ?? 'quick';
  let cases = allCases();
  if (pick === 'none') return [];
  if (pick === 'quick') cases = cases.filter((c) => QUICK.has(crashPoint(c.kind, c.boundary)));
  else if (pick !== 'all') {
    const wanted = pick.split(',').map((s) => s.trim());
    cases = cases.filter((c) => wanted.includes(c.kind) || wanted.includes(crashPoint(c.kind, c.boundary)));
  }
  const shard = process.env.PGBYOK_CRASH_SHARD?.match(/^(\d+)\/(\d+)$/);
  if (shard) cases = cases.filter((_, i) => i % Number(shard[2]) === Number(shard[1]) - 1);
  return cases;
}

before(async () => {
  engine = await platformSteps();
  p = await startPgbyok(BASE_ENV);
  try {
    w = setupWorld(p);
    await createServer(w, 'src', w.east.keys[0], {
      backup: { backupRetentionDays: 7, geoRedundantBackup: 'Enabled' },
      dataEncryption: {
        type: 'AzureKeyVault', primaryKeyURI: w.east.keys[0].keyUri, primaryUserAssignedIdentityId: w.east.identityId,
        geoBackupKeyURI: w.west.keyUri, geoBackupUserAssignedIdentityId: w.west.identityId,
      },
    }, [w.east.vault, w.west.vault]);
    await createServer(w, 'life', lifeKeys(w)[0]);
    await createServer(w, 'rev', w.east.keys.find((k) => k.keyName === 'kek-rv')!);
    for (const name of ['src', 'life', 'rev']) await commitRows(w, name);
  } catch (e) {
    await p.stop();
    throw e;
  }
});
after(async () => p?.stop());

test('the platform\'s workflow steps are the contract\'s', () => {
  assert.ok(engine.steps, engine.error);
  assert.deepEqual(engine.steps, WORKFLOW_STEPS);
});

test('baseline: operations run to the end, a restart with another environment, a kill -9 while idle; every invariant holds', { timeout: 300_000 }, async () => {
  await run(w, 'POST', `${FS}/life/stop`);
  w.servers.get('life')!.expect = 'Stopped';
  await p.restart(undefined, { env: { PGBYOK_LOG_LEVEL: 'error' } });
  await checkInvariants(w, !!engine.steps);
  await run(w, 'POST', `${FS}/life/start`);
  w.servers.get('life')!.expect = 'Ready';
  await run(w, 'POST', `${FS}/src/backups`);
  await commitRows(w, 'src');
  p.child().kill('SIGKILL');
  assert.equal((await p.waitForExit(10_000)).signal, 'SIGKILL', 'the wait sees the SIGKILL');
  await p.restart();
  await checkInvariants(w, !!engine.steps);
});

/** A case without its fail point: the operation runs to its end, the platform restarts, the same checks follow. */
async function runDry(kindName: string): Promise<void> {
  await settle(w);
  if (kindName !== 'Delete') await trimPool(w, 1);
  const kind = KINDS[kindName];
  const ctx: Ctx = await kind.prepare(w);
  await kind.trigger(w, ctx);
  if (ctx.op) await eventually(async () => !OPEN.includes((await operation(w, ctx.op!)).status), `${kindName} to end`, 120_000, 250);
  await p.restart();
  await settle(w);
  await verifyCase(w, kindName, ctx, !!engine.steps);
  await checkInvariants(w, !!engine.steps);
}

test('crash matrix: a kill after every step of every workflow, then a restart', { timeout: 60 * 60_000 }, async (t) => {
  const cases = selectedCases();
  if (!cases.length) return;
  // Dry: no fail point, each operation runs to its end before the restart (the matrix's own plumbing, on any platform).
  const dry = process.env.PGBYOK_CRASH_DRY === '1';
  if (!dry) assert.ok(engine.steps, `the crash matrix needs the operations engine: ${engine.error}`);
  let armed: string | undefined;
  const timings: string[] = [];
  for (const [i, c] of cases.entries()) {
    const point = crashPoint(c.kind, c.boundary);
    const next = cases[i + 1];
    await t.test(`${c.kind} killed ${c.boundary === 'accepted' ? 'once accepted' : `after ${c.boundary}`}`, { timeout: 300_000 }, async () => {
      const started = Date.now();
      if (dry) {
        await runDry(c.kind);
        return;
      }
      if (armed !== point) {
        await p.restart(undefined, { env: { [CRASH_ENV]: point } });
        armed = point;
      }
      await settle(w);
      // Spare servers go while no Delete is armed; a Delete case consumes one of them.
      if (c.kind !== 'Delete') await trimPool(w, 1);
      const kind = KINDS[c.kind];
      const ctx: Ctx = await kind.prepare(w);
      await kind.trigger(w, ctx);
      const exit = await p.waitForExit(120_000);
      assert.equal(exit.signal, 'SIGKILL', `the platform killed itself at ${point} (it exited ${exit.code ?? exit.signal})`);
      const killedAt = Date.now();
      const nextPoint = next ? crashPoint(next.kind, next.boundary) : undefined;
      await p.restart(undefined, { env: nextPoint ? { [CRASH_ENV]: nextPoint } : {} });
      armed = nextPoint;
      await caseEnded(w, c.kind, ctx);
      await settle(w);
      await verifyCase(w, c.kind, ctx);
      await checkInvariants(w, true);
      timings.push(`${point}: ${Math.round((killedAt - started) / 1000)} s to the kill, ${Math.round((Date.now() - killedAt) / 1000)} s back and checked`);
    });
  }
  t.diagnostic(timings.join('\n'));
  if (dry) return;

  // An interrupted key change left the backup keys under the new key: the old one revoked, a restore still works.
  if (cases.some((c) => c.kind === 'Update')) {
    if (armed) await p.restart();
    await t.test('after the key changes, revoking the old key leaves every backup openable', async () => {
      const current = (await w.p.mgmt('GET', `${FS}/life`)).json.properties.dataEncryption.primaryKeyURI;
      const old = lifeKeys(w).find((k) => k.keyUri !== current)!;
      assertBackupKeysUnder(w, 'life', current);
      p.cli('key', 'set-attributes', '--vault-name', old.vault, '--name', old.keyName, '--enabled', 'false');
      try {
        await run(w, 'PUT', `${FS}/life-restored`, { location: EAST, properties: { createMode: 'PointInTimeRestore', sourceServerResourceId: `/tenants/${p.admin.tenantId}/providers/${FS}/life` } });
        const life = w.servers.get('life')!;
        w.servers.set('life-restored', { region: EAST, password: life.password, rows: life.rows, expect: 'Ready', vaults: [w.east.vault] });
        await checkInvariants(w, true);
        await deleteServer(w, 'life-restored', storeIdOf(w, 'life-restored'));
      } finally {
        p.cli('key', 'set-attributes', '--vault-name', old.vault, '--name', old.keyName, '--enabled', 'true');
      }
    });
  }
});
