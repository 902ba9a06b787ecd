import { join } from 'node:path';
import type { HomePaths } from '../lib/home.js';
import { PostgresInstance } from '../postgres/instance.js';
import { serverOsUserName } from '../postgres/os-user.js';
import { Volume, volumePaths } from '../storage/volume.js';
import type { Directory } from './directory.js';
import type { KeyPrincipal } from './key-access.js';
import type { DataEncryption, Server } from './servers.repo.js';

/**
 * Where a server's parts are and who reaches its key: shared by the server lifecycle and the backups, so
 * both find the same volume, the same PostgreSQL and the same key.
 */
export function createServerRuntime(d: { home: HomePaths; directory: Directory }) {
  const platformKeys = new Map<string, string>();
  const volumeOf = (s: Pick<Server, 'name' | 'location'>) => new Volume(s.name, volumePaths(d.home.root, s.location, s.name));
  return {
    volumeOf,
    /** Archived WAL waits here, inside the encrypted directory, until the archiver seals it into the store. */
    walStagingOf: (s: Pick<Server, 'name' | 'location'>, volume = volumeOf(s)) => join(volume.dataDir, 'wal-staging'),
    /**
     * The server's PostgreSQL: run as the server's own OS account, with its volume private to that account.
     * `extra` carries the user's parameters (see server-postgres.ts).
     */
    pgOf: (s: Pick<Server, 'id' | 'name' | 'location' | 'port' | 'adminLogin'>, volume = volumeOf(s), extra: { parameters?: Record<string, string>; onStarted?: () => void } = {}) => new PostgresInstance({
      dataDir: join(volume.dataDir, 'pgdata'),
      socketDir: join(d.home.root, 'regions', s.location, 'run', s.name),
      port: s.port,
      clusterName: s.name,
      isUnlocked: () => volume.isUnlocked(),
      walStagingDir: join(volume.dataDir, 'wal-staging'),
      osUser: serverOsUserName(s.id),
      adminLogin: s.adminLogin,
      restrictParents: (owner) => volume.restrictTo(owner),
      ...extra,
    }),
    principalOf: (enc: DataEncryption): KeyPrincipal =>
      enc.type === 'SystemManaged' ? { kind: 'platform' } : { kind: 'identity', resourceId: enc.primaryUserAssignedIdentityId! },
    async keyUriOf(enc: DataEncryption, region: string): Promise<string> {
      if (enc.type === 'AzureKeyVault') return enc.primaryKeyURI!;
      let uri = platformKeys.get(region);
      if (!uri) {
        uri = await d.directory.platformKey(region);
        platformKeys.set(region, uri);
      }
      return uri;
    },
  };
}

export type ServerRuntime = ReturnType<typeof createServerRuntime>;
