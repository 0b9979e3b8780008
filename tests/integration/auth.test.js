// SMART Backend Services against real peers on loopback: the test FHIR
// server in bearer mode (tokens verified against the JWKS of the OAuth
// server) and tests/oauth-server (oidc-provider: client credentials,
// private_key_jwt RS384/ES384, resource indicators -> JWT access tokens).
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const {
  ROOT, BIN, tmpdir, startServer, stopServer, fhir, searchAll, runAdapter, generateSynth, loadSynth,
} = require('./helpers');

const OAUTH = path.join(ROOT, 'tests/oauth-server/server.mjs');

let srv;
let work;
let synth;
let keys;
let patients; // [{id, names: [...]}]
const oauths = []; // the OAuth servers that came up
const children = []; // every OAuth server process started

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
  // Killed at the end whether or not it came up; listed in `oauths` (which
  // later tests walk) only once it is up, so that one slow start fails only
  // the test that started it.  The wait is long: under the ASan stage of CI
  // a start has taken more than 30 s.
  children.push(child);
  for (let i = 0; i < 1800 && !fs.existsSync(path.join(dir, 'port')); i++) {
    if (child.exitCode !== null) break;
    await sleep(50);
  }
  assert.ok(fs.existsSync(path.join(dir, 'port')),
    `oauth server started (exit ${child.exitCode}): ${fs.readFileSync(path.join(dir, 'log'), 'utf8')}`);
  o.url = `http://127.0.0.1:${fs.readFileSync(path.join(dir, 'port'), 'utf8').trim()}`;
  oauths.push(o);
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
  const s = await (await req(admin('/$test/stats'))).json();
  return s.writes;
}

// Reload the fixtures with the auth requirement off, then require tokens of `issuer`.
async function reload(issuer) {
  await authConfig({ issuer: null });
  execFileSync(path.join(ROOT, 'tests/lib/fhir-server.sh'), ['reset', srv.dir]);
  loadSynth(srv.base, synth.dir);
  await authConfig({ issuer, rejectAll: false, resetCounters: true });
}

function sync(clientArgs, opts = {}) {
  const state = path.join(work, `state-${Math.random().toString(16).slice(2)}.db`);
  return runAdapter(['sync', '--base-url', srv.base, '--state', state, ...clientArgs], opts);
}

function smart(client, keyDir) {
  return ['--auth', 'smart', '--client-id', client, '--private-key', path.join(keyDir, 'private-key.pem')];
}

before(async () => {
  work = tmpdir('auth');
  keys = {};
  for (const alg of ['RS384', 'ES384']) {
    keys[alg] = path.join(work, alg);
    execFileSync(BIN, ['keygen', '--alg', alg, '--out', keys[alg]], { stdio: 'ignore' });
  }
  fs.writeFileSync(path.join(work, 'secret'), 'not-a-real-secret-7f3a9\n', { mode: 0o600 });
  srv = startServer();
  synth = generateSynth();
  loadSynth(srv.base, synth.dir);
  patients = (await searchAll(srv.base, 'Patient?_count=100')).map((p) => ({
    id: p.id,
    names: (p.name || []).flatMap((n) => [n.family, ...(n.given || [])]).filter((s) => s && s.length >= 4),
  }));
  assert.ok(patients.length >= 10, 'fixtures loaded');
  const main = await startOauth([
    '--resource', srv.base,
    '--client', `rs-client=${keys.RS384}/jwks.json`,
    '--client', `es-client=${keys.ES384}/jwks.json`,
    '--secret-client', `secret-client=${path.join(work, 'secret')}`,
  ]);
  await authConfig({ issuer: main.url });
});

after(() => {
  for (const c of children) c.kill('SIGTERM');
  stopServer(srv);
});

test('keygen writes a 0600 key and a JWKS, and never overwrites', () => {
  const st = fs.statSync(path.join(keys.ES384, 'private-key.pem'));
  assert.equal(st.mode & 0o777, 0o600);
  const jwks = JSON.parse(fs.readFileSync(path.join(keys.ES384, 'jwks.json'), 'utf8'));
  assert.equal(jwks.keys[0].alg, 'ES384');
  assert.equal(jwks.keys[0].d, undefined, 'public key only');
  const r = runAdapter(['keygen', '--alg', 'ES384', '--out', keys.ES384]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /never overwritten/);
});

test('a private key readable by group or others is refused at start', () => {
  const dir = path.join(work, 'loose');
  execFileSync(BIN, ['keygen', '--alg', 'RS384', '--out', dir], { stdio: 'ignore' });
  fs.chmodSync(path.join(dir, 'private-key.pem'), 0o644);
  const r = sync(smart('rs-client', dir));
  assert.equal(r.status, 2);
  assert.match(r.stderr, /auth\.private_key: .* group or others/);
  // and `-n` says so too, without a connection
  const n = runAdapter(['-n', '--base-url', srv.base, ...smart('rs-client', dir)]);
  assert.equal(n.status, 2, n.stdout);
  assert.match(n.stderr, /auth\.private_key: .* group or others/);
  fs.chmodSync(path.join(dir, 'private-key.pem'), 0o600);
  const ok = runAdapter(['-n', '--base-url', srv.base, ...smart('rs-client', dir)]);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /configuration OK/);
});

test('secrets are refused on the command line', () => {
  const r = runAdapter(['sync', '--base-url', srv.base, '--client-secret', 'x']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /never accepted on the command line/);
});

test('sync succeeds with an RS384 client assertion (discovery, JWT access token)', async () => {
  const o = oauths[0];
  const before = (await oauthStats(o)).assertions.length;
  const r = sync(smart('rs-client', keys.RS384));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /failed\s+0\b/);
  assert.match(r.stdout, /created\s+[1-9]/);
  assert.match(r.stderr, /SMART configuration: token endpoint/);
  assert.match(r.stderr, /granted scope: system\/Patient\.rs/);
  const s = await oauthStats(o);
  const mine = s.assertions.slice(before);
  assert.equal(mine.length, 1, 'one token for the whole sync');
  const kid = JSON.parse(fs.readFileSync(path.join(keys.RS384, 'jwks.json'), 'utf8')).keys[0].kid;
  assert.equal(mine[0].alg, 'RS384');
  assert.equal(mine[0].kid, kid);
  assert.equal(mine[0].typ, 'JWT');
  assert.equal(mine[0].iss, 'rs-client');
  assert.equal(mine[0].sub, 'rs-client');
  assert.equal(mine[0].aud, `${o.url}/token`);
  assert.ok(mine[0].exp - mine[0].iat <= 300);
  const rep = await authReport();
  assert.ok(rep.accepted > 0);
  assert.equal(rep.refused, 0, 'no request without a valid token');
});

test('sync succeeds with an ES384 client assertion', async () => {
  await reload(oauths[0].url);
  const before = (await oauthStats(oauths[0])).assertions.length;
  const r = sync(smart('es-client', keys.ES384));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /failed\s+0\b/);
  assert.match(r.stdout, /created\s+[1-9]/);
  const mine = (await oauthStats(oauths[0])).assertions.slice(before);
  assert.equal(mine.length, 1);
  assert.equal(mine[0].alg, 'ES384');
  assert.equal((await authReport()).refused, 0);
});

test('client-secret (basic) authentication', async () => {
  const r = sync(['--auth', 'client-secret', '--client-id', 'secret-client'], {
    env: { DNMBC_CLIENT_SECRET: 'not-a-real-secret-7f3a9' },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /failed\s+0\b/);
  const bad = sync(['--auth', 'client-secret', '--client-id', 'secret-client'], {
    env: { DNMBC_CLIENT_SECRET: 'wrong' },
  });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /token endpoint .*HTTP 401: invalid_client/);
});

test('a token that expires during a long sync is renewed without failing a patient', async () => {
  const short = await startOauth([
    '--resource', srv.base, '--token-ttl', '2',
    '--client', `rs-client=${keys.RS384}/jwks.json`,
  ]);
  await reload(short.url);
  // Slow Observation searches make the sync outlast several token lifetimes.
  const fault = await req(admin('/$test/fault'), {
    method: 'POST',
    body: JSON.stringify({ method: 'GET', resourceType: 'Observation', delayMs: 1000, count: 5 }),
  });
  assert.equal(fault.status, 200);
  const r = sync(smart('rs-client', keys.RS384), { env: { DNMBC_LOG_LEVEL: 'info' } });
  await req(admin('/$test/fault'), { method: 'DELETE' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /failed\s+0\b/);
  const s = await oauthStats(short);
  assert.ok(s.tokensIssued >= 2, `token renewed (${s.tokensIssued} issued)`);
  assert.equal(new Set(s.assertions.map((a) => a.jti)).size, s.assertions.length, 'every assertion has its own jti');
  await authConfig({ issuer: oauths[0].url });
});

test('a 401 to a valid-looking token triggers exactly one renewal and the request is retried', async () => {
  await reload(oauths[0].url);
  const before = (await oauthStats(oauths[0])).tokensIssued;
  await req(admin('/$test/fault'), {
    method: 'POST',
    // the cohort search (POST Condition/_search), a top-level request
    body: JSON.stringify({ method: 'POST', resourceType: 'Condition', status: 401, count: 1, diagnostics: 'token revoked' }),
  });
  const r = sync(smart('es-client', keys.ES384));
  await req(admin('/$test/fault'), { method: 'DELETE' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /failed\s+0\b/);
  assert.match(r.stderr, /refused the access token \(HTTP 401\): renewing/);
  assert.equal((await oauthStats(oauths[0])).tokensIssued - before, 2);
});

test('a revoked client: one renewal, then a clear error, exit 2, nothing posted', async () => {
  await reload(oauths[0].url);
  await authConfig({ rejectAll: true });
  const before = (await oauthStats(oauths[0])).tokensIssued;
  const w0 = await writes();
  const r = sync(smart('rs-client', keys.RS384));
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /HTTP 401 again after renewing the access token/);
  assert.equal((await oauthStats(oauths[0])).tokensIssued - before, 2, 'one renewal, no loop');
  assert.equal(await writes(), w0, 'nothing posted');
  await authConfig({ rejectAll: false });
  // Tokens revoked at the resource server: a new sync gets a fresh token.
  await authConfig({ revokeSeen: true });
  const again = sync(smart('rs-client', keys.RS384));
  assert.equal(again.status, 0, again.stderr);
});

test('v2 scopes refused with invalid_scope: falls back to v1 scopes', async () => {
  const v1 = await startOauth([
    '--resource', srv.base, '--scopes', 'v1',
    '--client', `es-client=${keys.ES384}/jwks.json`,
  ]);
  await reload(v1.url);
  const r = sync(smart('es-client', keys.ES384));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /refused SMART v2 scopes \(invalid_scope\); asking for v1 scopes/);
  assert.match(r.stderr, /granted scope: system\/Patient\.read/);
  const s = await oauthStats(v1);
  assert.equal(s.errors.filter((e) => e.error === 'invalid_scope').length, 1);
  assert.equal(s.tokensIssued, 1);
  await authConfig({ issuer: oauths[0].url });
});

test('no assertion jti is ever sent twice (server-side record)', async () => {
  for (const o of oauths) {
    const s = await oauthStats(o);
    const jtis = s.assertions.map((a) => a.jti);
    assert.ok(jtis.length > 0);
    assert.equal(new Set(jtis).size, jtis.length, `unique jtis at ${o.url}`);
    assert.equal(s.errors.filter((e) => /only be used once/.test(e.description || '')).length, 0);
  }
});

test('logs of an authenticated sync hold no token, key, assertion or patient data', async () => {
  await reload(oauths[0].url);
  const keyPem = fs.readFileSync(path.join(keys.RS384, 'private-key.pem'), 'utf8');
  const keyLines = keyPem.split('\n').filter((l) => l && !l.startsWith('-----'));
  const checks = async (r, level) => {
    const log = r.stderr + r.stdout;
    const rep = await authReport();
    const st = await oauthStats(oauths[0]);
    assert.ok(rep.tokens.length > 0);
    for (const t of rep.tokens) {
      assert.ok(!log.includes(t), `${level}: access token in the log`);
      assert.ok(!log.includes(t.split('.')[2]), `${level}: token signature in the log`);
    }
    for (const a of st.rawAssertions) assert.ok(!log.includes(a.split('.')[2]), `${level}: client assertion in the log`);
    for (const l of keyLines) assert.ok(!log.includes(l), `${level}: private key in the log`);
    assert.ok(!log.includes('not-a-real-secret'), `${level}: client secret in the log`);
    for (const p of patients) for (const n of p.names) assert.ok(!log.includes(n), `${level}: patient name in the log`);
    return log;
  };
  const r = sync(smart('rs-client', keys.RS384));
  assert.equal(r.status, 0, r.stderr);
  const log = await checks(r, 'default level');
  for (const p of patients) assert.ok(!log.includes(p.id), 'default level: patient id in the log');
  await reload(oauths[0].url);
  const d = sync(smart('rs-client', keys.RS384), { env: { DNMBC_LOG_LEVEL: 'debug' } });
  assert.equal(d.status, 0, d.stderr);
  assert.match(d.stderr, / debug /, 'debug lines were written');
  await checks(d, 'debug level');
  const s = sync(['--auth', 'client-secret', '--client-id', 'secret-client'], {
    env: { DNMBC_CLIENT_SECRET: 'not-a-real-secret-7f3a9', DNMBC_LOG_LEVEL: 'debug' },
  });
  assert.equal(s.status, 0, s.stderr);
  await checks(s, 'debug level, client secret');
});

test('credentials never go to another origin: a next link elsewhere is refused, or followed without the token', async () => {
  await reload(oauths[0].url);
  // The server writes its next links with 127.0.0.1; reached as localhost,
  // they point to another origin (same server, so a token would be accepted).
  const other = srv.base.replace('127.0.0.1', 'localhost');
  const cfg = path.join(work, 'paged.json');
  fs.writeFileSync(cfg, JSON.stringify({ fhir: { page_size: 2 } }));
  const args = ['sync', '--config', cfg, '--base-url', other, ...smart('rs-client', keys.RS384)];
  const refused = runAdapter([...args, '--state', path.join(work, 'o1.db')]);
  assert.notEqual(refused.status, 0);
  assert.match(refused.stderr, /next link on another origin \(refused/);
  const before = await authReport();
  const followed = runAdapter([...args, '--state', path.join(work, 'o2.db'), '--follow-other-origins']);
  assert.notEqual(followed.status, 0);
  assert.match(followed.stderr, /following a next link on another origin, without credentials/);
  assert.match(followed.stderr, /HTTP 401/);
  const after = await authReport();
  assert.ok(after.accepted > before.accepted, 'requests to the base carried the token');
  assert.ok(after.refused > before.refused, 'the request to the other origin carried none');
  assert.doesNotMatch(followed.stderr, /renewing/, 'no renewal for a request that carried no token');
});
