// Upgrading the clinical rules (docs/clinical-rules.md §7): a server holds
// plans written by the adapter at rules version 1 (built from commit c33b89b,
// the last version-1 commit, in a scratch directory); the first sync of the
// current adapter updates each plan exactly once (a new version of the same
// CarePlan and RiskAssessment, naming rules version 2, with a Provenance
// saying why), and the sync after that writes nothing.  The same holds for
// the daemon: a `run --once` of the current adapter on the state file the
// version-1 daemon left (a watermark, no rules version) decides the whole
// cohort again, not only what changed since the watermark.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');
const h = require('./helpers');

const V1_COMMIT = 'c33b89b';
// Patients whose version-1 and version-2 decisions agree (01, 07, 16) and
// differ (03: T4d no longer palliative; 25: response after progression is
// no longer curative-lrt), and one not-applicable patient (20).
const PICK = ['synth-01', 'synth-03', 'synth-07', 'synth-16', 'synth-25', 'synth-20'];
const RV_URL = `${h.CANONICAL}/StructureDefinition/rules-version`;

let srv;
let v1dir;
let stateFile;
const idOf = {};
const manifestOf = {};

// The version-1 adapter, built once per checkout into build/ (ignored by
// git) from the sources of that commit, unoptimised to keep it quick.
function buildV1() {
  const dir = path.join(h.ROOT, 'build', `rules-v1-${V1_COMMIT}`);
  const bin = path.join(dir, 'dnmbc-adapter');
  if (fs.existsSync(bin)) return dir;
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const tar = execFileSync('git', ['-C', h.ROOT, 'archive', V1_COMMIT, 'Makefile', 'adapter', 'mappings'],
    { maxBuffer: 64 * 1024 * 1024 });
  execFileSync('tar', ['-x', '-C', dir], { input: tar });
  const r = spawnSync('make', ['-C', dir, 'dnmbc-adapter'], {
    encoding: 'utf8', env: { ...process.env, CFLAGS: '-O0' },
  });
  assert.equal(r.status, 0, `building the version-1 adapter failed:\n${r.stderr}`);
  return dir;
}

function syncWith(bin, cwd) {
  const r = spawnSync(bin, ['sync', '--base-url', srv.base, '--state', stateFile], {
    cwd, encoding: 'utf8', env: { ...process.env, DNMBC_LOG_LEVEL: '' },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function plan(pid, base = srv.base) {
  const q = (t) => `${t}?identifier=${encodeURIComponent(`${h.idSystem(t)}|${pid}`)}`;
  const cps = await h.searchAll(base, q('CarePlan'));
  const ras = await h.searchAll(base, q('RiskAssessment'));
  return { cp: cps[0], ra: ras[0], ncp: cps.length, nra: ras.length };
}

function rulesVersion(res) {
  const e = (res.extension || []).find((x) => x.url === RV_URL);
  return e ? e.valueString : undefined;
}

async function provenancesFor(cp, base = srv.base) {
  const seen = new Map();
  for (const t of [`CarePlan/${cp.id}`]) {
    for (const p of await h.searchAll(base, `Provenance?target=${encodeURIComponent(t)}`)) seen.set(p.id, p);
  }
  // versioned targets (writes one by one): every version of the plan
  for (let v = 1; v <= Number(cp.meta.versionId) || 0; v++) {
    const t = `CarePlan/${cp.id}/_history/${v}`;
    for (const p of await h.searchAll(base, `Provenance?target=${encodeURIComponent(t)}`)) seen.set(p.id, p);
  }
  return [...seen.values()];
}

async function history(type, id, base = srv.base) {
  const r = await h.fhir(base, 'GET', `${type}/${id}/_history`);
  assert.equal(r.status, 200, r.text);
  return (r.json.entry || []).length;
}

test.before(async () => {
  v1dir = buildV1();
  srv = h.startServer();
  const synth = h.generateSynth();
  const files = synth.manifest.filter((m) => PICK.includes(m.identifier.value))
    .map((m) => path.join(synth.dir, m.file));
  assert.equal(files.length, PICK.length);
  execFileSync('node', [path.join(h.ROOT, 'tests/fhir-server/load.js'), '--base', srv.base, ...files]);
  for (const m of synth.manifest) {
    if (!PICK.includes(m.identifier.value)) continue;
    const found = await h.searchAll(srv.base,
      `Patient?identifier=${encodeURIComponent(`${m.identifier.system}|${m.identifier.value}`)}`);
    assert.equal(found.length, 1);
    idOf[m.identifier.value] = found[0].id;
    manifestOf[m.identifier.value] = m;
  }
  stateFile = path.join(h.tmpdir('rules-upgrade'), 'adapter.state');
});

test.after(() => h.stopServer(srv));

test('version 1, then one update per plan naming version 2 with a Provenance, then no writes', async () => {
  // 1. The version-1 adapter writes its plans (its own mappings, its rules).
  const r1 = syncWith(path.join(v1dir, 'dnmbc-adapter'), v1dir);
  assert.equal(r1.status, 0, r1.stderr);
  const before = {};
  for (const pid of PICK) {
    const p = await plan(idOf[pid]);
    if (manifestOf[pid].expected.recommendation === 'not-applicable') {
      assert.equal(p.ncp, 0, `${pid}: nothing for not-applicable`);
      continue;
    }
    assert.equal(p.ncp, 1, `${pid}: version 1 wrote a CarePlan`);
    assert.equal(rulesVersion(p.cp), undefined, `${pid}: version 1 names no rules version`);
    before[pid] = {
      cp: p.cp, ra: p.ra,
      cpHist: await history('CarePlan', p.cp.id), raHist: await history('RiskAssessment', p.ra.id),
      prov: (await provenancesFor(p.cp)).length,
    };
    assert.ok(before[pid].prov >= 1, `${pid}: version 1 wrote a Provenance`);
  }
  assert.ok(Object.keys(before).length >= 5, 'five plans to upgrade');
  // synth-25 was curative-lrt under version 1
  assert.ok(before['synth-25'].cp.category.some((c) => c.coding.some((x) => x.code === 'curative-lrt')));

  // 2. The current adapter, same state file: every plan updated once.
  const r2 = h.runAdapter(['sync', '--base-url', srv.base, '--state', stateFile]);
  assert.equal(r2.status, 0, r2.stderr);
  const after = {};
  for (const pid of Object.keys(before)) {
    const b = before[pid];
    const p = await plan(idOf[pid]);
    assert.equal(p.ncp, 1, `${pid}: still one CarePlan`);
    assert.equal(p.nra, 1, `${pid}: still one RiskAssessment`);
    assert.equal(p.cp.id, b.cp.id, `${pid}: the same CarePlan is updated`);
    assert.equal(p.ra.id, b.ra.id, `${pid}: the same RiskAssessment is updated`);
    assert.equal(await history('CarePlan', p.cp.id), b.cpHist + 1, `${pid}: one new CarePlan version`);
    assert.equal(await history('RiskAssessment', p.ra.id), b.raHist + 1, `${pid}: one new RiskAssessment version`);
    assert.equal(rulesVersion(p.cp), '2', `${pid}: CarePlan names rules version 2`);
    assert.equal(rulesVersion(p.ra), '2', `${pid}: RiskAssessment names rules version 2`);
    const prov = await provenancesFor(p.cp);
    assert.equal(prov.length, b.prov + 1, `${pid}: one new Provenance`);
    const why = prov.filter((x) => (x.reason || []).some((r) => /clinical rules version 2/.test(r.text || '')));
    assert.equal(why.length, 1, `${pid}: the new Provenance says the rules version 2 decided`);
    assert.ok((why[0].policy || []).some((u) => u.endsWith('/clinical-rules/version/2')));
    after[pid] = { cpHist: b.cpHist + 1, raHist: b.raHist + 1, prov: prov.length, cp: p.cp };
  }
  const codes = h.categoryCodes(after['synth-25'].cp);
  assert.ok(codes.includes('continue-systemic'), `synth-25 under version 2: ${codes}`);
  assert.ok(!h.categoryCodes(after['synth-03'].cp).includes('palliative-lrt'), 'synth-03: T4d not palliative');

  // 3. The next sync writes nothing.
  const r3 = h.runAdapter(['sync', '--base-url', srv.base, '--state', stateFile]);
  assert.equal(r3.status, 0, r3.stderr);
  for (const pid of Object.keys(after)) {
    const p = await plan(idOf[pid]);
    assert.equal(await history('CarePlan', p.cp.id), after[pid].cpHist, `${pid}: no CarePlan write`);
    assert.equal(await history('RiskAssessment', p.ra.id), after[pid].raHist, `${pid}: no RiskAssessment write`);
    assert.equal((await provenancesFor(p.cp)).length, after[pid].prov, `${pid}: no Provenance`);
  }
  for (const pid of PICK.filter((x) => manifestOf[x].expected.recommendation === 'not-applicable')) {
    assert.equal((await plan(idOf[pid])).ncp, 0, `${pid}: still nothing`);
  }
});

// The daemon after an upgrade.  The overlap window is 0 so that a cycle sees
// only what changed at or after the watermark: without the stored rules
// version the current daemon would re-decide (almost) nobody.
test('daemon: the first cycle after the upgrade updates each plan once, the next writes nothing', async () => {
  const srv2 = h.startServer();
  try {
    const synth = h.generateSynth();
    const files = synth.manifest.filter((m) => PICK.includes(m.identifier.value))
      .map((m) => path.join(synth.dir, m.file));
    execFileSync('node', [path.join(h.ROOT, 'tests/fhir-server/load.js'), '--base', srv2.base, ...files]);
    const ids = {};
    for (const m of synth.manifest) {
      if (!PICK.includes(m.identifier.value)) continue;
      const found = await h.searchAll(srv2.base,
        `Patient?identifier=${encodeURIComponent(`${m.identifier.system}|${m.identifier.value}`)}`);
      assert.equal(found.length, 1);
      ids[m.identifier.value] = found[0].id;
    }
    const dir = h.tmpdir('rules-upgrade-daemon');
    const st = path.join(dir, 'adapter.state');
    const cfg = path.join(dir, 'config.json');
    fs.writeFileSync(cfg, JSON.stringify({ daemon: { overlap_s: 0 } }));
    const once = (bin, cwd) => spawnSync(bin,
      ['run', '--once', '--config', cfg, '--base-url', srv2.base, '--state', st],
      { cwd, encoding: 'utf8', env: { ...process.env, DNMBC_LOG_LEVEL: '' } });
    const snapshot = async () => {
      const out = {};
      for (const pid of PICK) {
        const p = await plan(ids[pid], srv2.base);
        if (p.ncp === 0) continue;
        out[pid] = {
          p, cpHist: await history('CarePlan', p.cp.id, srv2.base),
          raHist: await history('RiskAssessment', p.ra.id, srv2.base),
          prov: await provenancesFor(p.cp, srv2.base),
        };
      }
      return out;
    };

    // 1. The version-1 daemon: its first cycle writes the plans and a watermark.
    const r1 = once(path.join(v1dir, 'dnmbc-adapter'), v1dir);
    assert.equal(r1.status, 0, r1.stderr);
    const wm = spawnSync('sqlite3', [st, "SELECT value FROM meta WHERE key = 'watermark'"], { encoding: 'utf8' });
    assert.equal(wm.status, 0, wm.stderr);
    assert.ok(wm.stdout.trim() !== '', 'the version-1 daemon kept a watermark');
    const before = await snapshot();
    assert.ok(Object.keys(before).length >= 5, 'five plans to upgrade');
    for (const [pid, b] of Object.entries(before)) {
      assert.equal(rulesVersion(b.p.cp), undefined, `${pid}: version 1 names no rules version`);
    }

    // 2. The current daemon on the same state file: every plan once.
    const r2 = once(h.BIN, h.ROOT);
    assert.equal(r2.status, 0, r2.stderr);
    assert.match(r2.stderr, /clinical rules version 2[^\n]*whole cohort/);
    const after = await snapshot();
    assert.deepEqual(Object.keys(after).sort(), Object.keys(before).sort());
    for (const [pid, a] of Object.entries(after)) {
      const b = before[pid];
      assert.equal(a.p.ncp, 1, `${pid}: still one CarePlan`);
      assert.equal(a.p.cp.id, b.p.cp.id, `${pid}: the same CarePlan is updated`);
      assert.equal(a.p.ra.id, b.p.ra.id, `${pid}: the same RiskAssessment is updated`);
      assert.equal(a.cpHist, b.cpHist + 1, `${pid}: one new CarePlan version`);
      assert.equal(a.raHist, b.raHist + 1, `${pid}: one new RiskAssessment version`);
      assert.equal(rulesVersion(a.p.cp), '2', `${pid}: CarePlan names rules version 2`);
      assert.equal(a.prov.length, b.prov.length + 1, `${pid}: one new Provenance`);
      assert.equal(a.prov.filter((x) => (x.reason || [])
        .some((r) => /clinical rules version 2/.test(r.text || ''))).length, 1, `${pid}: the Provenance says why`);
    }
    const rv = spawnSync('sqlite3', [st, "SELECT value FROM meta WHERE key = 'rules_version'"], { encoding: 'utf8' });
    assert.equal(rv.stdout.trim(), '2', 'the covered rules version is kept');

    // 3. The next cycle writes nothing and does not decide the cohort again.
    const r3 = once(h.BIN, h.ROOT);
    assert.equal(r3.status, 0, r3.stderr);
    assert.doesNotMatch(r3.stderr, /whole cohort/);
    const again = await snapshot();
    for (const [pid, a] of Object.entries(after)) {
      assert.equal(again[pid].cpHist, a.cpHist, `${pid}: no CarePlan write`);
      assert.equal(again[pid].raHist, a.raHist, `${pid}: no RiskAssessment write`);
      assert.equal(again[pid].prov.length, a.prov.length, `${pid}: no Provenance`);
    }
  } finally {
    h.stopServer(srv2);
  }
});
