import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError, errors } from '../lib/errors.js';
import { queryOf, clientOrigin } from '../http/request.js';
import type { IdentityService } from '../identity/identity.service.js';
import type { Duty } from '../identity/roles.js';
import { REGIONS } from '../servers/regions.js';
import type { ResourceGroup } from './arm.repo.js';
import { resourceId, type ArmService } from './arm.service.js';
import { aliasWire, groupWire, subscriptionWire } from './resources.wire.js';

/**
 * Microsoft.Resources and Microsoft.Subscription: subscriptions, aliases, resource groups, locations, and
 * the generic resources list (`$filter=resourceType eq '…'`) that az uses to find a resource's group.
 */

/** What a group delete needs to know of each kind of resource it may hold. */
export interface GroupMember {
  type: string;
  /** The duty to delete one (a group delete needs each duty of what it holds). */
  duty: Duty;
  /** Deletes one of the tenant's resources of this type (a long one may only begin). */
  remove(req: FastifyRequest, name: string): void | Promise<void>;
}

type Sub = { subscriptionId: string };
type Group = Sub & { resourceGroupName: string };

const LRO_TOKEN = (g: ResourceGroup) => Buffer.from(`rg:${g.name}`).toString('base64url');

export function registerResourceRoutes(app: FastifyInstance, d: { arm: ArmService; identity: IdentityService; members: () => GroupMember[] }) {
  const { arm } = d;

  /** The tenant's resources, from each type's own list, with where they sit. */
  const resources = (tenantId: string) => arm.listers().flatMap((l) => l.list(tenantId).map((r) => {
    const p = arm.placementOf(tenantId, l.type, r.name, r.location);
    return { placement: p, location: r.location, kind: r.kind, readDuty: l.readDuty };
  }));
  /** May the caller read this resource (its type's read duty at its scope or above)? */
  const mayRead = (req: FastifyRequest, r: { placement: Parameters<typeof resourceId>[0]; readDuty: Duty }) => {
    try {
      d.identity.requireDuty(req.caller!, r.readDuty, { scope: resourceId(r.placement), action: `${r.placement.type}/read` });
      return true;
    } catch {
      return false;
    }
  };

  /** A group being deleted is gone once nothing is left in it. */
  const settle = (g: ResourceGroup | undefined): ResourceGroup | undefined => {
    if (!g || g.state !== 'Deleting') return g;
    const left = resources(arm.subscriptionById(g.subscriptionId)!.tenantId)
      .some((r) => r.placement.subscriptionId === g.subscriptionId && r.placement.resourceGroup.toLowerCase() === g.name.toLowerCase());
    if (left) return g;
    arm.removeGroup(g);
    return undefined;
  };
  const groupOrNotFound = (sub: string, name: string) => {
    const g = settle(arm.findGroup(sub, name));
    if (!g) throw errors.notFound('ResourceGroupNotFound', `Resource group '${name}' could not be found.`);
    return g;
  };

  app.get('/subscriptions', { config: { operation: 'SubscriptionList', signedIn: true } }, async (req) => ({
    value: arm.subscriptions(req.caller!.principal.tenantId).map(subscriptionWire),
  }));
  app.get<{ Params: Sub }>('/subscriptions/:subscriptionId', { config: { operation: 'SubscriptionGet', signedIn: true } }, async (req) =>
    subscriptionWire(arm.subscriptionFor(req.arm.subscriptionId, req.arm.tenantId)));
  app.get<{ Params: Sub }>('/subscriptions/:subscriptionId/locations', { config: { operation: 'LocationList', signedIn: true } }, async (req) => ({
    value: REGIONS.map((name) => ({ id: `/subscriptions/${req.arm.subscriptionId}/locations/${name}`, name, displayName: name, regionalDisplayName: name, metadata: { regionType: 'Physical' } })),
  }));

  app.put<{ Params: { alias: string }; Body: { properties?: { displayName?: string; workload?: string; billingScope?: string } } }>('/providers/Microsoft.Subscription/aliases/:alias', {
    config: { operation: 'SubscriptionAliasPut', duty: 'manageSubscriptions' },
    schema: { body: { type: 'object', properties: { properties: { type: 'object', properties: { displayName: { type: 'string', maxLength: 64 }, workload: { type: 'string' }, billingScope: { type: 'string' } } } } } },
  }, async (req, reply) => {
    const { subscription, created } = arm.createSubscription(req.caller!.principal.tenantId, req.params.alias, req.body?.properties?.displayName ?? '');
    return reply.code(created ? 201 : 200).send(aliasWire(subscription));
  });
  app.get<{ Params: { alias: string } }>('/providers/Microsoft.Subscription/aliases/:alias', { config: { operation: 'SubscriptionAliasGet', signedIn: true } }, async (req) => {
    const s = arm.subscriptionByAlias(req.caller!.principal.tenantId, req.params.alias);
    if (!s) throw errors.notFound('ResourceNotFound', `The subscription alias '${req.params.alias}' was not found.`);
    return aliasWire(s);
  });

  // Resource groups (az asks with `resourcegroups`; the router is case-insensitive).
  app.get<{ Params: Sub }>('/subscriptions/:subscriptionId/resourceGroups', { config: { operation: 'ResourceGroupList', duty: 'readPlatform' } }, async (req) => ({
    value: arm.groups(req.arm.subscriptionId).map(settle).filter((g): g is ResourceGroup => !!g).map(groupWire),
  }));
  // HEAD before GET: fastify would otherwise answer HEAD with the GET's handler.
  app.head<{ Params: Group }>('/subscriptions/:subscriptionId/resourceGroups/:resourceGroupName', { config: { operation: 'ResourceGroupCheck', duty: 'readPlatform' } }, async (req, reply) =>
    reply.code(settle(arm.findGroup(req.arm.subscriptionId, req.params.resourceGroupName)) ? 204 : 404).send());
  app.get<{ Params: Group }>('/subscriptions/:subscriptionId/resourceGroups/:resourceGroupName', { config: { operation: 'ResourceGroupGet', duty: 'readPlatform' } }, async (req) =>
    groupWire(groupOrNotFound(req.arm.subscriptionId, req.params.resourceGroupName)));
  const groupBody = { type: 'object', properties: { location: { type: 'string' }, tags: { type: 'object', additionalProperties: { type: 'string' } }, properties: { type: 'object' } } };
  app.put<{ Params: Group; Body: { location?: string; tags?: Record<string, string> } }>('/subscriptions/:subscriptionId/resourceGroups/:resourceGroupName', {
    config: { operation: 'ResourceGroupPut', duty: 'manageResourceGroups' }, schema: { body: { ...groupBody, required: ['location'] } },
  }, async (req, reply) => {
    settle(arm.findGroup(req.arm.subscriptionId, req.params.resourceGroupName));
    const { group, created } = arm.putGroup(req.arm.subscriptionId, req.params.resourceGroupName, req.body.location ?? '', req.body.tags);
    return reply.code(created ? 201 : 200).send(groupWire(group));
  });
  app.patch<{ Params: Group; Body: { tags?: Record<string, string> } }>('/subscriptions/:subscriptionId/resourceGroups/:resourceGroupName', {
    config: { operation: 'ResourceGroupUpdate', duty: 'manageResourceGroups' }, schema: { body: groupBody },
  }, async (req) => {
    const g = groupOrNotFound(req.arm.subscriptionId, req.params.resourceGroupName);
    return groupWire(arm.putGroup(g.subscriptionId, g.name, g.location, req.body?.tags ?? g.tags).group);
  });
  app.delete<{ Params: Group }>('/subscriptions/:subscriptionId/resourceGroups/:resourceGroupName', { config: { operation: 'ResourceGroupDelete', duty: 'manageResourceGroups' } }, async (req, reply) => {
    const g = settle(arm.findGroup(req.arm.subscriptionId, req.params.resourceGroupName));
    if (!g) return reply.code(204).send();
    const held = resources(req.arm.tenantId).filter((r) => r.placement.subscriptionId === g.subscriptionId && r.placement.resourceGroup.toLowerCase() === g.name.toLowerCase());
    const members = new Map(d.members().map((m) => [m.type.toLowerCase(), m]));
    // Separation of duties holds here too: deleting a group deletes its vaults only for a caller who may delete vaults.
    for (const type of new Set(held.map((r) => r.placement.type.toLowerCase()))) {
      const m = members.get(type);
      if (!m) throw errors.conflict(`The resource group '${g.name}' holds resources of type ${type}, which a group delete cannot remove; delete them first.`);
      d.identity.requireDuty(req.caller!, m.duty, { scope: `/subscriptions/${g.subscriptionId}/resourceGroups/${g.name}`, action: `${m.type}/delete` });
    }
    arm.setGroupState(g, 'Deleting');
    try {
      for (const r of held) await members.get(r.placement.type.toLowerCase())!.remove(req, r.placement.name);
    } catch (e) {
      // What was removed stays removed; the group is usable again, and the same DELETE carries on from here.
      arm.setGroupState(g, 'Succeeded');
      throw e;
    }
    const url = `${clientOrigin(req)}/subscriptions/${g.subscriptionId}/operationresults/${LRO_TOKEN(g)}?api-version=2021-04-01`;
    if (!settle(arm.findGroup(g.subscriptionId, g.name))) return reply.code(200).send();
    return reply.code(202).header('location', url).header('retry-after', '5').send();
  });
  app.get<{ Params: Sub & { token: string } }>('/subscriptions/:subscriptionId/operationresults/:token', { config: { operation: 'ResourceGroupDeleteStatus', duty: 'readPlatform' } }, async (req, reply) => {
    const m = /^rg:(.+)$/.exec(Buffer.from(req.params.token, 'base64url').toString());
    if (!m) throw errors.notFound('OperationNotFound', 'No such operation.');
    if (settle(arm.findGroup(req.arm.subscriptionId, m[1]))) return reply.code(202).header('location', `${clientOrigin(req)}${req.url}`).header('retry-after', '5').send();
    return reply.code(200).send();
  });

  // The generic list: `$filter=resourceType eq 'Microsoft.KeyVault/vaults'` (az keyvault list; az finds a group by name with it).
  const listResources = (req: FastifyRequest, group?: string) => {
    const filter = parseFilter(queryOf(req).get('$filter'));
    return {
      value: resources(req.arm.tenantId)
        .filter((r) => r.placement.subscriptionId === req.arm.subscriptionId && (!group || r.placement.resourceGroup.toLowerCase() === group.toLowerCase()))
        .filter((r) => filter.every(([field, value]) => (field === 'resourcetype' ? r.placement.type : r.placement.name).toLowerCase() === value.toLowerCase()))
        .filter((r) => mayRead(req, r))
        .map((r) => ({ id: resourceId(r.placement), name: r.placement.name, type: r.placement.type, location: r.location, tags: r.placement.tags, ...(r.kind ? { kind: r.kind } : {}) })),
    };
  };
  app.get<{ Params: Sub }>('/subscriptions/:subscriptionId/resources', { config: { operation: 'ResourceList', duty: 'readPlatform' } }, async (req) => listResources(req));
  app.get<{ Params: Group }>('/subscriptions/:subscriptionId/resourceGroups/:resourceGroupName/resources', { config: { operation: 'ResourceList', duty: 'readPlatform' } }, async (req) =>
    listResources(req, groupOrNotFound(req.arm.subscriptionId, req.params.resourceGroupName).name));
}

/** `resourceType eq 'X' and name eq 'y'`: the filters az and the SDKs send; anything else is refused, not ignored. */
function parseFilter(filter: string | null): [string, string][] {
  if (!filter) return [];
  return filter.split(/\s+and\s+/i).map((clause) => {
    const m = /^\s*(resourceType|name)\s+eq\s+'([^']*)'\s*$/i.exec(clause);
    if (!m) throw new ApiError(400, 'InvalidFilterInQueryString', `The $filter '${filter}' is not supported: use resourceType eq '<type>' and/or name eq '<name>'.`);
    return [m[1].toLowerCase(), m[2]];
  });
}
