import type { Duty } from '../../src/identity/roles.js';
import type { KeyPermission } from '../../src/vault/vault.types.js';
import type { Rng } from './prng.js';

/**
 * Every route of the vault data plane and of the management API, as the fuzzer addresses them: a path
 * template, what the route needs (key permission or role duty), and a valid body. Paths are lists of
 * segments so that the mutators can work on them; `{x}` names a target filled in from `Targets`.
 */

/** The resources a run addresses: fixtures made before the first request, by the administrator. */
export interface Targets {
  tid: string;
  otherTid: string;
  /** The main vault (and its key `k1`, a soft-deleted key `dk1`, a backup of `k1`). */
  vault: string;
  vaultPort: number;
  /** The main vault's host and port (`NAME.vault.localhost:PORT`): the vault listener routes by it. */
  vaultHost: string;
  keyVersion: string;
  backup: string;
  /** Fixtures that mutating routes address, so that a request that wrongly succeeds is seen, not fatal. */
  victimVault: string;
  deletedVault: string;
  identity: string;
  victimIdentity: string;
  victimSp: string;
  victimRoleAssignment: string;
  subscription: string;
  /** The tenant's default subscription, another tenant's, the group the fixtures sit in, an empty group to delete. */
  sub: string;
  otherSub: string;
  rg: string;
  victimGroup: string;
  actionGroup: string;
  alertRule: string;
  /** Private JWKs (2048-bit) to import, and one 1024-bit JWK no vault accepts. */
  jwks: Record<string, string>[];
  smallJwk: Record<string, string>;
}

export type Surface = 'vault' | 'mgmt' | 'public';

export interface RouteSpec {
  id: string;
  surface: Surface;
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Path segments; `{name}` is replaced by `fill(name)`. */
  path: string[];
  /** Vault routes: the key permission the access policy must grant. */
  permission?: KeyPermission;
  /** Management routes: the duty a role must carry (`null`: any valid token of any tenant). */
  duty?: Duty | null;
  /** Management routes addressed under `/tenants/{tid}` (the caller's tenant must match). */
  tenantScoped?: boolean;
  /** A valid body (JSON), if the route takes one. */
  body?: (t: Targets, r: Rng) => unknown;
  /** Extra query parameters. */
  query?: (t: Targets, r: Rng) => Record<string, string>;
  /**
   * Public routes that refuse everyone the fuzzer can be (no trusted-service certificate, wrong webhook code):
   * the status and the error code of that refusal.
   */
  refusesAll?: { status: number; code: string; inner?: string };
  /** Server creation: the body is poisoned so that it is refused before anything is built, whoever sends it. */
  poisoned?: boolean;
}

const b64u = (n: number, r: Rng) => Buffer.from(Array.from({ length: n }, () => r.int(0, 255))).toString('base64url');
const attrs = (r: Rng) => r.pick([{}, { enabled: true }, { enabled: r.chance(0.5), nbf: 1_700_000_000 }, { exp: 4_100_000_000 }]);
const tags = (r: Rng) => r.pick([undefined, { env: 'fuzz' }, { [r.name(5)]: r.name(9) }]);

const KEY = '{key}';
const VER = '{version}';
const crypto = (path: string, permission: KeyPermission, body: (t: Targets, r: Rng) => unknown): RouteSpec => ({
  id: `vault.${path}`, surface: 'vault', method: 'POST', path: ['keys', KEY, VER, path], permission, body,
});

export const VAULT_ROUTES: RouteSpec[] = [
  { id: 'vault.create', surface: 'vault', method: 'POST', path: ['keys', '{newKey}', 'create'], permission: 'create', body: (_t, r) => ({ kty: 'RSA', key_size: 2048, attributes: attrs(r), tags: tags(r) }) },
  { id: 'vault.import', surface: 'vault', method: 'PUT', path: ['keys', '{newKey}'], permission: 'import', body: (t, r) => ({ key: r.pick(t.jwks), attributes: attrs(r), tags: tags(r) }) },
  { id: 'vault.list', surface: 'vault', method: 'GET', path: ['keys'], permission: 'list', query: (_t, r): Record<string, string> => (r.chance(0.3) ? { maxresults: String(r.int(1, 25)) } : {}) },
  { id: 'vault.versions', surface: 'vault', method: 'GET', path: ['keys', KEY, 'versions'], permission: 'list' },
  { id: 'vault.get', surface: 'vault', method: 'GET', path: ['keys', KEY, VER], permission: 'get' },
  { id: 'vault.getLatest', surface: 'vault', method: 'GET', path: ['keys', KEY], permission: 'get' },
  { id: 'vault.update', surface: 'vault', method: 'PATCH', path: ['keys', KEY, VER], permission: 'update', body: (_t, r) => ({ attributes: r.pick([{ enabled: true }, { enabled: true, nbf: 1_700_000_000, exp: 4_100_000_000 }]), tags: tags(r) ?? {}, ...(r.chance(0.3) ? { key_ops: ['sign', 'verify', 'wrapKey', 'unwrapKey', 'encrypt', 'decrypt'] } : {}) }) },
  { id: 'vault.delete', surface: 'vault', method: 'DELETE', path: ['keys', KEY], permission: 'delete' },
  { id: 'vault.deletedList', surface: 'vault', method: 'GET', path: ['deletedkeys'], permission: 'list' },
  { id: 'vault.deletedGet', surface: 'vault', method: 'GET', path: ['deletedkeys', '{deletedKey}'], permission: 'get' },
  { id: 'vault.recover', surface: 'vault', method: 'POST', path: ['deletedkeys', '{deletedKey}', 'recover'], permission: 'recover' },
  { id: 'vault.purge', surface: 'vault', method: 'DELETE', path: ['deletedkeys', '{deletedKey}'], permission: 'purge' },
  { id: 'vault.backup', surface: 'vault', method: 'POST', path: ['keys', KEY, 'backup'], permission: 'backup' },
  { id: 'vault.restore', surface: 'vault', method: 'POST', path: ['keys', 'restore'], permission: 'restore', body: (t) => ({ value: t.backup }) },
  { id: 'vault.rotate', surface: 'vault', method: 'POST', path: ['keys', KEY, 'rotate'], permission: 'rotate' },
  { id: 'vault.rotationPolicyGet', surface: 'vault', method: 'GET', path: ['keys', KEY, 'rotationpolicy'], permission: 'getrotationpolicy' },
  {
    id: 'vault.rotationPolicySet', surface: 'vault', method: 'PUT', path: ['keys', KEY, 'rotationpolicy'], permission: 'setrotationpolicy',
    // Long durations only: a policy that came due during the run would rotate keys in the background.
    body: (_t, r) => ({ lifetimeActions: [{ trigger: { timeAfterCreate: r.pick(['P90D', 'P1Y']) }, action: { type: 'Rotate' } }], attributes: { expiryTime: 'P2Y' } }),
  },
  crypto('encrypt', 'encrypt', (_t, r) => ({ alg: r.pick(['RSA-OAEP', 'RSA-OAEP-256']), value: b64u(32, r) })),
  crypto('decrypt', 'decrypt', (_t, r) => ({ alg: 'RSA-OAEP-256', value: b64u(256, r) })),
  crypto('wrapkey', 'wrapKey', (_t, r) => ({ alg: r.pick(['RSA-OAEP', 'RSA-OAEP-256']), value: b64u(32, r) })),
  crypto('unwrapkey', 'unwrapKey', (_t, r) => ({ alg: 'RSA-OAEP', value: b64u(256, r) })),
  crypto('sign', 'sign', (_t, r) => ({ alg: r.pick(['RS256', 'PS256']), value: b64u(32, r) })),
  crypto('verify', 'verify', (_t, r) => ({ alg: r.pick(['RS256', 'PS256']), digest: b64u(32, r), value: b64u(256, r) })),
];

const T = ['tenants', '{tid}'];
const MI = [...T, 'providers', 'Microsoft.ManagedIdentity', 'userAssignedIdentities'];
const KV = [...T, 'providers', 'Microsoft.KeyVault'];
const RA = [...T, 'providers', 'Microsoft.Authorization', 'roleAssignments'];
const FS = [...T, 'providers', 'Microsoft.DBforPostgreSQL', 'flexibleServers'];
const INS = [...T, 'providers', 'Microsoft.Insights'];
// ARM's addressing of the same resources: the subscription, and a group in it.
const SUB = ['subscriptions', '{sub}'];
const RG = [...SUB, 'resourceGroups', '{rg}'];
const loopbackHook = (r: Rng) => `https://127.0.0.1:9/${r.name(6)}`;
const mgmt = (id: string, method: RouteSpec['method'], path: string[], duty: Duty | null, body?: RouteSpec['body'], extra: Partial<RouteSpec> = {}): RouteSpec => ({
  id: `mgmt.${id}`, surface: 'mgmt', method, path, duty, tenantScoped: path[1] === '{tid}' || path[1] === '{sub}', body, ...extra,
});

/** A server-creation body that every caller is refused for before anything is built (see `poison`). */
const serverBody = (t: Targets, r: Rng) => ({
  location: 'eastus',
  properties: {
    createMode: 'Poison',
    version: '15',
    administratorLogin: 'dbadmin',
    administratorLoginPassword: 'Passw0rd!x',
    storage: { storageSizeGB: 32 },
    ...(r.chance(0.5) ? { dataEncryption: { type: 'AzureKeyVault', primaryKeyURI: `https://${t.vaultHost}/keys/k1`, primaryUserAssignedIdentityId: t.identity } } : {}),
  },
});

/** Keeps a mutated server-creation body refused: an object with an object `properties` gets an unknown createMode. */
export function poison(body: unknown): unknown {
  const isObject = (x: unknown): x is Record<string, any> => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (isObject(body) && isObject(body.properties) && (body.properties.createMode === undefined || typeof body.properties.createMode === 'string')) {
    body.properties.createMode = 'Poison';
  }
  return body;
}

export const MGMT_ROUTES: RouteSpec[] = [
  mgmt('whoami', 'GET', ['tenants', 'self'], null),
  // ARM's tenant list: every signed-in caller sees its own tenant (the platform tenant's Owners see all).
  mgmt('tenantList', 'GET', ['tenants'], null),
  mgmt('subscriptionsList', 'GET', ['subscriptions'], null),
  mgmt('armGroupList', 'GET', [...SUB, 'resourceGroups'], 'readPlatform'),
  mgmt('armGroupGet', 'GET', RG, 'readPlatform'),
  mgmt('armGroupPut', 'PUT', [...SUB, 'resourceGroups', '{newName}'], 'manageResourceGroups', () => ({ location: 'eastus' })),
  mgmt('armGroupDelete', 'DELETE', [...SUB, 'resourceGroups', '{victimGroup}'], 'manageResourceGroups'),
  mgmt('armResourceList', 'GET', [...SUB, 'resources'], 'readPlatform', undefined, { query: () => ({ $filter: "resourceType eq 'Microsoft.KeyVault/vaults'" }) }),
  mgmt('armIdentityPut', 'PUT', [...RG, 'providers', 'Microsoft.ManagedIdentity', 'userAssignedIdentities', '{newName}'], 'manageIdentities', () => ({ location: 'eastus' })),
  mgmt('armIdentityList', 'GET', [...SUB, 'providers', 'Microsoft.ManagedIdentity', 'userAssignedIdentities'], 'readPlatform'),
  mgmt('armVaultPut', 'PUT', [...RG, 'providers', 'Microsoft.KeyVault', 'vaults', '{newVault}'], 'manageVaults', () => ({ location: 'eastus', properties: { accessPolicies: [] } })),
  mgmt('armVaultUpdate', 'PUT', [...RG, 'providers', 'Microsoft.KeyVault', 'vaults', '{victimVault}'], 'manageVaults', () => ({ location: 'eastus', properties: { accessPolicies: [], networkAcls: { defaultAction: 'Deny', bypass: 'None' } } })),
  mgmt('armVaultGet', 'GET', [...RG, 'providers', 'Microsoft.KeyVault', 'vaults', '{vault}'], 'readPlatform'),
  mgmt('armRoleAssignmentPut', 'PUT', [...SUB, 'providers', 'Microsoft.Authorization', 'roleAssignments', '{uuid}'], 'manageRoles', (t) => ({
    properties: { roleDefinitionId: `/subscriptions/${t.sub}/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635`, principalId: t.victimSp },
  })),
  mgmt('armServerCreate', 'PUT', [...RG, 'providers', 'Microsoft.DBforPostgreSQL', 'flexibleServers', '{newServer}'], 'manageServers', serverBody, { poisoned: true }),
  mgmt('armServerList', 'GET', [...SUB, 'providers', 'Microsoft.DBforPostgreSQL', 'flexibleServers'], 'readServers'),
  mgmt('tenantCreate', 'POST', ['tenants'], 'manageTenants', (_t, r) => ({ name: `fz${r.name(8)}` })),
  mgmt('identityCreate', 'PUT', [...MI, '{newName}'], 'manageIdentities', () => ({ location: 'eastus' })),
  mgmt('identityList', 'GET', MI, 'readPlatform'),
  mgmt('identityGet', 'GET', [...MI, '{identity}'], 'readPlatform'),
  mgmt('identityDelete', 'DELETE', [...MI, '{victimIdentity}'], 'manageIdentities'),
  mgmt('spCreate', 'POST', [...T, 'servicePrincipals'], 'manageServicePrincipals', (_t, r) => ({ displayName: `fz-${r.name(8)}` })),
  mgmt('spList', 'GET', [...T, 'servicePrincipals'], 'readPlatform'),
  mgmt('spDelete', 'DELETE', [...T, 'servicePrincipals', '{victimSp}'], 'manageServicePrincipals'),
  mgmt('roleList', 'GET', RA, 'readPlatform'),
  mgmt('roleCreate', 'POST', RA, 'manageRoles', (t, r) => ({ properties: { principalId: t.victimSp, roleDefinitionName: r.pick(['Owner', 'Security Officer', 'DBA']) } })),
  mgmt('roleDelete', 'DELETE', [...RA, '{victimRoleAssignment}'], 'manageRoles'),
  mgmt('vaultCreate', 'PUT', [...KV, 'vaults', '{newVault}'], 'manageVaults', (_t, r) => ({ location: 'eastus', properties: { softDeleteRetentionInDays: r.int(7, 90), enablePurgeProtection: false } })),
  mgmt('vaultUpdate', 'PATCH', [...KV, 'vaults', '{victimVault}'], 'manageVaults', () => ({ properties: { networkAcls: { defaultAction: 'Deny', bypass: 'None', ipRules: [{ value: '10.9.8.7' }] } } })),
  mgmt('vaultList', 'GET', [...KV, 'vaults'], 'readPlatform'),
  mgmt('vaultGet', 'GET', [...KV, 'vaults', '{vault}'], 'readPlatform'),
  mgmt('vaultDelete', 'DELETE', [...KV, 'vaults', '{victimVault}'], 'manageVaults'),
  mgmt('deletedVaultList', 'GET', [...KV, 'deletedVaults'], 'manageVaults'),
  mgmt('vaultRecover', 'POST', [...KV, 'deletedVaults', '{deletedVault}', 'recover'], 'manageVaults'),
  mgmt('vaultPurge', 'DELETE', [...KV, 'deletedVaults', '{deletedVault}'], 'manageVaults'),
  mgmt('accessPolicy', 'PUT', [...KV, 'vaults', '{victimVault}', 'accessPolicies', '{policyKind}'], 'manageVaults', (t, r) => ({
    properties: { accessPolicies: [{ objectId: t.victimSp, permissions: { keys: r.pick([['all'], ['get', 'unwrapKey'], ['purge']]) } }] },
  })),
  mgmt('subscriptionList', 'GET', [...KV, 'vaults', '{vault}', 'eventSubscriptions'], 'manageVaults'),
  mgmt('subscriptionPut', 'PUT', [...KV, 'vaults', '{victimVault}', 'eventSubscriptions', '{newSub}'], 'manageVaults', (_t, r) => ({
    properties: { destination: { properties: { endpointUrl: loopbackHook(r) } }, ...(r.chance(0.5) ? { filter: { includedEventTypes: ['KeyNewVersionCreated'] } } : {}) },
  })),
  mgmt('subscriptionDelete', 'DELETE', [...KV, 'vaults', '{victimVault}', 'eventSubscriptions', '{subscription}'], 'manageVaults'),
  mgmt('auditList', 'GET', [...KV, 'auditEvents'], 'readAudit', undefined, { query: (_t, r): Record<string, string> => ({ top: String(r.int(1, 20)), ...(r.chance(0.3) ? { result: 'Failure' } : {}) }) }),
  mgmt('auditVerify', 'POST', [...KV, 'auditEvents', 'verify'], 'readAudit'),
  mgmt('settingsGet', 'GET', [...T, 'platformSettings'], 'managePlatformSettings'),
  mgmt('settingsUpdate', 'PATCH', [...T, 'platformSettings'], 'managePlatformSettings', (_t, r) => ({ keyMonitorIntervalSeconds: r.int(5, 3600) })),
  // Servers: creation needs root and loop devices, so its bodies are refused before anything is built.
  mgmt('serverCreate', 'PUT', [...FS, '{newServer}'], 'manageServers', serverBody, { poisoned: true }),
  mgmt('serverUpdate', 'PATCH', [...FS, '{server}'], 'manageServers', () => ({ properties: { storage: { storageSizeGB: 64 } } })),
  mgmt('serverList', 'GET', FS, 'readServers'),
  mgmt('serverGet', 'GET', [...FS, '{server}'], 'readServers'),
  mgmt('serverDelete', 'DELETE', [...FS, '{server}'], 'manageServers'),
  mgmt('replicaList', 'GET', [...FS, '{server}', 'replicas'], 'readServers'),
  ...(['stop', 'start', 'restart', 'revalidate', 'promote'] as const).map((a) => mgmt(`server.${a}`, 'POST', [...FS, '{server}', a], 'manageServers')),
  mgmt('backupList', 'GET', [...FS, '{server}', 'backups'], 'readServers'),
  mgmt('backupCreate', 'POST', [...FS, '{server}', 'backups'], 'manageServers'),
  mgmt('serverHealth', 'GET', [...FS, '{server}', 'health'], 'readServers'),
  mgmt('operationGet', 'GET', [...T, 'providers', 'Microsoft.DBforPostgreSQL', 'operations', '{uuid}'], 'readServers'),
  mgmt('activityLog', 'GET', [...INS, 'eventtypes', 'management', 'values'], 'readServers', undefined, { query: (_t, r) => ({ top: String(r.int(1, 50)) }) }),
  mgmt('actionGroupPut', 'PUT', [...INS, 'actionGroups', '{newName}'], 'manageMonitoring', (_t, r) => ({ properties: { webhookReceivers: [{ name: 'w', serviceUri: loopbackHook(r) }] } })),
  mgmt('actionGroupList', 'GET', [...INS, 'actionGroups'], 'readServers'),
  mgmt('actionGroupDelete', 'DELETE', [...INS, 'actionGroups', '{actionGroup}'], 'manageMonitoring'),
  mgmt('alertPut', 'PUT', [...INS, 'activityLogAlerts', '{newName}'], 'manageMonitoring', (t, r) => ({ properties: { condition: r.pick(['ServerInaccessible', 'Any']), actionGroup: t.actionGroup, enabled: true } })),
  mgmt('alertList', 'GET', [...INS, 'activityLogAlerts'], 'readServers'),
  mgmt('alertDelete', 'DELETE', [...INS, 'activityLogAlerts', '{alertRule}'], 'manageMonitoring'),
];

/** Platform routes without a token, refused to anyone without the platform's trusted-service certificate or webhook code. */
export const PUBLIC_ROUTES: RouteSpec[] = [
  {
    id: 'public.trustedSubscription', surface: 'public', method: 'PUT', path: ['trusted', 'eventSubscriptions'],
    body: (t, r) => ({ vaultOrigin: `https://${t.vaultHost}`, name: `fz-${r.name(6)}`, endpoint: loopbackHook(r) }),
    refusesAll: { status: 403, code: 'Forbidden', inner: 'NotTrustedService' },
  },
  {
    id: 'public.managedIdentityToken', surface: 'public', method: 'GET', path: ['metadata', 'identity', 'oauth2', 'token'],
    query: (t) => ({ resource: 'https://vault.azure.net', msi_res_id: `/tenants/${t.tid}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${t.identity}` }),
    refusesAll: { status: 403, code: 'Forbidden', inner: 'NotTrustedService' },
  },
  {
    id: 'public.vaultEventsHook', surface: 'public', method: 'POST', path: ['hooks', 'vault-events'],
    query: (_t, r) => ({ code: r.name(32) }), body: () => [{ eventType: 'Microsoft.KeyVault.KeyDisabled', data: { ObjectName: 'k1' } }],
    refusesAll: { status: 403, code: 'Forbidden', inner: 'InvalidWebhookCode' },
  },
];

/**
 * Fills one path segment template from the targets (fresh names where the route creates something). With
 * `exact`, keys are the fixtures' own; otherwise sometimes names that do not exist.
 */
export function fillSegment(seg: string, t: Targets, r: Rng, exact = false): string {
  switch (seg) {
    case '{tid}': return t.tid;
    case '{key}': return exact || r.chance(0.85) ? 'k1' : `nokey-${r.name(5)}`;
    case '{newKey}': return `fz-${r.name(8)}`;
    case '{version}': return r.pick(exact ? [t.keyVersion, ''] : [t.keyVersion, t.keyVersion, '', r.name(32)]);
    case '{deletedKey}': return exact || r.chance(0.85) ? 'dk1' : `nokey-${r.name(5)}`;
    case '{newName}': return `fz-${r.name(8)}`;
    case '{newVault}': return `fz${r.name(10)}`;
    case '{newSub}': return `fz-${r.name(8)}`;
    case '{newServer}': return `fz-${r.name(8)}`;
    case '{server}': return `fz-${r.name(8)}`;
    case '{uuid}': return r.uuid();
    case '{policyKind}': return r.pick(['add', 'replace', 'remove']);
    default: {
      const m = /^\{(\w+)\}$/.exec(seg);
      if (!m) return seg;
      const v = (t as unknown as Record<string, unknown>)[m[1]];
      if (typeof v !== 'string') throw new Error(`no target for ${seg}`);
      return v;
    }
  }
}
