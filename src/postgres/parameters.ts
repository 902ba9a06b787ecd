import { MANAGED_NAMES } from './config.js';

/**
 * Server parameters a user may set, as Azure's `configurations`: each with its type, range, default and
 * whether it takes a restart. Everything else is either managed by pgbyok (readable, never settable) or
 * not offered. Values are validated here and written to a conf file pgbyok owns.
 */

export type DataType = 'Boolean' | 'Integer' | 'Numeric' | 'Enumeration' | 'String' | 'Set';

export interface ParameterSpec {
  name: string;
  description: string;
  dataType: DataType;
  defaultValue: string;
  /** Inclusive range for Integer and Numeric. */
  min?: number;
  max?: number;
  /** The values of an Enumeration, or the members a Set may hold. */
  values?: string[];
  unit?: string;
  /** Applied by a reload; otherwise it needs a restart. */
  dynamic: boolean;
  /** The PostgreSQL setting it writes, when the name differs (azure.extensions is pgextwlist's list). */
  pgName?: string;
}

/** Extensions the administrator may create (Azure's azure.extensions offers these and more). */
export const SUPPORTED_EXTENSIONS = [
  'amcheck', 'bloom', 'btree_gin', 'btree_gist', 'citext', 'cube', 'dblink', 'dict_int', 'earthdistance', 'fuzzystrmatch',
  'hstore', 'intagg', 'intarray', 'isn', 'lo', 'ltree', 'pg_buffercache', 'pg_freespacemap', 'pg_prewarm',
  'pg_stat_statements', 'pg_trgm', 'pg_visibility', 'pgcrypto', 'pgrowlocks', 'pgstattuple', 'postgres_fdw', 'seg',
  'sslinfo', 'tablefunc', 'tcn', 'tsm_system_rows', 'tsm_system_time', 'unaccent', 'uuid-ossp',
];
export const PRELOAD_LIBRARIES = ['auto_explain', 'pg_prewarm', 'pg_stat_statements'];

const INT_MAX = 2147483647;
const bool = (name: string, description: string, defaultValue: 'on' | 'off', dynamic = true): ParameterSpec =>
  ({ name, description, dataType: 'Boolean', defaultValue, values: ['on', 'off'], dynamic });
const int = (name: string, description: string, defaultValue: number, min: number, max: number, unit: string | undefined, dynamic: boolean): ParameterSpec =>
  ({ name, description, dataType: 'Integer', defaultValue: String(defaultValue), min, max, unit, dynamic });
const enumeration = (name: string, description: string, defaultValue: string, values: string[], dynamic: boolean): ParameterSpec =>
  ({ name, description, dataType: 'Enumeration', defaultValue, values, dynamic });

export const PARAMETERS: ParameterSpec[] = [
  { name: 'azure.extensions', pgName: 'extwlist.extensions', description: 'Extensions the administrator may create (allow-list).', dataType: 'Set', defaultValue: SUPPORTED_EXTENSIONS.join(','), values: SUPPORTED_EXTENSIONS, dynamic: true },
  { name: 'shared_preload_libraries', description: 'Libraries loaded at server start (e.g. pg_stat_statements).', dataType: 'Set', defaultValue: '', values: PRELOAD_LIBRARIES, dynamic: false },
  enumeration('wal_level', 'How much information is written to the WAL (logical for logical replication).', 'replica', ['replica', 'logical'], false),
  int('max_connections', 'Maximum number of concurrent connections.', 100, 25, 5000, undefined, false),
  int('shared_buffers', 'Memory for shared buffers.', 16384, 16, 1073741823, '8kB', false),
  int('max_wal_senders', 'Maximum number of WAL sender processes.', 10, 5, 100, undefined, false),
  int('max_replication_slots', 'Maximum number of replication slots.', 10, 5, 100, undefined, false),
  int('max_worker_processes', 'Maximum number of background processes.', 8, 8, 262143, undefined, false),
  int('max_logical_replication_workers', 'Maximum number of logical replication workers.', 4, 4, 262143, undefined, false),
  int('work_mem', 'Memory for internal sort operations and hash tables.', 4096, 64, INT_MAX, 'kB', true),
  int('maintenance_work_mem', 'Memory for maintenance operations.', 65536, 1024, INT_MAX, 'kB', true),
  int('effective_cache_size', 'The planner\'s assumption about the size of the disk cache.', 524288, 1, INT_MAX, '8kB', true),
  { name: 'random_page_cost', description: 'The planner\'s estimate of the cost of a nonsequentially fetched disk page.', dataType: 'Numeric', defaultValue: '4', min: 0, max: 1.79769e+308, dynamic: true },
  int('max_parallel_workers', 'Maximum number of parallel workers.', 8, 0, 1024, undefined, true),
  int('max_parallel_workers_per_gather', 'Maximum number of parallel workers per gather node.', 2, 0, 1024, undefined, true),
  int('statement_timeout', 'Maximum allowed duration of any statement (0 disables).', 0, 0, INT_MAX, 'ms', true),
  int('idle_in_transaction_session_timeout', 'Maximum idle time within a transaction (0 disables).', 0, 0, INT_MAX, 'ms', true),
  int('lock_timeout', 'Maximum allowed duration of any wait for a lock (0 disables).', 0, 0, INT_MAX, 'ms', true),
  int('log_min_duration_statement', 'Logs statements running at least this long (-1 disables).', -1, -1, INT_MAX, 'ms', true),
  enumeration('log_statement', 'Which statements are logged.', 'none', ['none', 'ddl', 'mod', 'all'], true),
  bool('log_connections', 'Logs each successful connection.', 'off'),
  bool('log_disconnections', 'Logs the end of each session.', 'off'),
  bool('log_lock_waits', 'Logs long lock waits.', 'off'),
  bool('autovacuum', 'Starts the autovacuum subprocess.', 'on'),
  enumeration('pg_stat_statements.track', 'Which statements pg_stat_statements tracks.', 'top', ['none', 'top', 'all'], true),
  int('pg_stat_statements.max', 'Maximum number of statements pg_stat_statements tracks.', 5000, 100, INT_MAX, undefined, false),
  int('auto_explain.log_min_duration', 'Logs plans of statements running at least this long (-1 disables).', -1, -1, INT_MAX, 'ms', true),
];

const BY_NAME = new Map(PARAMETERS.map((p) => [p.name.toLowerCase(), p]));

export type Lookup =
  | { kind: 'settable'; spec: ParameterSpec }
  | { kind: 'managed'; name: string }
  | { kind: 'unknown'; name: string };

export function lookupParameter(name: string): Lookup {
  const spec = BY_NAME.get(name.toLowerCase());
  if (spec) return { kind: 'settable', spec };
  if (MANAGED_NAMES.has(name.toLowerCase())) return { kind: 'managed', name: name.toLowerCase() };
  return { kind: 'unknown', name };
}

/** Azure's `allowedValues`: a range, or the values joined by commas. */
export function allowedValues(p: ParameterSpec): string {
  if (p.values) return p.values.join(',');
  if (p.min !== undefined && p.max !== undefined) return `${p.min}-${p.max}`;
  return '[A-Za-z0-9/_+-]+';
}

/** The canonical form of a valid value, or the reason it is not one (naming the range or the values). */
export function normalizeValue(p: ParameterSpec, raw: string): { value: string } | { error: string } {
  const v = raw.trim();
  switch (p.dataType) {
    case 'Boolean': {
      const b = v.toLowerCase();
      if (['on', 'true', '1', 'yes'].includes(b)) return { value: 'on' };
      if (['off', 'false', '0', 'no'].includes(b)) return { value: 'off' };
      return { error: `${p.name} is a Boolean: use on or off, not '${raw}'.` };
    }
    case 'Integer': {
      if (!/^-?\d+$/.test(v) || Number(v) < p.min! || Number(v) > p.max!) {
        return { error: `${p.name} must be a whole number from ${p.min} to ${p.max}${p.unit ? ` (in ${p.unit})` : ''}; '${raw}' is not.` };
      }
      return { value: String(Number(v)) };
    }
    case 'Numeric': {
      if (!/^-?\d+(\.\d+)?$/.test(v) || Number(v) < p.min! || Number(v) > p.max!) return { error: `${p.name} must be a number from ${p.min} to ${p.max}; '${raw}' is not.` };
      return { value: v };
    }
    case 'Enumeration': {
      const e = v.toLowerCase();
      if (!p.values!.includes(e)) return { error: `${p.name} must be one of ${p.values!.join(', ')}; '${raw}' is not.` };
      return { value: e };
    }
    case 'Set': {
      const items = v === '' ? [] : v.split(',').map((x) => x.trim().toLowerCase()).filter(Boolean);
      const bad = items.filter((x) => !p.values!.includes(x));
      if (bad.length) return { error: `${p.name} may hold only ${p.values!.join(', ')}; not ${bad.join(', ')}.` };
      return { value: [...new Set(items)].join(',') };
    }
    case 'String': {
      if (!/^[A-Za-z0-9/_+-]{1,64}$/.test(v)) return { error: `${p.name} must be 1-64 letters, digits or / _ + -; '${raw}' is not.` };
      return { value: v };
    }
  }
}

/** The conf file of the user's parameters (each value quoted for postgresql.conf). */
export function userConf(values: Record<string, string>): string {
  const lines = Object.entries(values)
    .map(([name, value]) => [BY_NAME.get(name.toLowerCase()), value] as const)
    .filter(([spec]) => spec && spec.name !== 'shared_preload_libraries')
    .map(([spec, value]) => `${spec!.pgName ?? spec!.name} = '${value.replace(/'/g, "''")}'`);
  return '# Managed by pgbyok (server parameters set through the API); changes here are overwritten.\n' + lines.join('\n') + '\n';
}

/** The user's values with the defaults that pgbyok writes even when unset (the extension allow-list). */
export function effectiveValues(overrides: Record<string, string>): Record<string, string> {
  const allowList = PARAMETERS.find((p) => p.name === 'azure.extensions')!;
  return { [allowList.name]: allowList.defaultValue, ...overrides };
}
