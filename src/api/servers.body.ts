import { errors } from '../lib/errors.js';
import { parseResourceId } from '../arm/arm.service.js';
import { requireAuthConfig, requireHighAvailability, requireNetwork } from '../servers/capabilities.js';
import type { CreateServerInput, RestoreServerInput, UpdateServerInput } from '../servers/servers.service.js';

/**
 * The body of a flexible server PUT or PATCH, as ARM clients send it (az 2.45 with 2022-12-01, the
 * 2025-08-01 SDK), mapped to the domain's input. Anything pgbyok does not offer is refused here, before any
 * service is called, so a refused request creates nothing.
 */

export interface ServerBody {
  location?: string;
  tags?: Record<string, string>;
  sku?: { name?: string; tier?: string };
  identity?: { type?: string; userAssignedIdentities?: Record<string, unknown> };
  properties?: {
    createMode?: string;
    sourceServerResourceId?: string;
    pointInTimeUTC?: string;
    version?: string;
    administratorLogin?: string;
    administratorLoginPassword?: string;
    storage?: { storageSizeGB?: number; autoGrow?: string };
    backup?: { backupRetentionDays?: number; geoRedundantBackup?: 'Enabled' | 'Disabled' };
    dataEncryption?: { type?: string; primaryKeyURI?: string; primaryUserAssignedIdentityId?: string; geoBackupKeyURI?: string; geoBackupUserAssignedIdentityId?: string };
    authConfig?: { activeDirectoryAuth?: string; passwordAuth?: string; tenantId?: string };
    network?: { delegatedSubnetResourceId?: string; privateDnsZoneArmResourceId?: string; publicNetworkAccess?: string };
    highAvailability?: { mode?: string; standbyAvailabilityZone?: string };
    replicationRole?: string;
    replica?: { role?: string; promoteMode?: string; promoteOption?: string };
    availabilityZone?: string;
  };
}

const str = { type: ['string', 'null'] };
const obj = (properties: Record<string, unknown>) => ({ type: ['object', 'null'], properties });
export const serverBodySchema = {
  type: 'object',
  properties: {
    location: { type: 'string' },
    tags: { type: 'object', additionalProperties: { type: 'string' } },
    sku: obj({ name: { type: 'string' }, tier: { type: 'string' } }),
    identity: obj({ type: { type: 'string' }, userAssignedIdentities: { type: ['object', 'null'] } }),
    properties: obj({
      createMode: { type: 'string' }, sourceServerResourceId: { type: 'string' }, pointInTimeUTC: { type: 'string' },
      version: { type: 'string' }, administratorLogin: { type: 'string' }, administratorLoginPassword: { type: 'string' },
      storage: obj({ storageSizeGB: { type: 'integer' }, autoGrow: { type: 'string', enum: ['Disabled'] } }),
      backup: obj({ backupRetentionDays: { type: 'integer' }, geoRedundantBackup: { type: 'string', enum: ['Enabled', 'Disabled'] } }),
      dataEncryption: obj({ type: { type: 'string', enum: ['SystemManaged', 'AzureKeyVault'] }, primaryKeyURI: str, primaryUserAssignedIdentityId: str, geoBackupKeyURI: str, geoBackupUserAssignedIdentityId: str }),
      authConfig: obj({ activeDirectoryAuth: { type: 'string' }, passwordAuth: { type: 'string' }, tenantId: str }),
      network: obj({ delegatedSubnetResourceId: str, privateDnsZoneArmResourceId: str, publicNetworkAccess: { type: 'string' } }),
      highAvailability: obj({ mode: { type: 'string' }, standbyAvailabilityZone: str }),
      replicationRole: { type: 'string' },
      replica: obj({ role: { type: 'string' }, promoteMode: { type: 'string' }, promoteOption: { type: 'string' } }),
      availabilityZone: str,
    }),
  },
};

const CREATE_MODES = ['Create', 'Default', 'PointInTimeRestore', 'GeoRestore', 'Replica', 'Update'];

/** The identity a body names for the key: dataEncryption's, else the one user-assigned identity it lists. */
function identitiesOf(b: ServerBody): { primary?: string; listed: string[] } {
  const t = b.identity?.type;
  if (t !== undefined && t !== 'UserAssigned' && t !== 'None') {
    throw errors.badParameter(`identity.type '${t}' is not offered: a server takes user-assigned identities (UserAssigned) or none.`, 'UnsupportedIdentityType');
  }
  const listed = t === 'UserAssigned' ? Object.keys(b.identity?.userAssignedIdentities ?? {}) : [];
  const enc = b.properties?.dataEncryption ?? {};
  const primary = enc.primaryUserAssignedIdentityId || (enc.type === 'AzureKeyVault' && listed.length === 1 ? listed[0] : undefined);
  for (const id of [primary, enc.geoBackupUserAssignedIdentityId].filter(Boolean) as string[]) {
    if (listed.length && !listed.some((l) => l.toLowerCase() === id.toLowerCase())) {
      throw errors.badParameter(`The data-encryption identity '${id}' is not among the server's identity.userAssignedIdentities.`, 'IdentityNotAssigned');
    }
  }
  return { primary, listed };
}

/** The name in a `sourceServerResourceId` (an ARM id, the tenant form, or a bare name). */
const sourceName = (id: string) => parseResourceId(id)?.name ?? (id.includes('/') ? id.split('/').filter(Boolean).pop()! : id);

export type ServerPut =
  | { verb: 'create'; input: Omit<CreateServerInput, 'name'> }
  | { verb: 'replica'; input: { source: string; location?: string; keyUri?: string; identity?: string; sku?: ServerBody['sku'] } }
  | { verb: 'restore'; input: Omit<RestoreServerInput, 'name'> }
  | { verb: 'update'; input: UpdateServerInput };

/** What a PUT asks for, validated as far as the body alone allows. */
export function serverPutOf(b: ServerBody): ServerPut {
  const p = b.properties ?? {};
  const mode = p.createMode ?? 'Create';
  if (!CREATE_MODES.includes(mode)) throw errors.badParameter(`createMode '${mode}' is not supported; use ${CREATE_MODES.join(', ')}.`, 'UnsupportedCreateMode');
  requireHighAvailability(p.highAvailability);
  requireAuthConfig(p.authConfig);
  requireNetwork(p.network);
  const enc = p.dataEncryption ?? {};
  const { primary } = identitiesOf(b);
  if (mode === 'Update') return { verb: 'update', input: updateOf(b) };
  if (mode === 'Replica' || mode === 'PointInTimeRestore' || mode === 'GeoRestore') {
    if (!p.sourceServerResourceId) throw errors.badParameter(`createMode ${mode} needs properties.sourceServerResourceId.`, 'SourceServerRequired');
    const source = sourceName(p.sourceServerResourceId);
    if (mode === 'Replica') return { verb: 'replica', input: { source, location: b.location, keyUri: enc.primaryKeyURI ?? undefined, identity: primary, sku: b.sku } };
    return {
      verb: 'restore',
      input: { geo: mode === 'GeoRestore', source, restoreTime: p.pointInTimeUTC, location: b.location, keyUri: enc.primaryKeyURI ?? undefined, identity: primary, encryptionType: enc.type, sku: b.sku },
    };
  }
  if (!b.location) throw errors.badParameter('location is required.', 'LocationRequired');
  if (!p.administratorLogin || !p.administratorLoginPassword) throw errors.badParameter('properties.administratorLogin and administratorLoginPassword are required.', 'AdministratorRequired');
  if (enc.type === 'AzureKeyVault' && (!enc.primaryKeyURI || !primary)) {
    throw errors.badParameter('dataEncryption of type AzureKeyVault needs primaryKeyURI and primaryUserAssignedIdentityId.', 'KeyAndIdentityRequired');
  }
  if (enc.type === 'SystemManaged' && (enc.primaryKeyURI || enc.primaryUserAssignedIdentityId)) {
    throw errors.badParameter('dataEncryption of type SystemManaged takes no key or identity.');
  }
  return {
    verb: 'create',
    input: {
      location: b.location, version: p.version, storageSizeGB: p.storage?.storageSizeGB, sku: b.sku, highAvailability: p.highAvailability,
      administratorLogin: p.administratorLogin, administratorLoginPassword: p.administratorLoginPassword,
      keyUri: enc.primaryKeyURI ?? undefined, identity: primary, backupRetentionDays: p.backup?.backupRetentionDays,
      geoRedundantBackup: p.backup?.geoRedundantBackup === 'Enabled', geoBackupKeyUri: enc.geoBackupKeyURI ?? undefined, geoBackupIdentity: enc.geoBackupUserAssignedIdentityId ?? undefined,
    },
  };
}

/** A PATCH (or a PUT with createMode Update): what may change on an existing server. */
export function updateOf(b: ServerBody): UpdateServerInput {
  const p = b.properties ?? {};
  requireHighAvailability(p.highAvailability);
  requireAuthConfig(p.authConfig);
  requireNetwork(p.network);
  if (p.version !== undefined && p.version !== '15') throw errors.badParameter(`PostgreSQL version ${p.version} is not offered; pgbyok runs PostgreSQL 15 (major version upgrades are not offered).`, 'UnsupportedVersion');
  const enc = p.dataEncryption ?? {};
  const { primary } = identitiesOf(b);
  return {
    storageSizeGB: p.storage?.storageSizeGB, keyUri: enc.primaryKeyURI ?? undefined, identity: enc.primaryKeyURI || enc.primaryUserAssignedIdentityId ? primary : undefined,
    encryptionType: enc.type, administratorLoginPassword: p.administratorLoginPassword, sku: b.sku, highAvailability: p.highAvailability,
    backupRetentionDays: p.backup?.backupRetentionDays, geoRedundantBackup: p.backup?.geoRedundantBackup,
  };
}

/** A PATCH that promotes a replica: 2022-12-01's `replicationRole: None`, or 2023's `replica.promoteMode`. */
export function promotionOf(b: ServerBody): boolean {
  const p = b.properties ?? {};
  if (p.replica?.promoteMode !== undefined) {
    if (p.replica.promoteMode !== 'Standalone') throw errors.badParameter(`replica.promoteMode '${p.replica.promoteMode}' is not offered: pgbyok promotes a replica to a standalone server (Standalone).`, 'PromoteModeNotSupported');
    if (p.replica.promoteOption !== undefined && p.replica.promoteOption !== 'Forced' && p.replica.promoteOption !== 'Planned') {
      throw errors.badParameter(`replica.promoteOption '${p.replica.promoteOption}' is not known; use Planned or Forced.`);
    }
    return true;
  }
  return p.replicationRole === 'None';
}
