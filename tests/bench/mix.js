// Writes the adapter's request mix for wrk (mix.lua), from what a full sync
// left on the server: per patient the batch fetch, the two identifier
// searches for the earlier plan, the two conditional updates (with the
// bodies the adapter wrote) and the Provenance create.  Only a sample of
// patients is kept (their requests are replayed in a loop).
//
//   node mix.js --base URL --codes FILE --page-size N --sample N --out FILE
// One request per line: METHOD <tab> PATH [<tab> BODY].
import { readFileSync, writeFileSync } from 'node:fs';

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

const plans = await get(`${base}/CarePlan?_count=${sample}`);
const provs = ((await get(`${base}/Provenance?_count=${sample}`)).entry || []).map((e) => e.resource);
const lines = [];
let used = 0;
for (const e of plans.entry || []) {
  const cp = e.resource;
  const ident = (cp.identifier || []).find((i) => /\/identifier\/careplan$/.test(i.system));
  if (!ident) continue;
  const pid = ident.value;
  const raSys = ident.system.replace(/careplan$/, 'riskassessment');
  const raBundle = await get(`${base}/RiskAssessment?identifier=${encodeURIComponent(`${raSys}|${pid}`)}`);
  const ra = raBundle.entry?.[0]?.resource;
  // the adapter's Provenances target versioned references: take them in turn
  const pv = provs[used % Math.max(provs.length, 1)];
  if (!ra || !pv) continue;
  const esc = encodeURIComponent(pid);
  const batch = {
    resourceType: 'Bundle', type: 'batch',
    entry: [
      { request: { method: 'GET', url: `Patient/${esc}` } },
      { request: { method: 'GET', url: `Condition?subject=Patient/${esc}&_count=${pageSize}` } },
      { request: { method: 'GET', url: `Observation?subject=Patient/${esc}${codes ? `&code=${codes}` : ''}&_count=${pageSize}` } },
    ],
  };
  const cq = `identifier=${encodeURIComponent(`${ident.system}|${pid}`)}`;
  const rq = `identifier=${encodeURIComponent(`${raSys}|${pid}`)}`;
  lines.push(['POST', path, JSON.stringify(batch)]);
  lines.push(['GET', `${path}/CarePlan?${cq}`]);
  lines.push(['GET', `${path}/RiskAssessment?${rq}`]);
  lines.push(['PUT', `${path}/CarePlan?${cq}`, JSON.stringify(strip(cp))]);
  lines.push(['PUT', `${path}/RiskAssessment?${rq}`, JSON.stringify(strip(ra))]);
  lines.push(['POST', `${path}/Provenance`, JSON.stringify(strip(pv))]);
  used++;
}
if (used === 0) throw new Error('no CarePlan of the adapter found: run a sync first');
writeFileSync(arg('--out'), lines.map((l) => l.join('\t')).join('\n') + '\n');
console.log(JSON.stringify({ patients: used, requests_per_patient: lines.length / used }));
