// Issue #5, done means 1: a sync of 500 patients is killed with SIGKILL at
// random moments at least 10 times and restarted each time; at the end every
// eligible patient has exactly one current CarePlan and RiskAssessment with
// the manifest's content, none is missing, and the outbox and dead letters
// are empty.  Also: SIGTERM mid-sync exits 0 ... and the next start resumes
// without a duplicate (done means 5), and a second instance on the same state
// file refuses to start.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./helpers');
const R = require('./robust-lib');

const COUNT = 500;
const KILLS = 10;
let env;
let state;

test.before(() => {
  env = R.loadRandom(COUNT);
  state = path.join(h.tmpdir('crash'), 'state.db');
});

test.after(() => h.stopServer(env && env.srv));

// seeded, so a failure can be reproduced
let seed = 12345;
function rand() {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// CarePlan writes the server has received (on their own or in a transaction)
async function serverPuts() {
  const admin = env.srv.base.replace(/\/fhir\/R4$/, '');
  const st = (await h.fhir(env.srv.base, 'GET', `${admin}/$test/stats`)).json;
  return (st.requests.PUT?.CarePlan || 0) + (st.entries.PUT?.CarePlan || 0);
}

// Kill runs of `args` until KILLS landed, then one run to the end; verify.
// A kill "mid-write" left a decision in the outbox (writes one by one) or
// came after the server took a CarePlan write the adapter never saw
// answered (a transaction in flight).
async function killAndRestart(args, stateFile, canonical) {
  let kills = 0;
  let runs = 0;
  let killsMidWrite = 0;
  while (kills < KILLS) {
    const before = await serverPuts();
    const run = R.spawnAdapter([...args, '--log-level', 'info']);
    runs++;
    const wait = 150 + Math.floor(rand() * 1500);
    const exited = await Promise.race([run.done.then(() => true), sleep(wait).then(() => false)]);
    if (!exited) {
      run.child.kill('SIGKILL');
      const r = await run.done;
      if (r.signal !== 'SIGKILL') {
        // it ended on its own between the timer and the kill (its pipes
        // were still closing): a complete run, not a kill
        assert.equal(r.status, 0, r.stderr.slice(-2000));
        continue;
      }
      kills++;
      const answered = (r.stderr.match(/, (created|updated)$/gm) || []).length;
      if (R.status(stateFile).outbox > 0 || (await serverPuts()) - before > answered) killsMidWrite++;
    }
    assert.ok(runs < KILLS * 4, 'the kills land');
  }
  const last = await R.spawnAdapter(args).done;
  assert.equal(last.status, 0, last.stderr.slice(-2000));
  assert.equal(R.summary(last.stdout, 'failed'), 0);
  const { eligible } = await R.verifyExactlyOnce(env.srv.base, env.manifest, canonical);
  assert.ok(eligible > COUNT / 2, `many eligible patients (${eligible})`);
  const st = R.status(stateFile);
  assert.equal(st.outbox, 0, st.text);
  assert.equal(st.dead, 0, st.text);
  assert.ok(killsMidWrite > 0, 'at least one kill landed between deciding and writing');
  console.log(`# crash: ${kills} SIGKILLs over ${runs} runs (${killsMidWrite} with a write in ` +
    `flight); ${eligible} eligible patients verified`);
}

test('SIGKILL at random moments, restart, exactly one plan per eligible patient', async () => {
  await killAndRestart(['sync', '--base-url', env.srv.base, '--state', state], state);
});

test('the same with CarePlan, RiskAssessment and Provenance written one by one', async () => {
  const canonical = 'https://separate.example.org/fhir';
  const dir = h.tmpdir('crash-sep');
  const cfg = path.join(dir, 'config.json');
  const st = path.join(dir, 'state.db');
  fs.writeFileSync(cfg, JSON.stringify({ output: { canonical_base: canonical },
    fhir: { transaction_write: false } }));
  await killAndRestart(['sync', '--config', cfg, '--base-url', env.srv.base, '--state', st], st,
    canonical);
});

test('a second instance on the same state file refuses to start', async () => {
  const first = R.spawnAdapter(['run', '--base-url', env.srv.base, '--state', state]);
  await sleep(500);
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
  // Another output base: every patient needs writes again, so the signal
  // lands in the write path.
  const canonical = 'https://term.example.org/fhir';
  const dir = h.tmpdir('term');
  const cfg = path.join(dir, 'config.json');
  fs.writeFileSync(cfg, JSON.stringify({ output: { canonical_base: canonical } }));
  const st2 = path.join(dir, 'state.db');
  const args = ['sync', '--config', cfg, '--base-url', env.srv.base, '--state', st2];
  const run = R.spawnAdapter(args);
  await sleep(2000);
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
