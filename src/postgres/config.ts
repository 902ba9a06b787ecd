import { join } from 'node:path';

/**
 * What pgbyok asserts about every server at every start: client authentication, the managed settings
 * (on the postgres command line, where neither postgresql.conf, postgresql.auto.conf nor a reload can
 * change them), and the extension hooks. User parameters go into their own file (see parameters.ts).
 */

/** pgbyok's own superuser: initdb's bootstrap user, reachable only over the socket by root (the platform). */
export const PGBYOK_SUPERUSER = 'pgbyok';
/** The role the administrator is a member of, with what Azure's azure_pg_admin has. */
export const ADMIN_GROUP = 'azure_pg_admin';
/** pgbyok's hook module (pg/guard): keeps the server-file and server-program roles and pgbyok's roles from the administrator. */
export const GUARD_LIBRARY = 'pgbyok_guard';
/** Debian's postgresql-15-pgextwlist: allow-listed extensions are created as the bootstrap superuser. */
export const EXTWLIST_LIBRARY = 'pgextwlist';

/**
 * Client authentication. The socket admits pgbyok's superuser for root alone (peer, through the ident
 * map) and nobody else; every other login is SCRAM over TLS; replication needs a REPLICATION role (only
 * pgbyok creates those) and TLS too.
 */
export function hbaConf(): string {
  return [
    '# Managed by pgbyok; rewritten at every start.',
    `local     all           ${PGBYOK_SUPERUSER}   peer map=pgbyok`,
    `local     replication   ${PGBYOK_SUPERUSER}   peer map=pgbyok`,
    'local     all           all      reject',
    'local     replication   all      reject',
    `host      all           ${PGBYOK_SUPERUSER}   all   reject`,
    `host      replication   ${PGBYOK_SUPERUSER}   all   reject`,
    'hostssl   replication   all      all   scram-sha-256',
    'hostssl   all           all      all   scram-sha-256',
    'host      all           all      all   reject',
    'host      replication   all      all   reject',
    '',
  ].join('\n');
}

/** Only root (the platform's own tools) may become pgbyok over the socket. */
export function identConf(): string {
  return `# Managed by pgbyok; rewritten at every start.\npgbyok root ${PGBYOK_SUPERUSER}\n`;
}

export interface ManagedInputs {
  dataDir: string;
  socketDir: string;
  port: number;
  listenAddresses: string;
  clusterName: string;
  walStagingDir?: string;
  /** The allow-listed libraries the user chose (shared_preload_libraries); pgbyok's guard comes first. */
  userPreloadLibraries: string[];
}

/** The settings pgbyok owns, as `name -> value` (values as the postgres command line takes them, unquoted). */
export function managedSettings(m: ManagedInputs): Record<string, string> {
  const staging = m.walStagingDir;
  return {
    port: String(m.port),
    listen_addresses: m.listenAddresses,
    unix_socket_directories: m.socketDir,
    unix_socket_permissions: '0700',
    unix_socket_group: '',
    cluster_name: m.clusterName,
    hba_file: join(m.dataDir, 'pg_hba.conf'),
    ident_file: join(m.dataDir, 'pg_ident.conf'),
    ssl: 'on',
    ssl_cert_file: 'server.crt',
    ssl_key_file: 'server.key',
    ssl_ca_file: '',
    ssl_min_protocol_version: 'TLSv1.2',
    ssl_passphrase_command: '',
    password_encryption: 'scram-sha-256',
    logging_collector: 'on',
    log_destination: 'stderr',
    log_directory: 'log',
    log_filename: 'postgresql-%a.log',
    log_file_mode: '0600',
    log_truncate_on_rotation: 'on',
    // Temp files and stats stay inside PGDATA, inside the encrypted directory.
    temp_tablespaces: '',
    shared_preload_libraries: [GUARD_LIBRARY, ...m.userPreloadLibraries].join(','),
    local_preload_libraries: EXTWLIST_LIBRARY,
    session_preload_libraries: '',
    dynamic_library_path: '$libdir',
    'extwlist.custom_path': join(m.dataDir, 'pgbyok-extensions'),
    ...(staging ? {
      archive_mode: 'on',
      // Idempotent: a segment archived again after a crash is simply staged again.
      archive_command: `test -f ${staging}/%f || (cp %p ${staging}/%f.tmp && mv ${staging}/%f.tmp ${staging}/%f)`,
      archive_timeout: '60',
      archive_library: '',
    } : { archive_mode: 'off' }),
  };
}

/** The managed names a user may read but never set (settings pgbyok derives or forbids). */
export const MANAGED_NAMES = new Set([
  ...Object.keys(managedSettings({ dataDir: '/', socketDir: '/', port: 5432, listenAddresses: '', clusterName: 'x', walStagingDir: '/', userPreloadLibraries: [] })),
  'data_directory', 'config_file', 'external_pid_file', 'restore_command', 'archive_cleanup_command', 'recovery_end_command',
  'primary_conninfo', 'primary_slot_name', 'promote_trigger_file', 'recovery_target_time', 'recovery_target_action',
  'recovery_target_timeline', 'ssl_crl_file', 'ssl_crl_dir', 'ssl_dh_params_file', 'ssl_ciphers', 'ssl_max_protocol_version',
  'krb_server_keyfile', 'extwlist.extensions', 'log_directory', 'syslog_facility', 'event_source', 'jit_provider',
  'data_sync_retry', 'fsync', 'full_page_writes', 'allow_system_table_mods', 'ignore_checksum_failure', 'zero_damaged_pages',
]);

/** `-c name=value` for each setting, shell-quoted: pg_ctl hands its -o string to /bin/sh. */
export function commandLineOptions(settings: Record<string, string>): string {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return Object.entries(settings).map(([k, v]) => `-c ${quote(`${k}=${v}`)}`).join(' ');
}

/**
 * Scripts pgextwlist runs around the allow-listed extensions it creates as the superuser, so the
 * administrator can use what Azure's admin can use.
 */
export const EXTENSION_SCRIPTS: Record<string, string> = {
  postgres_fdw: `GRANT USAGE ON FOREIGN DATA WRAPPER postgres_fdw TO ${ADMIN_GROUP};\n`,
  pg_stat_statements: `GRANT EXECUTE ON FUNCTION @extschema@.pg_stat_statements_reset(oid, oid, bigint) TO ${ADMIN_GROUP};\n`,
};

/**
 * The administrator's role and its group, as Azure sets them up: no superuser, no REPLICATION or
 * BYPASSRLS, none of the server-file or server-program roles. Idempotent, so it also repairs a restored
 * server's roles. `login` was validated (letters, digits, '_').
 */
export function adminRolesSql(login: string): string {
  const grants = ['pg_read_all_data', 'pg_write_all_data', 'pg_monitor', 'pg_signal_backend', 'pg_read_all_settings', 'pg_stat_scan_tables'];
  return [
    'DO $$ BEGIN',
    `  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${ADMIN_GROUP}') THEN CREATE ROLE ${ADMIN_GROUP} NOLOGIN; END IF;`,
    `  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${login}') THEN CREATE ROLE "${login}" LOGIN; END IF;`,
    'END $$;',
    `ALTER ROLE ${ADMIN_GROUP} NOLOGIN CREATEDB CREATEROLE NOSUPERUSER NOREPLICATION NOBYPASSRLS;`,
    `ALTER ROLE "${login}" LOGIN CREATEDB CREATEROLE NOSUPERUSER NOREPLICATION NOBYPASSRLS;`,
    `GRANT ${grants.join(', ')} TO ${ADMIN_GROUP};`,
    `GRANT ${ADMIN_GROUP} TO "${login}";`,
    `REVOKE pg_execute_server_program, pg_read_server_files, pg_write_server_files FROM "${login}", ${ADMIN_GROUP};`,
    // As on Azure: the group owns the postgres database, so the administrator may create in its public schema.
    `ALTER DATABASE postgres OWNER TO ${ADMIN_GROUP};`,
  ].join('\n');
}
