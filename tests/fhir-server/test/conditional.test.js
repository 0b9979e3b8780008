'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, request } = require('../testlib/helpers');

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv.stop();
});

function carePlan(idValue, status) {
  return {
    resourceType: 'CarePlan',
    identifier: [{ system: 'urn:dnmbc:careplan', value: idValue }],
    status,
    intent: 'proposal',
    subject: { reference: 'Patient/p1' },
  };
}

test('conditional update: 0 matches creates, 1 match updates the same id with a new versionId', async () => {
  const url = `${srv.base}/CarePlan?identifier=${encodeURIComponent('urn:dnmbc:careplan|cu-1')}`;
  const first = await request('PUT', url, carePlan('cu-1', 'draft'));
  assert.equal(first.status, 201);
  assert.ok(first.headers.get('location'));
  const second = await request('PUT', url, carePlan('cu-1', 'active'));
  assert.equal(second.status, 200);
  assert.equal(second.body.id, first.body.id);
  assert.notEqual(second.body.meta.versionId, first.body.meta.versionId);
  const read = await request('GET', `${srv.base}/CarePlan/${first.body.id}`);
  assert.equal(read.body.status, 'active');
  assert.equal(read.body.meta.versionId, second.body.meta.versionId);
  const all = await request('GET', url);
  assert.equal(all.body.total, 1, 'no duplicate was created');
});

test('conditional update with 2 matches gives 412 and changes nothing', async () => {
  const a = await request('POST', `${srv.base}/CarePlan`, carePlan('dup', 'draft'));
  const b = await request('POST', `${srv.base}/CarePlan`, carePlan('dup', 'draft'));
  assert.equal(a.status, 201);
  assert.equal(b.status, 201);
  const url = `${srv.base}/CarePlan?identifier=${encodeURIComponent('urn:dnmbc:careplan|dup')}`;
  const res = await request('PUT', url, carePlan('dup', 'active'));
  assert.equal(res.status, 412);
  assert.equal(res.body.resourceType, 'OperationOutcome');
  const after = await request('GET', url);
  assert.equal(after.body.total, 2);
  assert.ok(after.body.entry.every((e) => e.resource.status === 'draft'));
});

test('conditional update of an invalid resource is a 400 and creates nothing', async () => {
  const url = `${srv.base}/CarePlan?identifier=${encodeURIComponent('urn:dnmbc:careplan|bad')}`;
  const res = await request('PUT', url, { resourceType: 'CarePlan', identifier: [{ system: 'urn:dnmbc:careplan', value: 'bad' }] });
  assert.equal(res.status, 400);
  const after = await request('GET', url);
  assert.equal(after.body.total, 0);
});
