/**
 * Who may do what on a managed HSM's data plane: local RBAC only (access policies do not exist there), and
 * nothing but the security domain's own routes before activation. The keys API's routes declare a key
 * permission (they serve vaults too); here each maps to Managed HSM's data action, checked at the key's
 * scope (`/keys/{name}`) or at `/keys`.
 */
import type { Caller } from '../identity/identity.service.js';
import type { KeyPermission, Vault } from '../vault/vault.types.js';
import type { HsmDataAction, LocalRbac } from './local-rbac.js';
import type { HsmService } from './hsms.service.js';

const A = 'Microsoft.KeyVault/managedHsm/keys';

export const HSM_KEY_ACTIONS: Record<KeyPermission, HsmDataAction> = {
  get: `${A}/read/action`,
  list: `${A}/read/action`,
  create: `${A}/create`,
  update: `${A}/write/action`,
  import: `${A}/import/action`,
  delete: `${A}/delete`,
  recover: `${A}/deletedKeys/recover/action`,
  backup: `${A}/backup/action`,
  restore: `${A}/restore/action`,
  purge: `${A}/deletedKeys/delete`,
  rotate: `${A}/rotate/action`,
  getrotationpolicy: `${A}/read/action`,
  setrotationpolicy: `${A}/write/action`,
  wrapKey: `${A}/wrap/action`,
  unwrapKey: `${A}/unwrap/action`,
  encrypt: `${A}/encrypt/action`,
  decrypt: `${A}/decrypt/action`,
  sign: `${A}/sign/action`,
  verify: `${A}/verify/action`,
} as Record<KeyPermission, HsmDataAction>;

/** The data action of a keys-API route on an HSM (reading deleted keys has its own). */
export function hsmActionFor(permission: KeyPermission, operation?: string): HsmDataAction {
  if (operation === 'KeyGetDeleted' || operation === 'KeyListDeleted') return `${A}/deletedKeys/read/action` as HsmDataAction;
  return HSM_KEY_ACTIONS[permission];
}

export function createHsmDataPlane(d: { hsms: Pick<HsmService, 'requireActive'>; rbac: LocalRbac }) {
  return {
    /** A keys-API route on an HSM: activated, and a role granting the route's data action at the key's scope. */
    authorizeKeys(v: Vault, caller: Caller, permission: KeyPermission, operation: string | undefined, keyName: string | undefined): void {
      d.hsms.requireActive(v);
      d.rbac.authorize(v, caller.principal.objectId, hsmActionFor(permission, operation), keyName ? `/keys/${keyName}` : '/keys');
    },
    /** An HSM-only route (random bytes, the security domain, role management) at `scope`. */
    authorizeAction(v: Vault, caller: Caller, action: string, scope: string, beforeActivation: boolean): void {
      if (!beforeActivation) d.hsms.requireActive(v);
      d.rbac.authorize(v, caller.principal.objectId, action as HsmDataAction, scope);
    },
  };
}

export type HsmDataPlane = ReturnType<typeof createHsmDataPlane>;
