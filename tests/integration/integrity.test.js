// Never write the wrong thing: patient identity and exactly-once writes
// against servers that misbehave as real ones do (a misrouting proxy or
// cache that answers one patient's reads with another's data, an identifier
// search that also brings another patient's plan, a write committed whose
// answer is lost).  The modes are the test server's POST /$test/integrity
// (tests/fhir-server/lib/integrity.js).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./helpers');
const R = require('./robust-lib');

let env;
let admin;
let ids; // synthetic identifier -> server Patient id
let eligible; // manifest entries with a plan expected

test.before(async () => {
  env = R.loadRandom(16, '31');
  admin = env.srv.base.replace(/\/fhir\/R4$/, '');
  ids = await R.patientIds(env.srv.base);
  eligible = env.manifest.filter((m) => m.expected.recommendation !== 'not-applicable');
  assert.ok(eligible.length >= 3, `enough eligible patients (${eligible.length})`);
});

test.after(() => h.stopServer(env && env.srv));

async function mode(body) {
  const r = await h.fhir(env.srv.base, 'POST', `${admin}/$test/integrity`, body);
  assert.equal(r.status, 200, r.text);
  return r.json;
}

// A sync under its own canonical base (its own plans on the one server).
function config(name, cfg = {}) {
  const dir = h.tmpdir(`integrity-${name}`);
  const file = path.join(dir, 'config.json');
  const canonical = `https://${name}.example.org/fhir`;
  fs.writeFileSync(file, JSON.stringify({ ...cfg, output: { canonical_base: canonical } }));
  const args = ['sync', '--config', file, '--base-url', env.srv.base, '--state',
    path.join(dir, 'state.db'), '--log-level', 'info'];
  return { canonical, args, state: path.join(dir, 'state.db') };
}

const FETCH = [['batch', {}], ['separate', { fhir: { batch_fetch: false } }]];

for (const [how, cfg] of FETCH) {
  test(`a server that answers A's reads with B's Patient and data: A fails, nothing written for A (${how} fetch)`, async () => {
    const [a, b] = [ids[eligible[0].identifier.value], ids[eligible[1].identifier.value]];
    const c = config(`swap-${how}`, cfg);
    await mode({ swap: { from: a, to: b } });
    let r;
    try {
      r = h.runAdapter(c.args);
    } finally {
      await mode({});
    }
    const cps = await R.ours(env.srv.base, 'CarePlan', c.canonical);
    const ras = await R.ours(env.srv.base, 'RiskAssessment', c.canonical);
    assert.equal(cps[a], undefined, 'no CarePlan for A');
    assert.equal(ras[a], undefined, 'no RiskAssessment for A');
    assert.equal(r.status, 1, `one patient failed: ${r.stderr.slice(-2000)}`);
    assert.equal(R.summary(r.stdout, 'failed'), 1);
    assert.match(r.stderr, /Patient\.id: the server answered the read of this patient with Patient of another id/);
    assert.equal(cps[b].length, 1, 'B has its own plan');
    const prov = await h.searchAll(env.srv.base, `Provenance?target=${encodeURIComponent(`CarePlan/${cps[b][0].id}`)}`);
    assert.ok(prov.length <= 1);
  });

  test(`Conditions and Observations of another subject are dropped, never decided on (${how} fetch)`, async () => {
    const [a, b] = [ids[eligible[2].identifier.value], ids[eligible[0].identifier.value]];
    const c = config(`subject-${how}`, cfg);
    await mode({ swap: { from: a, to: b, types: ['Condition', 'Observation'] } });
    let r;
    try {
      r = h.runAdapter(c.args);
    } finally {
      await mode({});
    }
    assert.equal(r.status, 0, r.stderr.slice(-2000));
    // without its own Conditions A has no breast cancer to decide on
    const cps = await R.ours(env.srv.base, 'CarePlan', c.canonical);
    assert.equal(cps[a], undefined, 'no plan made for A out of B\'s data');
    assert.match(r.stderr, /Condition\/\S+ dropped from the inputs: Condition\.subject is not this patient/);
  });
}

// Two passes with subjects made absolute (POST /$test/integrity
// absoluteSubjects: true for the patient searches, "all" for every search,
// the cohort's code= search too): every plan written once, and the second
// pass finds them all.
async function absoluteRun(name, cfg, which) {
  const c = config(name, cfg);
  await mode({ absoluteSubjects: which });
  let r;
  let rep;
  try {
    r = h.runAdapter(c.args);
    // a second pass finds the plans (absolute subjects too) and keeps them
    if (r.status === 0) r = h.runAdapter(c.args);
  } finally {
    rep = await mode({});
  }
  assert.ok(rep.counts.absolute > 0, 'absolute subjects were served');
  assert.equal(r.status, 0, r.stderr.slice(-2000));
  assert.doesNotMatch(r.stderr, /dropped from the inputs|is not this patient's|is not a patient of this server/);
  assert.equal(R.summary(r.stdout, 'unchanged'), eligible.length, `the second pass found every plan: ${r.stdout.slice(-1500)}`);
  await R.verifyExactlyOnce(env.srv.base, env.manifest, c.canonical);
}

for (const [how, cfg] of FETCH) {
  test(`subjects given as absolute URLs on the server's base are this patient's: every plan written (${how} fetch)`, async () => {
    await absoluteRun(`absolute-${how}`, cfg, true);
  });
}

test('subjects given as absolute URLs in every search, the cohort search too: every plan written', async () => {
  await absoluteRun('absolute-all', {}, 'all');
});

test('a Patient replaced by another (link replaced-by) is reported, not decided', async () => {
  const a = ids[eligible[1].identifier.value];
  const b = ids[eligible[2].identifier.value];
  const c = config('replaced');
  const pat = (await h.fhir(env.srv.base, 'GET', `Patient/${a}`)).json;
  const merged = { ...pat, link: [{ other: { reference: `Patient/${b}` }, type: 'replaced-by' }] };
  delete merged.meta;
  assert.equal((await h.fhir(env.srv.base, 'PUT', `Patient/${a}`, merged)).status, 200);
  let r;
  try {
    r = h.runAdapter(c.args);
  } finally {
    const back = { ...pat };
    delete back.meta;
    assert.equal((await h.fhir(env.srv.base, 'PUT', `Patient/${a}`, back)).status, 200);
  }
  assert.equal(r.status, 0, r.stderr.slice(-2000));
  const cps = await R.ours(env.srv.base, 'CarePlan', c.canonical);
  assert.equal(cps[a], undefined, 'nothing written for the replaced record');
  assert.ok(cps[b], 'the others are written');
  assert.match(r.stderr, /Patient\.link says this record was replaced by another \(replaced-by, a merge\): not decided/);
});

for (const [how, cfg] of FETCH) {
  test(`an identifier search that also returns B's CarePlan: B's plan is neither revoked nor rewritten (${how} fetch)`, async () => {
    const c = config(`foreign-${how}`, cfg);
    const first = h.runAdapter(c.args);
    assert.equal(first.status, 0, first.stderr.slice(-2000));
    const b = ids[eligible[1].identifier.value];
    const before = (await R.ours(env.srv.base, 'CarePlan', c.canonical))[b];
    assert.equal(before.length, 1);
    await mode({ foreign: { type: 'CarePlan', add: `CarePlan/${before[0].id}` } });
    let r;
    let rep;
    try {
      r = h.runAdapter(c.args);
    } finally {
      rep = await mode({});
    }
    assert.ok(rep.counts.foreign > 0, 'the foreign plan was served');
    assert.equal(r.status, 0, r.stderr.slice(-2000));
    const after = (await h.fhir(env.srv.base, 'GET', `CarePlan/${before[0].id}`)).json;
    assert.equal(after.status, 'draft', 'B\'s plan is still current');
    assert.equal(after.meta.versionId, before[0].meta.versionId, 'B\'s plan was not rewritten');
    assert.deepEqual(after.identifier, before[0].identifier);
    assert.doesNotMatch(r.stderr, /duplicate CarePlan found and revoked/);
    assert.match(r.stderr, /CarePlan\/\S+ came back from the search by our identifier but is not this patient's/);
    await R.verifyExactlyOnce(env.srv.base, env.manifest, c.canonical);
  });
}

// Each eligible patient's CarePlan was written once: a single version.
async function oneVersionEach(canonical) {
  const cps = await R.ours(env.srv.base, 'CarePlan', canonical);
  for (const m of eligible) {
    const cp = cps[ids[m.identifier.value]][0];
    const hist = await h.fhir(env.srv.base, 'GET', `CarePlan/${cp.id}/_history`);
    assert.equal(hist.json.entry.length, 1, `${m.identifier.value}: the CarePlan was written once`);
  }
}

// counts of the server's own request and entry counters
async function stats() {
  return (await h.fhir(env.srv.base, 'GET', `${admin}/$test/stats`)).json;
}

test('a transaction committed whose answer is lost is read back, not sent again: one Provenance per plan version', async () => {
  const c = config('lost-tx');
  assert.ok((await h.fhir(env.srv.base, 'DELETE', `${admin}/$test/stats`)).status < 300);
  await mode({ dropAnswer: { method: 'POST', resourceType: 'Bundle', bundleType: 'transaction', count: 3 } });
  let r;
  let rep;
  try {
    r = h.runAdapter(c.args);
  } finally {
    rep = await mode({});
  }
  assert.equal(rep.counts.dropped, 3, 'three answers were lost');
  assert.equal(r.status, 0, r.stderr.slice(-3000));
  const created = R.summary(r.stdout, 'created');
  assert.equal(created, eligible.length);
  await R.verifyExactlyOnce(env.srv.base, env.manifest, c.canonical);
  await oneVersionEach(c.canonical);
  const st = await stats();
  assert.equal(st.entries.PUT.CarePlan, created, `no transaction sent twice: ${JSON.stringify(st)}`);
  assert.equal((r.stderr.match(/the transaction had been applied/g) || []).length, 3, r.stderr.slice(-3000));
});

test('one by one: a CarePlan, RiskAssessment or Provenance write whose answer is lost is read back, not sent again', async () => {
  const c = config('lost-sep', { fhir: { transaction_write: false } });
  assert.ok((await h.fhir(env.srv.base, 'DELETE', `${admin}/$test/stats`)).status < 300);
  await mode({ dropAnswer: { method: 'PUT', resourceType: 'CarePlan', count: 2 } });
  await mode({ dropAnswer: { method: 'PUT', resourceType: 'RiskAssessment', count: 2 } });
  await mode({ dropAnswer: { resourceType: 'Provenance', count: 2 } });
  let r;
  let rep;
  try {
    r = h.runAdapter(c.args);
  } finally {
    rep = await mode({});
  }
  assert.equal(rep.counts.dropped, 6, 'six answers were lost');
  assert.equal(r.status, 0, r.stderr.slice(-3000));
  const created = R.summary(r.stdout, 'created');
  assert.equal(created, eligible.length);
  await R.verifyExactlyOnce(env.srv.base, env.manifest, c.canonical);
  await oneVersionEach(c.canonical);
  const st = await stats();
  assert.equal(st.requests.PUT.CarePlan, created, `no CarePlan PUT sent twice: ${JSON.stringify(st.requests)}`);
  assert.equal(st.requests.PUT.RiskAssessment, created, 'no RiskAssessment PUT sent twice');
  assert.equal((st.requests.PUT?.Provenance || 0) + (st.requests.POST?.Provenance || 0), created,
    'no Provenance sent twice');
});
