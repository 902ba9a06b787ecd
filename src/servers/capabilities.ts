import { ApiError, errors } from '../lib/errors.js';
import type { Sku } from './model/server.js';

/**
 * What pgbyok offers a flexible server, in one place: the capabilities answer is built from it and every
 * create or update is checked against it, so a client that validates against capabilities (az does) and the
 * server itself agree. SKUs are labels here: every server runs the machine's PostgreSQL 15 with its own
 * settings, whatever compute it names.
 */

export const DEFAULT_SKU: Sku = { name: 'Standard_D2s_v3', tier: 'GeneralPurpose' };

export const TIERS: Record<Sku['tier'], { name: string; vCores: number }[]> = {
  Burstable: [{ name: 'Standard_B1ms', vCores: 1 }, { name: 'Standard_B2s', vCores: 2 }, { name: 'Standard_B2ms', vCores: 2 }],
  GeneralPurpose: [
    { name: 'Standard_D2s_v3', vCores: 2 }, { name: 'Standard_D4s_v3', vCores: 4 }, { name: 'Standard_D8s_v3', vCores: 8 },
    { name: 'Standard_D2ds_v5', vCores: 2 }, { name: 'Standard_D4ds_v5', vCores: 4 },
  ],
  MemoryOptimized: [
    { name: 'Standard_E2s_v3', vCores: 2 }, { name: 'Standard_E4s_v3', vCores: 4 }, { name: 'Standard_E2ds_v5', vCores: 2 }, { name: 'Standard_E4ds_v5', vCores: 4 },
  ],
};

/** The sizes a client is offered (az checks its choice, 128 GiB by default, against this list); any whole GiB from 1 is accepted. */
export const STORAGE_SIZES_GB = [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];
export const DEFAULT_STORAGE_GB = 128;
export const VERSIONS = ['15'];

/** A SKU pgbyok offers (names compared without case; the tier, when given, must be the SKU's), in its canonical spelling. */
export function requireSku(sku: { name?: string; tier?: string } | undefined, fallback: Sku = DEFAULT_SKU): Sku {
  if (!sku || (sku.name === undefined && sku.tier === undefined)) return fallback;
  const tierName = sku.tier === undefined ? undefined : (Object.keys(TIERS) as Sku['tier'][]).find((t) => t.toLowerCase() === sku.tier!.toLowerCase());
  if (sku.tier !== undefined && !tierName) {
    throw new ApiError(400, 'InvalidSkuTier', `The SKU tier '${sku.tier}' is not offered; use one of ${Object.keys(TIERS).join(', ')}.`);
  }
  if (sku.name === undefined) return { name: TIERS[tierName!][0].name, tier: tierName! };
  for (const [tier, skus] of Object.entries(TIERS) as [Sku['tier'], { name: string }[]][]) {
    const found = skus.find((s) => s.name.toLowerCase() === sku.name!.toLowerCase());
    if (!found) continue;
    if (tierName && tierName !== tier) throw new ApiError(400, 'InvalidSkuTier', `The SKU ${found.name} is of tier ${tier}, not ${tierName}.`);
    return { name: found.name, tier };
  }
  const offered = Object.entries(TIERS).map(([t, s]) => `${t}: ${s.map((x) => x.name).join(', ')}`).join('; ');
  throw new ApiError(400, 'InvalidSkuName', `The SKU '${sku.name}' is not offered in pgbyok (${offered}).`);
}

/** High availability: pgbyok runs one PostgreSQL per server, so only `Disabled`. */
export function requireHighAvailability(ha: { mode?: string } | undefined): void {
  if (ha?.mode !== undefined && ha.mode !== 'Disabled') {
    throw errors.badParameter(`High availability mode '${ha.mode}' is not offered: pgbyok runs one PostgreSQL per server (use Disabled; read replicas are the way to a second copy).`, 'HighAvailabilityNotSupported');
  }
}

/** Sign-in to a server: PostgreSQL passwords only (Microsoft Entra authentication is not offered). */
export function requireAuthConfig(a: { activeDirectoryAuth?: string; passwordAuth?: string } | undefined): void {
  if (a?.activeDirectoryAuth !== undefined && a.activeDirectoryAuth !== 'Disabled') {
    throw errors.badParameter('Microsoft Entra authentication is not offered: set authConfig.activeDirectoryAuth to Disabled (PostgreSQL password authentication is).', 'ActiveDirectoryAuthNotSupported');
  }
  if (a?.passwordAuth !== undefined && a.passwordAuth !== 'Enabled') {
    throw errors.badParameter('Password authentication cannot be disabled: it is the only sign-in pgbyok offers (authConfig.passwordAuth Enabled).', 'PasswordAuthRequired');
  }
}

/** Networking: a public endpoint on the machine; no virtual networks or private DNS zones. */
export function requireNetwork(n: { delegatedSubnetResourceId?: string; privateDnsZoneArmResourceId?: string; publicNetworkAccess?: string } | undefined): void {
  if (n?.delegatedSubnetResourceId || n?.privateDnsZoneArmResourceId) {
    throw errors.badParameter('Private access (a delegated subnet or a private DNS zone) is not offered: pgbyok servers have a public endpoint on the machine.', 'VirtualNetworkNotSupported');
  }
  if (n?.publicNetworkAccess !== undefined && n.publicNetworkAccess !== 'Enabled') {
    throw errors.badParameter(`network.publicNetworkAccess '${n.publicNetworkAccess}' is not offered: a pgbyok server is reached through its endpoint on the machine (Enabled).`, 'PublicNetworkAccessRequired');
  }
}
