import type { Insights } from '../insights/insights.service.js';
import type { ActivityEntry } from './servers.repo.js';

/**
 * What the servers tell Azure Monitor: each activity (who did what to which server, every key-access
 * failure, Inaccessible and back) goes into the activity log, where the activity-log alerts see it
 * (src/insights). The servers know nothing else of it.
 */

/** The activity operations the older alert conditions (ServerInaccessible, KeyAccessFailure, ServerAvailable) fire on. */
const CONDITION_OPERATIONS = {
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
  const { activity } = d.insights;
  return {
    /** Records an activity (the alerts it matches fire in the background). */
    record(e: { tenantId: string; resourceId: string; serverName: string; operation: string; status: ActivityEntry['status']; level: ActivityEntry['level']; caller?: string; message: string }) {
      activity.record({ tenantId: e.tenantId, resourceId: e.resourceId, operation: e.operation, status: e.status, level: e.level, caller: e.caller, message: e.message });
    },
  };
}

export type Monitoring = ReturnType<typeof createMonitoring>;
