'use strict';
// HTTPS and mutual TLS, with a throw-away CA made by the openssl command
// line (skipped where openssl is missing).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, execFile } = require('node:child_process');
const fs = require('node:fs');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');
const { startServer, patientBundle } = require('../testlib/helpers');

function haveOpenssl() {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

let dir;
let srv;
const f = (name) => path.join(dir, name);

function makeCerts() {
  const ssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=fhir-test-ca', '-days', '1',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  for (const [name, ext] of [
    ['server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'],
    ['client', 'extendedKeyUsage=clientAuth\n'],
  ]) {
    fs.writeFileSync(f(name + '.ext'), ext);
    ssl('req', ...ec, '-keyout', name + '.key', '-out', name + '.csr', '-subj', '/CN=' + name);
    ssl('x509', '-req', '-in', name + '.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
      '-out', name + '.pem', '-days', '1', '-extfile', name + '.ext');
  }
}

function get(url, options) {
  return new Promise((resolve, reject) => {
    https
      .get(url, options, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(text) }));
      })
      .on('error', reject);
  });
}

const skip = haveOpenssl() ? false : 'openssl not installed';

before(async () => {
  if (skip) {
    return;
  }
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fhir-tls-'));
  makeCerts();
  srv = await startServer(
    ['--tls-cert', f('server.pem'), '--tls-key', f('server.key'), '--tls-client-ca', f('ca.pem')],
    { scheme: 'https' }
  );
});
after(async () => {
  if (srv) {
    await srv.stop();
  }
  if (dir) {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('serves HTTPS and requires a client certificate from the CA', { skip }, async () => {
  assert.match(srv.base, /^https:\/\/127\.0\.0\.1:\d+\/fhir\/R4$/);
  const tls = { ca: fs.readFileSync(f('ca.pem')), cert: fs.readFileSync(f('client.pem')), key: fs.readFileSync(f('client.key')) };
  const ok = await get(srv.base + '/metadata', tls);
  assert.equal(ok.status, 200);
  assert.equal(ok.body.implementation.url, srv.base);

  await assert.rejects(get(srv.base + '/metadata', { ca: tls.ca }), 'no client certificate: refused');
  await assert.rejects(get(srv.base + '/metadata', { cert: tls.cert, key: tls.key }), 'server certificate not trusted');
});

test('load.js talks to an https base with --cacert/--cert/--key', { skip }, async () => {
  const file = f('bundle.json');
  fs.writeFileSync(file, JSON.stringify(patientBundle('tls-1', 1, 1)));
  const run = (args) =>
    new Promise((resolve) => {
      execFile(process.execPath, [path.join(__dirname, '..', 'load.js'), ...args], (err, stdout, stderr) =>
        resolve({ code: err ? err.code : 0, stderr })
      );
    });
  const good = await run(['--base', srv.base, '--cacert', f('ca.pem'), '--cert', f('client.pem'), '--key', f('client.key'), file]);
  assert.equal(good.code, 0, good.stderr);
  const noClient = await run(['--base', srv.base, '--cacert', f('ca.pem'), file]);
  assert.equal(noClient.code, 1);
});
