/**
 * What the Managed HSM tests share: whether SoftHSM2 is here (else they skip, saying so), and the holders of
 * a security domain: three RSA key pairs with self-signed certificates made by the openssl CLI, as a Managed
 * HSM's security officers make them, and the certificates as the download request lists them (JWKs with x5c).
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SOFTHSM2 = '/usr/lib/softhsm/libsofthsm2.so';
/** `false`, or why a Managed HSM test skips (node:test's `skip` option). */
export const hsmSkip: false | string = existsSync(SOFTHSM2) ? false : `SoftHSM2 is not installed (${SOFTHSM2}; apt-get install softhsm2)`;

export interface SecurityDomainHolder {
  privateKeyPem: string;
  certificatePem: string;
}

/** `count` holders; their files live in a temporary directory only while openssl writes them. */
export function securityDomainHolders(count = 3): SecurityDomainHolder[] {
  const dir = mkdtempSync(join(tmpdir(), 'pgbyok-sd-'));
  try {
    return Array.from({ length: count }, (_, i) => {
      const key = join(dir, `sd${i + 1}.key`);
      const cer = join(dir, `sd${i + 1}.cer`);
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cer, '-subj', `/CN=sd${i + 1}`, '-days', '2'], { stdio: 'pipe' });
      return { privateKeyPem: readFileSync(key, 'utf8'), certificatePem: readFileSync(cer, 'utf8') };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The holders' certificates as `POST /securitydomain/download` takes them. */
export function downloadCertificates(holders: SecurityDomainHolder[]) {
  return holders.map(({ certificatePem }) => {
    const x = new X509Certificate(certificatePem);
    const jwk = x.publicKey.export({ format: 'jwk' }) as { n: string; e: string };
    return { kty: 'RSA', n: jwk.n, e: jwk.e, x5c: [x.raw.toString('base64')], key_ops: ['verify', 'encrypt', 'wrapKey'], alg: 'RSA-OAEP-256' };
  });
}
