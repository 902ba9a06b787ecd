import { createPrivateKey, randomUUID, type KeyObject } from 'node:crypto';
import Database from 'better-sqlite3';
import { SignJWT, decodeJwt, decodeProtectedHeader } from 'jose';
import { createBarrier, loadOrCreateMasterKey } from '../../src/barrier/barrier.js';
import { homePaths } from '../../src/lib/home.js';
import { generateRsaKeySync } from '../../src/lib/rsa-keygen.js';
import { DUTIES, type Duty, type Role } from '../../src/identity/roles.js';
import type { KeyPermission } from '../../src/vault/vault.types.js';

/**
 * The callers of the authorization matrix. Each class is one way of being (un)authorized; a class has
 * variants (e.g. the many shapes of a malformed token). A caller carries one Authorization header per
 * surface: what it would send to a vault, and what it would send to the management API.
 */
export const AUTH_FAILURES = ['none', 'malformed', 'forged', 'expired', 'badClaims', 'wrongAudience', 'deleted'] as const;
export const CALLER_CLASSES = [...AUTH_FAILURES, 'otherTenant', 'noRole', 'dba', 'securityOfficer', 'reader', 'right'] as const;
export type CallerClass = (typeof CALLER_CLASSES)[number];

export interface Caller {
  cls: CallerClass;
  label: string;
  /** The Authorization header for the vault and for the management API (undefined: none sent). */
  vault?: string;
  mgmt?: string;
  /** For principals of the vault's own tenant: their roles and their key permissions on the main vault. */
  roles?: Role[];
  keyPermissions?: KeyPermission[];
}

export const holdsDuty = (roles: readonly Role[], duty: Duty) => roles.some((r) => (DUTIES[duty] as readonly string[]).includes(r));

/**
 * Tokens signed with the platform's real signing key, read (read-only) from its home: they pass the
 * signature check, so what they test is everything after it (expiry, issuer, tenant, principal, claim types).
 */
export function tokenMinter(home: string) {
  const paths = homePaths(home);
  const barrier = createBarrier(loadOrCreateMasterKey(paths.masterKey));
  const db = new Database(paths.db, { readonly: true, fileMustExist: true });
  const row = db.prepare('SELECT kid, sealed_private FROM signing_keys ORDER BY created DESC LIMIT 1').get() as { kid: string; sealed_private: Buffer };
  db.close();
  const key: KeyObject = createPrivateKey({ key: barrier.unseal(row.sealed_private, `signing-key:${row.kid}`), format: 'der', type: 'pkcs8' });
  return {
    kid: row.kid,
    mint: (claims: Record<string, unknown>) =>
      new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: row.kid, typ: 'JWT' }).sign(key),
  };
}

export interface CallerInputs {
  home: string;
  origin: string;
  tid: string;
  otherTid: string;
  /** Real tokens: [vault, management] per principal. */
  admin: [string, string];
  other: [string, string];
  deleted: [string, string];
  noRole: [string, string];
  dba: [string, string];
  securityOfficer: [string, string];
  reader: [string, string];
  readerPermissions: KeyPermission[];
  /** Object id of a principal of this tenant (for claims that name a real principal in the wrong tenant). */
  someObjectId: string;
}

const bearer = (t: string) => `Bearer ${t}`;
const both = (cls: CallerClass, label: string, header: string | undefined, extra: Partial<Caller> = {}): Caller => ({ cls, label, vault: header, mgmt: header, ...extra });
const b64u = (s: string) => Buffer.from(s).toString('base64url');

export async function buildCallers(x: CallerInputs): Promise<Caller[]> {
  const { mint, kid } = tokenMinter(x.home);
  const now = Math.floor(Date.now() / 1000);
  const iss = (tid: string) => `${x.origin}/${tid}/v2.0`;
  const adminClaims = decodeJwt(x.admin[0]) as Record<string, unknown>;
  const base = (aud: string, over: Record<string, unknown> = {}) => ({
    tid: x.tid, oid: adminClaims.oid, appid: adminClaims.appid, iss: iss(x.tid), aud, iat: now - 60, nbf: now - 60, exp: now + 3600, ...over,
  });
  const VAULT = 'https://vault.azure.net';
  const MGMT = 'https://management.azure.com';
  /** The same claims minted once per audience. */
  const minted = async (cls: CallerClass, label: string, over: Record<string, unknown>): Promise<Caller> => ({
    cls, label, vault: bearer(await mint(base(VAULT, over))), mgmt: bearer(await mint(base(MGMT, over))),
  });

  const attacker = generateRsaKeySync(2048);
  const forge = async (aud: string, kidUsed: string) => new SignJWT(base(aud)).setProtectedHeader({ alg: 'RS256', kid: kidUsed, typ: 'JWT' }).sign(attacker);
  const tamper = (token: string) => {
    const [h, , s] = token.split('.');
    return `${h}.${b64u(JSON.stringify({ ...decodeJwt(token), appid: 'attacker', exp: now + 86400 * 365 }))}.${s}`;
  };
  const algNone = (token: string) => `${b64u(JSON.stringify({ alg: 'none', typ: 'JWT', kid: decodeProtectedHeader(token).kid }))}.${token.split('.')[1]}.`;
  const hs256 = async (aud: string) => new SignJWT(base(aud)).setProtectedHeader({ alg: 'HS256', kid, typ: 'JWT' }).sign(Buffer.from(kid));

  const callers: Caller[] = [
    both('none', 'no Authorization header', undefined),
    both('malformed', 'Bearer with nothing', 'Bearer'),
    both('malformed', 'Bearer and a space', 'Bearer '),
    both('malformed', 'one word', 'Bearer abc'),
    both('malformed', 'three empty parts', 'Bearer ..'),
    both('malformed', 'a.b.c', 'Bearer a.b.c'),
    both('malformed', 'Basic scheme', 'Basic dXNlcjpwdw=='),
    both('malformed', 'Negotiate scheme', 'Negotiate YIIFyQYJKoZIhvcSAQICAQBuggW4'),
    both('malformed', 'token with trailing words', `Bearer ${x.admin[0]} extra`),
    both('malformed', 'long garbage', `Bearer ${'x'.repeat(6000)}`),
    both('malformed', 'percent garbage', 'Bearer eyJ%%%.%00.%zz'),
    { cls: 'malformed', label: 'truncated real token', vault: bearer(x.admin[0].slice(0, -3)), mgmt: bearer(x.admin[1].slice(0, -3)) },
    { cls: 'forged', label: 'attacker key, real kid', vault: bearer(await forge(VAULT, kid)), mgmt: bearer(await forge(MGMT, kid)) },
    { cls: 'forged', label: 'attacker key, unknown kid', vault: bearer(await forge(VAULT, randomUUID())), mgmt: bearer(await forge(MGMT, randomUUID())) },
    { cls: 'forged', label: 'payload changed, signature kept', vault: bearer(tamper(x.admin[0])), mgmt: bearer(tamper(x.admin[1])) },
    { cls: 'forged', label: 'alg none', vault: bearer(algNone(x.admin[0])), mgmt: bearer(algNone(x.admin[1])) },
    { cls: 'forged', label: 'HS256 keyed with the kid', vault: bearer(await hs256(VAULT)), mgmt: bearer(await hs256(MGMT)) },
    await minted('expired', 'expired an hour ago', { iat: now - 7200, nbf: now - 7200, exp: now - 3600 }),
    await minted('badClaims', 'not yet valid', { nbf: now + 3600, exp: now + 7200 }),
    await minted('badClaims', 'foreign issuer', { iss: `https://login.example.com/${x.tid}/v2.0` }),
    await minted('badClaims', 'unknown tenant', { tid: randomUUID(), iss: iss('00000000-0000-0000-0000-000000000000') }),
    await minted('badClaims', 'unknown tenant, matching issuer', ((t) => ({ tid: t, iss: iss(t) }))(randomUUID())),
    await minted('badClaims', 'unknown principal', { oid: randomUUID() }),
    await minted('badClaims', "this tenant's principal under another tenant", { oid: x.someObjectId, tid: x.otherTid, iss: iss(x.otherTid) }),
    await minted('badClaims', 'no oid', { oid: undefined }),
    await minted('badClaims', 'oid is a number', { oid: 42 }),
    await minted('badClaims', 'oid is an object', { oid: { $ne: null } }),
    await minted('badClaims', 'tid is a list', { tid: [x.tid] }),
    await minted('badClaims', 'foreign audience', { aud: 'https://evil.example' }),
    { cls: 'wrongAudience', label: 'the other surface\'s token', vault: bearer(x.admin[1]), mgmt: bearer(x.admin[0]) },
    { cls: 'deleted', label: 'principal deleted after its token was issued', vault: bearer(x.deleted[0]), mgmt: bearer(x.deleted[1]) },
    { cls: 'otherTenant', label: "another tenant's Owner", vault: bearer(x.other[0]), mgmt: bearer(x.other[1]) },
    { cls: 'noRole', label: 'no role, no access policy', vault: bearer(x.noRole[0]), mgmt: bearer(x.noRole[1]), roles: [], keyPermissions: [] },
    { cls: 'dba', label: 'DBA, no access policy', vault: bearer(x.dba[0]), mgmt: bearer(x.dba[1]), roles: ['DBA'], keyPermissions: [] },
    { cls: 'securityOfficer', label: 'Security Officer, no access policy', vault: bearer(x.securityOfficer[0]), mgmt: bearer(x.securityOfficer[1]), roles: ['Security Officer'], keyPermissions: [] },
    { cls: 'reader', label: `no role, access policy ${x.readerPermissions.join('/')}`, vault: bearer(x.reader[0]), mgmt: bearer(x.reader[1]), roles: [], keyPermissions: x.readerPermissions },
    { cls: 'right', label: 'Owner with every key permission', vault: bearer(x.admin[0]), mgmt: bearer(x.admin[1]), roles: ['Owner'], keyPermissions: undefined },
  ];
  return callers;
}

export const tokenOf = (c: Caller, surface: 'vault' | 'mgmt' | 'public') => (surface === 'vault' ? c.vault : c.mgmt);
