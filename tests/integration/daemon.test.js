// `dnmbc-adapter run`: the first cycle covers the cohort and records a
// watermark taken from the server; the next cycle processes only patients
// whose data changed since; SIGTERM stops the loop cleanly.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn, execFileSync } = require('node:child_process');
const h = require('./helpers');

let srv;
let synth;
let stateFile;
const idOf = {};

test.before(async () => {
  srv = h.startServer();
  synth = h.generateSynth();
  const files = synth.manifest.map((m) => path.join(synth.dir, m.file));
  execFileSync('node', [path.join(h.ROOT, 'tests/fhir-server/load.js'), '--base', srv.base, ...files]);
  stateFile = path.join(h.tmpdir('daemon'), 'adapter.state');
  for (const m of synth.manifest) {
    const found = await h.searchAll(srv.base,
      `Patient?identifier=${encodeURIComponent(`${m.identifier.system}|${m.identifier.value}`)}`);
    idOf[m.identifier.value] = found[0].id;
  }
});

test.after(() => h.stopServer(srv));

function cycle() {
  return h.runAdapter(['run', '--once', '--base-url', srv.base, '--state', stateFile]);
}

function cycleCount(stderr) {
  const m = stderr.match(/cycle done: (\d+) patient\(s\), (\d+) created, (\d+) updated, (\d+) unchanged/);
  assert.ok(m, `no cycle summary in:\n${stderr}`);
  return { seen: +m[1], created: +m[2], updated: +m[3], unchanged: +m[4] };
}

test('the first cycle covers the whole cohort', async () => {
  const r = cycle();
  assert.equal(r.status, 0, r.stderr);
  const c = cycleCount(r.stderr);
  const eligible = synth.manifest.filter((m) => m.expected.recommendation !== 'not-applicable').length;
  assert.equal(c.created, eligible);
  const plans = await h.searchAll(srv.base, 'CarePlan?_count=200');
  assert.equal(plans.length, eligible);
});

test('a cycle with no change on the server writes nothing', async () => {
  const r = cycle();
  assert.equal(r.status, 0, r.stderr);
  const c = cycleCount(r.stderr);
  assert.equal(c.created + c.updated, 0);
});

test('the next cycle sees only the patient whose data changed', async () => {
  // wait a little so the change is strictly after the watermark
  await new Promise((res) => setTimeout(res, 1100));
  const m = synth.manifest.find((x) => x.laterProgression);
  const pid = idOf[m.identifier.value];
  const obs = JSON.parse(JSON.stringify(m.laterProgression.resource).replaceAll('{{PATIENT_ID}}', pid));
  assert.equal((await h.fhir(srv.base, 'POST', 'Observation', obs)).status, 201);
  // the overlap window re-reads recent changes; make it 0 so the count is exact
  const cfg = path.join(h.tmpdir('cfg'), 'c.json');
  require('node:fs').writeFileSync(cfg, JSON.stringify({ daemon: { overlap_s: 0 } }));
  const r = h.runAdapter(['run', '--once', '--config', cfg, '--base-url', srv.base, '--state', stateFile]);
  assert.equal(r.status, 0, r.stderr);
  const c = cycleCount(r.stderr);
  // _lastUpdated=ge<watermark> also re-reads whatever was written at the
  // watermark instant itself (never a gap, at most a harmless re-read)
  assert.ok(c.seen >= 1 && c.seen <= 2, `only the changed patient is evaluated (saw ${c.seen})`);
  assert.equal(c.updated, 1);
  assert.equal(c.unchanged, c.seen - 1);
  const cps = await h.searchAll(srv.base,
    `CarePlan?identifier=${encodeURIComponent(`${h.idSystem('CarePlan')}|${pid}`)}`);
  assert.ok(h.categoryCodes(cps[0]).includes('second-line-systemic'));
});

test('a 503 on the change search is retried and the cycle completes', async () => {
  const admin = srv.base.replace(/\/fhir\/R4$/, '');
  const f = await h.fhir(srv.base, 'POST', `${admin}/$test/fault`, {
    method: 'GET', resourceType: 'Observation', match: '_lastUpdated', status: 503, retryAfter: 0, count: 1,
  });
  assert.ok(f.status < 300, f.text);
  const cfg = path.join(h.tmpdir('cfg'), 'c.json');
  require('node:fs').writeFileSync(cfg, JSON.stringify({ fhir: { retry_base_ms: 10, retry_max_ms: 50 } }));
  const r = h.runAdapter(['run', '--once', '--config', cfg, '--base-url', srv.base, '--state', stateFile]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /\(changes\): .*503.*; retry 1 of/);
  cycleCount(r.stderr);
  const left = (await h.fhir(srv.base, 'GET', `${admin}/$test/fault`)).json;
  assert.equal(left.faults.length, 0, 'the fault was used');
});

test('SIGTERM stops the daemon cleanly', async () => {
  const child = spawn(h.BIN, ['run', '--base-url', srv.base, '--state', stateFile], {
    env: { ...process.env, DNMBC_LOG_LEVEL: '' },
  });
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const started = Date.now();
  while (!/cycle done/.test(err) && Date.now() - started < 20000) {
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.match(err, /cycle done/);
  child.kill('SIGTERM');
  const code = await new Promise((res) => child.on('exit', (c) => res(c)));
  assert.equal(code, 0, err);
  assert.match(err, /stopped/);
});
