import { errors } from '../lib/errors.js';
import { checkKeyOps, shown, type ImportKeyInput } from './key-input.js';
import * as rsa from './rsa.js';
import type { KeyOp } from './vault.types.js';

/**
 * The checks on a key import request that come before its key material is read: a software key (no
 * `Hsm`), an RSA JWK with every private component present, and `key_ops`, if given, a short list of known
 * operation names. Whether the components are sound integers that fit together is `rsa.privateFromJwk`'s
 * job, which the key service calls once the request's attributes have passed too.
 */
export function checkJwkImport(input: ImportKeyInput): { jwk: Record<string, unknown>; keyOps: KeyOp[] } {
  if (input.Hsm) throw errors.badParameter('HSM-protected import (Hsm: true) is not available: pgbyok vaults keep keys in software.');
  const jwk = input.key ?? {};
  if (jwk.kty !== 'RSA') throw errors.badParameter(`Key type ${shown(jwk.kty)} cannot be imported; pgbyok vaults hold RSA keys.`);
  for (const f of rsa.JWK_PRIVATE_PARTS) {
    if (jwk[f] === undefined) throw errors.badParameter(`The JWK is missing its private component '${f}'.`);
  }
  const ops = jwk.key_ops;
  if (ops !== undefined && (!Array.isArray(ops) || ops.length > 16 || !ops.every((o) => typeof o === 'string'))) {
    throw errors.badParameter('The JWK component \'key_ops\' must be a list of operation names.');
  }
  return { jwk, keyOps: checkKeyOps(ops as string[] | undefined) };
}
