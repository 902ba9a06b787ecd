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
  /** Started: written before the request acts; Success/Failure: its outcome, written before the reply. */
  result: 'Started' | 'Success' | 'Failure';
  httpStatus: number;
  errorCode?: string;
  sourceAddress: string;
  /** What the platform itself found (tamper records). */
  detail?: string;
  /** The request's api-version, path (no query) and User-Agent, and (outcomes) how long it took to answer, in ms. */
  apiVersion?: string;
  requestPath?: string;
  clientInfo?: string;
  clientRequestId?: string;
  durationMs?: number;
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
  /** The records of the tenant asked about (every record when no tenant is given). */
  records: number;
  firstInvalidSeq?: number;
  reason?: string;
}

const GENESIS = '0'.repeat(64);
/** The operation of the record written when the log is found cut or its head forged at start-up. */
export const TAMPERED = 'AuditLogTampered';

/**
 * The tamper-evident audit log: each record carries the HMAC-SHA256 of (previous hash, record), keyed by a
 * subkey of the vault master key, so a record cannot be edited, removed or reordered — nor the chain
 * recomputed — without the key. The head (last seq and hash) is kept beside the chain, authenticated by its
 * own HMAC, so cutting records off the end and rewriting the head is caught too. `append` throws when the
 * record cannot be written; callers refuse the request.
 */
export function createAuditLog(db: Db, hmacKey: Buffer) {
  const insert = db.prepare('INSERT INTO audit_log (seq, record, prev_hash, hash) VALUES (?, ?, ?, ?)');
  const setHead = db.prepare("INSERT INTO meta (k, v) VALUES ('audit_head', ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v");
  const getHead = db.prepare("SELECT v FROM meta WHERE k = 'audit_head'");
  const setMarker = db.prepare("INSERT INTO meta (k, v) VALUES ('audit_head_authenticated', '1') ON CONFLICT (k) DO NOTHING");
  const getMarker = db.prepare("SELECT v FROM meta WHERE k = 'audit_head_authenticated'");
  const mac = (prev: string, record: string) => createHmac('sha256', hmacKey).update(prev).update('\n').update(record).digest('hex');
  const headMac = (seq: number, hash: string) => createHmac('sha256', hmacKey).update(`audit-head\n${seq}\n${hash}`).digest('hex');
  const headValue = (seq: number, hash: string) => `${seq}:${hash}:${headMac(seq, hash)}`;

  /** The stored head, and whether its HMAC holds. */
  const readHead = () => {
    const row = getHead.get() as { v: string } | undefined;
    if (!row) return { seq: 0, hash: GENESIS, authentic: true, legacy: false, present: false };
    const [seq, hash, tag] = row.v.split(':');
    const expected = Buffer.from(headMac(Number(seq), hash ?? ''), 'hex');
    const actual = Buffer.from(tag ?? '', 'hex');
    return { seq: Number(seq), hash, authentic: actual.length === expected.length && timingSafeEqual(actual, expected), legacy: tag === undefined, present: true };
  };
  const lastRow = () => (db.prepare('SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: string } | undefined) ?? { seq: 0, hash: GENESIS };
  const appendTx = db.transaction((record: string) => {
    const seq = head.seq + 1;
    const hash = mac(head.hash, record);
    insert.run(seq, record, head.hash, hash);
    setHead.run(headValue(seq, hash));
    setMarker.run();
    return { seq, hash };
  });

  // At open, the head must be authentic and name the last record. A home from before heads were
  // authenticated has its head authenticated once; after that, a head in the old form is tampering too.
  // Tampering is never laundered: the chain goes on from the real last record, and a record saying what
  // was found is appended, which `verify` reports from then on.
  const stored = readHead();
  const last = lastRow();
  const upgraded = getMarker.get() !== undefined;
  let head: { seq: number; hash: string } = last;
  const matches = stored.seq === last.seq && stored.hash === last.hash;
  if (!(stored.present ? (stored.legacy && !upgraded ? matches : stored.authentic && matches) : last.seq === 0)) {
    appendTx(JSON.stringify({
      time: new Date().toISOString(), requestId: 'startup', surface: 'management', operation: TAMPERED, result: 'Failure', httpStatus: 0,
      sourceAddress: '', errorCode: 'AuditHeadMismatch',
      detail: `at start-up the log's head named record ${stored.seq}${stored.authentic ? '' : ' with an HMAC that does not hold'}, but the last record was ${last.seq} (records removed from the end, or the head rewritten)`,
    } satisfies AuditRecord));
    head = lastRow();
  } else if (stored.legacy || !stored.present) {
    db.transaction(() => {
      setHead.run(headValue(last.seq, last.hash));
      setMarker.run();
    })();
  }

  const listeners: ((rec: AuditRecord, seq: number) => void)[] = [];
  const afterStmt = db.prepare(`SELECT seq, record FROM audit_log WHERE seq > ? AND json_extract(record, '$.tenantId') = ?
    AND json_extract(record, '$.vault') = ? COLLATE NOCASE AND json_extract(record, '$.result') IN ('Success', 'Failure') ORDER BY seq LIMIT ?`);

  return {
    append(rec: AuditRecord): number {
      const next = appendTx(JSON.stringify(rec));
      head = next;
      // Listeners (the activity log, diagnostic streaming) hear of a record once it is written; theirs is
      // never the request's failure: the record above is the fail-closed one.
      for (const l of listeners) {
        try {
          l(rec, next.seq);
        } catch {
          // a listener's own problem; it logs what it needs to
        }
      }
      return next.seq;
    },
    /** Hears of every record after it is written (synchronously: a listener must be quick and must not throw). */
    onAppend(listener: (rec: AuditRecord, seq: number) => void) { listeners.push(listener); },
    /** The sequence number of the last record. */
    lastSeq: () => head.seq,
    /** The outcome records (Success, Failure) of one vault of a tenant after `seq`, oldest first. */
    vaultOutcomesAfter(seq: number, tenantId: string, vault: string, limit: number): (AuditRecord & { seq: number })[] {
      return (afterStmt.all(seq, tenantId, vault, limit) as { seq: number; record: string }[]).map((r) => ({ seq: r.seq, ...(JSON.parse(r.record) as AuditRecord) }));
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

    /**
     * Walks the whole chain (every link is needed to check any record) and counts the records of `tenantId`;
     * the first broken link names the record and what is wrong with it.
     */
    verify(tenantId?: string): VerifyReport {
      const rows = db.prepare('SELECT seq, record, prev_hash, hash FROM audit_log ORDER BY seq').iterate() as Iterable<{
        seq: number; record: string; prev_hash: string; hash: string;
      }>;
      let prev = GENESIS;
      let expectedSeq = 1;
      let count = 0;
      let mine = 0;
      let tampered: { seq: number; detail: string } | undefined;
      const bad = (seq: number, reason: string): VerifyReport => ({ valid: false, records: mine, firstInvalidSeq: seq, reason });
      for (const r of rows) {
        if (r.seq !== expectedSeq) return bad(r.seq, `record ${expectedSeq} is missing (next present is ${r.seq})`);
        if (r.prev_hash !== prev) return bad(r.seq, 'record does not link to the record before it (removed or reordered)');
        const expected = Buffer.from(mac(prev, r.record), 'hex');
        const actual = Buffer.from(r.hash, 'hex');
        if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) {
          return bad(r.seq, 'record content does not match its hash (edited)');
        }
        const rec = JSON.parse(r.record) as AuditRecord;
        if (rec.operation === TAMPERED && rec.requestId === 'startup') tampered ??= { seq: r.seq, detail: rec.detail ?? '' };
        prev = r.hash;
        expectedSeq++;
        count++;
        if (tenantId === undefined || rec.tenantId === tenantId) mine++;
      }
      if (tampered) return bad(tampered.seq, tampered.detail);
      const stored = readHead();
      if (!stored.authentic) return bad(count + 1, 'the head of the log was rewritten (its HMAC does not match; records removed from the end?)');
      if (stored.seq !== count || stored.hash !== prev) {
        return bad(count + 1, `the log ends at record ${count} but its head says ${stored.seq} (records removed from the end)`);
      }
      return { valid: true, records: mine };
    },
  };
}

export type AuditLog = ReturnType<typeof createAuditLog>;
