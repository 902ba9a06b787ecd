/**
 * The client side of a security-domain upload (the `pgbyok hsm security-domain upload` command): a quorum of
 * the certificates' private keys recovers the domain key from the file (checked against its key check value),
 * which is then wrapped to the new HSM's transfer key in a restore blob. The format is security-domain.ts's.
 */
import { X509Certificate, constants, createPrivateKey, createPublicKey, publicEncrypt, type KeyObject } from 'node:crypto';
import { compactDecrypt } from 'jose';
import { combine } from 'shamir-secret-sharing';
import {
  B64URL, JWE_OPTIONS, MIN_RSA_BITS, RESTORE_SCHEMA, SECRET_BYTES, SHARE_BYTES, bad, checkFile, checkSecret, isObject, kcvMatches, rsaBits, sha256,
  subjectOf, type EncShare, type SecurityDomainFile,
} from './security-domain.js';

interface Holder { key: KeyObject; cert: X509Certificate; share: EncShare; n: number }

/** Matches holder `i` to its share by the SHA-256 of its certificate, and checks the key is the certificate's. */
function matchHolder(file: SecurityDomainFile, h: unknown, i: number): Holder {
  const n = i + 1;
  if (!isObject(h) || typeof h.certificatePem !== 'string' || typeof h.privateKeyPem !== 'string') {
    throw bad(`Key ${n} must be given as {privateKeyPem, certificatePem}.`, 'InvalidKeyHolder');
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(h.certificatePem);
  } catch {
    throw bad(`Key ${n}: its certificate is not a PEM X.509 certificate.`, 'InvalidKeyHolder');
  }
  const count = file.SharedKeys.enc_shares.length;
  const share = file.SharedKeys.enc_shares.find((s) => s.x5t_256 === sha256(cert.raw));
  if (!share) {
    throw bad(`Key ${n} (certificate ${subjectOf(cert)}) is not one of the ${count} certificates this security domain was downloaded for.`, 'UnknownCertificate');
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(h.privateKeyPem);
  } catch {
    throw bad(`Key ${n}: its private key is not a readable, unencrypted PEM key.`, 'InvalidKeyHolder');
  }
  const mine = createPublicKey(key).export({ format: 'jwk' });
  const theirs = cert.publicKey.export({ format: 'jwk' });
  if (key.asymmetricKeyType !== 'rsa' || mine.n !== theirs.n || mine.e !== theirs.e) {
    throw bad(`Key ${n}: the private key is not the key of its certificate (${subjectOf(cert)}).`, 'KeyCertificateMismatch');
  }
  return { key, cert, share, n };
}

async function decryptShare(h: Holder): Promise<Uint8Array> {
  let share: Uint8Array;
  try {
    share = (await compactDecrypt(h.share.enc_key, h.key, JWE_OPTIONS)).plaintext;
  } catch {
    throw bad(`The share for certificate ${subjectOf(h.cert)} could not be decrypted: the security domain file is damaged or was altered.`, 'ShareDecryptionFailed');
  }
  if (share.length !== SHARE_BYTES) {
    share.fill(0);
    throw bad(`The share for certificate ${subjectOf(h.cert)} is ${share.length} bytes, not ${SHARE_BYTES}: the file was altered.`, 'ShareDecryptionFailed');
  }
  return share;
}

/**
 * Client side (`pgbyok hsm security-domain upload`): decrypts the shares of the given key holders (each
 * matched to its share by its certificate's SHA-256), needs at least `required` distinct ones, combines
 * every share given and checks the result against the file's kcv: a damaged or replaced share is an
 * error, never a wrong key. The caller owns (and should wipe) the returned key.
 */
export async function recoverSecret(file: SecurityDomainFile, holders: { privateKeyPem: string; certificatePem: string }[]): Promise<Buffer> {
  const sd = checkFile(file);
  if (!Array.isArray(holders)) throw bad('The key holders must be a list of {privateKeyPem, certificatePem}.', 'InvalidKeyHolder');
  const matched = new Map<string, Holder>();
  holders.forEach((h, i) => {
    const m = matchHolder(sd, h, i);
    if (!matched.has(m.share.x5t_256)) matched.set(m.share.x5t_256, m);
  });
  const { required, enc_shares } = sd.SharedKeys;
  if (matched.size < required) {
    const given = matched.size === 1 ? '1 was given' : `${matched.size} were given`;
    throw bad(`Recovering this security domain needs ${required} of its ${enc_shares.length} private keys; ${given}.`, 'InsufficientQuorum');
  }
  const shares: Uint8Array[] = [];
  try {
    for (const h of matched.values()) shares.push(await decryptShare(h));
    let combined: Uint8Array;
    try {
      combined = await combine(shares);
    } catch {
      throw bad('The shares could not be combined (two shares have the same x coordinate): the file was altered.', 'ShareDecryptionFailed');
    }
    const secret = Buffer.alloc(SECRET_BYTES);
    secret.set(combined);
    combined.fill(0);
    if (!kcvMatches(secret, sd.EncData.kcv)) {
      secret.fill(0);
      throw bad("The recovered key does not match the security domain's key check value: a share was damaged or replaced, so no key was recovered.", 'KeyCheckValueMismatch');
    }
    return secret;
  } finally {
    for (const s of shares) s.fill(0);
  }
}

function transferPublicKey(t: unknown): { kid: string; key: KeyObject } {
  if (!isObject(t) || t.kty !== 'RSA' || typeof t.n !== 'string' || !B64URL.test(t.n) || typeof t.e !== 'string' || !B64URL.test(t.e)) {
    throw bad('The transfer key must be a public RSA JSON web key {kid, kty, n, e}.', 'InvalidTransferKey');
  }
  if (typeof t.kid !== 'string' || t.kid.length === 0 || t.kid.length > 2048) throw bad('The transfer key has no kid.', 'InvalidTransferKey');
  let key: KeyObject;
  try {
    key = createPublicKey({ key: { kty: 'RSA', n: t.n, e: t.e }, format: 'jwk' });
  } catch {
    throw bad('The transfer key is not a valid RSA public key.', 'InvalidTransferKey');
  }
  if (rsaBits(key) < MIN_RSA_BITS) throw bad(`The transfer key has ${rsaBits(key)} bits; at least ${MIN_RSA_BITS} are needed.`, 'KeyTooSmall');
  return { kid: t.kid, key };
}

/**
 * Client side: the restore blob (JSON text) for the new HSM: the domain key wrapped with RSA-OAEP (SHA-1)
 * to the new HSM's transfer key, with the domain id, kcv and the name of the HSM of origin.
 */
export function restoreBlob(file: SecurityDomainFile, secret: Buffer, transferKey: { kid: string; kty: string; n: string; e: string }): string {
  const sd = checkFile(file);
  checkSecret(secret);
  if (!kcvMatches(secret, sd.EncData.kcv)) throw bad("The key is not this security domain's key (the key check values differ).", 'KeyCheckValueMismatch');
  const { kid, key } = transferPublicKey(transferKey);
  const wrapped = publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, secret);
  return JSON.stringify({
    schema: RESTORE_SCHEMA, domainId: sd.EncData.domainId, kcv: sd.EncData.kcv, hsmName: sd.EncData.hsmName,
    WrappedKey: { kid, alg: 'RSA-OAEP', enc_key: wrapped.toString('base64url') },
  });
}
