// Load N changed Observations (a change backlog) into the test server in
// batch Bundles of 1000, with a code the mapping tables ignore (the
// decisions do not change).  One in PATIENT_EVERY (default 100) names one of
// the server's patients, round-robin: the daemon fetches and decides that
// patient again.  The others name a Device: change detection reads and
// pages them like any change but they start no patient run, because the
// bundled server's per-patient fetch is far too slow at this scale (a
// full scan per Observation search) for 100,000 patient runs.  Prints the
// newest meta.lastUpdated on the server when done.
//
//   node backlog-load.js BASE N
'use strict';

async function main() {
  const [base, nText] = process.argv.slice(2);
  const n = Number(nText);
  if (!base || !Number.isInteger(n) || n < 1) {
    console.error('usage: node backlog-load.js BASE N');
    process.exit(2);
  }
  const get = async (url) => {
    const r = await fetch(url, { headers: { accept: 'application/fhir+json' } });
    if (!r.ok) throw new Error(`GET ${url}: HTTP ${r.status}`);
    return r.json();
  };
  const patients = [];
  for (let url = `${base}/Patient?_count=1000&_elements=id`; url;) {
    const b = await get(url);
    for (const e of b.entry || []) patients.push(e.resource.id);
    const next = (b.link || []).find((l) => l.relation === 'next');
    url = next ? next.url : null;
  }
  if (!patients.length) throw new Error('no Patient on the server');
  const every = Number(process.env.PATIENT_EVERY || 100);
  for (let done = 0; done < n;) {
    const k = Math.min(1000, n - done);
    const entry = [];
    for (let i = 0; i < k; i++) {
      entry.push({
        resource: {
          resourceType: 'Observation',
          status: 'final',
          code: { coding: [{ system: 'http://loinc.org', code: '29463-7' }] },
          subject: {
            reference: (done + i) % every === 0
              ? `Patient/${patients[((done + i) / every) % patients.length]}`
              : 'Device/bench-backlog',
          },
          valueQuantity: { value: 50 + ((done + i) % 50), unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg' },
        },
        request: { method: 'POST', url: 'Observation' },
      });
    }
    const r = await fetch(base, {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+json', accept: 'application/fhir+json' },
      body: JSON.stringify({ resourceType: 'Bundle', type: 'batch', entry }),
    });
    if (!r.ok) throw new Error(`batch: HTTP ${r.status} ${(await r.text()).slice(0, 300)}`);
    done += k;
    if (done % 10000 === 0 || done === n) console.error(`backlog: ${done} of ${n}`);
  }
  const last = await get(`${base}/Observation?_sort=-_lastUpdated&_count=1`);
  console.log(last.entry[0].resource.meta.lastUpdated);
}

main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
