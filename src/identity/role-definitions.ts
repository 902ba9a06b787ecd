import type { Duty } from './roles.js';
import { DUTIES } from './roles.js';

/**
 * The built-in role definitions pgbyok serves at `{scope}/providers/Microsoft.Authorization/roleDefinitions`:
 * Azure's own (with Azure's GUIDs, actions and data actions) and pgbyok's separation-of-duties roles (with
 * GUIDs of pgbyok's own, stable forever). Which pgbyok management duties a role carries is `DUTIES` in
 * roles.ts; which data actions it carries is `dataActions` here. No role carries both kinds: management
 * roles never grant data actions, and the Key Vault data roles carry no management duty.
 */
export interface RoleDefinition {
  id: string;
  roleName: string;
  description: string;
  actions: string[];
  notActions: string[];
  dataActions: string[];
  notDataActions: string[];
}

const KV_READ_ACTIONS = [
  'Microsoft.Authorization/*/read', 'Microsoft.Insights/alertRules/*', 'Microsoft.Resources/deployments/*',
  'Microsoft.Resources/subscriptions/resourceGroups/read', 'Microsoft.Support/*', 'Microsoft.KeyVault/checkNameAvailability/read',
  'Microsoft.KeyVault/deletedVaults/read', 'Microsoft.KeyVault/locations/*/read', 'Microsoft.KeyVault/vaults/*/read', 'Microsoft.KeyVault/operations/read',
];

const def = (id: string, roleName: string, description: string, p: Partial<Pick<RoleDefinition, 'actions' | 'notActions' | 'dataActions' | 'notDataActions'>>): RoleDefinition => ({
  id, roleName, description, actions: p.actions ?? [], notActions: p.notActions ?? [], dataActions: p.dataActions ?? [], notDataActions: p.notDataActions ?? [],
});

/** The management actions pgbyok's own roles stand for (informational: the duties decide). */
const dutyActions = (role: string): string[] => {
  const a: Record<Duty, string[]> = {
    manageVaults: ['Microsoft.KeyVault/vaults/*', 'Microsoft.KeyVault/deletedVaults/*', 'Microsoft.KeyVault/locations/*', 'Microsoft.EventGrid/eventSubscriptions/*'],
    readAudit: ['Microsoft.KeyVault/auditEvents/read'],
    manageIdentities: ['Microsoft.ManagedIdentity/userAssignedIdentities/*'],
    manageServicePrincipals: ['Microsoft.Graph/servicePrincipals/*'],
    manageRoles: ['Microsoft.Authorization/roleAssignments/*'],
    manageTenants: ['Microsoft.Resources/tenants/*'],
    readPlatform: ['*/read'],
    manageServers: ['Microsoft.DBforPostgreSQL/flexibleServers/*'],
    readServers: ['Microsoft.DBforPostgreSQL/*/read', 'Microsoft.Insights/eventtypes/*/read'],
    manageMonitoring: ['Microsoft.Insights/actionGroups/*', 'Microsoft.Insights/activityLogAlerts/*'],
    managePlatformSettings: ['Microsoft.PgByok/platformSettings/*'],
    manageSubscriptions: ['Microsoft.Subscription/aliases/*'],
    manageResourceGroups: ['Microsoft.Resources/subscriptions/resourceGroups/*'],
  };
  return [...new Set((Object.keys(DUTIES) as Duty[]).filter((d) => (DUTIES[d] as readonly string[]).includes(role)).flatMap((d) => a[d]))];
};

export const ROLE_DEFINITIONS: readonly RoleDefinition[] = [
  def('8e3af657-a8ff-443c-a75c-2fe8c4bcb635', 'Owner', 'Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.', { actions: ['*'] }),
  def('b24988ac-6180-42a0-ab88-20f7382dd24c', 'Contributor', 'Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC, manage assignments in Azure Blueprints, or share image galleries.', {
    actions: ['*'],
    notActions: ['Microsoft.Authorization/*/Delete', 'Microsoft.Authorization/*/Write', 'Microsoft.Authorization/elevateAccess/Action', 'Microsoft.Blueprint/blueprintAssignments/write', 'Microsoft.Blueprint/blueprintAssignments/delete', 'Microsoft.Compute/galleries/share/action', 'Microsoft.Purview/consents/write', 'Microsoft.Purview/consents/delete', 'Microsoft.Resources/deploymentStacks/manageDenySetting/action', 'Microsoft.Subscription/cancel/action', 'Microsoft.Subscription/enable/action'],
  }),
  def('acdd72a7-3385-48ef-bd42-f606fba81ae7', 'Reader', 'View all resources, but does not allow you to make any changes.', { actions: ['*/read'] }),
  def('00482a5a-887f-4fb3-b363-3b7fe8e74483', 'Key Vault Administrator', "Perform all data plane operations on a key vault and all objects in it, including certificates, keys, and secrets. Cannot manage key vault resources or manage role assignments. Only works for key vaults that use the 'Azure role-based access control' permission model.", {
    actions: KV_READ_ACTIONS, dataActions: ['Microsoft.KeyVault/vaults/*'],
  }),
  def('14b46e9e-c2b7-41b4-b07b-48a6ebf60603', 'Key Vault Crypto Officer', "Perform any action on the keys of a key vault, except manage permissions. Only works for key vaults that use the 'Azure role-based access control' permission model.", {
    actions: KV_READ_ACTIONS, dataActions: ['Microsoft.KeyVault/vaults/keys/*', 'Microsoft.KeyVault/vaults/keyrotationpolicies/*'],
  }),
  def('12338af0-0e69-4776-bea7-57ae8d297424', 'Key Vault Crypto User', "Perform cryptographic operations using keys. Only works for key vaults that use the 'Azure role-based access control' permission model.", {
    dataActions: [
      'Microsoft.KeyVault/vaults/keys/read', 'Microsoft.KeyVault/vaults/keys/update/action', 'Microsoft.KeyVault/vaults/keys/backup/action',
      'Microsoft.KeyVault/vaults/keys/encrypt/action', 'Microsoft.KeyVault/vaults/keys/decrypt/action', 'Microsoft.KeyVault/vaults/keys/wrap/action',
      'Microsoft.KeyVault/vaults/keys/unwrap/action', 'Microsoft.KeyVault/vaults/keys/sign/action', 'Microsoft.KeyVault/vaults/keys/verify/action',
    ],
  }),
  def('e147488a-f6f5-4113-8e2d-b22465e65bf6', 'Key Vault Crypto Service Encryption User', "Read metadata of keys and perform wrap/unwrap operations. Only works for key vaults that use the 'Azure role-based access control' permission model.", {
    actions: ['Microsoft.EventGrid/eventSubscriptions/write', 'Microsoft.EventGrid/eventSubscriptions/read', 'Microsoft.EventGrid/eventSubscriptions/delete'],
    dataActions: ['Microsoft.KeyVault/vaults/keys/read', 'Microsoft.KeyVault/vaults/keys/wrap/action', 'Microsoft.KeyVault/vaults/keys/unwrap/action'],
  }),
  def('f25e0fa2-a7c8-4377-a976-54943a77a395', 'Key Vault Contributor', 'Lets you manage key vaults, but not access to them.', {
    actions: ['Microsoft.Authorization/*/read', 'Microsoft.Insights/alertRules/*', 'Microsoft.KeyVault/*', 'Microsoft.Resources/deployments/*', 'Microsoft.Resources/subscriptions/resourceGroups/read', 'Microsoft.Support/*'],
    notActions: ['Microsoft.KeyVault/locations/deletedVaults/purge/action', 'Microsoft.KeyVault/hsmPools/*', 'Microsoft.KeyVault/managedHsms/*'],
  }),
  def('21090545-7ca7-4776-b22c-e363652d74d2', 'Key Vault Reader', "Read metadata of key vaults and its certificates, keys, and secrets. Cannot read sensitive values such as secret contents or key material. Only works for key vaults that use the 'Azure role-based access control' permission model.", {
    actions: KV_READ_ACTIONS, dataActions: ['Microsoft.KeyVault/vaults/*/read', 'Microsoft.KeyVault/vaults/secrets/readMetadata/action'],
  }),
  def('03d7e359-3936-40b1-a9ca-98a88aed0f21', 'Security Officer', "pgbyok: keeps the vaults, their access and the audit log. Grants no key operations: a vault's data plane is authorized by its access policies or, with enableRbacAuthorization, by the Key Vault data roles.", { actions: dutyActions('Security Officer') }),
  def('51c5a4b9-eeb5-49b0-b419-b8556f7d12c3', 'DBA', 'pgbyok: keeps the PostgreSQL servers, their identities, parameters, backups and monitoring. Cannot manage vaults or read the audit log.', { actions: dutyActions('DBA') }),
  def('2411581c-4e2d-49ea-98b7-13a3c51e34a6', 'System Administrator', 'pgbyok: keeps the platform: service principals, identities, monitoring and platform settings. Cannot manage vaults or servers.', { actions: dutyActions('System Administrator') }),
];

const byId = new Map(ROLE_DEFINITIONS.map((d) => [d.id, d]));
const byName = new Map(ROLE_DEFINITIONS.map((d) => [d.roleName.toLowerCase(), d]));

export const roleDefinitionById = (id: string) => byId.get(id.toLowerCase());
export const roleDefinitionByName = (name: string) => byName.get(name.toLowerCase());

/** The GUID at the end of a roleDefinitionId (`/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{guid}`, or the bare GUID). */
export function roleDefinitionGuid(roleDefinitionId: string): string | undefined {
  const m = /^(?:.*\/providers\/Microsoft\.Authorization\/roleDefinitions\/)?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i.exec(roleDefinitionId);
  return m?.[1].toLowerCase();
}

/** Azure's wildcard match of an action against a role's action pattern (`*` matches any run of characters; case-insensitive). */
export function actionMatches(pattern: string, action: string): boolean {
  const re = new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\/]/g, '\\$&')).join('.*')}$`, 'i');
  return re.test(action);
}

/** Does the role grant this data action (its dataActions, less its notDataActions)? */
export function grantsDataAction(d: RoleDefinition, action: string): boolean {
  return d.dataActions.some((p) => actionMatches(p, action)) && !d.notDataActions.some((p) => actionMatches(p, action));
}
