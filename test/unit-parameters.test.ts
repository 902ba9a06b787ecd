/**
 * The parameter catalogue and the managed configuration, without a server: what a value is turned into,
 * what is refused and how, and that nothing a user sets can reach the settings pgbyok manages.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { commandLineOptions, hbaConf, identConf, managedSettings } from '../src/postgres/config.js';
import { lookupParameter, normalizeValue, PARAMETERS, userConf } from '../src/postgres/parameters.js';

const spec = (name: string) => {
  const l = lookupParameter(name);
  assert.equal(l.kind, 'settable', name);
  return (l as { spec: (typeof PARAMETERS)[number] }).spec;
};

test('values are validated against type and range, and every refusal names what is allowed', () => {
  assert.deepEqual(normalizeValue(spec('work_mem'), ' 8192 '), { value: '8192' });
  assert.deepEqual(normalizeValue(spec('work_mem'), '10'), { error: "work_mem must be a whole number from 64 to 2147483647 (in kB); '10' is not." });
  assert.deepEqual(normalizeValue(spec('work_mem'), '8MB'), { error: "work_mem must be a whole number from 64 to 2147483647 (in kB); '8MB' is not." });
  assert.deepEqual(normalizeValue(spec('log_connections'), 'TRUE'), { value: 'on' });
  assert.deepEqual(normalizeValue(spec('wal_level'), 'Logical'), { value: 'logical' });
  assert.match((normalizeValue(spec('wal_level'), 'minimal') as { error: string }).error, /one of replica, logical/);
  assert.deepEqual(normalizeValue(spec('shared_preload_libraries'), 'pg_stat_statements, auto_explain,pg_stat_statements'), { value: 'pg_stat_statements,auto_explain' });
  assert.match((normalizeValue(spec('shared_preload_libraries'), "pg_stat_statements,'/tmp/x.so'") as { error: string }).error, /may hold only/);
  assert.match((normalizeValue(spec('azure.extensions'), 'pgcrypto,file_fdw') as { error: string }).error, /not file_fdw/);
  assert.deepEqual(normalizeValue(spec('random_page_cost'), '1.1'), { value: '1.1' });
});

test('names: the allow-list is settable, managed settings are named as such, anything else is unknown', () => {
  assert.equal(lookupParameter('WORK_MEM').kind, 'settable');
  for (const managed of ['ssl', 'listen_addresses', 'archive_command', 'log_directory', 'unix_socket_directories', 'hba_file', 'data_directory', 'extwlist.extensions', 'local_preload_libraries']) {
    assert.equal(lookupParameter(managed).kind, 'managed', managed);
  }
  assert.equal(lookupParameter('no_such_thing').kind, 'unknown');
});

test('the user conf file holds only allow-listed names, quoted, and never shared_preload_libraries (that one goes on the command line)', () => {
  const conf = userConf({ work_mem: '8192', 'azure.extensions': 'pgcrypto', shared_preload_libraries: 'pg_stat_statements', ssl: 'off', "x'; ssl = off; '": '1' });
  assert.equal(conf.split('\n').filter((l) => l && !l.startsWith('#')).join('|'), "work_mem = '8192'|extwlist.extensions = 'pgcrypto'");
});

test('managed settings go on the command line, shell-quoted, with the guard first among the preload libraries', () => {
  const m = managedSettings({ dataDir: "/d/it's", socketDir: '/run/s', port: 5433, listenAddresses: 'localhost', clusterName: 'a', walStagingDir: '/d/wal', userPreloadLibraries: ['pg_stat_statements'] });
  assert.equal(m.shared_preload_libraries, 'pgbyok_guard,pg_stat_statements');
  assert.equal(m.ssl, 'on');
  assert.equal(m.unix_socket_permissions, '0700');
  const opts = commandLineOptions({ hba_file: m.hba_file, archive_command: 'a && b' });
  assert.equal(opts, `-c 'hba_file=/d/it'\\''s/pg_hba.conf' -c 'archive_command=a && b'`);
});

test('the socket admits pgbyok for root alone, and no login with a password; TCP needs TLS', () => {
  const lines = hbaConf().split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(/\s+/));
  const local = lines.filter((l) => l[0] === 'local');
  assert.ok(local.every((l) => (l[2] === 'pgbyok' && l[3] === 'peer') || l[3] === 'reject'), 'no password method on the socket');
  assert.ok(lines.filter((l) => l[0] === 'host').every((l) => l.at(-1) === 'reject'), 'no login without TLS');
  assert.equal(identConf().split('\n').filter((l) => l && !l.startsWith('#')).join('|'), 'pgbyok root pgbyok');
});
