import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError, errors } from '../lib/errors.js';
import { queryOf, requestOrigin } from '../http/request.js';
import { armErrors, resourceId, type ArmService } from '../arm/arm.service.js';
import { armRoute, LIST_LEVELS, RESOURCE_LEVELS, type ArmLevel } from '../arm/routing.js';
import type { VaultService } from '../vault/vaults.service.js';
import type { Vault } from '../vault/vault.types.js';
import type { ServersService } from '../servers/servers.service.js';
import type { Server } from '../servers/servers.repo.js';
import { ACTION_GROUP_TYPE, ALERT_TYPE, type Insights } from '../insights/insights.service.js';
import { legacyEntry, parseActivityFilter } from '../insights/activity.js';
import type { StoredMonitorResource } from '../insights/insights.repo.js';
import type { DiagnosticBody, DiagnosticTarget } from '../insights/diagnostics.js';
import { availabilityStatusWire, serverHealth, vaultHealth } from '../insights/health.js';
import { VAULT_TYPE } from './vault-resources.routes.js';

/**
 * Microsoft.Insights (activity log, action groups, activity-log alerts, diagnostic settings) and
 * Microsoft.ResourceHealth (availability statuses), at ARM's addresses and at the older `/tenants/{tid}`
 * paths the pgbyok CLI uses. On the `/tenants/` path the activity log answers in the older pgbyok list shape
 * (`?resource=&top=`) unless the request carries Azure's `$filter`.
 *
 * Diagnostic settings and availability statuses hang under a resource's id: their routes take the
 * provider namespace, type and name as parameters, beside the static resource routes of each provider.
 */

const SERVER_TYPE = 'Microsoft.DBforPostgreSQL/flexibleServers';
const INS = '/providers/Microsoft.Insights';
const UNDER = '/providers/:providerNamespace/:resourceType/:resourceName';
type Named = { name: string };
type Under = { providerNamespace: string; resourceType: string; resourceName: string };
type Body = { location?: string; tags?: Record<string, string>; properties?: Record<string, any> };
const bodySchema = { type: 'object', properties: { location: { type: 'string' }, tags: { type: 'object', additionalProperties: { type: 'string' } }, properties: { type: 'object' } } };

export function registerInsightsRoutes(app: FastifyInstance, d: { insights: Insights; arm: ArmService; vaults: VaultService; servers: ServersService; origin: string }) {
  const { arm, insights } = d;
  const { activity, alerts, diagnostics } = insights;

  // --- Activity log -----------------------------------------------------------------------------------
  armRoute(app, 'GET', `${INS}/eventtypes/management/values`, LIST_LEVELS, { config: { operation: 'ActivityLogList', duty: 'readServers' } }, async (req) => {
    const q = queryOf(req);
    const filter = q.get('$filter');
    if (req.arm.tenantPath && filter === null) {
      const top = q.get('top');
      if (top !== null && !/^\d+$/.test(top)) throw errors.badParameter('top must be a whole number.');
      const resource = q.get('resource') ?? undefined;
      const rid = resource ? (resource.startsWith('/') ? resource : `/tenants/${req.arm.tenantId}/providers/${SERVER_TYPE}/${resource}`) : undefined;
      return { value: activity.legacy(req.arm.tenantId, rid, top ? Number(top) : 100).map(legacyEntry) };
    }
    const parsed = parseActivityFilter(filter, new Date());
    const skip = q.get('$skipToken') ?? q.get('$skiptoken');
    if (skip !== null && !/^\d+$/.test(skip)) throw errors.badParameter('The $skipToken is not valid.');
    const prefix = req.arm.tenantPath ? undefined : `/subscriptions/${req.arm.subscriptionId}${req.arm.resourceGroup ? `/resourceGroups/${req.arm.resourceGroup}` : ''}`;
    const page = activity.list(req.arm.tenantId, prefix, parsed, skip === null ? undefined : Number(skip));
    const select = q.get('$select')?.split(',').map((s) => s.trim()).filter(Boolean);
    const value = select?.length ? page.events.map((e) => Object.fromEntries(select.filter((k) => k in e).map((k) => [k, (e as Record<string, unknown>)[k]]))) : page.events;
    let nextLink: string | null = null;
    if (page.next !== undefined) {
      const u = new URL(req.url, requestOrigin(req, d.origin));
      u.searchParams.delete('$skiptoken');
      u.searchParams.set('$skipToken', String(page.next));
      nextLink = u.toString();
    }
    return { value, nextLink };
  });

  // --- Action groups and activity-log alerts ----------------------------------------------------------
  const monitorRoutes = (kind: { type: string; wireType: string; path: string; op: string; put: (tid: string, name: string, b: Body) => StoredMonitorResource; list: (tid: string) => StoredMonitorResource[]; get: (tid: string, name: string) => StoredMonitorResource | undefined; remove: (tid: string, name: string) => boolean }) => {
    const placed = (r: StoredMonitorResource) => arm.placementOf(r.tenantId, kind.type, r.name, 'global');
    const wire = (r: StoredMonitorResource) => ({ id: resourceId(placed(r)), name: r.name, type: kind.wireType, location: 'Global', tags: r.tags, properties: r.properties });
    const find = (req: FastifyRequest, name: string) => {
      const r = kind.get(req.arm.tenantId, name);
      if (!r || !arm.inScope(req.arm, placed(r))) throw armErrors.resourceNotFound(kind.type, name, req.arm.resourceGroup);
      return r;
    };
    armRoute<Named, Body>(app, 'PUT', `${INS}/${kind.path}/:name`, RESOURCE_LEVELS, { config: { operation: `${kind.op}Put`, duty: 'manageMonitoring' }, schema: { body: bodySchema } }, async (req, reply) => {
      const existing = kind.get(req.arm.tenantId, req.params.name);
      const plan = arm.plan(req.arm, kind.type, existing?.name ?? req.params.name, 'global', req.body?.tags);
      const r = await arm.create(plan, 'global', () => kind.put(req.arm.tenantId, existing?.name ?? req.params.name, req.body ?? {}));
      return reply.code(existing || req.arm.tenantPath ? 200 : 201).send(wire(r));
    });
    armRoute(app, 'GET', `${INS}/${kind.path}`, LIST_LEVELS, { config: { operation: `${kind.op}List`, duty: 'readServers' } }, async (req) => ({
      value: kind.list(req.arm.tenantId).filter((r) => arm.inScope(req.arm, placed(r))).map(wire),
    }));
    armRoute<Named>(app, 'GET', `${INS}/${kind.path}/:name`, RESOURCE_LEVELS, { config: { operation: `${kind.op}Get`, duty: 'readServers' } }, async (req) => wire(find(req, req.params.name)));
    armRoute<Named>(app, 'DELETE', `${INS}/${kind.path}/:name`, RESOURCE_LEVELS, { config: { operation: `${kind.op}Delete`, duty: 'manageMonitoring' } }, async (req, reply) => {
      const r = kind.get(req.arm.tenantId, req.params.name);
      if (!r || !arm.inScope(req.arm, placed(r))) {
        // ARM answers 204 for a resource that is not there; the older path said 404.
        if (req.arm.tenantPath) throw errors.notFound('ResourceNotFound', `No ${kind.type} '${req.params.name}'.`);
        return reply.code(204).send();
      }
      kind.remove(r.tenantId, r.name);
      arm.unplace(r.tenantId, kind.type, r.name);
      return reply.code(200).send({});
    });
  };
  monitorRoutes({
    type: ACTION_GROUP_TYPE, wireType: 'Microsoft.Insights/ActionGroups', path: 'actionGroups', op: 'ActionGroup',
    put: alerts.putActionGroup, list: alerts.actionGroups, get: alerts.actionGroup, remove: alerts.deleteActionGroup,
  });
  monitorRoutes({
    type: ALERT_TYPE, wireType: 'Microsoft.Insights/ActivityLogAlerts', path: 'activityLogAlerts', op: 'AlertRule',
    put: alerts.putAlertRule, list: alerts.alertRules, get: alerts.alertRule, remove: alerts.deleteAlertRule,
  });

  // --- Resources addressed by id (diagnostic settings, availability statuses) --------------------------
  type Found = { kind: 'vault'; vault: Vault; id: string; location: string } | { kind: 'server'; server: Server; id: string; location: string };
  const resourceOf = (req: FastifyRequest<{ Params: Under }>): Found => {
    const type = `${req.params.providerNamespace}/${req.params.resourceType}`;
    const name = req.params.resourceName;
    const notFound = () => armErrors.resourceNotFound(type, name, req.arm.resourceGroup);
    if (type.toLowerCase() === VAULT_TYPE.toLowerCase()) {
      const v = d.vaults.list(req.arm.tenantId).find((x) => x.name.toLowerCase() === name.toLowerCase());
      const p = v && arm.placementOf(v.tenantId, VAULT_TYPE, v.name, v.location);
      if (!v || !p || !arm.inScope(req.arm, p)) throw notFound();
      return { kind: 'vault', vault: v, id: resourceId(p), location: v.location };
    }
    if (type.toLowerCase() === SERVER_TYPE.toLowerCase()) {
      const s = d.servers.list(req.arm.tenantId).find((x) => x.name.toLowerCase() === name.toLowerCase());
      const p = s && arm.placementOf(s.tenantId, SERVER_TYPE, s.name, s.location);
      if (!s || !p || !arm.inScope(req.arm, p)) throw notFound();
      return { kind: 'server', server: s, id: resourceId(p), location: s.location };
    }
    throw notFound();
  };
  const vaultTarget = (req: FastifyRequest<{ Params: Under }>): { target: DiagnosticTarget; id: string } => {
    const r = resourceOf(req);
    if (r.kind !== 'vault') throw new ApiError(400, 'ResourceTypeNotSupported', `Diagnostic settings are supported for ${VAULT_TYPE} here; not yet for ${SERVER_TYPE}.`);
    return { target: { tenantId: r.vault.tenantId, resourceType: VAULT_TYPE, resourceName: r.vault.name }, id: r.id };
  };
  const settingWire = (id: string, s: { name: string; properties: Record<string, unknown> }) => ({
    id: `${id}/providers/microsoft.insights/diagnosticSettings/${s.name}`, name: s.name, type: 'Microsoft.Insights/diagnosticSettings', properties: s.properties,
  });
  const DS = `${UNDER}${INS}/diagnosticSettings`;
  const idLevels: ArmLevel[] = RESOURCE_LEVELS;

  armRoute<Under & Named, DiagnosticBody>(app, 'PUT', `${DS}/:name`, idLevels, { config: { operation: 'DiagnosticSettingPut', duty: 'manageVaults' }, schema: { body: { type: 'object', properties: { properties: { type: 'object' } } } } }, async (req, reply) => {
    const { target, id } = vaultTarget(req);
    const { setting } = diagnostics.put(target, req.params.name, req.body ?? {});
    return reply.code(200).send(settingWire(id, setting));
  });
  armRoute<Under>(app, 'GET', DS, idLevels, { config: { operation: 'DiagnosticSettingList', duty: 'readAudit' } }, async (req) => {
    const { target, id } = vaultTarget(req);
    return { value: diagnostics.list(target).map((s) => settingWire(id, s)) };
  });
  armRoute<Under & Named>(app, 'GET', `${DS}/:name`, idLevels, { config: { operation: 'DiagnosticSettingGet', duty: 'readAudit' } }, async (req) => {
    const { target, id } = vaultTarget(req);
    const s = diagnostics.get(target, req.params.name);
    if (!s) throw errors.notFound('ResourceNotFound', `The diagnostic setting '${req.params.name}' doesn't exist.`);
    return settingWire(id, s);
  });
  armRoute<Under & Named>(app, 'DELETE', `${DS}/:name`, idLevels, { config: { operation: 'DiagnosticSettingDelete', duty: 'manageVaults' } }, async (req, reply) => {
    const { target } = vaultTarget(req);
    return diagnostics.delete(target, req.params.name) ? reply.code(200).send({}) : reply.code(204).send();
  });
  armRoute<Under>(app, 'GET', `${UNDER}${INS}/diagnosticSettingsCategories`, idLevels, { config: { operation: 'DiagnosticSettingsCategoryList', duty: 'readPlatform' } }, async (req) => {
    const r = resourceOf(req);
    const cat = (name: string, categoryType: 'Logs' | 'Metrics', categoryGroups?: string[]) => ({
      id: `${r.id}/providers/microsoft.insights/diagnosticSettingsCategories/${name}`, name, type: 'microsoft.insights/diagnosticSettingsCategories',
      properties: { categoryType, ...(categoryGroups ? { categoryGroups } : {}) },
    });
    return { value: r.kind === 'vault' ? [cat('AuditEvent', 'Logs', ['audit', 'allLogs']), cat('AllMetrics', 'Metrics')] : [] };
  });

  const healthOf = (r: Found) => availabilityStatusWire(r.id, r.location, r.kind === 'vault' ? vaultHealth(r.vault) : serverHealth(r.server), new Date());
  const RH = `${UNDER}/providers/Microsoft.ResourceHealth/availabilityStatuses`;
  armRoute<Under>(app, 'GET', `${RH}/current`, idLevels, { config: { operation: 'AvailabilityStatusGet', duty: 'readPlatform' } }, async (req) => healthOf(resourceOf(req)));
  armRoute<Under>(app, 'GET', RH, idLevels, { config: { operation: 'AvailabilityStatusList', duty: 'readPlatform' } }, async (req) => ({ value: [healthOf(resourceOf(req))], nextLink: null }));
  armRoute(app, 'GET', '/providers/Microsoft.ResourceHealth/availabilityStatuses', LIST_LEVELS, { config: { operation: 'AvailabilityStatusListBySubscription', duty: 'readPlatform' } }, async (req) => {
    const out: ReturnType<typeof healthOf>[] = [];
    for (const v of d.vaults.list(req.arm.tenantId)) {
      const p = arm.placementOf(v.tenantId, VAULT_TYPE, v.name, v.location);
      if (arm.inScope(req.arm, p)) out.push(healthOf({ kind: 'vault', vault: v, id: resourceId(p), location: v.location }));
    }
    for (const s of d.servers.list(req.arm.tenantId)) {
      const p = arm.placementOf(s.tenantId, SERVER_TYPE, s.name, s.location);
      if (arm.inScope(req.arm, p)) out.push(healthOf({ kind: 'server', server: s, id: resourceId(p), location: s.location }));
    }
    return { value: out, nextLink: null };
  });
}
