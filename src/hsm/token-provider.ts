/**
 * The platform's one PKCS#11 token, where every Managed HSM's keys live. It is opened on first use (a
 * platform without HSMs never loads a module), from one of two configurations:
 *
 * - a module of the operator's (`PGBYOK_PKCS11_MODULE`, `PGBYOK_PKCS11_TOKEN_LABEL`, and the PIN from
 *   `PGBYOK_PKCS11_PIN_FILE` at the first start): Thales Luna, Utimaco, YubiHSM 2, the CloudHSM client...;
 * - by default, a SoftHSM2 token of pgbyok's own under `$PGBYOK_HOME/hsm` (Debian's `softhsm2`), initialised at
 *   first use with random SO and user PINs.
 *
 * Either way the module path, the label and the PIN sealed by the barrier are kept in the `hsm_token` row; the
 * PIN is never written anywhere else. SoftHSM2 reads its configuration once per process (at C_Initialize), so
 * one process serves the tokens of one home.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Barrier } from '../barrier/barrier.js';
import type { Db } from '../store/db.js';
import { errors } from '../lib/errors.js';
import { openToken, TokenError, type Token } from './token.js';
import { initToken } from './token-session.js';
import { SOFTHSM_MODULE } from './softhsm.js';

export { SOFTHSM_MODULE };
const EMBEDDED_LABEL = 'pgbyok';
const PIN_AAD = 'hsm-token-pin';

export interface TokenProviderOptions {
  db: Db;
  barrier: Barrier;
  /** `$PGBYOK_HOME/hsm`: the embedded SoftHSM2 token's configuration and files. */
  dir: string;
  module?: string;
  label?: string;
  pinFile?: string;
  clock: { now(): number };
  /** Whether any key (or security domain) lives in the configured token: then it is never switched. */
  keysExist: () => boolean;
}

interface TokenRow { module_path: string; token_label: string; sealed_pin: Buffer }

export function createTokenProvider(o: TokenProviderOptions) {
  let opened: Promise<Token> | undefined;
  const row = () => o.db.prepare('SELECT module_path, token_label, sealed_pin FROM hsm_token WHERE id = 1').get() as TokenRow | undefined;
  const remember = (modulePath: string, label: string, pin: string) => o.db.prepare(
    'INSERT OR REPLACE INTO hsm_token (id, module_path, token_label, sealed_pin, created) VALUES (1, ?, ?, ?, ?)',
  ).run(modulePath, label, o.barrier.seal(Buffer.from(pin, 'utf8'), PIN_AAD), Math.floor(o.clock.now() / 1000));

  const softhsmConf = () => join(o.dir, 'softhsm2.conf');
  /** SoftHSM2 finds its tokens through SOFTHSM2_CONF, read at C_Initialize: set before the module loads. */
  const useEmbeddedConf = () => {
    const current = process.env.SOFTHSM2_CONF;
    if (current && current !== softhsmConf()) {
      throw errors.serviceUnavailable(`This process already uses the SoftHSM2 configuration ${current}; one process serves one home's token.`);
    }
    process.env.SOFTHSM2_CONF = softhsmConf();
  };

  /** Creates the embedded SoftHSM2 token (first use only). */
  const initEmbedded = (): { modulePath: string; label: string; pin: string } => {
    if (!existsSync(SOFTHSM_MODULE)) {
      throw errors.serviceUnavailable(`Managed HSMs need a PKCS#11 module: install SoftHSM2 (apt-get install softhsm2, which provides ${SOFTHSM_MODULE}) or set PGBYOK_PKCS11_MODULE, PGBYOK_PKCS11_TOKEN_LABEL and PGBYOK_PKCS11_PIN_FILE.`);
    }
    mkdirSync(join(o.dir, 'tokens'), { recursive: true, mode: 0o700 });
    writeFileSync(softhsmConf(), `directories.tokendir = ${join(o.dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`, { mode: 0o600 });
    const pin = randomBytes(18).toString('base64url');
    // The SO PIN serves once, to set the user PIN, and is not kept: nothing in pgbyok acts as the token's SO.
    const soPin = randomBytes(18).toString('base64url');
    initToken(SOFTHSM_MODULE, EMBEDDED_LABEL, soPin, pin);
    return { modulePath: SOFTHSM_MODULE, label: EMBEDDED_LABEL, pin };
  };

  const open = async (): Promise<Token> => {
    let known = row();
    if (o.module) {
      if (!o.label) throw errors.serviceUnavailable('PGBYOK_PKCS11_MODULE needs PGBYOK_PKCS11_TOKEN_LABEL too.');
      if (known && (known.module_path !== o.module || known.token_label !== o.label) && o.keysExist()) {
        throw errors.serviceUnavailable(`The managed HSMs' keys are in the token "${known.token_label}" of ${known.module_path}; pgbyok will not switch to "${o.label}" of ${o.module} while they exist (they would all be lost). Unset PGBYOK_PKCS11_MODULE, or purge the HSMs first.`);
      }
      if (!known || known.module_path !== o.module || known.token_label !== o.label) {
        if (!o.pinFile) throw errors.serviceUnavailable(`The PKCS#11 token ${o.label} of ${o.module} is not configured yet: give its PIN once with PGBYOK_PKCS11_PIN_FILE.`);
        remember(o.module, o.label, readFileSync(o.pinFile, 'utf8').trim());
        known = row();
      }
    } else if (!known) {
      useEmbeddedConf();
      const made = initEmbedded();
      remember(made.modulePath, made.label, made.pin);
      known = row();
    }
    if (known!.module_path === SOFTHSM_MODULE && !o.module) useEmbeddedConf();
    const pin = o.barrier.unseal(known!.sealed_pin, PIN_AAD);
    try {
      return openToken({ modulePath: known!.module_path, tokenLabel: known!.token_label, pin: pin.toString('utf8') });
    } catch (e) {
      if (e instanceof TokenError) throw errors.serviceUnavailable(`The Managed HSMs' PKCS#11 token cannot be opened: ${e.message}`);
      throw e;
    } finally {
      pin.fill(0);
    }
  };

  return {
    /** The token, opened on first call (a failed open is retried on the next call). */
    token(): Promise<Token> {
      if (!opened) opened = open().catch((e) => { opened = undefined; throw e; });
      return opened;
    },
    /** Whether a token has been configured (HSMs exist or were made). */
    configured: () => row() !== undefined,
    async close(): Promise<void> {
      const t = opened;
      opened = undefined;
      if (t) await (await t.catch(() => undefined))?.close();
    },
  };
}

export type TokenProvider = ReturnType<typeof createTokenProvider>;
