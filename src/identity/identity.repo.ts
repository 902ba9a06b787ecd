import type { Db } from '../store/db.js';

export type PrincipalKind = 'ServicePrincipal' | 'UserAssignedIdentity';

export interface Tenant {
  id: string;
  name: string;
  created: number;
}

export interface Principal {
  objectId: string;
  tenantId: string;
  clientId: string;
  kind: PrincipalKind;
  name: string;
  location: string;
  created: number;
}

export interface RoleAssignment {
  id: string;
  tenantId: string;
  principalId: string;
  role: string;
  /** The ARM scope it was made at: `/` (tenant-wide), `/subscriptions/{s}`, `.../resourceGroups/{g}`, or a resource id. */
  scope: string;
  principalType?: string;
  created: number;
}

interface PrincipalRow {
  object_id: string;
  tenant_id: string;
  client_id: string;
  kind: PrincipalKind;
  name: string;
  location: string;
  secret_hash: string;
  created: number;
}

const toPrincipal = (r: PrincipalRow): Principal => ({
  objectId: r.object_id,
  tenantId: r.tenant_id,
  clientId: r.client_id,
  kind: r.kind,
  name: r.name,
  location: r.location,
  created: r.created,
});

/** SQL for tenants, principals and role assignments; nothing here decides anything. */
export function createIdentityRepo(db: Db) {
  const stmts = {
    tenantById: db.prepare('SELECT * FROM tenants WHERE id = ?'),
    tenantByName: db.prepare('SELECT * FROM tenants WHERE name = ?'),
    tenants: db.prepare('SELECT * FROM tenants ORDER BY created, name'),
    insertTenant: db.prepare('INSERT INTO tenants (id, name, created) VALUES (?, ?, ?)'),
    principalByObjectId: db.prepare('SELECT * FROM principals WHERE object_id = ?'),
    principalByClientId: db.prepare('SELECT * FROM principals WHERE client_id = ?'),
    principalByName: db.prepare('SELECT * FROM principals WHERE tenant_id = ? AND kind = ? AND name = ?'),
    principals: db.prepare('SELECT * FROM principals WHERE tenant_id = ? ORDER BY created, name'),
    insertPrincipal: db.prepare(
      'INSERT INTO principals (object_id, tenant_id, client_id, kind, name, location, secret_hash, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    updateSecret: db.prepare('UPDATE principals SET secret_hash = ? WHERE object_id = ?'),
    deletePrincipal: db.prepare('DELETE FROM principals WHERE object_id = ?'),
    roles: db.prepare('SELECT * FROM role_assignments WHERE tenant_id = ? ORDER BY created, id'),
    rolesOfPrincipal: db.prepare('SELECT * FROM role_assignments WHERE tenant_id = ? AND principal_id = ? ORDER BY created, id'),
    insertRole: db.prepare('INSERT OR IGNORE INTO role_assignments (id, tenant_id, principal_id, role, scope, principal_type, created) VALUES (?, ?, ?, ?, ?, ?, ?)'),
    roleById: db.prepare('SELECT * FROM role_assignments WHERE id = ?'),
    roleByPair: db.prepare('SELECT * FROM role_assignments WHERE tenant_id = ? AND principal_id = ? AND role = ? AND scope = ?'),
    deleteRole: db.prepare('DELETE FROM role_assignments WHERE id = ?'),
  };
  const roleRow = (r: any): RoleAssignment | undefined =>
    r && { id: r.id, tenantId: r.tenant_id, principalId: r.principal_id, role: r.role, scope: r.scope, ...(r.principal_type ? { principalType: r.principal_type } : {}), created: r.created };

  return {
    transaction: <T>(fn: () => T): T => db.transaction(fn)(),
    tenant: (id: string) => stmts.tenantById.get(id) as Tenant | undefined,
    tenantByName: (name: string) => stmts.tenantByName.get(name) as Tenant | undefined,
    tenants: () => stmts.tenants.all() as Tenant[],
    insertTenant: (t: Tenant) => void stmts.insertTenant.run(t.id, t.name, t.created),
    principal: (objectId: string) => {
      const r = stmts.principalByObjectId.get(objectId) as PrincipalRow | undefined;
      return r && toPrincipal(r);
    },
    principalWithSecret: (clientId: string) => {
      const r = stmts.principalByClientId.get(clientId) as PrincipalRow | undefined;
      return r && { principal: toPrincipal(r), secretHash: r.secret_hash };
    },
    principalByName: (tenantId: string, kind: PrincipalKind, name: string) => {
      const r = stmts.principalByName.get(tenantId, kind, name) as PrincipalRow | undefined;
      return r && toPrincipal(r);
    },
    principals: (tenantId: string) => (stmts.principals.all(tenantId) as PrincipalRow[]).map(toPrincipal),
    insertPrincipal: (p: Principal, secretHash: string) =>
      void stmts.insertPrincipal.run(p.objectId, p.tenantId, p.clientId, p.kind, p.name, p.location, secretHash, p.created),
    updateSecret: (objectId: string, secretHash: string) => void stmts.updateSecret.run(secretHash, objectId),
    deletePrincipal: (objectId: string) => stmts.deletePrincipal.run(objectId).changes > 0,
    roleAssignments: (tenantId: string) => (stmts.roles.all(tenantId) as any[]).map((r) => roleRow(r)!),
    /** Every assignment of a principal, at any scope (read on every request: no cache, so a removal counts at once). */
    assignmentsOf: (tenantId: string, principalId: string) => (stmts.rolesOfPrincipal.all(tenantId, principalId) as any[]).map((r) => roleRow(r)!),
    insertRole: (a: RoleAssignment) => void stmts.insertRole.run(a.id, a.tenantId, a.principalId, a.role, a.scope, a.principalType ?? null, a.created),
    roleAssignment: (id: string) => roleRow(stmts.roleById.get(id)),
    roleAssignmentFor: (tenantId: string, principalId: string, role: string, scope: string) => roleRow(stmts.roleByPair.get(tenantId, principalId, role, scope)),
    deleteRole: (id: string) => stmts.deleteRole.run(id).changes > 0,
  };
}

export type IdentityRepo = ReturnType<typeof createIdentityRepo>;
