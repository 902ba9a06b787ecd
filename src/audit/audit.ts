import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Db } from '../store/db.js';

/** One audited request: who, what, on which key and version, with what result, from where, when. */
export interface AuditRecord {
  time: string;
  requestId: string;
  surface: 'vault' | 'management' | 'identity';
  tenantId?: string;
  vault?: string;
  callerObjectId?: string;
  callerClientId?: string;
  callerName?: string;
  operation: string;
  key?: string;
  version?: string;
  result: 'Success' | 'Failure';
  httpStatus: number;
  errorCode?: string;
  sourceAddress: string;
}

export interface AuditFilter {
  tenantId?: string;
  vault?: string;
  callerObjectId?: string;
  operation?: string;
  result?: string;
  key?: string;
  since?: string;
  top?: number;
}

export interface VerifyReport {
  valid: boolean;
  records: number;
  firstInvalidSeq?: number;
  reason?: string;
}

const GENESIS = '0'.repeat(64);

/**
 * The tamper-evident audit log: each record carries the HMAC-SHA256 of (previous hash, record), keyed by a
 * subkey of the vault master key, so a record cannot be edited, removed or reordered — nor the chain
 * recomputed — without the key. The head (last seq and hash) is kept beside the chain to catch truncation.
 * `append` throws when the record cannot be written; callers fail the request closed.
 */
export function createAuditLog(db: Db, hmacKey: Buffer) {
  const insert = db.prepare('INSERT INTO audit_log (seq, record, prev_hash, hash) VALUES (?, ?, ?, ?)');
  const setHead = db.prepare("INSERT INTO meta (k, v) VALUES ('audit_head', ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v");
  const getHead = db.prepare("SELECT v FROM meta WHERE k = 'audit_head'");
  const mac = (prev: string, record: string) => createHmac('sha256', hmacKey).update(prev).update('\n').update(record).digest('hex');

  const readHead = () => {
    const row = getHead.get() as { v: string } | undefined;
    if (!row) return { seq: 0, hash: GENESIS };
    const [seq, hash] = row.v.split(':');
    return { seq: Number(seq), hash };
  };
  let head = readHead();

  const appendTx = db.transaction((record: string) => {
    const seq = head.seq + 1;
    const hash = mac(head.hash, record);
    insert.run(seq, record, head.hash, hash);
    setHead.run(`${seq}:${hash}`);
    return { seq, hash };
  });

  return {
    append(rec: AuditRecord): number {
      const next = appendTx(JSON.stringify(rec));
      head = next;
      return next.seq;
    },

    list(f: AuditFilter): (AuditRecord & { seq: number })[] {
      const where: string[] = [];
      const args: unknown[] = [];
      const field = (name: string, value: string | undefined) => {
        if (value === undefined) return;
        where.push(`json_extract(record, '$.${name}') = ?`);
        args.push(value);
      };
      field('tenantId', f.tenantId);
      field('vault', f.vault);
      field('callerObjectId', f.callerObjectId);
      field('operation', f.operation);
      field('result', f.result);
      field('key', f.key);
      if (f.since) {
        where.push("json_extract(record, '$.time') >= ?");
        args.push(f.since);
      }
      const sql = `SELECT seq, record FROM audit_log ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY seq DESC LIMIT ?`;
      const rows = db.prepare(sql).all(...args, Math.min(Math.max(f.top ?? 100, 1), 10000)) as { seq: number; record: string }[];
      return rows.reverse().map((r) => ({ seq: r.seq, ...(JSON.parse(r.record) as AuditRecord) }));
    },

    /** Walks the whole chain; the first broken link names the record and what is wrong with it. */
    verify(): VerifyReport {
      const rows = db.prepare('SELECT seq, record, prev_hash, hash FROM audit_log ORDER BY seq').iterate() as Iterable<{
        seq: number; record: string; prev_hash: string; hash: string;
      }>;
      let prev = GENESIS;
      let expectedSeq = 1;
      let count = 0;
      const bad = (seq: number, reason: string): VerifyReport => ({ valid: false, records: count, firstInvalidSeq: seq, reason });
      for (const r of rows) {
        if (r.seq !== expectedSeq) return bad(r.seq, `record ${expectedSeq} is missing (next present is ${r.seq})`);
        if (r.prev_hash !== prev) return bad(r.seq, 'record does not link to the record before it (removed or reordered)');
        const expected = Buffer.from(mac(prev, r.record), 'hex');
        const actual = Buffer.from(r.hash, 'hex');
        if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) {
          return bad(r.seq, 'record content does not match its hash (edited)');
        }
        prev = r.hash;
        expectedSeq++;
        count++;
      }
      const stored = readHead();
      if (stored.seq !== count || stored.hash !== prev) {
        return bad(count + 1, `the log ends at record ${count} but its head says ${stored.seq} (records removed from the end)`);
      }
      return { valid: true, records: count };
    },
  };
}

export type AuditLog = ReturnType<typeof createAuditLog>;
