/** The README's first command, as a new user runs it: the walkthrough script must complete. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './harness.js';

test('scripts/walkthrough.sh runs from start to finish and stops what it started', () => {
  const home = mkdtempSync(join(tmpdir(), 'pgbyok-walk-'));
  try {
    const r = spawnSync('bash', [join(ROOT, 'scripts', 'walkthrough.sh')], {
      env: { ...process.env, PGBYOK_HOME: home, PGBYOK_WALKTHROUGH_KEEP: '0' },
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /unwrapped DEK matches the original/);
    assert.match(r.stdout + r.stderr, /KeyDisabled/);
    assert.match(r.stdout, /the DEK wrapped before the rotation still unwraps/);
    assert.match(r.stdout, /true\s+\d+/, 'audit verify reports a valid chain');
    assert.match(r.stdout + r.stderr, /is inaccessible: its customer-managed key cannot be used because the key is disabled/);
    assert.match(r.stdout, /encrypted at rest under the customer's key\n\(1 row\)/);
    const status = spawnSync(process.execPath, [join(ROOT, 'bin', 'pgbyok'), 'status'], { env: { ...process.env, PGBYOK_HOME: home } });
    assert.notEqual(status.status, 0, 'pgbyok was stopped at the end');
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
