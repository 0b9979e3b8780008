// The daemon after an interrupted run: a cycle that first replays the outbox
// counts each replayed patient once, in its "cycle done" line and in its
// AuditEvent (the patients replayed are not processed again by the same
// cycle, as in `sync`).  The overlap window is 0 so that a cycle sees only
// what changed at or after the watermark: the patients of the outbox are
// also changed on the server, as they would be when their data changed
// while the run that was interrupted was deciding them.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const h = require('./helpers');
const R = require('./robust-lib');

let env;
let work;

test.before(() => {
  env = R.loadRandom(10, '29');
  work = h.tmpdir('daemon-replay');
});

test.after(() => h.stopServer(env && env.srv));

const CYCLE = /cycle done: (\d+) patient\(s\), (\d+) created, (\d+) updated, (\d+) unchanged, (\d+) revoked, (\d+) failed/;

function cycleCounts(text) {
  const m = CYCLE.exec(text);
  assert.ok(m, `a cycle line in:\n${text.slice(-2000)}`);
  const [seen, created, updated, unchanged, revoked, failed] = m.slice(1).map(Number);
  return { seen, created, updated, unchanged, revoked, failed };
}

async function auditIds() {
  return new Set((await h.searchAll(env.srv.base, 'AuditEvent')).map((a) => a.id));
}

async function auditEventsSince(before) {
  return (await h.searchAll(env.srv.base, 'AuditEvent')).filter((a) => !before.has(a.id));
}

// A new version of the Patient, its clinical content unchanged.
async function touch(id) {
  const r = await h.fhir(env.srv.base, 'GET', `Patient/${id}`);
  assert.equal(r.status, 200, r.text);
  const p = r.json;
  p.active = p.active === false;
  const w = await h.fhir(env.srv.base, 'PUT', `Patient/${id}`, p);
  assert.ok(w.status === 200 || w.status === 201, w.text);
}

test('a cycle that replays the outbox counts each patient once, in its line and its AuditEvent', async () => {
  const cfg = path.join(work, 'config.json');
  const st = path.join(work, 'state.db');
  fs.writeFileSync(cfg, JSON.stringify({ daemon: { overlap_s: 0 }, audit: { enabled: true } }));
  const once = () => h.runAdapter(['run', '--once', '--config', cfg, '--base-url', env.srv.base,
    '--state', st]);

  // the first cycle (the whole cohort), then a plain one for reference: it
  // sees what changed at the watermark's instant (`ge`) and nothing else
  const r1 = once();
  assert.equal(r1.status, 0, r1.stderr.slice(-2000));
  let before = await auditIds();
  const r2 = once();
  assert.equal(r2.status, 0, r2.stderr.slice(-2000));
  const plain = cycleCounts(r2.stderr);
  const a2 = await auditEventsSince(before);
  assert.equal(a2.length, 1);
  const atWatermark = new Set((a2[0].entity || []).map((e) => e.what.reference));

  // three decisions left in the outbox, as by a run killed mid-write, for
  // patients whose data changed since (and not the one at the watermark)
  const rows = spawnSync('sqlite3', [st, 'SELECT patient_id FROM patient ORDER BY patient_id'],
    { encoding: 'utf8' });
  assert.equal(rows.status, 0, rows.stderr);
  const ids = rows.stdout.trim().split('\n').filter((id) => !atWatermark.has(`Patient/${id}`))
    .slice(0, 3);
  assert.equal(ids.length, 3);
  for (const id of ids) {
    await touch(id);
    const ins = spawnSync('sqlite3', [st,
      `INSERT INTO outbox(patient_id, kind, decision_hash) VALUES('${id}', 'post', 'x')`]);
    assert.equal(ins.status, 0, String(ins.stderr));
  }

  before = await auditIds();
  const r3 = once();
  assert.equal(r3.status, 0, r3.stderr.slice(-2000));
  assert.match(r3.stderr, /outbox: 3 patient\(s\) left by an interrupted run/);
  const c = cycleCounts(r3.stderr);
  assert.equal(c.seen, plain.seen + 3, `the replayed patients once: ${r3.stderr.match(CYCLE)[0]}`);
  const outcomes = (x) => x.created + x.updated + x.unchanged + x.revoked + x.failed;
  assert.ok(outcomes(c) <= c.seen, `outcomes counted once: ${r3.stderr.match(CYCLE)[0]}`);
  assert.equal(R.status(st).outbox, 0);

  const fresh = await auditEventsSince(before);
  assert.equal(fresh.length, 1, 'one AuditEvent for the cycle');
  const m = /cycle: (\d+) patient\(s\)/.exec(fresh[0].outcomeDesc);
  assert.ok(m, fresh[0].outcomeDesc);
  assert.equal(Number(m[1]), c.seen, fresh[0].outcomeDesc);
  const refs = fresh[0].entity.map((e) => e.what.reference);
  assert.equal(refs.length, c.seen, 'the AuditEvent names as many patients as it counts');
  for (const id of ids) {
    assert.equal(refs.filter((x) => x === `Patient/${id}`).length, 1, `the replayed ${id} named once`);
  }
});
