import { PostgresError } from './errors.js';

const RESERVED_LOGINS = new Set(['postgres', 'admin', 'administrator', 'root', 'guest', 'public', 'azure_superuser', 'azure_pg_admin', 'pgbyok', 'replication']);

/** Azure's rules for the administrator login: 1-63 letters, digits, '_'; not reserved; not pg_*. */
export function validateAdminLogin(login: string): void {
  if (!/^[a-z_][a-z0-9_]{0,62}$/i.test(login) || /^(pg_|pgbyok)/i.test(login) || RESERVED_LOGINS.has(login.toLowerCase())) {
    throw new PostgresError(`The administrator login '${login}' is not allowed: use 1-63 letters, digits or '_', not starting with pg_ or pgbyok, and not one of ${[...RESERVED_LOGINS].join(', ')}.`, 'Invalid');
  }
}

/** Azure's rules for the administrator password: 8-128 characters from three of: upper, lower, digit, other. */
export function validateAdminPassword(password: string): void {
  const classes = [/[A-Z]/, /[a-z]/, /[0-9]/, /[^A-Za-z0-9]/].filter((r) => r.test(password)).length;
  if (password.length < 8 || password.length > 128 || classes < 3 || !/^[\x20-\x7e]+$/.test(password)) {
    throw new PostgresError('The administrator password must be 8-128 printable ASCII characters and contain three of: upper-case letters, lower-case letters, digits, other characters.', 'Invalid');
  }
}

