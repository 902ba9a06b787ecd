import type { ResourceGroup, Subscription } from './arm.repo.js';

/** ARM's shapes of subscriptions, resource groups and generic resources. */

export function subscriptionWire(s: Subscription) {
  return {
    id: `/subscriptions/${s.id}`,
    authorizationSource: 'RoleBased',
    managedByTenants: [],
    subscriptionId: s.id,
    tenantId: s.tenantId,
    displayName: s.displayName,
    state: s.state,
    subscriptionPolicies: { locationPlacementId: 'Public_2014-09-01', quotaId: 'PayAsYouGo_2014-09-01', spendingLimit: 'Off' },
  };
}

export function aliasWire(s: Subscription) {
  return {
    id: `/providers/Microsoft.Subscription/aliases/${s.alias}`,
    name: s.alias,
    type: 'Microsoft.Subscription/aliases',
    properties: { subscriptionId: s.id, provisioningState: 'Succeeded' },
  };
}

export function groupWire(g: ResourceGroup) {
  return {
    id: `/subscriptions/${g.subscriptionId}/resourceGroups/${g.name}`,
    name: g.name,
    type: 'Microsoft.Resources/resourceGroups',
    location: g.location,
    tags: g.tags,
    properties: { provisioningState: g.state },
  };
}
