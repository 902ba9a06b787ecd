import { SECRET_VALUE, type WithSecretValue } from './secret-body.js';
import { createCipheriv, createDecipheriv, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { errors } from '../lib/errors.js';
import { parseDurationSeconds } from '../lib/duration.js';
import type { Barrier } from '../barrier/barrier.js';
import type { EventBus } from './events.js';
import type { VaultRepo } from './vault.repo.js';
import {
  KEY_OPS, RSA_SIZES, type KeyOp, type KeyRecord, type KeyVersion, type LifetimeAction, type RotationPolicy, type Vault,
} from './vault.types.js';
import * as rsa from './rsa.js';
import { generateRsaKey } from '../lib/rsa-keygen.js';
import { runPrivateJob, type PrivateJob, type RsaPool } from './rsa-pool.js';
import { DEFAULT_ROTATION_POLICY } from './keys.wire.js';
import { nowSeconds, systemClock, type Clock } from '../lib/clock.js';

const NAME_RE = /^[0-9a-zA-Z-]{1,127}$/;
const B64URL_RE = /^[A-Za-z0-9_-]*={0,2}$/;
const DAY = 86400;

export interface KeyAttributesInput {
  enabled?: boolean;
  nbf?: number | null;
  exp?: number | null;
}

export interface CreateKeyInput {
  kty: string;
  key_size?: number;
  public_exponent?: number;
  key_ops?: string[];
  attributes?: KeyAttributesInput;
  tags?: Record<string, string>;
}

export interface ImportKeyInput {
  key: Record<string, unknown>;
  Hsm?: boolean;
  attributes?: KeyAttributesInput;
  tags?: Record<string, string>;
}

export interface UpdateKeyInput {
  key_ops?: string[];
  attributes?: KeyAttributesInput;
  tags?: Record<string, string>;
}

export type CryptoOp = 'encrypt' | 'decrypt' | 'wrapKey' | 'unwrapKey' | 'sign' | 'verify';

export function decodeB64url(value: unknown, field: string): Buffer {
  if (typeof value !== 'string' || !B64URL_RE.test(value)) {
    throw errors.badParameter(`'${field}' must be a base64url string.`);
  }
  return Buffer.from(value, 'base64url');
}

export function assertKeyName(name: string): void {
  if (!NAME_RE.test(name)) {
    throw errors.badParameter(`The key name '${name}' is invalid: use 1-127 letters, digits and '-'.`);
  }
}

/** A value from a request, quoted for an error message; anything, even an object no String() can turn into text. */
function shown(v: unknown): string {
  const text = typeof v === 'string' ? `'${v}'` : JSON.stringify(v) ?? typeof v;
  return text.length > 100 ? `${text.slice(0, 100)}...` : text;
}

function checkKeyOps(ops: string[] | undefined): KeyOp[] {
  if (ops === undefined) return [...KEY_OPS];
  const bad = ops.filter((o) => !(KEY_OPS as readonly string[]).includes(o));
  if (bad.length) throw errors.badParameter(`Unknown key_ops ${bad.join(', ')}. RSA keys support: ${KEY_OPS.join(', ')}.`);
  return [...new Set(ops)] as KeyOp[];
}

/** Latest activation or expiry a key may carry: 9999-12-31T23:59:59Z, the end of what a date can show. */
const MAX_TIME = 253_402_300_799;

function checkWindow(nbf?: number | null, exp?: number | null): void {
  for (const [name, t] of [['nbf', nbf], ['exp', exp]] as const) {
    if (t != null && (!Number.isSafeInteger(t) || t < 0 || t > MAX_TIME)) {
      throw errors.badParameter(`The key attribute '${name}' must be a time in whole seconds since 1970 up to ${MAX_TIME} (the year 9999), not ${t}.`);
    }
  }
  if (nbf != null && exp != null && exp <= nbf) {
    throw errors.badParameter('The key expiry (exp) must be later than its activation (nbf).');
  }
}

/** A page SQLite can be asked for: whole numbers it binds as integers (`$skiptoken=1e20` is a whole number too). */
function checkPage(limit: number, offset: number): void {
  if (!Number.isSafeInteger(limit) || limit < 1) throw errors.badParameter('maxresults must be a whole number from 1 to 25.');
  if (!Number.isSafeInteger(offset) || offset < 0) throw errors.badParameter('$skiptoken is invalid.');
}

/** Longest duration a rotation policy may name (1000 years), so that an expiry it sets is still a date. */
const MAX_DURATION = 1000 * 365 * DAY;

const durationOf = (text: string): number | undefined => {
  const d = parseDurationSeconds(text);
  return d !== undefined && d <= MAX_DURATION ? d : undefined;
};

function checkRotationPolicy(p: { lifetimeActions?: LifetimeAction[]; attributes?: { expiryTime?: string } }): void {
  const expiry = p.attributes?.expiryTime;
  if (expiry !== undefined && durationOf(expiry) === undefined) {
    throw errors.badParameter(`expiryTime '${expiry}' is not an ISO 8601 duration such as P90D (of at most 1000 years).`);
  }
  for (const a of p.lifetimeActions ?? []) {
    const type: unknown = a.action?.type;
    if (typeof type !== 'string' || !['rotate', 'notify'].includes(type.toLowerCase())) {
      throw errors.badParameter(`Lifetime action type ${shown(type)} is not one of Rotate, Notify.`);
    }
    const { timeAfterCreate, timeBeforeExpiry } = a.trigger ?? {};
    for (const t of [timeAfterCreate, timeBeforeExpiry]) {
      if (t !== undefined && typeof t !== 'string') throw errors.badParameter('Each lifetime action trigger must be an ISO 8601 duration string such as P30D.');
    }
    if ((timeAfterCreate === undefined) === (timeBeforeExpiry === undefined)) {
      throw errors.badParameter('Each lifetime action needs exactly one trigger: timeAfterCreate or timeBeforeExpiry.');
    }
    const d = timeAfterCreate ?? timeBeforeExpiry!;
    if (durationOf(d) === undefined) throw errors.badParameter(`Trigger '${d}' is not an ISO 8601 duration such as P30D (of at most 1000 years).`);
    if (timeBeforeExpiry !== undefined && expiry === undefined && type.toLowerCase() === 'rotate') {
      throw errors.badParameter('A timeBeforeExpiry rotation needs the policy to set attributes.expiryTime.');
    }
  }
}

/**
 * The one expiry event a scheduler pass owes a key version, if any: KeyExpired once it is past its expiry
 * (and then never a late KeyNearExpiry, even if no pass saw it near), else KeyNearExpiry once it is within
 * `windowSeconds` of it. Never both for one version in one pass.
 */
export function expiryEventDue(
  v: { exp: number; nearNotified: boolean; expiredNotified: boolean }, windowSeconds: number, t: number,
): 'Microsoft.KeyVault.KeyExpired' | 'Microsoft.KeyVault.KeyNearExpiry' | undefined {
  if (t >= v.exp) return v.expiredNotified ? undefined : 'Microsoft.KeyVault.KeyExpired';
  if (t >= v.exp - windowSeconds && !v.nearNotified) return 'Microsoft.KeyVault.KeyNearExpiry';
  return undefined;
}

export interface KeyServiceDeps {
  repo: VaultRepo;
  barrier: Barrier;
  events: EventBus;
  /** Where private-key operations run; without one they run on the calling thread. */
  rsaPool?: RsaPool;
  /** The source of "now" for nbf/exp, soft-delete dates, rotation and expiry events (the system clock by default). */
  clock?: Clock;
}

/**
 * The key domain: versioned RSA keys per vault, soft-delete, backup/restore, rotation and the cryptographic
 * operations. Authorization and network checks happen before any of this is called.
 */
export function createKeyService({ repo, barrier, events, rsaPool, clock = systemClock }: KeyServiceDeps) {
  const now = () => nowSeconds(clock);
  const sealAad = (vaultId: string, name: string, version: string) => `key:${vaultId}/${name}/${version}`;
  const privateCache = new Map<string, KeyObject>();

  const newVersionId = () => randomBytes(16).toString('hex');

  /** Fetches a live (not soft-deleted) key, or 404 as Azure answers, including for deleted keys. */
  const liveKey = (vault: Vault, name: string): KeyRecord => {
    const k = repo.key(vault.id, name);
    if (!k || k.deletedAt != null) {
      throw errors.keyNotFound(`A key with (name/id) ${name} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command.`);
    }
    return k;
  };

  const versionOf = (vault: Vault, name: string, version?: string): KeyVersion => {
    liveKey(vault, name);
    const v = version ? repo.version(vault.id, name, version) : repo.latestVersion(vault.id, name);
    if (!v) throw errors.keyNotFound(`A key with (name/id) ${name}${version ? '/' + version : ''} was not found in this key vault.`);
    return v;
  };

  const privateKeyOf = (v: KeyVersion): KeyObject => {
    const cacheKey = `${v.vaultId}/${v.name}/${v.version}`;
    let k = privateCache.get(cacheKey);
    if (!k) {
      const sealed = repo.sealedPrivate(v.vaultId, v.name, v.version);
      if (!sealed) throw errors.keyNotFound(`Key ${v.name}/${v.version} has no key material.`);
      k = rsa.privateFromDer(barrier.unseal(sealed, sealAad(v.vaultId, v.name, v.version)));
      if (privateCache.size > 2048) privateCache.clear();
      privateCache.set(cacheKey, k);
    }
    return k;
  };

  const runPrivate = (job: PrivateJob): Promise<Buffer> | Buffer => (rsaPool ? rsaPool.run(job) : runPrivateJob(job));

  const dropCached = (vaultId: string, name: string) => {
    for (const k of privateCache.keys()) if (k.startsWith(`${vaultId}/${name}/`)) privateCache.delete(k);
  };

  /** Adds a version (creating the key record for a new name) and raises KeyNewVersionCreated. */
  const addVersion = (vault: Vault, name: string, key: KeyObject, v: Omit<KeyVersion, 'vaultId' | 'name' | 'version' | 'seq' | 'n' | 'e' | 'keySize' | 'kty'>) => {
    const pub = rsa.publicParts(key);
    if (!(RSA_SIZES as readonly number[]).includes(pub.size)) {
      throw errors.badParameter(`RSA keys must be ${RSA_SIZES.join(', ')} bits; this one is ${pub.size}.`);
    }
    const version = newVersionId();
    const record = repo.transaction(() => {
      const existing = repo.key(vault.id, name);
      if (existing?.deletedAt != null) {
        throw errors.conflict(
          `Key ${name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged.`,
          'ObjectIsDeletedButRecoverable',
        );
      }
      if (!existing) repo.insertKey(vault.id, name, v.created);
      const kv: KeyVersion = {
        ...v, vaultId: vault.id, name, version, seq: repo.nextSeq(vault.id, name), kty: 'RSA', keySize: pub.size, n: pub.n, e: pub.e,
      };
      repo.insertVersion(kv, barrier.seal(rsa.privateDer(key), sealAad(vault.id, name, version)));
      return kv;
    });
    events.emit(vault, 'Microsoft.KeyVault.KeyNewVersionCreated', {
      objectType: 'Key', objectName: name, version, nbf: record.nbf, exp: record.exp,
    });
    return record;
  };

  const rotate = async (vault: Vault, name: string): Promise<KeyVersion> => {
    const k = liveKey(vault, name);
    const latest = versionOf(vault, name);
    const key = await generateRsaKey(latest.keySize);
    const t = now();
    const expirySeconds = k.rotationPolicy?.expiryTime ? parseDurationSeconds(k.rotationPolicy.expiryTime) : undefined;
    return addVersion(vault, name, key, {
      keyOps: latest.keyOps, enabled: true, created: t, updated: t, tags: latest.tags,
      exp: expirySeconds ? t + expirySeconds : undefined,
    });
  };

  const backupKeyFor = (tenantId: string) => barrier.deriveKey('key-backup', tenantId);

  return {
    versionOf,

    async createKey(vault: Vault, name: string, input: CreateKeyInput): Promise<KeyVersion> {
      assertKeyName(name);
      if (input.kty === 'RSA-HSM') {
        throw errors.badParameter('HSM-protected keys (RSA-HSM) are not available: pgbyok vaults keep keys in software, sealed under the vault master key.');
      }
      if (input.kty !== 'RSA') throw errors.badParameter(`Key type '${input.kty}' is not supported; pgbyok vaults hold RSA keys.`);
      const size = input.key_size ?? 2048;
      if (!(RSA_SIZES as readonly number[]).includes(size)) {
        throw errors.badParameter(`RSA key size ${size} is not supported; use one of ${RSA_SIZES.join(', ')}.`);
      }
      if (input.public_exponent !== undefined && input.public_exponent !== 65537) {
        throw errors.badParameter('Only the public exponent 65537 is supported.');
      }
      const keyOps = checkKeyOps(input.key_ops);
      checkWindow(input.attributes?.nbf, input.attributes?.exp);
      const existing = repo.key(vault.id, name);
      if (existing?.deletedAt != null) {
        throw errors.conflict(`Key ${name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged.`, 'ObjectIsDeletedButRecoverable');
      }
      const key = await generateRsaKey(size);
      const t = now();
      return addVersion(vault, name, key, {
        keyOps, enabled: input.attributes?.enabled ?? true, nbf: input.attributes?.nbf ?? undefined,
        exp: input.attributes?.exp ?? undefined, created: t, updated: t, tags: input.tags,
      });
    },

    importKey(vault: Vault, name: string, input: ImportKeyInput): KeyVersion {
      assertKeyName(name);
      if (input.Hsm) throw errors.badParameter('HSM-protected import (Hsm: true) is not available: pgbyok vaults keep keys in software.');
      const jwk = input.key ?? {};
      if (jwk.kty !== 'RSA') throw errors.badParameter(`Key type ${shown(jwk.kty)} cannot be imported; pgbyok vaults hold RSA keys.`);
      for (const f of rsa.JWK_PRIVATE_PARTS) {
        if (jwk[f] === undefined) throw errors.badParameter(`The JWK is missing its private component '${f}'.`);
      }
      const ops = jwk.key_ops;
      if (ops !== undefined && (!Array.isArray(ops) || ops.length > 16 || !ops.every((o) => typeof o === 'string'))) {
        throw errors.badParameter('The JWK component \'key_ops\' must be a list of operation names.');
      }
      const keyOps = checkKeyOps(ops as string[] | undefined);
      checkWindow(input.attributes?.nbf, input.attributes?.exp);
      const key = rsa.privateFromJwk(jwk, RSA_SIZES);
      const t = now();
      return addVersion(vault, name, key, {
        keyOps, enabled: input.attributes?.enabled ?? true, nbf: input.attributes?.nbf ?? undefined,
        exp: input.attributes?.exp ?? undefined, created: t, updated: t, tags: input.tags,
      });
    },

    /** GET of a key version; Azure refuses it for a disabled key. */
    getKey(vault: Vault, name: string, version?: string): KeyVersion {
      const v = versionOf(vault, name, version);
      if (!v.enabled) throw errors.forbidden('Operation get is not allowed on a disabled key.', 'KeyDisabled');
      return v;
    },

    listKeys(vault: Vault, limit: number, offset: number): KeyVersion[] {
      checkPage(limit, offset);
      return repo.keys(vault.id, limit, offset).map((k) => repo.latestVersion(vault.id, k.name)!).filter(Boolean);
    },

    listVersions(vault: Vault, name: string, limit: number, offset: number): KeyVersion[] {
      checkPage(limit, offset);
      liveKey(vault, name);
      return repo.versions(vault.id, name, limit, offset);
    },

    updateKey(vault: Vault, name: string, version: string | undefined, input: UpdateKeyInput): KeyVersion {
      const v = versionOf(vault, name, version);
      const a = input.attributes ?? {};
      const next: KeyVersion = {
        ...v,
        keyOps: input.key_ops !== undefined ? checkKeyOps(input.key_ops) : v.keyOps,
        enabled: a.enabled ?? v.enabled,
        nbf: a.nbf === undefined ? v.nbf : a.nbf ?? undefined,
        exp: a.exp === undefined ? v.exp : a.exp ?? undefined,
        tags: input.tags !== undefined ? input.tags : v.tags,
        updated: now(),
      };
      checkWindow(next.nbf, next.exp);
      repo.saveVersion(next);
      if (next.enabled !== v.enabled) {
        events.emit(vault, next.enabled ? 'Microsoft.KeyVault.KeyEnabled' : 'Microsoft.KeyVault.KeyDisabled', {
          objectType: 'Key', objectName: name, version: v.version, nbf: next.nbf, exp: next.exp,
        });
      }
      return next;
    },

    deleteKey(vault: Vault, name: string): { key: KeyRecord; latest: KeyVersion } {
      liveKey(vault, name);
      const t = now();
      repo.setKeyDeleted(vault.id, name, t, t + vault.retentionDays * DAY);
      const latest = repo.latestVersion(vault.id, name)!;
      events.emit(vault, 'Microsoft.KeyVault.KeyDeleted', { objectType: 'Key', objectName: name, version: latest.version });
      return { key: repo.key(vault.id, name)!, latest };
    },

    getDeletedKey(vault: Vault, name: string): { key: KeyRecord; latest: KeyVersion } {
      const k = repo.key(vault.id, name);
      if (!k || k.deletedAt == null) throw errors.keyNotFound(`Deleted Key not found: ${name}`);
      return { key: k, latest: repo.latestVersion(vault.id, name)! };
    },

    listDeletedKeys(vault: Vault, limit: number, offset: number) {
      checkPage(limit, offset);
      return repo.deletedKeys(vault.id, limit, offset).map((k) => ({ key: k, latest: repo.latestVersion(vault.id, k.name)! }));
    },

    recoverKey(vault: Vault, name: string): KeyVersion {
      const { latest } = this.getDeletedKey(vault, name);
      repo.setKeyDeleted(vault.id, name, null, null);
      events.emit(vault, 'Microsoft.KeyVault.KeyRecovered', { objectType: 'Key', objectName: name, version: latest.version });
      return latest;
    },

    purgeKey(vault: Vault, name: string, force = false): void {
      const k = repo.key(vault.id, name);
      if (!k || k.deletedAt == null) throw errors.keyNotFound(`Deleted Key not found: ${name}`);
      if (vault.purgeProtection && !force) {
        throw errors.forbidden(
          `Operation "purge" is not allowed because purge protection is enabled for this vault. Key ${name} will be purged automatically on ${new Date(k.scheduledPurge! * 1000).toISOString()}.`,
          'PurgeProtectionEnabled',
        );
      }
      repo.purgeKey(vault.id, name);
      dropCached(vault.id, name);
      events.emit(vault, 'Microsoft.KeyVault.KeyPurged', { objectType: 'Key', objectName: name });
    },

    /**
     * An opaque, integrity-protected blob holding every version of the key, encrypted under a per-tenant
     * subkey of the master key: it restores into any vault of the same tenant of this installation, nowhere else.
     */
    backupKey(vault: Vault, name: string): string {
      const k = liveKey(vault, name);
      const versions = repo.allVersions(vault.id, name).map((v) => {
        const der = barrier.unseal(repo.sealedPrivate(vault.id, name, v.version)!, sealAad(vault.id, name, v.version));
        const { vaultId: _vid, ...rest } = v;
        return { ...rest, pkcs8: der.toString('base64') };
      });
      const header = Buffer.from(JSON.stringify({ format: 'pgbyok-key-backup', v: 1, tenantId: vault.tenantId }));
      const nonce = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', backupKeyFor(vault.tenantId), nonce);
      cipher.setAAD(header);
      const payload = Buffer.from(JSON.stringify({ name, created: k.created, rotationPolicy: k.rotationPolicy, versions }));
      const ct = Buffer.concat([cipher.update(payload), cipher.final()]);
      payload.fill(0);
      const len = Buffer.alloc(2);
      len.writeUInt16BE(header.length);
      return Buffer.concat([len, header, nonce, ct, cipher.getAuthTag()]).toString('base64url');
    },

    restoreKey(vault: Vault, blob: string): KeyVersion {
      const raw = decodeB64url(blob, 'value');
      const corrupt = () => errors.badParameter('The backup blob is corrupt, was tampered with, or was not made by this installation.');
      if (raw.length < 2 + 12 + 16) throw corrupt();
      const hlen = raw.readUInt16BE(0);
      const headerBytes = raw.subarray(2, 2 + hlen);
      let header: { format?: string; v?: number; tenantId?: string } | null;
      try {
        header = JSON.parse(headerBytes.toString('utf8'));
      } catch {
        throw corrupt();
      }
      if (typeof header !== 'object' || header === null || header.format !== 'pgbyok-key-backup' || header.v !== 1 || typeof header.tenantId !== 'string') throw corrupt();
      if (header.tenantId !== vault.tenantId) {
        throw errors.badParameter('This backup belongs to another tenant; a key backup restores only into a vault of the tenant it came from.', 'BackupFromOtherTenant');
      }
      const rest = raw.subarray(2 + hlen);
      let payload: { name: string; created: number; rotationPolicy?: RotationPolicy; versions: (Omit<KeyVersion, 'vaultId'> & { pkcs8: string })[] };
      try {
        const decipher = createDecipheriv('aes-256-gcm', backupKeyFor(vault.tenantId), rest.subarray(0, 12));
        decipher.setAAD(headerBytes);
        decipher.setAuthTag(rest.subarray(rest.length - 16));
        const plain = Buffer.concat([decipher.update(rest.subarray(12, rest.length - 16)), decipher.final()]);
        payload = JSON.parse(plain.toString('utf8'));
        plain.fill(0);
      } catch {
        throw corrupt();
      }
      const name = payload.name;
      repo.transaction(() => {
        if (repo.key(vault.id, name)) {
          throw errors.conflict(`Key ${name} already exists in this vault (or is soft-deleted); delete and purge it before restoring.`, 'KeyAlreadyExists');
        }
        repo.insertKey(vault.id, name, payload.created);
        if (payload.rotationPolicy) repo.setRotationPolicy(vault.id, name, payload.rotationPolicy);
        for (const v of payload.versions) {
          const { pkcs8, ...fields } = v;
          const der = Buffer.from(pkcs8, 'base64');
          repo.insertVersion({ ...fields, vaultId: vault.id }, barrier.seal(der, sealAad(vault.id, name, v.version)));
          der.fill(0);
        }
      });
      const latest = repo.latestVersion(vault.id, name)!;
      events.emit(vault, 'Microsoft.KeyVault.KeyNewVersionCreated', { objectType: 'Key', objectName: name, version: latest.version });
      return latest;
    },

    rotateKey: rotate,

    getRotationPolicy(vault: Vault, name: string): RotationPolicy {
      return liveKey(vault, name).rotationPolicy ?? DEFAULT_ROTATION_POLICY;
    },

    setRotationPolicy(vault: Vault, name: string, input: { lifetimeActions?: LifetimeAction[]; attributes?: { expiryTime?: string } }): RotationPolicy {
      const k = liveKey(vault, name);
      checkRotationPolicy(input);
      const t = now();
      const policy: RotationPolicy = {
        lifetimeActions: (input.lifetimeActions ?? []).map((a) => ({
          trigger: a.trigger.timeAfterCreate !== undefined ? { timeAfterCreate: a.trigger.timeAfterCreate } : { timeBeforeExpiry: a.trigger.timeBeforeExpiry },
          action: { type: a.action.type.toLowerCase() === 'rotate' ? 'Rotate' : 'Notify' },
        })),
        expiryTime: input.attributes?.expiryTime,
        created: k.rotationPolicy?.created ?? t,
        updated: t,
      };
      repo.setRotationPolicy(vault.id, name, policy);
      return policy;
    },

    /**
     * Runs one cryptographic operation. Outside the key's nbf/exp window only the "new protection"
     * operations (encrypt, wrapKey, sign) are refused; decrypt, unwrapKey and verify keep working, as Azure documents.
     */
    async crypto(vault: Vault, name: string, version: string | undefined, op: CryptoOp, body: Record<string, unknown>): Promise<{ version: KeyVersion; out: Buffer | boolean }> {
      const v = versionOf(vault, name, version);
      if (!v.enabled) throw errors.forbidden(`Operation ${op} is not allowed on a disabled key.`, 'KeyDisabled');
      if (!v.keyOps.includes(op)) throw errors.badParameter(`Operation ${op} is not permitted by this key's key_ops (${v.keyOps.join(', ')}).`, 'OperationNotAllowed');
      if (op === 'encrypt' || op === 'wrapKey' || op === 'sign') {
        const t = now();
        if (v.nbf != null && t < v.nbf) throw errors.forbidden(`Operation ${op} is not allowed before the key's activation date ${new Date(v.nbf * 1000).toISOString()}.`, 'KeyNotYetValid');
        if (v.exp != null && t >= v.exp) throw errors.forbidden(`Operation ${op} is not allowed on an expired key (expired ${new Date(v.exp * 1000).toISOString()}).`, 'KeyExpired');
      }
      if (typeof body.alg !== 'string') throw errors.badParameter("The request needs 'alg'.");
      const modulusBytes = v.keySize / 8;
      // From the crypto routes' parser the value arrives as bytes already (never a string); else decode it.
      const value = (body as WithSecretValue)[SECRET_VALUE] ?? decodeB64url(body.value, 'value');
      const privateKey = privateKeyOf(v);
      const result = (out: Buffer | boolean) => ({ version: v, out });
      switch (op) {
        case 'encrypt':
        case 'wrapKey':
          try {
            return result(rsa.encrypt(createPublicKey(privateKey), rsa.assertEncryptionAlg(body.alg), value, modulusBytes));
          } finally {
            // The plaintext (a DEK, for wrapKey) is wiped once it is encrypted.
            value.fill(0);
          }
        case 'decrypt':
        case 'unwrapKey':
          return result(await runPrivate({ op: 'decrypt', key: privateKey, alg: rsa.assertEncryptionAlg(body.alg), value, modulusBytes }));
        case 'sign':
          return result(await runPrivate({ op: 'sign', key: privateKey, alg: rsa.assertSignatureAlg(body.alg), value }));
        case 'verify': {
          const alg = rsa.assertSignatureAlg(body.alg);
          return result(rsa.verify(createPublicKey(privateKey), alg, decodeB64url(body.digest, 'digest'), value));
        }
      }
    },

    /** One pass of the scheduler: auto-rotation, expiry events, and purge of keys past their date. */
    async tick(vaultOf: (id: string) => Vault | undefined): Promise<void> {
      const t = now();
      for (const k of repo.keysDueForPurge(t)) {
        const vault = vaultOf(k.vaultId);
        if (vault) this.purgeKey(vault, k.name, true);
      }
      for (const w of repo.expiryWatch()) {
        const vault = vaultOf(w.vault_id);
        const k = repo.key(w.vault_id, w.name);
        if (!vault || vault.deletedAt != null || !k) continue;
        const notify = (k.rotationPolicy ?? DEFAULT_ROTATION_POLICY).lifetimeActions.find((a) => a.action.type === 'Notify' && a.trigger.timeBeforeExpiry);
        const window = notify ? parseDurationSeconds(notify.trigger.timeBeforeExpiry!) ?? 30 * DAY : 30 * DAY;
        const due = expiryEventDue({ exp: w.exp, nearNotified: !!w.near_expiry_notified, expiredNotified: !!w.expired_notified }, window, t);
        if (!due) continue;
        // Marked before it is sent: an event is at most once per version, even if sending it throws.
        repo.markNotified(w.vault_id, w.name, w.version, true, due === 'Microsoft.KeyVault.KeyExpired');
        events.emit(vault, due, { objectType: 'Key', objectName: w.name, version: w.version, exp: w.exp });
      }
      for (const k of repo.keysWithRotationPolicy()) {
        const vault = vaultOf(k.vaultId);
        const latest = repo.latestVersion(k.vaultId, k.name);
        if (!vault || vault.deletedAt != null || !latest) continue;
        const due = k.rotationPolicy!.lifetimeActions.some((a) => {
          if (a.action.type !== 'Rotate') return false;
          if (a.trigger.timeAfterCreate) return t >= latest.created + parseDurationSeconds(a.trigger.timeAfterCreate)!;
          return latest.exp != null && t >= latest.exp - parseDurationSeconds(a.trigger.timeBeforeExpiry!)!;
        });
        if (due) await rotate(vault, k.name);
      }
    },
  };
}

export type KeyService = ReturnType<typeof createKeyService>;
