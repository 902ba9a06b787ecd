/**
 * A Managed HSM's key material: every key lives in the PKCS#11 token and every operation on it (wrap, unwrap,
 * encrypt, decrypt, sign, verify, random bytes) is the token's. The key service keeps the metadata (versions,
 * attributes, soft-delete) and calls here for anything that touches a key. What the token's module cannot do
 * is refused with Key Vault's error, never done in software.
 *
 * A key backup holds each version wrapped (CKM_AES_KEY_WRAP_PAD) under the HSM's security-domain key, and
 * the metadata sealed (AES-256-GCM) under the same key, both by the token: it restores only into an HSM that
 * holds the same security domain.
 */
import { randomBytes } from 'node:crypto';
import { errors } from '../lib/errors.js';
import type { KeyRecord, KeyVersion, RotationPolicy, Vault } from '../vault/vault.types.js';
import { SIGNATURE_ALGS, type SignatureAlg } from '../vault/rsa.js';
import { decodeB64url } from '../vault/key-input.js';
import type { TokenProvider } from './token-provider.js';
import { TokenError, type RsaBits, type Token } from './token.js';

export const HSM_RSA_SIZES = [2048, 3072, 4096] as const;
export const HSM_KEY_TYPES = ['RSA-HSM', 'oct-HSM'] as const;
const RSA_ALGS = ['RSA-OAEP', 'RSA-OAEP-256'] as const;
const AES_WRAP_ALGS = ['A256KW', 'CKM_AES_KEY_WRAP_PAD'] as const;

export interface TokenMaterial { tokenKeyId: string; kty: 'RSA-HSM' | 'oct-HSM'; keySize: number; n: string; e: string }

export interface HsmCryptoResult { out: Buffer | boolean; iv?: Buffer; tag?: Buffer }

interface BackupMeta {
  name: string;
  created: number;
  rotationPolicy?: RotationPolicy;
  versions: (Omit<KeyVersion, 'vaultId' | 'tokenKeyId'> & { wrapped: string })[];
}

const BACKUP_FORMAT = 'pgbyok-mhsm-key-backup-1';

/** The token's refusal or failure as Key Vault answers it. */
function asApiError(e: unknown): unknown {
  if (!(e instanceof TokenError)) return e;
  if (e.code === 'AlgorithmNotSupportedByModule' || e.code === 'BadParameter') return errors.badParameter(e.message, 'AlgorithmNotSupported');
  if (e.code === 'DecryptionFailed') return errors.badParameter(`The HSM could not complete the operation: ${e.message}`, 'BadParameter');
  if (e.code === 'KeyNotFound') return errors.keyNotFound(`The key material is not in the HSM's token: ${e.message}`);
  return errors.serviceUnavailable(`The HSM's PKCS#11 token failed: ${e.message}`);
}

/** The security-domain key of an activated HSM (every caller has passed the activation gate). */
function domainKey(vault: Vault): string {
  const id = vault.hsm?.domainKeyId;
  if (!id) throw errors.forbidden(`The managed HSM '${vault.name}' is not activated: download its security domain first.`, 'HsmNotActivated');
  return id;
}

export function createHsmKeys(d: { tokens: TokenProvider }) {
  const withToken = async <T>(fn: (t: Token) => Promise<T>): Promise<T> => {
    try {
      return await fn(await d.tokens.token());
    } catch (e) {
      throw asApiError(e);
    }
  };

  return {
    /** A new key generated inside the token: RSA-HSM 2048/3072/4096 or oct-HSM (AES-256). */
    generate(kty: string, size: number | undefined): Promise<TokenMaterial> {
      if (kty === 'RSA-HSM' || kty === 'RSA') {
        const bits = size ?? 2048;
        if (!(HSM_RSA_SIZES as readonly number[]).includes(bits)) {
          throw errors.badParameter(`RSA-HSM key size ${bits} is not supported; use one of ${HSM_RSA_SIZES.join(', ')}.`);
        }
        return withToken(async (t) => {
          const { id, publicJwk } = await t.generateRsa(bits as RsaBits, { wrappable: true });
          return { tokenKeyId: id, kty: 'RSA-HSM', keySize: bits, n: publicJwk.n, e: publicJwk.e };
        });
      }
      if (kty === 'oct-HSM' || kty === 'oct') {
        if (size !== undefined && size !== 256) throw errors.badParameter(`oct-HSM keys here are AES-256; key_size ${size} is not supported.`);
        return withToken(async (t) => ({ tokenKeyId: (await t.generateAes256({ wrappable: true })).id, kty: 'oct-HSM', keySize: 256, n: '', e: '' }));
      }
      throw errors.badParameter(`Key type '${kty}' is not supported by this managed HSM; use RSA-HSM or oct-HSM.`);
    },

    /** A BYOK key transfer blob's ciphertext unwrapped inside the token with the key-exchange key (RSA targets). */
    importByok(kek: KeyVersion, ciphertext: Buffer): Promise<TokenMaterial> {
      return withToken(async (t) => {
        const { id, publicJwk } = await t.importByok(kek.tokenKeyId!, ciphertext, { wrappable: true });
        return { tokenKeyId: id, kty: 'RSA-HSM', keySize: Buffer.from(publicJwk.n, 'base64url').length * 8, n: publicJwk.n, e: publicJwk.e };
      });
    },

    /** One cryptographic operation by the token; the caller has checked the key's state and key_ops. */
    crypto(v: KeyVersion, op: string, body: Record<string, unknown>, value: Buffer): Promise<HsmCryptoResult> {
      const alg = String(body.alg);
      const id = v.tokenKeyId!;
      return withToken(async (t): Promise<HsmCryptoResult> => {
        if (v.kty === 'RSA-HSM') {
          if (op === 'sign' || op === 'verify') {
            if (!(SIGNATURE_ALGS as readonly string[]).includes(alg)) throw errors.badParameter(`Unknown signature algorithm '${alg}'. Supported: ${SIGNATURE_ALGS.join(', ')}.`);
            if (op === 'sign') return { out: await t.rsaSign(id, alg as SignatureAlg, value) };
            return { out: await t.rsaVerify(id, alg as SignatureAlg, decodeB64url(body.digest, 'digest'), value) };
          }
          if (!(RSA_ALGS as readonly string[]).includes(alg)) throw errors.badParameter(`Algorithm '${alg}' is not supported for RSA-HSM keys; use ${RSA_ALGS.join(' or ')}.`);
          const a = alg as (typeof RSA_ALGS)[number];
          if (op === 'encrypt' || op === 'wrapKey') return { out: await t.rsaEncrypt(id, a, value) };
          return { out: await t.rsaDecrypt(id, a, value) };
        }
        // oct-HSM: AES-256-GCM for encrypt/decrypt, AES key wrap for wrapKey/unwrapKey.
        if (op === 'encrypt' || op === 'decrypt') {
          if (alg !== 'A256GCM') throw errors.badParameter(`Algorithm '${alg}' is not supported for oct-HSM encrypt and decrypt; use A256GCM.`);
          const aad = body.aad === undefined ? Buffer.alloc(0) : decodeB64url(body.aad, 'aad');
          if (op === 'encrypt') {
            // The IV is the HSM's own, as Managed HSM makes it: a caller never chooses a GCM nonce.
            if (body.iv !== undefined) throw errors.badParameter('A256GCM encryption takes no iv: the HSM generates it and returns it with the ciphertext.');
            const iv = await t.random(12);
            const { ciphertext, tag } = await t.aesGcmEncrypt(id, value, iv, aad);
            return { out: ciphertext, iv, tag };
          }
          return { out: await t.aesGcmDecrypt(id, value, decodeB64url(body.iv, 'iv'), aad, decodeB64url(body.tag, 'tag')) };
        }
        if (op === 'wrapKey' || op === 'unwrapKey') {
          if (!(AES_WRAP_ALGS as readonly string[]).includes(alg)) throw errors.badParameter(`Algorithm '${alg}' is not supported for oct-HSM wrapKey and unwrapKey; use ${AES_WRAP_ALGS.join(' or ')}.`);
          const a = alg as (typeof AES_WRAP_ALGS)[number];
          return { out: op === 'wrapKey' ? await t.aesWrap(id, a, value) : await t.aesUnwrap(id, a, value) };
        }
        throw errors.badParameter(`Operation ${op} is not available for oct-HSM keys.`, 'OperationNotAllowed');
      });
    },

    /** Random bytes from the token (POST /rng). */
    random(count: number): Promise<Buffer> {
      if (!Number.isInteger(count) || count < 1 || count > 128) throw errors.badParameter('count must be a whole number from 1 to 128.');
      return withToken((t) => t.random(count));
    },

    /** Every version of a key, wrapped by the token under the HSM's security-domain key, with its metadata sealed. */
    backup(vault: Vault, k: KeyRecord, versions: KeyVersion[]): Promise<string> {
      const sd = domainKey(vault);
      return withToken(async (t) => {
        const meta: BackupMeta = { name: k.name, created: k.created, rotationPolicy: k.rotationPolicy, versions: [] };
        for (const v of versions) {
          const wrapped = await t.wrapUnder(sd, v.tokenKeyId!, v.kty === 'oct-HSM' ? 'aes' : 'rsa');
          const { vaultId: _v, tokenKeyId: _t, ...rest } = v;
          meta.versions.push({ ...rest, wrapped: wrapped.toString('base64url') });
        }
        const header = { format: BACKUP_FORMAT, domainId: vault.hsm!.domainId! };
        const iv = await t.random(12);
        const sealed = await t.aesGcmEncrypt(sd, Buffer.from(JSON.stringify(meta)), iv, Buffer.from(JSON.stringify(header)));
        return Buffer.from(JSON.stringify({ ...header, iv: iv.toString('base64url'), meta: sealed.ciphertext.toString('base64url'), tag: sealed.tag.toString('base64url') })).toString('base64url');
      });
    },

    /**
     * Opens a backup in this HSM: the same security domain or nothing. Returns the key's record and its
     * versions with their new token key ids (the caller stores them).
     */
    restore(vault: Vault, blob: string): Promise<{ name: string; created: number; rotationPolicy?: RotationPolicy; versions: KeyVersion[] }> {
      const sd = domainKey(vault);
      let outer: { format: string; domainId: string; iv: string; meta: string; tag: string };
      try {
        outer = JSON.parse(Buffer.from(blob, 'base64url').toString('utf8'));
      } catch {
        throw errors.badParameter('The backup blob is not a managed HSM key backup.', 'BadParameter');
      }
      if (outer?.format !== BACKUP_FORMAT) throw errors.badParameter('The backup blob is not a managed HSM key backup (a vault key backup restores only into a vault).', 'BadParameter');
      if (outer.domainId !== vault.hsm!.domainId) {
        throw errors.badParameter(`This backup belongs to another security domain (${outer.domainId}); it restores only into an HSM holding that domain (upload it with 'pgbyok hsm security-domain upload').`, 'BadParameter');
      }
      return withToken(async (t) => {
        const header = Buffer.from(JSON.stringify({ format: outer.format, domainId: outer.domainId }));
        const plain = await t.aesGcmDecrypt(sd, decodeB64url(outer.meta, 'meta'), decodeB64url(outer.iv, 'iv'), header, decodeB64url(outer.tag, 'tag'));
        const meta = JSON.parse(plain.toString('utf8')) as BackupMeta;
        const versions: KeyVersion[] = [];
        for (const { wrapped, ...v } of meta.versions) {
          const made = await t.unwrapUnder(sd, decodeB64url(wrapped, 'wrapped'), v.kty === 'oct-HSM' ? 'aes' : 'rsa');
          versions.push({ ...v, vaultId: vault.id, tokenKeyId: made.id, n: made.publicJwk?.n ?? '', e: made.publicJwk?.e ?? '' });
        }
        return { name: meta.name, created: meta.created, rotationPolicy: meta.rotationPolicy, versions };
      });
    },

    /** Destroys token objects (a purged key's versions, a purged HSM's keys); ids already gone are skipped. */
    async destroy(ids: string[]): Promise<void> {
      if (!ids.length) return;
      await withToken(async (t) => {
        for (const id of ids) await t.destroy(id).catch((e) => { if (!(e instanceof TokenError && e.code === 'KeyNotFound')) throw e; });
      });
    },

    /** A fresh 16-byte id for a security domain. */
    newDomainId: () => randomBytes(16).toString('hex'),
  };
}

export type HsmKeys = ReturnType<typeof createHsmKeys>;
