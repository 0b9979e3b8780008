// `sync --bulk` killed with SIGKILL at random moments: ten runs, each
// killed once while polling, downloading or writing (each phase at least
// three times), at a moment drawn from a seeded generator: which poll,
// file or write it waits for, and how long after it the kill comes. The
// seed is printed; BULK_KILL_SEED=<n> replays a run. Each resumed run must
// finish the same job (no second kick-off) and leave every plan right:
// the manifest's expected recommendation, one CarePlan and one
// RiskAssessment per patient, one Provenance per version, and the same
// plans as the REST sync of the same server. Each run writes under its
// own output.canonical_base, so one loaded server serves all ten. The
// generator is tests/synth's (xorshift32 seeded from the text).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const h = require('./helpers');
const R = require('./robust-lib');
const { makeRng } = require('../synth/random');
const { adminOf, settled } = require('./bulk-lib');

const SEED = Number(process.env.BULK_KILL_SEED || Math.floor(Math.random() * 2 ** 31));
const RUNS = 10;

let srv;
let synth;
let restPlans; // patient id -> "status codes" of the REST sync's CarePlan

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const admin = (method, p, body) => adminOf(srv)(method, p, body);

function config(dir, canonical, extra = ['--bulk']) {
  const cfg = path.join(dir, 'config.json');
  fs.writeFileSync(cfg, JSON.stringify({ output: { canonical_base: canonical } }));
  return ['sync', '--config', cfg, '--base-url', srv.base, '--state', path.join(dir, 'state.db'), '--log-level', 'info', ...extra];
}

// patient id -> "CarePlan status: category codes" of the plans under canonical
async function planSummary(canonical) {
  const out = {};
  for (const [pid, list] of Object.entries(await R.ours(srv.base, 'CarePlan', canonical))) {
    out[pid] = list.map((c) => `${c.status}: ${h.categoryCodes(c).sort().join(',')}`).sort().join(' | ');
  }
  return out;
}

test.before(async () => {
  srv = h.startServer();
  synth = h.generateSynth();
  h.loadSynth(srv.base, synth.dir);
  const canonical = 'https://bulk-kill-rest.example.org/fhir';
  const r = h.runAdapter(config(h.tmpdir('bulk-kill-rest'), canonical, []));
  assert.equal(r.status, 0, r.stderr);
  restPlans = await planSummary(canonical);
  assert.ok(Object.keys(restPlans).length > 5);
});

test.after(() => h.stopServer(srv));

test(`bulk sync killed at ${RUNS} random moments resumes with every plan right (seed ${SEED})`, async (t) => {
  t.diagnostic(`BULK_KILL_SEED=${SEED}`);
  console.log(`bulk-kill: seed ${SEED} (BULK_KILL_SEED=${SEED} replays it)`);
  const pick = makeRng(`bulk-kill-${SEED}`).int;
  // each phase three times, the tenth run's phase drawn too; in a drawn order
  const phases = ['polling', 'download', 'writing'];
  const plan = [...phases, ...phases, ...phases, phases[pick(0, 2)]];
  for (let i = plan.length - 1; i > 0; i--) {
    const j = pick(0, i);
    [plan[i], plan[j]] = [plan[j], plan[i]];
  }
  for (let run = 0; run < RUNS; run++) {
    const phase = plan[run];
    const canonical = `https://bulk-kill-${run}.example.org/fhir`;
    const args = config(h.tmpdir(`bulk-kill-${run}`), canonical);
    const before = (await admin('GET', '/$test/bulk')).counters;
    const stats0 = await admin('GET', '/$test/stats');
    let when;
    let release = async () => {};
    let what;
    if (phase === 'polling') {
      const polls = pick(1, 3);
      what = `after poll ${polls}`;
      await admin('POST', '/$test/bulk', { holdPolls: true, retryAfter: 0 });
      when = (bulk) => bulk.counters.polls - before.polls >= polls;
      release = () => admin('POST', '/$test/bulk', { holdPolls: false });
    } else if (phase === 'download') {
      const lines = pick(5, 20);
      const files = pick(1, 8);
      what = `after file ${files} (${lines} lines a file)`;
      await admin('POST', '/$test/bulk', { linesPerFile: lines, stallDownloadsAfter: before.downloads + files });
      when = (bulk) => bulk.counters.downloads - before.downloads >= files;
      release = () => admin('POST', '/$test/bulk', { stallDownloadsAfter: -1, linesPerFile: 1000 });
    } else {
      const writes = pick(1, 30);
      what = `after write ${writes}`;
      // requests wait a little, so that the kill can land inside one
      await admin('POST', '/$test/fault', { method: 'POST', resourceType: 'Bundle', delayMs: 100, count: -1 });
      when = async () => (await admin('GET', '/$test/stats')).writes - stats0.writes >= writes;
      release = () => admin('DELETE', '/$test/fault');
    }
    const extraMs = pick(0, 250);
    const child = spawn(h.BIN, args, { stdio: 'ignore' });
    let exited = false;
    const gone = new Promise((r) => child.once('exit', () => { exited = true; r(); }));
    let reached = false;
    for (let i = 0; i < 1200 && !exited && !reached; i++) {
      reached = await when(await admin('GET', '/$test/bulk'));
      if (!reached) await sleep(50);
    }
    assert.ok(reached, `run ${run} (${phase}, ${what}): the moment was reached`);
    await sleep(extraMs);
    assert.ok(!exited, `run ${run} (${phase}, ${what} + ${extraMs} ms): still running at the kill`);
    child.kill('SIGKILL');
    await gone;
    await settled(admin);
    await release();
    t.diagnostic(`run ${run}: killed while ${phase}, ${what} + ${extraMs} ms`);
    const r = h.runAdapter(args);
    assert.equal(r.status, 0, `run ${run}: ${r.stderr.slice(-2000)}`);
    assert.match(r.stderr, /resuming the export/, `run ${run}: the same job resumed`);
    const after = await admin('GET', '/$test/bulk');
    assert.equal(after.counters.kickoffs - before.kickoffs, 1, `run ${run}: no second kick-off`);
    assert.deepEqual(after.jobs, [], `run ${run}: the status URL deleted when done`);
    const { eligible } = await R.verifyExactlyOnce(srv.base, synth.manifest, canonical);
    assert.ok(eligible > 5);
    assert.deepEqual(await planSummary(canonical), restPlans, `run ${run}: the plans of the REST sync`);
    const st = R.status(path.join(path.dirname(args[2]), 'state.db'));
    assert.equal(st.outbox, 0, st.text);
    assert.equal(st.dead, 0, st.text);
  }
});
