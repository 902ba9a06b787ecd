import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { IdentityService } from '../identity/identity.service.js';
import type { Principal } from '../identity/identity.repo.js';
import { armErrors, resourceId, type ArmService } from '../arm/arm.service.js';
import { armRoute, LIST_LEVELS, RESOURCE_LEVELS } from '../arm/routing.js';
import { identityWire } from './arm.wire.js';
import type { GroupMember } from '../arm/resources.routes.js';

/** Microsoft.ManagedIdentity/userAssignedIdentities, at `/subscriptions/{sub}/resourceGroups/{rg}/providers/...` (and the tenant path). */

export const IDENTITY_TYPE = 'Microsoft.ManagedIdentity/userAssignedIdentities';
const P = `/providers/${IDENTITY_TYPE}`;
type Named = { name: string };

export function registerIdentityResourceRoutes(app: FastifyInstance, d: { identity: IdentityService; arm: ArmService }): GroupMember {
  const { arm, identity } = d;
  const placed = (p: Principal) => arm.placementOf(p.tenantId, IDENTITY_TYPE, p.name, p.location);
  const idOf = (p: Principal) => resourceId(placed(p));
  const find = (req: FastifyRequest, name: string) => {
    const p = identity.principals(req.arm.tenantId).find((x) => x.kind === 'UserAssignedIdentity' && x.name.toLowerCase() === name.toLowerCase());
    if (!p || !arm.inScope(req.arm, placed(p))) {
      throw req.arm.tenantPath ? armErrors.resourceNotFound(IDENTITY_TYPE, name) : armErrors.resourceNotFound(IDENTITY_TYPE, name, req.arm.resourceGroup);
    }
    return p;
  };
  const inScope = (req: FastifyRequest) => identity.principals(req.arm.tenantId).filter((p) => p.kind === 'UserAssignedIdentity' && arm.inScope(req.arm, placed(p)));

  arm.registerType({ readDuty: 'readPlatform', type: IDENTITY_TYPE, list: (tid) => identity.principals(tid).filter((p) => p.kind === 'UserAssignedIdentity').map((p) => ({ name: p.name, location: p.location })) });

  // PUT is create-or-update, as ARM's: the same identity again answers 200 with it (no new secret).
  armRoute<Named, { location?: string; tags?: Record<string, string> } | undefined>(app, 'PUT', `${P}/:name`, RESOURCE_LEVELS, {
    config: { operation: 'IdentityCreate', duty: 'manageIdentities' },
    schema: { body: { type: ['object', 'null'], properties: { location: { type: 'string' }, tags: { type: 'object', additionalProperties: { type: 'string' } } } } },
  }, async (req, reply) => {
    const existing = identity.principals(req.arm.tenantId).find((x) => x.kind === 'UserAssignedIdentity' && x.name === req.params.name);
    if (existing && arm.inScope(req.arm, placed(existing))) return identityWire(existing, idOf(existing));
    const location = req.body?.location ?? identity.defaultLocation();
    const plan = arm.plan(req.arm, IDENTITY_TYPE, req.params.name, location, req.body?.tags);
    const { principal, clientSecret } = await arm.create(plan, location, () => identity.createPrincipal(req.arm.tenantId, 'UserAssignedIdentity', req.params.name, location));
    return reply.code(req.arm.tenantPath ? 200 : 201).send(identityWire(principal, idOf(principal), clientSecret));
  });
  armRoute(app, 'GET', P, LIST_LEVELS, { config: { operation: 'IdentityList', duty: 'readPlatform' } }, async (req) => ({
    value: inScope(req).map((p) => identityWire(p, idOf(p))),
  }));
  armRoute<Named>(app, 'GET', `${P}/:name`, RESOURCE_LEVELS, { config: { operation: 'IdentityGet', duty: 'readPlatform' } }, async (req) => {
    const p = find(req, req.params.name);
    return identityWire(p, idOf(p));
  });
  armRoute<Named>(app, 'DELETE', `${P}/:name`, RESOURCE_LEVELS, { config: { operation: 'IdentityDelete', duty: 'manageIdentities' } }, async (req, reply) => {
    const p = find(req, req.params.name);
    identity.deletePrincipal(p);
    arm.unplace(p.tenantId, IDENTITY_TYPE, p.name);
    return reply.code(200).send({});
  });

  return {
    type: IDENTITY_TYPE, duty: 'manageIdentities',
    remove(req, name) {
      const p = identity.principals(req.arm.tenantId).find((x) => x.kind === 'UserAssignedIdentity' && x.name === name);
      if (p) { identity.deletePrincipal(p); arm.unplace(p.tenantId, IDENTITY_TYPE, p.name); }
    },
  };
}
