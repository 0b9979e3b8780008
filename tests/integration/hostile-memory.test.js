// Memory amplification (hostile input): a response under fhir.max_response_mb
// whose shape is "{},{},..." or "[],[],..." used to take ~75 (~45) times its
// size once parsed (5 GB RSS for 63 MB).  Now the parsed tree has a memory
// budget (fhir.max_parsed_mb, 4 x the cap by default) enforced while parsing,
// and peak RSS stays within 8 x the cap per worker.  Peak RSS comes from
// wait4(2) (tests/bench/rusage.c), not from timing.  The cap is 8 MiB here so
// that the test is quick; the hostile bodies are served by the fault proxy's
// --hostile mode in front of the real test server.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const h = require('./helpers');
const R = require('./robust-lib');

const CAP_MB = 8;
const WORKERS = 2;
const MIB = 1024 * 1024;
let env;
let rusage;
// Under AddressSanitizer (make asan sets ASAN_OPTIONS) RSS is mostly the
// sanitizer's shadow memory and quarantine: the bound speaks of the adapter
// only in an ordinary build, which `make test` runs.  The budget error itself
// is checked in both.
const SANITIZED = Boolean(process.env.ASAN_OPTIONS);
function rssWithin(kb, bound, msg) {
  if (SANITIZED) {
    console.log(`# peak RSS bound not checked under AddressSanitizer (${kb} KiB)`);
    return;
  }
  assert.ok(kb * 1024 <= bound, msg);
}

function startProxy(target, basePath, shape) {
  return new Promise((resolve, reject) => {
    // every per-patient fetch (the batch POST to the base, or the
    // Observation search) is answered with the hostile body; the cohort
    // search (POST Condition/_search) goes through
    const child = spawn('node', [path.join(h.ROOT, 'tests/fault-proxy/proxy.js'),
      '--target', target, '--p5xx', '0', '--p429', '0', '--pdrop', '0', '--ptrunc', '0',
      '--pdelay', '0', '--hostile', shape, '--hostile-bytes', String(CAP_MB * MIB - 4096),
      '--hostile-match', `^POST ${basePath}/?$|Observation\\?`],
    { stdio: ['ignore', 'pipe', 'inherit'] });
    readline.createInterface({ input: child.stdout }).once('line', (line) => {
      const m = /^listening (\S+)/.exec(line);
      if (m) resolve({ child, url: m[1] }); else reject(new Error(line));
    });
    child.on('error', reject);
  });
}

// Run the adapter under rusage; resolves {status, stdout, stderr, maxrssKb}.
function measured(args) {
  return new Promise((resolve) => {
    const child = spawn(rusage, [h.BIN, ...args], { cwd: h.ROOT,
      env: { ...process.env, DNMBC_LOG_LEVEL: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('close', () => {
      const m = /maxrss_kb=(\d+) status=(\d+)/.exec(stderr);
      assert.ok(m, `rusage line in ${stderr.slice(-500)}`);
      resolve({ status: Number(m[2]), stdout, stderr, maxrssKb: Number(m[1]) });
    });
  });
}

function config(dir, extra = {}) {
  const cfg = path.join(dir, 'config.json');
  fs.writeFileSync(cfg, JSON.stringify({
    fhir: { max_response_mb: CAP_MB, concurrency: WORKERS, retry_max_attempts: 1,
      preflight: 'off', ...extra },
  }));
  return cfg;
}

test.before(() => {
  env = R.loadRandom(4, '17');
  const dir = h.tmpdir('rusage');
  rusage = path.join(dir, 'rusage');
  execFileSync('cc', ['-O2', '-std=c11', '-D_DEFAULT_SOURCE', '-o', rusage,
    path.join(h.ROOT, 'tests/bench/rusage.c')]);
});

test.after(() => {
  h.stopServer(env && env.srv);
});

for (const shape of ['objects', 'arrays']) {
  test(`sync: ${CAP_MB} MiB responses of ${shape} stay within 8 x the cap per worker`, async () => {
    const u = new URL(env.srv.base);
    const proxy = await startProxy(u.origin, u.pathname.replace(/\/$/, ''), shape);
    try {
      const dir = h.tmpdir('hostile-mem');
      const r = await measured(['sync', '--config', config(dir), '--base-url',
        proxy.url + u.pathname, '--state', path.join(dir, 'state.db')]);
      const stats = await (await fetch(`${proxy.url}/$proxy/stats`)).json();
      console.log(`# ${shape}: ${stats.hostile} hostile responses, peak RSS ` +
        `${(r.maxrssKb / 1024).toFixed(0)} MiB`);
      assert.ok(stats.hostile >= 2, 'the hostile body was served');
      assert.notEqual(r.status, 0, 'the patients fail');
      assert.match(r.stderr, /: parsed JSON exceeds the memory budget of 32 MiB .*\(fhir\.max_parsed_mb\)/);
      assert.doesNotMatch(r.stderr, /invalid JSON/);
      rssWithin(r.maxrssKb, 8 * CAP_MB * MIB * WORKERS,
        `peak RSS ${r.maxrssKb} KiB above 8 x ${CAP_MB} MiB x ${WORKERS} workers`);
    } finally {
      proxy.child.kill('SIGTERM');
    }
  });
}

test('evaluate: a file of {},{},... under the cap stays within 8 x the cap', async () => {
  const dir = h.tmpdir('hostile-eval');
  const file = path.join(dir, 'bundle.json');
  const n = Math.floor((CAP_MB * MIB - 100) / 3);
  fs.writeFileSync(file, '{"resourceType":"Bundle","type":"collection","entry":[' +
    new Array(n).fill('{}').join(',') + ']}');
  const r = await measured(['evaluate', '--config', config(dir), file]);
  console.log(`# evaluate: peak RSS ${(r.maxrssKb / 1024).toFixed(0)} MiB`);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /bundle\.json: parsed JSON exceeds the memory budget of 32 MiB .*\(fhir\.max_parsed_mb\)/);
  rssWithin(r.maxrssKb, 8 * CAP_MB * MIB, `peak RSS ${r.maxrssKb} KiB`);
});

test('fhir.max_parsed_mb raises the budget', async () => {
  const dir = h.tmpdir('hostile-eval');
  const file = path.join(dir, 'bundle.json');
  fs.writeFileSync(file, '{"resourceType":"Bundle","type":"collection","entry":[' +
    new Array(200000).fill('{}').join(',') + ']}');
  // 200,000 empty objects take some 48 MiB parsed: over 32, under 64
  let r = await measured(['evaluate', '--config', config(dir), file]);
  assert.match(r.stderr, /memory budget of 32 MiB/);
  r = await measured(['evaluate', '--config', config(dir, { max_parsed_mb: 64 }), file]);
  assert.doesNotMatch(r.stderr, /memory budget/);
  assert.match(r.stderr, /entry\[0\]: missing 'resource'/);
});
