/**
 * `pgbyok hsm ...` and the key commands with --hsm-name, through bin/pgbyok against a real `pgbyok up`: a
 * managed HSM is created NotActivated and refuses keys until its security domain is downloaded (sealed to
 * three openssl certificates); local role assignments by role name and principal name; RSA-HSM and oct-HSM
 * keys; the security domain uploaded into a second HSM with 2 of the 3 private keys (not with 1), where the
 * first HSM's key backup restores; soft-delete, purge refused under purge protection, recover. Skips (saying
 * so) where SoftHSM2 is not installed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPgbyok, vaultName, type Pgbyok } from './harness.js';
import { makeByok } from '../src/vault/byok.js';

const skip = existsSync('/usr/lib/softhsm/libsofthsm2.so') ? false : 'SoftHSM2 is not installed (apt-get install softhsm2)';
const CRYPTO_USER = '21dbd100-6940-42c2-9190-5d6cb909625b';
const ADMINISTRATOR = 'a290e904-7015-4bba-90c8-60543313cdb4';

let p: Pgbyok;
let dir = '';
const hsmA = vaultName('hsma');
const hsmB = vaultName('hsmb');
const file = (name: string) => join(dir, name);
const certs = () => [1, 2, 3].map((i) => file(`sd${i}.cer`));
/** Runs the CLI expecting a refusal: the exit status and the one-line message. */
const refused = (args: string[]) => {
  const r = p.cliRaw(args);
  assert.notEqual(r.status, 0, `pgbyok ${args.join(' ')} should have failed: ${r.stdout}`);
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  return r.stderr;
};
const activation = (name: string) => p.cli('hsm', 'show', '--name', name).properties.securityDomainProperties.activationStatus;

before(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'pgbyok-cli-sd-'));
  for (const i of [1, 2, 3]) {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', file(`sd${i}.key`), '-out', file(`sd${i}.cer`), '-subj', `/CN=sd${i}`, '-days', '2'], { stdio: 'pipe' });
  }
  p = await startPgbyok();
});
after(async () => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  await p?.stop();
});

test('hsm create: NotActivated, purge protection on; key create --hsm-name is refused until security-domain download activates it', { skip }, () => {
  const made = p.cli('hsm', 'create', '--name', hsmA, '--administrators', p.admin.objectId, '--retention-days', '7');
  assert.equal(made.type, 'Microsoft.KeyVault/managedHSMs');
  assert.equal(made.resourceGroup, 'pgbyok-eastus');
  assert.equal(made.properties.enablePurgeProtection, true);
  assert.deepEqual(made.properties.initialAdminObjectIds, [p.admin.objectId]);
  assert.match(made.properties.hsmUri, new RegExp(`^https://${hsmA}\\.managedhsm\\.localhost:\\d+/$`));
  assert.equal(activation(hsmA), 'NotActivated');
  assert.ok(p.cli('hsm', 'list').some((h: any) => h.name === hsmA));

  const early = refused(['key', 'create', '--hsm-name', hsmA, '--name', 'k1']);
  assert.match(early, /HsmNotActivated/);
  assert.match(early, /security domain/);

  writeFileSync(file('taken.json'), 'mine');
  assert.match(refused(['hsm', 'security-domain', 'download', '--hsm-name', hsmA, '--sd-wrapping-keys', ...certs(), '--sd-quorum', '2', '--security-domain-file', file('taken.json')]), /already exists/);
  assert.equal(readFileSync(file('taken.json'), 'utf8'), 'mine', 'not overwritten');
  assert.equal(activation(hsmA), 'NotActivated', 'nothing was asked of the HSM');

  const status = p.cli('hsm', 'security-domain', 'download', '--hsm-name', hsmA, '--sd-wrapping-keys', ...certs(), '--sd-quorum', '2', '--security-domain-file', file('sd.json'));
  assert.equal(status.status, 'Success');
  assert.equal(statSync(file('sd.json')).mode & 0o777, 0o600);
  const sd = JSON.parse(readFileSync(file('sd.json'), 'utf8'));
  assert.equal(sd.SharedKeys.required, 2);
  assert.equal(sd.SharedKeys.enc_shares.length, 3);
  assert.equal(activation(hsmA), 'Active');
});

test('role assignments by role name and principal name; RSA-HSM and oct-HSM keys; deleting the role stops key use; the built-in roles', { skip }, () => {
  // The administrator manages roles but uses no keys until it holds a crypto role, as in Managed HSM.
  assert.match(refused(['key', 'create', '--hsm-name', hsmA, '--name', 'k1']), /AccessDenied/);
  const grant = p.cli('hsm', 'role', 'assignment', 'create', '--hsm-name', hsmA, '--role', 'Managed HSM Crypto User', '--assignee', 'pgbyok-admin');
  assert.equal(grant.properties.principalId, p.admin.objectId, 'the name resolved to the object id');
  assert.equal(grant.properties.scope, '/');
  assert.ok(grant.properties.roleDefinitionId.endsWith(CRYPTO_USER));

  assert.equal(p.cli('key', 'create', '--hsm-name', hsmA, '--name', 'k1').key.kty, 'RSA-HSM', 'the default key type in an HSM');
  const k1 = p.cli('key', 'show', '--hsm-name', hsmA, '--name', 'k1');
  assert.equal(k1.key.kty, 'RSA-HSM');
  assert.ok(k1.key.kid.startsWith(`https://${hsmA}.managedhsm.localhost:`));
  const wrapped = p.cli('key', 'wrap', '--hsm-name', hsmA, '--name', 'k1', '--value', Buffer.from('a data key').toString('base64'));
  assert.equal(wrapped.algorithm, 'RSA-OAEP');
  assert.equal(Buffer.from(p.cli('key', 'unwrap', '--hsm-name', hsmA, '--name', 'k1', '--value', wrapped.result).result, 'base64').toString(), 'a data key');
  assert.equal(p.cli('key', 'create', '--hsm-name', hsmA, '--name', 'a1', '--kty', 'oct-HSM').key.kty, 'oct-HSM');
  const sealed = p.cli('key', 'encrypt', '--hsm-name', hsmA, '--name', 'a1', '--algorithm', 'A256GCM', '--value', Buffer.from('hello hsm').toString('base64'));
  const opened = p.cli('key', 'decrypt', '--hsm-name', hsmA, '--name', 'a1', '--algorithm', 'A256GCM', '--value', sealed.result, '--iv', sealed.iv, '--tag', sealed.tag);
  assert.equal(Buffer.from(opened.result, 'base64').toString(), 'hello hsm');
  assert.deepEqual(p.cli('key', 'list', '--hsm-name', hsmA).map((k: any) => k.kid.split('/').pop()).sort(), ['a1', 'k1']);

  const mine = p.cli('hsm', 'role', 'assignment', 'list', '--hsm-name', hsmA, '--assignee', p.admin.objectId);
  assert.deepEqual(mine.map((a: any) => a.properties.roleDefinitionId.split('/').pop()).sort(), [ADMINISTRATOR, CRYPTO_USER].sort());
  const one = p.cli('hsm', 'role', 'assignment', 'create', '--hsm-name', hsmA, '--role', 'Managed HSM Crypto Auditor', '--assignee', p.admin.clientId, '--scope', '/keys/k1');
  assert.equal(one.properties.principalId, p.admin.objectId, 'a client id resolves too');
  assert.deepEqual(p.cli('hsm', 'role', 'assignment', 'list', '--hsm-name', hsmA, '--scope', '/keys/k1').map((a: any) => a.name), [one.name]);
  assert.equal(p.cli('hsm', 'role', 'assignment', 'delete', '--hsm-name', hsmA, '--name', one.name, '--scope', '/keys/k1')[0].name, one.name);

  const gone = p.cli('hsm', 'role', 'assignment', 'delete', '--hsm-name', hsmA, '--assignee', 'pgbyok-admin', '--role', 'Managed HSM Crypto User');
  assert.deepEqual(gone.map((a: any) => a.name), [grant.name]);
  assert.match(refused(['key', 'show', '--hsm-name', hsmA, '--name', 'k1']), /AccessDenied/);
  assert.match(refused(['hsm', 'role', 'assignment', 'delete', '--hsm-name', hsmA, '--assignee', 'pgbyok-admin', '--role', 'Managed HSM Crypto User']), /No role assignment/);
  assert.match(refused(['hsm', 'role', 'assignment', 'create', '--hsm-name', hsmA, '--role', 'Managed HSM Nobody', '--assignee', 'pgbyok-admin']), /has no role 'Managed HSM Nobody'/);
  p.cli('hsm', 'role', 'assignment', 'create', '--hsm-name', hsmA, '--role', CRYPTO_USER, '--assignee-object-id', p.admin.objectId);

  const roles = p.cli('hsm', 'role', 'definition', 'list', '--hsm-name', hsmA).map((d: any) => d.properties.roleName);
  for (const r of ['Managed HSM Administrator', 'Managed HSM Crypto Officer', 'Managed HSM Crypto User', 'Managed HSM Crypto Service Encryption User', 'Managed HSM Crypto Auditor', 'Managed HSM Backup']) assert.ok(roles.includes(r), r);
});

test('security-domain upload recovers the domain into a second HSM with 2 of the 3 private keys, not with 1; the first HSM\'s key backup restores there', { skip }, () => {
  p.cli('key', 'backup', '--hsm-name', hsmA, '--name', 'k1', '--file', file('k1.backup'));
  const n = p.cli('key', 'show', '--hsm-name', hsmA, '--name', 'k1').key.n;
  p.cli('hsm', 'create', '--name', hsmB, '--administrators', 'pgbyok-admin');
  assert.equal(activation(hsmB), 'NotActivated');
  const upload = (...keys: string[]) => ['hsm', 'security-domain', 'upload', '--hsm-name', hsmB, '--sd-file', file('sd.json'), '--sd-wrapping-keys', ...keys];

  assert.match(refused(upload(file('sd2.key'))), /needs 2 of its 3 private keys; 1 was given/);
  assert.match(refused(upload(file('sd2.key'), file('sd2.key'))), /1 was given/, 'the same key twice is one key');
  assert.equal(activation(hsmB), 'NotActivated');

  p.cli('hsm', 'security-domain', 'init-recovery', '--hsm-name', hsmB, '--sd-exchange-key', file('exchange.json'));
  assert.equal(p.cli(...upload(file('sd1.key'), file('sd3.key')), '--sd-exchange-key', file('exchange.json')).status, 'Success');
  assert.equal(activation(hsmB), 'Active');

  p.cli('hsm', 'role', 'assignment', 'create', '--hsm-name', hsmB, '--role', 'Managed HSM Crypto User', '--assignee', p.admin.objectId);
  const restored = p.cli('key', 'restore', '--hsm-name', hsmB, '--file', file('k1.backup'));
  assert.equal(restored.key.n, n, 'the same key, in the HSM that holds the same security domain');
});

test('hsm delete, list-deleted, purge refused under purge protection (the platform\'s error, non-zero), recover; without protection purge works', { skip }, () => {
  const deleted = p.cli('hsm', 'delete', '--name', hsmB);
  assert.equal(deleted.properties.purgeProtectionEnabled, true);
  const listed = p.cli('hsm', 'list-deleted').find((h: any) => h.name === hsmB);
  assert.ok(listed.properties.scheduledPurgeDate);
  assert.match(refused(['key', 'show', '--hsm-name', hsmB, '--name', 'k1']), /ManagedHsmNotFound/);
  assert.match(refused(['hsm', 'purge', '--name', hsmB]), /\(PurgeProtectionEnabled\) .*purge protection/);
  const back = p.cli('hsm', 'recover', '--name', hsmB);
  assert.equal(back.resourceGroup, 'pgbyok-eastus');
  assert.equal(back.properties.securityDomainProperties.activationStatus, 'Active');
  assert.ok(!p.cli('hsm', 'list-deleted').some((h: any) => h.name === hsmB));
  assert.equal(p.cli('key', 'show', '--hsm-name', hsmB, '--name', 'k1').key.kty, 'RSA-HSM', 'its keys came back with it');

  const plain = vaultName('hsmc');
  assert.equal(p.cli('hsm', 'create', '--name', plain, '--administrators', p.admin.objectId, '--enable-purge-protection', 'false').properties.enablePurgeProtection, false);
  p.cli('hsm', 'delete', '--name', plain);
  p.cli('hsm', 'purge', '--name', plain);
  assert.ok(!p.cli('hsm', 'list-deleted').some((h: any) => h.name === plain));
  assert.match(refused(['hsm', 'show', '--name', plain]), /ResourceNotFound/);
});

test('key import --byok-file: a key wrapped outside to a key-exchange key made with --ops import lands in the HSM, and in a vault', { skip }, () => {
  const mine = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const n = (mine.export({ format: 'jwk' }) as { n: string }).n;
  const vault = p.cli('vault', 'create', '--name', vaultName('byok'), '--location', 'eastus').name;
  for (const where of [['--hsm-name', hsmA], ['--vault-name', vault]]) {
    const kek = p.cli('key', 'create', ...where, '--name', 'kek', '--ops', 'import').key;
    assert.deepEqual(kek.key_ops, ['import']);
    writeFileSync(file('mine.byok'), makeByok({ kid: kek.kid, key: { kty: 'RSA', n: kek.n, e: kek.e } }, mine));
    const imported = p.cli('key', 'import', ...where, '--name', 'mine', '--byok-file', file('mine.byok'));
    assert.equal(imported.key.n, n, `${where[0]}: the key that was wrapped`);
    assert.match(refused(['key', 'wrap', ...where, '--name', 'kek', '--value', Buffer.from('x'.repeat(32)).toString('base64')]), /key_ops/);
  }
});
