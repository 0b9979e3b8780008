// Hostile ids and text: a patient id "." or ".." (from --patient, or from a
// Condition of the cohort search whose subject is "Patient/..") used to
// become "GET [base]/" or a search of every Patient, retried five times; an
// input Bundle's ids were copied into references and `explain` wrote ESC,
// BEL and newlines from them raw to the terminal.  Now ids follow the FHIR
// grammar wherever they enter (adapter/fhirid.c), and text output escapes
// control characters.  Against the real test FHIR server.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./helpers');

let srv;

test.before(() => {
  srv = h.startServer();
});

test.after(() => {
  h.stopServer(srv);
});

for (const id of ['..', '.', 'a/b', 'p\u001b[2J']) {
  test(`sync --patient ${JSON.stringify(id)} is refused before any request`, () => {
    const dir = h.tmpdir('ids');
    const r = h.runAdapter(['sync', '--base-url', srv.base, '--state', path.join(dir, 's.db'),
      '--patient', id]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /--patient: not a FHIR id/);
    assert.doesNotMatch(r.stderr, /\u001b/, 'the id is not echoed');
    assert.ok(!fs.existsSync(path.join(dir, 's.db')), 'nothing was opened');
  });
}

test('a cohort Condition whose subject is Patient/.. is skipped, not synced', async () => {
  const c = await h.fhir(srv.base, 'POST', 'Condition', { resourceType: 'Condition',
    subject: { reference: 'Patient/..' },
    code: { coding: [{ system: 'http://snomed.info/sct', code: '254837009' }] },
    onsetDateTime: '2021-03-01' });
  assert.equal(c.status, 201, c.text);
  const dir = h.tmpdir('ids');
  const r = h.runAdapter(['sync', '--base-url', srv.base, '--state', path.join(dir, 's.db')]);
  assert.match(r.stderr, /a resource without a valid FHIR patient id: skipped/);
  assert.match(r.stdout, /^patients seen\s+0$/m, r.stdout + r.stderr);
  assert.equal(r.status, 0, r.stderr);
  await h.fhir(srv.base, 'DELETE', `Condition/${c.json.id}`);
});
