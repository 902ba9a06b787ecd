/**
 * Handler tier: Azure Monitor and Resource Health as ARM addresses them — the activity log in EventData
 * shape, action groups and activity-log alerts firing on it, diagnostic settings that stream a vault's audit
 * records to a webhook and to a file (with retries from a cursor), and a vault's availability status. In
 * process, on the manual clock.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MANAGEMENT_SCOPE, VAULT_SCOPE, kv, startInProc, type InProc } from './inproc.js';

const API = 'api-version=2023-07-01';
let p: InProc;
let token: string;
let sub: string;

/** A local receiver that keeps every JSON body it is sent; answers `status()` (200 unless a test says otherwise). */
async function receiver() {
  const bodies: any[] = [];
  let code = 200;
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      if (code === 200) {
        try { bodies.push(JSON.parse(body)); } catch { bodies.push(body); }
      }
      res.writeHead(code).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`,
    bodies,
    status(c: number) { code = c; },
    async waitFor(pred: (b: any) => boolean, ms = 10_000) {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        const hit = bodies.find(pred);
        if (hit) return hit;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`nothing matching arrived; got ${JSON.stringify(bodies).slice(0, 2000)}`);
    },
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

before(async () => {
  p = await startInProc();
  token = await p.token(MANAGEMENT_SCOPE);
  sub = (await p.call('GET', `/subscriptions?api-version=2019-11-01`, { token })).body.value[0].subscriptionId;
  assert.equal((await arm('PUT', '/resourceGroups/rg-mon', { location: 'eastus' })).status, 201);
});
after(() => p?.stop());

const arm = (method: string, path: string, body?: unknown, api = API) =>
  p.call(method, `/subscriptions/${sub}${path}${path.includes('?') ? '&' : '?'}${api}`, { token, body });
const tenantPath = (method: string, path: string, body?: unknown) =>
  p.call(method, `/tenants/${p.admin.tenantId}${path}${path.includes('?') ? '&' : '?'}${API}`, { token, body });
const createVault = async (name: string) => {
  const r = await arm('PUT', `/resourceGroups/rg-mon/providers/Microsoft.KeyVault/vaults/${name}`, { location: 'eastus', properties: { tenantId: p.admin.tenantId } });
  assert.ok(r.status === 200 || r.status === 201, JSON.stringify(r.body));
  return r.body;
};
const WIDE = `$filter=${encodeURIComponent("eventTimestamp ge '2000-01-01T00:00:00Z' and eventTimestamp le '2100-01-01T00:00:00Z'")}`;

test('activity log: a vault create is in EventData shape at the subscription and group; $select; the /tenants/ list keeps its older shape', async () => {
  const v = await createVault('kv-act');
  const r = await arm('GET', `/providers/Microsoft.Insights/eventtypes/management/values?${WIDE}`, undefined, 'api-version=2015-04-01');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const mine = r.body.value.filter((e: any) => e.resourceId === v.id);
  const done = mine.find((e: any) => e.status.value === 'Succeeded');
  assert.ok(done, JSON.stringify(mine));
  assert.equal(done.operationName.value, 'Microsoft.KeyVault/vaults/write');
  assert.equal(done.category.value, 'Administrative');
  assert.equal(done.resourceGroupName, 'rg-mon');
  assert.equal(done.subscriptionId, sub);
  assert.equal(done.tenantId, p.admin.tenantId);
  assert.equal(done.resourceProviderName.value, 'Microsoft.KeyVault');
  assert.equal(done.resourceType.value, 'Microsoft.KeyVault/vaults');
  assert.equal(done.correlationId, done.properties.serviceRequestId);
  assert.equal(done.eventName.value, 'EndRequest');
  assert.match(done.id, new RegExp(`^${v.id}/events/[0-9a-f-]{36}/ticks/\\d+$`));
  assert.match(done.eventDataId, /^[0-9a-f-]{36}$/);
  for (const k of ['authorization', 'caller', 'channels', 'claims', 'description', 'eventTimestamp', 'level', 'operationId', 'subStatus', 'submissionTimestamp', 'properties']) assert.ok(k in done, k);
  assert.equal(r.body.nextLink, null);

  const byGroup = await arm('GET', `/resourceGroups/rg-mon/providers/Microsoft.Insights/eventtypes/management/values?${WIDE}`, undefined, 'api-version=2015-04-01');
  assert.ok(byGroup.body.value.some((e: any) => e.resourceId === v.id));
  const otherGroup = `$filter=${encodeURIComponent("eventTimestamp ge '2000-01-01T00:00:00Z' and resourceGroupName eq 'rg-none'")}`;
  assert.equal((await arm('GET', `/providers/Microsoft.Insights/eventtypes/management/values?${otherGroup}`, undefined, 'api-version=2015-04-01')).body.value.length, 0);
  const byUri = `$filter=${encodeURIComponent(`eventTimestamp ge '2000-01-01T00:00:00Z' and resourceUri eq '${v.id}'`)}&$select=operationName,status`;
  const sel = await arm('GET', `/providers/Microsoft.Insights/eventtypes/management/values?${byUri}`, undefined, 'api-version=2015-04-01');
  assert.ok(sel.body.value.length >= 1);
  assert.deepEqual(Object.keys(sel.body.value[0]).sort(), ['operationName', 'status']);
  const bad = await arm('GET', '/providers/Microsoft.Insights/eventtypes/management/values', undefined, 'api-version=2015-04-01');
  assert.equal(bad.status, 400);

  const legacy = await tenantPath('GET', '/providers/Microsoft.Insights/eventtypes/management/values?top=50');
  assert.equal(legacy.status, 200);
  const entry = legacy.body.value.find((e: any) => e.operation === 'Microsoft.KeyVault/vaults/write' && e.status === 'Succeeded');
  assert.ok(entry, JSON.stringify(legacy.body.value));
  assert.equal(typeof entry.message, 'string');
});

test('action groups and activity-log alerts in Azure\'s shape: an alert on vault writes POSTs the activity-log payload, and the common schema to a receiver that asks for it', async () => {
  const hook = await receiver();
  const common = await receiver();
  try {
    const ag = await arm('PUT', '/resourceGroups/rg-mon/providers/Microsoft.Insights/actionGroups/ag-ops', {
      location: 'Global', properties: { groupShortName: 'ops', enabled: true, emailReceivers: [], webhookReceivers: [{ name: 'plain', serviceUri: hook.url, useCommonAlertSchema: false }, { name: 'common', serviceUri: common.url, useCommonAlertSchema: true }] },
    }, 'api-version=2023-01-01');
    assert.equal(ag.status, 201, JSON.stringify(ag.body));
    assert.equal(ag.body.id, `/subscriptions/${sub}/resourceGroups/rg-mon/providers/Microsoft.Insights/actionGroups/ag-ops`);
    assert.equal(ag.body.location, 'Global');
    assert.equal(ag.body.properties.groupShortName, 'ops');
    const email = await arm('PUT', '/resourceGroups/rg-mon/providers/Microsoft.Insights/actionGroups/ag-mail', { location: 'Global', properties: { groupShortName: 'm', enabled: true, emailReceivers: [{ name: 'e', emailAddress: 'a@b.c' }] } }, 'api-version=2023-01-01');
    assert.equal(email.status, 400);

    const alert = await arm('PUT', '/resourceGroups/rg-mon/providers/Microsoft.Insights/activityLogAlerts/vault-writes', {
      location: 'Global',
      properties: {
        scopes: [`/subscriptions/${sub}`], enabled: true, description: 'vault writes',
        condition: { allOf: [{ field: 'category', equals: 'Administrative' }, { field: 'operationName', equals: 'Microsoft.KeyVault/vaults/write' }, { anyOf: [{ field: 'status', equals: 'Succeeded' }] }] },
        actions: { actionGroups: [{ actionGroupId: ag.body.id, webhookProperties: { team: 'db' } }] },
      },
    }, 'api-version=2020-10-01');
    assert.equal(alert.status, 201, JSON.stringify(alert.body));
    assert.equal(alert.body.type, 'Microsoft.Insights/ActivityLogAlerts');
    const noGroup = await arm('PUT', '/resourceGroups/rg-mon/providers/Microsoft.Insights/activityLogAlerts/bad', {
      location: 'Global', properties: { scopes: [`/subscriptions/${sub}`], condition: { allOf: [{ field: 'category', equals: 'Administrative' }] }, actions: { actionGroups: [{ actionGroupId: '/subscriptions/x/resourceGroups/y/providers/Microsoft.Insights/actionGroups/none' }] } },
    }, 'api-version=2020-10-01');
    assert.equal(noGroup.status, 400);

    const v = await createVault('kv-alerted');
    const plain = await hook.waitFor((b) => b.data?.context?.activityLog?.resourceId === v.id && b.data.context.activityLog.status === 'Succeeded');
    assert.equal(plain.schemaId, 'Microsoft.Insights/activityLogs');
    assert.equal(plain.data.status, 'Activated');
    assert.equal(plain.data.context.activityLog.operationName, 'Microsoft.KeyVault/vaults/write');
    assert.deepEqual(plain.data.properties, { team: 'db' });
    const c = await common.waitFor((b) => b.data?.essentials?.alertTargetIDs?.includes(v.id));
    assert.equal(c.schemaId, 'azureMonitorCommonAlertSchema');
    assert.equal(c.data.essentials.alertRule, 'vault-writes');
    assert.equal(c.data.essentials.signalType, 'Activity Log');
    assert.equal(c.data.alertContext.operationName, 'Microsoft.KeyVault/vaults/write');

    const list = await arm('GET', '/providers/Microsoft.Insights/activityLogAlerts', undefined, 'api-version=2020-10-01');
    assert.ok(list.body.value.some((a: any) => a.name === 'vault-writes'));
    assert.equal((await arm('DELETE', '/resourceGroups/rg-mon/providers/Microsoft.Insights/activityLogAlerts/vault-writes', undefined, 'api-version=2020-10-01')).status, 200);
    assert.equal((await arm('GET', '/resourceGroups/rg-mon/providers/Microsoft.Insights/activityLogAlerts/vault-writes', undefined, 'api-version=2020-10-01')).status, 404);
  } finally {
    await hook.close();
    await common.close();
  }
});

test('the older pgbyok bodies on the /tenants/ path: webhookReceivers only, and condition/actionGroup/serverName', async () => {
  const ag = await tenantPath('PUT', '/providers/Microsoft.Insights/actionGroups/legacy-ag', { properties: { webhookReceivers: [{ name: 'w', serviceUri: 'https://127.0.0.1:9/ag' }] } });
  assert.equal(ag.status, 200, JSON.stringify(ag.body));
  assert.equal(ag.body.properties.webhookReceivers[0].useCommonAlertSchema, true);
  const rule = await tenantPath('PUT', '/providers/Microsoft.Insights/activityLogAlerts/legacy-rule', { properties: { condition: 'ServerInaccessible', actionGroup: 'legacy-ag', serverName: 'srv1' } });
  assert.equal(rule.status, 200, JSON.stringify(rule.body));
  assert.deepEqual(rule.body.properties.scopes, [`/tenants/${p.admin.tenantId}`]);
  assert.equal(rule.body.properties.condition.allOf[0].equals, 'Microsoft.DBforPostgreSQL/flexibleServers/inaccessible');
  const unknown = await tenantPath('PUT', '/providers/Microsoft.Insights/activityLogAlerts/legacy-bad', { properties: { condition: 'Nope', actionGroup: 'legacy-ag' } });
  assert.equal(unknown.status, 400);
  assert.ok((await tenantPath('GET', '/providers/Microsoft.Insights/actionGroups')).body.value.some((g: any) => g.name === 'legacy-ag'));
  assert.equal((await tenantPath('DELETE', '/providers/Microsoft.Insights/activityLogAlerts/legacy-rule')).status, 200);
  assert.equal((await tenantPath('DELETE', '/providers/Microsoft.Insights/activityLogAlerts/legacy-rule')).status, 404);
  assert.equal((await tenantPath('DELETE', '/providers/Microsoft.Insights/actionGroups/legacy-ag')).status, 200);
});

test('diagnostic settings stream a vault\'s audit records in the AuditEvent schema to a webhook and a file; a failing webhook is retried from the cursor; refused destinations', async () => {
  const v = await createVault('kv-diag');
  const vaultUri = (v.properties.vaultUri as string).replace(/\/$/, '');
  const hook = await receiver();
  const DS = `/resourceGroups/rg-mon/providers/Microsoft.KeyVault/vaults/kv-diag/providers/Microsoft.Insights/diagnosticSettings`;
  const DAPI = 'api-version=2021-05-01-preview';
  try {
    // The static vault route and the parametric one under its id both resolve.
    assert.equal((await arm('GET', '/resourceGroups/rg-mon/providers/Microsoft.KeyVault/vaults/kv-diag')).status, 200);
    const cats = await arm('GET', `/resourceGroups/rg-mon/providers/Microsoft.KeyVault/vaults/kv-diag/providers/Microsoft.Insights/diagnosticSettingsCategories`, undefined, DAPI);
    assert.equal(cats.status, 200, JSON.stringify(cats.body));
    assert.deepEqual(cats.body.value.map((c: any) => c.name), ['AuditEvent', 'AllMetrics']);
    assert.equal((await arm('GET', DS, undefined, DAPI)).body.value.length, 0);

    for (const bad of ['../escape.log', '/etc/passwd', 'sub/dir.log', '.hidden']) {
      const r = await arm('PUT', `${DS}/bad`, { properties: { logs: [{ category: 'AuditEvent', enabled: true }], filePath: bad } }, DAPI);
      assert.equal(r.status, 400, bad);
    }
    assert.equal((await arm('PUT', `${DS}/bad`, { properties: { logs: [{ category: 'AuditEvent', enabled: true }], storageAccountId: '/subscriptions/x/resourceGroups/y/providers/Microsoft.Storage/storageAccounts/z' } }, DAPI)).status, 400);
    assert.equal((await arm('PUT', `${DS}/bad`, { properties: { logs: [{ category: 'Nope', enabled: true }], webhookUrl: hook.url } }, DAPI)).status, 400);

    const put = await arm('PUT', `${DS}/to-hook`, { properties: { logs: [{ categoryGroup: 'audit', enabled: true }], metrics: [{ category: 'AllMetrics', enabled: false }], webhookUrl: hook.url, filePath: 'kv-diag.jsonl' } }, DAPI);
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal(put.body.id, `/subscriptions/${sub}/resourceGroups/rg-mon/providers/Microsoft.KeyVault/vaults/kv-diag/providers/microsoft.insights/diagnosticSettings/to-hook`);
    assert.equal(put.body.properties.webhookUrl, hook.url);
    assert.equal((await arm('GET', `${DS}/to-hook`, undefined, DAPI)).body.name, 'to-hook');

    const kvToken = await p.token(VAULT_SCOPE);
    const created = await p.call('POST', kv(vaultUri, '/keys/k1/create'), { token: kvToken, body: { kty: 'RSA', key_size: 2048 } });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const kid = created.body.key.kid as string;
    const wrapped = await p.call('POST', `${kid}/wrapkey?api-version=7.6`, { token: kvToken, body: { alg: 'RSA-OAEP-256', value: Buffer.alloc(32, 1).toString('base64url') } });
    assert.equal(wrapped.status, 200, JSON.stringify(wrapped.body));
    await p.platform.insights.diagnostics.flush();

    const batch = await hook.waitFor((b) => b.records?.some((r: any) => r.operationName === 'KeyWrap'));
    const wrap = batch.records.find((r: any) => r.operationName === 'KeyWrap');
    assert.equal(wrap.category, 'AuditEvent');
    assert.equal(wrap.resourceId, v.id.toUpperCase());
    assert.equal(wrap.operationVersion, '7.6');
    assert.equal(wrap.resultType, 'Success');
    assert.equal(wrap.resultSignature, 'OK');
    assert.equal(wrap.properties.httpStatusCode, 200);
    assert.equal(wrap.identity.claim.tid, p.admin.tenantId);
    assert.ok(wrap.identity.claim.appid);
    assert.match(wrap.properties.id, /\/keys\/k1\//);
    assert.ok(hook.bodies.flatMap((b) => b.records).some((r: any) => r.operationName === 'KeyCreate'), 'the create came too (maybe in an earlier batch)');
    for (const k of ['time', 'durationMs', 'callerIpAddress', 'correlationId', 'resultDescription']) assert.ok(k in wrap, k);

    const file = join(p.platform.paths.root, 'diagnostics', p.admin.tenantId, 'kv-diag.jsonl');
    assert.ok(existsSync(file));
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(lines.some((r) => r.operationName === 'KeyWrap' && r.resourceId === v.id.toUpperCase()));

    // The webhook fails: nothing is lost; after the backoff the records come (at least once, in order).
    hook.status(500);
    const before = hook.bodies.length;
    assert.equal((await p.call('GET', kv(vaultUri, '/keys/k1'), { token: kvToken })).status, 200);
    await p.platform.insights.diagnostics.flush();
    assert.equal(hook.bodies.length, before);
    hook.status(200);
    p.advance(600);
    await p.platform.insights.diagnostics.flush();
    const retried = await hook.waitFor((b) => b.records?.some((r: any) => r.operationName === 'KeyGet'));
    const seqs = retried.records.map((r: any) => r.properties.auditSequence);
    assert.deepEqual(seqs, [...seqs].sort((a: number, b: number) => a - b));

    assert.equal((await arm('DELETE', `${DS}/to-hook`, undefined, DAPI)).status, 200);
    assert.equal((await arm('GET', `${DS}/to-hook`, undefined, DAPI)).status, 404);
    // An unknown resource type under an id is not found; the static routes are untouched.
    assert.equal((await arm('GET', `/resourceGroups/rg-mon/providers/Microsoft.Nope/things/x/providers/Microsoft.Insights/diagnosticSettings`, undefined, DAPI)).status, 404);
  } finally {
    await hook.close();
  }
});

test('resource health: a vault is Available, at its id and in the subscription\'s list', async () => {
  const v = await createVault('kv-health');
  const RAPI = 'api-version=2025-05-01';
  const cur = await arm('GET', '/resourceGroups/rg-mon/providers/Microsoft.KeyVault/vaults/kv-health/providers/Microsoft.ResourceHealth/availabilityStatuses/current', undefined, RAPI);
  assert.equal(cur.status, 200, JSON.stringify(cur.body));
  assert.equal(cur.body.id, `${v.id}/providers/Microsoft.ResourceHealth/availabilityStatuses/current`);
  assert.equal(cur.body.name, 'current');
  assert.equal(cur.body.properties.availabilityState, 'Available');
  for (const k of ['title', 'summary', 'reasonChronicity', 'occuredTime', 'reportedTime']) assert.ok(k in cur.body.properties, k);
  const all = await arm('GET', '/providers/Microsoft.ResourceHealth/availabilityStatuses', undefined, RAPI);
  assert.ok(all.body.value.some((s: any) => s.id === cur.body.id));
  const byGroup = await arm('GET', '/resourceGroups/rg-mon/providers/Microsoft.ResourceHealth/availabilityStatuses', undefined, RAPI);
  assert.ok(byGroup.body.value.some((s: any) => s.id === cur.body.id));
  assert.equal((await arm('GET', '/resourceGroups/rg-mon/providers/Microsoft.KeyVault/vaults/kv-none/providers/Microsoft.ResourceHealth/availabilityStatuses/current', undefined, RAPI)).status, 404);
});
