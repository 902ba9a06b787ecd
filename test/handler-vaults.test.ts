/**
 * Handler tier: a soft-deleted vault is kept for its retention period and purged by the first scheduler pass
 * after its scheduled purge date, on the platform's own clock (moved by hand).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startInProc, type InProc } from './inproc.js';

const DAY = 86400;
let p: InProc;

before(async () => {
  p = await startInProc();
});

after(() => p?.stop());

const deletedNames = async () => ((await p.mgmt('GET', '/deletedVaults')).body.value as { name: string }[]).map((v) => v.name);

test('a soft-deleted vault is purged by the first pass after its scheduled purge date, and its name is free again', async () => {
  await p.createVault('handler-purge', { softDeleteRetentionInDays: 7, enablePurgeProtection: true });
  const deleted = await p.mgmt('DELETE', '/vaults/handler-purge');
  assert.equal(deleted.status, 200);
  assert.equal(deleted.body.properties.deletionDate, new Date(p.now() * 1000).toISOString());
  assert.equal(deleted.body.properties.scheduledPurgeDate, new Date((p.now() + 7 * DAY) * 1000).toISOString());

  // Purge protection: no purge on demand, and the name stays taken while the vault is soft-deleted.
  assert.equal((await p.mgmt('DELETE', '/deletedVaults/handler-purge')).status, 409);
  p.advance(7 * DAY - 1);
  await p.tick();
  assert.ok((await deletedNames()).includes('handler-purge'), 'kept until its scheduled purge date');
  const taken = await p.mgmt('PUT', '/vaults/handler-purge', { location: 'eastus', properties: {} });
  assert.equal(taken.status, 409);
  assert.equal(taken.body.error.code, 'Conflict');

  p.advance(1);
  assert.ok((await deletedNames()).includes('handler-purge'), 'purged by a pass, not by a read');
  await p.tick();
  assert.ok(!(await deletedNames()).includes('handler-purge'), 'purged once its date has come');
  assert.equal((await p.mgmt('POST', '/deletedVaults/handler-purge/recover')).status, 404);
  await p.createVault('handler-purge');
});
