import { clientOrigin } from '../http/request.js';
import type { FastifyInstance } from 'fastify';
import { ApiError } from '../lib/errors.js';
import type { ServersService } from '../servers/servers.service.js';
import type { Server } from '../servers/servers.repo.js';
import { armRoute, RESOURCE_LEVELS } from '../arm/routing.js';
import { requireRegion } from '../servers/regions.js';
import { asyncOperationWire, asyncStatus, capabilitiesV2022, capabilitiesV2023, FS_TYPE } from './servers.wire.js';
import { isV2022, pgOpts, type ServerAddressing } from './postgres-arm.js';

/**
 * Microsoft.DBforPostgreSQL by location: capabilities (in 2022-12-01's shape or the later one, by
 * api-version), name availability, and the two polling addresses of a long operation.
 */

const NS = '/providers/Microsoft.DBforPostgreSQL';
type Loc = { loc: string };
type NameBody = { name: string; type?: string };

/** The operation kinds that end with a server body at their Location (a PUT or PATCH of the server). */
const RESOURCE_KINDS = ['Create', 'Restore', 'GeoRestore', 'CreateReplica', 'Update', 'Promote'];

export function registerPostgresLocationRoutes(app: FastifyInstance, d: { servers: ServersService; at: ServerAddressing; out: (s: Server) => unknown }) {
  const { servers, at } = d;
  const capabilities = (req: Parameters<typeof isV2022>[0], location: string) => (isV2022(req) ? capabilitiesV2022(location) : capabilitiesV2023());

  armRoute<Loc>(app, 'GET', `${NS}/locations/:loc/capabilities`, ['tenant', 'subscription'], pgOpts({ operation: 'CapabilitiesList', duty: 'readServers' }), async (req) =>
    capabilities(req, requireRegion(req.params.loc)));
  armRoute<{ name: string }>(app, 'GET', `/providers/${FS_TYPE}/:name/capabilities`, RESOURCE_LEVELS, pgOpts({ operation: 'ServerCapabilitiesList', duty: 'readServers' }), async (req) => {
    const s = at.find(req, req.params.name);
    return capabilities(req, s.location);
  });

  const nameBody = { body: { type: 'object', required: ['name'], properties: { name: { type: 'string' }, type: { type: 'string' } } } };
  const check = (b: NameBody) => ({ ...servers.nameAvailability(b.name, b.type ?? FS_TYPE), name: b.name, type: b.type ?? FS_TYPE });
  armRoute<Loc, NameBody>(app, 'POST', `${NS}/locations/:loc/checkNameAvailability`, ['tenant', 'subscription'], pgOpts({ operation: 'CheckNameAvailability', duty: 'readServers', readOnly: true }, nameBody), async (req) => {
    requireRegion(req.params.loc);
    return check(req.body);
  });
  armRoute<Record<string, string>, NameBody>(app, 'POST', `${NS}/checkNameAvailability`, ['tenant', 'subscription'], pgOpts({ operation: 'CheckNameAvailability', duty: 'readServers', readOnly: true }, nameBody), async (req) =>
    check(req.body));

  // The async-operation document (polled by the SDKs and az) and the operation's result (ARM's Location).
  armRoute<Loc & { id: string }>(app, 'GET', `${NS}/locations/:loc/azureAsyncOperation/:id`, ['subscription'], pgOpts({ operation: 'OperationGet', duty: 'readServers' }), async (req, reply) => {
    const op = servers.operation(req.arm.tenantId, req.params.id);
    const body = asyncOperationWire(op, `/subscriptions/${req.arm.subscriptionId}${NS}/locations/${req.params.loc}/azureAsyncOperation/${op.id}`);
    if (body.status === 'InProgress') reply.header('retry-after', '1');
    return body;
  });
  armRoute<Loc & { id: string }>(app, 'GET', `${NS}/locations/:loc/operationResults/:id`, ['subscription'], pgOpts({ operation: 'OperationGet', duty: 'readServers' }), async (req, reply) => {
    const op = servers.operation(req.arm.tenantId, req.params.id);
    const status = asyncStatus(op);
    if (status === 'InProgress') {
      return reply.code(202).header('location', `${clientOrigin(req)}${req.url}`).header('retry-after', '1').send();
    }
    if (status !== 'Succeeded') throw new ApiError(400, op.errorCode ?? 'OperationFailed', op.error ?? `The ${op.kind} operation of ${op.serverName} did not complete (${status}).`);
    const server = RESOURCE_KINDS.includes(op.kind) ? servers.list(req.arm.tenantId).find((s) => s.id === op.serverId) : undefined;
    return server ? reply.code(200).send(d.out(server)) : reply.code(204).send();
  });
}
