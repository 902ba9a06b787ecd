import { createPrivateKey, generateKeyPair, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';

/**
 * RSA key generation that hands out keys re-imported from their DER encoding. Node 20 can deadlock when
 * the generation job is garbage-collected while a call on the key it produced holds that key's lock (seen
 * here: `asymmetricKeyDetails` on a freshly generated key hung the process in ~KeyGenJob). Asking for DER
 * keeps the job's own key object internal, so no caller ever holds its lock.
 */

const genKeyPair = promisify(generateKeyPair);

const fromDer = (der: Buffer): KeyObject => createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });

export async function generateRsaKey(size: number, publicExponent = 65537): Promise<KeyObject> {
  const { privateKey } = await genKeyPair('rsa', {
    modulusLength: size, publicExponent, privateKeyEncoding: { type: 'pkcs8', format: 'der' }, publicKeyEncoding: { type: 'spki', format: 'der' },
  });
  return fromDer(privateKey);
}

export function generateRsaKeySync(size: number): KeyObject {
  const { privateKey } = generateKeyPairSync('rsa', {
    modulusLength: size, privateKeyEncoding: { type: 'pkcs8', format: 'der' }, publicKeyEncoding: { type: 'spki', format: 'der' },
  });
  return fromDer(privateKey);
}
