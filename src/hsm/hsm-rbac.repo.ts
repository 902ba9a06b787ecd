import type { Db } from '../store/db.js';

/**
 * SQL for a Managed HSM's local RBAC: its role assignments and its custom role definitions (the built-ins
 * live in code, local-rbac.ts). Rows are keyed by the HSM's `vaults.id`; names (GUIDs) are stored lowercase
 * by the service, so lookups here are exact. Principal ids are compared case-insensitively.
 */

/** One role assignment as stored: `roleDefinitionId` is the definition's GUID, not its full id. */
export interface HsmRoleAssignment {
  name: string;
  /** '/', '/keys' or '/keys/{name}'. */
  scope: string;
  roleDefinitionId: string;
  principalId: string;
  /** Seconds since the epoch. */
  created: number;
}

export interface HsmRolePermission {
  dataActions: string[];
  notDataActions: string[];
}

/** A custom role definition's `properties` column. */
export interface HsmCustomRoleProperties {
  roleName: string;
  description: string;
  type: 'CustomRole';
  permissions: HsmRolePermission[];
  assignableScopes: string[];
}

export interface HsmCustomRole {
  name: string;
  properties: HsmCustomRoleProperties;
  created: number;
}

const toAssignment = (r: any): HsmRoleAssignment => ({
  name: r.name, scope: r.scope, roleDefinitionId: r.role_definition_id, principalId: r.principal_id, created: r.created,
});

const toDefinition = (r: any): HsmCustomRole => ({ name: r.name, properties: JSON.parse(r.properties), created: r.created });

export function createHsmRbacRepo(db: Db) {
  const s = {
    insertAssignment: db.prepare(`INSERT INTO hsm_role_assignments (vault_id, name, scope, role_definition_id, principal_id, created)
      VALUES (?,?,?,?,?,?)`),
    assignment: db.prepare('SELECT * FROM hsm_role_assignments WHERE vault_id = ? AND name = ?'),
    assignments: db.prepare('SELECT * FROM hsm_role_assignments WHERE vault_id = ? ORDER BY created, name'),
    assignmentsOf: db.prepare('SELECT * FROM hsm_role_assignments WHERE vault_id = ? AND principal_id = ? COLLATE NOCASE ORDER BY created, name'),
    assignmentCountOfRole: db.prepare('SELECT COUNT(*) AS n FROM hsm_role_assignments WHERE vault_id = ? AND role_definition_id = ?'),
    deleteAssignment: db.prepare('DELETE FROM hsm_role_assignments WHERE vault_id = ? AND name = ?'),
    definition: db.prepare('SELECT * FROM hsm_role_definitions WHERE vault_id = ? AND name = ?'),
    definitions: db.prepare('SELECT * FROM hsm_role_definitions WHERE vault_id = ? ORDER BY created, name'),
    // A PUT over an existing custom definition replaces its properties and keeps its creation time.
    upsertDefinition: db.prepare(`INSERT INTO hsm_role_definitions (vault_id, name, properties, created) VALUES (?,?,?,?)
      ON CONFLICT (vault_id, name) DO UPDATE SET properties = excluded.properties`),
    deleteDefinition: db.prepare('DELETE FROM hsm_role_definitions WHERE vault_id = ? AND name = ?'),
  };

  return {
    transaction: <T>(fn: () => T): T => db.transaction(fn)(),

    insertAssignment: (vaultId: string, a: HsmRoleAssignment) =>
      void s.insertAssignment.run(vaultId, a.name, a.scope, a.roleDefinitionId, a.principalId, a.created),
    assignment: (vaultId: string, name: string) => { const r = s.assignment.get(vaultId, name); return r ? toAssignment(r) : undefined; },
    assignments: (vaultId: string) => s.assignments.all(vaultId).map(toAssignment),
    assignmentsOf: (vaultId: string, principalId: string) => s.assignmentsOf.all(vaultId, principalId).map(toAssignment),
    assignmentCountOfRole: (vaultId: string, roleGuid: string) => (s.assignmentCountOfRole.get(vaultId, roleGuid) as { n: number }).n,
    deleteAssignment: (vaultId: string, name: string) => s.deleteAssignment.run(vaultId, name).changes > 0,

    definition: (vaultId: string, name: string) => { const r = s.definition.get(vaultId, name); return r ? toDefinition(r) : undefined; },
    definitions: (vaultId: string) => s.definitions.all(vaultId).map(toDefinition),
    upsertDefinition: (vaultId: string, d: HsmCustomRole) =>
      void s.upsertDefinition.run(vaultId, d.name, JSON.stringify(d.properties), d.created),
    deleteDefinition: (vaultId: string, name: string) => s.deleteDefinition.run(vaultId, name).changes > 0,
  };
}

export type HsmRbacRepo = ReturnType<typeof createHsmRbacRepo>;
