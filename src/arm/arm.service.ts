import { randomUUID } from 'node:crypto';
import { ApiError, errors } from '../lib/errors.js';
import type { Clock } from '../lib/clock.js';
import type { Duty } from '../identity/roles.js';
import type { ArmRepo, Placement, ResourceGroup, Subscription } from './arm.repo.js';

/**
 * Azure Resource Manager's addressing: every tenant has a default subscription (more can be created through
 * `Microsoft.Subscription/aliases`), subscriptions hold resource groups, and every resource sits in one group.
 * The domain services (vaults, identities, servers) know nothing of this; the routes place what they create
 * and build ARM ids from the placement.
 */

/** Where a request addresses: always a tenant; under `/subscriptions/{sub}` a subscription; under `/resourceGroups/{rg}` a group. */
export interface ArmScope {
  tenantId: string;
  subscriptionId: string;
  /** The group's stored name (as created), when the path names one. */
  resourceGroup?: string;
  /** The request came on the older `/tenants/{tid}/providers/...` path: resources are found tenant-wide. */
  tenantPath: boolean;
}

/** A resource type the generic `resources` list knows, with how to list the tenant's resources of it. */
export interface ResourceLister {
  type: string;
  /** The duty that reads one: the generic list shows a caller only what it may read, as Azure does. */
  readDuty: Duty;
  list(tenantId: string): { name: string; location: string; kind?: string }[];
}

const GROUP_RE = /^[-\w._()]{1,90}$/u;

export const armErrors = {
  subscriptionNotFound: (id: string) => errors.notFound('SubscriptionNotFound', `The subscription '${id}' could not be found.`),
  groupNotFound: (name: string) => errors.notFound('ResourceGroupNotFound', `Resource group '${name}' could not be found.`),
  resourceNotFound: (type: string, name: string, group?: string) =>
    errors.notFound('ResourceNotFound', `The Resource '${type}/${name}' under resource group '${group ?? '(any)'}' was not found.`),
  wrongTenant: (tokenTenant: string) =>
    new ApiError(401, 'InvalidAuthenticationTokenTenant', `The access token is from the wrong issuer. It must match the tenant associated with this subscription; the token is from tenant '${tokenTenant}'.`),
};

export function createArmService(d: { repo: ArmRepo; clock: Clock }) {
  const now = () => Math.floor(d.clock.now() / 1000);
  const listers = new Map<string, ResourceLister>();

  const defaultSubscription = (tenantId: string): Subscription => {
    const existing = d.repo.defaultSubscription(tenantId);
    if (existing) return existing;
    // Idempotent: the unique index keeps one default even if two requests race here.
    d.repo.insertSubscription({ id: randomUUID(), tenantId, displayName: 'Default subscription', state: 'Enabled', isDefault: true, created: now() });
    return d.repo.defaultSubscription(tenantId)!;
  };

  const group = (subscriptionId: string, name: string): ResourceGroup => {
    const g = d.repo.group(subscriptionId, name);
    if (!g) throw armErrors.groupNotFound(name);
    return g;
  };

  const validGroupName = (name: string) => {
    if (!GROUP_RE.test(name) || name.endsWith('.')) {
      throw new ApiError(400, 'InvalidResourceGroup', `The provided resource group name '${name}' is not valid: use 1 to 90 letters, digits, underscores, hyphens, periods and parentheses, not ending in a period.`);
    }
  };

  const putGroup = (subscriptionId: string, name: string, location: string, tags?: Record<string, string>): { group: ResourceGroup; created: boolean } => {
    validGroupName(name);
    if (!location) throw errors.badParameter('The resource group needs a location.', 'LocationRequired');
    return d.repo.transaction(() => {
      const existing = d.repo.group(subscriptionId, name);
      if (existing) {
        if (existing.location.toLowerCase() !== location.toLowerCase()) {
          throw new ApiError(409, 'InvalidResourceGroupLocation', `Invalid resource group location '${location}'. The Resource group already exists in location '${existing.location}'.`);
        }
        if (existing.state === 'Deleting') throw new ApiError(409, 'ResourceGroupBeingDeleted', `The resource group '${existing.name}' is in deprovisioning state and cannot perform this operation.`);
        const updated = { ...existing, tags: tags ?? existing.tags };
        d.repo.updateGroup(updated);
        return { group: updated, created: false };
      }
      const g: ResourceGroup = { subscriptionId, name, location: location.toLowerCase().replace(/\s+/g, ''), tags: tags ?? {}, state: 'Succeeded', created: now() };
      d.repo.insertGroup(g);
      return { group: g, created: true };
    });
  };

  /** The group a resource created without one goes to: one per location, made on first use. */
  const defaultGroupName = (location: string) => `pgbyok-${location.toLowerCase().replace(/\s+/g, '')}`;
  const ensureGroup = (subscriptionId: string, name: string, location: string) => {
    if (!d.repo.group(subscriptionId, name)) putGroup(subscriptionId, name, location);
    return d.repo.group(subscriptionId, name)!;
  };

  const plan = (scope: ArmScope, type: string, name: string, location: string, tags?: Record<string, string>): Placement => {
    // A placement whose resource no longer exists (purged, dropped, a create that crashed) holds the name nowhere.
    const recorded = d.repo.placement(scope.tenantId, type, name);
    const lister = listers.get(type.toLowerCase());
    const current = recorded && (!lister || lister.list(scope.tenantId).some((r) => r.name.toLowerCase() === name.toLowerCase())) ? recorded : undefined;
    if (current && scope.resourceGroup && (current.resourceGroup.toLowerCase() !== scope.resourceGroup.toLowerCase() || current.subscriptionId !== scope.subscriptionId)) {
      throw errors.conflict(`A resource '${type}/${name}' already exists in resource group '${current.resourceGroup}' of subscription ${current.subscriptionId}; names are unique in a tenant.`, 'ResourceExistsInAnotherGroup');
    }
    const subscriptionId = scope.resourceGroup ? scope.subscriptionId : current?.subscriptionId ?? defaultSubscription(scope.tenantId).id;
    const resourceGroup = scope.resourceGroup ?? current?.resourceGroup ?? defaultGroupName(location);
    return { tenantId: scope.tenantId, type, name, subscriptionId, resourceGroup, tags: tags ?? current?.tags ?? {} };
  };

  return {
    defaultSubscription,
    subscriptions: (tenantId: string) => { defaultSubscription(tenantId); return d.repo.subscriptions(tenantId); },
    /** The subscription a path names, for a caller of `tenantId`: 404 when it does not exist, 401 when it is another tenant's. */
    subscriptionFor(id: string, tenantId: string): Subscription {
      defaultSubscription(tenantId);
      const s = d.repo.subscription(id);
      if (!s) throw armErrors.subscriptionNotFound(id);
      if (s.tenantId !== tenantId) throw armErrors.wrongTenant(tenantId);
      return s;
    },
    /** `PUT /providers/Microsoft.Subscription/aliases/{alias}`: a new subscription of the tenant (idempotent per alias). */
    createSubscription(tenantId: string, alias: string, displayName: string): { subscription: Subscription; created: boolean } {
      if (!/^[-\w.]{1,64}$/.test(alias)) throw errors.badParameter(`The alias '${alias}' is not valid: use 1 to 64 letters, digits, hyphens, underscores and periods.`, 'InvalidAliasName');
      defaultSubscription(tenantId);
      return d.repo.transaction(() => {
        const existing = d.repo.subscriptionByAlias(tenantId, alias);
        if (existing) return { subscription: existing, created: false };
        const s: Subscription = { id: randomUUID(), tenantId, displayName: displayName || alias, state: 'Enabled', isDefault: false, alias, created: now() };
        d.repo.insertSubscription(s);
        return { subscription: s, created: true };
      });
    },
    subscriptionByAlias: (tenantId: string, alias: string) => d.repo.subscriptionByAlias(tenantId, alias),
    subscriptionById: (id: string) => d.repo.subscription(id),

    group,
    findGroup: (subscriptionId: string, name: string) => d.repo.group(subscriptionId, name),
    groups: (subscriptionId: string) => d.repo.groups(subscriptionId),
    putGroup,
    setGroupState(g: ResourceGroup, state: ResourceGroup['state']) { d.repo.updateGroup({ ...g, state }); },
    removeGroup: (g: ResourceGroup) => d.repo.deleteGroup(g.subscriptionId, g.name),
    defaultGroupName,
    resourcesInGroup: (g: ResourceGroup) => d.repo.placementsInGroup(g.subscriptionId, g.name),

    /**
     * Where a new resource would go, without writing anything: the group the path names, or (on a tenant path)
     * where it already is, else the default group of its location in the tenant's default subscription. Names
     * are unique per tenant here (Azure makes some unique per group only): a name the tenant holds in another
     * group is a conflict that names that group.
     */
    plan,
    /**
     * Creates a resource where `plan` puts it. The placement (and a default group it needs) is written first and
     * taken back if `act` refuses, so a crash in between leaves at most a placement whose resource does not exist
     * (which the same PUT, repeated, fills), never a resource in the wrong group.
     */
    async create<T>(p: Placement, location: string, act: () => Promise<T> | T): Promise<T> {
      const before = d.repo.placement(p.tenantId, p.type, p.name);
      const madeGroup = !d.repo.group(p.subscriptionId, p.resourceGroup);
      if (madeGroup && !location) throw errors.badParameter('location is required.', 'LocationRequired');
      d.repo.transaction(() => {
        const g = ensureGroup(p.subscriptionId, p.resourceGroup, location);
        d.repo.upsertPlacement({ ...p, resourceGroup: g.name });
      });
      try {
        return await act();
      } catch (e) {
        d.repo.transaction(() => {
          if (before) d.repo.upsertPlacement(before);
          else d.repo.deletePlacement(p.tenantId, p.type, p.name);
          // The group this create made goes too, unless another resource was placed in it meanwhile.
          if (madeGroup && d.repo.placementsInGroup(p.subscriptionId, p.resourceGroup).length === 0) d.repo.deleteGroup(p.subscriptionId, p.resourceGroup);
        });
        throw e;
      }
    },
    /** Where an existing resource sits (resources made before placement existed sit in their location's default group). */
    placementOf(tenantId: string, type: string, name: string, location: string): Placement {
      const p = d.repo.placement(tenantId, type, name);
      if (p) return p;
      const sub = defaultSubscription(tenantId).id;
      const g = ensureGroup(sub, defaultGroupName(location), location);
      const placed: Placement = { tenantId, type, name, subscriptionId: sub, resourceGroup: g.name, tags: {} };
      d.repo.upsertPlacement(placed);
      return placed;
    },
    /** Where a resource sits, if it has been placed (nothing is written). */
    findPlacement: (tenantId: string, type: string, name: string): Placement | undefined => d.repo.placement(tenantId, type, name),
    unplace: (tenantId: string, type: string, name: string) => d.repo.deletePlacement(tenantId, type, name),
    /** Is a resource visible at the scope a request addresses? (On a tenant path everything of the tenant is.) */
    inScope(scope: ArmScope, p: Placement): boolean {
      if (scope.tenantPath) return p.tenantId === scope.tenantId;
      if (p.subscriptionId !== scope.subscriptionId) return false;
      return scope.resourceGroup === undefined || p.resourceGroup.toLowerCase() === scope.resourceGroup.toLowerCase();
    },

    registerType(l: ResourceLister) { listers.set(l.type.toLowerCase(), l); },
    listers: () => [...listers.values()],
  };
}

export type ArmService = ReturnType<typeof createArmService>;

/** `/subscriptions/{sub}/resourceGroups/{rg}/providers/{type}/{name}` */
export const resourceId = (p: Pick<Placement, 'subscriptionId' | 'resourceGroup' | 'type' | 'name'>) =>
  `/subscriptions/${p.subscriptionId}/resourceGroups/${p.resourceGroup}/providers/${p.type}/${p.name}`;

/** The parts of an ARM id of a top-level resource (or of the older `/tenants/{tid}/providers/...` form). */
export function parseResourceId(id: string): { subscriptionId?: string; tenantId?: string; resourceGroup?: string; type: string; name: string } | undefined {
  const arm = /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/([^/]+\/[^/]+)\/([^/]+)\/?$/i.exec(id);
  if (arm) return { subscriptionId: arm[1], resourceGroup: arm[2], type: arm[3], name: arm[4] };
  const old = /^\/tenants\/([^/]+)\/providers\/([^/]+\/[^/]+)\/([^/]+)\/?$/i.exec(id);
  if (old) return { tenantId: old[1], type: old[2], name: old[3] };
  return undefined;
}
