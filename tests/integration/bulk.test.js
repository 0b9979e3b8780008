// `sync --bulk` end to end against the test FHIR server's $export
// (tests/fhir-server/lib/bulk.js): the plans equal the REST sync's, an
// export `_since` the last one syncs only the patients that changed, every
// fault the server injects is survived, and a kill -9 while polling,
// downloading or writing resumes the same job (no new kick-off) and ends
// with every plan right and none duplicated.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn } = require('node:child_process');
const h = require('./helpers');
const { adminOf, settled } = require('./bulk-lib');

let srv;
let synth;

const admin = (method, p, body) => adminOf(srv)(method, p, body);

async function reload() {
  await admin('POST', '/$test/reset');
  h.loadSynth(srv.base, synth.dir);
  await admin('DELETE', '/$test/stats'); // the loader's writes are not the adapter's
}

// h.fhir / h.searchAll, once more on a kept-alive socket the server closed
// while an adapter run took its time
async function again(fn) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= 3 || !/fetch failed/.test(String(err && err.message))) throw err;
    }
  }
}
const searchAll = (q) => again(() => h.searchAll(srv.base, q));
const fhirReq = (method, url, body) => again(() => h.fhir(srv.base, method, url, body));

function newState() {
  return path.join(h.tmpdir('bulk-state'), 'adapter.state');
}

function summary(stdout) {
  const n = (label) => {
    const m = new RegExp(`^\\s*${label}\\s+(\\d+)$`, 'm').exec(stdout);
    return m ? Number(m[1]) : NaN;
  };
  return { seen: n('patients seen'), created: n('created'), updated: n('updated'), unchanged: n('unchanged'), revoked: n('revoked'), failed: n('failed') };
}

function sync(state, args = []) {
  const r = h.runAdapter(['sync', '--base-url', srv.base, '--state', state, ...args]);
  return { ...r, sum: summary(r.stdout || '') };
}

// Every CarePlan and RiskAssessment of ours: Type/id -> versionId, and the
// largest number of CarePlans one patient has (1 when none is duplicated).
async function plans() {
  const versions = {};
  const perPatient = {};
  for (const t of ['CarePlan', 'RiskAssessment']) {
    for (const r of await searchAll(`${t}?_count=500`)) {
      versions[`${t}/${r.id}`] = r.meta.versionId;
      if (t === 'CarePlan') {
        const id = (r.identifier || []).find((i) => i.system === h.idSystem('CarePlan'));
        if (id) perPatient[id.value] = (perPatient[id.value] || 0) + 1;
      }
    }
  }
  return { versions, maxPerPatient: Math.max(0, ...Object.values(perPatient)), patients: Object.keys(perPatient).length };
}

// Plans right and none duplicated: a REST sync from a fresh state finds
// nothing to change.
async function assertPlansRight(expectedPlans) {
  const before = await plans();
  assert.equal(before.maxPerPatient, 1, 'no patient has two CarePlans');
  assert.equal(before.patients, expectedPlans);
  const r = sync(newState());
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.sum.created + r.sum.updated + r.sum.revoked, 0, r.stdout);
  assert.deepEqual((await plans()).versions, before.versions);
}

// Starts the adapter, waits for cond(server report) and kills it with
// SIGKILL; resolves once it is gone.
async function killWhen(args, cond) {
  const child = spawn(h.BIN, ['sync', '--base-url', srv.base, ...args], { stdio: 'ignore' });
  const exited = new Promise((r) => child.once('exit', r));
  let done = false;
  child.once('exit', () => (done = true));
  for (let i = 0; i < 1200 && !done; i++) {
    if (await cond()) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(!done, 'the adapter was still running at the kill point');
  child.kill('SIGKILL');
  await exited;
  await settled(admin);
}

let restPlans; // plans the REST sync made on the loaded cohort

test.before(async () => {
  srv = h.startServer();
  synth = h.generateSynth();
  await reload();
});

test.after(() => h.stopServer(srv));

test('a bulk backfill gives exactly the plans of the REST sync, both ways round', async () => {
  // REST first, then bulk from a fresh state: nothing to change
  const rest = sync(newState());
  assert.equal(rest.status, 0, rest.stderr);
  assert.ok(rest.sum.created > 5);
  restPlans = rest.sum.created;
  const v0 = (await plans()).versions;
  const bulk = sync(newState(), ['--bulk']);
  assert.equal(bulk.status, 0, bulk.stderr);
  assert.equal(bulk.sum.unchanged, restPlans, bulk.stdout);
  assert.equal(bulk.sum.created + bulk.sum.updated + bulk.sum.revoked + bulk.sum.failed, 0);
  assert.deepEqual((await plans()).versions, v0);
  // bulk first on a fresh server copy, then REST finds nothing to change
  await reload();
  const b2 = sync(newState(), ['--bulk']);
  assert.equal(b2.status, 0, b2.stderr);
  assert.equal(b2.sum.created, restPlans);
  await assertPlansRight(restPlans);
  const report = await admin('GET', '/$test/bulk');
  assert.deepEqual(report.jobs, [], 'the status URL was deleted when done');
  // logs name patients by tag only (README, Logs and privacy)
  for (const p of await searchAll('Patient?_count=500')) {
    assert.ok(!bulk.stderr.includes(p.id) && !b2.stderr.includes(p.id), 'no patient id in the bulk logs');
  }
});

test('a backfill looks up each patient\'s earlier plans in one batch, as REST does', async () => {
  // the inputs come in the export; the CarePlan and RiskAssessment of ours
  // go in one batch of two identifier searches per patient, not two requests
  await reload();
  const b = sync(newState(), ['--bulk']);
  assert.equal(b.status, 0, b.stderr);
  assert.equal(b.sum.created, restPlans);
  const st = await admin('GET', '/$test/stats');
  const get = st.requests.GET || {};
  assert.equal(get.CarePlan || 0, 0, 'no CarePlan search of its own: ' + JSON.stringify(st));
  assert.equal(get.RiskAssessment || 0, 0, 'no RiskAssessment search of its own');
  assert.equal(st.entries.GET.CarePlan, b.sum.seen, 'one CarePlan search per patient, in a batch');
  assert.equal(st.entries.GET.RiskAssessment, b.sum.seen);
  // a batch and a transaction per written patient, a batch per other one
  assert.equal(st.requests.POST.Bundle, b.sum.seen + b.sum.created, JSON.stringify(st.requests));
  await assertPlansRight(restPlans);
});

test('an export _since the last one syncs only the patients that changed', async () => {
  await reload();
  const state = newState();
  assert.equal(sync(state, ['--bulk']).status, 0);
  // one patient edited, one Condition of another patient deleted
  const pts = await searchAll('Patient?_count=500');
  const edited = pts[0];
  edited.name = [{ family: 'Changed', given: ['Bulk'] }];
  assert.equal((await fhirReq('PUT', `Patient/${edited.id}`, edited)).status, 200);
  const conds = await searchAll('Condition?_count=500');
  const victim = conds.find((c) => c.subject.reference !== `Patient/${edited.id}`);
  assert.equal((await fhirReq('DELETE', `Condition/${victim.id}`)).status, 200);
  const r = sync(state, ['--bulk']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.sum.seen, 2, r.stdout);
  // and what it did is what a full REST sync does
  const again = sync(state, ['--bulk']);
  assert.equal(again.sum.seen, 0, again.stdout);
  const plansNow = (await plans()).patients;
  const before = await plans();
  const full = sync(newState());
  assert.equal(full.status, 0, full.stderr);
  assert.equal(full.sum.created + full.sum.updated, 0, full.stdout);
  assert.deepEqual((await plans()).versions, before.versions);
  assert.ok(plansNow >= restPlans - 1);
});

test('every injected fault is survived: 429 on polling, 503, truncation, expired URLs', async () => {
  await reload();
  await admin('POST', '/$test/bulk', {
    linesPerFile: 40, poll429: 1, poll429RetryAfter: 0, download5xx: 2, truncate: 2, expire: 2, pollsBeforeReady: 2, badLine: 1,
  });
  const r = sync(newState(), ['--bulk']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /export in progress \(\d+% done\)/, 'X-Progress logged');
  assert.match(r.stderr, /file \d+ \(\w+\) line 2: .*; line skipped/, 'the unreadable line named and skipped');
  assert.equal(r.sum.created, restPlans);
  const rep = await admin('GET', '/$test/bulk');
  assert.equal(rep.counters.kickoffs, 1);
  for (const k of ['poll429', 'download5xx', 'truncate', 'expire']) assert.equal(rep.config[k], 0, `${k} fault used up`);
  await assertPlansRight(restPlans);
});

test('subjects given as absolute URLs in the export files: the same plans as REST', async () => {
  await reload();
  await admin('POST', '/$test/bulk', { absoluteSubjects: true });
  const r = sync(newState(), ['--bulk']);
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /is not a Patient reference/);
  assert.equal(r.sum.created, restPlans, r.stdout);
  await assertPlansRight(restPlans);
});

test('polling stops at bulk.poll_max_s, keeps the job, and the next run polls it again', async () => {
  const fs = require('node:fs');
  await reload();
  // "Retry-After: 0" for ever: the cap must still be reached
  await admin('POST', '/$test/bulk', { holdPolls: true, retryAfter: 0 });
  const state = newState();
  const cfg = path.join(path.dirname(state), 'cap.json');
  fs.writeFileSync(cfg, JSON.stringify({ bulk: { poll_max_s: 2, poll_interval_max_s: 1 } }));
  const r = h.runAdapter(['sync', '-c', cfg, '--base-url', srv.base, '--state', state, '--bulk']);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /not ready within bulk\.poll_max_s \(2 s\); the job is kept/);
  const polled = (await admin('GET', '/$test/bulk')).counters.polls;
  assert.ok(polled >= 2 && polled < 100, `polled ${polled} times, not in a busy loop`);
  await admin('POST', '/$test/bulk', { holdPolls: false });
  const again2 = sync(state, ['--bulk']);
  assert.equal(again2.status, 0, again2.stderr);
  assert.match(again2.stderr, /resuming the export/);
  assert.equal((await admin('GET', '/$test/bulk')).counters.kickoffs, 1);
  await assertPlansRight(restPlans);
});

const killPoints = [
  { name: 'polling', setup: { holdPolls: true }, when: (rep) => rep.counters.polls >= 2, release: { holdPolls: false } },
  { name: 'download (after 1 file)', setup: { linesPerFile: 30, stallDownloadsAfter: 1 }, when: (rep) => rep.counters.downloads >= 2, release: { stallDownloadsAfter: -1 } },
  { name: 'download (after 5 files)', setup: { linesPerFile: 30, stallDownloadsAfter: 5 }, when: (rep) => rep.counters.downloads >= 6, release: { stallDownloadsAfter: -1 } },
  { name: 'polling (first poll)', setup: { holdPolls: true }, when: (rep) => rep.counters.polls >= 1, release: { holdPolls: false } },
  { name: 'download (after 3 files)', setup: { linesPerFile: 30, stallDownloadsAfter: 3 }, when: (rep) => rep.counters.downloads >= 4, release: { stallDownloadsAfter: -1 } },
  { name: 'writing (after 1 patient)', writesAfter: 1 * 3 },
  { name: 'writing (after 2 patients)', writesAfter: 2 * 3 },
  { name: 'writing (after 5 patients)', writesAfter: 5 * 3 },
  { name: 'writing (after 9 patients)', writesAfter: 9 * 3 },
  { name: 'writing (after 14 patients)', writesAfter: 14 * 3 },
  { name: 'writing (after 20 patients)', writesAfter: 20 * 3 },
];

for (const kp of killPoints) {
  test(`kill -9 while ${kp.name} resumes the same job with every plan right`, async () => {
    await reload();
    const state = newState();
    if (kp.setup) await admin('POST', '/$test/bulk', kp.setup);
    if (kp.writesAfter) {
      // each transaction waits a little, so that the kill lands inside one
      await admin('POST', '/$test/fault', { method: 'POST', resourceType: 'Bundle', delayMs: 150, count: -1 });
      await killWhen(['--state', state, '--bulk'], async () => (await admin('GET', '/$test/stats')).writes >= kp.writesAfter);
      await admin('DELETE', '/$test/fault');
    } else {
      await killWhen(['--state', state, '--bulk'], async () => kp.when(await admin('GET', '/$test/bulk')));
      await admin('POST', '/$test/bulk', kp.release);
    }
    const r = sync(state, ['--bulk']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /resuming the export/);
    const rep = await admin('GET', '/$test/bulk');
    assert.equal(rep.counters.kickoffs, 1, 'no second kick-off');
    assert.deepEqual(rep.jobs, []);
    await assertPlansRight(restPlans);
  });
}

test('requiresAccessToken: with SMART backend auth the token goes with the status and file requests', async () => {
  const fs = require('node:fs');
  const { execFileSync } = require('node:child_process');
  await reload();
  const work = h.tmpdir('bulk-auth');
  execFileSync(h.BIN, ['keygen', '--alg', 'ES384', '--out', path.join(work, 'k')], { stdio: 'ignore' });
  const dir = h.tmpdir('bulk-oauth');
  const oauth = spawn('node', [path.join(h.ROOT, 'tests/oauth-server/server.mjs'), '--port-file', path.join(dir, 'port'),
    '--resource', srv.base, '--client', `bulk-client=${path.join(work, 'k')}/jwks.json`], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 1800 && !fs.existsSync(path.join(dir, 'port')); i++) await new Promise((r) => setTimeout(r, 50));
    const issuer = `http://127.0.0.1:${fs.readFileSync(path.join(dir, 'port'), 'utf8').trim()}`;
    await admin('POST', '/$test/auth', { issuer, resetCounters: true });
    const r = sync(newState(), ['--bulk', '--auth', 'smart', '--client-id', 'bulk-client',
      '--private-key', path.join(work, 'k', 'private-key.pem')]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.sum.created, restPlans);
    const auth = await admin('GET', '/$test/auth');
    assert.equal(auth.refused, 0, 'every request carried a valid token');
    const rep = await admin('GET', '/$test/bulk');
    assert.ok(rep.counters.downloads >= 3 && rep.counters.polls >= 1);
  } finally {
    await admin('POST', '/$test/auth', { issuer: null });
    oauth.kill('SIGTERM');
  }
});
