import type { KeyRecord, KeyVersion, RotationPolicy, Vault } from './vault.types.js';

/**
 * Azure Key Vault's wire shapes (KeyBundle, KeyItem, DeletedKeyBundle, rotation policy), kept apart from the
 * domain model. Dates are unix seconds; ids are built from the origin the client used (the SDK follows them).
 */

export function recoveryLevel(v: Vault): string {
  const custom = v.retentionDays < 90 ? 'Customized' : '';
  return v.purgeProtection ? `${custom}Recoverable` : `${custom}Recoverable+Purgeable`;
}

export const keyId = (origin: string, name: string, version?: string) =>
  version ? `${origin}/keys/${name}/${version}` : `${origin}/keys/${name}`;

function attributes(v: KeyVersion, vault: Vault) {
  return {
    enabled: v.enabled,
    ...(v.nbf != null ? { nbf: v.nbf } : {}),
    ...(v.exp != null ? { exp: v.exp } : {}),
    created: v.created,
    updated: v.updated,
    recoveryLevel: recoveryLevel(vault),
    recoverableDays: vault.retentionDays,
    exportable: false,
  };
}

export function keyBundle(origin: string, vault: Vault, v: KeyVersion) {
  return {
    // An oct-HSM key shows no key material at all (its value never leaves the HSM).
    key: { kid: keyId(origin, v.name, v.version), kty: v.kty, key_ops: v.keyOps, ...(v.kty === 'oct-HSM' ? {} : { n: v.n, e: v.e }) },
    attributes: attributes(v, vault),
    ...(v.tags ? { tags: v.tags } : {}),
  };
}

export function keyItem(origin: string, vault: Vault, v: KeyVersion, versioned: boolean) {
  return {
    kid: keyId(origin, v.name, versioned ? v.version : undefined),
    attributes: attributes(v, vault),
    ...(v.tags ? { tags: v.tags } : {}),
  };
}

function deletedFields(origin: string, k: KeyRecord) {
  return { recoveryId: `${origin}/deletedkeys/${k.name}`, deletedDate: k.deletedAt, scheduledPurgeDate: k.scheduledPurge };
}

export function deletedKeyBundle(origin: string, vault: Vault, k: KeyRecord, v: KeyVersion) {
  return { ...deletedFields(origin, k), ...keyBundle(origin, vault, v) };
}

export function deletedKeyItem(origin: string, vault: Vault, k: KeyRecord, v: KeyVersion) {
  return { ...deletedFields(origin, k), ...keyItem(origin, vault, v, false) };
}

/** Azure returns this default policy for a key that never had one set. */
export const DEFAULT_ROTATION_POLICY: RotationPolicy = {
  lifetimeActions: [{ trigger: { timeBeforeExpiry: 'P30D' }, action: { type: 'Notify' } }],
  created: 0,
  updated: 0,
};

export function rotationPolicyWire(origin: string, name: string, p: RotationPolicy) {
  return {
    id: `${origin}/keys/${name}/rotationpolicy`,
    lifetimeActions: p.lifetimeActions,
    attributes: {
      ...(p.expiryTime ? { expiryTime: p.expiryTime } : {}),
      ...(p.created ? { created: p.created, updated: p.updated } : {}),
    },
  };
}

export function page<T>(items: T[], nextLink: string | null) {
  return { value: items, nextLink };
}
