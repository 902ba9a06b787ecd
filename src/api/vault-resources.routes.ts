import type { FastifyInstance, FastifyRequest } from 'fastify';
import { errors } from '../lib/errors.js';
import type { IdentityService } from '../identity/identity.service.js';
import type { VaultService } from '../vault/vaults.service.js';
import type { Vault } from '../vault/vault.types.js';
import { resourceId, type ArmService } from '../arm/arm.service.js';
import { armRoute, LIST_LEVELS, RESOURCE_LEVELS } from '../arm/routing.js';
import type { GroupMember } from '../arm/resources.routes.js';
import { deletedVaultWire, vaultWire } from './arm.wire.js';
import { keyVaultLookups, networkAclsOf, networkAclsSchema } from './keyvault-arm.js';
import type { Names } from '../lib/names.js';

/**
 * Microsoft.KeyVault/vaults in the management plane, as ARM serves it: PUT is create-or-update with the
 * whole vault (az keyvault set-policy, update and network-rule all GET then PUT it back), soft-deleted
 * vaults live at `locations/{loc}/deletedVaults/{name}`, and `createMode: recover` brings one back.
 */

export const VAULT_TYPE = 'Microsoft.KeyVault/vaults';
const KV = '/providers/Microsoft.KeyVault';
type Named = { name: string };

interface PolicyBody { tenantId?: string; objectId: string; applicationId?: string; permissions: { keys?: string[]; secrets?: string[]; certificates?: string[] } }
interface VaultBody {
  location?: string;
  tags?: Record<string, string>;
  properties?: {
    tenantId?: string;
    createMode?: 'default' | 'recover';
    softDeleteRetentionInDays?: number; enablePurgeProtection?: boolean | null; publicNetworkAccess?: 'Enabled' | 'Disabled';
    enableRbacAuthorization?: boolean | null;
    networkAcls?: { defaultAction?: 'Allow' | 'Deny'; bypass?: 'AzureServices' | 'None'; ipRules?: { value: string }[] };
    accessPolicies?: PolicyBody[];
  };
}

const policySchema = {
  type: 'object', required: ['objectId', 'permissions'],
  properties: {
    tenantId: { type: 'string' }, objectId: { type: 'string' }, applicationId: { type: ['string', 'null'] },
    permissions: { type: 'object', properties: { keys: { type: 'array', items: { type: 'string' } }, secrets: { type: 'array' }, certificates: { type: 'array' }, storage: { type: 'array' } } },
  },
};
const vaultBodySchema = {
  type: 'object',
  properties: {
    location: { type: 'string' },
    tags: { type: 'object', additionalProperties: { type: 'string' } },
    properties: {
      type: 'object',
      properties: {
        tenantId: { type: 'string' },
        createMode: { type: 'string', enum: ['default', 'recover'] },
        softDeleteRetentionInDays: { type: 'integer' },
        enablePurgeProtection: { type: ['boolean', 'null'] },
        enableSoftDelete: { type: ['boolean', 'null'], enum: [true, null] },
        enableRbacAuthorization: { type: ['boolean', 'null'] },
        publicNetworkAccess: { type: 'string' },
        networkAcls: networkAclsSchema,
        accessPolicies: { type: ['array', 'null'], maxItems: 1024, items: policySchema },
      },
    },
  },
};

export function registerVaultResourceRoutes(app: FastifyInstance, d: { identity: IdentityService; vaults: VaultService; arm: ArmService; names: Names }): GroupMember {
  const { arm, vaults } = d;
  const { placed, find, deletedAt } = keyVaultLookups({ arm, type: VAULT_TYPE, noun: 'vault', list: vaults.list, listDeleted: vaults.listDeleted });
  const out = (v: Vault) => vaultWire(v, vaults.policies(v), d.names, resourceId(placed(v)));
  const deletedOut = (v: Vault) => { const p = placed(v); return deletedVaultWire(v, p.subscriptionId, resourceId(p)); };
  const aclsOf = (b: VaultBody) => networkAclsOf(b.properties?.networkAcls);
  const policiesOf = (req: FastifyRequest, list: PolicyBody[]) => list.map((p) => ({
    objectId: d.identity.findPrincipalIdOr(req.arm.tenantId, p.objectId), tenantId: p.tenantId, keyPermissions: p.permissions.keys ?? [],
  }));

  arm.registerType({ readDuty: 'readPlatform', type: VAULT_TYPE, list: (tid) => vaults.list(tid).map((v) => ({ name: v.name, location: v.location })) });

  armRoute<Named, VaultBody>(app, 'PUT', `${KV}/vaults/:name`, RESOURCE_LEVELS, {
    config: { operation: 'VaultCreate', duty: 'manageVaults' }, schema: { body: vaultBodySchema },
  }, async (req, reply) => {
    const b = req.body ?? {};
    const p = b.properties ?? {};
    if (p.tenantId !== undefined && p.tenantId !== req.arm.tenantId) {
      throw errors.badParameter(`properties.tenantId '${p.tenantId}' is not the tenant of this subscription (${req.arm.tenantId}); a vault's data plane trusts its own tenant only.`);
    }
    const policies = p.accessPolicies ? policiesOf(req, p.accessPolicies) : undefined;
    const input = {
      retentionDays: p.softDeleteRetentionInDays, purgeProtection: p.enablePurgeProtection ?? undefined,
      publicNetworkAccess: p.publicNetworkAccess, networkAcls: aclsOf(b), enableRbacAuthorization: p.enableRbacAuthorization ?? undefined,
    };
    const existing = vaults.list(req.arm.tenantId).find((x) => x.name === req.params.name);
    if (existing) {
      if (!arm.inScope(req.arm, placed(existing))) arm.plan(req.arm, VAULT_TYPE, existing.name, existing.location); // throws: it is in another group
      return out(vaults.replace(req.arm.tenantId, existing.name, input, policies));
    }
    if (p.createMode === 'recover') {
      const gone = vaults.listDeleted(req.arm.tenantId).find((x) => x.name === req.params.name);
      if (!gone) throw errors.notFound('ResourceNotFound', `No soft-deleted vault '${req.params.name}' exists in this tenant to recover.`);
      if (!req.arm.tenantPath && !arm.inScope(req.arm, placed(gone))) arm.plan(req.arm, VAULT_TYPE, gone.name, gone.location);
      return out(await vaults.recover(req.arm.tenantId, gone.name));
    }
    if (vaults.listDeleted(req.arm.tenantId).some((x) => x.name === req.params.name)) {
      throw errors.conflict(`A soft-deleted vault named '${req.params.name}' exists; recover it (properties.createMode: recover) or purge it first.`, 'ConflictError');
    }
    const location = b.location ?? '';
    const plan = arm.plan(req.arm, VAULT_TYPE, req.params.name, location, b.tags);
    // Without an accessPolicies list (pgbyok's own CLI) the creator gets every key permission, as az does;
    // with one (ARM clients, az) the vault holds exactly what was sent. An RBAC vault's creator gets nothing:
    // its data plane answers to role assignments only.
    const v = await arm.create(plan, location, () => vaults.create(req.arm.tenantId, { name: req.params.name, location, ...input, policies }, req.caller!.principal.objectId));
    return reply.code(req.arm.tenantPath ? 200 : 201).send(out(v));
  });
  armRoute<Named, VaultBody>(app, 'PATCH', `${KV}/vaults/:name`, RESOURCE_LEVELS, {
    config: { operation: 'VaultUpdate', duty: 'manageVaults' }, schema: { body: vaultBodySchema },
  }, async (req) => {
    const v = find(req, req.params.name);
    const p = req.body?.properties ?? {};
    return out(vaults.replace(v.tenantId, v.name, {
      retentionDays: p.softDeleteRetentionInDays, purgeProtection: p.enablePurgeProtection ?? undefined,
      publicNetworkAccess: p.publicNetworkAccess, networkAcls: aclsOf(req.body ?? {}), enableRbacAuthorization: p.enableRbacAuthorization ?? undefined,
    }, p.accessPolicies ? policiesOf(req, p.accessPolicies) : undefined));
  });
  armRoute(app, 'GET', `${KV}/vaults`, LIST_LEVELS, { config: { operation: 'VaultList', duty: 'readPlatform' } }, async (req) => ({
    value: vaults.list(req.arm.tenantId).filter((v) => arm.inScope(req.arm, placed(v))).map(out),
  }));
  armRoute<Named>(app, 'GET', `${KV}/vaults/:name`, RESOURCE_LEVELS, { config: { operation: 'VaultGet', duty: 'readPlatform' } }, async (req) => out(find(req, req.params.name)));
  armRoute<Named>(app, 'DELETE', `${KV}/vaults/:name`, RESOURCE_LEVELS, { config: { operation: 'VaultDelete', duty: 'manageVaults' } }, async (req) =>
    deletedOut(await vaults.delete(req.arm.tenantId, find(req, req.params.name).name)));

  // Access policies: ARM's `vaults/{name}/accessPolicies/{add|replace|remove}`.
  armRoute<Named & { kind: 'add' | 'replace' | 'remove' }, { properties: { accessPolicies: PolicyBody[] } }>(app, 'PUT', `${KV}/vaults/:name/accessPolicies/:kind`, RESOURCE_LEVELS, {
    config: { operation: 'VaultAccessPolicyUpdate', duty: 'manageVaults' },
    schema: { body: { type: 'object', required: ['properties'], properties: { properties: { type: 'object', required: ['accessPolicies'], properties: { accessPolicies: { type: 'array', maxItems: 1024, items: policySchema } } } } } },
  }, async (req) => {
    const v = find(req, req.params.name);
    vaults.updatePolicies(v.tenantId, v.name, req.params.kind, policiesOf(req, req.body.properties.accessPolicies));
    const after = vaults.get(v.tenantId, v.name);
    return { id: `${resourceId(placed(after))}/accessPolicies/${req.params.kind}`, type: 'Microsoft.KeyVault/vaults/accessPolicies', properties: { accessPolicies: out(after).properties.accessPolicies } };
  });

  // Soft-deleted vaults: listed per subscription (and on the tenant path), addressed by location.
  armRoute(app, 'GET', `${KV}/deletedVaults`, ['tenant', 'subscription'], { config: { operation: 'DeletedVaultList', duty: 'manageVaults' } }, async (req) => ({
    value: vaults.listDeleted(req.arm.tenantId).filter((v) => req.arm.tenantPath || placed(v).subscriptionId === req.arm.subscriptionId).map(deletedOut),
  }));
  armRoute<Named & { loc: string }>(app, 'GET', `${KV}/locations/:loc/deletedVaults/:name`, ['tenant', 'subscription'], { config: { operation: 'DeletedVaultGet', duty: 'manageVaults' } }, async (req) =>
    deletedOut(deletedAt(req, req.params.name, req.params.loc)));
  armRoute<Named & { loc: string }>(app, 'POST', `${KV}/locations/:loc/deletedVaults/:name/purge`, ['tenant', 'subscription'], { config: { operation: 'VaultPurge', duty: 'manageVaults' } }, async (req, reply) => {
    const v = deletedAt(req, req.params.name, req.params.loc);
    vaults.purge(v.tenantId, v.name);
    arm.unplace(v.tenantId, VAULT_TYPE, v.name);
    return reply.code(200).send({});
  });
  // pgbyok's own forms (the CLI): recover and purge by name on the tenant path.
  armRoute<Named>(app, 'POST', `${KV}/deletedVaults/:name/recover`, ['tenant'], { config: { operation: 'VaultRecover', duty: 'manageVaults' } }, async (req) =>
    out(await vaults.recover(req.arm.tenantId, deletedAt(req, req.params.name).name)));
  armRoute<Named>(app, 'DELETE', `${KV}/deletedVaults/:name`, ['tenant'], { config: { operation: 'VaultPurge', duty: 'manageVaults' } }, async (req) => {
    const v = deletedAt(req, req.params.name);
    vaults.purge(v.tenantId, v.name);
    arm.unplace(v.tenantId, VAULT_TYPE, v.name);
    return {};
  });

  return { type: VAULT_TYPE, duty: 'manageVaults', remove: async (req, name) => { await vaults.delete(req.arm.tenantId, name); } };
}
