// The daemon's change detection against servers that behave like real ones:
// instants reported in another zone (+02:00, -05:00) are compared as
// instants, a patient whose fetch failed keeps the watermark where it was
// (and is decided by the next cycle), and a backlog far larger than one
// cycle's pages (page_size x max_pages) is worked off over cycles.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const h = require('./helpers');

let srv;
let synth;
let work;
let pid; // the patient whose progression Observation the tests switch on and off
let progression; // that Observation as the manifest gives it
let obsId = null;

const admin = () => srv.base.replace(/\/fhir\/R4$/, '');

test.before(async () => {
  srv = h.startServer();
  synth = h.generateSynth();
  const files = synth.manifest.map((m) => path.join(synth.dir, m.file));
  execFileSync('node', [path.join(h.ROOT, 'tests/fhir-server/load.js'), '--base', srv.base, ...files]);
  work = h.tmpdir('changes');
  const m = synth.manifest.find((x) => x.laterProgression);
  const found = await h.searchAll(srv.base,
    `Patient?identifier=${encodeURIComponent(`${m.identifier.system}|${m.identifier.value}`)}`);
  pid = found[0].id;
  progression = JSON.parse(JSON.stringify(m.laterProgression.resource).replaceAll('{{PATIENT_ID}}', pid));
});

test.after(() => h.stopServer(srv));

function config(name, obj) {
  const file = path.join(work, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify(obj));
  return file;
}

function cycle(stateFile, cfg) {
  const args = ['run', '--once', '--base-url', srv.base, '--state', stateFile];
  if (cfg) args.push('--config', cfg);
  return h.runAdapter(args);
}

function summary(stderr) {
  const m = stderr.match(/cycle done: (\d+) patient\(s\), (\d+) created, (\d+) updated, (\d+) unchanged, (\d+) revoked, (\d+) failed/);
  assert.ok(m, `no cycle summary in:\n${stderr}`);
  return { seen: +m[1], created: +m[2], updated: +m[3], unchanged: +m[4], failed: +m[6] };
}

function watermark(stateFile) {
  const r = h.runAdapter(['status', '--state', stateFile]);
  const m = r.stdout.match(/^watermark\s+(\S+)/m);
  assert.ok(m, r.stdout + r.stderr);
  return m[1];
}

// The cycles run synchronously (spawnSync) for longer than the server keeps
// an idle connection open: the first request after them may meet the
// connection the server has just closed, and is then sent once more.
async function again(fn) {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof TypeError)) throw err;
    return fn();
  }
}

async function secondLine() {
  const cps = await again(() => h.searchAll(srv.base,
    `CarePlan?identifier=${encodeURIComponent(`${h.idSystem('CarePlan')}|${pid}`)}`));
  assert.equal(cps.length, 1);
  return h.categoryCodes(cps[0]).includes('second-line-systemic');
}

// Switch the patient's progression on (the manifest's Observation) or off
// (the same Observation with a code the adapter does not ask for): either
// way a change to the patient's data that changes the decision.
async function setProgression(on) {
  const body = JSON.parse(JSON.stringify(progression));
  if (!on) body.code = { coding: [{ system: 'http://loinc.org', code: '8302-2' }] };
  let r;
  if (obsId === null) {
    r = await h.fhir(srv.base, 'POST', 'Observation', body);
    assert.equal(r.status, 201, r.text);
    obsId = r.json.id;
  } else {
    r = await h.fhir(srv.base, 'PUT', `Observation/${obsId}`, { ...body, id: obsId });
    assert.equal(r.status, 200, r.text);
  }
}

async function setOffset(offset) {
  const r = offset
    ? await h.fhir(srv.base, 'POST', `${admin()}/$test/instant-offset`, { offset })
    : await h.fhir(srv.base, 'DELETE', `${admin()}/$test/instant-offset`);
  assert.equal(r.status, 200, r.text);
}

const noOverlap = () => config('no-overlap', { daemon: { overlap_s: 0 } });

for (const offset of ['+02:00', '-05:00']) {
  test(`a server reporting instants in ${offset}: the change just after the watermark is seen`, async () => {
    await setOffset(offset);
    try {
      // the server really answers in that zone
      const p = await h.fhir(srv.base, 'GET', `Patient/${pid}`);
      assert.ok(p.json.meta.lastUpdated.endsWith(offset), p.json.meta.lastUpdated);
      const state = path.join(work, `offset${offset.slice(0, 3)}.state`);
      const first = cycle(state, noOverlap());
      assert.equal(first.status, 0, first.stderr);
      const wm = watermark(state);
      const was = await secondLine();
      // a change now: within the two hours after the watermark
      await setProgression(!was);
      const r = cycle(state, noOverlap());
      assert.equal(r.status, 0, r.stderr);
      const s = summary(r.stderr);
      assert.equal(s.updated, 1, `the changed patient is decided again:\n${r.stderr}`);
      assert.equal(await secondLine(), !was);
      assert.ok(Date.parse(watermark(state)) >= Date.parse(wm), 'the watermark never goes back');
      // stored as the same instant, in UTC
      assert.match(wm, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    } finally {
      await setOffset(null);
    }
  });
}

test('a patient whose fetch fails past the retry budget keeps the watermark; the next cycle decides it', async () => {
  const state = path.join(work, 'failed.state');
  const cfg = config('failing', { daemon: { overlap_s: 0 }, fhir: { retry_max_attempts: 2, retry_base_ms: 1, retry_max_ms: 5 } });
  const first = cycle(state, cfg);
  assert.equal(first.status, 0, first.stderr);
  const wm = watermark(state);
  const was = await secondLine();
  // strictly after the watermark
  await new Promise((res) => setTimeout(res, 20));
  await setProgression(!was);
  // every request naming the patient fails (the batch fetch, or the searches)
  let r = await h.fhir(srv.base, 'POST', `${admin()}/$test/fault`, { match: pid, status: 503, count: -1 });
  assert.equal(r.status, 200, r.text);
  let c;
  try {
    c = cycle(state, cfg);
  } finally {
    await fetch(`${admin()}/$test/fault`, { method: 'DELETE' });
  }
  assert.notEqual(c.status, 0, 'a failed patient fails the cycle');
  assert.equal(summary(c.stderr).failed, 1, c.stderr);
  assert.equal(watermark(state), wm, 'the watermark did not move past the failed patient');
  assert.equal(await secondLine(), was, 'nothing was written for the failed patient');
  // the server is well again: the next cycle decides the patient
  r = cycle(state, cfg);
  assert.equal(r.status, 0, r.stderr);
  const s = summary(r.stderr);
  assert.equal(s.failed, 0);
  assert.equal(s.updated, 1, r.stderr);
  assert.equal(await secondLine(), !was);
});

test('a backlog of 10 x page_size x max_pages is worked off over cycles', async () => {
  const pageSize = 5;
  // a patient of the synthetic set has at most 14 Observations: its own
  // fetch fits in these pages, the change walk does not
  const maxPages = 3;
  const state = path.join(work, 'backlog.state');
  // the first cycle (the cohort) with the default paging
  const first = cycle(state, noOverlap());
  assert.equal(first.status, 0, first.stderr);
  const wm = watermark(state);
  const was = await secondLine();
  await new Promise((res) => setTimeout(res, 20));
  // 10 x 5 x 3 = 150 changed Observations over every patient, then, last
  // (the newest change of the backlog), the progression switch
  const ids = (await h.searchAll(srv.base, 'Patient?_count=200')).map((p) => p.id).filter((id) => id !== pid);
  const backlog = 10 * pageSize * maxPages;
  for (let i = 0; i < backlog; i++) {
    const r = await h.fhir(srv.base, 'POST', 'Observation', {
      resourceType: 'Observation',
      status: 'final',
      code: { coding: [{ system: 'http://loinc.org', code: '29463-7' }] },
      subject: { reference: `Patient/${ids[i % ids.length]}` },
      valueQuantity: { value: 60 + (i % 30), unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg' },
    });
    assert.equal(r.status, 201, r.text);
  }
  await setProgression(!was);
  const cfg = config('small-pages', { daemon: { overlap_s: 0 }, fhir: { page_size: pageSize, max_pages: maxPages } });
  let cycles = 0;
  let seen = 0;
  let resumed = 0;
  for (; cycles < 60; cycles++) {
    const r = cycle(state, cfg);
    assert.equal(r.status, 0, `cycle ${cycles + 1} failed:\n${r.stderr}`);
    assert.doesNotMatch(r.stderr, /more than \d+ pages/);
    const s = summary(r.stderr);
    assert.equal(s.failed, 0);
    seen += s.seen;
    if (/the next cycle resumes at/.test(r.stderr)) {
      resumed++;
      continue;
    }
    break;
  }
  cycles++;
  // more than one cycle was needed, each bounded by its pages, and the end
  // was reached: the newest change of the backlog was decided
  assert.ok(resumed >= 9, `the backlog took ${cycles} cycle(s), resumed ${resumed} time(s)`);
  assert.ok(cycles < 60, 'the backlog was worked off');
  assert.ok(seen >= ids.length, `every changed patient was evaluated (${seen} evaluations)`);
  assert.equal(await secondLine(), !was, 'the newest change of the backlog was decided');
  assert.ok(Date.parse(watermark(state)) > Date.parse(wm), 'the watermark moved to the end of the backlog');
  // and the next cycle finds nothing left
  const r = cycle(state, cfg);
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /the next cycle resumes at/);
  console.log(`# backlog of ${backlog} changes: ${cycles} cycle(s), ${seen} patient evaluations`);
});

test('two --shard replicas of the daemon share a page of changes: each patient once, no crash', async () => {
  const states = [0, 1].map((k) => path.join(work, `shard${k}.state`));
  const cfg = noOverlap();
  const run = (k) => h.runAdapter(['run', '--once', '--shard', `${k}/2`, '--config', cfg,
    '--base-url', srv.base, '--state', states[k]]);
  for (const k of [0, 1]) {
    const r = run(k);
    assert.equal(r.status, 0, r.stderr);
  }
  const was = await secondLine();
  await new Promise((res) => setTimeout(res, 20));
  // one page of changes naming patients of both shards
  const ids = (await again(() => h.searchAll(srv.base, 'Patient?_count=200'))).map((p) => p.id).slice(0, 12);
  for (const id of ids) {
    const r = await h.fhir(srv.base, 'POST', 'Observation', {
      resourceType: 'Observation',
      status: 'final',
      code: { coding: [{ system: 'http://loinc.org', code: '29463-7' }] },
      subject: { reference: `Patient/${id}` },
      valueQuantity: { value: 70, unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg' },
    });
    assert.equal(r.status, 201, r.text);
  }
  await setProgression(!was);
  const seen = [];
  let updated = 0;
  for (const k of [0, 1]) {
    const r = run(k);
    assert.equal(r.status, 0, `shard ${k}:\n${r.stderr}`);
    const s = summary(r.stderr);
    seen.push(s.seen);
    updated += s.updated;
  }
  // every changed patient is evaluated by exactly one replica (plus, at
  // most, the one whose change carries the watermark's instant: ge re-reads it)
  const changed = new Set([...ids, pid]).size;
  assert.ok(seen[0] + seen[1] >= changed && seen[0] + seen[1] <= changed + 1, `seen ${seen} of ${changed}`);
  assert.ok(seen[0] > 0 && seen[1] > 0, `both shards had patients in the page (${seen})`);
  assert.equal(updated, 1);
  assert.equal(await secondLine(), !was);
});
