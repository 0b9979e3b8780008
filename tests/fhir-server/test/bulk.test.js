'use strict';
// $export (lib/bulk.js): kick-off, status, manifest, files, _since, _type,
// _typeFilter, deleted, DELETE, and the injectable faults.
const { test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, request, patient, condition, observation } = require('../testlib/helpers');

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv.stop();
});
beforeEach(async () => {
  assert.equal((await request('POST', srv.origin + '/$test/reset')).status, 200);
});

const ASYNC = { Prefer: 'respond-async', Accept: 'application/fhir+json' };

async function seed() {
  const a = (await request('POST', srv.base + '/Patient', patient('a'))).body;
  const b = (await request('POST', srv.base + '/Patient', patient('b'))).body;
  await request('POST', srv.base + '/Condition', condition('Patient/' + a.id, '254837009'));
  await request('POST', srv.base + '/Observation', observation('Patient/' + a.id, '85319-2', 1));
  await request('POST', srv.base + '/Observation', observation('Patient/' + b.id, '99999-9', 2));
  return { a, b };
}

async function exportAll(path) {
  const k = await request('GET', srv.base + path, undefined, ASYNC);
  assert.equal(k.status, 202, JSON.stringify(k.body));
  const statusUrl = k.headers.get('content-location');
  assert.match(statusUrl, /\$bulk-status\//);
  let s;
  for (let i = 0; i < 20; i++) {
    s = await request('GET', statusUrl);
    if (s.status !== 202) {
      break;
    }
    assert.match(s.headers.get('x-progress'), /%/);
    assert.ok(s.headers.get('retry-after') !== null);
  }
  assert.equal(s.status, 200);
  const files = {};
  for (const o of s.body.output.concat(s.body.deleted)) {
    const f = await fetch(o.url);
    assert.equal(f.status, 200);
    assert.equal(f.headers.get('content-type'), 'application/fhir+ndjson');
    const lines = (await f.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
    files[o.type] = (files[o.type] || []).concat(lines);
  }
  return { statusUrl, manifest: s.body, files };
}

test('kick-off needs Prefer: respond-async', async () => {
  const r = await request('GET', srv.base + '/Patient/$export', undefined, { Accept: 'application/fhir+json' });
  assert.equal(r.status, 400);
  assert.equal(r.body.resourceType, 'OperationOutcome');
});

test('Patient/$export: manifest, NDJSON files, DELETE of the status URL', async () => {
  const { a, b } = await seed();
  const { statusUrl, manifest, files } = await exportAll('/Patient/$export?_type=Patient,Condition,Observation');
  assert.ok(manifest.transactionTime);
  assert.equal(manifest.requiresAccessToken, false);
  assert.deepEqual(files.Patient.map((p) => p.id).sort(), [a.id, b.id].sort());
  assert.equal(files.Condition.length, 1);
  assert.equal(files.Observation.length, 2);
  assert.equal((await request('DELETE', statusUrl)).status, 202);
  assert.equal((await request('GET', statusUrl)).status, 404);
});

test('_type, _typeFilter and Group membership', async () => {
  const { a } = await seed();
  const g = await request('POST', srv.base + '/Group', {
    resourceType: 'Group', type: 'person', actual: true, member: [{ entity: { reference: 'Patient/' + a.id } }],
  });
  const { files } = await exportAll(`/Group/${g.body.id}/$export?_type=Patient,Observation&_typeFilter=` +
    encodeURIComponent('Observation?code=http://loinc.org|85319-2'));
  assert.deepEqual(files.Patient.map((p) => p.id), [a.id]);
  assert.equal(files.Condition, undefined);
  assert.equal(files.Observation.length, 1);
  assert.equal(files.Observation[0].code.coding[0].code, '85319-2');
  assert.equal((await request('GET', srv.base + '/Group/nope/$export', undefined, ASYNC)).status, 404);
});

test('_since: only what changed, deletions in `deleted`', async () => {
  const { a, b } = await seed();
  const first = await exportAll('/Patient/$export');
  const obs = await request('POST', srv.base + '/Observation', observation('Patient/' + b.id, '85319-2', 3));
  const cond = (await request('GET', srv.base + '/Condition?subject=Patient/' + a.id)).body.entry[0].resource;
  assert.equal((await request('DELETE', srv.base + '/Condition/' + cond.id)).status, 200);
  const second = await exportAll('/Patient/$export?_since=' + encodeURIComponent(first.manifest.transactionTime));
  assert.equal(second.files.Patient, undefined);
  assert.deepEqual(second.files.Observation.map((o) => o.id), [obs.body.id]);
  assert.deepEqual(second.files.Bundle[0].entry, [{ request: { method: 'DELETE', url: 'Condition/' + cond.id } }]);
});

test('faults: 429 on polling, 503 and truncation on download, expired URLs', async () => {
  await seed();
  await request('POST', srv.origin + '/$test/bulk', { poll429: 1, download5xx: 1, truncate: 1, expire: 1, pollsBeforeReady: 0 });
  const k = await request('GET', srv.base + '/Patient/$export', undefined, ASYNC);
  const statusUrl = k.headers.get('content-location');
  const t = await request('GET', statusUrl);
  assert.equal(t.status, 429);
  assert.equal(t.headers.get('retry-after'), '1');
  const m = (await request('GET', statusUrl)).body;
  const url = m.output[0].url;
  assert.equal((await fetch(url)).status, 403); // expired
  const m2 = (await request('GET', statusUrl)).body;
  assert.notEqual(m2.output[0].url, url);
  assert.equal((await fetch(url)).status, 403); // the old URL stays expired
  assert.equal((await fetch(m2.output[0].url)).status, 503);
  await assert.rejects(async () => {
    const f = await fetch(m2.output[0].url);
    await f.text();
  });
  assert.equal((await fetch(m2.output[0].url)).status, 200);
});
