import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isHsmOrigin, parseKeyUri, wrapAlgorithm } from '../src/keyaccess/key-access.js';

test('a key URI names a Managed HSM by its host, one label under managedhsm.<domain>; the wrap algorithm follows from it', () => {
  const hsm = (uri: string) => isHsmOrigin(parseKeyUri(uri).origin, 'https://managedhsm.localhost');
  assert.equal(hsm('https://h1.managedhsm.localhost:8443/keys/kek'), true);
  assert.equal(hsm('https://h1.managedhsm.localhost/keys/kek/0123456789abcdef0123456789abcdef'), true);
  assert.equal(hsm('https://kv1.vault.localhost:8443/keys/kek'), false);
  assert.equal(hsm('https://a.b.managedhsm.localhost/keys/kek'), false, 'two labels name no HSM');
  assert.equal(hsm('https://managedhsm.localhost/keys/kek'), false, 'the resource host itself is no HSM');
  assert.equal(hsm('https://h1.managedhsm.localhost.evil.example/keys/kek'), false);
  assert.equal(isHsmOrigin('https://h1.managedhsm.azure.net', 'https://managedhsm.azure.net'), true);
  // A vault key keeps RSA-OAEP-256; an HSM's PKCS#11 module has only OAEP with SHA-1.
  assert.equal(wrapAlgorithm(false), 'RSA-OAEP-256');
  assert.equal(wrapAlgorithm(true), 'RSA-OAEP');
});
