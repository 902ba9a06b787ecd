import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { homePaths } from '../../src/lib/home.js';

/**
 * What a request may change, read straight from pgbyok's SQLite file (read-only, beside the running
 * platform): every table except the audit log (every request appends to it, refusals included) and the
 * token signing keys (rotated by the scheduler), and the audit log's head in `meta`. Of key versions, the expiry-notification flags are left
 * out too: the scheduler sets them on its own.
 */
const SKIP_TABLES = new Set(['audit_log', 'signing_keys']);
const SKIP_COLUMNS: Record<string, Set<string>> = { key_versions: new Set(['near_expiry_notified', 'expired_notified']) };
/** The audit log's head hash lives in `meta`; it moves with every audited request. */
const SKIP_ROWS: Record<string, (row: Record<string, unknown>) => boolean> = { meta: (row) => row.k === 'audit_head' };

export type Fingerprint = Map<string, { hash: string; rows: string[] }>;

export function stateReader(home: string) {
  const db = new Database(homePaths(home).db, { readonly: true, fileMustExist: true });
  const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[])
    .map((t) => t.name)
    .filter((t) => !SKIP_TABLES.has(t));

  const fingerprint = (): Fingerprint => {
    const out: Fingerprint = new Map();
    db.transaction(() => {
      for (const t of tables) {
        const rows = (db.prepare(`SELECT * FROM "${t}"`).all() as Record<string, unknown>[])
          .filter((row) => !SKIP_ROWS[t]?.(row))
          .map((row) => JSON.stringify(Object.entries(row).filter(([c]) => !SKIP_COLUMNS[t]?.has(c)).map(([c, v]) => [c, Buffer.isBuffer(v) ? v.toString('hex') : v])))
          .sort();
        out.set(t, { hash: createHash('sha256').update(rows.join('\n')).digest('hex'), rows });
      }
    })();
    return out;
  };

  return { fingerprint, tables, close: () => db.close() };
}

/** Empty when equal; otherwise one line per changed table with the rows that appeared and disappeared. */
export function diffFingerprints(before: Fingerprint, after: Fingerprint, maxRows = 3): string[] {
  const out: string[] = [];
  for (const [t, b] of before) {
    const a = after.get(t)!;
    if (a.hash === b.hash) continue;
    const was = new Set(b.rows);
    const now = new Set(a.rows);
    const added = a.rows.filter((r) => !was.has(r)).slice(0, maxRows).map((r) => `+ ${r.slice(0, 300)}`);
    const removed = b.rows.filter((r) => !now.has(r)).slice(0, maxRows).map((r) => `- ${r.slice(0, 300)}`);
    out.push(`table ${t} changed (${b.rows.length} -> ${a.rows.length} rows)\n      ${[...removed, ...added].join('\n      ')}`);
  }
  return out;
}
