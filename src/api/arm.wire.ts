import type { Principal, RoleAssignment, Tenant } from '../identity/identity.repo.js';
import { roleDefinitionByName, type RoleDefinition } from '../identity/role-definitions.js';
import { ROOT_SCOPE, subscriptionOfScope } from '../arm/scopes.js';
import type { AccessPolicy, EventSubscription, Vault } from '../vault/vault.types.js';
import type { Names } from '../lib/names.js';

/** Azure Resource Manager shapes of the management API, kept apart from the domain model. */

const iso = (s: number) => new Date(s * 1000).toISOString();

/** `https://NAME.vault.DOMAIN[:port]/`: every vault on the one vault listener, by its DNS name. */
export function vaultUri(v: Vault, names: Pick<Names, 'vaultUri'>): string {
  return names.vaultUri(v.name);
}

export function identityWire(p: Principal, id: string, clientSecret?: string) {
  return {
    id,
    name: p.name,
    type: 'Microsoft.ManagedIdentity/userAssignedIdentities',
    location: p.location,
    properties: { tenantId: p.tenantId, principalId: p.objectId, clientId: p.clientId },
    ...(clientSecret ? { clientSecret } : {}),
  };
}

export function servicePrincipalWire(p: Principal, password?: string) {
  return {
    id: p.objectId,
    appId: p.clientId,
    displayName: p.name,
    servicePrincipalType: 'Application',
    appOwnerOrganizationId: p.tenantId,
    ...(password ? { password } : {}),
  };
}

export function tenantWire(t: Tenant) {
  return { id: `/tenants/${t.id}`, tenantId: t.id, tenantCategory: 'Home', displayName: t.name, defaultDomain: `${t.name}.pgbyok`, createdDateTime: iso(t.created) };
}

const RA_TYPE = 'Microsoft.Authorization/roleAssignments';
const atScope = (scope: string, rest: string) => `${scope === ROOT_SCOPE ? '' : scope}/providers/Microsoft.Authorization/${rest}`;

/** A built-in role definition's id as Azure gives it: under the subscription of the scope asked at, else at the root. */
export const roleDefinitionId = (scope: string, guid: string) => {
  const sub = subscriptionOfScope(scope);
  return `${sub ? `/subscriptions/${sub}` : ''}/providers/Microsoft.Authorization/roleDefinitions/${guid}`;
};

/** pgbyok's older shape (the tenant path and the CLI): the role by name, ARM's fields beside it. */
export function roleAssignmentWire(a: RoleAssignment) {
  return {
    id: a.scope === ROOT_SCOPE ? `/tenants/${a.tenantId}/providers/${RA_TYPE}/${a.id}` : atScope(a.scope, `roleAssignments/${a.id}`),
    name: a.id,
    type: RA_TYPE,
    properties: {
      principalId: a.principalId, roleDefinitionName: a.role, roleDefinitionId: roleDefinitionId(a.scope, roleDefinitionByName(a.role)?.id ?? ''),
      scope: a.scope === ROOT_SCOPE ? `/tenants/${a.tenantId}` : a.scope, createdOn: iso(a.created),
    },
  };
}

/** Microsoft.Authorization/roleAssignments as ARM answers it (2022-04-01). */
export function armRoleAssignmentWire(a: RoleAssignment) {
  const created = iso(a.created);
  return {
    properties: {
      roleDefinitionId: roleDefinitionId(a.scope, roleDefinitionByName(a.role)?.id ?? ''),
      principalId: a.principalId,
      principalType: a.principalType ?? 'ServicePrincipal',
      scope: a.scope,
      condition: null, conditionVersion: null, description: null, delegatedManagedIdentityResourceId: null,
      createdOn: created, updatedOn: created, createdBy: null, updatedBy: null,
    },
    id: atScope(a.scope, `roleAssignments/${a.id}`),
    type: RA_TYPE,
    name: a.id,
  };
}

export function roleDefinitionWire(d: RoleDefinition, scope: string) {
  return {
    id: roleDefinitionId(scope, d.id),
    name: d.id,
    type: 'Microsoft.Authorization/roleDefinitions',
    properties: {
      roleName: d.roleName,
      type: 'BuiltInRole',
      description: d.description,
      assignableScopes: ['/'],
      permissions: [{ actions: d.actions, notActions: d.notActions, dataActions: d.dataActions, notDataActions: d.notDataActions }],
      createdOn: null, updatedOn: null, createdBy: null, updatedBy: null,
    },
  };
}

export function vaultWire(v: Vault, policies: AccessPolicy[], names: Pick<Names, 'vaultUri'>, id: string) {
  return {
    id,
    name: v.name,
    type: 'Microsoft.KeyVault/vaults',
    location: v.location,
    properties: {
      vaultUri: vaultUri(v, names),
      tenantId: v.tenantId,
      sku: { family: 'A', name: 'standard' },
      enableSoftDelete: true,
      softDeleteRetentionInDays: v.retentionDays,
      enablePurgeProtection: v.purgeProtection,
      enableRbacAuthorization: v.enableRbacAuthorization,
      publicNetworkAccess: v.publicNetworkAccess,
      networkAcls: {
        defaultAction: v.networkAcls.defaultAction,
        bypass: v.networkAcls.bypass,
        ipRules: v.networkAcls.ipRules.map((value) => ({ value })),
        virtualNetworkRules: [],
      },
      accessPolicies: policies.map((p) => ({
        tenantId: p.tenantId, objectId: p.objectId, permissions: { keys: p.keyPermissions, secrets: [], certificates: [] },
      })),
      provisioningState: 'Succeeded',
    },
    systemData: { createdAt: iso(v.created), lastModifiedAt: iso(v.updated) },
  };
}

export function deletedVaultWire(v: Vault, subscriptionId: string, vaultId: string) {
  return {
    id: `/subscriptions/${subscriptionId}/providers/Microsoft.KeyVault/locations/${v.location}/deletedVaults/${v.name}`,
    name: v.name,
    type: 'Microsoft.KeyVault/deletedVaults',
    properties: {
      vaultId,
      location: v.location,
      deletionDate: iso(v.deletedAt!),
      scheduledPurgeDate: iso(v.scheduledPurge!),
      purgeProtectionEnabled: v.purgeProtection,
    },
  };
}

/** An Event Grid subscription on a vault: `{vaultId}/providers/Microsoft.EventGrid/eventSubscriptions/{name}`. */
export function eventSubscriptionWire(vaultId: string, s: EventSubscription) {
  return {
    id: `${vaultId}/providers/Microsoft.EventGrid/eventSubscriptions/${s.name}`,
    name: s.name,
    type: 'Microsoft.EventGrid/eventSubscriptions',
    properties: {
      topic: vaultId,
      destination: { endpointType: 'WebHook', properties: { endpointUrl: s.endpoint } },
      filter: { includedEventTypes: s.eventTypes.length ? s.eventTypes : null },
      provisioningState: 'Succeeded',
    },
  };
}
