'use strict';
const { test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, request, patientBundle, patient } = require('../testlib/helpers');

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv.stop();
});
beforeEach(async () => {
  await request('POST', srv.origin + '/$test/reset');
});

test('a transaction resolves urn:uuid references to the created ids', async () => {
  const bundle = patientBundle('tx-1', 2, 3);
  const res = await request('POST', srv.base, bundle);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.type, 'transaction-response');
  assert.equal(res.body.entry.length, 6);
  for (const e of res.body.entry) {
    assert.match(e.response.status, /^201/);
    assert.match(e.response.location, /^[A-Za-z]+\/[^/]+\/_history\/[^/]+$/);
    assert.ok(e.response.etag);
  }
  const pid = res.body.entry[0].resource.id;
  assert.equal(res.body.entry[0].resource.resourceType, 'Patient');

  const obs = await request('GET', `${srv.base}/Observation?subject=Patient/${pid}`);
  assert.equal(obs.body.total, 3);
  const cond = await request('GET', `${srv.base}/Condition?subject=Patient/${pid}`);
  assert.equal(cond.body.total, 2);
  for (const e of [...obs.body.entry, ...cond.body.entry]) {
    assert.equal(e.resource.subject.reference, 'Patient/' + pid);
    assert.ok(!JSON.stringify(e.resource).includes('urn:uuid'));
  }
});

test('a transaction with an invalid entry fails whole and leaves nothing behind', async () => {
  const bundle = patientBundle('tx-2', 1, 2);
  delete bundle.entry[2].resource.status; // Observation.status is required
  const res = await request('POST', srv.base, bundle);
  assert.equal(res.status, 400);
  assert.equal(res.body.resourceType, 'OperationOutcome');
  const p = await request('GET', `${srv.base}/Patient?identifier=urn:test:mrn|tx-2`);
  assert.equal(p.body.total, 0, 'the Patient created before the failing entry was rolled back');
  const c = await request('GET', `${srv.base}/Condition?code=http://snomed.info/sct|100000`);
  assert.equal(c.body.total, 0);
});

test('a batch runs entries independently', async () => {
  const res = await request('POST', srv.base, {
    resourceType: 'Bundle',
    type: 'batch',
    entry: [
      { resource: patient('b-1'), request: { method: 'POST', url: 'Patient' } },
      { resource: { resourceType: 'CarePlan' }, request: { method: 'POST', url: 'CarePlan' } },
      { request: { method: 'GET', url: 'Patient?identifier=urn:test:mrn|b-1' } },
    ],
  });
  assert.equal(res.status, 200);
  assert.equal(res.body.type, 'batch-response');
  assert.match(res.body.entry[0].response.status, /^201/);
  assert.match(res.body.entry[1].response.status, /^400/);
  assert.equal(res.body.entry[1].response.outcome.resourceType, 'OperationOutcome');
  assert.match(res.body.entry[2].response.status, /^200/);
});

test('a transaction with conditional update entries', async () => {
  const cp = (status) => ({
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      {
        fullUrl: 'urn:uuid:3e0a5b4e-9d36-4f8a-a0a1-0c1d2e3f4a5b',
        resource: {
          resourceType: 'CarePlan',
          identifier: [{ system: 'urn:cp', value: 'x' }],
          status,
          intent: 'proposal',
          subject: { reference: 'Patient/p' },
        },
        request: { method: 'PUT', url: 'CarePlan?identifier=urn:cp|x' },
      },
      {
        resource: {
          resourceType: 'Provenance',
          target: [{ reference: 'urn:uuid:3e0a5b4e-9d36-4f8a-a0a1-0c1d2e3f4a5b' }],
          recorded: '2026-01-01T00:00:00Z',
          agent: [{ who: { display: 'dnmbc-adapter' } }],
        },
        request: { method: 'POST', url: 'Provenance' },
      },
    ],
  });
  const one = await request('POST', srv.base, cp('draft'));
  assert.equal(one.status, 200, JSON.stringify(one.body));
  const two = await request('POST', srv.base, cp('active'));
  assert.equal(two.status, 200, JSON.stringify(two.body));
  const id = one.body.entry[0].resource.id;
  assert.equal(two.body.entry[0].resource.id, id);
  const prov = await request('GET', `${srv.base}/Provenance?target=CarePlan/${id}`);
  assert.equal(prov.body.total, 2);
  const plans = await request('GET', `${srv.base}/CarePlan?identifier=urn:cp|x`);
  assert.equal(plans.body.total, 1);
  assert.equal(plans.body.entry[0].resource.status, 'active');
});
