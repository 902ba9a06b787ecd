import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { errors } from '../lib/errors.js';
import { deliverWebhook } from '../lib/webhook.js';
import type { ActivityEntry, ServersRepo } from './servers.repo.js';

/**
 * Azure Monitor's part: the activity log (who did what to which resource, and every key-access failure),
 * and activity-log alert rules whose action groups POST a payload in Azure's common alert schema to
 * webhooks. Alerts are delivered in the background and never block the lifecycle.
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

export function createMonitoring(d: { repo: ServersRepo; logger: Logger; ca: string }) {
  const fire = (entry: Omit<ActivityEntry, 'id'>, serverName: string) => {
    for (const rule of d.repo.alertRules(entry.tenantId)) {
      if (!rule.enabled || (rule.serverName && rule.serverName !== serverName)) continue;
      if (rule.condition !== 'Any' && CONDITION_OPERATIONS[rule.condition as Exclude<AlertCondition, 'Any'>] !== entry.operation) continue;
      const group = d.repo.actionGroup(entry.tenantId, rule.actionGroup);
      if (!group) continue;
      const payload = {
        schemaId: 'azureMonitorCommonAlertSchema',
        data: {
          essentials: {
            alertId: randomUUID(),
            alertRule: rule.name,
            severity: entry.level === 'Error' ? 'Sev1' : entry.level === 'Warning' ? 'Sev2' : 'Sev4',
            signalType: 'Activity Log',
            monitorCondition: 'Fired',
            monitoringService: 'Activity Log - Administrative',
            alertTargetIDs: [entry.resourceId],
            firedDateTime: entry.time,
            description: entry.message,
          },
          alertContext: { operationName: entry.operation, status: entry.status, level: entry.level, caller: entry.caller, message: entry.message },
        },
      };
      for (const url of group.webhooks) deliverWebhook(url, payload, { ca: d.ca, logger: d.logger, what: `alert ${rule.name}` });
    }
  };

  return {
    /** Records an activity and fires the alert rules it matches. */
    record(e: { tenantId: string; resourceId: string; serverName: string; operation: string; status: ActivityEntry['status']; level: ActivityEntry['level']; caller?: string; message: string }) {
      const entry = { time: new Date().toISOString(), tenantId: e.tenantId, resourceId: e.resourceId, operation: e.operation, status: e.status, level: e.level, caller: e.caller, message: e.message };
      d.repo.addActivity(entry);
      d.logger.info({ ...entry }, 'activity');
      fire(entry, e.serverName);
    },
    activity: (tenantId: string, resourceId: string | undefined, top = 100) => d.repo.activity(tenantId, resourceId, Math.min(Math.max(top, 1), 1000)),

    putActionGroup(tenantId: string, name: string, webhooks: string[]) {
      if (!/^[A-Za-z0-9-]{1,64}$/.test(name)) throw errors.badParameter(`Action group name '${name}' is invalid.`);
      if (!webhooks.length) throw errors.badParameter('An action group needs at least one webhook receiver.');
      for (const w of webhooks) {
        let u: URL;
        try {
          u = new URL(w);
        } catch {
          throw errors.badParameter(`'${w}' is not a URL.`);
        }
        if (!['http:', 'https:'].includes(u.protocol)) throw errors.badParameter(`'${w}' is not an http(s) URL.`);
      }
      d.repo.putActionGroup(tenantId, name, webhooks);
      return { name, webhooks };
    },
    actionGroups: (tenantId: string) => d.repo.actionGroups(tenantId),
    deleteActionGroup(tenantId: string, name: string) {
      if (!d.repo.deleteActionGroup(tenantId, name)) throw errors.notFound('ResourceNotFound', `No action group '${name}'.`);
    },
    putAlertRule(tenantId: string, r: { name: string; condition: string; serverName?: string; actionGroup: string; enabled?: boolean }) {
      if (!/^[A-Za-z0-9-]{1,64}$/.test(r.name)) throw errors.badParameter(`Alert rule name '${r.name}' is invalid.`);
      if (!(ALERT_CONDITIONS as readonly string[]).includes(r.condition)) {
        throw errors.badParameter(`Unknown condition '${r.condition}'. Conditions: ${ALERT_CONDITIONS.join(', ')}.`);
      }
      if (!d.repo.actionGroup(tenantId, r.actionGroup)) throw errors.badParameter(`No action group '${r.actionGroup}'.`);
      const rule = { ...r, enabled: r.enabled ?? true };
      d.repo.putAlertRule(tenantId, rule);
      return rule;
    },
    alertRules: (tenantId: string) => d.repo.alertRules(tenantId),
    deleteAlertRule(tenantId: string, name: string) {
      if (!d.repo.deleteAlertRule(tenantId, name)) throw errors.notFound('ResourceNotFound', `No alert rule '${name}'.`);
    },
  };
}

export type Monitoring = ReturnType<typeof createMonitoring>;
