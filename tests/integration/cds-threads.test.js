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

// A listener with `threads` workers and a FHIR server that takes a request
// and answers only when released (404: the client then gets 412).
async function heldSetup(threads, extra = {}) {
  const keys = await L.makeKeys();
  const dir = tmpdir('cds-queue');
  const jwksFile = path.join(dir, 'jwks.json');
  fs.writeFileSync(jwksFile, JSON.stringify({ keys: [keys.esJwk] }));
  const held = [];
  let arrived;
  const arrivedP = new Promise((r) => { arrived = r; });
  const slow = http.createServer((req, res) => { held.push(res); arrived(); });
  await new Promise((r) => slow.listen(0, '127.0.0.1', r));
  const s = await L.startServe({
    server: { public_url: L.PUBLIC_URL, threads },
    cds: { clients: [{ iss: ISS, jwks_file: jwksFile }], ...extra },
    mappings: { dir: path.join(ROOT, 'mappings') },
    state: { path: path.join(dir, 'state.db') },
  }, dir);
  const sign = (p) => L.sign(keys.es.privateKey, { aud: `${L.PUBLIC_URL}${p}`, iss: ISS });
  const rs = JSON.parse(fs.readFileSync(FIX, 'utf8')).entry.map((e) => e.resource);
  const pt = rs.find((r) => r.resourceType === 'Patient');
  const set = (t) => ({ resourceType: 'Bundle', type: 'searchset', entry: rs.filter((r) => r.resourceType === t).map((resource) => ({ resource })) });
  const full = (n) => ({ hook: 'patient-view', hookInstance: `b5a1c7de-0000-4000-8000-${String(n).padStart(12, '0')}`, context: { userId: 'Practitioner/1', patientId: pt.id }, prefetch: { patient: pt, conditions: set('Condition'), observations: set('Observation') } });
  const slowBody = { ...full(999), prefetch: { patient: pt, observations: set('Observation') }, fhirServer: `http://127.0.0.1:${slow.address().port}/fhir`, fhirAuthorization: { access_token: 'ehr-token', token_type: 'Bearer' } };
  const release = () => { for (const res of held) if (!res.writableEnded) { res.writeHead(404, { 'content-type': 'application/json' }); res.end('{}'); } };
  const close = async () => { release(); slow.close(); await L.stopServe(s); };
  return { s, sign, full, slowBody, arrivedP, release, close };
}

// A request on its own kept-alive connection (agent): status and text.
function post(agent, base, p, token, body) {
  const u = new URL(`${base}${p}`);
  const text = JSON.stringify(body);
  return new Promise((resolve) => {
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } }, (res) => {
      let t = '';
      res.on('data', (x) => { t += x; });
      res.on('end', () => resolve({ status: res.statusCode, text: t, retry: res.headers['retry-after'] }));
    });
    req.on('error', (e) => resolve({ status: 0, text: e.message }));
    req.end(text);
  });
}
function get(agent, base, p) {
  return new Promise((resolve) => {
    http.get(`${base}${p}`, { agent }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); })
      .on('error', () => resolve(0));
  });
}

test('a request held by a slow fhirServer does not hold the other requests', async () => {
  const t = await heldSetup(3);
  try {
    assert.match(t.s.logs, /3 thread\(s\)/);
    // conditions missing: read from the slow server
    let heldDone = false;
    const heldReq = L.call(t.s.base, 'POST', SERVICE, { token: await t.sign(SERVICE), body: t.slowBody })
      .then((r) => { heldDone = true; return r; });
    await t.arrivedP; // a worker is now waiting for the slow server
    const hz = await L.call(t.s.base, 'GET', '/healthz');
    assert.equal(hz.status, 200);
    const m = await L.call(t.s.base, 'GET', '/metrics');
    assert.equal(m.status, 200);
    const other = await L.call(t.s.base, 'POST', SERVICE, { token: await t.sign(SERVICE), body: t.full(2) });
    assert.equal(other.status, 200, other.text);
    assert.equal(other.json.cards.length, 1);
    assert.equal(heldDone, false, 'the held request is still held while the others were answered');
    // release it: the slow server answers 404, the client gets 412
    t.release();
    const r = await heldReq;
    assert.equal(r.status, 412, r.text);
  } finally {
    await t.close();
  }
});

// One request held on a connection, and requests on connections opened
// before it: the listener's threads take requests from one queue, so a free
// thread answers each of them.  (With each polling thread serving only the
// connections it accepted, those on the held thread's share waited for the
// slow server while the other thread idled: that unevenness was the tail of
// the latency at 64 clients.)
test('requests on connections opened before a held one are answered by the free thread', async () => {
  const t = await heldSetup(2);
  const agents = Array.from({ length: 12 }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
  try {
    // twelve connections, open before anything is held
    for (const a of agents) assert.equal(await get(a, t.s.base, '/healthz'), 200);
    let heldDone = false;
    const heldReq = post(undefined, t.s.base, SERVICE, await t.sign(SERVICE), t.slowBody).then((r) => { heldDone = true; return r; });
    await t.arrivedP; // one thread now waits for the slow server
    const tokens = [];
    for (let i = 0; i < agents.length; i++) tokens.push(await t.sign(SERVICE));
    let timer;
    const out = await Promise.race([
      Promise.all(agents.map((a, i) => post(a, t.s.base, SERVICE, tokens[i], t.full(i)))),
      new Promise((resolve) => { timer = setTimeout(() => resolve('timeout'), 15000); }),
    ]);
    clearTimeout(timer);
    assert.notEqual(out, 'timeout', 'requests on some connections waited for the held one');
    for (const r of out) assert.equal(r.status, 200, `${r.text} ${JSON.stringify(out.map((x) => x.status))}`);
    assert.equal(heldDone, false, 'the held request is still held');
    t.release();
    assert.equal((await heldReq).status, 412);
  } finally {
    for (const a of agents) a.destroy();
    await t.close();
  }
});

test('stopping with a request held and others queued: the held one finishes, the queued get 503, the process exits 0', async () => {
  const t = await heldSetup(1);
  try {
    const heldReq = post(undefined, t.s.base, SERVICE, await t.sign(SERVICE), t.slowBody);
    await t.arrivedP; // the one worker waits for the slow server
    const queued = [];
    for (let i = 0; i < 3; i++) queued.push(post(undefined, t.s.base, SERVICE, await t.sign(SERVICE), t.full(i)));
    // let them reach the queue (no answer can come while the worker is
    // held; one that reaches the listener only after the signal gets the
    // same 503 from the polling thread)
    await new Promise((r) => setTimeout(r, 300));
    const m = await L.call(t.s.base, 'GET', '/metrics');
    assert.equal(m.status, 200, 'the polling thread answers while the worker is held');
    const exited = new Promise((resolve) => t.s.proc.on('exit', (code, sig) => resolve({ code, sig })));
    t.s.proc.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(t.s.proc.exitCode, null, 'it waits for the held request');
    t.release();
    assert.equal((await heldReq).status, 412);
    for (const q of queued) {
      const r = await q;
      assert.equal(r.status, 503, r.text);
      assert.equal(r.retry, '1');
    }
    assert.deepEqual(await exited, { code: 0, sig: null });
  } finally {
    await t.close();
  }
});
