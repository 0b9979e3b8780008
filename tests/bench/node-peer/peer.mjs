// The benchmark's Node.js peer: the adapter's job as a hospital team would
// write it with fhir-kit-client, to compare CPU and memory on the same
// server and cohort.  Same requests per patient (read Patient, search
// Condition and Observation by subject following next links, look for the
// earlier plan by identifier, conditional update of CarePlan and
// RiskAssessment when the content hash changed, create a Provenance), the
// same mapping tables (codes looked up in mappings/*.json), but a simplified
// decision (the features found, not the adapter's rules): its cost is a
// lower bound of the real job's.
//
//   node peer.mjs --base URL --mappings DIR [--concurrency N] [--page-size N]
// Prints one JSON line {patients, failed, requests}.
import { Client } from 'fhir-kit-client';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const base = arg('--base');
const dir = arg('--mappings', 'mappings');
const concurrency = Number(arg('--concurrency', '4'));
const pageSize = Number(arg('--page-size', '100'));
const SYSTEM = 'urn:dnmbc-bench:node-peer';
if (!base) {
  console.error('usage: node peer.mjs --base URL --mappings DIR [--concurrency N]');
  process.exit(2);
}

// code index: "Resource|system|code" -> [feature]
const index = new Map();
const cohort = [];
for (const f of readdirSync(dir).filter((n) => n.endsWith('.json'))) {
  const doc = JSON.parse(readFileSync(join(dir, f), 'utf8'));
  for (const e of doc.entries || []) {
    for (const c of e.codes || []) {
      const k = `${e.resource}|${e.system}|${c}`;
      if (!index.has(k)) index.set(k, []);
      index.get(k).push(e.feature);
      if (e.feature === 'primary' && e.resource === 'Condition' && !e.where && e.cohort !== false) {
        // codes as servers store them: bare (any system), ICD codes also dotted
        cohort.push(c);
        if (/icd/.test(e.system) && c.length > 3 && !c.includes('.')) cohort.push(`${c.slice(0, 3)}.${c.slice(3)}`);
      }
    }
  }
}
cohort.push('http://snomed.info/sct|363346000', 'http://snomed.info/sct|55342001');

const client = new Client({ baseUrl: base });
let requests = 0;

async function searchAll(resourceType, searchParams) {
  const out = [];
  requests++;
  let bundle = await client.search({ resourceType, searchParams });
  for (;;) {
    for (const e of bundle.entry || []) if (e.resource) out.push(e.resource);
    if (!(bundle.link || []).some((l) => l.relation === 'next')) break;
    requests++;
    bundle = await client.nextPage({ bundle });
  }
  return out;
}

function features(resources) {
  const found = {};
  for (const r of resources) {
    for (const c of (r.code && r.code.coding) || []) {
      for (const f of index.get(`${r.resourceType}|${c.system}|${c.code}`) || []) {
        const v = r.valueCodeableConcept?.coding?.[0]?.code ?? r.valueQuantity?.value ?? true;
        (found[f] ||= []).push({ ref: `${r.resourceType}/${r.id}`, value: v });
      }
    }
  }
  return found;
}

async function upsert(type, body, hash) {
  const searchParams = { identifier: `${SYSTEM}|${body.subject.reference}` };
  const old = await searchAll(type, searchParams);
  const same = old.length === 1 &&
    (old[0].extension || []).some((x) => x.url === `${SYSTEM}/hash` && x.valueString === hash);
  if (same) return null;
  requests++;
  return client.update({ resourceType: type, searchParams, body });
}

async function onePatient(id) {
  requests++;
  const patient = await client.read({ resourceType: 'Patient', id });
  const conditions = await searchAll('Condition', { subject: `Patient/${id}`, _count: pageSize });
  const observations = await searchAll('Observation', { subject: `Patient/${id}`, _count: pageSize });
  const f = features([patient, ...conditions, ...observations]);
  const names = Object.keys(f).sort();
  const hash = createHash('sha256').update(JSON.stringify(f)).digest('hex');
  const common = {
    identifier: [{ system: SYSTEM, value: `Patient/${id}` }],
    subject: { reference: `Patient/${id}` },
    extension: [{ url: `${SYSTEM}/hash`, valueString: hash }],
  };
  const plan = {
    resourceType: 'CarePlan', status: 'draft', intent: 'proposal', ...common,
    description: names.length ? `features: ${names.join(', ')}` : 'insufficient data',
    supportingInfo: Object.values(f).flat().slice(0, 50).map((x) => ({ reference: x.ref })),
  };
  const risk = {
    resourceType: 'RiskAssessment', status: 'preliminary', ...common,
    basis: plan.supportingInfo,
  };
  const cp = await upsert('CarePlan', plan, hash);
  const ra = await upsert('RiskAssessment', risk, hash);
  if (cp && ra) {
    requests++;
    await client.create({
      resourceType: 'Provenance',
      body: {
        resourceType: 'Provenance',
        target: [{ reference: `CarePlan/${cp.id}` }, { reference: `RiskAssessment/${ra.id}` }],
        recorded: new Date().toISOString(),
        agent: [{ who: { display: 'dnmbc benchmark node peer' } }],
      },
    });
  }
}

const conds = await searchAll('Condition', { code: cohort.join(','), _count: 1000 });
const ids = [...new Set(conds.map((c) => c.subject?.reference)
  .filter((r) => r && r.startsWith('Patient/')).map((r) => r.slice(8)))].sort();
let next = 0, failed = 0;
async function worker() {
  while (next < ids.length) {
    const id = ids[next++];
    try {
      await onePatient(id);
    } catch (e) {
      failed++;
      if (failed <= 3) console.error(`peer: patient failed: ${e.message || e}`);
    }
  }
}
await Promise.all(Array.from({ length: concurrency }, worker));
console.log(JSON.stringify({ patients: ids.length, failed, requests }));
