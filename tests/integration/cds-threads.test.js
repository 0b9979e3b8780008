// The listener answers on several threads (server.threads): a CDS request
// held by a slow fhirServer takes one thread, and /healthz, /metrics and
// another CDS request are answered meanwhile.  No timing: the slow server
// holds the request until the test releases it, after the other answers.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { ROOT, tmpdir } = require('./helpers');
const L = require('./cds-lib');

const SERVICE = '/cds-services/dnmbc-local-therapy';
const ISS = 'https://ehr.test.example';
const FIX = path.join(ROOT, 'tests/fixtures/evaluate/curative-palliative-skin.json');

test('a request held by a slow fhirServer does not hold the other requests', async () => {
  const keys = await L.makeKeys();
  const dir = tmpdir('cds-threads');
  const jwksFile = path.join(dir, 'jwks.json');
  fs.writeFileSync(jwksFile, JSON.stringify({ keys: [keys.esJwk] }));
  // a FHIR server that takes a request and answers only when told to
  const held = [];
  let arrived;
  const arrivedP = new Promise((r) => { arrived = r; });
  const slow = http.createServer((req, res) => { held.push(res); arrived(); });
  await new Promise((r) => slow.listen(0, '127.0.0.1', r));
  const s = await L.startServe({
    server: { public_url: L.PUBLIC_URL, threads: 3 },
    cds: { clients: [{ iss: ISS, jwks_file: jwksFile }] },
    mappings: { dir: path.join(ROOT, 'mappings') },
    state: { path: path.join(dir, 'state.db') },
  }, dir);
  try {
    assert.match(s.logs, /3 thread\(s\)/);
    const sign = (p) => L.sign(keys.es.privateKey, { aud: `${L.PUBLIC_URL}${p}`, iss: ISS });
    const rs = JSON.parse(fs.readFileSync(FIX, 'utf8')).entry.map((e) => e.resource);
    const pt = rs.find((r) => r.resourceType === 'Patient');
    const set = (t) => ({ resourceType: 'Bundle', type: 'searchset', entry: rs.filter((r) => r.resourceType === t).map((resource) => ({ resource })) });
    // conditions missing: read from the slow server
    let heldDone = false;
    const heldReq = L.call(s.base, 'POST', SERVICE, {
      token: await sign(SERVICE),
      body: {
        hook: 'patient-view', hookInstance: 'b5a1c7de-0000-4000-8000-000000000001', context: { userId: 'Practitioner/1', patientId: pt.id },
        prefetch: { patient: pt, observations: set('Observation') },
        fhirServer: `http://127.0.0.1:${slow.address().port}/fhir`, fhirAuthorization: { access_token: 'ehr-token', token_type: 'Bearer' },
      },
    }).then((r) => { heldDone = true; return r; });
    await arrivedP; // the listener's thread is now waiting for the slow server
    const h = await L.call(s.base, 'GET', '/healthz');
    assert.equal(h.status, 200);
    const m = await L.call(s.base, 'GET', '/metrics');
    assert.equal(m.status, 200);
    const other = await L.call(s.base, 'POST', SERVICE, {
      token: await sign(SERVICE),
      body: { hook: 'patient-view', hookInstance: 'b5a1c7de-0000-4000-8000-000000000002', context: { userId: 'Practitioner/1', patientId: pt.id }, prefetch: { patient: pt, conditions: set('Condition'), observations: set('Observation') } },
    });
    assert.equal(other.status, 200, other.text);
    assert.equal(other.json.cards.length, 1);
    assert.equal(heldDone, false, 'the held request is still held while the others were answered');
    // release it: the slow server answers 404, the client gets 412
    for (const res of held) { res.writeHead(404, { 'content-type': 'application/json' }); res.end('{}'); }
    const r = await heldReq;
    assert.equal(r.status, 412, r.text);
  } finally {
    for (const res of held) if (!res.writableEnded) res.end();
    slow.close();
    await L.stopServe(s);
  }
});
