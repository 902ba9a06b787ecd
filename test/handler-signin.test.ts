/**
 * Handler tier: the sign-in discovery az 2.45 follows unchanged — ARM cloud metadata, the ADFS-shaped
 * authority and its tenant-less token endpoint — and `//` in paths.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { decodeJwt } from 'jose';
import { httpCall } from '../src/lib/http-client.js';
import { MANAGEMENT_SCOPE, startInProc, type InProc } from './inproc.js';

let p: InProc;
let ca: string;
let other: { tenant: string; clientId: string; clientSecret: string };

before(async () => {
  p = await startInProc();
  ca = readFileSync(p.platform.paths.caCert, 'utf8');
  const t = await p.call('POST', '/tenants?api-version=2023-07-01', { token: await p.token(MANAGEMENT_SCOPE), body: { name: 'signin-other' } });
  assert.equal(t.status, 200, JSON.stringify(t.body));
  other = { tenant: t.body.admin.tenant, clientId: t.body.admin.appId, clientSecret: t.body.admin.password };
});
after(() => p?.stop());

/** A form post as MSAL sends it. */
async function postForm(path: string, form: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await httpCall({
    method: 'POST', url: `${p.platform.origin}${path}`, ca,
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form).toString(),
  });
  return { status: res.status, headers: res.headers, body: JSON.parse(res.text) };
}

/** What MSAL Python 1.21 posts for az 2.45's `az login --service-principal` against an ADFS authority. */
const azForm = (clientId: string, secret: string) => ({
  client_id: clientId, client_secret: secret, grant_type: 'client_credentials', client_info: '1',
  claims: '{"access_token":{"xms_cc":{"values":["CP1"]}}}', scope: 'https://management.azure.com//.default',
});

test('GET /metadata/endpoints (2015-01-01) names the ADFS authority, the ARM audience and a Graph endpoint on the origin the client used', async () => {
  const r = await p.call('GET', '/metadata/endpoints?api-version=2015-01-01');
  assert.equal(r.status, 200);
  const o = p.platform.origin;
  assert.equal(r.body.galleryEndpoint, '');
  assert.equal(r.body.portalEndpoint, '');
  assert.equal(r.body.graphEndpoint, `${o}/graph/`);
  assert.deepEqual(r.body.authentication.audiences, ['https://management.azure.com/']);
  assert.equal(r.body.authentication.loginEndpoint, `${o}/adfs`);
  // The newer names az reads through ARM_CLOUD_METADATA_URL are in the same document.
  assert.equal(r.body.name, 'pgbyok');
  assert.equal(r.body.resourceManager, `${o}/`);
  assert.equal(r.body.microsoftGraphResourceId, `${o}/graph/`);
  assert.equal(r.body.suffixes.keyVaultDns, `vault.localhost:${p.platform.settings.vaultPort}`, 'a vault port other than 443 goes into the suffix az appends');

  // The Host header decides the origin, as for OpenID discovery.
  const port = new URL(o).port;
  const viaName = await httpCall({ method: 'GET', url: `${o}/metadata/endpoints?api-version=2015-01-01`, ca, headers: { host: `localhost:${port}` } });
  assert.equal(JSON.parse(viaName.text).authentication.loginEndpoint, `https://localhost:${port}/adfs`);
});

test('the metadata is a list of clouds for 2019-05-01 up to 2022-09-01 and one cloud from 2022-09-01, as ARM answers', async () => {
  const list = await p.call('GET', '/metadata/endpoints?api-version=2019-05-01');
  assert.equal(list.status, 200);
  assert.ok(Array.isArray(list.body) && list.body.length === 1);
  assert.equal(list.body[0].name, 'pgbyok');
  assert.equal(list.body[0].authentication.loginEndpoint, `${p.platform.origin}/adfs`);
  const one = await p.call('GET', '/metadata/endpoints?api-version=2022-09-01');
  assert.equal(one.status, 200);
  assert.equal(one.body.name, 'pgbyok');
});

test('`//` in a path routes as `/`: //metadata/endpoints (az joins "https://host:port/" and "/metadata") and a management path', async () => {
  const r = await p.call('GET', '//metadata/endpoints?api-version=2015-01-01');
  assert.equal(r.status, 200);
  assert.equal(r.body.authentication.loginEndpoint, `${p.platform.origin}/adfs`);
  const vaults = await p.call('GET', `//tenants/${p.admin.tenantId}//providers/Microsoft.KeyVault/vaults?api-version=2023-07-01`, { token: await p.token(MANAGEMENT_SCOPE) });
  assert.equal(vaults.status, 200, JSON.stringify(vaults.body));
  // Still authenticated: the collapsed spelling is the same route with the same check.
  assert.equal((await p.call('GET', `//tenants/${p.admin.tenantId}//providers/Microsoft.KeyVault/vaults?api-version=2023-07-01`)).status, 401);
});

test('ADFS discovery: MSAL\'s {authority}/.well-known/openid-configuration names the tenant-less token endpoint', async () => {
  const r = await p.call('GET', '/adfs/.well-known/openid-configuration');
  assert.equal(r.status, 200);
  const o = p.platform.origin;
  assert.equal(r.body.issuer, `${o}/adfs`);
  assert.equal(r.body.token_endpoint, `${o}/adfs/oauth2/token`);
  assert.equal(r.body.authorization_endpoint, `${o}/adfs/oauth2/authorize`);
  assert.equal(r.body.jwks_uri, `${o}/adfs/discovery/keys`);
  assert.deepEqual(r.body.scopes_supported, ['https://vault.localhost/.default', `https://vault.localhost:${p.platform.settings.vaultPort}/.default`, 'https://vault.azure.net/.default',
    'https://managedhsm.localhost/.default', `https://managedhsm.localhost:${p.platform.settings.vaultPort}/.default`, 'https://management.azure.com/.default']);
  const jwks = await p.call('GET', '/adfs/discovery/keys');
  assert.deepEqual(jwks.body, (await p.call('GET', `/${p.admin.tenantId}/discovery/v2.0/keys`)).body);
});

test('POST /adfs/oauth2/token resolves the tenant from client_id and answers as the tenant endpoint does', async () => {
  for (const [cred, tid] of [[p.admin, p.admin.tenantId], [other, other.tenant]] as const) {
    const r = await postForm('/adfs/oauth2/token', azForm(cred.clientId, cred.clientSecret));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.headers['cache-control'], 'no-store');
    assert.deepEqual(Object.keys(r.body).sort(), ['access_token', 'expires_in', 'ext_expires_in', 'token_type']);
    const claims = decodeJwt(r.body.access_token);
    assert.equal(claims.tid, tid);
    assert.equal(claims.iss, `${p.platform.origin}/${tid}/v2.0`);
    assert.equal(claims.aud, 'https://management.azure.com');
    // Same answer, and the same claims, as the tenant's own endpoint.
    const t = await postForm(`/${tid}/oauth2/v2.0/token`, azForm(cred.clientId, cred.clientSecret));
    const tc = decodeJwt(t.body.access_token);
    assert.deepEqual([tc.tid, tc.oid, tc.appid, tc.iss, tc.aud], [claims.tid, claims.oid, claims.appid, claims.iss, claims.aud]);
  }
  // The token is a management token of its tenant.
  const r = await postForm('/adfs/oauth2/token', { ...azForm(p.admin.clientId, p.admin.clientSecret), scope: MANAGEMENT_SCOPE });
  const list = await p.call('GET', `/tenants/${p.admin.tenantId}/providers/Microsoft.KeyVault/vaults?api-version=2023-07-01`, { token: r.body.access_token });
  assert.equal(list.status, 200);
  // Basic client authentication works there too.
  const basic = Buffer.from(`${encodeURIComponent(other.clientId)}:${encodeURIComponent(other.clientSecret)}`).toString('base64');
  const viaBasic = await postForm('/adfs/oauth2/token', { grant_type: 'client_credentials', scope: 'https://vault.azure.net/.default' }, { authorization: `Basic ${basic}` });
  assert.equal(viaBasic.status, 200, JSON.stringify(viaBasic.body));
  assert.equal(decodeJwt(viaBasic.body.access_token).tid, other.tenant);
});

test('the ADFS token endpoint refuses as the tenant endpoint does: unknown client and wrong secret are invalid_client, bad grant and scope are 400', async () => {
  const unknown = await postForm('/adfs/oauth2/token', azForm('00000000-0000-0000-0000-000000000000', 'x'));
  assert.equal(unknown.status, 401);
  assert.equal(unknown.body.error, 'invalid_client');
  assert.match(unknown.body.error_description, /^AADSTS7000215: /);
  const wrong = await postForm('/adfs/oauth2/token', azForm(p.admin.clientId, 'not-the-secret'));
  assert.equal(wrong.status, 401);
  assert.equal(wrong.body.error, 'invalid_client');
  const grant = await postForm('/adfs/oauth2/token', { ...azForm(p.admin.clientId, p.admin.clientSecret), grant_type: 'password' });
  assert.equal(grant.body.error, 'unsupported_grant_type');
  const scope = await postForm('/adfs/oauth2/token', { ...azForm(p.admin.clientId, p.admin.clientSecret), scope: 'https://graph.microsoft.com/.default' });
  assert.equal(scope.body.error, 'invalid_scope');
  assert.match(scope.body.error_description, /Use one of: https:\/\/vault\.localhost\/\.default, .*https:\/\/management\.azure\.com\/\.default\./);
  const missing = await postForm('/adfs/oauth2/token', { grant_type: 'client_credentials', scope: MANAGEMENT_SCOPE });
  assert.equal(missing.body.error, 'invalid_request');
});

test('ADFS token issues and refusals are audited as TokenIssue in the client\'s tenant', async () => {
  const ok = await postForm('/adfs/oauth2/token', azForm(other.clientId, other.clientSecret));
  const refused = await postForm('/adfs/oauth2/token', azForm(other.clientId, 'wrong'));
  const tok = (await postForm(`/${other.tenant}/oauth2/v2.0/token`, { grant_type: 'client_credentials', client_id: other.clientId, client_secret: other.clientSecret, scope: MANAGEMENT_SCOPE })).body.access_token;
  const recs = await p.call('GET', `/tenants/${other.tenant}/providers/Microsoft.KeyVault/auditEvents?operation=TokenIssue&api-version=2023-07-01`, { token: tok });
  assert.equal(recs.status, 200, JSON.stringify(recs.body));
  const byId = new Map((recs.body.value as any[]).map((r) => [r.requestId, r]));
  const okRec = byId.get(ok.headers['x-ms-request-id']);
  assert.equal(okRec?.result, 'Success');
  assert.equal(okRec?.callerClientId, other.clientId);
  const refusedRec = byId.get(refused.headers['x-ms-request-id']);
  assert.equal(refusedRec?.result, 'Failure');
  assert.equal(refusedRec?.errorCode, 'invalid_client');
});
