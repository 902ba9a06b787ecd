import { isHsmOrigin, type PlatformClientDeps } from './key-access.js';
import { httpCall, keepAliveAgent } from '../lib/http-client.js';
import { RESOURCES } from '../identity/tokens.js';
import { errors } from '../lib/errors.js';

/**
 * What the control plane asks the management plane, over HTTPS like any client: vault properties and
 * identities (on behalf of the caller, with the caller's own token), event subscriptions on a customer's
 * vault (as the platform's trusted service), and the platform's own vault for service-managed keys.
 */
export type DirectoryDeps = PlatformClientDeps;

/** A key's vault or Managed HSM, as its management plane describes it. */
export interface VaultInfo {
  /** 'managedHsm': a Managed HSM (local RBAC; its key operations wait for activation). */
  kind: 'vault' | 'managedHsm';
  name: string;
  location: string;
  tenantId: string;
  vaultUri: string;
  softDeleteRetentionInDays: number;
  enableSoftDelete: boolean;
  enablePurgeProtection: boolean;
  /** The vault's data plane answers to role assignments (Key Vault data roles), not to access policies; an HSM's always does (local RBAC). */
  enableRbacAuthorization: boolean;
  /** An HSM's security domain is in place (downloaded or uploaded); a vault is always active. */
  activated: boolean;
}

export interface IdentityInfo {
  id: string;
  name: string;
  location: string;
  tenantId: string;
  principalId: string;
  clientId: string;
}

const MGMT_API = 'api-version=2023-07-01';

export function createDirectory(d: DirectoryDeps) {
  // This client's own pool of kept-alive connections; close() ends it.
  const agent = d.keepAlive === false ? false : keepAliveAgent({ maxSockets: d.keepAlive?.maxSockets });
  const get = async (path: string, token: string) => {
    const res = await httpCall({ method: 'GET', url: `${d.platformOrigin}${path}${path.includes('?') ? '&' : '?'}${MGMT_API}`, ca: d.ca, agent, headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, body: res.text ? JSON.parse(res.text) : undefined };
  };
  const send = async (method: string, url: string, token: string | undefined, body?: unknown) => {
    const res = await httpCall({
      method, url, ca: d.ca, cert: d.trustedCert, key: d.trustedKey, agent,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: res.text ? JSON.parse(res.text) : undefined };
  };

  let platformTokens: Record<string, { token: string; until: number }> = {};
  const platformToken = async (resource: string) => {
    const cached = platformTokens[resource];
    if (cached && cached.until > Date.now()) return cached.token;
    const c = d.platformCredential();
    const res = await httpCall({
      method: 'POST', url: `${d.platformOrigin}/${c.tenantId}/oauth2/v2.0/token`, ca: d.ca, agent,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: c.clientId, client_secret: c.clientSecret, scope: `${resource}/.default` }).toString(),
    });
    if (res.status !== 200) throw new Error(`the platform could not sign in: ${res.text}`);
    const token = JSON.parse(res.text).access_token as string;
    platformTokens = { ...platformTokens, [resource]: { token, until: Date.now() + 30 * 60_000 } };
    return token;
  };

  return {
    /**
     * The vault (or, for an origin under `managedhsm.<domain>`, the Managed HSM) of the caller's tenant that
     * serves this key URI, or undefined (another tenant, or none). Read with the caller's own token.
     */
    async vaultForKey(tenantId: string, callerToken: string, origin: string): Promise<VaultInfo | undefined> {
      const hsm = isHsmOrigin(origin, d.hsmResource);
      const r = await get(`/tenants/${tenantId}/providers/Microsoft.KeyVault/${hsm ? 'managedHSMs' : 'vaults'}`, callerToken);
      if (r.status !== 200) throw errors.authorizationFailed(`Could not read the tenant's ${hsm ? 'managed HSMs' : 'vaults'} to validate the key: ${r.body?.error?.message ?? r.status}`);
      const uriOf = (x: any): string => (hsm ? x.properties.hsmUri : x.properties.vaultUri);
      const v = (r.body.value as any[]).find((x) => new URL(uriOf(x)).origin === origin);
      return v && {
        kind: hsm ? 'managedHsm' : 'vault', name: v.name, location: v.location, tenantId: v.properties.tenantId, vaultUri: uriOf(v),
        softDeleteRetentionInDays: v.properties.softDeleteRetentionInDays, enableSoftDelete: v.properties.enableSoftDelete,
        enablePurgeProtection: v.properties.enablePurgeProtection,
        enableRbacAuthorization: hsm || v.properties.enableRbacAuthorization === true,
        activated: !hsm || v.properties.securityDomainProperties?.activationStatus === 'Active',
      };
    },

    /**
     * A user-assigned identity of the caller's tenant, by resource id (ARM's `/subscriptions/{sub}/resourceGroups/{rg}/...`
     * or the older `/tenants/{tid}/...`) or name. Its `id` is always the tenant form: the domain's own reference
     * (managed-identity tokens are asked for with it); ARM ids are built from placement at the wire.
     */
    async identity(tenantId: string, callerToken: string, ref: string): Promise<IdentityInfo | undefined> {
      const m = ref.match(/^\/tenants\/([^/]+)\/providers\/Microsoft\.ManagedIdentity\/userAssignedIdentities\/([^/]+)$/i);
      const arm = ref.match(/^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.ManagedIdentity\/userAssignedIdentities\/([^/]+)$/i);
      if (m && m[1] !== tenantId) return undefined;
      const name = m ? m[2] : arm ? arm[3] : ref;
      if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/.test(name)) return undefined;
      // An ARM id is looked up where it says (its subscription and group); another tenant's subscription is a 401.
      const path = arm ? `/subscriptions/${encodeURIComponent(arm[1])}/resourceGroups/${encodeURIComponent(arm[2])}` : `/tenants/${tenantId}`;
      const r = await get(`${path}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${encodeURIComponent(name)}`, callerToken);
      if (r.status === 404 || (arm && r.status === 401)) return undefined;
      if (r.status !== 200) throw errors.authorizationFailed(`Could not read the identity: ${r.body?.error?.message ?? r.status}`);
      return { ...r.body.properties, id: `/tenants/${r.body.properties.tenantId}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${r.body.name}`, name: r.body.name, location: r.body.location };
    },

    /** Subscribes the control plane to a vault's (or an HSM's) events, by its origin (a trusted-service call; events are hints only). */
    async subscribeVaultEvents(vaultOrigin: string, name: string, endpoint: string): Promise<void> {
      const r = await send('PUT', `${d.platformOrigin}/trusted/eventSubscriptions`, undefined, { vaultOrigin, name, endpoint });
      if (r.status !== 200) throw new Error(`event subscription failed: ${r.body?.error?.message ?? r.status}`);
    },

    /** Removes the control plane's event subscription from a vault; one already gone (404) counts as removed. */
    async unsubscribeVaultEvents(vaultOrigin: string, name: string): Promise<void> {
      const r = await send('DELETE', `${d.platformOrigin}/trusted/eventSubscriptions`, undefined, { vaultOrigin, name });
      if (r.status !== 200 && r.status !== 404) throw new Error(`removing the event subscription failed: ${r.body?.error?.message ?? r.status}`);
    },

    /**
     * The service-managed key of a region: a key in the platform's own vault, in the platform's own tenant,
     * created the first time a server without a customer key needs one.
     */
    async platformKey(region: string): Promise<string> {
      const c = d.platformCredential();
      const mgmt = await platformToken(RESOURCES.management);
      const vaultName = `pgbyok-sys-${region}`.slice(0, 24).replace(/-$/, '');
      const path = `/tenants/${c.tenantId}/providers/Microsoft.KeyVault/vaults/${vaultName}`;
      let v = await get(path, mgmt);
      if (v.status === 404) {
        const created = await send('PUT', `${d.platformOrigin}${path}?${MGMT_API}`, mgmt, {
          location: region, properties: { softDeleteRetentionInDays: 90, enablePurgeProtection: true },
        });
        if (created.status !== 200) throw new Error(`could not create the platform vault: ${created.body?.error?.message ?? created.status}`);
        v = created;
      } else if (v.status !== 200) {
        throw new Error(`could not read the platform vault: ${v.body?.error?.message ?? v.status}`);
      }
      const vaultUri = (v.body.properties.vaultUri as string).replace(/\/$/, '');
      const keyUri = `${vaultUri}/keys/service-managed-kek`;
      const vaultToken = await platformToken(d.vaultResource);
      const existing = await send('GET', `${keyUri}/?api-version=7.6`, vaultToken);
      if (existing.status === 404) {
        const k = await send('POST', `${keyUri}/create?api-version=7.6`, vaultToken, { kty: 'RSA', key_size: 3072, key_ops: ['wrapKey', 'unwrapKey'], attributes: {} });
        if (k.status !== 200) throw new Error(`could not create the service-managed key: ${k.body?.error?.message ?? k.status}`);
      } else if (existing.status !== 200) {
        throw new Error(`could not read the service-managed key: ${existing.body?.error?.message ?? existing.status}`);
      }
      return keyUri;
    },

    /** Closes the kept-alive connections; a call after this opens new ones. The platform calls it at shutdown. */
    close(): void {
      if (agent) agent.destroy();
    },
  };
}

export type Directory = ReturnType<typeof createDirectory>;
