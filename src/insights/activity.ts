import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { ApiError } from '../lib/errors.js';
import type { AuditRecord } from '../audit/audit.js';
import { parseResourceId, resourceId, type ArmService } from '../arm/arm.service.js';
import type { ActivityLevel, ActivityRow, ActivityStatus, InsightsRepo } from './insights.repo.js';

/**
 * The activity log, in Azure Monitor's EventData shape: what the servers record (lifecycle, key-access
 * failures, Inaccessible and back) and the vaults' management operations, taken from the audit log as its
 * records are written. Entries name their resource as the recorder knew it (`/tenants/{tid}/providers/...`);
 * the ARM id is looked up from the resource's placement when the entry is written, or on the first read after.
 */

const LOCAL = (v: string) => ({ value: v, localizedValue: v });
/** .NET ticks of a time (Azure's event ids end in them). */
const ticks = (iso: string) => (BigInt(Date.parse(iso)) * 10_000n + 621_355_968_000_000_000n).toString();
/** A stable GUID-shaped id per entry. */
const guidOf = (s: string) => { const h = createHash('sha256').update(s).digest('hex'); return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`; };

const HEALTH_OPERATIONS = new Set([
  'microsoft.dbforpostgresql/flexibleservers/inaccessible', 'microsoft.dbforpostgresql/flexibleservers/available', 'microsoft.dbforpostgresql/flexibleservers/keyaccessfailure',
]);

/** The vault management operations that go into the activity log, by the audit record's operation. */
const VAULT_OPERATIONS: Record<string, string> = {
  VaultCreate: 'Microsoft.KeyVault/vaults/write',
  VaultUpdate: 'Microsoft.KeyVault/vaults/write',
  VaultRecover: 'Microsoft.KeyVault/vaults/write',
  VaultAccessPolicyUpdate: 'Microsoft.KeyVault/vaults/accessPolicy/action',
  VaultDelete: 'Microsoft.KeyVault/vaults/delete',
  VaultPurge: 'Microsoft.KeyVault/locations/deletedVaults/purge/action',
  EventSubscriptionPut: 'Microsoft.KeyVault/vaults/eventSubscriptions/write',
  EventSubscriptionDelete: 'Microsoft.KeyVault/vaults/eventSubscriptions/delete',
};

export type EventData = ReturnType<typeof eventData>;

export function eventData(e: ActivityRow) {
  const armId = e.armId ?? e.resourceId;
  const parsed = parseResourceId(armId);
  const eventDataId = guidOf(`${e.tenantId}/${e.id}`);
  const correlationId = e.correlationId ?? eventDataId;
  const status = e.status === 'Warning' ? 'Active' : e.status;
  const httpStatus = e.properties?.statusCode;
  return {
    authorization: { action: e.operation, scope: armId },
    caller: e.caller ?? '',
    channels: 'Operation',
    claims: {} as Record<string, string>,
    correlationId,
    description: e.message,
    eventDataId,
    eventName: e.status === 'Started' ? { value: 'BeginRequest', localizedValue: 'Begin request' } : { value: 'EndRequest', localizedValue: 'End request' },
    category: LOCAL(e.category),
    eventTimestamp: e.time,
    id: `${armId}/events/${eventDataId}/ticks/${ticks(e.time)}`,
    level: e.level,
    operationId: correlationId,
    operationName: LOCAL(e.operation),
    resourceGroupName: parsed?.resourceGroup ?? '',
    resourceProviderName: LOCAL(parsed?.type.split('/')[0] ?? e.operation.split('/')[0]),
    resourceType: LOCAL(parsed?.type ?? ''),
    resourceId: armId,
    status: LOCAL(status),
    subStatus: httpStatus ? { value: httpStatus, localizedValue: `HTTP Status Code: ${httpStatus}` } : LOCAL(''),
    submissionTimestamp: e.time,
    subscriptionId: parsed?.subscriptionId ?? '',
    tenantId: e.tenantId,
    properties: { ...(e.properties ?? {}), message: e.message },
  };
}

/** The older `/tenants/` list entry the pgbyok CLI prints. */
export const legacyEntry = (e: ActivityRow) => ({
  id: e.id, time: e.time, tenantId: e.tenantId, resourceId: e.resourceId, operation: e.operation, status: e.status, level: e.level,
  ...(e.caller ? { caller: e.caller } : {}), message: e.message,
});

const badFilter = (message: string) => new ApiError(400, 'BadRequest', message);

/** Azure's restricted `$filter` grammar for the activity log: `eventTimestamp ge '…' [and eventTimestamp le '…'] [and field eq '…']`. */
export function parseActivityFilter(filter: string | null, now: Date) {
  if (!filter) throw badFilter("The $filter query parameter is required, with at least eventTimestamp ge '<time>'.");
  const out: { from?: string; to?: string; resourceGroupName?: string; resourceUri?: string; resourceProvider?: string; correlationId?: string } = {};
  const clauses = filter.trim().split(/\s+and\s+/i);
  for (const c of clauses) {
    const m = /^(\w+)\s+(eq|ge|le)\s+'((?:[^']|'')*)'$/i.exec(c.trim());
    if (!m) throw badFilter(`The $filter clause '${c}' is not supported: use field eq|ge|le 'value' joined by and.`);
    const [, field, op, raw] = m;
    const value = raw.replace(/''/g, "'");
    const f = field.toLowerCase();
    const o = op.toLowerCase();
    if (f === 'eventtimestamp') {
      const t = Date.parse(value);
      if (Number.isNaN(t)) throw badFilter(`'${value}' is not a date-time.`);
      if (o === 'ge') out.from = new Date(t).toISOString();
      else if (o === 'le') out.to = new Date(t).toISOString();
      else throw badFilter('eventTimestamp takes ge and le.');
      continue;
    }
    if (o !== 'eq') throw badFilter(`${field} takes eq only.`);
    if (f === 'resourcegroupname') out.resourceGroupName = value;
    else if (f === 'resourceuri' || f === 'resourceid') out.resourceUri = value;
    else if (f === 'resourceprovider') out.resourceProvider = value;
    else if (f === 'correlationid') out.correlationId = value;
    else if (f === 'eventchannels' || f === 'levels') continue;
    else throw badFilter(`The $filter field '${field}' is not supported: use eventTimestamp, resourceGroupName, resourceUri, resourceProvider or correlationId.`);
  }
  if (!out.from) throw badFilter("The $filter must include eventTimestamp ge '<time>'.");
  out.to ??= now.toISOString();
  return out;
}

export function createActivityLog(d: { repo: InsightsRepo; arm: ArmService; logger: Logger; now: () => Date }) {
  const listeners: ((e: ActivityRow) => void)[] = [];

  /** The ARM id of a resource named by its `/tenants/` id, when it is placed. */
  const armIdOf = (id: string): string | undefined => {
    const p = parseResourceId(id);
    if (!p?.tenantId) return p?.subscriptionId ? id : undefined;
    const placed = d.arm.findPlacement(p.tenantId, p.type, p.name);
    return placed ? resourceId(placed) : undefined;
  };
  const resolvePending = (tenantId: string) => {
    for (const id of d.repo.unresolvedResources(tenantId)) {
      const armId = armIdOf(id);
      if (armId) d.repo.resolveResource(tenantId, id, armId);
    }
  };

  const record = (e: Omit<ActivityRow, 'id' | 'armId' | 'category' | 'time'> & { category?: string; time?: string }): ActivityRow => {
    const row: Omit<ActivityRow, 'id'> = {
      ...e, time: e.time ?? d.now().toISOString(), armId: armIdOf(e.resourceId),
      category: e.category ?? (HEALTH_OPERATIONS.has(e.operation.toLowerCase()) ? 'ResourceHealth' : 'Administrative'),
    };
    const id = d.repo.addActivity(row);
    const entry = { ...row, id };
    d.logger.info({ ...entry }, 'activity');
    for (const l of listeners) {
      try {
        l(entry);
      } catch (err) {
        d.logger.error({ err, activity: id }, 'activity listener failed');
      }
    }
    return entry;
  };

  return {
    record,
    armIdOf,
    /** Hears of each new entry (the alert rules). */
    onRecord(l: (e: ActivityRow) => void) { listeners.push(l); },

    /** A vault's management operations that succeeded, from their audit records (the correlation id is the request id). */
    fromAudit(rec: AuditRecord) {
      // Only what happened: a refused or failed request changes no state of the platform (its audit record,
      // and the vault's diagnostic stream, keep it), and a Started record may yet be refused.
      if (rec.surface !== 'management' || !rec.vault || !rec.tenantId || rec.result !== 'Success') return;
      const operation = VAULT_OPERATIONS[rec.operation];
      if (!operation) return;
      const status: ActivityStatus = 'Succeeded';
      const level: ActivityLevel = 'Informational';
      record({
        time: rec.time, tenantId: rec.tenantId, resourceId: `/tenants/${rec.tenantId}/providers/Microsoft.KeyVault/vaults/${rec.vault}`, operation, status, level,
        caller: rec.callerName ?? rec.callerObjectId, correlationId: rec.requestId,
        message: `${rec.operation} of vault ${rec.vault}: HTTP ${rec.httpStatus}.`,
        properties: { statusCode: String(rec.httpStatus), serviceRequestId: rec.requestId },
      });
    },

    /** The pgbyok CLI's list on the `/tenants/` path (newest first). */
    legacy(tenantId: string, resource: string | undefined, top: number) {
      resolvePending(tenantId);
      return d.repo.legacyActivity(tenantId, resource, Math.min(Math.max(top, 1), 1000));
    },

    /** One page of EventData, newest first, within `prefix` (a subscription or group id); `next` is the skip token of the following page. */
    list(tenantId: string, prefix: string | undefined, filter: ReturnType<typeof parseActivityFilter>, skipToken: number | undefined, pageSize = 200) {
      resolvePending(tenantId);
      const armPrefix = filter.resourceGroupName && prefix && !/\/resourceGroups\//i.test(prefix) ? `${prefix}/resourceGroups/${filter.resourceGroupName}` : prefix;
      if (filter.resourceGroupName && prefix && /\/resourceGroups\/([^/]+)/i.exec(prefix)?.[1].toLowerCase() !== filter.resourceGroupName.toLowerCase() && /\/resourceGroups\//i.test(prefix)) return { events: [], next: undefined };
      const rows = d.repo.activity({ tenantId, armPrefix, resourceUri: filter.resourceUri, resourceProvider: filter.resourceProvider, correlationId: filter.correlationId, from: filter.from, to: filter.to, beforeId: skipToken, limit: pageSize + 1 });
      const page = rows.slice(0, pageSize);
      return { events: page.map(eventData), next: rows.length > pageSize ? page[page.length - 1].id : undefined };
    },
  };
}

export type ActivityLog = ReturnType<typeof createActivityLog>;
