// Loads N synthetic patients (tests/synth: the same Bundles as
// `generate.js --count N --seed S` writes, built in memory instead of as N
// files) into the test server through POST /$test/load, 500 Bundles per
// request (tests/fhir-server/lib/fastload.js). Prints the patients and
// resources loaded as JSON.
//
//   node bulk-load.js BASE N [SEED]
'use strict';

const path = require('node:path');
const synth = path.join(__dirname, '..', 'synth');
const { randomSpecs } = require(path.join(synth, 'random'));
const B = require(path.join(synth, 'build'));

async function main() {
  const [base, nText, seed = '7'] = process.argv.slice(2);
  const n = Number(nText);
  if (!base || !Number.isInteger(n) || n < 1) {
    console.error('usage: node bulk-load.js BASE N [SEED]');
    process.exit(2);
  }
  const admin = new URL(base).origin + '/$test/load';
  const specs = randomSpecs(n, seed);
  let patients = 0;
  let resources = 0;
  for (let i = 0; i < specs.length; i += 500) {
    const text = specs.slice(i, i + 500).map((s) => JSON.stringify(B.toTransaction(s, seed))).join('\n') + '\n';
    const r = await fetch(admin, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: text });
    const answer = await r.json();
    if (!r.ok) throw new Error(`$test/load: HTTP ${r.status}: ${JSON.stringify(answer).slice(0, 300)}`);
    patients += answer.bundles;
    resources += answer.resources;
    if (patients % 10000 === 0 || patients === n) console.error(`bulk-load: ${patients} of ${n}`);
  }
  console.log(JSON.stringify({ patients, resources }));
}

main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
