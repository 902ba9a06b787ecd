import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HomePaths } from '../lib/home.js';
import { PostgresInstance } from '../postgres/instance.js';
import { serverOsUserName } from '../postgres/os-user.js';
import { Volume, volumePaths } from '../storage/volume.js';
import type { Server } from './model/server.js';

/**
 * Where a server's parts are and who reaches its key: shared by the server lifecycle and the backups, so
 * both find the same volume, the same PostgreSQL and the same key.
 */
export function createServerRuntime(d: { home: HomePaths }) {
  /** Where each server's PostgreSQL listens (loopback only): its public port belongs to pgbyok's front door. */
  const privatePorts = new Map<string, number>();
  const volumeOf = (s: Pick<Server, 'name' | 'location'>) => new Volume(s.name, volumePaths(d.home.root, s.location, s.name));
  const dataDirOf = (volume: Volume) => join(volume.dataDir, 'pgdata');
  /** The port a PostgreSQL still running from before a restart of the platform listens on (its postmaster.pid says). */
  const runningPort = (volume: Volume): number | undefined => {
    try {
      const port = Number(readFileSync(join(dataDirOf(volume), 'postmaster.pid'), 'utf8').split('\n')[3]);
      return Number.isInteger(port) && port > 0 ? port : undefined;
    } catch {
      return undefined;
    }
  };
  const privatePortOf = (s: Pick<Server, 'name' | 'location' | 'port'>, volume: Volume): number => {
    let port = privatePorts.get(s.name);
    if (port === undefined) {
      port = runningPort(volume);
      if (port !== undefined) privatePorts.set(s.name, port);
    }
    // Not assigned yet (nothing runs): the instance is only inspected, never started, with this value.
    return port ?? s.port;
  };
  return {
    volumeOf,
    /** Every private port in use, so no public or private port is handed out twice. */
    privatePorts: () => new Set(privatePorts.values()),
    /** Gives the server a private port before its PostgreSQL starts; keeps the one it has. */
    assignPrivatePort(s: Pick<Server, 'name' | 'location' | 'port'>, pick: () => Promise<number>): Promise<number> {
      const known = privatePorts.get(s.name) ?? runningPort(volumeOf(s));
      if (known !== undefined && known !== s.port) {
        privatePorts.set(s.name, known);
        return Promise.resolve(known);
      }
      return pick().then((port) => {
        privatePorts.set(s.name, port);
        return port;
      });
    },
    releasePrivatePort: (name: string) => void privatePorts.delete(name),
    privatePortOf: (s: Pick<Server, 'name' | 'location' | 'port'>) => privatePortOf(s, volumeOf(s)),
    /** Archived WAL waits here, inside the encrypted directory, until the archiver seals it into the store. */
    walStagingOf: (s: Pick<Server, 'name' | 'location'>, volume = volumeOf(s)) => join(volume.dataDir, 'wal-staging'),
    /**
     * The server's PostgreSQL: run as the server's own OS account, with its volume private to that account.
     * `extra` carries the user's parameters (see server-postgres.ts).
     */
    pgOf: (s: Pick<Server, 'id' | 'name' | 'location' | 'port' | 'adminLogin'>, volume = volumeOf(s), extra: { parameters?: Record<string, string>; onStarted?: () => void } = {}) => new PostgresInstance({
      dataDir: dataDirOf(volume),
      socketDir: join(d.home.root, 'regions', s.location, 'run', s.name),
      port: privatePortOf(s, volume),
      clusterName: s.name,
      isUnlocked: () => volume.isUnlocked(),
      walStagingDir: join(volume.dataDir, 'wal-staging'),
      osUser: serverOsUserName(s.id),
      adminLogin: s.adminLogin,
      restrictParents: (owner) => volume.restrictTo(owner),
      ...extra,
    }),
  };
}

export type ServerRuntime = ReturnType<typeof createServerRuntime>;
