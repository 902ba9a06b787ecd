import type { Logger } from 'pino';
import type { Db } from '../store/db.js';
import type { Clock } from '../lib/clock.js';
import type { AuditLog } from '../audit/audit.js';
import { resourceId, type ArmService } from '../arm/arm.service.js';
import { createInsightsRepo } from './insights.repo.js';
import { createActivityLog } from './activity.js';
import { createAlerts } from './alerts.js';
import { createDiagnostics } from './diagnostics.js';

/** Azure Monitor of the platform: the activity log (fed by the servers and by the vaults' audit records), alerts on it, and diagnostic settings. */

export const ACTION_GROUP_TYPE = 'Microsoft.Insights/actionGroups';
export const ALERT_TYPE = 'Microsoft.Insights/activityLogAlerts';

export function createInsights(d: {
  db: Db; audit: AuditLog; arm: ArmService; logger: Logger; clock: Clock; home: string; ca: string;
  vaultUriOf: (tenantId: string, vault: string) => string | undefined;
  streamIntervalMs: number;
  alertRetryDelaysMs?: number[];
}) {
  const repo = createInsightsRepo(d.db);
  const idOf = (tenantId: string, type: string, name: string) => {
    const p = d.arm.findPlacement(tenantId, type, name);
    return p ? resourceId(p) : `/tenants/${tenantId}/providers/${type}/${name}`;
  };
  const activity = createActivityLog({ repo, arm: d.arm, logger: d.logger, now: () => new Date(d.clock.now()) });
  const alerts = createAlerts({ repo, logger: d.logger, ca: d.ca, tenantSubscriptions: (tid) => d.arm.subscriptions(tid).map((s) => s.id), retryDelaysMs: d.alertRetryDelaysMs });
  activity.onRecord((row) => alerts.evaluate(row, (rule) => idOf(rule.tenantId, ALERT_TYPE, rule.name)));
  d.audit.onAppend((rec) => activity.fromAudit(rec));
  const diagnostics = createDiagnostics({
    repo, audit: d.audit, logger: d.logger, clock: d.clock, home: d.home, ca: d.ca, intervalMs: d.streamIntervalMs,
    resourceIdOf: (t) => idOf(t.tenantId, t.resourceType, t.resourceName), vaultUriOf: d.vaultUriOf,
  });
  return { activity, alerts, diagnostics, idOf, close: () => diagnostics.close() };
}

export type Insights = ReturnType<typeof createInsights>;
