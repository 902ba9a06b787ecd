/**
 * The security boundary between a server's administrator and everything else, on one real platform with
 * two real servers A and B (loop devices, fscrypt, PostgreSQL 15, the real psql over TLS): A's administrator
 * is an ordinary role with Azure's grants, not a superuser; every way out of the encrypted volume or into B
 * that a superuser had is refused; each server runs as its own OS account that cannot open the other's
 * files or socket; the socket admits no password login; extensions come from an allow-list; server
 * parameters are set through the API and the CLI, and the settings pgbyok manages survive everything.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually, MGMT_RESOURCE, startPgbyok, type Pgbyok } from './harness.js';

const PASSWORD = 'Passw0rd!x';
const REGION = 'eastus';
const MARKER = `PGBYOK-LEAK-${Date.now().toString(36)}`;

let p: Pgbyok;
let portA: number;
let portB: number;

const runDir = (name: string) => join(p.home, 'regions', REGION, 'run', name);
const mountOf = (name: string) => join(p.home, 'regions', REGION, 'mnt', name);
const pgdataOf = (name: string) => join(mountOf(name), 'data', 'pgdata');
/** The port of a server's socket: PostgreSQL's own (private) port, behind the public one pgbyok holds. */
const socketPortOf = (name: string) => Number(readFileSync(join(pgdataOf(name), 'postmaster.pid'), 'utf8').split('\n')[3]);
/** A server's OS account: the owner of its socket directory. */
const accountOf = (name: string) => execFileSync('stat', ['-c', '%U', runDir(name)], { encoding: 'utf8' }).trim();

function conn(port: number, user: string): string {
  return `host=localhost port=${port} dbname=postgres user=${user} sslmode=verify-full sslrootcert=${join(p.home, 'tls', 'ca.pem')}`;
}

/** SQL as A's (or B's) administrator over TLS with the password; stdout, or throws with psql's stderr. */
function psql(port: number, user: string, sql: string): string {
  return execFileSync('psql', [conn(port, user), '-XAtc', sql, '-v', 'ON_ERROR_STOP=1'], { env: { ...process.env, PGPASSWORD: PASSWORD }, encoding: 'utf8', stdio: 'pipe' }).trim();
}

/** The same, expecting a refusal: returns psql's error text. */
function refused(port: number, user: string, sql: string): string {
  const r = spawnSync('psql', [conn(port, user), '-XAtc', sql, '-v', 'ON_ERROR_STOP=1'], { env: { ...process.env, PGPASSWORD: PASSWORD }, encoding: 'utf8' });
  assert.notEqual(r.status, 0, `expected a refusal of: ${sql}\n${r.stdout}`);
  return r.stderr;
}

/** Runs a command as an OS user; returns its status and output. */
function as(user: string, argv: string[], env: Record<string, string> = {}) {
  return spawnSync('runuser', ['-u', user, '--', ...argv], { encoding: 'utf8', env: { ...process.env, ...env } });
}

before(async () => {
  p = await startPgbyok();
  try {
    portA = p.cli('server', 'create', '--name', 'sec-a', '--location', REGION, '--admin-user', 'admin_a', '--admin-password', PASSWORD).properties.port;
    portB = p.cli('server', 'create', '--name', 'sec-b', '--location', REGION, '--admin-user', 'admin_b', '--admin-password', PASSWORD).properties.port;
    psql(portB, 'admin_b', `CREATE TABLE secret (v text); INSERT INTO secret VALUES ('${MARKER}-b')`);
    psql(portA, 'admin_a', `CREATE TABLE t (v text); INSERT INTO t VALUES ('${MARKER}-a')`);
  } catch (e) {
    await p.stop();
    throw e;
  }
});

after(async () => {
  if (p) await p.stop();
});

test("A's administrator is an ordinary role with Azure's grants: no superuser, none of the server-file or server-program roles", () => {
  assert.equal(psql(portA, 'admin_a', "SELECT rolsuper || ',' || rolcreatedb || ',' || rolcreaterole || ',' || rolreplication || ',' || rolbypassrls FROM pg_roles WHERE rolname = current_user"), 'false,true,true,false,false');
  assert.equal(psql(portA, 'admin_a', "SELECT string_agg(b.rolname, ',' ORDER BY b.rolname) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member JOIN pg_roles b ON b.oid = m.roleid WHERE r.rolname = 'azure_pg_admin'"),
    'pg_monitor,pg_read_all_data,pg_read_all_settings,pg_signal_backend,pg_stat_scan_tables,pg_write_all_data');
  assert.equal(psql(portA, 'admin_a', "SELECT pg_has_role('azure_pg_admin', 'MEMBER')"), 't');
  for (const role of ['pg_execute_server_program', 'pg_read_server_files', 'pg_write_server_files']) {
    assert.equal(psql(portA, 'admin_a', `SELECT pg_has_role('${role}', 'MEMBER')`), 'f', role);
    // CREATEROLE would let PostgreSQL 15 grant these; pgbyok's guard refuses.
    assert.match(refused(portA, 'admin_a', `GRANT ${role} TO admin_a`), new RegExp(`permission denied to grant role "${role}"`));
    assert.match(refused(portA, 'admin_a', `CREATE ROLE sneaky IN ROLE ${role}`), /permission denied to grant role/);
    assert.match(refused(portA, 'admin_a', `ALTER GROUP ${role} ADD USER admin_a`), /permission denied to grant role/);
  }
  assert.match(refused(portA, 'admin_a', 'ALTER ROLE pgbyok PASSWORD \'x\''), /permission denied for role "pgbyok"/);
  assert.match(refused(portA, 'admin_a', 'CREATE ROLE pgbyok_repl_x LOGIN'), /belong to pgbyok/);
  assert.match(refused(portA, 'admin_a', 'ALTER ROLE admin_a SUPERUSER'), /superuser/);
  // What the administrator may do: roles, databases, reading every table.
  psql(portA, 'admin_a', 'CREATE ROLE app LOGIN; GRANT pg_monitor TO app');
  psql(portA, 'admin_a', 'CREATE DATABASE appdb');
  assert.equal(psql(portA, 'admin_a', "SELECT count(*) FROM pg_database WHERE datname = 'appdb'"), '1');
});

test("as A's administrator, every way to B or out of the encrypted volume is refused, and nothing lands outside", () => {
  const bSocket = runDir('sec-b');
  const leak = `/tmp/${MARKER}`;
  assert.match(refused(portA, 'admin_a', `COPY (SELECT 1) TO PROGRAM 'psql -h ${bSocket} -p ${portB} -U pgbyok -c "select current_user" > ${leak}-program'`),
    /must be superuser or have privileges of the pg_execute_server_program role/);
  assert.match(refused(portA, 'admin_a', `SELECT pg_read_file('${join(pgdataOf('sec-b'), 'PG_VERSION')}')`), /permission denied for function pg_read_file/);
  assert.match(refused(portA, 'admin_a', `SELECT pg_ls_dir('${pgdataOf('sec-b')}')`), /permission denied for function pg_ls_dir/);
  assert.match(refused(portA, 'admin_a', `CREATE TABLESPACE outside LOCATION '/tmp'`), /permission denied to create tablespace/);
  assert.match(refused(portA, 'admin_a', `COPY t TO '${leak}-copy'`), /must be superuser or have privileges of the pg_write_server_files role/);
  assert.match(refused(portA, 'admin_a', `COPY t FROM '${join(pgdataOf('sec-b'), 'PG_VERSION')}'`), /pg_read_server_files/);
  assert.match(refused(portA, 'admin_a', `SELECT lo_export(lo_from_bytea(0, 'x'), '${leak}-lo')`), /permission denied for function lo_export/);
  for (const setting of [`log_directory = '/tmp'`, 'ssl = off', `archive_command = 'cp %p /tmp/%f'`, `listen_addresses = '*'`]) {
    assert.match(refused(portA, 'admin_a', `ALTER SYSTEM SET ${setting}`), /must be superuser to execute ALTER SYSTEM command|permission denied to set parameter/, setting);
  }
  assert.match(refused(portA, 'admin_a', 'SET log_directory = \'/tmp\''), /cannot be changed now|permission denied/);
  // The marker is nowhere outside the volumes: not in /tmp, not in the platform's home outside the images.
  for (const f of ['-program', '-copy', '-lo']) assert.equal(existsSync(leak + f), false, `${leak}${f} was written`);
  // (The mounts are left out: through an unlocked mount the volumes' own plaintext is visible, as it must be to PostgreSQL.)
  const grep = spawnSync('grep', ['-rlsD', 'skip', '--exclude=*.img', '--exclude-dir=mnt', MARKER, p.home], { encoding: 'utf8' });
  assert.equal(grep.stdout.trim(), '', `plaintext found outside the encrypted volumes: ${grep.stdout}`);
});

test("each server runs as its own OS account: A's account can neither read B's files nor reach B's socket, and nobody else can reach either", () => {
  const a = accountOf('sec-a');
  const b = accountOf('sec-b');
  assert.match(a, /^pgbyok-[0-9a-f]{16}$/);
  assert.match(b, /^pgbyok-[0-9a-f]{16}$/);
  assert.notEqual(a, b);
  const postmasterA = Number(readFileSync(join(pgdataOf('sec-a'), 'postmaster.pid'), 'utf8').split('\n')[0]);
  assert.equal(execFileSync('ps', ['-o', 'user=', '-p', String(postmasterA)], { encoding: 'utf8' }).trim(), a, 'A\'s postmaster runs as A\'s account');
  for (const [name, owner] of [['sec-a', a], ['sec-b', b]]) {
    const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);
    assert.equal(mode(runDir(name)), '700');
    assert.equal(mode(mountOf(name)), '750');
    assert.equal(mode(join(mountOf(name), 'data')), '700');
    assert.equal(mode(pgdataOf(name)), '700');
    assert.equal(execFileSync('stat', ['-c', '%U:%G', mountOf(name)], { encoding: 'utf8' }).trim(), `root:${owner}`);
  }
  for (const path of [mountOf('sec-b'), join(mountOf('sec-b'), 'data'), join(pgdataOf('sec-b'), 'PG_VERSION'), runDir('sec-b')]) {
    const r = as(a, ['cat', path]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /Permission denied/, path);
  }
  assert.notEqual(as(a, ['ls', pgdataOf('sec-b')]).status, 0);
  for (const [user, target] of [[a, 'sec-b'], ['nobody', 'sec-a'], ['nobody', 'sec-b']] as const) {
    assert.ok(existsSync(join(runDir(target), `.s.PGSQL.${socketPortOf(target)}`)), 'the socket is there (root sees it)');
    for (const login of ['pgbyok', target === 'sec-a' ? 'admin_a' : 'admin_b']) {
      const r = as(user, ['psql', '-X', '-h', runDir(target), '-p', String(socketPortOf(target)), '-U', login, '-d', 'postgres', '-c', 'select current_user'], { PGPASSWORD: PASSWORD });
      assert.notEqual(r.status, 0, `${user} reached ${target} as ${login}`);
      assert.match(r.stderr, /Permission denied/, r.stderr);
    }
  }
});

test('the socket admits pgbyok for root alone and no password login at all; TCP without TLS is refused', () => {
  const sock = runDir('sec-a');
  const sockPort = socketPortOf('sec-a');
  // Root reaches the socket (file permissions do not stop it), so this shows what pg_hba.conf itself says.
  const withPassword = spawnSync('psql', ['-X', '-h', sock, '-p', String(sockPort), '-U', 'admin_a', '-d', 'postgres', '-c', 'select 1'], { encoding: 'utf8', env: { ...process.env, PGPASSWORD: PASSWORD } });
  assert.notEqual(withPassword.status, 0);
  assert.match(withPassword.stderr, /pg_hba.conf rejects connection.*"admin_a"/);
  const asServerAccount = as(accountOf('sec-a'), ['psql', '-X', '-h', sock, '-p', String(sockPort), '-U', 'pgbyok', '-d', 'postgres', '-c', 'select 1']);
  assert.notEqual(asServerAccount.status, 0, 'the server\'s own OS account is not pgbyok');
  assert.match(asServerAccount.stderr, /Peer authentication failed|no pg_ident.conf entry|rejects/);
  const platform = spawnSync('psql', ['-X', '-At', '-h', sock, '-p', String(sockPort), '-U', 'pgbyok', '-d', 'postgres', '-c', 'select rolsuper from pg_roles where rolname = current_user'], { encoding: 'utf8' });
  assert.equal(platform.stdout.trim(), 't', platform.stderr);
  const noTls = spawnSync('psql', [`host=localhost port=${portA} dbname=postgres user=admin_a sslmode=disable`, '-c', 'select 1'], { encoding: 'utf8', env: { ...process.env, PGPASSWORD: PASSWORD } });
  assert.notEqual(noTls.status, 0);
  assert.match(noTls.stderr, /no encryption|rejects/);
  const pgbyokOverTcp = spawnSync('psql', [conn(portA, 'pgbyok'), '-c', 'select 1'], { encoding: 'utf8', env: { ...process.env, PGPASSWORD: 'anything' } });
  assert.match(pgbyokOverTcp.stderr, /pg_hba.conf rejects connection/);
});

test('extensions come from the allow-list: trusted and superuser ones install as the administrator, others and untrusted languages are refused', () => {
  psql(portA, 'admin_a', 'CREATE EXTENSION pgcrypto');
  assert.equal(psql(portA, 'admin_a', "SELECT encode(digest('x', 'sha256'), 'hex')").length, 64);
  psql(portA, 'admin_a', 'CREATE EXTENSION postgres_fdw');
  psql(portA, 'admin_a', `CREATE SERVER other FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'localhost', port '${portB}', dbname 'postgres', sslmode 'require')`);
  psql(portA, 'admin_a', 'CREATE EXTENSION hstore; CREATE EXTENSION "uuid-ossp"; CREATE EXTENSION pg_trgm');
  assert.match(refused(portA, 'admin_a', 'CREATE EXTENSION file_fdw'), /extension "file_fdw" is not allow-listed/);
  assert.match(refused(portA, 'admin_a', 'CREATE EXTENSION adminpack'), /not allow-listed/);
  assert.match(refused(portA, 'admin_a', "CREATE FUNCTION sys(cstring) RETURNS int AS 'libc.so.6', 'system' LANGUAGE c"), /permission denied for language c/);
  assert.match(refused(portA, 'admin_a', 'CREATE LANGUAGE evil HANDLER plpgsql_call_handler'), /must be superuser to create custom procedural language/);
  // Untrusted languages are off the allow-list; where their packages are not installed PostgreSQL refuses even sooner.
  for (const lang of ['plpython3u', 'plperlu']) assert.match(refused(portA, 'admin_a', `CREATE EXTENSION ${lang}`), new RegExp(`extension "${lang}" is not allow-listed|could not open extension control file ".*${lang}.control"`));
  assert.match(refused(portA, 'admin_a', "SET extwlist.extensions = 'file_fdw'"), /permission denied to set parameter/);
  assert.match(refused(portA, 'admin_a', "ALTER ROLE admin_a SET extwlist.extensions = 'file_fdw'"), /permission denied to set parameter/);
  // Narrowing the allow-list through the API narrows what the administrator may create.
  p.cli('server', 'parameter', 'set', '--server-name', 'sec-a', '--name', 'azure.extensions', '--value', 'pgcrypto,pg_stat_statements');
  assert.match(refused(portA, 'admin_a', 'CREATE EXTENSION citext'), /extension "citext" is not allow-listed/);
});

test('server parameters through the CLI: dynamic ones apply at once, static ones at restart, pg_stat_statements and logical WAL work, managed and out-of-range values are refused, settings survive restarts', () => {
  const list = p.cli('server', 'parameter', 'list', '--server-name', 'sec-a') as any[];
  const workMem = list.find((x) => x.name === 'work_mem');
  assert.deepEqual({ ...workMem.properties, description: undefined }, {
    value: '4096', description: undefined, defaultValue: '4096', dataType: 'Integer', allowedValues: '64-2147483647', source: 'system-default',
    isDynamicConfig: true, isReadOnly: false, isConfigPendingRestart: false, unit: 'kB',
  });
  assert.equal(list.find((x) => x.name === 'ssl').properties.isReadOnly, true);
  assert.equal(list.find((x) => x.name === 'ssl').properties.value, 'on');

  const set = p.cli('server', 'parameter', 'set', '--server-name', 'sec-a', '--name', 'work_mem', '--value', '8192');
  assert.equal(set.properties.value, '8192');
  assert.equal(set.properties.source, 'user-override');
  assert.equal(psql(portA, 'admin_a', 'SHOW work_mem'), '8MB');

  const mc = p.cli('server', 'parameter', 'set', '--server-name', 'sec-a', '--name', 'max_connections', '--value', '150');
  assert.equal(mc.properties.isConfigPendingRestart, true);
  assert.equal(psql(portA, 'admin_a', 'SHOW max_connections'), '100', 'a static parameter waits for the restart');
  p.cli('server', 'parameter', 'set', '--server-name', 'sec-a', '--name', 'wal_level', '--value', 'logical');
  p.cli('server', 'parameter', 'set', '--server-name', 'sec-a', '--name', 'shared_preload_libraries', '--value', 'pg_stat_statements');
  p.cli('server', 'restart', '--name', 'sec-a');
  assert.equal(psql(portA, 'admin_a', 'SHOW max_connections'), '150');
  assert.equal(psql(portA, 'admin_a', 'SHOW wal_level'), 'logical');
  assert.equal(psql(portA, 'admin_a', 'SHOW work_mem'), '8MB', 'the dynamic one survived the restart');
  assert.equal(p.cli('server', 'parameter', 'show', '--server-name', 'sec-a', '--name', 'max_connections').properties.isConfigPendingRestart, false);
  psql(portA, 'admin_a', 'CREATE EXTENSION pg_stat_statements');
  assert.ok(Number(psql(portA, 'admin_a', 'SELECT count(*) FROM pg_stat_statements')) > 0);
  psql(portA, 'admin_a', 'SELECT pg_stat_statements_reset()');
  psql(portA, 'admin_a', 'CREATE PUBLICATION pub FOR TABLE t');
  // pgbyok's guard is still loaded in front of the user's library.
  assert.equal(psql(portA, 'admin_a', 'SHOW shared_preload_libraries'), 'pgbyok_guard,pg_stat_statements');

  const managed = p.cliRaw(['server', 'parameter', 'set', '--server-name', 'sec-a', '--name', 'ssl', '--value', 'off']);
  assert.notEqual(managed.status, 0);
  assert.match(managed.stderr, /ssl is managed by pgbyok/);
  const range = p.cliRaw(['server', 'parameter', 'set', '--server-name', 'sec-a', '--name', 'work_mem', '--value', '10']);
  assert.notEqual(range.status, 0);
  assert.match(range.stderr, /work_mem must be a whole number from 64 to 2147483647 \(in kB\)/);
  const enumRange = p.cliRaw(['server', 'parameter', 'set', '--server-name', 'sec-a', '--name', 'wal_level', '--value', 'minimal']);
  assert.match(enumRange.stderr, /wal_level must be one of replica, logical/);
  const lib = p.cliRaw(['server', 'parameter', 'set', '--server-name', 'sec-a', '--name', 'shared_preload_libraries', '--value', 'pg_stat_statements,/tmp/evil.so']);
  assert.match(lib.stderr, /may hold only auto_explain, pg_prewarm, pg_stat_statements/);
  const unknown = p.cliRaw(['server', 'parameter', 'show', '--server-name', 'sec-a', '--name', 'no_such_thing']);
  assert.notEqual(unknown.status, 0);
  assert.match(unknown.stderr, /no parameter 'no_such_thing'/);

  // A managed setting planted in postgresql.auto.conf (as if left by an old ALTER SYSTEM) does not survive a start.
  writeFileSync(join(pgdataOf('sec-a'), 'postgresql.auto.conf'), "ssl = off\nlog_directory = '/tmp'\nwork_mem = '64kB'\n");
  p.cli('server', 'restart', '--name', 'sec-a');
  assert.equal(psql(portA, 'admin_a', 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'), 't');
  assert.equal(psql(portA, 'admin_a', 'SHOW log_directory'), 'log');
  assert.equal(psql(portA, 'admin_a', 'SHOW work_mem'), '8MB');
  assert.equal(psql(portA, 'admin_a', 'SHOW archive_command').includes('wal-staging'), true);
  assert.equal(psql(portB, 'admin_b', 'SHOW work_mem'), '4MB', 'B keeps its own parameters');
});

test("the configurations resource in ARM's shape: 404 for an unknown parameter, 400 naming the rule, 202 and an operation for a reload, 200 on a stopped server", async () => {
  const token = await p.token(p.admin, MGMT_RESOURCE);
  const url = (server: string, param = '') => `${p.origin}/tenants/${p.admin.tenantId}/providers/Microsoft.DBforPostgreSQL/flexibleServers/${server}/configurations${param ? `/${param}` : ''}?api-version=2023-07-01`;
  const put = (server: string, param: string, value: unknown) => p.http('PUT', url(server, param), { token, body: { properties: { value, source: 'user-override' } } });
  const one = await p.http('GET', url('sec-a', 'azure.extensions'), { token });
  assert.equal(one.status, 200);
  assert.equal(one.json.type, 'Microsoft.DBforPostgreSQL/flexibleServers/configurations');
  assert.equal(one.json.properties.dataType, 'Set');
  const unknown = await p.http('GET', url('sec-a', 'no_such_thing'), { token });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.json.error.code, 'ConfigurationNotExists');
  const managed = await put('sec-a', 'archive_command', 'cp %p /tmp/%f');
  assert.equal(managed.status, 400);
  assert.equal(managed.json.error.innererror.code, 'ParameterManagedByPgbyok');
  const range = await put('sec-a', 'max_connections', 10);
  assert.equal(range.status, 400);
  assert.match(range.json.error.message, /from 25 to 5000/);
  const reload = await put('sec-a', 'log_min_duration_statement', 250);
  assert.equal(reload.status, 202);
  assert.ok(reload.headers['azure-asyncoperation']);
  assert.equal(reload.json.properties.value, '250');
  await eventually(async () => (await p.http('GET', String(reload.headers['azure-asyncoperation']), { token })).json.status === 'Succeeded', 'the reload operation');
  assert.equal(psql(portA, 'admin_a', 'SHOW log_min_duration_statement'), '250ms');
  p.cli('server', 'stop', '--name', 'sec-a');
  const stopped = await put('sec-a', 'max_connections', 120);
  assert.equal(stopped.status, 200, 'nothing to apply while stopped');
  assert.equal(stopped.json.properties.isConfigPendingRestart, false);
  p.cli('server', 'start', '--name', 'sec-a');
  assert.equal(psql(portA, 'admin_a', 'SHOW max_connections'), '120');
});

test("objects the administrator plants where pgbyok's superuser sessions would look never run as the superuser", () => {
  // The administrator's group owns the database, so it may change the database's search_path and shadow the
  // built-ins pgbyok calls (pg_reload_conf on a parameter change, pg_backend_pid before a stop).
  const escalate = "IF current_setting('is_superuser') = 'on' THEN EXECUTE 'ALTER ROLE admin_a SUPERUSER'; END IF;";
  psql(portA, 'admin_a', [
    'ALTER DATABASE postgres SET search_path = public, pg_catalog',
    `CREATE FUNCTION public.pg_reload_conf() RETURNS boolean LANGUAGE plpgsql AS $f$ BEGIN ${escalate} RETURN pg_catalog.pg_reload_conf(); END $f$`,
    `CREATE FUNCTION public.pg_backend_pid() RETURNS integer LANGUAGE plpgsql AS $f$ BEGIN ${escalate} RETURN pg_catalog.pg_backend_pid(); END $f$`,
    `CREATE FUNCTION public.pg_is_in_recovery() RETURNS boolean LANGUAGE plpgsql AS $f$ BEGIN ${escalate} RETURN pg_catalog.pg_is_in_recovery(); END $f$`,
  ].join('; '));
  try {
    p.cli('server', 'parameter', 'set', '--server-name', 'sec-a', '--name', 'work_mem', '--value', '4096');
    p.cli('server', 'restart', '--name', 'sec-a');
    assert.equal(psql(portA, 'admin_a', "SELECT rolsuper FROM pg_roles WHERE rolname = 'admin_a'"), 'f', 'the administrator is still not a superuser');
  } finally {
    psql(portA, 'admin_a', 'ALTER DATABASE postgres RESET search_path; DROP FUNCTION public.pg_reload_conf(); DROP FUNCTION public.pg_backend_pid(); DROP FUNCTION public.pg_is_in_recovery()');
  }
});

test('deleting a server removes its OS account', () => {
  const account = accountOf('sec-b');
  p.cli('server', 'delete', '--name', 'sec-b', '--yes');
  assert.equal(spawnSync('id', [account]).status, 1, `${account} is gone`);
  assert.equal(existsSync(runDir('sec-b')), false);
});
