// $apply with useServerData reads the configured FHIR server authorised as
// sync is, in every auth.mode: client-secret and smart (client credentials
// at tests/oauth-server, JWT access tokens the test FHIR server verifies),
// bearer, and none.  The answer equals $apply with the same data given.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { ROOT, BIN, tmpdir, startServer, stopServer, fhir } = require('./helpers');
const L = require('./cds-lib');

const OAUTH = path.join(ROOT, 'tests/oauth-server/server.mjs');
const APPLY = '/fhir/PlanDefinition/dnmbc-local-therapy/$apply';
const ISS = 'https://ehr.test.example';
const FIX = path.join(ROOT, 'tests/fixtures/evaluate/curative-palliative-skin.json');

let work, srv, oauth, keys, jwksFile, rs, pid;

async function startOauth(args) {
  const dir = tmpdir('cds-oauth');
  const child = spawn('node', [OAUTH, '--port-file', path.join(dir, 'port'), ...args], {
    stdio: ['ignore', 'ignore', fs.openSync(path.join(dir, 'log'), 'a')],
  });
  for (let i = 0; i < 1800 && !fs.existsSync(path.join(dir, 'port')); i++) {
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(fs.existsSync(path.join(dir, 'port')), `oauth server: ${fs.readFileSync(path.join(dir, 'log'), 'utf8')}`);
  return { child, url: `http://127.0.0.1:${fs.readFileSync(path.join(dir, 'port'), 'utf8').trim()}` };
}

async function authConfig(body) {
  const r = await fetch(srv.base.replace(/\/fhir\/R4$/, '') + '/$test/auth', { method: 'POST', body: JSON.stringify(body) });
  assert.equal(r.status, 200);
  return r.json();
}

async function apply(base, params) {
  return L.call(base, 'POST', APPLY, {
    token: await L.sign(keys.es.privateKey, { aud: `${L.PUBLIC_URL}${APPLY}`, iss: ISS }),
    body: { resourceType: 'Parameters', parameter: params },
  });
}

async function withServe(auth, fn) {
  const dir = tmpdir('cds-auth-serve');
  const s = await L.startServe({
    fhir: { base_url: srv.base },
    auth,
    server: { public_url: L.PUBLIC_URL },
    cds: { clients: [{ iss: ISS, jwks_file: jwksFile }] },
    mappings: { dir: path.join(ROOT, 'mappings') },
    state: { path: path.join(dir, 'state.db') },
  }, dir);
  try {
    await fn(s);
  } finally {
    await L.stopServe(s);
  }
  return s;
}

let expected;

test.before(async () => {
  work = tmpdir('cds-auth');
  keys = await L.makeKeys();
  jwksFile = path.join(work, 'ehr-jwks.json');
  fs.writeFileSync(jwksFile, JSON.stringify({ keys: [keys.esJwk] }));
  fs.writeFileSync(path.join(work, 'secret'), 'cds-secret-4b1e\n', { mode: 0o600 });
  fs.writeFileSync(path.join(work, 'bearer'), 'not-a-valid-token\n', { mode: 0o600 });
  execFileSync(BIN, ['keygen', '--alg', 'ES384', '--out', path.join(work, 'es')], { stdio: 'ignore' });
  srv = startServer();
  rs = JSON.parse(fs.readFileSync(FIX, 'utf8')).entry.map((e) => e.resource);
  pid = rs.find((r) => r.resourceType === 'Patient').id;
  for (const r of rs) {
    const put = await fhir(srv.base, 'PUT', `${r.resourceType}/${r.id}`, r);
    assert.ok(put.status === 200 || put.status === 201, put.text);
  }
  oauth = await startOauth([
    '--resource', srv.base,
    '--client', `es-client=${path.join(work, 'es')}/jwks.json`,
    '--secret-client', `secret-client=${path.join(work, 'secret')}`,
  ]);
  // what $apply answers for the same data given in the request
  await withServe({ mode: 'none' }, async (s) => {
    const r = await apply(s.base, [{ name: 'data', resource: { resourceType: 'Bundle', type: 'collection', entry: rs.map((resource) => ({ resource })) } }]);
    assert.equal(r.status, 200, r.text);
    expected = L.maskNow(r.json.entry.map((e) => e.resource));
  });
});

test.after(async () => {
  if (oauth) oauth.child.kill('SIGTERM');
  if (srv) stopServer(srv);
});

const serverData = () => [{ name: 'subject', valueString: `Patient/${pid}` }, { name: 'useServerData', valueBoolean: true }];

test('auth.mode none: useServerData reads the open server', async () => {
  await authConfig({ issuer: null });
  await withServe({ mode: 'none' }, async (s) => {
    const r = await apply(s.base, serverData());
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(L.maskNow(r.json.entry.map((e) => e.resource)), expected);
  });
});

test('auth.mode client-secret: a token from the OAuth server, the server verifies it', async () => {
  const before = await authConfig({ issuer: oauth.url, resetCounters: true });
  assert.ok(before);
  await withServe({ mode: 'client-secret', client_id: 'secret-client', client_secret_file: path.join(work, 'secret'), token_url: `${oauth.url}/token` }, async (s) => {
    const r = await apply(s.base, serverData());
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(L.maskNow(r.json.entry.map((e) => e.resource)), expected);
    // a second request takes the cached token
    const again = await apply(s.base, serverData());
    assert.equal(again.status, 200, again.text);
  });
  const rep = await (await fetch(srv.base.replace(/\/fhir\/R4$/, '') + '/$test/auth')).json();
  assert.ok(rep.accepted > 0, JSON.stringify(rep));
});

test('auth.mode smart: private_key_jwt client credentials', async () => {
  await authConfig({ issuer: oauth.url });
  await withServe({ mode: 'smart', client_id: 'es-client', private_key: path.join(work, 'es', 'private-key.pem'), token_url: `${oauth.url}/token` }, async (s) => {
    const r = await apply(s.base, serverData());
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(L.maskNow(r.json.entry.map((e) => e.resource)), expected);
  });
});

test('auth.mode bearer: the token is sent; the server refusing it is a 503 OperationOutcome', async () => {
  await authConfig({ issuer: oauth.url });
  await withServe({ mode: 'bearer', bearer_token_file: path.join(work, 'bearer') }, async (s) => {
    const r = await apply(s.base, serverData());
    assert.equal(r.status, 503, r.text);
    assert.equal(r.json.resourceType, 'OperationOutcome');
    assert.doesNotMatch(r.text, /not-a-valid-token/);
  });
  await authConfig({ issuer: null });
});
