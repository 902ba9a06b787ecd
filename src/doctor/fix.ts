import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GUARD_FIX, GUARD_SCRIPT, type CheckResult } from './checks.js';
import type { Probe } from './probe.js';

/**
 * `pgbyok doctor --fix`: installs the Debian packages of what is missing (non-interactively; the package
 * lists are fetched once if the first install fails), then the steps a package needs afterwards: the
 * cluster Debian creates with postgresql-15 is dropped (pgbyok makes its own), and pgbyok's PostgreSQL
 * module is built from this checkout. What no package fixes (a kernel, a DNS record, a busy port) is left
 * for the report that follows.
 */

/** Runs a command to its end with its output on stderr (stdout stays the report's); returns its status. */
export type Runner = (argv: string[], env?: Record<string, string>) => number;

export const realRunner: Runner = (argv, env = {}) =>
  spawnSync(argv[0], argv.slice(1), { stdio: ['ignore', 2, 2], env: { ...process.env, ...env } }).status ?? 1;

/** The pgbyok checkout this CLI runs from (dist/src/doctor/ → the repository root). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Debian's default cluster, which installing postgresql-15 creates and starts on port 5432. */
const DEBIAN_CLUSTER = '/etc/postgresql/15/main';

export interface FixOptions {
  probe: Probe;
  run: Runner;
  repoRoot: string;
  /** Says what is being done (on stderr). */
  log: (line: string) => void;
}

/** Fixes what it can of the missing checks (the optional PKCS#11 module included); returns what failed. */
export function fixMissing(results: CheckResult[], o: FixOptions): string[] {
  const todo = results.filter((r) => !r.ok && (r.required || r.needed === 'hsm'));
  const guard = todo.some((r) => r.check === 'pgbyok guard module');
  const packages = [...new Set([...todo.flatMap((r) => (r.package ? [r.package] : [])), ...(guard && !o.probe.command('gcc') ? ['gcc'] : [])])];
  const problems: string[] = [];
  const run = (argv: string[], env?: Record<string, string>) => {
    o.log(`$ ${argv.join(' ')}`);
    return o.run(argv, env);
  };

  if (packages.length) {
    const install = () => run(['apt-get', 'install', '-y', '-q', ...packages], { DEBIAN_FRONTEND: 'noninteractive' }) === 0;
    if (!install()) {
      o.log('apt-get install failed: fetching the package lists once and trying again');
      if (run(['apt-get', 'update', '-q']) !== 0 || !install()) problems.push(`apt-get install ${packages.join(' ')} failed (see its output above)`);
    }
    if (packages.includes('postgresql-15') && o.probe.exists(DEBIAN_CLUSTER) && run(['pg_dropcluster', '--stop', '15', 'main']) !== 0) {
      problems.push('pg_dropcluster --stop 15 main failed');
    }
  }
  if (guard) {
    const script = join(o.repoRoot, GUARD_SCRIPT);
    if (!o.probe.exists(script)) problems.push(`${script} is not there: run ${GUARD_FIX} as root from the pgbyok checkout`);
    else if (run(['bash', script]) !== 0) problems.push(`${GUARD_FIX} failed (see its output above)`);
  }
  return problems;
}
