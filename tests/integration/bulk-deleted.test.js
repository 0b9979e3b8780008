// The manifest's `deleted` entries (Bulk Data v2): a Patient deleted on the
// server since the last export has the plans we wrote for it withdrawn
// (CarePlan revoked, RiskAssessment cancelled, each with its Provenance),
// through the ordinary revocation path, and the pass does not fail on it.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./helpers');
const R = require('./robust-lib');

let srv;

test.before(async () => {
  srv = h.startServer();
  h.loadSynth(srv.base, h.generateSynth().dir);
});

test.after(() => h.stopServer(srv));

test('a Patient in the export\'s deleted list has its plans withdrawn', async () => {
  const dir = h.tmpdir('bulk-deleted');
  const canonical = 'https://bulk-deleted.example.org/fhir';
  const cfg = path.join(dir, 'config.json');
  fs.writeFileSync(cfg, JSON.stringify({ output: { canonical_base: canonical } }));
  const args = ['sync', '--bulk', '--config', cfg, '--base-url', srv.base, '--state', path.join(dir, 'state.db')];
  const first = h.runAdapter(args);
  assert.equal(first.status, 0, first.stderr);
  const cps = await R.ours(srv.base, 'CarePlan', canonical);
  const pid = Object.keys(cps).find((p) => cps[p][0].status === 'draft');
  assert.ok(pid, 'a patient with a current plan');
  assert.equal((await h.fhir(srv.base, 'DELETE', `Patient/${pid}`)).status, 200);

  const r = h.runAdapter([...args, '--log-level', 'info']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^\s*revoked\s+1$/m, r.stdout);
  assert.match(r.stdout, /^\s*failed\s+0$/m, r.stdout);
  const cp = (await R.ours(srv.base, 'CarePlan', canonical))[pid];
  const ra = (await R.ours(srv.base, 'RiskAssessment', canonical))[pid];
  assert.equal(cp.length, 1);
  assert.equal(cp[0].status, 'revoked');
  assert.equal(ra.length, 1);
  assert.equal(ra[0].status, 'cancelled');
  // one Provenance per version of each
  const prov = {};
  for (const p of await h.searchAll(srv.base, 'Provenance?_count=1000')) {
    for (const t of p.target || []) {
      const k = String(t.reference || '').replace(/\/_history\/.*$/, '');
      prov[k] = (prov[k] || 0) + 1;
    }
  }
  for (const [type, res] of [['CarePlan', cp[0]], ['RiskAssessment', ra[0]]]) {
    const hist = (await h.fhir(srv.base, 'GET', `${type}/${res.id}/_history`)).json.entry.length;
    assert.equal(hist, 2);
    assert.equal(prov[`${type}/${res.id}`], hist, `one Provenance per ${type} version`);
  }
  // nothing left over for the next run
  const again = h.runAdapter(args);
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stdout, /^\s*patients seen\s+0$/m, again.stdout);
});
