/**
 * What the crash matrix keeps across platform lives: the customer's vaults, keys and identities, the servers
 * it made (with their passwords and the rows committed to them), the servers it deleted, and every operation
 * it was answered. Small servers (1 GiB) under customer keys, so that events, backups and key changes are all
 * exercised; a geo-redundant source in eastus whose copies go to westus.
 */
import assert from 'node:assert/strict';
import { createIdentity, eventually, vaultName, type Pgbyok } from '../harness.js';
import { OPEN, type OperationResource } from './contract.js';
import { psqlAs, psqlOk } from './sql.js';

export const EAST = 'eastus';
export const WEST = 'westus';
export const FS = 'Microsoft.DBforPostgreSQL/flexibleServers';
export const OPS = 'Microsoft.DBforPostgreSQL/operations';
const PERMS = ['get', 'list', 'wrapKey', 'unwrapKey'];

export interface Cmk { vault: string; keyName: string; keyUri: string; identityId: string }

export interface Tracked {
  region: string;
  password: string;
  /** Rows committed to `public.t` that every later read must find (undefined: no table). */
  rows?: number;
  /** The state it must settle in after a restart. */
  expect: 'Ready' | 'Stopped';
  replicaOf?: string;
  vaults: string[];
}

export interface World {
  p: Pgbyok;
  east: { vault: string; identityId: string; keys: Cmk[] };
  west: Cmk;
  servers: Map<string, Tracked>;
  /** Deleted or never finished: name -> the vaults it used and its id in the backup store, if known. */
  gone: Map<string, { vaults: string[]; storeId?: string }>;
  /** Gone servers already checked for leftovers (a leftover fails the case that left it, once). */
  reported: Set<string>;
  /** Every operation URL the platform answered with. */
  ops: Set<string>;
  seq: number;
}

const ready = (status: number) => status === 200 || status === 201 || status === 202;

/** The customer's side: a vault in each region, keys in eastus (kek-a for most servers, kek-b and kek-c for key changes, kek-rv to revoke), an identity per region. */
export function setupWorld(p: Pgbyok): World {
  const mkVault = (region: string) => p.cli('vault', 'create', '--name', vaultName(`cm${region.slice(0, 1)}`), '--location', region, '--retention-days', '90', '--enable-purge-protection').name as string;
  const mkIdentity = (name: string, region: string, vault: string) => {
    const id = region === EAST ? createIdentity(p, name) : p.cli('identity', 'create', '--name', name, '--location', region);
    const objectId = id.objectId ?? id.principalId;
    p.cli('vault', 'set-policy', '--name', vault, '--object-id', objectId, '--key-permissions', ...PERMS);
    return id.id as string;
  };
  const mkKey = (vault: string, keyName: string) => String(p.cli('key', 'create', '--vault-name', vault, '--name', keyName).key.kid).replace(/\/[^/]+$/, '');
  const ev = mkVault(EAST);
  const eastId = mkIdentity('id-crash-east', EAST, ev);
  const keys = ['kek-a', 'kek-b', 'kek-c', 'kek-rv'].map((k) => ({ vault: ev, keyName: k, keyUri: mkKey(ev, k), identityId: eastId }));
  const wv = mkVault(WEST);
  const westId = mkIdentity('id-crash-west', WEST, wv);
  return {
    p, east: { vault: ev, identityId: eastId, keys }, west: { vault: wv, keyName: 'kek-w', keyUri: mkKey(wv, 'kek-w'), identityId: westId },
    servers: new Map(), gone: new Map(), reported: new Set(), ops: new Set(), seq: 0,
  };
}

export const password = (w: World) => `Crash-${++w.seq}-Passw0rd!`;
export const show = (w: World, name: string) => w.p.mgmt('GET', `${FS}/${name}`);
export const sourceId = (w: World, name: string) => `/tenants/${w.p.admin.tenantId}/providers/${FS}/${name}`;

/** Sends a long operation; records where to poll it. Refusals throw; a connection cut by a kill returns undefined. */
export async function send(w: World, method: string, path: string, body?: unknown): Promise<{ status: number; json: any; op?: string } | undefined> {
  let r;
  try {
    r = await w.p.mgmt(method, path, body);
  } catch {
    return undefined;
  }
  if (!ready(r.status)) throw new Error(`${method} ${path} was refused: ${r.status} ${r.text}`);
  const op = r.headers['azure-asyncoperation'] as string | undefined;
  if (op) w.ops.add(op);
  return { status: r.status, json: r.json, op };
}

export async function operation(w: World, url: string): Promise<OperationResource> {
  const r = await w.p.http('GET', url, { token: await w.p.token(w.p.admin, 'https://management.azure.com') });
  if (r.status !== 200) throw new Error(`GET ${url}: ${r.status} ${r.text}`);
  return r.json;
}

/** Sends a long operation and waits for it to succeed (preparation, not the case under test). */
export async function run(w: World, method: string, path: string, body?: unknown, timeoutMs = 120_000): Promise<any> {
  const r = await send(w, method, path, body);
  if (!r?.op) throw new Error(`${method} ${path}: no operation to follow`);
  const op = await eventually(async () => { const o = await operation(w, r.op!); return !OPEN.includes(o.status) && o; }, `${method} ${path} to end`, timeoutMs, 250);
  if (op.status !== 'Succeeded') throw new Error(`${method} ${path} ended ${op.status}: ${JSON.stringify(op.error)}`);
  return r.json;
}

export function createBody(w: World, pw: string, enc: Cmk, extra: Record<string, unknown> = {}) {
  // Every identity the server uses is in its identity block, the geo-backup one too (as Azure asks).
  const geo = (extra.dataEncryption as { geoBackupUserAssignedIdentityId?: string } | undefined)?.geoBackupUserAssignedIdentityId;
  return {
    location: EAST, identity: { type: 'UserAssigned', userAssignedIdentities: Object.fromEntries([enc.identityId, geo].filter(Boolean).map((id) => [id, {}])) },
    properties: {
      administratorLogin: 'dbadmin', administratorLoginPassword: pw, storage: { storageSizeGB: 1 }, version: '15',
      dataEncryption: { type: 'AzureKeyVault', primaryKeyURI: enc.keyUri, primaryUserAssignedIdentityId: enc.identityId }, ...extra,
    },
  };
}

/** A CMK server, created and waited for; tracked from now on. */
export async function createServer(w: World, name: string, enc: Cmk, extra: Record<string, unknown> = {}, vaults = [enc.vault]): Promise<void> {
  const pw = password(w);
  await run(w, 'PUT', `${FS}/${name}`, createBody(w, pw, enc, extra));
  w.servers.set(name, { region: EAST, password: pw, expect: 'Ready', vaults });
}

export async function portOf(w: World, name: string): Promise<number> {
  return (await show(w, name)).json.properties.port;
}

/** Commits `n` more rows to the server's `public.t` (made on first use) and records them. */
export async function commitRows(w: World, name: string, n = 3): Promise<void> {
  const t = w.servers.get(name)!;
  const port = await portOf(w, name);
  await eventually(() => psqlAs(w.p, port, t.password, 'SELECT 1').status === 0, `psql to get into ${name}`, 60_000, 300);
  psqlOk(w.p, port, t.password, `CREATE TABLE IF NOT EXISTS public.t (id serial PRIMARY KEY, note text); INSERT INTO public.t (note) SELECT 'row-' || g FROM generate_series(1, ${n}) g`);
  t.rows = (t.rows ?? 0) + n;
}

export async function rowCount(w: World, name: string): Promise<number> {
  const t = w.servers.get(name)!;
  return Number(psqlOk(w.p, await portOf(w, name), t.password, 'SELECT count(*) FROM public.t'));
}

/** Deletes a tracked server and waits; it joins the gone list with what is needed to check its leftovers. */
export async function deleteServer(w: World, name: string, storeId: string | undefined): Promise<void> {
  const t = w.servers.get(name)!;
  await run(w, 'DELETE', `${FS}/${name}`);
  forget(w, name, storeId, t.vaults);
}

export function forget(w: World, name: string, storeId: string | undefined, vaults: string[]): void {
  w.servers.delete(name);
  for (const [, t] of w.servers) if (t.replicaOf === name) t.replicaOf = undefined;
  w.gone.set(name, { vaults, storeId });
}

/** psql works with the server's recorded password and finds every committed row. */
export async function assertRows(w: World, name: string): Promise<void> {
  const t = w.servers.get(name)!;
  if (t.rows === undefined) {
    const r = psqlAs(w.p, await portOf(w, name), t.password, 'SELECT 1');
    assert.equal(r.status, 0, `psql to ${name}: ${r.stderr}`);
    return;
  }
  // A live replica has every row its source committed (streaming is asynchronous: it may lag a moment).
  const source = t.replicaOf ? w.servers.get(t.replicaOf) : undefined;
  if (source?.rows !== undefined) {
    await eventually(async () => (await rowCount(w, name)) === source.rows, `the replica ${name} to have every row of ${t.replicaOf}`, 20_000);
    t.rows = source.rows;
    return;
  }
  assert.equal(await rowCount(w, name), t.rows, `every committed row of ${name} is there`);
}
