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

/**
 * A 4096-bit KEK and a 3072-bit target made once for this test (they protect nothing): generating them takes
 * seconds on a slow machine, more than the whole test may. The 2048-bit keys are generated fresh.
 */
const KEK_4096_PEM = [
  '-----BEGIN PRIVATE KEY-----',
  'MIIJQgIBADANBgkqhkiG9w0BAQEFAASCCSwwggkoAgEAAoICAQCwTvndThzbu0vY',
  '1wx7vONinsmnCgKBhuM8OEVPNCzvvuUvjoBeJ2j+OLbGbbPdXh5+QeGzGMgpVeiw',
  'g3o4CvOaFcYbI2s0HZLdx+/OuuAscQaJXE9g3vBHVx3ds1TSxu0n30dxYw+xnuRO',
  'oYMTjS1QlWUQdVszabaACw8p7mGCBCn1ic7CfDuu5gVXk4RUBwDcN975La+4Z2W0',
  'TF/lT13kQTexS9EVeeTLBvrQFO6qkDzUmqUriICuO6aQ7m+S9R6ob2s7jFIdoYJo',
  'earmqcrcPSpfPvaLyjs8jw6VYkKEG+ipBtMAM3UHXFkIsZQXYcbqPOzL37yUsvcM',
  'L2ICl6Skcdj0OZcZIhGC5eaGZoHT2dHQ92uHDQiqqBl6avyjOX8PfoInhMRrs8H8',
  'Oalq3A2nVLO0CltJRc2g9LTyEwR0EGXeENYxHn7nl2h3dZwyYF3vBI3j0h7rO1bm',
  'YaQjQydtq0CAtgkaoxggn1pB15T1vY+pOYXSsX1FiGt+c/jABAOsx00iP7bvMYV9',
  'yXiMDxqLA85VvF2AdcdEJeX4Q6DU5H/wQOHcmKExbevfWAi8MipmiY1QVaQCoC5a',
  'RIkIQ7yQCNJFLKD5L1c4YdIPKXCMLE6WIjsUC7TmPo0Pvz2PcWA4HGYDSe0HBtvk',
  'mV05OOgUFMEcZHBf25XKqncRMgkJNQIDAQABAoIB/3A3WkV+Pmwi2T8hoQQ5RI0u',
  'ZUlvMP53Cee7Gc/rH34XQnkj9AQqPAHDu86utRKhcJx4AxQowQzjhboQbtVneGIX',
  'QuTML37atWvzrjfRIWoDVajIs7EP64PF2bl8KtleyeK4bkmntDPuuirkRoZS0hQH',
  'fFUe7z+oegM8Q7a4wyyM+erpo+nKLul7hFKLrVuphy7UC3vpM67Agl/OwszSm86c',
  '5LpALvuqEJ0074DpDsJic2F85+cHUykYi1yVWhMmG3KlqMJ+CmRqD5/XPnJ/paem',
  'qDYJfrgrfHZC1HYt7LRsP9EktINKtxB7WDwU4wWRIO6/D0HMciWs21pW2m+I6plM',
  'zJNMMB1l6jYIvC4lY32zqFDf173btXoTgTVcinhHV9/WWY/amoXRI3P6xzz3NQvq',
  'lhzFcig+T53/TQgNu+nkaQIgbdxJIa5EUKRiJZ55s8THfgXxlDv09JPHUEZKrhND',
  'tlwq4UfUFSgCvWa14b0TTQqu90OANpZVA56tqOe6CGA1EFd8jMSZKsWjmfkDB8Vo',
  'D9vjtuaZP2VXTz+UN10O2nZf5Uu3feJm2ZJkZ3jIUqSznxy1CIAe7+VB52O5FO66',
  'nyC4Q9ywm/3x7ihVKqNJWpL1fVExxPa6oqIEFptSmwopkejVCVy0w/+cz8S1/Hdq',
  'nWWjU+jBCf4xIFW00YkCggEBAPiKjfvHh0cdJfxgCMN7Z2fv2ZzgZell9E3BRTWg',
  'cp507PacbtpLGNdDyyvy5rpM4ZZvhSblnd3bTWhVML9lmYJyQR6r50+G/VOIwYMM',
  'KE9Zu/kONc+rdKq2s6MFstCRpjOHzB4x6gHLinnhMYlPaB2zTfakI8bw+2X98S04',
  'VRWPB11sLbd8eIkfXBhUkdBHRCquuVB2wgZ1f9Sx0idwvXjFCl6gbv7G9W584J32',
  'CxEBsv4PLhO1CTpt6xdhbBHrZ5uWXJ21GVG9lXr6SQe+zZmYi3xlPR4xX15HhXSV',
  'MuijuyqKRlOsZuMOB24XKen6Gl+z6KUv/ChorkdN/cL/iYkCggEBALWZfEp9ZDt1',
  'D6bbFpjMTRE7GYzoKtR70v1SWvBJqFA37Ld25A6F0xuSLGEMpF5AnOyciFRlRDMo',
  'd/xG8jQ2CE/B56D1K7aNuteQ/4jq+Uit7X7do+9v1e+Mou/ekPBr3fZOcKmRnkgI',
  '4jyavPbo/jIQIcCsAulZjqaBTcrPgut8XAQ+P3lqtmRrPFmsmiKdc4mTiDkGENHh',
  'TyEEibcOMmjm1rZRlR0raysAPBaGy3h0ZnJLO97WIJCDaknOZ6Sl1quLjNJi3vHw',
  'Uttxgh9juIMM5aC0PmhuPIfVa/DUrxVRU0gZFg15T5zJLzoy0EJ3MGHI+5y+vB2S',
  'BeXYGi/bk00CggEBAKhwRj9Pfxer4nWCpA3PUUo4W9OcpJSkGwijJgNtBKDs/zc2',
  '102rvV8OO+BCEypJNk1csPGmhfG4UWKW8Z2U/o9QXV+rAu17v61gLj1g/OSiHOly',
  'PvfJ7BxSC7Y9A22kd+3OZ4BDNaMXzXZCLu8u2JHgVcMEhJar9MSvcEbEOa2NrGEd',
  'EnKasZnEngaDMfrkgYcnuMGWanI0KXj9Nj6ygkYZy6hLtE2IiwbhLN0AxYk2DJdv',
  'tDt44pMtsTi8NqCCWEoygfwDovApuueIPfw4zF/+6PFaLyyKK2bas9BJ2SGe7Ras',
  'dXL5kRTqChELM8W1UTBw3gctWQgNwabjbUo9InkCggEAGsaRs+3/HGErOJ/vGgJt',
  'jo/XOZZ10jSbrGw7KljB72n/hiGKiLWkpdkMoBacGaWPPbfqxf7UanKaFmFjjt00',
  'poXhoDLmChmlpekkNEzpCpVSgjUt2bz0n0huMc3wMvLEnG9+XxIwc1CUAvmRyRob',
  'eMg2IdF68GsbBGPmU3P7SrtgWePPuhhI4k+Ja3NumpH6mhtdp4LEch21bBneMFZw',
  'ilUW7XTj9pQTThjPw0aGs7D99fYv0rBhxs0Jm+5KC9XD7DE8Rzz6wFN99Astc3Fh',
  'oDkDlolc9kris+h87Np/IjaGgAfq33u2iFiFlSAu4s3uHUzkBH1/ASEpq3UMj2fh',
  'tQKCAQEAjamVyDDeahTqeK6Xw3UXW2evIfxwrKKrLiuz1OuTsDowqQjfeE19ycik',
  'RoLA+MO1KFF06MKneBmK4fDqUacyey4g+cIKTq7OOvK39mz4o+pjIsoNDapINUI4',
  'N1S+1dbDxxjefCXTapexEjyisO8OTUC363UbbQlEq/S1/mVSTD6mMzXOykaNMvTK',
  '8oXbilUi5meQOljAwdp6R/li1iuGk8K/KB39j+qyscbxWrRwMKtgle/5q9X0+p83',
  '4OZnHMD7a25QVXWP35ol1tyd219be53LEPys0jyaJNOMT68NyiQPVLMU/r/HZbSz',
  'QtXLmwCnuZIAd4HTNKcY0w2LKFVOBw==',
  '-----END PRIVATE KEY-----',
].join('\n');

const TARGET_3072_PEM = [
  '-----BEGIN PRIVATE KEY-----',
  'MIIG/QIBADANBgkqhkiG9w0BAQEFAASCBucwggbjAgEAAoIBgQDHJoYCF6ZHAPmQ',
  'eh+syIB40LjS6Tg7iNYSjXyCVJEF2PZS7wDoINxElfY3oeu17ehj5wurPctNAoph',
  'd/ml/0+uTrzchCLBUMXueZSiSj4b1+j3PV6UXEBD7a0r6CitR7ahS23crvWWNhkq',
  'sXfFfxuwsaJ5pO4oxcSlzFsAxlYOkGyJMUwJzh7aPmhnzCVsfwB1jRSmoynL2g1a',
  'iwHz6lsc7tPYrAqw4H8jH7TLDHNEeymHIn/UcCU00SgItZhxB53znlrovfHG5An/',
  '8VjEvpgqhOfAp/BPGHByGUjORMlNPk7Ov5VDjhGPsPN/PwnJ5NvArQUoxZ4vtqKc',
  '0UV8wx85Z4dWROm2M+V2mIUimio04Qit0nwO0aldZejNqJU2KFlodxW+OV96MGQA',
  'bMsOvmF4fqKebNdlPswxh0aYpd51htSCSvJGUu5zWrWvHvWMC6V9HCng1n2/UYDg',
  'J+e0/tXFjoi7B0LpFHxw1OYh0h/I4wChrqIfcY0ii0axGxpFrIUCAwEAAQKCAYBR',
  '0kQQrALG/WGLuIE3DhGqkaa+EM/ntequKK9VJMWIr4FUxZmLxaR6EVrdtIsRbjOi',
  'iBTFQFg8xaRxM0fAqcrlBLiXqTpWTodj2VP18abe7bBrlC09q0FEJ2yUs4ey2dnx',
  'Hvp+Ruvj0Uo5vjxFSlnoGLN2YwrueYK30+Q3x0UoKrJNE5H4HVWTuTxQGRHvJ6ba',
  'pSIs7LCJboc6Ag7FVi4lDwK+7MBft3zEw4wWOIFLS4beXJBEiebfcmeOXH3LQqMq',
  '2euD/yaNiAzGoe23amizrj/CTsiBFTXPE4CY2PxP17zEoUIPBmEQ99JS8vlYzppL',
  'Bvhouh0LExwp7X8dY15/2Bd/DRxt2rmIE0SUXcxcbQLNgTGi881bisFcNhZXJf4m',
  'J/+2Oq6eWOkm+Lxexxh5+Vn3OqUEnuvyoWhT6WayY/WT4ML7hNfRl3KI0XBX+wXR',
  'cM6SYFHkOcfs6GBykYX86L7yvnHCDphrMdRgFxmMrX46A2fDKipgU/zYRgCcpSkC',
  'gcEA7nnMvsocdhKFEJM707/PgtGtFzbNNw1+zAbhCFOqycQxq4P4slwaHlDiiSyx',
  'DZqQHC/eKRgSiL7FP17Ho0DB2gy4QfPYNimy+SYnPfq/TZlELn8ohKF2S/WOjK67',
  'D/dZ4aqTi0Ng7lNegifyh2umJSIuF+27/Zjl6Ug6xntxQPwOTp2KODbWu6+ohhcJ',
  'LQaxz+EfLM0sV7q5UTKf9yg3oGumjAzWJ2pnuBbfPcHpQELvQjxoW4Dd5hSvxHn/',
  '7nTfAoHBANXI7+vS6bZfSvOZ7mEzuH3NBNgK8TzW8r+19QhsLHtWjMCtbebHI5VE',
  'bNDT6tSXixSSHMCjUU17V5pkz1Ii5B7tD2WBWkL9jtuQVAv2GbT48DomD0FYyzHq',
  'YfvXqGTcp2jFzCphoXBQo0ztBXwg3L50qXU0vJpJKFhIOKo8lIfIqyn5+NVQOCJP',
  'y/46b3KXhaHL78RETNrXrTJtiahonDht+bXDS5vDk10zi1AJMyuOOR55pMbegq3d',
  'nwDVk3rHGwKBwQCpztz19eCySpmppc1yCCDw2/DOmN0jmF5zVWqjjUANj8B2ivBp',
  'wJ9wetP0LXidYTPAfm1JAbUg3gaCCzFIk/H1HB2QCNwqJSMluf8zaPsTfFFKco0d',
  'dANSLzYkAr98rPq5b8bD4WSCD6c6MsvFleemhWIg881q1JbRt/byIjAQv+pIHHGx',
  'eYsJ9hif8oM8JooypfCW7Dno9jLDGLNDQMXrWvwquXE8e84DDXZE+XDnq0HG/lCo',
  '52gaTxyhYOXWnC0CgcBy6YYk8YLUl5Y3KKecsetaG4ieBAu1kyh6afji5Rpn1Zbk',
  'vpQTdzkmM9h1y2MvkKGelgdEeMTr6/+jqspRsRWDlhMvkX8OATL3zDWRFGCvCRw/',
  'dVO/4VWfaAfxEfOe+4g05hUfNslLEN0mLUVEenmNGjI4IPe7ytUX1wI2Z0fDUNbI',
  'QmhBaNQzhUb2STy8kLuww2kGy1uwSjv7nitfTZOjNWIDFI2glVixwVIB3GAX6mPD',
  'gMlUaChAAp9EGIkkdr8CgcB/Rug3RqvDlksInOGxwCSaw26yld6jYt/d+N8GLayg',
  'Dp7ESmPy5hGA0lyNkcHZ18DdQxSEtL+RHeQk7o1t5H8SbOC9QdewyrfrfDvywKjt',
  'hp5X7Zu3QxUyA8DHxNhKPoLoyJi0ysZ+AUuOHkqv0vkHnhBwkHUuRCw/zuBiiRmx',
  'aOwdSEKcdN5TBbFpv7MrMzuFyE+6C3JCRSNFxHgISKX7OCP0Iy4UJrkf3IV7BMxY',
  'EUoHowxBQSmC+0Q2nLZx/ik=',
  '-----END PRIVATE KEY-----',
].join('\n');

const kek4096 = createPrivateKey(KEK_4096_PEM);
const target3072 = createPrivateKey(TARGET_3072_PEM);
const [kek2048, target2048] = await Promise.all([generateRsaKey(2048), generateRsaKey(2048)]);
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

test('RSA 2048 and 3072 targets round-trip under 2048- and 4096-bit KEKs', () => {
  for (const [kekName, kek] of [['kek2048', kek2048], ['kek4096', kek4096]] as const) {
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
  refused(() => importOf(keyHsmOf(text), kek4096), ['ciphertext'], '4096-bit KEK');
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
