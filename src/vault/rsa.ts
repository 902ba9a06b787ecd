import {
  constants, createHash, createPrivateKey, createPublicKey, privateDecrypt, privateEncrypt,
  publicDecrypt, publicEncrypt, randomBytes, timingSafeEqual, type KeyObject,
} from 'node:crypto';
import { errors } from '../lib/errors.js';
import { RSA_SIZES } from './vault.types.js';

/**
 * RSA operations of the vault, all on OpenSSL through `node:crypto`. The two places where the Key Vault API
 * hands us a *digest* to sign (Node only signs messages) use OpenSSL's raw RSA with the standard encodings
 * around it: PKCS#1 v1.5 type-1 padding by OpenSSL with a fixed DigestInfo prefix, and EMSA-PSS (RFC 8017
 * §9.1) built from OpenSSL's hashes. Both are cross-checked against `crypto.sign/verify` in the tests.
 */

export const ENCRYPTION_ALGS = ['RSA-OAEP', 'RSA-OAEP-256'] as const;
export type EncryptionAlg = (typeof ENCRYPTION_ALGS)[number];
export const SIGNATURE_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'] as const;
export type SignatureAlg = (typeof SIGNATURE_ALGS)[number];

const OAEP_HASH: Record<EncryptionAlg, { hash: string; len: number }> = {
  'RSA-OAEP': { hash: 'sha1', len: 20 },
  'RSA-OAEP-256': { hash: 'sha256', len: 32 },
};

const SIG_HASH: Record<'256' | '384' | '512', { hash: string; len: number; digestInfo: Buffer }> = {
  '256': { hash: 'sha256', len: 32, digestInfo: Buffer.from('3031300d060960864801650304020105000420', 'hex') },
  '384': { hash: 'sha384', len: 48, digestInfo: Buffer.from('3041300d060960864801650304020205000430', 'hex') },
  '512': { hash: 'sha512', len: 64, digestInfo: Buffer.from('3051300d060960864801650304020305000440', 'hex') },
};


export function publicParts(privateKey: KeyObject): { n: string; e: string; size: number } {
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' }) as { n: string; e: string };
  return { n: jwk.n, e: jwk.e, size: privateKey.asymmetricKeyDetails!.modulusLength! };
}

export function privateDer(privateKey: KeyObject): Buffer {
  return privateKey.export({ format: 'der', type: 'pkcs8' }) as Buffer;
}

export function privateFromDer(der: Buffer): KeyObject {
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
}

/** The components of an RSA private JWK (RFC 7518 §6.3), in the order they are checked. */
export const JWK_PRIVATE_PARTS = ['n', 'e', 'd', 'p', 'q', 'dp', 'dq', 'qi'] as const;
type JwkPart = (typeof JWK_PRIVATE_PARTS)[number];

/** Largest public exponent accepted (OpenSSL refuses exponents above 64 bits for moduli over 3072 bits). */
const MAX_E_BITS = 64;

const bad = (part: JwkPart, why: string) => errors.badParameter(`The JWK component '${part}' ${why}`);
const inconsistent = (part: JwkPart, why: string) =>
  errors.badParameter(`The key in the request is inconsistent: its JWK component '${part}' ${why}`);

function jwkInteger(jwk: Record<string, unknown>, part: JwkPart): bigint {
  const v = jwk[part];
  if (typeof v !== 'string' || !/^[A-Za-z0-9_-]+$/.test(v) || v.length % 4 === 1) {
    throw bad(part, 'must be a non-empty base64url string (RFC 7518 §6.3: the unsigned big-endian integer, no padding).');
  }
  const n = BigInt(`0x${Buffer.from(v, 'base64url').toString('hex') || '0'}`);
  if (n < 2n) throw bad(part, 'must be an integer greater than 1.');
  return n;
}

const bitLength = (x: bigint) => x.toString(2).length;
const gcd = (a: bigint, b: bigint): bigint => { while (b) [a, b] = [b, a % b]; return a; };

/**
 * Imports an RSA private JWK. Every component is checked to be a base64url integer that fits the others
 * (n = p·q, e·d ≡ 1 mod λ(n), dp, dq, qi), so that a bad import is a 400 naming the component, never a
 * crash later in a signature or decryption; then a sign/verify round trip proves the key works.
 * `modulusBits` lists the modulus sizes the vault accepts.
 */
export function privateFromJwk(jwk: Record<string, unknown>, modulusBits: readonly number[] = RSA_SIZES): KeyObject {
  const x = Object.fromEntries(JWK_PRIVATE_PARTS.map((part) => [part, jwkInteger(jwk, part)])) as Record<JwkPart, bigint>;
  const bits = bitLength(x.n);
  if (!modulusBits.includes(bits)) throw bad('n', `is a ${bits}-bit modulus; RSA keys must be ${modulusBits.join(', ')} bits.`);
  if (x.e % 2n === 0n || bitLength(x.e) > MAX_E_BITS || x.e >= x.n) throw bad('e', `must be an odd public exponent of at most ${MAX_E_BITS} bits (65537 is usual).`);
  if (x.p === x.q || x.p * x.q !== x.n) throw inconsistent('n', "is not the product of the two distinct primes 'p' and 'q'.");
  const p1 = x.p - 1n;
  const q1 = x.q - 1n;
  const lambda = (p1 / gcd(p1, q1)) * q1;
  if (x.d >= x.n || (x.e * x.d) % lambda !== 1n) throw inconsistent('d', "is not the private exponent that belongs to 'e' and the modulus.");
  if (x.dp !== x.d % p1) throw inconsistent('dp', 'is not d mod (p-1).');
  if (x.dq !== x.d % q1) throw inconsistent('dq', 'is not d mod (q-1).');
  if ((x.qi * x.q) % x.p !== 1n || x.qi >= x.p) throw inconsistent('qi', "is not the inverse of 'q' modulo 'p'.");

  let key: KeyObject;
  try {
    const components = Object.fromEntries(JWK_PRIVATE_PARTS.map((part) => [part, jwk[part]]));
    key = createPrivateKey({ key: { kty: 'RSA', ...components } as any, format: 'jwk' });
  } catch (e) {
    throw errors.badParameter(`The key in the request is not a valid RSA private JWK: ${(e as Error).message}`);
  }
  const digest = createHash('sha256').update('pgbyok import check').digest();
  let consistent: boolean;
  try {
    consistent = verify(createPublicKey(key), 'PS256', digest, sign(key, 'PS256', digest));
  } catch {
    consistent = false;
  }
  if (!consistent) {
    throw errors.badParameter("The key in the request is inconsistent: 'p' and 'q' are not primes that make a working RSA key with 'n', 'e' and 'd'.");
  }
  return key;
}

function refuseAlg(alg: string, allowed: readonly string[]): never {
  if (alg === 'RSA1_5') {
    throw errors.badParameter(
      'Algorithm RSA1_5 is not supported by pgbyok: PKCS#1 v1.5 decryption is a padding oracle (CVE-2023-46809 class). Use RSA-OAEP-256 or RSA-OAEP.',
      'AlgorithmNotSupported',
    );
  }
  throw errors.badParameter(`Algorithm '${alg}' is not supported for this operation. Supported: ${allowed.join(', ')}.`, 'AlgorithmNotSupported');
}

export function assertEncryptionAlg(alg: string): EncryptionAlg {
  if (!(ENCRYPTION_ALGS as readonly string[]).includes(alg)) refuseAlg(alg, ENCRYPTION_ALGS);
  return alg as EncryptionAlg;
}

export function assertSignatureAlg(alg: string): SignatureAlg {
  if (!(SIGNATURE_ALGS as readonly string[]).includes(alg)) refuseAlg(alg, SIGNATURE_ALGS);
  return alg as SignatureAlg;
}

export function encrypt(publicKey: KeyObject, alg: EncryptionAlg, plaintext: Buffer, modulusBytes: number): Buffer {
  const { hash, len } = OAEP_HASH[alg];
  const max = modulusBytes - 2 * len - 2;
  if (plaintext.length > max) {
    throw errors.badParameter(`The value is ${plaintext.length} bytes; ${alg} with this key takes at most ${max}.`);
  }
  return publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash }, plaintext);
}

export function decrypt(privateKey: KeyObject, alg: EncryptionAlg, ciphertext: Buffer, modulusBytes: number): Buffer {
  if (ciphertext.length !== modulusBytes) {
    throw errors.badParameter(`The value must be exactly ${modulusBytes} bytes for this key; it is ${ciphertext.length}.`);
  }
  try {
    return privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: OAEP_HASH[alg].hash }, ciphertext);
  } catch {
    // One message for every failure: the cause must not tell a caller anything about the padding.
    throw errors.badParameter('The value could not be decrypted with this key and algorithm.');
  }
}

/** The hash, digest length and PKCS#1 v1.5 DigestInfo prefix of a signature algorithm (the HSM token uses it too). */
export function sigHash(alg: SignatureAlg) {
  return SIG_HASH[alg.slice(2) as '256' | '384' | '512'];
}

function mgf1(seed: Buffer, length: number, hash: string): Buffer {
  const out: Buffer[] = [];
  let produced = 0;
  for (let counter = 0; produced < length; counter++) {
    const c = Buffer.alloc(4);
    c.writeUInt32BE(counter);
    const block = createHash(hash).update(seed).update(c).digest();
    out.push(block);
    produced += block.length;
  }
  return Buffer.concat(out).subarray(0, length);
}

function modBits(key: KeyObject): number {
  return key.asymmetricKeyDetails!.modulusLength!;
}

/** EMSA-PSS-ENCODE (RFC 8017 §9.1.1) with MGF1 on the same hash and a salt as long as the hash. */
function pssEncode(digest: Buffer, emBits: number, hash: string, hLen: number): Buffer {
  const emLen = Math.ceil(emBits / 8);
  if (emLen < 2 * hLen + 2) throw errors.badParameter(`The key is too small for a PSS signature with a ${hLen}-byte hash.`);
  const salt = randomBytes(hLen);
  const h = createHash(hash).update(Buffer.alloc(8)).update(digest).update(salt).digest();
  const db = Buffer.concat([Buffer.alloc(emLen - 2 * hLen - 2), Buffer.from([1]), salt]);
  const mask = mgf1(h, emLen - hLen - 1, hash);
  for (let i = 0; i < db.length; i++) db[i] ^= mask[i];
  db[0] &= 0xff >> (8 * emLen - emBits);
  return Buffer.concat([db, h, Buffer.from([0xbc])]);
}

/** EMSA-PSS-VERIFY (RFC 8017 §9.1.2), same parameters as `pssEncode`. */
function pssVerify(digest: Buffer, em: Buffer, emBits: number, hash: string, hLen: number): boolean {
  const emLen = Math.ceil(emBits / 8);
  if (em.length !== emLen || em[emLen - 1] !== 0xbc) return false;
  const db = Buffer.from(em.subarray(0, emLen - hLen - 1));
  const h = em.subarray(emLen - hLen - 1, emLen - 1);
  const topMask = 0xff >> (8 * emLen - emBits);
  if ((db[0] & ~topMask) !== 0) return false;
  const mask = mgf1(h, db.length, hash);
  for (let i = 0; i < db.length; i++) db[i] ^= mask[i];
  db[0] &= topMask;
  const psLen = emLen - 2 * hLen - 2;
  for (let i = 0; i < psLen; i++) if (db[i] !== 0) return false;
  if (db[psLen] !== 1) return false;
  const salt = db.subarray(db.length - hLen);
  const expected = createHash(hash).update(Buffer.alloc(8)).update(digest).update(salt).digest();
  return timingSafeEqual(expected, h);
}

export function sign(privateKey: KeyObject, alg: SignatureAlg, digest: Buffer): Buffer {
  const { hash, len, digestInfo } = sigHash(alg);
  if (digest.length !== len) throw errors.badParameter(`${alg} signs a ${len}-byte digest; the value is ${digest.length} bytes.`);
  if (alg.startsWith('RS')) {
    return privateEncrypt({ key: privateKey, padding: constants.RSA_PKCS1_PADDING }, Buffer.concat([digestInfo, digest]));
  }
  const bits = modBits(privateKey);
  const em = pssEncode(digest, bits - 1, hash, len);
  const padded = Buffer.concat([Buffer.alloc(Math.ceil(bits / 8) - em.length), em]);
  return privateEncrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, padded);
}

export function verify(publicKey: KeyObject, alg: SignatureAlg, digest: Buffer, signature: Buffer): boolean {
  const { hash, len, digestInfo } = sigHash(alg);
  if (digest.length !== len) throw errors.badParameter(`${alg} verifies a ${len}-byte digest; the digest is ${digest.length} bytes.`);
  const bits = modBits(publicKey);
  if (signature.length !== Math.ceil(bits / 8)) return false;
  try {
    if (alg.startsWith('RS')) {
      const recovered = publicDecrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, signature);
      const expected = Buffer.concat([digestInfo, digest]);
      return recovered.length === expected.length && timingSafeEqual(recovered, expected);
    }
    const raw = publicDecrypt({ key: publicKey, padding: constants.RSA_NO_PADDING }, signature);
    const emLen = Math.ceil((bits - 1) / 8);
    return pssVerify(digest, raw.subarray(raw.length - emLen), bits - 1, hash, len);
  } catch {
    return false;
  }
}
