import type { ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { adminRolesSql, commandLineOptions, managedSettings, PGBYOK_SUPERUSER } from './config.js';
import { freshDataDir, installTls, writeParameters, writeStartFiles } from './data-files.js';
import { PostgresError } from './errors.js';
import { ensureOsUser, removeOsUser, type OsUser } from './os-user.js';
import { requireSecurityModules } from './modules.js';
import { baseBackupFrom, removeRecoveryConfig, untilPromoted, writeRecoveryConfig, type ReplicationSource } from './recovery.js';
import { SCRAM_VERIFIER_RE } from './scram.js';
import { postgresBinDir, runTool, spawnAs, spawnAsRoot, type ToolResult } from './tools.js';
import { validateAdminLogin } from './admin-login.js';

export { PostgresError };
export { postgresBinDir, spawnAs } from './tools.js';
export { validateAdminLogin, validateAdminPassword } from './admin-login.js';

/**
 * One PostgreSQL 15 instance of the machine's own packages, run as an OS account of its own (`osUser`),
 * so it can open no other server's files or socket. Its data directory (with WAL, temp files, server logs,
 * TLS key) lives inside an encrypted volume; only the unix socket and its lock file live outside, in
 * `socketDir`, which only that account (and root) can enter. pgbyok's tools connect over that socket as
 * root, mapped to pgbyok's own superuser; the administrator is an ordinary role.
 */

export type StopMode = 'smart' | 'fast' | 'immediate';

export interface InstanceOptions {
  /** PGDATA: a directory inside the volume's encrypted directory (it must not exist before `init`). */
  dataDir: string;
  /** Where the unix socket and its lock file go (outside the encrypted directory). */
  socketDir: string;
  port: number;
  listenAddresses?: string;
  clusterName: string;
  /**
   * Whether the encrypted directory is open. A locked fscrypt directory looks like a missing one, so
   * without this nothing could tell "locked" from "not there yet".
   */
  isUnlocked: () => boolean;
  /**
   * Turns WAL archiving on: each finished segment is copied here (a directory inside the encrypted
   * volume), and pgbyok's archiver seals it into the backup store.
   */
  walStagingDir?: string;
  /** The OS account PostgreSQL runs as (created when missing; see os-user.ts). */
  osUser: string;
  /** The administrator's login (for its role and password). */
  adminLogin?: string;
  /** The user's server parameters (validated; see parameters.ts), written at every start. */
  parameters?: Record<string, string>;
  /** Makes the directories above PGDATA private to the account (the volume's mount and encrypted directory). */
  restrictParents?: (owner: OsUser) => void;
  /** Told after every successful start (pending restarts are applied then). */
  onStarted?: () => void;
}

export class PostgresInstance {
  readonly listenAddresses: string;

  constructor(readonly opts: InstanceOptions) {
    if (!Number.isInteger(opts.port) || opts.port < 1024 || opts.port > 65535) throw new PostgresError(`invalid port ${opts.port}`, 'Invalid');
    if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(opts.clusterName)) throw new PostgresError(`invalid cluster name '${opts.clusterName}'`, 'Invalid');
    this.listenAddresses = opts.listenAddresses ?? 'localhost';
    if (!/^[A-Za-z0-9.:*, -]+$/.test(this.listenAddresses)) throw new PostgresError(`invalid listen_addresses '${this.listenAddresses}'`, 'Invalid');
  }

  private bin(name: string): string {
    return join(postgresBinDir(), name);
  }

  /** Runs a PostgreSQL tool to its end, as the server's OS account or as root (see `runTool`). */
  private tool(tool: string, args: string[], as: 'owner' | 'root', timeoutMs?: number): Promise<ToolResult> {
    return runTool(tool, args, as === 'root' ? 'root' : { user: this.opts.osUser }, timeoutMs);
  }

  /** The server's OS account, created when missing, with the directories above PGDATA made private to it. */
  async ensureOwner(): Promise<OsUser> {
    const owner = await ensureOsUser(this.opts.osUser);
    this.opts.restrictParents?.(owner);
    return owner;
  }

  /** A fresh, empty PGDATA owned by the account (0700). */
  private async freshDataDir(): Promise<void> {
    freshDataDir(this.opts.dataDir, await this.ensureOwner());
  }

  /** Refuses to go on unless the encrypted directory that holds PGDATA is readable (the volume unlocked). */
  private requireUnlockedParent(): void {
    if (!this.opts.isUnlocked() || !existsSync(dirname(this.opts.dataDir))) {
      throw new PostgresError(`${dirname(this.opts.dataDir)} is not readable: the volume is locked or not mounted`, 'Locked');
    }
  }

  /**
   * initdb with data checksums, as the server's account, inside the encrypted directory. The bootstrap
   * superuser is pgbyok's own; the administrator's role comes with `setAdminPassword` once the server runs
   * (a SCRAM verifier, so no password ever passes through a file, an argument or pgbyok's store).
   */
  async init(adminLogin: string, tls: { cert: string; key: string; ca: string }): Promise<void> {
    validateAdminLogin(adminLogin);
    this.requireUnlockedParent();
    if (existsSync(this.opts.dataDir)) {
      throw new PostgresError(`${this.opts.dataDir} already exists; refusing to run initdb over it`, 'Invalid');
    }
    await this.freshDataDir();
    const r = await this.tool('initdb', [
      '-D', this.opts.dataDir, '-U', PGBYOK_SUPERUSER, '--data-checksums', '-E', 'UTF8', '--locale=C.UTF-8',
      '--auth-local=reject', '--auth-host=reject',
    ], 'owner');
    if (r.status !== 0) throw new PostgresError(`initdb failed: ${(r.stderr || r.stdout).trim()}`, 'Failed');
    this.installTls(tls);
    writeStartFiles(this.opts);
  }

  /** The server's TLS certificate and key (inside the encrypted directory), and the CA clients trust. */
  installTls(tls: { cert: string; key: string; ca: string }): void {
    installTls(this.opts, tls);
  }

  /** Point-in-time recovery from restored WAL in `walDir`, up to `targetTime` or the archive's end (see recovery.ts). */
  configureRecovery(walDir: string, targetTime?: string): void {
    writeRecoveryConfig(this.opts, walDir, targetTime);
  }

  /** Waits until recovery has ended and the server accepts writes. */
  async waitForPromotion(timeoutMs = 300_000): Promise<void> {
    await untilPromoted(() => this.isInRecovery(), timeoutMs);
  }

  /** Makes this (empty) instance a streaming replica of another (see `baseBackupFrom`). */
  async cloneFrom(source: ReplicationSource): Promise<void> {
    await this.freshDataDir();
    await baseBackupFrom(this.opts, source);
  }

  async isInRecovery(): Promise<boolean> {
    return (await this.sql('SELECT pg_is_in_recovery()')) === 't';
  }

  /** Ends recovery of a replica: it becomes a primary of its own. */
  async promote(): Promise<void> {
    await this.sql('SELECT pg_promote(true, 60)');
    await this.waitForPromotion(60_000);
  }

  finishRecovery(): void {
    removeRecoveryConfig(this.opts.dataDir);
  }

  /** The settings pgbyok manages for this server, with their values. */
  managedValues(): Record<string, string> {
    const spl = this.opts.parameters?.shared_preload_libraries;
    return managedSettings({
      dataDir: this.opts.dataDir, socketDir: this.opts.socketDir, port: this.opts.port, listenAddresses: this.listenAddresses,
      clusterName: this.opts.clusterName, walStagingDir: this.opts.walStagingDir, userPreloadLibraries: spl ? spl.split(',').filter(Boolean) : [],
    });
  }

  /** The managed settings as postgres command-line options, which outrank every configuration file. */
  private startOptions(): string {
    return commandLineOptions(this.managedValues());
  }

  /**
   * The postmaster named by postmaster.pid: running, stopped, or dead but not yet reaped (a zombie still
   * answers kill(pid, 0), which pg_ctl and the postmaster's own lock check would take for a live server).
   */
  private postmasterState(): { state: 'running' | 'stopped' | 'zombie'; pid?: number } {
    let pid: number;
    try {
      pid = Number(readFileSync(join(this.opts.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    } catch {
      return { state: 'stopped' };
    }
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
      if (state === 'Z' || state === 'X') return { state: 'zombie', pid };
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('postgres')) return { state: 'stopped' };
      return { state: 'running', pid };
    } catch {
      return { state: 'stopped' };
    }
  }

  isRunning(): boolean {
    return this.postmasterState().state === 'running';
  }

  /** The postmaster's pid, if it is running. */
  pid(): number | undefined {
    const s = this.postmasterState();
    return s.state === 'running' ? s.pid : undefined;
  }

  /** After a crash the dead postmaster may linger until init reaps it; its lock file must not block a start. */
  private async waitForReap(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.postmasterState().state === 'zombie') {
      if (Date.now() > deadline) throw new PostgresError('the previous postmaster died but was never reaped', 'StartFailed');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Starts and waits until it accepts connections. A stale pid file after a crash is handled by pg_ctl. */
  async start(): Promise<void> {
    this.requireUnlockedParent();
    if (!existsSync(join(this.opts.dataDir, 'PG_VERSION'))) {
      throw new PostgresError(`${this.opts.dataDir} holds no PostgreSQL data directory`, 'Invalid');
    }
    await this.waitForReap();
    if (this.isRunning()) return;
    requireSecurityModules();
    const { uid, gid } = await this.ensureOwner();
    if (statSync(this.opts.dataDir).uid !== uid) {
      throw new PostgresError(`${this.opts.dataDir} belongs to another OS account than this server's (${this.opts.osUser}): servers created by an older pgbyok, which ran every server as 'postgres', are not migrated`, 'Invalid');
    }
    mkdirSync(dirname(this.opts.socketDir), { recursive: true, mode: 0o755 });
    mkdirSync(this.opts.socketDir, { recursive: true, mode: 0o700 });
    chownSync(this.opts.socketDir, uid, gid);
    chmodSync(this.opts.socketDir, 0o700);
    writeStartFiles(this.opts);
    const r = await this.tool('pg_ctl', ['start', '-D', this.opts.dataDir, '-w', '-t', '120', '-l', join(this.opts.dataDir, 'log', 'pg_ctl.log'), '-o', this.startOptions()], 'owner');
    if (r.status !== 0) {
      let tail = '';
      try {
        tail = readFileSync(join(this.opts.dataDir, 'log', 'pg_ctl.log'), 'utf8').split('\n').slice(-6).join('\n');
      } catch {
        // No log yet.
      }
      throw new PostgresError(`PostgreSQL did not start: ${(r.stderr || r.stdout).trim()}\n${tail}`.trim(), 'StartFailed');
    }
    this.opts.onStarted?.();
  }

  /** Stops and waits up to `timeoutSeconds`; throws if it is still running then (the stop goes on regardless). */
  async stop(mode: StopMode = 'fast', timeoutSeconds = 120): Promise<void> {
    if (!existsSync(this.opts.dataDir) || !this.isRunning()) return;
    const r = await this.tool('pg_ctl', ['stop', '-D', this.opts.dataDir, '-m', mode, '-w', '-t', String(timeoutSeconds)], 'owner');
    if (r.status !== 0 && this.isRunning()) throw new PostgresError(`PostgreSQL did not stop: ${(r.stderr || r.stdout).trim()}`, 'Failed');
  }

  async restart(mode: StopMode = 'fast'): Promise<void> {
    await this.stop(mode);
    await this.start();
  }

  /** Runs SQL as pgbyok's superuser over the unix socket (root, peer-mapped); returns unaligned output. */
  async sql(sql: string, database = 'postgres', timeoutMs?: number): Promise<string> {
    const r = await this.tool('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', this.opts.socketDir, '-p', String(this.opts.port), '-U', PGBYOK_SUPERUSER, '-d', database, '-At', '-c', sql], 'root', timeoutMs);
    if (r.status !== 0) throw new PostgresError(`query failed: ${r.stderr.trim()}`, 'Failed');
    return r.stdout.trim();
  }

  /**
   * The administrator's role (an ordinary one, a member of azure_pg_admin; created or repaired here) with
   * its SCRAM verifier (computed from the password by `scramSha256Verifier`).
   */
  async setAdminPassword(verifier: string): Promise<void> {
    if (!SCRAM_VERIFIER_RE.test(verifier)) throw new PostgresError('not a SCRAM-SHA-256 verifier', 'Invalid');
    const login = this.opts.adminLogin;
    if (!login) throw new PostgresError('this instance was built without its administrator login', 'Invalid');
    validateAdminLogin(login);
    await this.sql(adminRolesSql(login));
    await this.sql(`ALTER ROLE "${login}" PASSWORD '${verifier}'`);
  }

  /** Rereads the configuration files (the user's dynamic parameters). */
  async reload(): Promise<void> {
    await this.sql('SELECT pg_catalog.pg_reload_conf()');
  }

  /** Rewrites the user's parameters into their file (read at the next reload or start). */
  writeParameters(): void {
    writeParameters(this.opts);
  }

  /**
   * A full base backup as a tar stream on the child's stdout (WAL fetched into it), taken over the socket
   * as pgbyok's superuser; the caller reads stdout and waits for the exit code.
   */
  baseBackupTar(): ChildProcess {
    const child = spawnAsRoot([this.bin('pg_basebackup'), '-h', this.opts.socketDir, '-p', String(this.opts.port), '-U', PGBYOK_SUPERUSER, '-D', '-', '-Ft', '-X', 'fetch', '-c', 'fast', '-w']);
    child.stdin!.end();
    return child;
  }

  /** Starts a command as the server's OS account (e.g. unpacking a backup into PGDATA). */
  spawnAsOwner(argv: string[]): ChildProcess {
    return spawnAs(this.opts.osUser, argv);
  }

  /** After the server's data is destroyed: its socket directory and its OS account go too. */
  async dispose(): Promise<void> {
    rmSync(this.opts.socketDir, { recursive: true, force: true });
    await removeOsUser(this.opts.osUser);
  }

  /** Ends every client session (before a stop that must not wait for them); gives up after 5 s, the stop ends them too. */
  async terminateSessions(): Promise<void> {
    await this.sql("SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity WHERE backend_type OPERATOR(pg_catalog.=) 'client backend' AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()", 'postgres', 5_000);
  }

  /** pg_isready plus a real query. */
  async health(): Promise<{ accepting: boolean; query: boolean }> {
    const ready = (await this.tool('pg_isready', ['-q', '-h', this.opts.socketDir, '-p', String(this.opts.port)], 'root')).status === 0;
    let query = false;
    if (ready) {
      try {
        query = (await this.sql('SELECT 1')) === '1';
      } catch {
        query = false;
      }
    }
    return { accepting: ready, query };
  }
}
