/** Pure-logic tests: the RSA digest signing against OpenSSL's own, the barrier, the audit chain, durations. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, createHash, createPublicKey, randomBytes, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import { generateRsaKeySync } from '../src/lib/rsa-keygen.js';
import Database from 'better-sqlite3';
import * as rsa from '../src/vault/rsa.js';
import { createRsaPool } from '../src/vault/rsa-pool.js';
import { ApiError } from '../src/lib/errors.js';
import { createBarrier, loadOrCreateMasterKey } from '../src/barrier/barrier.js';
import { createAuditLog, type AuditRecord } from '../src/audit/audit.js';
import { openDb } from '../src/store/db.js';
import { parseDurationSeconds } from '../src/lib/duration.js';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const privateKey = generateRsaKeySync(2048);
const publicKey = createPublicKey(privateKey);
const message = Buffer.from('pgbyok signs digests');

for (const bits of ['256', '384', '512'] as const) {
  const hash = `sha${bits}`;
  const digest = createHash(hash).update(message).digest();

  test(`RS${bits}: our digest signature verifies with OpenSSL, and OpenSSL's with ours`, () => {
    const ours = rsa.sign(privateKey, `RS${bits}`, digest);
    assert.ok(nodeVerify(hash, message, publicKey, ours));
    const theirs = nodeSign(hash, message, privateKey);
    assert.ok(rsa.verify(publicKey, `RS${bits}`, digest, theirs));
    const bad = Buffer.from(theirs);
    bad[10] ^= 1;
    assert.equal(rsa.verify(publicKey, `RS${bits}`, digest, bad), false);
  });

  test(`PS${bits}: our PSS signature verifies with OpenSSL, and OpenSSL's with ours`, () => {
    const saltLength = Number(bits) / 8;
    const ours = rsa.sign(privateKey, `PS${bits}`, digest);
    assert.ok(nodeVerify(hash, message, { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength }, ours));
    const theirs = nodeSign(hash, message, { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength });
    assert.ok(rsa.verify(publicKey, `PS${bits}`, digest, theirs));
    const otherDigest = createHash(hash).update('something else').digest();
    assert.equal(rsa.verify(publicKey, `PS${bits}`, otherDigest, theirs), false);
  });
}

test('PSS works for 3072 and 4096-bit keys too', () => {
  for (const modulusLength of [3072, 4096]) {
    const k = generateRsaKeySync(modulusLength);
    const digest = createHash('sha256').update(message).digest();
    const sig = rsa.sign(k, 'PS256', digest);
    assert.ok(nodeVerify('sha256', message, { key: createPublicKey(k), padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig));
  }
});

test('a digest of the wrong length is refused with a clear error', () => {
  assert.throws(() => rsa.sign(privateKey, 'RS256', Buffer.alloc(20)), /RS256 signs a 32-byte digest/);
});

test('OAEP round trips, refuses oversize input, and hides padding failures behind one message', () => {
  for (const alg of ['RSA-OAEP', 'RSA-OAEP-256'] as const) {
    const dek = randomBytes(64);
    const wrapped = rsa.encrypt(publicKey, alg, dek, 256);
    assert.deepEqual(rsa.decrypt(privateKey, alg, wrapped, 256), dek);
  }
  assert.throws(() => rsa.encrypt(publicKey, 'RSA-OAEP-256', Buffer.alloc(191), 256), /at most 190/);
  const wrapped = rsa.encrypt(publicKey, 'RSA-OAEP', randomBytes(32), 256);
  assert.throws(() => rsa.decrypt(privateKey, 'RSA-OAEP-256', wrapped, 256), /could not be decrypted/);
  assert.throws(() => rsa.assertEncryptionAlg('RSA1_5'), /RSA1_5 is not supported/);
});

test('the RSA worker pool answers as the calling thread does, errors included, and refuses work once closed', async () => {
  const pool = createRsaPool(2);
  try {
    const deks = Array.from({ length: 16 }, () => randomBytes(64));
    const wrapped = deks.map((d) => rsa.encrypt(publicKey, 'RSA-OAEP-256', d, 256));
    const unwrapped = await Promise.all(wrapped.map((w) => pool.run({ op: 'decrypt', key: privateKey, alg: 'RSA-OAEP-256', value: w, modulusBytes: 256 })));
    unwrapped.forEach((u, i) => assert.deepEqual(u, deks[i]));
    const digest = createHash('sha256').update(message).digest();
    const sig = await pool.run({ op: 'sign', key: privateKey, alg: 'PS256', value: digest });
    assert.ok(nodeVerify('sha256', message, { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig));
    await assert.rejects(pool.run({ op: 'decrypt', key: privateKey, alg: 'RSA-OAEP', value: wrapped[0], modulusBytes: 256 }),
      (e: unknown) => e instanceof ApiError && e.status === 400 && e.code === 'BadParameter' && /could not be decrypted/.test(e.message));
    await assert.rejects(pool.run({ op: 'sign', key: privateKey, alg: 'RS256', value: Buffer.alloc(20) }),
      (e: unknown) => e instanceof ApiError && /RS256 signs a 32-byte digest/.test(e.message));
  } finally {
    await pool.close();
  }
  await assert.rejects(pool.run({ op: 'sign', key: privateKey, alg: 'RS256', value: Buffer.alloc(32) }), /closed/);
});

test('an imported JWK whose parts do not belong together is refused', () => {
  const a = privateKey.export({ format: 'jwk' });
  const b = generateRsaKeySync(2048).export({ format: 'jwk' });
  assert.throws(() => rsa.privateFromJwk({ ...a, n: b.n }), /(inconsistent|not a valid)/);
  assert.equal(rsa.publicParts(rsa.privateFromJwk(a as any)).n, a.n);
});

test('the barrier binds each sealed record to its identity and detects tampering', () => {
  const barrier = createBarrier(randomBytes(32));
  const sealed = barrier.seal(Buffer.from('secret key material'), 'key:v/k/1');
  assert.equal(barrier.unseal(sealed, 'key:v/k/1').toString(), 'secret key material');
  assert.throws(() => barrier.unseal(sealed, 'key:v/k/2'), /integrity/);
  const flipped = Buffer.from(sealed);
  flipped[20] ^= 1;
  assert.throws(() => barrier.unseal(flipped, 'key:v/k/1'), /integrity/);
  assert.throws(() => createBarrier(randomBytes(31)), /exactly 32 bytes/);
  assert.throws(() => createBarrier(randomBytes(32)).unseal(sealed, 'key:v/k/1'), /integrity/);
});

test('the master key file is created 0600 and a malformed one is refused, not guessed at', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgbyok-unit-'));
  try {
    const path = join(dir, 'master.key');
    const k = loadOrCreateMasterKey(path, {});
    assert.equal(k.length, 32);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.deepEqual(loadOrCreateMasterKey(path, {}), k);
    writeFileSync(path, 'c2hvcnQ=');
    assert.throws(() => loadOrCreateMasterKey(path, {}), /exactly 32 bytes/);
    assert.throws(() => loadOrCreateMasterKey(path, { PGBYOK_MASTER_KEY: 'abc' }), /exactly 32 bytes/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function auditFixture() {
  const dir = mkdtempSync(join(tmpdir(), 'pgbyok-audit-'));
  const db = openDb(join(dir, 'a.db'));
  const key = randomBytes(32);
  const log = createAuditLog(db, key);
  const rec = (i: number): AuditRecord => ({
    time: new Date(1700000000000 + i * 1000).toISOString(), requestId: `r${i}`, surface: 'vault', operation: i % 2 ? 'KeyUnwrap' : 'KeyWrap',
    result: 'Success', httpStatus: 200, sourceAddress: '127.0.0.1', vault: 'v1', key: 'k1',
  });
  for (let i = 1; i <= 6; i++) log.append(rec(i));
  return { dir, db, log, key, cleanup: () => { db.close(); rmSync(dir, { recursive: true, force: true }); } };
}

test('audit verify passes on an intact chain and filters work', () => {
  const f = auditFixture();
  try {
    assert.deepEqual(f.log.verify(), { valid: true, records: 6 });
    assert.equal(f.log.list({ operation: 'KeyUnwrap' }).length, 3);
    assert.deepEqual(f.log.list({ top: 2 }).map((r) => r.seq), [5, 6]);
  } finally {
    f.cleanup();
  }
});

test('audit verify detects an edited, a removed, a reordered and a truncated record', () => {
  const cases: [string, (db: Database.Database) => void, RegExp][] = [
    ['edited', (db) => db.prepare("UPDATE audit_log SET record = replace(record, 'KeyUnwrap', 'KeyGet') WHERE seq = 3").run(), /edited/],
    ['removed', (db) => db.prepare('DELETE FROM audit_log WHERE seq = 4').run(), /missing/],
    ['reordered', (db) => {
      const [a, b] = db.prepare('SELECT * FROM audit_log WHERE seq IN (2, 3) ORDER BY seq').all() as any[];
      db.prepare('UPDATE audit_log SET record = ?, prev_hash = ?, hash = ? WHERE seq = 2').run(b.record, b.prev_hash, b.hash);
      db.prepare('UPDATE audit_log SET record = ?, prev_hash = ?, hash = ? WHERE seq = 3').run(a.record, a.prev_hash, a.hash);
    }, /link/],
    ['truncated', (db) => db.prepare('DELETE FROM audit_log WHERE seq = 6').run(), /removed from the end/],
  ];
  for (const [what, tamper, reason] of cases) {
    const f = auditFixture();
    try {
      tamper(f.db);
      const report = createAuditLog(f.db, f.key).verify();
      assert.equal(report.valid, false, what);
      assert.match(report.reason!, reason, what);
    } finally {
      f.cleanup();
    }
  }
});

test('a recomputed chain without the HMAC key is detected', () => {
  const f = auditFixture();
  try {
    // Rewrite record 2 and re-hash it with plain SHA-256: without the key the hash cannot match.
    const row = f.db.prepare('SELECT * FROM audit_log WHERE seq = 2').get() as any;
    const forged = row.record.replace('r2', 'forged');
    f.db.prepare('UPDATE audit_log SET record = ?, hash = ? WHERE seq = 2').run(forged, createHash('sha256').update(row.prev_hash + '\n' + forged).digest('hex'));
    assert.equal(createAuditLog(f.db, f.key).verify().valid, false);
  } finally {
    f.cleanup();
  }
});

test('ISO 8601 durations as rotation policies use them', () => {
  assert.equal(parseDurationSeconds('P90D'), 90 * 86400);
  assert.equal(parseDurationSeconds('P1Y'), 365 * 86400);
  assert.equal(parseDurationSeconds('PT12H'), 12 * 3600);
  assert.equal(parseDurationSeconds('P1DT2S'), 86402);
  for (const bad of ['P', 'PT', '90D', 'P-1D', 'P0D', 'soon']) assert.equal(parseDurationSeconds(bad), undefined, bad);
});
