/**
 * Keys inside a PKCS#11 token (SoftHSM2 here): the only code that speaks PKCS#11, through the `pkcs11js`
 * binding; all cryptography happens in the module. Keys are named by a random 16-byte CKA_ID (hex here) and
 * looked up by CKA_ID + CKA_CLASS for every operation: object handles do not outlive a session's process.
 * What the module cannot do is refused with TokenError code 'AlgorithmNotSupportedByModule' (SoftHSM2 2.6.1
 * has no RSA-OAEP with SHA-256: docs/research/softhsm2-pkcs11.md), never done by hand.
 */
import { randomBytes } from 'node:crypto';
import { sigHash, type SignatureAlg } from '../vault/rsa.js';
import { P, SessionPool, TokenError, asTokenError, ckrOf, findSlot, loadModule, login, logout, type Handle } from './token-session.js';

export { TokenError, type TokenErrorCode } from './token-session.js';

export interface OpenTokenOptions { modulePath: string; tokenLabel: string; pin: string; sessions?: number }
export interface RsaPublicJwk { kty: 'RSA'; n: string; e: string }
export type RsaBits = 2048 | 3072 | 4096;
export type AesWrapAlg = 'A256KW' | 'CKM_AES_KEY_WRAP_PAD';

const MAX_RSA_BYTES = 512;
const OAEP_SHA1 = { mechanism: P.CKM_RSA_PKCS_OAEP, parameter: { type: P.CK_PARAMS_RSA_OAEP, hashAlg: P.CKM_SHA_1, mgf: P.CKG_MGF1_SHA1, source: 1 /* CKZ_DATA_SPECIFIED */ } };
const OAEP_SHA256 = { mechanism: P.CKM_RSA_PKCS_OAEP, parameter: { type: P.CK_PARAMS_RSA_OAEP, hashAlg: P.CKM_SHA256, mgf: P.CKG_MGF1_SHA256, source: 1 } };
/** The OAEP mechanism of an alg name: SHA-1 (RSA-OAEP) or SHA-256 (RSA-OAEP-256). */
function oaep(alg: string, verb: string) {
  if (alg === 'RSA-OAEP') return OAEP_SHA1;
  if (alg === 'RSA-OAEP-256') return OAEP_SHA256;
  throw new TokenError('BadParameter', `The token ${verb} with RSA-OAEP or RSA-OAEP-256; not ${String(alg)}.`);
}
/** Runs an OAEP *Init; a module without OAEP-SHA256 (SoftHSM2 2.6.1: CKR_ARGUMENTS_BAD) is 'AlgorithmNotSupportedByModule'. */
function oaepInit(alg: string, init: () => void): void {
  try {
    init();
  } catch (e) {
    const ckr = ckrOf(e);
    if (alg === 'RSA-OAEP-256' && (ckr === 'CKR_ARGUMENTS_BAD' || ckr === 'CKR_MECHANISM_PARAM_INVALID' || ckr === 'CKR_MECHANISM_INVALID')) {
      throw new TokenError('AlgorithmNotSupportedByModule', `This token's PKCS#11 module does not offer RSA-OAEP-256 (RSA-OAEP with SHA-256; it answers ${ckr}); use RSA-OAEP (SHA-1), or a module that offers it.`, ckr);
    }
    throw e;
  }
}
const PSS_HASH = { '256': [P.CKM_SHA256, P.CKG_MGF1_SHA256], '384': [P.CKM_SHA384, P.CKG_MGF1_SHA384], '512': [P.CKM_SHA512, P.CKG_MGF1_SHA512] } as const;

/** The mechanism of a digest signature: RS* as PKCS#1 v1.5 over DigestInfo || digest, PS* as PSS (salt = hash length). */
function signatureMechanism(alg: SignatureAlg, verb: string) {
  const h = /^(RS|PS)(256|384|512)$/.test(alg) ? sigHash(alg) : null;
  if (!h) throw new TokenError('BadParameter', `The token ${verb} with RS256/384/512 or PS256/384/512; not ${String(alg)}.`);
  const bits = alg.slice(2) as '256' | '384' | '512';
  const pss = alg.startsWith('PS');
  return {
    digestLength: h.len,
    mech: pss
      ? { mechanism: P.CKM_RSA_PKCS_PSS, parameter: { type: P.CK_PARAMS_RSA_PSS, hashAlg: PSS_HASH[bits][0], mgf: PSS_HASH[bits][1], saltLen: h.len } }
      : { mechanism: P.CKM_RSA_PKCS },
    input: (digest: Buffer) => (pss ? digest : Buffer.concat([h.digestInfo, digest])),
  };
}const WRAP_MECH: Record<AesWrapAlg, number> = { A256KW: P.CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_PAD: P.CKM_AES_KEY_WRAP_PAD };

const attr = (type: number, value: boolean | number | Buffer) => ({ type, value });
const sessionSecret = [attr(P.CKA_CLASS, P.CKO_SECRET_KEY), attr(P.CKA_KEY_TYPE, P.CKK_GENERIC_SECRET), attr(P.CKA_TOKEN, false),
  attr(P.CKA_EXTRACTABLE, true), attr(P.CKA_SENSITIVE, false)];
/**
 * A token private key: sensitive always (its value is never readable). `wrappable`: extractable, but only ever
 * wrapped by pgbyok under its HSM's security-domain key (a key backup); otherwise not extractable at all.
 */
const privateRsaTemplate = (id: Buffer, wrappable = false) => [attr(P.CKA_TOKEN, true), attr(P.CKA_ID, id), attr(P.CKA_PRIVATE, true),
  attr(P.CKA_SENSITIVE, true), attr(P.CKA_EXTRACTABLE, wrappable), attr(P.CKA_DECRYPT, true), attr(P.CKA_UNWRAP, true), attr(P.CKA_SIGN, true)];
const aesTemplate = (id: Buffer, wrappable = false) => [attr(P.CKA_CLASS, P.CKO_SECRET_KEY), attr(P.CKA_KEY_TYPE, P.CKK_AES),
  attr(P.CKA_TOKEN, true), attr(P.CKA_ID, id), attr(P.CKA_PRIVATE, true), attr(P.CKA_SENSITIVE, true), attr(P.CKA_EXTRACTABLE, wrappable),
  attr(P.CKA_ENCRYPT, true), attr(P.CKA_DECRYPT, true), attr(P.CKA_WRAP, true), attr(P.CKA_UNWRAP, true)];
const publicRsaTemplate = (id: Buffer) => [attr(P.CKA_TOKEN, true), attr(P.CKA_ID, id), attr(P.CKA_PRIVATE, false),
  attr(P.CKA_ENCRYPT, true), attr(P.CKA_VERIFY, true), attr(P.CKA_WRAP, true)];

function idBytes(id: string): Buffer {
  if (!/^[0-9a-f]{32}$/.test(id)) throw new TokenError('BadParameter', `A token key id is 32 lowercase hex digits; "${id}" is not.`);
  return Buffer.from(id, 'hex');
}

export class Token {
  private constructor(private readonly p: ReturnType<typeof loadModule>, private readonly pool: SessionPool, private readonly loginKey: string) {}

  static open(o: OpenTokenOptions): Token {
    const p = loadModule(o.modulePath);
    const slot = findSlot(p, o.modulePath, o.tokenLabel);
    const first = p.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
    const loginKey = `${o.modulePath}\0${slot.toString('hex')}`;
    try {
      login(p, loginKey, first, o.pin);
    } catch (e) {
      p.C_CloseSession(first);
      throw e;
    }
    return new Token(p, new SessionPool(p, slot, first, o.sessions ?? 2), loginKey);
  }

  private find(s: Handle, id: string, cls: number): Handle {
    const p = this.p;
    p.C_FindObjectsInit(s, [attr(P.CKA_ID, idBytes(id)), attr(P.CKA_CLASS, cls)]);
    let found: Handle[];
    try { found = p.C_FindObjects(s, 2); } finally { p.C_FindObjectsFinal(s); }
    if (found.length !== 1) {
      throw new TokenError(found.length ? 'DeviceError' : 'KeyNotFound', found.length ? `More than one object of that class has CKA_ID ${id}.` : `The token has no such key (CKA_ID ${id}).`);
    }
    return found[0];
  }

  private jwkOf(s: Handle, key: Handle): RsaPublicJwk {
    const [n, e] = this.p.C_GetAttributeValue(s, key, [{ type: P.CKA_MODULUS }, { type: P.CKA_PUBLIC_EXPONENT }]).map((a) => a.value);
    return { kty: 'RSA', n: n.toString('base64url'), e: e.toString('base64url') };
  }

  /** Runs `op` on a pooled session; PKCS#11 failures come out as TokenErrors naming `what`. */
  private async run<T>(what: string, op: (s: Handle) => Promise<T> | T, failure: 'DeviceError' | 'DecryptionFailed' = 'DeviceError'): Promise<T> {
    try {
      return await this.pool.run(op);
    } catch (e) {
      throw asTokenError(e, what, failure);
    }
  }

  async generateRsa(bits: RsaBits, o: { wrappable?: boolean } = {}): Promise<{ id: string; publicJwk: RsaPublicJwk }> {
    if (![2048, 3072, 4096].includes(bits)) throw new TokenError('BadParameter', `RSA keys are 2048, 3072 or 4096 bits; not ${bits}.`);
    const id = randomBytes(16);
    return this.run('RSA key generation', async (s) => {
      const pair = await this.p.C_GenerateKeyPairAsync(s, { mechanism: P.CKM_RSA_PKCS_KEY_PAIR_GEN },
        [...publicRsaTemplate(id), attr(P.CKA_MODULUS_BITS, bits), attr(P.CKA_PUBLIC_EXPONENT, Buffer.from([1, 0, 1]))], privateRsaTemplate(id, o.wrappable));
      return { id: id.toString('hex'), publicJwk: this.jwkOf(s, pair.publicKey) };
    });
  }

  async publicJwk(id: string): Promise<RsaPublicJwk> {
    return this.run('Reading a public key', (s) => this.jwkOf(s, this.find(s, id, P.CKO_PUBLIC_KEY)));
  }

  async generateAes256(o: { wrappable?: boolean } = {}): Promise<{ id: string }> {
    const id = randomBytes(16);
    return this.run('AES key generation', async (s) => {
      await this.p.C_GenerateKeyAsync(s, { mechanism: P.CKM_AES_KEY_GEN }, [...aesTemplate(id, o.wrappable), attr(P.CKA_VALUE_LEN, 32)]);
      return { id: id.toString('hex') };
    });
  }

  /**
   * An AES-256 token key from its value (a Managed HSM's security-domain key, made from the secret that its
   * download splits): sensitive and not extractable from then on. The caller wipes `value`.
   */
  async importAes256(value: Buffer): Promise<{ id: string }> {
    if (value.length !== 32) throw new TokenError('BadParameter', `An AES-256 key is 32 bytes; this one is ${value.length}.`);
    const id = randomBytes(16);
    return this.run('AES key import', (s) => {
      this.p.C_CreateObject(s, [...aesTemplate(id), attr(P.CKA_VALUE, value)]);
      return { id: id.toString('hex') };
    });
  }

  /** RSA-OAEP unwrap, in the token, of an AES-256 key into a new token key (a security-domain upload). */
  async unwrapAesWithRsa(rsaId: string, wrapped: Buffer): Promise<{ id: string }> {
    const id = randomBytes(16);
    return this.run('RSA-OAEP unwrapping of an AES key', async (s) => {
      await this.p.C_UnwrapKeyAsync(s, OAEP_SHA1, this.find(s, rsaId, P.CKO_PRIVATE_KEY), wrapped, aesTemplate(id));
      return { id: id.toString('hex') };
    }, 'DecryptionFailed');
  }

  /** An AES key's check value: the first 8 bytes of AES-256-GCM(key, 12 zero bytes IV, 16 zero bytes), base64url. */
  async keyCheckValue(aesId: string): Promise<string> {
    const { ciphertext } = await this.aesGcmEncrypt(aesId, Buffer.alloc(16), Buffer.alloc(12));
    return ciphertext.subarray(0, 8).toString('base64url');
  }

  /**
   * Wraps a wrappable token key (an RSA private key or an AES key) under an AES token key with
   * CKM_AES_KEY_WRAP_PAD: a Managed HSM key backup, under the HSM's security-domain key.
   */
  async wrapUnder(wrappingId: string, keyId: string, kind: 'rsa' | 'aes'): Promise<Buffer> {
    return this.run('Wrapping a key for backup', async (s) => {
      const key = this.find(s, keyId, kind === 'rsa' ? P.CKO_PRIVATE_KEY : P.CKO_SECRET_KEY);
      return this.p.C_WrapKeyAsync(s, { mechanism: P.CKM_AES_KEY_WRAP_PAD }, this.find(s, wrappingId, P.CKO_SECRET_KEY), key, Buffer.alloc(8192));
    });
  }

  /** The reverse of wrapUnder: a new wrappable token key (with its public half, for RSA). */
  async unwrapUnder(wrappingId: string, wrapped: Buffer, kind: 'rsa' | 'aes'): Promise<{ id: string; publicJwk?: RsaPublicJwk }> {
    const id = randomBytes(16);
    return this.run('Restoring a key from its backup', async (s) => {
      const unwrapping = this.find(s, wrappingId, P.CKO_SECRET_KEY);
      if (kind === 'aes') {
        await this.p.C_UnwrapKeyAsync(s, { mechanism: P.CKM_AES_KEY_WRAP_PAD }, unwrapping, wrapped, aesTemplate(id, true));
        return { id: id.toString('hex') };
      }
      const key = await this.p.C_UnwrapKeyAsync(s, { mechanism: P.CKM_AES_KEY_WRAP_PAD }, unwrapping, wrapped,
        [attr(P.CKA_CLASS, P.CKO_PRIVATE_KEY), attr(P.CKA_KEY_TYPE, P.CKK_RSA), ...privateRsaTemplate(id, true)]);
      return { id: id.toString('hex'), publicJwk: this.addPublicHalf(s, id, key) };
    }, 'DecryptionFailed');
  }

  /** Creates the public half of an unwrapped private key from its modulus and exponent. */
  private addPublicHalf(s: Handle, id: Buffer, privateKey: Handle): RsaPublicJwk {
    const publicJwk = this.jwkOf(s, privateKey);
    this.p.C_CreateObject(s, [attr(P.CKA_CLASS, P.CKO_PUBLIC_KEY), attr(P.CKA_KEY_TYPE, P.CKK_RSA), ...publicRsaTemplate(id),
      attr(P.CKA_MODULUS, Buffer.from(publicJwk.n, 'base64url')), attr(P.CKA_PUBLIC_EXPONENT, Buffer.from(publicJwk.e, 'base64url'))]);
    return publicJwk;
  }

  /** RSA-OAEP encryption with the token's public key object (a wrapKey done by the HSM). */
  async rsaEncrypt(id: string, alg: 'RSA-OAEP' | 'RSA-OAEP-256', data: Buffer): Promise<Buffer> {
    const mech = oaep(alg, 'encrypts');
    return this.run(`${alg} encryption`, (s) => {
      oaepInit(alg, () => this.p.C_EncryptInit(s, mech, this.find(s, id, P.CKO_PUBLIC_KEY)));
      return this.p.C_EncryptAsync(s, data, Buffer.alloc(MAX_RSA_BYTES));
    });
  }

  /** Verifies a digest signature with the token's public key object. */
  async rsaVerify(id: string, alg: SignatureAlg, digest: Buffer, signature: Buffer): Promise<boolean> {
    const sig = signatureMechanism(alg, 'verifies');
    if (digest.length !== sig.digestLength) return false;
    return this.run(`${alg} verification`, async (s) => {
      this.p.C_VerifyInit(s, sig.mech, this.find(s, id, P.CKO_PUBLIC_KEY));
      try {
        // On the thread pool, as every other operation that can fail on its input: SoftHSM2 runs on this process's
        // OpenSSL and leaves a failed verification's errors on the calling thread's queue, where Node's TLS would
        // take them for its own on the next socket read of the event loop (and drop that connection).
        return await this.p.C_VerifyAsync(s, sig.input(digest), signature);
      } catch (e) {
        if (ckrOf(e) === 'CKR_SIGNATURE_INVALID' || ckrOf(e) === 'CKR_SIGNATURE_LEN_RANGE') return false;
        throw e;
      }
    });
  }

  /**
   * RSA-OAEP (SHA-1) in the module. RSA-OAEP-256 is asked of the module too; a module without it (SoftHSM2
   * 2.6.1 answers CKR_ARGUMENTS_BAD) gives 'AlgorithmNotSupportedByModule'.
   */
  async rsaDecrypt(id: string, alg: 'RSA-OAEP' | 'RSA-OAEP-256', data: Buffer): Promise<Buffer> {
    const mech = oaep(alg, 'decrypts');
    return this.run(`${alg} decryption`, async (s) => {
      oaepInit(alg, () => this.p.C_DecryptInit(s, mech, this.find(s, id, P.CKO_PRIVATE_KEY)));
      return this.p.C_DecryptAsync(s, data, Buffer.alloc(MAX_RSA_BYTES));
    }, 'DecryptionFailed');
  }

  /** Signs a digest: RS* as PKCS#1 v1.5 over DigestInfo || digest (CKM_RSA_PKCS), PS* as CKM_RSA_PKCS_PSS (salt = hash length). */
  async rsaSign(id: string, alg: SignatureAlg, digest: Buffer): Promise<Buffer> {
    const sig = signatureMechanism(alg, 'signs');
    if (digest.length !== sig.digestLength) throw new TokenError('BadParameter', `${alg} signs a ${sig.digestLength}-byte digest; the value is ${digest.length} bytes.`);
    return this.run(`${alg} signing`, (s) => {
      this.p.C_SignInit(s, sig.mech, this.find(s, id, P.CKO_PRIVATE_KEY));
      return this.p.C_SignAsync(s, sig.input(digest), Buffer.alloc(MAX_RSA_BYTES));
    });
  }

  private gcm(iv: Buffer, aad: Buffer) {
    if (iv.length < 1) throw new TokenError('BadParameter', 'AES-GCM needs an IV.');
    return { mechanism: P.CKM_AES_GCM, parameter: { type: P.CK_PARAMS_AES_GCM_v240, iv, aad, ivBits: iv.length * 8, tagBits: 128 } };
  }

  async aesGcmEncrypt(id: string, plaintext: Buffer, iv: Buffer, aad: Buffer = Buffer.alloc(0)): Promise<{ ciphertext: Buffer; tag: Buffer }> {
    const mech = this.gcm(iv, aad);
    return this.run('AES-GCM encryption', async (s) => {
      this.p.C_EncryptInit(s, mech, this.find(s, id, P.CKO_SECRET_KEY));
      const out = await this.p.C_EncryptAsync(s, plaintext, Buffer.alloc(plaintext.length + 16));
      return { ciphertext: Buffer.from(out.subarray(0, out.length - 16)), tag: Buffer.from(out.subarray(out.length - 16)) };
    });
  }

  async aesGcmDecrypt(id: string, ciphertext: Buffer, iv: Buffer, aad: Buffer, tag: Buffer): Promise<Buffer> {
    const mech = this.gcm(iv, aad);
    if (tag.length !== 16) throw new TokenError('BadParameter', `The AES-GCM tag is 16 bytes; this one is ${tag.length}.`);
    return this.run('AES-GCM decryption', (s) => {
      this.p.C_DecryptInit(s, mech, this.find(s, id, P.CKO_SECRET_KEY));
      return this.p.C_DecryptAsync(s, Buffer.concat([ciphertext, tag]), Buffer.alloc(ciphertext.length + 16));
    }, 'DecryptionFailed');
  }

  /** Wraps client-given key bytes with a token AES key (RFC 3394 for A256KW, RFC 5649 for CKM_AES_KEY_WRAP_PAD). */
  async aesWrap(id: string, alg: AesWrapAlg, keyBytes: Buffer): Promise<Buffer> {
    const mechanism = WRAP_MECH[alg];
    if (mechanism === undefined) throw new TokenError('BadParameter', `The token wraps with A256KW or CKM_AES_KEY_WRAP_PAD; not ${String(alg)}.`);
    if (keyBytes.length % 8 !== 0 || keyBytes.length < (alg === 'A256KW' ? 16 : 8)) {
      throw new TokenError('BadParameter', alg === 'A256KW'
        ? `A256KW wraps a multiple of 8 bytes, at least 16; the key is ${keyBytes.length} bytes.`
        : `This token's module zero-pads ${alg} wraps of lengths that are not a multiple of 8 (not RFC 5649), so it wraps only multiples of 8 bytes; the key is ${keyBytes.length} bytes.`);
    }
    return this.run(`${alg} wrapping`, async (s) => {
      const wrapping = this.find(s, id, P.CKO_SECRET_KEY);
      const tmp = this.p.C_CreateObject(s, [...sessionSecret, attr(P.CKA_VALUE, keyBytes)]);
      try {
        return await this.p.C_WrapKeyAsync(s, { mechanism }, wrapping, tmp, Buffer.alloc(keyBytes.length + 16));
      } finally {
        this.p.C_DestroyObject(s, tmp);
      }
    });
  }

  async aesUnwrap(id: string, alg: AesWrapAlg, wrapped: Buffer): Promise<Buffer> {
    const mechanism = WRAP_MECH[alg];
    if (mechanism === undefined) throw new TokenError('BadParameter', `The token unwraps with A256KW or CKM_AES_KEY_WRAP_PAD; not ${String(alg)}.`);
    return this.run(`${alg} unwrapping`, async (s) => {
      const tmp = await this.p.C_UnwrapKeyAsync(s, { mechanism }, this.find(s, id, P.CKO_SECRET_KEY), wrapped, sessionSecret);
      try {
        return this.p.C_GetAttributeValue(s, tmp, [{ type: P.CKA_VALUE }])[0].value;
      } finally {
        this.p.C_DestroyObject(s, tmp);
      }
    }, 'DecryptionFailed');
  }

  async random(count: number): Promise<Buffer> {
    if (!Number.isInteger(count) || count < 1 || count > 4096) throw new TokenError('BadParameter', `Random bytes come 1 to 4096 at a time; not ${count}.`);
    return this.run('C_GenerateRandom', (s) => this.p.C_GenerateRandom(s, Buffer.alloc(count)));
  }

  /** Destroys every object with this CKA_ID (a key pair's two halves); KeyNotFound when there is none. */
  async destroy(id: string): Promise<number> {
    const ckaId = idBytes(id);
    return this.run('Destroying a key', (s) => {
      this.p.C_FindObjectsInit(s, [attr(P.CKA_ID, ckaId)]);
      let found: Handle[];
      try { found = this.p.C_FindObjects(s, 16); } finally { this.p.C_FindObjectsFinal(s); }
      if (!found.length) throw new TokenError('KeyNotFound', `The token has no such key (CKA_ID ${id}).`);
      for (const h of found) this.p.C_DestroyObject(s, h);
      return found.length;
    });
  }

  /**
   * Imports an RSA private key from a BYOK blob: RSA-OAEP-SHA1(KEK public key, AES key) || AES-KWP(AES key, PKCS#8).
   * The module has no CKM_RSA_AES_KEY_WRAP, so: C_UnwrapKey(CKM_RSA_PKCS_OAEP) into a session AES key (sensitive,
   * not extractable), C_UnwrapKey(CKM_AES_KEY_WRAP_PAD) into the token key, and the session key destroyed.
   */
  async importByok(kekId: string, blob: Buffer, o: { wrappable?: boolean } = {}): Promise<{ id: string; publicJwk: RsaPublicJwk }> {
    const id = randomBytes(16);
    return this.run('BYOK import', async (s) => {
      const kek = this.find(s, kekId, P.CKO_PRIVATE_KEY);
      const k = this.p.C_GetAttributeValue(s, kek, [{ type: P.CKA_MODULUS }])[0].value.length;
      if (blob.length <= k + 8) throw new TokenError('BadParameter', `A BYOK blob for this ${k * 8}-bit KEK is longer than ${k + 8} bytes; this one is ${blob.length}.`);
      const tmp = await this.p.C_UnwrapKeyAsync(s, OAEP_SHA1, kek, blob.subarray(0, k), [attr(P.CKA_CLASS, P.CKO_SECRET_KEY),
        attr(P.CKA_KEY_TYPE, P.CKK_AES), attr(P.CKA_TOKEN, false), attr(P.CKA_SENSITIVE, true), attr(P.CKA_EXTRACTABLE, false), attr(P.CKA_UNWRAP, true)]);
      let key: Handle;
      try {
        key = await this.p.C_UnwrapKeyAsync(s, { mechanism: P.CKM_AES_KEY_WRAP_PAD }, tmp, blob.subarray(k),
          [attr(P.CKA_CLASS, P.CKO_PRIVATE_KEY), attr(P.CKA_KEY_TYPE, P.CKK_RSA), ...privateRsaTemplate(id, o.wrappable)]);
      } finally {
        this.p.C_DestroyObject(s, tmp);
      }
      return { id: id.toString('hex'), publicJwk: this.addPublicHalf(s, id, key) };
    }, 'DecryptionFailed');
  }

  /** Finishes the queued operations, logs out if this was the process's last opener of the token, closes the sessions. */
  close(): Promise<void> {
    return this.pool.close((s) => logout(this.p, this.loginKey, s));
  }
}

/** Opens a token by label and logs in (see Token). */
export function openToken(o: OpenTokenOptions): Token {
  return Token.open(o);
}
