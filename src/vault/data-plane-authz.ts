import { ApiError, errors } from '../lib/errors.js';
import type { Caller } from '../identity/identity.service.js';
import type { RoleAssignment } from '../identity/identity.repo.js';
import { grantsDataAction, roleDefinitionByName } from '../identity/role-definitions.js';
import { scopeContains } from '../arm/scopes.js';
import type { KeyPermission, Vault } from './vault.types.js';
import type { VaultService } from './vaults.service.js';

/**
 * Who may do what on a vault's data plane. A vault without `enableRbacAuthorization` answers to its access
 * policies (the route's key permission must be in the caller's entry). A vault with it ignores its access
 * policies and answers to role assignments: an assignment at the vault, its group, its subscription or
 * tenant-wide (`/`), of a role whose data actions include the route's. Management roles have no data actions
 * and so never count. Assignments are read from the store on every request: a removed one stops access on
 * the next request.
 */

/** Key Vault's data action for each key permission (deleted keys have their own; see `dataActionFor`). */
export const KEY_DATA_ACTIONS: Record<KeyPermission, string> = {
  get: 'Microsoft.KeyVault/vaults/keys/read',
  list: 'Microsoft.KeyVault/vaults/keys/read',
  create: 'Microsoft.KeyVault/vaults/keys/create/action',
  update: 'Microsoft.KeyVault/vaults/keys/update/action',
  import: 'Microsoft.KeyVault/vaults/keys/import/action',
  delete: 'Microsoft.KeyVault/vaults/keys/delete',
  recover: 'Microsoft.KeyVault/vaults/deletedKeys/recover/action',
  backup: 'Microsoft.KeyVault/vaults/keys/backup/action',
  restore: 'Microsoft.KeyVault/vaults/keys/restore/action',
  purge: 'Microsoft.KeyVault/vaults/deletedKeys/delete',
  rotate: 'Microsoft.KeyVault/vaults/keys/rotate/action',
  getrotationpolicy: 'Microsoft.KeyVault/vaults/keyrotationpolicies/read',
  setrotationpolicy: 'Microsoft.KeyVault/vaults/keyrotationpolicies/write',
  wrapKey: 'Microsoft.KeyVault/vaults/keys/wrap/action',
  unwrapKey: 'Microsoft.KeyVault/vaults/keys/unwrap/action',
  encrypt: 'Microsoft.KeyVault/vaults/keys/encrypt/action',
  decrypt: 'Microsoft.KeyVault/vaults/keys/decrypt/action',
  sign: 'Microsoft.KeyVault/vaults/keys/sign/action',
  verify: 'Microsoft.KeyVault/vaults/keys/verify/action',
};

/** The data action a route needs: its permission's, except reading deleted keys (`/deletedkeys...` GETs). */
export function dataActionFor(permission: KeyPermission, operation?: string): string {
  if (operation === 'KeyGetDeleted' || operation === 'KeyListDeleted') return 'Microsoft.KeyVault/vaults/deletedKeys/read';
  return KEY_DATA_ACTIONS[permission];
}

export interface DataPlaneRequest {
  permission: KeyPermission;
  /** The route's operation name (KeyGet, KeyListDeleted...). */
  operation?: string;
  /** The key the request names, for the refusal's resource. */
  keyName?: string;
}

export function createDataPlaneAuthz(d: {
  vaults: Pick<VaultService, 'permissionsOf' | 'list' | 'announceAccessChange'>;
  assignmentsOf: (tenantId: string, objectId: string) => RoleAssignment[];
  /** The vault's ARM resource id (its scope). */
  vaultScope: (v: Vault) => string;
}) {
  /** The role assignment that grants `action` on the vault, if any. */
  const grantingAssignment = (v: Vault, objectId: string, action: string): RoleAssignment | undefined => {
    const scope = d.vaultScope(v);
    return d.assignmentsOf(v.tenantId, objectId).find((a) => {
      if (!scopeContains(a.scope, scope)) return false;
      const def = roleDefinitionByName(a.role);
      return !!def && grantsDataAction(def, action);
    });
  };

  const refusal = (v: Vault, caller: Caller, r: DataPlaneRequest): ApiError => {
    const who = `appid=${caller.principal.clientId};oid=${caller.principal.objectId};iss=${caller.claims.iss}`;
    if (!v.enableRbacAuthorization) {
      return errors.forbidden(`The user, group or application '${who}' does not have keys ${r.permission} permission on key vault '${v.name};location=${v.location}'.`, 'AccessDenied');
    }
    const resource = `${d.vaultScope(v)}${r.keyName ? `/keys/${r.keyName}` : ''}`.toLowerCase();
    return errors.forbidden([
      'Caller is not authorized to perform action on resource.',
      'If role assignments, deny assignments or role definitions were changed recently, please observe propagation time.',
      `Caller: ${who}`,
      `Action: '${dataActionFor(r.permission, r.operation)}'`,
      `Resource: '${resource}'`,
      'Assignment: (not found)',
      'DenyAssignmentId: null',
      'DecisionReason: null',
      "DecidingEffect: 'Deny'",
      `Vault: ${v.name};location=${v.location}`,
    ].join('\n'), 'ForbiddenByRbac');
  };

  return {
    /** Undefined when the caller may; otherwise Key Vault's refusal (AccessDenied, or ForbiddenByRbac on an RBAC vault). */
    decide(v: Vault, caller: Caller, r: DataPlaneRequest): ApiError | undefined {
      const allowed = v.enableRbacAuthorization
        ? grantingAssignment(v, caller.principal.objectId, dataActionFor(r.permission, r.operation)) !== undefined
        : d.vaults.permissionsOf(v, caller.principal.objectId).includes(r.permission);
      return allowed ? undefined : refusal(v, caller, r);
    },
    authorize(v: Vault, caller: Caller, r: DataPlaneRequest): void {
      const e = this.decide(v, caller, r);
      if (e) throw e;
    },
    /** A role assignment with data actions changed at `scope`: every RBAC vault under it tells its subscribers. */
    onAssignmentChanged(tenantId: string, scope: string): void {
      for (const v of d.vaults.list(tenantId)) if (v.enableRbacAuthorization && scopeContains(scope, d.vaultScope(v))) d.vaults.announceAccessChange(v);
    },
  };
}

export type DataPlaneAuthz = ReturnType<typeof createDataPlaneAuthz>;
