/** Domain model of vaults and keys. Azure's wire shapes live in `keys.wire.ts` / `vault.wire.ts`, not here. */

export const KEY_PERMISSIONS = [
  'get', 'list', 'create', 'update', 'import', 'delete', 'recover', 'backup', 'restore', 'purge',
  'rotate', 'getrotationpolicy', 'setrotationpolicy', 'wrapKey', 'unwrapKey', 'encrypt', 'decrypt', 'sign', 'verify',
] as const;
export type KeyPermission = (typeof KEY_PERMISSIONS)[number];

export interface NetworkAcls {
  defaultAction: 'Allow' | 'Deny';
  bypass: 'AzureServices' | 'None';
  ipRules: string[];
}

/** A Managed HSM's own state (a vault of kind 'managedHsm'). */
export interface HsmState {
  initialAdminObjectIds: string[];
  sku: string;
  /** NotActivated until the security domain is downloaded (or uploaded). */
  activation: 'NotActivated' | 'Active';
  /** The security domain: its id, its key in the token (CKA_ID), and that key's check value. */
  domainId?: string;
  domainKeyId?: string;
  domainKcv?: string;
  /** The RSA transfer key in the token for a security-domain upload (made on first ask). */
  transferKeyId?: string;
  /** When the domain was downloaded or uploaded (seconds). */
  activatedAt?: number;
}

export type VaultKind = 'vault' | 'managedHsm';

export interface Vault {
  /** 'managedHsm': a Managed HSM, whose keys live in the PKCS#11 token and whose data plane answers to local RBAC. */
  kind: VaultKind;
  hsm?: HsmState;
  id: string;
  tenantId: string;
  name: string;
  location: string;
  retentionDays: number;
  purgeProtection: boolean;
  publicNetworkAccess: 'Enabled' | 'Disabled';
  networkAcls: NetworkAcls;
  /** The data plane is authorized by role assignments (the Key Vault data roles), not by access policies. */
  enableRbacAuthorization: boolean;
  created: number;
  updated: number;
  deletedAt?: number;
  scheduledPurge?: number;
}

export interface AccessPolicy {
  tenantId: string;
  objectId: string;
  keyPermissions: KeyPermission[];
}

export const KEY_OPS = ['encrypt', 'decrypt', 'sign', 'verify', 'wrapKey', 'unwrapKey', 'import'] as const;
export type KeyOp = (typeof KEY_OPS)[number];
export const RSA_SIZES = [2048, 3072, 4096] as const;

export interface KeyVersion {
  vaultId: string;
  name: string;
  version: string;
  seq: number;
  /** 'RSA' in a vault; 'RSA-HSM' or 'oct-HSM' (AES-256) in a Managed HSM. */
  kty: 'RSA' | 'RSA-HSM' | 'oct-HSM';
  keySize: number;
  /** An HSM key's CKA_ID in the PKCS#11 token (its material never leaves the token). */
  tokenKeyId?: string;
  keyOps: KeyOp[];
  enabled: boolean;
  nbf?: number;
  exp?: number;
  created: number;
  updated: number;
  tags?: Record<string, string>;
  n: string;
  e: string;
}

export interface LifetimeAction {
  trigger: { timeAfterCreate?: string; timeBeforeExpiry?: string };
  action: { type: 'Rotate' | 'Notify' };
}

export interface RotationPolicy {
  lifetimeActions: LifetimeAction[];
  expiryTime?: string;
  created: number;
  updated: number;
}

export interface KeyRecord {
  vaultId: string;
  name: string;
  created: number;
  rotationPolicy?: RotationPolicy;
  deletedAt?: number;
  scheduledPurge?: number;
}

export interface EventSubscription {
  vaultId: string;
  name: string;
  endpoint: string;
  eventTypes: string[];
  created: number;
}

/** Events a vault emits, named as Azure Event Grid names Key Vault's (plus the ones Azure lacks). */
export const VAULT_EVENT_TYPES = [
  'Microsoft.KeyVault.KeyNewVersionCreated',
  'Microsoft.KeyVault.KeyNearExpiry',
  'Microsoft.KeyVault.KeyExpired',
  'Microsoft.KeyVault.KeyDisabled',
  'Microsoft.KeyVault.KeyEnabled',
  'Microsoft.KeyVault.KeyDeleted',
  'Microsoft.KeyVault.KeyRecovered',
  'Microsoft.KeyVault.KeyPurged',
  'Microsoft.KeyVault.VaultAccessPolicyChanged',
  'Microsoft.KeyVault.VaultNetworkRulesChanged',
  'Microsoft.KeyVault.VaultDeleted',
  'Microsoft.KeyVault.VaultRecovered',
] as const;
export type VaultEventType = (typeof VAULT_EVENT_TYPES)[number];
