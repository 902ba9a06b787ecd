import { errors } from '../lib/errors.js';

/**
 * Separation of duties, as the seeds ask: the security officer keeps the vaults and keys, the DBA keeps
 * the servers, the system administrator keeps the platform. Owner may do everything.
 *
 * Azure's general roles map onto the same duties:
 * - Owner: every duty, including role assignments.
 * - Contributor: every duty except `manageRoles` (role assignments) and `manageTenants` (a new tenant comes
 *   with a new Owner, which is granting a role by another name).
 * - Reader: `readPlatform` and `readServers`. Not `readAudit`: the audit log stays with Owner and Security
 *   Officer, as the seeds keep it.
 * - Key Vault Contributor: `manageVaults` and `readPlatform` (to find them); no data access, as in Azure.
 * The Key Vault data roles (Administrator, Crypto Officer, Crypto User, Crypto Service Encryption User, Reader)
 * carry no management duty. Management roles never grant key operations inside a vault: those come from the
 * vault's access policies or, on a vault with `enableRbacAuthorization`, from the Key Vault data roles only
 * (see role-definitions.ts and vault/data-plane-authz.ts).
 *
 * Scope: an assignment counts for a request when its scope contains the addressed resource (see
 * `scopeContains` in identity.service.ts): tenant-wide (`/`, the older `/tenants/{tid}` routes) everywhere,
 * a subscription in it, a group in it, a resource on it alone.
 */
export const MANAGEMENT_ROLES = ['Owner', 'Security Officer', 'DBA', 'System Administrator', 'Contributor', 'Reader', 'Key Vault Contributor'] as const;
export const DATA_ROLES = [
  'Key Vault Administrator', 'Key Vault Crypto Officer', 'Key Vault Crypto User', 'Key Vault Crypto Service Encryption User', 'Key Vault Reader',
] as const;
export const ROLES = [...MANAGEMENT_ROLES, ...DATA_ROLES] as const;
export type Role = (typeof ROLES)[number];

const squash = (s: string) => s.toLowerCase().replace(/[^a-z]/g, '');
const ALIASES: Record<string, Role> = {
  ...Object.fromEntries(ROLES.map((r) => [squash(r), r])),
  databaseadministrator: 'DBA',
  sysadmin: 'System Administrator',
};

export function parseRole(input: string): Role {
  const role = ALIASES[squash(input)];
  if (!role) throw errors.badParameter(`Unknown role '${input}'. Roles are: ${ROLES.join(', ')}.`);
  return role;
}

/** Which roles may perform each kind of management action. */
export const DUTIES = {
  manageVaults: ['Owner', 'Security Officer', 'Contributor', 'Key Vault Contributor'],
  readAudit: ['Owner', 'Security Officer'],
  manageIdentities: ['Owner', 'System Administrator', 'DBA', 'Contributor'],
  manageServicePrincipals: ['Owner', 'System Administrator', 'Contributor'],
  manageRoles: ['Owner'],
  manageTenants: ['Owner'],
  readPlatform: ['Owner', 'Security Officer', 'DBA', 'System Administrator', 'Contributor', 'Reader', 'Key Vault Contributor'],
  manageServers: ['Owner', 'DBA', 'Contributor'],
  readServers: ['Owner', 'DBA', 'System Administrator', 'Contributor', 'Reader'],
  manageMonitoring: ['Owner', 'DBA', 'System Administrator', 'Contributor'],
  managePlatformSettings: ['Owner', 'System Administrator', 'Contributor'],
  /** Subscriptions of the caller's own tenant (Microsoft.Subscription/aliases). */
  manageSubscriptions: ['Owner', 'Contributor'],
  /** Resource groups are containers: every role may make one for its own resources; deleting one also needs the duty for each kind it holds. */
  manageResourceGroups: ['Owner', 'Security Officer', 'DBA', 'System Administrator', 'Contributor'],
} as const satisfies Record<string, readonly Role[]>;

export type Duty = keyof typeof DUTIES;
