import type { Db } from '../store/db.js';

export type ServerState = 'Provisioning' | 'Ready' | 'Starting' | 'Stopping' | 'Stopped' | 'Updating' | 'Inaccessible' | 'Dropping';

export interface DataEncryption {
  type: 'SystemManaged' | 'AzureKeyVault';
  /** The customer's key (versionless follows rotation; versioned stays pinned). */
  primaryKeyURI?: string;
  /** Resource id of the user-assigned identity that reaches the key. */
  primaryUserAssignedIdentityId?: string;
}

/** A wrapped DEK and the versioned key id that wrapped it. */
export interface WrappedDek {
  encryption: DataEncryption;
  wrappedDek: string;
  wrappedBy: string;
}

export interface Server {
  id: string;
  tenantId: string;
  name: string;
  location: string;
  state: ServerState;
  version: string;
  storageGb: number;
  adminLogin: string;
  adminVerifier: string;
  port: number;
  current: WrappedDek;
  /** A re-wrap in flight: both wraps open the same DEK until it is committed. */
  pending?: WrappedDek;
  keyStatus: 'Valid' | 'Invalid';
  inaccessibleReason?: string;
  keyUnreachableSince?: number;
  backupRetentionDays: number;
  /** Set while a server is being created from another's backups (so a crash can resume the restore). */
  restoreSpec?: RestoreSpec;
  /** Primary, or an asynchronous streaming replica of `sourceServer`. */
  replicationRole: 'Primary' | 'AsyncReplica';
  sourceServer?: string;
  /** Geo-redundant backup: copies of the backups in the paired region, under the geo key. */
  geo?: GeoBackup;
  created: number;
  updated: number;
}

export interface GeoBackup {
  region: string;
  encryption: DataEncryption;
  keyStatus: 'Valid' | 'Invalid';
}

export interface RestoreSpec {
  sourceId: string;
  sourceName: string;
  sourceLocation: string;
  restoreTime?: string;
  baseBackupId: string;
}

export interface Operation {
  id: string;
  tenantId: string;
  serverName: string;
  kind: string;
  status: 'InProgress' | 'Succeeded' | 'Failed';
  error?: string;
  step?: string;
  started: number;
  ended?: number;
}

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
  created: r.created,
  updated: r.updated,
});

const toOp = (r: any): Operation => ({
  id: r.id, tenantId: r.tenant_id, serverName: r.server_name, kind: r.kind, status: r.status, error: r.error ?? undefined,
  step: r.step ?? undefined, started: r.started, ended: r.ended ?? undefined,
});

/** SQL for servers, their operations, the activity log, action groups and alert rules. */
export function createServersRepo(db: Db) {
  const s = {
    insert: db.prepare(`INSERT INTO servers (id, tenant_id, name, location, state, version, storage_gb, admin_login, admin_verifier, port,
      encryption, wrapped_dek, wrapped_by, key_status, backup_retention_days, restore_spec, replication_role, source_server, geo, created, updated)
      VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`),
    save: db.prepare(`UPDATE servers SET state = ?, storage_gb = ?, encryption = ?, wrapped_dek = ?, wrapped_by = ?, pending_encryption = ?,
      pending_wrapped_dek = ?, pending_wrapped_by = ?, key_status = ?, inaccessible_reason = ?, key_unreachable_since = ?,
      backup_retention_days = ?, restore_spec = ?, replication_role = ?, source_server = ?, geo = ?, updated = ? WHERE id = ?`),
    byName: db.prepare('SELECT * FROM servers WHERE name = ?'),
    byId: db.prepare('SELECT * FROM servers WHERE id = ?'),
    list: db.prepare('SELECT * FROM servers WHERE tenant_id = ? ORDER BY name'),
    all: db.prepare('SELECT * FROM servers ORDER BY name'),
    ports: db.prepare('SELECT port FROM servers'),
    delete: db.prepare('DELETE FROM servers WHERE id = ?'),
    insertOp: db.prepare('INSERT INTO operations (id, tenant_id, server_name, kind, status, step, started) VALUES (?,?,?,?,?,?,?)'),
    saveOp: db.prepare('UPDATE operations SET status = ?, error = ?, step = ?, ended = ? WHERE id = ?'),
    op: db.prepare('SELECT * FROM operations WHERE id = ?'),
    openOps: db.prepare("SELECT * FROM operations WHERE server_name = ? AND status = 'InProgress'"),
    activity: db.prepare(`INSERT INTO activity_log (time, tenant_id, resource_id, operation, status, level, caller, message) VALUES (?,?,?,?,?,?,?,?)`),
    activityList: db.prepare('SELECT * FROM activity_log WHERE tenant_id = ? AND (? IS NULL OR resource_id = ?) ORDER BY id DESC LIMIT ?'),
    actionGroups: db.prepare('SELECT * FROM action_groups WHERE tenant_id = ? ORDER BY name'),
    actionGroup: db.prepare('SELECT * FROM action_groups WHERE tenant_id = ? AND name = ?'),
    putActionGroup: db.prepare('INSERT INTO action_groups (tenant_id, name, webhooks) VALUES (?,?,?) ON CONFLICT (tenant_id, name) DO UPDATE SET webhooks = excluded.webhooks'),
    deleteActionGroup: db.prepare('DELETE FROM action_groups WHERE tenant_id = ? AND name = ?'),
    alertRules: db.prepare('SELECT * FROM alert_rules WHERE tenant_id = ? ORDER BY name'),
    putAlertRule: db.prepare(`INSERT INTO alert_rules (tenant_id, name, condition, server_name, action_group, enabled) VALUES (?,?,?,?,?,?)
      ON CONFLICT (tenant_id, name) DO UPDATE SET condition = excluded.condition, server_name = excluded.server_name, action_group = excluded.action_group, enabled = excluded.enabled`),
    deleteAlertRule: db.prepare('DELETE FROM alert_rules WHERE tenant_id = ? AND name = ?'),
    parameters: db.prepare('SELECT name, value, pending_restart FROM server_parameters WHERE server_id = ? ORDER BY name'),
    putParameter: db.prepare(`INSERT INTO server_parameters (server_id, name, value, pending_restart, updated) VALUES (?,?,?,?,?)
      ON CONFLICT (server_id, name) DO UPDATE SET value = excluded.value, pending_restart = excluded.pending_restart, updated = excluded.updated`),
    clearPendingRestart: db.prepare('UPDATE server_parameters SET pending_restart = 0 WHERE server_id = ? AND pending_restart = 1'),
    setting: db.prepare('SELECT v FROM meta WHERE k = ?'),
    putSetting: db.prepare('INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v'),
  };

  return {
    transaction: <T>(fn: () => T): T => db.transaction(fn)(),
    insert: (v: Server) => void s.insert.run(
      v.id, v.tenantId, v.name, v.location, v.state, v.version, v.storageGb, v.adminLogin, v.adminVerifier, v.port,
      JSON.stringify(v.current.encryption), v.current.wrappedDek, v.current.wrappedBy, v.keyStatus, v.backupRetentionDays,
      v.restoreSpec ? JSON.stringify(v.restoreSpec) : null, v.replicationRole, v.sourceServer ?? null, v.geo ? JSON.stringify(v.geo) : null,
      v.created, v.updated,
    ),
    save: (v: Server) => void s.save.run(
      v.state, v.storageGb, JSON.stringify(v.current.encryption), v.current.wrappedDek, v.current.wrappedBy,
      v.pending ? JSON.stringify(v.pending.encryption) : null, v.pending?.wrappedDek ?? null, v.pending?.wrappedBy ?? null,
      v.keyStatus, v.inaccessibleReason ?? null, v.keyUnreachableSince ?? null, v.backupRetentionDays,
      v.restoreSpec ? JSON.stringify(v.restoreSpec) : null, v.replicationRole, v.sourceServer ?? null, v.geo ? JSON.stringify(v.geo) : null,
      v.updated, v.id,
    ),
    byName: (name: string) => { const r = s.byName.get(name); return r ? toServer(r) : undefined; },
    byId: (id: string) => { const r = s.byId.get(id); return r ? toServer(r) : undefined; },
    list: (tenantId: string) => s.list.all(tenantId).map(toServer),
    all: () => s.all.all().map(toServer),
    usedPorts: () => new Set((s.ports.all() as { port: number }[]).map((r) => r.port)),
    delete: (id: string) => void s.delete.run(id),

    insertOp: (o: Operation) => void s.insertOp.run(o.id, o.tenantId, o.serverName, o.kind, o.status, o.step ?? null, o.started),
    saveOp: (o: Operation) => void s.saveOp.run(o.status, o.error ?? null, o.step ?? null, o.ended ?? null, o.id),
    op: (id: string) => { const r = s.op.get(id); return r ? toOp(r) : undefined; },
    openOps: (serverName: string) => s.openOps.all(serverName).map(toOp),

    addActivity: (e: Omit<ActivityEntry, 'id'>) =>
      void s.activity.run(e.time, e.tenantId, e.resourceId, e.operation, e.status, e.level, e.caller ?? null, e.message),
    activity: (tenantId: string, resourceId: string | undefined, top: number): ActivityEntry[] =>
      (s.activityList.all(tenantId, resourceId ?? null, resourceId ?? null, top) as any[]).map((r) => ({
        id: r.id, time: r.time, tenantId: r.tenant_id, resourceId: r.resource_id, operation: r.operation, status: r.status,
        level: r.level, caller: r.caller ?? undefined, message: r.message,
      })),

    actionGroups: (tenantId: string) => (s.actionGroups.all(tenantId) as any[]).map((r) => ({ name: r.name as string, webhooks: JSON.parse(r.webhooks) as string[] })),
    actionGroup: (tenantId: string, name: string) => {
      const r = s.actionGroup.get(tenantId, name) as any;
      return r ? { name: r.name as string, webhooks: JSON.parse(r.webhooks) as string[] } : undefined;
    },
    putActionGroup: (tenantId: string, name: string, webhooks: string[]) => void s.putActionGroup.run(tenantId, name, JSON.stringify(webhooks)),
    deleteActionGroup: (tenantId: string, name: string) => s.deleteActionGroup.run(tenantId, name).changes > 0,
    alertRules: (tenantId: string) => (s.alertRules.all(tenantId) as any[]).map((r) => ({
      name: r.name as string, condition: r.condition as string, serverName: (r.server_name ?? undefined) as string | undefined,
      actionGroup: r.action_group as string, enabled: !!r.enabled,
    })),
    putAlertRule: (tenantId: string, r: { name: string; condition: string; serverName?: string; actionGroup: string; enabled: boolean }) =>
      void s.putAlertRule.run(tenantId, r.name, r.condition, r.serverName ?? null, r.actionGroup, r.enabled ? 1 : 0),
    deleteAlertRule: (tenantId: string, name: string) => s.deleteAlertRule.run(tenantId, name).changes > 0,

    /** The server parameters a user set (see src/postgres/parameters.ts), with whether each awaits a restart. */
    parameters: (serverId: string) => (s.parameters.all(serverId) as { name: string; value: string; pending_restart: number }[])
      .map((r) => ({ name: r.name, value: r.value, pendingRestart: r.pending_restart === 1 })),
    putParameter: (serverId: string, name: string, value: string, pendingRestart: boolean) =>
      void s.putParameter.run(serverId, name, value, pendingRestart ? 1 : 0, Math.floor(Date.now() / 1000)),
    clearPendingRestart: (serverId: string) => void s.clearPendingRestart.run(serverId),
    setting: (k: string) => (s.setting.get(`setting:${k}`) as { v: string } | undefined)?.v,
    putSetting: (k: string, v: string) => void s.putSetting.run(`setting:${k}`, v),
  };
}

export type ServersRepo = ReturnType<typeof createServersRepo>;
