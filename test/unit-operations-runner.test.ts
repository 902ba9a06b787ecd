import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { manualClock } from '../src/lib/clock.js';
import { createOperationsRepo, OperationConflict } from '../src/servers/operations/operations.repo.js';
import { createRunner, type StepDef, type Workflow } from '../src/servers/operations/runner.js';
import { WORKFLOW_STEPS } from '../src/servers/operations/catalog.js';
import { createServerLocks } from '../src/servers/server-locks.js';
import { openDb } from '../src/store/db.js';

/** The engine on a real database, with workflows of recorded fake steps: no root, no PostgreSQL. */
function setup(t: { after: (fn: () => void) => void }) {
  const dir = mkdtempSync(join(tmpdir(), 'pgbyok-runner-'));
  const db = openDb(join(dir, 'db.sqlite'));
  t.after(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const clock = manualClock(Date.parse('2031-01-01T00:00:00Z'));
  const repo = createOperationsRepo(db, clock);
  const runner = (owner = 'host-a', extra: Partial<Parameters<typeof createRunner>[0]> = {}) =>
    createRunner({ repo, locks: createServerLocks(), logger: pino({ level: 'silent' }), clock, owner, sleep: async () => undefined, ...extra });
  return { db, repo, clock, runner };
}

const spec = { kind: 'Delete' as const, tenantId: 't1', serverId: 's1', serverName: 'db1' };

/** A Delete-shaped workflow whose steps record that they ran. */
function recording(log: string[], overrides: Partial<Record<string, Partial<StepDef<unknown>>>> = {}, extra: Partial<Workflow> = {}): Workflow {
  return {
    kind: 'Delete',
    steps: WORKFLOW_STEPS.Delete.map((name) => ({ name, run: () => void log.push(name), ...overrides[name] })),
    ...extra,
  };
}

const settle = async (repo: ReturnType<typeof createOperationsRepo>, id: string) => {
  for (let i = 0; i < 100; i++) {
    const op = repo.byId(id)!;
    if (!['Queued', 'InProgress'].includes(op.status) && op.leaseOwner === undefined) return op;
    await new Promise((r) => setImmediate(r));
  }
  return repo.byId(id)!;
};

test('every step runs once, in order, and is recorded with its attempts', async (t) => {
  const { repo, runner } = setup(t);
  const log: string[] = [];
  const r = runner();
  r.register(recording(log));
  const op = r.enqueue(spec);
  const done = await settle(repo, op.id);
  assert.equal(done.status, 'Succeeded');
  assert.deepEqual(log, [...WORKFLOW_STEPS.Delete]);
  assert.deepEqual(repo.steps(op.id).map((s) => [s.name, s.status, s.attempts]), WORKFLOW_STEPS.Delete.map((n) => [n, 'Succeeded', 1]));
});

test('the database allows one open operation per server', async (t) => {
  const { repo, runner } = setup(t);
  const r = runner();
  const waiting: (() => void)[] = [];
  r.register(recording([], { shutdown: { run: () => new Promise<void>((res) => void waiting.push(res)) } }));
  const first = r.enqueue(spec);
  assert.throws(() => r.enqueue(spec), (e: OperationConflict) => e instanceof OperationConflict && e.open?.id === first.id);
  // Another server is not held up.
  const other = r.enqueue({ ...spec, serverId: 's2', serverName: 'db2' });
  await new Promise((res) => setImmediate(res));
  assert.equal(waiting.length, 2, 'both servers are under way at once');
  for (const release of waiting) release();
  assert.equal((await settle(repo, first.id)).status, 'Succeeded');
  assert.equal((await settle(repo, other.id)).status, 'Succeeded');
  // Once it has ended, the next one is accepted.
  r.enqueue(spec);
});

test('after a crash the runner resumes at the first unfinished step, repeating the volatile steps before it', async (t) => {
  const { repo, runner, db } = setup(t);
  const log: string[] = [];
  // The first life: three steps done, the fourth started, then the process died (its lease is left behind).
  const op = repo.insert({ id: 'op-1', input: {}, ...spec });
  const claimed = repo.claim(op.id, 'host-a', 60)!;
  for (const seq of [0, 1, 2]) repo.setStep(claimed, seq, 'Succeeded');
  repo.setStep(claimed, 3, 'InProgress', { attempt: true });
  const r = runner('host-a');
  r.register(recording(log, { shutdown: { volatile: true, run: () => void log.push('shutdown') } }));
  r.resumeAll();
  const done = await settle(repo, op.id);
  assert.equal(done.status, 'Succeeded');
  assert.deepEqual(log, ['shutdown', 'unsubscribe-events', 'delete-backups', 'destroy-volume', 'remove-server']);
  const steps = repo.steps(op.id);
  assert.equal(steps[3].attempts, 2, 'the interrupted step counts both attempts');
  assert.equal(steps[1].attempts, 0, 'a finished step is not run again');
  assert.equal((db.prepare('SELECT fence FROM operations WHERE id = ?').get(op.id) as { fence: number }).fence, 2);
});

test('a step already done by an interrupted attempt is recorded, not repeated', async (t) => {
  const { repo, runner } = setup(t);
  const log: string[] = [];
  const r = runner();
  r.register(recording(log, { 'delete-backups': { done: () => true, run: () => void log.push('delete-backups') } }));
  const op = r.enqueue(spec);
  await settle(repo, op.id);
  assert.ok(!log.includes('delete-backups'));
  assert.deepEqual(repo.steps(op.id).find((s) => s.name === 'delete-backups')!.output, { alreadyDone: true });
});

test('a failure ends Failed with a public error, compensates, and never shows internals', async (t) => {
  const { repo, runner } = setup(t);
  const compensated: string[] = [];
  const r = runner();
  r.register(recording([], {
    'destroy-volume': { run: () => { throw new Error('mount: /tmp/pgbyok-home/regions/eastus/volumes/db1: target is busy'); } },
  }, { compensate: async (_ctx, failure) => void compensated.push(failure.code) }));
  const op = r.enqueue(spec);
  const done = await settle(repo, op.id);
  assert.equal(done.status, 'Failed');
  assert.equal(done.errorCode, 'InternalServerError');
  assert.doesNotMatch(done.error!, /mount|\/tmp|busy/);
  assert.match(done.error!, /destroy-volume/);
  assert.deepEqual(compensated, ['InternalServerError']);
  const step = repo.steps(op.id).find((s) => s.name === 'destroy-volume')!;
  assert.equal(step.status, 'Failed');
  assert.equal(step.attempts, 3, 'an unknown failure is tried three times');
  assert.equal(repo.steps(op.id).find((s) => s.name === 'remove-server')!.status, 'Pending');
});

test('a live lease of another host is respected; an expired one is taken over with a new fence', async (t) => {
  const { repo, runner, clock } = setup(t);
  const op = repo.insert({ id: 'op-2', input: {}, ...spec });
  const theirs = repo.claim(op.id, 'host-b', 60)!;
  const log: string[] = [];
  const r = runner('host-a');
  r.register(recording(log));
  r.resumeAll();
  await new Promise((res) => setImmediate(res));
  assert.deepEqual(log, [], 'host-b still holds the lease');
  clock.advance(61_000);
  r.resumeAll();
  assert.equal((await settle(repo, op.id)).status, 'Succeeded');
  // The old holder's writes are fenced off.
  assert.equal(repo.setStep(theirs, 0, 'Failed'), false);
});

test('the fail point kills the process right after the named step (here: observed, not obeyed)', async (t) => {
  const { repo, runner } = setup(t);
  const kills: string[] = [];
  const realKill = process.kill;
  (process as any).kill = (pid: number, sig: string) => {
    if (pid === process.pid && sig === 'SIGKILL') kills.push('SIGKILL');
    else realKill.call(process, pid, sig as NodeJS.Signals);
    return true;
  };
  t.after(() => { (process as any).kill = realKill; });
  const r = runner('host-a', { crashAfter: 'Delete:delete-backups' });
  r.register(recording([]));
  const op = r.enqueue(spec);
  await settle(repo, op.id);
  assert.deepEqual(kills, ['SIGKILL']);
});
