// Helpers shared by the issue #5 tests (crash, faults, dead letter): a
// server loaded with N random synthetic patients, and the check that every
// eligible patient holds exactly one current CarePlan and RiskAssessment with
// the manifest's expected content.
'use strict';

const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./helpers');

function loadRandom(count, seed = '5') {
  const srv = h.startServer();
  const dir = h.tmpdir('synth');
  execFileSync('node', [path.join(h.ROOT, 'tests/synth/generate.js'), '--out', dir, '--count',
    String(count), '--seed', seed], { stdio: 'ignore' });
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  execFileSync('node', [path.join(h.ROOT, 'tests/fhir-server/load.js'), '--base', srv.base,
    ...manifest.map((m) => path.join(dir, m.file))], { stdio: 'ignore' });
  return { srv, dir, manifest };
}

// synthetic identifier value -> server Patient id
async function patientIds(base) {
  const out = {};
  for (const p of await h.searchAll(base, 'Patient?_count=1000')) {
    for (const i of p.identifier || []) if (i.system === 'urn:dnmbc:synthetic') out[i.value] = p.id;
  }
  return out;
}

// patient id -> [resources carrying our business identifier]
async function ours(base, type, canonical = h.CANONICAL) {
  const system = `${canonical}/identifier/${type.toLowerCase()}`;
  const out = {};
  for (const r of await h.searchAll(base, `${type}?_count=1000`)) {
    for (const i of r.identifier || []) {
      if (i.system === system) (out[i.value] = out[i.value] || []).push(r);
    }
  }
  return out;
}

// Every eligible patient: exactly one CarePlan (draft) and one RiskAssessment
// (preliminary) with the expected codes; every not-applicable one: none current.
// Provenance count per "Type/id", whatever the version its target names
async function provenanceByTarget(base) {
  const out = {};
  for (const p of await h.searchAll(base, 'Provenance?_count=1000')) {
    for (const t of p.target || []) {
      const k = String(t.reference || '').replace(/\/_history\/.*$/, '');
      out[k] = (out[k] || 0) + 1;
    }
  }
  return out;
}

async function verifyExactlyOnce(base, manifest, canonical = h.CANONICAL) {
  const ids = await patientIds(base);
  const cps = await ours(base, 'CarePlan', canonical);
  const ras = await ours(base, 'RiskAssessment', canonical);
  const prov = await provenanceByTarget(base);
  let eligible = 0;
  for (const m of manifest) {
    const pid = ids[m.identifier.value];
    assert.ok(pid, `${m.identifier.value} loaded`);
    const c = (cps[pid] || []).filter((r) => r.status === 'draft');
    const r = (ras[pid] || []).filter((x) => x.status === 'preliminary');
    if (m.expected.recommendation === 'not-applicable') {
      assert.equal(c.length, 0, `${m.identifier.value}: no current plan`);
      continue;
    }
    eligible++;
    assert.equal((cps[pid] || []).length, 1, `${m.identifier.value}: exactly one CarePlan`);
    assert.equal((ras[pid] || []).length, 1, `${m.identifier.value}: exactly one RiskAssessment`);
    assert.equal(c.length, 1, `${m.identifier.value}: the CarePlan is current`);
    assert.equal(r.length, 1, `${m.identifier.value}: the RiskAssessment is current`);
    const codes = h.categoryCodes(c[0]);
    assert.ok(codes.includes(m.expected.recommendation),
      `${m.identifier.value}: want ${m.expected.recommendation}, got ${codes}`);
    assert.equal(codes.includes('palliative-lrt'), m.expected.palliative,
      `${m.identifier.value}: palliative`);
    assert.equal(c[0].subject.reference, `Patient/${pid}`);
    // one Provenance per version written: none lost, none twice
    const hist = await h.fhir(base, 'GET', `${base}/CarePlan/${c[0].id}/_history`);
    assert.equal(hist.status, 200);
    assert.equal(prov[`CarePlan/${c[0].id}`] || 0, (hist.json.entry || []).length,
      `${m.identifier.value}: one Provenance per CarePlan version`);
    assert.equal(prov[`RiskAssessment/${r[0].id}`] || 0, (hist.json.entry || []).length,
      `${m.identifier.value}: the Provenances also target the RiskAssessment`);
  }
  return { eligible };
}

// `status` output -> {outbox, dead}
function status(state) {
  const r = h.runAdapter(['status', '--state', state]);
  assert.equal(r.status, 0, r.stderr);
  return {
    text: r.stdout,
    outbox: Number(/^outbox\s+(\d+)/m.exec(r.stdout)[1]),
    dead: Number(/^dead letters\s+(\d+)/m.exec(r.stdout)[1]),
  };
}

// Start the adapter asynchronously; resolves {status, signal, stdout, stderr}.
function spawnAdapter(args, env = {}) {
  const child = spawn(h.BIN, args, { cwd: h.ROOT,
    env: { ...process.env, DNMBC_LOG_LEVEL: '', ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  const done = new Promise((resolve) => {
    child.on('close', (code, signal) => resolve({ status: code, signal, stdout, stderr }));
  });
  return { child, done, stderr: () => stderr };
}

function summary(stdout, label) {
  const m = new RegExp(`^${label}\\s+(\\d+)`, 'm').exec(stdout);
  return m ? Number(m[1]) : NaN;
}

module.exports = { loadRandom, patientIds, ours, verifyExactlyOnce, status, spawnAdapter, summary };
