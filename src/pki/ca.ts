import 'reflect-metadata';
import { webcrypto, randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import * as x509 from '@peculiar/x509';
import type { HomePaths } from '../lib/home.js';
import { writeFileAtomic } from '../lib/home.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const YEAR_MS = 365 * 24 * 3600 * 1000;
/** The CN the vault's firewall recognises as the platform's own trusted services (Azure's "bypass AzureServices"). */
export const TRUSTED_SERVICE_CN = 'pgbyok-trusted-services';

export interface TlsMaterial {
  ca: string;
  cert: string;
  key: string;
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key as webcrypto.CryptoKey));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END PRIVATE KEY-----\n`;
}

async function importKeyPem(pem: string): Promise<CryptoKey> {
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  return (await webcrypto.subtle.importKey('pkcs8', der, ALG, true, ['sign'])) as unknown as CryptoKey;
}

function serial(): string {
  const s = randomBytes(16);
  s[0] &= 0x7f;
  return s.toString('hex');
}

async function newKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
}

/**
 * The local CA, created once under `$PGBYOK_HOME`: a server certificate for every listener on loopback
 * (localhost, 127.0.0.1, ::1) and a client certificate the platform's own services present to vaults.
 * Certificates are renewed when they are within 30 days of expiry; the CA lives 10 years.
 */
export async function ensureTls(p: HomePaths): Promise<TlsMaterial & { trustedCert: string; trustedKey: string }> {
  let caKey: CryptoKey;
  let caCert: x509.X509Certificate;
  if (existsSync(p.caCert) && existsSync(p.caKey)) {
    caCert = new x509.X509Certificate(readFileSync(p.caCert, 'utf8'));
    caKey = await importKeyPem(readFileSync(p.caKey, 'utf8'));
  } else {
    const keys = await newKeys();
    caCert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: 'CN=pgbyok local CA',
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 10 * YEAR_MS),
      signingAlgorithm: ALG,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    caKey = keys.privateKey;
    writeFileAtomic(p.caKey, await exportKeyPem(caKey), 0o600);
    writeFileAtomic(p.caCert, caCert.toString('pem') + '\n', 0o644);
  }

  const issue = async (certPath: string, keyPath: string, cn: string, server: boolean) => {
    if (existsSync(certPath) && existsSync(keyPath) && !expiresSoon(readFileSync(certPath, 'utf8'))) return;
    const leaf = await signLeaf(caCert, caKey, { cn, server, dnsNames: server ? ['localhost'] : [], ips: server ? ['127.0.0.1', '::1'] : [] });
    writeFileAtomic(keyPath, leaf.key, 0o600);
    writeFileAtomic(certPath, leaf.cert, 0o644);
  };
  await issue(p.serverCert, p.serverKey, 'localhost', true);
  await issue(p.trustedServiceCert, p.trustedServiceKey, TRUSTED_SERVICE_CN, false);

  return {
    ca: readFileSync(p.caCert, 'utf8'),
    cert: readFileSync(p.serverCert, 'utf8'),
    key: readFileSync(p.serverKey, 'utf8'),
    trustedCert: readFileSync(p.trustedServiceCert, 'utf8'),
    trustedKey: readFileSync(p.trustedServiceKey, 'utf8'),
  };
}

interface LeafOptions {
  cn: string;
  server: boolean;
  dnsNames: string[];
  ips: string[];
}

async function signLeaf(caCert: x509.X509Certificate, caKey: CryptoKey, o: LeafOptions): Promise<{ cert: string; key: string }> {
  const keys = await newKeys();
  const names = [...o.dnsNames.map((value) => ({ type: 'dns' as const, value })), ...o.ips.map((value) => ({ type: 'ip' as const, value }))];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${o.cn}`,
    issuer: caCert.subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 2 * YEAR_MS),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([o.server ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
      ...(names.length ? [new x509.SubjectAlternativeNameExtension(names)] : []),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return { cert: cert.toString('pem') + '\n', key: await exportKeyPem(keys.privateKey) };
}

/**
 * A server certificate from the local CA (for a PostgreSQL server: its host names and loopback). The key is
 * returned, not stored: the caller puts it where it belongs (inside the server's encrypted directory).
 */
export async function issueServerCertificate(p: HomePaths, cn: string, dnsNames: string[], ips: string[]): Promise<{ cert: string; key: string }> {
  const caCert = new x509.X509Certificate(readFileSync(p.caCert, 'utf8'));
  const caKey = await importKeyPem(readFileSync(p.caKey, 'utf8'));
  return signLeaf(caCert, caKey, { cn, server: true, dnsNames, ips });
}

/**
 * The certificate of the one vault listener: every name of `names` (wildcards such as `*.vault.localhost`),
 * kept under `$PGBYOK_HOME` and issued again when it nears expiry or when the names change (a new domain).
 */
export async function ensureVaultCertificate(p: HomePaths, names: string[]): Promise<{ cert: string; key: string }> {
  if (existsSync(p.vaultCert) && existsSync(p.vaultKey)) {
    const pem = readFileSync(p.vaultCert, 'utf8');
    if (!expiresSoon(pem) && sameNames(dnsNamesOf(pem), names)) return { cert: pem, key: readFileSync(p.vaultKey, 'utf8') };
  }
  const leaf = await issueServerCertificate(p, names[0] ?? 'vault', names, []);
  writeFileAtomic(p.vaultKey, leaf.key, 0o600);
  writeFileAtomic(p.vaultCert, leaf.cert, 0o644);
  return leaf;
}

function dnsNamesOf(pem: string): string[] {
  return (new X509Certificate(pem).subjectAltName ?? '').split(', ').filter((n) => n.startsWith('DNS:')).map((n) => n.slice(4));
}

const sameNames = (a: string[], b: string[]) => a.length === b.length && [...a].sort().join() === [...b].sort().join();

function expiresSoon(pem: string): boolean {
  return new Date(new X509Certificate(pem).validTo).getTime() - Date.now() < 30 * 24 * 3600 * 1000;
}
