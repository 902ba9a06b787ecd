/**
 * The .byok key transfer blob (Azure BYOK specification, CKM_RSA_AES_KEY_WRAP): a blob made by `makeByok`
 * parses, names its key-exchange key and unwraps in software to the very key that went in; blobs for another
 * vault's KEK, for another KEK, tampered, truncated or in another format are 400 BadParameter with a message
 * that says why. The wire format is cross-checked against OpenSSL's CLI and the RFC 5649 test vectors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants, createPrivateKey, createPublicKey, createSecretKey, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiError } from '../src/lib/errors.js';
import { generateRsaKey } from '../src/lib/rsa-keygen.js';
import { byokCiphertext, byokKek, keyHsmOf, makeByok, parseByok, unwrapByokSoftware, type ByokFile } from '../src/vault/byok.js';
import { privateFromDer } from '../src/vault/rsa.js';

const ORIGIN = 'https://kv1.vault.localhost:8443';
const VERSION = 'eba63d27e4e34e028839b53fac905621';
const kidOf = (name: string, origin = ORIGIN, version = VERSION) => `${origin}/keys/${name}/${version}`;

// Keys are generated for each run (never embedded): a 3072-bit KEK stands for the larger sizes.
const [kek2048, target2048, kekLarge, target3072] = await Promise.all([generateRsaKey(2048), generateRsaKey(2048), generateRsaKey(3072), generateRsaKey(3072)]);
/** Another 2048-bit key of the vault, as a wrong KEK. */
const otherKek = target2048;

const bytesOf = (key: KeyObject) => key.asymmetricKeyDetails!.modulusLength! / 8;
const publicJwk = (key: KeyObject) => {
  const { n, e } = createPublicKey(key).export({ format: 'jwk' }) as { n: string; e: string };
  return { kty: 'RSA' as const, n, e };
};

function refused(fn: () => unknown, includes: string[], what: string) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ApiError, `${what}: an ApiError, not ${String(e)}`);
    assert.equal(e.status, 400, what);
    assert.equal(e.code, 'BadParameter', what);
    for (const s of includes) assert.ok(e.message.includes(s), `${what}: the message says '${s}': ${e.message}`);
    return true;
  });
}

/** The importer's path: key_hsm → file → KEK name/version → ciphertext → the target key's bytes. */
function importOf(keyHsm: string, kek: KeyObject, origin = ORIGIN): { file: ByokFile; kekRef: { name: string; version?: string }; key: Buffer } {
  const file = parseByok(keyHsm);
  const kekRef = byokKek(file, origin);
  const key = unwrapByokSoftware(kek, byokCiphertext(file, bytesOf(kek)));
  return { file, kekRef, key };
}

const fileWith = (text: string, change: (f: Record<string, any>) => void) => {
  const f = JSON.parse(text) as Record<string, any>;
  change(f);
  return keyHsmOf(JSON.stringify(f));
};

test('RSA 2048 and 3072 targets round-trip under 2048- and 3072-bit KEKs', () => {
  for (const [kekName, kek] of [['kek2048', kek2048], ['kek3072', kekLarge]] as const) {
    for (const [targetName, target] of [['rsa2048', target2048], ['rsa3072', target3072]] as const) {
      const what = `${targetName} under ${kekName}`;
      for (const kekKey of [publicJwk(kek), kek, createPublicKey(kek)]) {
        const text = makeByok({ kid: kidOf(kekName), key: kekKey }, target);
        const { file, kekRef, key } = importOf(keyHsmOf(text), kek);
        assert.deepEqual(kekRef, { name: kekName, version: VERSION }, what);
        assert.equal(file.generator, 'pgbyok byok', what);
        assert.deepEqual(file.header, { kid: kidOf(kekName), alg: 'dir', enc: 'CKM_RSA_AES_KEY_WRAP' }, what);
        const der = target.export({ format: 'der', type: 'pkcs8' }) as Buffer;
        // RSA-OAEP block, then RFC 5649: the DER padded to a multiple of 8, plus the 8-byte integrity block.
        assert.equal(byokCiphertext(file, bytesOf(kek)).length, bytesOf(kek) + Math.ceil(der.length / 8) * 8 + 8, what);
        const got = privateFromDer(key).export({ format: 'jwk' }) as Record<string, string>;
        const want = target.export({ format: 'jwk' }) as Record<string, string>;
        assert.equal(got.n, want.n, `${what}: n`);
        assert.equal(got.d, want.d, `${what}: d`);
        assert.ok(key.equals(der), `${what}: the PKCS#8 DER itself`);
      }
    }
  }
});

test('an oct key (raw bytes) round-trips, and two blobs of one key differ (ephemeral AES key)', () => {
  for (const len of [16, 24, 32]) {
    const aes = randomBytes(len);
    const text = makeByok({ kid: kidOf('kek'), key: publicJwk(kek2048) }, aes);
    assert.ok(importOf(keyHsmOf(text), kek2048).key.equals(aes), `${len}-byte oct key`);
    assert.notEqual(parseByok(keyHsmOf(text)).ciphertext, parseByok(makeByok({ kid: kidOf('kek'), key: kek2048 }, aes)).ciphertext);
  }
});

test('key_hsm is also read as the file\'s JSON text or its standard base64, and an unversioned kid names the key', () => {
  const text = makeByok({ kid: kidOf('kek'), key: kek2048 }, target2048);
  const want = parseByok(keyHsmOf(text));
  assert.deepEqual(parseByok(text), want);
  assert.deepEqual(parseByok(`\n  ${text}\n`), want);
  assert.deepEqual(parseByok(Buffer.from(text).toString('base64')), want);
  assert.deepEqual(parseByok(keyHsmOf(`\uFEFF${text}`)), want, 'a file with a UTF-8 byte order mark');
  const pretty = JSON.stringify(JSON.parse(text), null, 2); // a tool's pretty-printed file
  assert.deepEqual(parseByok(keyHsmOf(pretty)), want);
  assert.deepEqual(byokKek(parseByok(fileWith(text, (f) => { f.header.kid = `${ORIGIN}/keys/kek`; })), ORIGIN), { name: 'kek' });
  // The same origin written differently (host case, trailing slash) is the same vault.
  assert.deepEqual(byokKek(want, 'https://KV1.vault.localhost:8443/'), { name: 'kek', version: VERSION });
});

test('a blob made for another vault\'s KEK is refused, naming that vault', () => {
  for (const other of ['https://kv2.vault.localhost:8443', 'https://kv1.vault.localhost:9443', 'http://kv1.vault.localhost:8443',
    'https://contosokeyvaulthsm.vault.azure.net']) {
    const text = makeByok({ kid: kidOf('kek', other), key: kek2048 }, target2048);
    refused(() => byokKek(parseByok(keyHsmOf(text)), ORIGIN), ['another vault', new URL(other).origin, ORIGIN, kidOf('kek', other)], other);
  }
});

test('a kid that is not a key identifier is refused', () => {
  const text = makeByok({ kid: kidOf('kek'), key: kek2048 }, target2048);
  for (const kid of ['mykek', `${ORIGIN}/secrets/kek/${VERSION}`, `${ORIGIN}/keys/`, `${ORIGIN}/keys/bad_name/${VERSION}`,
    `${ORIGIN}/keys/kek/${VERSION}/extra`, `${ORIGIN}/keys/kek/${VERSION}?x=1`, `${ORIGIN}/keys/kek/v%2F1`]) {
    refused(() => byokKek(parseByok(fileWith(text, (f) => { f.header.kid = kid; })), ORIGIN), ['header.kid'], kid);
  }
});

test('a blob for another KEK of the vault is refused', () => {
  const text = makeByok({ kid: kidOf('kek'), key: kek2048 }, target2048);
  refused(() => importOf(keyHsmOf(text), otherKek), ['could not be unwrapped with key-exchange key'], 'other 2048-bit KEK');
  // A KEK of another size: the ciphertext does not have that KEK's shape.
  refused(() => importOf(keyHsmOf(text), kekLarge), ['ciphertext'], '3072-bit KEK');
  const kid = kidOf('kek');
  refused(() => unwrapByokSoftware(otherKek, byokCiphertext(parseByok(text), 256), kid), [`'${kid}'`], 'named KEK');
  refused(() => unwrapByokSoftware(createPublicKey(kek2048), byokCiphertext(parseByok(text), 256)), ['private RSA key'], 'public key');
});

test('a tampered ciphertext is refused, in either part', () => {
  const text = makeByok({ kid: kidOf('kek'), key: kek2048 }, target2048);
  const bytes = byokCiphertext(parseByok(text), 256);
  for (const at of [0, 100, 255, 256, 263, 264, bytes.length - 1]) {
    const bad = Buffer.from(bytes);
    bad[at] ^= 0x01;
    const keyHsm = fileWith(text, (f) => { f.ciphertext = bad.toString('base64url'); });
    refused(() => importOf(keyHsm, kek2048), ['could not be unwrapped with key-exchange key', 'corrupted'], `byte ${at} flipped`);
  }
  // The two parts swapped for another blob's: OAEP of another AES key.
  const other = byokCiphertext(parseByok(makeByok({ kid: kidOf('kek'), key: kek2048 }, target2048)), 256);
  refused(() => unwrapByokSoftware(kek2048, Buffer.concat([other.subarray(0, 256), bytes.subarray(256)])), ['could not be unwrapped'], 'spliced');
});

test('a truncated ciphertext is refused', () => {
  const text = makeByok({ kid: kidOf('kek'), key: kek2048 }, target2048);
  const bytes = byokCiphertext(parseByok(text), 256);
  for (const len of [0, 100, 255, 256, 264, 270, bytes.length - 8, bytes.length - 1]) {
    const cut = bytes.subarray(0, len);
    const keyHsm = fileWith(text, (f) => { f.ciphertext = cut.toString('base64url') || 'AA'; });
    if (len > 264 && (len - 256) % 8 === 0) {
      // The shape of a blob (OAEP block + a whole number of wrap blocks): only the unwrap can tell.
      refused(() => importOf(keyHsm, kek2048), ['could not be unwrapped'], `${len} bytes`);
    } else {
      refused(() => byokCiphertext(parseByok(keyHsm), 256), ['ciphertext is', '2048-bit key-exchange key', 'truncated'], `${len} bytes`);
    }
    refused(() => unwrapByokSoftware(kek2048, cut), ['could not be unwrapped'], `${len} bytes, unwrapped directly`);
  }
});

test('other transfer formats and malformed files are refused, saying what is supported', () => {
  const text = makeByok({ kid: kidOf('kek'), key: kek2048 }, target2048);
  const cases: [string, string, string[]][] = [
    ['enc RSA_AES_KEY_WRAP_256', fileWith(text, (f) => { f.header.enc = 'RSA_AES_KEY_WRAP_256'; }), ["'RSA_AES_KEY_WRAP_256'", 'CKM_RSA_AES_KEY_WRAP']],
    ['enc missing', fileWith(text, (f) => { delete f.header.enc; }), ['header.enc is missing', 'CKM_RSA_AES_KEY_WRAP']],
    ['alg RSA-OAEP', fileWith(text, (f) => { f.header.alg = 'RSA-OAEP'; }), ["'RSA-OAEP'", "'dir'"]],
    ['schema 2.0.0', fileWith(text, (f) => { f.schema_version = '2.0.0'; }), ["'2.0.0'", '1.0.0']],
    ['schema missing', fileWith(text, (f) => { delete f.schema_version; }), ['schema_version', '1.0.0']],
    ['schema a number', fileWith(text, (f) => { f.schema_version = 1; }), ['schema_version', '1.0.0']],
    ['no header', fileWith(text, (f) => { delete f.header; }), ['header']],
    ['kid missing', fileWith(text, (f) => { delete f.header.kid; }), ['header.kid']],
    ['kid a number', fileWith(text, (f) => { f.header.kid = 7; }), ['header.kid']],
    ['ciphertext missing', fileWith(text, (f) => { delete f.ciphertext; }), ['no ciphertext']],
    ['ciphertext not base64url', fileWith(text, (f) => { f.ciphertext = 'ab+/cd'; }), ['ciphertext is not a base64url']],
    ['not JSON (base64url)', keyHsmOf('this is not a byok file'), ['not JSON']],
    ['not JSON (text)', '{"schema_version": ', ['not JSON']],
    ['a JSON array', keyHsmOf('[1,2]'), ['not an object']],
    ['not base64', 'not base64!', ['neither base64url nor JSON']],
    ['empty', '', ['missing']],
    ['too long', 'A'.repeat(70_000), ['characters']],
  ];
  for (const [what, keyHsm, includes] of cases) refused(() => parseByok(keyHsm), includes, what);
  refused(() => parseByok(42 as unknown as string), ['not a string'], 'a number');
});

test('OpenSSL\'s CLI reads pgbyok\'s blobs, and pgbyok reads blobs made with OpenSSL\'s CLI', (t) => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
  } catch {
    t.skip('no openssl CLI');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'pgbyok-byok-'));
  try {
    const f = (name: string) => join(dir, name);
    writeFileSync(f('kek.pem'), kek2048.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    writeFileSync(f('kek.pub.pem'), createPublicKey(kek2048).export({ format: 'pem', type: 'spki' }));
    const oaep = ['-pkeyopt', 'rsa_padding_mode:oaep', '-pkeyopt', 'rsa_oaep_md:sha1', '-pkeyopt', 'rsa_mgf1_md:sha1'];
    const der = target2048.export({ format: 'der', type: 'pkcs8' }) as Buffer;

    // pgbyok → OpenSSL: RSA-OAEP-SHA1 of the AES key, then AES-256 key wrap with padding of the PKCS#8 DER.
    const bytes = byokCiphertext(parseByok(makeByok({ kid: kidOf('kek'), key: publicJwk(kek2048) }, target2048)), 256);
    writeFileSync(f('rsa.bin'), bytes.subarray(0, 256));
    writeFileSync(f('kwp.bin'), bytes.subarray(256));
    const aesKey = execFileSync('openssl', ['pkeyutl', '-decrypt', '-inkey', f('kek.pem'), '-in', f('rsa.bin'), ...oaep]);
    assert.equal(aesKey.length, 32, 'an AES-256 key');
    const unwrapped = execFileSync('openssl', ['enc', '-d', '-id-aes256-wrap-pad', '-K', aesKey.toString('hex'), '-iv', 'A65959A6', '-in', f('kwp.bin')]);
    assert.ok(unwrapped.equals(der), 'OpenSSL unwraps the PKCS#8 DER of the target');

    // OpenSSL → pgbyok: a blob as a customer would make it with the CLI.
    const ephemeral = randomBytes(32);
    writeFileSync(f('aes.bin'), ephemeral, { mode: 0o600 });
    writeFileSync(f('target.der'), der, { mode: 0o600 });
    const encryptedKey = execFileSync('openssl', ['pkeyutl', '-encrypt', '-pubin', '-inkey', f('kek.pub.pem'), '-in', f('aes.bin'), ...oaep]);
    const wrapped = execFileSync('openssl', ['enc', '-id-aes256-wrap-pad', '-K', ephemeral.toString('hex'), '-iv', 'A65959A6', '-in', f('target.der')]);
    const file = JSON.stringify({ schema_version: '1.0.0', header: { kid: kidOf('kek'), alg: 'dir', enc: 'CKM_RSA_AES_KEY_WRAP' },
      ciphertext: Buffer.concat([encryptedKey, wrapped]).toString('base64url'), generator: 'openssl CLI' });
    writeFileSync(f('key.byok'), file);
    const { key, file: parsed } = importOf(keyHsmOf(readFileSync(f('key.byok'), 'utf8')), kek2048);
    assert.ok(key.equals(der));
    assert.equal(parsed.generator, 'openssl CLI');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the AES key wrap with padding is RFC 5649\'s (§6 test vectors, 192-bit KEK)', () => {
  const kek = Buffer.from('5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8', 'hex');
  for (const [key, wrap] of [
    ['c37b7e6492584340bed12207808941155068f738', '138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a'],
    ['466f7250617369', 'afbeb0f07dfbf5419200f2ccb50bb24f'],
  ]) {
    const encryptedKey = publicEncrypt({ key: createPublicKey(kek2048), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, kek);
    const got = unwrapByokSoftware(kek2048, Buffer.concat([encryptedKey, Buffer.from(wrap, 'hex')]));
    assert.equal(got.toString('hex'), key);
  }
});

test('makeByok refuses what cannot be a transfer', () => {
  refused(() => makeByok({ kid: kidOf('kek'), key: kek2048 }, createPublicKey(target2048)), ['public key'], 'public target');
  refused(() => makeByok({ kid: '', key: kek2048 }, target2048), ['kid'], 'no kid');
  refused(() => makeByok({ kid: kidOf('kek'), key: { kty: 'EC', n: 'AQAB', e: 'AQAB' } as any }, target2048), ["'EC'"], 'EC KEK');
  refused(() => makeByok({ kid: kidOf('kek'), key: Buffer.alloc(0) as any }, target2048), ['key-exchange key'], 'not a key');
  refused(() => makeByok({ kid: kidOf('kek'), key: createSecretKey(randomBytes(32)) }, target2048), ['RSA key'], 'AES KEK');
});
