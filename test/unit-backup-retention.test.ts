/** Retention: what falls outside the window is pruned, what a restore to the window's start needs stays. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import { createBackupsService } from '../src/backups/backups.service.js';
import { homePaths } from '../src/lib/home.js';
import { manualClock } from '../src/lib/clock.js';

test('prune keeps backups inside the retention window and the newest one before it, and the WAL they need', async () => {
  const home = mkdtempSync(join(tmpdir(), 'pgbyok-retention-'));
  try {
    const clock = manualClock(Date.parse('2031-01-01T00:00:00Z'));
    const svc = createBackupsService({ home: homePaths(home), locator: {} as any, keys: {} as any, logger: pino({ level: 'silent' }), clock });
    const server = { id: 'srv-1', location: 'eastus', name: 's' } as any;
    const store = svc.store('eastus');
    const day = 86400_000;
    const backups = [
      { id: 'b1', ageDays: 20, startWal: '000000010000000000000001' },
      { id: 'b2', ageDays: 12, startWal: '000000010000000000000005' },
      { id: 'b3', ageDays: 9, startWal: '000000010000000000000009' },
      { id: 'b4', ageDays: 3, startWal: '00000001000000000000000D' },
    ];
    for (const b of backups) {
      const end = new Date(clock.now() - b.ageDays * day).toISOString();
      await store.putJson(`srv-1/backups/${b.id}.json`, { id: b.id, serverId: 'srv-1', serverName: 's', epoch: 'e1', startTime: end, endTime: end, startWal: b.startWal, sizeBytes: 1, type: 'Full' });
      await store.put(`srv-1/base/${b.id}.tar.sealed`, Readable.from([Buffer.from('x')]));
    }
    for (let i = 1; i <= 14; i++) {
      const seg = `00000001000000000000000${i.toString(16).toUpperCase()}`.slice(-24);
      await store.put(`srv-1/wal/${seg}.epoch-e1.sealed`, Readable.from([Buffer.from('w')]));
    }
    await store.put('srv-1/wal/00000002.history.epoch-e1.sealed', Readable.from([Buffer.from('h')]));

    const pruned = svc.prune(server, 7);
    assert.equal(pruned, 2, 'b1 and b2 are older than b3, the newest backup before the 7-day window');
    assert.deepEqual(svc.list(server).map((m) => m.id), ['b3', 'b4']);
    assert.equal(store.exists('srv-1/base/b1.tar.sealed'), false);
    assert.equal(store.exists('srv-1/base/b3.tar.sealed'), true);
    const wal = store.list('srv-1/wal').map((k) => k.split('/').pop()!.slice(0, 24));
    assert.ok(wal.every((w) => w >= '000000010000000000000009' || w.startsWith('00000002')), `WAL before b3 is gone: ${wal.join(',')}`);
    assert.ok(wal.includes('000000010000000000000009') && wal.some((w) => w.startsWith('00000002')), 'what b3 needs, and timeline history, stay');
    assert.equal(svc.prune(server, 7), 0, 'pruning twice changes nothing');
    // Time moves on (the injected clock, no waiting): b3 then falls out too, once b4 is the newest before the window.
    clock.advance(5 * day);
    assert.equal(svc.prune(server, 7), 1, 'b3 goes once b4 has ended before the window');
    assert.deepEqual(svc.list(server).map((m) => m.id), ['b4']);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
