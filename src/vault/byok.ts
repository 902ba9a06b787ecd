import {
  constants, createCipheriv, createDecipheriv, createPublicKey, KeyObject, privateDecrypt, publicEncrypt, randomBytes,
} from 'node:crypto';
import { errors } from '../lib/errors.js';
import { shown } from './key-input.js';

/**
 * The .byok key transfer blob of Azure's "HSM-protected key import" (BYOK specification,
 * learn.microsoft.com/azure/key-vault/keys/byok-specification; docs/research/managed-hsm-wire.md §5).
 *
 * The customer wraps their key to a key-exchange key (KEK: an RSA key of this vault/HSM with key_ops
 * ['import']) with CKM_RSA_AES_KEY_WRAP: an ephemeral AES key encrypted with RSA-OAEP (SHA-1, MGF1-SHA-1,
 * no label) to the KEK — exactly one modulus long — followed by AES Key Wrap with Padding (RFC 5649) of the
 * target key (PKCS#8 DER of an RSA/EC private key; the raw bytes of an oct key). The .byok file is JSON
 * `{schema_version:'1.0.0', header:{kid, alg:'dir', enc:'CKM_RSA_AES_KEY_WRAP'}, ciphertext, generator}`
 * and arrives base64url-encoded in `key.key_hsm` of a key import.
 *
 * HSMs unwrap inside the token (src/hsm/token.ts `importByok`); software vaults with `unwrapByokSoftware`.
 * All cryptography is OpenSSL's through node:crypto.
 */

export interface ByokFile {
  schema_version: string;
  header: { kid: string; alg: 'dir'; enc: 'CKM_RSA_AES_KEY_WRAP' };
  ciphertext: string;
  generator?: string;
}

export const BYOK_SCHEMA_VERSION = '1.0.0';
export const BYOK_ALG = 'dir';
export const BYOK_ENC = 'CKM_RSA_AES_KEY_WRAP';
export const BYOK_GENERATOR = 'pgbyok byok';

/** RFC 5649 §3 alternative initial value, as OpenSSL's `id-aes*-wrap-pad` ciphers take it. */
const KWP_IV = Buffer.from('A65959A6', 'hex');
/** The AES key sizes CKM_AES_KEY_WRAP_PAD works with (OpenSSL cipher per key length); pgbyok makes AES-256. */
const KWP_CIPHER: Record<number, string> = { 16: 'id-aes128-wrap-pad', 24: 'id-aes192-wrap-pad', 32: 'id-aes256-wrap-pad' };
/** Far larger than any .byok file (a 4096-bit RSA target under a 4096-bit KEK is about 4 KB of key_hsm). */
const MAX_KEY_HSM = 64 * 1024;

const B64_RE = /^[A-Za-z0-9+/_-]+={0,2}$/;
const B64URL_RE = /^[A-Za-z0-9_-]+={0,2}$/;
const NAME_RE = /^[0-9a-zA-Z-]{1,127}$/;
const VERSION_RE = /^[0-9a-zA-Z]{1,64}$/;

const notByok = (why: string) =>
  errors.badParameter(
    `The key_hsm value is not a .byok key transfer blob: ${why} It must be the base64url of the .byok file's bytes, ` +
      `a JSON object {"schema_version":"${BYOK_SCHEMA_VERSION}","header":{"kid","alg":"${BYOK_ALG}","enc":"${BYOK_ENC}"},"ciphertext"}.`,
    'BadParameter',
  );

const badFile = (why: string) => errors.badParameter(`The .byok key transfer blob in key_hsm is invalid: ${why}`, 'BadParameter');

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The JSON text of key_hsm: the file's text itself, or its bytes in base64url (or standard base64). */
function byokText(keyHsm: unknown): string {
  if (typeof keyHsm !== 'string' || keyHsm.trim() === '') throw notByok('it is missing or not a string.');
  if (keyHsm.length > MAX_KEY_HSM) throw notByok(`it is ${keyHsm.length} characters, more than the ${MAX_KEY_HSM} a key transfer blob can need.`);
  const trimmed = keyHsm.trim();
  if (trimmed.startsWith('{')) return trimmed;
  if (!B64_RE.test(trimmed)) throw notByok('it is neither base64url nor JSON text.');
  // Node's base64 decoder reads both alphabets; the charset check above keeps out anything else.
  return Buffer.from(trimmed, 'base64').toString('utf8').replace(/^\uFEFF/, '').trim();
}

/**
 * key_hsm as it arrives (base64url of the .byok file bytes; also the file's JSON text directly, or standard
 * base64) → the parsed, validated file.
 */
export function parseByok(keyHsm: string): ByokFile {
  const text = byokText(keyHsm);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw notByok('its content is not JSON.');
  }
  if (!isObject(json)) throw notByok('its JSON is not an object.');

  if (json.schema_version !== BYOK_SCHEMA_VERSION) {
    throw badFile(json.schema_version === undefined
      ? `it has no schema_version; pgbyok reads schema_version ${BYOK_SCHEMA_VERSION}.`
      : `its schema_version is ${shown(json.schema_version)}; pgbyok reads schema_version ${BYOK_SCHEMA_VERSION}.`);
  }
  const header = json.header;
  if (!isObject(header)) throw badFile('it has no header object (with kid, alg and enc).');
  if (header.alg !== BYOK_ALG) {
    throw badFile(`its header.alg is ${header.alg === undefined ? 'missing' : shown(header.alg)}; the only supported alg is '${BYOK_ALG}'.`);
  }
  if (header.enc !== BYOK_ENC) {
    throw badFile(`its header.enc is ${header.enc === undefined ? 'missing' : shown(header.enc)}; ` +
      `the only supported enc is '${BYOK_ENC}' (RSA-OAEP SHA-1 of an AES key, then AES Key Wrap with Padding of the key).`);
  }
  if (typeof header.kid !== 'string' || header.kid === '') {
    throw badFile('it has no header.kid (the versioned key identifier of the key-exchange key it was made for).');
  }
  if (typeof json.ciphertext !== 'string' || json.ciphertext === '') throw badFile('it has no ciphertext.');
  if (!B64URL_RE.test(json.ciphertext)) throw badFile('its ciphertext is not a base64url string.');

  const file: ByokFile = { schema_version: BYOK_SCHEMA_VERSION, header: { kid: header.kid, alg: BYOK_ALG, enc: BYOK_ENC }, ciphertext: json.ciphertext };
  if (typeof json.generator === 'string') file.generator = json.generator;
  return file;
}

/**
 * The key-exchange key the file was made for: {name, version} from header.kid, which must name a key of the
 * vault/HSM at `origin` (e.g. https://kv1.vault.localhost:8443).
 */
export function byokKek(file: ByokFile, origin: string): { name: string; version?: string } {
  const kid = file.header.kid;
  let url: URL;
  try {
    url = new URL(kid);
  } catch {
    throw badFile(`its header.kid ${shown(kid)} is not a key identifier URL such as ${origin}/keys/{kek-name}/{version}.`);
  }
  const here = new URL(origin).origin;
  if (url.origin !== here) {
    throw errors.badParameter(
      `The key transfer blob was made for key-exchange key ${shown(kid)} of another vault or HSM (${url.origin}), not of ${here}. ` +
        'Wrap the key to a key-exchange key of this vault/HSM (key_ops [\'import\']) and use its versioned kid.',
      'BadParameter',
    );
  }
  const parts = url.pathname.split('/');
  const [, keys, name, version, ...rest] = parts;
  if (keys !== 'keys' || !name || !NAME_RE.test(name) || rest.length > 0 || (version !== undefined && version !== '' && !VERSION_RE.test(version))
    || url.search || url.hash || url.username || url.password) {
    throw badFile(`its header.kid ${shown(kid)} is not a key identifier of the form ${here}/keys/{kek-name}/{version}.`);
  }
  return version ? { name, version } : { name };
}

/** The ciphertext bytes (base64url decoded): one KEK modulus of RSA-OAEP, then at least 16 bytes of RFC 5649 wrap. */
export function byokCiphertext(file: ByokFile, modulusBytes: number): Buffer {
  if (!B64URL_RE.test(file.ciphertext)) throw badFile('its ciphertext is not a base64url string.');
  const bytes = Buffer.from(file.ciphertext, 'base64url');
  const wrapped = bytes.length - modulusBytes;
  if (bytes.length <= modulusBytes + 8 || wrapped % 8 !== 0) {
    throw badFile(
      `its ciphertext is ${bytes.length} bytes; for this ${modulusBytes * 8}-bit key-exchange key it must be the ${modulusBytes}-byte ` +
        'RSA-OAEP block followed by an AES key wrap with padding (a multiple of 8 bytes, at least 16). The blob is truncated or was made for another key.',
    );
  }
  return bytes;
}

const unwrapFailed = (bits: number, kekId?: string) =>
  errors.badParameter(
    `The key transfer blob could not be unwrapped with key-exchange key ${kekId ? `${shown(kekId)} ` : ''}(RSA ${bits}): ` +
      'it was made for another key-exchange key, or its ciphertext is corrupted.',
    'BadParameter',
  );

function rsaModulusBytes(key: KeyObject, what: string): number {
  const bits = key.asymmetricKeyType === 'rsa' ? key.asymmetricKeyDetails?.modulusLength : undefined;
  if (!bits) throw errors.badParameter(`The ${what} must be an RSA key.`, 'BadParameter');
  return Math.ceil(bits / 8);
}

/**
 * Software unwrap (vault keys): RSA-OAEP-SHA1 decrypt of the first modulusBytes with the KEK private key,
 * then AES-KWP unwrap of the rest → the target key's bytes (PKCS#8 DER for RSA). Every failure is the same
 * 400, so that the answer says nothing about which step (the OAEP padding) failed. `kekId`, if given, is named in it.
 */
export function unwrapByokSoftware(kekPrivate: KeyObject, ciphertext: Buffer, kekId?: string): Buffer {
  if (kekPrivate.type !== 'private') throw errors.badParameter('The key-exchange key must be a private RSA key to unwrap a key transfer blob.', 'BadParameter');
  const k = rsaModulusBytes(kekPrivate, 'key-exchange key');
  if (ciphertext.length <= k + 8 || (ciphertext.length - k) % 8 !== 0) throw unwrapFailed(k * 8, kekId);
  let aesKey: Buffer | undefined;
  const parts: Buffer[] = [];
  try {
    aesKey = privateDecrypt({ key: kekPrivate, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, ciphertext.subarray(0, k));
    const cipher = KWP_CIPHER[aesKey.length];
    if (!cipher) throw new Error('not an AES key');
    const decipher = createDecipheriv(cipher, aesKey, KWP_IV);
    parts.push(decipher.update(ciphertext.subarray(k)), decipher.final());
    const key = Buffer.concat(parts);
    if (key.length === 0) throw new Error('empty key');
    return key;
  } catch {
    throw unwrapFailed(k * 8, kekId);
  } finally {
    aesKey?.fill(0);
    for (const p of parts) p.fill(0);
  }
}

/**
 * The producer side, as a BYOK tool makes a blob (pgbyok's CLI and tests): `target` is a private KeyObject
 * (wrapped as PKCS#8 DER), a secret KeyObject or raw Buffer (oct: the key bytes); `kek` is the KEK's kid and
 * its public key. Returns the .byok file text (JSON).
 */
export function makeByok(kek: { kid: string; key: KeyObject | { kty: 'RSA'; n: string; e: string } }, target: KeyObject | Buffer): string {
  if (typeof kek.kid !== 'string' || kek.kid === '') throw errors.badParameter('The key-exchange key needs its kid (versioned key identifier).', 'BadParameter');
  let kekPublic: KeyObject;
  if (kek.key instanceof KeyObject) {
    if (kek.key.type === 'secret') throw errors.badParameter('The key-exchange key must be an RSA key, not a symmetric key.', 'BadParameter');
    kekPublic = kek.key.type === 'public' ? kek.key : createPublicKey(kek.key);
  } else {
    const jwk: { kty: string; n: string; e: string } = kek.key;
    if (jwk.kty !== 'RSA' && jwk.kty !== 'RSA-HSM') throw errors.badParameter(`The key-exchange key has kty ${shown(jwk.kty)}; it must be RSA.`, 'BadParameter');
    try {
      kekPublic = createPublicKey({ key: { kty: 'RSA', n: jwk.n, e: jwk.e }, format: 'jwk' });
    } catch (e) {
      throw errors.badParameter(`The key-exchange key is not a valid RSA public JWK: ${(e as Error).message}`, 'BadParameter');
    }
  }
  rsaModulusBytes(kekPublic, 'key-exchange key');

  let plain: Buffer;
  if (Buffer.isBuffer(target)) plain = Buffer.from(target);
  else if (target.type === 'private') plain = target.export({ format: 'der', type: 'pkcs8' }) as Buffer;
  else if (target.type === 'secret') plain = target.export();
  else throw errors.badParameter('The key to transfer must be a private key or a symmetric key, not a public key.', 'BadParameter');
  if (plain.length === 0) throw errors.badParameter('The key to transfer is empty.', 'BadParameter');

  const aesKey = randomBytes(32);
  try {
    const encryptedKey = publicEncrypt({ key: kekPublic, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, aesKey);
    const cipher = createCipheriv(KWP_CIPHER[32], aesKey, KWP_IV);
    const wrapped = Buffer.concat([cipher.update(plain), cipher.final()]);
    const file: ByokFile = {
      schema_version: BYOK_SCHEMA_VERSION,
      header: { kid: kek.kid, alg: BYOK_ALG, enc: BYOK_ENC },
      ciphertext: Buffer.concat([encryptedKey, wrapped]).toString('base64url'),
      generator: BYOK_GENERATOR,
    };
    return JSON.stringify(file);
  } finally {
    aesKey.fill(0);
    plain.fill(0);
  }
}

/** key_hsm value for a .byok file text: base64url of its UTF-8 bytes. */
export function keyHsmOf(fileText: string): string {
  return Buffer.from(fileText, 'utf8').toString('base64url');
}
