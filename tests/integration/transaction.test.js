// Fewer round trips (issue #7): a patient whose plan is written costs one
// batch (inputs and the plans already there) and one transaction (CarePlan,
// RiskAssessment and Provenance); without the transaction interaction, with
// fhir.transaction_write off, or when the server refuses the transaction, the
// three are written one by one.  Every way ends with exactly one plan and one
// Provenance per version written (robust-lib's verifyExactlyOnce), counted
// on the server by its own request counters.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./helpers');
const R = require('./robust-lib');

let env;
let admin;

test.before(() => {
  env = R.loadRandom(40, '23');
  admin = env.srv.base.replace(/\/fhir\/R4$/, '');
});

test.after(() => h.stopServer(env && env.srv));

// A sync writing under its own canonical base (so each test makes its own
// plans on the one server); returns the run and the server's counters.
async function syncWith(name, cfg, extra = []) {
  const dir = h.tmpdir(`tx-${name}`);
  const file = path.join(dir, 'config.json');
  const canonical = `https://${name}.example.org/fhir`;
  fs.writeFileSync(file, JSON.stringify({ ...cfg, output: { canonical_base: canonical } }));
  assert.ok((await h.fhir(env.srv.base, 'DELETE', `${admin}/$test/stats`)).status < 300);
  const r = h.runAdapter(['sync', '--config', file, '--base-url', env.srv.base, '--state',
    path.join(dir, 'state.db'), '--log-level', 'info', ...extra]);
  assert.equal(r.status, 0, r.stderr.slice(-3000));
  const stats = (await h.fhir(env.srv.base, 'GET', `${admin}/$test/stats`)).json;
  const created = R.summary(r.stdout, 'created');
  const seen = Number(/^patients seen\s+(\d+)$/m.exec(r.stdout)[1]);
  assert.ok(created > 10, `plans written: ${created}`);
  await R.verifyExactlyOnce(env.srv.base, env.manifest, canonical);
  return { r, stats, created, seen };
}

test('a written patient costs one batch and one transaction', async () => {
  const { r, stats, created, seen } = await syncWith('tx', {});
  assert.match(r.stderr, /write: CarePlan, RiskAssessment and Provenance in one transaction/);
  // one batch per patient, one transaction per written one; the cohort
  // search and /metadata besides (no Device: the Provenance contains it)
  assert.equal(stats.requests.POST.Bundle, seen + created, JSON.stringify(stats));
  assert.equal(stats.requests.PUT?.Device, undefined, 'no Device written');
  assert.equal(stats.requests.PUT?.CarePlan, undefined, 'no CarePlan PUT outside a Bundle');
  assert.equal(stats.requests.PUT?.Provenance, undefined, 'no Provenance PUT outside a Bundle');
  assert.equal(stats.entries.PUT.CarePlan, created);
  assert.equal(stats.entries.PUT.RiskAssessment, created);
  assert.equal(stats.entries.PUT.Provenance, created);
  assert.equal(stats.entries.GET.CarePlan, seen, 'the plans already there come with the inputs');
  // the Provenance targets what the server put in place of the fullUrls
  const prov = await h.searchAll(env.srv.base, 'Provenance?_count=1000');
  assert.ok(prov.every((p) => p.target.every((t) => !/^urn:uuid:/.test(t.reference))),
    'no urn:uuid left in a Provenance');
});

test('fhir.transaction_write false writes the three one by one', async () => {
  const { r, stats, created } = await syncWith('separate', { fhir: { transaction_write: false } });
  assert.match(r.stderr, /write: three requests \(fhir\.transaction_write off\)/);
  assert.equal(stats.requests.PUT.CarePlan, created);
  assert.equal(stats.requests.PUT.RiskAssessment, created);
  assert.equal(stats.requests.PUT.Provenance, created);
  assert.equal(stats.entries.PUT?.CarePlan, undefined);
});

test('a server without the transaction interaction gets three requests', async () => {
  const cs = (await h.fhir(env.srv.base, 'GET', 'metadata')).json;
  const rest = cs.rest.map((x) => ({ ...x, interaction: x.interaction.filter((i) => i.code !== 'transaction') }));
  assert.ok((await h.fhir(env.srv.base, 'POST', `${admin}/$test/capability`, { rest })).status < 300);
  try {
    const { r, stats, created } = await syncWith('nocap', {});
    assert.match(r.stderr, /write: three requests \(no transaction interaction\)/);
    assert.equal(stats.requests.PUT.CarePlan, created);
    assert.equal(stats.entries.PUT?.CarePlan, undefined);
  } finally {
    await h.fhir(env.srv.base, 'DELETE', `${admin}/$test/capability`);
  }
});

test('a transaction the server refuses falls back, and the rest follow', async () => {
  // the server lists the transaction interaction, but its first one fails
  // with 405 (a CarePlan PUT entry); the same writes one by one succeed
  const f = await h.fhir(env.srv.base, 'POST', `${admin}/$test/fault`, {
    method: 'PUT', resourceType: 'CarePlan', status: 405, count: 1,
    diagnostics: 'transactions are not enabled on this endpoint',
  });
  assert.ok(f.status < 300, f.text);
  const { r, stats, created } = await syncWith('refused', { fhir: { concurrency: 1 } });
  assert.match(r.stderr, /refused a transaction/);
  assert.equal((r.stderr.match(/refused a transaction/g) || []).length, 1, 'said once');
  assert.equal(stats.requests.PUT.CarePlan, created, 'every plan written one by one');
  assert.equal(stats.requests.PUT.Provenance, created);
});

test('a transaction-response that does not say where the writes went: the plans are read back', async () => {
  assert.ok((await h.fhir(env.srv.base, 'POST', `${admin}/$test/bare-transaction-answers`, {})).status < 300);
  try {
    const { r, stats, created, seen } = await syncWith('bare', {});
    assert.match(r.stdout, /failed\s+0\b/);
    assert.equal(stats.entries.PUT.CarePlan, created, 'one transaction per written patient');
    // two more searches per written patient: where did the writes go?
    assert.equal(stats.requests.GET.CarePlan, created);
    assert.equal(stats.requests.GET.RiskAssessment, created);
    assert.ok(seen >= created);
  } finally {
    await h.fhir(env.srv.base, 'DELETE', `${admin}/$test/bare-transaction-answers`);
  }
});

// libcurl sends a request again, unasked, when the kept-alive connection it
// went on turns out to have closed before any answer.  A write's body goes
// through a read callback whose rewind the adapter refuses, so a write is
// never sent twice that way and may use kept-alive connections like the
// batches of reads (saving a connection per written patient).  Here the
// server carries out three transactions and closes their connections
// without an answer: each was on a kept-alive connection, none is sent
// again by libcurl, and the write path reads them back.  (With the body
// given as POSTFIELDS, libcurl sends those three again:
// tests/integration/integrity.test.js then finds a second plan version.)
test('transactions go on kept-alive connections, and one whose answer is lost is not sent again', async () => {
  const log = `${admin}/$test/requests`;
  assert.ok((await h.fhir(env.srv.base, 'DELETE', log)).status < 300);
  let drop = await h.fhir(env.srv.base, 'POST', `${admin}/$test/integrity`,
    { dropAnswer: { method: 'POST', resourceType: 'Bundle', bundleType: 'transaction', count: 3 } });
  assert.equal(drop.status, 200, drop.text);
  let res;
  try {
    res = await syncWith('conn', {});
  } finally {
    drop = await h.fhir(env.srv.base, 'POST', `${admin}/$test/integrity`, {});
  }
  assert.equal(drop.json.counts.dropped, 3, 'three answers were lost');
  const { r, created, seen } = res;
  assert.equal((r.stderr.match(/the transaction had been applied/g) || []).length, 3, r.stderr.slice(-3000));
  const reqs = (await h.fhir(env.srv.base, 'GET', log)).json.requests;
  const tx = reqs.filter((q) => q.method === 'POST' && q.bundleType === 'transaction');
  const batch = reqs.filter((q) => q.method === 'POST' && q.bundleType === 'batch');
  assert.equal(tx.length, created, 'one transaction per written patient, none sent twice');
  const reused = (list) => list.filter((q) => q.onConnection > 1).length;
  // every transaction follows its patient's batch on the worker's connection
  assert.equal(reused(tx), tx.length, `transactions on a kept-alive connection: ${reused(tx)} of ${tx.length}`);
  // four workers, and a new connection after each of the three lost answers
  assert.ok(reused(batch) >= seen - 4 - 3, `batches on a kept-alive connection: ${reused(batch)} of ${seen}`);
  const opened = new Set(reqs.map((q) => q.connection)).size;
  assert.ok(opened <= 4 + 3 + 4, `${opened} connections for ${seen} patients, ${created} written`);
});
