import { errors } from '../lib/errors.js';

/**
 * Separation of duties, as the seeds ask: the security officer keeps the vaults and keys, the DBA keeps
 * the servers, the system administrator keeps the platform. Owner may do everything. Management roles
 * never grant key permissions inside a vault: those come only from the vault's access policies.
 */
export const ROLES = ['Owner', 'Security Officer', 'DBA', 'System Administrator'] as const;
export type Role = (typeof ROLES)[number];

const ALIASES: Record<string, Role> = {
  owner: 'Owner',
  securityofficer: 'Security Officer',
  dba: 'DBA',
  databaseadministrator: 'DBA',
  systemadministrator: 'System Administrator',
  sysadmin: 'System Administrator',
};

export function parseRole(input: string): Role {
  const role = ALIASES[input.toLowerCase().replace(/[^a-z]/g, '')];
  if (!role) throw errors.badParameter(`Unknown role '${input}'. Roles are: ${ROLES.join(', ')}.`);
  return role;
}

/** Which roles may perform each kind of management action. */
export const DUTIES = {
  manageVaults: ['Owner', 'Security Officer'],
  readAudit: ['Owner', 'Security Officer'],
  manageIdentities: ['Owner', 'System Administrator', 'DBA'],
  manageServicePrincipals: ['Owner', 'System Administrator'],
  manageRoles: ['Owner'],
  manageTenants: ['Owner'],
  readPlatform: ['Owner', 'Security Officer', 'DBA', 'System Administrator'],
  manageServers: ['Owner', 'DBA'],
  readServers: ['Owner', 'DBA', 'System Administrator'],
  manageMonitoring: ['Owner', 'DBA', 'System Administrator'],
  managePlatformSettings: ['Owner', 'System Administrator'],
  /** Subscriptions of the caller's own tenant (Microsoft.Subscription/aliases). */
  manageSubscriptions: ['Owner'],
  /** Resource groups are containers: every role may make one for its own resources; deleting one also needs the duty for each kind it holds. */
  manageResourceGroups: ['Owner', 'Security Officer', 'DBA', 'System Administrator'],
} as const satisfies Record<string, readonly Role[]>;

export type Duty = keyof typeof DUTIES;
