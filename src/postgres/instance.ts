import type { ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { adminRolesSql, commandLineOptions, EXTENSION_SCRIPTS, hbaConf, identConf, managedSettings, PGBYOK_SUPERUSER } from './config.js';
import { PostgresError } from './errors.js';
import { ensureOsUser, removeOsUser, requireOsUser, type OsUser } from './os-user.js';
import { effectiveValues, userConf } from './parameters.js';
import { requireSecurityModules } from './modules.js';
import { SCRAM_VERIFIER_RE } from './scram.js';
import { postgresBinDir, spawnAs, spawnAsRoot } from './tools.js';
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

interface ToolResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

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

  /**
   * Runs a PostgreSQL tool: as the server's OS account (initdb, pg_ctl, pg_basebackup into PGDATA), or as
   * root for the clients that log in as pgbyok over the socket. Asynchronous on purpose: the platform's
   * one event loop also serves the vault and the API, and must not freeze while initdb or a start runs.
   */
  private tool(tool: string, args: string[], as: 'owner' | 'root', timeoutMs = 300_000): Promise<ToolResult> {
    return new Promise((resolve) => {
      const argv = [this.bin(tool), ...args];
      const child = as === 'root' ? spawnAsRoot(argv, timeoutMs) : spawnAs(this.opts.osUser, argv, timeoutMs);
      child.stdin!.end();
      let stdout = '';
      let stderr = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.once('error', (e) => resolve({ status: null, stdout, stderr: stderr + String(e) }));
      child.once('close', (status) => resolve({ status, stdout, stderr }));
    });
  }

  /** The server's OS account, created when missing, with the directories above PGDATA made private to it. */
  async ensureOwner(): Promise<OsUser> {
    const owner = await ensureOsUser(this.opts.osUser);
    this.opts.restrictParents?.(owner);
    return owner;
  }

  /** A fresh, empty PGDATA owned by the account (0700). */
  private async freshDataDir(): Promise<void> {
    const { uid, gid } = await this.ensureOwner();
    if (existsSync(this.opts.dataDir)) rmSync(this.opts.dataDir, { recursive: true, force: true });
    mkdirSync(this.opts.dataDir, { mode: 0o700 });
    chownSync(this.opts.dataDir, uid, gid);
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
    this.writeStartFiles();
  }

  private writeOwned(name: string, content: string, mode = 0o600): void {
    const { uid, gid } = requireOsUser(this.opts.osUser);
    const path = join(this.opts.dataDir, name);
    writeFileSync(path, content, { mode });
    chownSync(path, uid, gid);
  }

  /** The server's TLS certificate and key (inside the encrypted directory), and the CA clients trust. */
  installTls(tls: { cert: string; key: string; ca: string }): void {
    this.writeOwned('server.crt', tls.cert);
    this.writeOwned('server.key', tls.key);
    this.writeOwned('root.crt', tls.ca);
  }

  /**
   * Point-in-time recovery from restored files: WAL from `walDir`, up to `targetTime` (or to the end of the
   * archive), then promotion. The settings live in their own file so the managed ones stay untouched.
   */
  configureRecovery(walDir: string, targetTime?: string): void {
    const lines = [
      `restore_command = 'cp ${walDir}/%f %p'`,
      ...(targetTime ? [`recovery_target_time = '${new Date(targetTime).toISOString().replace('T', ' ').replace('Z', '+00')}'`] : []),
      "recovery_target_action = 'promote'",
      "recovery_target_timeline = 'latest'",
    ];
    this.writeOwned('pgbyok-recovery.conf', lines.join('\n') + '\n');
    const confPath = join(this.opts.dataDir, 'postgresql.conf');
    const conf = readFileSync(confPath, 'utf8');
    if (!conf.includes("include_if_exists 'pgbyok-recovery.conf'")) this.writeOwned('postgresql.conf', conf + "include_if_exists 'pgbyok-recovery.conf'\n");
    this.writeOwned('recovery.signal', '');
  }

  /** Waits until recovery has ended and the server accepts writes. */
  async waitForPromotion(timeoutMs = 300_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((await this.sql('SELECT pg_is_in_recovery()')) === 't') {
      if (Date.now() > deadline) throw new PostgresError('recovery did not finish in time', 'Failed');
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /**
   * Makes this (empty) instance a streaming replica of another: pg_basebackup over TLS as a replication
   * role, with a slot, and the standby configuration written by -R. The password is read from `passfile`,
   * which lives inside this server's encrypted directory.
   */
  async cloneFrom(source: { host: string; port: number; user: string; passfile: string; slot: string; caFile: string }): Promise<void> {
    await this.freshDataDir();
    const conn = `host=${source.host} port=${source.port} user=${source.user} passfile=${source.passfile} sslmode=verify-full sslrootcert=${source.caFile} application_name=${this.opts.clusterName}`;
    const r = await this.tool('pg_basebackup', ['-d', conn, '-D', this.opts.dataDir, '-X', 'stream', '-R', '-C', '-S', source.slot, '-c', 'fast', '-w'], 'owner');
    if (r.status !== 0) throw new PostgresError(`pg_basebackup from the source failed: ${(r.stderr || r.stdout).trim()}`, 'Failed');
    // -R wrote the standby's connection into postgresql.auto.conf, which every start empties: it moves to a file of pgbyok's.
    const auto = readFileSync(join(this.opts.dataDir, 'postgresql.auto.conf'), 'utf8');
    this.writeOwned('pgbyok-standby.conf', auto.split('\n').filter((l) => /^(primary_conninfo|primary_slot_name)\s*=/.test(l)).join('\n') + '\n');
    const conf = readFileSync(join(this.opts.dataDir, 'postgresql.conf'), 'utf8');
    if (!conf.includes("include_if_exists 'pgbyok-standby.conf'")) this.writeOwned('postgresql.conf', conf + "\ninclude_if_exists 'pgbyok-standby.conf'\n");
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
    const path = join(this.opts.dataDir, 'pgbyok-recovery.conf');
    if (existsSync(path)) rmSync(path);
  }

  /**
   * What pgbyok rewrites before every start, so nothing a user or a restored backup left can drift:
   * client authentication, the user's parameters, the extension scripts. The managed settings go on the
   * command line (`startOptions`).
   */
  private writeStartFiles(): void {
    const { uid, gid } = requireOsUser(this.opts.osUser);
    const dir = (path: string) => {
      if (!existsSync(path)) mkdirSync(path, { mode: 0o700 });
      chownSync(path, uid, gid);
      chmodSync(path, 0o700);
    };
    if (this.opts.walStagingDir) dir(this.opts.walStagingDir);
    dir(join(this.opts.dataDir, 'log'));
    this.writeOwned('pg_hba.conf', hbaConf());
    this.writeOwned('pg_ident.conf', identConf());
    this.writeOwned('pgbyok-parameters.conf', userConf(effectiveValues(this.opts.parameters ?? {})));
    const confPath = join(this.opts.dataDir, 'postgresql.conf');
    const conf = readFileSync(confPath, 'utf8');
    if (!conf.includes("include 'pgbyok-parameters.conf'")) this.writeOwned('postgresql.conf', conf + "\ninclude 'pgbyok-parameters.conf'\n");
    // An empty postgresql.auto.conf: ALTER SYSTEM is pgbyok's superuser's alone, and even it does not outlive a start.
    this.writeOwned('postgresql.auto.conf', '# Managed by pgbyok: server parameters are set through the API.\n');
    const scripts = join(this.opts.dataDir, 'pgbyok-extensions');
    dir(scripts);
    for (const [ext, sql] of Object.entries(EXTENSION_SCRIPTS)) {
      dir(join(scripts, ext));
      this.writeOwned(join('pgbyok-extensions', ext, 'after-create.sql'), sql);
    }
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
    this.writeStartFiles();
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
    this.writeOwned('pgbyok-parameters.conf', userConf(effectiveValues(this.opts.parameters ?? {})));
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
