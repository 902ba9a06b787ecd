import type { FastifyInstance, FastifyRequest } from 'fastify';
import { queryOf } from '../http/request.js';
import { armRoute, type ArmLevel } from '../arm/routing.js';
import type { RoleAssignmentInput, RoleAssignmentService } from '../arm/role-assignments.service.js';
import { armRoleAssignmentWire, roleAssignmentWire, roleDefinitionWire } from './arm.wire.js';

/**
 * Microsoft.Authorization in the management plane: role definitions and role assignments at every scope ARM
 * has — the root (`/providers/...`), a subscription, a resource group, and a resource (vaults, identities and
 * servers: `.../providers/{ns}/{type}/{name}/providers/Microsoft.Authorization/...`, one route per type beside
 * the type's own routes). pgbyok's older tenant-wide routes (`/tenants/{tid}/...`, roles by name) stay.
 */

const AUTHZ = '/providers/Microsoft.Authorization';
/** The resource types an assignment may be scoped to. */
export const ASSIGNABLE_TYPES = ['Microsoft.KeyVault/vaults', 'Microsoft.ManagedIdentity/userAssignedIdentities', 'Microsoft.DBforPostgreSQL/flexibleServers'];

type IdParams = { id: string; name?: string };
type DefParams = { roleId: string; name?: string };
interface PutBody { properties: RoleAssignmentInput & { description?: string | null } }

const putSchema = {
  body: {
    type: 'object', required: ['properties'],
    properties: {
      properties: {
        type: 'object', required: ['roleDefinitionId', 'principalId'],
        properties: { roleDefinitionId: { type: 'string' }, principalId: { type: 'string' }, principalType: { type: 'string' }, description: { type: ['string', 'null'] } },
      },
    },
  },
};

export function registerAuthorizationRoutes(app: FastifyInstance, d: { assignments: RoleAssignmentService }) {
  const { assignments } = d;
  const tenantOf = (req: FastifyRequest) => req.arm?.tenantId ?? req.caller!.principal.tenantId;

  /** One scope's routes: `prefix` is what comes before `/providers/Microsoft.Authorization`, at `levels` (none: the root). */
  const atScope = (levels: ArmLevel[] | 'root', prefix: string, resourceType?: string) => {
    const route = <P, B = unknown>(method: 'GET' | 'PUT' | 'DELETE', path: string, opts: Parameters<typeof armRoute>[4], handler: (req: FastifyRequest<{ Params: P; Body: B }>, reply: any) => unknown) => {
      if (levels === 'root') app.route({ ...opts, method, url: `${AUTHZ}${path}`, handler: handler as any });
      else armRoute<P, B>(app, method, `${prefix}${AUTHZ}${path}`, levels, opts, handler);
    };
    const scope = (req: FastifyRequest) => assignments.scopeOf(req.arm, resourceType ? { type: resourceType, name: (req.params as { name: string }).name } : undefined);

    route('GET', '/roleDefinitions', { config: { operation: 'RoleDefinitionList', signedIn: true } }, async (req) => {
      const s = scope(req);
      return { value: assignments.definitions(queryOf(req).get('$filter')).map((r) => roleDefinitionWire(r, s)) };
    });
    route<DefParams>('GET', '/roleDefinitions/:roleId', { config: { operation: 'RoleDefinitionGet', signedIn: true } }, async (req) =>
      roleDefinitionWire(assignments.definition(req.params.roleId), scope(req)));

    route('GET', '/roleAssignments', { config: { operation: 'RoleAssignmentList', duty: 'readPlatform' } }, async (req) => ({
      value: assignments.list(tenantOf(req), scope(req), queryOf(req).get('$filter')).map(armRoleAssignmentWire),
    }));
    route<IdParams>('GET', '/roleAssignments/:id', { config: { operation: 'RoleAssignmentGet', duty: 'readPlatform' } }, async (req) =>
      armRoleAssignmentWire(assignments.get(tenantOf(req), scope(req), req.params.id)));
    route<IdParams, PutBody>('PUT', '/roleAssignments/:id', { config: { operation: 'RoleAssignmentCreate', duty: 'manageRoles' }, schema: putSchema }, async (req, reply) => {
      const { assignment, created } = assignments.put(tenantOf(req), scope(req), req.params.id, req.body.properties);
      return reply.code(created ? 201 : 200).send(armRoleAssignmentWire(assignment));
    });
    route<IdParams>('DELETE', '/roleAssignments/:id', { config: { operation: 'RoleAssignmentDelete', duty: 'manageRoles' } }, async (req, reply) => {
      const gone = assignments.remove(tenantOf(req), scope(req), req.params.id);
      return gone ? reply.code(200).send(armRoleAssignmentWire(gone)) : reply.code(204).send();
    });
  };

  atScope('root', '');
  atScope(['subscription', 'group'], '');
  for (const type of ASSIGNABLE_TYPES) atScope(['group'], `/providers/${type}/:name`, type);

  // pgbyok's older tenant-wide routes (the CLI): roles by name, and ids under the tenant path.
  const RA = '/tenants/:tid/providers/Microsoft.Authorization/roleAssignments';
  type Tenant = { tid: string };
  app.get<{ Params: Tenant }>(RA, { config: { operation: 'RoleAssignmentList', duty: 'readPlatform' } }, async (req) => ({
    value: assignments.list(req.params.tid, '/', queryOf(req).get('$filter')).map(roleAssignmentWire),
  }));
  app.post<{ Params: Tenant; Body: { properties: { principalId: string; roleDefinitionName: string } } }>(RA, {
    config: { operation: 'RoleAssignmentCreate', duty: 'manageRoles' },
    schema: { body: { type: 'object', required: ['properties'], properties: { properties: { type: 'object', required: ['principalId', 'roleDefinitionName'], properties: { principalId: { type: 'string' }, roleDefinitionName: { type: 'string' } } } } } },
  }, async (req) => roleAssignmentWire(assignments.assignByName(req.params.tid, req.body.properties.principalId, req.body.properties.roleDefinitionName)));
  app.get<{ Params: Tenant & { id: string } }>(`${RA}/:id`, { config: { operation: 'RoleAssignmentGet', duty: 'readPlatform' } }, async (req) =>
    roleAssignmentWire(assignments.get(req.params.tid, '/', req.params.id)));
  app.put<{ Params: Tenant & { id: string }; Body: PutBody }>(`${RA}/:id`, { config: { operation: 'RoleAssignmentCreate', duty: 'manageRoles' }, schema: putSchema }, async (req, reply) => {
    const { assignment, created } = assignments.put(req.params.tid, '/', req.params.id, req.body.properties);
    return reply.code(created ? 201 : 200).send(armRoleAssignmentWire(assignment));
  });
  // Any of the tenant's assignments, whatever its scope, by id (what `pgbyok role delete` sends).
  app.delete<{ Params: Tenant & { id: string } }>(`${RA}/:id`, { config: { operation: 'RoleAssignmentDelete', duty: 'manageRoles' } }, async (req) => {
    if (!assignments.remove(req.params.tid, undefined, req.params.id)) assignments.get(req.params.tid, '/', req.params.id); // throws RoleAssignmentNotFound
    return {};
  });
}
