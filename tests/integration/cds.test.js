// CDS Hooks 2.0 service and CPG $apply of `dnmbc-adapter serve`, played by an
// EHR with real signed JWTs (jose; the JWKS served on loopback or from a
// file): every recommendation through patient-view with full prefetch, the
// card's suggestion equal to what `evaluate` writes for the same data,
// missing / null prefetch fetched from the test FHIR server, 412 without
// fhirAuthorization, the refusals, feedback in the state file, /metrics and
// `status`, and $apply equal to `evaluate` on every golden case.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { ROOT, tmpdir, runAdapter, startServer, stopServer, fhir, categoryCodes } = require('./helpers');
const L = require('./cds-lib');

const FIX = path.join(ROOT, 'tests/fixtures/evaluate');
const CASES = path.join(ROOT, 'tests/cases');
const SERVICE = '/cds-services/dnmbc-local-therapy';
const ISS = 'https://ehr.test.example';
const WEB_ISS = 'https://web-ehr.test.example';

let keys, jwks, serve, dir, fhirSrv;

function aud(p) { return `${L.PUBLIC_URL}${p}`; }
async function tok(p, opts = {}) { return L.sign(opts.key || keys.es.privateKey, { aud: aud(p), iss: ISS, ...opts }); }

function resourcesOf(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8')).entry.map((e) => e.resource);
}
function searchset(rs) {
  return { resourceType: 'Bundle', type: 'searchset', entry: rs.map((resource) => ({ resource, search: { mode: 'match' } })) };
}
function prefetchOf(rs) {
  return {
    patient: rs.find((r) => r.resourceType === 'Patient'),
    conditions: searchset(rs.filter((r) => r.resourceType === 'Condition')),
    observations: searchset(rs.filter((r) => r.resourceType === 'Observation')),
  };
}
// What `evaluate` prints for the same resources, in the order the service reads them.
function evaluateOf(rs) {
  const ordered = ['Patient', 'Condition', 'Observation'].flatMap((t) => rs.filter((r) => r.resourceType === t));
  const f = path.join(dir, `eval-${Math.random().toString(36).slice(2)}.json`);
  fs.writeFileSync(f, JSON.stringify({ resourceType: 'Bundle', type: 'collection', entry: ordered.map((resource) => ({ resource })) }));
  const r = runAdapter(['evaluate', f, '--mappings', path.join(ROOT, 'mappings')]);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}
function hookRequest(pid, prefetch, extra = {}) {
  return { hook: 'patient-view', hookInstance: crypto.randomUUID(), context: { userId: 'Practitioner/1', patientId: pid }, prefetch, ...extra };
}
const crypto = require('node:crypto');

test.before(async () => {
  dir = tmpdir('cds');
  keys = await L.makeKeys();
  jwks = await L.serveJwks({ keys: [keys.otherJwk] });
  const jwksFile = path.join(dir, 'ehr-jwks.json');
  fs.writeFileSync(jwksFile, JSON.stringify({ keys: [keys.esJwk, keys.rsJwk] }));
  fhirSrv = startServer();
  serve = await L.startServe({
    // an EHR's connection pool comes from one address: room for 60 of them
    server: { public_url: L.PUBLIC_URL, max_connections_per_client: 64 },
    cds: { clients: [{ iss: ISS, jwks_file: jwksFile }, { iss: WEB_ISS, jku: jwks.url }], max_body_kb: 512 },
    mappings: { dir: path.join(ROOT, 'mappings') },
    state: { path: path.join(dir, 'state.db') },
  }, dir);
});

test.after(async () => {
  await L.stopServe(serve);
  if (jwks) jwks.srv.close();
  stopServer(fhirSrv);
});

test('discovery lists the service with its prefetch templates', async () => {
  const r = await L.call(serve.base, 'GET', '/cds-services', { token: await tok('/cds-services') });
  assert.equal(r.status, 200, r.text);
  const s = r.json.services.find((x) => x.id === 'dnmbc-local-therapy');
  assert.ok(s, r.text);
  assert.equal(s.hook, 'patient-view');
  assert.ok(s.title && s.description);
  assert.equal(s.prefetch.patient, 'Patient/{{context.patientId}}');
  assert.equal(s.prefetch.conditions, 'Condition?patient={{context.patientId}}');
  assert.match(s.prefetch.observations, /^Observation\?patient=\{\{context\.patientId\}\}&code=.+/);
});

const fixtures = fs.readdirSync(FIX).filter((f) => f.endsWith('.json')).sort();
for (const file of fixtures) {
  const expected = JSON.parse(fs.readFileSync(path.join(FIX, 'expected', file), 'utf8'));
  test(`patient-view with full prefetch: ${file} -> ${expected.recommendation}`, async () => {
    const rs = resourcesOf(path.join(FIX, file));
    const pid = rs.find((r) => r.resourceType === 'Patient').id;
    const r = await L.call(serve.base, 'POST', SERVICE, { token: await tok(SERVICE), body: hookRequest(pid, prefetchOf(rs)) });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(L.validateCdsResponse(r.json), []);
    const ev = evaluateOf(rs);
    if (expected.recommendation === 'not-applicable') {
      assert.deepEqual(r.json.cards, []);
      return;
    }
    assert.equal(r.json.cards.length, 1);
    const card = r.json.cards[0];
    const plan = ev.entry.map((e) => e.resource).find((x) => x.resourceType === 'CarePlan');
    assert.ok(categoryCodes(plan).includes(expected.recommendation));
    assert.ok(card.summary.length < 140);
    const warn = expected.recommendation === 'insufficient-data' || expected.recommendation === 'second-line-systemic';
    if (warn) assert.equal(card.indicator, 'warning');
    assert.match(card.detail, /\*\*Recommendation:\*\*/);
    assert.match(card.detail, /\*\*Caveat:\*\*/);
    assert.match(card.source.label, /10\.3892\/or\.2023\.8600/);
    assert.ok(card.overrideReasons.length >= 1);
    const created = card.suggestions[0].actions.filter((a) => a.type === 'create').map((a) => a.resource);
    const written = ev.entry.map((e) => e.resource).filter((x) => x.resourceType === 'CarePlan' || x.resourceType === 'RiskAssessment');
    assert.deepEqual(L.maskNow(created), L.maskNow(written), 'the suggestion is what evaluate writes');
    // the suggested resources are valid R4 (the test server validates every create)
    for (const res of created) {
      const v = await fhir(fhirSrv.base, 'POST', res.resourceType, res);
      assert.equal(v.status, 201, `${res.resourceType} does not validate: ${v.text.slice(0, 400)}`);
    }
  });
}

test('missing and null prefetch keys are fetched from fhirServer with fhirAuthorization', async () => {
  const file = 'curative-palliative-skin.json';
  const rs = resourcesOf(path.join(FIX, file));
  for (const res of rs) {
    const put = await fhir(fhirSrv.base, 'PUT', `${res.resourceType}/${res.id}`, res);
    assert.ok(put.status === 200 || put.status === 201, put.text);
  }
  const pid = rs.find((r) => r.resourceType === 'Patient').id;
  const full = await L.call(serve.base, 'POST', SERVICE, { token: await tok(SERVICE), body: hookRequest(pid, prefetchOf(rs)) });
  const auth = { access_token: 'ehr-issued-token', token_type: 'Bearer', expires_in: 300, scope: 'patient/*.read', subject: 'dnmbc' };
  const pre = prefetchOf(rs);
  for (const variant of [{ conditions: null, observations: pre.observations, patient: pre.patient }, { patient: pre.patient }, undefined]) {
    const r = await L.call(serve.base, 'POST', SERVICE, {
      token: await tok(SERVICE),
      body: hookRequest(pid, variant, { fhirServer: fhirSrv.base, fhirAuthorization: auth }),
    });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(L.validateCdsResponse(r.json), []);
    assert.equal(r.json.cards.length, 1);
    const a = r.json.cards[0].suggestions[0].actions.map((x) => x.resource.resourceType);
    assert.deepEqual(a, ['CarePlan', 'RiskAssessment']);
    assert.equal(r.json.cards[0].summary, full.json.cards[0].summary);
    assert.deepEqual(L.maskNow(r.json.cards[0].suggestions[0].actions.map((x) => x.resource)),
      L.maskNow(full.json.cards[0].suggestions[0].actions.map((x) => x.resource)),
      'fetched data gives the same suggestion as the full prefetch');
  }
  // the EHR's access token is what goes to fhirServer: with the test server
  // requiring tokens of an issuer that never signed this one, the fetch is
  // refused (412) and the server saw exactly that token
  const on = await fhir(fhirSrv.base.replace(/\/fhir\/R4$/, ''), 'POST', `${fhirSrv.base.replace(/\/fhir\/R4$/, '')}/$test/auth`, { issuer: 'http://127.0.0.1:9/never' });
  assert.equal(on.status, 200, on.text);
  try {
    // JWT-shaped: the test server records bearer tokens of that form
    const marker = `eyJhbGciOiJFUzM4NCJ9.${Buffer.from(JSON.stringify({ jti: crypto.randomUUID() })).toString('base64url')}.c2ln`;
    const r = await L.call(serve.base, 'POST', SERVICE, { token: await tok(SERVICE), body: hookRequest(pid, { patient: pre.patient }, { fhirServer: fhirSrv.base, fhirAuthorization: { ...auth, access_token: marker } }) });
    assert.equal(r.status, 412, r.text);
    assert.match(r.json.detail, /Condition\?subject=Patient\/s10.*HTTP [45]\d\d/);
    const seen = await fhir(fhirSrv.base, 'GET', `${fhirSrv.base.replace(/\/fhir\/R4$/, '')}/$test/auth`);
    assert.ok(seen.json.tokens.includes(marker), 'the fhirAuthorization token reached fhirServer');
  } finally {
    await fhir(fhirSrv.base, 'POST', `${fhirSrv.base.replace(/\/fhir\/R4$/, '')}/$test/auth`, { issuer: null });
  }
  // no fhirAuthorization: the service can neither use nor fetch: 412
  const r412 = await L.call(serve.base, 'POST', SERVICE, { token: await tok(SERVICE), body: hookRequest(pid, { patient: pre.patient, conditions: null }, { fhirServer: fhirSrv.base }) });
  assert.equal(r412.status, 412, r412.text);
  assert.match(r412.json.detail, /prefetch\.conditions/);
});

test('a JWT signed with RS384, and one from a jku client, are trusted', async () => {
  const rs = await L.call(serve.base, 'GET', '/cds-services', { token: await tok('/cds-services', { alg: 'RS384', kid: 'ehr-rs', key: keys.rs.privateKey }) });
  assert.equal(rs.status, 200, rs.text);
  const web = await L.call(serve.base, 'GET', '/cds-services', { token: await L.sign(keys.other.privateKey, { iss: WEB_ISS, kid: 'web-es', aud: aud('/cds-services'), jku: jwks.url }) });
  assert.equal(web.status, 200, web.text);
  assert.ok(jwks.srv.hits >= 1, 'the JWKS was fetched from its jku');
});

test('refusals: each the right status, no crash, the listener unaffected', async () => {
  const body = hookRequest('s10', { patient: { resourceType: 'Patient', id: 's10' } });
  const cases = [
    ['no token', undefined, 401, /no bearer token/],
    ['unknown issuer', await tok(SERVICE, { iss: 'https://stranger.example' }), 401, /not a configured CDS client/],
    ['jku not listed', await tok(SERVICE, { jku: 'https://evil.example/jwks.json' }), 401, /jku/],
    ['wrong aud', await L.sign(keys.es.privateKey, { iss: ISS, aud: 'https://other.example/cds-services/dnmbc-local-therapy' }), 401, /aud/],
    ['expired', await tok(SERVICE, { iat: Math.floor(Date.now() / 1000) - 900, exp: Math.floor(Date.now() / 1000) - 600 }), 401, /expired/],
    ['unknown kid', await tok(SERVICE, { kid: 'nope' }), 401, /kid/],
    ['signed by another key', await tok(SERVICE, { key: keys.other.privateKey }), 401, /signature/],
  ];
  // alg none and HS256, made by hand (jose refuses to sign "none")
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: ISS, aud: aud(SERVICE), iat: now, exp: now + 300, jti: crypto.randomUUID() };
  cases.push(['alg none', `${b64({ alg: 'none', kid: 'ehr-es' })}.${b64(claims)}.`, 401, /alg 'none' refused/]);
  const hs = new L.jose.SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid: 'ehr-es' });
  cases.push(['alg HS256', await hs.sign(Buffer.from('a shared secret of enough length!!')), 401, /alg 'HS256' refused/]);
  for (const [name, token, status, re] of cases) {
    const r = await L.call(serve.base, 'POST', SERVICE, { token, body });
    assert.equal(r.status, status, `${name}: ${r.text}`);
    assert.match(r.json.detail, re, name);
  }
  const once = await tok(SERVICE);
  const first = await L.call(serve.base, 'POST', SERVICE, { token: once, body: hookRequest('s10', prefetchOf(resourcesOf(path.join(FIX, 'curative-palliative-skin.json')))) });
  assert.equal(first.status, 200, first.text);
  const replay = await L.call(serve.base, 'POST', SERVICE, { token: once, body });
  assert.equal(replay.status, 401);
  assert.match(replay.json.detail, /jti already used/);
  const other = await L.call(serve.base, 'POST', SERVICE, { token: await tok(SERVICE), body: hookRequest('s11', { patient: { resourceType: 'Patient', id: 's10' } }) });
  assert.equal(other.status, 400, other.text);
  assert.match(other.json.detail, /prefetch\.patient is not Patient\/s11/);
  const plain = await L.call(serve.base, 'POST', SERVICE, { token: await tok(SERVICE), body: hookRequest('s10', {}, { fhirServer: 'http://ehr.example/fhir', fhirAuthorization: { access_token: 'x', token_type: 'Bearer' } }) });
  assert.equal(plain.status, 400, plain.text);
  assert.match(plain.json.detail, /fhirServer must be an https URL/);
  // "." and ".." fit the id characters but would make Patient/.. a request for the base
  for (const dots of ['.', '..']) {
    const d = await L.call(serve.base, 'POST', SERVICE, { token: await tok(SERVICE), body: hookRequest(dots, {}) });
    assert.equal(d.status, 400, d.text);
    assert.match(d.json.detail, /context\.patientId must be a FHIR id/);
  }
  const bad = await L.call(serve.base, 'POST', SERVICE, { token: await tok(SERVICE), raw: '{"hook": "patient-view", ' });
  assert.equal(bad.status, 400);
  assert.match(bad.json.detail, /malformed JSON/);
  const big = await L.call(serve.base, 'POST', SERVICE, { token: await tok(SERVICE), raw: JSON.stringify({ pad: 'x'.repeat(600 * 1024) }) });
  assert.equal(big.status, 413);
  // the token never reaches the log
  assert.ok(!serve.logs.includes(once.split('.')[2]), 'a token signature in the log');
  assert.match(serve.logs, /refused: no bearer token/);
  const h = await L.call(serve.base, 'GET', '/healthz');
  assert.equal(h.status, 200);
});

test('feedback is stored in the state file, counted in /metrics and listed by status', async () => {
  const fb = {
    feedback: [
      { card: crypto.randomUUID(), outcome: 'overridden', outcomeTimestamp: new Date().toISOString(), overrideReason: { reason: { code: 'patient-preference', system: 'x', display: 'Patient preference' }, userComment: 'declined surgery' } },
      { card: crypto.randomUUID(), outcome: 'accepted', outcomeTimestamp: new Date().toISOString(), acceptedSuggestions: [{ id: crypto.randomUUID() }] },
    ],
  };
  const p = `${SERVICE}/feedback`;
  const r = await L.call(serve.base, 'POST', p, { token: await tok(p), body: fb });
  assert.equal(r.status, 200, r.text);
  const bad = await L.call(serve.base, 'POST', p, { token: await tok(p), body: { feedback: [{ card: 'x', outcome: 'maybe' }] } });
  assert.equal(bad.status, 400);
  const m = await L.call(serve.base, 'GET', '/metrics');
  assert.match(m.text, /dnmbc_cds_feedback_total\{outcome="overridden"\} 1/);
  assert.match(m.text, /dnmbc_cds_feedback_total\{outcome="accepted"\} 1/);
  assert.match(m.text, /dnmbc_cds_requests_total\{result="unauthorized"\} [1-9]/);
  const st = runAdapter(['status', '-c', serve.cfgPath]);
  assert.equal(st.status, 0, st.stderr);
  assert.match(st.stdout, /cds feedback {2}2/);
  assert.match(st.stdout, new RegExp(`card ${fb.feedback[0].card}  overridden: patient-preference - declined surgery`));
  assert.match(st.stdout, new RegExp(`card ${fb.feedback[1].card}  accepted`));
});

test('PlanDefinition and metadata describe $apply', async () => {
  const md = await L.call(serve.base, 'GET', '/fhir/metadata', { token: await tok('/fhir/metadata') });
  assert.equal(md.status, 200, md.text);
  const op = md.json.rest[0].resource.find((r) => r.type === 'PlanDefinition').operation[0];
  assert.equal(op.name, 'apply');
  assert.match(op.definition, /cpg-plandefinition-apply/);
  const p = '/fhir/PlanDefinition/dnmbc-local-therapy';
  const pd = await L.call(serve.base, 'GET', p, { token: await tok(p) });
  assert.equal(pd.status, 200, pd.text);
  assert.equal(pd.json.resourceType, 'PlanDefinition');
  assert.ok(pd.json.action[0].action.length >= 8);
  assert.ok(pd.json.relatedArtifact.some((a) => /10\.3892\/or\.2023\.8600/.test(a.url)));
});

test('$apply through fhir-kit-client equals evaluate on every golden case', async () => {
  const { Client } = require(path.join(ROOT, 'tests/cds-client/node_modules/fhir-kit-client'));
  const client = new Client({ baseUrl: `${serve.base}/fhir` });
  const p = '/fhir/PlanDefinition/dnmbc-local-therapy/$apply';
  const names = fs.readdirSync(CASES).filter((n) => fs.existsSync(path.join(CASES, n, 'input.json'))).sort();
  assert.ok(names.length > 100);
  let compared = 0;
  for (const name of names) {
    const input = path.join(CASES, name, 'input.json');
    let data;
    const text = fs.readFileSync(input, 'utf8');
    try { data = JSON.parse(text); } catch { continue; } // not JSON: no Parameters to send
    // an integer past 2^53 (the hostile-number cases) cannot travel through a
    // JavaScript client unchanged: fhir-kit-client would send another number
    if (/[0-9]{16,}/.test(text)) continue;
    if (!data || data.resourceType !== 'Bundle') continue;
    const ev = runAdapter(['evaluate', input, '--mappings', path.join(ROOT, 'mappings')]);
    client.bearerToken = await tok(p);
    let got, status = 200;
    try {
      got = await client.operation({ name: 'apply', resourceType: 'PlanDefinition', id: 'dnmbc-local-therapy', input: { resourceType: 'Parameters', parameter: [{ name: 'data', resource: data }] } });
    } catch (e) {
      if (!e.response) throw e;
      status = e.response.status;
      got = typeof e.response.data === 'string' ? JSON.parse(e.response.data) : e.response.data;
    }
    if (ev.status === 0) {
      assert.equal(status, 200, `${name}: ${JSON.stringify(got).slice(0, 300)}`);
      assert.deepEqual(L.maskNow(got), L.maskNow(JSON.parse(ev.stdout)), name);
    } else {
      assert.equal(status, 422, name);
      assert.deepEqual(got, JSON.parse(ev.stdout), `${name}: the OperationOutcome evaluate prints`);
    }
    compared++;
  }
  assert.ok(compared > 100, `only ${compared} cases compared`);
});

test('$apply: bad Parameters get an OperationOutcome', async () => {
  const p = '/fhir/PlanDefinition/dnmbc-local-therapy/$apply';
  for (const [body, re] of [
    [{ resourceType: 'Patient' }, /Parameters/],
    [{ resourceType: 'Parameters', parameter: [] }, /data/],
    [{ resourceType: 'Parameters', parameter: [{ name: 'data', resource: { resourceType: 'Patient' } }] }, /Bundle/],
  ]) {
    const r = await L.call(serve.base, 'POST', p, { token: await tok(p), body });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.resourceType, 'OperationOutcome');
    assert.match(r.json.issue[0].diagnostics, re);
  }
  const un = await L.call(serve.base, 'POST', p, { body: { resourceType: 'Parameters' } });
  assert.equal(un.status, 401);
  assert.equal(un.json.resourceType, 'OperationOutcome');
});

// 1,000 requests at once, each on its own connection, to the listener of
// `run --listen` configured to hold them all (server.max_connections and
// the per-address limit above 1,000): each is answered 200 with its card or
// 503 with Retry-After (past cds.max_concurrent), nothing crashes, and the
// daemon beside the listener goes on completing its cycles.
test('1,000 concurrent requests: each answered 200 or 503, the daemon beside it unaffected', async () => {
  const http = require('node:http');
  const { spawn } = require('node:child_process');
  const d = tmpdir('cds-flood');
  const jwksFile = path.join(d, 'jwks.json');
  fs.writeFileSync(jwksFile, JSON.stringify({ keys: [keys.esJwk] }));
  const cfgPath = path.join(d, 'config.json');
  fs.writeFileSync(cfgPath, JSON.stringify({
    fhir: { base_url: fhirSrv.base },
    server: { public_url: L.PUBLIC_URL, max_connections: 1100, max_connections_per_client: 1100, header_timeout_s: 120, body_timeout_s: 120 },
    cds: { clients: [{ iss: ISS, jwks_file: jwksFile }] },
    mappings: { dir: path.join(ROOT, 'mappings') },
    state: { path: path.join(d, 'state.db') },
    daemon: { interval_s: 1 },
  }), { mode: 0o600 });
  const proc = spawn(path.join(ROOT, 'dnmbc-adapter'), ['run', '-c', cfgPath, '--listen', '127.0.0.1:0'], { env: { ...process.env, DNMBC_LOG_LEVEL: '' }, stdio: ['ignore', 'ignore', 'pipe'] });
  let logs = '';
  const base = await new Promise((resolve, reject) => {
    proc.stderr.on('data', (x) => { logs += x; const m = /listening on (http\S*?:\d+) /.exec(logs); if (m) resolve(m[1]); });
    proc.on('exit', (c) => reject(new Error(`run exited ${c}: ${logs}`)));
  });
  const cyclesOk = async () => {
    const m = await L.call(base, 'GET', '/metrics');
    const v = /dnmbc_cycles_total\{result="ok"\} (\d+)/.exec(m.text);
    return v ? Number(v[1]) : 0;
  };
  try {
    const rs = resourcesOf(path.join(FIX, 'curative-palliative-skin.json'));
    const body = JSON.stringify(hookRequest('s10', prefetchOf(rs)));
    const url = new URL(`${base}${SERVICE}`);
    const tokens = [];
    for (let i = 0; i < 1000; i++) tokens.push(await tok(SERVICE));
    let open = 0, maxOpen = 0;
    const one = (token) => new Promise((resolve) => {
      // agent: false, one connection per request: 1,000 at once
      const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent: false,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' } }, (res) => {
        let text = '';
        res.on('data', (x) => { text += x; });
        res.on('end', () => resolve({ status: res.statusCode, text, retry: res.headers['retry-after'] }));
      });
      req.on('socket', (sock) => sock.on('connect', () => { open++; maxOpen = Math.max(maxOpen, open); }));
      req.on('close', () => { open--; });
      req.on('error', (e) => resolve({ status: 0, text: e.message }));
      req.end(body);
    });
    const before = await cyclesOk();
    const out = await Promise.all(tokens.map(one));
    const statuses = {};
    for (const r of out) statuses[r.status] = (statuses[r.status] || 0) + 1;
    assert.equal(out.length, 1000);
    for (const r of out) {
      // the daemon's last log lines say why, should a connection be dropped
      assert.ok(r.status === 200 || r.status === 503, `unexpected ${r.status}: ${r.text.slice(0, 200)} (${JSON.stringify(statuses)}); daemon log: ${logs.slice(-1500)}`);
      if (r.status === 503) assert.equal(r.retry, '1');
      else assert.equal(JSON.parse(r.text).cards.length, 1);
    }
    assert.ok(statuses[200] > 0, JSON.stringify(statuses));
    assert.ok(maxOpen > 60, `connections open at once: ${maxOpen}`);
    assert.equal(proc.exitCode, null, 'the daemon is alive');
    const h = await L.call(base, 'GET', '/healthz');
    assert.equal(h.status, 200);
    // the daemon beside the listener: its cycles go on
    let after = await cyclesOk();
    for (let i = 0; i < 2400 && after <= before; i++) {
      await new Promise((r) => setTimeout(r, 25));
      after = await cyclesOk();
    }
    assert.ok(after > before, `cycles completed after the flood: ${before} -> ${after}`);
  } finally {
    await new Promise((resolve) => { if (proc.exitCode !== null) return resolve(); proc.on('exit', resolve); proc.kill('SIGTERM'); });
  }
});

test('run --listen serves the same endpoints beside the daemon', async () => {
  const d = tmpdir('cds-run');
  const jwksFile = path.join(d, 'jwks.json');
  fs.writeFileSync(jwksFile, JSON.stringify({ keys: [keys.esJwk] }));
  const cfg = {
    fhir: { base_url: fhirSrv.base },
    server: { public_url: L.PUBLIC_URL },
    cds: { clients: [{ iss: ISS, jwks_file: jwksFile }] },
    mappings: { dir: path.join(ROOT, 'mappings') },
    state: { path: path.join(d, 'state.db') },
    daemon: { interval_s: 3600 },
  };
  const cfgPath = path.join(d, 'config.json');
  fs.writeFileSync(cfgPath, JSON.stringify(cfg), { mode: 0o600 });
  const { spawn } = require('node:child_process');
  const proc = spawn(path.join(ROOT, 'dnmbc-adapter'), ['run', '-c', cfgPath, '--listen', '127.0.0.1:0'], { env: { ...process.env, DNMBC_LOG_LEVEL: '' }, stdio: ['ignore', 'ignore', 'pipe'] });
  let logs = '';
  const base = await new Promise((resolve, reject) => {
    proc.stderr.on('data', (x) => { logs += x; const m = /listening on (http\S*?:\d+) /.exec(logs); if (m) resolve(m[1]); });
    proc.on('exit', (c) => reject(new Error(`run exited ${c}: ${logs}`)));
  });
  try {
    const bad = await L.call(base, 'POST', SERVICE, { raw: '{not json' });
    assert.equal(bad.status, 401);
    const r = await L.call(base, 'GET', '/cds-services', { token: await tok('/cds-services') });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.services[0].id, 'dnmbc-local-therapy');
    const rs = resourcesOf(path.join(FIX, 'curative-palliative-skin.json'));
    const card = await L.call(base, 'POST', SERVICE, { token: await tok(SERVICE), body: hookRequest('s10', prefetchOf(rs)) });
    assert.equal(card.status, 200, card.text);
    assert.equal(card.json.cards.length, 1);
    // useServerData reads the daemon's own FHIR server (loaded by the prefetch test)
    const p = '/fhir/PlanDefinition/dnmbc-local-therapy/$apply';
    const ap = await L.call(base, 'POST', p, { token: await tok(p), body: { resourceType: 'Parameters', parameter: [{ name: 'subject', valueString: 'Patient/s10' }, { name: 'useServerData', valueBoolean: true }] } });
    assert.equal(ap.status, 200, ap.text);
    assert.deepEqual(L.maskNow(ap.json.entry.map((e) => e.resource)), L.maskNow(card.json.cards[0].suggestions[0].actions.map((a) => a.resource)));
    assert.equal(proc.exitCode, null);
  } finally {
    await new Promise((resolve) => { proc.on('exit', resolve); proc.kill('SIGTERM'); });
  }
});

test('past cds.max_concurrent requests held, the next gets 503 with Retry-After', async () => {
  const net = require('node:net');
  const d = tmpdir('cds-busy');
  const jwksFile = path.join(d, 'jwks.json');
  fs.writeFileSync(jwksFile, JSON.stringify({ keys: [keys.esJwk] }));
  const s = await L.startServe({
    server: { public_url: L.PUBLIC_URL },
    cds: { clients: [{ iss: ISS, jwks_file: jwksFile }], max_concurrent: 1 },
    mappings: { dir: path.join(ROOT, 'mappings') },
    state: { path: path.join(d, 'state.db') },
  }, d);
  try {
    const u = new URL(s.base);
    const body = JSON.stringify(hookRequest('s10', prefetchOf(resourcesOf(path.join(FIX, 'curative-palliative-skin.json')))));
    const token = await tok(SERVICE);
    // A request whose body is still to come: the listener holds it.  "100
    // Continue" says the listener has read its headers (no timing guess).
    const sock = net.connect(Number(u.port), u.hostname);
    let got = '';
    sock.on('data', (x) => { got += x; });
    sock.write(`POST ${SERVICE} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\n\r\n`);
    for (let i = 0; i < 2400 && !/100 Continue/.test(got); i++) await new Promise((r) => setTimeout(r, 25));
    assert.match(got, /100 Continue/);
    const busy = await L.call(s.base, 'GET', '/cds-services', { token: await tok('/cds-services') });
    assert.equal(busy.status, 503, busy.text);
    assert.equal(busy.headers.get('retry-after'), '1');
    sock.write(body);
    for (let i = 0; i < 2400 && !/\r\n\r\n\{"cards"/.test(got); i++) await new Promise((r) => setTimeout(r, 25));
    assert.match(got, /HTTP\/1\.1 200/);
    sock.destroy();
    const after = await L.call(s.base, 'GET', '/cds-services', { token: await tok('/cds-services') });
    assert.equal(after.status, 200, 'served again once the held request is answered');
    const m = await L.call(s.base, 'GET', '/metrics');
    assert.match(m.text, /dnmbc_cds_requests_total\{result="busy"\} 1/);
  } finally {
    await L.stopServe(s);
  }
});

test('a paging link to another origin than fhirServer is not followed (the token stays there)', async () => {
  // The test server writes its next links with 127.0.0.1; called as
  // localhost, they point to another origin.
  const pid = 'paged-1';
  const put = await fhir(fhirSrv.base, 'PUT', `Patient/${pid}`, { resourceType: 'Patient', id: pid, gender: 'female' });
  assert.ok(put.status === 200 || put.status === 201, put.text);
  for (let i = 0; i < 201; i++) {
    const c = await fhir(fhirSrv.base, 'PUT', `Condition/${pid}-c${i}`, {
      resourceType: 'Condition', id: `${pid}-c${i}`, subject: { reference: `Patient/${pid}` },
      code: { coding: [{ system: 'http://snomed.info/sct', code: '38341003', display: 'Hypertension' }] },
    });
    assert.ok(c.status === 200 || c.status === 201, c.text);
  }
  const other = fhirSrv.base.replace('127.0.0.1', 'localhost');
  const r = await L.call(serve.base, 'POST', SERVICE, {
    token: await tok(SERVICE),
    body: hookRequest(pid, { patient: { resourceType: 'Patient', id: pid } }, { fhirServer: other, fhirAuthorization: { access_token: 'ehr-token', token_type: 'Bearer' } }),
  });
  assert.equal(r.status, 412, r.text);
  assert.match(r.json.detail, /next link leaves the FHIR server's origin/);
});
