/**
 * Managed HSM resources: a vault of kind managedHsm (the vault service's lifecycle: soft-delete, recover,
 * purge, firewall, events) whose keys live in the PKCS#11 token, whose data plane answers to local RBAC, and
 * which refuses key operations until its security domain is downloaded (activation) or uploaded (recovery
 * into a new HSM). The security-domain secret exists in memory only while it is split at download; on upload
 * the token unwraps it with the HSM's transfer key and it never appears in pgbyok at all.
 */
import { errors } from '../lib/errors.js';
import { nowSeconds, type Clock } from '../lib/clock.js';
import type { Vault } from '../vault/vault.types.js';
import type { VaultService } from '../vault/vaults.service.js';
import type { LocalRbac } from './local-rbac.js';
import type { TokenProvider } from './token-provider.js';
import { checkDownloadRequest, keyCheckValue, parseRestoreBlob, sealSecurityDomain } from './security-domain.js';
import { TokenError } from './token.js';

export interface CreateHsmInput {
  name: string;
  location: string;
  initialAdminObjectIds: string[];
  retentionDays?: number;
  /** Azure's default for a managed HSM: on (irreversible). */
  purgeProtection?: boolean;
  sku?: string;
  publicNetworkAccess?: 'Enabled' | 'Disabled';
  networkAcls?: { defaultAction?: 'Allow' | 'Deny'; bypass?: 'AzureServices' | 'None'; ipRules?: string[] };
}

export const HSM_SKUS = ['Standard_B1', 'Custom_B32', 'Custom_B6'];

export interface HsmServiceDeps {
  vaults: VaultService;
  rbac: LocalRbac;
  tokens: TokenProvider;
  principalExists: (tenantId: string, objectId: string) => boolean;
  clock: Clock;
  /** `https://NAME.managedhsm.<domain>[:port]/` */
  hsmUri: (name: string) => string;
}

export function createHsmService(d: HsmServiceDeps) {
  const token = async () => {
    try {
      return await d.tokens.token();
    } catch (e) {
      if (e instanceof TokenError) throw errors.serviceUnavailable(`The HSMs' PKCS#11 token failed: ${e.message}`);
      throw e;
    }
  };
  /**
   * Moves an HSM's own state from what `v` holds to `next`, or, when a concurrent request changed it first,
   * destroys what this request made in the token (`made`) and refuses: the HSM keeps one security domain.
   */
  const swap = async (v: Vault, next: NonNullable<Vault['hsm']>, made: string[]) => {
    if (d.vaults.swapHsm(v, next)) return;
    const t = await token();
    for (const id of made) await t.destroy(id).catch(() => undefined);
    throw errors.conflict(`The managed HSM '${v.name}' was changed by another request meanwhile (its security domain or transfer key); read it again and retry.`, 'ConflictError');
  };

  return {
    ...d.vaults,

    /**
     * A new HSM, NotActivated, its initial administrators holding Managed HSM Administrator at `/`. The
     * token is opened first: an HSM is not created where no PKCS#11 module can hold its keys.
     */
    async createHsm(tenantId: string, input: CreateHsmInput): Promise<Vault> {
      const admins = input.initialAdminObjectIds;
      if (!Array.isArray(admins) || admins.length === 0 || !admins.every((a) => typeof a === 'string')) {
        throw errors.badParameter('properties.initialAdminObjectIds must list at least one object id: the administrators who activate the HSM.', 'InvalidParameter');
      }
      for (const a of admins) {
        if (!d.principalExists(tenantId, a)) throw errors.badParameter(`No principal with object id '${a}' exists in tenant ${tenantId}.`, 'InvalidParameter');
      }
      const sku = input.sku ?? 'Standard_B1';
      if (!HSM_SKUS.includes(sku)) throw errors.badParameter(`sku.name '${sku}' is not valid; use one of ${HSM_SKUS.join(', ')}.`, 'InvalidParameter');
      await token();
      // The administrators' assignments are written in the HSM's own transaction: no HSM exists without them.
      return d.vaults.create(tenantId, {
        name: input.name, location: input.location, retentionDays: input.retentionDays, purgeProtection: input.purgeProtection ?? true,
        publicNetworkAccess: input.publicNetworkAccess, networkAcls: input.networkAcls, enableRbacAuthorization: true, policies: [],
        hsm: { initialAdminObjectIds: [...new Set(admins.map((a) => a.toLowerCase()))], sku, activation: 'NotActivated' },
        alsoWrite: (v) => void d.rbac.bootstrapAdmins(v, v.hsm!.initialAdminObjectIds),
      });
    },

    /** Key operations (and role management) wait for activation, as in Managed HSM. */
    requireActive(v: Vault): void {
      if (v.hsm?.activation !== 'Active') {
        throw errors.forbidden(`The managed HSM '${v.name}' is not activated: its key operations and role management are disabled until an administrator downloads its security domain (pgbyok hsm security-domain download --hsm-name ${v.name} ...).`, 'HsmNotActivated');
      }
    },

    /**
     * Activation: a new security-domain key made in the token from 32 random bytes of the token, split by
     * Shamir's secret sharing into shares encrypted to the given certificates. Returns the file's text.
     */
    async downloadSecurityDomain(v: Vault, body: unknown): Promise<string> {
      if (v.hsm?.activation === 'Active') {
        throw errors.conflict(`The managed HSM '${v.name}' is already activated: its security domain was ${v.hsm.domainId ? 'downloaded or uploaded' : 'set'} on ${new Date((v.hsm.activatedAt ?? 0) * 1000).toISOString()}.`, 'SecurityDomainAlreadyDownloaded');
      }
      const { certificates, required } = checkDownloadRequest(body);
      const t = await token();
      const secret = await t.random(32);
      try {
        const kcv = keyCheckValue(secret);
        const { id } = await t.importAes256(secret);
        if (await t.keyCheckValue(id) !== kcv) throw errors.serviceUnavailable('The token\'s security-domain key does not match its secret (the PKCS#11 module misbehaves).');
        const domainId = `${v.name}-${nowSeconds(d.clock).toString(36)}-${id.slice(0, 8)}`;
        const file = await sealSecurityDomain({ secret, certificates, required, domainId, hsmName: v.name });
        await swap(v, { ...v.hsm!, activation: 'Active', domainId, domainKeyId: id, domainKcv: kcv, activatedAt: nowSeconds(d.clock) }, [id]);
        return file;
      } finally {
        secret.fill(0);
      }
    },

    /** The HSM's transfer key for a security-domain upload (an RSA key made in the token on first ask). */
    async transferKey(v: Vault): Promise<{ kid: string; kty: 'RSA'; key_ops: string[]; alg: 'RSA-OAEP'; n: string; e: string }> {
      if (v.hsm?.activation === 'Active') {
        throw errors.conflict(`The managed HSM '${v.name}' is activated already; a security domain is uploaded only into a new HSM (disaster recovery).`, 'HsmAlreadyActivated');
      }
      const t = await token();
      let id = v.hsm!.transferKeyId;
      if (!id) {
        id = (await t.generateRsa(2048)).id;
        await swap(v, { ...v.hsm!, transferKeyId: id }, [id]);
      }
      const jwk = await t.publicJwk(id);
      return { kid: `${d.hsmUri(v.name)}securitydomain/upload/transfer_key/${id.slice(0, 16)}`, kty: 'RSA', key_ops: ['wrapKey', 'encrypt'], alg: 'RSA-OAEP', n: jwk.n, e: jwk.e };
    },

    /**
     * Recovery: the restore blob's secret is unwrapped by the token with the transfer key into the new HSM's
     * security-domain key, checked against the domain's key check value, and the HSM becomes Active with that
     * domain (key backups of the old HSM restore into it from then on).
     */
    async uploadSecurityDomain(v: Vault, text: unknown): Promise<void> {
      if (v.hsm?.activation === 'Active') {
        throw errors.conflict(`The managed HSM '${v.name}' is activated already; a security domain is uploaded only into a new HSM.`, 'HsmAlreadyActivated');
      }
      if (typeof text !== 'string') throw errors.badParameter("The body's 'value' must be the restore blob (a JSON text).");
      const blob = parseRestoreBlob(text);
      const transferKeyId = v.hsm!.transferKeyId;
      if (!transferKeyId) throw errors.badParameter('Ask for the transfer key first (GET /securitydomain/upload): the restore blob is wrapped to it.', 'TransferKeyMissing');
      if (!blob.transferKid.endsWith(`/${transferKeyId.slice(0, 16)}`)) {
        throw errors.badParameter(`The restore blob is wrapped to transfer key ${blob.transferKid}, not to this HSM's current one; fetch the transfer key again and re-create the blob.`, 'TransferKeyMismatch');
      }
      const t = await token();
      let id: string;
      try {
        id = (await t.unwrapAesWithRsa(transferKeyId, blob.wrappedKey)).id;
      } catch (e) {
        if (e instanceof TokenError) throw errors.badParameter(`The restore blob could not be unwrapped with this HSM's transfer key: ${e.message}`, 'SecurityDomainRestoreFailed');
        throw e;
      }
      if (await t.keyCheckValue(id) !== blob.kcv) {
        await t.destroy(id).catch(() => undefined);
        throw errors.badParameter('The uploaded security domain does not match its key check value; nothing was changed.', 'SecurityDomainRestoreFailed');
      }
      await swap(v, { ...v.hsm!, activation: 'Active', domainId: blob.domainId, domainKeyId: id, domainKcv: blob.kcv, transferKeyId: undefined, activatedAt: nowSeconds(d.clock) }, [id]);
      await t.destroy(transferKeyId).catch(() => undefined);
    },
  };
}

export type HsmService = ReturnType<typeof createHsmService>;
