import { randomUUID } from 'node:crypto';
import { ApiError, errors } from '../lib/errors.js';
import { nowSeconds, systemClock, type Clock } from '../lib/clock.js';
import { actionMatches } from '../identity/role-definitions.js';
import type { HsmCustomRoleProperties, HsmRbacRepo, HsmRoleAssignment, HsmRolePermission } from './hsm-rbac.repo.js';

export type { HsmRoleAssignment, HsmRolePermission } from './hsm-rbac.repo.js';
export {
  BUILT_IN_HSM_ROLES, HSM_ADMINISTRATOR_ROLE_ID, HSM_DATA_ACTIONS, roleAssignmentWire, roleDefinitionFullId, roleDefinitionWire,
  type HsmDataAction, type HsmRef, type HsmRoleDefinition,
} from './hsm-roles.js';
import {
  BUILT_IN_HSM_ROLES, DEFINITION_ID_PREFIX, HSM_ADMINISTRATOR_ROLE_ID, HSM_DATA_ACTIONS, HSM_ACTION_PREFIX, type HsmDataAction, type HsmRef, type HsmRoleDefinition,
} from './hsm-roles.js';

/**
 * A Managed HSM's data plane answers to its *local* RBAC (docs/research/managed-hsm-wire.md section 3), not to
 * access policies nor to ARM role assignments: role assignments kept per HSM at scope `/` (all of it), `/keys`
 * (every key) or `/keys/{name}` (one key), of the built-in roles below or custom ones defined at `/`. A call may
 * go ahead when one of the caller's assignments is at a scope containing the addressed one and its role's data
 * actions include the call's (and its not-data-actions do not). Assignments are read from the store on every
 * decision: a removed one stops access on the next request.
 */

const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const KEY_NAME_RE = /^[0-9a-zA-Z-]{1,127}$/;
const builtInById = new Map(BUILT_IN_HSM_ROLES.map((d) => [d.name, d]));
/**
 * The canonical form of a local-RBAC scope: `/`, `/keys` or `/keys/{name}`. Lenient as the SDKs need (the JS
 * SDK's scope `/` reaches us as `///providers/...`; az passes '' or '/'): repeated and trailing slashes go, the
 * leading one is added, `keys` is matched case-insensitively. The key name keeps its case.
 */
export function normalizeScope(raw: string): string {
  const parts = String(raw ?? '').split('/').filter((p) => p !== '');
  if (parts.length === 0) return '/';
  if (parts[0].toLowerCase() === 'keys') {
    if (parts.length === 1) return '/keys';
    if (parts.length === 2 && KEY_NAME_RE.test(parts[1])) return `/keys/${parts[1]}`;
  }
  throw errors.badParameter(`The scope '${raw}' is not a Managed HSM role scope: use '/' (the whole HSM), '/keys' (all keys) or '/keys/{key-name}' (one key; a key name is 1 to 127 letters, digits and dashes).`);
}

/** Does an assignment at `outer` apply to a request addressing `inner` (both canonical)? */
export function hsmScopeContains(outer: string, inner: string): boolean {
  const o = outer.toLowerCase();
  const i = inner.toLowerCase();
  return o === '/' || o === i || (o === '/keys' && i.startsWith('/keys/'));
}

/**
 * The GUID of a roleDefinitionId, lowercase: the bare GUID, `/Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/{guid}`
 * (with or without its leading slash, as Azure's own responses vary) or `/providers/Microsoft.Authorization/roleDefinitions/{guid}`.
 */
export function parseRoleDefinitionId(raw: string): string {
  const m = /^(?:\/?Microsoft\.KeyVault\/providers\/Microsoft\.Authorization\/roleDefinitions\/|\/providers\/Microsoft\.Authorization\/roleDefinitions\/)?([^/]+)$/i
    .exec(String(raw ?? ''));
  if (!m || !GUID_RE.test(m[1])) {
    throw errors.badParameter(`The roleDefinitionId '${raw}' is not valid: use a role definition's GUID or its id, '${DEFINITION_ID_PREFIX}{guid}'.`);
  }
  return m[1].toLowerCase();
}

const isGuid = (s: unknown): s is string => typeof s === 'string' && GUID_RE.test(s);

/** Does the role grant this data action (one of its permissions has it in dataActions and not in notDataActions)? */
export function hsmRoleGrants(def: HsmRoleDefinition, action: string): boolean {
  return def.permissions.some((p) => p.dataActions.some((x) => actionMatches(x, action)) && !p.notDataActions.some((x) => actionMatches(x, action)));
}

const stringList = (v: unknown, what: string): string[] => {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw errors.badParameter(`${what} must be a list of strings.`);
  return v as string[];
};

/** Each pattern of a custom role must name at least one Managed HSM data action (exactly, or through `*`). */
const checkDataActions = (list: string[], what: string): string[] => {
  for (const p of list) {
    if (!HSM_DATA_ACTIONS.some((x) => actionMatches(p, x))) {
      throw errors.badParameter(`${what} '${p}' names no Managed HSM data action: use one of ${HSM_ACTION_PREFIX}..., e.g. ${HSM_ACTION_PREFIX}keys/unwrap/action, or a pattern such as ${HSM_ACTION_PREFIX}keys/*.`);
    }
  }
  return list;
};

function checkCustomProperties(p: unknown): HsmCustomRoleProperties {
  if (!p || typeof p !== 'object' || Array.isArray(p)) throw errors.badParameter('A role definition needs properties: {roleName, description, type: "CustomRole", permissions, assignableScopes: ["/"]}.');
  const o = p as Record<string, unknown>;
  if (typeof o.roleName !== 'string' || !o.roleName.trim()) throw errors.badParameter('properties.roleName is required: a role definition needs a name.');
  if (o.description !== undefined && o.description !== null && typeof o.description !== 'string') throw errors.badParameter('properties.description must be a string.');
  if (o.type !== undefined && o.type !== null && o.type !== 'CustomRole') throw errors.badParameter(`properties.type must be 'CustomRole', not '${String(o.type)}': only custom roles can be defined.`);
  const scopes = o.assignableScopes === undefined || o.assignableScopes === null ? ['/'] : stringList(o.assignableScopes, 'properties.assignableScopes');
  if (scopes.length !== 1 || scopes[0] !== '/') {
    throw errors.badParameter(`properties.assignableScopes must be ["/"]: Managed HSM role definitions are defined at '/' only, not ${JSON.stringify(scopes)}.`);
  }
  if (!Array.isArray(o.permissions) || o.permissions.length === 0) throw errors.badParameter('properties.permissions is required: a list of {dataActions, notDataActions}.');
  const permissions = o.permissions.map((x, i): HsmRolePermission => {
    if (!x || typeof x !== 'object' || Array.isArray(x)) throw errors.badParameter(`properties.permissions[${i}] must be an object {dataActions, notDataActions}.`);
    const q = x as Record<string, unknown>;
    if (stringList(q.actions, `properties.permissions[${i}].actions`).length || stringList(q.notActions, `properties.permissions[${i}].notActions`).length) {
      throw errors.badParameter(`properties.permissions[${i}]: a Managed HSM role carries data actions only; actions and notActions must be empty.`);
    }
    return {
      dataActions: checkDataActions(stringList(q.dataActions, `properties.permissions[${i}].dataActions`), 'The data action'),
      notDataActions: checkDataActions(stringList(q.notDataActions, `properties.permissions[${i}].notDataActions`), 'The not-data-action'),
    };
  });
  return { roleName: o.roleName.trim(), description: (o.description as string | undefined) ?? '', type: 'CustomRole', permissions, assignableScopes: ['/'] };
}

const customDefinition = (name: string, p: HsmCustomRoleProperties): HsmRoleDefinition => ({
  name, roleName: p.roleName, description: p.description, type: 'CustomRole',
  permissions: p.permissions.map((x) => ({ dataActions: [...x.dataActions], notDataActions: [...x.notDataActions] })),
  assignableScopes: [...p.assignableScopes],
});

export interface HsmRoleAssignmentInput {
  scope: string;
  roleDefinitionId: string;
  principalId: string;
}

export interface HsmRoleAssignmentFilter {
  /** Only the assignments that apply at this scope: at it or above it (ARM's `atScope()`). */
  atScope?: string;
  principalId?: string;
}

export function createLocalRbac(repo: HsmRbacRepo, clock: Clock = systemClock) {
  const definitionOf = (hsm: HsmRef, guid: string): HsmRoleDefinition | undefined => {
    const b = builtInById.get(guid);
    if (b) return b;
    const c = repo.definition(hsm.id, guid);
    return c ? customDefinition(c.name, c.properties) : undefined;
  };

  const assignmentNotFound = (hsm: HsmRef, name: string) =>
    errors.notFound('RoleAssignmentNotFound', `The role assignment '${name}' is not found on Managed HSM '${hsm.name}'.`);
  const definitionNotFound = (hsm: HsmRef, guid: string) =>
    errors.notFound('RoleDefinitionNotFound', `The role definition '${guid}' is not found on Managed HSM '${hsm.name}'.`);

  const assignmentName = (name: string): string => {
    if (!isGuid(name)) throw errors.badParameter(`The role assignment name '${name}' is not valid: a role assignment's name must be a GUID.`);
    return name.toLowerCase();
  };
  const definitionName = (guid: string): string => {
    if (!isGuid(guid)) throw errors.badParameter(`The role definition name '${guid}' is not valid: a role definition's name must be a GUID.`);
    return guid.toLowerCase();
  };

  const refusal = (hsm: HsmRef, principalId: string, action: string, scope: string): ApiError =>
    errors.forbidden(`Not authorized to access ${action} on ${scope} (Caller: oid=${principalId}; HSM: ${hsm.name})`, 'AccessDenied');

  const createAssignment = (hsm: HsmRef, rawName: string, input: HsmRoleAssignmentInput): HsmRoleAssignment => {
    const name = assignmentName(rawName);
    if (!input || typeof input !== 'object') throw errors.badParameter('A role assignment needs properties: {roleDefinitionId, principalId}.');
    const scope = normalizeScope(input.scope);
    if (input.roleDefinitionId === undefined || input.roleDefinitionId === null || input.roleDefinitionId === '') {
      throw errors.badParameter('properties.roleDefinitionId is required: the role definition to assign.');
    }
    if (!isGuid(input.principalId)) {
      throw errors.badParameter(`properties.principalId '${input.principalId ?? ''}' is not valid: use the object id (a GUID) of the principal to assign the role to.`);
    }
    const principalId = input.principalId.toLowerCase();
    const roleGuid = parseRoleDefinitionId(input.roleDefinitionId);
    return repo.transaction(() => {
      const def = definitionOf(hsm, roleGuid);
      if (!def) {
        throw errors.badParameter(`The role definition '${roleGuid}' does not exist on Managed HSM '${hsm.name}': assign a built-in role (such as Managed HSM Crypto User, 21dbd100-6940-42c2-9190-5d6cb909625b) or a custom role defined at '/'.`);
      }
      if (!def.assignableScopes.some((s) => hsmScopeContains(s, scope))) {
        throw errors.badParameter(`The role '${def.roleName}' is not assignable at scope '${scope}' (its assignable scopes: ${def.assignableScopes.join(', ')}).`);
      }
      const same = repo.assignment(hsm.id, name);
      if (same) {
        if (same.principalId === principalId && same.roleDefinitionId === roleGuid && same.scope.toLowerCase() === scope.toLowerCase()) return same;
        throw errors.conflict(`The role assignment '${name}' already exists with another scope, role or principal; its scope, role and principal cannot be changed.`, 'RoleAssignmentUpdateNotPermitted');
      }
      const dup = repo.assignmentsOf(hsm.id, principalId).find((x) => x.roleDefinitionId === roleGuid && x.scope.toLowerCase() === scope.toLowerCase());
      if (dup) throw errors.conflict(`The role assignment already exists: '${dup.name}' assigns '${def.roleName}' to ${principalId} at '${dup.scope}'.`, 'RoleAssignmentExists');
      const assignment: HsmRoleAssignment = { name, scope, roleDefinitionId: roleGuid, principalId, created: nowSeconds(clock) };
      repo.insertAssignment(hsm.id, assignment);
      return assignment;
    });
  };

  return {
    /** Undefined when the principal may perform `action` at `scope`; otherwise the refusal (403 Forbidden, innererror AccessDenied). */
    decide(hsm: HsmRef, principalId: string, action: HsmDataAction, scope: string): ApiError | undefined {
      let at: string;
      try {
        at = normalizeScope(scope);
      } catch (e) {
        if (e instanceof ApiError) return e;
        throw e;
      }
      const granted = repo.assignmentsOf(hsm.id, principalId).some((x) => {
        if (!hsmScopeContains(x.scope, at)) return false;
        const def = definitionOf(hsm, x.roleDefinitionId);
        return !!def && hsmRoleGrants(def, action);
      });
      return granted ? undefined : refusal(hsm, principalId, action, at);
    },
    authorize(hsm: HsmRef, principalId: string, action: HsmDataAction, scope: string): void {
      const e = this.decide(hsm, principalId, action, scope);
      if (e) throw e;
    },

    assignments: {
      /** PUT: creates the assignment `name` (a GUID); the same one again is answered as stored. */
      create: createAssignment,
      /**
       * One assignment by name, addressed at `under` (the route's scope, where the caller's right to read or
       * delete was checked): one outside it, such as an assignment at `/` addressed under `/keys/k`, is 404.
       */
      get(hsm: HsmRef, name: string, under = '/'): HsmRoleAssignment {
        const a = isGuid(name) ? repo.assignment(hsm.id, name.toLowerCase()) : undefined;
        if (!a || !hsmScopeContains(normalizeScope(under), a.scope)) throw assignmentNotFound(hsm, name);
        return a;
      },
      /** All of the HSM's assignments, or those applying at `atScope` (at it or above), or of one principal. */
      list(hsm: HsmRef, filter: HsmRoleAssignmentFilter = {}): HsmRoleAssignment[] {
        const at = filter.atScope === undefined ? undefined : normalizeScope(filter.atScope);
        const all = filter.principalId === undefined ? repo.assignments(hsm.id) : repo.assignmentsOf(hsm.id, filter.principalId);
        return at === undefined ? all : all.filter((x) => hsmScopeContains(x.scope, at));
      },
      /** Removes the assignment and answers it as it was (404 RoleAssignmentNotFound when there is none). */
      delete(hsm: HsmRef, name: string, under = '/'): HsmRoleAssignment {
        return repo.transaction(() => {
          const a = isGuid(name) ? repo.assignment(hsm.id, name.toLowerCase()) : undefined;
          if (!a || !hsmScopeContains(normalizeScope(under), a.scope)) throw assignmentNotFound(hsm, name);
          repo.deleteAssignment(hsm.id, a.name);
          return a;
        });
      },
    },

    definitions: {
      /** The built-ins, then the HSM's custom roles. */
      list(hsm: HsmRef): HsmRoleDefinition[] {
        return [...BUILT_IN_HSM_ROLES, ...repo.definitions(hsm.id).map((c) => customDefinition(c.name, c.properties))];
      },
      get(hsm: HsmRef, guid: string): HsmRoleDefinition {
        const def = isGuid(guid) ? definitionOf(hsm, guid.toLowerCase()) : undefined;
        if (!def) throw definitionNotFound(hsm, guid);
        return def;
      },
      /** PUT of a custom role (created or replaced): assignable at '/' only, never over a built-in GUID, its roleName unique. */
      put(hsm: HsmRef, guid: string, properties: unknown): HsmRoleDefinition {
        const name = definitionName(guid);
        if (builtInById.has(name)) throw errors.badParameter(`The role definition '${name}' is the built-in role '${builtInById.get(name)!.roleName}': built-in roles cannot be changed; define a custom role under another GUID.`);
        const p = checkCustomProperties(properties);
        return repo.transaction(() => {
          const clash = [...BUILT_IN_HSM_ROLES, ...repo.definitions(hsm.id).map((c) => customDefinition(c.name, c.properties))]
            .find((d) => d.name !== name && d.roleName.toLowerCase() === p.roleName.toLowerCase());
          if (clash) throw errors.conflict(`A role definition named '${clash.roleName}' already exists (${clash.name}): role names are unique on a Managed HSM.`, 'RoleDefinitionWithSameNameExists');
          repo.upsertDefinition(hsm.id, { name, properties: p, created: nowSeconds(clock) });
          return customDefinition(name, p);
        });
      },
      /** Removes a custom role and answers it as it was: never a built-in (400), never one still assigned (409). */
      delete(hsm: HsmRef, guid: string): HsmRoleDefinition {
        const name = definitionName(guid);
        if (builtInById.has(name)) throw errors.badParameter(`The role definition '${name}' is the built-in role '${builtInById.get(name)!.roleName}': built-in roles cannot be deleted.`);
        return repo.transaction(() => {
          const c = repo.definition(hsm.id, name);
          if (!c) throw definitionNotFound(hsm, name);
          const n = repo.assignmentCountOfRole(hsm.id, name);
          if (n > 0) {
            throw errors.conflict(`The role definition '${c.properties.roleName}' (${name}) still has ${n} role assignment${n === 1 ? '' : 's'}: delete ${n === 1 ? 'it' : 'them'} first.`, 'RoleDefinitionHasAssignments');
          }
          repo.deleteDefinition(hsm.id, name);
          return customDefinition(c.name, c.properties);
        });
      },
    },

    /**
     * Azure's `initialAdminObjectIds` at create: Managed HSM Administrator at '/' for each object id (one the
     * principal already holds is kept). Answers the assignments, new or kept, in the order given.
     */
    bootstrapAdmins(hsm: HsmRef, objectIds: string[]): HsmRoleAssignment[] {
      return repo.transaction(() => objectIds.map((oid) => {
        const held = isGuid(oid)
          ? repo.assignmentsOf(hsm.id, oid).find((x) => x.roleDefinitionId === HSM_ADMINISTRATOR_ROLE_ID && x.scope === '/')
          : undefined;
        return held ?? createAssignment(hsm, randomUUID(), { scope: '/', roleDefinitionId: HSM_ADMINISTRATOR_ROLE_ID, principalId: oid });
      }));
    },
  };
}

export type LocalRbac = ReturnType<typeof createLocalRbac>;
