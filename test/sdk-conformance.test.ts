/**
 * SDK conformance: the official `@azure/identity` + `@azure/keyvault-keys` packages, unchanged, against a real
 * running pgbyok over HTTPS. Every assertion is something a Key Vault user relies on.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  constants, createHash, createPublicKey, publicEncrypt, randomBytes, sign as nodeSign, verify as nodeVerify,
  type KeyObject,
} from 'node:crypto';
import { generateRsaKeySync } from '../src/lib/rsa-keygen.js';
import type { TokenCredential } from '@azure/identity';
import {
  CryptographyClient, KeyClient, type KeyVaultKey, type KeyWrapAlgorithm, type SignatureAlgorithm,
} from '@azure/keyvault-keys';
import { createIdentity, rejectsWith, sdkOptions, startPgbyok, vaultName, type Cred, type Pgbyok } from './harness.js';

const POLL = { intervalInMs: 100 };

const keyName = (prefix = 'k') => `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
const b64u = (b: Uint8Array) => Buffer.from(b).toString('base64url');

function publicKeyOf(k: KeyVaultKey): KeyObject {
  assert.ok(k.key?.n && k.key?.e, 'key material n/e present');
  return createPublicKey({ key: { kty: 'RSA', n: b64u(k.key.n), e: b64u(k.key.e) }, format: 'jwk' });
}

describe('official Azure SDK against pgbyok', { timeout: 170_000 }, () => {
  let p: Pgbyok;
  let cred: TokenCredential;
  let vaultUrl: string;
  let client: KeyClient;

  const cryptoClient = (id: string, c: TokenCredential = cred) => new CryptographyClient(id, c, sdkOptions(p));
  const createVault = (...extra: string[]): string => {
    const name = vaultName();
    const r = p.cli('vault', 'create', '--name', name, '--location', 'eastus', '--retention-days', '7', ...extra);
    // Named under the domain on the one vault port, so the SDKs' challenge-resource check passes (it is on).
    assert.match(r.properties.vaultUri, new RegExp(`^https://${name}\\.vault\\.localhost:\\d+/$`));
    return r.properties.vaultUri;
  };

  before(async () => {
    p = await startPgbyok();
    cred = p.credential(p.admin);
    vaultUrl = createVault();
    client = new KeyClient(vaultUrl, cred, sdkOptions(p));
  });

  after(async () => {
    if (p) await p.stop();
  });

  // ---------------------------------------------------------------- keys

  test('createRsaKey makes 2048- and 3072-bit RSA keys with ids under the vault URL', async () => {
    for (const size of [2048, 3072]) {
      const name = keyName(`rsa${size}`);
      const k = await client.createRsaKey(name, { keySize: size, tags: { purpose: 'test' } });
      assert.equal(k.name, name);
      assert.equal(k.keyType, 'RSA');
      assert.equal(k.key?.n?.length, size / 8, 'modulus length');
      assert.equal(b64u(k.key!.e!), 'AQAB');
      assert.equal(k.key?.d, undefined, 'no private exponent');
      assert.equal(k.properties.enabled, true);
      assert.equal(k.properties.tags?.purpose, 'test');
      assert.ok(k.properties.version && k.properties.version.length > 0);
      assert.ok(k.id?.startsWith(new URL(vaultUrl).origin + '/keys/' + name + '/'), `kid ${k.id}`);
      assert.equal(k.properties.vaultUrl.replace(/\/$/, ''), vaultUrl.replace(/\/$/, ''));
      for (const op of ['encrypt', 'decrypt', 'sign', 'verify', 'wrapKey', 'unwrapKey'] as const) {
        assert.ok(k.keyOperations?.includes(op), `key_ops has ${op}`);
      }
      assert.ok(k.properties.createdOn instanceof Date);
      assert.ok(Math.abs(k.properties.createdOn!.getTime() - Date.now()) < 120_000);
      assert.equal(k.properties.recoverableDays, 7);
    }
  });

  test('getKey returns the latest version and any version by id', async () => {
    const name = keyName('get');
    const v1 = await client.createRsaKey(name);
    const v2 = await client.rotateKey(name);
    const latest = await client.getKey(name);
    assert.equal(latest.properties.version, v2.properties.version);
    assert.deepEqual(Buffer.from(latest.key!.n!), Buffer.from(v2.key!.n!));
    const old = await client.getKey(name, { version: v1.properties.version! });
    assert.equal(old.properties.version, v1.properties.version);
    assert.equal(old.id, v1.id);
    assert.deepEqual(Buffer.from(old.key!.n!), Buffer.from(v1.key!.n!));
    await rejectsWith(client.getKey(keyName('missing')), 404);
    await rejectsWith(client.getKey(name, { version: '0123456789abcdef0123456789abcdef' }), 404);
  });

  test('listPropertiesOfKeys lists every key, also across pages', async () => {
    const v = createVault();
    const kc = new KeyClient(v, cred, sdkOptions(p));
    const names = [keyName('l1'), keyName('l2'), keyName('l3')];
    for (const n of names) await kc.createRsaKey(n);
    const seen: string[] = [];
    for await (const props of kc.listPropertiesOfKeys()) {
      seen.push(props.name);
      assert.equal(props.enabled, true);
      assert.equal(props.version, undefined, 'key items carry no version');
    }
    assert.deepEqual(seen.sort(), [...names].sort());
    // Small pages make the SDK follow nextLink.
    const pages: number[] = [];
    const paged: string[] = [];
    for await (const pg of kc.listPropertiesOfKeys().byPage({ maxPageSize: 2 })) {
      pages.push(pg.length);
      paged.push(...pg.map((x) => x.name));
    }
    assert.ok(pages.length >= 2, `expected several pages, got ${JSON.stringify(pages)}`);
    assert.deepEqual(paged.sort(), [...names].sort());
  });

  test('listPropertiesOfKeyVersions shows 2 versions after a rotation', async () => {
    const name = keyName('ver');
    const v1 = await client.createRsaKey(name);
    const v2 = await client.rotateKey(name);
    const versions: string[] = [];
    for await (const props of client.listPropertiesOfKeyVersions(name)) {
      assert.equal(props.name, name);
      versions.push(props.version!);
    }
    assert.equal(versions.length, 2);
    assert.deepEqual(versions.sort(), [v1.properties.version!, v2.properties.version!].sort());
  });

  test('updateKeyProperties: disable blocks getKey (403), enable restores it; dates and tags round-trip', async () => {
    const name = keyName('upd');
    const k = await client.createRsaKey(name);
    const disabled = await client.updateKeyProperties(name, k.properties.version!, { enabled: false });
    assert.equal(disabled.properties.enabled, false);
    await rejectsWith(client.getKey(name), 403);
    await rejectsWith(client.getKey(name, { version: k.properties.version! }), 403);
    const enabled = await client.updateKeyProperties(name, k.properties.version!, { enabled: true });
    assert.equal(enabled.properties.enabled, true);
    assert.equal((await client.getKey(name)).properties.enabled, true);

    const notBefore = new Date(Math.floor(Date.now() / 1000) * 1000 - 3600_000);
    const expiresOn = new Date(Math.floor(Date.now() / 1000) * 1000 + 30 * 86400_000);
    const tags = { env: 'prod', owner: 'team-a' };
    // The version-less overload updates the latest version.
    const updated = await client.updateKeyProperties(name, { notBefore, expiresOn, tags });
    assert.equal(updated.properties.notBefore?.getTime(), notBefore.getTime());
    assert.equal(updated.properties.expiresOn?.getTime(), expiresOn.getTime());
    assert.deepEqual(updated.properties.tags, tags);
    const again = await client.getKey(name);
    assert.equal(again.properties.notBefore?.getTime(), notBefore.getTime());
    assert.equal(again.properties.expiresOn?.getTime(), expiresOn.getTime());
    assert.deepEqual(again.properties.tags, tags);
    assert.ok(again.properties.updatedOn!.getTime() >= again.properties.createdOn!.getTime());
    // Narrow the permitted operations.
    const narrowed = await client.updateKeyProperties(name, { keyOps: ['wrapKey', 'unwrapKey'] });
    assert.deepEqual([...narrowed.keyOperations!].sort(), ['unwrapKey', 'wrapKey']);
    // exp before nbf is refused.
    await rejectsWith(client.updateKeyProperties(name, { expiresOn: new Date(notBefore.getTime() - 1000) }), 400);
  });

  test('rotateKey makes a new version and keeps the old one usable', async () => {
    const name = keyName('rot');
    const v1 = await client.createRsaKey(name, { tags: { a: 'b' } });
    const wrapped = await cryptoClient(v1.id!).wrapKey('RSA-OAEP-256', Buffer.from('0123456789abcdef0123456789abcdef'));
    const v2 = await client.rotateKey(name);
    assert.notEqual(v2.properties.version, v1.properties.version);
    assert.notEqual(v2.id, v1.id);
    assert.notDeepEqual(Buffer.from(v2.key!.n!), Buffer.from(v1.key!.n!));
    assert.equal(v2.key?.n?.length, 256, 'same size as before');
    assert.deepEqual(v2.properties.tags, { a: 'b' });
    assert.equal((await client.getKey(name)).properties.version, v2.properties.version);
    const old = await client.getKey(name, { version: v1.properties.version! });
    assert.equal(old.properties.enabled, true);
    const un = await cryptoClient(wrapped.keyID!).unwrapKey('RSA-OAEP-256', wrapped.result);
    assert.equal(Buffer.from(un.result).toString(), '0123456789abcdef0123456789abcdef');
  });

  test('getKeyRotationPolicy / updateKeyRotationPolicy round-trip', async () => {
    const name = keyName('pol');
    await client.createRsaKey(name);
    const def = await client.getKeyRotationPolicy(name);
    assert.ok(Array.isArray(def.lifetimeActions));
    const set = await client.updateKeyRotationPolicy(name, {
      lifetimeActions: [
        { action: 'Rotate', timeAfterCreate: 'P90D' },
        { action: 'Notify', timeBeforeExpiry: 'P30D' },
      ],
      expiresIn: 'P1Y',
    });
    assert.equal(set.expiresIn, 'P1Y');
    const got = await client.getKeyRotationPolicy(name);
    assert.equal(got.expiresIn, 'P1Y');
    const norm = (acts: typeof got.lifetimeActions) =>
      (acts ?? []).map((a) => ({ action: String(a.action).toLowerCase(), timeAfterCreate: a.timeAfterCreate, timeBeforeExpiry: a.timeBeforeExpiry }))
        .sort((x, y) => x.action.localeCompare(y.action));
    assert.deepEqual(norm(got.lifetimeActions), [
      { action: 'notify', timeAfterCreate: undefined, timeBeforeExpiry: 'P30D' },
      { action: 'rotate', timeAfterCreate: 'P90D', timeBeforeExpiry: undefined },
    ]);
    assert.ok(got.id?.includes(`/keys/${name}/rotationpolicy`));
    assert.ok(got.createdOn instanceof Date);
    // A rotation after the policy is set gives the new version the policy's expiry.
    const v2 = await client.rotateKey(name);
    const exp = v2.properties.expiresOn!.getTime() - v2.properties.createdOn!.getTime();
    assert.ok(exp > 364 * 86400_000 && exp < 367 * 86400_000, `expiry ${exp} ms after creation`);
  });

  // ---------------------------------------------------------------- cryptography

  test('wrapKey/unwrapKey with RSA-OAEP and RSA-OAEP-256', async () => {
    const k = await client.createRsaKey(keyName('wrap'));
    const cek = randomBytes(32);
    for (const alg of ['RSA-OAEP', 'RSA-OAEP-256'] as KeyWrapAlgorithm[]) {
      const w = await cryptoClient(k.id!).wrapKey(alg, cek);
      assert.equal(w.algorithm, alg);
      assert.equal(w.keyID, k.id, 'wrapKey names the versioned key');
      assert.equal(w.result.length, 256);
      assert.notDeepEqual(Buffer.from(w.result), cek);
      const u = await cryptoClient(w.keyID!).unwrapKey(alg, w.result);
      assert.deepEqual(Buffer.from(u.result), cek, `${alg} round trip`);
      // A version-less client (latest) also works without rotation in between.
      const u2 = await cryptoClient(`${vaultUrl.replace(/\/$/, '')}/keys/${k.name}`).unwrapKey(alg, w.result);
      assert.deepEqual(Buffer.from(u2.result), cek);
    }
    // Ciphertext wrapped for OAEP-256 does not unwrap as OAEP (SHA-1).
    const w = await cryptoClient(k.id!).wrapKey('RSA-OAEP-256', cek);
    await rejectsWith(cryptoClient(w.keyID!).unwrapKey('RSA-OAEP', w.result), 400);
  });

  test('encrypt/decrypt with RSA-OAEP and RSA-OAEP-256', async () => {
    const k = await client.createRsaKey(keyName('enc'));
    const plaintext = Buffer.from('hello, bring-your-own-key world');
    for (const algorithm of ['RSA-OAEP', 'RSA-OAEP-256'] as const) {
      const e = await cryptoClient(k.id!).encrypt({ algorithm, plaintext });
      assert.equal(e.algorithm, algorithm);
      assert.equal(e.result.length, 256);
      const d = await cryptoClient(e.keyID!).decrypt({ algorithm, ciphertext: e.result });
      assert.deepEqual(Buffer.from(d.result), plaintext, `${algorithm} round trip`);
    }
  });

  test('sign/verify with RS256/384/512 and PS256/384/512; tampered signatures verify false', async () => {
    const k = await client.createRsaKey(keyName('sig'));
    const cc = cryptoClient(k.id!);
    const hashes: Record<string, string> = { '256': 'sha256', '384': 'sha384', '512': 'sha512' };
    for (const alg of ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'] as SignatureAlgorithm[]) {
      const digest = createHash(hashes[alg.slice(2)]).update(`data for ${alg}`).digest();
      const s = await cc.sign(alg, digest);
      assert.equal(s.algorithm, alg);
      assert.equal(s.keyID, k.id);
      assert.equal(s.result.length, 256, `${alg} signature length`);
      assert.equal((await cc.verify(alg, digest, s.result)).result, true, `${alg} verifies`);
      const bad = Buffer.from(s.result);
      bad[bad.length - 1] ^= 0x01;
      assert.equal((await cc.verify(alg, digest, bad)).result, false, `${alg} tampered signature`);
      const otherDigest = createHash(hashes[alg.slice(2)]).update('other data').digest();
      assert.equal((await cc.verify(alg, otherDigest, s.result)).result, false, `${alg} other digest`);
    }
    // A digest of the wrong length is refused.
    await rejectsWith(cc.sign('RS256', randomBytes(20)), 400);
  });

  test('vault signatures verify with node:crypto (RS256, PS256) and node signatures verify in the vault', async () => {
    const k = await client.createRsaKey(keyName('x'));
    const pub = publicKeyOf(k);
    const cc = cryptoClient(k.id!);
    const data = Buffer.from('cross-check me');
    const digest = createHash('sha256').update(data).digest();

    const rs = await cc.sign('RS256', digest);
    assert.equal(nodeVerify('sha256', data, pub, Buffer.from(rs.result)), true, 'RS256 verifies with node:crypto');
    const ps = await cc.sign('PS256', digest);
    assert.equal(
      nodeVerify('sha256', data, { key: pub, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, Buffer.from(ps.result)),
      true, 'PS256 verifies with node:crypto',
    );
    // signData hashes locally and signs remotely: same result as sign(digest) for deterministic RS256.
    const sd = await cc.signData('RS256', data);
    assert.deepEqual(Buffer.from(sd.result), Buffer.from(rs.result));
    assert.equal((await cc.verifyData('RS256', data, rs.result)).result, true);
    // A random signature of the right length verifies false rather than erroring.
    assert.equal((await cc.verify('PS256', digest, randomBytes(256))).result, false);
    // Imported-key direction: a node-made signature verifies in the vault.
    const privateKey = generateRsaKeySync(2048);
    const jwk = privateKey.export({ format: 'jwk' }) as Record<string, string>;
    const imp = await client.importKey(keyName('xi'), {
      kty: 'RSA', n: Buffer.from(jwk.n, 'base64url'), e: Buffer.from(jwk.e, 'base64url'), d: Buffer.from(jwk.d, 'base64url'),
      p: Buffer.from(jwk.p, 'base64url'), q: Buffer.from(jwk.q, 'base64url'), dp: Buffer.from(jwk.dp, 'base64url'),
      dq: Buffer.from(jwk.dq, 'base64url'), qi: Buffer.from(jwk.qi, 'base64url'),
    });
    const nodeRs = nodeSign('sha256', data, privateKey);
    const nodePs = nodeSign('sha256', data, { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
    const ic = cryptoClient(imp.id!);
    assert.equal((await ic.verify('RS256', digest, nodeRs)).result, true);
    assert.equal((await ic.verify('PS256', digest, nodePs)).result, true);
  });

  test('RSA1_5 is refused by the vault for unwrapKey and decrypt (400, names RSA1_5)', async () => {
    const k = await client.createRsaKey(keyName('r15'));
    const ct = publicEncrypt({ key: publicKeyOf(k), padding: constants.RSA_PKCS1_PADDING }, randomBytes(32));
    const cc = cryptoClient(k.id!);
    await rejectsWith(cc.unwrapKey('RSA1_5', ct), 400, /RSA1_5/);
    await rejectsWith(cc.decrypt({ algorithm: 'RSA1_5', ciphertext: ct }), 400, /RSA1_5/);
  });

  // ---------------------------------------------------------------- soft-delete

  test('soft-delete, 409 on re-create, recover, delete again and purge', async () => {
    const name = keyName('del');
    const k = await client.createRsaKey(name);
    const poller = await client.beginDeleteKey(name, POLL);
    const deleted = await poller.pollUntilDone();
    assert.equal(deleted.name, name);
    assert.ok(deleted.properties.recoveryId?.endsWith(`/deletedkeys/${name}`));
    await rejectsWith(client.getKey(name), 404);

    const dk = await client.getDeletedKey(name);
    assert.equal(dk.name, name);
    assert.equal(dk.properties.version, k.properties.version);
    assert.ok(dk.properties.recoveryId?.includes(`/deletedkeys/${name}`));
    assert.ok(dk.properties.deletedOn instanceof Date);
    assert.ok(dk.properties.scheduledPurgeDate instanceof Date);
    const days = (dk.properties.scheduledPurgeDate!.getTime() - dk.properties.deletedOn!.getTime()) / 86400_000;
    assert.ok(Math.abs(days - 7) < 0.01, `purge scheduled ${days} days after deletion`);

    const listed: string[] = [];
    for await (const d of client.listDeletedKeys()) listed.push(d.name);
    assert.ok(listed.includes(name), 'listDeletedKeys includes it');
    const live: string[] = [];
    for await (const d of client.listPropertiesOfKeys()) live.push(d.name);
    assert.ok(!live.includes(name), 'listPropertiesOfKeys no longer includes it');

    await rejectsWith(client.createRsaKey(name), 409);

    const recovered = await (await client.beginRecoverDeletedKey(name, POLL)).pollUntilDone();
    assert.equal(recovered.name, name);
    const back = await client.getKey(name);
    assert.equal(back.properties.version, k.properties.version);
    assert.deepEqual(Buffer.from(back.key!.n!), Buffer.from(k.key!.n!));
    await rejectsWith(client.getDeletedKey(name), 404);

    await (await client.beginDeleteKey(name, POLL)).pollUntilDone();
    await client.purgeDeletedKey(name);
    await rejectsWith(client.getDeletedKey(name), 404);
    await rejectsWith(client.getKey(name), 404);
    // The name is free again.
    const fresh = await client.createRsaKey(name);
    assert.notEqual(fresh.properties.version, k.properties.version);
  });

  test('purgeDeletedKey is refused (403) in a vault with purge protection; recover still works', async () => {
    const pv = createVault('--enable-purge-protection');
    const kc = new KeyClient(pv, cred, sdkOptions(p));
    const name = keyName('pp');
    await kc.createRsaKey(name);
    await (await kc.beginDeleteKey(name, POLL)).pollUntilDone();
    const dk = await kc.getDeletedKey(name);
    assert.equal(dk.properties.recoveryLevel, 'CustomizedRecoverable');
    await rejectsWith(kc.purgeDeletedKey(name), 403);
    assert.equal((await kc.getDeletedKey(name)).name, name, 'still soft-deleted');
    await (await kc.beginRecoverDeletedKey(name, POLL)).pollUntilDone();
    assert.equal((await kc.getKey(name)).name, name);
  });

  // ---------------------------------------------------------------- backup / restore

  test('backupKey/restoreKeyBackup: versions and key material survive purge; other vault of the tenant; tampering and other tenants refused', async () => {
    const name = keyName('bak');
    const v1 = await client.createRsaKey(name);
    const v2 = await client.rotateKey(name);
    const cek = randomBytes(32);
    const w1 = await cryptoClient(v1.id!).wrapKey('RSA-OAEP-256', cek);
    const w2 = await cryptoClient(v2.id!).wrapKey('RSA-OAEP-256', cek);
    assert.ok(w1.keyID!.endsWith(v1.properties.version!));
    assert.ok(w2.keyID!.endsWith(v2.properties.version!));

    const blob = await client.backupKey(name);
    assert.ok(blob instanceof Uint8Array && blob.length > 100);

    // Restoring over an existing key is a conflict.
    await rejectsWith(client.restoreKeyBackup(blob), 409);

    await (await client.beginDeleteKey(name, POLL)).pollUntilDone();
    await client.purgeDeletedKey(name);
    await rejectsWith(client.getKey(name), 404);

    const restored = await client.restoreKeyBackup(blob);
    assert.equal(restored.name, name);
    assert.equal(restored.properties.version, v2.properties.version, 'latest version id comes back');
    const versions: string[] = [];
    for await (const v of client.listPropertiesOfKeyVersions(name)) versions.push(v.version!);
    assert.deepEqual(versions.sort(), [v1.properties.version!, v2.properties.version!].sort());
    assert.deepEqual(Buffer.from((await client.getKey(name, { version: v1.properties.version! })).key!.n!), Buffer.from(v1.key!.n!));
    assert.deepEqual(Buffer.from((await cryptoClient(w1.keyID!).unwrapKey('RSA-OAEP-256', w1.result)).result), cek);
    assert.deepEqual(Buffer.from((await cryptoClient(w2.keyID!).unwrapKey('RSA-OAEP-256', w2.result)).result), cek);

    // Another vault of the same tenant.
    const other = createVault();
    const oc = new KeyClient(other, cred, sdkOptions(p));
    const there = await oc.restoreKeyBackup(blob);
    assert.equal(there.name, name);
    assert.equal(there.properties.version, v2.properties.version);
    assert.ok(there.id!.startsWith(new URL(other).origin + '/'), 'kid names the other vault');
    const oldThere = `${new URL(other).origin}/keys/${name}/${v1.properties.version}`;
    assert.deepEqual(Buffer.from((await cryptoClient(oldThere).unwrapKey('RSA-OAEP-256', w1.result)).result), cek);

    // A tampered blob.
    const tampered = Buffer.from(blob);
    tampered[tampered.length - 20] ^= 0x55;
    const third = new KeyClient(createVault(), cred, sdkOptions(p));
    await rejectsWith(third.restoreKeyBackup(tampered), 400);
    const truncated = Buffer.from(blob).subarray(0, 40);
    await rejectsWith(third.restoreKeyBackup(truncated), 400);

    // A vault in another tenant.
    const t = p.cli('tenant', 'create', '--name', 'other' + Date.now());
    assert.ok(t.tenantId && t.admin?.appId && t.admin?.password, `tenant create output: ${JSON.stringify(t)}`);
    const otherCred: Cred = { tenantId: t.tenantId, clientId: t.admin.appId, clientSecret: t.admin.password };
    const tok = await p.token(otherCred, 'https://management.azure.com');
    const vn = vaultName('ot');
    const res = await p.http('PUT', `${p.origin}/tenants/${t.tenantId}/providers/Microsoft.KeyVault/vaults/${vn}?api-version=2023-07-01`, {
      token: tok, body: { location: 'eastus', properties: {} },
    });
    assert.ok(res.status === 200 || res.status === 201, `vault create in other tenant: ${res.status} ${res.text}`);
    const foreign = new KeyClient(res.json.properties.vaultUri, p.credential(otherCred), sdkOptions(p));
    // The other tenant's admin can use its own vault...
    await foreign.createRsaKey(keyName('own'));
    // ...but not restore our backup into it.
    await rejectsWith(foreign.restoreKeyBackup(blob), 400);
    // And a token of our tenant is not accepted by its vault.
    const ours = await p.token(p.admin);
    const r401 = await p.http('GET', `${new URL(res.json.properties.vaultUri).origin}/keys?api-version=7.5`, { token: ours });
    assert.equal(r401.status, 401);
  });

  // ---------------------------------------------------------------- import

  test('importKey takes a node:crypto JWK, never returns private parts, and unwraps a local wrap', async () => {
    const privateKey = generateRsaKeySync(2048);
    const publicKey = createPublicKey(privateKey);
    const jwk = privateKey.export({ format: 'jwk' }) as Record<string, string>;
    const buf = (f: string) => Buffer.from(jwk[f], 'base64url');
    const name = keyName('imp');
    const imp = await client.importKey(name, {
      kty: 'RSA', n: buf('n'), e: buf('e'), d: buf('d'), p: buf('p'), q: buf('q'), dp: buf('dp'), dq: buf('dq'), qi: buf('qi'),
    }, { tags: { source: 'node' } });
    assert.equal(imp.name, name);
    assert.equal(b64u(imp.key!.n!), jwk.n, 'same modulus');
    assert.equal(b64u(imp.key!.e!), jwk.e);
    for (const f of ['d', 'p', 'q', 'dp', 'dq', 'qi'] as const) assert.equal(imp.key![f], undefined, `SDK key has no ${f}`);
    assert.deepEqual(imp.properties.tags, { source: 'node' });

    // The raw wire response carries no private parts either.
    const tok = await p.token(p.admin);
    const raw = await p.http('GET', `${new URL(vaultUrl).origin}/keys/${name}/?api-version=7.5`, { token: tok });
    assert.equal(raw.status, 200);
    for (const f of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(raw.json.key[f], undefined, `wire key has no ${f}`);
    assert.equal(raw.json.key.n, jwk.n);

    const cek = randomBytes(32);
    const wrapped = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, cek);
    const un = await cryptoClient(imp.id!).unwrapKey('RSA-OAEP-256', wrapped);
    assert.deepEqual(Buffer.from(un.result), cek);

    // A JWK without private parts cannot be imported.
    await rejectsWith(client.importKey(keyName('pub'), { kty: 'RSA', n: buf('n'), e: buf('e') }), 400);
  });

  // ---------------------------------------------------------------- identities

  test('a managed identity with get/list/wrapKey/unwrapKey wraps and unwraps, cannot create (403), and is locked out once deleted (401)', async () => {
    const v = vaultName('mi');
    const vaultUri = p.cli('vault', 'create', '--name', v, '--location', 'eastus', '--retention-days', '7').properties.vaultUri as string;
    const admin = new KeyClient(vaultUri, cred, sdkOptions(p));
    const kek = await admin.createRsaKey(keyName('kek'));
    const idName = keyName('app');
    const id = createIdentity(p, idName);
    p.cli('vault', 'set-policy', '--name', v, '--object-id', id.objectId, '--key-permissions', 'get', 'list', 'wrapKey', 'unwrapKey');

    const idCred = p.credential(id);
    const ic = new KeyClient(vaultUri, idCred, sdkOptions(p));
    assert.equal((await ic.getKey(kek.name)).properties.version, kek.properties.version);
    const names: string[] = [];
    for await (const k of ic.listPropertiesOfKeys()) names.push(k.name);
    assert.ok(names.includes(kek.name));

    const cek = randomBytes(32);
    const cc = new CryptographyClient(kek.id!, idCred, sdkOptions(p));
    const w = await cc.wrapKey('RSA-OAEP-256', cek);
    const unwrapper = new CryptographyClient(w.keyID!, idCred, sdkOptions(p));
    assert.deepEqual(Buffer.from((await unwrapper.unwrapKey('RSA-OAEP-256', w.result)).result), cek);

    await rejectsWith(ic.createRsaKey(keyName('nope')), 403);
    await rejectsWith(cc.sign('RS256', randomBytes(32)), 403);
    await rejectsWith(ic.beginDeleteKey(kek.name, POLL), 403);

    p.cli('identity', 'delete', '--name', idName);
    await rejectsWith(new CryptographyClient(w.keyID!, idCred, sdkOptions(p)).unwrapKey('RSA-OAEP-256', w.result), 401);
    await rejectsWith(unwrapper.unwrapKey('RSA-OAEP-256', w.result), 401);
    // The admin still can.
    assert.deepEqual(Buffer.from((await cryptoClient(w.keyID!).unwrapKey('RSA-OAEP-256', w.result)).result), cek);
  });

  // ---------------------------------------------------------------- client variants

  test('KeyClient.getCryptographyClient works, latest and pinned to a version', async () => {
    const name = keyName('gcc');
    const v1 = await client.createRsaKey(name);
    const latest = client.getCryptographyClient(name);
    const cek = randomBytes(32);
    const w = await latest.wrapKey('RSA-OAEP-256', cek);
    assert.equal(w.keyID, v1.id);
    assert.deepEqual(Buffer.from((await latest.unwrapKey('RSA-OAEP-256', w.result)).result), cek);
    const digest = createHash('sha256').update('x').digest();
    const s = await latest.sign('PS256', digest);
    assert.equal((await latest.verify('PS256', digest, s.result)).result, true);
    await client.rotateKey(name);
    const pinned = client.getCryptographyClient(name, { keyVersion: v1.properties.version });
    assert.deepEqual(Buffer.from((await pinned.unwrapKey('RSA-OAEP-256', w.result)).result), cek);
  });

  test('serviceVersion 7.4 and 7.5 clients work', async () => {
    for (const serviceVersion of ['7.4', '7.5']) {
      const kc = new KeyClient(vaultUrl, cred, { ...sdkOptions(p), serviceVersion });
      const name = keyName(`api${serviceVersion.replace('.', '')}`);
      const k = await kc.createRsaKey(name);
      assert.equal((await kc.getKey(name)).properties.version, k.properties.version);
      const names: string[] = [];
      for await (const x of kc.listPropertiesOfKeys()) names.push(x.name);
      assert.ok(names.includes(name));
      const r = await kc.rotateKey(name);
      assert.notEqual(r.properties.version, k.properties.version);
      const cc = new CryptographyClient(k.id!, cred, { ...sdkOptions(p), serviceVersion } as any);
      const w = await cc.wrapKey('RSA-OAEP-256', Buffer.alloc(32, 7));
      assert.deepEqual(Buffer.from((await cc.unwrapKey('RSA-OAEP-256', w.result)).result), Buffer.alloc(32, 7));
    }
  });
});
