import type { Db } from '../../store/db.js';
import type { Clock } from '../../lib/clock.js';
import { WORKFLOW_STEPS, type OperationKind } from './catalog.js';

export type OperationStatus = 'Queued' | 'InProgress' | 'Succeeded' | 'Failed' | 'Cancelled';
export type StepStatus = 'Pending' | 'InProgress' | 'Succeeded' | 'Failed' | 'Skipped';

export interface Operation {
  id: string;
  tenantId: string;
  serverId: string;
  serverName: string;
  kind: OperationKind;
  /** The validated input the workflow runs with (never a secret in clear: passwords arrive as SCRAM verifiers). */
  input: Record<string, unknown>;
  caller?: string;
  status: OperationStatus;
  /** The public error: a code from the catalogue and a message without internals. */
  errorCode?: string;
  error?: string;
  step?: string;
  leaseOwner?: string;
  leaseExpiresAt?: number;
  fence: number;
  started: number;
  ended?: number;
}

export interface OperationStep {
  seq: number;
  name: string;
  status: StepStatus;
  attempts: number;
  output?: unknown;
}

const toOp = (r: any): Operation => ({
  id: r.id, tenantId: r.tenant_id, serverId: r.server_id, serverName: r.server_name, kind: r.kind, input: JSON.parse(r.input ?? '{}'),
  caller: r.caller ?? undefined, status: r.status, errorCode: r.error_code ?? undefined, error: r.error ?? undefined, step: r.step ?? undefined,
  leaseOwner: r.lease_owner ?? undefined, leaseExpiresAt: r.lease_expires_at ?? undefined, fence: r.fence, started: r.started, ended: r.ended ?? undefined,
});

const toStep = (r: any): OperationStep => ({
  seq: r.seq, name: r.name, status: r.status, attempts: r.attempts, output: r.output ? JSON.parse(r.output) : undefined,
});

/** A second open operation on a server: the unique index said no. */
export class OperationConflict extends Error {
  constructor(readonly open: Operation | undefined) {
    super('the server has an open operation');
  }
}

/** SQL for operations and their steps. Every write after the claim is fenced: a host that lost the lease changes nothing. */
export function createOperationsRepo(db: Db, clock: Clock) {
  const now = () => Math.floor(clock.now() / 1000);
  const s = {
    insert: db.prepare(`INSERT INTO operations (id, tenant_id, server_id, server_name, kind, input, caller, status, started)
      VALUES (?,?,?,?,?,?,?,'Queued',?)`),
    insertStep: db.prepare("INSERT INTO operation_steps (operation_id, seq, name, status) VALUES (?,?,?,'Pending')"),
    byId: db.prepare('SELECT * FROM operations WHERE id = ?'),
    openOf: db.prepare("SELECT * FROM operations WHERE server_name = ? AND status IN ('Queued','InProgress')"),
    open: db.prepare("SELECT * FROM operations WHERE status IN ('Queued','InProgress') ORDER BY started, rowid"),
    list: db.prepare('SELECT * FROM operations WHERE tenant_id = ? ORDER BY started DESC, rowid DESC LIMIT ?'),
    steps: db.prepare('SELECT * FROM operation_steps WHERE operation_id = ? ORDER BY seq'),
    claim: db.prepare(`UPDATE operations SET status = 'InProgress', lease_owner = ?, lease_expires_at = ?, fence = fence + 1
      WHERE id = ? AND status IN ('Queued','InProgress') AND (lease_owner IS NULL OR lease_owner = ? OR lease_expires_at < ?)`),
    renew: db.prepare('UPDATE operations SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? AND fence = ?'),
    release: db.prepare('UPDATE operations SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ? AND fence = ?'),
    setStep: db.prepare(`UPDATE operation_steps SET status = ?, attempts = attempts + ?, output = coalesce(?, output),
      started = coalesce(started, ?), ended = ? WHERE operation_id = ? AND seq = ?
      AND EXISTS (SELECT 1 FROM operations WHERE id = ? AND lease_owner = ? AND fence = ?)`),
    current: db.prepare('UPDATE operations SET step = ? WHERE id = ? AND lease_owner = ? AND fence = ?'),
    recordError: db.prepare('UPDATE operations SET error_code = ?, error = ? WHERE id = ? AND lease_owner = ? AND fence = ?'),
    finish: db.prepare(`UPDATE operations SET status = ?, error_code = ?, error = ?, ended = ?, lease_owner = NULL, lease_expires_at = NULL
      WHERE id = ? AND status IN ('Queued','InProgress') AND (lease_owner IS NULL OR (lease_owner = ? AND fence = ?))`),
  };

  const repo = {
    /**
     * Records a new operation with all its steps Pending. `before` runs in the same transaction (a state
     * transition, a new server row), so an operation exists exactly when its change was accepted.
     * Throws OperationConflict when the server already has an open one.
     */
    insert(op: Pick<Operation, 'id' | 'tenantId' | 'serverId' | 'serverName' | 'kind' | 'input' | 'caller'>, before?: () => void): Operation {
      try {
        db.transaction(() => {
          before?.();
          s.insert.run(op.id, op.tenantId, op.serverId, op.serverName, op.kind, JSON.stringify(op.input), op.caller ?? null, now());
          WORKFLOW_STEPS[op.kind].forEach((name, seq) => s.insertStep.run(op.id, seq, name));
        })();
      } catch (e) {
        if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE' && /operations\.server_name/.test((e as Error).message)) {
          throw new OperationConflict(repo.openOf(op.serverName));
        }
        throw e;
      }
      return repo.byId(op.id)!;
    },
    byId: (id: string) => { const r = s.byId.get(id); return r ? toOp(r) : undefined; },
    openOf: (serverName: string) => { const r = s.openOf.get(serverName); return r ? toOp(r) : undefined; },
    open: () => s.open.all().map(toOp),
    list: (tenantId: string, top = 100) => s.list.all(tenantId, top).map(toOp),
    steps: (id: string) => s.steps.all(id).map(toStep),
    /** Takes the lease (a fresh fence) if nobody holds a live one; returns the fenced operation or undefined. */
    claim(id: string, owner: string, leaseSeconds: number): Operation | undefined {
      const t = now();
      return s.claim.run(owner, t + leaseSeconds, id, owner, t).changes > 0 ? repo.byId(id) : undefined;
    },
    renew: (op: Operation, leaseSeconds: number) => s.renew.run(now() + leaseSeconds, op.id, op.leaseOwner, op.fence).changes > 0,
    release: (op: Operation) => void s.release.run(op.id, op.leaseOwner, op.fence),
    /** Fenced: a step changes only while this host holds the lease it claimed. */
    setStep(op: Operation, seq: number, status: StepStatus, opts: { attempt?: boolean; output?: unknown } = {}): boolean {
      const t = now();
      const ended = status === 'Succeeded' || status === 'Failed' || status === 'Skipped' ? t : null;
      const ok = s.setStep.run(status, opts.attempt ? 1 : 0, opts.output === undefined ? null : JSON.stringify(opts.output), t, ended, op.id, seq, op.id, op.leaseOwner, op.fence).changes > 0;
      if (ok && status === 'InProgress') s.current.run(WORKFLOW_STEPS[op.kind][seq], op.id, op.leaseOwner, op.fence);
      return ok;
    },
    /** The public error, recorded before compensation starts (so a crash during it still knows why). */
    recordError: (op: Operation, e: { code: string; message: string }) => void s.recordError.run(e.code, e.message, op.id, op.leaseOwner, op.fence),
    finish(op: Operation, status: 'Succeeded' | 'Failed' | 'Cancelled', error?: { code: string; message: string }): boolean {
      return s.finish.run(status, error?.code ?? null, error?.message ?? null, now(), op.id, op.leaseOwner ?? null, op.fence).changes > 0;
    },
  };
  return repo;
}

export type OperationsRepo = ReturnType<typeof createOperationsRepo>;
