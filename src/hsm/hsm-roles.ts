import type { HsmRoleAssignment, HsmRolePermission } from './hsm-rbac.repo.js';

/**
 * Managed HSM's local-RBAC vocabulary: its data actions, its built-in role definitions (with Azure's GUIDs),
 * and the wire shapes of role definitions and assignments. The decisions are local-rbac.ts's.
 */
export const HSM_ACTION_PREFIX = 'Microsoft.KeyVault/managedHsm/';
export const DEFINITION_ID_PREFIX = '/Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/';

/** Azure's DataAction enum (rbac.json, 34 values) plus keys/rotate/action, which the built-in roles table lists. */
export const HSM_DATA_ACTIONS = [
  'Microsoft.KeyVault/managedHsm/keys/read/action',
  'Microsoft.KeyVault/managedHsm/keys/write/action',
  'Microsoft.KeyVault/managedHsm/keys/rotate/action',
  'Microsoft.KeyVault/managedHsm/keys/create',
  'Microsoft.KeyVault/managedHsm/keys/delete',
  'Microsoft.KeyVault/managedHsm/keys/backup/action',
  'Microsoft.KeyVault/managedHsm/keys/restore/action',
  'Microsoft.KeyVault/managedHsm/keys/import/action',
  'Microsoft.KeyVault/managedHsm/keys/export/action',
  'Microsoft.KeyVault/managedHsm/keys/release/action',
  'Microsoft.KeyVault/managedHsm/keys/encrypt/action',
  'Microsoft.KeyVault/managedHsm/keys/decrypt/action',
  'Microsoft.KeyVault/managedHsm/keys/wrap/action',
  'Microsoft.KeyVault/managedHsm/keys/unwrap/action',
  'Microsoft.KeyVault/managedHsm/keys/sign/action',
  'Microsoft.KeyVault/managedHsm/keys/verify/action',
  'Microsoft.KeyVault/managedHsm/keys/deletedKeys/read/action',
  'Microsoft.KeyVault/managedHsm/keys/deletedKeys/recover/action',
  'Microsoft.KeyVault/managedHsm/keys/deletedKeys/delete',
  'Microsoft.KeyVault/managedHsm/roleAssignments/read/action',
  'Microsoft.KeyVault/managedHsm/roleAssignments/write/action',
  'Microsoft.KeyVault/managedHsm/roleAssignments/delete/action',
  'Microsoft.KeyVault/managedHsm/roleDefinitions/read/action',
  'Microsoft.KeyVault/managedHsm/roleDefinitions/write/action',
  'Microsoft.KeyVault/managedHsm/roleDefinitions/delete/action',
  'Microsoft.KeyVault/managedHsm/securitydomain/download/action',
  'Microsoft.KeyVault/managedHsm/securitydomain/download/read',
  'Microsoft.KeyVault/managedHsm/securitydomain/upload/action',
  'Microsoft.KeyVault/managedHsm/securitydomain/upload/read',
  'Microsoft.KeyVault/managedHsm/securitydomain/transferkey/read',
  'Microsoft.KeyVault/managedHsm/backup/start/action',
  'Microsoft.KeyVault/managedHsm/backup/status/action',
  'Microsoft.KeyVault/managedHsm/restore/start/action',
  'Microsoft.KeyVault/managedHsm/restore/status/action',
  'Microsoft.KeyVault/managedHsm/rng/action',
] as const;

export type HsmDataAction = (typeof HSM_DATA_ACTIONS)[number];

/** A role definition, built-in or custom (`name` is its GUID). */
export interface HsmRoleDefinition {
  name: string;
  roleName: string;
  description: string;
  type: 'AKVBuiltInRole' | 'CustomRole';
  permissions: HsmRolePermission[];
  assignableScopes: string[];
}

export interface HsmRef {
  /** The HSM's `vaults.id`. */
  id: string;
  name: string;
}

const acts = (...names: string[]) => names.map((n) => `${HSM_ACTION_PREFIX}${n}`);
const builtIn = (name: string, roleName: string, description: string, dataActions: string[]): HsmRoleDefinition => ({
  name, roleName, description, type: 'AKVBuiltInRole', permissions: [{ dataActions, notDataActions: [] }], assignableScopes: ['/'],
});

/** Azure's built-in Managed HSM roles, with Azure's GUIDs (learn.microsoft.com/azure/key-vault/managed-hsm/built-in-roles). */
export const BUILT_IN_HSM_ROLES: readonly HsmRoleDefinition[] = [
  builtIn('a290e904-7015-4bba-90c8-60543313cdb4', 'Managed HSM Administrator',
    'Grants permissions to perform all operations related to the security domain, full backup and restore, and role management. Not permitted to perform any key management operations.',
    // securitydomain/download/read (the download's status) is not in the docs table; granted so the one role
    // that may start a download may also poll it.
    acts('securitydomain/download/action', 'securitydomain/download/read', 'securitydomain/upload/action', 'securitydomain/upload/read',
      'securitydomain/transferkey/read', 'roleAssignments/read/action', 'roleAssignments/write/action', 'roleAssignments/delete/action',
      'roleDefinitions/read/action', 'roleDefinitions/write/action', 'roleDefinitions/delete/action',
      'backup/start/action', 'backup/status/action', 'restore/start/action', 'restore/status/action')),
  builtIn('515eb02d-2335-4d2d-92f2-b1cbdf9c3778', 'Managed HSM Crypto Officer',
    'Grants permissions to perform all role management, purge or recover deleted keys, and export keys. Not permitted to perform any other key management operations.',
    acts('keys/deletedKeys/read/action', 'keys/deletedKeys/recover/action', 'keys/deletedKeys/delete', 'keys/export/action',
      'roleAssignments/*', 'roleDefinitions/*')),
  builtIn('21dbd100-6940-42c2-9190-5d6cb909625b', 'Managed HSM Crypto User',
    'Grants permissions to perform all key management operations except purge or recover deleted keys and export keys.',
    // rng/action is not in the docs table; granted here, as the one role for everyday key use.
    acts('keys/read/action', 'keys/write/action', 'keys/rotate/action', 'keys/create', 'keys/delete', 'keys/backup/action',
      'keys/restore/action', 'keys/release/action', 'keys/import/action', 'keys/encrypt/action', 'keys/decrypt/action',
      'keys/wrap/action', 'keys/unwrap/action', 'keys/sign/action', 'keys/verify/action', 'rng/action',
      'roleAssignments/read/action', 'roleDefinitions/read/action')),
  builtIn('4bd23610-cdcf-4971-bdee-bdc562cc28e4', 'Managed HSM Policy Administrator',
    'Grants permissions to create and delete role assignments.',
    acts('roleAssignments/*', 'roleDefinitions/*')),
  builtIn('2c18b078-7c48-4d3a-af88-5a3a1b3f82b3', 'Managed HSM Crypto Auditor',
    'Grants read permissions to read (but not use) key attributes.',
    // The docs table lists keys/deletedKeys/delete here, which would let a read-only role purge; the role's
    // own description ("read (but not use)") is taken instead: it reads deleted keys.
    acts('keys/read/action', 'keys/deletedKeys/read/action', 'roleAssignments/read/action', 'roleDefinitions/read/action')),
  builtIn('33413926-3206-4cdd-b39a-83574fe37a17', 'Managed HSM Crypto Service Encryption User',
    'Grants permissions to use a key for service encryption.',
    acts('keys/read/action', 'keys/wrap/action', 'keys/unwrap/action')),
  builtIn('21dbd100-6940-42c2-9190-5d6cb909625c', 'Managed HSM Crypto Service Release User',
    'Grants permissions to release a key to a trusted execution environment.',
    acts('keys/release/action')),
  builtIn('7b127d3c-77bd-4e3e-bbe0-dbb8971fa7f8', 'Managed HSM Backup',
    'Grants permissions to perform single key or whole HSM backup.',
    acts('keys/backup/action', 'backup/start/action', 'backup/status/action')),
  builtIn('6efe6056-5259-49d2-8b3d-d3d73544b20b', 'Managed HSM Restore',
    'Grants permissions to perform single key or whole HSM restore.',
    acts('keys/restore/action', 'restore/start/action', 'restore/status/action')),
];

export const HSM_ADMINISTRATOR_ROLE_ID = 'a290e904-7015-4bba-90c8-60543313cdb4';

export const roleDefinitionFullId = (guid: string) => `${DEFINITION_ID_PREFIX}${guid}`;

/** Azure's RoleDefinition. */
export function roleDefinitionWire(def: HsmRoleDefinition) {
  return {
    id: roleDefinitionFullId(def.name),
    name: def.name,
    type: 'Microsoft.Authorization/roleDefinitions',
    properties: {
      roleName: def.roleName,
      description: def.description,
      type: def.type,
      permissions: def.permissions.map((p) => ({ actions: [] as string[], notActions: [] as string[], dataActions: [...p.dataActions], notDataActions: [...p.notDataActions] })),
      assignableScopes: [...def.assignableScopes],
    },
  };
}

/** Azure's RoleAssignment: the id is `{scope}/providers/...`, with scope `/` giving `/providers/...`. */
export function roleAssignmentWire(a: HsmRoleAssignment) {
  const base = a.scope === '/' ? '' : a.scope;
  return {
    id: `${base}/providers/Microsoft.Authorization/roleAssignments/${a.name}`,
    name: a.name,
    type: 'Microsoft.Authorization/roleAssignments',
    properties: { scope: a.scope, roleDefinitionId: roleDefinitionFullId(a.roleDefinitionId), principalId: a.principalId },
  };
}
