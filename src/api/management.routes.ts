import type { FastifyInstance } from 'fastify';
import { ApiError, errors } from '../lib/errors.js';
import type { AuditLog } from '../audit/audit.js';
import type { IdentityService } from '../identity/identity.service.js';
import type { VaultService } from '../vault/vaults.service.js';
import type { Vault } from '../vault/vault.types.js';
import { eventSubscriptionWire, vaultUri, servicePrincipalWire, tenantWire } from './arm.wire.js';
import { queryOf } from '../http/request.js';
import type { Names } from '../lib/names.js';

export interface ManagementDeps {
  identity: IdentityService;
  vaults: VaultService;
  /** The Managed HSMs (a vault service of kind managedHsm): they are found by origin and name as vaults are. */
  hsms: VaultService;
  audit: AuditLog;
  /** The DNS names vaults are served under (their vaultUri). */
  names: Names;
  /** The platform's own tenant: only its Owners manage tenants. */
  platformTenantId: () => string;
  /** A vault's ARM id (from its placement): the topic of its event subscriptions. */
  vaultId: (v: Vault) => string;
  /** A managed HSM's ARM id, likewise. */
  hsmId: (v: Vault) => string;
}

type TenantParams = { tid: string };

const KV = '/tenants/:tid/providers/Microsoft.KeyVault';

/** Public reads: the liveness probe and vault name resolution (as Azure's DNS resolves a vault for anyone). */
export function registerPublicRoutes(app: FastifyInstance, d: Pick<ManagementDeps, 'vaults' | 'names'>) {
  app.get('/health', { config: { operation: 'Health', public: 'liveness probe', audit: false } }, async () => ({ status: 'ok' }));
  app.get<{ Params: { name: string } }>('/discovery/vaults/:name', { config: { operation: 'VaultDiscover', public: 'name resolution, as DNS answers anyone', audit: false } }, async (req) => {
    const v = d.vaults.lookup(req.params.name);
    if (!v) throw errors.notFound('VaultNotFound', `No vault named '${req.params.name}' is being served.`);
    return { name: v.name, vaultUri: vaultUri(v, d.names) };
  });
}

/**
 * The platform's own services (trusted-service certificate, no token) subscribe to the vaults and managed
 * HSMs their servers use, so that key changes reach them in seconds.
 */
export function registerTrustedRoutes(app: FastifyInstance, d: Pick<ManagementDeps, 'vaults' | 'hsms' | 'names' | 'vaultId' | 'hsmId'>) {
  const kinds = [
    { service: d.vaults, nameOf: d.names.vaultNameOf, originOf: d.names.vaultOrigin, idOf: d.vaultId },
    { service: d.hsms, nameOf: d.names.hsmNameOf, originOf: d.names.hsmOrigin, idOf: d.hsmId },
  ];
  // The vault (or HSM) an origin names by its host, on the vault listener's port (a soft-deleted one included).
  const vaultAt = (origin: string) => {
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      throw errors.badParameter('vaultOrigin is not a URL.');
    }
    for (const k of kinds) {
      const name = k.nameOf(url.hostname);
      const v = name === undefined ? undefined : k.service.byName(name);
      if (v && url.origin === k.originOf(v.name)) return { ...k, v };
    }
    throw errors.notFound('VaultNotFound', `No vault or managed HSM is served at ${origin}.`);
  };
  app.put<{ Body: { vaultOrigin: string; name: string; endpoint: string } }>('/trusted/eventSubscriptions', {
    config: { operation: 'TrustedEventSubscriptionPut', trustedService: true },
    schema: { body: { type: 'object', required: ['vaultOrigin', 'name', 'endpoint'], properties: { vaultOrigin: { type: 'string' }, name: { type: 'string' }, endpoint: { type: 'string' } } } },
  }, async (req) => {
    const { v, service, idOf } = vaultAt(req.body.vaultOrigin);
    if (v.deletedAt != null) throw errors.notFound('VaultNotFound', `No vault or managed HSM is served at ${req.body.vaultOrigin}.`);
    const sub = service.putSubscription(v.tenantId, v.name, req.body.name, req.body.endpoint, []);
    return eventSubscriptionWire(idOf(v), sub);
  });
  // A deleted server's subscription goes with it (a vault that is gone has none left either).
  app.delete<{ Body: { vaultOrigin: string; name: string } }>('/trusted/eventSubscriptions', {
    config: { operation: 'TrustedEventSubscriptionDelete', trustedService: true },
    schema: { body: { type: 'object', required: ['vaultOrigin', 'name'], properties: { vaultOrigin: { type: 'string' }, name: { type: 'string' } } } },
  }, async (req) => {
    const { v, service } = vaultAt(req.body.vaultOrigin);
    try {
      service.deleteSubscription(v.tenantId, v.name, req.body.name);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
    }
    return {};
  });
}

/**
 * The management plane (ARM-shaped): tenants, identities, vaults, access policies,
 * event subscriptions and the audit log. Registered inside the management scope, whose hooks check the
 * management token of the tenant in the path and the role duty each route declares; handlers are one
 * service call and a wire mapping.
 */
export function registerManagementRoutes(app: FastifyInstance, d: Omit<ManagementDeps, 'hsms' | 'hsmId'>) {
  // Tenants and who am I.
  app.get('/tenants/self', { config: { operation: 'WhoAmI', signedIn: true } }, async (req) => {
    const c = req.caller!;
    return {
      tenantId: c.principal.tenantId, objectId: c.principal.objectId, clientId: c.principal.clientId, name: c.principal.name,
      type: c.principal.kind, roles: d.identity.rolesOf(c.principal.tenantId, c.principal.objectId),
    };
  });
  // ARM's tenant list: the tenants the caller may use. The platform tenant's Owners see every tenant.
  app.get('/tenants', { config: { operation: 'TenantList', signedIn: true } }, async (req) => {
    const own = req.caller!.principal.tenantId;
    const all = own === d.platformTenantId() && d.identity.rolesOf(own, req.caller!.principal.objectId).includes('Owner');
    return { value: d.identity.tenants().filter((t) => all || t.id === own).map(tenantWire) };
  });
  app.post<{ Body: { name: string } }>('/tenants', {
    config: { operation: 'TenantCreate', duty: 'manageTenants' },
    schema: { body: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } } },
  }, async (req) => {
    const { tenant, admin } = await d.identity.createTenant(req.body.name);
    return { ...tenantWire(tenant), admin: { ...servicePrincipalWire(admin.principal, admin.clientSecret), tenant: tenant.id } };
  });

  // Service principals (Graph-shaped).
  app.post<{ Params: TenantParams; Body: { displayName: string } }>('/tenants/:tid/servicePrincipals', {
    config: { operation: 'ServicePrincipalCreate', duty: 'manageServicePrincipals' },
    schema: { body: { type: 'object', required: ['displayName'], properties: { displayName: { type: 'string' } } } },
  }, async (req) => {
    const { principal, clientSecret } = await d.identity.createPrincipal(req.params.tid, 'ServicePrincipal', req.body.displayName);
    return servicePrincipalWire(principal, clientSecret);
  });
  app.get<{ Params: TenantParams }>('/tenants/:tid/servicePrincipals', { config: { operation: 'ServicePrincipalList', duty: 'readPlatform' } }, async (req) => ({
    value: d.identity.principals(req.params.tid).filter((p) => p.kind === 'ServicePrincipal').map((p) => servicePrincipalWire(p)),
  }));
  app.delete<{ Params: TenantParams & { ref: string } }>('/tenants/:tid/servicePrincipals/:ref', {
    config: { operation: 'ServicePrincipalDelete', duty: 'manageServicePrincipals' },
  }, async (req) => {
    const p = d.identity.findPrincipal(req.params.tid, req.params.ref);
    if (p.kind !== 'ServicePrincipal') throw errors.badParameter(`'${req.params.ref}' is a managed identity; delete it with the identity commands.`);
    if (p.objectId === req.caller!.principal.objectId) throw errors.badParameter('A principal cannot delete itself.');
    d.identity.deletePrincipal(p);
    return {};
  });

  // Event subscriptions (Event Grid shaped).
  app.get<{ Params: TenantParams & { name: string } }>(`${KV}/vaults/:name/eventSubscriptions`, { config: { operation: 'EventSubscriptionList', duty: 'manageVaults' } }, async (req) => ({
    value: d.vaults.subscriptions(req.params.tid, req.params.name).map((s) => eventSubscriptionWire(d.vaultId(d.vaults.get(req.params.tid, req.params.name)), s)),
  }));
  app.put<{ Params: TenantParams & { name: string; sub: string }; Body: { properties: { destination: { properties: { endpointUrl: string } }; filter?: { includedEventTypes?: string[] | null } } } }>(
    `${KV}/vaults/:name/eventSubscriptions/:sub`, {
      config: { operation: 'EventSubscriptionPut', duty: 'manageVaults' },
      schema: { body: { type: 'object', required: ['properties'], properties: { properties: { type: 'object', required: ['destination'], properties: { destination: { type: 'object', required: ['properties'], properties: { properties: { type: 'object', required: ['endpointUrl'], properties: { endpointUrl: { type: 'string' } } } } }, filter: { type: 'object' } } } } } },
    }, async (req) => {
      const p = req.body.properties;
      const s = d.vaults.putSubscription(req.params.tid, req.params.name, req.params.sub, p.destination.properties.endpointUrl, p.filter?.includedEventTypes ?? []);
      return eventSubscriptionWire(d.vaultId(d.vaults.get(req.params.tid, req.params.name)), s);
    });
  app.delete<{ Params: TenantParams & { name: string; sub: string } }>(`${KV}/vaults/:name/eventSubscriptions/:sub`, { config: { operation: 'EventSubscriptionDelete', duty: 'manageVaults' } }, async (req) => {
    d.vaults.deleteSubscription(req.params.tid, req.params.name, req.params.sub);
    return {};
  });

  // Audit.
  app.get<{ Params: TenantParams }>(`${KV}/auditEvents`, { config: { operation: 'AuditList', duty: 'readAudit' } }, async (req) => {
    const q = queryOf(req);
    const top = q.get('top');
    if (top !== null && !/^\d+$/.test(top)) throw errors.badParameter('top must be a whole number.');
    const since = q.get('since') ?? undefined;
    if (since !== undefined && Number.isNaN(Date.parse(since))) throw errors.badParameter('since must be an ISO 8601 time.');
    return {
      value: d.audit.list({
        tenantId: req.params.tid, vault: q.get('vault') ?? undefined, callerObjectId: q.get('caller') ?? undefined,
        operation: q.get('operation') ?? undefined, result: q.get('result') ?? undefined, key: q.get('key') ?? undefined,
        since: since && new Date(since).toISOString(), top: top === null ? 100 : Number(top),
      }),
    };
  });
  app.post<{ Params: TenantParams }>(`${KV}/auditEvents/verify`, { config: { operation: 'AuditVerify', duty: 'readAudit' } }, async (req) => d.audit.verify(req.params.tid));
}
