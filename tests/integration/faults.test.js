// Issue #5, done means 2: a fault-injecting proxy between the adapter and the
// test FHIR server returns 10% 5xx, 5% 429 with Retry-After (seconds and
// HTTP date), drops connections, truncates bodies and delays responses; the
// sync still completes every patient, with zero crashes, and the retries the
// adapter logs match the faults the proxy injected, one for one.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const h = require('./helpers');
const R = require('./robust-lib');

const COUNT = 40;
let env;
let proxy;
let proxyBase;

function startProxy(target) {
  return new Promise((resolve, reject) => {
    const child = spawn('node', [path.join(h.ROOT, 'tests/fault-proxy/proxy.js'),
      '--target', target, '--seed', '7', '--p5xx', '0.10', '--p429', '0.05', '--pdrop', '0.03',
      '--ptrunc', '0.03', '--pdelay', '0.05', '--delay-ms', '200', '--retry-after', '1'],
    { stdio: ['ignore', 'pipe', 'inherit'] });
    readline.createInterface({ input: child.stdout }).once('line', (line) => {
      const m = /^listening (\S+)/.exec(line);
      if (m) resolve({ child, url: m[1] }); else reject(new Error(line));
    });
    child.on('error', reject);
  });
}

test.before(async () => {
  env = R.loadRandom(COUNT, '21');
  const u = new URL(env.srv.base);
  proxy = await startProxy(u.origin);
  proxyBase = proxy.url + u.pathname;
});

test.after(() => {
  if (proxy) proxy.child.kill('SIGTERM');
  h.stopServer(env && env.srv);
});

test('every patient completes through 5xx, 429, drops, truncation and delays; retries match faults', async () => {
  const dir = h.tmpdir('faults');
  const cfg = path.join(dir, 'config.json');
  fs.writeFileSync(cfg, JSON.stringify({
    // preflight off: its one /metadata request is not retried (a fault there
    // would make the counts differ by one); the sync's requests are all
    fhir: { retry_max_attempts: 10, retry_base_ms: 20, retry_max_ms: 200, timeout_s: 20,
      preflight: 'off' },
  }));
  const state = path.join(dir, 'state.db');
  await fetch(`${proxy.url}/$proxy/stats`, { method: 'DELETE' });
  const t0 = Date.now();
  const r = await R.spawnAdapter(['sync', '--config', cfg, '--base-url', proxyBase, '--state',
    state]).done;
  const took = Date.now() - t0;
  assert.equal(r.signal, null, 'no crash');
  assert.equal(r.status, 0, r.stderr.slice(-2000));
  assert.equal(R.summary(r.stdout, 'failed'), 0);
  const stats = await (await fetch(`${proxy.url}/$proxy/stats`)).json();
  const injected = stats.e5xx + stats.e429 + stats.drop + stats.truncate;
  // a fault that may hide an applied transaction is answered by reading the
  // plans back instead of by a retry when they show it was applied
  const applied = (r.stderr.match(/the transaction had been applied/g) || []).length;
  const logged = (r.stderr.match(/; retry \d+ of \d+ in \d+ ms/g) || []).length + applied;
  console.log(`# faults: ${stats.requests} requests, ${stats.e5xx} 5xx, ${stats.e429} 429, ` +
    `${stats.drop} dropped, ${stats.truncate} truncated, ${stats.delay} delayed; ` +
    `${logged - applied} retries logged, ${applied} transactions found applied, ` +
    `${R.summary(r.stdout, 'retries')} in patients; ${took} ms`);
  for (const k of ['e5xx', 'e429', 'drop', 'truncate', 'delay']) assert.ok(stats[k] > 0, `${k} injected`);
  assert.ok(stats.e5xx / stats.requests > 0.05 && stats.e429 / stats.requests > 0.02, 'rates as configured');
  assert.equal(logged, injected, 'one retry per injected fault');
  assert.ok(R.summary(r.stdout, 'retries') <= logged);
  assert.match(r.stderr, /retry \d+ of \d+ in 1\d\d\d ms/, 'Retry-After: 1 honoured');
  assert.equal(R.summary(r.stdout, 'dead-lettered'), 0);

  // what the proxy let through is right: exactly one plan each, through the
  // real server directly
  await R.verifyExactlyOnce(env.srv.base, env.manifest);
  const st = R.status(state);
  assert.equal(st.outbox, 0);
  assert.equal(st.dead, 0);
});
