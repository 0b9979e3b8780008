// End to end: the real binary against the test FHIR server (Medplum's engine,
// validating every write) loaded with the synthetic patients, whose manifest
// is the oracle.  Covers issue #2 "done means" 3, 5 and 6:
//  - a plan for every recommendation code, accepted by the server's validator,
//    with the right codes, activities, references and identifier;
//  - a server error on one patient is reported with the OperationOutcome
//    diagnostics, does not stop the others, exit 1;
//  - a second sync changes no meta.versionId;
//  - a new progression Observation updates the same CarePlan;
//  - a metastasis marked entered-in-error revokes the plan;
//  - no patient id, name, token or resource body in the logs.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const fs = require('node:fs');
const h = require('./helpers');

let srv;
let synth;
let stateFile;
const idOf = {};      // synthetic identifier value -> server Patient id
const logs = [];      // stderr of every sync, for the privacy check

function sync(args = []) {
  const r = h.runAdapter(['sync', '--base-url', srv.base, '--state', stateFile, ...args]);
  logs.push(r.stderr);
  return r;
}

async function plansFor(pid) {
  const cps = await h.searchAll(srv.base, `CarePlan?identifier=${encodeURIComponent(`${h.idSystem('CarePlan')}|${pid}`)}`);
  const ras = await h.searchAll(srv.base, `RiskAssessment?identifier=${encodeURIComponent(`${h.idSystem('RiskAssessment')}|${pid}`)}`);
  return { cps, ras };
}

async function versions() {
  const out = {};
  for (const t of ['CarePlan', 'RiskAssessment']) {
    for (const r of await h.searchAll(srv.base, `${t}?_count=200`)) out[`${t}/${r.id}`] = r.meta.versionId;
  }
  return out;
}

test.before(async () => {
  srv = h.startServer();
  synth = h.generateSynth();
  const files = synth.manifest.map((m) => path.join(synth.dir, m.file));
  require('node:child_process').execFileSync('node',
    [path.join(h.ROOT, 'tests/fhir-server/load.js'), '--base', srv.base, ...files]);
  stateFile = path.join(h.tmpdir('state'), 'adapter.state');
  for (const m of synth.manifest) {
    const found = await h.searchAll(srv.base,
      `Patient?identifier=${encodeURIComponent(`${m.identifier.system}|${m.identifier.value}`)}`);
    assert.equal(found.length, 1, `patient ${m.identifier.value} loaded once`);
    idOf[m.identifier.value] = found[0].id;
  }
});

test.after(() => h.stopServer(srv));

test('a 422 on one patient is reported with the diagnostics and does not stop the others', async () => {
  const victim = idOf['synth-01'];
  const f = await h.fhir(srv.base, 'POST', `${srv.base.replace(/\/fhir\/R4$/, '')}/$test/fault`, {
    method: 'PUT', resourceType: 'CarePlan', match: encodeURIComponent(victim), status: 422,
    diagnostics: 'Plan rejected by local business rule BR-17', count: 1,
  });
  assert.ok(f.status < 300, `fault endpoint: ${f.status} ${f.text}`);
  const r = sync();
  assert.equal(r.status, 1, `exit status 1 when a patient failed\n${r.stderr}`);
  assert.match(r.stderr, /422/);
  assert.match(r.stderr, /BR-17/, 'the OperationOutcome diagnostics reach the log');
  assert.match(r.stdout, /failed\s+1\b/);
  const { cps } = await plansFor(victim);
  assert.equal(cps.length, 0, 'nothing posted for the failed patient');
  const other = await plansFor(idOf['synth-07']);
  assert.equal(other.cps.length, 1, 'the other patients were processed');
});

test('the next sync completes and every patient has the plan the rules give', async () => {
  const r = sync();
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /failed\s+0\b/);
  const seen = new Set();
  for (const m of synth.manifest) {
    const pid = idOf[m.identifier.value];
    const { cps, ras } = await plansFor(pid);
    const want = m.expected.recommendation;
    if (want === 'not-applicable') {
      assert.equal(cps.length, 0, `${m.identifier.value}: no plan for not-applicable`);
      assert.equal(ras.length, 0);
      continue;
    }
    seen.add(want);
    assert.equal(cps.length, 1, `${m.identifier.value}: exactly one CarePlan`);
    assert.equal(ras.length, 1, `${m.identifier.value}: exactly one RiskAssessment`);
    const cp = cps[0];
    const ra = ras[0];
    const codes = h.categoryCodes(cp);
    assert.ok(codes.includes(want), `${m.identifier.value}: want ${want}, got ${codes}`);
    assert.equal(codes.includes('palliative-lrt'), m.expected.palliative, `${m.identifier.value}: palliative`);
    assert.ok(codes.includes('assess-plan'), 'US Core assess-plan category');
    assert.equal(cp.status, 'draft');
    assert.equal(cp.intent, 'proposal');
    assert.equal(cp.subject.reference, `Patient/${pid}`);
    assert.ok(cp.identifier.some((i) => i.system === h.idSystem('CarePlan') && i.value === pid));
    assert.ok((cp.activity || []).length > 0, 'activities present');
    for (const a of cp.activity) {
      assert.ok(a.detail && a.detail.status, 'each activity has a detail with a status');
      assert.equal(a.reference, undefined, 'cpl-3: detail or reference, not both');
    }
    assert.ok(cp.text && /<div xmlns="http:\/\/www.w3.org\/1999\/xhtml">/.test(cp.text.div), 'XHTML narrative');
    assert.ok((cp.addresses || []).length === 1 && /^Condition\//.test(cp.addresses[0].reference), 'addresses the primary');
    // supportingInfo / basis reference resources of this patient that exist
    assert.ok((cp.supportingInfo || []).length > 0, 'supportingInfo present');
    for (const ref of cp.supportingInfo.map((s) => s.reference)) {
      const got = await h.fhir(srv.base, 'GET', ref);
      assert.equal(got.status, 200, `supportingInfo ${ref} resolves`);
      const subj = got.json.resourceType === 'Patient' ? `Patient/${got.json.id}` : got.json.subject && got.json.subject.reference;
      assert.equal(subj, `Patient/${pid}`, `${ref} belongs to the patient`);
    }
    assert.equal(ra.status, 'preliminary');
    assert.equal(ra.subject.reference, `Patient/${pid}`);
    assert.deepEqual((ra.basis || []).map((b) => b.reference).sort(), cp.supportingInfo.map((s) => s.reference).sort());
    assert.ok((ra.prediction || []).length > 0);
    if (want === 'curative-lrt' && m.detail && m.detail.benefit) {
      const benefit = ra.prediction.find((p) => p.qualitativeRisk &&
        (p.qualitativeRisk.coding || []).some((c) => c.system === 'http://terminology.hl7.org/CodeSystem/risk-probability'));
      assert.ok(benefit, 'benefit likelihood prediction');
      assert.equal(benefit.qualitativeRisk.coding[0].code, m.detail.benefit, `${m.identifier.value}: benefit`);
    }
    // Written in one transaction, the Provenance targets the plan by the
    // reference the server put in place of its fullUrl (CarePlan/id); written
    // one by one, by the exact version.  Medplum's engine matches versioned
    // references literally, so both forms are asked for.
    const prov = [];
    for (const t of [`CarePlan/${cp.id}`, `CarePlan/${cp.id}/_history/${cp.meta.versionId}`]) {
      prov.push(...await h.searchAll(srv.base, `Provenance?target=${encodeURIComponent(t)}`));
    }
    assert.equal(prov.length, 1, `${m.identifier.value}: one Provenance targets this CarePlan`);
    assert.ok(prov[0].target.some((t) => t.reference === `RiskAssessment/${ra.id}` ||
      t.reference === `RiskAssessment/${ra.id}/_history/${ra.meta.versionId}`),
    'the same Provenance targets the RiskAssessment');
    const agent = prov[0].agent.find((a) => a.who && a.who.reference === '#device');
    assert.ok(agent, 'Provenance names our contained Device as author');
    assert.equal((prov[0].contained || []).filter((c) => c.resourceType === 'Device' && c.id === 'device').length, 1,
      'the author Device is contained in the Provenance');
    const entities = (prov[0].entity || []).map((e) => e.what.reference).sort();
    assert.deepEqual(entities, cp.supportingInfo.map((s) => s.reference).sort(), 'Provenance entities are the inputs');
  }
  for (const code of ['insufficient-data', 'upfront-systemic', 'second-line-systemic', 'continue-systemic', 'curative-lrt']) {
    assert.ok(seen.has(code), `a patient with ${code}`);
  }
});

test('a second sync changes no meta.versionId', async () => {
  const before = await versions();
  assert.ok(Object.keys(before).length > 10);
  const r = sync();
  assert.equal(r.status, 0, r.stderr);
  const after = await versions();
  assert.deepEqual(after, before);
  assert.match(r.stdout, /created\s+0\b/);
  assert.match(r.stdout, /updated\s+0\b/);
});

test('a new progression Observation updates the same CarePlan', async () => {
  const m = synth.manifest.find((x) => x.laterProgression);
  const pid = idOf[m.identifier.value];
  const before = await plansFor(pid);
  assert.equal(before.cps.length, 1);
  const obs = JSON.parse(JSON.stringify(m.laterProgression.resource).replaceAll('{{PATIENT_ID}}', pid));
  const c = await h.fhir(srv.base, 'POST', 'Observation', obs);
  assert.equal(c.status, 201, c.text);
  const r = sync(['--patient', pid]);
  assert.equal(r.status, 0, r.stderr);
  const after = await plansFor(pid);
  assert.equal(after.cps.length, 1, 'still one CarePlan');
  assert.equal(after.cps[0].id, before.cps[0].id, 'the same CarePlan');
  assert.notEqual(after.cps[0].meta.versionId, before.cps[0].meta.versionId, 'a new version');
  assert.ok(h.categoryCodes(after.cps[0]).includes(m.laterProgression.expectedAfter.recommendation));
});

test('a metastasis marked entered-in-error revokes the plan', async () => {
  const m = synth.manifest.find((x) => x.laterEnteredInError);
  const pid = idOf[m.identifier.value];
  const spec = m.laterEnteredInError;
  const conds = await h.searchAll(srv.base,
    `Condition?identifier=${encodeURIComponent(`${spec.identifier.system}|${spec.identifier.value}`)}`);
  assert.equal(conds.length, 1);
  const body = JSON.parse(JSON.stringify(spec.replacement)
    .replaceAll('{{CONDITION_ID}}', conds[0].id).replaceAll('{{PATIENT_ID}}', pid));
  const u = await h.fhir(srv.base, 'PUT', `Condition/${conds[0].id}`, body);
  assert.equal(u.status, 200, u.text);
  const r = sync();
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /revoked\s+1\b/);
  const after = await plansFor(pid);
  assert.equal(after.cps.length, 1);
  assert.equal(after.cps[0].status, 'revoked');
  assert.equal(after.ras[0].status, 'cancelled');
  // and it stays revoked without further writes
  const v = await versions();
  assert.equal(sync().status, 0);
  assert.deepEqual(await versions(), v);
});

test('dry run writes nothing', async () => {
  const v = await versions();
  const r = sync(['--dry-run']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /dry run/);
  assert.deepEqual(await versions(), v);
});

test('logs at the default level carry no patient id, name or resource body', async () => {
  const text = logs.join('\n');
  assert.ok(text.length > 0);
  for (const m of synth.manifest) {
    const pid = idOf[m.identifier.value];
    assert.equal(text.includes(pid), false, `patient id ${m.identifier.value} in the log`);
    assert.equal(text.includes(m.identifier.value), false);
  }
  for (const f of fs.readdirSync(synth.dir).filter((x) => x.startsWith('patient-'))) {
    const b = JSON.parse(fs.readFileSync(path.join(synth.dir, f), 'utf8'));
    const pat = b.entry.find((e) => e.resource.resourceType === 'Patient').resource;
    for (const n of pat.name || []) {
      if (n.family) assert.equal(text.includes(n.family), false, `family name ${n.family} in the log`);
    }
  }
  assert.equal(/"resourceType"/.test(text), false, 'no resource body in the log');
});

test('an unreachable server is a clean failure, not a crash', () => {
  const r = h.runAdapter(['sync', '--base-url', 'http://127.0.0.1:9/fhir', '--state', stateFile]);
  assert.ok(r.status === 1 || r.status === 2, `exit ${r.status}`);
  assert.match(r.stderr, /cohort search failed|connect/i);
});
