import { randomBytes } from 'node:crypto';
import { chownSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { HomePaths } from '../lib/home.js';
import { scramSha256Verifier } from '../postgres/scram.js';
import type { Server } from './model/server.js';
import type { ServerRuntime } from './runtime.js';
import type { ServerPostgres } from './server-postgres.js';
import type { ServersRepo } from './servers.repo.js';
import { RetryLater } from './operations/step-errors.js';

/**
 * Read replicas: a replication role and a slot on the source, a pg_basebackup over TLS, streaming; and
 * their release when a replica is promoted or deleted, so no slot holds WAL on the source for nobody.
 */
export interface ReplicationDeps {
  repo: ServersRepo;
  runtime: ServerRuntime;
  pgOf: ServerPostgres;
  home: HomePaths;
  logger: Logger;
  tlsFor: (serverName: string) => Promise<{ cert: string; key: string; ca: string }>;
}

export const replicationNames = (replica: string) => ({ role: `pgbyok_repl_${replica.replace(/-/g, '_')}`, slot: `pgbyok_${replica.replace(/-/g, '_')}` });

export function createReplication(d: ReplicationDeps) {
  const readySource = (replica: Server): Server => {
    const source = replica.sourceServer ? d.repo.byName(replica.sourceServer) : undefined;
    if (!source || source.state !== 'Ready') throw new RetryLater('SourceServerNotReady', `The source server ${replica.sourceServer} is not Ready.`);
    return source;
  };

  return {
    /**
     * The replica's first copy: a replication role with a fresh password (its SCRAM verifier on the source,
     * the password in a passfile inside the replica's encrypted directory), a slot, pg_basebackup over TLS.
     */
    async cloneFromSource(s: Server) {
      const source = readySource(s);
      const volume = d.runtime.volumeOf(s);
      const pg = d.pgOf(s, volume);
      const srcPg = d.pgOf(source);
      const { role, slot } = replicationNames(s.name);
      const password = randomBytes(24).toString('base64url');
      await srcPg.sql(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${role}') THEN CREATE ROLE ${role} WITH REPLICATION LOGIN; END IF; END $$`);
      await srcPg.sql(`ALTER ROLE ${role} PASSWORD '${scramSha256Verifier(password)}'`);
      await srcPg.sql(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '${slot}'`);
      const passfile = join(volume.dataDir, '.pgpass');
      writeFileSync(passfile, `localhost:${source.port}:*:${role}:${password}\n`, { mode: 0o600 });
      const { uid, gid } = await pg.ensureOwner();
      chownSync(passfile, uid, gid);
      await pg.cloneFrom({ host: 'localhost', port: source.port, user: role, passfile, slot, caFile: d.home.caCert });
      pg.installTls(await d.tlsFor(s.name));
    },

    async waitForStreaming(s: Server) {
      const pg = d.pgOf(s);
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        if ((await pg.sql("SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), '')")) === 'streaming') return;
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new RetryLater('ReplicaNotStreaming', 'The replica did not start streaming from its source.');
    },

    /**
     * The replica's slot and role on its source are dropped. A source that is gone needs nothing; a source
     * that exists but is not Ready is waited for (its slot would hold WAL forever otherwise).
     */
    async releaseSource(replica: Pick<Server, 'name' | 'sourceServer'>) {
      const source = replica.sourceServer ? d.repo.byName(replica.sourceServer) : undefined;
      if (!source || source.state === 'Dropping') return;
      if (source.state !== 'Ready') throw new RetryLater('SourceServerNotReady', `The source server ${source.name} is not Ready; its replication slot is released once it is.`);
      const { role, slot } = replicationNames(replica.name);
      const srcPg = d.pgOf(source);
      await srcPg.sql(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '${slot}' AND NOT active`);
      // A walsender that has not noticed the replica is gone still holds the slot for a moment.
      if ((await srcPg.sql(`SELECT count(*) FROM pg_replication_slots WHERE slot_name = '${slot}'`)) !== '0') {
        throw new RetryLater('ReplicationSlotBusy', `The replication slot of ${replica.name} on ${source.name} is still in use.`);
      }
      await srcPg.sql(`DROP ROLE IF EXISTS ${role}`);
    },
    /** A primary's slots of replicas that no longer follow it (deleted while it was down) are dropped. */
    async sweepOrphanSlots(primary: Server) {
      if (primary.replicationRole !== 'Primary') return;
      const followers = new Set(d.repo.all().filter((r) => r.sourceServer === primary.name).map((r) => replicationNames(r.name).slot));
      const pg = d.pgOf(primary);
      const slots = (await pg.sql("SELECT string_agg(slot_name, ',') FROM pg_replication_slots WHERE slot_name LIKE 'pgbyok\\_%' AND NOT active")).split(',').filter(Boolean);
      for (const slot of slots) {
        if (followers.has(slot)) continue;
        d.logger.warn({ server: primary.name, slot }, 'dropping the replication slot of a replica that no longer exists');
        await pg.sql(`SELECT pg_drop_replication_slot('${slot}')`);
      }
    },
  };
}

export type Replication = ReturnType<typeof createReplication>;
