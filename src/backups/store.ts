import { createReadStream, createWriteStream, existsSync, fsyncSync, mkdirSync, openSync, closeSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, normalize, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * Where backups live: a small object-store interface (put, get, list, delete), so an object store can be
 * plugged in later. The file store keeps one directory per region; every write is atomic (temporary file,
 * fsync, rename), so a crash never leaves half an object under its final name.
 */
export interface BackupStore {
  readonly name: string;
  put(key: string, source: Readable): Promise<number>;
  get(key: string): Readable;
  putJson(key: string, value: unknown): Promise<void>;
  getJson<T>(key: string): T | undefined;
  list(prefix: string): string[];
  exists(key: string): boolean;
  delete(key: string): void;
  /** Absolute path of an object (for tests that tamper with it, and for scans). */
  pathOf(key: string): string;
}

export function createFileStore(root: string, name: string): BackupStore {
  const pathOf = (key: string) => {
    const p = normalize(join(root, key));
    if (!p.startsWith(root + sep)) throw new Error(`invalid object key '${key}'`);
    return p;
  };
  const fsyncDir = (dir: string) => {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  };
  return {
    name,
    pathOf,
    async put(key, source) {
      const path = pathOf(key);
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      const tmp = `${path}.partial-${process.pid}`;
      try {
        await pipeline(source, createWriteStream(tmp, { mode: 0o600 }));
        const fd = openSync(tmp, 'r');
        fsyncSync(fd);
        closeSync(fd);
        renameSync(tmp, path);
        fsyncDir(dirname(path));
      } catch (e) {
        rmSync(tmp, { force: true });
        throw e;
      }
      return statSync(path).size;
    },
    get(key) {
      const path = pathOf(key);
      if (!existsSync(path)) throw new Error(`backup object ${key} does not exist in store ${name}`);
      return createReadStream(path);
    },
    async putJson(key, value) {
      const { Readable } = await import('node:stream');
      await this.put(key, Readable.from([Buffer.from(JSON.stringify(value, null, 2) + '\n')]));
    },
    getJson<T>(key: string) {
      const path = pathOf(key);
      return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as T) : undefined;
    },
    list(prefix) {
      const dir = pathOf(prefix);
      if (!existsSync(dir)) return [];
      return readdirSync(dir).filter((f) => !f.includes('.partial-')).sort().map((f) => join(prefix, f));
    },
    exists: (key) => existsSync(pathOf(key)),
    delete: (key) => rmSync(pathOf(key), { force: true }),
  };
}
