import { join } from 'node:path';
import type { Config } from '../lib/config.js';
import { homePaths, readSettings } from '../lib/home.js';
import { createNames } from '../lib/names.js';
import { plannedPorts, type PortSource } from '../lib/ports.js';
import { SOFTHSM_MODULE } from '../hsm/softhsm.js';
import { EXTWLIST_MODULE, GUARD_MODULE, LIBDIR } from '../postgres/modules.js';
import { DEBIAN_BINDIR } from '../postgres/tools.js';
import { STORAGE_REQUIREMENTS } from '../storage/prerequisites.js';
import { metBy, type HostRequirement, type Probe } from './probe.js';

/**
 * The doctor's decision table: every prerequisite of pgbyok, whether it is there, and what fixes it when
 * it is not. `needed` says who needs it: PostgreSQL servers, every platform (vaults too), or managed HSMs.
 * `required` says whether it counts in this run: server prerequisites do not with --vaults-only, and the
 * PKCS#11 module counts only where an HSM is used.
 */
export type Needed = 'servers' | 'always' | 'hsm';

export interface CheckResult {
  check: string;
  ok: boolean;
  detail: string;
  fix: string;
  package?: string;
  needed: Needed;
  required: boolean;
}

export interface DoctorInput {
  probe: Probe;
  /** The resolved $PGBYOK_HOME. */
  home: string;
  config: Config;
  vaultsOnly: boolean;
  /** `pgbyok up --port`, when given. */
  portFlag?: number;
}

/** The command that builds and installs pgbyok's PostgreSQL module (from the checkout, as root). */
export const GUARD_SCRIPT = 'scripts/install-pg-guard.sh';
export const GUARD_FIX = `bash ${GUARD_SCRIPT}`;
/** fscrypt v2 policies and FS_IOC_ADD_ENCRYPTION_KEY came with Linux 5.4. */
const FSCRYPT_V2_KERNEL = [5, 4];

type Found = Omit<CheckResult, 'needed' | 'required'>;

function fromRequirement(r: HostRequirement, probe: Probe): Found {
  const at = metBy(r, probe);
  return { check: r.check, ok: at !== undefined, detail: at ?? r.problem, fix: r.fix, ...(r.package ? { package: r.package } : {}) };
}

/** Several files or commands that one package provides, as one check. */
function fromPackage(probe: Probe, check: string, pkg: string, files: string[], commands: string[] = []): Found {
  const missing = [...files.filter((f) => !probe.exists(f)), ...commands.filter((c) => !probe.command(c))];
  return {
    check, ok: missing.length === 0, fix: `apt-get install ${pkg}`, package: pkg,
    detail: missing.length === 0 ? [...files, ...commands.map((c) => probe.command(c)!)].join(', ') : `missing: ${missing.join(', ')}`,
  };
}

function fscrypt(probe: Probe, home: string): Found {
  const base = fromRequirement(STORAGE_REQUIREMENTS.find((r) => r.check === 'fscrypt')!, probe);
  if (!base.ok) return base;
  const release = probe.kernel();
  const [major, minor] = release.split(/[.-]/).map(Number);
  if (!(major > FSCRYPT_V2_KERNEL[0] || (major === FSCRYPT_V2_KERNEL[0] && minor >= FSCRYPT_V2_KERNEL[1]))) {
    return { ...base, ok: false, detail: `kernel ${release} has no fscrypt v2 key management (it came with Linux ${FSCRYPT_V2_KERNEL.join('.')})`, fix: 'use Linux 5.4 or newer with CONFIG_FS_ENCRYPTION=y' };
  }
  const images = join(home, 'regions');
  const fs = probe.filesystemOf(images);
  // Each image carries its own ext4 made with `-O encrypt` (storage/devices.ts); the filesystem under it holds a sparse file.
  return { ...base, detail: `ext4 encryption in kernel ${release}; the images under ${images} (on ${fs ?? 'an unknown filesystem'}) are ext4 with encrypt on loop devices` };
}

async function names(probe: Probe, check: string, host: string, domain: string, what: string): Promise<Found> {
  const why = await probe.resolve(host);
  const local = domain === 'localhost';
  return {
    check, ok: why === undefined,
    detail: why === undefined ? `${host} resolves` : `${host} does not resolve (${why}): ${what} are reached by name`,
    fix: local ? 'apt-get install libnss-myhostname (names under localhost then resolve to loopback)' : `add a wildcard DNS record *.${host.split('.').slice(1).join('.')} pointing at this machine`,
    ...(local ? { package: 'libnss-myhostname' } : {}),
  };
}

async function port(probe: Probe, check: string, value: number | undefined, from: PortSource, running: number | undefined, settingsFile: string, envName: string): Promise<Found> {
  if (value === undefined) return { check, ok: true, detail: 'a free port, chosen at the first start and then kept', fix: '' };
  const source = from === 'settings.json' ? `kept in ${settingsFile}` : from === 'root default' ? 'the default as root' : `from ${from}`;
  if (await probe.portFree(value)) return { check, ok: true, detail: `${value} (${source}) is free`, fix: '' };
  if (running !== undefined) return { check, ok: true, detail: `${value} (${source}): pgbyok is running (pid ${running}) and holds it`, fix: '' };
  const instead = from === '--port' ? 'choose another --port' : from === 'settings.json' ? `change it in ${settingsFile}` : `set ${envName} to a free port`;
  return {
    check, ok: false, detail: `${value} (${source}) is in use by another program`,
    fix: `free it (ss -ltnp 'sport = :${value}' shows who holds it), or ${instead}`,
  };
}

/** Runs every check; results in a stable order, one per prerequisite. */
export async function runChecks(i: DoctorInput): Promise<CheckResult[]> {
  const { probe, config } = i;
  const paths = homePaths(i.home);
  const storage = (name: string) => fromRequirement(STORAGE_REQUIREMENTS.find((r) => r.check === name)!, probe);
  const domain = createNames(config.PGBYOK_DOMAIN, 443);
  const hsmUsed = config.PGBYOK_PKCS11_MODULE !== undefined || await probe.hsmsExist(paths.db);
  const pkcs11Path = config.PGBYOK_PKCS11_MODULE ?? SOFTHSM_MODULE;
  const gcc = probe.command('gcc');
  const running = probe.runningPid(i.home);
  const planned = plannedPorts({ flag: i.portFlag, settings: readSettings(paths), config, root: probe.uid() === 0 });

  const table: [Needed, Found][] = [
    ['servers', storage('root')],
    ['servers', storage('loop devices')],
    ['servers', fscrypt(probe, i.home)],
    ...STORAGE_REQUIREMENTS.filter((r) => 'command' in r.needs).map((r): [Needed, Found] => ['servers', fromRequirement(r, probe)]),
    ['servers', fromPackage(probe, 'OS accounts', 'passwd', [], ['useradd', 'userdel'])],
    ['servers', fromPackage(probe, 'runuser', 'util-linux', [], ['runuser'])],
    ['servers', fromPackage(probe, 'PostgreSQL 15 server', 'postgresql-15', ['initdb', 'postgres', 'pg_ctl'].map((b) => join(DEBIAN_BINDIR, b)))],
    ['servers', fromPackage(probe, 'psql', 'postgresql-client-15', ['psql', 'pg_isready', 'pg_basebackup'].map((b) => join(DEBIAN_BINDIR, b)), ['psql'])],
    ['servers', fromPackage(probe, 'pgextwlist', 'postgresql-15-pgextwlist', [join(LIBDIR, EXTWLIST_MODULE)])],
    ['servers', {
      check: 'pgbyok guard module', ok: probe.exists(join(LIBDIR, GUARD_MODULE)),
      detail: probe.exists(join(LIBDIR, GUARD_MODULE)) ? join(LIBDIR, GUARD_MODULE) : `${join(LIBDIR, GUARD_MODULE)} is missing${gcc ? '' : ' (building it needs gcc, which is not installed either)'}`,
      fix: `${GUARD_FIX} (as root, from the pgbyok checkout; needs gcc and postgresql-15)`,
    }],
    ['always', fromPackage(probe, 'openssl', 'openssl', [], ['openssl'])],
    ['always', await names(probe, 'vault names', domain.vaultHost('probe'), domain.domain, 'vaults')],
    ['servers', await names(probe, 'server names', domain.serverFqdn('probe'), domain.domain, 'servers')],
    ['hsm', {
      check: 'PKCS#11 module', ok: probe.exists(pkcs11Path),
      detail: `${pkcs11Path}${probe.exists(pkcs11Path) ? '' : ' is missing'}${hsmUsed ? (config.PGBYOK_PKCS11_MODULE ? ' (PGBYOK_PKCS11_MODULE)' : ' (this home has managed HSMs)') : '; optional, for managed HSMs'}`,
      fix: config.PGBYOK_PKCS11_MODULE ? 'set PGBYOK_PKCS11_MODULE to the path of an installed PKCS#11 module' : 'apt-get install softhsm2',
      ...(config.PGBYOK_PKCS11_MODULE ? {} : { package: 'softhsm2' }),
    }],
    ['always', await port(probe, 'platform port', planned.port, planned.portFrom, running, paths.settings, 'PGBYOK_PORT')],
    ['always', await port(probe, 'vault port', planned.vaultPort, planned.vaultPortFrom, running, paths.settings, 'PGBYOK_VAULT_PORT')],
  ];
  return table.map(([needed, r]) => ({
    ...r, needed, required: needed === 'always' || (needed === 'servers' && !i.vaultsOnly) || (needed === 'hsm' && hsmUsed),
  }));
}

/** The checks that stop a start (or fail `pgbyok doctor`): required and not met. */
export const failing = (results: CheckResult[]) => results.filter((r) => r.required && !r.ok);
