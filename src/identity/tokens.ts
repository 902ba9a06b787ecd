import { createPrivateKey, createPublicKey, randomUUID, type KeyObject } from 'node:crypto';
import { generateRsaKeySync } from '../lib/rsa-keygen.js';
import { SignJWT, jwtVerify, exportJWK, decodeProtectedHeader, errors as joseErrors, type JWK } from 'jose';
import type { Db } from '../store/db.js';
import type { Barrier } from '../barrier/barrier.js';
import { nowSeconds, systemClock, type Clock } from '../lib/clock.js';
import type { Names } from '../lib/names.js';

/**
 * Fixed audiences (resources). The vaults' own audience is `names.vaultResource` (`https://vault.<domain>`;
 * their 401 challenge names `names.vaultChallengeResource`); vaults also accept Azure's public one, which
 * clients such as az's track-1 key client ask for without looking at the challenge.
 */
export const RESOURCES = {
  azureVault: 'https://vault.azure.net',
  management: 'https://management.azure.com',
} as const;

/** The audiences a vault accepts: its own resource, its challenge's resource (with the port), then Azure's public one. */
export const vaultAudiences = (names: Pick<Names, 'vaultResource' | 'vaultChallengeResource'>): string[] =>
  [...new Set([names.vaultResource, names.vaultChallengeResource, RESOURCES.azureVault])];

/** The audiences a Managed HSM accepts: its resource and its challenge's (with the port). */
export const hsmAudiences = (names: Pick<Names, 'hsmResource' | 'hsmChallengeResource'>): string[] =>
  [...new Set([names.hsmResource, names.hsmChallengeResource])];

export interface AccessClaims {
  tid: string;
  oid: string;
  appid: string;
  aud: string;
  iss: string;
  iat: number;
  exp: number;
}

export type TokenFailure = 'malformed' | 'signature' | 'expired' | 'issuer' | 'audience';

export class TokenError extends Error {
  constructor(readonly reason: TokenFailure, message: string) {
    super(message);
  }
}

interface SigningKey {
  kid: string;
  created: number;
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicJwk: JWK;
}

export interface TokenServiceOptions {
  /** The platform's canonical origin; every token's issuer is `{origin}/{tenant}/v2.0`. */
  origin: string;
  lifetimeSeconds: number;
  /** A new signing key is made when the newest is older than this; the one before stays in the JWKS. */
  keyRotationSeconds: number;
  clockToleranceSeconds: number;
  /** The source of "now" for issuing, verifying and rotating (the system clock by default). */
  clock?: Clock;
  /** The audiences the token endpoints issue tokens for (default: the fixed RESOURCES). */
  audiences?: readonly string[];
}

/**
 * Issues and verifies the platform's access tokens: RS256 JWTs carrying `tid`, `oid`, `aud`, `iat`, `exp`.
 * Signing keys are sealed in SQLite, rotate on a schedule, and are published as a JWKS.
 */
export function createTokenService(db: Db, barrier: Barrier, opts: TokenServiceOptions) {
  const clock = opts.clock ?? systemClock;
  const aad = (kid: string) => `signing-key:${kid}`;
  let keys: SigningKey[] = [];
  let loaded = false;

  const load = () => {
    const rows = db.prepare('SELECT * FROM signing_keys ORDER BY created DESC').all() as {
      kid: string; created: number; public_jwk: string; sealed_private: Buffer;
    }[];
    keys = rows.map((r) => {
      const privateKey = createPrivateKey({ key: barrier.unseal(r.sealed_private, aad(r.kid)), format: 'der', type: 'pkcs8' });
      return { kid: r.kid, created: r.created, privateKey, publicKey: createPublicKey(privateKey), publicJwk: JSON.parse(r.public_jwk) };
    });
  };

  /** Makes a new key when due and drops keys no valid token can still name. */
  const rotateIfDue = async (now = clock.now() / 1000) => {
    if (!loaded) {
      load();
      loaded = true;
    }
    if (!keys.length || now - keys[0].created >= opts.keyRotationSeconds) {
      const privateKey = generateRsaKeySync(2048);
      const kid = randomUUID();
      const publicJwk = { ...(await exportJWK(createPublicKey(privateKey))), kid, use: 'sig', alg: 'RS256' };
      const sealed = barrier.seal(privateKey.export({ format: 'der', type: 'pkcs8' }) as Buffer, aad(kid));
      db.prepare('INSERT INTO signing_keys (kid, created, public_jwk, sealed_private) VALUES (?, ?, ?, ?)').run(
        kid, Math.floor(now), JSON.stringify(publicJwk), sealed,
      );
      load();
    }
    // A retired key stays published for one token lifetime after its successor appeared.
    const keep = keys.filter((k, i) => i === 0 || now - keys[i - 1].created < opts.lifetimeSeconds + opts.clockToleranceSeconds);
    for (const k of keys) if (!keep.includes(k)) db.prepare('DELETE FROM signing_keys WHERE kid = ?').run(k.kid);
    keys = keep;
  };

  const issuerFor = (tenantId: string) => `${opts.origin}/${tenantId}/v2.0`;

  return {
    rotateIfDue,
    issuerFor,
    /** The resources a client may ask a token for (by scope `{resource}/.default`). */
    audiences: Object.freeze([...new Set(opts.audiences ?? Object.values(RESOURCES))]) as readonly string[],
    jwks: () => ({ keys: keys.map((k) => k.publicJwk) }),

    /** A signed token; `expiresOn` is its `exp` (seconds since the epoch, on the service's clock). */
    async issue(claims: { tid: string; oid: string; appid: string; aud: string }): Promise<{ token: string; expiresIn: number; expiresOn: number }> {
      const key = keys[0];
      const now = nowSeconds(clock);
      const token = await new SignJWT({ tid: claims.tid, oid: claims.oid, appid: claims.appid, azp: claims.appid, ver: '2.0' })
        .setProtectedHeader({ alg: 'RS256', kid: key.kid, typ: 'JWT' })
        .setIssuer(issuerFor(claims.tid))
        .setAudience(claims.aud)
        .setSubject(claims.oid)
        .setIssuedAt(now)
        .setNotBefore(now)
        .setExpirationTime(now + opts.lifetimeSeconds)
        .setJti(randomUUID())
        .sign(key.privateKey);
      return { token, expiresIn: opts.lifetimeSeconds, expiresOn: now + opts.lifetimeSeconds };
    },

    /** Verifies signature, expiry, audience (one of `audience`) and issuer; the caller still checks tenant and principal. */
    async verify(token: string, audience: string | readonly string[]): Promise<AccessClaims> {
      const accepted: readonly string[] = typeof audience === 'string' ? [audience] : audience;
      let kid: string | undefined;
      try {
        kid = decodeProtectedHeader(token).kid;
      } catch {
        throw new TokenError('malformed', 'The bearer token is not a well-formed JWT.');
      }
      const key = keys.find((k) => k.kid === kid);
      if (!key) throw new TokenError('signature', 'The bearer token was not signed by this identity service.');
      try {
        const { payload } = await jwtVerify(token, key.publicKey, {
          algorithms: ['RS256'],
          clockTolerance: opts.clockToleranceSeconds,
          currentDate: new Date(clock.now()),
          requiredClaims: ['tid', 'oid', 'aud', 'iat', 'exp', 'iss'],
        });
        const auds = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
        if (!auds.some((a) => typeof a === 'string' && accepted.includes(a))) {
          throw new TokenError('audience', `Invalid audience. Expected ${accepted.join(' or ')}, found ${String(payload.aud)}.`);
        }
        if (typeof payload.tid !== 'string' || typeof payload.oid !== 'string') {
          throw new TokenError('malformed', 'The bearer token names its tenant (tid) or principal (oid) with something other than a string.');
        }
        const tid = payload.tid;
        if (payload.iss !== issuerFor(tid)) {
          throw new TokenError('issuer', `Invalid issuer. Expected ${issuerFor(tid)}, found ${String(payload.iss)}.`);
        }
        return payload as unknown as AccessClaims;
      } catch (e) {
        if (e instanceof TokenError) throw e;
        if (e instanceof joseErrors.JWTExpired) throw new TokenError('expired', 'The bearer token is expired.');
        if (e instanceof joseErrors.JWSSignatureVerificationFailed) {
          throw new TokenError('signature', 'The bearer token signature is invalid.');
        }
        throw new TokenError('malformed', `The bearer token was refused: ${(e as Error).message}`);
      }
    },
  };
}

export type TokenService = ReturnType<typeof createTokenService>;
