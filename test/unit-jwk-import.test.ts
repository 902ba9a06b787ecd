/**
 * JWK import validation: every malformed or mismatched component of an RSA private JWK is a 400 BadParameter
 * that names the component, never an exception from deeper down (issue 9, part 7: a RangeError in the PSS
 * encoder used to answer 500).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError } from '../src/lib/errors.js';
import { generateRsaKeySync } from '../src/lib/rsa-keygen.js';
import * as rsa from '../src/vault/rsa.js';

const good = generateRsaKeySync(2048).export({ format: 'jwk' }) as Record<string, string>;
const other = generateRsaKeySync(2048).export({ format: 'jwk' }) as Record<string, string>;
const small = generateRsaKeySync(1024).export({ format: 'jwk' }) as Record<string, string>;

function refused(jwk: Record<string, unknown>, component: string, what: string) {
  assert.throws(() => rsa.privateFromJwk(jwk), (e: unknown) => {
    assert.ok(e instanceof ApiError, `${what}: an ApiError, not ${String(e)}`);
    assert.equal(e.status, 400, what);
    assert.equal(e.code, 'BadParameter', what);
    assert.ok(e.message.includes(`'${component}'`), `${what}: the message names '${component}': ${e.message}`);
    return true;
  });
}

test('a valid JWK imports', () => {
  assert.equal(rsa.publicParts(rsa.privateFromJwk(good)).n, good.n);
});

test('each component that is not a base64url integer is refused by name', () => {
  for (const part of rsa.JWK_PRIVATE_PARTS) {
    for (const [what, value] of [['empty', ''], ['not base64url', 'ab+/'], ['padding', 'AQAB='], ['a number', 65537], ['null', null], ['zero', 'AA'], ['one', 'AQ'], ['impossible length', 'A']] as const) {
      refused({ ...good, [part]: value }, part, `${part} ${what}`);
    }
  }
});

test('a modulus of the wrong size and components from another key are refused by name', () => {
  refused(small, 'n', '1024-bit key');
  refused({ ...good, n: 'AQAB' }, 'n', 'tiny n');
  refused({ ...good, n: other.n }, 'n', "another key's n");
  refused({ ...good, e: 'AQAA' }, 'e', 'even e');
  refused({ ...good, e: Buffer.alloc(9, 0xff).toString('base64url') }, 'e', '72-bit e');
  refused({ ...good, d: 'AQAB' }, 'd', 'd = 65537');
  refused({ ...good, d: other.d }, 'd', "another key's d");
  refused({ ...good, dp: other.dp }, 'dp', "another key's dp");
  refused({ ...good, dq: other.dq }, 'dq', "another key's dq");
  refused({ ...good, qi: other.qi }, 'qi', "another key's qi");
  refused({ ...good, p: good.q, q: good.p }, 'dp', 'p and q swapped');
});

test('PSS signing with a modulus too small for the hash is a 400, not a RangeError', () => {
  const tiny = generateRsaKeySync(512);
  assert.throws(() => rsa.sign(tiny, 'PS512', Buffer.alloc(64)), (e: unknown) => e instanceof ApiError && e.status === 400);
});
