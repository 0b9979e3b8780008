'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startServer, request, patientBundle } = require('../testlib/helpers');

const LOAD = path.join(__dirname, '..', 'load.js');

let srv;
let tmp;
before(async () => {
  srv = await startServer();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fhir-load-'));
});
after(async () => {
  await srv.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function runLoad(args) {
  return new Promise((resolve) => {
    execFile(process.execPath, [LOAD, ...args], (err, stdout, stderr) => {
      resolve({ code: err ? err.code : 0, stdout, stderr });
    });
  });
}

test('load.js posts every bundle of a directory', async () => {
  const dir = path.join(tmp, 'good');
  fs.mkdirSync(dir);
  for (let i = 0; i < 3; i++) {
    fs.writeFileSync(path.join(dir, `p${i}.json`), JSON.stringify(patientBundle('load-' + i, 1, 2)));
  }
  fs.writeFileSync(path.join(dir, 'README.txt'), 'not json, skipped');
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify([{ file: 'p0.json' }]));
  const res = await runLoad(['--base', srv.base, dir]);
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stderr, /3 of 3 bundles loaded/);
  assert.match(res.stderr, /manifest\.json: skipped/);
  for (let i = 0; i < 3; i++) {
    const p = await request('GET', `${srv.base}/Patient?identifier=urn:test:mrn|load-${i}`);
    assert.equal(p.body.total, 1);
    const o = await request('GET', `${srv.base}/Observation?subject=Patient/${p.body.entry[0].resource.id}`);
    assert.equal(o.body.total, 2);
  }
});

test('load.js reports the OperationOutcome and exits non-zero on a failure', async () => {
  const bad = patientBundle('load-bad', 1, 1);
  bad.entry[1].resource.subject = 'not a reference';
  const file = path.join(tmp, 'bad.json');
  fs.writeFileSync(file, JSON.stringify(bad));
  const good = path.join(tmp, 'good2.json');
  fs.writeFileSync(good, JSON.stringify(patientBundle('load-good', 1, 1)));
  const res = await runLoad(['--base', srv.base, file, good]);
  assert.equal(res.code, 1);
  assert.match(res.stderr, /bad\.json: HTTP 400: error\/structure/);
  assert.match(res.stderr, /Condition\.subject/);
  assert.match(res.stderr, /1 of 2 bundles loaded/);

  const notBundle = path.join(tmp, 'manifest.json');
  fs.writeFileSync(notBundle, '[]');
  const named = await runLoad(['--base', srv.base, notBundle]);
  assert.equal(named.code, 1, 'a file named on the command line must be a Bundle');
  assert.match(named.stderr, /not a transaction or batch Bundle/);

  const usage = await runLoad([file]);
  assert.equal(usage.code, 2);
  const down = await runLoad(['--base', 'http://127.0.0.1:9/fhir/R4', good]);
  assert.equal(down.code, 1);
});

test('2,000-patient workload: load and per-patient searches (timing printed, not asserted)', async () => {
  await request('POST', srv.origin + '/$test/reset');
  const n = 2000;
  const t0 = Date.now();
  const ids = [];
  for (let i = 0; i < n; i++) {
    const res = await request('POST', srv.base, patientBundle('w-' + i, 3, 8));
    assert.equal(res.status, 200);
    ids.push(res.body.entry[0].resource.id);
  }
  const tLoad = Date.now() - t0;
  const t1 = Date.now();
  for (let i = 0; i < n; i++) {
    const c = await request('GET', `${srv.base}/Condition?subject=Patient/${ids[i]}`);
    const o = await request('GET', `${srv.base}/Observation?subject=Patient/${ids[i]}&code=http://loinc.org|85319-2`);
    assert.equal(c.body.total, 3);
    assert.equal(o.body.total, 8);
  }
  const tSearch = Date.now() - t1;
  const t2 = Date.now();
  for (let i = 0; i < 200; i++) {
    const p = await request('GET', `${srv.base}/Patient?identifier=urn:test:mrn|w-${(i * 7) % n}`);
    assert.equal(p.body.total, 1);
  }
  const tIdent = Date.now() - t2;
  const t3 = Date.now();
  const unindexed = await request('GET', `${srv.base}/Observation?_lastUpdated=gt2000-01-01&_count=1`);
  const tScan = Date.now() - t3;
  assert.equal(unindexed.body.total, n * 8);
  console.log(
    `workload: ${n} patients (${n * 12} resources) loaded as transactions in ${tLoad} ms; ` +
      `${2 * n} subject searches in ${tSearch} ms (${((2 * n * 1000) / tSearch).toFixed(0)}/s); ` +
      `200 identifier searches in ${tIdent} ms; one unindexed scan of ${n * 8} Observations in ${tScan} ms`
  );
});
