/**
 * The Managed HSM security domain: the HSM's 32-byte AES-256 domain key, split by Shamir's secret sharing
 * into one share per customer certificate (3..10, quorum 2..N), each share encrypted to its certificate's
 * RSA key. Download seals the file on the HSM side; upload is the client side (security-domain-client.ts): a
 * quorum of private keys recovers the key, which is then wrapped to the new HSM's transfer key in a restore blob that the new
 * HSM unwraps inside its token.
 *
 * The file keeps Azure's top-level shape ({EncData, SharedKeys}, enc_shares matched by x5t_256) so it
 * looks like a real security domain file, but its content is pgbyok's own (schema 'pgbyok-sd-1'): az's
 * Shamir is over GF(257) with uint16 shares, which no maintained library speaks, so shares here come from
 * `shamir-secret-sharing` (GF(2^8)) and are compact JWEs (RSA-OAEP-256 / A256GCM). az cannot read these
 * files, and this module cannot read az's. EncData carries no encrypted data: the domain key itself is
 * what the shares hold; `kcv`, the key check value, lets recovery tell a right key from a wrong one.
 *
 * The restore blob wraps the key with RSA-OAEP (SHA-1): the HSM's token (SoftHSM2) has no OAEP with
 * SHA-256 for its C_UnwrapKey. All cryptography is node:crypto, jose and shamir-secret-sharing.
 * Everything refused is an `errors.badParameter` with an inner code saying what was wrong.
 */
import { X509Certificate, createCipheriv, createHash, timingSafeEqual, type KeyObject } from 'node:crypto';
import { CompactEncrypt } from 'jose';
import { split } from 'shamir-secret-sharing';
import { errors } from '../lib/errors.js';

export interface SdCertificate {
  kid?: string; kty: 'RSA'; n: string; e: string; x5c: string[]; 'x5t#S256'?: string;
  key_ops?: string[]; alg?: string; use?: string; x5t?: string;
}
export type CheckedCertificate = SdCertificate & { 'x5t#S256': string };

export interface EncShare { enc_key: string; x5t_256: string }
export interface SecurityDomainFile {
  EncData: { kdf: 'none'; data: []; domainId: string; hsmName: string; kcv: string };
  SharedKeys: { key_algorithm: 'shamir_share_gf256'; library: 'shamir-secret-sharing'; required: number; enc_shares: EncShare[] };
  schema: 'pgbyok-sd-1';
}

const SCHEMA = 'pgbyok-sd-1';
export const RESTORE_SCHEMA = 'pgbyok-sd-restore-1';
const KEY_ALGORITHM = 'shamir_share_gf256';
const LIBRARY = 'shamir-secret-sharing';
const MIN_CERTS = 3;
const MAX_CERTS = 10;
const MIN_QUORUM = 2;
const DEFAULT_QUORUM = 2;
export const MIN_RSA_BITS = 2048;
export const SECRET_BYTES = 32;
/** A share from `split` is the secret's length plus one byte, its x coordinate. */
export const SHARE_BYTES = SECRET_BYTES + 1;
const MAX_TEXT = 1 << 20;
const MAX_CERT_BASE64 = 16384;
const MAX_JWE = 8192;
export const JWE_OPTIONS = { keyManagementAlgorithms: ['RSA-OAEP-256'], contentEncryptionAlgorithms: ['A256GCM'] };

export const B64URL = /^[A-Za-z0-9_-]+$/;
const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const THUMBPRINT = /^[A-Za-z0-9_-]{43}$/;
const KCV = /^[A-Za-z0-9_-]{11}$/;
const COMPACT_JWE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const LABEL = /^[^\u0000-\u001f\u007f]{1,256}$/;

export const bad = (message: string, inner: string) => errors.badParameter(message, inner);
export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const shown = (v: unknown): string => {
  const text = typeof v === 'string' ? `'${v}'` : JSON.stringify(v) ?? typeof v;
  return text.length > 60 ? `${text.slice(0, 60)}...` : text;
};
export const sha256 = (der: Buffer) => createHash('sha256').update(der).digest('base64url');
const stripZeros = (b: Buffer) => { let i = 0; while (i < b.length - 1 && b[i] === 0) i++; return b.subarray(i); };
export const subjectOf = (cert: X509Certificate) => cert.subject.split('\n').join(', ');
export const rsaBits = (key: KeyObject) => key.asymmetricKeyDetails?.modulusLength ?? 0;

export function checkSecret(secret: unknown): asserts secret is Buffer {
  if (!Buffer.isBuffer(secret) || secret.length !== SECRET_BYTES) {
    throw bad(`A security domain key is ${SECRET_BYTES} bytes (AES-256).`, 'InvalidSecurityDomainKey');
  }
}

function checkQuorum(required: unknown, n: number): number {
  if (typeof required !== 'number' || !Number.isInteger(required) || required < MIN_QUORUM || required > n) {
    throw bad(`required (the quorum) must be a whole number from ${MIN_QUORUM} to the number of certificates (${n}); ${shown(required)} was given.`, 'InvalidQuorum');
  }
  return required;
}

function checkCount(n: number, what: string): void {
  if (n < MIN_CERTS || n > MAX_CERTS) {
    throw bad(`A security domain is split among ${MIN_CERTS} to ${MAX_CERTS} certificates; ${what} ${n}.`, 'InvalidCertificateCount');
  }
}

function checkLabel(v: unknown, name: string, inner: string): string {
  if (typeof v !== 'string' || !LABEL.test(v)) throw bad(`${name} must be 1 to 256 printable characters; ${shown(v)} is not.`, inner);
  return v;
}

/** The certificate in x5c[0] (standard base64 DER), checked to hold an RSA key of at least 2048 bits. */
function certificateOf(x5c: unknown, where: string): X509Certificate {
  if (!Array.isArray(x5c) || x5c.length === 0 || !x5c.every((c) => typeof c === 'string' && c.length <= MAX_CERT_BASE64 && B64.test(c))) {
    throw bad(`${where}: x5c must be a list of certificates in standard base64 DER, the first being this key's.`, 'InvalidCertificate');
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(Buffer.from(x5c[0] as string, 'base64'));
  } catch {
    throw bad(`${where}: x5c[0] is not a DER X.509 certificate.`, 'InvalidCertificate');
  }
  const key = cert.publicKey;
  if (key.asymmetricKeyType !== 'rsa') {
    throw bad(`${where}: the certificate's key is ${key.asymmetricKeyType ?? 'unknown'}, not RSA.`, 'InvalidCertificate');
  }
  if (rsaBits(key) < MIN_RSA_BITS) {
    throw bad(`${where}: the certificate's RSA key has ${rsaBits(key)} bits; a security domain needs at least ${MIN_RSA_BITS}.`, 'KeyTooSmall');
  }
  return cert;
}

function optionalStrings(c: Record<string, unknown>, where: string): Partial<SdCertificate> {
  const out: Partial<SdCertificate> = {};
  for (const f of ['kid', 'alg', 'use'] as const) {
    const v = c[f];
    if (v === undefined) continue;
    if (typeof v !== 'string' || v.length > 2048) throw bad(`${where}: ${f} must be a string.`, 'InvalidCertificate');
    out[f] = v;
  }
  const ops = c.key_ops;
  if (ops !== undefined) {
    if (!Array.isArray(ops) || ops.length > 16 || !ops.every((o) => typeof o === 'string' && o.length <= 64)) {
      throw bad(`${where}: key_ops must be a list of operation names.`, 'InvalidCertificate');
    }
    out.key_ops = [...ops];
  }
  return out;
}

function checkCertificate(c: unknown, i: number): CheckedCertificate {
  const where = `certificates[${i}]`;
  if (!isObject(c)) throw bad(`${where} must be an RSA JSON web key with its certificate in x5c.`, 'InvalidCertificate');
  if (c.kty !== 'RSA') throw bad(`${where}: kty must be 'RSA'; ${shown(c.kty)} was given.`, 'InvalidCertificate');
  if (typeof c.n !== 'string' || !B64URL.test(c.n) || typeof c.e !== 'string' || !B64URL.test(c.e)) {
    throw bad(`${where}: n and e must be base64url big-endian integers.`, 'InvalidCertificate');
  }
  const cert = certificateOf(c.x5c, where);
  const jwk = cert.publicKey.export({ format: 'jwk' });
  const same = (given: string, actual: string | undefined) =>
    actual !== undefined && stripZeros(Buffer.from(given, 'base64url')).equals(Buffer.from(actual, 'base64url'));
  if (!same(c.n, jwk.n) || !same(c.e, jwk.e)) {
    throw bad(`${where}: n and e are not the public key of the certificate in x5c[0] (${subjectOf(cert)}).`, 'CertificateKeyMismatch');
  }
  const digest = sha256(cert.raw);
  if (c['x5t#S256'] !== undefined && c['x5t#S256'] !== digest) {
    throw bad(`${where}: x5t#S256 is not the SHA-256 thumbprint of x5c[0] (that is ${digest}).`, 'ThumbprintMismatch');
  }
  const sha1 = createHash('sha1').update(cert.raw).digest('base64url');
  if (c.x5t !== undefined && c.x5t !== sha1) {
    throw bad(`${where}: x5t is not the SHA-1 thumbprint of x5c[0] (that is ${sha1}).`, 'ThumbprintMismatch');
  }
  return {
    ...optionalStrings(c, where), kty: 'RSA', n: jwk.n as string, e: jwk.e as string, x5c: [...(c.x5c as string[])],
    ...(c.x5t !== undefined ? { x5t: sha1 } : {}), 'x5t#S256': digest,
  };
}

/**
 * Validates the download request body as Azure does: certificates 3..10, required 2..N (default 2), each
 * an RSA >= 2048 JWK whose x5c[0] (std base64 DER X.509) carries the same n/e; x5t#S256 (and x5t), if
 * given, must be the certificate's thumbprint. One certificate twice is refused: its holder would hold two
 * shares. Returns normalised certificates (n/e as the certificate has them) with x5t#S256 computed.
 */
export function checkDownloadRequest(body: unknown): { certificates: CheckedCertificate[]; required: number } {
  if (!isObject(body)) throw bad('The request body must be a JSON object {certificates, required}.', 'InvalidRequestBody');
  const certs = body.certificates;
  if (!Array.isArray(certs)) {
    throw bad(`certificates must be a list of ${MIN_CERTS} to ${MAX_CERTS} RSA JSON web keys with their certificates in x5c.`, 'InvalidCertificateCount');
  }
  checkCount(certs.length, 'this request gives');
  const required = checkQuorum(body.required ?? DEFAULT_QUORUM, certs.length);
  const certificates = certs.map(checkCertificate);
  const seen = new Map<string, number>();
  certificates.forEach((c, i) => {
    const first = seen.get(c['x5t#S256']);
    if (first !== undefined) throw bad(`certificates[${i}] is the same certificate as certificates[${first}]; each share needs its own key.`, 'DuplicateCertificate');
    seen.set(c['x5t#S256'], i);
  });
  return { certificates, required };
}

/** The key check value of a 32-byte AES key: base64url of the first 8 bytes of AES-256-GCM(key, 0^96 IV, 0^128). */
export function keyCheckValue(secret: Buffer): string {
  checkSecret(secret);
  const cipher = createCipheriv('aes-256-gcm', secret, Buffer.alloc(12));
  const ct = Buffer.concat([cipher.update(Buffer.alloc(16)), cipher.final()]);
  return ct.subarray(0, 8).toString('base64url');
}

export function kcvMatches(secret: Buffer, kcv: string): boolean {
  const a = Buffer.from(keyCheckValue(secret));
  const b = Buffer.from(kcv);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** One share as a compact JWE to the certificate in x5c[0]; the thumbprint is recomputed, not trusted. */
async function encryptShare(share: Uint8Array, c: CheckedCertificate, i: number): Promise<EncShare> {
  const cert = certificateOf(c.x5c, `certificates[${i}]`);
  const digest = sha256(cert.raw);
  if (c['x5t#S256'] !== digest) throw bad(`certificates[${i}]: x5t#S256 is not the SHA-256 thumbprint of x5c[0].`, 'ThumbprintMismatch');
  const enc_key = await new CompactEncrypt(share)
    .setProtectedHeader({ alg: 'RSA-OAEP-256', enc: 'A256GCM', 'x5t#S256': digest })
    .encrypt(cert.publicKey);
  return { enc_key, x5t_256: digest };
}

/** HSM side: the security-domain file (a JSON text) for `secret` (32 bytes): one share encrypted to each certificate. */
export async function sealSecurityDomain(o: {
  secret: Buffer; certificates: CheckedCertificate[]; required: number; domainId: string; hsmName: string;
}): Promise<string> {
  checkSecret(o.secret);
  checkCount(o.certificates.length, 'there are');
  const required = checkQuorum(o.required, o.certificates.length);
  const domainId = checkLabel(o.domainId, 'domainId', 'InvalidDomainId');
  const hsmName = checkLabel(o.hsmName, 'hsmName', 'InvalidHsmName');
  // The library wants a plain Uint8Array (a Buffer is refused), so it gets a copy, wiped with the shares.
  const copy = new Uint8Array(o.secret);
  const shares = await split(copy, o.certificates.length, required);
  try {
    const enc_shares = await Promise.all(o.certificates.map((c, i) => encryptShare(shares[i], c, i)));
    const file: SecurityDomainFile = {
      EncData: { kdf: 'none', data: [], domainId, hsmName, kcv: keyCheckValue(o.secret) },
      SharedKeys: { key_algorithm: KEY_ALGORITHM, library: LIBRARY, required, enc_shares },
      schema: SCHEMA,
    };
    return JSON.stringify(file);
  } finally {
    copy.fill(0);
    for (const s of shares) s.fill(0);
  }
}

function malformed(what: string): never {
  throw bad(`The security domain file is malformed: ${what}.`, 'MalformedSecurityDomain');
}

/** The shape check of a parsed security domain file; returns a copy holding only its known fields. */
export function checkFile(v: unknown): SecurityDomainFile {
  if (!isObject(v)) malformed('it is not a JSON object');
  const shared = v.SharedKeys;
  if (v.schema !== SCHEMA) {
    if (isObject(shared) && shared.key_algorithm === 'shamir_share') {
      throw bad(`This is an Azure security domain file (az's GF(257) Shamir shares); pgbyok reads only its own (schema ${SCHEMA}).`, 'UnsupportedSecurityDomain');
    }
    throw bad(`The file's schema is ${shown(v.schema)}; pgbyok security domain files are '${SCHEMA}'.`, 'UnsupportedSecurityDomain');
  }
  const enc = v.EncData;
  if (!isObject(enc)) malformed('EncData is missing');
  if (enc.kdf !== 'none' || !Array.isArray(enc.data) || enc.data.length !== 0) malformed("EncData is not {kdf: 'none', data: []}");
  if (typeof enc.kcv !== 'string' || !KCV.test(enc.kcv)) malformed('EncData.kcv is not an 8-byte base64url key check value');
  if (!isObject(shared)) malformed('SharedKeys is missing');
  if (shared.key_algorithm !== KEY_ALGORITHM) malformed(`SharedKeys.key_algorithm is ${shown(shared.key_algorithm)}, not '${KEY_ALGORITHM}'`);
  const list = shared.enc_shares;
  if (!Array.isArray(list) || list.length < MIN_CERTS || list.length > MAX_CERTS) malformed(`SharedKeys.enc_shares is not a list of ${MIN_CERTS} to ${MAX_CERTS} shares`);
  const required = shared.required;
  if (typeof required !== 'number' || !Number.isInteger(required) || required < MIN_QUORUM || required > list.length) {
    malformed(`SharedKeys.required is ${shown(required)}, not a quorum from ${MIN_QUORUM} to ${list.length}`);
  }
  const enc_shares = list.map((s: unknown, i): EncShare => {
    if (!isObject(s) || typeof s.x5t_256 !== 'string' || !THUMBPRINT.test(s.x5t_256)) malformed(`enc_shares[${i}].x5t_256 is not a SHA-256 thumbprint`);
    if (typeof s.enc_key !== 'string' || s.enc_key.length > MAX_JWE || !COMPACT_JWE.test(s.enc_key)) malformed(`enc_shares[${i}].enc_key is not a compact JWE`);
    return { enc_key: s.enc_key, x5t_256: s.x5t_256 };
  });
  if (new Set(enc_shares.map((s) => s.x5t_256)).size !== enc_shares.length) malformed('two shares are for the same certificate');
  return {
    EncData: {
      kdf: 'none', data: [], domainId: checkLabel(enc.domainId, 'EncData.domainId', 'MalformedSecurityDomain'),
      hsmName: checkLabel(enc.hsmName, 'EncData.hsmName', 'MalformedSecurityDomain'), kcv: enc.kcv,
    },
    SharedKeys: { key_algorithm: KEY_ALGORITHM, library: LIBRARY, required, enc_shares },
    schema: SCHEMA,
  };
}

function parseJson(text: unknown, what: string, inner: string): unknown {
  if (typeof text !== 'string' || text.length > MAX_TEXT) throw bad(`The ${what} must be a JSON text of at most ${MAX_TEXT} characters.`, inner);
  try {
    return JSON.parse(text);
  } catch {
    throw bad(`The ${what} is not JSON.`, inner);
  }
}

/** Reads a security-domain file (JSON text), validating its shape; throws badParameter on anything malformed. */
export function parseSecurityDomain(text: string): SecurityDomainFile {
  return checkFile(parseJson(text, 'security domain file', 'MalformedSecurityDomain'));
}

function badBlob(what: string): never {
  throw bad(`The security domain restore blob is malformed: ${what}.`, 'MalformedRestoreBlob');
}

/** HSM side: parses and validates a restore blob; the wrapped key is for the token's C_UnwrapKey (RSA-OAEP, SHA-1). */
export function parseRestoreBlob(text: string): { domainId: string; kcv: string; wrappedKey: Buffer; transferKid: string; sourceHsm: string } {
  const v = parseJson(text, 'security domain restore blob', 'MalformedRestoreBlob');
  if (!isObject(v)) badBlob('it is not a JSON object');
  if (v.schema !== RESTORE_SCHEMA) {
    throw bad(`The restore blob's schema is ${shown(v.schema)}; pgbyok restore blobs are '${RESTORE_SCHEMA}'.`, 'UnsupportedSecurityDomain');
  }
  const domainId = checkLabel(v.domainId, 'domainId', 'MalformedRestoreBlob');
  const sourceHsm = checkLabel(v.hsmName, 'hsmName', 'MalformedRestoreBlob');
  if (typeof v.kcv !== 'string' || !KCV.test(v.kcv)) badBlob('kcv is not an 8-byte base64url key check value');
  const w = v.WrappedKey;
  if (!isObject(w)) badBlob('WrappedKey is missing');
  if (typeof w.kid !== 'string' || w.kid.length === 0 || w.kid.length > 2048) badBlob('WrappedKey.kid is missing');
  if (w.alg !== 'RSA-OAEP') badBlob(`WrappedKey.alg is ${shown(w.alg)}; the key is unwrapped with 'RSA-OAEP' (SHA-1)`);
  const encKey = w.enc_key;
  if (typeof encKey !== 'string' || !B64URL.test(encKey)) badBlob('WrappedKey.enc_key is not base64url');
  const wrappedKey = Buffer.from(encKey, 'base64url');
  if (wrappedKey.toString('base64url') !== encKey || wrappedKey.length < MIN_RSA_BITS / 8 || wrappedKey.length > 512) {
    badBlob('WrappedKey.enc_key is not an RSA ciphertext of 2048 to 4096 bits');
  }
  return { domainId, kcv: v.kcv, wrappedKey, transferKid: w.kid, sourceHsm };
}
