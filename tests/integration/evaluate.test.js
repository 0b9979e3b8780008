// Offline commands: `evaluate` and `explain` on the fixture Bundles of
// tests/fixtures/evaluate, and clean refusals (exit 2, message naming the
// problem, OperationOutcome on stdout) for unusable input.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { ROOT, runAdapter, categoryCodes } = require('./helpers');

const DIR = path.join(ROOT, 'tests/fixtures/evaluate');
const SUBTYPE_NAMES = { 'HR+/HER2-': 'HR+/HER2-', 'HR+/HER2+': 'HR+/HER2+', 'HR-/HER2+': 'HR-/HER2+', TNBC: 'TNBC' };

const good = fs.readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();

test('there are fixtures to evaluate', () => {
  assert.ok(good.length >= 8, `only ${good.length} fixture bundles`);
});

for (const file of good) {
  const expected = JSON.parse(fs.readFileSync(path.join(DIR, 'expected', file), 'utf8'));
  test(`evaluate ${file} -> ${expected.recommendation}${expected.palliative ? ' + palliative-lrt' : ''}`, () => {
    const r = runAdapter(['evaluate', path.join(DIR, file)]);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.resourceType, 'Bundle');
    assert.equal(out.type, 'collection');
    const resources = (out.entry || []).map((e) => e.resource);
    const plan = resources.find((x) => x.resourceType === 'CarePlan');
    const risk = resources.find((x) => x.resourceType === 'RiskAssessment');
    if (expected.recommendation === 'not-applicable') {
      assert.equal(plan, undefined, 'no CarePlan for a not-applicable patient');
      const gr = resources.find((x) => x.resourceType === 'GuidanceResponse');
      assert.ok(gr, 'a GuidanceResponse says why');
      return;
    }
    assert.ok(plan, 'CarePlan present');
    assert.ok(risk, 'RiskAssessment present');
    const codes = categoryCodes(plan);
    assert.ok(codes.includes(expected.recommendation), `category ${codes} lacks ${expected.recommendation}`);
    assert.equal(codes.includes('palliative-lrt'), !!expected.palliative, `palliative flag in ${codes}`);
    assert.equal(plan.status, 'draft');
    assert.equal(plan.intent, 'proposal');
    assert.equal(risk.status, 'preliminary');
  });

  test(`explain ${file} names the decision and subtype`, () => {
    const r = runAdapter(['explain', path.join(DIR, file)]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(expected.recommendation.replace(/[-+]/g, '\\$&')));
    if (expected.subtype && SUBTYPE_NAMES[expected.subtype]) {
      assert.ok(r.stdout.includes(SUBTYPE_NAMES[expected.subtype]), `subtype ${expected.subtype} missing from explain`);
    }
  });
}

test('evaluate reads standard input', () => {
  const file = good[0];
  const input = fs.readFileSync(path.join(DIR, file), 'utf8');
  const a = runAdapter(['evaluate', '-'], { input });
  const b = runAdapter(['evaluate', path.join(DIR, file)]);
  assert.equal(a.status, 0, a.stderr);
  const strip = (s) => JSON.parse(s).entry.map((e) => e.resource.resourceType).join(',');
  assert.equal(strip(a.stdout), strip(b.stdout));
});

const BAD = path.join(DIR, 'bad');
const badExpected = JSON.parse(fs.readFileSync(path.join(BAD, 'expected.json'), 'utf8'));
for (const [file, fragment] of Object.entries(badExpected)) {
  test(`evaluate refuses ${file} (${fragment})`, () => {
    const r = runAdapter(['evaluate', path.join(BAD, file)]);
    assert.equal(r.status, 2, `exit ${r.status}: ${r.stderr}`);
    assert.ok(r.stderr.toLowerCase().includes(fragment.toLowerCase()),
      `stderr does not name the problem (${fragment}): ${r.stderr}`);
    const oo = JSON.parse(r.stdout);
    assert.equal(oo.resourceType, 'OperationOutcome');
    const e = runAdapter(['explain', path.join(BAD, file)]);
    assert.equal(e.status, 2);
    assert.equal(e.stderr.includes('Segmentation'), false);
  });
}

test('a missing input file is a clear usage error', () => {
  const r = runAdapter(['evaluate', '/nonexistent/bundle.json']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /cannot open/);
});

test('a huge input is refused cleanly', () => {
  // 300 MiB of spaces on stdin: over the 256 MiB input limit
  const big = Buffer.alloc(300 * 1024 * 1024, 0x20);
  const r = runAdapter(['evaluate', '-'], { input: big });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /larger than/);
});

test('usage errors exit 2', () => {
  assert.equal(runAdapter(['frobnicate']).status, 2);
  assert.equal(runAdapter(['sync', '--patient']).status, 2);
  assert.equal(runAdapter(['--bogus']).status, 2);
  const h = runAdapter(['--help']);
  assert.equal(h.status, 0);
  for (const cmd of ['sync', 'run', 'evaluate', 'explain', '--dry-run', '--patient', '--base-url', '-n']) {
    assert.ok(h.stdout.includes(cmd), `--help lacks ${cmd}`);
  }
});

test('-n checks configuration and mappings', () => {
  const r = runAdapter(['-n']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /configuration OK/);
  const bad = runAdapter(['-n', '--mappings', '/nonexistent']);
  assert.equal(bad.status, 2);
});
