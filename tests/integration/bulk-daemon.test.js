// `run` with bulk.catch_up: the first cycle goes through a Bulk Data
// export (the whole cohort), a cycle soon after through the REST change
// walk, and a cycle after a gap longer than bulk.catch_up_after_s through an
// export `_since` the last one (only the changed patient). Also the Group
// found by bulk.group_code (Group?code=) and its errors when no Group or
// several carry the code.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./helpers');
const R = require('./robust-lib');
const { adminOf } = require('./bulk-lib');

let srv;
let synth;

const admin = (method, p, body) => adminOf(srv)(method, p, body);

function setup(name, cfgObj) {
  const dir = h.tmpdir(name);
  const cfg = path.join(dir, 'config.json');
  fs.writeFileSync(cfg, JSON.stringify(cfgObj));
  return { cfg, state: path.join(dir, 'state.db') };
}

function cycleLine(stderr) {
  const m = /cycle done: (\d+) patient\(s\), (\d+) created, (\d+) updated, (\d+) unchanged/.exec(stderr);
  assert.ok(m, stderr.slice(-1500));
  return { seen: Number(m[1]), created: Number(m[2]), updated: Number(m[3]), unchanged: Number(m[4]) };
}

test.before(async () => {
  srv = h.startServer();
  synth = h.generateSynth();
  h.loadSynth(srv.base, synth.dir);
});

test.after(() => h.stopServer(srv));

test('run: the first cycle and a long gap go through $export, a short one through REST', async () => {
  const canonical = 'https://bulk-daemon.example.org/fhir';
  const { cfg, state } = setup('bulk-daemon', {
    output: { canonical_base: canonical },
    daemon: { overlap_s: 0 },
    bulk: { catch_up: true, catch_up_after_s: 3600 },
  });
  const run = () => h.runAdapter(['run', '--once', '--config', cfg, '--base-url', srv.base, '--state', state, '--log-level', 'info']);
  const k0 = (await admin('GET', '/$test/bulk')).counters.kickoffs;
  const first = run();
  assert.equal(first.status, 0, first.stderr.slice(-2000));
  assert.match(first.stderr, /catch-up through \$export \(the whole cohort\)/);
  assert.equal((await admin('GET', '/$test/bulk')).counters.kickoffs, k0 + 1);
  const c1 = cycleLine(first.stderr);
  const { eligible } = await R.verifyExactlyOnce(srv.base, synth.manifest, canonical);
  assert.equal(c1.created, eligible);
  const wm = /^watermark\s+(\S+)/m.exec(h.runAdapter(['status', '--state', state]).stdout);
  assert.ok(wm && wm[1] !== '-', 'the first bulk cycle set the watermark');

  // at once: the gap is below bulk.catch_up_after_s, so the REST walk
  const second = run();
  assert.equal(second.status, 0, second.stderr.slice(-2000));
  assert.doesNotMatch(second.stderr, /catch-up through \$export/);
  assert.equal((await admin('GET', '/$test/bulk')).counters.kickoffs, k0 + 1);

  // one patient changes, then the daemon is "down" longer than the threshold
  const pts = await h.searchAll(srv.base, 'Patient?_count=500');
  const edited = pts[0];
  edited.name = [{ family: 'Changed', given: ['Daemon'] }];
  assert.equal((await h.fhir(srv.base, 'PUT', `Patient/${edited.id}`, edited)).status, 200);
  // a threshold of one second, and more than that since the watermark
  const conf = JSON.parse(fs.readFileSync(cfg, 'utf8'));
  conf.bulk.catch_up_after_s = 1;
  fs.writeFileSync(cfg, JSON.stringify(conf));
  await new Promise((r) => setTimeout(r, 2500));
  const third = run();
  assert.equal(third.status, 0, third.stderr.slice(-2000));
  assert.match(third.stderr, /catch-up through \$export \(the changes since the watermark\)/);
  assert.equal((await admin('GET', '/$test/bulk')).counters.kickoffs, k0 + 2);
  assert.equal(cycleLine(third.stderr).seen, 1, 'only the changed patient');
  assert.deepEqual((await admin('GET', '/$test/bulk')).jobs, []);
  await R.verifyExactlyOnce(srv.base, synth.manifest, canonical);
});

test('bulk.group_code: the one Group with the code is exported; none or several is a clear error', async () => {
  const code = { system: 'http://example.org/dnmbc-groups', code: 'mcode-in-scope' };
  const pts = await h.searchAll(srv.base, 'Patient?_count=500');
  const members = pts.slice(0, 5);
  const group = {
    resourceType: 'Group', type: 'person', actual: true, code: { coding: [code] },
    member: members.map((p) => ({ entity: { reference: `Patient/${p.id}` } })),
  };
  const canonical = 'https://bulk-group.example.org/fhir';
  const conf = (name) => setup(name, { output: { canonical_base: canonical }, bulk: { group_code: `${code.system}|${code.code}` } });

  // none yet
  let c = conf('bulk-group-none');
  let r = h.runAdapter(['sync', '--bulk', '--config', c.cfg, '--base-url', srv.base, '--state', c.state]);
  assert.notEqual(r.status, 0, r.stderr);
  assert.match(r.stderr, /bulk: no Group has the code http:\/\/example\.org\/dnmbc-groups\|mcode-in-scope \(bulk\.group_code\)/);

  const made = await h.fhir(srv.base, 'POST', 'Group', group);
  assert.equal(made.status, 201, made.text);
  const k0 = (await admin('GET', '/$test/bulk')).counters.kickoffs;
  c = conf('bulk-group-one');
  r = h.runAdapter(['sync', '--bulk', '--config', c.cfg, '--base-url', srv.base, '--state', c.state, '--log-level', 'info']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`Group/${made.json.id}`));
  assert.match(r.stderr, new RegExp(`/Group/${made.json.id}/\\$export|status at`));
  assert.equal((await admin('GET', '/$test/bulk')).counters.kickoffs, k0 + 1);
  // only the members (those of them in the cohort) were decided
  const seen = Number(/^\s*patients seen\s+(\d+)$/m.exec(r.stdout)[1]);
  assert.ok(seen >= 1 && seen <= members.length, r.stdout);
  const ours = await R.ours(srv.base, 'CarePlan', canonical);
  const memberIds = new Set(members.map((p) => p.id));
  for (const pid of Object.keys(ours)) assert.ok(memberIds.has(pid), `${pid} is a member of the Group`);

  // a second Group with the same code
  assert.equal((await h.fhir(srv.base, 'POST', 'Group', group)).status, 201);
  c = conf('bulk-group-two');
  r = h.runAdapter(['sync', '--bulk', '--config', c.cfg, '--base-url', srv.base, '--state', c.state]);
  assert.notEqual(r.status, 0, r.stderr);
  assert.match(r.stderr, /bulk: more than one Group has the code .*set bulk\.group_id/);
});
