/**
 * src/hsm/token.ts against a private SoftHSM2 token made in a temp dir, every result checked with node:crypto.
 * Skips (saying so) where SoftHSM2 is not installed.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  constants, createCipheriv, createHash, createPublicKey, generateKeyPairSync, publicEncrypt, randomBytes, verify,
} from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pkcs11js from 'pkcs11js';
import { openToken, TokenError, type Token } from '../src/hsm/token.js';

const MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const skip = existsSync(MODULE) ? false : `SoftHSM2 is not installed (${MODULE} is missing): apt-get install softhsm2`;
const LABEL = 'pgbyok-test';
const PIN = '4321';

let dir = '';
let token: Token;
const options = () => ({ modulePath: MODULE, tokenLabel: LABEL, pin: PIN });

if (!skip) {
  dir = mkdtempSync(join(tmpdir(), 'pgbyok-softhsm-'));
  mkdirSync(join(dir, 'tokens'));
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  // The module reads SOFTHSM2_CONF at C_Initialize, which happens once per process: set it before the first openToken.
  process.env.SOFTHSM2_CONF = conf;
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', LABEL, '--so-pin', '87654321', '--pin', PIN], { stdio: 'pipe' });
  // SoftHSM2 reads its tokens at C_Initialize: a token made later is not seen by this process.
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', 'second', '--so-pin', '87654321', '--pin', '1111'], { stdio: 'pipe' });
  token = openToken(options());
}

after(async () => {
  if (skip) return;
  await token.close();
  rmSync(dir, { recursive: true, force: true });
});

const pub = (jwk: object) => createPublicKey({ key: jwk as never, format: 'jwk' });
const rejectsWith = (p: Promise<unknown>, code: string) =>
  assert.rejects(p, (e: unknown) => e instanceof TokenError && e.code === code);

test('RSA-OAEP (SHA-1): Node encrypts to the token public key, the token decrypts', { skip }, async () => {
  const { id, publicJwk } = await token.generateRsa(2048);
  assert.match(id, /^[0-9a-f]{32}$/);
  const cek = randomBytes(32);
  const ct = publicEncrypt({ key: pub(publicJwk), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, cek);
  assert.deepEqual(await token.rsaDecrypt(id, 'RSA-OAEP', ct), cek);
  await rejectsWith(token.rsaDecrypt(id, 'RSA-OAEP', randomBytes(256)), 'DecryptionFailed');
});

test('RSA-OAEP-256 is refused: the module has no OAEP with SHA-256', { skip }, async () => {
  const { id, publicJwk } = await token.generateRsa(2048);
  const ct = publicEncrypt({ key: pub(publicJwk), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, randomBytes(32));
  await assert.rejects(token.rsaDecrypt(id, 'RSA-OAEP-256', ct), (e: unknown) =>
    e instanceof TokenError && e.code === 'AlgorithmNotSupportedByModule' && /SHA-256/.test(e.message));
});

test('RS/PS 256/384/512 digest signatures verify with node:crypto', { skip }, async () => {
  const { id, publicJwk } = await token.generateRsa(3072);
  const key = pub(publicJwk);
  const message = Buffer.from('pgbyok signs digests in the token');
  for (const alg of ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'] as const) {
    const hash = `sha${alg.slice(2)}`;
    const sig = await token.rsaSign(id, alg, createHash(hash).update(message).digest());
    const pss = alg.startsWith('PS') ? { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(alg.slice(2)) / 8 } : {};
    assert.ok(verify(hash, message, { key, ...pss }, sig), alg);
  }
  await rejectsWith(token.rsaSign(id, 'RS256', randomBytes(20)), 'BadParameter');
});

test('the private exponent cannot be read out of the token (CKR_ATTRIBUTE_SENSITIVE)', { skip }, async () => {
  const { id } = await token.generateRsa(2048);
  // A direct PKCS#11 look, outside the Token API (which has no way to ask).
  const P = pkcs11js;
  const p = new P.PKCS11();
  p.load(MODULE);
  try { p.C_Initialize(); } catch (e) { assert.match((e as Error).message, /CKR_CRYPTOKI_ALREADY_INITIALIZED/); }
  const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === LABEL)!;
  const s = p.C_OpenSession(slot, P.CKF_SERIAL_SESSION);
  try {
    p.C_FindObjectsInit(s, [{ type: P.CKA_ID, value: Buffer.from(id, 'hex') }, { type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY }]);
    const [priv] = p.C_FindObjects(s, 1);
    p.C_FindObjectsFinal(s);
    assert.ok(priv, 'the private key is visible to a session of the logged-in process');
    assert.throws(() => p.C_GetAttributeValue(s, priv, [{ type: P.CKA_PRIVATE_EXPONENT }]), /CKR_ATTRIBUTE_SENSITIVE/);
    const [sens, extr] = p.C_GetAttributeValue(s, priv, [{ type: P.CKA_SENSITIVE }, { type: P.CKA_EXTRACTABLE }]).map((a) => a.value[0]);
    assert.deepEqual([sens, extr], [1, 0]);
  } finally {
    p.C_CloseSession(s);
  }
});

test('AES-256-GCM round trip, and interoperable with node:crypto both ways', { skip }, async () => {
  const { id } = await token.generateAes256();
  const iv = randomBytes(12), aad = Buffer.from('header'), plaintext = randomBytes(100);
  const { ciphertext, tag } = await token.aesGcmEncrypt(id, plaintext, iv, aad);
  assert.equal(ciphertext.length, 100);
  assert.deepEqual(await token.aesGcmDecrypt(id, ciphertext, iv, aad, tag), plaintext);
  const bad = Buffer.from(tag); bad[0] ^= 1;
  await rejectsWith(token.aesGcmDecrypt(id, ciphertext, iv, aad, bad), 'DecryptionFailed');
  // the session that failed was replaced: the next operation works
  assert.deepEqual(await token.aesGcmDecrypt(id, ciphertext, iv, aad, tag), plaintext);
});

test('A256KW and CKM_AES_KEY_WRAP_PAD round trips; unwrap of a tampered value fails; odd lengths refused', { skip }, async () => {
  const { id } = await token.generateAes256();
  for (const alg of ['A256KW', 'CKM_AES_KEY_WRAP_PAD'] as const) {
    for (const len of [16, 32, 64]) {
      const k = randomBytes(len);
      const wrapped = await token.aesWrap(id, alg, k);
      assert.equal(wrapped.length, len + 8, `${alg} ${len}`);
      assert.deepEqual(await token.aesUnwrap(id, alg, wrapped), k, `${alg} ${len}`);
      const bad = Buffer.from(wrapped); bad[3] ^= 1;
      await rejectsWith(token.aesUnwrap(id, alg, bad), 'DecryptionFailed');
    }
  }
  await rejectsWith(token.aesWrap(id, 'CKM_AES_KEY_WRAP_PAD', randomBytes(20)), 'BadParameter');
  await rejectsWith(token.aesWrap(id, 'A256KW', randomBytes(20)), 'BadParameter');
});

test('importByok: a blob made in Node (RSA-OAEP-SHA1 + id-aes256-wrap-pad) lands a signing key in the token', { skip }, async () => {
  const kek = await token.generateRsa(2048);
  const target = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pkcs8 = target.privateKey.export({ type: 'pkcs8', format: 'der' });
  const aes = randomBytes(32);
  const c = createCipheriv('id-aes256-wrap-pad', aes, Buffer.from('A65959A6', 'hex'));
  const blob = Buffer.concat([
    publicEncrypt({ key: pub(kek.publicJwk), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, aes),
    c.update(pkcs8), c.final(),
  ]);
  const imported = await token.importByok(kek.id, blob);
  assert.equal(imported.publicJwk.n, (target.publicKey.export({ format: 'jwk' }) as { n: string }).n);
  assert.deepEqual(await token.publicJwk(imported.id), imported.publicJwk);
  const message = Buffer.from('imported');
  const sig = await token.rsaSign(imported.id, 'RS256', createHash('sha256').update(message).digest());
  assert.ok(verify('sha256', message, pub(imported.publicJwk), sig));
  const bad = Buffer.from(blob); bad[bad.length - 1] ^= 1;
  await rejectsWith(token.importByok(kek.id, bad), 'DecryptionFailed');
});

test('random, destroy, and a key that is gone', { skip }, async () => {
  const r = await token.random(32);
  assert.equal(r.length, 32);
  assert.notDeepEqual(r, await token.random(32));
  const { id } = await token.generateRsa(2048);
  assert.equal(await token.destroy(id), 2);
  await rejectsWith(token.rsaSign(id, 'RS256', randomBytes(32)), 'KeyNotFound');
  await rejectsWith(token.destroy(id), 'KeyNotFound');
  await rejectsWith(token.destroy('not-an-id'), 'BadParameter');
});

test('operations queue on the session pool: 20 at once all succeed', { skip }, async () => {
  const { id, publicJwk } = await token.generateRsa(2048);
  const cts = Array.from({ length: 20 }, () => randomBytes(32));
  const out = await Promise.all(cts.map((m) =>
    token.rsaDecrypt(id, 'RSA-OAEP', publicEncrypt({ key: pub(publicJwk), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, m))));
  assert.deepEqual(out, cts);
});

test('open errors: missing module, missing label, wrong PIN (logged in elsewhere in the process, and not)', { skip }, async () => {
  assert.throws(() => openToken({ ...options(), modulePath: join(dir, 'nope.so') }), (e: unknown) => e instanceof TokenError && e.code === 'ModuleNotFound');
  assert.throws(() => openToken({ ...options(), tokenLabel: 'no-such-token' }), (e: unknown) => e instanceof TokenError && e.code === 'TokenNotFound');
  assert.throws(() => openToken({ ...options(), pin: '0000' }), (e: unknown) => e instanceof TokenError && e.code === 'PinIncorrect');
  // A second token in the same process, nobody logged in to it: the module itself says CKR_PIN_INCORRECT.
  assert.throws(() => openToken({ ...options(), tokenLabel: 'second', pin: '2222' }), (e: unknown) =>
    e instanceof TokenError && e.code === 'PinIncorrect' && e.ckr === 'CKR_PIN_INCORRECT');
  const second = openToken({ ...options(), tokenLabel: 'second', pin: '1111' });
  assert.equal((await second.random(8)).length, 8);
  await second.close();
  await rejectsWith(second.random(8), 'Closed');
});

test('keys persist: found again by id after close() and openToken()', { skip }, async () => {
  const rsa = await token.generateRsa(2048);
  const aes = await token.generateAes256();
  const { ciphertext, tag } = await token.aesGcmEncrypt(aes.id, Buffer.from('kept'), Buffer.alloc(12, 7), Buffer.alloc(0));
  await token.close();
  token = openToken(options());
  assert.deepEqual(await token.publicJwk(rsa.id), rsa.publicJwk);
  const sig = await token.rsaSign(rsa.id, 'PS256', createHash('sha256').update('x').digest());
  assert.ok(verify('sha256', Buffer.from('x'), { key: pub(rsa.publicJwk), padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig));
  assert.deepEqual(await token.aesGcmDecrypt(aes.id, ciphertext, Buffer.alloc(12, 7), Buffer.alloc(0), tag), Buffer.from('kept'));
});
