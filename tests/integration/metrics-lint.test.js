// /metrics passes `promtool check metrics` (Debian's prometheus package):
// the live exposition of `run --listen` after a cycle and notifications
// (the identity and CDS counters are exported from the start, at 0), piped
// to promtool; any problem it reports fails the test.
//
// Without promtool the test is skipped with a message, unless
// DNMBC_REQUIRE_PROMTOOL=1 (set by .ci/run, where .ci/install-deps installs
// it): then a missing promtool fails.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const h = require('./helpers');
const { waitFor, startDaemon, stopDaemon, secretFile } = require('./daemon-lib');

const SECRET = 'notify-secret-for-metrics-lint';
const havePromtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' }).status === 0;
const required = process.env.DNMBC_REQUIRE_PROMTOOL === '1';
const skip = !havePromtool && !required
  ? 'promtool not found (apt-get install prometheus; CI sets DNMBC_REQUIRE_PROMTOOL=1 and installs it)'
  : false;

let srv;
let work;
let daemon;

function promtool(text) {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (r.error) throw r.error;
  return { status: r.status, out: `${r.stdout}${r.stderr}`.trim() };
}

test.before(async () => {
  if (skip) return;
  assert.ok(havePromtool, 'DNMBC_REQUIRE_PROMTOOL=1 but promtool is not installed (Debian package prometheus)');
  work = h.tmpdir('promlint');
  srv = h.startServer();
  const synth = h.generateSynth();
  const files = synth.manifest.slice(0, 6).map((m) => path.join(synth.dir, m.file));
  spawnSync('node', [path.join(h.ROOT, 'tests/fhir-server/load.js'), '--base', srv.base, ...files]);
  daemon = await startDaemon(work, srv.base, {
    daemon: { interval_s: 3600, overlap_s: 0 },
    server: { notify_secret_file: secretFile(work, SECRET) },
  });
  await waitFor('one cycle', () => /cycle done/.test(daemon.err));
});

test.after(async () => {
  await stopDaemon(daemon);
  if (srv) h.stopServer(srv);
});

test('promtool finds problems in a bad exposition (the check can fail)', { skip }, () => {
  const bad = promtool('# HELP dnmbc_things A count.\n# TYPE dnmbc_things counter\ndnmbc_things 1\n' +
    '# TYPE dnmbc_latency_milliseconds gauge\ndnmbc_latency_milliseconds 3\n');
  assert.notEqual(bad.status, 0);
  assert.match(bad.out, /_total/);
  assert.match(bad.out, /no help text/);
});

test('the live /metrics after a cycle and notifications passes promtool check metrics', { skip }, async () => {
  const base = `http://127.0.0.1:${daemon.port}`;
  // values in the counters that only traffic fills: a rejected and an
  // accepted notification
  let r = await fetch(`${base}/notify`, { method: 'POST', headers: { authorization: 'Bearer wrong' }, body: '{}' });
  assert.equal(r.status, 401);
  r = await fetch(`${base}/notify`, {
    method: 'POST',
    headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Patient', id: 'not-there' }),
  });
  assert.ok(r.status === 200 || r.status === 400, `notification answered ${r.status}`);
  r = await fetch(`${base}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const text = await r.text();
  assert.match(text, /^dnmbc_cycles_total\{result="ok"\} [1-9]/m, 'scraped after a cycle');
  assert.match(text, /^dnmbc_notifications_rejected_total [1-9]/m);
  for (const name of ['dnmbc_identity_refused_total', 'dnmbc_cds_requests_total', 'dnmbc_cds_feedback_total',
    'dnmbc_last_successful_cycle_age_seconds']) {
    assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is exported`);
  }
  const lint = promtool(text);
  assert.equal(lint.out, '', `promtool check metrics reports:\n${lint.out}`);
  assert.equal(lint.status, 0);
});
