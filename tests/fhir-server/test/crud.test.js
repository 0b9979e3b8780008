'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, request, patient } = require('../testlib/helpers');

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv.stop();
});

test('metadata is a CapabilityStatement listing conditional update and our search params', async () => {
  const res = await request('GET', srv.base + '/metadata');
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^application\/fhir\+json/);
  assert.equal(res.body.resourceType, 'CapabilityStatement');
  assert.equal(res.body.fhirVersion, '4.0.1');
  const rest = res.body.rest[0];
  assert.deepEqual(rest.interaction.map((i) => i.code).sort(), ['batch', 'transaction']);
  const cp = rest.resource.find((r) => r.type === 'CarePlan');
  assert.equal(cp.conditionalUpdate, true);
  assert.ok(cp.interaction.some((i) => i.code === 'update'));
  assert.ok(cp.searchParam.some((p) => p.name === 'subject' && p.type === 'reference'));
  const obs = rest.resource.find((r) => r.type === 'Observation');
  assert.ok(obs.searchParam.some((p) => p.name === 'code' && p.type === 'token'));
  assert.ok(!obs.searchParam.some((p) => p.name === 'value-quantity'), 'unsupported parameter types are not listed');
});

test('create then read, vread; server assigns id and meta', async () => {
  const body = patient('crud-1', { id: 'client-id', meta: { versionId: '99', lastUpdated: '2000-01-01T00:00:00Z' } });
  const created = await request('POST', srv.base + '/Patient', body);
  assert.equal(created.status, 201);
  const { id, meta } = created.body;
  assert.notEqual(id, 'client-id', 'a plain create ignores the client id');
  assert.notEqual(meta.versionId, '99');
  assert.notEqual(meta.lastUpdated, '2000-01-01T00:00:00Z');
  assert.equal(created.headers.get('etag'), `W/"${meta.versionId}"`);
  assert.equal(created.headers.get('location'), `${srv.base}/Patient/${id}/_history/${meta.versionId}`);

  const read = await request('GET', `${srv.base}/Patient/${id}`);
  assert.equal(read.status, 200);
  assert.deepEqual(read.body, created.body);

  const vread = await request('GET', `${srv.base}/Patient/${id}/_history/${meta.versionId}`);
  assert.equal(vread.status, 200);
  assert.equal(vread.body.meta.versionId, meta.versionId);

  const missing = await request('GET', `${srv.base}/Patient/does-not-exist`);
  assert.equal(missing.status, 404);
  assert.equal(missing.body.resourceType, 'OperationOutcome');
});

test('update makes a new versionId that read shows; history lists versions newest first', async () => {
  const created = await request('POST', srv.base + '/Patient', patient('crud-2'));
  const id = created.body.id;
  const v1 = created.body.meta.versionId;
  const changed = { ...created.body, gender: 'male' };
  const updated = await request('PUT', `${srv.base}/Patient/${id}`, changed);
  assert.equal(updated.status, 200);
  const v2 = updated.body.meta.versionId;
  assert.notEqual(v2, v1);
  const read = await request('GET', `${srv.base}/Patient/${id}`);
  assert.equal(read.body.meta.versionId, v2);
  assert.equal(read.body.gender, 'male');
  // the old version is still there
  const old = await request('GET', `${srv.base}/Patient/${id}/_history/${v1}`);
  assert.equal(old.body.gender, 'female');
  // history twice: the order must not flip between calls
  for (let i = 0; i < 2; i++) {
    const hist = await request('GET', `${srv.base}/Patient/${id}/_history`);
    assert.equal(hist.status, 200);
    assert.equal(hist.body.type, 'history');
    assert.equal(hist.body.total, 2);
    assert.deepEqual(
      hist.body.entry.map((e) => e.resource.meta.versionId),
      [v2, v1]
    );
    assert.deepEqual(
      hist.body.entry.map((e) => e.request.method),
      ['PUT', 'POST']
    );
  }
});

test('If-Match with a stale version gives 412', async () => {
  const created = await request('POST', srv.base + '/Patient', patient('crud-3'));
  const { id, meta } = created.body;
  await request('PUT', `${srv.base}/Patient/${id}`, { ...created.body, gender: 'other' });
  const stale = await request('PUT', `${srv.base}/Patient/${id}`, created.body, { 'If-Match': `W/"${meta.versionId}"` });
  assert.equal(stale.status, 412);
  assert.equal(stale.body.resourceType, 'OperationOutcome');
});

test('delete, then read gives 410 and history records the delete', async () => {
  const created = await request('POST', srv.base + '/Patient', patient('crud-4'));
  const id = created.body.id;
  const del = await request('DELETE', `${srv.base}/Patient/${id}`);
  assert.equal(del.status, 200);
  const read = await request('GET', `${srv.base}/Patient/${id}`);
  assert.equal(read.status, 410);
  const hist = await request('GET', `${srv.base}/Patient/${id}/_history`);
  assert.deepEqual(
    hist.body.entry.map((e) => e.request.method),
    ['DELETE', 'POST']
  );
  const found = await request('GET', `${srv.base}/Patient?identifier=urn:test:mrn|crud-4`);
  assert.equal(found.body.total, 0);
});

test('conditional create with If-None-Exist', async () => {
  const first = await request('POST', srv.base + '/Patient', patient('crud-5'), {
    'If-None-Exist': 'identifier=urn:test:mrn|crud-5',
  });
  assert.equal(first.status, 201);
  const second = await request('POST', srv.base + '/Patient', patient('crud-5'), {
    'If-None-Exist': 'identifier=urn:test:mrn|crud-5',
  });
  assert.equal(second.status, 200);
  assert.equal(second.body.id, first.body.id);
});

test('invalid resources are rejected with 400 and an OperationOutcome', async () => {
  const empty = await request('POST', srv.base + '/CarePlan', { resourceType: 'CarePlan' });
  assert.equal(empty.status, 400);
  assert.equal(empty.body.resourceType, 'OperationOutcome');
  const paths = empty.body.issue.flatMap((i) => i.expression || []);
  for (const p of ['CarePlan.status', 'CarePlan.intent', 'CarePlan.subject']) {
    assert.ok(paths.includes(p), 'missing ' + p + ' reported');
  }

  const wrongType = await request('POST', srv.base + '/Patient', { resourceType: 'Patient', birthDate: 1960 });
  assert.equal(wrongType.status, 400);
  assert.ok(wrongType.body.issue.some((i) => (i.expression || []).includes('Patient.birthDate')));

  const unknownField = await request('POST', srv.base + '/Patient', { resourceType: 'Patient', foo: 'bar' });
  assert.equal(unknownField.status, 400);

  const mismatch = await request('POST', srv.base + '/Patient', { resourceType: 'Observation' });
  assert.equal(mismatch.status, 400);

  const created = await request('POST', srv.base + '/Patient', patient('crud-6'));
  const badUpdate = await request('PUT', `${srv.base}/Patient/${created.body.id}`, {
    ...created.body,
    gender: ['female'],
  });
  assert.equal(badUpdate.status, 400);
  const still = await request('GET', `${srv.base}/Patient/${created.body.id}`);
  assert.equal(still.body.meta.versionId, created.body.meta.versionId, 'a rejected update stores nothing');

  const notJson = await request('POST', srv.base + '/Patient', '{"resourceType":', {});
  assert.equal(notJson.status, 400);
  assert.equal(notJson.body.resourceType, 'OperationOutcome');
});

test('protocol errors: unknown type 404, wrong content type 415, body over 20 MB 413', async () => {
  const unknown = await request('GET', srv.base + '/NotAType/1');
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body.resourceType, 'OperationOutcome');

  const xml = await request('POST', srv.base + '/Patient', '<Patient/>', { 'Content-Type': 'application/fhir+xml' });
  assert.equal(xml.status, 415);

  const big = JSON.stringify({ resourceType: 'Patient', text: { status: 'generated', div: 'x'.repeat(21 * 1024 * 1024) } });
  const tooBig = await request('POST', srv.base + '/Patient', big);
  assert.equal(tooBig.status, 413);
  assert.equal(tooBig.body.resourceType, 'OperationOutcome');

  // the server still answers afterwards
  const ok = await request('GET', srv.base + '/metadata');
  assert.equal(ok.status, 200);
});
