/**
 * Key-bearing JSON bodies as bytes (src/lib/http-client.ts): what they encode and decode must be exactly
 * what Buffer's base64url and JSON.parse make of them, for every length a key can have.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { decodeBase64urlBytes, secretJsonBody, secretJsonField } from '../src/lib/http-client.js';
import { parseSecretJson, SECRET_VALUE } from '../src/vault/secret-body.js';

test('secretJsonBody is the JSON a client would send, for keys of every length', () => {
  for (let n = 0; n <= 130; n++) {
    const key = randomBytes(n);
    const body = secretJsonBody({ alg: 'RSA-OAEP-256' }, 'value', key);
    assert.deepEqual(JSON.parse(body.toString('utf8')), { alg: 'RSA-OAEP-256', value: key.toString('base64url') });
  }
  assert.deepEqual(JSON.parse(secretJsonBody({}, 'value', Buffer.from('hi')).toString()), { value: 'aGk' });
});

test('secretJsonField reads back the bytes of a field, whatever the spacing and order, and refuses what is not base64', () => {
  for (let n = 0; n <= 130; n++) {
    const key = randomBytes(n);
    const compact = Buffer.from(JSON.stringify({ kid: 'https://v/keys/k/1', value: key.toString('base64url') }));
    assert.deepEqual(secretJsonField(compact, 'value'), key);
    const spaced = Buffer.from(JSON.stringify({ value: key.toString('base64'), kid: 'x' }, null, 2));
    assert.deepEqual(secretJsonField(spaced, 'value'), key, 'standard, padded base64 too');
  }
  // A key named like the field inside another value is not the field.
  assert.deepEqual(secretJsonField(Buffer.from('{"kid":"\\"value\\"","value":"aGk"}'), 'value'), Buffer.from('hi'));
  assert.equal(secretJsonField(Buffer.from('{"kid":"x"}'), 'value'), undefined);
  assert.equal(secretJsonField(Buffer.from('{"value":"a*b"}'), 'value'), undefined);
  assert.equal(decodeBase64urlBytes(Buffer.from('a')), undefined, 'a lone sixth of a byte is malformed');
});

test('the crypto routes\' parser hands `value` over as bytes and the rest as JSON, and refuses what is not base64url', () => {
  const key = randomBytes(64);
  const parsed = parseSecretJson(Buffer.from(JSON.stringify({ alg: 'RSA-OAEP-256', value: key.toString('base64url') })))!;
  assert.equal(parsed.alg, 'RSA-OAEP-256');
  assert.deepEqual(parsed[SECRET_VALUE], key, 'the bytes');
  assert.notEqual(parsed.value, key.toString('base64url'), 'the string form is never made');
  assert.deepEqual(Object.keys(parsed).sort(), ['alg', 'value']);
  // A nested "value" before the top-level one is not taken for it: the top-level string is used as sent.
  const nested = parseSecretJson(Buffer.from('{"x":{"value":"AAAA"},"value":"aGk","alg":"RSA-OAEP-256"}'))!;
  assert.equal(nested[SECRET_VALUE], undefined);
  assert.equal(nested.value, 'aGk');
  assert.throws(() => parseSecretJson(Buffer.from('{"alg":"RSA-OAEP-256","value":"a+b/"}')), /base64url/);
  assert.throws(() => parseSecretJson(Buffer.from('{"alg":')), /not valid JSON/);
  assert.equal(parseSecretJson(Buffer.from('  ')), undefined);
});
