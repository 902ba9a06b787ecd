import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit.js';
import type { IdentityService } from '../identity/identity.service.js';
import { registerIdentityRoutes, registerManagedIdentityRoutes } from '../identity/identity.routes.js';
import type { TokenService } from '../identity/tokens.js';
import type { VaultService } from '../vault/vaults.service.js';
import type { ServersService } from '../servers/servers.service.js';
import type { Monitoring } from '../servers/monitoring.js';
import { requireSecuredRoutes, secureScope } from '../http/route-auth.js';
import { installHookCodeAuth, installManagementAuth, installTrustedServiceAuth } from '../http/management-auth.js';
import { fastifyOptions, installErrorHandler, installJsonParser } from '../http/app-setup.js';
import { auditAttempt, installAuditOutcome } from '../http/audit-hooks.js';
import { registerManagementRoutes, registerPublicRoutes, registerTrustedRoutes } from './management.routes.js';
import { registerServerRoutes } from './servers.routes.js';
import { registerCloudMetadataRoutes } from './cloud-metadata.routes.js';
import { registerPlatformSettingsRoutes, type SettingsStore } from './platform-settings.routes.js';
import type { ArmService } from '../arm/arm.service.js';
import { registerResourceRoutes, type GroupMember } from '../arm/resources.routes.js';
import { registerIdentityResourceRoutes } from './identities.routes.js';
import { registerVaultResourceRoutes, VAULT_TYPE } from './vault-resources.routes.js';
import { HSM_TYPE, registerHsmResourceRoutes } from './hsm-resources.routes.js';
import type { HsmService } from '../hsm/hsms.service.js';
import { resourceId } from '../arm/arm.service.js';
import type { Vault } from '../vault/vault.types.js';
import type { Names } from '../lib/names.js';
import { registerAuthorizationRoutes } from './authorization.routes.js';
import type { RoleAssignmentService } from '../arm/role-assignments.service.js';
import { registerInsightsRoutes } from './insights.routes.js';
import type { Insights } from '../insights/insights.service.js';

export interface PlatformAppDeps {
  logger: Logger;
  tls: { key: string; cert: string; ca: string };
  audit: AuditLog;
  identity: IdentityService;
  tokens: TokenService;
  vaults: VaultService;
  hsms: HsmService;
  servers: ServersService;
  monitoring: Monitoring;
  insights: Insights;
  arm: ArmService;
  roleAssignments: RoleAssignmentService;
  settings: SettingsStore;
  origin: string;
  /** The DNS names of vaults and servers. */
  names: Names;
  platformTenantId: () => string;
  /** The secret code in the vault-event webhook URL the control plane subscribes with. */
  hookCode: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Who a token request was for (the token endpoints set it; the audit record names them). */
    tokenSubject?: { tenantId?: string; objectId?: string; clientId?: string; name?: string };
  }
}

/**
 * The platform port: identity, management and the platform's own endpoints, in four security scopes. The
 * root holds only what every route shares: body parsing, the error envelope and the audit of outcomes.
 */
export function buildPlatformApp(d: PlatformAppDeps): FastifyInstance {
  // ARM paths are case-insensitive (az sends `resourcegroups`, the SDKs `resourceGroups`), and
  // `az cloud register --endpoint-resource-manager https://host:port/` asks for `//metadata/endpoints` and
  // joins other URLs to that endpoint the same way: `//x` routes as `/x`. (Only here: on the vault port an
  // empty key version, `/keys/k//decrypt`, is meaningful.)
  const app = Fastify({ ...fastifyOptions(d.logger), routerOptions: { caseSensitive: false, ignoreDuplicateSlashes: true }, https: { key: d.tls.key, cert: d.tls.cert, ca: [d.tls.ca], requestCert: true, rejectUnauthorized: false } });
  installJsonParser(app);
  installErrorHandler(app);
  app.decorateRequest('caller', undefined);
  app.decorateRequest('tokenSubject', undefined);

  const describe = (req: FastifyRequest) => {
    const p = req.caller?.principal ?? req.tokenSubject;
    const params = (req.params ?? {}) as { tid?: string; tenant?: string; name?: string };
    // The record belongs to the tenant whose resource was addressed, so a refused caller from elsewhere
    // (or a failed sign-in) shows up in that tenant's log, not only in the caller's.
    const addressed = params.tid ?? (params.tenant ? d.identity.tenants().find((t) => t.id === params.tenant || t.name === params.tenant)?.id : undefined);
    return {
      tenantId: addressed ?? p?.tenantId ?? req.routeOptions.config?.auditTenant?.(req),
      callerObjectId: p?.objectId,
      callerClientId: p?.clientId,
      callerName: p?.name,
      vault: params.name && req.routeOptions.url?.includes('/Microsoft.KeyVault/') ? params.name : undefined,
    };
  };
  installAuditOutcome(app, d.audit, 'management', describe);
  const vaultId = (v: Vault) => resourceId(d.arm.placementOf(v.tenantId, VAULT_TYPE, v.name, v.location));
  const hsmId = (v: Vault) => resourceId(d.arm.placementOf(v.tenantId, HSM_TYPE, v.name, v.location));
  requireSecuredRoutes(app);
  const attempt = auditAttempt(d.audit, 'management', describe);

  secureScope(app, { name: 'public', enforces: ['public'], surface: 'identity', hooks: () => {}, beforeHandler: attempt }, (scope) => {
    registerPublicRoutes(scope, { vaults: d.vaults, names: d.names });
    registerIdentityRoutes(scope, d.identity, d.tokens, d.origin);
    registerCloudMetadataRoutes(scope, { canonicalOrigin: d.origin, names: d.names });
  });
  secureScope(app, { name: 'trusted', enforces: ['trustedService'], surface: 'identity', hooks: installTrustedServiceAuth, beforeHandler: attempt }, (scope) => {
    registerTrustedRoutes(scope, { vaults: d.vaults, hsms: d.hsms, names: d.names, vaultId, hsmId });
    registerManagedIdentityRoutes(scope, d.identity, d.tokens);
  });
  secureScope(app, { name: 'hooks', enforces: ['hookCode'], surface: 'management', hooks: (scope) => installHookCodeAuth(scope, d.hookCode), beforeHandler: attempt }, (scope) => {
    // Vault events for the control plane: a hint to check keys now.
    scope.post<{ Body: unknown }>('/hooks/vault-events', { config: { operation: 'VaultEventsReceived', hookCode: true } }, async (req) => {
      if (Array.isArray(req.body)) d.servers.onVaultEvents(req.body as any);
      return {};
    });
  });
  secureScope(app, {
    name: 'management', enforces: ['duty', 'signedIn'], surface: 'management',
    hooks: (scope) => installManagementAuth(scope, { identity: d.identity, arm: d.arm, platformTenantId: d.platformTenantId }),
    beforeHandler: attempt,
  }, (scope) => {
    registerManagementRoutes(scope, { identity: d.identity, vaults: d.vaults, audit: d.audit, names: d.names, platformTenantId: d.platformTenantId, vaultId });
    // What a resource-group delete can remove, one entry per resource type.
    const members: GroupMember[] = [
      registerIdentityResourceRoutes(scope, { identity: d.identity, arm: d.arm }),
      registerVaultResourceRoutes(scope, { identity: d.identity, vaults: d.vaults, arm: d.arm, names: d.names }),
      registerHsmResourceRoutes(scope, { identity: d.identity, hsms: d.hsms, arm: d.arm, names: d.names }),
      registerServerRoutes(scope, { servers: d.servers, arm: d.arm, names: d.names }),
    ];
    registerResourceRoutes(scope, { arm: d.arm, identity: d.identity, members: () => members });
    registerAuthorizationRoutes(scope, { assignments: d.roleAssignments });
    registerInsightsRoutes(scope, { insights: d.insights, arm: d.arm, vaults: d.vaults, servers: d.servers, origin: d.origin });
    registerPlatformSettingsRoutes(scope, d.settings);
  });
  return app;
}

