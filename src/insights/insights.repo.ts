import type { Db } from '../store/db.js';

/** SQL for Azure Monitor: the activity log, action groups, activity-log alerts, diagnostic settings. Nothing here decides anything. */

export type ActivityStatus = 'Started' | 'Succeeded' | 'Failed' | 'Warning';
export type ActivityLevel = 'Informational' | 'Warning' | 'Error' | 'Critical';

export interface ActivityRow {
  id: number;
  time: string;
  tenantId: string;
  /** The id the recorder knew: `/tenants/{tid}/providers/{type}/{name}`. */
  resourceId: string;
  /** The ARM id, once the resource's placement is known. */
  armId?: string;
  category: string;
  operation: string;
  status: ActivityStatus;
  level: ActivityLevel;
  caller?: string;
  message: string;
  correlationId?: string;
  properties?: Record<string, string>;
}

export interface ActivityQuery {
  tenantId: string;
  /** ARM id prefix the entries' resources sit under (a subscription or a group), or an exact resource id. */
  armPrefix?: string;
  resourceUri?: string;
  resourceProvider?: string;
  correlationId?: string;
  from?: string;
  to?: string;
  /** Entries older than this id (paging, newest first). */
  beforeId?: number;
  limit: number;
}

export interface StoredMonitorResource {
  tenantId: string;
  name: string;
  properties: Record<string, unknown>;
  tags: Record<string, string>;
}

export interface StoredDiagnosticSetting {
  tenantId: string;
  resourceType: string;
  resourceName: string;
  name: string;
  properties: Record<string, unknown>;
  deliveredSeq: number;
  created: number;
}

const toActivity = (r: any): ActivityRow => ({
  id: r.id, time: r.time, tenantId: r.tenant_id, resourceId: r.resource_id, armId: r.arm_id ?? undefined, category: r.category,
  operation: r.operation, status: r.status, level: r.level, caller: r.caller ?? undefined, message: r.message,
  correlationId: r.correlation_id ?? undefined, properties: r.properties ? JSON.parse(r.properties) : undefined,
});
const toMonitor = (r: any): StoredMonitorResource => ({ tenantId: r.tenant_id, name: r.name, properties: JSON.parse(r.properties), tags: JSON.parse(r.tags) });
const toSetting = (r: any): StoredDiagnosticSetting => ({
  tenantId: r.tenant_id, resourceType: r.resource_type, resourceName: r.resource_name, name: r.name, properties: JSON.parse(r.properties),
  deliveredSeq: r.delivered_seq, created: r.created,
});

export function createInsightsRepo(db: Db) {
  const s = {
    addActivity: db.prepare(`INSERT INTO activity_log (time, tenant_id, resource_id, arm_id, category, operation, status, level, caller, message, correlation_id, properties)
      VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`),
    unresolved: db.prepare('SELECT DISTINCT resource_id FROM activity_log WHERE tenant_id = ? AND arm_id IS NULL'),
    resolve: db.prepare('UPDATE activity_log SET arm_id = ? WHERE tenant_id = ? AND resource_id = ? AND arm_id IS NULL'),
    legacy: db.prepare('SELECT * FROM activity_log WHERE tenant_id = ? AND (? IS NULL OR resource_id = ? OR arm_id = ? COLLATE NOCASE) ORDER BY id DESC LIMIT ?'),
    groups: db.prepare('SELECT * FROM monitor_action_groups WHERE tenant_id = ? ORDER BY name'),
    group: db.prepare('SELECT * FROM monitor_action_groups WHERE tenant_id = ? AND name = ?'),
    putGroup: db.prepare('INSERT INTO monitor_action_groups (tenant_id, name, properties, tags) VALUES (?,?,?,?) ON CONFLICT (tenant_id, name) DO UPDATE SET properties = excluded.properties, tags = excluded.tags'),
    deleteGroup: db.prepare('DELETE FROM monitor_action_groups WHERE tenant_id = ? AND name = ?'),
    alerts: db.prepare('SELECT * FROM monitor_alert_rules WHERE tenant_id = ? ORDER BY name'),
    alert: db.prepare('SELECT * FROM monitor_alert_rules WHERE tenant_id = ? AND name = ?'),
    putAlert: db.prepare('INSERT INTO monitor_alert_rules (tenant_id, name, properties, tags) VALUES (?,?,?,?) ON CONFLICT (tenant_id, name) DO UPDATE SET properties = excluded.properties, tags = excluded.tags'),
    deleteAlert: db.prepare('DELETE FROM monitor_alert_rules WHERE tenant_id = ? AND name = ?'),
    settings: db.prepare('SELECT * FROM diagnostic_settings WHERE tenant_id = ? AND resource_type = ? AND resource_name = ? ORDER BY name'),
    allSettings: db.prepare('SELECT * FROM diagnostic_settings ORDER BY tenant_id, resource_name, name'),
    setting: db.prepare('SELECT * FROM diagnostic_settings WHERE tenant_id = ? AND resource_type = ? AND resource_name = ? AND name = ?'),
    insertSetting: db.prepare('INSERT INTO diagnostic_settings (tenant_id, resource_type, resource_name, name, properties, delivered_seq, created) VALUES (?,?,?,?,?,?,?)'),
    updateSetting: db.prepare('UPDATE diagnostic_settings SET properties = ? WHERE tenant_id = ? AND resource_type = ? AND resource_name = ? AND name = ?'),
    deleteSetting: db.prepare('DELETE FROM diagnostic_settings WHERE tenant_id = ? AND resource_type = ? AND resource_name = ? AND name = ?'),
    advance: db.prepare('UPDATE diagnostic_settings SET delivered_seq = ? WHERE tenant_id = ? AND resource_type = ? AND resource_name = ? AND name = ? AND delivered_seq < ?'),
  };

  return {
    addActivity(e: Omit<ActivityRow, 'id'>): number {
      return Number(s.addActivity.run(e.time, e.tenantId, e.resourceId, e.armId ?? null, e.category, e.operation, e.status, e.level, e.caller ?? null, e.message,
        e.correlationId ?? null, e.properties ? JSON.stringify(e.properties) : null).lastInsertRowid);
    },
    unresolvedResources: (tenantId: string) => (s.unresolved.all(tenantId) as { resource_id: string }[]).map((r) => r.resource_id),
    resolveResource: (tenantId: string, resourceId: string, armId: string) => void s.resolve.run(armId, tenantId, resourceId),
    /** The pgbyok CLI's list: newest first, optionally of one resource (either id form). */
    legacyActivity: (tenantId: string, resourceId: string | undefined, top: number) =>
      (s.legacy.all(tenantId, resourceId ?? null, resourceId ?? null, resourceId ?? null, top) as any[]).map(toActivity),
    activity(q: ActivityQuery): ActivityRow[] {
      const where = ['tenant_id = ?'];
      const args: unknown[] = [q.tenantId];
      if (q.armPrefix) { where.push("(arm_id = ? COLLATE NOCASE OR arm_id LIKE ? ESCAPE '\\')"); args.push(q.armPrefix, `${q.armPrefix.replace(/[\\%_]/g, (c) => `\\${c}`)}/%`); }
      if (q.resourceUri) { where.push('(arm_id = ? COLLATE NOCASE OR resource_id = ? COLLATE NOCASE)'); args.push(q.resourceUri, q.resourceUri); }
      if (q.resourceProvider) { where.push("operation LIKE ? ESCAPE '\\'"); args.push(`${q.resourceProvider.replace(/[\\%_]/g, (c) => `\\${c}`)}/%`); }
      if (q.correlationId) { where.push('correlation_id = ? COLLATE NOCASE'); args.push(q.correlationId); }
      if (q.from) { where.push('time >= ?'); args.push(q.from); }
      if (q.to) { where.push('time <= ?'); args.push(q.to); }
      if (q.beforeId !== undefined) { where.push('id < ?'); args.push(q.beforeId); }
      return (db.prepare(`SELECT * FROM activity_log WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT ?`).all(...args, q.limit) as any[]).map(toActivity);
    },

    actionGroups: (tenantId: string) => (s.groups.all(tenantId) as any[]).map(toMonitor),
    actionGroup: (tenantId: string, name: string) => { const r = s.group.get(tenantId, name); return r ? toMonitor(r) : undefined; },
    putActionGroup: (g: StoredMonitorResource) => void s.putGroup.run(g.tenantId, g.name, JSON.stringify(g.properties), JSON.stringify(g.tags)),
    deleteActionGroup: (tenantId: string, name: string) => s.deleteGroup.run(tenantId, name).changes > 0,
    alertRules: (tenantId: string) => (s.alerts.all(tenantId) as any[]).map(toMonitor),
    alertRule: (tenantId: string, name: string) => { const r = s.alert.get(tenantId, name); return r ? toMonitor(r) : undefined; },
    putAlertRule: (a: StoredMonitorResource) => void s.putAlert.run(a.tenantId, a.name, JSON.stringify(a.properties), JSON.stringify(a.tags)),
    deleteAlertRule: (tenantId: string, name: string) => s.deleteAlert.run(tenantId, name).changes > 0,

    diagnosticSettings: (tenantId: string, type: string, resource: string) => (s.settings.all(tenantId, type, resource) as any[]).map(toSetting),
    allDiagnosticSettings: () => (s.allSettings.all() as any[]).map(toSetting),
    diagnosticSetting: (tenantId: string, type: string, resource: string, name: string) => {
      const r = s.setting.get(tenantId, type, resource, name);
      return r ? toSetting(r) : undefined;
    },
    insertDiagnosticSetting: (d: StoredDiagnosticSetting) =>
      void s.insertSetting.run(d.tenantId, d.resourceType, d.resourceName, d.name, JSON.stringify(d.properties), d.deliveredSeq, d.created),
    updateDiagnosticSetting: (d: StoredDiagnosticSetting) => void s.updateSetting.run(JSON.stringify(d.properties), d.tenantId, d.resourceType, d.resourceName, d.name),
    deleteDiagnosticSetting: (d: Pick<StoredDiagnosticSetting, 'tenantId' | 'resourceType' | 'resourceName' | 'name'>) =>
      s.deleteSetting.run(d.tenantId, d.resourceType, d.resourceName, d.name).changes > 0,
    /** Moves a setting's cursor forward (never back). */
    advanceDiagnosticSetting: (d: Pick<StoredDiagnosticSetting, 'tenantId' | 'resourceType' | 'resourceName' | 'name'>, seq: number) =>
      void s.advance.run(seq, d.tenantId, d.resourceType, d.resourceName, d.name, seq),
    transaction: <T>(fn: () => T): T => db.transaction(fn)(),
  };
}

export type InsightsRepo = ReturnType<typeof createInsightsRepo>;
