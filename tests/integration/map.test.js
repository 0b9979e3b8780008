// Coverage report and site-local mapping files (issue #3 "done means" 2 and 3):
//  - `map` lists the codings no mapping recognised (system, code, display,
//    resource type, count; per patient and in total; text and --json);
//  - a site mapping file named by `mappings.extra` makes the next run
//    recognise them, and `evaluate` changes accordingly;
//  - the RiskAssessment basis and CarePlan supportingInfo reference exactly
//    the resources that contributed a feature (irrelevant ones absent);
//  - a site file that conflicts with a shipped entry is refused by `-n`,
//    naming both files and entries;
//  - `sync --report FILE` writes the same report for a cohort on the test
//    FHIR server.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const fs = require('node:fs');
const h = require('./helpers');

const FIX = path.join(h.ROOT, 'tests/fixtures/map');
const INPUT = path.join(FIX, 'local-codes.json');
const EXTRA = path.join(FIX, 'site-extra.json');
const LAB = 'http://hospital.example.org/codes/lab';
const PROB = 'http://hospital.example.org/codes/problem';
const LOCAL_ROWS = [
  `Condition|${PROB}|MET-BONE`,
  `Observation|${LAB}|ER-STATUS`,
  `Observation|${LAB}|PR-STATUS`,
  `Observation|${LAB}|HER2-STATUS`,
];
const IRRELEVANT_ROWS = [
  'Condition|http://snomed.info/sct|195967001',
  'Observation|http://loinc.org|718-7',
  'Observation|http://loinc.org|8480-6',
];

function writeConfig(extra) {
  const dir = h.tmpdir('mapcfg');
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify({ mappings: { extra } }));
  return file;
}

function rowKey(r) {
  return `${r.resourceType}|${r.system}|${r.code}`;
}

function mapJson(args) {
  const r = h.runAdapter([...args, 'map', '--json', INPUT]);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

function refs(list) {
  return (list || []).map((x) => x.reference).sort();
}

function evaluate(args) {
  const r = h.runAdapter([...args, 'evaluate', INPUT]);
  assert.equal(r.status, 0, r.stderr);
  const out = {};
  for (const e of JSON.parse(r.stdout).entry) out[e.resource.resourceType] = e.resource;
  return out;
}

test('map lists unknown local codes with system, code, display, type and count', () => {
  const r = h.runAdapter(['map', INPUT]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^patient map-pt: 7 unmapped coding\(s\), 0 issue\(s\)$/m);
  assert.match(r.stdout,
    /^ {2}Observation {2}http:\/\/hospital\.example\.org\/codes\/lab\|ER-STATUS {2}"Oestrogen receptor \(local\)" {2}count 1$/m);
  assert.match(r.stdout, /^total: 7 distinct unmapped coding\(s\) in 1 of 1 patient\(s\), 0 issue\(s\)$/m);
  assert.match(r.stdout,
    /^ {2}Condition {4}http:\/\/hospital\.example\.org\/codes\/problem\|MET-BONE {2}"Bone metastases \(local code\)" {2}count 1 {2}patients 1$/m);

  const j = mapJson([]);
  assert.equal(j.patients.length, 1);
  assert.equal(j.patients[0].patient, 'map-pt');
  assert.deepEqual(j.patients[0].unmapped.map(rowKey).sort(),
    [...LOCAL_ROWS, ...IRRELEVANT_ROWS].sort());
  const er = j.total.find((x) => x.code === 'ER-STATUS');
  assert.deepEqual(er, {
    system: LAB, code: 'ER-STATUS', display: 'Oestrogen receptor (local)',
    resourceType: 'Observation', count: 1, patients: 1,
  });
});

test('map reads stdin and rejects a non-Bundle with a clear message', () => {
  const ok = h.runAdapter(['map', '-'], { input: fs.readFileSync(INPUT, 'utf8') });
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /ER-STATUS/);
  const bad = h.runAdapter(['map', '-'], { input: '{"resourceType":"Patient","id":"x"}' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /input is a Patient, not a Bundle/);
});

test('without the site file: local codes unmapped, no plan (GuidanceResponse)', () => {
  const out = evaluate([]);
  assert.ok(out.GuidanceResponse, 'a GuidanceResponse when nothing is recognised');
  assert.equal(out.CarePlan, undefined);
});

test('a site mapping file in mappings.extra makes the next run recognise the codes', () => {
  const cfg = writeConfig([EXTRA]);
  const check = h.runAdapter(['-n', '-c', cfg]);
  assert.equal(check.status, 0, check.stderr);
  assert.match(check.stdout, /configuration OK/);

  const j = mapJson(['-c', cfg]);
  assert.deepEqual(j.patients[0].unmapped.map(rowKey).sort(), [...IRRELEVANT_ROWS].sort());
  for (const k of LOCAL_ROWS) assert.ok(!j.total.some((x) => rowKey(x) === k), k);

  const out = evaluate(['-c', cfg]);
  assert.ok(out.CarePlan, 'a CarePlan once the local codes are known');
  assert.ok(h.categoryCodes(out.CarePlan).includes('upfront-systemic'),
    `categories ${h.categoryCodes(out.CarePlan)}`);
  // Exactly the resources that contributed: primary, bone metastasis, ER, PR,
  // HER2, ECOG and the Patient (birth date -> age).  The haemoglobin, blood
  // pressure, asthma and Procedure resources are absent.
  const expected = [
    'Condition/map-met-bone', 'Condition/map-primary', 'Observation/map-ecog',
    'Observation/map-er', 'Observation/map-her2', 'Observation/map-pr', 'Patient/map-pt',
  ];
  assert.deepEqual(refs(out.RiskAssessment.basis), expected);
  assert.deepEqual(refs(out.CarePlan.supportingInfo), expected);
  for (const irrelevant of ['map-hb', 'map-bp', 'map-asthma', 'map-proc']) {
    assert.ok(!JSON.stringify(out.RiskAssessment.basis).includes(irrelevant), irrelevant);
  }
});

test('-n refuses a site file that conflicts with a shipped entry, naming both', () => {
  const bad = path.join(h.ROOT, 'tests/fixtures/mappings-bad/local-conflict-feature.json');
  const r = h.runAdapter(['-n', '-c', writeConfig([EXTRA, bad])]);
  assert.equal(r.status, 2);
  assert.match(r.stderr,
    /local-conflict-feature\.json: entry 0 \(code 85337-4\): conflicts with shipped receptors\.json entry 0/);
  const missing = h.runAdapter(['-n', '-c', writeConfig([path.join(FIX, 'absent.json')])]);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /absent\.json/);
});

test('--report is refused outside sync', () => {
  const r = h.runAdapter(['map', '--report', '/dev/null', INPUT]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--report is only for sync/);
});

// Two patients on the test server: the fixture's resources, and a copy under
// other ids with one more local code.
function transaction(suffix, extraObs) {
  const doc = JSON.parse(fs.readFileSync(INPUT, 'utf8'));
  const entries = [];
  for (const e of doc.entry) {
    const r = JSON.parse(JSON.stringify(e.resource).replaceAll('map-', `map${suffix}-`));
    entries.push({ resource: r, request: { method: 'PUT', url: `${r.resourceType}/${r.id}` } });
  }
  if (extraObs) {
    const r = { ...extraObs, subject: { reference: `Patient/map${suffix}-pt` } };
    entries.push({ resource: r, request: { method: 'PUT', url: `Observation/${r.id}` } });
  }
  return { resourceType: 'Bundle', type: 'transaction', entry: entries };
}

test('sync --report writes the per-patient and total report for the cohort', async (t) => {
  const srv = h.startServer();
  t.after(() => h.stopServer(srv));
  const ki67 = {
    resourceType: 'Observation', id: 'mapb-ki67', status: 'final',
    code: { coding: [{ system: LAB, code: 'KI67-PCT', display: 'Ki-67 (local)' }] },
    effectiveDateTime: '2024-02-05', valueQuantity: { value: 30, unit: '%' },
  };
  for (const b of [transaction('a'), transaction('b', ki67)]) {
    const r = await h.fhir(srv.base, 'POST', '', b);
    assert.equal(r.status, 200, r.text.slice(0, 500));
  }
  const dir = h.tmpdir('report');
  const state = path.join(dir, 'state');
  const textFile = path.join(dir, 'report.txt');
  const r1 = h.runAdapter(['sync', '--dry-run', '--base-url', srv.base, '--state', state,
    '--report', textFile]);
  assert.equal(r1.status, 0, r1.stderr);
  const text = fs.readFileSync(textFile, 'utf8');
  assert.match(text, /^patient mapa-pt: 7 unmapped coding\(s\)/m);
  assert.match(text, /^patient mapb-pt: 8 unmapped coding\(s\)/m);
  assert.match(text, /^total: 8 distinct unmapped coding\(s\) in 2 of 2 patient\(s\)/m);
  assert.match(text,
    /^ {2}Observation {2}http:\/\/hospital\.example\.org\/codes\/lab\|ER-STATUS {2}"Oestrogen receptor \(local\)" {2}count 2 {2}patients 2$/m);
  assert.match(text, /KI67-PCT {2}"Ki-67 \(local\)" {2}count 1 {2}patients 1$/m);
  // the report is for the analyst; the log stays free of patient ids
  assert.ok(!r1.stderr.includes('mapa-pt') && !r1.stderr.includes('mapb-pt'));

  // The same cohort with the site file: only the codes it does not cover remain.
  const jsonFile = path.join(dir, 'report.json');
  const r2 = h.runAdapter(['sync', '--dry-run', '-c', writeConfig([EXTRA]), '--base-url',
    srv.base, '--state', state, '--report', jsonFile, '--json']);
  assert.equal(r2.status, 0, r2.stderr);
  const j = JSON.parse(fs.readFileSync(jsonFile, 'utf8'));
  assert.deepEqual(j.patients.map((p) => p.patient).sort(), ['mapa-pt', 'mapb-pt']);
  assert.deepEqual(j.total.map(rowKey).sort(),
    [...IRRELEVANT_ROWS, `Observation|${LAB}|KI67-PCT`].sort());
  assert.equal(j.total.find((x) => x.code === '718-7').count, 2);
  assert.match(r2.stdout, /upfront-systemic\s+2/);
});
