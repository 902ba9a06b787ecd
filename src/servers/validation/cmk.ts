import type { Clock } from '../../lib/clock.js';
import { errors } from '../../lib/errors.js';
import type { Directory, IdentityInfo } from '../../keyaccess/directory.js';
import { KeyAccessError, parseKeyUri, type KeyAccess, type KeyPrincipal } from '../../keyaccess/key-access.js';
import { newDek } from '../../storage/volume.js';
import type { DataEncryption } from '../model/server.js';

/** Who asked, with the token they asked with (used to read vaults and identities on their behalf). */
export interface Caller {
  tenantId: string;
  objectId: string;
  name: string;
  token: string;
}

const RSA_SIZES = [2048, 3072, 4096];
/** Key Vault Crypto Service Encryption User: get, wrapKey and unwrapKey, what a server's identity needs on an RBAC vault. */
const CSEU_ROLE = 'e147488a-f6f5-4113-8e2d-b22465e65bf6';
/** Managed HSM Crypto Service Encryption User: the same for a key in a Managed HSM (a local role). */
const HSM_CSEU_ROLE = '33413926-3206-4cdd-b39a-83574fe37a17';

/**
 * A customer key validated as Azure validates it before anything is created: the identity exists, the
 * vault (or Managed HSM, which must also be activated) is the tenant's with soft-delete, 90 retention days
 * and purge protection, the key is an enabled, active RSA key of a supported size, and the identity can
 * get, list, wrap and unwrap with it. Every refusal names its rule.
 */
export function createCmkValidation(d: { directory: Directory; keys: KeyAccess; clock: Clock }) {
  return async (caller: Caller, keyUri: string | undefined, identityRef: string | undefined, region: string, sameRegion?: 'replica' | 'geo'): Promise<{ encryption: DataEncryption; identity: IdentityInfo }> => {
    if (!keyUri || !identityRef) {
      throw errors.badParameter('A customer-managed key needs both --key (the key URI) and --identity (a user-assigned identity that can reach it).', 'KeyAndIdentityRequired');
    }
    let parsed;
    try {
      parsed = parseKeyUri(keyUri);
    } catch (e) {
      throw errors.badParameter((e as Error).message, 'InvalidKeyUri');
    }
    const identity = await d.directory.identity(caller.tenantId, caller.token, identityRef);
    if (!identity) {
      throw errors.badParameter(`The identity '${identityRef}' is not a user-assigned managed identity of tenant ${caller.tenantId}.`, 'IdentityNotFound');
    }
    const vault = await d.directory.vaultForKey(caller.tenantId, caller.token, parsed.origin);
    if (!vault) {
      throw errors.badParameter(`The key's vault ${parsed.origin} is not a vault or managed HSM of tenant ${caller.tenantId}: the key and the server must be in the same tenant (cross-tenant keys are not supported).`, 'CrossTenantKeyVault');
    }
    const hsm = vault.kind === 'managedHsm';
    const noun = hsm ? 'managed HSM' : 'vault';
    const Noun = hsm ? 'Managed HSM' : 'Vault';
    if (!vault.enableSoftDelete) throw errors.badParameter(`${Noun} '${vault.name}' must have soft-delete enabled.`, 'KeyVaultSoftDeleteDisabled');
    if (vault.softDeleteRetentionInDays !== 90) {
      throw errors.badParameter(`${Noun} '${vault.name}' keeps deleted keys ${vault.softDeleteRetentionInDays} days; a customer-managed key needs a ${noun} with 90 retention days (it cannot be changed after creation: create a new ${noun}).`, 'KeyVaultRetentionNot90Days');
    }
    if (!vault.enablePurgeProtection) {
      throw errors.badParameter(hsm
        ? `Managed HSM '${vault.name}' must have purge protection enabled (PATCH the managed HSM with properties.enablePurgeProtection: true).`
        : `Vault '${vault.name}' must have purge protection enabled (pgbyok vault update --name ${vault.name} --enable-purge-protection).`, 'KeyVaultPurgeProtectionDisabled');
    }
    if (!vault.activated) {
      throw errors.badParameter(`Managed HSM '${vault.name}' is not activated: its key operations are disabled until an administrator downloads its security domain (pgbyok hsm security-domain download --hsm-name ${vault.name} ...).`, 'ManagedHsmNotActivated');
    }
    if (sameRegion && vault.location !== region) {
      throw errors.badParameter(`A ${sameRegion === 'replica' ? 'read replica' : 'geo-redundant backup'} in ${region} needs its key in a ${noun} of ${region}; ${noun} '${vault.name}' is in ${vault.location}.`, 'KeyVaultRegionMismatch');
    }
    if (sameRegion && identity.location !== region) {
      throw errors.badParameter(`A ${sameRegion === 'replica' ? 'read replica' : 'geo-redundant backup'} in ${region} needs an identity created in ${region}; '${identity.name}' is in ${identity.location}.`, 'IdentityRegionMismatch');
    }
    const principal: KeyPrincipal = { kind: 'identity', resourceId: identity.id };
    const step = async <T>(permission: string, fn: () => Promise<T>): Promise<T> => {
      try {
        return await fn();
      } catch (e) {
        if (e instanceof KeyAccessError) {
          if (e.reason === 'PermissionDenied' && hsm) {
            throw errors.badParameter(`The identity '${identity.name}' is not authorized to ${permission} with the key: managed HSM '${vault.name}' uses local role-based access control, and no local role assignment gives the identity the key's data actions. Assign it the 'Managed HSM Crypto Service Encryption User' role (${HSM_CSEU_ROLE}) at the key (pgbyok hsm role assignment create --hsm-name ${vault.name} --role "Managed HSM Crypto Service Encryption User" --assignee ${identity.principalId} --scope /keys/${parsed.name}).`, 'IdentityMissingKeyPermissions');
          }
          if (e.reason === 'PermissionDenied' && vault.enableRbacAuthorization) {
            throw errors.badParameter(`The identity '${identity.name}' is not authorized to ${permission} with the key: vault '${vault.name}' uses role-based access control, and no role assignment gives the identity the key's data actions. Assign it the 'Key Vault Crypto Service Encryption User' role (${CSEU_ROLE}) at the vault, its resource group or its subscription (PUT {vault id}/providers/Microsoft.Authorization/roleAssignments/{guid} with roleDefinitionId .../roleDefinitions/${CSEU_ROLE} and principalId ${identity.principalId}).`, 'IdentityMissingKeyPermissions');
          }
          if (e.reason === 'PermissionDenied') {
            throw errors.badParameter(`The identity '${identity.name}' lacks the '${permission}' key permission on vault '${vault.name}'; it needs get, list, wrapKey and unwrapKey (pgbyok vault set-policy --name ${vault.name} --object-id ${identity.principalId} --key-permissions get list wrapKey unwrapKey).`, 'IdentityMissingKeyPermissions');
          }
          if (e.reason === 'KeyDisabled') throw errors.badParameter('The key is disabled; it must be enabled.', 'KeyDisabled');
          if (e.reason === 'KeyNotFound') throw errors.badParameter(`The key ${keyUri} does not exist.`, 'KeyNotFound');
          if (e.reason === 'KeyExpired') throw errors.badParameter('The key has expired; its expiration date must be in the future.', 'KeyExpired');
          if (e.reason === 'KeyNotYetValid') throw errors.badParameter('The key\'s activation date is in the future; it must be in the past.', 'KeyNotYetActive');
          throw errors.badParameter(`The key cannot be reached with identity '${identity.name}': ${e.message}`, e.reason);
        }
        throw e;
      }
    };
    const info = await step('get', () => d.keys.getKey(keyUri, principal));
    if (info.kty !== 'RSA' && info.kty !== 'RSA-HSM') throw errors.badParameter(`The key must be an RSA key; it is ${info.kty}.`, 'KeyNotRsa');
    if (!RSA_SIZES.includes(info.keySize)) throw errors.badParameter(`The key must be RSA ${RSA_SIZES.join(', ')}; it is ${info.keySize} bits.`, 'KeySizeNotSupported');
    if (!info.enabled) throw errors.badParameter('The key is disabled; it must be enabled.', 'KeyDisabled');
    const now = d.clock.now() / 1000;
    if (info.nbf !== undefined && info.nbf > now) throw errors.badParameter('The key\'s activation date is in the future; it must be in the past.', 'KeyNotYetActive');
    if (info.exp !== undefined && info.exp <= now) throw errors.badParameter('The key has expired; its expiration date must be in the future.', 'KeyExpired');
    for (const op of ['wrapKey', 'unwrapKey']) {
      if (!info.keyOps.includes(op)) throw errors.badParameter(`The key does not permit ${op} (its key_ops are ${info.keyOps.join(', ')}).`, 'KeyOperationNotPermitted');
    }
    await step('list', () => d.keys.listVersions(keyUri, principal));
    const probe = newDek();
    try {
      const w = await step('wrapKey', () => d.keys.wrap(keyUri, probe, principal));
      const back = await step('unwrapKey', () => d.keys.unwrap(w.kid, w.wrapped, principal));
      if (!back.equals(probe)) throw errors.badParameter('The key did not unwrap what it wrapped.', 'KeyRoundTripFailed');
      back.fill(0);
    } finally {
      probe.fill(0);
    }
    return {
      encryption: { type: 'AzureKeyVault', primaryKeyURI: keyUri, primaryUserAssignedIdentityId: identity.id },
      identity,
    };
  };
}

export type CmkValidation = ReturnType<typeof createCmkValidation>;
