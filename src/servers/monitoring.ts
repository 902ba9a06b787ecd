import { errors } from '../lib/errors.js';
import type { Insights } from '../insights/insights.service.js';
import type { ActivityEntry } from './servers.repo.js';

/**
 * What the servers tell Azure Monitor: each activity (who did what to which server, every key-access
 * failure, Inaccessible and back) goes into the activity log, where the activity-log alerts see it
 * (src/insights). The servers know nothing else of it.
 */

export const ALERT_CONDITIONS = ['ServerInaccessible', 'KeyAccessFailure', 'ServerAvailable', 'Any'] as const;
export type AlertCondition = (typeof ALERT_CONDITIONS)[number];

/** The activity operations an alert condition fires on. */
const CONDITION_OPERATIONS: Record<Exclude<AlertCondition, 'Any'>, string> = {
  ServerInaccessible: 'Microsoft.DBforPostgreSQL/flexibleServers/inaccessible',
  KeyAccessFailure: 'Microsoft.DBforPostgreSQL/flexibleServers/keyAccessFailure',
  ServerAvailable: 'Microsoft.DBforPostgreSQL/flexibleServers/available',
};

export const ACTIVITY_OPERATIONS = {
  ...CONDITION_OPERATIONS,
  write: 'Microsoft.DBforPostgreSQL/flexibleServers/write',
  delete: 'Microsoft.DBforPostgreSQL/flexibleServers/delete',
  start: 'Microsoft.DBforPostgreSQL/flexibleServers/start/action',
  stop: 'Microsoft.DBforPostgreSQL/flexibleServers/stop/action',
  restart: 'Microsoft.DBforPostgreSQL/flexibleServers/restart/action',
  revalidate: 'Microsoft.DBforPostgreSQL/flexibleServers/revalidate/action',
  rewrap: 'Microsoft.DBforPostgreSQL/flexibleServers/dataEncryption/rewrap',
  reconcile: 'Microsoft.DBforPostgreSQL/flexibleServers/reconcile',
  backup: 'Microsoft.DBforPostgreSQL/flexibleServers/backups/write',
  promote: 'Microsoft.DBforPostgreSQL/flexibleServers/promote/action',
} as const;

export function createMonitoring(d: { insights: Insights }) {
  const { activity, alerts } = d.insights;
  const legacyGroup = (g: { name: string; properties: Record<string, unknown> }) => ({ name: g.name, webhooks: ((g.properties.webhookReceivers ?? []) as { serviceUri: string }[]).map((w) => w.serviceUri) });
  return {
    /** Records an activity (the alerts it matches fire in the background). */
    record(e: { tenantId: string; resourceId: string; serverName: string; operation: string; status: ActivityEntry['status']; level: ActivityEntry['level']; caller?: string; message: string }) {
      activity.record({ tenantId: e.tenantId, resourceId: e.resourceId, operation: e.operation, status: e.status, level: e.level, caller: e.caller, message: e.message });
    },
    /** The older list (newest first) of the `/tenants/` path. */
    activity: (tenantId: string, resourceId: string | undefined, top = 100) => activity.legacy(tenantId, resourceId, top).map((r) => ({
      id: r.id, time: r.time, tenantId: r.tenantId, resourceId: r.resourceId, operation: r.operation, status: r.status, level: r.level as ActivityEntry['level'], caller: r.caller, message: r.message,
    })),

    // The older pgbyok monitor calls, kept while src/api/servers.routes.ts still names them (its Insights
    // routes are not registered: src/api/insights.routes.ts serves those paths). Remove with that block.
    putActionGroup: (tenantId: string, name: string, webhooks: string[]) =>
      legacyGroup(alerts.putActionGroup(tenantId, name, { properties: { webhookReceivers: webhooks.map((serviceUri) => ({ serviceUri })) } })),
    actionGroups: (tenantId: string) => alerts.actionGroups(tenantId).map(legacyGroup),
    deleteActionGroup(tenantId: string, name: string) {
      if (!alerts.deleteActionGroup(tenantId, name)) throw errors.notFound('ResourceNotFound', `No action group '${name}'.`);
    },
    putAlertRule: (tenantId: string, r: { name: string; condition: string; serverName?: string; actionGroup: string; enabled?: boolean }) => {
      alerts.putAlertRule(tenantId, r.name, { properties: { ...r } });
      return { ...r, enabled: r.enabled ?? true };
    },
    alertRules: (tenantId: string) => alerts.alertRules(tenantId),
    deleteAlertRule(tenantId: string, name: string) {
      if (!alerts.deleteAlertRule(tenantId, name)) throw errors.notFound('ResourceNotFound', `No alert rule '${name}'.`);
    },
  };
}

export type Monitoring = ReturnType<typeof createMonitoring>;
