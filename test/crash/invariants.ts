/**
 * What must hold after any crash and restart: every operation has ended; every server is Ready (or
 * Inaccessible with its reason, or Stopped where it was stopped); nothing is left of a server that is gone
 * (image, mount, loop device, PostgreSQL, backup object, replication slot, event subscription); and no
 * committed row is lost. The checks look from outside, as an operator would: the API, the home's files,
 * `losetup`, `/proc`, the sources' `pg_replication_slots` and the customer's vaults.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { eventually } from '../harness.js';
import { OPEN, type OperationResource } from './contract.js';
import { psqlAs, superSql } from './sql.js';
import { assertRows, EAST, FS, operation, OPS, WEST, type World } from './world.js';

const REGIONS = [EAST, WEST];

/** The tenant's operations, newest first (the engine's list); undefined where the platform has no list yet. */
export async function listOperations(w: World): Promise<OperationResource[] | undefined> {
  const r = await w.p.mgmt('GET', OPS);
  if (r.status === 404 && !r.json?.error?.code?.startsWith('Operation')) return undefined;
  assert.equal(r.status, 200, `operations list: ${r.status} ${r.text}`);
  return r.json.value;
}

/** Waits until no operation is Queued or InProgress; returns the list (or the tracked operations). */
export async function allEnded(w: World, engine: boolean, timeoutMs = 120_000): Promise<OperationResource[]> {
  let open: string[] = [];
  return eventually(async () => {
    const listed = engine ? await listOperations(w) : undefined;
    if (engine && !listed) throw new Error('the platform lists no operations (GET .../operations)');
    const ops = listed ?? await Promise.all([...w.ops].map((u) => operation(w, u)));
    open = ops.filter((o) => OPEN.includes(o.status)).map((o) => `${o.operation} ${o.resource} ${o.status}`);
    return open.length === 0 && ops;
  }, 'every operation to end', timeoutMs, 500).catch((e) => assert.fail(`${(e as Error).message}; still open: ${open.join(', ')}`));
}

const listDir = (d: string) => (existsSync(d) ? readdirSync(d) : []);

function mounts(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m): m is string => !!m);
}

function postgresCmdlines(home: string): string[] {
  return readdirSync('/proc').filter((e) => /^\d+$/.test(e)).flatMap((pid) => {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      return cmd.includes(home) && /postgres/.test(cmd) ? [cmd] : [];
    } catch {
      return [];
    }
  });
}

/** Each region's store: server id -> the server names its manifests carry. */
function storeOwners(home: string): Map<string, { region: string; names: Set<string> }> {
  const owners = new Map<string, { region: string; names: Set<string> }>();
  for (const region of REGIONS) {
    const root = join(home, 'regions', region, 'backups');
    for (const id of listDir(root).filter((d) => statSync(join(root, d)).isDirectory())) {
      const names = new Set(listDir(join(root, id, 'backups')).filter((f) => f.endsWith('.json'))
        .map((f) => JSON.parse(readFileSync(join(root, id, 'backups', f), 'utf8')).serverName as string));
      owners.set(`${region}/${id}`, { region, names });
    }
  }
  return owners;
}

/** The id under which a server's backups are kept (from its manifests), if it has any. */
export function storeIdOf(w: World, name: string): string | undefined {
  for (const [key, o] of storeOwners(w.p.home)) if (o.names.has(name)) return key.split('/')[1];
  return undefined;
}

/** Waits until every tracked server is where it must be (Ready ones letting psql in); returns what the API shows. */
export async function settle(w: World): Promise<Map<string, any>> {
  const live = new Map<string, any>();
  for (const [name, t] of w.servers) {
    const s = await eventually(async () => {
      const r = await w.p.mgmt('GET', `${FS}/${name}`);
      assert.notEqual(r.status, 404, `${name} still exists`);
      const st = r.json.properties.state;
      return (st === t.expect || (st === 'Inaccessible' && r.json.properties.inaccessibleReason)) && r.json;
    }, `${name} to be ${t.expect}`, 60_000, 300);
    assert.equal(s.properties.state, t.expect, `${name} is ${t.expect} (keys were never revoked here): ${JSON.stringify(s.properties)}`);
    // A state read back from the database may precede the restart's work: Ready means psql gets in.
    if (t.expect === 'Ready') {
      const r = await eventually(() => {
        const r = psqlAs(w.p, s.properties.port, t.password, 'SELECT 1');
        return (r.status === 0 || /password authentication failed/.test(r.stderr)) && r;
      }, `psql to get into ${name}`, 60_000, 300);
      assert.equal(r.status, 0, `${name} takes its administrator password: ${r.stderr.trim()}`);
    }
    live.set(name, s);
  }
  return live;
}

/** Every invariant, after the platform has come back; `engine`: the platform lists its operations and their steps. */
export async function checkInvariants(w: World, engine: boolean): Promise<void> {
  const ops = await allEnded(w, engine);
  if (engine) {
    for (const o of ops) {
      assert.ok(Array.isArray(o.steps) && o.steps.length > 0, `operation ${o.name} (${o.operation}) lists its steps`);
      if (o.status === 'Succeeded') for (const s of o.steps) assert.ok(['Succeeded', 'Skipped'].includes(s.status), `${o.operation} ${o.resource} Succeeded but step ${s.name} is ${s.status}`);
      if (o.status === 'Failed') assert.ok(o.error?.code && o.error.message, `a Failed ${o.operation} says why`);
    }
  }

  const live = await settle(w);
  const listed = (await w.p.mgmt('GET', FS)).json.value.map((s: any) => s.name).sort();
  assert.deepEqual(listed, [...w.servers.keys()].sort(), 'the platform lists exactly the servers that exist');

  // Nothing of a gone server, and nothing that belongs to no server. What a gone server left is reported by
  // the case that left it, not again by every later one.
  const home = w.p.home;
  const liveNames = new Set([...w.servers.keys(), ...w.reported]);
  for (const region of REGIONS) {
    const images = listDir(join(home, 'regions', region, 'volumes')).filter((f) => f.endsWith('.img')).map((f) => f.slice(0, -4));
    assert.deepEqual(images.filter((n) => !liveNames.has(n)), [], `no image in ${region} belongs to no server`);
    const mnt = join(home, 'regions', region, 'mnt') + '/';
    const strays = mounts().filter((m) => m.startsWith(mnt) && !liveNames.has(m.slice(mnt.length).split('/')[0]));
    assert.deepEqual(strays, [], `no mount in ${region} belongs to no server`);
  }
  const loops = spawnSync('losetup', ['-a'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.includes(home));
  const strayLoops = loops.filter((l) => !/\/volumes\/([^/]+)\.img\)/.test(l) || !liveNames.has(l.match(/\/volumes\/([^/]+)\.img\)/)![1]));
  assert.deepEqual(strayLoops, [], 'no loop device on an image of a gone server');
  const gone = [...w.gone].filter(([name]) => !w.reported.has(name));
  for (const [name] of gone) w.reported.add(name);
  for (const [name] of gone) {
    assert.equal((await w.p.mgmt('GET', `${FS}/${name}`)).status, 404, `${name} is gone`);
    assert.deepEqual(postgresCmdlines(home).filter((c) => c.includes(`/mnt/${name}/`)), [], `no PostgreSQL of ${name} runs`);
  }
  for (const [key, o] of storeOwners(home)) {
    const id = key.split('/')[1];
    const goneOwner = gone.find(([, g]) => g.storeId === id);
    assert.equal(goneOwner, undefined, `the store still holds ${key}, of the deleted ${goneOwner?.[0]}`);
    assert.ok([...o.names].some((n) => liveNames.has(n)), `the store's ${key} belongs to a live server (its manifests name: ${[...o.names].join(', ') || 'nobody'})`);
  }

  // Replication slots: a source holds one per live replica, no more.
  for (const [name, s] of live) {
    if (s.properties.replicationRole !== 'Primary' || s.properties.state !== 'Ready') continue;
    const replicas = [...live.values()].filter((r) => r.properties.sourceServerResourceId?.endsWith(`/${name}`)).length;
    const slots = superSql(w.p, w.servers.get(name)!.region, name, 'SELECT count(*) FROM pg_catalog.pg_replication_slots');
    assert.ok(slots && slots.status === 0, `the slots of ${name} can be read: ${slots?.stderr}`);
    assert.equal(Number(slots.stdout), replicas, `${name} holds a slot for each of its ${replicas} live replica(s), no more`);
  }

  // Event subscriptions: none for a server that is gone.
  const vaults = new Set(gone.flatMap(([, g]) => g.vaults));
  for (const v of vaults) {
    const subs: string[] = (w.p.cli('vault', 'event-subscription', 'list', '--vault-name', v) as any[]).map((x) => x.name);
    for (const [name, g] of gone) if (g.vaults.includes(v)) assert.ok(!subs.includes(`pgbyok-server-${name}`), `vault ${v} has no subscription of the gone ${name}`);
  }

  // No committed row is lost.
  for (const [name, t] of w.servers) if (t.expect === 'Ready' && live.get(name).properties.state === 'Ready') await assertRows(w, name);
}
