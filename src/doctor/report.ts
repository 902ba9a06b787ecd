import { failing, type CheckResult } from './checks.js';

/**
 * The doctor's words: one line per check (`ok`, `MISSING`, or `optional` for what this machine may do
 * without), the JSON form, and the message with which `pgbyok up` stops.
 */
export function reportLine(r: CheckResult): string {
  if (r.ok) return `ok   ${r.check}: ${r.detail}`;
  return `${r.required ? 'MISSING' : 'optional'} ${r.check}: ${r.detail} — fix: ${r.fix}`;
}

export function reportLines(results: CheckResult[]): string[] {
  return results.map(reportLine);
}

/** The JSON form: what a script or test reads. */
export function reportJson(results: CheckResult[]) {
  return results.map(({ check, ok, detail, fix, package: pkg, needed, required }) => ({ check, ok, detail, fix, ...(pkg ? { package: pkg } : {}), needed, required }));
}

export const UP_ADVICE_SERVERS = "run `pgbyok doctor --fix` (as root) to install what is missing, or `pgbyok up --vaults-only` to serve vaults and managed HSMs without PostgreSQL servers";
export const UP_ADVICE_ALWAYS = 'pgbyok cannot serve vaults either until these are fixed: `pgbyok doctor` checks again, and `pgbyok doctor --fix` (as root) installs missing packages';

/** Why `pgbyok up` does not start, or undefined when it may. */
export function upRefusal(results: CheckResult[]): string | undefined {
  const missing = failing(results);
  if (missing.length === 0) return undefined;
  const advice = missing.every((r) => r.needed === 'servers') ? UP_ADVICE_SERVERS : UP_ADVICE_ALWAYS;
  return ['pgbyok cannot start: prerequisites are missing.', ...missing.map(reportLine), advice].join('\n');
}

/** The first lines of a start with --vaults-only: what it serves, and what servers would still need. */
export function vaultsOnlyNotice(results: CheckResult[]): string {
  const lacking = results.filter((r) => r.needed === 'servers' && !r.ok).map((r) => r.check);
  return [
    'Vaults only (--vaults-only): vaults and managed HSMs are served; PostgreSQL servers cannot be created.',
    ...(lacking.length ? [`  servers would need: ${lacking.join(', ')} ('pgbyok doctor' names the fixes)`] : []),
  ].join('\n');
}
