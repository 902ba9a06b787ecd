import type { Db } from '../store/db.js';
import type { Clock } from '../lib/clock.js';
import type { FirewallRule, RestoreSpec, Server, ServerState, Sku, WrappedDek } from './model/server.js';

export type { Server, ServerState } from './model/server.js';

export interface ActivityEntry {
  id: number;
  time: string;
  tenantId: string;
  resourceId: string;
  operation: string;
  status: 'Started' | 'Succeeded' | 'Failed' | 'Warning';
  level: 'Informational' | 'Warning' | 'Error';
  caller?: string;
  message: string;
}

const toServer = (r: any): Server => ({
  id: r.id,
  tenantId: r.tenant_id,
  name: r.name,
  location: r.location,
  state: r.state,
  version: r.version,
  storageGb: r.storage_gb,
  adminLogin: r.admin_login,
  adminVerifier: r.admin_verifier,
  port: r.port,
  current: { encryption: JSON.parse(r.encryption), wrappedDek: r.wrapped_dek, wrappedBy: r.wrapped_by },
  pending: r.pending_encryption ? { encryption: JSON.parse(r.pending_encryption), wrappedDek: r.pending_wrapped_dek, wrappedBy: r.pending_wrapped_by } : undefined,
  keyStatus: r.key_status,
  inaccessibleReason: r.inaccessible_reason ?? undefined,
  keyUnreachableSince: r.key_unreachable_since ?? undefined,
  backupRetentionDays: r.backup_retention_days,
  restoreSpec: r.restore_spec ? JSON.parse(r.restore_spec) : undefined,
  replicationRole: r.replication_role,
  sourceServer: r.source_server ?? undefined,
  geo: r.geo ? JSON.parse(r.geo) : undefined,
  readyAt: r.ready_at ?? undefined,
  sku: { name: r.sku_name, tier: r.sku_tier },
  created: r.created,
  updated: r.updated,
});

/** The columns a change may set, by field: every change is targeted, never a whole-row save. */
export interface ServerPatch {
  state?: ServerState;
  storageGb?: number;
  adminVerifier?: string;
  current?: WrappedDek;
  pending?: WrappedDek | null;
  keyStatus?: 'Valid' | 'Invalid';
  inaccessibleReason?: string | null;
  keyUnreachableSince?: number | null;
  restoreSpec?: RestoreSpec | null;
  replicationRole?: 'Primary' | 'AsyncReplica';
  sourceServer?: string | null;
  readyAt?: number;
  sku?: Sku;
}

const columnsOf = (p: ServerPatch): [string, unknown][] => {
  const c: [string, unknown][] = [];
  const json = (v: unknown) => (v == null ? null : JSON.stringify(v));
  if (p.state !== undefined) c.push(['state', p.state]);
  if (p.storageGb !== undefined) c.push(['storage_gb', p.storageGb]);
  if (p.adminVerifier !== undefined) c.push(['admin_verifier', p.adminVerifier]);
  if (p.current !== undefined) c.push(['encryption', json(p.current.encryption)], ['wrapped_dek', p.current.wrappedDek], ['wrapped_by', p.current.wrappedBy]);
  if (p.pending !== undefined) {
    c.push(['pending_encryption', json(p.pending?.encryption)], ['pending_wrapped_dek', p.pending?.wrappedDek ?? null], ['pending_wrapped_by', p.pending?.wrappedBy ?? null]);
  }
  if (p.keyStatus !== undefined) c.push(['key_status', p.keyStatus]);
  if (p.inaccessibleReason !== undefined) c.push(['inaccessible_reason', p.inaccessibleReason]);
  if (p.keyUnreachableSince !== undefined) c.push(['key_unreachable_since', p.keyUnreachableSince]);
  if (p.restoreSpec !== undefined) c.push(['restore_spec', json(p.restoreSpec)]);
  if (p.replicationRole !== undefined) c.push(['replication_role', p.replicationRole]);
  if (p.sourceServer !== undefined) c.push(['source_server', p.sourceServer]);
  if (p.readyAt !== undefined) c.push(['ready_at', p.readyAt]);
  if (p.sku !== undefined) c.push(['sku_name', p.sku.name], ['sku_tier', p.sku.tier]);
  return c;
};

/** SQL for servers, their operations, the activity log, action groups and alert rules. */
export function createServersRepo(db: Db, clock: Clock) {
  const patches = new Map<string, { run: (...args: unknown[]) => { changes: number } }>();
  const s = {
    insert: db.prepare(`INSERT INTO servers (id, tenant_id, name, location, state, version, storage_gb, admin_login, admin_verifier, port,
      encryption, wrapped_dek, wrapped_by, key_status, backup_retention_days, restore_spec, replication_role, source_server, geo, sku_name, sku_tier, created, updated)
      VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`),
    byName: db.prepare('SELECT * FROM servers WHERE name = ?'),
    byId: db.prepare('SELECT * FROM servers WHERE id = ?'),
    list: db.prepare('SELECT * FROM servers WHERE tenant_id = ? ORDER BY name'),
    all: db.prepare('SELECT * FROM servers ORDER BY name'),
    ports: db.prepare('SELECT port FROM servers'),
    delete: db.prepare('DELETE FROM servers WHERE id = ?'),
    parameters: db.prepare('SELECT name, value, pending_restart FROM server_parameters WHERE server_id = ? ORDER BY name'),
    putParameter: db.prepare(`INSERT INTO server_parameters (server_id, name, value, pending_restart, updated) VALUES (?,?,?,?,?)
      ON CONFLICT (server_id, name) DO UPDATE SET value = excluded.value, pending_restart = excluded.pending_restart, updated = excluded.updated`),
    clearPendingRestart: db.prepare('UPDATE server_parameters SET pending_restart = 0 WHERE server_id = ? AND pending_restart = 1'),
    firewallRules: db.prepare('SELECT * FROM firewall_rules WHERE server_id = ? ORDER BY name'),
    putFirewallRule: db.prepare(`INSERT INTO firewall_rules (server_id, name, start_ip, end_ip, created) VALUES (?,?,?,?,?)
      ON CONFLICT (server_id, name) DO UPDATE SET start_ip = excluded.start_ip, end_ip = excluded.end_ip`),
    deleteFirewallRule: db.prepare('DELETE FROM firewall_rules WHERE server_id = ? AND name = ?'),
    setting: db.prepare('SELECT v FROM meta WHERE k = ?'),
    putSetting: db.prepare('INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v'),
  };

  const repo = {
    transaction: <T>(fn: () => T): T => db.transaction(fn)(),
    insert: (v: Server) => void s.insert.run(
      v.id, v.tenantId, v.name, v.location, v.state, v.version, v.storageGb, v.adminLogin, v.adminVerifier, v.port,
      JSON.stringify(v.current.encryption), v.current.wrappedDek, v.current.wrappedBy, v.keyStatus, v.backupRetentionDays,
      v.restoreSpec ? JSON.stringify(v.restoreSpec) : null, v.replicationRole, v.sourceServer ?? null, v.geo ? JSON.stringify(v.geo) : null,
      v.sku.name, v.sku.tier, v.created, v.updated,
    ),
    /**
     * Sets only the given columns; with `whenState`, only while the server is in one of those states
     * (compare-and-set). Returns whether the row changed.
     */
    update(id: string, patch: ServerPatch, whenState?: ServerState | ServerState[]): boolean {
      const cols = columnsOf(patch);
      const states = whenState === undefined ? [] : Array.isArray(whenState) ? whenState : [whenState];
      const sql = `UPDATE servers SET ${[...cols.map(([c]) => `${c} = ?`), 'updated = ?'].join(', ')} WHERE id = ?${states.length ? ` AND state IN (${states.map(() => '?').join(',')})` : ''}`;
      let stmt = patches.get(sql);
      if (!stmt) {
        stmt = db.prepare(sql) as unknown as { run: (...args: unknown[]) => { changes: number } };
        patches.set(sql, stmt);
      }
      return stmt.run(...cols.map(([, v]) => v), Math.floor(clock.now() / 1000), id, ...states).changes > 0;
    },
    /** A transition of the state machine, applied as compare-and-set on the state it was decided from. */
    transition: (id: string, from: ServerState | ServerState[], to: ServerState, patch: Omit<ServerPatch, 'state'> = {}) =>
      repo.update(id, { ...patch, state: to }, from),
    byName: (name: string) => { const r = s.byName.get(name); return r ? toServer(r) : undefined; },
    byId: (id: string) => { const r = s.byId.get(id); return r ? toServer(r) : undefined; },
    list: (tenantId: string) => s.list.all(tenantId).map(toServer),
    all: () => s.all.all().map(toServer),
    usedPorts: () => new Set((s.ports.all() as { port: number }[]).map((r) => r.port)),
    delete: (id: string) => void s.delete.run(id),


    /** The server parameters a user set (see src/postgres/parameters.ts), with whether each awaits a restart. */
    parameters: (serverId: string) => (s.parameters.all(serverId) as { name: string; value: string; pending_restart: number }[])
      .map((r) => ({ name: r.name, value: r.value, pendingRestart: r.pending_restart === 1 })),
    putParameter: (serverId: string, name: string, value: string, pendingRestart: boolean) =>
      void s.putParameter.run(serverId, name, value, pendingRestart ? 1 : 0, Math.floor(clock.now() / 1000)),
    clearPendingRestart: (serverId: string) => void s.clearPendingRestart.run(serverId),
    firewallRules: (serverId: string): FirewallRule[] => (s.firewallRules.all(serverId) as any[])
      .map((r) => ({ name: r.name as string, startIpAddress: r.start_ip as string, endIpAddress: r.end_ip as string })),
    /** Returns whether the rule is new. */
    putFirewallRule: (serverId: string, r: FirewallRule): boolean => repo.transaction(() => {
      const existed = repo.firewallRules(serverId).some((x) => x.name.toLowerCase() === r.name.toLowerCase());
      s.putFirewallRule.run(serverId, r.name, r.startIpAddress, r.endIpAddress, Math.floor(clock.now() / 1000));
      return !existed;
    }),
    deleteFirewallRule: (serverId: string, name: string) => s.deleteFirewallRule.run(serverId, name).changes > 0,
    setting: (k: string) => (s.setting.get(`setting:${k}`) as { v: string } | undefined)?.v,
    putSetting: (k: string, v: string) => void s.putSetting.run(`setting:${k}`, v),
  };
  return repo;
}

export type ServersRepo = ReturnType<typeof createServersRepo>;
