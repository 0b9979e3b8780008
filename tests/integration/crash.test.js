// Crash safety.  The write path is stopped dead (SIGKILL, from a fault point
// compiled into build/dnmbc-adapter-faults: adapter/faultpoint.h) at each of
// its named steps in turn, in both write modes, and the next run must finish
// the job: every eligible patient ends with exactly one current CarePlan and
// RiskAssessment, one Provenance per plan version, nothing lost, nothing left
// in the outbox or the dead letters.  Where the kill lands is chosen, not
// left to a timer, so each run proves the same thing every time.  Also:
// SIGTERM mid-sync exits 0 after the patient in flight and the next start
// resumes without a duplicate, a second instance on the same state file
// refuses to start, and SIGHUP with a broken configuration keeps the old one.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const h = require('./helpers');
const R = require('./robust-lib');

const FAULT_BIN = path.join(h.ROOT, 'build', 'dnmbc-adapter-faults');
const COUNT = 500;
let env;
let small;
let state;

test.before(() => {
  assert.ok(fs.existsSync(FAULT_BIN), `${FAULT_BIN} is built (make build-tests)`);
  small = R.loadRandom(20, '77');
  state = path.join(h.tmpdir('crash'), 'state.db');
});

// The 500-patient server, loaded when a test first needs it (the kill
// tests do not: they can be run on their own, e.g. repeatedly).
function big() {
  if (!env) env = R.loadRandom(COUNT);
  return env;
}

test.after(() => {
  h.stopServer(env && env.srv);
  h.stopServer(small && small.srv);
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The fault-point build, run to its end or to its kill.
function runFaulty(args, step) {
  const r = spawnSync(FAULT_BIN, args, { cwd: h.ROOT, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, DNMBC_LOG_LEVEL: '', DNMBC_FAULT_POINT: step } });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

// Poll (no timing assumption: generous limit) until the child's stderr matches.
async function waitFor(run, re, what) {
  for (let i = 0; i < 1200 && !re.test(run.stderr()) && run.child.exitCode === null; i++) await sleep(100);
  assert.match(run.stderr(), re, what);
}

// The write steps (adapter/sync.c FAULT_POINT), per write mode, and whether
// a kill there must leave the decision in the outbox: written one by one,
// the decision is committed before the first write and done only with the
// state record.  A transaction cannot be left half done, but its decision is
// durable in the outbox before it is sent too (nothing reaches the server
// that the state could not record), so a kill before the state record
// leaves it there for the next run to finish.
const STEPS = {
  transaction: [
    ['tx-sending', 1],
    ['tx-answered', 1],
    ['state-committed', 0],
  ],
  separate: [
    ['outbox-committed', 1],
    ['careplan-written', 1],
    ['riskassessment-written', 1],
    ['provenance-written', 1],
    ['state-committed', 0],
  ],
};

// Every Provenance of ours names the exact version it is the record of.
async function provenanceTargetsVersioned(base, canonical) {
  const plans = new Set();
  for (const type of ['CarePlan', 'RiskAssessment']) {
    for (const rs of Object.values(await R.ours(base, type, canonical))) for (const x of rs) plans.add(`${type}/${x.id}`);
  }
  let n = 0;
  for (const p of await h.searchAll(base, 'Provenance?_count=1000')) {
    const refs = (p.target || []).map((t) => String(t.reference || ''));
    if (!refs.some((r) => plans.has(r.replace(/\/_history\/.*$/, '')))) continue;
    n++;
    for (const r of refs) assert.match(r, /^(CarePlan|RiskAssessment)\/[^/]+\/_history\/[^/]+$/, `Provenance/${p.id} target ${r} is versioned`);
  }
  return n;
}

for (const [mode, steps] of Object.entries(STEPS)) {
  for (const [step, outbox] of steps) {
    test(`SIGKILL at write step ${step} (${mode}), restart: exactly one plan and one Provenance per version`, async () => {
      const canonical = `https://kill-${mode}-${step}.example.org/fhir`;
      const dir = h.tmpdir(`kill-${step}`);
      const cfg = path.join(dir, 'config.json');
      const st = path.join(dir, 'state.db');
      fs.writeFileSync(cfg, JSON.stringify({ output: { canonical_base: canonical },
        fhir: { transaction_write: mode === 'transaction', concurrency: 1 } }));
      const args = ['sync', '--config', cfg, '--base-url', small.srv.base, '--state', st, '--log-level', 'info'];
      // killed the third time the step is reached: two patients are done
      const killed = runFaulty(args, `${step}:3`);
      assert.equal(killed.signal, 'SIGKILL', `the step was reached and killed the run: ${killed.stderr.slice(-1500)}`);
      assert.match(killed.stderr, mode === 'transaction' ? /write: CarePlan, RiskAssessment and Provenance in one transaction/
        : /write: three requests/);
      const after = R.status(st);
      assert.equal(after.outbox, outbox, `outbox after a kill at ${step}: ${after.text}`);
      const rest = await R.spawnAdapter(args).done;
      assert.equal(rest.status, 0, rest.stderr.slice(-2000));
      assert.equal(R.summary(rest.stdout, 'failed'), 0);
      const { eligible } = await R.verifyExactlyOnce(small.srv.base, small.manifest, canonical);
      assert.ok(eligible > 5, `eligible patients: ${eligible}`);
      if (mode === 'separate') assert.equal(await provenanceTargetsVersioned(small.srv.base, canonical), eligible);
      const end = R.status(st);
      assert.equal(end.outbox, 0, end.text);
      assert.equal(end.dead, 0, end.text);
    });
  }
}

// Revocation: patients with plans who are no longer eligible (their
// primary recoded) have both withdrawn, with one Provenance per withdrawn
// version, however the run was interrupted.  Each step takes two patients
// of its own (these tests come last on the small server).
const REVOKE_STEPS = ['revoke-outbox-committed', 'revoke-written', 'revoke-provenance-written'];
REVOKE_STEPS.forEach((step, k) => {
  test(`SIGKILL at revocation step ${step}, restart: both withdrawn, one Provenance per version`, async () => {
    const canonical = `https://kill-${step}.example.org/fhir`;
    const dir = h.tmpdir(`kill-${step}`);
    const cfg = path.join(dir, 'config.json');
    const st = path.join(dir, 'state.db');
    fs.writeFileSync(cfg, JSON.stringify({ output: { canonical_base: canonical }, fhir: { concurrency: 1 } }));
    const args = ['sync', '--config', cfg, '--base-url', small.srv.base, '--state', st, '--log-level', 'info'];
    const first = h.runAdapter(args);
    assert.equal(first.status, 0, first.stderr.slice(-2000));
    const ids = await R.patientIds(small.srv.base);
    const eligible = small.manifest.filter((m) => m.expected.recommendation !== 'not-applicable');
    const pids = eligible.slice(2 * k, 2 * k + 2).map((m) => ids[m.identifier.value]);
    assert.equal(pids.length, 2);
    // the breast primary recoded as a malignant neoplasm of no stated site:
    // still in the cohort, no longer a breast cancer patient
    for (const pid of pids) {
      for (const c of await h.searchAll(small.srv.base, `Condition?subject=Patient/${pid}`)) {
        const bare = { ...c, code: { coding: [{ system: 'http://snomed.info/sct', code: '363346000' }] } };
        delete bare.bodySite;
        delete bare.meta;
        assert.equal((await h.fhir(small.srv.base, 'PUT', `Condition/${c.id}`, bare)).status, 200);
      }
    }
    const killed = runFaulty(args, `${step}:1`);
    assert.equal(killed.signal, 'SIGKILL', `the step was reached and killed the run: ${killed.stderr.slice(-1500)}`);
    assert.equal(R.status(st).outbox, 1, 'the revocation waits in the outbox');
    const rest = h.runAdapter(args);
    assert.equal(rest.status, 0, rest.stderr.slice(-2000));
    const cps = await R.ours(small.srv.base, 'CarePlan', canonical);
    const ras = await R.ours(small.srv.base, 'RiskAssessment', canonical);
    const prov = {};
    for (const p of await h.searchAll(small.srv.base, 'Provenance?_count=1000')) {
      for (const t of p.target || []) {
        const key = t.reference.replace(/\/_history\/.*$/, '');
        prov[key] = (prov[key] || 0) + 1;
      }
    }
    for (const pid of pids) {
      for (const [type, all, status] of [['CarePlan', cps, 'revoked'], ['RiskAssessment', ras, 'cancelled']]) {
        assert.equal((all[pid] || []).length, 1, `${pid}: one ${type}`);
        const res = all[pid][0];
        assert.equal(res.status, status, `${pid}: ${type} withdrawn`);
        const hist = (await h.fhir(small.srv.base, 'GET', `${type}/${res.id}/_history`)).json.entry.length;
        assert.equal(prov[`${type}/${res.id}`] || 0, hist, `${pid}: one Provenance per ${type} version`);
      }
    }
    const end = R.status(st);
    assert.equal(end.outbox, 0, end.text);
    assert.equal(end.dead, 0, end.text);
  });
});

test('a second instance on the same state file refuses to start', async () => {
  big();
  const first = R.spawnAdapter(['run', '--base-url', env.srv.base, '--state', state, '--log-level', 'info']);
  // the state file is open (and locked) before the first cycle's write mode is chosen
  await waitFor(first, /write: /, 'the first instance is running');
  const second = h.runAdapter(['sync', '--base-url', env.srv.base, '--state', state]);
  assert.equal(second.status, 2);
  assert.match(second.stderr, /in use by another dnmbc-adapter \(pid \d+\)/);
  // status is read-only and works alongside
  assert.equal(R.status(state).dead, 0);
  first.child.kill('SIGTERM');
  const r = await first.done;
  assert.equal(r.status, 0, r.stderr.slice(-1000));
});

test('SIGTERM mid-sync exits 0 after the patient in flight; the next start resumes without a duplicate', async () => {
  big();
  // Another output base: every patient needs writes again, so the signal
  // lands in the write path.
  const canonical = 'https://term.example.org/fhir';
  const dir = h.tmpdir('term');
  const cfg = path.join(dir, 'config.json');
  fs.writeFileSync(cfg, JSON.stringify({ output: { canonical_base: canonical } }));
  const st2 = path.join(dir, 'state.db');
  const args = ['sync', '--config', cfg, '--base-url', env.srv.base, '--state', st2];
  const run = R.spawnAdapter([...args, '--log-level', 'info']);
  await waitFor(run, /, created$/m, 'it is writing');
  run.child.kill('SIGTERM');
  const r = await run.done;
  assert.equal(r.signal, null, 'exited by itself');
  assert.equal(r.status, 0, `clean exit 0, got ${r.status}: ${r.stderr.slice(-500)}`);
  assert.ok(R.summary(r.stdout, 'created') > 0, 'it was writing when stopped');
  assert.equal(R.status(st2).outbox, 0, 'the patient in flight was finished');
  const next = await R.spawnAdapter(args).done;
  assert.equal(next.status, 0, next.stderr.slice(-1000));
  assert.ok(R.summary(next.stdout, 'unchanged') >= R.summary(r.stdout, 'created'),
    'what the first run wrote is not written again');
  await R.verifyExactlyOnce(env.srv.base, env.manifest, canonical);
  assert.equal(R.status(st2).outbox, 0);
});

test('SIGHUP with a broken configuration keeps the daemon running on the old one', async () => {
  big();
  const dir = h.tmpdir('hup');
  const cfg = path.join(dir, 'config.json');
  // overlap 0: each cycle looks only at what changed since the last one
  const good = { daemon: { interval_s: 1, overlap_s: 0 }, log: { level: 'info' } };
  fs.writeFileSync(cfg, JSON.stringify(good));
  const d = R.spawnAdapter(['run', '--config', cfg, '--base-url', env.srv.base, '--state',
    path.join(dir, 'state.db')]);
  const waitFor = async (re, what) => {
    for (let i = 0; i < 600 && !re.test(d.stderr()); i++) await sleep(100);
    assert.match(d.stderr(), re, what);
  };
  try {
    await hup(d, cfg, good, waitFor);
  } finally {
    if (d.child.exitCode === null) d.child.kill('SIGKILL');
  }
});

async function hup(d, cfg, good, waitFor) {
  await waitFor(/cycle done/, 'first cycle');
  fs.writeFileSync(cfg, '{"daemon": {"interval_s": 1, "overlap_s": 0}, "fhir": {"page_size": 0}}');
  d.child.kill('SIGHUP');
  await waitFor(/reload failed, keeping the running configuration: .*fhir\.page_size/, 'refused');
  const cycles = (d.stderr().match(/cycle done/g) || []).length;
  await waitFor(new RegExp(`(cycle done[\\s\\S]*){${cycles + 1}}`), 'still cycling on the old one');
  assert.equal(d.child.exitCode, null, 'still running');
  fs.writeFileSync(cfg, JSON.stringify({ ...good, fhir: { page_size: 50 } }));
  d.child.kill('SIGHUP');
  await waitFor(/SIGHUP: configuration and \d+ mapping entries reloaded/, 'reloaded');
  d.child.kill('SIGTERM');
  const r = await d.done;
  assert.equal(r.status, 0, r.stderr.slice(-1000));
}
