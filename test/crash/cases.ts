/**
 * One crash case per workflow kind: what it needs first (made with operations of other kinds, so the fail
 * point never fires on them), the operation it sends, and what must hold once the platform is back. The
 * fixture servers are `src` (the source of restores, geo-restores and replicas, geo-redundant, backed up),
 * `life` (stopped, started, restarted and updated in turn) and `rev` (made Inaccessible and revalidated);
 * created, restored and promoted servers go to a pool that the Delete cases consume.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually } from '../harness.js';
import { OPEN, WORKFLOW_STEPS, type OperationResource } from './contract.js';
import { listOperations, storeIdOf } from './invariants.js';
import { assertRows, commitRows, createBody, createServer, deleteServer, EAST, forget, FS, operation, password, portOf, run, send, show, sourceId, WEST, type World } from './world.js';
import { psqlAs } from './sql.js';

export interface Ctx {
  target: string;
  op?: string;
  before?: Record<string, unknown>;
}

interface Kind {
  prepare(w: World): Promise<Ctx>;
  trigger(w: World, ctx: Ctx): Promise<void>;
  verify(w: World, ctx: Ctx, op: OperationResource): Promise<void>;
}

/** The servers a Delete case may consume, and the replicas a Promote case may promote. */
export const pool = { deletable: [] as string[], replicas: [] as string[] };

const fresh = (w: World, prefix: string) => `${prefix}-${++w.seq}`;

async function sendTracked(w: World, ctx: Ctx, method: string, path: string, body?: unknown) {
  ctx.op = (await send(w, method, path, body))?.op;
}

/** The operation the case sent: from its 202, or (when the kill cut the answer) the newest of its kind on the target. */
export async function caseOperation(w: World, kind: string, ctx: Ctx): Promise<OperationResource> {
  if (ctx.op) return operation(w, ctx.op);
  const ops = (await listOperations(w)) ?? [];
  const op = ops.find((o) => o.operation === kind && o.resource === ctx.target);
  assert.ok(op, `an operation ${kind} on ${ctx.target} was recorded before the kill: ${ops.slice(0, 5).map((o) => `${o.operation}/${o.resource}`).join(', ')}`);
  return op;
}

/** A new server (create, restore, replica): Ready with its operation Succeeded, or removed with it Failed. */
async function verifyNew(w: World, ctx: Ctx, op: OperationResource, track: () => Promise<void>): Promise<boolean> {
  const s = await show(w, ctx.target);
  if (s.status === 404) {
    assert.equal(op.status, 'Failed', `${ctx.target} is gone, so its ${op.operation} must have Failed (it is ${op.status})`);
    return false;
  }
  assert.equal(op.status, 'Succeeded', `${ctx.target} exists, so its ${op.operation} must have Succeeded: ${JSON.stringify(op.error)}`);
  assert.equal(s.json.properties.state, 'Ready');
  await track();
  return true;
}

function restoreKind(geo: boolean): Kind {
  return {
    async prepare(w) {
      await commitRows(w, 'src');
      return { target: fresh(w, geo ? 'geo' : 'rs'), before: { rows: w.servers.get('src')!.rows } };
    },
    async trigger(w, ctx) {
      await sendTracked(w, ctx, 'PUT', `${FS}/${ctx.target}`, {
        location: geo ? WEST : EAST,
        properties: { createMode: geo ? 'GeoRestore' : 'PointInTimeRestore', sourceServerResourceId: sourceId(w, 'src') },
      });
    },
    async verify(w, ctx, op) {
      const vaults = geo ? [w.west.vault] : [w.east.vault];
      const made = await verifyNew(w, ctx, op, async () => {
        w.servers.set(ctx.target, { region: geo ? WEST : EAST, password: w.servers.get('src')!.password, rows: ctx.before!.rows as number, expect: 'Ready', vaults });
        await assertRows(w, ctx.target);
        pool.deletable.push(ctx.target);
      });
      if (!made) w.gone.set(ctx.target, { vaults });
    },
  };
}

export const KINDS: Record<string, Kind> = {
  Create: {
    async prepare(w) {
      return { target: fresh(w, 'cr'), before: { password: password(w) } };
    },
    async trigger(w, ctx) {
      await sendTracked(w, ctx, 'PUT', `${FS}/${ctx.target}`, createBody(w, ctx.before!.password as string, w.east.keys[0]));
    },
    async verify(w, ctx, op) {
      const vaults = [w.east.vault];
      const made = await verifyNew(w, ctx, op, async () => {
        w.servers.set(ctx.target, { region: EAST, password: ctx.before!.password as string, expect: 'Ready', vaults });
        await commitRows(w, ctx.target);
        pool.deletable.push(ctx.target);
      });
      if (!made) w.gone.set(ctx.target, { vaults });
    },
  },

  Restore: restoreKind(false),
  GeoRestore: restoreKind(true),

  CreateReplica: {
    async prepare(w) {
      await commitRows(w, 'src');
      return { target: fresh(w, 'rp') };
    },
    async trigger(w, ctx) {
      await sendTracked(w, ctx, 'PUT', `${FS}/${ctx.target}`, { location: EAST, properties: { createMode: 'Replica', sourceServerResourceId: sourceId(w, 'src') } });
    },
    async verify(w, ctx, op) {
      const made = await verifyNew(w, ctx, op, async () => {
        const src = w.servers.get('src')!;
        w.servers.set(ctx.target, { region: EAST, password: src.password, rows: src.rows, expect: 'Ready', replicaOf: 'src', vaults: [w.east.vault] });
        await eventually(async () => (await rowsOn(w, ctx.target)) === src.rows, `the replica ${ctx.target} to catch up`, 20_000);
        pool.replicas.push(ctx.target);
      });
      if (!made) w.gone.set(ctx.target, { vaults: [w.east.vault] });
    },
  },

  Promote: {
    async prepare(w) {
      let target = pool.replicas.shift();
      if (!target) {
        target = fresh(w, 'rp');
        await run(w, 'PUT', `${FS}/${target}`, { location: EAST, properties: { createMode: 'Replica', sourceServerResourceId: sourceId(w, 'src') } });
        const src = w.servers.get('src')!;
        w.servers.set(target, { region: EAST, password: src.password, rows: src.rows, expect: 'Ready', replicaOf: 'src', vaults: [w.east.vault] });
      }
      await commitRows(w, 'src');
      const rows = w.servers.get('src')!.rows;
      await eventually(async () => (await rowsOn(w, target)) === rows, `${target} to catch up before the promote`, 20_000);
      w.servers.get(target)!.rows = rows;
      return { target };
    },
    async trigger(w, ctx) {
      await sendTracked(w, ctx, 'POST', `${FS}/${ctx.target}/promote`);
    },
    async verify(w, ctx, op) {
      assert.equal(op.status, 'Succeeded', JSON.stringify(op.error));
      const s = (await show(w, ctx.target)).json;
      assert.equal(s.properties.replicationRole, 'Primary', 'the promoted replica is recorded as a primary');
      assert.equal(s.properties.sourceServerResourceId, undefined);
      w.servers.get(ctx.target)!.replicaOf = undefined;
      await commitRows(w, ctx.target, 1);
      const again = await w.p.mgmt('POST', `${FS}/${ctx.target}/promote`);
      assert.ok(again.status === 400 || again.status === 409, `a second promote is refused: ${again.status} ${again.text}`);
      assert.match(JSON.stringify(again.json), /NotAReplica|not a (read )?replica/i);
      pool.deletable.push(ctx.target);
    },
  },

  Delete: {
    async prepare(w) {
      let target = pool.deletable.shift();
      if (!target) {
        target = fresh(w, 'dl');
        await createServer(w, target, w.east.keys[0]);
      }
      await commitRows(w, target, 1).catch(() => undefined);
      return { target, before: { storeId: storeIdOf(w, target) } };
    },
    async trigger(w, ctx) {
      const vaults = w.servers.get(ctx.target)!.vaults;
      // Gone from the moment it is asked for: the checks after the restart look for its leftovers, not for it.
      forget(w, ctx.target, ctx.before!.storeId as string | undefined, vaults);
      await sendTracked(w, ctx, 'DELETE', `${FS}/${ctx.target}`);
    },
    async verify(w, ctx, op) {
      assert.equal(op.status, 'Succeeded', JSON.stringify(op.error));
    },
  },

  Update: {
    async prepare(w) {
      await commitRows(w, 'life');
      const s = (await show(w, 'life')).json;
      const next = lifeKeys(w).find((k) => k.keyUri !== s.properties.dataEncryption.primaryKeyURI)!;
      return { target: 'life', before: { key: next.keyUri, storage: s.properties.storage.storageSizeGB + 1, password: password(w) } };
    },
    async trigger(w, ctx) {
      const b = ctx.before!;
      await sendTracked(w, ctx, 'PATCH', `${FS}/life`, {
        properties: {
          storage: { storageSizeGB: b.storage }, administratorLoginPassword: b.password,
          dataEncryption: { type: 'AzureKeyVault', primaryKeyURI: b.key, primaryUserAssignedIdentityId: w.east.identityId },
        },
      });
      // An accepted update finishes (verify says so); the server is Ready again only once it has, with this password.
      w.servers.get('life')!.password = b.password as string;
    },
    async verify(w, ctx, op) {
      const b = ctx.before!;
      assert.equal(op.status, 'Succeeded', `an accepted update finishes: ${JSON.stringify(op.error)}`);
      const s = (await show(w, 'life')).json;
      assert.equal(s.properties.storage.storageSizeGB, b.storage);
      assert.equal(s.properties.dataEncryption.primaryKeyURI, b.key);
      assertBackupKeysUnder(w, 'life', b.key as string);
    },
  },

  Stop: {
    async prepare(w) {
      await ensureLife(w, 'Ready');
      await commitRows(w, 'life');
      return { target: 'life' };
    },
    async trigger(w, ctx) {
      await sendTracked(w, ctx, 'POST', `${FS}/life/stop`);
      w.servers.get('life')!.expect = 'Stopped';
    },
    async verify(w, ctx, op) {
      assert.equal(op.status, 'Succeeded', JSON.stringify(op.error));
    },
  },

  Start: {
    async prepare(w) {
      await ensureLife(w, 'Stopped');
      return { target: 'life' };
    },
    async trigger(w, ctx) {
      await sendTracked(w, ctx, 'POST', `${FS}/life/start`);
      w.servers.get('life')!.expect = 'Ready';
    },
    async verify(w, ctx, op) {
      assert.equal(op.status, 'Succeeded', JSON.stringify(op.error));
    },
  },

  Restart: {
    async prepare(w) {
      await ensureLife(w, 'Ready');
      await commitRows(w, 'life');
      return { target: 'life' };
    },
    async trigger(w, ctx) {
      await sendTracked(w, ctx, 'POST', `${FS}/life/restart`);
    },
    async verify(w, ctx, op) {
      assert.equal(op.status, 'Succeeded', JSON.stringify(op.error));
    },
  },

  Revalidate: {
    async prepare(w) {
      const key = w.east.keys.find((k) => k.keyName === 'kek-rv')!;
      w.p.cli('key', 'set-attributes', '--vault-name', key.vault, '--name', key.keyName, '--enabled', 'false');
      await eventually(async () => (await show(w, 'rev')).json.properties.state === 'Inaccessible', 'rev Inaccessible', 20_000);
      w.p.cli('key', 'set-attributes', '--vault-name', key.vault, '--name', key.keyName, '--enabled', 'true');
      return { target: 'rev' };
    },
    async trigger(w, ctx) {
      // The key monitor may run its own revalidation first: the fail point stops whichever Revalidate comes first.
      const r = await w.p.mgmt('POST', `${FS}/rev/revalidate`).catch(() => undefined);
      const op = r?.headers['azure-asyncoperation'] as string | undefined;
      if (op) w.ops.add(op);
      ctx.op = op;
    },
    async verify(w, ctx, op) {
      assert.ok(!OPEN.includes(op.status));
      assert.equal((await show(w, 'rev')).json.properties.state, 'Ready');
    },
  },

  Backup: {
    async prepare(w) {
      await commitRows(w, 'src');
      return { target: 'src', before: { backups: await backupCount(w, 'src') } };
    },
    async trigger(w, ctx) {
      await sendTracked(w, ctx, 'POST', `${FS}/src/backups`);
    },
    async verify(w, ctx, op) {
      assert.equal(op.status, 'Succeeded', JSON.stringify(op.error));
      assert.equal(await backupCount(w, 'src'), (ctx.before!.backups as number) + 1, 'the backup is listed once');
    },
  },
};

/**
 * Waits for the case's operation to end. A resumed operation takes its time after the restart: it must end,
 * not merely have ended already; until it has, its server may still show the state the kill left (a resumed
 * Revalidate's server is Inaccessible until its bring-up), so this comes before the servers are settled.
 */
export async function caseEnded(w: World, kind: string, ctx: Ctx): Promise<OperationResource> {
  return eventually(async () => {
    const o = await caseOperation(w, kind, ctx);
    return !OPEN.includes(o.status) && o;
  }, `the ${kind} operation to end`, 180_000, 300);
}

/** Every check a case ends with, besides the invariants: its operation has ended with the contract's steps. */
export async function verifyCase(w: World, kind: string, ctx: Ctx, engine = true): Promise<void> {
  const op = await caseEnded(w, kind, ctx);
  if (engine) {
    assert.deepEqual(op.steps.map((s) => s.name), WORKFLOW_STEPS[kind], `the ${kind} operation runs the contract's steps`);
    for (const s of op.steps) assert.ok(s.attempts >= (s.status === 'Pending' || s.status === 'Skipped' ? 0 : 1), `step ${s.name} counts its attempts`);
  }
  await KINDS[kind].verify(w, ctx, op);
}

/** The two keys `life` alternates between (no other server uses them, so either may be revoked). */
export const lifeKeys = (w: World) => w.east.keys.filter((k) => k.keyName === 'kek-b' || k.keyName === 'kek-c');

async function rowsOn(w: World, name: string): Promise<number> {
  const r = psqlAs(w.p, await portOf(w, name), w.servers.get(name)!.password, 'SELECT count(*) FROM public.t');
  return r.status === 0 ? Number(r.stdout) : -1;
}

async function backupCount(w: World, name: string): Promise<number> {
  return (await w.p.mgmt('GET', `${FS}/${name}/backups`)).json.value.length;
}

async function ensureLife(w: World, state: 'Ready' | 'Stopped'): Promise<void> {
  const t = w.servers.get('life')!;
  if (t.expect === state) return;
  await run(w, 'POST', `${FS}/life/${state === 'Ready' ? 'start' : 'stop'}`);
  t.expect = state;
}

/** Every backup key of the server is wrapped by a version of `keyUri` (so revoking the old key loses nothing). */
export function assertBackupKeysUnder(w: World, name: string, keyUri: string): void {
  const id = storeIdOf(w, name);
  assert.ok(id, `${name} has backups`);
  const dir = join(w.p.home, 'regions', EAST, 'backups', id, 'keys');
  const wrappedBy = readdirSync(dir).map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')).wrappedBy as string);
  assert.ok(wrappedBy.length > 0 && wrappedBy.every((k) => k.startsWith(`${keyUri}/`)), `every backup key of ${name} is wrapped by ${keyUri}: ${wrappedBy.join(', ')}`);
}

/** Deletes the pool's spare servers (in a life whose fail point is not on Delete), keeping `keep` for the Delete cases. */
export async function trimPool(w: World, keep: number): Promise<void> {
  while (pool.deletable.length > keep) {
    const name = pool.deletable.pop()!;
    await deleteServer(w, name, storeIdOf(w, name));
  }
  while (pool.replicas.length > keep) {
    const name = pool.replicas.pop()!;
    await deleteServer(w, name, undefined);
  }
}
