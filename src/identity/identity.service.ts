import { randomBytes, randomUUID, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { errors } from '../lib/errors.js';
import type { IdentityRepo, Principal, PrincipalKind, RoleAssignment, Tenant } from './identity.repo.js';
import { DUTIES, type Duty, type Role, parseRole } from './roles.js';
import { ROOT_SCOPE, scopeContains } from '../arm/scopes.js';
import { TokenError, type AccessClaims, type TokenService } from './tokens.js';

const scrypt = promisify(scryptCb) as (pw: string, salt: Buffer, len: number, opts: object) => Promise<Buffer>;
const SCRYPT = { N: 16384, r: 8, p: 1 };
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(secret, salt, 32, SCRYPT);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

async function secretMatches(secret: string, stored: string): Promise<boolean> {
  const [scheme, N, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt') return false;
  const expected = Buffer.from(hash, 'base64');
  const actual = await scrypt(secret, Buffer.from(salt, 'base64'), expected.length, { N: +N, r: +r, p: +p });
  return timingSafeEqual(actual, expected);
}

/** Client secrets look like Azure's: 40 characters, shown once, stored only as a scrypt hash. */
function newSecret(): string {
  return randomBytes(30).toString('base64url');
}

export interface Caller {
  principal: Principal;
  claims: AccessClaims;
}

export interface IssuedCredential {
  principal: Principal;
  clientSecret: string;
}

export interface IdentityServiceDeps {
  repo: IdentityRepo;
  tokens: TokenService;
  defaultLocation: string;
}

/** Tenants, principals, secrets, role assignments, and turning a bearer token into a caller. */
export function createIdentityService({ repo, tokens, defaultLocation }: IdentityServiceDeps) {
  const requireTenant = (tenantId: string): Tenant => {
    const t = repo.tenant(tenantId);
    if (!t) throw errors.notFound('TenantNotFound', `Tenant '${tenantId}' does not exist.`);
    return t;
  };

  /** Validates and builds a principal with a fresh secret; nothing is stored until `repo.insertPrincipal`. */
  const preparePrincipal = async (tenantId: string, kind: PrincipalKind, name: string, location = defaultLocation) => {
    if (!NAME_RE.test(name)) {
      throw errors.badParameter(`Invalid name '${name}': use 1-128 letters, digits, '-' or '_', starting with a letter or digit.`);
    }
    if (!/^[a-z0-9]{2,40}$/.test(location)) {
      throw errors.badParameter(`location '${location}' is invalid: use a lowercase region name such as eastus.`);
    }
    const clientSecret = newSecret();
    const principal: Principal = {
      objectId: randomUUID(), clientId: randomUUID(), tenantId, kind, name, location, created: Math.floor(Date.now() / 1000),
    };
    return { principal, clientSecret, secretHash: await hashSecret(clientSecret) };
  };

  const insertPrincipal = (p: Principal, secretHash: string) => {
    if (repo.principalByName(p.tenantId, p.kind, p.name)) {
      throw errors.conflict(`A ${p.kind === 'ServicePrincipal' ? 'service principal' : 'managed identity'} named '${p.name}' already exists in this tenant.`);
    }
    repo.insertPrincipal(p, secretHash);
  };

  const createPrincipal = async (tenantId: string, kind: PrincipalKind, name: string, location?: string): Promise<IssuedCredential> => {
    requireTenant(tenantId);
    const { principal, clientSecret, secretHash } = await preparePrincipal(tenantId, kind, name, location);
    insertPrincipal(principal, secretHash);
    return { principal, clientSecret };
  };

  /** Makes (or, when the same role is already held at the same scope, answers) an assignment. */
  const assignRole = (tenantId: string, principalId: string, roleName: string, scope = ROOT_SCOPE, opts: { id?: string; principalType?: string } = {}): RoleAssignment => {
    const role = parseRole(roleName);
    const p = repo.principal(principalId);
    if (!p || p.tenantId !== tenantId) throw errors.notFound('PrincipalNotFound', `No principal ${principalId} in this tenant.`);
    const existing = repo.roleAssignmentFor(tenantId, principalId, role, scope);
    if (existing) return existing;
    const a: RoleAssignment = { id: opts.id ?? randomUUID(), tenantId, principalId, role, scope, ...(opts.principalType ? { principalType: opts.principalType } : {}), created: Math.floor(Date.now() / 1000) };
    repo.insertRole(a);
    return a;
  };

  /** The roles a principal holds at a scope: its assignments at that scope or above it. */
  const rolesAt = (tenantId: string, objectId: string, scope: string): Role[] =>
    [...new Set(repo.assignmentsOf(tenantId, objectId).filter((a) => scopeContains(a.scope, scope)).map((a) => a.role as Role))];

  return {
    requireTenant,
    tenants: () => repo.tenants(),
    /** Where a principal created without a location goes. */
    defaultLocation: () => defaultLocation,
    createPrincipal,

    /**
     * A tenant with its own Owner service principal, whose secret is returned once. `beforeCommit` runs after
     * the secret exists and before anything is stored (bootstrap writes the credential file there), so a
     * crash leaves either nothing or a complete tenant with a credential on disk.
     */
    async createTenant(name: string, beforeCommit?: (t: Tenant, admin: IssuedCredential) => void): Promise<{ tenant: Tenant; admin: IssuedCredential }> {
      if (!NAME_RE.test(name)) throw errors.badParameter(`Invalid tenant name '${name}'.`);
      if (repo.tenantByName(name)) throw errors.conflict(`A tenant named '${name}' already exists.`);
      const tenant: Tenant = { id: randomUUID(), name, created: Math.floor(Date.now() / 1000) };
      const { principal, clientSecret, secretHash } = await preparePrincipal(tenant.id, 'ServicePrincipal', 'pgbyok-admin');
      const admin = { principal, clientSecret };
      beforeCommit?.(tenant, admin);
      repo.transaction(() => {
        repo.insertTenant(tenant);
        insertPrincipal(principal, secretHash);
        assignRole(tenant.id, principal.objectId, 'Owner');
      });
      return { tenant, admin };
    },

    principals: (tenantId: string) => repo.principals(tenantId),
    principal: (objectId: string) => repo.principal(objectId),

    /** Finds a principal of a tenant by object id, client id or name (an identity's name first). */
    findPrincipal(tenantId: string, ref: string): Principal {
      const byId = repo.principal(ref);
      const byClient = repo.principalWithSecret(ref)?.principal;
      const found =
        (byId?.tenantId === tenantId && byId) ||
        (byClient?.tenantId === tenantId && byClient) ||
        repo.principalByName(tenantId, 'UserAssignedIdentity', ref) ||
        repo.principalByName(tenantId, 'ServicePrincipal', ref);
      if (!found) throw errors.notFound('PrincipalNotFound', `No principal '${ref}' exists in tenant ${tenantId}.`);
      return found;
    },

    /** The object id a reference names, or the reference itself when it names no principal. */
    findPrincipalIdOr(tenantId: string, ref: string): string {
      try {
        return this.findPrincipal(tenantId, ref).objectId;
      } catch {
        return ref;
      }
    },

    deletePrincipal(principal: Principal): void {
      repo.deletePrincipal(principal.objectId);
    },

    async resetSecret(principal: Principal): Promise<string> {
      const secret = newSecret();
      repo.updateSecret(principal.objectId, await hashSecret(secret));
      return secret;
    },

    /** The tenant a client id belongs to (client ids are unique across tenants), or undefined when none has it. */
    tenantOfClient: (clientId: string): string | undefined => repo.principalWithSecret(clientId)?.principal.tenantId,

    /** Client-credentials check for the token endpoint. Returns undefined for any mismatch. */
    async authenticateClient(tenantId: string, clientId: unknown, secret: unknown): Promise<Principal | undefined> {
      // A JSON body can carry any type where a form carries strings: anything but two strings names no client.
      if (typeof clientId !== 'string' || typeof secret !== 'string') return undefined;
      const found = repo.principalWithSecret(clientId);
      if (!found || found.principal.tenantId !== tenantId) return undefined;
      return (await secretMatches(secret, found.secretHash)) ? found.principal : undefined;
    },

    /**
     * Turns a bearer token into a caller. The principal is looked up on every request, so deleting an
     * identity locks its tokens out at once, not when they expire.
     */
    async authenticate(token: string, audience: string | readonly string[]): Promise<Caller> {
      const claims = await tokens.verify(token, audience);
      if (!repo.tenant(claims.tid)) throw new TokenError('issuer', `The token's tenant ${claims.tid} does not exist.`);
      const principal = repo.principal(claims.oid);
      if (!principal || principal.tenantId !== claims.tid) {
        throw new TokenError('signature', 'The principal this token was issued to no longer exists.');
      }
      return { principal, claims };
    },

    /** The roles held tenant-wide (who am I, and the platform Owner's view of every tenant). */
    rolesOf: (tenantId: string, objectId: string) => rolesAt(tenantId, objectId, ROOT_SCOPE),
    rolesAt,
    /** Every assignment of a principal, at any scope: read from the store on each call, never cached. */
    assignmentsOf: (tenantId: string, objectId: string) => repo.assignmentsOf(tenantId, objectId),

    /**
     * Refuses unless the caller holds, at the addressed scope or above it, a role that carries the duty. The
     * refusal is ARM's AuthorizationFailed, naming the action and the scope, and the roles that would do.
     */
    requireDuty(caller: Caller, duty: Duty, at: { scope: string; action: string } = { scope: ROOT_SCOPE, action: `pgbyok/${duty}` }): void {
      const held = rolesAt(caller.principal.tenantId, caller.principal.objectId, at.scope);
      const allowed: readonly string[] = DUTIES[duty];
      if (!held.some((r) => allowed.includes(r))) {
        const scope = at.scope === ROOT_SCOPE ? `/tenants/${caller.principal.tenantId}` : at.scope;
        throw errors.authorizationFailed(
          `The client '${caller.principal.name}' with object id '${caller.principal.objectId}' does not have authorization to perform action '${at.action}' over scope '${scope}' or the scope is invalid. If access was recently granted, please refresh your credentials. ` +
          `(To ${duty.replace(/[A-Z]/g, (c) => ' ' + c.toLowerCase())}, one of these roles is needed at this scope or above it: ${allowed.join(', ')}.)`,
        );
      }
    },

    assignRole,
    roleAssignments: (tenantId: string) => repo.roleAssignments(tenantId),
    roleAssignment(tenantId: string, id: string): RoleAssignment | undefined {
      const a = repo.roleAssignment(id.toLowerCase()) ?? repo.roleAssignment(id);
      return a && a.tenantId === tenantId ? a : undefined;
    },
    removeRoleAssignment(tenantId: string, id: string): RoleAssignment {
      const a = repo.roleAssignment(id.toLowerCase()) ?? repo.roleAssignment(id);
      if (!a || a.tenantId !== tenantId) throw errors.notFound('RoleAssignmentNotFound', `No role assignment ${id} in this tenant.`);
      repo.deleteRole(a.id);
      return a;
    },
  };
}

export type IdentityService = ReturnType<typeof createIdentityService>;
