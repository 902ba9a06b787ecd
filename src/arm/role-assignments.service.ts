import { ApiError, errors } from '../lib/errors.js';
import type { IdentityService } from '../identity/identity.service.js';
import type { RoleAssignment } from '../identity/identity.repo.js';
import { ROLE_DEFINITIONS, roleDefinitionById, roleDefinitionByName, roleDefinitionGuid, type RoleDefinition } from '../identity/role-definitions.js';
import { parseRole } from '../identity/roles.js';
import { armErrors, resourceId, type ArmScope, type ArmService } from './arm.service.js';
import { ROOT_SCOPE, scopeContains } from './scopes.js';

/**
 * Microsoft.Authorization: role definitions (the built-in catalog) and role assignments at ARM scopes, with
 * Azure's validation and error codes. A change to an assignment of a role with data actions is announced to
 * `onDataRoleChanged` (the vaults under its scope emit an access-change event, so the key monitor re-checks).
 */
const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const PRINCIPAL_TYPES = ['User', 'Group', 'ServicePrincipal', 'ForeignGroup', 'Device'];

export interface RoleAssignmentInput {
  roleDefinitionId: string;
  principalId: string;
  principalType?: string;
}

export const authzErrors = {
  definitionNotFound: (id: string) => errors.notFound('RoleDefinitionDoesNotExist', `The specified role definition with ID '${id}' does not exist.`),
  assignmentNotFound: (id: string) => errors.notFound('RoleAssignmentNotFound', `The role assignment '${id}' is not found.`),
  invalidId: (id: string) => new ApiError(400, 'InvalidRoleAssignmentId', `The role assignment ID '${id}' is not valid. The role assignment ID must be a GUID.`),
  principalNotFound: (id: string, tenantId: string) => new ApiError(400, 'PrincipalNotFound',
    `Principal ${id} does not exist in the directory ${tenantId}. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group.`),
  exists: () => new ApiError(409, 'RoleAssignmentExists', 'The role assignment already exists.'),
  updateNotPermitted: () => new ApiError(400, 'RoleAssignmentUpdateNotPermitted', 'Tenant ID, application ID, principal ID, and scope are not allowed to be updated.'),
};

/** `roleName eq 'X'`, `principalId eq 'X'`, `assignedTo('X')`, `atScope()`, `type eq 'BuiltInRole'`, joined by `and`. */
function parseFilter(filter: string | null): { field: string; value: string }[] {
  if (!filter) return [];
  return filter.split(/\s+and\s+/i).map((part) => {
    const p = part.trim();
    if (/^atScope\(\)$/i.test(p)) return { field: 'atscope', value: '' };
    const fn = /^assignedTo\('([^']*)'\)$/i.exec(p);
    if (fn) return { field: 'principalid', value: fn[1] };
    const eq = /^(\w+)\s+eq\s+'([^']*)'$/i.exec(p);
    if (eq) return { field: eq[1].toLowerCase(), value: eq[2] };
    throw new ApiError(400, 'InvalidFilterInQueryString', `The filter '${filter}' is not supported. Supported: atScope(), principalId eq '{id}', assignedTo('{id}'), roleName eq '{name}', type eq 'BuiltInRole'.`);
  });
}

export function createRoleAssignmentService(d: {
  identity: IdentityService;
  arm: ArmService;
  onDataRoleChanged: (tenantId: string, scope: string) => void;
}) {
  const announce = (a: RoleAssignment) => {
    const def = roleDefinitionByName(a.role);
    if (def && def.dataActions.length) d.onDataRoleChanged(a.tenantId, a.scope);
  };
  const lister = (type: string) => d.arm.listers().find((l) => l.type.toLowerCase() === type.toLowerCase());

  return {
    /**
     * The canonical scope a request addresses: `/` without a subscription (the root and the tenant path), the
     * subscription, the group as stored, or a resource, which must exist in that group (404 otherwise).
     */
    scopeOf(arm: ArmScope | undefined, resource?: { type: string; name: string }): string {
      if (!arm || arm.tenantPath) return ROOT_SCOPE;
      if (arm.resourceGroup === undefined) return `/subscriptions/${arm.subscriptionId}`;
      const group = `/subscriptions/${arm.subscriptionId}/resourceGroups/${arm.resourceGroup}`;
      if (!resource) return group;
      const l = lister(resource.type);
      const found = l?.list(arm.tenantId).find((r) => r.name.toLowerCase() === resource.name.toLowerCase());
      if (!l || !found) throw armErrors.resourceNotFound(resource.type, resource.name, arm.resourceGroup);
      const p = d.arm.placementOf(arm.tenantId, l.type, found.name, found.location);
      if (!d.arm.inScope(arm, p)) throw armErrors.resourceNotFound(resource.type, resource.name, arm.resourceGroup);
      return resourceId(p);
    },

    definitions(filter: string | null): RoleDefinition[] {
      const f = parseFilter(filter);
      return ROLE_DEFINITIONS.filter((r) => f.every(({ field, value }) =>
        field === 'rolename' ? r.roleName.toLowerCase() === value.toLowerCase()
          : field === 'type' ? value.toLowerCase() === 'builtinrole'
            : (() => { throw new ApiError(400, 'InvalidFilterInQueryString', `Role definitions filter on roleName or type, not '${field}'.`); })()));
    },
    definition(id: string): RoleDefinition {
      const def = roleDefinitionById(id);
      if (!def) throw authzErrors.definitionNotFound(id);
      return def;
    },

    /** ARM's PUT: creates the assignment `id` at `scope`; the same one again is answered as it is (`created: false`). */
    put(tenantId: string, scope: string, id: string, input: RoleAssignmentInput): { assignment: RoleAssignment; created: boolean } {
      if (!GUID_RE.test(id)) throw authzErrors.invalidId(id);
      const guid = roleDefinitionGuid(input.roleDefinitionId);
      const def = guid && roleDefinitionById(guid);
      if (!def) throw authzErrors.definitionNotFound(guid ?? input.roleDefinitionId);
      const p = d.identity.principal(input.principalId);
      if (!p || p.tenantId !== tenantId) throw authzErrors.principalNotFound(input.principalId, tenantId);
      if (input.principalType !== undefined) {
        if (!PRINCIPAL_TYPES.includes(input.principalType)) throw errors.badParameter(`principalType must be one of ${PRINCIPAL_TYPES.join(', ')}.`, 'InvalidPrincipalType');
        if (input.principalType !== 'ServicePrincipal') {
          throw new ApiError(400, 'UnmatchedPrincipalType', `The PrincipalId '${p.objectId}' has type 'ServicePrincipal', which is different from specified PrincipalType '${input.principalType}'.`);
        }
      }
      const role = parseRole(def.roleName);
      const same = d.identity.roleAssignment(tenantId, id.toLowerCase());
      if (same) {
        if (same.principalId === p.objectId && same.role === role && same.scope.toLowerCase() === scope.toLowerCase()) return { assignment: same, created: false };
        throw authzErrors.updateNotPermitted();
      }
      const other = d.identity.assignmentsOf(tenantId, p.objectId).find((a) => a.role === role && a.scope.toLowerCase() === scope.toLowerCase());
      if (other) throw authzErrors.exists();
      const assignment = d.identity.assignRole(tenantId, p.objectId, role, scope, { id: id.toLowerCase(), principalType: 'ServicePrincipal' });
      announce(assignment);
      return { assignment, created: true };
    },

    /** pgbyok's older form: by role name, tenant-wide, idempotent. */
    assignByName(tenantId: string, principalRef: string, roleName: string): RoleAssignment {
      const p = d.identity.findPrincipal(tenantId, principalRef);
      const before = d.identity.assignmentsOf(tenantId, p.objectId).length;
      const a = d.identity.assignRole(tenantId, p.objectId, roleName, ROOT_SCOPE);
      if (d.identity.assignmentsOf(tenantId, p.objectId).length !== before) announce(a);
      return a;
    },

    get(tenantId: string, scope: string, id: string): RoleAssignment {
      const a = d.identity.roleAssignment(tenantId, id);
      if (!a || a.scope.toLowerCase() !== scope.toLowerCase()) throw authzErrors.assignmentNotFound(id);
      return a;
    },

    /** At a scope: the assignments at, above and below it (`atScope()`: at and above only), filtered by principal. */
    list(tenantId: string, scope: string, filter: string | null): RoleAssignment[] {
      const f = parseFilter(filter);
      const atScope = f.some((x) => x.field === 'atscope');
      const principal = f.find((x) => x.field === 'principalid')?.value;
      for (const x of f) if (!['atscope', 'principalid'].includes(x.field)) throw new ApiError(400, 'InvalidFilterInQueryString', `Role assignments filter on atScope(), principalId or assignedTo(), not '${x.field}'.`);
      return d.identity.roleAssignments(tenantId).filter((a) =>
        (scopeContains(a.scope, scope) || (!atScope && scopeContains(scope, a.scope))) && (!principal || a.principalId.toLowerCase() === principal.toLowerCase()));
    },

    /** ARM's DELETE: the removed assignment, or undefined when there was none at this scope (204). */
    remove(tenantId: string, scope: string | undefined, id: string): RoleAssignment | undefined {
      const a = d.identity.roleAssignment(tenantId, id);
      if (!a || (scope !== undefined && a.scope.toLowerCase() !== scope.toLowerCase())) return undefined;
      d.identity.removeRoleAssignment(tenantId, a.id);
      announce(a);
      return a;
    },
  };
}

export type RoleAssignmentService = ReturnType<typeof createRoleAssignmentService>;
