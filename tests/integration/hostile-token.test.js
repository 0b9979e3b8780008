// A hostile number from the token endpoint: "expires_in":9223372036854775000
// (an integer that JSON allows and int64 holds) made "now + expires_in"
// overflow a signed integer: undefined behaviour, which in practice wrapped
// the renewal time into the past so that every request fetched a new token.
// The lifetime is now capped before the addition.  The real OAuth server
// (client-secret) with the fault proxy's --expires-in rewriting its answer,
// and the real test FHIR server checking the tokens.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const h = require('./helpers');
const R = require('./robust-lib');

let env;
let oauth;
let proxy;
let work;

function admin(route) {
  return env.srv.base.replace(/\/fhir\/R4$/, '') + route;
}

async function startOauth(args) {
  const dir = h.tmpdir('oauth');
  const child = spawn('node', [path.join(h.ROOT, 'tests/oauth-server/server.mjs'), '--port-file',
    path.join(dir, 'port'), ...args], { stdio: ['ignore', 'ignore', 'ignore'] });
  // bounded wait for the port file (not a timing assertion)
  for (let i = 0; i < 1800 && !fs.existsSync(path.join(dir, 'port')); i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, url: `http://127.0.0.1:${fs.readFileSync(path.join(dir, 'port'), 'utf8').trim()}` };
}

function startProxy(target, expiresIn) {
  return new Promise((resolve, reject) => {
    const child = spawn('node', [path.join(h.ROOT, 'tests/fault-proxy/proxy.js'),
      '--target', target, '--p5xx', '0', '--p429', '0', '--pdrop', '0', '--ptrunc', '0',
      '--pdelay', '0', '--expires-in', expiresIn], { stdio: ['ignore', 'pipe', 'inherit'] });
    readline.createInterface({ input: child.stdout }).once('line', (line) => {
      const m = /^listening (\S+)/.exec(line);
      if (m) resolve({ child, url: m[1] }); else reject(new Error(line));
    });
    child.on('error', reject);
  });
}

test.before(async () => {
  env = R.loadRandom(4, '9');
  work = h.tmpdir('hostile-token');
  fs.writeFileSync(path.join(work, 'secret'), 'not-a-real-secret-5c1e\n', { mode: 0o600 });
  oauth = await startOauth(['--resource', env.srv.base,
    '--secret-client', `secret-client=${path.join(work, 'secret')}`]);
  proxy = await startProxy(oauth.url, '9223372036854775000');
  const r = await fetch(admin('/$test/auth'), { method: 'POST',
    body: JSON.stringify({ issuer: oauth.url, rejectAll: false, resetCounters: true }) });
  assert.equal(r.status, 200);
});

test.after(() => {
  if (proxy) proxy.child.kill('SIGTERM');
  if (oauth) oauth.child.kill('SIGTERM');
  h.stopServer(env && env.srv);
});

test('expires_in near INT64_MAX: one token for the whole sync', async () => {
  const r = h.runAdapter(['sync', '--base-url', env.srv.base, '--state', path.join(work, 's.db'),
    '--auth', 'client-secret', '--client-id', 'secret-client', '--token-url',
    `${proxy.url}/token`, '--concurrency', '1'],
  { env: { DNMBC_CLIENT_SECRET: 'not-a-real-secret-5c1e', DNMBC_LOG_LEVEL: 'info' } });
  assert.equal(r.status, 0, r.stderr);
  const s = await (await fetch(`${oauth.url}/$test/stats`)).json();
  assert.equal(s.tokensIssued, 1, `${s.tokensIssued} tokens issued`);
});
