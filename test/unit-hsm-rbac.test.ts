import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDb } from '../src/store/db.js';
import { ApiError } from '../src/lib/errors.js';
import { actionMatches } from '../src/identity/role-definitions.js';
import { createHsmRbacRepo } from '../src/hsm/hsm-rbac.repo.js';
import {
  BUILT_IN_HSM_ROLES, HSM_DATA_ACTIONS, createLocalRbac, normalizeScope, parseRoleDefinitionId, roleAssignmentWire, roleDefinitionWire,
} from '../src/hsm/local-rbac.js';


const ADMIN = 'a290e904-7015-4bba-90c8-60543313cdb4';
const CRYPTO_USER = '21dbd100-6940-42c2-9190-5d6cb909625b';
const SERVICE_ENCRYPTION = '33413926-3206-4cdd-b39a-83574fe37a17';
const UNWRAP = 'Microsoft.KeyVault/managedHsm/keys/unwrap/action';

const opened: { close(): void; dir: string }[] = [];
after(() => {
  for (const o of opened) {
    o.close();
    rmSync(o.dir, { recursive: true, force: true });
  }
});

function setup() {
  // The real schema (every migration), in a database file of its own; two HSM rows (no tenant needed here).
  const dir = mkdtempSync(join(tmpdir(), 'pgbyok-rbac-'));
  const db = openDb(join(dir, 'test.db'));
  opened.push({ close: () => db.close(), dir });
  db.pragma('foreign_keys = OFF');
  const hsm = { id: randomUUID(), name: 'hsm1' };
  const other = { id: randomUUID(), name: 'hsm2' };
  const insert = db.prepare(`INSERT INTO vaults (id, tenant_id, name, location, port, retention_days, purge_protection, public_network_access,
    default_action, bypass, ip_rules, created, updated, kind) VALUES (?, 't', ?, 'eastus', ?, 90, 1, 'Enabled', 'Allow', 'AzureServices', '[]', 0, 0, 'managedHsm')`);
  insert.run(hsm.id, hsm.name, -1);
  insert.run(other.id, other.name, -2);
  db.pragma('foreign_keys = ON');
  const rbac = createLocalRbac(createHsmRbacRepo(db), { now: () => Date.parse('2031-01-01T00:00:00Z') });
  return { db, hsm, other, rbac };
}

/** Runs `fn`, which must throw an ApiError, and answers it. */
function apiError(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ApiError, `not an ApiError: ${String(e)}`);
    return e;
  }
  assert.fail('no error thrown');
}

test('built-in roles: Azure names, GUIDs and wire shape; every data action they grant is a known one', () => {
  const byName = Object.fromEntries(BUILT_IN_HSM_ROLES.map((d) => [d.roleName, d.name]));
  assert.deepEqual({
    'Managed HSM Administrator': byName['Managed HSM Administrator'],
    'Managed HSM Crypto Officer': byName['Managed HSM Crypto Officer'],
    'Managed HSM Crypto User': byName['Managed HSM Crypto User'],
    'Managed HSM Crypto Service Encryption User': byName['Managed HSM Crypto Service Encryption User'],
    'Managed HSM Crypto Auditor': byName['Managed HSM Crypto Auditor'],
    'Managed HSM Backup': byName['Managed HSM Backup'],
    'Managed HSM Policy Administrator': byName['Managed HSM Policy Administrator'],
    'Managed HSM Restore': byName['Managed HSM Restore'],
  }, {
    'Managed HSM Administrator': ADMIN,
    'Managed HSM Crypto Officer': '515eb02d-2335-4d2d-92f2-b1cbdf9c3778',
    'Managed HSM Crypto User': CRYPTO_USER,
    'Managed HSM Crypto Service Encryption User': SERVICE_ENCRYPTION,
    'Managed HSM Crypto Auditor': '2c18b078-7c48-4d3a-af88-5a3a1b3f82b3',
    'Managed HSM Backup': '7b127d3c-77bd-4e3e-bbe0-dbb8971fa7f8',
    'Managed HSM Policy Administrator': '4bd23610-cdcf-4971-bdee-bdc562cc28e4',
    'Managed HSM Restore': '6efe6056-5259-49d2-8b3d-d3d73544b20b',
  });
  for (const d of BUILT_IN_HSM_ROLES) {
    for (const p of d.permissions.flatMap((x) => x.dataActions)) {
      assert.ok(HSM_DATA_ACTIONS.some((x) => actionMatches(p, x)), `${d.roleName}: ${p} names no data action`);
    }
  }
  const sev = BUILT_IN_HSM_ROLES.find((d) => d.name === SERVICE_ENCRYPTION)!;
  assert.deepEqual(roleDefinitionWire(sev), {
    id: `/Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/${SERVICE_ENCRYPTION}`,
    name: SERVICE_ENCRYPTION,
    type: 'Microsoft.Authorization/roleDefinitions',
    properties: {
      roleName: 'Managed HSM Crypto Service Encryption User',
      description: sev.description,
      type: 'AKVBuiltInRole',
      permissions: [{
        actions: [], notActions: [], notDataActions: [],
        dataActions: ['Microsoft.KeyVault/managedHsm/keys/read/action', 'Microsoft.KeyVault/managedHsm/keys/wrap/action', UNWRAP],
      }],
      assignableScopes: ['/'],
    },
  });
  const { hsm, rbac } = setup();
  assert.equal(rbac.definitions.list(hsm).length, BUILT_IN_HSM_ROLES.length);
  assert.equal(rbac.definitions.get(hsm, CRYPTO_USER.toUpperCase()).roleName, 'Managed HSM Crypto User');
});

test('Crypto Service Encryption User at /keys or / may unwrap /keys/k1, not sign it nor create keys; /keys/k2 does not cover k1', () => {
  const { hsm, other, rbac } = setup();
  const [atKeys, atRoot, atK2] = [randomUUID(), randomUUID(), randomUUID()];
  const sign = 'Microsoft.KeyVault/managedHsm/keys/sign/action' as const;
  const create = 'Microsoft.KeyVault/managedHsm/keys/create' as const;

  assert.equal(rbac.decide(hsm, atKeys, UNWRAP, '/keys/k1')?.status, 403, 'no assignment yet');
  const a = rbac.assignments.create(hsm, randomUUID(), { scope: '/keys', roleDefinitionId: `/Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/${SERVICE_ENCRYPTION}`, principalId: atKeys });
  rbac.assignments.create(hsm, randomUUID(), { scope: '', roleDefinitionId: SERVICE_ENCRYPTION, principalId: atRoot });
  rbac.assignments.create(hsm, randomUUID(), { scope: 'keys/k2', roleDefinitionId: SERVICE_ENCRYPTION, principalId: atK2 });

  for (const p of [atKeys, atRoot]) {
    assert.equal(rbac.decide(hsm, p, UNWRAP, '/keys/k1'), undefined);
    assert.equal(rbac.decide(hsm, p, UNWRAP, '/KEYS/K1'), undefined, 'scopes compare case-insensitively');
    assert.equal(rbac.decide(hsm, p.toUpperCase(), UNWRAP, '/keys/k1'), undefined, 'principal ids too');
    assert.equal(rbac.decide(hsm, p, sign, '/keys/k1')?.status, 403);
    assert.equal(rbac.decide(hsm, p, create, '/keys')?.status, 403);
    assert.equal(rbac.decide(other, p, UNWRAP, '/keys/k1')?.status, 403, 'another HSM');
  }
  assert.equal(rbac.decide(hsm, atKeys, UNWRAP, '/')?.status, 403, '/keys does not contain /');
  assert.equal(rbac.decide(hsm, atK2, UNWRAP, '/keys/k2'), undefined);
  const e = rbac.decide(hsm, atK2, UNWRAP, '/keys/k1')!;
  assert.equal(rbac.decide(hsm, atK2, UNWRAP, '/keys')?.status, 403);
  assert.deepEqual(e.toBody(), {
    error: { code: 'Forbidden', message: `Not authorized to access ${UNWRAP} on /keys/k1 (Caller: oid=${atK2}; HSM: hsm1)`, innererror: { code: 'AccessDenied' } },
  });
  assert.throws(() => rbac.authorize(hsm, atK2, UNWRAP, '/keys/k1'), (x) => x instanceof ApiError && x.status === 403);

  assert.deepEqual(roleAssignmentWire(a), {
    id: `/keys/providers/Microsoft.Authorization/roleAssignments/${a.name}`,
    name: a.name,
    type: 'Microsoft.Authorization/roleAssignments',
    properties: { scope: '/keys', roleDefinitionId: `/Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/${SERVICE_ENCRYPTION}`, principalId: atKeys },
  });
  const root = rbac.assignments.list(hsm, { principalId: atRoot })[0];
  assert.equal(roleAssignmentWire(root).id, `/providers/Microsoft.Authorization/roleAssignments/${root.name}`);
  assert.equal(rbac.assignments.list(hsm).length, 3);
  assert.deepEqual(rbac.assignments.list(hsm, { atScope: '/keys/k1' }).map((x) => x.principalId).sort(), [atKeys, atRoot].sort());
  assert.deepEqual(rbac.assignments.list(hsm, { atScope: '///' }).map((x) => x.principalId), [atRoot]);
});

test('deleting an assignment stops access on the next decision; a second delete is RoleAssignmentNotFound', () => {
  const { hsm, rbac } = setup();
  const oid = randomUUID();
  const name = randomUUID().toUpperCase();
  const a = rbac.assignments.create(hsm, name, { scope: '/', roleDefinitionId: CRYPTO_USER, principalId: oid });
  assert.equal(a.name, name.toLowerCase());
  assert.deepEqual(rbac.assignments.create(hsm, name, { scope: '//', roleDefinitionId: CRYPTO_USER, principalId: oid }), a, 'the same PUT again');
  assert.equal(rbac.decide(hsm, oid, 'Microsoft.KeyVault/managedHsm/rng/action', '/'), undefined, 'Crypto User has rng');
  assert.equal(rbac.decide(hsm, oid, UNWRAP, '/keys/k1'), undefined);
  assert.deepEqual(rbac.assignments.delete(hsm, name), a);
  assert.equal(rbac.decide(hsm, oid, UNWRAP, '/keys/k1')?.status, 403);
  const e = apiError(() => rbac.assignments.delete(hsm, name));
  assert.equal(e.status, 404);
  assert.equal(e.code, 'RoleAssignmentNotFound');
  assert.equal(apiError(() => rbac.assignments.get(hsm, name)).code, 'RoleAssignmentNotFound');
});

test('bad scope, bad GUIDs and an unknown role are clear 400s; a changed or duplicate assignment is a 409', () => {
  const { hsm, rbac } = setup();
  const oid = randomUUID();
  for (const [raw, want] of [['', '/'], ['/', '/'], ['//', '/'], ['///', '/'], ['/keys', '/keys'], ['keys', '/keys'], ['/keys/', '/keys'],
    ['/keys/My-Key1', '/keys/My-Key1'], ['//keys//k1/', '/keys/k1'], ['/Keys/k1', '/keys/k1']] as const) {
    assert.equal(normalizeScope(raw), want, raw);
  }
  for (const raw of ['/secrets', '/keys/a/b', '/keys/under_score', `/keys/${'k'.repeat(128)}`, '/x/keys']) {
    const e = apiError(() => normalizeScope(raw));
    assert.equal(e.status, 400);
    assert.match(e.message, /use '\/' \(the whole HSM\), '\/keys' \(all keys\) or '\/keys\/\{key-name\}'/);
  }
  assert.equal(parseRoleDefinitionId(CRYPTO_USER.toUpperCase()), CRYPTO_USER);
  assert.equal(parseRoleDefinitionId(`Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/${CRYPTO_USER}`), CRYPTO_USER);
  assert.equal(parseRoleDefinitionId(`/Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/${CRYPTO_USER}`), CRYPTO_USER);
  assert.equal(parseRoleDefinitionId(`/providers/Microsoft.Authorization/roleDefinitions/${CRYPTO_USER}`), CRYPTO_USER);
  for (const raw of ['not-a-guid', `/subscriptions/x/providers/Microsoft.Authorization/roleDefinitions/${CRYPTO_USER}`, `${CRYPTO_USER}x`]) {
    assert.equal(apiError(() => parseRoleDefinitionId(raw)).status, 400, raw);
  }

  const bad = (fn: () => unknown, re: RegExp) => {
    const e = apiError(fn);
    assert.equal(e.status, 400);
    assert.equal(e.code, 'BadParameter');
    assert.match(e.message, re);
  };
  bad(() => rbac.assignments.create(hsm, 'nope', { scope: '/', roleDefinitionId: CRYPTO_USER, principalId: oid }), /name must be a GUID/);
  bad(() => rbac.assignments.create(hsm, randomUUID(), { scope: '/certificates', roleDefinitionId: CRYPTO_USER, principalId: oid }), /not a Managed HSM role scope/);
  bad(() => rbac.assignments.create(hsm, randomUUID(), { scope: '/', roleDefinitionId: 'Crypto User', principalId: oid }), /roleDefinitionId 'Crypto User' is not valid/);
  bad(() => rbac.assignments.create(hsm, randomUUID(), { scope: '/', roleDefinitionId: randomUUID(), principalId: oid }), /does not exist on Managed HSM 'hsm1'/);
  bad(() => rbac.assignments.create(hsm, randomUUID(), { scope: '/', roleDefinitionId: CRYPTO_USER, principalId: 'someone' }), /principalId 'someone' is not valid/);
  assert.equal(rbac.assignments.list(hsm).length, 0, 'nothing stored by the refusals');

  const name = randomUUID();
  rbac.assignments.create(hsm, name, { scope: '/', roleDefinitionId: CRYPTO_USER, principalId: oid });
  const changed = apiError(() => rbac.assignments.create(hsm, name, { scope: '/keys', roleDefinitionId: CRYPTO_USER, principalId: oid }));
  assert.equal(changed.status, 409);
  assert.equal(changed.innerCode, 'RoleAssignmentUpdateNotPermitted');
  assert.equal(apiError(() => rbac.assignments.create(hsm, randomUUID(), { scope: '/', roleDefinitionId: CRYPTO_USER, principalId: oid })).innerCode, 'RoleAssignmentExists');
  assert.equal(rbac.decide(hsm, oid, UNWRAP, '/nothing')?.status, 400, 'a bad addressed scope is answered, not thrown');
});

test('custom role definitions: put, list, assign, the still-assigned refusal, delete; built-ins are read-only', () => {
  const { hsm, other, rbac } = setup();
  const guid = randomUUID();
  const oid = randomUUID();
  const props = {
    roleName: 'Signer', description: 'Signs with any key but k9', type: 'CustomRole',
    permissions: [{ dataActions: ['Microsoft.KeyVault/managedHsm/keys/*'], notDataActions: ['Microsoft.KeyVault/managedHsm/keys/delete', UNWRAP] }],
    assignableScopes: ['/'],
  };
  const def = rbac.definitions.put(hsm, guid, props);
  assert.equal(def.type, 'CustomRole');
  assert.equal(roleDefinitionWire(def).properties.type, 'CustomRole');
  assert.equal(rbac.definitions.list(hsm).length, BUILT_IN_HSM_ROLES.length + 1);
  assert.equal(rbac.definitions.list(other).length, BUILT_IN_HSM_ROLES.length, 'per HSM');
  assert.equal(rbac.definitions.get(hsm, guid).roleName, 'Signer');
  assert.equal(rbac.definitions.put(hsm, guid, { ...props, description: 'v2' }).description, 'v2', 'PUT again replaces');
  assert.equal(rbac.definitions.list(hsm).length, BUILT_IN_HSM_ROLES.length + 1);

  const a = rbac.assignments.create(hsm, randomUUID(), { scope: '/keys', roleDefinitionId: guid, principalId: oid });
  assert.equal(rbac.decide(hsm, oid, 'Microsoft.KeyVault/managedHsm/keys/sign/action', '/keys/k1'), undefined, 'through keys/*');
  assert.equal(rbac.decide(hsm, oid, UNWRAP, '/keys/k1')?.status, 403, 'notDataActions');
  assert.equal(rbac.decide(hsm, oid, 'Microsoft.KeyVault/managedHsm/rng/action', '/')?.status, 403);

  const held = apiError(() => rbac.definitions.delete(hsm, guid));
  assert.equal(held.status, 409);
  assert.equal(held.innerCode, 'RoleDefinitionHasAssignments');
  rbac.assignments.delete(hsm, a.name);
  assert.equal(rbac.definitions.delete(hsm, guid).roleName, 'Signer');
  assert.equal(rbac.definitions.list(hsm).length, BUILT_IN_HSM_ROLES.length);
  assert.equal(apiError(() => rbac.definitions.delete(hsm, guid)).status, 404);
  assert.equal(apiError(() => rbac.definitions.get(hsm, guid)).status, 404);

  for (const [p, re] of [
    [{ ...props, assignableScopes: ['/keys'] }, /assignableScopes must be \["\/"\]/],
    [{ ...props, type: 'AKVBuiltInRole' }, /must be 'CustomRole'/],
    [{ ...props, roleName: '' }, /roleName is required/],
    [{ ...props, permissions: [{ dataActions: ['Microsoft.KeyVault/vaults/keys/read'] }] }, /names no Managed HSM data action/],
    [{ ...props, permissions: [{ actions: ['*'], dataActions: [UNWRAP] }] }, /data actions only/],
    [{ ...props, roleName: 'managed hsm crypto user' }, /already exists/],
  ] as const) {
    const e = apiError(() => rbac.definitions.put(hsm, randomUUID(), p));
    assert.match(e.message, re);
  }
  for (const fn of [() => rbac.definitions.put(hsm, CRYPTO_USER, props), () => rbac.definitions.delete(hsm, CRYPTO_USER)]) {
    const e = apiError(fn);
    assert.equal(e.status, 400);
    assert.match(e.message, /built-in role 'Managed HSM Crypto User'/);
  }
  assert.equal(apiError(() => rbac.definitions.put(hsm, 'x', props)).status, 400);
});

test('bootstrapAdmins: Administrator at / for each object id, once; role-assignment write but no key unwrap', () => {
  const { db, hsm, rbac } = setup();
  const [x, y] = [randomUUID(), randomUUID()];
  const first = rbac.bootstrapAdmins(hsm, [x, y]);
  assert.deepEqual(first.map((a) => [a.principalId, a.scope, a.roleDefinitionId]), [[x, '/', ADMIN], [y, '/', ADMIN]]);
  assert.deepEqual(rbac.bootstrapAdmins(hsm, [x]), [first[0]], 'kept, not doubled');
  assert.equal(rbac.assignments.list(hsm).length, 2);
  for (const oid of [x, y]) {
    assert.equal(rbac.decide(hsm, oid, 'Microsoft.KeyVault/managedHsm/roleAssignments/write/action', '/'), undefined);
    assert.equal(rbac.decide(hsm, oid, 'Microsoft.KeyVault/managedHsm/securitydomain/download/action', '/'), undefined);
    assert.equal(rbac.decide(hsm, oid, UNWRAP, '/keys/k1')?.status, 403);
  }
  assert.equal(apiError(() => rbac.bootstrapAdmins(hsm, ['not-an-oid'])).status, 400);
  db.prepare('DELETE FROM vaults WHERE id = ?').run(hsm.id);
  assert.equal(rbac.assignments.list(hsm).length, 0, 'gone with the HSM');
});
