'use strict';
const { test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, request, patient, patientBundle } = require('../testlib/helpers');

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv.stop();
});
beforeEach(async () => {
  const res = await request('POST', srv.origin + '/$test/reset');
  assert.equal(res.status, 200);
});

const carePlan = {
  resourceType: 'CarePlan',
  identifier: [{ system: 'urn:cp', value: 'f' }],
  status: 'draft',
  intent: 'proposal',
  subject: { reference: 'Patient/p' },
};
const cpUrl = () => `${srv.base}/CarePlan?identifier=${encodeURIComponent('urn:cp|f')}`;

test('fault: next N matching requests fail with the status and an OperationOutcome', async () => {
  const set = await request('POST', srv.origin + '/$test/fault', {
    method: 'PUT',
    resourceType: 'CarePlan',
    match: 'identifier=',
    status: 422,
    diagnostics: 'plan rejected by business rule',
    count: 2,
  });
  assert.equal(set.status, 200);
  // a non-matching request is not affected
  assert.equal((await request('POST', srv.base + '/Patient', patient('f-1'))).status, 201);
  for (let i = 0; i < 2; i++) {
    const res = await request('PUT', cpUrl(), carePlan);
    assert.equal(res.status, 422);
    assert.equal(res.body.resourceType, 'OperationOutcome');
    assert.equal(res.body.issue[0].code, 'business-rule');
    assert.equal(res.body.issue[0].diagnostics, 'plan rejected by business rule');
  }
  assert.equal((await request('GET', cpUrl())).body.total, 0, 'the faulted requests wrote nothing');
  const third = await request('PUT', cpUrl(), carePlan);
  assert.equal(third.status, 201);
});

test('fault: other statuses use code processing; DELETE clears; Retry-After', async () => {
  await request('POST', srv.origin + '/$test/fault', { method: 'GET', status: 503, count: -1, retryAfter: 7 });
  for (let i = 0; i < 3; i++) {
    const res = await request('GET', srv.base + '/Patient');
    assert.equal(res.status, 503);
    assert.equal(res.body.issue[0].code, 'processing');
    assert.equal(res.headers.get('retry-after'), '7');
  }
  const list = await request('GET', srv.origin + '/$test/fault');
  assert.equal(list.body.faults.length, 1);
  await request('DELETE', srv.origin + '/$test/fault');
  assert.equal((await request('GET', srv.base + '/Patient')).status, 200);
});

test('fault: delayMs delays the response', async () => {
  await request('POST', srv.origin + '/$test/fault', { resourceType: 'Patient', delayMs: 300 });
  const t0 = Date.now();
  const res = await request('GET', srv.base + '/Patient');
  assert.equal(res.status, 200);
  assert.ok(Date.now() - t0 >= 290, 'delayed');
});

test('fault: matches an entry inside a transaction, which then fails whole', async () => {
  await request('POST', srv.origin + '/$test/fault', { method: 'POST', resourceType: 'Observation', status: 500 });
  const res = await request('POST', srv.base, patientBundle('f-tx', 1, 2));
  assert.equal(res.status, 500);
  assert.equal(res.body.issue[0].code, 'processing');
  assert.equal((await request('GET', `${srv.base}/Patient?identifier=urn:test:mrn|f-tx`)).body.total, 0);
  // the rule was used up: the same bundle now loads
  const again = await request('POST', srv.base, patientBundle('f-tx', 1, 2));
  assert.equal(again.status, 200);
});

test('fault: in a batch only the matching entry fails, with the fault status', async () => {
  await request('POST', srv.origin + '/$test/fault', { method: 'PUT', resourceType: 'CarePlan', status: 409 });
  const res = await request('POST', srv.base, {
    resourceType: 'Bundle',
    type: 'batch',
    entry: [
      { resource: patient('f-b'), request: { method: 'POST', url: 'Patient' } },
      { resource: carePlan, request: { method: 'PUT', url: 'CarePlan?identifier=urn:cp|f' } },
    ],
  });
  assert.equal(res.status, 200);
  assert.match(res.body.entry[0].response.status, /^201/);
  assert.equal(res.body.entry[1].response.status, '409');
});

test('fault: bad rules are refused', async () => {
  for (const bad of [{}, { status: 200 }, { status: 500, count: 0 }, { status: 500, colour: 'red' }, [1]]) {
    const res = await request('POST', srv.origin + '/$test/fault', bad);
    assert.equal(res.status, 400, JSON.stringify(bad));
  }
});

test('stats count requests and bundle entries by method and type; reset empties', async () => {
  await request('POST', srv.base + '/Patient', patient('st-1'));
  await request('GET', srv.base + '/Patient');
  await request('GET', srv.base + '/Patient');
  await request('POST', srv.base, patientBundle('st-2', 1, 2));
  let stats = (await request('GET', srv.origin + '/$test/stats')).body;
  assert.equal(stats.requests.POST.Patient, 1);
  assert.equal(stats.requests.GET.Patient, 2);
  assert.equal(stats.requests.POST.Bundle, 1);
  assert.equal(stats.entries.POST.Observation, 2);
  assert.equal(stats.entries.POST.Condition, 1);
  assert.equal(stats.writes, 1 + 4);
  assert.equal(stats.total, 4);
  assert.equal(stats.requests.PUT, undefined, 'no PUT happened');

  await request('POST', srv.origin + '/$test/reset');
  stats = (await request('GET', srv.origin + '/$test/stats')).body;
  assert.equal(stats.total, 0);
  assert.equal(stats.writes, 0);
  const all = await request('GET', srv.base + '/Patient');
  assert.equal(all.body.total, 0, 'repository emptied');
});

test('unknown test endpoints and non-FHIR paths are 404', async () => {
  assert.equal((await request('POST', srv.origin + '/$test/nothing')).status, 404);
  assert.equal((await request('GET', srv.origin + '/other')).status, 404);
});
