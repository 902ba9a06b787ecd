import { SECRET_VALUE, type WithSecretValue } from './secret-body.js';
import { createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { errors } from '../lib/errors.js';
import { parseDurationSeconds } from '../lib/duration.js';
import type { Barrier } from '../barrier/barrier.js';
import type { EventBus } from './events.js';
import type { VaultRepo } from './vault.repo.js';
import { RSA_SIZES, type KeyRecord, type KeyVersion, type LifetimeAction, type RotationPolicy, type Vault } from './vault.types.js';
import * as rsa from './rsa.js';
import { generateRsaKey } from '../lib/rsa-keygen.js';
import { runPrivateJob, type PrivateJob, type RsaPool } from './rsa-pool.js';
import { DEFAULT_ROTATION_POLICY } from './keys.wire.js';
import { nowSeconds, systemClock, type Clock } from '../lib/clock.js';
import {
  assertKeyName, checkKeyOps, checkPage, checkRotationPolicy, checkWindow, decodeB64url,
  type CreateKeyInput, type ImportKeyInput, type UpdateKeyInput,
} from './key-input.js';
import { checkJwkImport } from './jwk-import.js';
import { createKeyBackups } from './key-backups.js';
import { schedulerPass } from './key-scheduler.js';
import type { HsmKeys, TokenMaterial } from '../hsm/hsm-keys.js';
import { byokCiphertext, byokKek, parseByok, unwrapByokSoftware } from './byok.js';

const DAY = 86400;

export type CryptoOp = 'encrypt' | 'decrypt' | 'wrapKey' | 'unwrapKey' | 'sign' | 'verify';

export interface KeyServiceDeps {
  repo: VaultRepo;
  barrier: Barrier;
  events: EventBus;
  /** Where private-key operations run; without one they run on the calling thread. */
  rsaPool?: RsaPool;
  /** The source of "now" for nbf/exp, soft-delete dates, rotation and expiry events (the system clock by default). */
  clock?: Clock;
  /** A Managed HSM's key material, in the PKCS#11 token (vaults of kind managedHsm). */
  hsm?: HsmKeys;
}

/**
 * The key domain: versioned RSA keys per vault, soft-delete, backup/restore, rotation and the cryptographic
 * operations. Authorization and network checks happen before any of this is called.
 */
export function createKeyService({ repo, barrier, events, rsaPool, clock = systemClock, hsm }: KeyServiceDeps) {
  const isHsm = (vault: Vault) => vault.kind === 'managedHsm';
  const hsmKeys = (): HsmKeys => {
    if (!hsm) throw errors.serviceUnavailable('Managed HSM keys are not available on this platform.');
    return hsm;
  };
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

  /**
   * Adds a version (creating the key record for a new name) and raises KeyNewVersionCreated: a software key
   * (sealed under the master key) or a key in the HSM's token (named by its CKA_ID only).
   */
  const addVersion = (vault: Vault, name: string, key: KeyObject | TokenMaterial, v: Omit<KeyVersion, 'vaultId' | 'name' | 'version' | 'seq' | 'n' | 'e' | 'keySize' | 'kty'>) => {
    const inToken = !(key instanceof Object && 'asymmetricKeyType' in key);
    const pub = inToken ? { n: (key as TokenMaterial).n, e: (key as TokenMaterial).e, size: (key as TokenMaterial).keySize } : rsa.publicParts(key as KeyObject);
    if (!inToken && !(RSA_SIZES as readonly number[]).includes(pub.size)) {
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
        ...v, vaultId: vault.id, name, version, seq: repo.nextSeq(vault.id, name), kty: inToken ? (key as TokenMaterial).kty : 'RSA', keySize: pub.size, n: pub.n, e: pub.e,
        ...(inToken ? { tokenKeyId: (key as TokenMaterial).tokenKeyId } : {}),
      };
      repo.insertVersion(kv, inToken ? null : barrier.seal(rsa.privateDer(key as KeyObject), sealAad(vault.id, name, version)));
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
    const key = isHsm(vault) ? await hsmKeys().generate(latest.kty, latest.keySize) : await generateRsaKey(latest.keySize);
    const t = now();
    const expirySeconds = k.rotationPolicy?.expiryTime ? parseDurationSeconds(k.rotationPolicy.expiryTime) : undefined;
    return addVersion(vault, name, key, {
      keyOps: latest.keyOps, enabled: true, created: t, updated: t, tags: latest.tags,
      exp: expirySeconds ? t + expirySeconds : undefined,
    });
  };

  const backups = createKeyBackups({ repo, barrier, events, hsm: hsmKeys, sealAad, liveKey });

  return {
    versionOf,

    async createKey(vault: Vault, name: string, input: CreateKeyInput): Promise<KeyVersion> {
      assertKeyName(name);
      if (isHsm(vault)) {
        const keyOps = checkKeyOps(input.key_ops);
        checkWindow(input.attributes?.nbf, input.attributes?.exp);
        if (repo.key(vault.id, name)?.deletedAt != null) {
          throw errors.conflict(`Key ${name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged.`, 'ObjectIsDeletedButRecoverable');
        }
        const material = await hsmKeys().generate(input.kty, input.key_size);
        const t = now();
        return addVersion(vault, name, material, {
          keyOps: material.kty === 'oct-HSM' ? keyOps.filter((o) => o !== 'sign' && o !== 'verify') : keyOps,
          enabled: input.attributes?.enabled ?? true, nbf: input.attributes?.nbf ?? undefined,
          exp: input.attributes?.exp ?? undefined, created: t, updated: t, tags: input.tags,
        });
      }
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

    /**
     * An import: a BYOK key transfer blob (`key.key_hsm`, wrapped to one of this vault's or HSM's key-exchange
     * keys) unwrapped by the HSM's token, or by OpenSSL with the vault's software KEK; or, into a vault only, a
     * plaintext JWK. `origin` is the vault's own, which the blob's KEK kid must name.
     */
    async importKey(vault: Vault, name: string, input: ImportKeyInput, origin: string): Promise<KeyVersion> {
      assertKeyName(name);
      const attrs = () => {
        checkWindow(input.attributes?.nbf, input.attributes?.exp);
        const t = now();
        return {
          enabled: input.attributes?.enabled ?? true, nbf: input.attributes?.nbf ?? undefined, exp: input.attributes?.exp ?? undefined,
          created: t, updated: t, tags: input.tags,
        };
      };
      if (typeof input.key?.key_hsm === 'string') {
        const file = parseByok(input.key.key_hsm);
        const ref = byokKek(file, origin);
        const kek = versionOf(vault, ref.name, ref.version);
        if (!kek.keyOps.includes('import')) throw errors.badParameter(`Key '${ref.name}' is not a key-exchange key: its key_ops must be exactly ['import'].`, 'OperationNotAllowed');
        if (!kek.enabled) throw errors.forbidden('Operation import is not allowed with a disabled key-exchange key.', 'KeyDisabled');
        const keyOps = checkKeyOps(input.key.key_ops as string[] | undefined);
        const ciphertext = byokCiphertext(file, kek.keySize / 8);
        if (isHsm(vault)) return addVersion(vault, name, await hsmKeys().importByok(kek, ciphertext), { keyOps, ...attrs() });
        const der = unwrapByokSoftware(privateKeyOf(kek), ciphertext, file.header.kid);
        try {
          return addVersion(vault, name, rsa.privateFromDer(der), { keyOps, ...attrs() });
        } finally {
          der.fill(0);
        }
      }
      if (isHsm(vault)) {
        throw errors.badParameter('A managed HSM imports keys only as a BYOK key transfer blob (key.key_hsm, made for one of its key-exchange keys); plaintext key material never enters it.');
      }
      const { jwk, keyOps } = checkJwkImport(input);
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
      const tokenIds = isHsm(vault) ? repo.keyTokenIds(vault.id, name) : [];
      if (!k || k.deletedAt == null) throw errors.keyNotFound(`Deleted Key not found: ${name}`);
      if (vault.purgeProtection && !force) {
        throw errors.forbidden(
          `Operation "purge" is not allowed because purge protection is enabled for this vault. Key ${name} will be purged automatically on ${new Date(k.scheduledPurge! * 1000).toISOString()}.`,
          'PurgeProtectionEnabled',
        );
      }
      repo.purgeKey(vault.id, name);
      dropCached(vault.id, name);
      // The rows go first: a token object left behind by a crash holds nothing any version names.
      if (tokenIds.length) void hsmKeys().destroy(tokenIds).catch(() => undefined);
      events.emit(vault, 'Microsoft.KeyVault.KeyPurged', { objectType: 'Key', objectName: name });
    },

    /** An opaque, integrity-protected blob of every version of the key (see key-backups.ts for where it restores). */
    backupKey: (vault: Vault, name: string) => backups.backup(vault, name),
    restoreKey: (vault: Vault, blob: string) => backups.restore(vault, blob),

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
    async crypto(vault: Vault, name: string, version: string | undefined, op: CryptoOp, body: Record<string, unknown>): Promise<{ version: KeyVersion; out: Buffer | boolean; iv?: Buffer; tag?: Buffer }> {
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
      if (isHsm(vault)) {
        try {
          return { version: v, ...(await hsmKeys().crypto(v, op, body, value)) };
        } finally {
          if (op === 'encrypt' || op === 'wrapKey') value.fill(0);
        }
      }
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
      await schedulerPass({ repo, events, purge: (vault, name) => this.purgeKey(vault, name, true), rotate }, vaultOf, now());
    },
  };
}

export type KeyService = ReturnType<typeof createKeyService>;
