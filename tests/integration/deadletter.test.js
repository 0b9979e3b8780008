// Issue #5, done means 3: a permanent error (422 from the test server's
// /$test/fault on one patient's CarePlan write) lands in the dead letter
// with the OperationOutcome diagnostics after one attempt, is listed by
// `status`, is not retried by the daemon's later cycles, and `replay` posts
// it once the cause is fixed (an operator's `sync` also tries it again, see
// sync.test.js).  Also `forget`, and duplicate reconciliation: two current
// plans with our identifier are reduced to one.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const h = require('./helpers');
const R = require('./robust-lib');

let env;
let state;
let pid;        // the patient whose write is rejected
let eligible;

const sync = (extra = []) =>
  h.runAdapter(['sync', '--base-url', env.srv.base, '--state', state, ...extra]);

async function admin(method, what, body) {
  const origin = new URL(env.srv.base).origin;
  const res = await fetch(`${origin}/$test/${what}`, {
    method, headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return res.json().catch(() => null);
}

test.before(async () => {
  env = R.loadRandom(20, '11');
  state = path.join(h.tmpdir('dead'), 'state.db');
  const ids = await R.patientIds(env.srv.base);
  const m = env.manifest.find((x) => x.expected.recommendation !== 'not-applicable');
  pid = ids[m.identifier.value];
  eligible = env.manifest.filter((x) => x.expected.recommendation !== 'not-applicable').length;
});

test.after(() => h.stopServer(env && env.srv));

test('a 422 on one patient\'s write is dead-lettered after one attempt, listed, and replayed once fixed', async () => {
  await admin('POST', 'fault', { method: 'PUT', resourceType: 'CarePlan', match: pid, status: 422,
    diagnostics: 'plan rejected by the test rule', count: -1 });
  await admin('DELETE', 'stats');
  const r1 = sync();
  assert.equal(r1.status, 1, 'a patient failed');
  assert.equal(R.summary(r1.stdout, 'dead-lettered'), 1);
  assert.equal(R.summary(r1.stdout, 'failed'), 1);
  assert.equal(R.summary(r1.stdout, 'retries'), 0, 'a permanent error is not retried');
  assert.equal(R.summary(r1.stdout, 'created'), eligible - 1);
  const stats = await admin('GET', 'stats');
  // one CarePlan write per patient, on its own or in a transaction: one attempt
  const puts = (st) => (st.requests.PUT?.CarePlan || 0) + (st.entries.PUT?.CarePlan || 0);
  assert.equal(puts(stats), eligible, 'one PUT CarePlan per patient: one attempt');
  assert.doesNotMatch(r1.stderr, new RegExp(pid), 'no patient id in the logs');

  let st = R.status(state);
  assert.equal(st.dead, 1);
  assert.equal(st.outbox, 0);
  assert.match(st.text, new RegExp(`patient ${pid}\\s+post(-tx)?\\s+attempts 1\\s+HTTP 422`));
  assert.match(st.text, /outcome: plan rejected by the test rule/);

  // the daemon leaves the parked decision alone (no poison write retried
  // every cycle)
  await admin('DELETE', 'stats');
  const r2 = h.runAdapter(['run', '--once', '--base-url', env.srv.base, '--state', state]);
  assert.equal(r2.status, 0, r2.stderr.slice(-800));
  assert.match(r2.stderr, /decision parked in the dead letter/);
  assert.equal(puts(await admin('GET', 'stats')), 0);
  assert.equal(R.status(state).dead, 1);

  // the cause is fixed: replay posts it
  await admin('DELETE', 'fault');
  const r3 = h.runAdapter(['replay', '--patient', pid, '--base-url', env.srv.base, '--state', state]);
  assert.equal(r3.status, 0, r3.stderr.slice(-800));
  assert.match(r3.stdout, /re-queued 1 dead letter/);
  assert.equal(R.summary(r3.stdout, 'created'), 1);
  st = R.status(state);
  assert.equal(st.dead, 0);
  assert.equal(st.outbox, 0);
  await R.verifyExactlyOnce(env.srv.base, env.manifest);
});

test('transient errors are retried with the server\'s Retry-After and the write succeeds', async () => {
  const st2 = path.join(h.tmpdir('dead2'), 'state.db');
  const canonical = 'https://retry.example.org/fhir';
  const cfgDir = h.tmpdir('cfg');
  const cfg = path.join(cfgDir, 'c.json');
  require('node:fs').writeFileSync(cfg, JSON.stringify({ output: { canonical_base: canonical },
    fhir: { retry_base_ms: 10, retry_max_ms: 50 } }));
  await admin('POST', 'fault', { method: 'PUT', resourceType: 'CarePlan', match: pid, status: 503,
    retryAfter: 1, count: 2 });
  const t0 = Date.now();
  const r = h.runAdapter(['sync', '--config', cfg, '--patient', pid, '--base-url', env.srv.base,
    '--state', st2]);
  const took = Date.now() - t0;
  assert.equal(r.status, 0, r.stderr.slice(-800));
  assert.equal(R.summary(r.stdout, 'retries'), 2);
  assert.equal((r.stderr.match(/retry \d+ of \d+ in 1\d\d\d ms/g) || []).length, 2,
    'each wait honours Retry-After: 1');
  console.log(`# two 503 + Retry-After: 1 s; sync took ${took} ms`);
  assert.equal(R.summary(r.stdout, 'created'), 1);
});

test('two current plans with our identifier are reconciled to one', async () => {
  const cps = await R.ours(env.srv.base, 'CarePlan');
  const copy = { ...cps[pid][0] };
  delete copy.id;
  delete copy.meta;
  const made = await h.fhir(env.srv.base, 'POST', 'CarePlan', copy);
  assert.equal(made.status, 201, made.text);
  // the inputs change a little so that a write is needed: forget the local
  // record and re-sync; the duplicate is found either way
  const r = sync(['--patient', pid]);
  assert.equal(r.status, 0, r.stderr.slice(-800));
  assert.equal(R.summary(r.stdout, 'duplicates revoked'), 1);
  assert.match(r.stderr, /duplicate CarePlan found and revoked/);
  await R.verifyExactlyOnce(env.srv.base, env.manifest);
  const f = h.runAdapter(['forget', '--patient', pid, '--state', state]);
  assert.equal(f.status, 0, f.stderr);
  assert.match(f.stdout, /forgot patient/);
});
