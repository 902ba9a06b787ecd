import { randomBytes } from 'node:crypto';
import { httpCall, httpCallBytes, keepAliveAgent, secretJsonBody, secretJsonField } from '../lib/http-client.js';

/**
 * The control plane's only way to a key: HTTPS to the vault (or Managed HSM) with a bearer token, exactly like any other
 * client. Tokens for a server's user-assigned identity come from the identity service's managed-identity
 * endpoint (the platform proves itself with its trusted-service certificate, which the vault's firewall
 * also honours); the service-managed key is reached as the platform's own service principal.
 */

export type KeyFailure =
  | 'KeyDisabled' | 'KeyNotFound' | 'KeyExpired' | 'KeyNotYetValid' | 'PermissionDenied' | 'IdentityNotFound'
  | 'Unauthorized' | 'ForbiddenByFirewall' | 'VaultUnreachable' | 'VaultNotFound' | 'InvalidKey' | 'WrongKey';

export class KeyAccessError extends Error {
  constructor(readonly reason: KeyFailure, message: string) {
    super(message);
  }
  /** Failures that may pass on their own (network, vault restarting): the monitor allows a grace period. */
  get transient(): boolean {
    return this.reason === 'VaultUnreachable';
  }
}

export type KeyPrincipal = { kind: 'identity'; resourceId: string } | { kind: 'platform' };

/** How the control plane's clients reach the platform: its origin, the CA, the trusted-service certificate, its own credential. */
export interface PlatformClientDeps {
  platformOrigin: string;
  /** The audience of vault tokens (`https://vault.<domain>`), as the vaults' challenge names it. */
  vaultResource: string;
  /** The audience of Managed HSM tokens (`https://managedhsm.<domain>`); an HSM's host is `NAME.managedhsm.<domain>`. */
  hsmResource: string;
  ca: string;
  trustedCert: string;
  trustedKey: string;
  platformCredential: () => { tenantId: string; clientId: string; clientSecret: string };
  /** Connections kept alive and reused (default), at most this many per origin; `false`: a new TLS connection per call. */
  keepAlive?: false | { maxSockets?: number };
}

export type KeyAccessDeps = PlatformClientDeps;

export interface KeyInfo {
  kid: string;
  kty: string;
  keySize: number;
  keyOps: string[];
  enabled: boolean;
  nbf?: number;
  exp?: number;
}

/** Whether a key's origin is a Managed HSM's: its host is one label under the HSMs' resource host (`NAME.managedhsm.<domain>`). */
export function isHsmOrigin(origin: string, hsmResource: string): boolean {
  const host = new URL(origin).hostname;
  const suffix = `.${new URL(hsmResource).hostname}`;
  return host.endsWith(suffix) && !host.slice(0, -suffix.length).includes('.');
}

/**
 * The wrap algorithm of a key, chosen from where it lives (so an unwrap uses what the wrap used): RSA-OAEP-256
 * in a vault; RSA-OAEP (SHA-1) in a Managed HSM, whose PKCS#11 module has no OAEP with SHA-256.
 */
export const wrapAlgorithm = (hsm: boolean): 'RSA-OAEP' | 'RSA-OAEP-256' => (hsm ? 'RSA-OAEP' : 'RSA-OAEP-256');

/** `https://NAME.vault.DOMAIN[:port]/keys/name[/version]` (or `NAME.managedhsm.DOMAIN`) → its parts; anything else is refused. */
export function parseKeyUri(uri: string): { origin: string; name: string; version?: string } {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw new KeyAccessError('InvalidKey', `'${uri}' is not a key URI such as https://VAULT.vault.DOMAIN/keys/NAME[/VERSION].`);
  }
  const m = u.pathname.match(/^\/keys\/([0-9a-zA-Z-]{1,127})(?:\/([0-9a-f]{32}))?\/?$/);
  if (u.protocol !== 'https:' || !m || u.search || u.hash) {
    throw new KeyAccessError('InvalidKey', `'${uri}' is not a key URI such as https://VAULT.vault.DOMAIN/keys/NAME[/VERSION].`);
  }
  return { origin: u.origin, name: m[1], version: m[2] };
}

function mapVaultError(status: number, body: any, op: string, hsm: boolean): KeyAccessError {
  const code: string | undefined = body?.error?.code;
  const inner: string | undefined = body?.error?.innererror?.code;
  const message: string = body?.error?.message ?? `HTTP ${status}`;
  const where = hsm ? 'the managed HSM' : 'the vault';
  if (status === 401) {
    if (/no longer exists/.test(message)) return new KeyAccessError('IdentityNotFound', `the identity was deleted (${message})`);
    return new KeyAccessError('Unauthorized', `${where} refused the identity's token: ${message}`);
  }
  if (status === 403) {
    if (inner === 'KeyDisabled') return new KeyAccessError('KeyDisabled', 'the key is disabled');
    if (inner === 'KeyExpired') return new KeyAccessError('KeyExpired', 'the key has expired');
    if (inner === 'KeyNotYetValid') return new KeyAccessError('KeyNotYetValid', 'the key is not active yet');
    if (inner === 'ForbiddenByFirewall') return new KeyAccessError('ForbiddenByFirewall', `${where}'s firewall refuses the server`);
    if (inner === 'HsmNotActivated') return new KeyAccessError('PermissionDenied', 'the managed HSM is not activated: no key operation works until its security domain is downloaded (or uploaded)');
    if (inner === 'AccessDenied' && hsm) return new KeyAccessError('PermissionDenied', `no local role assignment of the managed HSM lets the identity ${op} with the key (${message})`);
    if (inner === 'AccessDenied') return new KeyAccessError('PermissionDenied', `the identity lacks the ${op} permission on the vault (${message})`);
    if (inner === 'ForbiddenByRbac') return new KeyAccessError('PermissionDenied', `no role assignment lets the identity ${op} on the vault (${message.split('\n').find((l) => l.startsWith('Action:')) ?? message})`);
    return new KeyAccessError('PermissionDenied', message);
  }
  if (status === 404) {
    if (code === 'VaultNotFound' || code === 'ManagedHsmNotFound') return new KeyAccessError('VaultNotFound', `${where} does not exist`);
    return new KeyAccessError('KeyNotFound', 'the key does not exist (deleted?)');
  }
  if (status >= 500) return new KeyAccessError('VaultUnreachable', `${where} answered ${status}: ${message}`);
  return new KeyAccessError('InvalidKey', `${op} failed: ${message}`);
}

export function createKeyAccess(d: KeyAccessDeps) {
  // This client's own pool of kept-alive connections (to the vaults and the identity service); close() ends it.
  const agent = d.keepAlive === false ? false : keepAliveAgent({ maxSockets: d.keepAlive?.maxSockets });
  // Tokens are per principal and resource: a vault's audience is not an HSM's.
  const tokens = new Map<string, { token: string; until: number }>();
  const keyOf = (p: KeyPrincipal, resource: string) => `${p.kind === 'platform' ? 'platform' : p.resourceId} ${resource}`;
  const hsmAt = (origin: string) => isHsmOrigin(origin, d.hsmResource);

  const fetchToken = async (p: KeyPrincipal, resource: string): Promise<string> => {
    const cached = tokens.get(keyOf(p, resource));
    if (cached && cached.until > Date.now()) return cached.token;
    let res;
    try {
      if (p.kind === 'identity') {
        res = await httpCall({
          method: 'GET',
          url: `${d.platformOrigin}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent(resource)}&msi_res_id=${encodeURIComponent(p.resourceId)}`,
          headers: { metadata: 'true' }, ca: d.ca, cert: d.trustedCert, key: d.trustedKey, timeoutMs: 10_000, agent,
        });
      } else {
        const c = d.platformCredential();
        res = await httpCall({
          method: 'POST', url: `${d.platformOrigin}/${c.tenantId}/oauth2/v2.0/token`, ca: d.ca, timeoutMs: 10_000, agent,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ grant_type: 'client_credentials', client_id: c.clientId, client_secret: c.clientSecret, scope: `${resource}/.default` }).toString(),
        });
      }
    } catch (e) {
      throw new KeyAccessError('VaultUnreachable', `the identity service is unreachable: ${(e as Error).message}`);
    }
    const body = JSON.parse(res.text || '{}');
    if (res.status === 404) throw new KeyAccessError('IdentityNotFound', 'the server\'s identity does not exist (deleted?)');
    if (res.status !== 200) throw new KeyAccessError('Unauthorized', `no token for the identity: ${body.error?.message ?? body.error_description ?? res.status}`);
    // Refresh well before expiry; a deleted identity is caught by the vault on the next call anyway.
    tokens.set(keyOf(p, resource), { token: body.access_token, until: Date.now() + Math.min(Number(body.expires_in) * 1000 - 300_000, 600_000) });
    return body.access_token;
  };

  /**
   * One vault (or HSM) request with one retry on a stale token; answers the 200 body as bytes. Error bodies
   * carry no key and are parsed as usual. The token is asked for the audience of the URL's origin.
   */
  const send = async (p: KeyPrincipal, method: string, url: string, op: string, body?: string | Buffer): Promise<Buffer> => {
    const origin = new URL(url).origin;
    const hsm = hsmAt(origin);
    const resource = hsm ? d.hsmResource : d.vaultResource;
    for (let attempt = 0; ; attempt++) {
      const token = await fetchToken(p, resource);
      let res;
      try {
        res = await httpCallBytes({
          method, url: `${url}${url.includes('?') ? '&' : '?'}api-version=7.6`, ca: d.ca, cert: d.trustedCert, key: d.trustedKey, timeoutMs: 10_000, agent,
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-ms-client-request-id': `pgbyok-${op}` },
          body,
        });
      } catch (e) {
        throw new KeyAccessError('VaultUnreachable', `${hsm ? 'the managed HSM' : 'the vault'} at ${origin} is unreachable: ${(e as Error).message}`);
      }
      if (res.status === 200) return res.body;
      // A cached token of an identity that was re-created, or of rotated signing keys: fetch anew once.
      if (res.status === 401 && attempt === 0) {
        tokens.delete(keyOf(p, resource));
        continue;
      }
      let parsed: unknown;
      try {
        parsed = res.body.length ? JSON.parse(res.body.toString('utf8')) : undefined;
      } catch {
        parsed = undefined;
      }
      throw mapVaultError(res.status, parsed, op, hsm);
    }
  };

  const call = async (p: KeyPrincipal, method: string, url: string, op: string, body?: unknown): Promise<any> => {
    const res = await send(p, method, url, op, body === undefined ? undefined : JSON.stringify(body));
    return res.length ? JSON.parse(res.toString('utf8')) : undefined;
  };

  /** Wraps in the vault or HSM (the key's algorithm); the key travels as bytes only, and the request body is zeroed. */
  const wrap = async (keyUri: string, dek: Buffer, p: KeyPrincipal): Promise<{ kid: string; wrapped: string }> => {
    const { origin, name, version } = parseKeyUri(keyUri);
    const body = secretJsonBody({ alg: wrapAlgorithm(hsmAt(origin)) }, 'value', dek);
    try {
      const res = await send(p, 'POST', `${origin}/keys/${name}/${version ?? ''}/wrapkey`, 'wrapKey', body);
      const b = JSON.parse(res.toString('utf8'));
      return { kid: b.kid, wrapped: b.value };
    } finally {
      body.fill(0);
    }
  };

  /**
   * Unwraps with the version that wrapped it, with the algorithm its origin wraps with (the kid names where
   * it was wrapped); the plaintext is read out of the response bytes, which are then zeroed.
   */
  const unwrap = async (kid: string, wrapped: string, p: KeyPrincipal): Promise<Buffer> => {
    const { origin, name, version } = parseKeyUri(kid);
    const res = await send(p, 'POST', `${origin}/keys/${name}/${version ?? ''}/unwrapkey`, 'unwrapKey', JSON.stringify({ alg: wrapAlgorithm(hsmAt(origin)), value: wrapped }));
    try {
      const key = secretJsonField(res, 'value');
      if (!key) throw new KeyAccessError('InvalidKey', 'unwrapKey answered without a value');
      return key;
    } finally {
      res.fill(0);
    }
  };

  return {
    /** GET of the key (latest or pinned version) with its attributes. */
    async getKey(keyUri: string, p: KeyPrincipal): Promise<KeyInfo> {
      const { origin, name, version } = parseKeyUri(keyUri);
      const b = await call(p, 'GET', `${origin}/keys/${name}/${version ?? ''}`, 'get');
      return {
        kid: b.key.kid, kty: b.key.kty, keySize: typeof b.key.n === 'string' ? Buffer.from(b.key.n, 'base64url').length * 8 : 0, keyOps: b.key.key_ops ?? [],
        enabled: b.attributes.enabled, nbf: b.attributes.nbf, exp: b.attributes.exp,
      };
    },

    async listVersions(keyUri: string, p: KeyPrincipal): Promise<number> {
      const { origin, name } = parseKeyUri(keyUri);
      const b = await call(p, 'GET', `${origin}/keys/${name}/versions?maxresults=1`, 'list');
      return b.value.length;
    },

    /** Wraps with RSA-OAEP-256 in a vault, RSA-OAEP in an HSM (never locally); returns the versioned kid that wrapped it. */
    wrap,

    /** Unwraps with the version that wrapped it. The caller zeroes the returned DEK after use. */
    unwrap,

    /**
     * Proves that the key version `kid` still wraps and unwraps for this principal, as Azure's periodic
     * check does, without touching any DEK: a random probe is wrapped, unwrapped and compared, then wiped.
     */
    async probe(kid: string, p: KeyPrincipal): Promise<void> {
      const probe = randomBytes(32);
      let back: Buffer | undefined;
      try {
        const w = await wrap(kid, probe, p);
        back = await unwrap(w.kid, w.wrapped, p);
        if (!back.equals(probe)) throw new KeyAccessError('WrongKey', 'the key did not unwrap what it wrapped');
      } finally {
        probe.fill(0);
        back?.fill(0);
      }
    },

    /** Closes the kept-alive connections; a call after this opens new ones. The platform calls it at shutdown. */
    close(): void {
      if (agent) agent.destroy();
    },
  };
}

export type KeyAccess = ReturnType<typeof createKeyAccess>;
