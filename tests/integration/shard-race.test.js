// Three `--shard K/3` replicas started together against a server holding
// only the inputs write no duplicate of anything, even when the server's
// conditional update is not atomic (POST /$test/racy-conditional: the search
// and the create of a conditional update are separate steps, and writers of
// the same URL meet between them). A resource shared by the replicas - as
// the Device the adapter used to PUT by identifier before its first write -
// would be created once per replica.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const fs = require('node:fs');
const { spawn, execFileSync } = require('node:child_process');
const h = require('./helpers');

let srv;
let admin;
let dir;

// h.fhir once more when a kept-alive socket was closed by the server while
// the replicas ran (a stale socket, not a test failure).
async function fhir(...args) {
  try {
    return await h.fhir(...args);
  } catch (err) {
    if (!(err instanceof TypeError)) throw err;
    return h.fhir(...args);
  }
}

function runAsync(args) {
  return new Promise((resolve) => {
    const p = spawn(h.BIN, args, { env: { ...process.env, DNMBC_LOG_LEVEL: '' } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    p.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

test.before(() => {
  srv = h.startServer();
  admin = srv.base.replace(/\/fhir\/R4$/, '');
  dir = h.tmpdir('shard-race');
  execFileSync('node', [path.join(h.ROOT, 'tests/synth/generate.js'), '--out', dir, '--count', '30', '--seed', '5']);
  const files = fs.readdirSync(dir).filter((f) => f.startsWith('patient-')).map((f) => path.join(dir, f));
  execFileSync('node', [path.join(h.ROOT, 'tests/fhir-server/load.js'), '--base', srv.base, '--quiet', ...files]);
});

test.after(() => h.stopServer(srv));

test('three shard replicas started together write no duplicate of anything', async () => {
  const inputs = new Set(['Patient', 'Condition', 'Observation']);
  const on = await fhir(srv.base, 'POST', `${admin}/$test/racy-conditional`, { parties: 3, waitMs: 15000 });
  assert.equal(on.status, 200);
  assert.ok((await fhir(srv.base, 'DELETE', `${admin}/$test/stats`)).status < 300);
  const runs = await Promise.all([0, 1, 2].map((k) => runAsync(['sync', '--shard', `${k}/3`,
    '--concurrency', '2', '--base-url', srv.base, '--state', path.join(dir, `shard${k}.state`)])));
  await fhir(srv.base, 'DELETE', `${admin}/$test/racy-conditional`);
  for (const r of runs) assert.equal(r.status, 0, r.stderr);
  for (const r of runs) assert.match(r.stdout, /failed\s+0\b/);

  // every type the replicas wrote to (the inputs are only searched)
  const stats = (await fhir(srv.base, 'GET', `${admin}/$test/stats`)).json;
  const types = new Set();
  for (const table of [stats.requests, stats.entries]) {
    for (const m of ['POST', 'PUT', 'PATCH']) {
      for (const t of Object.keys(table[m] || {})) if (t !== 'Bundle' && t !== '_system') types.add(t);
    }
  }
  for (const t of inputs) assert.equal((stats.entries.PUT || {})[t] || 0, 0, `no write to ${t}`);
  for (const t of inputs) types.delete(t);
  assert.ok(types.has('CarePlan') && types.has('RiskAssessment') && types.has('Provenance'), [...types].join());

  let created = 0;
  for (const t of [...types, 'Device']) {
    const all = await h.searchAll(srv.base, `${t}?_count=1000`);
    const byKey = new Map();
    for (const r of all) {
      let keys = (r.identifier || []).map((i) => `${i.system}|${i.value}`);
      if (t === 'Provenance') keys = [r.target.map((x) => x.reference).sort().join(' ')];
      for (const k of keys) byKey.set(k, (byKey.get(k) || 0) + 1);
    }
    for (const [k, n] of byKey) assert.equal(n, 1, `${n} ${t} resources share ${k}`);
    if (t === 'CarePlan') created = all.length;
  }
  const reported = runs.map((r) => Number(/^created\s+(\d+)$/m.exec(r.stdout)[1])).reduce((a, b) => a + b, 0);
  assert.ok(created > 0);
  assert.equal(created, reported, 'one CarePlan per plan created');
  assert.equal((await h.searchAll(srv.base, 'Device?_count=100')).length, 0, 'no Device of ours on the server');
});
