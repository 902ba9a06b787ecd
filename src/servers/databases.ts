import { ApiError, errors } from '../lib/errors.js';
import { PostgresError } from '../postgres/errors.js';
import type { Server } from './model/server.js';
import type { ServerLocks } from './server-locks.js';
import type { ServerPostgres } from './server-postgres.js';

/**
 * Azure's `flexibleServers/{name}/databases`: the databases of the server's own PostgreSQL, read and made
 * there (owned by the administrator login). A database is PostgreSQL's state, not the platform's, so the
 * server must be Ready; each call runs in the server's queue, never between the steps of an operation.
 */

export interface DatabaseView {
  name: string;
  charset: string;
  collation: string;
}

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_$-]{0,62}$/;
const COLLATION_RE = /^[A-Za-z0-9_.@-]{1,64}$/;
/** The databases a server needs for itself: never deleted through the API. */
const SYSTEM = ['postgres', 'template0', 'template1', 'azure_maintenance', 'azure_sys'];

const requireName = (name: string) => {
  if (!NAME_RE.test(name)) throw errors.badParameter(`The database name '${name}' is invalid: 1-63 letters, digits, '_', '$' and '-', starting with a letter or '_'.`, 'InvalidDatabaseName');
};

export function createDatabases(d: { requireServer: (tenantId: string, name: string) => Server; pgOf: ServerPostgres; locks: ServerLocks }) {
  /** Runs `fn` against the server's PostgreSQL in its queue, once it is Ready. */
  const onReady = <T>(tenantId: string, serverName: string, fn: (pg: ReturnType<ServerPostgres>, s: Server) => Promise<T>): Promise<T> => {
    const s = d.requireServer(tenantId, serverName);
    return d.locks.run(s.name, async () => {
      const fresh = d.requireServer(tenantId, serverName);
      if (fresh.state !== 'Ready') throw new ApiError(409, 'ServerStateConflict', `Server ${fresh.name} is ${fresh.state}; its databases can be read and changed only while it is Ready.`);
      try {
        return await fn(d.pgOf(fresh), fresh);
      } catch (e) {
        if (e instanceof PostgresError) throw new ApiError(409, 'DatabaseOperationFailed', `PostgreSQL of ${fresh.name} refused: ${e.message.replace(/^query failed: /, '')}`);
        throw e;
      }
    });
  };
  const rows = async (pg: ReturnType<ServerPostgres>, name?: string): Promise<DatabaseView[]> => {
    const out = await pg.sql(`SELECT datname, pg_encoding_to_char(encoding), datcollate FROM pg_database WHERE NOT datistemplate${name ? ` AND datname = '${name}'` : ''} ORDER BY datname`);
    return out ? out.split('\n').map((l) => { const [n, charset, collation] = l.split('|'); return { name: n, charset, collation }; }) : [];
  };
  const notFound = (server: string, name: string) => errors.notFound('ResourceNotFound', `The database '${name}' was not found on server ${server}.`);

  return {
    list: (tenantId: string, serverName: string) => onReady(tenantId, serverName, (pg) => rows(pg)),

    get: (tenantId: string, serverName: string, name: string) => onReady(tenantId, serverName, async (pg, s) => {
      requireName(name);
      const [db] = await rows(pg, name);
      if (!db) throw notFound(s.name, name);
      return db;
    }),

    /**
     * CREATE DATABASE, owned by the administrator login, UTF8. A collation the server's PostgreSQL has (from
     * the machine's locales) is used; one it lacks falls back to the cluster's own, and the answer says which.
     * An existing database is answered as it is (PUT again is not an error).
     */
    create: (tenantId: string, serverName: string, name: string, props: { charset?: string; collation?: string }) => {
      requireName(name);
      if (props.charset !== undefined && !/^utf-?8$/i.test(props.charset)) {
        throw errors.badParameter(`The charset '${props.charset}' is not offered: pgbyok databases are UTF8.`, 'InvalidCharset');
      }
      if (props.collation !== undefined && !COLLATION_RE.test(props.collation)) throw errors.badParameter(`The collation '${props.collation}' is not a valid collation name.`, 'InvalidCollation');
      return onReady(tenantId, serverName, async (pg, s) => {
        const [existing] = await rows(pg, name);
        if (existing) return { database: existing, created: false };
        const locale = props.collation && (await pg.sql(`SELECT collcollate FROM pg_collation WHERE collprovider = 'c' AND lower(collname) = lower('${props.collation}') AND collencoding IN (-1, 6) LIMIT 1`));
        await pg.sql(`CREATE DATABASE "${name}" OWNER "${s.adminLogin}" TEMPLATE template0 ENCODING 'UTF8'${locale ? ` LC_COLLATE '${locale}' LC_CTYPE '${locale}'` : ''}`);
        const [db] = await rows(pg, name);
        return { database: db, created: true };
      });
    },

    delete: (tenantId: string, serverName: string, name: string) => onReady(tenantId, serverName, async (pg) => {
      requireName(name);
      if (SYSTEM.includes(name)) throw errors.badParameter(`The database '${name}' is the server's own and cannot be deleted.`, 'SystemDatabase');
      const [db] = await rows(pg, name);
      if (!db) return false;
      await pg.sql(`DROP DATABASE "${name}" WITH (FORCE)`);
      return true;
    }),
  };
}

export type Databases = ReturnType<typeof createDatabases>;
