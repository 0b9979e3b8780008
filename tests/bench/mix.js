// Writes the adapter's request mix for wrk (mix.lua), from what a full sync
// left on the server.  Per written patient the adapter sends two requests
// (adapter/sync.c, fetch_batch and write_transaction):
//   1. a batch Bundle: Patient read, Condition and Observation searches by
//      subject, and the CarePlan and RiskAssessment searches by our
//      identifier (its earlier plans);
//   2. a transaction Bundle: conditional updates of the CarePlan and the
//      RiskAssessment (the bodies the adapter wrote, without id and meta)
//      and the create of its Provenance, which targets the two by fullUrl.
// A first sync creates the plans: the conditional update finds nothing.  So
// that the replay creates too, every value of our identifier (in the URLs
// and in the bodies) carries the placeholder TOKEN, which mix.lua replaces
// with a value of its own on each loop; the patient's two identifier
// searches in the batch then find nothing either.  Only a sample of
// patients is kept (their requests are replayed in a loop).
//
//   node mix.js --base URL --codes FILE --page-size N --sample N --out FILE
// One request per line: METHOD <tab> PATH [<tab> BODY].  Prints
// {"patients": N, "requests_per_patient": R} on stdout.
import { readFileSync, writeFileSync } from 'node:fs';

const TOKEN = '@@N@@'; // mix.lua: the same string

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const base = arg('--base');
const codes = readFileSync(arg('--codes'), 'utf8').trim();
const pageSize = Number(arg('--page-size', '100'));
const sample = Number(arg('--sample', '300'));
const path = new URL(base).pathname;

async function get(url) {
  const r = await fetch(url, { headers: { accept: 'application/fhir+json' } });
  if (!r.ok) throw new Error(`GET ${url}: HTTP ${r.status}`);
  return r.json();
}
function strip(res) {
  const { id, meta, ...rest } = res;
  return rest;
}
// as libcurl's curl_easy_escape (http_escape): all but A-Z a-z 0-9 - . _ ~
function escape(s) {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
// the resource without id and meta, our identifier's value with the token
function fresh(res, system) {
  const out = strip(res);
  out.identifier = (res.identifier || []).map((i) => (i.system === system ? { ...i, value: `${i.value}${TOKEN}` } : i));
  return out;
}

const plans = await get(`${base}/CarePlan?_count=${sample}`);
const lines = [];
let used = 0;
for (const e of plans.entry || []) {
  const cp = e.resource;
  const ident = (cp.identifier || []).find((i) => /\/identifier\/careplan$/.test(i.system));
  if (!ident) continue;
  const pid = ident.value;
  const cpSys = ident.system;
  const raSys = cpSys.replace(/careplan$/, 'riskassessment');
  const ra = (await get(`${base}/RiskAssessment?identifier=${escape(`${raSys}|${pid}`)}`)).entry?.[0]?.resource;
  // the Provenance the adapter wrote with this plan (the server replaced
  // the fullUrl targets with CarePlan/id and RiskAssessment/id)
  const pv = (await get(`${base}/Provenance?target=${escape(`CarePlan/${cp.id}`)}`)).entry?.[0]?.resource;
  if (!ra || !pv) continue;
  const esc = escape(pid);
  const cq = `identifier=${escape(`${cpSys}|${pid}`)}${TOKEN}`;
  const rq = `identifier=${escape(`${raSys}|${pid}`)}${TOKEN}`;
  const batch = {
    resourceType: 'Bundle', type: 'batch',
    entry: [
      { request: { method: 'GET', url: `Patient/${esc}` } },
      { request: { method: 'GET', url: `Condition?subject=Patient/${esc}&_count=${pageSize}` } },
      { request: { method: 'GET', url: `Observation?subject=Patient/${esc}${codes ? `&code=${codes}` : ''}&_count=${pageSize}` } },
      { request: { method: 'GET', url: `CarePlan?${cq}` } },
      { request: { method: 'GET', url: `RiskAssessment?${rq}` } },
    ],
  };
  const [uCp, uRa, uPv] = [1, 2, 3].map((k) => `urn:uuid:00000000-0000-4000-8000-${String(k).padStart(12, '0')}`);
  const transaction = {
    resourceType: 'Bundle', type: 'transaction',
    entry: [
      { fullUrl: uCp, resource: fresh(cp, cpSys), request: { method: 'PUT', url: `CarePlan?${cq}` } },
      { fullUrl: uRa, resource: fresh(ra, raSys), request: { method: 'PUT', url: `RiskAssessment?${rq}` } },
      {
        fullUrl: uPv,
        resource: { ...strip(pv), target: [{ reference: uCp }, { reference: uRa }] },
        request: { method: 'POST', url: 'Provenance' },
      },
    ],
  };
  lines.push(['POST', path, JSON.stringify(batch)]);
  lines.push(['POST', path, JSON.stringify(transaction)]);
  used++;
}
if (used === 0) throw new Error('no CarePlan of the adapter found: run a sync first');
writeFileSync(arg('--out'), lines.map((l) => l.join('\t')).join('\n') + '\n');
console.log(JSON.stringify({ patients: used, requests_per_patient: lines.length / used }));
