import { randomBytes, randomUUID } from 'node:crypto';
import { chownSync, createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { HomePaths } from '../lib/home.js';
import type { PostgresInstance } from '../postgres/instance.js';
import type { KeyAccess } from '../keyaccess/key-access.js';
import type { DataEncryption, GeoBackup, KeyLocator } from '../keyaccess/encryption.js';
import { systemClock, type Clock } from '../lib/clock.js';
import { openStream, sealStream } from './sealed-stream.js';
import { createFileStore, type BackupStore } from './store.js';

/**
 * Encrypted backups: full base backups (pg_basebackup, streamed) and continuous WAL archiving, sealed in
 * the region's backup store under backup keys ("epochs") that are wrapped by the server's key in the
 * vault — exactly like the server's DEK. Nothing reaches the store, or any disk outside the server's
 * encrypted volume, in plaintext. A restore needs the source's key to open the epochs.
 */

export interface BackupManifest {
  id: string;
  serverId: string;
  serverName: string;
  epoch: string;
  startTime: string;
  endTime: string;
  startWal: string;
  sizeBytes: number;
  type: 'Full';
}

interface EpochRecord {
  epoch: string;
  encryption: DataEncryption;
  wrappedKey: string;
  wrappedBy: string;
  created: string;
}

/** What the backups need to know of a server: where it is, and which key protects its backups. */
export interface BackupSubject {
  id: string;
  name: string;
  location: string;
  current: { encryption: DataEncryption; wrappedBy: string };
  geo?: GeoBackup;
}
type Server = BackupSubject;

const WAL_RE = /^[0-9A-F]{24}$|^[0-9A-F]{8}\.history$/;

export interface BackupsDeps {
  home: HomePaths;
  locator: KeyLocator;
  /** The clock of backup times and of the retention window (the system clock unless a test moves it). */
  clock?: Clock;
  keys: KeyAccess;
  logger: Logger;
}

export function createBackupsService(d: BackupsDeps) {
  const clock = d.clock ?? systemClock;
  const nowIso = () => new Date(clock.now()).toISOString();
  const stores = new Map<string, BackupStore>();
  const keyCache = new Map<string, Buffer>();

  const storeOf = (region: string): BackupStore => {
    let s = stores.get(region);
    if (!s) {
      const root = join(d.home.root, 'regions', region, 'backups');
      // The region directory must stay traversable for the postgres user (volumes are mounted below it).
      mkdirSync(join(d.home.root, 'regions', region), { recursive: true, mode: 0o711 });
      mkdirSync(root, { recursive: true, mode: 0o700 });
      s = createFileStore(root, region);
      stores.set(region, s);
    }
    return s;
  };

  const epochKeyPath = (serverId: string, epoch: string) => `${serverId}/keys/${epoch}.json`;

  /** A fresh backup key, wrapped by the server's key through the vault. */
  const newEpoch = async (s: Server): Promise<string> => {
    const epoch = `${clock.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    const key = randomBytes(32);
    const enc = s.current.encryption;
    const { kid, wrapped } = await d.keys.wrap(await d.locator.keyUriOf(enc, s.location), key, d.locator.principalOf(enc));
    const record: EpochRecord = { epoch, encryption: enc, wrappedKey: wrapped, wrappedBy: kid, created: nowIso() };
    await storeOf(s.location).putJson(epochKeyPath(s.id, epoch), record);
    if (s.geo) {
      // The paired region's copy opens with the geo key only (a different identity, a vault of that region).
      const geo = await d.keys.wrap(await d.locator.keyUriOf(s.geo.encryption, s.geo.region), key, d.locator.principalOf(s.geo.encryption));
      await storeOf(s.geo.region).putJson(epochKeyPath(s.id, epoch), { ...record, encryption: s.geo.encryption, wrappedKey: geo.wrapped, wrappedBy: geo.kid });
    }
    await storeOf(s.location).putJson(`${s.id}/current-epoch.json`, { epoch });
    keyCache.set(`${s.id}/${epoch}`, key);
    return epoch;
  };

  /** Opens an epoch's key with the principal of the encryption that wrapped it (or another that may). */
  const epochKey = async (s: Pick<Server, 'id' | 'location'>, epoch: string): Promise<Buffer> => {
    const cached = keyCache.get(`${s.id}/${epoch}`);
    if (cached) return cached;
    const rec = storeOf(s.location).getJson<EpochRecord>(epochKeyPath(s.id, epoch));
    if (!rec) throw new Error(`backup key ${epoch} of server ${s.id} is missing from the store`);
    const key = await d.keys.unwrap(rec.wrappedBy, rec.wrappedKey, d.locator.principalOf(rec.encryption));
    keyCache.set(`${s.id}/${epoch}`, key);
    return key;
  };

  const currentEpoch = async (s: Server): Promise<string> => {
    const cur = storeOf(s.location).getJson<{ epoch: string }>(`${s.id}/current-epoch.json`);
    return cur?.epoch ?? newEpoch(s);
  };

  const manifests = (s: Pick<Server, 'id' | 'location'>): BackupManifest[] =>
    storeOf(s.location).list(`${s.id}/backups`).map((k) => storeOf(s.location).getJson<BackupManifest>(k)!).filter(Boolean)
      .sort((a, b) => a.endTime.localeCompare(b.endTime));

  const walObjects = (s: Pick<Server, 'id' | 'location'>) => storeOf(s.location).list(`${s.id}/wal`).map((k) => {
    const file = k.split('/').pop()!;
    const [name, epoch] = file.replace(/\.sealed$/, '').split('.epoch-');
    return { key: k, name, epoch };
  });

  /** Geo-redundancy: the same sealed object, copied to the paired region's store. */
  const replicate = async (s: Pick<Server, 'location' | 'geo'>, key: string) => {
    if (!s.geo) return;
    await storeOf(s.geo.region).put(key, createReadStream(storeOf(s.location).pathOf(key)));
  };

  /** Seals every finished WAL segment waiting in the server's staging directory into the store. */
  const archive = async (s: Server, pg: PostgresInstance): Promise<number> => {
    const staging = pg.opts.walStagingDir;
    if (!staging || !existsSync(staging)) return 0;
    const files = readdirSync(staging).filter((f) => WAL_RE.test(f)).sort();
    if (!files.length) return 0;
    const epoch = await currentEpoch(s);
    const key = await epochKey(s, epoch);
    const store = storeOf(s.location);
    for (const f of files) {
      const objectKey = `${s.id}/wal/${f}.epoch-${epoch}.sealed`;
      await store.put(objectKey, createReadStream(join(staging, f)).pipe(sealStream(key, `${s.id}/wal/${f}`)));
      await replicate(s, objectKey);
      unlinkSync(join(staging, f));
    }
    return files.length;
  };

  /** Makes PostgreSQL finish its current WAL segment, waits for it to be staged, and archives it. */
  /** Returns whether the segment holding everything up to now is sealed in the store. */
  const flushWal = async (s: Server, pg: PostgresInstance): Promise<boolean> => {
    // A commit stamped now: recovery to any time up to now then has a record past its target to stop at.
    await pg.sql('SELECT pg_catalog.txid_current()');
    const segment = await pg.sql('SELECT pg_catalog.pg_walfile_name(pg_catalog.pg_switch_wal())');
    const deadline = Date.now() + 30_000;
    let archived = false;
    while (!archived && Date.now() < deadline) {
      archived = (await pg.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")) >= segment;
      if (!archived) await new Promise((r) => setTimeout(r, 100));
    }
    await archive(s, pg);
    return archived;
  };

  return {
    archive,
    flushWal,
    list: manifests,
    /** The backups with the key version that currently wraps each one's backup key. */
    listWithKeys: (s: Pick<Server, 'id' | 'location'>) => {
      // Many backups share an epoch: read each epoch's record once.
      const wrappedBy = new Map<string, string | undefined>();
      const of = (epoch: string) => {
        if (!wrappedBy.has(epoch)) wrappedBy.set(epoch, storeOf(s.location).getJson<EpochRecord>(epochKeyPath(s.id, epoch))?.wrappedBy);
        return wrappedBy.get(epoch);
      };
      return manifests(s).map((m) => ({ ...m, wrappedBy: of(m.epoch) }));
    },
    store: storeOf,

    /** A full base backup, streamed from pg_basebackup through encryption into the store. */
    async baseBackup(s: Server, pg: PostgresInstance): Promise<BackupManifest> {
      const epoch = await newEpoch(s);
      const key = await epochKey(s, epoch);
      const id = `${nowIso().replace(/[-:.]/g, '').slice(0, 15)}-${randomUUID().slice(0, 8)}`;
      const startWal = await pg.sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
      const startTime = nowIso();
      const child = pg.baseBackupTar();
      let stderr = '';
      child.stderr!.on('data', (c) => (stderr += c));
      const exited = new Promise<number>((r) => child.once('exit', (code) => r(code ?? 1)));
      const objectKey = `${s.id}/base/${id}.tar.sealed`;
      const size = await storeOf(s.location).put(objectKey, child.stdout!.pipe(sealStream(key, `${s.id}/base/${id}`)));
      if ((await exited) !== 0) {
        storeOf(s.location).delete(objectKey);
        throw new Error(`pg_basebackup failed: ${stderr.trim()}`);
      }
      const endTime = nowIso();
      await flushWal(s, pg);
      const manifest: BackupManifest = { id, serverId: s.id, serverName: s.name, epoch, startTime, endTime, startWal, sizeBytes: size, type: 'Full' };
      // The manifest goes last: a backup exists only once all of it is in the store.
      await replicate(s, objectKey);
      await storeOf(s.location).putJson(`${s.id}/backups/${id}.json`, manifest);
      await replicate(s, `${s.id}/backups/${id}.json`);
      return manifest;
    },

    /** Re-wraps every backup key of the server under its current key; no backup data is re-encrypted. */
    async rewrapEpochs(s: Server): Promise<number> {
      const store = storeOf(s.location);
      let n = 0;
      for (const k of store.list(`${s.id}/keys`)) {
        const rec = store.getJson<EpochRecord>(k)!;
        if (rec.wrappedBy === s.current.wrappedBy) continue;
        const key = await epochKey(s, rec.epoch);
        const enc = s.current.encryption;
        const { kid, wrapped } = await d.keys.wrap(await d.locator.keyUriOf(enc, s.location), key, d.locator.principalOf(enc));
        await store.putJson(k, { ...rec, encryption: enc, wrappedKey: wrapped, wrappedBy: kid });
        n++;
      }
      return n;
    },

    /** Drops the server's backup keys from memory (when its key access is gone). */
    forget(s: Pick<Server, 'id'>) {
      for (const [k, v] of keyCache) {
        if (k.startsWith(`${s.id}/`)) {
          v.fill(0);
          keyCache.delete(k);
        }
      }
    },

    /** Prunes what falls outside the retention window, keeping what a restore to its start needs. */
    prune(s: Server, retentionDays: number) {
      const store = storeOf(s.location);
      const all = manifests(s);
      const windowStart = new Date(clock.now() - retentionDays * 86400_000).toISOString();
      // The newest backup that ended before the window still serves restores to the window's start.
      const keepFrom = [...all].reverse().find((m) => m.endTime <= windowStart);
      const doomed = all.filter((m) => keepFrom && m.endTime < keepFrom.endTime);
      const stores = [store, ...(s.geo ? [storeOf(s.geo.region)] : [])];
      for (const m of doomed) {
        for (const st of stores) {
          st.delete(`${s.id}/backups/${m.id}.json`);
          st.delete(`${s.id}/base/${m.id}.tar.sealed`);
        }
      }
      const oldest = manifests(s)[0];
      if (oldest) {
        for (const w of walObjects(s)) if (!w.name.endsWith('.history') && w.name < oldest.startWal) for (const st of stores) st.delete(w.key);
      }
      return doomed.length;
    },

    deleteAll(s: Pick<Server, 'id' | 'location' | 'geo'>) {
      this.forget(s);
      rmSync(storeOf(s.location).pathOf(s.id), { recursive: true, force: true });
      if (s.geo) rmSync(storeOf(s.geo.region).pathOf(s.id), { recursive: true, force: true });
    },

    /**
     * Checks that the source's backups can be opened (its key reachable) before anything is created.
     * Returns the base backup a restore to `restoreTime` starts from.
     */
    async planRestore(source: Pick<Server, 'id' | 'location' | 'name'>, restoreTime?: string): Promise<BackupManifest> {
      const all = manifests(source);
      if (!all.length) throw new Error(`server ${source.name} has no backup yet`);
      const base = restoreTime ? [...all].reverse().find((m) => m.endTime <= restoreTime) : all[all.length - 1];
      if (!base) throw new Error(`the earliest restore point of ${source.name} is ${all[0].endTime}`);
      await epochKey(source, base.epoch);
      for (const e of new Set(walObjects(source).map((w) => w.epoch))) await epochKey(source, e);
      return base;
    },

    /**
     * Restores into a new server's unlocked volume: the base backup is decrypted straight into tar (as the
     * server's OS account), the WAL it needs into the encrypted volume, and recovery is configured to the time.
     */
    async restoreInto(source: Pick<Server, 'id' | 'location' | 'name'>, base: BackupManifest, target: PostgresInstance, restoreTime?: string): Promise<void> {
      const { uid, gid } = await target.ensureOwner();
      const dataDir = target.opts.dataDir;
      if (existsSync(dataDir)) rmSync(dataDir, { recursive: true, force: true });
      mkdirSync(dataDir, { mode: 0o700 });
      chownSync(dataDir, uid, gid);
      const key = await epochKey(source, base.epoch);
      const tar = target.spawnAsOwner(['tar', '-x', '-f', '-', '-C', dataDir]);
      let tarErr = '';
      tar.stderr!.on('data', (c) => (tarErr += c));
      const tarExit = new Promise<number>((r) => tar.once('exit', (c) => r(c ?? 1)));
      try {
        await pipeline(storeOf(source.location).get(`${source.id}/base/${base.id}.tar.sealed`), openStream(key, `${source.id}/base/${base.id}`), tar.stdin!);
      } catch (e) {
        tar.kill('SIGKILL');
        throw e;
      }
      if ((await tarExit) !== 0) throw new Error(`unpacking the base backup failed: ${tarErr.trim()}`);

      const walDir = join(dataDir, '..', 'wal-restore');
      rmSync(walDir, { recursive: true, force: true });
      mkdirSync(walDir, { mode: 0o700 });
      chownSync(walDir, uid, gid);
      for (const w of walObjects(source)) {
        if (!w.name.endsWith('.history') && w.name < base.startWal) continue;
        const wkey = await epochKey(source, w.epoch);
        const out = join(walDir, w.name);
        await pipeline(storeOf(source.location).get(w.key), openStream(wkey, `${source.id}/wal/${w.name}`), createWriteStream(out, { mode: 0o600 }));
        chownSync(out, uid, gid);
      }
      target.configureRecovery(walDir, restoreTime);
    },

    async cleanupRestore(target: PostgresInstance): Promise<void> {
      target.finishRecovery();
      rmSync(join(target.opts.dataDir, '..', 'wal-restore'), { recursive: true, force: true });
    },

    /** The files of every object in a region's store, for scans. */
    objects(region: string): string[] {
      const root = join(d.home.root, 'regions', region, 'backups');
      const walk = (dir: string): string[] => (existsSync(dir)
        ? readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? walk(join(dir, f)) : [join(dir, f)]))
        : []);
      return walk(root);
    },
  };
}

export type BackupsService = ReturnType<typeof createBackupsService>;
