/**
 * The PKCS#11 plumbing under `token.ts`: the typed error, the one module instance per process (C_Initialize
 * once), the one login per token per process, and the session pool in which each session runs one operation at
 * a time. Facts it relies on are in docs/research/softhsm2-pkcs11.md.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import pkcs11js from 'pkcs11js';

export const P = pkcs11js;
export type Handle = Buffer;
type Module = InstanceType<typeof pkcs11js.PKCS11>;

export type TokenErrorCode =
  | 'ModuleNotFound' | 'TokenNotFound' | 'PinIncorrect' | 'KeyNotFound' | 'AlgorithmNotSupportedByModule'
  | 'BadParameter' | 'DecryptionFailed' | 'Closed' | 'DeviceError';

export class TokenError extends Error {
  constructor(
    readonly code: TokenErrorCode,
    message: string,
    /** The PKCS#11 return value behind it (e.g. `CKR_PIN_INCORRECT`), when there is one. */
    readonly ckr?: string,
  ) {
    super(message);
    this.name = 'TokenError';
  }
}

/** The CKR_ name of a pkcs11js error, or undefined for anything else. */
export function ckrOf(e: unknown): string | undefined {
  const m = e instanceof Error ? /^(CKR_\w+)/.exec(e.message) : null;
  return m ? m[1] : undefined;
}

/** A TokenError as is; a PKCS#11 error as a TokenError saying which operation failed. */
export function asTokenError(e: unknown, what: string, code: TokenErrorCode = 'DeviceError'): TokenError {
  if (e instanceof TokenError) return e;
  const ckr = ckrOf(e);
  return new TokenError(code, `${what} failed in the PKCS#11 module: ${ckr ?? (e as Error)?.message ?? String(e)}.`, ckr);
}

const modules = new Map<string, Module>();
const logins = new Map<string, { refs: number; pinHash: Buffer }>();

/** Loads the module and runs C_Initialize, once per process and module path. */
export function loadModule(modulePath: string): Module {
  const known = modules.get(modulePath);
  if (known) return known;
  if (!existsSync(modulePath)) throw new TokenError('ModuleNotFound', `No PKCS#11 module at ${modulePath}.`);
  const p = new pkcs11js.PKCS11();
  try {
    p.load(modulePath);
  } catch (e) {
    throw new TokenError('ModuleNotFound', `${modulePath} cannot be loaded as a PKCS#11 module: ${(e as Error).message}.`);
  }
  try {
    p.C_Initialize({ flags: P.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (ckrOf(e) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') throw asTokenError(e, 'C_Initialize');
  }
  modules.set(modulePath, p);
  return p;
}

export function findSlot(p: Module, modulePath: string, tokenLabel: string): Handle {
  const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.replace(/[\s\0]+$/, '') === tokenLabel);
  if (!slot) throw new TokenError('TokenNotFound', `The PKCS#11 module ${modulePath} has no initialised token labelled "${tokenLabel}".`);
  return slot;
}

/**
 * Initialises a token in the module's first free slot, in this process (the PINs never appear on a command
 * line): C_InitToken with the SO PIN, then the SO sets the user PIN. The caller keeps both PINs.
 */
export function initToken(modulePath: string, tokenLabel: string, soPin: string, pin: string): void {
  const p = loadModule(modulePath);
  const free = p.C_GetSlotList(true).find((s) => (p.C_GetTokenInfo(s).flags & P.CKF_TOKEN_INITIALIZED) === 0);
  if (!free) throw new TokenError('TokenNotFound', `The PKCS#11 module ${modulePath} has no free slot to initialise a token in.`);
  try {
    // CK_TOKEN_INFO labels are 32 bytes padded with blanks (PKCS#11 2.40 §3.2).
    p.C_InitToken(free, soPin, tokenLabel.padEnd(32, ' '));
    const session = p.C_OpenSession(findSlot(p, modulePath, tokenLabel), P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
    try {
      p.C_Login(session, P.CKU_SO, soPin);
      p.C_InitPIN(session, pin);
      p.C_Logout(session);
    } finally {
      p.C_CloseSession(session);
    }
  } catch (e) {
    throw asTokenError(e, 'Initialising the token');
  }
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

/**
 * Logs the user in on the token (login is per token per process in PKCS#11). A second openToken on a token this
 * process is logged in to must give the same PIN: the module itself would accept anything then.
 */
export function login(p: Module, loginKey: string, session: Handle, pin: string): void {
  const known = logins.get(loginKey);
  if (known) {
    if (!timingSafeEqual(known.pinHash, sha256(pin))) throw new TokenError('PinIncorrect', 'The PIN is incorrect for this token.', 'CKR_PIN_INCORRECT');
    known.refs++;
    return;
  }
  try {
    p.C_Login(session, P.CKU_USER, pin);
  } catch (e) {
    const ckr = ckrOf(e);
    if (ckr === 'CKR_PIN_INCORRECT' || ckr === 'CKR_PIN_LEN_RANGE') throw new TokenError('PinIncorrect', 'The PIN is incorrect for this token.', ckr);
    if (ckr !== 'CKR_USER_ALREADY_LOGGED_IN') throw asTokenError(e, 'C_Login');
  }
  logins.set(loginKey, { refs: 1, pinHash: sha256(pin) });
}

/** Drops this opener's share of the login; the last one logs out. */
export function logout(p: Module, loginKey: string, session: Handle): void {
  const known = logins.get(loginKey);
  if (!known || --known.refs > 0) return;
  logins.delete(loginKey);
  try { p.C_Logout(session); } catch { /* closing the sessions ends the login anyway */ }
}

interface PooledSession { handle: Handle; tail: Promise<unknown>; pending: number }

/**
 * A few sessions, each running one operation at a time (PKCS#11 allows one active operation per session): an
 * operation queues on the least busy one. A session whose operation failed is closed and replaced, so an
 * operation left half-initialised never blocks the next one.
 */
export class SessionPool {
  private readonly sessions: PooledSession[];
  private closed = false;

  constructor(private readonly p: Module, private readonly slot: Handle, first: Handle, size: number) {
    this.sessions = [{ handle: first, tail: Promise.resolve(), pending: 0 }];
    for (let i = 1; i < size; i++) this.sessions.push({ handle: this.open(), tail: Promise.resolve(), pending: 0 });
  }

  private open(): Handle {
    return this.p.C_OpenSession(this.slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  }

  run<T>(op: (session: Handle) => Promise<T> | T): Promise<T> {
    if (this.closed) return Promise.reject(new TokenError('Closed', 'The token has been closed.'));
    const s = this.sessions.reduce((a, b) => (b.pending < a.pending ? b : a));
    s.pending++;
    const result = s.tail.then(() => op(s.handle)).catch((e: unknown) => {
      if (ckrOf(e)) this.replace(s);
      throw e;
    });
    s.tail = result.then(() => undefined, () => undefined).finally(() => { s.pending--; });
    return result;
  }

  private replace(s: PooledSession): void {
    try { this.p.C_CloseSession(s.handle); } catch { /* already gone */ }
    s.handle = this.open();
  }

  /** Waits for every queued operation, then runs `last` on one session and closes them all. */
  async close(last: (session: Handle) => void): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.sessions.map((s) => s.tail));
    last(this.sessions[0].handle);
    for (const s of this.sessions) {
      try { this.p.C_CloseSession(s.handle); } catch { /* already gone */ }
    }
  }
}
