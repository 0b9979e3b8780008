// SIGHUP reaches the CDS service's copy of the mapping tables: change a
// mapping table, send SIGHUP to `serve` or to `run --listen`, and the next
// patient-view answer follows the new table.  Here the metastasis table is
// taken away, so the de novo metastatic patient who had a curative-lrt card
// is no longer one (no metastasis known: not applicable, no card).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { ROOT, BIN, tmpdir, startServer, stopServer } = require('./helpers');
const L = require('./cds-lib');

const SERVICE = '/cds-services/dnmbc-local-therapy';
const ISS = 'https://ehr.test.example';
const FIX = path.join(ROOT, 'tests/fixtures/evaluate/curative-palliative-skin.json');

let keys;

function hookBody() {
  const rs = JSON.parse(fs.readFileSync(FIX, 'utf8')).entry.map((e) => e.resource);
  const set = (t) => ({ resourceType: 'Bundle', type: 'searchset', entry: rs.filter((r) => r.resourceType === t).map((resource) => ({ resource })) });
  const pt = rs.find((r) => r.resourceType === 'Patient');
  return {
    hook: 'patient-view', hookInstance: 'a2f9b6a4-0000-4000-8000-000000000001',
    context: { userId: 'Practitioner/1', patientId: pt.id },
    prefetch: { patient: pt, conditions: set('Condition'), observations: set('Observation') },
  };
}

async function cards(base) {
  const r = await L.call(base, 'POST', SERVICE, { token: await L.sign(keys.es.privateKey, { aud: `${L.PUBLIC_URL}${SERVICE}`, iss: ISS }), body: hookBody() });
  assert.equal(r.status, 200, r.text);
  return r.json.cards;
}

// A copy of the shipped mapping tables, and a configuration using it.
function setup(name, extra = {}) {
  const dir = tmpdir(name);
  const maps = path.join(dir, 'mappings');
  fs.cpSync(path.join(ROOT, 'mappings'), maps, { recursive: true });
  const jwksFile = path.join(dir, 'jwks.json');
  fs.writeFileSync(jwksFile, JSON.stringify({ keys: [keys.esJwk] }));
  const cfg = {
    server: { public_url: L.PUBLIC_URL },
    cds: { clients: [{ iss: ISS, jwks_file: jwksFile }] },
    mappings: { dir: maps },
    state: { path: path.join(dir, 'state.db') },
    ...extra,
  };
  return { dir, maps, cfg };
}

async function waitLog(getLogs, re) {
  for (let i = 0; i < 2400 && !re.test(getLogs()); i++) await new Promise((r) => setTimeout(r, 25));
  assert.match(getLogs(), re);
}

test.before(async () => { keys = await L.makeKeys(); });

test('serve: SIGHUP after a mapping table changed changes the CDS answer', async () => {
  const { dir, maps, cfg } = setup('cds-reload');
  const s = await L.startServe(cfg, dir);
  try {
    const before = await cards(s.base);
    assert.equal(before.length, 1, 'a de novo metastatic patient: one card');
    fs.rmSync(path.join(maps, 'metastasis.json'));
    s.proc.kill('SIGHUP');
    await waitLog(() => s.logs, /SIGHUP: mappings and thresholds reloaded/);
    assert.deepEqual(await cards(s.base), [], 'no metastasis table: not applicable, no card');
    // a broken table keeps the running ones
    fs.writeFileSync(path.join(maps, 'conditions.json'), '{ not json');
    s.proc.kill('SIGHUP');
    await waitLog(() => s.logs, /SIGHUP: reload failed, keeping the tables/);
    assert.deepEqual(await cards(s.base), []);
    assert.equal(s.proc.exitCode, null);
  } finally {
    await L.stopServe(s);
  }
});

test('run --listen: SIGHUP reloads the daemon and the CDS copy of the tables', async () => {
  const fhirSrv = startServer();
  const { dir, maps, cfg } = setup('cds-reload-run', { fhir: { base_url: fhirSrv.base }, daemon: { interval_s: 3600 } });
  const cfgPath = path.join(dir, 'config.json');
  fs.writeFileSync(cfgPath, JSON.stringify(cfg), { mode: 0o600 });
  const proc = spawn(BIN, ['run', '-c', cfgPath, '--listen', '127.0.0.1:0'], { env: { ...process.env, DNMBC_LOG_LEVEL: '' }, stdio: ['ignore', 'ignore', 'pipe'] });
  let logs = '';
  try {
    const base = await new Promise((resolve, reject) => {
      proc.stderr.on('data', (x) => { logs += x; const m = /listening on (http\S*?:\d+) /.exec(logs); if (m) resolve(m[1]); });
      proc.on('exit', (c) => reject(new Error(`run exited ${c}: ${logs}`)));
    });
    assert.equal((await cards(base)).length, 1);
    fs.rmSync(path.join(maps, 'metastasis.json'));
    proc.kill('SIGHUP');
    await waitLog(() => logs, /SIGHUP: configuration and \d+ mapping entries reloaded/);
    assert.deepEqual(await cards(base), [], 'the listener answers from the reloaded tables');
    assert.equal(proc.exitCode, null);
  } finally {
    await new Promise((resolve) => { if (proc.exitCode !== null) return resolve(); proc.on('exit', resolve); proc.kill('SIGTERM'); });
    stopServer(fhirSrv);
  }
});
