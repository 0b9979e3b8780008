// Concurrency (issue #7): a sync with 8 patients in flight decides and
// writes exactly what a sync with one does; the client-side rate limit
// holds (requests counted by the server against a generous bound, never a
// timing assertion); a 429 is retried and slows the pace down.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const h = require('./helpers');

let srv;
let admin;
let dir;

function summary(stdout) {
  const out = {};
  for (const m of stdout.matchAll(/^ *(\S[^\n]*?)\s+(\d+)$/gm)) out[m[1]] = Number(m[2]);
  return out;
}

function config(name, fhir) {
  const file = path.join(dir, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({
    fhir: { base_url: srv.base, ...fhir },
    mappings: { dir: path.join(h.ROOT, 'mappings') },
    state: { path: path.join(dir, `${name}.state`) },
  }));
  return file;
}

async function stats() {
  return (await h.fhir(srv.base, 'GET', `${admin}/$test/stats`)).json;
}

async function resetStats() {
  assert.ok((await h.fhir(srv.base, 'DELETE', `${admin}/$test/stats`)).status < 300);
}

async function versions() {
  const out = {};
  for (const t of ['CarePlan', 'RiskAssessment']) {
    for (const r of await h.searchAll(srv.base, `${t}?_count=1000`)) out[`${t}/${r.id}`] = r.meta.versionId;
  }
  return out;
}

test.before(() => {
  srv = h.startServer();
  admin = srv.base.replace(/\/fhir\/R4$/, '');
  dir = h.tmpdir('concurrency');
  execFileSync('node', [path.join(h.ROOT, 'tests/synth/generate.js'), '--out', dir, '--count', '40', '--seed', '5']);
  const files = fs.readdirSync(dir).filter((f) => f.startsWith('patient-')).map((f) => path.join(dir, f));
  execFileSync('node', [path.join(h.ROOT, 'tests/fhir-server/load.js'), '--base', srv.base, '--quiet', ...files]);
});

test.after(() => h.stopServer(srv));

test('concurrency 8 and concurrency 1 decide and write the same', async () => {
  const eight = h.runAdapter(['sync', '-c', config('c8', { concurrency: 8 })]);
  assert.equal(eight.status, 0, eight.stderr);
  const s8 = summary(eight.stdout);
  assert.ok(s8.created > 0 && s8.failed === 0, eight.stdout);
  const before = await versions();

  // a fresh state, one patient at a time: every decision hash matches what
  // the concurrent run wrote, so nothing is written again
  const one = h.runAdapter(['sync', '-c', config('c1', { concurrency: 1 })]);
  assert.equal(one.status, 0, one.stderr);
  const s1 = summary(one.stdout);
  assert.equal(s1['patients seen'], s8['patients seen']);
  assert.equal(s1.unchanged, s8.created, one.stdout);
  assert.equal(s1.created, 0);
  assert.equal(s1.updated, 0);
  for (const k of Object.keys(s8)) {
    if (!['created', 'unchanged', 'updated', 'revoked'].includes(k)) assert.equal(s1[k], s8[k], `${k}`);
  }
  assert.deepEqual(await versions(), before);
});

test('the rate limit holds across workers', async () => {
  await resetStats();
  const rps = 12;
  const t0 = process.hrtime.bigint();
  const r = h.runAdapter(['sync', '--dry-run', '-c', config('rl', { concurrency: 8, rate_limit_rps: rps })]);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  assert.equal(r.status, 0, r.stderr);
  const total = (await stats()).total;
  assert.ok(total > 3 * rps, `requests: ${total}`);
  // evenly spaced slots: at most rps * elapsed (+1 for the first); the bound
  // is generous and only gets looser when the machine is slow
  assert.ok(total <= rps * seconds * 1.25 + 5, `${total} requests in ${seconds.toFixed(2)} s at ${rps}/s`);
});

test('a 429 is retried and the sync completes', async () => {
  const f = await h.fhir(srv.base, 'POST', `${admin}/$test/fault`,
    { method: 'POST', resourceType: 'Bundle', status: 429, count: 3, retryAfter: 0 });
  assert.ok(f.status < 300, f.text);
  const r = h.runAdapter(['sync', '--dry-run', '-c',
    config('429', { concurrency: 4, rate_limit_rps: 200, retry_base_ms: 10 })]);
  assert.equal(r.status, 0, r.stderr);
  const s = summary(r.stdout);
  assert.equal(s.failed, 0);
  assert.ok(s.retries >= 3, r.stdout);
  await h.fhir(srv.base, 'DELETE', `${admin}/$test/fault`);
});
