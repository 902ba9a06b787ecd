/**
 * Negative tests: every way a request to pgbyok can be refused, over raw HTTPS against a real running
 * instance. Each refusal checks (1) the exact status, (2) Azure's error envelope with a useful message,
 * (3) that the operation was not performed, (4) that the refusal is in the audit log, and (5) that the
 * service keeps serving afterwards.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { generateRsaKeySync } from '../src/lib/rsa-keygen.js';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SignJWT, decodeJwt, decodeProtectedHeader } from 'jose';
import { createIdentity, MGMT_RESOURCE, startPgbyok, vaultName, VAULT_RESOURCE, type Cred, type Pgbyok } from './harness.js';

type Res = Awaited<ReturnType<Pgbyok['http']>>;

const API = 'api-version=7.5';
/** Where a client on this machine comes from by default: vault names under localhost resolve to ::1 first. */
const LOOPBACK = '::1';
const MGMT_API = 'api-version=2023-07-01';
const CREATE = { kty: 'RSA', key_size: 2048, attributes: {} };
const K1 = 'k1';
const b64u = (b: Buffer | string) => Buffer.from(b).toString('base64url');
const uniq = () => `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;

/** Asserts Azure's error envelope: exact status, code, optional innererror code and message pattern. */
function assertError(res: Res, status: number, code: string, opts: { inner?: string; message?: RegExp } = {}) {
  assert.equal(res.status, status, `expected HTTP ${status}, got ${res.status}: ${res.text}`);
  assert.ok(res.json && typeof res.json.error === 'object', `expected a JSON {error:{code,message}} body, got: ${res.text}`);
  assert.equal(res.json.error.code, code, res.text);
  assert.equal(typeof res.json.error.message, 'string');
  assert.ok(res.json.error.message.length > 10, `the message should explain the refusal: ${res.text}`);
  if (opts.inner !== undefined) assert.equal(res.json.error.innererror?.code, opts.inner, res.text);
  if (opts.message) assert.match(res.json.error.message, opts.message);
}

function requestIdOf(res: Res): string {
  const id = res.headers['x-ms-request-id'];
  assert.equal(typeof id, 'string', 'every reply carries x-ms-request-id');
  return id as string;
}

describe('vault refusals', () => {
  let p: Pgbyok;
  /** A second platform whose tokens live 2 s, only for the expired-token test. */
  let q: Pgbyok | undefined;
  let tid: string;
  let adminVault: string;
  let adminMgmt: string;
  let V: string;
  let vaultUri: string;
  let k1Version: string;

  const u = (path: string, query: string | null = API) => `${vaultUri}${path}${query === null ? '' : `?${query}`}`;
  const asAdmin = (method: string, path: string, body?: unknown) => p.http(method, u(path), { token: adminVault, body });
  const keyStatus = async (name: string) => (await asAdmin('GET', `keys/${name}/`)).status;

  /** The tenant's audit records (newest last), optionally of one vault, by request id. */
  async function auditRecords(filter: { vault?: string } = {}): Promise<Map<string, any>> {
    const qs = new URLSearchParams({ top: '5000', ...(filter.vault ? { vault: filter.vault } : {}) });
    const r = await p.http('GET', `${p.origin}/tenants/${tid}/providers/Microsoft.KeyVault/auditEvents?${qs}&${MGMT_API}`, { token: adminMgmt });
    assert.equal(r.status, 200, r.text);
    return new Map(r.json.value.map((x: any) => [x.requestId, x]));
  }

  /** Asserts that a refused request left an audit record with result Failure and its status (and error code). */
  async function assertAudited(res: Res, filter: { vault?: string }, errorCode?: string, records?: Map<string, any>) {
    const id = requestIdOf(res);
    const rec = (records ?? (await auditRecords(filter))).get(id);
    assert.ok(rec, `an audit record of refused request ${id} (HTTP ${res.status})`);
    assert.equal(rec.result, 'Failure');
    assert.equal(rec.httpStatus, res.status);
    if (errorCode !== undefined) assert.equal(rec.errorCode, errorCode);
    return rec;
  }

  async function assertServing() {
    const r = await asAdmin('GET', `keys/${K1}/`);
    assert.equal(r.status, 200, `the service should keep serving: ${r.text}`);
    const h = await p.http('GET', `${p.origin}/health`);
    assert.equal(h.status, 200);
  }

  before(async () => {
    const started = await Promise.allSettled([
      startPgbyok(),
      startPgbyok({ PGBYOK_TOKEN_LIFETIME_SECONDS: '2', PGBYOK_CLOCK_TOLERANCE_SECONDS: '1' }),
    ]);
    if (started[0].status === 'fulfilled') p = started[0].value;
    if (started[1].status === 'fulfilled') q = started[1].value;
    const failed = started.find((s) => s.status === 'rejected') as PromiseRejectedResult | undefined;
    if (failed) throw failed.reason;

    tid = p.admin.tenantId;
    [adminVault, adminMgmt] = await Promise.all([p.token(p.admin), p.token(p.admin, MGMT_RESOURCE)]);
    V = vaultName('ref');
    vaultUri = p.cli('vault', 'create', '--name', V, '--location', 'eastus').properties.vaultUri;
    assert.match(vaultUri, /\/$/);
    const k = await asAdmin('POST', `keys/${K1}/create`, CREATE);
    assert.equal(k.status, 200, k.text);
    k1Version = k.json.key.kid.split('/').pop();
  });

  after(async () => {
    await Promise.all([p?.stop(), q?.stop()]);
  });

  // ---------------------------------------------------------------- authentication (401)

  test('no token: 401 with the exact challenge, before the body is read; nothing created', async () => {
    const challenge = `Bearer authorization="${p.origin}/${tid}", resource="https://vault.localhost:${new URL(vaultUri).port}"`;

    const res = await p.http('POST', u('keys/nt1/create'), { body: CREATE });
    assertError(res, 401, 'Unauthorized', { message: /missing a Bearer/i });
    assert.equal(res.headers['www-authenticate'], challenge);

    // The SDK's first request: Content-Type application/json, Content-Length 0, no Authorization.
    const empty = await p.http('POST', u('keys/nt2/create'), { rawBody: '', headers: { 'content-type': 'application/json' } });
    assertError(empty, 401, 'Unauthorized', { message: /missing a Bearer/i });
    assert.equal(empty.headers['www-authenticate'], challenge);

    // A non-Bearer scheme is no token either.
    const basic = await p.http('POST', u('keys/nt3/create'), { body: CREATE, headers: { authorization: 'Basic dXNlcjpwdw==' } });
    assertError(basic, 401, 'Unauthorized');
    assert.equal(basic.headers['www-authenticate'], challenge);

    for (const n of ['nt1', 'nt2', 'nt3']) assert.equal(await keyStatus(n), 404, `key ${n} must not exist`);
    const records = await auditRecords({ vault: V });
    for (const r of [res, empty, basic]) {
      const rec = await assertAudited(r, { vault: V }, 'Unauthorized', records);
      assert.equal(rec.operation, 'KeyCreate');
      assert.equal(rec.callerObjectId, undefined);
      assert.equal(rec.sourceAddress, LOOPBACK);
    }
    await assertServing();
  });

  test('expired token: 401 naming expiry; nothing created', async () => {
    assert.ok(q, 'the short-token platform is running');
    const qv = vaultName('exp');
    const qUri: string = q.cli('vault', 'create', '--name', qv, '--location', 'eastus').properties.vaultUri;
    const token = await q.token(q.admin);
    const ok = await q.http('GET', `${qUri}keys?${API}`, { token });
    assert.equal(ok.status, 200, `a fresh token works: ${ok.text}`);

    await sleep(4000); // lifetime 2 s + tolerance 1 s, plus rounding
    const res = await q.http('POST', `${qUri}keys/exp1/create?${API}`, { token, body: CREATE });
    assertError(res, 401, 'Unauthorized', { message: /expired/i });
    assert.equal(res.headers['www-authenticate'], `Bearer authorization="${q.origin}/${q.admin.tenantId}", resource="https://vault.localhost:${new URL(qUri).port}"`);

    const fresh = await q.token(q.admin);
    const check = await q.http('GET', `${qUri}keys/exp1/?${API}`, { token: fresh });
    assertError(check, 404, 'KeyNotFound');
    const id = requestIdOf(res);
    const recs: any[] = q.cli('audit', 'list', '--vault-name', qv, '--top', '50');
    const rec = recs.find((r) => r.requestId === id);
    assert.ok(rec, 'the expired-token refusal is audited');
    assert.equal(rec.result, 'Failure');
    assert.equal(rec.httpStatus, 401);
    assert.equal(rec.errorCode, 'Unauthorized');
    const again = await q.http('GET', `${qUri}keys?${API}`, { token: await q.token(q.admin) });
    assert.equal(again.status, 200, again.text);
    assert.equal(q.cli('audit', 'verify').valid, true);
  });

  let crossTenantPut: Res | undefined;
  test("another tenant's token: 401 on this tenant's vault and management API; nothing created", async () => {
    const t = p.cli('tenant', 'create', '--name', `t${uniq()}`);
    assert.notEqual(t.tenantId, tid);
    const cred: Cred = { tenantId: t.tenantId, clientId: t.admin.appId, clientSecret: t.admin.password };
    const token = await p.token(cred);

    const res = await p.http('POST', u('keys/ot1/create'), { token, body: CREATE });
    assertError(res, 401, 'Unauthorized', { message: /issuer|tenant/i });
    assert.equal(res.headers['www-authenticate'], `Bearer authorization="${p.origin}/${tid}", resource="https://vault.localhost:${new URL(vaultUri).port}"`);
    assert.equal(await keyStatus('ot1'), 404);

    const del = await p.http('DELETE', u(`keys/${K1}`), { token });
    assertError(del, 401, 'Unauthorized');
    assert.equal(await keyStatus(K1), 200, 'the key was not deleted');

    // Owner of its own tenant, nothing in ours.
    const mgmtToken = await p.token(cred, MGMT_RESOURCE);
    const other = vaultName('otv');
    const put = await p.http('PUT', `${p.origin}/tenants/${tid}/providers/Microsoft.KeyVault/vaults/${other}?${MGMT_API}`, {
      token: mgmtToken, body: { location: 'eastus', properties: {} },
    });
    assertError(put, 401, 'Unauthorized', { message: /tenant/i });
    const gone = await p.http('GET', `${p.origin}/tenants/${tid}/providers/Microsoft.KeyVault/vaults/${other}?${MGMT_API}`, { token: adminMgmt });
    assert.equal(gone.status, 404, 'the vault was not created');

    const records = await auditRecords();
    const rec = await assertAudited(res, { vault: V }, 'Unauthorized', records);
    assert.equal(rec.vault, V);
    await assertAudited(del, {}, 'Unauthorized', records);
    crossTenantPut = put;
    await assertServing();
  });

  test("another tenant's refused management call is in this tenant's audit log",
    async () => {
      assert.ok(crossTenantPut, 'the cross-tenant test ran');
      const rec = await assertAudited(crossTenantPut, {}, 'Unauthorized');
      assert.equal(rec.tenantId, tid);
      assert.equal(rec.operation, 'VaultCreate');
    });

  test('forged, tampered and garbage tokens: 401; nothing created', async () => {
    const good = await p.token(p.admin);
    const claims = decodeJwt(good);
    const header = decodeProtectedHeader(good);
    const privateKey = generateRsaKeySync(2048);
    const forge = (kid: string) => new SignJWT({ ...claims }).setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid }).sign(privateKey);
    const [h, , s] = good.split('.');
    const tampered = `${h}.${b64u(JSON.stringify({ ...claims, exp: (claims.exp ?? 0) + 86400, appid: 'attacker' }))}.${s}`;
    const none = `${b64u(JSON.stringify({ alg: 'none', typ: 'JWT', kid: header.kid }))}.${b64u(JSON.stringify(claims))}.`;

    const cases: [string, string, RegExp][] = [
      ['forged with the real kid', await forge(String(header.kid)), /signature/i],
      ['forged with our own kid', await forge('attacker-key-1'), /not signed by this identity service/i],
      ['payload modified, original signature', tampered, /signature/i],
      ['alg none', none, /refused|signature|well-formed/i],
      ['garbage', 'abc', /well-formed/i],
    ];
    const refused: Res[] = [];
    for (const [i, [what, token, message]] of cases.entries()) {
      const res = await p.http('POST', u(`keys/forged${i}/create`), { token, body: CREATE });
      assert.equal(res.status, 401, `${what}: ${res.text}`);
      assertError(res, 401, 'Unauthorized', { message });
      assert.ok(res.headers['www-authenticate'], `${what}: a challenge`);
      assert.equal(await keyStatus(`forged${i}`), 404, `${what}: key must not exist`);
      refused.push(res);
    }
    const records = await auditRecords({ vault: V });
    for (const res of refused) {
      const rec = await assertAudited(res, { vault: V }, 'Unauthorized', records);
      assert.equal(rec.callerObjectId, undefined, 'a refused token names no caller');
    }
    // The genuine token still works.
    const ok = await p.http('GET', u(`keys/${K1}/`), { token: good });
    assert.equal(ok.status, 200, ok.text);
    await assertServing();
  });

  test("deleted identity: its unexpired token is refused at once; nothing deleted", async () => {
    const name = `gone${uniq()}`;
    const id = createIdentity(p, name);
    p.cli('vault', 'set-policy', '--name', V, '--object-id', id.objectId, '--key-permissions', 'all');
    const token = await p.token(id);
    const ok = await p.http('GET', u(`keys/${K1}/`), { token });
    assert.equal(ok.status, 200, `the identity's token works: ${ok.text}`);

    p.cli('identity', 'delete', '--name', name);
    const res = await p.http('DELETE', u(`keys/${K1}`), { token });
    assertError(res, 401, 'Unauthorized', { message: /no longer exists/i });
    assert.equal(await keyStatus(K1), 200, 'the key was not deleted');
    const deleted = await asAdmin('GET', `deletedkeys/${K1}`);
    assert.equal(deleted.status, 404);

    const noToken = await p.http('POST', `${p.origin}/${id.tenantId}/oauth2/v2.0/token`, {
      rawBody: new URLSearchParams({ grant_type: 'client_credentials', client_id: id.clientId, client_secret: id.clientSecret, scope: `${VAULT_RESOURCE}/.default` }).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(noToken.status, 401, 'no new token for a deleted identity');
    assert.equal(noToken.json?.error, 'invalid_client');

    const rec = await assertAudited(res, { vault: V }, 'Unauthorized');
    assert.equal(rec.operation, 'KeyDelete');
    assert.equal(rec.key, K1);
    await assertServing();
  });

  test('management token on the vault (and vault token on management): 401 wrong audience', async () => {
    const mgmtToken = await p.token(p.admin, MGMT_RESOURCE);
    const res = await p.http('POST', u('keys/aud1/create'), { token: mgmtToken, body: CREATE });
    assertError(res, 401, 'Unauthorized', { message: /audience/i });
    assert.ok(res.headers['www-authenticate']);
    assert.equal(await keyStatus('aud1'), 404);

    const other = vaultName('aud');
    const put = await p.http('PUT', `${p.origin}/tenants/${tid}/providers/Microsoft.KeyVault/vaults/${other}?${MGMT_API}`, {
      token: adminVault, body: { location: 'eastus', properties: {} },
    });
    assertError(put, 401, 'Unauthorized', { message: /audience/i });
    const gone = await p.http('GET', `${p.origin}/tenants/${tid}/providers/Microsoft.KeyVault/vaults/${other}?${MGMT_API}`, { token: adminMgmt });
    assert.equal(gone.status, 404);

    const records = await auditRecords();
    await assertAudited(res, {}, 'Unauthorized', records);
    await assertAudited(put, {}, 'Unauthorized', records);
    await assertServing();
  });

  // ---------------------------------------------------------------- access policies (403)

  test('missing permission: each operation refused 403 AccessDenied naming the permission; nothing changed', async () => {
    // Material the refused calls would act on, made by the admin.
    const ver = k1Version;
    const plain = randomBytes(32);
    const digest = createHash('sha256').update('refusal').digest();
    const wrapped = await asAdmin('POST', `keys/${K1}/${ver}/wrapkey`, { alg: 'RSA-OAEP-256', value: b64u(plain) });
    assert.equal(wrapped.status, 200, wrapped.text);
    const encrypted = await asAdmin('POST', `keys/${K1}/${ver}/encrypt`, { alg: 'RSA-OAEP-256', value: b64u(plain) });
    assert.equal(encrypted.status, 200, encrypted.text);
    const signed = await asAdmin('POST', `keys/${K1}/${ver}/sign`, { alg: 'RS256', value: b64u(digest) });
    assert.equal(signed.status, 200, signed.text);
    assert.equal((await asAdmin('POST', 'keys/kdel/create', CREATE)).status, 200);
    assert.equal((await asAdmin('DELETE', 'keys/kdel')).status, 200);
    assert.equal((await asAdmin('POST', 'keys/kbk/create', CREATE)).status, 200);
    const backup = await asAdmin('POST', 'keys/kbk/backup');
    assert.equal(backup.status, 200, backup.text);
    assert.equal((await asAdmin('DELETE', 'keys/kbk')).status, 200);
    assert.equal((await asAdmin('DELETE', 'deletedkeys/kbk')).status, 204);
    const policyBefore = (await asAdmin('GET', `keys/${K1}/rotationpolicy`)).json;
    const jwk = generateRsaKeySync(2048).export({ format: 'jwk' });

    const name = `getonly${uniq()}`;
    const id = createIdentity(p, name);
    p.cli('vault', 'set-policy', '--name', V, '--object-id', id.objectId, '--key-permissions', 'get');
    const token = await p.token(id);
    const allowed = await p.http('GET', u(`keys/${K1}/`), { token });
    assert.equal(allowed.status, 200, `get is granted: ${allowed.text}`);

    const cases: { perm: string; method: string; path: string; body?: unknown }[] = [
      { perm: 'create', method: 'POST', path: 'keys/pk-new/create', body: CREATE },
      { perm: 'import', method: 'PUT', path: 'keys/pk-imp', body: { key: jwk, attributes: {} } },
      { perm: 'list', method: 'GET', path: 'keys' },
      { perm: 'update', method: 'PATCH', path: `keys/${K1}/`, body: { attributes: { enabled: false }, tags: { changed: 'yes' } } },
      { perm: 'delete', method: 'DELETE', path: `keys/${K1}` },
      { perm: 'recover', method: 'POST', path: 'deletedkeys/kdel/recover' },
      { perm: 'backup', method: 'POST', path: `keys/${K1}/backup` },
      { perm: 'restore', method: 'POST', path: 'keys/restore', body: { value: backup.json.value } },
      { perm: 'purge', method: 'DELETE', path: 'deletedkeys/kdel' },
      { perm: 'rotate', method: 'POST', path: `keys/${K1}/rotate` },
      { perm: 'getrotationpolicy', method: 'GET', path: `keys/${K1}/rotationpolicy` },
      {
        perm: 'setrotationpolicy', method: 'PUT', path: `keys/${K1}/rotationpolicy`,
        body: { lifetimeActions: [{ trigger: { timeAfterCreate: 'P30D' }, action: { type: 'Rotate' } }], attributes: { expiryTime: 'P90D' } },
      },
      { perm: 'wrapKey', method: 'POST', path: `keys/${K1}/${ver}/wrapkey`, body: { alg: 'RSA-OAEP-256', value: b64u(plain) } },
      { perm: 'unwrapKey', method: 'POST', path: `keys/${K1}/${ver}/unwrapkey`, body: { alg: 'RSA-OAEP-256', value: wrapped.json.value } },
      { perm: 'encrypt', method: 'POST', path: `keys/${K1}/${ver}/encrypt`, body: { alg: 'RSA-OAEP-256', value: b64u(plain) } },
      { perm: 'decrypt', method: 'POST', path: `keys/${K1}/${ver}/decrypt`, body: { alg: 'RSA-OAEP-256', value: encrypted.json.value } },
      { perm: 'sign', method: 'POST', path: `keys/${K1}/${ver}/sign`, body: { alg: 'RS256', value: b64u(digest) } },
      { perm: 'verify', method: 'POST', path: `keys/${K1}/${ver}/verify`, body: { alg: 'RS256', digest: b64u(digest), value: signed.json.value } },
    ];
    const refused: [string, Res][] = [];
    for (const c of cases) {
      const res = await p.http(c.method, u(c.path), { token, body: c.body });
      assert.equal(res.status, 403, `${c.perm}: ${res.status} ${res.text}`);
      assertError(res, 403, 'Forbidden', { inner: 'AccessDenied', message: new RegExp(`does not have keys ${c.perm} permission`) });
      assert.ok(res.json.error.message.includes(id.objectId), `${c.perm}: the message names the caller`);
      assert.ok(!('value' in res.json) && !('key' in res.json), `${c.perm}: no result handed out`);
      refused.push([c.perm, res]);
    }

    // An identity with no policy at all cannot even get.
    const none = createIdentity(p, `nopolicy${uniq()}`);
    const noneRes = await p.http('GET', u(`keys/${K1}/`), { token: await p.token(none) });
    assertError(noneRes, 403, 'Forbidden', { inner: 'AccessDenied', message: /does not have keys get permission/ });
    assert.ok(!('key' in noneRes.json));

    // Nothing changed.
    assert.equal(await keyStatus('pk-new'), 404, 'create was not performed');
    assert.equal(await keyStatus('pk-imp'), 404, 'import was not performed');
    const k1 = await asAdmin('GET', `keys/${K1}/`);
    assert.equal(k1.status, 200, 'delete was not performed');
    assert.equal(k1.json.attributes.enabled, true, 'update was not performed');
    assert.equal(k1.json.tags, undefined, 'update was not performed');
    assert.equal(k1.json.key.kid.split('/').pop(), ver, 'rotate was not performed');
    const versions = await asAdmin('GET', `keys/${K1}/versions`);
    assert.equal(versions.json.value.length, 1, 'no new version');
    assert.deepEqual((await asAdmin('GET', `keys/${K1}/rotationpolicy`)).json, policyBefore, 'rotation policy unchanged');
    assert.equal(await keyStatus('kdel'), 404, 'recover was not performed');
    assert.equal((await asAdmin('GET', 'deletedkeys/kdel')).status, 200, 'purge was not performed');
    assert.equal(await keyStatus('kbk'), 404, 'restore was not performed');
    assert.equal((await asAdmin('GET', 'deletedkeys/kbk')).status, 404, 'restore was not performed');

    const records = await auditRecords({ vault: V });
    for (const [perm, res] of refused) {
      const rec = records.get(requestIdOf(res));
      assert.ok(rec, `${perm}: refusal audited`);
      assert.equal(rec.result, 'Failure', perm);
      assert.equal(rec.httpStatus, 403, perm);
      assert.equal(rec.errorCode, 'Forbidden/AccessDenied', perm);
      assert.equal(rec.callerObjectId, id.objectId, perm);
    }
    const noneRec = await assertAudited(noneRes, { vault: V }, 'Forbidden/AccessDenied', records);
    assert.equal(noneRec.callerObjectId, none.objectId);
    assert.equal(noneRec.operation, 'KeyGet');
    await assertServing();
  });

  // ---------------------------------------------------------------- firewall (403)

  test('firewall: default Deny with IP rule, bypass for trusted services, public access disabled', async () => {
    const fw = vaultName('fw');
    const fwUri: string = p.cli('vault', 'create', '--name', fw, '--location', 'eastus',
      '--default-action', 'Deny', '--ip-rules', '127.0.0.2/32', '--bypass', 'None').properties.vaultUri;
    const url = (path: string) => `${fwUri}${path}?${API}`;
    const trusted = {
      cert: readFileSync(join(p.home, 'tls', 'trusted-service.pem'), 'utf8'),
      key: readFileSync(join(p.home, 'secrets', 'trusted-service.key.pem'), 'utf8'),
    };
    const refusals: Res[] = [];
    const expectFirewall = async (res: Res, from: string) => {
      assertError(res, 403, 'Forbidden', { inner: 'ForbiddenByFirewall', message: new RegExp(`Client address: ${from.replace(/\./g, '\\.')}`) });
      refusals.push(res);
    };

    // From ::1 (not in the rules): refused, and the create is not performed.
    const create = await p.http('POST', url('keys/fw1/create'), { token: adminVault, body: CREATE });
    await expectFirewall(create, LOOPBACK);
    const list1 = await p.http('GET', url('keys'), { token: adminVault });
    await expectFirewall(list1, LOOPBACK);

    // From 127.0.0.2 (the rule): admitted, and fw1 was never created.
    const list2 = await p.http('GET', url('keys'), { token: adminVault, localAddress: '127.0.0.2' });
    assert.equal(list2.status, 200, list2.text);
    assert.deepEqual(list2.json.value, [], 'the refused create was not performed');

    // Trusted-service certificate with bypass None: still refused.
    const trustedNone = await p.http('GET', url('keys'), { token: adminVault, ...trusted });
    await expectFirewall(trustedNone, LOOPBACK);

    p.cli('vault', 'update', '--name', fw, '--bypass', 'AzureServices');
    const trustedOk = await p.http('GET', url('keys'), { token: adminVault, ...trusted });
    assert.equal(trustedOk.status, 200, `trusted service admitted with bypass AzureServices: ${trustedOk.text}`);
    const plainStill = await p.http('GET', url('keys'), { token: adminVault });
    await expectFirewall(plainStill, LOOPBACK);

    // Back to bypass None: the certificate no longer helps.
    p.cli('vault', 'update', '--name', fw, '--bypass', 'None');
    const trustedAgain = await p.http('GET', url('keys'), { token: adminVault, ...trusted });
    await expectFirewall(trustedAgain, LOOPBACK);

    // Public network access disabled: even the IP rule's address is refused.
    p.cli('vault', 'update', '--name', fw, '--public-network-access', 'Disabled');
    const ruleRefused = await p.http('POST', url('keys/fw2/create'), { token: adminVault, body: CREATE, localAddress: '127.0.0.2' });
    await expectFirewall(ruleRefused, '127.0.0.2');

    // Open it again to check nothing was created, then close it.
    p.cli('vault', 'update', '--name', fw, '--public-network-access', 'Enabled');
    const after2 = await p.http('GET', url('keys'), { token: adminVault, localAddress: '127.0.0.2' });
    assert.equal(after2.status, 200, after2.text);
    assert.deepEqual(after2.json.value, [], 'no key was created through the firewall');

    const records = await auditRecords({ vault: fw });
    for (const res of refusals) {
      const rec = await assertAudited(res, { vault: fw }, 'Forbidden/ForbiddenByFirewall', records);
      assert.equal(rec.callerObjectId, p.admin.objectId);
    }
    assert.equal(records.get(requestIdOf(create)).sourceAddress, LOOPBACK);
    assert.equal(records.get(requestIdOf(ruleRefused)).sourceAddress, '127.0.0.2');
    await assertServing();
  });

  // ---------------------------------------------------------------- bad requests (400/413)

  const badCreates: { what: string; name: string; body?: unknown; rawBody?: string; query?: string | null; message: RegExp }[] = [
    { what: 'malformed JSON', name: 'bad1', rawBody: '{"kty":"RSA",', message: /not valid JSON/i },
    { what: 'key_size of the wrong type', name: 'bad2', body: { kty: 'RSA', key_size: 'big', attributes: {} }, message: /key_size/ },
    { what: 'attributes.enabled of the wrong type', name: 'bad3', body: { kty: 'RSA', attributes: { enabled: 'yes' } }, message: /enabled/ },
    { what: 'unknown kty', name: 'bad4', body: { kty: 'EC', attributes: {} }, message: /EC/ },
    { what: 'key_size 1024', name: 'bad5', body: { kty: 'RSA', key_size: 1024, attributes: {} }, message: /1024/ },
    { what: 'missing api-version', name: 'bad6', body: CREATE, query: null, message: /api-version/ },
    { what: 'unknown api-version', name: 'bad7', body: CREATE, query: 'api-version=1999-01-01', message: /1999-01-01/ },
  ];
  for (const c of badCreates) {
    test(`bad request: ${c.what} → 400 BadParameter; nothing created`, async () => {
      const res = await p.http('POST', u(`keys/${c.name}/create`, c.query === undefined ? API : c.query), {
        token: adminVault, body: c.body, rawBody: c.rawBody, headers: c.rawBody !== undefined ? { 'content-type': 'application/json' } : {},
      });
      assertError(res, 400, 'BadParameter', { message: c.message });
      assert.equal(await keyStatus(c.name), 404, 'the key must not exist');
      const rec = await assertAudited(res, { vault: V });
      assert.match(rec.errorCode, /^BadParameter/);
      await assertServing();
    });
  }

  test("bad request: key name 'a_b!' → 400 naming it", async () => {
    const res = await p.http('POST', u('keys/a_b!/create'), { token: adminVault, body: CREATE });
    assertError(res, 400, 'BadParameter', { message: /a_b!/ });
    const list = await asAdmin('GET', 'keys');
    assert.ok(!list.json.value.some((k: any) => k.kid.includes('a_b')), 'no such key listed');
    const rec = await assertAudited(res, { vault: V });
    assert.match(rec.errorCode, /^BadParameter/);
    await assertServing();
  });

  test('bad request: invalid base64url and RSA1_5 in wrapKey → 400', async () => {
    const bad = await p.http('POST', u(`keys/${K1}/${k1Version}/wrapkey`), { token: adminVault, body: { alg: 'RSA-OAEP-256', value: '***not base64***' } });
    assertError(bad, 400, 'BadParameter', { message: /base64url/ });
    assert.ok(!('value' in bad.json));
    const rsa15 = await p.http('POST', u(`keys/${K1}/${k1Version}/wrapkey`), { token: adminVault, body: { alg: 'RSA1_5', value: b64u(randomBytes(32)) } });
    assertError(rsa15, 400, 'BadParameter', { message: /RSA1_5/ });
    assert.ok(!('value' in rsa15.json));
    const unwrap15 = await p.http('POST', u(`keys/${K1}/${k1Version}/unwrapkey`), { token: adminVault, body: { alg: 'RSA1_5', value: b64u(randomBytes(256)) } });
    assertError(unwrap15, 400, 'BadParameter', { message: /RSA1_5/ });
    const records = await auditRecords({ vault: V });
    for (const r of [bad, rsa15, unwrap15]) {
      const rec = await assertAudited(r, { vault: V }, undefined, records);
      assert.match(rec.errorCode, /^BadParameter/);
    }
    await assertServing();
  });

  test('percent-encoded query name api%2Dversion is accepted', async () => {
    const res = await p.http('GET', u(`keys/${K1}/`, 'api%2Dversion=7.5'), { token: adminVault });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.key.kid.split('/').pop(), k1Version);
    const res2 = await p.http('GET', u(`keys/${K1}/`, 'api%2Dversion=2025-07-01'), { token: adminVault });
    assert.equal(res2.status, 200, res2.text);
  });

  test('every api-version the SDKs send is accepted (7.0 to 7.6, the previews, 2025-07-01); another is refused naming them', async () => {
    for (const v of ['7.0', '7.1', '7.2', '7.3', '7.4-preview.1', '7.4', '7.5-preview.1', '7.5', '7.6', '2025-07-01']) {
      const res = await p.http('GET', u(`keys/${K1}/`, `api-version=${v}`), { token: adminVault });
      assert.equal(res.status, 200, `${v}: ${res.text}`);
    }
    const bad = await p.http('GET', u(`keys/${K1}/`, 'api-version=7.7-preview.1'), { token: adminVault });
    assertError(bad, 400, 'BadParameter', { message: /The specified version \(7\.7-preview\.1\) is not recognized\. Consider using one of: .*7\.4-preview\.1/ });
  });

  test('vaults are routed by host name: an unknown name or a bare address is 404 VaultNotFound; a TLS server name for another vault is 421', async () => {
    const { port } = new URL(vaultUri);
    assert.equal(new URL(vaultUri).hostname, `${V.toLowerCase()}.vault.localhost`);
    /** One request with its own TLS server name and Host header, to the vault listener on 127.0.0.1. */
    const raw = (servername: string | undefined, host: string) => new Promise<{ status: number; json: any }>((resolve, reject) => {
      const r = httpsRequest({
        host: '127.0.0.1', port, servername, method: 'GET', path: `/keys/${K1}/?${API}`, ca: p.ca,
        headers: { host, authorization: `Bearer ${adminVault}` }, agent: false,
        checkServerIdentity: () => undefined,
      }, (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : undefined }));
      });
      r.on('error', reject);
      r.end();
    });
    const ok = await raw(`${V.toLowerCase()}.vault.localhost`, `${V.toUpperCase()}.VAULT.LOCALHOST:${port}`);
    assert.equal(ok.status, 200, 'the Host names the vault in any case');
    assert.equal(new URL(ok.json.key.kid).origin, new URL(vaultUri).origin, 'the kid names the vault as its vaultUri does');
    const unknown = await raw('nosuchvault.vault.localhost', `nosuchvault.vault.localhost:${port}`);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.code, 'VaultNotFound');
    const bare = await raw(undefined, `127.0.0.1:${port}`);
    assert.equal(bare.status, 404);
    assert.match(bare.json.error.message, /names no vault/);
    const misdirected = await raw(`nosuchvault.vault.localhost`, `${V}.vault.localhost:${port}`);
    assert.equal(misdirected.status, 421);
    assert.equal(misdirected.json.error.code, 'MisdirectedRequest');
    await assertServing();
  });

  test('oversized body (> 256 KiB) → 413 with a JSON error; nothing created; still serving', async () => {
    const body = { kty: 'RSA', key_size: 2048, attributes: {}, tags: { big: 'x'.repeat(300 * 1024) } };
    const res = await p.http('POST', u('keys/big1/create'), { token: adminVault, body });
    assert.equal(res.status, 413, res.text.slice(0, 300));
    assert.ok(res.json?.error, 'a JSON error body');
    assert.equal(typeof res.json.error.code, 'string');
    assert.match(res.json.error.message, /larger than|too large/i);
    assert.equal(await keyStatus('big1'), 404);
    const rec = await assertAudited(res, { vault: V });
    assert.equal(rec.operation, 'KeyCreate');
    // Also on a crypto route, and a normal request right after on the same client.
    const wrap = await p.http('POST', u(`keys/${K1}/${k1Version}/wrapkey`), { token: adminVault, body: { alg: 'RSA-OAEP-256', value: 'A'.repeat(300 * 1024) } });
    assert.equal(wrap.status, 413, wrap.text.slice(0, 300));
    assert.ok(wrap.json?.error);
    await assertServing();
  });

  // ---------------------------------------------------------------- token endpoint

  const tokenRequest = (form: Record<string, string>) =>
    p.http('POST', `${p.origin}/${tid}/oauth2/v2.0/token`, {
      rawBody: new URLSearchParams(form).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
  let tokenRefusals: Res[] = [];

  test('token endpoint: wrong secret 401 invalid_client, unknown scope 400 invalid_scope, password grant 400 unsupported_grant_type', async () => {
    const base = { grant_type: 'client_credentials', client_id: p.admin.clientId, client_secret: p.admin.clientSecret, scope: `${VAULT_RESOURCE}/.default` };
    const wrong = await tokenRequest({ ...base, client_secret: 'not-the-secret' });
    assert.equal(wrong.status, 401, wrong.text);
    assert.equal(wrong.json.error, 'invalid_client');
    assert.match(wrong.json.error_description, /AADSTS7000215/);
    const scope = await tokenRequest({ ...base, scope: 'https://evil.example/.default' });
    assert.equal(scope.status, 400, scope.text);
    assert.equal(scope.json.error, 'invalid_scope');
    assert.match(scope.json.error_description, /evil\.example/);
    const grant = await tokenRequest({ ...base, grant_type: 'password', username: 'a', password: 'b' });
    assert.equal(grant.status, 400, grant.text);
    assert.equal(grant.json.error, 'unsupported_grant_type');
    assert.match(grant.json.error_description, /password/);
    for (const r of [wrong, scope, grant]) assert.equal(r.json.access_token, undefined, 'no token handed out');
    tokenRefusals = [wrong, scope, grant];

    const ok = await tokenRequest(base);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(typeof ok.json.access_token, 'string');
    await assertServing();
  });

  test('token endpoint refusals are in the tenant\'s audit log', async () => {
    assert.equal(tokenRefusals.length, 3);
    const records = await auditRecords();
    for (const r of tokenRefusals) {
      const rec = await assertAudited(r, {}, undefined, records);
      assert.equal(rec.operation, 'TokenIssue');
      assert.equal(rec.tenantId, tid);
    }
  });

  // ---------------------------------------------------------------- management separation of duties

  test('management: a DBA may not create vaults or set access policies; a Security Officer may', async () => {
    const sp = p.cli('sp', 'create', '--name', `dba${uniq()}`);
    p.cli('role', 'assign', '--assignee', sp.objectId, '--role', 'DBA');
    const cred: Cred = { tenantId: sp.tenant, clientId: sp.appId, clientSecret: sp.password };
    const token = await p.token(cred, MGMT_RESOURCE);
    const newVault = vaultName('sod');
    const vaultUrl = (name: string) => `${p.origin}/tenants/${tid}/providers/Microsoft.KeyVault/vaults/${name}?${MGMT_API}`;
    const policyUrl = `${p.origin}/tenants/${tid}/providers/Microsoft.KeyVault/vaults/${V}/accessPolicies/replace?${MGMT_API}`;
    const policyBody = { properties: { accessPolicies: [{ objectId: sp.objectId, permissions: { keys: ['all'] } }] } };
    const policiesOfV = async () => (await p.http('GET', vaultUrl(V), { token: adminMgmt })).json.properties.accessPolicies;
    const before = await policiesOfV();

    const create = await p.http('PUT', vaultUrl(newVault), { token, body: { location: 'eastus', properties: {} } });
    assertError(create, 403, 'AuthorizationFailed', { message: /manage vaults/ });
    const gone = await p.http('GET', vaultUrl(newVault), { token: adminMgmt });
    assert.equal(gone.status, 404, 'the vault was not created');

    const policy = await p.http('PUT', policyUrl, { token, body: policyBody });
    assertError(policy, 403, 'AuthorizationFailed', { message: /manage vaults/ });
    assert.deepEqual(await policiesOfV(), before, 'access policies unchanged');
    assert.ok(!before.some((x: any) => x.objectId === sp.objectId));
    // And the DBA has no key access on the vault either.
    const vt = await p.token(cred);
    const keyRes = await p.http('GET', u(`keys/${K1}/`), { token: vt });
    assertError(keyRes, 403, 'Forbidden', { inner: 'AccessDenied' });

    const records = await auditRecords();
    const rc = await assertAudited(create, {}, 'AuthorizationFailed', records);
    assert.equal(rc.operation, 'VaultCreate');
    assert.equal(rc.callerObjectId, sp.objectId);
    const rp = await assertAudited(policy, {}, 'AuthorizationFailed', records);
    assert.equal(rp.operation, 'VaultAccessPolicyUpdate');
    assert.equal(rp.vault, V);

    p.cli('role', 'assign', '--assignee', sp.objectId, '--role', 'Security Officer');
    const created = await p.http('PUT', vaultUrl(newVault), { token, body: { location: 'eastus', properties: {} } });
    assert.equal(created.status, 200, created.text);
    const set = await p.http('PUT', policyUrl, { token, body: { properties: { accessPolicies: [{ objectId: sp.objectId, permissions: { keys: ['get'] } }] } } });
    assert.equal(set.status, 200, set.text);
    assert.deepEqual(set.json.properties.accessPolicies.find((x: any) => x.objectId === sp.objectId)?.permissions.keys, ['get']);
    await assertServing();
  });

  test('the audit chain verifies', () => {
    assert.equal(p.cli('audit', 'verify').valid, true);
  });
});
