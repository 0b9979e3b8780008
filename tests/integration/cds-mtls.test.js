// Mutual TLS for $apply: with server.tls_client_ca, an integration engine
// that presents a client certificate signed by that CA is trusted without a
// Bearer JWT; no certificate, one of another CA, or an expired one gets 401.
// The CDS Hooks endpoints still want their JWT (the spec's way).  The
// certificates are made at test time by certs/make-certs.sh (development CA).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const https = require('node:https');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { ROOT, tmpdir, runAdapter } = require('./helpers');
const L = require('./cds-lib');

const APPLY = '/fhir/PlanDefinition/dnmbc-local-therapy/$apply';
const SERVICE = '/cds-services/dnmbc-local-therapy';
const ISS = 'https://ehr.test.example';
const FIX = path.join(ROOT, 'tests/fixtures/evaluate/curative-palliative-skin.json');

let dir, certs, keys, serve;

function pem(name) { return fs.readFileSync(path.join(certs, name)); }

// One request over TLS with the development CA trusted, presenting the
// given client certificate (or none); resolves { status, json } or
// { error } when the handshake itself is refused.
function request(p, { cert, key, token, body } = {}) {
  const u = new URL(serve.base);
  const data = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve) => {
    const headers = { 'content-type': 'application/fhir+json' };
    if (token) headers.authorization = `Bearer ${token}`;
    if (data) headers['content-length'] = Buffer.byteLength(data);
    const req = https.request({
      host: u.hostname, port: u.port, path: p, method: data ? 'POST' : 'GET', headers,
      ca: pem('ca.pem'), cert: cert && pem(cert), key: key && pem(key), agent: false,
    }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch { json = null; }
        resolve({ status: res.statusCode, json, text });
      });
    });
    req.on('error', (e) => resolve({ status: 0, error: e.message }));
    req.end(data);
  });
}

function applyBody() {
  const rs = JSON.parse(fs.readFileSync(FIX, 'utf8')).entry.map((e) => e.resource);
  return { resourceType: 'Parameters', parameter: [{ name: 'data', resource: { resourceType: 'Bundle', type: 'collection', entry: rs.map((resource) => ({ resource })) } }] };
}

test.before(async () => {
  dir = tmpdir('cds-mtls');
  certs = path.join(dir, 'certs');
  execFileSync('bash', [path.join(ROOT, 'certs/make-certs.sh'), certs], { stdio: 'ignore' });
  keys = await L.makeKeys();
  const jwksFile = path.join(dir, 'jwks.json');
  fs.writeFileSync(jwksFile, JSON.stringify({ keys: [keys.esJwk] }));
  serve = await L.startServe({
    server: {
      public_url: L.PUBLIC_URL,
      tls_cert: path.join(certs, 'server.pem'), tls_key: path.join(certs, 'server.key'),
      tls_client_ca: path.join(certs, 'ca.pem'),
    },
    cds: { clients: [{ iss: ISS, jwks_file: jwksFile }] },
    mappings: { dir: path.join(ROOT, 'mappings') },
    state: { path: path.join(dir, 'state.db') },
  }, dir);
  assert.match(serve.base, /^https:/);
});

test.after(async () => { await L.stopServe(serve); });

test('a client certificate of the configured CA authenticates $apply without a JWT', async () => {
  const r = await request(APPLY, { cert: 'client.pem', key: 'client.key', body: applyBody() });
  assert.equal(r.status, 200, r.text || r.error);
  const f = path.join(dir, 'eval.json');
  fs.writeFileSync(f, JSON.stringify(applyBody().parameter[0].resource));
  const ev = runAdapter(['evaluate', f, '--mappings', path.join(ROOT, 'mappings')]);
  assert.equal(ev.status, 0, ev.stderr);
  assert.deepEqual(L.maskNow(r.json.entry.map((e) => e.resource)), L.maskNow(JSON.parse(ev.stdout).entry.map((e) => e.resource)));
  const md = await request('/fhir/metadata', { cert: 'client.pem', key: 'client.key' });
  assert.equal(md.status, 200, md.text || md.error);
});

test('no certificate and no JWT: 401 with an OperationOutcome', async () => {
  const r = await request(APPLY, { body: applyBody() });
  assert.equal(r.status, 401, r.text || r.error);
  assert.equal(r.json.resourceType, 'OperationOutcome');
});

test('a certificate of another CA, an expired one, or a server certificate of ours, does not authenticate', async () => {
  for (const [cert, key] of [['rogue-server.pem', 'rogue-server.key'], ['expired.pem', 'expired.key'], ['server.pem', 'server.key']]) {
    const r = await request(APPLY, { cert, key, body: applyBody() });
    // refused in the handshake or by the listener: never answered
    assert.ok(r.status === 0 || r.status === 401, `${cert}: ${r.status} ${(r.text || '').slice(0, 200)}`);
    if (r.status === 401) assert.equal(r.json.resourceType, 'OperationOutcome');
  }
});

test('the Bearer JWT still works over TLS; CDS Hooks wants its JWT even with a certificate', async () => {
  const ok = await request(APPLY, { token: await L.sign(keys.es.privateKey, { aud: `${L.PUBLIC_URL}${APPLY}`, iss: ISS }), body: applyBody() });
  assert.equal(ok.status, 200, ok.text || ok.error);
  const hook = await request('/cds-services', { cert: 'client.pem', key: 'client.key' });
  assert.equal(hook.status, 401, hook.text || hook.error);
  const r = await request(SERVICE, { cert: 'client.pem', key: 'client.key', body: {} });
  assert.equal(r.status, 401, r.text || r.error);
  assert.equal(serve.proc.exitCode, null, 'the listener is alive');
});
