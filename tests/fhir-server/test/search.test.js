'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, request, patient, observation, condition } = require('../testlib/helpers');

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv.stop();
});

async function create(resource) {
  const res = await request('POST', `${srv.base}/${resource.resourceType}`, resource);
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body;
}

// Follows `next` links from a first page; returns all entries and the pages.
async function allPages(url) {
  const pages = [];
  const entries = [];
  let next = url;
  while (next) {
    const res = await request('GET', next);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.type, 'searchset');
    pages.push(res.body);
    entries.push(...(res.body.entry || []));
    const link = (res.body.link || []).find((l) => l.relation === 'next');
    next = link && link.url;
    assert.ok(pages.length < 100, 'paging does not end');
  }
  return { pages, entries };
}

test('search by subject=Patient/ID, patient=Patient/ID and identifier', async () => {
  const a = await create(patient('s-a'));
  const b = await create(patient('s-b'));
  for (let i = 0; i < 3; i++) {
    await create(observation('Patient/' + a.id, '85319-2', i));
  }
  await create(observation('Patient/' + b.id, '85319-2', 9));
  await create(condition('Patient/' + a.id, '254837009'));

  const bySubject = await request('GET', `${srv.base}/Observation?subject=Patient/${a.id}`);
  assert.equal(bySubject.status, 200);
  assert.equal(bySubject.body.total, 3);
  for (const e of bySubject.body.entry) {
    assert.equal(e.resource.subject.reference, 'Patient/' + a.id);
    assert.equal(e.fullUrl, `${srv.base}/Observation/${e.resource.id}`);
    assert.equal(e.search.mode, 'match');
  }
  const byPatient = await request('GET', `${srv.base}/Observation?patient=Patient/${b.id}`);
  assert.equal(byPatient.body.total, 1);
  assert.equal(byPatient.body.entry[0].resource.valueQuantity.value, 9);

  const combined = await request('GET', `${srv.base}/Observation?subject=Patient/${a.id}&status=final&code=http://loinc.org|85319-2`);
  assert.equal(combined.body.total, 3);
  const none = await request('GET', `${srv.base}/Observation?subject=Patient/${a.id}&status=preliminary`);
  assert.equal(none.body.total, 0);
  const cond = await request('GET', `${srv.base}/Condition?subject=Patient/${a.id}`);
  assert.equal(cond.body.total, 1);

  // Medplum's matcher compares reference strings: a bare id matches nothing
  // (documented in README.md).
  const bare = await request('GET', `${srv.base}/Observation?patient=${a.id}`);
  assert.equal(bare.status, 200);
  assert.equal(bare.body.total, 0);

  for (const q of ['urn:test:mrn|s-a', 'URN:TEST:MRN|S-A', 's-a', 'urn:test:mrn|s-a,urn:test:mrn|nope']) {
    const byId = await request('GET', `${srv.base}/Patient?identifier=${encodeURIComponent(q)}`);
    assert.equal(byId.body.total, 1, q);
    assert.equal(byId.body.entry[0].resource.id, a.id, q);
  }
  const both = await request('GET', `${srv.base}/Patient?identifier=${encodeURIComponent('urn:test:mrn|s-a,urn:test:mrn|s-b')}`);
  assert.equal(both.body.total, 2);
  const bySystem = await request('GET', `${srv.base}/Patient?identifier=${encodeURIComponent('urn:test:mrn|')}`);
  assert.equal(bySystem.body.total, 2);
  const otherSystem = await request('GET', `${srv.base}/Patient?identifier=${encodeURIComponent('urn:other|s-a')}`);
  assert.equal(otherSystem.body.total, 0);
  const noSystem = await request('GET', `${srv.base}/Patient?identifier=${encodeURIComponent('|s-a')}`);
  assert.equal(noSystem.body.total, 0);

  const unknown = await request('GET', `${srv.base}/Observation?nonsense=1`);
  assert.equal(unknown.status, 400);
  assert.equal(unknown.body.resourceType, 'OperationOutcome');
  // Medplum's in-memory matcher cannot evaluate quantity parameters
  const quantity = await request('GET', `${srv.base}/Observation?value-quantity=ge0`);
  assert.equal(quantity.status, 400);
});

test('paging follows next to the end with the right total', async () => {
  const p = await create(patient('paging'));
  const n = 47;
  const ids = new Set();
  for (let i = 0; i < n; i++) {
    ids.add((await create(observation('Patient/' + p.id, '85319-2', i))).id);
  }
  // explicit _count
  const { pages, entries } = await allPages(`${srv.base}/Observation?subject=Patient/${p.id}&_count=10`);
  assert.equal(pages.length, 5);
  assert.deepEqual(pages.map((pg) => (pg.entry || []).length), [10, 10, 10, 10, 7]);
  for (const pg of pages) {
    assert.equal(pg.total, n);
    assert.ok(pg.link.some((l) => l.relation === 'self'));
  }
  assert.deepEqual(new Set(entries.map((e) => e.resource.id)), ids);
  assert.equal(entries.length, n, 'no entry repeats across pages');
  assert.ok(pages[1].link.some((l) => l.relation === 'previous'));

  // default page size is 20, also for a search the index does not answer
  const dflt = await allPages(`${srv.base}/Observation?status=final`);
  assert.equal(dflt.pages[0].entry.length, 20);
  assert.ok(dflt.entries.length >= n);
  assert.equal(dflt.entries.length, dflt.pages[0].total);

  // _sort
  const sorted = await request('GET', `${srv.base}/Observation?subject=Patient/${p.id}&_sort=-_lastUpdated&_count=3`);
  assert.equal(sorted.body.total, n);
  const newest = entries.map((e) => e.resource.meta.lastUpdated).sort().pop();
  assert.equal(sorted.body.entry[0].resource.meta.lastUpdated, newest);
});

test('POST _search with a form body pages like GET', async () => {
  const p = await create(patient('post-search'));
  for (let i = 0; i < 25; i++) {
    await create(observation('Patient/' + p.id, '85319-2', i));
  }
  const res = await request('POST', `${srv.base}/Observation/_search`, `subject=Patient/${p.id}&_count=10`, {
    'Content-Type': 'application/x-www-form-urlencoded',
  });
  assert.equal(res.status, 200);
  assert.equal(res.body.total, 25);
  assert.equal(res.body.entry.length, 10);
  const next = res.body.link.find((l) => l.relation === 'next');
  assert.ok(next);
  const { entries } = await allPages(next.url);
  assert.equal(entries.length, 15);
});
