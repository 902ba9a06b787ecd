import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { errors } from '../lib/errors.js';
import type { IdentityService } from '../identity/identity.service.js';
import { RESOURCES, TokenError } from '../identity/tokens.js';
import { bearerToken, isTrustedService, queryOf } from './request.js';
import { resourceId, type ArmService } from '../arm/arm.service.js';
import { resolveArmScope } from '../arm/routing.js';
import { actionOf, addressedScope } from '../arm/scopes.js';

/**
 * The hooks of the security scopes of the platform port. Each is installed inside its own encapsulated
 * scope (see route-auth.ts), so it runs for that scope's routes and no others, whatever the URL looks like.
 */

/**
 * Management token → `req.caller`; then the tenant (or subscription) in the path must be the caller's, the
 * declared duty held, and the addressed group must exist (`req.arm`).
 */
export function installManagementAuth(scope: FastifyInstance, d: { identity: IdentityService; arm: ArmService; platformTenantId: () => string }): void {
  scope.addHook('onRequest', async (req) => {
    const token = bearerToken(req);
    if (!token) throw errors.unauthorized('Authentication failed. The Authorization header is missing.');
    try {
      req.caller = await d.identity.authenticate(token, RESOURCES.management);
    } catch (e) {
      if (e instanceof TokenError) throw errors.unauthorized(`Authentication failed: ${e.message}`);
      throw e;
    }
  });

  scope.addHook('preHandler', async (req) => {
    const caller = req.caller!;
    const arm = resolveArmScope(req, d.arm, caller.principal.tenantId);
    if (arm) req.arm = arm;
    const duty = req.routeOptions.config.duty;
    if (duty === undefined) return; // signedIn: a valid token is all it needs
    if ((duty === 'manageTenants' || duty === 'managePlatformSettings') && caller.principal.tenantId !== d.platformTenantId()) {
      throw errors.authorizationFailed('Tenants and platform settings are managed from the platform tenant only.');
    }
    // The scope the route addresses, from its declared pattern and the router's decoded parameters (never the
    // raw URL, whose spelling varies); a resource on the older tenant path is at its placement (or tenant-wide
    // when it has none yet).
    const params = (req.params ?? {}) as Record<string, string>;
    const addressed = (req.routeOptions.url ?? '').replace(/:(\w+)/g, (_, k: string) => encodeURIComponent(params[k] ?? ''));
    const at = addressedScope(addressed);
    let scope = at.scope;
    if (at.tenantResource) {
      const p = d.arm.findPlacement(caller.principal.tenantId, at.tenantResource.type, at.tenantResource.name);
      if (p) scope = resourceId(p);
    }
    d.identity.requireDuty(caller, duty, { scope, action: actionOf(req.method, addressed) });
  });
}

/** Only a caller presenting the platform's trusted-service client certificate. */
export function installTrustedServiceAuth(scope: FastifyInstance): void {
  scope.addHook('onRequest', async (req: FastifyRequest) => {
    if (!isTrustedService(req)) throw errors.forbidden('Only the platform\'s trusted services may use this endpoint.', 'NotTrustedService');
  });
}

/** Only a caller that knows the code given to the vault event subscription. */
export function installHookCodeAuth(scope: FastifyInstance, code: string): void {
  const expected = createHash('sha256').update(code).digest();
  scope.addHook('onRequest', async (req: FastifyRequest) => {
    const given = createHash('sha256').update(queryOf(req).get('code') ?? '').digest();
    if (!timingSafeEqual(given, expected)) throw errors.forbidden('Unknown webhook code.', 'InvalidWebhookCode');
  });
}
