/**
 * src/hsm/security-domain.ts with real certificates: openssl makes the RSA keys and self-signed X.509
 * certificates in a temp dir, and every case checks what a user would see: the key that comes back, or
 * the refusal (code BadParameter, an inner code, a message saying what is wrong).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate, constants, createCipheriv, generateKeyPairSync, privateDecrypt, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompactEncrypt, decodeProtectedHeader } from 'jose';
import {
  checkDownloadRequest, keyCheckValue, parseRestoreBlob, parseSecurityDomain, sealSecurityDomain,
  type SdCertificate, type SecurityDomainFile,
} from '../src/hsm/security-domain.js';
import { recoverSecret, restoreBlob } from '../src/hsm/security-domain-client.js';

const dir = mkdtempSync(join(tmpdir(), 'pgbyok-sd-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Party { name: string; privateKeyPem: string; certificatePem: string; jwk: SdCertificate }

function certJwk(pem: string, kid: string): SdCertificate {
  const cert = new X509Certificate(pem);
  const jwk = cert.publicKey.export({ format: 'jwk' });
  return { kid, kty: 'RSA', n: jwk.n as string, e: jwk.e as string, x5c: [cert.raw.toString('base64')], key_ops: ['verify', 'encrypt', 'wrapKey'], alg: 'RSA-OAEP-256' };
}

function party(name: string, bits = 2048): Party {
  const keyFile = join(dir, `${name}.key.pem`);
  const certFile = join(dir, `${name}.cer.pem`);
  execFileSync('openssl', ['req', '-x509', '-newkey', `rsa:${bits}`, '-nodes', '-keyout', keyFile, '-out', certFile, '-subj', `/CN=${name}`, '-days', '2'], { stdio: 'pipe' });
  const certificatePem = readFileSync(certFile, 'utf8');
  return { name, privateKeyPem: readFileSync(keyFile, 'utf8'), certificatePem, jwk: certJwk(certificatePem, name) };
}

const [sd1, sd2, sd3, outsider] = ['sd1', 'sd2', 'sd3', 'outsider'].map((n) => party(n));
const holders = (...ps: Party[]) => ps.map(({ privateKeyPem, certificatePem }) => ({ privateKeyPem, certificatePem }));

/** A refusal as the user sees it: a 400 BadParameter with the inner code and a message matching `message`. */
const refusal = (innerCode: string, message: RegExp) => ({ name: 'ApiError', status: 400, code: 'BadParameter', innerCode, message });

async function domain(required = 2): Promise<{ secret: Buffer; text: string; file: SecurityDomainFile }> {
  const secret = randomBytes(32);
  const request = checkDownloadRequest({ certificates: [sd1.jwk, sd2.jwk, sd3.jwk], required });
  const text = await sealSecurityDomain({ secret, ...request, domainId: 'b2f3c1d0-0000-4000-8000-000000000001', hsmName: 'contoso-hsm' });
  return { secret, text, file: parseSecurityDomain(text) };
}

test('round trip: a 2-of-3 security domain comes back with any 2 of its 3 keys, or all 3', async () => {
  const { secret, text, file } = await domain();
  const raw = JSON.parse(text);
  assert.equal(raw.schema, 'pgbyok-sd-1');
  assert.deepEqual(raw.EncData, { kdf: 'none', data: [], domainId: 'b2f3c1d0-0000-4000-8000-000000000001', hsmName: 'contoso-hsm', kcv: keyCheckValue(secret) });
  assert.equal(raw.SharedKeys.key_algorithm, 'shamir_share_gf256');
  assert.equal(raw.SharedKeys.required, 2);
  const thumbprints = checkDownloadRequest({ certificates: [sd1.jwk, sd2.jwk, sd3.jwk] }).certificates.map((c) => c['x5t#S256']);
  assert.deepEqual(raw.SharedKeys.enc_shares.map((s: { x5t_256: string }) => s.x5t_256), thumbprints);
  const header = decodeProtectedHeader(raw.SharedKeys.enc_shares[0].enc_key);
  assert.equal(header.alg, 'RSA-OAEP-256');
  assert.equal(header.enc, 'A256GCM');
  assert.ok(!text.includes(secret.toString('base64url')) && !text.includes(secret.toString('hex')), 'the key is not in the file in the clear');

  for (const quorum of [[sd1, sd2], [sd1, sd3], [sd2, sd3], [sd3, sd1], [sd1, sd2, sd3]]) {
    assert.deepEqual(await recoverSecret(file, holders(...quorum)), secret, quorum.map((p) => p.name).join('+'));
  }
});

test('one key short of the quorum: the error says how many keys are needed', async () => {
  const { file } = await domain();
  await assert.rejects(recoverSecret(file, holders(sd2)), refusal('InsufficientQuorum', /needs 2 of its 3 private keys; 1 was given/));
  await assert.rejects(recoverSecret(file, holders(sd2, sd2)), refusal('InsufficientQuorum', /needs 2 of its 3 .*1 was given/), 'one key twice is one key');
  const three = await domain(3);
  await assert.rejects(recoverSecret(three.file, holders(sd1, sd3)), refusal('InsufficientQuorum', /needs 3 of its 3 private keys; 2 were given/));
  assert.deepEqual(await recoverSecret(three.file, holders(sd3, sd1, sd2)), three.secret);
});

test('a key that is not one of the certificates is refused, naming its certificate', async () => {
  const { file } = await domain();
  await assert.rejects(recoverSecret(file, holders(sd1, outsider)),
    refusal('UnknownCertificate', /Key 2 \(certificate CN=outsider\) is not one of the 3 certificates/));
  // The right certificate with someone else's private key.
  await assert.rejects(recoverSecret(file, [...holders(sd1), { privateKeyPem: outsider.privateKeyPem, certificatePem: sd2.certificatePem }]),
    refusal('KeyCertificateMismatch', /Key 2: the private key is not the key of its certificate \(CN=sd2\)/));
});

test('a tampered share is an error, never a wrong key', async () => {
  const { file } = await domain();
  const altered = structuredClone(file);
  const parts = altered.SharedKeys.enc_shares[1].enc_key.split('.');
  parts[3] = (parts[3][0] === 'A' ? 'B' : 'A') + parts[3].slice(1);
  altered.SharedKeys.enc_shares[1].enc_key = parts.join('.');
  await assert.rejects(recoverSecret(altered, holders(sd1, sd2)), refusal('ShareDecryptionFailed', /share for certificate CN=sd2 could not be decrypted/));
  assert.ok(await recoverSecret(altered, holders(sd1, sd3)), 'the untouched shares still make a quorum');

  // Anyone can encrypt to the public certificate: a replaced share decrypts, and the key check value catches it.
  const replaced = structuredClone(file);
  const fake = new Uint8Array(33);
  fake.set(randomBytes(32));
  fake[32] = 7;
  replaced.SharedKeys.enc_shares[1].enc_key = await new CompactEncrypt(fake)
    .setProtectedHeader({ alg: 'RSA-OAEP-256', enc: 'A256GCM' }).encrypt(new X509Certificate(sd2.certificatePem).publicKey);
  await assert.rejects(recoverSecret(replaced, holders(sd1, sd2)), refusal('KeyCheckValueMismatch', /a share was damaged or replaced, so no key was recovered/));
  await assert.rejects(recoverSecret(replaced, holders(sd1, sd2, sd3)), refusal('KeyCheckValueMismatch', /no key was recovered/));
});

test('key check value: AES-256-GCM of a zero block under a zero IV, and a file whose kcv is not its key is caught', async () => {
  const key = randomBytes(32);
  // GCM encrypts the first block with counter 2 after the 96-bit IV: an independent AES-ECB computation.
  const ecb = createCipheriv('aes-256-ecb', key, null).update(Buffer.concat([Buffer.alloc(15), Buffer.from([2])]));
  assert.equal(keyCheckValue(key), ecb.subarray(0, 8).toString('base64url'));
  assert.match(keyCheckValue(key), /^[A-Za-z0-9_-]{11}$/);
  assert.throws(() => keyCheckValue(randomBytes(16)), refusal('InvalidSecurityDomainKey', /32 bytes/));

  const { file } = await domain();
  const wrongKcv = structuredClone(file);
  wrongKcv.EncData.kcv = keyCheckValue(randomBytes(32));
  await assert.rejects(recoverSecret(wrongKcv, holders(sd1, sd3)), refusal('KeyCheckValueMismatch', /does not match the security domain's key check value/));
});

test('restore blob: the new HSM\'s transfer private key unwraps the domain key (RSA-OAEP, SHA-1)', async () => {
  const { secret, file } = await domain();
  const transfer = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const transferKey = { kid: 'https://new-hsm.managedhsm.localhost/transfer_key', ...transfer.publicKey.export({ format: 'jwk' }) } as { kid: string; kty: string; n: string; e: string };
  const recovered = await recoverSecret(file, holders(sd2, sd3));
  const blob = restoreBlob(file, recovered, transferKey);
  assert.equal(JSON.parse(blob).schema, 'pgbyok-sd-restore-1');
  assert.ok(!blob.includes(secret.toString('base64url')));

  const parsed = parseRestoreBlob(blob);
  assert.equal(parsed.domainId, file.EncData.domainId);
  assert.equal(parsed.kcv, keyCheckValue(secret));
  assert.equal(parsed.transferKid, transferKey.kid);
  assert.equal(parsed.sourceHsm, 'contoso-hsm');
  const unwrapped = privateDecrypt({ key: transfer.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, parsed.wrappedKey);
  assert.deepEqual(unwrapped, secret);
  assert.equal(keyCheckValue(unwrapped), parsed.kcv, 'the HSM can check what it unwrapped');

  assert.throws(() => restoreBlob(file, randomBytes(32), transferKey), refusal('KeyCheckValueMismatch', /not this security domain's key/));
  const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' });
  assert.throws(() => restoreBlob(file, secret, { kid: 'k', ...weak } as typeof transferKey), refusal('KeyTooSmall', /1024 bits/));
  const sha256Wrap = JSON.parse(blob);
  sha256Wrap.WrappedKey.alg = 'RSA-OAEP-256';
  assert.throws(() => parseRestoreBlob(JSON.stringify(sha256Wrap)), refusal('MalformedRestoreBlob', /unwrapped with 'RSA-OAEP' \(SHA-1\)/));
  assert.throws(() => parseRestoreBlob('{"schema":'), refusal('MalformedRestoreBlob', /not JSON/));
});

test('checkDownloadRequest refuses what Azure refuses, and fills in x5t#S256 and the default quorum', () => {
  const three = [sd1.jwk, sd2.jwk, sd3.jwk];
  const ok = checkDownloadRequest({ certificates: three });
  assert.equal(ok.required, 2);
  assert.equal(ok.certificates.length, 3);
  assert.match(ok.certificates[0]['x5t#S256'], /^[A-Za-z0-9_-]{43}$/);
  assert.equal(checkDownloadRequest({ certificates: [sd1.jwk, sd2.jwk, sd3.jwk, outsider.jwk], required: 4 }).required, 4);
  assert.doesNotThrow(() => checkDownloadRequest({ certificates: ok.certificates, required: 3 }), 'a computed x5t#S256 is accepted back');

  assert.throws(() => checkDownloadRequest({ certificates: [sd1.jwk, sd2.jwk] }), refusal('InvalidCertificateCount', /3 to 10 certificates; this request gives 2/));
  assert.throws(() => checkDownloadRequest({ certificates: Array(11).fill(sd1.jwk) }), refusal('InvalidCertificateCount', /this request gives 11/));
  assert.throws(() => checkDownloadRequest({ certificates: three, required: 1 }), refusal('InvalidQuorum', /from 2 to the number of certificates \(3\); 1 was given/));
  assert.throws(() => checkDownloadRequest({ certificates: three, required: 4 }), refusal('InvalidQuorum', /\(3\); 4 was given/));
  assert.throws(() => checkDownloadRequest({ certificates: three, required: 2.5 }), refusal('InvalidQuorum', /2.5 was given/));

  const small = party('small', 1024);
  assert.throws(() => checkDownloadRequest({ certificates: [sd1.jwk, small.jwk, sd3.jwk] }), refusal('KeyTooSmall', /certificates\[1\]: the certificate's RSA key has 1024 bits; .* at least 2048/));
  assert.throws(() => checkDownloadRequest({ certificates: [sd1.jwk, sd2.jwk, { ...sd3.jwk, x5c: sd1.jwk.x5c }] }),
    refusal('CertificateKeyMismatch', /certificates\[2\]: n and e are not the public key of the certificate in x5c\[0\] \(CN=sd1\)/));
  assert.throws(() => checkDownloadRequest({ certificates: [sd1.jwk, { ...sd2.jwk, 'x5t#S256': ok.certificates[0]['x5t#S256'] }, sd3.jwk] }),
    refusal('ThumbprintMismatch', /certificates\[1\]: x5t#S256 is not the SHA-256 thumbprint/));
  assert.throws(() => checkDownloadRequest({ certificates: [sd1.jwk, sd2.jwk, sd1.jwk] }), refusal('DuplicateCertificate', /certificates\[2\] is the same certificate as certificates\[0\]/));
  assert.throws(() => checkDownloadRequest({ certificates: [sd1.jwk, sd2.jwk, { ...sd3.jwk, x5c: ['bm90IGEgY2VydA=='] }] }), refusal('InvalidCertificate', /x5c\[0\] is not a DER X.509 certificate/));
  assert.throws(() => checkDownloadRequest({ certificates: [sd1.jwk, sd2.jwk, { ...sd3.jwk, kty: 'EC' }] }), refusal('InvalidCertificate', /kty must be 'RSA'/));
  assert.throws(() => checkDownloadRequest('certificates'), refusal('InvalidRequestBody', /JSON object/));
});

test('parseSecurityDomain refuses what is not a pgbyok security domain file', async () => {
  const { text } = await domain();
  assert.throws(() => parseSecurityDomain('not json'), refusal('MalformedSecurityDomain', /not JSON/));
  const azure = { EncData: { data: [], kdf: 'sp108_kdf' }, SharedKeys: { key_algorithm: 'shamir_share', required: 2, enc_shares: [] } };
  assert.throws(() => parseSecurityDomain(JSON.stringify(azure)), refusal('UnsupportedSecurityDomain', /Azure security domain file .*GF\(257\)/));
  const tooMany = JSON.parse(text);
  tooMany.SharedKeys.required = 4;
  assert.throws(() => parseSecurityDomain(JSON.stringify(tooMany)), refusal('MalformedSecurityDomain', /required is 4, not a quorum from 2 to 3/));
  const noKcv = JSON.parse(text);
  delete noKcv.EncData.kcv;
  assert.throws(() => parseSecurityDomain(JSON.stringify(noKcv)), refusal('MalformedSecurityDomain', /kcv/));
  assert.equal(parseSecurityDomain(text).SharedKeys.enc_shares.length, 3);
});
