// Least privilege under SMART: the test FHIR server enforcing SMART v2
// scopes per resource type and interaction (POST /$test/auth
// {enforceScopes: true}: each request and each Bundle entry is judged on the
// `scope` claim of its token), tests/oauth-server issuing tokens with the
// scopes asked for (less any --withhold). The default scope list must cover
// every request of a full sync and nothing more; a missing scope is a clear
// error naming it; N workers refused together renew the token once; SMART
// discovery checks `capabilities`.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const {
  ROOT, BIN, tmpdir, startServer, stopServer, searchAll, runAdapter, generateSynth, loadSynth,
} = require('./helpers');

const OAUTH = path.join(ROOT, 'tests/oauth-server/server.mjs');

let srv;
let work;
let synth;
let key;
const oauths = [];

// fetch for the test-control endpoints, once more when a kept-alive socket
// was closed by the server while a long sync ran (a stale socket, not a
// test failure).
async function req(url, init) {
  try {
    return await fetch(url, init);
  } catch (err) {
    if (!(err instanceof TypeError)) throw err;
    return fetch(url, init);
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function startOauth(args) {
  const dir = tmpdir('oauth');
  const child = spawn('node', [OAUTH, '--port-file', path.join(dir, 'port'), ...args], {
    stdio: ['ignore', 'ignore', fs.openSync(path.join(dir, 'log'), 'a')],
  });
  const o = { child, dir };
  oauths.push(o);
  for (let i = 0; i < 1800 && !fs.existsSync(path.join(dir, 'port')); i++) {
    if (child.exitCode !== null) break;
    await sleep(50);
  }
  assert.ok(fs.existsSync(path.join(dir, 'port')), fs.readFileSync(path.join(dir, 'log'), 'utf8'));
  o.url = `http://127.0.0.1:${fs.readFileSync(path.join(dir, 'port'), 'utf8').trim()}`;
  return o;
}

async function oauthStats(o) {
  return (await req(`${o.url}/$test/stats`)).json();
}

function admin(route) {
  return srv.base.replace(/\/fhir\/R4$/, '') + route;
}

async function authConfig(body) {
  const r = await req(admin('/$test/auth'), { method: 'POST', body: JSON.stringify(body) });
  assert.equal(r.status, 200);
  return r.json();
}

async function authReport() {
  return (await req(admin('/$test/auth'))).json();
}

async function writes() {
  return (await (await req(admin('/$test/stats'))).json()).writes;
}

// Empty server with the fixtures, tokens of `o` required, scopes enforced.
async function reload(o, extra = {}) {
  await authConfig({ issuer: null });
  execFileSync(path.join(ROOT, 'tests/lib/fhir-server.sh'), ['reset', srv.dir]);
  loadSynth(srv.base, synth.dir);
  await authConfig({ issuer: o.url, enforceScopes: true, rejectAll: false, capabilities: null, resetCounters: true, ...extra });
}

function sync(extra = [], opts = {}) {
  const state = path.join(work, `state-${Math.random().toString(16).slice(2)}.db`);
  return runAdapter(['sync', '--base-url', srv.base, '--state', state, '--auth', 'smart',
    '--client-id', 'es-client', '--private-key', path.join(key, 'private-key.pem'), ...extra], opts);
}

before(async () => {
  work = tmpdir('scopes');
  key = path.join(work, 'ES384');
  execFileSync(BIN, ['keygen', '--alg', 'ES384', '--out', key], { stdio: 'ignore' });
  srv = startServer();
  synth = generateSynth();
  await startOauth(['--resource', srv.base, '--client', `es-client=${key}/jwks.json`]);
});

after(() => {
  for (const o of oauths) o.child.kill('SIGTERM');
  stopServer(srv);
});

test('a full sync with the default scopes passes a server that enforces them: zero 403s, no Device', async () => {
  await reload(oauths[0]);
  const r = sync(['--concurrency', '4']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /failed\s+0\b/);
  assert.match(r.stdout, /created\s+[1-9]/);
  const rep = await authReport();
  assert.equal(rep.enforceScopes, true);
  assert.deepEqual(rep.forbidden, [], 'no request was refused for want of a scope');
  assert.ok(rep.accepted > 0);
  // the Provenance's author is contained, not a resource of its own
  await authConfig({ issuer: null });
  assert.equal((await searchAll(srv.base, 'Device?_count=100')).length, 0, 'no Device on the server');
  const prov = await searchAll(srv.base, 'Provenance?_count=500');
  assert.ok(prov.length > 0);
  for (const p of prov) {
    assert.equal(p.agent[0].who.reference, '#device');
    assert.equal(p.contained.length, 1);
    assert.equal(p.contained[0].resourceType, 'Device');
  }
  // the scope asked for is exactly the default list
  const asked = (await authReport()).tokens;
  assert.ok(asked.length > 0);
  const claims = JSON.parse(Buffer.from(asked[asked.length - 1].split('.')[1], 'base64url').toString());
  assert.deepEqual(claims.scope.split(' ').sort(), [
    'system/CarePlan.cus', 'system/Condition.rs', 'system/Observation.rs', 'system/Patient.rs',
    'system/Provenance.rus', 'system/RiskAssessment.cus',
  ]);
});

test('the one-by-one write path also needs no more than the default scopes', async () => {
  await reload(oauths[0]);
  const cfg = path.join(work, 'no-tx.json');
  fs.writeFileSync(cfg, JSON.stringify({ fhir: { transaction_write: false, batch_fetch: false } }));
  const r = sync(['--config', cfg, '--concurrency', '2'], { env: { DNMBC_LOG_LEVEL: 'info' } });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /three requests \(fhir\.transaction_write off\)/);
  assert.match(r.stdout, /failed\s+0\b/);
  assert.match(r.stdout, /created\s+[1-9]/);
  assert.deepEqual((await authReport()).forbidden, []);
});

test('a token granting fewer scopes than asked is a clear error naming the scope; nothing written', async () => {
  const stingy = await startOauth(['--resource', srv.base, '--client', `es-client=${key}/jwks.json`,
    '--withhold', 'system/Provenance.rus']);
  await reload(stingy);
  const w0 = await writes();
  const r = sync();
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /granted fewer scopes than asked: missing system\/Provenance\.rus/);
  assert.equal(await writes(), w0, 'nothing written');
});

test('a 403 for a missing scope names the scope the request needs', async () => {
  await reload(oauths[0]);
  // an operator's auth.scope without update on CarePlan
  const scope = 'system/Patient.rs system/Condition.rs system/Observation.rs system/CarePlan.cs ' +
    'system/RiskAssessment.cus system/Provenance.rus';
  const r = sync(['--scope', scope], { env: { DNMBC_LOG_LEVEL: 'info' } });
  assert.notEqual(r.status, 0);
  const rep = await authReport();
  assert.ok(rep.forbidden.length > 0, 'the server refused for want of a scope');
  assert.ok(rep.forbidden.every((f) => f.missing === 'system/CarePlan.u'), JSON.stringify(rep.forbidden));
  assert.match(r.stderr, /lacks a scope this needs: [^;]*system\/CarePlan\.cu/);
});

test('workers refused together renew the token once (single flight)', async () => {
  const o = oauths[0];
  await reload(o);
  // after the first requests every token is revoked, and the first four
  // requests refused for it are answered together: four workers hold a
  // refused token at the same time
  await authConfig({ revokeAfter: 12, refusalBarrier: 4 });
  const before = (await oauthStats(o)).tokensIssued;
  const r = sync(['--concurrency', '4'], { env: { DNMBC_LOG_LEVEL: 'info' } });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /failed\s+0\b/);
  const rep = await authReport();
  assert.ok(rep.refused >= 4, `four requests met the revoked token (${rep.refused} refused)`);
  assert.equal((await oauthStats(o)).tokensIssued - before, 2, 'one token, one renewal');
});

test('SMART discovery checks capabilities', async () => {
  await reload(oauths[0], { capabilities: ['permission-v2', 'client-confidential-symmetric'] });
  const w0 = await writes();
  const r = sync();
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /capabilities lacks client-confidential-asymmetric/);
  assert.equal(await writes(), w0);
  await authConfig({ capabilities: ['permission-v2', 'client-confidential-asymmetric'] });
  const secret = path.join(work, 'secret');
  fs.writeFileSync(secret, 'x-secret-1\n', { mode: 0o600 });
  const s = runAdapter(['sync', '--base-url', srv.base, '--state', path.join(work, 'cs.db'),
    '--auth', 'client-secret', '--client-id', 'nobody'], { env: { DNMBC_CLIENT_SECRET: 'x-secret-1' } });
  assert.equal(s.status, 2, s.stderr);
  assert.match(s.stderr, /capabilities lacks client-confidential-symmetric/);
  await authConfig({ capabilities: [] });
  const none = sync();
  assert.equal(none.status, 2);
  assert.match(none.stderr, /capabilities lacks client-confidential-asymmetric/);
});

test('-n refuses bearer auth to a non-loopback http:// base, as sync does', () => {
  for (const base of ['http://fhir.example.org/fhir', 'http://127.0.0.1:1@evil.example/fhir',
    'http://127.0.0.1.evil.example/fhir']) {
    const args = ['--base-url', base, '--auth', 'bearer'];
    const env = { env: { DNMBC_BEARER_TOKEN: 'not-a-real-token' } };
    const n = runAdapter(['-n', ...args], env);
    assert.equal(n.status, 2, `-n ${base}: ${n.stdout}${n.stderr}`);
    assert.match(n.stderr, /needs an https:\/\/ fhir\.base_url/);
    const s = runAdapter(['sync', ...args, '--state', path.join(work, 'n.db')], env);
    assert.equal(s.status, 2, `sync ${base}: ${s.stderr}`);
    assert.match(s.stderr, /needs an https:\/\/ fhir\.base_url/);
  }
  const ok = runAdapter(['-n', '--base-url', 'http://127.0.0.1:9/fhir', '--auth', 'bearer'],
    { env: { DNMBC_BEARER_TOKEN: 'not-a-real-token' } });
  assert.equal(ok.status, 0, ok.stderr);
});

test('credentials never go to a token URL whose loopback look is only a prefix', async () => {
  await reload(oauths[0]);
  // libcurl would connect to evil.example: user "127.0.0.1", password "x"
  for (const url of ['http://127.0.0.1:x@evil.example/token', 'http://127.0.0.1.evil.example/token']) {
    const r = sync(['--token-url', url]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /token endpoint \S+ (carries user information|is not https)/, r.stderr);
  }
});

test('a daemon cycle with audit.enabled asks for AuditEvent create too, and needs nothing more', async () => {
  await reload(oauths[0]);
  const cfg = path.join(work, 'audit.json');
  fs.writeFileSync(cfg, JSON.stringify({ audit: { enabled: true } }));
  const r = runAdapter(['run', '--once', '--config', cfg, '--base-url', srv.base, '--listen', '127.0.0.1:0',
    '--state', path.join(work, 'run.db'), '--auth', 'smart', '--client-id', 'es-client',
    '--private-key', path.join(key, 'private-key.pem')], { env: { DNMBC_LOG_LEVEL: 'info' } });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /granted scope: [^\n]*system\/AuditEvent\.c/);
  assert.doesNotMatch(r.stderr, /AuditEvent not written/);
  assert.match(r.stderr, /cycle done: \d+ patient\(s\), [1-9]\d* created, \d+ updated, \d+ unchanged, \d+ revoked, 0 failed/);
  assert.deepEqual((await authReport()).forbidden, []);
  await authConfig({ issuer: null });
  const audits = await searchAll(srv.base, 'AuditEvent?_count=10');
  assert.equal(audits.length, 1);
  assert.equal(audits[0].agent[0].who.identifier.value, 'dnmbc-adapter');
});
