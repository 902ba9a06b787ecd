import { errors } from '../../lib/errors.js';
import { PostgresError, validateAdminLogin, validateAdminPassword } from '../../postgres/instance.js';

/** Input rules of the servers API, as Azure states them; pure, so each refusal is unit-testable. */

const SERVER_NAME_RE = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;

export function requireServerName(name: string): void {
  if (!SERVER_NAME_RE.test(name)) {
    throw errors.badParameter(`The server name '${name}' is invalid: 3-63 lowercase letters, digits and '-', not starting or ending with '-'.`, 'InvalidServerName');
  }
}

export function requireVersion(version: string | undefined): string {
  if ((version ?? '15') !== '15') throw errors.badParameter(`PostgreSQL version ${version} is not offered; pgbyok runs the machine's PostgreSQL 15.`, 'UnsupportedVersion');
  return '15';
}

export function requireStorageSize(gb: number | undefined): number {
  const storageGb = gb ?? 32;
  if (!Number.isInteger(storageGb) || storageGb < 1 || storageGb > 16384) throw errors.badParameter('storageSizeGB must be a whole number from 1 to 16384.');
  return storageGb;
}

/** Storage only grows, and only in whole GiB. */
export function requireStorageGrowth(current: number, next: number): number {
  if (!Number.isInteger(next) || next <= current || next > 16384) {
    throw errors.badParameter(`storageSizeGB can only grow: give a whole number larger than ${current}.`, 'StorageCannotShrink');
  }
  return next;
}

export function requireAdministrator(login: string, password: string): void {
  try {
    validateAdminLogin(login);
    validateAdminPassword(password);
  } catch (e) {
    if (e instanceof PostgresError) throw errors.badParameter(e.message, 'InvalidAdministrator');
    throw e;
  }
}

export function requireAdminPassword(password: string): void {
  try {
    validateAdminPassword(password);
  } catch (e) {
    if (e instanceof PostgresError) throw errors.badParameter(e.message, 'InvalidAdministrator');
    throw e;
  }
}

export function requireRetention(days: number | undefined): number {
  const d = days ?? 7;
  if (!Number.isInteger(d) || d < 7 || d > 35) throw errors.badParameter('backupRetentionDays must be a whole number from 7 to 35.');
  return d;
}

/** A restore time: ISO 8601, not in the future. */
export function requireRestoreTime(value: string | undefined, nowMs: number): string | undefined {
  if (!value) return undefined;
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw errors.badParameter(`The restore time '${value}' is not an ISO 8601 time.`);
  if (t > nowMs + 1000) throw errors.badParameter(`The restore time ${value} is in the future.`, 'RestoreTimeInFuture');
  return new Date(t).toISOString();
}
