import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { includeInConf, writeOwned, type OwnedDataDir } from './data-files.js';
import { PostgresError } from './errors.js';
import { runTool } from './tools.js';

/**
 * Recovery and replication of an instance: point-in-time recovery from restored WAL (its settings in
 * `pgbyok-recovery.conf`), a streaming replica cloned from another server by pg_basebackup (its standby
 * settings in `pgbyok-standby.conf`, which every start leaves alone), and waiting for promotion. The
 * instance's methods of the same names call these.
 */

/** The server a replica is cloned from, and how it logs in there (TLS, a replication role and its slot). */
export interface ReplicationSource {
  host: string;
  port: number;
  user: string;
  passfile: string;
  slot: string;
  caFile: string;
}

/**
 * Point-in-time recovery from restored files: WAL from `walDir`, up to `targetTime` (or to the end of the
 * archive), then promotion. The settings live in their own file so the managed ones stay untouched.
 */
export function writeRecoveryConfig(d: OwnedDataDir, walDir: string, targetTime?: string): void {
  const lines = [
    `restore_command = 'cp ${walDir}/%f %p'`,
    ...(targetTime ? [`recovery_target_time = '${new Date(targetTime).toISOString().replace('T', ' ').replace('Z', '+00')}'`] : []),
    "recovery_target_action = 'promote'",
    "recovery_target_timeline = 'latest'",
  ];
  writeOwned(d, 'pgbyok-recovery.conf', lines.join('\n') + '\n');
  includeInConf(d, "include_if_exists 'pgbyok-recovery.conf'", '');
  writeOwned(d, 'recovery.signal', '');
}

export function removeRecoveryConfig(dataDir: string): void {
  const path = join(dataDir, 'pgbyok-recovery.conf');
  if (existsSync(path)) rmSync(path);
}

/** Waits until recovery has ended and the server accepts writes. */
export async function untilPromoted(isInRecovery: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (await isInRecovery()) {
    if (Date.now() > deadline) throw new PostgresError('recovery did not finish in time', 'Failed');
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Fills an empty PGDATA from `source`: pg_basebackup over TLS as a replication role, with a slot, and the
 * standby configuration written by -R. The password is read from `passfile`, which lives inside this
 * server's encrypted directory.
 */
export async function baseBackupFrom(d: OwnedDataDir & { clusterName: string }, source: ReplicationSource): Promise<void> {
  const conn = `host=${source.host} port=${source.port} user=${source.user} passfile=${source.passfile} sslmode=verify-full sslrootcert=${source.caFile} application_name=${d.clusterName}`;
  const r = await runTool('pg_basebackup', ['-d', conn, '-D', d.dataDir, '-X', 'stream', '-R', '-C', '-S', source.slot, '-c', 'fast', '-w'], { user: d.osUser });
  if (r.status !== 0) throw new PostgresError(`pg_basebackup from the source failed: ${(r.stderr || r.stdout).trim()}`, 'Failed');
  // -R wrote the standby's connection into postgresql.auto.conf, which every start empties: it moves to a file of pgbyok's.
  const auto = readFileSync(join(d.dataDir, 'postgresql.auto.conf'), 'utf8');
  writeOwned(d, 'pgbyok-standby.conf', auto.split('\n').filter((l) => /^(primary_conninfo|primary_slot_name)\s*=/.test(l)).join('\n') + '\n');
  includeInConf(d, "include_if_exists 'pgbyok-standby.conf'");
}
