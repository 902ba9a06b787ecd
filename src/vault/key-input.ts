import { errors } from '../lib/errors.js';
import { parseDurationSeconds } from '../lib/duration.js';
import { KEY_OPS, type KeyOp, type LifetimeAction } from './vault.types.js';

/**
 * What a key request may carry, and the checks on it before the key service acts: key names, base64url
 * values, key_ops, the nbf/exp window, list pages and rotation policies. Each failed check is a 400
 * BadParameter whose message says what was wrong; nothing here touches the store or key material.
 */

export interface KeyAttributesInput {
  enabled?: boolean;
  nbf?: number | null;
  exp?: number | null;
}

export interface CreateKeyInput {
  kty: string;
  key_size?: number;
  public_exponent?: number;
  key_ops?: string[];
  attributes?: KeyAttributesInput;
  tags?: Record<string, string>;
}

export interface ImportKeyInput {
  key: Record<string, unknown>;
  Hsm?: boolean;
  attributes?: KeyAttributesInput;
  tags?: Record<string, string>;
}

export interface UpdateKeyInput {
  key_ops?: string[];
  attributes?: KeyAttributesInput;
  tags?: Record<string, string>;
}

const NAME_RE = /^[0-9a-zA-Z-]{1,127}$/;
const B64URL_RE = /^[A-Za-z0-9_-]*={0,2}$/;
const DAY = 86400;

export function decodeB64url(value: unknown, field: string): Buffer {
  if (typeof value !== 'string' || !B64URL_RE.test(value)) {
    throw errors.badParameter(`'${field}' must be a base64url string.`);
  }
  return Buffer.from(value, 'base64url');
}

export function assertKeyName(name: string): void {
  if (!NAME_RE.test(name)) {
    throw errors.badParameter(`The key name '${name}' is invalid: use 1-127 letters, digits and '-'.`);
  }
}

/** A value from a request, quoted for an error message; anything, even an object no String() can turn into text. */
export function shown(v: unknown): string {
  const text = typeof v === 'string' ? `'${v}'` : JSON.stringify(v) ?? typeof v;
  return text.length > 100 ? `${text.slice(0, 100)}...` : text;
}

/** What a key may do unless its key_ops say otherwise ('import' is only ever asked for: a key-exchange key). */
export const DEFAULT_KEY_OPS = KEY_OPS.filter((o) => o !== 'import');

export function checkKeyOps(ops: string[] | undefined): KeyOp[] {
  if (ops === undefined) return [...DEFAULT_KEY_OPS];
  const bad = ops.filter((o) => !(KEY_OPS as readonly string[]).includes(o));
  if (bad.length) throw errors.badParameter(`Unknown key_ops ${bad.join(', ')}. RSA keys support: ${KEY_OPS.join(', ')}.`);
  // As Azure's BYOK specification fixes it: a key-exchange key does nothing but import.
  if (ops.includes('import') && ops.some((o) => o !== 'import')) {
    throw errors.badParameter("A key-exchange key's key_ops are exactly ['import'] (BYOK); a key with other operations cannot also import.");
  }
  return [...new Set(ops)] as KeyOp[];
}

/** Latest activation or expiry a key may carry: 9999-12-31T23:59:59Z, the end of what a date can show. */
const MAX_TIME = 253_402_300_799;

export function checkWindow(nbf?: number | null, exp?: number | null): void {
  for (const [name, t] of [['nbf', nbf], ['exp', exp]] as const) {
    if (t != null && (!Number.isSafeInteger(t) || t < 0 || t > MAX_TIME)) {
      throw errors.badParameter(`The key attribute '${name}' must be a time in whole seconds since 1970 up to ${MAX_TIME} (the year 9999), not ${t}.`);
    }
  }
  if (nbf != null && exp != null && exp <= nbf) {
    throw errors.badParameter('The key expiry (exp) must be later than its activation (nbf).');
  }
}

/** A page SQLite can be asked for: whole numbers it binds as integers (`$skiptoken=1e20` is a whole number too). */
export function checkPage(limit: number, offset: number): void {
  if (!Number.isSafeInteger(limit) || limit < 1) throw errors.badParameter('maxresults must be a whole number from 1 to 25.');
  if (!Number.isSafeInteger(offset) || offset < 0) throw errors.badParameter('$skiptoken is invalid.');
}

/** Longest duration a rotation policy may name (1000 years), so that an expiry it sets is still a date. */
const MAX_DURATION = 1000 * 365 * DAY;

const durationOf = (text: string): number | undefined => {
  const d = parseDurationSeconds(text);
  return d !== undefined && d <= MAX_DURATION ? d : undefined;
};

export function checkRotationPolicy(p: { lifetimeActions?: LifetimeAction[]; attributes?: { expiryTime?: string } }): void {
  const expiry = p.attributes?.expiryTime;
  if (expiry !== undefined && durationOf(expiry) === undefined) {
    throw errors.badParameter(`expiryTime '${expiry}' is not an ISO 8601 duration such as P90D (of at most 1000 years).`);
  }
  for (const a of p.lifetimeActions ?? []) {
    const type: unknown = a.action?.type;
    if (typeof type !== 'string' || !['rotate', 'notify'].includes(type.toLowerCase())) {
      throw errors.badParameter(`Lifetime action type ${shown(type)} is not one of Rotate, Notify.`);
    }
    const { timeAfterCreate, timeBeforeExpiry } = a.trigger ?? {};
    for (const t of [timeAfterCreate, timeBeforeExpiry]) {
      if (t !== undefined && typeof t !== 'string') throw errors.badParameter('Each lifetime action trigger must be an ISO 8601 duration string such as P30D.');
    }
    if ((timeAfterCreate === undefined) === (timeBeforeExpiry === undefined)) {
      throw errors.badParameter('Each lifetime action needs exactly one trigger: timeAfterCreate or timeBeforeExpiry.');
    }
    const d = timeAfterCreate ?? timeBeforeExpiry!;
    if (durationOf(d) === undefined) throw errors.badParameter(`Trigger '${d}' is not an ISO 8601 duration such as P30D (of at most 1000 years).`);
    if (timeBeforeExpiry !== undefined && expiry === undefined && type.toLowerCase() === 'rotate') {
      throw errors.badParameter('A timeBeforeExpiry rotation needs the policy to set attributes.expiryTime.');
    }
  }
}
