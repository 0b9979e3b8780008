// Operations (issue #6): `run --listen` serves /healthz, /readyz, /metrics
// and /notify. Checks the metrics against what a cycle did (scraped during
// and after it), readiness following the FHIR server down and back up,
// Subscription notifications of each payload kind processed at once (the
// poll interval is an hour), the shared secret, the per-cycle AuditEvent,
// JSON logs, and the startup preflight against a modified
// CapabilityStatement.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const h = require('./helpers');
const lib = require('./daemon-lib');

const SECRET = 'notify-secret-for-tests-only';
let srv;
let synth;
let idOf = {};
let daemon;
let work;

function sleep(ms) {
  return new Promise((res) => setTimeout(res, ms));
}

// Polls fn until it returns a truthy value; fails after `limitMs` (a bound
// against hanging, not a timing assertion). Returns [value, elapsed ms].
async function waitFor(what, fn, limitMs = 30000) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return [v, Date.now() - t0];
    if (Date.now() - t0 > limitMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function startDaemon(cfg, extraArgs = []) {
  const cfgFile = path.join(work, `cfg-${Date.now()}.json`);
  fs.writeFileSync(cfgFile, JSON.stringify(cfg));
  const child = spawn(h.BIN, ['run', '--config', cfgFile, '--base-url', srv.base, '--state',
    path.join(work, 'state.db'), '--listen', '127.0.0.1:0', ...extraArgs], {
    env: { ...process.env, DNMBC_LOG_LEVEL: '' },
  });
  const d = { child, err: '', port: 0 };
  child.stderr.on('data', (b) => { d.err += b; });
  d.exited = new Promise((res) => child.on('exit', (c) => res(c)));
  return d;
}

async function listening(d) {
  const [m] = await waitFor('the listener', () => d.err.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/));
  d.port = Number(m[1]);
  return d.port;
}

async function get(d, p) {
  const r = await fetch(`http://127.0.0.1:${d.port}${p}`);
  return { status: r.status, text: await r.text() };
}

async function notify(d, body, secret = SECRET, url = '/notify') {
  const headers = { 'content-type': 'application/fhir+json' };
  if (secret !== null) headers.authorization = `Bearer ${secret}`;
  const r = await fetch(`http://127.0.0.1:${d.port}${url}`, {
    method: 'POST', headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, text: await r.text() };
}

// Prometheus text -> { 'name{labels}': value }
function parseMetrics(text) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    const v = line.slice(i + 1);
    out[line.slice(0, i)] = v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v);
  }
  return out;
}

async function metrics(d) {
  const r = await get(d, '/metrics');
  assert.equal(r.status, 200);
  return parseMetrics(r.text);
}

function evaluatedTotal(m) {
  return Object.entries(m)
    .filter(([k]) => k.startsWith('dnmbc_patients_evaluated_total{') && !k.includes('palliative'))
    .reduce((s, [, v]) => s + v, 0);
}

async function planOf(pid) {
  const cps = await h.searchAll(srv.base,
    `CarePlan?identifier=${encodeURIComponent(`${h.idSystem('CarePlan')}|${pid}`)}`);
  return cps[0];
}

// shared with trace.test.js (daemon-lib.js)
const withdrawConditions = (pid) => lib.withdrawConditions(srv.base, pid);
const backportBundle = (...args) => lib.backportBundle(srv.base, ...args);
const { eventParams } = lib;

test.before(async () => {
  work = h.tmpdir('ops');
  srv = h.startServer();
  synth = h.generateSynth();
  h.loadSynth(srv.base, synth.dir);
  for (const m of synth.manifest) {
    const found = await h.searchAll(srv.base,
      `Patient?identifier=${encodeURIComponent(`${m.identifier.system}|${m.identifier.value}`)}`);
    idOf[m.identifier.value] = found[0].id;
  }
  fs.writeFileSync(path.join(work, 'secret'), SECRET + '\n', { mode: 0o600 });
});

test.after(async () => {
  if (daemon && daemon.child.exitCode === null) {
    daemon.child.kill('SIGTERM');
    await daemon.exited;
  }
  h.stopServer(srv);
});

test('metrics follow a cycle: scraped during it and checked against its summary after', async () => {
  // slow the cycle down so that a scrape lands in the middle of it
  await h.fhir(srv.base, 'POST', `${srv.base.replace(/\/fhir\/R4$/, '')}/$test/fault`,
    { method: 'GET', resourceType: 'Observation', delayMs: 150, count: -1 });
  daemon = startDaemon({
    daemon: { interval_s: 3600, overlap_s: 0 },
    server: { notify_secret_file: path.join(work, 'secret') },
    audit: { enabled: true },
  });
  await listening(daemon);
  assert.equal((await get(daemon, '/healthz')).status, 200);
  const [during] = await waitFor('a scrape in the middle of the cycle', async () => {
    const m = await metrics(daemon);
    return evaluatedTotal(m) >= 1 ? m : null;
  });
  await fetch(`${srv.base.replace(/\/fhir\/R4$/, '')}/$test/fault`, { method: 'DELETE' });
  const eligible = synth.manifest.filter((m) => m.expected.recommendation !== 'not-applicable');
  assert.ok(evaluatedTotal(during) < synth.manifest.length, 'the scrape came before the end');
  assert.equal(during['dnmbc_cycles_total{result="ok"}'], 0);
  assert.equal(during['dnmbc_last_successful_cycle_age_seconds'], Infinity);

  await waitFor('the end of the first cycle', () => /cycle done/.test(daemon.err));
  const s = daemon.err.match(/cycle done: (\d+) patient\(s\), (\d+) created, (\d+) updated, (\d+) unchanged, (\d+) revoked, (\d+) failed/);
  assert.ok(s, daemon.err);
  // The daemon counts a cycle before it logs its summary; the scrape also
  // waits for the count, so the comparison does not hang on that order.
  const [after] = await waitFor('the cycle counted', async () => {
    const m = await metrics(daemon);
    return m['dnmbc_cycles_total{result="ok"}'] >= 1 ? m : null;
  });
  assert.equal(after['dnmbc_cycles_total{result="ok"}'], 1);
  assert.equal(evaluatedTotal(after), Number(s[1]));
  assert.equal(after['dnmbc_writes_total{outcome="created"}'], Number(s[2]));
  assert.equal(after['dnmbc_writes_total{outcome="created"}'], eligible.length);
  assert.equal(after['dnmbc_writes_total{outcome="updated"}'], Number(s[3]));
  assert.equal(after['dnmbc_writes_total{outcome="unchanged"}'], Number(s[4]));
  assert.equal(after['dnmbc_patients_failed_total'], Number(s[6]));
  // per recommendation code, as the manifest expects
  const byRec = {};
  for (const m of synth.manifest) byRec[m.expected.recommendation] = (byRec[m.expected.recommendation] || 0) + 1;
  for (const [rec, n] of Object.entries(byRec)) {
    // not-applicable patients without any breast cancer Condition are not in
    // the cohort, so they are never evaluated
    if (rec === 'not-applicable') assert.ok(after[`dnmbc_patients_evaluated_total{recommendation="${rec}"}`] <= n, rec);
    else assert.equal(after[`dnmbc_patients_evaluated_total{recommendation="${rec}"}`], n, rec);
  }
  assert.equal(after['dnmbc_fetch_duration_seconds_count'], Number(s[1]));
  assert.equal(after['dnmbc_post_duration_seconds_count'], Number(s[1]));
  // at least one batch per patient and one transaction per written one
  assert.ok(after['dnmbc_http_requests_total{class="2xx"}'] >= Number(s[1]) + Number(s[2]));
  assert.equal(after['dnmbc_http_requests_total{class="5xx"}'], 0);
  assert.ok(after['dnmbc_last_successful_cycle_age_seconds'] < 3600);
  assert.equal(after['dnmbc_build_info{version="0.1.0"}'], 1);
  for (const k of ['dnmbc_retries_total', 'dnmbc_dead_letters_total', 'dnmbc_outbox_depth', 'dnmbc_token_renewals_total']) {
    assert.ok(k in after, `${k} is exported`);
  }
  // the slow Observation searches show in the fetch histogram
  assert.ok(after['dnmbc_fetch_duration_seconds_bucket{le="0.1"}'] < Number(s[1]));
  console.log(`# cycle: ${s[0]}; fetch p(<=0.25s)=${after['dnmbc_fetch_duration_seconds_bucket{le="0.25"}']}/${s[1]}`);

  // audit.enabled: one AuditEvent for the cycle, one entity per patient
  const audits = await h.searchAll(srv.base, 'AuditEvent');
  assert.equal(audits.length, 1);
  assert.equal(audits[0].action, 'U');
  assert.equal(audits[0].outcome, '0');
  assert.equal(audits[0].entity.length, Number(s[1]));
  assert.ok(audits[0].entity.every((e) => e.role.code === '1' && e.what.reference.startsWith('Patient/')));
});

test('/notify: a wrong or missing secret gets 401, a bad body 400', async () => {
  assert.equal((await notify(daemon, undefined, 'wrong')).status, 401);
  assert.equal((await notify(daemon, undefined, null)).status, 401);
  const r = await fetch(`http://127.0.0.1:${daemon.port}/notify`, {
    method: 'POST', headers: { authorization: `Bearer ${SECRET}` }, body: '{"resourceType":',
  });
  assert.equal(r.status, 400);
  assert.equal((await get(daemon, '/notify')).status, 405);
  const m = await metrics(daemon);
  assert.equal(m.dnmbc_notifications_rejected_total, 3);
});

// One eligible patient per payload kind; each notification must get the
// plan revoked while the daemon sleeps out its one-hour interval.
const kinds = [
  ['full-resource (R4 rest-hook, resource as body)', (cond) => cond],
  ['id-only (backport Bundle)', (cond, n) => backportBundle('event-notification', eventParams(n),
    [{ fullUrl: `${srv.base}/Condition/${cond.id}/_history/${cond.meta.versionId}`, request: { method: 'PUT', url: `Condition/${cond.id}` }, response: { status: '200' } }])],
  ['empty (backport Bundle, catch-up poll)', (cond, n) => backportBundle('event-notification', eventParams(n), [])],
];

for (const [i, [name, payload]] of kinds.entries()) {
  test(`/notify ${name}: the plan is updated without waiting for the poll`, async () => {
    const eligible = synth.manifest.filter((m) => m.expected.recommendation !== 'not-applicable');
    const pid = idOf[eligible[i].identifier.value];
    assert.equal((await planOf(pid)).status, 'draft');
    const before = await metrics(daemon);
    await sleep(1100); // the change must be strictly after the watermark (empty payload)
    const cond = await withdrawConditions(pid);
    const t0 = Date.now();
    const r = await notify(daemon, payload(cond, i + 1));
    assert.equal(r.status, 200, r.text);
    const [, ms] = await waitFor('the revoked plan', async () => (await planOf(pid)).status === 'revoked');
    console.log(`# ${name}: plan revoked ${Date.now() - t0} ms after the notification (poll interval 3600 s); waited ${ms} ms`);
    // the counter moves once the patient's pass ends, just after the write
    const [m] = await waitFor('the revoke counted', async () => {
      const x = await metrics(daemon);
      return x['dnmbc_writes_total{outcome="revoked"}'] > before['dnmbc_writes_total{outcome="revoked"}'] ? x : null;
    });
    assert.equal(m['dnmbc_writes_total{outcome="revoked"}'], before['dnmbc_writes_total{outcome="revoked"}'] + 1);
    const kind = ['full-resource', 'id-only', 'empty'][i];
    assert.equal(m[`dnmbc_notifications_total{kind="${kind}"}`], before[`dnmbc_notifications_total{kind="${kind}"}`] + 1);
  });
}

test('/notify heartbeats are tracked and a gap in event numbers asks for a catch-up poll', async () => {
  const before = await metrics(daemon);
  let r = await notify(daemon, backportBundle('handshake', [{ name: 'events-since-subscription-start', valueString: '3' }], []));
  assert.equal(r.status, 200, r.text);
  r = await notify(daemon, backportBundle('heartbeat', [{ name: 'events-since-subscription-start', valueString: '3' }], []));
  assert.equal(r.status, 200);
  let m = await metrics(daemon);
  assert.equal(m['dnmbc_notifications_total{kind="heartbeat"}'], before['dnmbc_notifications_total{kind="heartbeat"}'] + 1);
  assert.equal(m.dnmbc_catchup_polls_total, before.dnmbc_catchup_polls_total);
  // events 4 and 5 never arrived: the heartbeat says 5 happened
  r = await notify(daemon, backportBundle('heartbeat', [{ name: 'events-since-subscription-start', valueString: '5' }], []));
  assert.equal(r.status, 200);
  m = await metrics(daemon);
  assert.equal(m.dnmbc_catchup_polls_total, before.dnmbc_catchup_polls_total + 1);
  const cycles = before['dnmbc_cycles_total{result="ok"}'];
  await waitFor('the catch-up cycle', async () => (await metrics(daemon))['dnmbc_cycles_total{result="ok"}'] > cycles);
  assert.match(daemon.err, /notification events were missed: catch-up poll/);
});

test('/readyz turns unready when the FHIR server stops and ready when it returns', async () => {
  await waitFor('ready', async () => (await get(daemon, '/readyz')).status === 200);
  const port = fs.readFileSync(path.join(srv.dir, 'port'), 'utf8').trim();
  h.stopServer(srv);
  const [r] = await waitFor('unready', async () => {
    const x = await get(daemon, '/readyz');
    return x.status === 503 ? x : null;
  });
  assert.match(r.text, /FHIR server/);
  assert.equal((await get(daemon, '/healthz')).status, 200, 'alive all along');
  // the same server again, on the same port
  const child = spawn('node', [path.join(h.ROOT, 'tests/fhir-server/server.js'), '--port', port,
    '--port-file', path.join(srv.dir, 'port'), '--pid-file', path.join(srv.dir, 'pid'), '--quiet'],
  { stdio: 'ignore', detached: false });
  child.unref();
  await waitFor('ready again', async () => (await get(daemon, '/readyz')).status === 200);
  daemon.child.kill('SIGTERM');
  // A cycle that an earlier test's catch-up poll started may be running while
  // the server is down: its patients fail, and the daemon then rightly exits
  // 1 ("some patients failed").  Anything else (a crash, a signal) is wrong.
  const code = await daemon.exited;
  assert.ok(code === 0 || (code === 1 && /failed: /.test(daemon.err)), `exit ${code}: ${daemon.err.slice(-2000)}`);
  // no patient id ever reached the log
  for (const id of Object.values(idOf)) assert.ok(!daemon.err.includes(id), 'patient id in the log');
});

test('preflight: the test server passes; without conditional update the adapter falls back, or fails naming it', async () => {
  const own = h.startServer();
  try {
    const admin = own.base.replace(/\/fhir\/R4$/, '');
    const files = synth.manifest.slice(0, 4).map((m) => path.join(synth.dir, m.file));
    spawnSync('node', [path.join(h.ROOT, 'tests/fhir-server/load.js'), '--base', own.base, ...files]);
    const cfg = path.join(work, 'pf.json');
    fs.writeFileSync(cfg, JSON.stringify({ log: { format: 'json' } }));
    const state = path.join(work, 'pf.db');
    let r = h.runAdapter(['sync', '--config', cfg, '--base-url', own.base, '--state', state]);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(lines.some((l) => l.component === 'preflight' && /FHIR 4\.0\.1 server accepted/.test(l.msg)));
    assert.ok(lines.filter((l) => l.component === 'sync' && /^patient /.test(l.msg)).every((l) => /^[0-9a-f]{16}$/.test(l.correlation_id)));

    // a busy server at start-up (429 on /metadata) is no verdict: the sync
    // goes on (its own requests are retried)
    await h.fhir(own.base, 'POST', `${admin}/$test/fault`, { method: 'GET', resourceType: 'metadata', status: 429, retryAfter: 1, count: 1 });
    r = h.runAdapter(['sync', '--base-url', own.base, '--state', path.join(work, 'pf429.db')]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /preflight: skipped: .*429/);

    // a statement without conditional update: adapt (search + update by id)
    await h.fhir(own.base, 'POST', `${admin}/$test/capability`, { resource: { conditionalUpdate: null }, types: ['CarePlan', 'RiskAssessment', 'Device'] });
    const cs = await h.fhir(own.base, 'GET', 'metadata');
    assert.equal(cs.json.rest[0].resource.find((x) => x.type === 'CarePlan').conditionalUpdate, undefined);
    const before = (await h.searchAll(own.base, 'CarePlan')).length;
    // a fresh state and a plan deleted on the server: the fallback must create it again
    const plans = await h.searchAll(own.base, 'CarePlan');
    assert.ok(plans.length > 0);
    assert.equal((await h.fhir(own.base, 'DELETE', `CarePlan/${plans[0].id}`)).status, 200);
    r = h.runAdapter(['sync', '--base-url', own.base, '--state', path.join(work, 'pf2.db')]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /CarePlan conditionalUpdate missing: search by identifier, then update by id or create/);
    assert.match(r.stdout, /created\s+1\n/);
    assert.equal((await h.searchAll(own.base, 'CarePlan')).length, before);
    r = h.runAdapter(['sync', '--base-url', own.base, '--state', path.join(work, 'pf2.db')]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /updated\s+0\n/);
    assert.equal((await h.searchAll(own.base, 'CarePlan')).length, before, 'no duplicates');

    // strict: fail fast, naming what is missing
    fs.writeFileSync(cfg, JSON.stringify({ fhir: { preflight: 'strict' } }));
    r = h.runAdapter(['sync', '--config', cfg, '--base-url', own.base, '--state', state]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /CarePlan conditionalUpdate/);
    // a server of another FHIR version is refused in any mode but off
    await h.fhir(own.base, 'POST', `${admin}/$test/capability`, { fhirVersion: '3.0.2' });
    r = h.runAdapter(['sync', '--base-url', own.base, '--state', state]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /fhirVersion is 3\.0\.2, need 4\.0\.x/);
  } finally {
    h.stopServer(own);
  }
});

test('the listener speaks HTTPS with server.tls_cert / server.tls_key (certs/)', async () => {
  const certs = path.join(h.ROOT, 'certs/out');
  if (!fs.existsSync(path.join(certs, 'server.pem'))) {
    spawnSync('bash', [path.join(h.ROOT, 'certs/make-certs.sh'), certs], { stdio: 'ignore' });
  }
  const own = h.startServer();
  const cfgFile = path.join(work, 'tls.json');
  fs.writeFileSync(cfgFile, JSON.stringify({
    server: { tls_cert: path.join(certs, 'server.pem'), tls_key: path.join(certs, 'server.key') },
    daemon: { interval_s: 3600 },
  }));
  const child = spawn(h.BIN, ['run', '--config', cfgFile, '--base-url', own.base, '--state',
    path.join(work, 'tls.db'), '--listen', '127.0.0.1:0'], { env: { ...process.env, DNMBC_LOG_LEVEL: '' } });
  let err = '';
  child.stderr.on('data', (b) => { err += b; });
  try {
    const [m] = await waitFor('the HTTPS listener', () => err.match(/listening on https:\/\/127\.0\.0\.1:(\d+)/));
    const body = await new Promise((res, rej) => {
      require('node:https').get({ host: '127.0.0.1', port: Number(m[1]), path: '/healthz', servername: 'localhost',
        ca: fs.readFileSync(path.join(certs, 'ca.pem')), checkServerIdentity: () => undefined }, (r) => {
        let t = '';
        r.on('data', (d) => { t += d; });
        r.on('end', () => res(`${r.statusCode} ${t}`));
      }).on('error', rej);
    });
    assert.equal(body, '200 ok\n');
    // plain HTTP on the TLS port gets no answer
    await assert.rejects(fetch(`http://127.0.0.1:${m[1]}/healthz`, { signal: AbortSignal.timeout(3000) }));
  } finally {
    child.kill('SIGTERM');
    await new Promise((res) => child.on('exit', res));
    h.stopServer(own);
  }
});
