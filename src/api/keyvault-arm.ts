import type { FastifyRequest } from 'fastify';
import { errors } from '../lib/errors.js';
import type { Vault } from '../vault/vault.types.js';
import { armErrors, type ArmService } from '../arm/arm.service.js';

/**
 * What Microsoft.KeyVault's two resource types (vaults and managedHSMs) share on ARM paths: the network
 * rules as the body carries them, and finding a live or a soft-deleted one in the caller's scope.
 */

export interface NetworkAclsBody { defaultAction?: 'Allow' | 'Deny'; bypass?: 'AzureServices' | 'None'; ipRules?: { value: string }[] | null }

/** The body schema of `properties.networkAcls`, as both resource types take it. */
export const networkAclsSchema = {
  type: ['object', 'null'],
  properties: {
    defaultAction: { type: 'string' }, bypass: { type: 'string' },
    ipRules: { type: ['array', 'null'], maxItems: 1000, items: { type: 'object', required: ['value'], properties: { value: { type: 'string' } } } },
  },
};

/** The network rules a PUT or PATCH sends, as the domain takes them (only what was sent). */
export function networkAclsOf(n: NetworkAclsBody | null | undefined) {
  if (!n) return undefined;
  return {
    ...(n.defaultAction !== undefined ? { defaultAction: n.defaultAction } : {}),
    ...(n.bypass !== undefined ? { bypass: n.bypass } : {}),
    ...(n.ipRules ? { ipRules: n.ipRules.map((r) => r.value) } : {}),
  };
}

export function keyVaultLookups(d: {
  arm: ArmService; type: string; noun: string;
  list: (tenantId: string) => Vault[]; listDeleted: (tenantId: string) => Vault[];
}) {
  const placed = (v: Vault) => d.arm.placementOf(v.tenantId, d.type, v.name, v.location);
  return {
    placed,
    /** A live one by name in the addressed scope, or ARM's ResourceNotFound. */
    find(req: FastifyRequest, name: string): Vault {
      const v = d.list(req.arm.tenantId).find((x) => x.name.toLowerCase() === name.toLowerCase());
      if (!v || !d.arm.inScope(req.arm, placed(v))) throw armErrors.resourceNotFound(d.type, name, req.arm.resourceGroup);
      return v;
    },
    /** A soft-deleted one by name (and location) in the addressed subscription, or ResourceNotFound. */
    deletedAt(req: FastifyRequest, name: string, location?: string): Vault {
      const v = d.listDeleted(req.arm.tenantId).find((x) => x.name.toLowerCase() === name.toLowerCase() && (!location || x.location === location.toLowerCase()));
      if (!v || (!req.arm.tenantPath && placed(v).subscriptionId !== req.arm.subscriptionId)) {
        throw errors.notFound('ResourceNotFound', `No soft-deleted ${d.noun} '${name}'${location ? ` in ${location}` : ''} exists in this subscription.`);
      }
      return v;
    },
  };
}
