'use strict';
// The index must give exactly the answers of Medplum's own matcher. This
// runs in-process: the same searches through IndexedMemoryRepository.search
// and through a brute-force matchesSearchRequest over every stored resource.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { matchesSearchRequest, parseSearchRequest } = require('@medplum/core');
const { loadR4Definitions } = require('../lib/definitions');
const { IndexedMemoryRepository } = require('../lib/repo');

loadR4Definitions();

test('indexed searches agree with a brute-force scan', async () => {
  const repo = new IndexedMemoryRepository({ baseUrl: 'http://test/fhir/R4' });
  const all = [];
  const patients = [];
  for (let i = 0; i < 30; i++) {
    const p = await repo.createResource({
      resourceType: 'Patient',
      identifier: [
        { system: i % 3 ? 'urn:sys:A' : 'urn:sys:B', value: 'V' + (i % 7) },
        ...(i % 5 ? [] : [{ value: 'nosys' + i }]),
      ],
    });
    patients.push(p);
    all.push(p);
  }
  for (let i = 0; i < 120; i++) {
    const p = patients[(i * 7) % patients.length];
    const o = await repo.createResource({
      resourceType: 'Observation',
      status: i % 4 ? 'final' : 'amended',
      code: { coding: [{ system: 'http://loinc.org', code: String(i % 5) }] },
      subject: { reference: 'Patient/' + p.id },
      ...(i % 6 ? {} : { performer: [{ reference: 'Practitioner/pr' + (i % 2) }] }),
      identifier: [{ system: 'urn:obs', value: 'o' + (i % 11) }],
    });
    all.push(o);
  }
  // updates and deletes must keep the index right
  const moved = all[40];
  await repo.updateResource({ ...moved, subject: { reference: 'Patient/' + patients[0].id } });
  await repo.deleteResource('Observation', all[41].id);
  await repo.deleteResource('Patient', patients[29].id);

  const queries = [
    'Patient?identifier=urn:sys:A|V1',
    'Patient?identifier=urn:SYS:b|v0',
    'Patient?identifier=V3',
    'Patient?identifier=urn:sys:A|',
    'Patient?identifier=|nosys5',
    'Patient?identifier=nosys10,V2',
    'Patient?identifier=|',
    'Observation?subject=Patient/' + patients[0].id,
    'Observation?patient=Patient/' + patients[7].id,
    'Observation?subject=Patient/' + patients[3].id + ',Patient/' + patients[4].id,
    'Observation?subject=Patient/' + patients[0].id + '&status=final',
    'Observation?performer=Practitioner/pr1',
    'Observation?identifier=urn:obs|o3&subject=Patient/' + patients[21].id,
    'Observation?subject:not=Patient/' + patients[0].id,
    'Observation?code=http://loinc.org|3',
    'Observation?code=3,4&status=amended',
    'Observation?code=HTTP://LOINC.ORG|&subject=Patient/' + patients[14].id,
    'Observation?code:text=3',
    'Observation?status=final&code=http://loinc.org|2&subject=Patient/' + patients[0].id,
    'Patient?_id=' + patients[2].id,
    'Observation?patient=' + patients[0].id,
  ];
  for (const q of queries) {
    const req = parseSearchRequest(q);
    const current = [];
    for (const type of ['Patient', 'Observation']) {
      const bundle = await repo.search({ resourceType: type, count: 1000 });
      current.push(...(bundle.entry || []).map((e) => e.resource));
    }
    const expected = current.filter((r) => matchesSearchRequest(r, req)).map((r) => r.id).sort();
    const got = await repo.search({ ...req, count: 1000 });
    assert.equal(got.total, expected.length, q);
    assert.deepEqual((got.entry || []).map((e) => e.resource.id).sort(), expected, q);
  }
  // the plan really used the index for the reference and identifier queries
  assert.ok(repo.planIndexed(parseSearchRequest('Observation?subject=Patient/x')));
  assert.ok(repo.planIndexed(parseSearchRequest('Patient?identifier=a|b')));
  assert.ok(repo.planIndexed(parseSearchRequest('Observation?status=final')));
  assert.equal(repo.planIndexed(parseSearchRequest('Observation?_lastUpdated=gt2000-01-01')), undefined);
});

test('a failed transaction leaves nothing behind', async () => {
  const repo = new IndexedMemoryRepository();
  const keep = await repo.createResource({ resourceType: 'Patient', identifier: [{ system: 's', value: 'keep' }] });
  await assert.rejects(
    repo.withTransaction(async () => {
      await repo.createResource({ resourceType: 'Patient', identifier: [{ system: 's', value: 'new' }] });
      await repo.updateResource({ ...keep, identifier: [{ system: 's', value: 'changed' }] });
      await repo.deleteResource('Patient', keep.id);
      throw new Error('boom');
    })
  );
  const left = await repo.search({ resourceType: 'Patient', count: 100 });
  assert.equal(left.total, 1);
  assert.deepEqual(left.entry[0].resource, keep);
  assert.equal((await repo.search(parseSearchRequest('Patient?identifier=s|keep'))).total, 1);
  assert.equal((await repo.search(parseSearchRequest('Patient?identifier=s|new'))).total, 0);
  assert.equal((await repo.search(parseSearchRequest('Patient?identifier=s|changed'))).total, 0);
  const hist = await repo.readHistory('Patient', keep.id);
  assert.equal(hist.total, 1);
});

test('a key held by one resource, then several, then one again, answers right', async () => {
  // the index keeps a lone id in place of a Set (memory); each change of
  // holders goes through that representation's transitions
  const repo = new IndexedMemoryRepository();
  const ids = async (q) =>
    ((await repo.search({ ...parseSearchRequest(q), count: 100 })).entry || []).map((e) => e.resource.id).sort();
  const mk = (value, extra = {}) => ({ resourceType: 'Patient', identifier: [{ system: 's', value }], ...extra });
  const a = await repo.createResource(mk('X'));
  assert.deepEqual(await ids('Patient?identifier=s|X'), [a.id]);
  const b = await repo.createResource(mk('X'));
  assert.deepEqual(await ids('Patient?identifier=s|X'), [a.id, b.id].sort());
  await repo.deleteResource('Patient', a.id);
  assert.deepEqual(await ids('Patient?identifier=s|X'), [b.id]);
  await repo.updateResource({ ...b, ...mk('Y') });
  assert.deepEqual(await ids('Patient?identifier=s|X'), []);
  assert.deepEqual(await ids('Patient?identifier=Y'), [b.id]);
  const c = await repo.createResource(mk('X'));
  const c2 = await repo.updateResource({ ...c, ...mk('X', { gender: 'female' }) });
  assert.deepEqual(await ids('Patient?identifier=s|X'), [c.id]);
  await repo.updateResource({ ...b, ...mk('X') });
  assert.deepEqual(await ids('Patient?identifier=s|X'), [b.id, c.id].sort());
  await repo.deleteResource('Patient', c.id);
  await repo.deleteResource('Patient', b.id);
  assert.deepEqual(await ids('Patient?identifier=s|X'), []);
  assert.equal(repo.postings.size, 0);
  // the version log hands out copies: changing one changes nothing stored
  const v1 = await repo.readVersion('Patient', c.id, c.meta.versionId);
  v1.gender = 'other';
  assert.equal((await repo.readVersion('Patient', c.id, c.meta.versionId)).gender, undefined);
  assert.equal((await repo.readVersion('Patient', c.id, c2.meta.versionId)).gender, 'female');
});
