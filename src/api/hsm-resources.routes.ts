import type { FastifyInstance } from 'fastify';
import { errors } from '../lib/errors.js';
import type { IdentityService } from '../identity/identity.service.js';
import type { Vault } from '../vault/vault.types.js';
import type { HsmService } from '../hsm/hsms.service.js';
import { resourceId, type ArmService } from '../arm/arm.service.js';
import { armRoute, LIST_LEVELS, RESOURCE_LEVELS } from '../arm/routing.js';
import type { GroupMember } from '../arm/resources.routes.js';
import type { Names } from '../lib/names.js';
import { keyVaultLookups, networkAclsOf, networkAclsSchema, type NetworkAclsBody } from './keyvault-arm.js';

/**
 * Microsoft.KeyVault/managedHSMs in the management plane (api-version 2021-10-01 to 2025-05-01 shapes): PUT
 * creates (an HSM's properties other than its network rules and purge protection are fixed at creation),
 * soft-deleted HSMs live at `locations/{loc}/deletedManagedHSMs/{name}`, `createMode: recover` or the
 * tenant-path recover brings one back, and purge destroys its keys in the token. A new HSM is NotActivated
 * until its security domain is downloaded on its data plane.
 */

export const HSM_TYPE = 'Microsoft.KeyVault/managedHSMs';
const KV = '/providers/Microsoft.KeyVault';
type Named = { name: string };

interface HsmBody {
  location?: string;
  tags?: Record<string, string>;
  sku?: { family?: string; name?: string };
  properties?: {
    tenantId?: string;
    createMode?: 'default' | 'recover';
    initialAdminObjectIds?: string[];
    softDeleteRetentionInDays?: number;
    enableSoftDelete?: boolean | null;
    enablePurgeProtection?: boolean | null;
    publicNetworkAccess?: 'Enabled' | 'Disabled';
    networkAcls?: NetworkAclsBody | null;
  };
}

const hsmBodySchema = {
  type: 'object',
  properties: {
    location: { type: 'string' },
    tags: { type: 'object', additionalProperties: { type: 'string' } },
    sku: { type: 'object', properties: { family: { type: 'string' }, name: { type: 'string' } } },
    properties: {
      type: 'object',
      properties: {
        tenantId: { type: 'string' },
        createMode: { type: 'string', enum: ['default', 'recover'] },
        initialAdminObjectIds: { type: 'array', maxItems: 32, items: { type: 'string' } },
        softDeleteRetentionInDays: { type: 'integer' },
        enableSoftDelete: { type: ['boolean', 'null'], enum: [true, null] },
        enablePurgeProtection: { type: ['boolean', 'null'] },
        publicNetworkAccess: { type: 'string' },
        networkAcls: networkAclsSchema,
      },
    },
  },
};

const iso = (s: number) => new Date(s * 1000).toISOString();

export function hsmWire(v: Vault, names: Pick<Names, 'hsmUri'>, id: string) {
  const active = v.hsm?.activation === 'Active';
  return {
    id,
    name: v.name,
    type: HSM_TYPE,
    location: v.location,
    sku: { family: 'B', name: v.hsm?.sku ?? 'Standard_B1' },
    properties: {
      tenantId: v.tenantId,
      initialAdminObjectIds: v.hsm?.initialAdminObjectIds ?? [],
      hsmUri: names.hsmUri(v.name),
      enableSoftDelete: true,
      softDeleteRetentionInDays: v.retentionDays,
      enablePurgeProtection: v.purgeProtection,
      publicNetworkAccess: v.publicNetworkAccess,
      networkAcls: {
        defaultAction: v.networkAcls.defaultAction, bypass: v.networkAcls.bypass,
        ipRules: v.networkAcls.ipRules.map((value) => ({ value })), virtualNetworkRules: [],
      },
      provisioningState: active ? 'Activated' : 'Succeeded',
      statusMessage: active ? 'The Managed HSM is provisioned and ready to use.' : 'The Managed HSM is provisioned; download its security domain to activate it.',
      securityDomainProperties: {
        activationStatus: active ? 'Active' : 'NotActivated',
        activationStatusMessage: active ? 'Your HSM has been activated and can be used for cryptographic operations.' : 'Your HSM has been provisioned, but cannot be used for cryptographic operations until it is activated. To activate the HSM, download the security domain.',
      },
      regions: [],
      privateEndpointConnections: [],
    },
    systemData: { createdAt: iso(v.created), lastModifiedAt: iso(v.updated) },
  };
}

export function deletedHsmWire(v: Vault, subscriptionId: string, hsmId: string) {
  return {
    id: `/subscriptions/${subscriptionId}/providers/Microsoft.KeyVault/locations/${v.location}/deletedManagedHSMs/${v.name}`,
    name: v.name,
    type: 'Microsoft.KeyVault/deletedManagedHSMs',
    properties: {
      mhsmId: hsmId, location: v.location, deletionDate: iso(v.deletedAt!), scheduledPurgeDate: iso(v.scheduledPurge!), purgeProtectionEnabled: v.purgeProtection,
    },
  };
}

export function registerHsmResourceRoutes(app: FastifyInstance, d: { identity: IdentityService; hsms: HsmService; arm: ArmService; names: Names }): GroupMember {
  const { arm, hsms } = d;
  const { placed, find, deletedAt } = keyVaultLookups({ arm, type: HSM_TYPE, noun: 'managed HSM', list: hsms.list, listDeleted: hsms.listDeleted });
  const out = (v: Vault) => hsmWire(v, d.names, resourceId(placed(v)));
  const deletedOut = (v: Vault) => { const p = placed(v); return deletedHsmWire(v, p.subscriptionId, resourceId(p)); };
  const aclsOf = (b: HsmBody) => networkAclsOf(b.properties?.networkAcls);
  const update = (v: Vault, b: HsmBody) => {
    const p = b.properties ?? {};
    if (p.initialAdminObjectIds && JSON.stringify([...p.initialAdminObjectIds].map((x) => x.toLowerCase()).sort()) !== JSON.stringify([...(v.hsm?.initialAdminObjectIds ?? [])].sort())) {
      throw errors.badParameter('properties.initialAdminObjectIds cannot be changed after the managed HSM is created; manage its administrators with local role assignments.', 'InvalidParameter');
    }
    return hsms.replace(v.tenantId, v.name, {
      retentionDays: p.softDeleteRetentionInDays, purgeProtection: p.enablePurgeProtection ?? undefined,
      publicNetworkAccess: p.publicNetworkAccess, networkAcls: aclsOf(b),
    });
  };

  arm.registerType({ readDuty: 'readPlatform', type: HSM_TYPE, list: (tid) => hsms.list(tid).map((v) => ({ name: v.name, location: v.location })) });

  armRoute<Named, HsmBody>(app, 'PUT', `${KV}/managedHSMs/:name`, RESOURCE_LEVELS, {
    config: { operation: 'ManagedHsmCreate', duty: 'manageVaults' }, schema: { body: hsmBodySchema },
  }, async (req, reply) => {
    const b = req.body ?? {};
    const p = b.properties ?? {};
    if (p.tenantId !== undefined && p.tenantId !== req.arm.tenantId) {
      throw errors.badParameter(`properties.tenantId '${p.tenantId}' is not the tenant of this subscription (${req.arm.tenantId}).`, 'InvalidParameter');
    }
    const existing = hsms.list(req.arm.tenantId).find((x) => x.name.toLowerCase() === req.params.name.toLowerCase());
    if (existing) {
      if (!arm.inScope(req.arm, placed(existing))) arm.plan(req.arm, HSM_TYPE, existing.name, existing.location); // throws: another group
      return out(update(existing, b));
    }
    if (p.createMode === 'recover') {
      const gone = hsms.listDeleted(req.arm.tenantId).find((x) => x.name.toLowerCase() === req.params.name.toLowerCase());
      if (!gone) throw errors.notFound('ResourceNotFound', `No soft-deleted managed HSM '${req.params.name}' exists in this tenant to recover.`);
      if (!req.arm.tenantPath && !arm.inScope(req.arm, placed(gone))) arm.plan(req.arm, HSM_TYPE, gone.name, gone.location);
      return out(await hsms.recover(req.arm.tenantId, gone.name));
    }
    if (hsms.listDeleted(req.arm.tenantId).some((x) => x.name.toLowerCase() === req.params.name.toLowerCase())) {
      throw errors.conflict(`A soft-deleted managed HSM named '${req.params.name}' exists; recover it (properties.createMode: recover) or purge it first.`, 'ConflictError');
    }
    const location = b.location ?? '';
    const plan = arm.plan(req.arm, HSM_TYPE, req.params.name, location, b.tags);
    const admins = (p.initialAdminObjectIds ?? []).map((a) => d.identity.findPrincipalIdOr(req.arm.tenantId, a));
    const v = await arm.create(plan, location, () => hsms.createHsm(req.arm.tenantId, {
      name: req.params.name, location, initialAdminObjectIds: admins, retentionDays: p.softDeleteRetentionInDays,
      purgeProtection: p.enablePurgeProtection ?? undefined, sku: b.sku?.name, publicNetworkAccess: p.publicNetworkAccess, networkAcls: aclsOf(b),
    }));
    return reply.code(req.arm.tenantPath ? 200 : 201).send(out(v));
  });
  armRoute<Named, HsmBody>(app, 'PATCH', `${KV}/managedHSMs/:name`, RESOURCE_LEVELS, {
    config: { operation: 'ManagedHsmUpdate', duty: 'manageVaults' }, schema: { body: hsmBodySchema },
  }, async (req) => out(update(find(req, req.params.name), req.body ?? {})));
  armRoute(app, 'GET', `${KV}/managedHSMs`, LIST_LEVELS, { config: { operation: 'ManagedHsmList', duty: 'readPlatform' } }, async (req) => ({
    value: hsms.list(req.arm.tenantId).filter((v) => arm.inScope(req.arm, placed(v))).map(out),
  }));
  armRoute<Named>(app, 'GET', `${KV}/managedHSMs/:name`, RESOURCE_LEVELS, { config: { operation: 'ManagedHsmGet', duty: 'readPlatform' } }, async (req) => out(find(req, req.params.name)));
  armRoute<Named>(app, 'DELETE', `${KV}/managedHSMs/:name`, RESOURCE_LEVELS, { config: { operation: 'ManagedHsmDelete', duty: 'manageVaults' } }, async (req) =>
    deletedOut(await hsms.delete(req.arm.tenantId, find(req, req.params.name).name)));

  armRoute<unknown, { name?: string }>(app, 'POST', `${KV}/checkMhsmNameAvailability`, ['tenant', 'subscription'], {
    config: { operation: 'ManagedHsmCheckName', duty: 'readPlatform' },
    schema: { body: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } } },
  }, async (req) => {
    const name = req.body.name ?? '';
    if (!/^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$/.test(name)) {
      return { nameAvailable: false, reason: 'AccountNameInvalid', message: `'${name}' is not a valid managed HSM name: 3-24 letters, digits and '-', starting with a letter and not ending with '-'.` };
    }
    const taken = hsms.nameTaken(name);
    return taken ? { nameAvailable: false, reason: 'AlreadyExists', message: `The name '${name}' is already in use.` } : { nameAvailable: true };
  });

  // Soft-deleted HSMs: listed per subscription (and on the tenant path), addressed by location.
  armRoute(app, 'GET', `${KV}/deletedManagedHSMs`, ['tenant', 'subscription'], { config: { operation: 'DeletedManagedHsmList', duty: 'manageVaults' } }, async (req) => ({
    value: hsms.listDeleted(req.arm.tenantId).filter((v) => req.arm.tenantPath || placed(v).subscriptionId === req.arm.subscriptionId).map(deletedOut),
  }));
  const purge = (v: Vault) => {
    hsms.purge(v.tenantId, v.name);
    arm.unplace(v.tenantId, HSM_TYPE, v.name);
  };
  armRoute<Named & { loc: string }>(app, 'GET', `${KV}/locations/:loc/deletedManagedHSMs/:name`, ['tenant', 'subscription'], { config: { operation: 'DeletedManagedHsmGet', duty: 'manageVaults' } }, async (req) =>
    deletedOut(deletedAt(req, req.params.name, req.params.loc)));
  armRoute<Named & { loc: string }>(app, 'POST', `${KV}/locations/:loc/deletedManagedHSMs/:name/purge`, ['tenant', 'subscription'], { config: { operation: 'ManagedHsmPurge', duty: 'manageVaults' } }, async (req, reply) => {
    purge(deletedAt(req, req.params.name, req.params.loc));
    return reply.code(200).send({});
  });
  armRoute<Named>(app, 'POST', `${KV}/deletedManagedHSMs/:name/recover`, ['tenant'], { config: { operation: 'ManagedHsmRecover', duty: 'manageVaults' } }, async (req) =>
    out(await hsms.recover(req.arm.tenantId, deletedAt(req, req.params.name).name)));
  armRoute<Named>(app, 'DELETE', `${KV}/deletedManagedHSMs/:name`, ['tenant'], { config: { operation: 'ManagedHsmPurge', duty: 'manageVaults' } }, async (req) => {
    purge(deletedAt(req, req.params.name));
    return {};
  });

  return { type: HSM_TYPE, duty: 'manageVaults', remove: async (req, name) => { await hsms.delete(req.arm.tenantId, name); } };
}
