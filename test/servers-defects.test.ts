/**
 * The user-visible server defects of issue 10, one test each, on one real platform. Each fails on the code
 * before the operations engine and must pass with it: a name taken twice at once, an unknown region, a lost
 * administrator password, a stopped server's key status, a restore to just after creation, the replicas of a
 * deleted primary, what a deleted server leaves in the vault and in the backup store (also after a kill -9),
 * and an update accepted right before a SIGTERM.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createIdentity, eventually, startPgbyok, vaultName, type Pgbyok } from './harness.js';
import { psqlAs, psqlOk } from './crash/sql.js';

const PASSWORD = 'Passw0rd!x';
const REGION = 'eastus';
const FS = 'Microsoft.DBforPostgreSQL/flexibleServers';

let p: Pgbyok;
let vault: string;

before(async () => {
  p = await startPgbyok({ PGBYOK_KEY_MONITOR_INTERVAL_MS: '1000', PGBYOK_ARCHIVE_INTERVAL_MS: '500' });
  try {
    vault = p.cli('vault', 'create', '--name', vaultName('def'), '--location', REGION, '--retention-days', '90', '--enable-purge-protection').name;
  } catch (e) {
    await p.stop();
    throw e;
  }
});
after(async () => p?.stop());

// ---------------------------------------------------------------------------------------------------------
// Helpers

/** A key of its own in the shared vault and an identity allowed on it. */
function cmkSetup(tag: string) {
  const identityName = `id-${tag}`;
  const identity = createIdentity(p, identityName);
  p.cli('vault', 'set-policy', '--name', vault, '--object-id', identity.objectId, '--key-permissions', 'get', 'list', 'wrapKey', 'unwrapKey');
  const keyName = `kek-${tag}`;
  const keyUri = String(p.cli('key', 'create', '--vault-name', vault, '--name', keyName).key.kid).replace(/\/[^/]+$/, '');
  return { identityName, identityId: identity.id, keyName, keyUri };
}

/** A small server (1 GiB), SystemManaged unless a key is given; Ready when this returns. */
function createServer(name: string, cmk?: { keyUri: string; identityName: string }): any {
  const s = p.cli('server', 'create', '--name', name, '--location', REGION, '--admin-user', 'dbadmin', '--admin-password', PASSWORD, '--storage-size', '1',
    ...(cmk ? ['--key', cmk.keyUri, '--identity', cmk.identityName] : []));
  assert.equal(s.properties.state, 'Ready');
  return s;
}

const show = async (name: string) => p.mgmt('GET', `${FS}/${name}`);

/** Removes a server a test made, whatever state it was left in (waits out a create still running). */
async function removeServer(name: string): Promise<void> {
  const settled = await eventually(async () => {
    const r = await show(name);
    if (r.status === 404) return 'gone';
    return ['Ready', 'Stopped', 'Inaccessible'].includes(r.json?.properties?.state) && 'settled';
  }, `${name} to settle before its removal`, 90_000, 500).catch(() => 'stuck');
  if (settled !== 'settled') return;
  p.cliRaw(['server', 'delete', '--name', name, '--yes']);
}

/** Polls an accepted operation (its Azure-AsyncOperation URL) until it has ended. */
async function operationEnd(url: string, timeoutMs = 60_000): Promise<any> {
  return eventually(async () => {
    const r = await p.http('GET', url, { token: await p.token(p.admin, 'https://management.azure.com') });
    return r.status === 200 && !['Queued', 'InProgress'].includes(r.json.status) && r.json;
  }, `operation ${url} to end`, timeoutMs, 250);
}

/** Every object file in a region's backup store. */
function storeFiles(region = REGION): string[] {
  const walk = (d: string): string[] => (existsSync(d) ? readdirSync(d).flatMap((f) => (statSync(join(d, f)).isDirectory() ? walk(join(d, f)) : [join(d, f)])) : []);
  return walk(join(p.home, 'regions', region, 'backups'));
}

/** The server's id in the backup store, read from its backup manifests (the store is keyed by server id). */
function storeIdOf(name: string): string | undefined {
  const manifest = storeFiles().filter((f) => f.includes('/backups/') && f.endsWith('.json'))
    .map((f) => JSON.parse(readFileSync(f, 'utf8'))).find((m) => m.serverName === name);
  return manifest?.serverId;
}

/** What the store still holds of a server: every object under its id, and any manifest naming it. */
function leftInStore(name: string, id: string): string[] {
  return storeFiles().filter((f) => f.includes(`/${id}/`) || (f.endsWith('.json') && f.includes('/backups/') && JSON.parse(readFileSync(f, 'utf8')).serverName === name));
}

/** A new server with its first backup in the store; returns its id there. */
async function serverWithBackup(name: string): Promise<string> {
  createServer(name);
  await eventually(() => (p.cli('server', 'backup', 'list', '--name', name) as any[]).length > 0, `the first backup of ${name}`, 30_000, 300);
  const id = storeIdOf(name);
  assert.ok(id && leftInStore(name, id).length > 0, 'the server has objects in the store');
  return id;
}

const accepted = (status: number) => status === 201 || status === 202;

// ---------------------------------------------------------------------------------------------------------
// Defects

test('1. two concurrent PUTs of one server name: one is accepted, the other gets 409 ServerNameInUse in ARM\'s envelope, never a 500', async () => {
  const name = 'dup-name';
  // Under a customer key: the platform's own vault (made by the first SystemManaged server) plays no part.
  const c = cmkSetup('dup');
  const identityId = c.identityId;
  const body = {
    location: REGION, identity: { type: 'UserAssigned', userAssignedIdentities: { [identityId]: {} } },
    properties: {
      administratorLogin: 'dbadmin', administratorLoginPassword: PASSWORD, storage: { storageSizeGB: 1 },
      dataEncryption: { type: 'AzureKeyVault', primaryKeyURI: c.keyUri, primaryUserAssignedIdentityId: identityId },
    },
  };
  try {
    const answers = await Promise.all([1, 2].map(() => p.mgmt('PUT', `${FS}/${name}`, body)));
    const seen = answers.map((r) => `${r.status} ${r.text.slice(0, 300)}`).join(' | ');
    const ok = answers.filter((r) => accepted(r.status));
    const refused = answers.filter((r) => !accepted(r.status));
    assert.equal(ok.length, 1, `exactly one PUT is accepted: ${seen}`);
    assert.equal(refused[0].status, 409, `the other is a 409: ${seen}`);
    assert.equal(refused[0].json?.error?.code, 'ServerNameInUse', seen);
    assert.equal(typeof refused[0].json.error.message, 'string');
  } finally {
    await removeServer(name);
  }
});

test('2. --location nowhere is refused with 400 LocationNotAvailableForResourceType and creates nothing', async () => {
  const name = 'nowhere-srv';
  try {
    const r = await p.mgmt('PUT', `${FS}/${name}`, {
      location: 'nowhere', properties: { administratorLogin: 'dbadmin', administratorLoginPassword: PASSWORD, storage: { storageSizeGB: 1 } },
    });
    assert.equal(r.status, 400, `${r.status} ${r.text}`);
    assert.equal(r.json?.error?.code, 'LocationNotAvailableForResourceType', r.text);
    assert.match(r.json.error.message, /nowhere/);
    const cli = p.cliRaw(['server', 'create', '--name', name, '--location', 'nowhere', '--admin-user', 'dbadmin', '--admin-password', PASSWORD, '--storage-size', '1']);
    assert.notEqual(cli.status, 0, 'the CLI reports the refusal');
    assert.match(cli.stderr, /LocationNotAvailableForResourceType/);
    assert.equal((await show(name)).status, 404, 'no server was created');
    assert.equal(existsSync(join(p.home, 'regions', 'nowhere', 'volumes', `${name}.img`)), false, 'no volume was created');
  } finally {
    await removeServer(name);
  }
});

test('3. server update --admin-password resets the administrator password: the new one logs in, the old one is refused', async () => {
  const name = 'pw-reset';
  const first = 'N3w-Passw0rd!a';
  const second = 'N3w-Passw0rd!b';
  try {
    const s = createServer(name);
    const port = s.properties.port;
    const r = p.cliRaw(['server', 'update', '--name', name, '--admin-password', first]);
    assert.equal(r.status, 0, `server update --admin-password: ${r.stderr}`);
    assert.equal(psqlOk(p, port, first, 'SELECT current_user'), 'dbadmin');
    const old = psqlAs(p, port, PASSWORD, 'SELECT 1');
    assert.notEqual(old.status, 0, 'the old password is refused');
    assert.match(old.stderr, /password authentication failed/);

    // The management API itself: PATCH with properties.administratorLoginPassword.
    const patch = await p.mgmt('PATCH', `${FS}/${name}`, { properties: { administratorLoginPassword: second } });
    assert.equal(patch.status, 202, patch.text);
    assert.equal((await operationEnd(patch.headers['azure-asyncoperation'] as string)).status, 'Succeeded');
    assert.equal(psqlOk(p, port, second, 'SELECT current_user'), 'dbadmin');
    assert.notEqual(psqlAs(p, port, first, 'SELECT 1').status, 0, 'the previous password is refused');
  } finally {
    await removeServer(name);
  }
});

test('3b. server create without --admin-password prints the generated password also with -o table', async () => {
  const name = 'pw-gen';
  try {
    const r = p.cliRaw(['server', 'create', '--name', name, '--location', REGION, '--storage-size', '1', '-o', 'table']);
    assert.equal(r.status, 0, r.stderr);
    const port = (await show(name)).json.properties.port;
    // Whatever the layout, one of the printed words must be the password that logs in.
    const words = [...new Set(`${r.stdout}\n${r.stderr}`.split(/[\s|│"',]+/))].filter((w) => w.length >= 12 && /[A-Z]/.test(w) && /[a-z]/.test(w) && /\d/.test(w));
    const works = words.find((w) => psqlAs(p, port, w, 'SELECT 1', 'pgadmin').status === 0);
    assert.ok(works, `the generated password is printed with -o table; the output was:\n${r.stdout}${r.stderr}`);
  } finally {
    await removeServer(name);
  }
});

test('4. a stopped CMK server reports its key Invalid once the key is disabled, stays Stopped, and Valid again once it is enabled', async () => {
  const name = 'stopped-key';
  const c = cmkSetup('stk');
  try {
    createServer(name, c);
    assert.equal(p.cli('server', 'stop', '--name', name).properties.state, 'Stopped');
    p.cli('key', 'set-attributes', '--vault-name', vault, '--name', c.keyName, '--enabled', 'false');
    let last: any;
    await eventually(async () => {
      last = (await show(name)).json.properties;
      return last.dataEncryption.primaryEncryptionKeyStatus === 'Invalid';
    }, `the key status of the stopped ${name} to become Invalid`, 10_000).catch((e) => assert.fail(`${(e as Error).message}; last seen: ${JSON.stringify(last)}`));
    assert.equal(last.state, 'Stopped', 'a stopped server stays Stopped when its key goes');
    p.cli('key', 'set-attributes', '--vault-name', vault, '--name', c.keyName, '--enabled', 'true');
    await eventually(async () => (await show(name)).json.properties.dataEncryption.primaryEncryptionKeyStatus === 'Valid', 'the key status to be Valid again', 10_000);
    assert.equal((await show(name)).json.properties.state, 'Stopped');
  } finally {
    p.cliRaw(['key', 'set-attributes', '--vault-name', vault, '--name', c.keyName, '--enabled', 'true']);
    await removeServer(name);
  }
});

test('5. a point-in-time restore to the moment create returned succeeds; earliestRestoreDate is no later than that', async (t) => {
  const name = 'pitr-early';
  const target = 'pitr-early-r';
  try {
    createServer(name);
    const readyAt = new Date().toISOString();
    await t.test('earliestRestoreDate of a Ready primary', async () => {
      const earliest = (await show(name)).json.properties.backup.earliestRestoreDate;
      assert.ok(earliest, 'properties.backup.earliestRestoreDate is present');
      assert.ok(Date.parse(earliest) <= Date.parse(readyAt), `earliest restore point ${earliest} is not later than ${readyAt}, when create returned`);
    });
    await t.test('restore to the time create returned', () => {
      const r = p.cliRaw(['server', 'restore', '--source', name, '--name', target, '--restore-time', readyAt]);
      assert.equal(r.status, 0, `restore to ${readyAt}: ${r.stderr}`);
      assert.equal(JSON.parse(r.stdout).properties.state, 'Ready');
      assert.equal(psqlOk(p, JSON.parse(r.stdout).properties.port, PASSWORD, 'SELECT 1'), '1');
    });
  } finally {
    await removeServer(target);
    await removeServer(name);
  }
});

test('6. deleting a primary makes its read replica a standalone server that takes writes; promoting it later is refused', async () => {
  const primary = 'orph-p';
  const replica = 'orph-r';
  try {
    createServer(primary);
    const r = p.cli('server', 'replica', 'create', '--source', primary, '--name', replica);
    assert.equal(r.properties.replicationRole, 'AsyncReplica');
    p.cli('server', 'delete', '--name', primary, '--yes');
    // Its promotion is an operation of its own (the replica shows Updating meanwhile).
    const s = await eventually(async () => { const j = (await show(replica)).json; return j.properties.state === 'Ready' && j; }, 'the former replica Ready', 60_000);
    assert.equal(s.properties.replicationRole, 'Primary', `the replica of a deleted primary is standalone: ${JSON.stringify(s.properties)}`);
    assert.equal(s.properties.sourceServerResourceId, undefined, 'it names no source');
    assert.equal(s.properties.state, 'Ready');
    await eventually(() => psqlAs(p, s.properties.port, PASSWORD, 'CREATE TABLE public.w (v int); INSERT INTO public.w VALUES (1)').status === 0, 'a write on the former replica', 15_000);
    assert.equal(psqlOk(p, s.properties.port, PASSWORD, 'SELECT count(*) FROM public.w'), '1');
    const promote = p.cliRaw(['server', 'replica', 'promote', '--name', replica]);
    assert.notEqual(promote.status, 0, 'promote of a server that is no replica is refused');
    assert.match(promote.stderr, /not a (read )?replica/i);
  } finally {
    await removeServer(replica);
    await removeServer(primary);
  }
});

test('7. a deleted CMK server leaves no event subscription in the customer\'s vault', async () => {
  const name = 'evsub-srv';
  const sub = `pgbyok-server-${name}`;
  const c = cmkSetup('evs');
  const subs = () => (p.cli('vault', 'event-subscription', 'list', '--vault-name', vault) as any[]).map((x) => x.name);
  try {
    createServer(name, c);
    assert.ok(subs().includes(sub), `the server subscribed to its vault: ${subs().join(', ')}`);
    p.cli('server', 'delete', '--name', name, '--yes');
    assert.ok(!subs().includes(sub), `the subscription ${sub} is gone with the server: ${subs().join(', ')}`);
  } finally {
    await removeServer(name);
  }
});

test('8. a deleted server leaves nothing in the backup store: neither base backup, WAL nor backup key', async () => {
  const name = 'bk-gone';
  try {
    const id = await serverWithBackup(name);
    p.cli('server', 'delete', '--name', name, '--yes');
    assert.deepEqual(leftInStore(name, id), [], 'nothing of the deleted server is left in the store');
  } finally {
    await removeServer(name);
  }
});

test('8b. a delete interrupted by kill -9 of the platform finishes after the restart and leaves nothing in the backup store', async () => {
  const name = 'bk-kill';
  try {
    const id = await serverWithBackup(name);
    const del = await p.mgmt('DELETE', `${FS}/${name}`);
    assert.equal(del.status, 202, del.text);
    p.child().kill('SIGKILL');
    assert.equal((await p.waitForExit(10_000)).signal, 'SIGKILL');
    await p.restart();
    await eventually(async () => (await show(name)).status === 404, `${name} to be gone after the restart`, 60_000, 300);
    assert.deepEqual(leftInStore(name, id), [], 'nothing of the deleted server is left in the store');
    assert.equal(existsSync(join(p.home, 'regions', REGION, 'volumes', `${name}.img`)), false, 'its image is gone');
  } finally {
    await removeServer(name);
  }
});

test('9. an update accepted right before a SIGTERM is not dropped: after the restart it finishes', async () => {
  const name = 'upd-term';
  try {
    createServer(name);
    // Right after create: the creation's work may still hold the server, so the update is still queued when
    // the SIGTERM comes.
    const patch = await p.mgmt('PATCH', `${FS}/${name}`, { properties: { storage: { storageSizeGB: 2 } } });
    assert.equal(patch.status, 202, patch.text);
    await p.restart();
    const op = await operationEnd(patch.headers['azure-asyncoperation'] as string);
    assert.equal(op.status, 'Succeeded', `the update finished after the restart: ${JSON.stringify(op)}`);
    const s = (await show(name)).json;
    assert.equal(s.properties.storage.storageSizeGB, 2);
    assert.ok(statSync(join(p.home, 'regions', REGION, 'volumes', `${name}.img`)).size >= 2 * 1024 ** 3, 'the volume grew');
    assert.equal(s.properties.state, 'Ready');
  } finally {
    await removeServer(name);
  }
});
