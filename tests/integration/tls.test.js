// TLS against the test FHIR server in HTTPS mode, with the development
// certificates of certs/make-certs.sh: the dev CA is accepted; a rogue CA,
// an expired certificate and a wrong host name are refused with a clear
// error, exit 2 and nothing posted; mutual TLS works with the client
// certificate and is refused without it; a pinned public key is enforced.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const { ROOT, tmpdir, stopServer, runAdapter, generateSynth } = require('./helpers');

const CERTS = path.join(ROOT, 'certs/out');
const CA = path.join(CERTS, 'ca.pem');
const servers = [];
let synth;
let work;

function start(env) {
  const dir = tmpdir('tls-server');
  const base = execFileSync(path.join(ROOT, 'tests/lib/fhir-server.sh'), ['start', dir], {
    encoding: 'utf8',
    env: { ...process.env, FHIR_SERVER_TLS_DIR: CERTS, ...env },
  }).trim().split('\n').pop();
  const srv = { dir, base };
  servers.push(srv);
  return srv;
}

// curl with the options fhir-server.sh wrote for this server (trust or
// insecure for the bad certificates, client certificate for mutual TLS).
function adminJson(srv, method, route) {
  const out = execFileSync('curl', ['-sS', '-K', path.join(srv.dir, 'curlrc'), '-X', method,
    srv.base.replace(/\/fhir\/R4$/, '') + route], { encoding: 'utf8' });
  return JSON.parse(out);
}

function load(srv, extra = []) {
  execFileSync('node', [path.join(ROOT, 'tests/fhir-server/load.js'), '--base', srv.base, '--cacert', CA,
    ...extra, '--quiet', synth.dir], { stdio: ['ignore', 'ignore', 'inherit'] });
}

function sync(srv, args) {
  return runAdapter(['sync', '--base-url', srv.base,
    '--state', path.join(work, `state-${Math.random().toString(16).slice(2)}.db`), ...args]);
}

function pin(pemFile) {
  const pub = execFileSync('openssl', ['x509', '-in', pemFile, '-pubkey', '-noout']);
  const der = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'der'], { input: pub });
  const dgst = execFileSync('openssl', ['dgst', '-sha256', '-binary'], { input: der });
  return 'sha256//' + dgst.toString('base64');
}

before(() => {
  // The certificates script is idempotent: it makes only what is missing.
  execFileSync('bash', [path.join(ROOT, 'certs/make-certs.sh'), CERTS], { stdio: 'ignore' });
  work = tmpdir('tls');
  synth = generateSynth();
});

after(() => {
  for (const s of servers) stopServer(s);
});

test('sync over HTTPS with the development CA', () => {
  const srv = start({});
  assert.match(srv.base, /^https:\/\/127\.0\.0\.1:\d+\/fhir\/R4$/);
  load(srv);
  const r = sync(srv, ['--ca-file', CA]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /failed\s+0\b/);
  assert.match(r.stdout, /created\s+[1-9]/);

  // the same server without the dev CA in the trust store: refused
  const w0 = adminJson(srv, 'GET', '/$test/stats').writes;
  const untrusted = sync(srv, []);
  assert.equal(untrusted.status, 2, untrusted.stderr);
  assert.match(untrusted.stderr, /not signed by a trusted CA/);
  assert.equal(adminJson(srv, 'GET', '/$test/stats').writes, w0);

  // pinned public key: the right pin passes, another one is refused
  const ok = sync(srv, ['--ca-file', CA, '--pinned-public-key', pin(path.join(CERTS, 'server.pem'))]);
  assert.equal(ok.status, 0, ok.stderr);
  const bad = sync(srv, ['--ca-file', CA, '--pinned-public-key', pin(path.join(CERTS, 'rogue-server.pem'))]);
  assert.equal(bad.status, 2, bad.stderr);
  assert.match(bad.stderr, /does not match tls\.pinned_public_key/);
  assert.equal(adminJson(srv, 'GET', '/$test/stats').writes, w0, 'nothing posted after a refusal');
});

for (const [name, why] of [
  ['rogue-server', /not signed by a trusted CA \(unknown CA/],
  ['expired', /certificate has expired/],
  ['wrong-host', /not for this host name \(wrong host\)/],
]) {
  test(`refused: ${name} certificate (clear error, exit 2, nothing posted)`, () => {
    const srv = start({ FHIR_SERVER_TLS_NAME: name });
    const r = sync(srv, ['--ca-file', CA]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /TLS: /);
    assert.match(r.stderr, why);
    const stats = adminJson(srv, 'GET', '/$test/stats');
    assert.equal(stats.writes, 0, 'nothing posted');
    const probes = (stats.requests.GET || {}).metadata || 0; // fhir-server.sh's start-up probe
    assert.equal(stats.total, probes, 'no request of the adapter got through');
    if (name === 'rogue-server') {
      // turning verification off takes an explicit option and is logged loudly
      const insecure = sync(srv, ['--tls-insecure']);
      assert.equal(insecure.status, 0, insecure.stderr);
      assert.match(insecure.stderr, /warn .*VERIFICATION ARE DISABLED/);
    }
  });
}

test('mutual TLS: accepted with the client certificate, refused without it', () => {
  const srv = start({ FHIR_SERVER_MTLS: '1' });
  load(srv, ['--cert', path.join(CERTS, 'client.pem'), '--key', path.join(CERTS, 'client.key')]);
  const w0 = adminJson(srv, 'GET', '/$test/stats').writes;
  const without = sync(srv, ['--ca-file', CA]);
  assert.equal(without.status, 2, without.stderr);
  assert.match(without.stderr, /requires a client certificate/);
  assert.equal(adminJson(srv, 'GET', '/$test/stats').writes, w0, 'nothing posted');
  const r = sync(srv, ['--ca-file', CA, '--client-cert', path.join(CERTS, 'client.pem'),
    '--client-key', path.join(CERTS, 'client.key')]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /failed\s+0\b/);
  assert.match(r.stdout, /created\s+[1-9]/);
});

test('a TLS client key readable by others is refused at start', () => {
  const key = path.join(work, 'client.key');
  fs.copyFileSync(path.join(CERTS, 'client.key'), key);
  fs.chmodSync(key, 0o644);
  const r = runAdapter(['sync', '--base-url', 'https://127.0.0.1:9/fhir', '--state', path.join(work, 'x.db'),
    '--client-cert', path.join(CERTS, 'client.pem'), '--client-key', key]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /tls\.client_key: .* readable by others/);
  const n = runAdapter(['-n', '--base-url', 'https://127.0.0.1:9/fhir',
    '--client-cert', path.join(CERTS, 'client.pem'), '--client-key', key]);
  assert.equal(n.status, 2, n.stdout);
  assert.match(n.stderr, /tls\.client_key: .* readable by others/);
});
