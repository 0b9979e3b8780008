// Terminal injection: `explain` and `map` used to write ESC, BEL, CR and
// newlines from the input's codings and mapping messages raw to stdout (a
// display "x\nRecommendation ..." forged a report line; ESC ] retitled the
// terminal), and `evaluate` copied invalid ids into references.  Now text
// output escapes control characters (adapter/textesc.c) and invalid ids are
// refused naming the resource and the field.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./helpers');

// raw control bytes other than the report's own newlines, and UTF-8 C1 controls
const RAW = /[\u0000-\u0009\u000b-\u001f\u007f\u0080-\u009f]/;

function bundle(patientId = 'pt') {
  const base = JSON.parse(fs.readFileSync(path.join(h.ROOT, 'tests/cases/ecog-out-of-range/input.json'), 'utf8'));
  base.entry[0].resource.id = patientId;
  for (const e of base.entry) {
    if (e.resource.subject) e.resource.subject.reference = `Patient/${patientId}`;
  }
  base.entry.push({ resource: { resourceType: 'Observation', id: 'odd', status: 'final',
    subject: { reference: `Patient/${patientId}` },
    code: { coding: [{ system: 'http://x.example/\u001b]0;owned\u0007', code: 'c\u001b[2J',
      display: 'd\nRecommendation FAKE (forged)\r\u009b31m' }] },
    effectiveDateTime: '2021-03-05' } });
  // a mapping issue quoting the input: an unknown unit
  base.entry.push({ resource: { resourceType: 'Observation', id: 'ts', status: 'final',
    subject: { reference: `Patient/${patientId}` },
    code: { coding: [{ system: 'http://loinc.org', code: '33728-7' }] },
    effectiveDateTime: '2021-03-05',
    valueQuantity: { value: 18, unit: 'mm\u001b[5m\nforged issue' } } });
  const dir = h.tmpdir('hostile-text');
  const file = path.join(dir, 'bundle.json');
  fs.writeFileSync(file, JSON.stringify(base));
  return file;
}

test('explain escapes control characters from codings and mapping messages', () => {
  const r = h.runAdapter(['explain', bundle()]);
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stdout, RAW, 'no raw control character');
  assert.doesNotMatch(r.stdout, /^Recommendation FAKE/m, 'no forged line');
  assert.doesNotMatch(r.stdout, /^forged issue/m, 'no forged line');
  assert.match(r.stdout, /c\\x1b\[2J/);
  assert.match(r.stdout, /d\\nRecommendation FAKE \(forged\)\\r\\u009b31m/);
  assert.match(r.stdout, /mm\\x1b\[5m\\nforged issue/);
});

test('map (text) escapes control characters; --json stays JSON', () => {
  const file = bundle();
  let r = h.runAdapter(['map', file]);
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stdout, RAW);
  assert.doesNotMatch(r.stdout, /^Recommendation FAKE/m);
  assert.match(r.stdout, /c\\x1b\[2J/);
  r = h.runAdapter(['map', '--json', file]);
  assert.equal(r.status, 0, r.stderr);
  const cov = JSON.stringify(JSON.parse(r.stdout));
  assert.ok(cov.includes('c\\u001b[2J'), 'the JSON report keeps the code, JSON-escaped');
});

for (const cmd of ['evaluate', 'explain', 'map']) {
  test(`${cmd} refuses an invalid patient id naming resource and field`, () => {
    const r = h.runAdapter([cmd, bundle('p\u001b[2J')]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /entry\[0\] \(Patient\): field 'id' is not a FHIR id/);
    assert.doesNotMatch(r.stderr + r.stdout, RAW);
    if (cmd === 'evaluate') {
      const oo = JSON.parse(r.stdout);
      assert.equal(oo.resourceType, 'OperationOutcome');
      assert.doesNotMatch(r.stdout, /Patient\/p/);
    }
  });
}
