// Scale-out (issue #7): three replicas with --shard 0/3, 1/3, 2/3 run at the
// same time against one server, each with its own state file, and together
// do every patient of the cohort exactly once: the server read each
// patient's inputs once (its own request counters), every plan exists once,
// and the shards' "patients seen" add up to the unsharded cohort.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const fs = require('node:fs');
const { spawn, execFileSync } = require('node:child_process');
const h = require('./helpers');

let srv;
let admin;
let dir;

function seen(stdout) {
  const m = /^patients seen\s+(\d+)$/m.exec(stdout);
  assert.ok(m, `summary in:\n${stdout}`);
  return Number(m[1]);
}

function runAsync(args) {
  return new Promise((resolve) => {
    const p = spawn(h.BIN, args, { env: { ...process.env, DNMBC_LOG_LEVEL: '' } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    p.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

test.before(() => {
  srv = h.startServer();
  admin = srv.base.replace(/\/fhir\/R4$/, '');
  dir = h.tmpdir('shard');
  execFileSync('node', [path.join(h.ROOT, 'tests/synth/generate.js'), '--out', dir, '--count', '60', '--seed', '11']);
  const files = fs.readdirSync(dir).filter((f) => f.startsWith('patient-')).map((f) => path.join(dir, f));
  execFileSync('node', [path.join(h.ROOT, 'tests/fhir-server/load.js'), '--base', srv.base, '--quiet', ...files]);
});

test.after(() => h.stopServer(srv));

test('three shards run concurrently and do every patient exactly once', async () => {
  // the whole cohort, unsharded, without writing
  const all = h.runAdapter(['sync', '--dry-run', '--base-url', srv.base,
    '--state', path.join(dir, 'dry.state')]);
  assert.equal(all.status, 0, all.stderr);
  const cohort = seen(all.stdout);
  assert.ok(cohort >= 30, `cohort of ${cohort}`);

  assert.ok((await h.fhir(srv.base, 'DELETE', `${admin}/$test/stats`)).status < 300);
  const runs = await Promise.all([0, 1, 2].map((k) => runAsync(['sync', '--shard', `${k}/3`,
    '--concurrency', '2', '--base-url', srv.base, '--state', path.join(dir, `shard${k}.state`)])));
  for (const r of runs) assert.equal(r.status, 0, r.stderr);
  const per = runs.map((r) => seen(r.stdout));
  for (const n of per) assert.ok(n > 0, `every shard has patients: ${per}`);
  assert.equal(per.reduce((a, b) => a + b, 0), cohort, `shards ${per} vs cohort ${cohort}`);

  // the server read each patient's inputs once: one Patient read per patient
  const stats = (await h.fhir(srv.base, 'GET', `${admin}/$test/stats`)).json;
  const patientReads = (stats.entries.GET?.Patient || 0) + (stats.requests.GET?.Patient || 0);
  assert.equal(patientReads, cohort, JSON.stringify(stats));

  // one plan per patient, no duplicates, and one Provenance per plan written
  const plans = await h.searchAll(srv.base, 'CarePlan?_count=1000');
  const risks = await h.searchAll(srv.base, 'RiskAssessment?_count=1000');
  const byPatient = new Map();
  for (const p of plans) {
    const id = p.identifier.find((i) => i.system === h.idSystem('CarePlan')).value;
    byPatient.set(id, (byPatient.get(id) || 0) + 1);
  }
  for (const [id, n] of byPatient) assert.equal(n, 1, `patient ${id} has ${n} CarePlans`);
  assert.equal(risks.length, plans.length);
  const created = runs.map((r) => Number(/^created\s+(\d+)$/m.exec(r.stdout)[1]))
    .reduce((a, b) => a + b, 0);
  assert.equal(plans.length, created);
  assert.equal((stats.requests.PUT?.Provenance || 0) + (stats.entries.PUT?.Provenance || 0), created);
});

test('a malformed --shard is a usage error', () => {
  for (const bad of ['3/3', '1', 'a/b', '0/0']) {
    const r = h.runAdapter(['sync', '--shard', bad, '--base-url', srv.base,
      '--state', path.join(dir, 'bad.state')]);
    assert.equal(r.status, 2, `--shard ${bad}: ${r.stderr}`);
    assert.match(r.stderr, /--shard/);
  }
});
