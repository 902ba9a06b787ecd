import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApiError } from '../src/lib/errors.js';
import { nextState, refusal, SERVER_STATES, statesAllowing, transition, TRANSITIONS } from '../src/servers/model/state-machine.js';

test('the state table: each verb is allowed exactly in the states the table lists', () => {
  assert.deepEqual(statesAllowing('stop'), ['Ready']);
  assert.deepEqual(statesAllowing('start'), ['Stopped']);
  assert.deepEqual(statesAllowing('delete').sort(), ['Inaccessible', 'Provisioning', 'Ready', 'Stopped'].sort());
  assert.deepEqual(statesAllowing('updateKey').sort(), ['Inaccessible', 'Ready', 'Stopped'].sort());
  assert.deepEqual(statesAllowing('update').sort(), ['Ready', 'Stopped'].sort());
  assert.deepEqual(statesAllowing('revalidate').sort(), ['Inaccessible', 'Ready'].sort());
  // Nothing leaves Dropping but the removal of the row.
  assert.deepEqual(TRANSITIONS.Dropping, {});
});

test('the state table: the key monitor and workflows move servers as Azure does', () => {
  assert.equal(nextState('Ready', 'keyLost'), 'Inaccessible');
  assert.equal(nextState('Stopped', 'keyLost'), 'Stopped', 'a stopped server keeps its state; its key status says Invalid');
  assert.equal(nextState('Inaccessible', 'revalidated'), 'Ready');
  assert.equal(nextState('Provisioning', 'abandoned'), 'Dropping', 'a half-built server goes to a Delete');
  assert.equal(nextState('Starting', 'keyLost'), 'Inaccessible');
  assert.equal(nextState('Updating', 'updatedStopped'), 'Stopped');
  assert.equal(nextState('Stopped', 'stop'), undefined);
});

test('a refusal is a 409 whose message comes from the table', () => {
  for (const state of SERVER_STATES) {
    if (nextState(state, 'stop')) continue;
    const e = refusal('db1', state, 'stop');
    assert.ok(e instanceof ApiError);
    assert.equal(e.status, 409);
    assert.equal(e.code, 'ServerStateConflict');
    assert.match(e.message, new RegExp(`Cannot stop server db1 while it is ${state}`));
    assert.match(e.message, /stop is allowed when the server is Ready\.$/);
  }
  assert.match(refusal('db1', 'Inaccessible', 'stop').message, /restore access to the key, then revalidate/);
  assert.throws(() => transition('db1', 'Dropping', 'delete'), (e: ApiError) => e.status === 409 && /while it is Dropping \(it is being deleted\)/.test(e.message));
  assert.equal(transition('db1', 'Ready', 'stop'), 'Stopping');
});
