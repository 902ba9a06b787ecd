import type { Db } from '../store/db.js';

/** SQL for subscriptions, resource groups and resource placement; nothing here decides anything. */

export interface Subscription {
  id: string;
  tenantId: string;
  displayName: string;
  state: 'Enabled' | 'Disabled';
  isDefault: boolean;
  alias?: string;
  created: number;
}

export interface ResourceGroup {
  subscriptionId: string;
  name: string;
  location: string;
  tags: Record<string, string>;
  state: 'Succeeded' | 'Deleting';
  created: number;
}

export interface Placement {
  tenantId: string;
  type: string;
  name: string;
  subscriptionId: string;
  resourceGroup: string;
  tags: Record<string, string>;
}

const toSubscription = (r: any): Subscription => ({
  id: r.id, tenantId: r.tenant_id, displayName: r.display_name, state: r.state, isDefault: r.is_default === 1,
  ...(r.alias ? { alias: r.alias } : {}), created: r.created,
});
const toGroup = (r: any): ResourceGroup => ({
  subscriptionId: r.subscription_id, name: r.name, location: r.location, tags: JSON.parse(r.tags), state: r.state, created: r.created,
});
const toPlacement = (r: any): Placement => ({
  tenantId: r.tenant_id, type: r.resource_type, name: r.name, subscriptionId: r.subscription_id, resourceGroup: r.resource_group, tags: JSON.parse(r.tags),
});

export function createArmRepo(db: Db) {
  const s = {
    subscription: db.prepare('SELECT * FROM subscriptions WHERE id = ? COLLATE NOCASE'),
    subscriptions: db.prepare('SELECT * FROM subscriptions WHERE tenant_id = ? ORDER BY is_default DESC, created, id'),
    defaultSubscription: db.prepare('SELECT * FROM subscriptions WHERE tenant_id = ? AND is_default = 1'),
    byAlias: db.prepare('SELECT * FROM subscriptions WHERE tenant_id = ? AND alias = ?'),
    insertSubscription: db.prepare('INSERT OR IGNORE INTO subscriptions (id, tenant_id, display_name, state, is_default, alias, created) VALUES (?, ?, ?, ?, ?, ?, ?)'),
    group: db.prepare('SELECT * FROM resource_groups WHERE subscription_id = ? AND name = ?'),
    groups: db.prepare('SELECT * FROM resource_groups WHERE subscription_id = ? ORDER BY created, name'),
    insertGroup: db.prepare('INSERT OR IGNORE INTO resource_groups (subscription_id, name, location, tags, state, created) VALUES (?, ?, ?, ?, ?, ?)'),
    updateGroup: db.prepare('UPDATE resource_groups SET tags = ?, state = ? WHERE subscription_id = ? AND name = ?'),
    deleteGroup: db.prepare('DELETE FROM resource_groups WHERE subscription_id = ? AND name = ?'),
    placement: db.prepare('SELECT * FROM resource_placement WHERE tenant_id = ? AND resource_type = ? AND name = ?'),
    placementsInGroup: db.prepare('SELECT * FROM resource_placement WHERE subscription_id = ? AND resource_group = ?'),
    upsertPlacement: db.prepare(`INSERT INTO resource_placement (tenant_id, resource_type, name, subscription_id, resource_group, tags) VALUES (?, ?, ?, ?, ?, ?)
      ON CONFLICT (tenant_id, resource_type, name) DO UPDATE SET subscription_id = excluded.subscription_id, resource_group = excluded.resource_group, tags = excluded.tags`),
    deletePlacement: db.prepare('DELETE FROM resource_placement WHERE tenant_id = ? AND resource_type = ? AND name = ?'),
  };
  return {
    transaction: <T>(fn: () => T): T => db.transaction(fn)(),
    subscription: (id: string) => { const r = s.subscription.get(id); return r ? toSubscription(r) : undefined; },
    subscriptions: (tenantId: string) => s.subscriptions.all(tenantId).map(toSubscription),
    defaultSubscription: (tenantId: string) => { const r = s.defaultSubscription.get(tenantId); return r ? toSubscription(r) : undefined; },
    subscriptionByAlias: (tenantId: string, alias: string) => { const r = s.byAlias.get(tenantId, alias); return r ? toSubscription(r) : undefined; },
    insertSubscription: (x: Subscription) =>
      s.insertSubscription.run(x.id, x.tenantId, x.displayName, x.state, x.isDefault ? 1 : 0, x.alias ?? null, x.created).changes > 0,
    group: (subscriptionId: string, name: string) => { const r = s.group.get(subscriptionId, name); return r ? toGroup(r) : undefined; },
    groups: (subscriptionId: string) => s.groups.all(subscriptionId).map(toGroup),
    insertGroup: (g: ResourceGroup) => s.insertGroup.run(g.subscriptionId, g.name, g.location, JSON.stringify(g.tags), g.state, g.created).changes > 0,
    updateGroup: (g: ResourceGroup) => void s.updateGroup.run(JSON.stringify(g.tags), g.state, g.subscriptionId, g.name),
    deleteGroup: (subscriptionId: string, name: string) => void s.deleteGroup.run(subscriptionId, name),
    placement: (tenantId: string, type: string, name: string) => { const r = s.placement.get(tenantId, type, name); return r ? toPlacement(r) : undefined; },
    placementsInGroup: (subscriptionId: string, group: string) => s.placementsInGroup.all(subscriptionId, group).map(toPlacement),
    upsertPlacement: (p: Placement) => void s.upsertPlacement.run(p.tenantId, p.type, p.name, p.subscriptionId, p.resourceGroup, JSON.stringify(p.tags)),
    deletePlacement: (tenantId: string, type: string, name: string) => void s.deletePlacement.run(tenantId, type, name),
  };
}

export type ArmRepo = ReturnType<typeof createArmRepo>;
