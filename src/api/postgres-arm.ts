import type { Names } from '../lib/names.js';
import type { FastifyReply, FastifyRequest, RouteShorthandOptions } from 'fastify';
import { ApiError } from '../lib/errors.js';
import { bearerToken, queryOf, clientOrigin } from '../http/request.js';
import type { Caller as IdentityCaller } from '../identity/identity.service.js';
import type { Caller, ServersService } from '../servers/servers.service.js';
import type { Server } from '../servers/servers.repo.js';
import type { Operation } from '../servers/operations/operations.repo.js';
import { armErrors, parseResourceId, resourceId, type ArmService } from '../arm/arm.service.js';
import { IDENTITY_TYPE } from './identities.routes.js';
import { FS_TYPE, type ServerIds } from './servers.wire.js';

/**
 * What every Microsoft.DBforPostgreSQL route shares: the api-versions it answers, where a server sits (its
 * ARM id, built from placement), who is calling, and how a long operation is answered.
 */

/** The published api-versions of Microsoft.DBforPostgreSQL/flexibleServers from 2022-12-01 (az 2.45) to 2025-08-01 (the v9 SDK). */
export const API_VERSIONS = [
  '2022-12-01', '2023-03-01-preview', '2023-06-01-preview', '2023-12-01-preview', '2024-03-01-preview', '2024-08-01',
  '2024-11-01-preview', '2025-01-01-preview', '2025-06-01-preview', '2025-08-01',
];

/**
 * On ARM paths the api-version must be one of these (ARM refuses others before the provider sees them). The
 * tenant path is pgbyok's own: its CLI sends none or the platform's, and is not held to the provider's list.
 */
export async function postgresApiVersion(req: FastifyRequest): Promise<void> {
  if (req.arm?.tenantPath) return;
  const v = queryOf(req).get('api-version');
  if (v && !API_VERSIONS.includes(v)) {
    throw new ApiError(400, 'InvalidApiVersionParameter', `The api-version '${v}' is invalid for resource type '${FS_TYPE}'. The supported api-versions are '${API_VERSIONS.join(', ')}'.`);
  }
}

/** Route options with the api-version check. */
export const pgOpts = (config: RouteShorthandOptions['config'], schema?: RouteShorthandOptions['schema']): RouteShorthandOptions =>
  ({ config, ...(schema ? { schema } : {}), preHandler: postgresApiVersion });

/** Capabilities and the like come in two shapes: 2022-12-01's and that of the versions after it. */
export const isV2022 = (req: FastifyRequest) => (queryOf(req).get('api-version') ?? '2022-12-01') === '2022-12-01';

export function callerOf(req: FastifyRequest): Caller {
  const c = req.caller as IdentityCaller;
  return { tenantId: c.principal.tenantId, objectId: c.principal.objectId, name: c.principal.name, token: bearerToken(req)! };
}

export function createServerAddressing(arm: ArmService, servers: ServersService, names: Pick<Names, 'serverFqdn'>) {
  const placed = (s: Server) => arm.placementOf(s.tenantId, FS_TYPE, s.name, s.location);
  const idOf = (s: Server) => resourceId(placed(s));
  /** An identity's ARM id from the domain's reference (the tenant form, or already an ARM id). */
  const identityId = (s: Server) => (ref: string | undefined): string | null => {
    if (!ref) return null;
    const r = parseResourceId(ref);
    if (!r?.tenantId) return ref;
    return resourceId(arm.placementOf(r.tenantId, IDENTITY_TYPE, r.name, s.location));
  };
  const ids = (s: Server): ServerIds => {
    const p = placed(s);
    const source = s.sourceServer ? servers.list(s.tenantId).find((x) => x.name === s.sourceServer) : undefined;
    return {
      id: resourceId(p), identity: identityId(s), tags: p.tags, fqdn: names.serverFqdn(s.name),
      ...(s.sourceServer ? { source: source ? idOf(source) : resourceId({ ...p, name: s.sourceServer }) } : {}),
    };
  };
  return {
    ids,
    idOf,
    /** The tenant's server of this name, if the request's scope sees it; else ARM's 404. */
    find(req: FastifyRequest, name: string): Server {
      const s = servers.list(req.arm.tenantId).find((x) => x.name === name.toLowerCase());
      if (!s || !arm.inScope(req.arm, placed(s))) throw armErrors.resourceNotFound(FS_TYPE, name, req.arm.resourceGroup);
      return s;
    },
    inScope: (req: FastifyRequest) => servers.list(req.arm.tenantId).filter((s) => arm.inScope(req.arm, placed(s))),
    /**
     * An accepted long operation: 202 with where to poll. On ARM paths, ARM's own URLs (the async-operation
     * document and the operation result, under the server's location); on the tenant path, pgbyok's operation.
     */
    accepted(reply: FastifyReply, req: FastifyRequest, op: Operation, location: string, body: unknown) {
      const host = clientOrigin(req);
      if (req.arm.tenantPath) {
        const url = `${host}/tenants/${req.arm.tenantId}/providers/Microsoft.DBforPostgreSQL/operations/${op.id}`;
        return reply.code(202).header('azure-asyncoperation', url).header('location', url).header('retry-after', '1').send(body);
      }
      const base = `${host}/subscriptions/${req.arm.subscriptionId}/providers/Microsoft.DBforPostgreSQL/locations/${location}`;
      const api = `api-version=${encodeURIComponent(queryOf(req).get('api-version') ?? API_VERSIONS[0])}`;
      return reply.code(202)
        .header('azure-asyncoperation', `${base}/azureAsyncOperation/${op.id}?${api}`)
        .header('location', `${base}/operationResults/${op.id}?${api}`)
        .header('retry-after', '1')
        .send(body);
    },
  };
}

export type ServerAddressing = ReturnType<typeof createServerAddressing>;
