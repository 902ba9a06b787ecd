import type { FastifyInstance, FastifyRequest, RouteHandlerMethod, RouteShorthandOptions } from 'fastify';
import { ApiError, errors } from '../lib/errors.js';
import { queryOf } from '../http/request.js';
import type { ArmScope, ArmService } from './arm.service.js';

/**
 * One route, several ARM addresses. Azure addresses a resource as
 * `/subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}/{type}/{name}` and lists it also at
 * `/subscriptions/{sub}/providers/...`; pgbyok's older clients use `/tenants/{tid}/providers/...`. A route
 * declares the levels it answers at; each level is its own registered route (so each is listed and secured
 * like any other), and the management scope resolves the level's parameters into `req.arm` before the handler.
 */
export type ArmLevel = 'tenant' | 'subscription' | 'group';

const PREFIX: Record<ArmLevel, string> = {
  tenant: '/tenants/:tid',
  subscription: '/subscriptions/:subscriptionId',
  group: '/subscriptions/:subscriptionId/resourceGroups/:resourceGroupName',
};

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The ARM level a route answers at (set by armRoute). */
    armLevel?: ArmLevel;
  }
  interface FastifyRequest {
    /** The tenant, subscription and group the request addresses (management routes at an ARM level). */
    arm: ArmScope;
  }
}

export const RESOURCE_LEVELS: ArmLevel[] = ['tenant', 'group'];
export const LIST_LEVELS: ArmLevel[] = ['tenant', 'subscription', 'group'];

type Method = 'GET' | 'PUT' | 'POST' | 'PATCH' | 'DELETE' | 'HEAD';

export function armRoute<P = Record<string, string>, B = unknown>(
  app: FastifyInstance, method: Method, path: string, levels: ArmLevel[], opts: RouteShorthandOptions,
  handler: (req: FastifyRequest<{ Params: P; Body: B }>, reply: Parameters<RouteHandlerMethod>[1]) => unknown,
): void {
  for (const level of levels) {
    app.route({ ...opts, method, url: `${PREFIX[level]}${path}`, config: { ...(opts.config ?? {}), armLevel: level }, handler: handler as any });
  }
}

/** ARM's answer to a request without `api-version`. */
const missingApiVersion = () => new ApiError(400, 'MissingApiVersionParameter', "The api-version query parameter (?api-version=) is required for all requests.");

/**
 * Resolves the addressed tenant, subscription and group for a caller of `callerTenant`, as ARM does: a
 * subscription that does not exist is 404 SubscriptionNotFound, another tenant's is 401; a resource route
 * under a group that does not exist is 404 ResourceGroupNotFound (the group routes themselves are not).
 */
export function resolveArmScope(req: FastifyRequest, arm: ArmService, callerTenant: string): ArmScope | undefined {
  const p = req.params as { tid?: string; subscriptionId?: string; resourceGroupName?: string };
  if (p.subscriptionId !== undefined) {
    if (!queryOf(req).get('api-version')) throw missingApiVersion();
    const s = arm.subscriptionFor(p.subscriptionId, callerTenant);
    const scope: ArmScope = { tenantId: s.tenantId, subscriptionId: s.id, tenantPath: false };
    if (p.resourceGroupName !== undefined) scope.resourceGroup = req.routeOptions.config.armLevel === 'group' ? arm.group(s.id, p.resourceGroupName).name : p.resourceGroupName;
    return scope;
  }
  if (p.tid !== undefined) {
    if (p.tid !== callerTenant) {
      throw errors.unauthorized(`The access token is from tenant ${callerTenant}; this resource belongs to tenant ${p.tid}.`);
    }
    return { tenantId: p.tid, subscriptionId: arm.defaultSubscription(p.tid).id, tenantPath: true };
  }
  return undefined;
}
