// The mutation list (tests/mutation/mutations.txt) matches the code: every
// original text is found exactly once in its file, and every test a line
// names exists, its name pattern matching a test.  CI runs only a daily
// eighth of the mutations, so a rename would otherwise go unseen for up to
// a week and then fail that day's run (as writes-kept-alive did when
// fresh_connection_writes became no_resend_writes).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..', '..');

test('every mutation of the list applies to this tree and names tests that exist', () => {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'tests/mutation/run.js')], {
    cwd: ROOT, env: { ...process.env, MUTATION_CHECK: '1', MUTATION: '', MUTATION_SUBSET: '' }, encoding: 'utf8',
  });
  assert.equal(r.status, 0, `mutation list check:\n${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /^mutation list: \d+ mutations, every original found once/m);
});
