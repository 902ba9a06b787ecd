import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { errors } from '../lib/errors.js';
import { deliverWebhook } from '../lib/webhook.js';
import { parseResourceId } from '../arm/arm.service.js';
import { eventData, type EventData } from './activity.js';
import type { ActivityRow, InsightsRepo, StoredMonitorResource } from './insights.repo.js';

/**
 * Action groups (api 2023-01-01) and activity-log alerts (api 2020-10-01), in Azure's shapes. Every new
 * activity-log entry is matched against the tenant's enabled alerts; a match POSTs to each webhook receiver
 * of the alert's action groups, in the common alert schema when the receiver asks for it, else in the
 * activity-log alert payload. Delivery runs in the background with retries and never blocks the recorder.
 *
 * The older pgbyok bodies on the `/tenants/` path still work: an action group of `webhookReceivers` only,
 * and an alert of `{condition: 'ServerInaccessible'|'KeyAccessFailure'|'ServerAvailable'|'Any', actionGroup, serverName?}`,
 * which becomes a tenant-wide alert (scope `/tenants/{tid}`) whose condition names the operation.
 */

const NAME_RE = /^[A-Za-z0-9][-\w.]{0,259}$/;
const LEGACY_CONDITIONS: Record<string, { field: string; equals: string }> = {
  ServerInaccessible: { field: 'operationName', equals: 'Microsoft.DBforPostgreSQL/flexibleServers/inaccessible' },
  KeyAccessFailure: { field: 'operationName', equals: 'Microsoft.DBforPostgreSQL/flexibleServers/keyAccessFailure' },
  ServerAvailable: { field: 'operationName', equals: 'Microsoft.DBforPostgreSQL/flexibleServers/available' },
  Any: { field: 'resourceType', equals: 'Microsoft.DBforPostgreSQL/flexibleServers' },
};
const FIELDS = ['category', 'operationname', 'resourceid', 'resourcegroup', 'resourceprovider', 'resourcetype', 'status', 'substatus', 'level', 'caller'];
const OTHER_RECEIVERS = ['emailReceivers', 'smsReceivers', 'itsmReceivers', 'azureAppPushReceivers', 'automationRunbookReceivers', 'voiceReceivers', 'logicAppReceivers', 'azureFunctionReceivers', 'armRoleReceivers', 'eventHubReceivers'] as const;

export interface WebhookReceiver { name: string; serviceUri: string; useCommonAlertSchema: boolean }
export interface ActionGroupProperties { groupShortName: string; enabled: boolean; webhookReceivers: WebhookReceiver[] }
type Leaf = { field: string; equals?: string; containsAny?: string[] };
type Condition = Leaf | { anyOf: Leaf[] };
export interface AlertProperties {
  scopes: string[];
  condition: { allOf: Condition[] };
  actions: { actionGroups: { actionGroupId: string; webhookProperties?: Record<string, string> }[] };
  enabled: boolean;
  description?: string;
}

export interface ActionGroupInput { properties?: Record<string, any>; tags?: Record<string, string>; location?: string }
export interface AlertInput { properties?: Record<string, any>; tags?: Record<string, string>; location?: string }

const checkUrl = (w: unknown) => {
  if (typeof w !== 'string') throw errors.badParameter('A webhook receiver needs a serviceUri.');
  let u: URL;
  try {
    u = new URL(w);
  } catch {
    throw errors.badParameter(`'${w}' is not a URL.`);
  }
  if (!['http:', 'https:'].includes(u.protocol)) throw errors.badParameter(`'${w}' is not an http(s) URL.`);
};
const checkName = (kind: string, name: string) => { if (!NAME_RE.test(name)) throw errors.badParameter(`${kind} name '${name}' is invalid.`); };
const checkLocation = (location?: string) => {
  if (location !== undefined && location.toLowerCase() !== 'global') throw errors.badParameter(`The location of an action group or activity-log alert is 'Global', not '${location}'.`, 'LocationNotAvailableForResourceType');
};

export function createAlerts(d: { repo: InsightsRepo; logger: Logger; ca: string; tenantSubscriptions: (tenantId: string) => string[]; retryDelaysMs?: number[] }) {
  const groupOf = (tenantId: string, actionGroupId: string) => {
    const p = parseResourceId(actionGroupId);
    if (!p || p.type.toLowerCase() !== 'microsoft.insights/actiongroups') return undefined;
    if (p.tenantId && p.tenantId !== tenantId) return undefined;
    if (p.subscriptionId && !d.tenantSubscriptions(tenantId).some((s) => s.toLowerCase() === p.subscriptionId!.toLowerCase())) return undefined;
    return d.repo.actionGroup(tenantId, p.name);
  };

  const putActionGroup = (tenantId: string, name: string, body: ActionGroupInput): StoredMonitorResource => {
    checkName('Action group', name);
    checkLocation(body.location);
    const p = body.properties ?? {};
    for (const k of OTHER_RECEIVERS) {
      if (Array.isArray(p[k]) && p[k].length) throw errors.badParameter(`pgbyok delivers to webhook receivers only; ${k} cannot be delivered from this platform.`, 'ReceiverNotSupported');
    }
    const hooks = Array.isArray(p.webhookReceivers) ? p.webhookReceivers : [];
    if (hooks.length > 10) throw errors.badParameter('An action group has at most 10 webhook receivers.');
    const webhookReceivers: WebhookReceiver[] = hooks.map((w: any, i: number) => {
      checkUrl(w?.serviceUri);
      // The older pgbyok body had no useCommonAlertSchema and always sent the common schema.
      return { name: typeof w.name === 'string' && w.name ? w.name : `webhook${i + 1}`, serviceUri: w.serviceUri, useCommonAlertSchema: typeof w.useCommonAlertSchema === 'boolean' ? w.useCommonAlertSchema : p.groupShortName === undefined };
    });
    if (!webhookReceivers.length) throw errors.badParameter('An action group needs at least one webhook receiver.');
    const shortName = p.groupShortName ?? name.slice(0, 12);
    if (typeof shortName !== 'string' || shortName.length < 1 || shortName.length > 12) throw errors.badParameter('groupShortName is 1 to 12 characters.');
    const properties: ActionGroupProperties = { groupShortName: shortName, enabled: p.enabled ?? true, webhookReceivers };
    const g = { tenantId, name, properties: properties as unknown as Record<string, unknown>, tags: body.tags ?? {} };
    d.repo.putActionGroup(g);
    return d.repo.actionGroup(tenantId, name)!;
  };

  const leafOf = (c: any): Leaf => {
    if (typeof c?.field !== 'string' || !(FIELDS.includes(c.field.toLowerCase()) || /^properties\.[\w.]+$/i.test(c.field))) {
      throw errors.badParameter(`The condition field '${c?.field}' is not supported: use ${FIELDS.join(', ')} or properties.<name>.`, 'InvalidCondition');
    }
    if (typeof c.equals === 'string') return { field: c.field, equals: c.equals };
    if (Array.isArray(c.containsAny) && c.containsAny.every((x: unknown) => typeof x === 'string')) return { field: c.field, containsAny: c.containsAny };
    throw errors.badParameter(`The condition on '${c.field}' needs equals (a string) or containsAny (strings).`, 'InvalidCondition');
  };

  const putAlertRule = (tenantId: string, name: string, body: AlertInput): StoredMonitorResource => {
    checkName('Alert rule', name);
    checkLocation(body.location);
    let p = body.properties ?? {};
    if (typeof p.condition === 'string') {
      // The older pgbyok body.
      const c = LEGACY_CONDITIONS[p.condition];
      if (!c) throw errors.badParameter(`Unknown condition '${p.condition}'. Conditions: ${Object.keys(LEGACY_CONDITIONS).join(', ')}.`);
      if (typeof p.actionGroup !== 'string') throw errors.badParameter('The alert needs an actionGroup.');
      const allOf: Condition[] = [c];
      if (typeof p.serverName === 'string') allOf.push({ field: 'resourceId', equals: `/tenants/${tenantId}/providers/Microsoft.DBforPostgreSQL/flexibleServers/${p.serverName}` });
      p = {
        scopes: [`/tenants/${tenantId}`], condition: { allOf },
        actions: { actionGroups: [{ actionGroupId: `/tenants/${tenantId}/providers/Microsoft.Insights/actionGroups/${p.actionGroup}`, webhookProperties: {} }] },
        enabled: p.enabled ?? true, description: `${p.condition}${p.serverName ? ` on ${p.serverName}` : ''}`,
      };
    }
    const scopes: string[] = Array.isArray(p.scopes) ? p.scopes : [];
    if (!scopes.length) throw errors.badParameter('An activity-log alert needs scopes (a subscription, resource group or resource id).', 'ScopesRequired');
    const subs = d.tenantSubscriptions(tenantId).map((s) => s.toLowerCase());
    for (const s of scopes) {
      const sub = typeof s === 'string' ? /^\/subscriptions\/([^/]+)(\/|$)/i.exec(s)?.[1] : undefined;
      if (!(typeof s === 'string' && (s === `/tenants/${tenantId}` || (sub && subs.includes(sub.toLowerCase()))))) {
        throw errors.badParameter(`The scope '${s}' is not a subscription, resource group or resource of this tenant.`, 'InvalidScope');
      }
    }
    const allOf = p.condition?.allOf;
    if (!Array.isArray(allOf) || !allOf.length) throw errors.badParameter('condition.allOf needs at least one condition.', 'InvalidCondition');
    const conditions: Condition[] = allOf.map((c: any) => (Array.isArray(c?.anyOf) ? { anyOf: c.anyOf.map(leafOf) } : leafOf(c)));
    const groups = p.actions?.actionGroups;
    if (!Array.isArray(groups) || !groups.length) throw errors.badParameter('actions.actionGroups needs at least one action group.');
    for (const g of groups) {
      if (typeof g?.actionGroupId !== 'string' || !groupOf(tenantId, g.actionGroupId)) throw errors.badParameter(`No action group '${g?.actionGroupId}'.`, 'ActionGroupNotFound');
    }
    const properties: AlertProperties = {
      scopes, condition: { allOf: conditions },
      actions: { actionGroups: groups.map((g: any) => ({ actionGroupId: g.actionGroupId, webhookProperties: g.webhookProperties ?? {} })) },
      enabled: p.enabled ?? true, ...(typeof p.description === 'string' ? { description: p.description } : {}),
    };
    d.repo.putAlertRule({ tenantId, name, properties: properties as unknown as Record<string, unknown>, tags: body.tags ?? {} });
    return d.repo.alertRule(tenantId, name)!;
  };

  // Matching, as Azure compares: case-insensitively; resourceId matches the ARM id or the older /tenants/ id.
  const valuesOf = (field: string, e: EventData, row: ActivityRow): string[] => {
    const f = field.toLowerCase();
    if (f.startsWith('properties.')) { const v = (e.properties as Record<string, string>)[field.slice(11)]; return v === undefined ? [] : [v]; }
    switch (f) {
      case 'category': return [e.category.value];
      case 'operationname': return [e.operationName.value];
      case 'resourceid': return [e.resourceId, row.resourceId];
      case 'resourcegroup': return [e.resourceGroupName];
      case 'resourceprovider': return [e.resourceProviderName.value];
      case 'resourcetype': return [e.resourceType.value || (parseResourceId(row.resourceId)?.type ?? '')];
      case 'status': return [e.status.value];
      case 'substatus': return [e.subStatus.value];
      case 'level': return [e.level];
      case 'caller': return [e.caller];
      default: return [];
    }
  };
  const leafMatches = (l: Leaf, e: EventData, row: ActivityRow) => {
    const vs = valuesOf(l.field, e, row).map((v) => v.toLowerCase());
    if (l.equals !== undefined) return vs.includes(l.equals.toLowerCase());
    return (l.containsAny ?? []).some((c) => vs.some((v) => v.includes(c.toLowerCase())));
  };
  const inScope = (scope: string, e: EventData, row: ActivityRow) => {
    if (scope === `/tenants/${row.tenantId}`) return true;
    const s = scope.toLowerCase().replace(/\/$/, '');
    return [e.resourceId, row.resourceId].some((id) => { const t = id.toLowerCase(); return t === s || t.startsWith(`${s}/`); });
  };

  const payloadOf = (rule: StoredMonitorResource, ruleId: string, e: EventData, row: ActivityRow, common: boolean, custom: Record<string, string>) => {
    const targets = [...new Set([e.resourceId, row.resourceId])];
    if (common) {
      return {
        schemaId: 'azureMonitorCommonAlertSchema',
        data: {
          essentials: {
            alertId: `${e.subscriptionId ? `/subscriptions/${e.subscriptionId}` : `/tenants/${row.tenantId}`}/providers/Microsoft.AlertsManagement/alerts/${randomUUID()}`,
            alertRule: rule.name, severity: 'Sev4', signalType: 'Activity Log', monitorCondition: 'Fired',
            monitoringService: `Activity Log - ${e.category.value}`, alertTargetIDs: targets, configurationItems: [row.resourceId.split('/').pop()],
            originAlertId: e.eventDataId, firedDateTime: new Date().toISOString(), description: (rule.properties as any).description ?? '',
            essentialsVersion: '1.0', alertContextVersion: '1.0',
          },
          alertContext: {
            authorization: e.authorization, channels: e.channels, claims: JSON.stringify(e.claims), caller: e.caller, correlationId: e.correlationId,
            eventSource: e.category.value, eventTimestamp: e.eventTimestamp, eventDataId: e.eventDataId, level: e.level,
            operationName: e.operationName.value, operationId: e.operationId, properties: e.properties, status: e.status.value, subStatus: e.subStatus.value,
            submissionTimestamp: e.submissionTimestamp,
          },
          customProperties: Object.keys(custom).length ? custom : null,
        },
      };
    }
    return {
      schemaId: 'Microsoft.Insights/activityLogs',
      data: {
        status: 'Activated',
        context: {
          activityLog: {
            authorization: e.authorization, channels: e.channels, claims: JSON.stringify(e.claims), caller: e.caller, correlationId: e.correlationId,
            description: e.description, eventSource: e.category.value, eventTimestamp: e.eventTimestamp, eventDataId: e.eventDataId, level: e.level,
            operationName: e.operationName.value, operationId: e.operationId, properties: e.properties, resourceId: e.resourceId,
            resourceGroupName: e.resourceGroupName, resourceProviderName: e.resourceProviderName.value, resourceType: e.resourceType.value,
            status: e.status.value, subStatus: e.subStatus.value, subscriptionId: e.subscriptionId, submissionTimestamp: e.submissionTimestamp,
          },
        },
        properties: custom,
      },
      alertRuleId: ruleId,
    };
  };

  return {
    putActionGroup,
    actionGroups: (tenantId: string) => d.repo.actionGroups(tenantId),
    actionGroup: (tenantId: string, name: string) => d.repo.actionGroup(tenantId, name),
    deleteActionGroup: (tenantId: string, name: string) => d.repo.deleteActionGroup(tenantId, name),
    putAlertRule,
    alertRules: (tenantId: string) => d.repo.alertRules(tenantId),
    alertRule: (tenantId: string, name: string) => d.repo.alertRule(tenantId, name),
    deleteAlertRule: (tenantId: string, name: string) => d.repo.deleteAlertRule(tenantId, name),

    /** Fires the tenant's enabled alerts a new entry matches; `idOf` gives an alert's resource id. */
    evaluate(row: ActivityRow, idOf: (rule: StoredMonitorResource) => string) {
      const e = eventData(row);
      for (const rule of d.repo.alertRules(row.tenantId)) {
        const p = rule.properties as unknown as AlertProperties;
        if (!p.enabled || !p.scopes.some((s) => inScope(s, e, row))) continue;
        const matches = p.condition.allOf.every((c) => ('anyOf' in c ? c.anyOf.some((l) => leafMatches(l, e, row)) : leafMatches(c, e, row)));
        if (!matches) continue;
        for (const a of p.actions.actionGroups) {
          const group = groupOf(row.tenantId, a.actionGroupId);
          const gp = group?.properties as unknown as ActionGroupProperties | undefined;
          if (!gp?.enabled) continue;
          for (const w of gp.webhookReceivers) {
            deliverWebhook(w.serviceUri, payloadOf(rule, idOf(rule), e, row, w.useCommonAlertSchema, a.webhookProperties ?? {}), {
              ca: d.ca, logger: d.logger, what: `alert ${rule.name}`, retryDelaysMs: d.retryDelaysMs,
            });
          }
        }
      }
    },
  };
}

export type Alerts = ReturnType<typeof createAlerts>;
