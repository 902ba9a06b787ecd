import assert from 'node:assert/strict';
import { test } from 'node:test';
import { graceExpired } from '../src/servers/monitor.js';

test('the grace policy: an unreachable vault locks a server only once the grace period is over', () => {
  const since = Date.parse('2031-01-01T00:00:00Z');
  assert.equal(graceExpired(undefined, since + 10 * 60_000, 60_000), false, 'never unreachable');
  assert.equal(graceExpired(since, since, 60_000), false);
  assert.equal(graceExpired(since, since + 60_000, 60_000), false, 'exactly the grace period: not yet');
  assert.equal(graceExpired(since, since + 60_001, 60_000), true);
  assert.equal(graceExpired(since, since + 1, 0), true, 'no grace: at once');
});
