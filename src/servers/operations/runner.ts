import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../../lib/clock.js';
import type { ServerLocks } from '../server-locks.js';
import { WORKFLOW_STEPS, type OperationKind } from './catalog.js';
import type { Operation, OperationsRepo, OperationStep } from './operations.repo.js';
import { CancelOperation, publicError, retryPolicy, type PublicError } from './step-errors.js';

/**
 * The operations engine. Every multi-step change is an operation with an ordered list of steps, each
 * idempotent and each with a probe for "already done?". Steps are recorded as they start and end, so after
 * a crash the runner resumes at the first unfinished one (repeating first the steps whose effect a crash
 * loses: a key in the kernel, a running PostgreSQL). A workflow that cannot go on records its public
 * error, compensates, and ends Failed. Nothing is left InProgress: what is open at start-up is resumed.
 *
 * Written here rather than taken from a library: no maintained durable-workflow library runs on Node 20
 * with SQLite (better-sqlite3) and PostgreSQL, enforces one open operation per resource in the database,
 * and compensates (see the note of issue 10).
 */
export interface StepContext<I> {
  op: Operation;
  input: I;
  /** Whether this run continues an operation an earlier process (or attempt) had started. */
  resumed: boolean;
  /** The output an earlier step recorded. */
  outputOf(step: string): unknown;
}

export interface StepDef<I> {
  name: string;
  /** Its effect does not survive a crash (an unlocked volume, a started PostgreSQL): repeated on resume. */
  volatile?: boolean;
  /** Not needed for this input (e.g. no key change in an update): recorded Skipped. */
  skip?: (ctx: StepContext<I>) => boolean;
  /** Already done (by an earlier attempt that crashed before recording it)? Then it is recorded as done. */
  done?: (ctx: StepContext<I>) => boolean | Promise<boolean>;
  run: (ctx: StepContext<I>) => unknown | Promise<unknown>;
}

export interface Workflow<I = any> {
  kind: OperationKind;
  steps: StepDef<I>[];
  /** Puts things back after a failure the workflow cannot get past (e.g. removes a half-built server). */
  compensate?: (ctx: StepContext<I>, failure: PublicError) => Promise<void>;
  /** After the operation ended, however it ended. */
  settled?: (op: Operation) => Promise<void>;
}

export interface RunnerDeps {
  repo: OperationsRepo;
  locks: ServerLocks;
  logger: Logger;
  clock: Clock;
  /** This host's lease owner name (stable across its restarts, so it takes its own leases back at once). */
  owner: string;
  leaseSeconds?: number;
  /** Test fail point `<Kind>:<step>` (or `<Kind>:accepted`): the process SIGKILLs itself right after it. */
  crashAfter?: string;
  /** Waits between retries (the real timer by default; tests may pass a fake). */
  sleep?: (ms: number) => Promise<void>;
}

const OPEN_STEP = new Set(['Pending', 'InProgress', 'Failed']);

export function createRunner(d: RunnerDeps) {
  const workflows = new Map<OperationKind, Workflow>();
  const leaseSeconds = d.leaseSeconds ?? 60;
  const sleep = d.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref()));
  let stopping = false;
  let crashed = false;

  const failPoint = (kind: string, step: string) => {
    if (crashed || !d.crashAfter || d.crashAfter !== `${kind}:${step}`) return;
    crashed = true;
    d.logger.warn({ failPoint: d.crashAfter }, 'fail point reached: killing the process');
    process.kill(process.pid, 'SIGKILL');
  };

  const contextOf = (op: Operation, steps: OperationStep[], resumed: boolean): StepContext<any> => ({
    op, input: op.input, resumed,
    outputOf: (name) => steps.find((s) => s.name === name)?.output,
  });

  /** Runs one step with its retry policy; returns its output. */
  const attempt = async (op: Operation, seq: number, def: StepDef<any>, ctx: StepContext<any>): Promise<unknown> => {
    for (let n = 1; ; n++) {
      if (!d.repo.setStep(op, seq, 'InProgress', { attempt: true })) throw new Error('the operation lease was lost');
      try {
        if (def.done && (await def.done(ctx))) return { alreadyDone: true };
        return (await def.run(ctx)) ?? null;
      } catch (e) {
        const policy = retryPolicy(e);
        d.logger.warn({ op: op.id, kind: op.kind, step: def.name, attempt: n, err: e instanceof Error ? e.message : String(e) }, 'operation step failed');
        if (n >= policy.attempts || stopping) throw e;
        await sleep(policy.delayMs(n));
      }
    }
  };

  const finish = async (op: Operation, wf: Workflow, status: 'Succeeded' | 'Failed' | 'Cancelled', error?: PublicError) => {
    d.repo.finish(op, status, error);
    try {
      await wf.settled?.(d.repo.byId(op.id) ?? op);
    } catch (e) {
      d.logger.error({ op: op.id, err: (e as Error).message }, 'settling an operation failed');
    }
  };

  const execute = async (id: string): Promise<void> => {
    if (stopping) return;
    const op = d.repo.claim(id, d.owner, leaseSeconds);
    if (!op) return;
    const wf = workflows.get(op.kind);
    if (!wf) throw new Error(`no workflow for ${op.kind}`);
    const steps = d.repo.steps(op.id);
    const resumed = steps.some((s) => s.status !== 'Pending');
    const ctx = contextOf(op, steps, resumed);
    const renew = setInterval(() => d.repo.renew(op, leaseSeconds), (leaseSeconds * 1000) / 3);
    renew.unref();
    let seq = steps.findIndex((s) => OPEN_STEP.has(s.status));
    try {
      // A failure was recorded and its compensation was cut short: finish compensating.
      if (op.errorCode && seq >= 0 && steps[seq].status === 'Failed') {
        const failure = { code: op.errorCode, message: op.error ?? '' };
        await wf.compensate?.(ctx, failure);
        await finish(op, wf, 'Failed', failure);
        return;
      }
      if (resumed && seq > 0) {
        for (let i = 0; i < seq; i++) if (steps[i].status === 'Succeeded' && wf.steps[i].volatile) await wf.steps[i].run(ctx);
      }
      for (; seq >= 0 && seq < wf.steps.length; seq++) {
        if (stopping) {
          // Shutdown between steps: the next start resumes here.
          d.repo.release(op);
          return;
        }
        const def = wf.steps[seq];
        if (def.skip?.(ctx)) {
          d.repo.setStep(op, seq, 'Skipped');
        } else {
          const output = await attempt(op, seq, def, ctx);
          if (!d.repo.setStep(op, seq, 'Succeeded', { output })) throw new Error('the operation lease was lost');
          steps[seq] = { ...steps[seq], status: 'Succeeded', output };
        }
        failPoint(op.kind, def.name);
      }
      await finish(op, wf, 'Succeeded');
    } catch (e) {
      const stepName = wf.steps[Math.max(0, seq)]?.name ?? 'start';
      const failure = publicError(e, op.id, stepName);
      d.logger.error({ op: op.id, kind: op.kind, server: op.serverName, step: stepName, err: e instanceof Error ? e.stack ?? e.message : String(e) }, 'operation failed');
      if (stopping && !(e instanceof CancelOperation)) {
        d.repo.release(op);
        return;
      }
      if (e instanceof CancelOperation) {
        d.repo.setStep(op, seq, 'Skipped');
        await finish(op, wf, 'Cancelled', failure);
        return;
      }
      d.repo.setStep(op, seq, 'Failed', { output: failure });
      d.repo.recordError(op, failure);
      try {
        await wf.compensate?.(ctx, failure);
      } catch (c) {
        // Left open with its error recorded: the next start finishes compensating.
        d.logger.error({ op: op.id, err: (c as Error).message }, 'compensation failed; it is retried at the next start');
        d.repo.release(op);
        return;
      }
      await finish(op, wf, 'Failed', failure);
    } finally {
      clearInterval(renew);
    }
  };

  const kick = (op: Pick<Operation, 'id' | 'serverName'>) =>
    d.locks.run(op.serverName, () => execute(op.id)).catch((e) => d.logger.error({ op: op.id, err: (e as Error).message }, 'operation runner failed'));

  return {
    register(wf: Workflow) {
      const expected = WORKFLOW_STEPS[wf.kind];
      const got = wf.steps.map((s) => s.name);
      if (got.join() !== expected.join()) throw new Error(`workflow ${wf.kind} has steps ${got.join(', ')}, the catalogue says ${expected.join(', ')}`);
      workflows.set(wf.kind, wf);
    },
    /**
     * Records an operation (with `before` in the same transaction: a transition, a new row) and starts it.
     * Throws OperationConflict when the server already has an open operation.
     */
    enqueue(spec: { kind: OperationKind; tenantId: string; serverId: string; serverName: string; input?: Record<string, unknown>; caller?: string }, before?: () => void): Operation {
      if (stopping) throw new Error('the runner is stopping');
      const op = d.repo.insert({ id: randomUUID(), input: {}, ...spec }, before);
      failPoint(op.kind, 'accepted');
      void kick(op);
      return op;
    },
    /** The servers that have an open operation. */
    openServers: () => d.repo.open().map((o) => o.serverName),
    /** Whether one server has an open operation (one indexed look-up, for the monitor's hot path). */
    hasOpen: (serverName: string) => d.repo.openOf(serverName) !== undefined,
    /** Every operation left open (by a crash or a shutdown) runs again from its first unfinished step. */
    resumeAll() {
      for (const op of d.repo.open()) void kick(op);
    },
    /** No new step starts; running ones reach their boundary. */
    async stop() {
      stopping = true;
      await d.locks.idle();
    },
    get stopping() {
      return stopping;
    },
  };
}

export type Runner = ReturnType<typeof createRunner>;
