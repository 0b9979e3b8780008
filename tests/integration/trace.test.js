// W3C Trace Context: a traceparent sent with a /notify notification is the
// trace of every FHIR request the notified patient's pass makes (each a new
// span, with the caller's tracestate) and of that pass's JSON log lines; an invalid one is ignored and a
// new trace started; without one, each patient of a cycle gets a trace of
// its own. The test FHIR server records request headers (GET /$test/requests,
// tests/fhir-server/lib/requestlog.js).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const h = require('./helpers');
const {
  waitFor, startDaemon, stopDaemon, secretFile, withdrawConditions, backportBundle, eventParams,
} = require('./daemon-lib');

const SECRET = 'notify-secret-for-trace-tests';
const TP = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const STATE = 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE';
let srv;
let admin;
let work;
let daemon;
let files;
const idOf = {};

function jsonLines(text) {
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
}

async function requests() {
  const r = await fetch(`${admin}/$test/requests`);
  assert.equal(r.status, 200);
  return (await r.json()).requests;
}

async function clearRequests() {
  assert.equal((await fetch(`${admin}/$test/requests`, { method: 'DELETE' })).status, 200);
}

function hex(n) {
  return crypto.randomBytes(n).toString('hex');
}

async function notify(body, traceparent, tracestate) {
  const headers = { 'content-type': 'application/fhir+json', authorization: `Bearer ${SECRET}` };
  if (traceparent !== undefined) headers.traceparent = traceparent;
  if (tracestate !== undefined) headers.tracestate = tracestate;
  const r = await fetch(`http://127.0.0.1:${daemon.port}/notify`, {
    method: 'POST', headers, body: JSON.stringify(body),
  });
  assert.equal(r.status, 200, await r.text());
}

// R4 rest-hook with the resource as the body (the patient is its subject).
function notifyCondition(cond, traceparent, tracestate) {
  return notify(cond, traceparent, tracestate);
}

// An id-only backport notification naming the Condition: the adapter reads
// it to find the patient.
function notifyConditionId(cond, traceparent, tracestate) {
  return notify(backportBundle(srv.base, 'event-notification', eventParams(1), [{
    fullUrl: `${srv.base}/Condition/${cond.id}/_history/${cond.meta.versionId}`,
    request: { method: 'PUT', url: `Condition/${cond.id}` },
    response: { status: '200' },
  }]), traceparent, tracestate);
}

// The lines logged since `from` by the pass of one notified patient: it
// ends with "patient TAG: <recommendation>, <outcome>".
async function passLog(from) {
  return waitFor('the notified patient\'s pass', () => {
    const lines = jsonLines(daemon.err.slice(from));
    const done = lines.find((l) => l.component === 'sync' && /^patient [0-9a-f]+: /.test(l.msg));
    return done ? { lines, done } : null;
  });
}

// Notifies the first Condition of patient number i (full resource) with
// traceparent tp; resolves with its pass's log and the requests it caused.
async function notifyPatient(i, tp, ts) {
  const conds = await h.searchAll(srv.base, `Condition?subject=Patient/${Object.values(idOf)[i]}`);
  assert.ok(conds.length > 0);
  await clearRequests();
  const from = daemon.err.length;
  await notifyCondition(conds[0], tp, ts);
  const pass = await passLog(from);
  const reqs = await requests();
  assert.ok(reqs.length > 0);
  return { ...pass, reqs };
}

test.before(async () => {
  work = h.tmpdir('trace');
  srv = h.startServer();
  admin = srv.base.replace(/\/fhir\/R4$/, '');
  const synth = h.generateSynth();
  const eligible = synth.manifest.filter((m) => m.expected.recommendation !== 'not-applicable').slice(0, 4);
  files = eligible.map((m) => path.join(synth.dir, m.file));
  spawnSync('node', [path.join(h.ROOT, 'tests/fhir-server/load.js'), '--base', srv.base, ...files]);
  for (const m of eligible) {
    const found = await h.searchAll(srv.base,
      `Patient?identifier=${encodeURIComponent(`${m.identifier.system}|${m.identifier.value}`)}`);
    idOf[m.identifier.value] = found[0].id;
  }
  await clearRequests();
  daemon = await startDaemon(work, srv.base, {
    daemon: { interval_s: 3600, overlap_s: 0 },
    server: { notify_secret_file: secretFile(work, SECRET) },
    log: { format: 'json' },
  });
});

test.after(async () => {
  await stopDaemon(daemon);
  h.stopServer(srv);
});

test('a cycle without a caller\'s trace: one new trace per patient, on its requests and its log lines', async () => {
  await waitFor('the first cycle', () => /cycle done/.test(daemon.err));
  const lines = jsonLines(daemon.err);
  const passes = lines.filter((l) => l.component === 'sync' && /^patient [0-9a-f]+: /.test(l.msg));
  assert.equal(passes.length, files.length, daemon.err);
  for (const l of passes) {
    assert.match(l.trace_id, /^[0-9a-f]{32}$/);
    assert.match(l.span_id, /^[0-9a-f]{16}$/);
    assert.equal(l.parent_span_id, undefined, 'a trace the adapter starts has no parent');
  }
  const ids = new Set(passes.map((l) => l.trace_id));
  assert.equal(ids.size, passes.length, 'each patient has a trace of its own');
  // the daemon's own lines (start, cycle summary) belong to no patient
  assert.ok(lines.filter((l) => l.component === 'daemon').every((l) => l.trace_id === undefined));

  const reqs = await requests();
  const traced = reqs.filter((r) => r.headers.traceparent !== undefined);
  assert.ok(traced.length >= passes.length, 'every patient made requests');
  const spans = new Set();
  for (const r of traced) {
    const m = TP.exec(r.headers.traceparent);
    assert.ok(m, `a well-formed traceparent: ${r.headers.traceparent}`);
    assert.ok(ids.has(m[1]), `${r.method} ${r.url} is in the trace of a patient's pass`);
    assert.equal(m[3], '01', 'the adapter\'s own traces are sampled');
    assert.ok(!spans.has(m[2]), 'a new span id per request');
    spans.add(m[2]);
  }
  // the requests outside a patient's pass (metadata, the cohort search)
  // carry none: the adapter starts no trace for them
  assert.ok(reqs.some((r) => r.headers.traceparent === undefined && r.url.endsWith('/metadata')));
});

test('/notify with a traceparent: the notified patient\'s FHIR requests and log lines carry its trace id', async () => {
  const pid = Object.values(idOf)[0];
  const cond = await withdrawConditions(srv.base, pid);
  const traceId = hex(16);
  const parent = hex(8);
  await clearRequests();
  const from = daemon.err.length;
  await notifyConditionId(cond, `00-${traceId}-${parent}-01`, STATE);
  const { lines, done } = await passLog(from);
  assert.equal(done.trace_id, traceId, JSON.stringify(done));
  assert.match(done.msg, /not-applicable, revoked/, 'the pass wrote (its writes are in the trace too)');
  assert.match(done.span_id, /^[0-9a-f]{16}$/);
  assert.notEqual(done.span_id, parent);
  // the notification's own line is logged with the caller's trace, the
  // caller's span as its parent
  const queued = lines.find((l) => l.component === 'notify' && /queued/.test(l.msg));
  assert.ok(queued, daemon.err.slice(from));
  assert.equal(queued.trace_id, traceId);
  assert.equal(queued.parent_span_id, parent);

  // Every request since the notification was caused by it (the daemon
  // sleeps out its one-hour interval): the Condition read to find the
  // patient, the patient's reads, the revocation written.
  const reqs = await requests();
  const seen = JSON.stringify(reqs.map((r) => `${r.method} ${r.url}`));
  assert.ok(reqs.some((r) => r.method === 'GET' && r.url.includes(`Condition/${cond.id}`)), `the notified Condition was read: ${seen}`);
  assert.ok(reqs.some((r) => r.method !== 'GET'), `the pass wrote: ${seen}`);
  const spans = new Set();
  for (const r of reqs) {
    const m = TP.exec(r.headers.traceparent || '');
    assert.ok(m, `${r.method} ${r.url} carries a traceparent: ${r.headers.traceparent}`);
    assert.equal(m[1], traceId, `${r.method} ${r.url} joins the caller's trace`);
    assert.notEqual(m[2], parent, 'a span of its own, not the caller\'s');
    assert.notEqual(m[2], done.span_id);
    assert.equal(m[3], '01', 'the caller\'s sampled flag is kept');
    assert.equal(r.headers.tracestate, STATE, 'the caller\'s tracestate is passed on');
    assert.ok(!spans.has(m[2]), 'a new span id per request');
    spans.add(m[2]);
  }
  // the pass's lines all carry the trace
  const pass = lines.filter((l) => l.component === 'sync');
  assert.ok(pass.length > 0 && pass.every((l) => l.trace_id === traceId));
});

test('/notify with an unsampled traceparent: the flag is passed on as it came', async () => {
  const traceId = hex(16);
  const { done, reqs } = await notifyPatient(1, `00-${traceId}-${hex(8)}-00`);
  assert.equal(done.trace_id, traceId);
  for (const r of reqs) assert.equal(r.headers.traceparent.slice(-3), '-00', r.headers.traceparent);
});

// Each is not a valid version-00 traceparent (https://www.w3.org/TR/trace-context/).
const invalid = [
  ['upper-case hex', (t, p) => `00-${t.toUpperCase()}-${p}-01`],
  ['version ff', (t, p) => `ff-${t}-${p}-01`],
  ['all-zero trace id', (t, p) => `00-${'0'.repeat(32)}-${p}-01`],
  ['all-zero parent id', (t) => `00-${t}-${'0'.repeat(16)}-01`],
  ['trailing data on version 00', (t, p) => `00-${t}-${p}-01-extra`],
  ['short trace id', (t, p) => `00-${t.slice(2)}-${p}-01`],
  ['non-hex flags', (t, p) => `00-${t}-${p}-0g`],
];

for (const [name, make] of invalid) {
  test(`/notify with an invalid traceparent (${name}): ignored, a new trace started`, async () => {
    const t = hex(16);
    const { done, reqs } = await notifyPatient(2, make(t, hex(8)), STATE);
    assert.match(done.trace_id, /^[0-9a-f]{32}$/);
    assert.notEqual(done.trace_id, t);
    assert.notEqual(done.trace_id, t.toUpperCase());
    for (const r of reqs) {
      const m = TP.exec(r.headers.traceparent || '');
      assert.ok(m, `${r.method} ${r.url}: ${r.headers.traceparent}`);
      assert.equal(m[1], done.trace_id, 'the new trace, on every request');
      assert.equal(r.headers.tracestate, undefined, 'a new trace has no tracestate of the caller');
    }
  });
}

test('/notify with a tracestate that is not a valid list: the trace is joined, the tracestate dropped', async () => {
  const t = hex(16);
  const { done, reqs } = await notifyPatient(1, `00-${t}-${hex(8)}-01`, 'rojo');
  assert.equal(done.trace_id, t);
  for (const r of reqs) assert.equal(r.headers.tracestate, undefined);
});

test('a later version\'s traceparent is read as far as version 00 goes', async () => {
  const t = hex(16);
  const { done, reqs } = await notifyPatient(3, `01-${t}-${hex(8)}-01-future-field`);
  assert.equal(done.trace_id, t);
  for (const r of reqs) assert.match(r.headers.traceparent, new RegExp(`^00-${t}-[0-9a-f]{16}-01$`));
});

// The CDS endpoints: $apply with useServerData reads the patient from the
// FHIR server; those reads join the CDS client's trace.
test('CDS $apply with a traceparent: the FHIR reads it causes carry its trace id, and so do its log lines', async () => {
  const L = require('./cds-lib');
  const fs = require('node:fs');
  const keys = await L.makeKeys();
  const dir = h.tmpdir('trace-cds');
  const jwksFile = path.join(dir, 'ehr-jwks.json');
  fs.writeFileSync(jwksFile, JSON.stringify({ keys: [keys.esJwk] }));
  const iss = 'https://ehr.test.example';
  const serve = await L.startServe({
    fhir: { base_url: srv.base },
    server: { public_url: L.PUBLIC_URL },
    cds: { clients: [{ iss, jwks_file: jwksFile }] },
    state: { path: path.join(dir, 'state.db') },
    // $apply logs nothing at info when it succeeds; the requests' debug
    // lines show the trace fields
    log: { format: 'json', level: 'debug' },
  }, dir);
  try {
    const p = '/fhir/PlanDefinition/dnmbc-local-therapy/$apply';
    const pid = Object.values(idOf)[1];
    const body = { resourceType: 'Parameters', parameter: [{ name: 'subject', valueString: `Patient/${pid}` }, { name: 'useServerData', valueBoolean: true }] };
    const traceId = hex(16);
    await clearRequests();
    const from = serve.logs.length;
    const token = await L.sign(keys.es.privateKey, { aud: `${L.PUBLIC_URL}${p}`, iss });
    const r = await L.call(serve.base, 'POST', p, { token, body, headers: { traceparent: `00-${traceId}-${hex(8)}-01`, tracestate: STATE } });
    assert.equal(r.status, 200, r.text);
    // the readiness check reads /metadata on a thread of its own, in no trace
    const reqs = (await requests()).filter((q) => !q.url.endsWith('/metadata'));
    assert.ok(reqs.some((q) => q.url.includes(pid)), JSON.stringify(reqs.map((q) => q.url)));
    for (const q of reqs) {
      const m = TP.exec(q.headers.traceparent || '');
      assert.ok(m, `${q.method} ${q.url}: ${q.headers.traceparent}`);
      assert.equal(m[1], traceId);
      assert.equal(q.headers.tracestate, STATE);
    }
    const lines = await waitFor('the $apply log lines', () => {
      const l = jsonLines(serve.logs.slice(from)).filter((x) => x.trace_id === traceId);
      return l.length ? l : null;
    });
    assert.ok(lines.every((l) => /^[0-9a-f]{16}$/.test(l.span_id)));
    assert.ok(lines.some((l) => l.msg.includes(pid)), JSON.stringify(lines));
  } finally {
    await L.stopServe(serve);
  }
});
