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

test('run: a notified Observation whose subject is Patient/.. syncs no patient', async () => {
  const { spawn } = require('node:child_process');
  const dir = h.tmpdir('ids-run');
  const secret = 'notify-secret-for-tests-only';
  fs.writeFileSync(path.join(dir, 'secret'), secret, { mode: 0o600 });
  fs.writeFileSync(path.join(dir, 'cfg.json'), JSON.stringify({
    daemon: { interval_s: 3600, overlap_s: 0 },
    server: { notify_secret_file: path.join(dir, 'secret') },
  }));
  const o = await h.fhir(srv.base, 'POST', 'Observation', { resourceType: 'Observation',
    status: 'final', subject: { reference: 'Patient/..' },
    code: { coding: [{ system: 'http://loinc.org', code: '89247-1' }] }, valueInteger: 1 });
  assert.equal(o.status, 201, o.text);
  const child = spawn(h.BIN, ['run', '--config', path.join(dir, 'cfg.json'), '--base-url',
    srv.base, '--state', path.join(dir, 's.db'), '--listen', '127.0.0.1:0'],
  { env: { ...process.env, DNMBC_LOG_LEVEL: '' } });
  let err = '';
  child.stderr.on('data', (b) => { err += b; });
  const exited = new Promise((res) => child.on('exit', res));
  // polls for a condition, bounded against hanging (not a timing assertion)
  const waitFor = async (what, re) => {
    for (let i = 0; i < 600 && !re.test(err); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match(err, re, `waiting for ${what}`);
  };
  try {
    await waitFor('the listener', /listening on http:\/\/127\.0\.0\.1:\d+/);
    await waitFor('the first cycle', /cycle done/);
    const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(err)[1]);
    const r = await fetch(`http://127.0.0.1:${port}/notify`, { method: 'POST',
      headers: { 'content-type': 'application/fhir+json', authorization: `Bearer ${secret}` },
      body: JSON.stringify({ resourceType: 'Bundle', type: 'history', entry: [
        { resource: { resourceType: 'Parameters', parameter: [
          { name: 'type', valueCode: 'event-notification' }] } },
        { fullUrl: `${srv.base}/Observation/${o.json.id}`,
          request: { method: 'PUT', url: `Observation/${o.json.id}` } }] }) });
    assert.equal(r.status, 200, await r.text());
    await waitFor('the refusal', /the notified Observation names no valid FHIR patient id/);
    assert.doesNotMatch(err, /patient id is not a FHIR id/, 'refused before sync_patient');
  } finally {
    child.kill('SIGTERM');
    await exited;
    await h.fhir(srv.base, 'DELETE', `Observation/${o.json.id}`);
  }
});
