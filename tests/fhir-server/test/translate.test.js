'use strict';
// ConceptMap/$translate from the stored ConceptMaps, and its request counter
// (lib/translate.js, ours).
const { test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, request } = require('../testlib/helpers');

const CS = 'https://dnmbc-adapter.example.org/fhir/CodeSystem/dnmbc-feature';
const LAB = 'http://hospital.example.org/codes/lab';
let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv.stop();
});
beforeEach(async () => {
  assert.equal((await request('POST', srv.origin + '/$test/reset')).status, 200);
  const cm = {
    resourceType: 'ConceptMap', id: 'lab', url: 'http://hospital.example.org/fhir/ConceptMap/lab', status: 'active',
    group: [{
      source: LAB, target: CS,
      element: [
        { code: 'ER', target: [{ code: 'er', equivalence: 'relatedto' }] },
        { code: 'HB', target: [{ equivalence: 'unmatched' }] },
      ],
    }],
  };
  const put = await request('PUT', srv.base + '/ConceptMap/lab', cm);
  assert.ok(put.status === 200 || put.status === 201, String(put.status));
});

const param = (p, name) => p.parameter.filter((x) => x.name === name);
const translate = (q) => request('GET', `${srv.base}/ConceptMap/$translate?${new URLSearchParams(q)}`);

test('a mapped code: result true and the match with equivalence and concept', async () => {
  const res = await translate({ system: LAB, code: 'ER', targetsystem: CS });
  assert.equal(res.status, 200);
  assert.equal(res.body.resourceType, 'Parameters');
  assert.equal(param(res.body, 'result')[0].valueBoolean, true);
  const [m] = param(res.body, 'match');
  assert.deepEqual(m.part.find((x) => x.name === 'concept').valueCoding, { system: CS, code: 'er' });
  assert.equal(m.part.find((x) => x.name === 'equivalence').valueCode, 'relatedto');
  // instance level and POST with a Parameters body answer alike
  const post = await request('POST', srv.base + '/ConceptMap/lab/$translate', {
    resourceType: 'Parameters',
    parameter: [{ name: 'system', valueUri: LAB }, { name: 'code', valueCode: 'ER' }],
  });
  assert.equal(param(post.body, 'result')[0].valueBoolean, true);
});

test('unmatched, unknown code, other target system: result false; missing code: 400', async () => {
  for (const q of [{ system: LAB, code: 'HB' }, { system: LAB, code: 'NOPE' },
    { system: LAB, code: 'ER', targetsystem: 'http://loinc.org' }]) {
    const res = await translate(q);
    assert.equal(res.status, 200);
    assert.equal(param(res.body, 'result')[0].valueBoolean, false, JSON.stringify(q));
  }
  assert.equal((await translate({ system: LAB })).status, 400);
});

test('GET /$test/translate counts the requests; reset zeroes it', async () => {
  assert.deepEqual((await request('GET', srv.origin + '/$test/translate')).body, { requests: 0 });
  await translate({ system: LAB, code: 'ER' });
  await translate({ system: LAB, code: 'HB' });
  await request('GET', srv.base + '/ConceptMap/lab'); // not a $translate
  assert.deepEqual((await request('GET', srv.origin + '/$test/translate')).body, { requests: 2 });
  await request('POST', srv.origin + '/$test/reset');
  assert.deepEqual((await request('GET', srv.origin + '/$test/translate')).body, { requests: 0 });
});
