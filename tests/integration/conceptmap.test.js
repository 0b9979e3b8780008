// Mapping tables as FHIR ConceptMaps (docs/codes.md §16):
//  - `map --export-conceptmaps DIR` writes one ConceptMap per table, and a
//    configuration that loads only those gives byte-identical `map --json`
//    and `evaluate` output on every golden case (test_conceptmap.c compares
//    the feature records themselves, byte for byte);
//  - the exported ConceptMaps pass the test FHIR server's validator;
//  - a terminology team's ConceptMap in `mappings.extra` makes local codes
//    recognised;
//  - a malformed ConceptMap is refused naming the file and the element;
//  - terminology.base_url: an unknown code is resolved with $translate once
//    and the cached answer reused (the test server counts $translate
//    requests), over HTTPS with the FHIR server's tls.ca_file.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const fs = require('node:fs');
const { execFile, execFileSync } = require('node:child_process');
const h = require('./helpers');

const CASES = path.join(h.ROOT, 'tests/cases');
const SHIPPED = path.join(h.ROOT, 'mappings');
const SITE_CM = path.join(h.ROOT, 'tests/fixtures/conceptmap/site-conceptmap.json');
const LOCAL_INPUT = path.join(h.ROOT, 'tests/fixtures/map/local-codes.json');

function writeConfig(mappings) {
  const dir = h.tmpdir('cmcfg');
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify({ mappings }));
  return file;
}

function exportAll() {
  const out = path.join(h.tmpdir('cmexport'), 'maps');
  const r = h.runAdapter(['map', '--export-conceptmaps', out]);
  assert.equal(r.status, 0, r.stderr);
  const tables = fs.readdirSync(SHIPPED).filter((f) => f.endsWith('.json') && f !== 'thresholds.json');
  assert.match(r.stdout, new RegExp(`^${tables.length} ConceptMaps written to `));
  assert.deepEqual(fs.readdirSync(out).sort(), tables.sort());
  return out;
}

// The time of the run is the only thing allowed to differ between two runs.
function normalise(s) {
  return s.replace(/"(created|occurrenceDateTime|authoredOn|recorded)": "\d{4}-\d\d-\d\dT[0-9:.]+Z"/g, '"$1": "NOW"');
}

// The adapter's output for one input, several runs at a time (each run is
// a separate process; the comparison does not depend on their order).
function runAsync(args) {
  return new Promise((resolve) => {
    execFile(h.BIN, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: { ...process.env, DNMBC_LOG_LEVEL: '' } },
      (err, stdout, stderr) => resolve(`status ${err ? err.code : 0}\n${normalise(stdout)}\n${stderr}`));
  });
}

async function inPool(jobs, width) {
  const out = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await jobs[i]();
    }
  };
  await Promise.all(Array.from({ length: width }, worker));
  return out;
}

test('exported ConceptMaps alone give byte-identical output on every golden case', async () => {
  const dir = exportAll();
  for (const f of fs.readdirSync(dir)) {
    const cm = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
    assert.equal(cm.resourceType, 'ConceptMap', f);
    assert.equal(cm.url, `${h.CANONICAL}/ConceptMap/${f.replace(/\.json$/, '')}`);
    for (const g of cm.group || []) {
      assert.equal(g.target, `${h.CANONICAL}/CodeSystem/dnmbc-feature`);
      for (const e of g.element) {
        for (const t of e.target) {
          assert.ok(t.equivalence, `${f} ${e.code}: equivalence`);
          assert.ok(t.comment, `${f} ${e.code}: the citation in comment`);
        }
      }
    }
  }
  const cfg = writeConfig({ dir, thresholds: path.join(SHIPPED, 'thresholds.json') });
  const check = h.runAdapter(['-n', '-c', cfg]);
  assert.equal(check.status, 0, check.stderr);
  const shippedCount = h.runAdapter(['-n']).stdout;
  assert.equal(check.stdout, shippedCount, 'the same number of mapping entries');

  const cases = fs.readdirSync(CASES).filter((d) => fs.existsSync(path.join(CASES, d, 'input.json')));
  assert.ok(cases.length > 100, `${cases.length} golden cases`);
  let compared = 0;
  const jobs = [];
  for (const c of cases) {
    const input = path.join(CASES, c, 'input.json');
    for (const cmd of [['map', '--json'], ['evaluate']]) {
      jobs.push(async () => {
        const [want, got] = [await runAsync([...cmd, input]), await runAsync(['-c', cfg, ...cmd, input])];
        assert.equal(got, want, `${c}: ${cmd[0]} differs with the ConceptMaps`);
        compared++;
      });
    }
  }
  await inPool(jobs, 3);
  assert.equal(compared, cases.length * 2);
});

test('the exported ConceptMaps pass the test FHIR server validator', async (t) => {
  const dir = exportAll();
  const srv = h.startServer();
  t.after(() => h.stopServer(srv));
  for (const f of fs.readdirSync(dir)) {
    const cm = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
    const r = await h.fhir(srv.base, 'PUT', `ConceptMap/${cm.id}`, cm);
    assert.ok(r.status === 200 || r.status === 201, `${f}: HTTP ${r.status} ${r.text.slice(0, 500)}`);
  }
  // the validator is on: a broken one is refused
  const bad = JSON.parse(fs.readFileSync(path.join(dir, 'receptors.json'), 'utf8'));
  bad.group[0].element[0].target[0].equivalence = 7;
  const r = await h.fhir(srv.base, 'PUT', `ConceptMap/${bad.id}`, bad);
  assert.equal(r.status, 400, r.text.slice(0, 300));
});

test('a site ConceptMap in mappings.extra makes local codes recognised', () => {
  const before = h.runAdapter(['map', '--json', LOCAL_INPUT]);
  assert.equal(before.status, 0, before.stderr);
  const codes = (j) => JSON.parse(j).total.map((x) => x.code).sort();
  assert.ok(codes(before.stdout).includes('ER-STATUS'));
  assert.ok(codes(before.stdout).includes('MET-BONE'));

  const cfg = writeConfig({ extra: [SITE_CM] });
  const check = h.runAdapter(['-n', '-c', cfg]);
  assert.equal(check.status, 0, check.stderr);
  const after = h.runAdapter(['-c', cfg, 'map', '--json', LOCAL_INPUT]);
  assert.equal(after.status, 0, after.stderr);
  assert.deepEqual(codes(after.stdout), ['195967001', '718-7', '8480-6']);

  const ev = h.runAdapter(['-c', cfg, 'evaluate', LOCAL_INPUT]);
  assert.equal(ev.status, 0, ev.stderr);
  const plan = JSON.parse(ev.stdout).entry.map((e) => e.resource).find((r) => r.resourceType === 'CarePlan');
  assert.ok(plan, 'a CarePlan once the ConceptMap maps the local codes');
  const basis = JSON.stringify(plan.supportingInfo);
  for (const id of ['map-met-bone', 'map-er', 'map-pr', 'map-her2']) assert.ok(basis.includes(id), id);
});

test('a malformed ConceptMap is refused naming the file, the element and the field', () => {
  const dir = h.tmpdir('cmbad');
  const site = JSON.parse(fs.readFileSync(SITE_CM, 'utf8'));
  const cases = [
    [(cm) => { delete cm.group[0].element[1].target[0].equivalence; },
      /bad\.json: ConceptMap\.group\[0\]\.element\[1\]\.target\[0\]\.equivalence: missing/],
    [(cm) => { cm.group[1].target = 'http://snomed.info/sct'; }, /ConceptMap\.group\[1\]\.target: must be/],
    [(cm) => { cm.group[0].element[3].target[0].extension[0].valueString = '{nope'; },
      /ConceptMap\.group\[0\]\.element\[3\]\.target\[0\]\.extension\[0\]\.valueString/],
    [(cm) => { cm.group[0].element = {}; }, /ConceptMap\.group\[0\]\.element: must be an array/],
    [(cm) => { cm.group[1].element[0].target[0].code = 'metastasis:moon'; },
      /bad\.json: entry \d+ \(code MET-BONE\)/],
  ];
  for (const [mutate, re] of cases) {
    const cm = structuredClone(site);
    mutate(cm);
    const file = path.join(dir, 'bad.json');
    fs.writeFileSync(file, JSON.stringify(cm));
    const r = h.runAdapter(['-n', '-c', writeConfig({ extra: [file] })]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, re);
  }
});

test('terminology.base_url: an unknown code is translated once, then from the state file', async (t) => {
  const srv = h.startServer();
  t.after(() => h.stopServer(srv));
  const dir = h.tmpdir('cmterm');
  // the terminology team's map of one local problem code, stored on the server
  const cm = {
    resourceType: 'ConceptMap', id: 'site-problems', url: 'http://hospital.example.org/fhir/ConceptMap/site-problems',
    status: 'active',
    group: [{
      source: 'http://hospital.example.org/codes/problem',
      target: `${h.CANONICAL}/CodeSystem/dnmbc-feature`,
      element: [{ code: 'MET-BONE', target: [{ code: 'metastasis:bone', equivalence: 'wider' }] }],
    }],
  };
  const put = await h.fhir(srv.base, 'PUT', 'ConceptMap/site-problems', cm);
  assert.ok(put.status === 200 || put.status === 201, put.text);
  const counted = async () => (await h.fhir(srv.base, 'GET', `${srv.base.replace(/\/fhir\/R4$/, '')}/$test/translate`)).json.requests;
  assert.equal(await counted(), 0);

  const cfg = writeConfig({});
  const conf = JSON.parse(fs.readFileSync(cfg, 'utf8'));
  conf.terminology = { base_url: srv.base };
  conf.state = { path: path.join(dir, 'state.db') };
  fs.writeFileSync(cfg, JSON.stringify(conf));

  const run = () => {
    const r = h.runAdapter(['-c', cfg, 'map', '--json', LOCAL_INPUT]);
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout);
  };
  const first = run();
  const unmapped = first.total.map((x) => x.code).sort();
  assert.ok(!unmapped.includes('MET-BONE'), 'MET-BONE is translated, not unmapped');
  assert.ok(unmapped.includes('ER-STATUS'), 'no answer: still unmapped');
  assert.deepEqual(first.translated.map((x) => [x.system, x.code, x.target, x.equivalence, x.cached]),
    [['http://hospital.example.org/codes/problem', 'MET-BONE', 'metastasis:bone', 'wider', false]]);
  const asked = await counted();
  assert.equal(asked, unmapped.length + 1, 'each unknown coding asked once');

  // second run: every answer, "no match" included, comes from the state file
  const second = run();
  assert.equal(await counted(), asked, 'no $translate request on the second run');
  assert.deepEqual(second.total.map((x) => x.code).sort(), unmapped);
  assert.equal(second.translated[0].cached, true);
  assert.equal(second.translated[0].target, 'metastasis:bone');

  const text = h.runAdapter(['-c', cfg, 'map', LOCAL_INPUT]);
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /^translated by the terminology server: 1 coding\(s\)$/m);
  assert.match(text.stdout, /MET-BONE {2}-> metastasis:bone \(wider, cached\)/);
  assert.equal(await counted(), asked);
  assert.equal(fs.statSync(conf.state.path).mode & 0o777, 0o600, 'the state file is private');
});

test('terminology.base_url uses the FHIR server TLS settings (tls.ca_file)', async (t) => {
  const certs = path.join(h.ROOT, 'certs/out');
  execFileSync('bash', [path.join(h.ROOT, 'certs/make-certs.sh'), certs], { stdio: 'ignore' });
  const dir = h.tmpdir('cmtls');
  const base = execFileSync(path.join(h.ROOT, 'tests/lib/fhir-server.sh'), ['start', dir], {
    encoding: 'utf8', env: { ...process.env, FHIR_SERVER_TLS_DIR: certs },
  }).trim().split('\n').pop();
  t.after(() => h.stopServer({ dir }));
  assert.match(base, /^https:/);
  const curl = (args, input) => execFileSync('curl', ['-sS', '-K', path.join(dir, 'curlrc'), ...args],
    { encoding: 'utf8', input });
  const cm = JSON.parse(fs.readFileSync(SITE_CM, 'utf8'));
  curl(['-X', 'PUT', '-H', 'Content-Type: application/fhir+json', '--data-binary', '@-',
    `${base}/ConceptMap/${cm.id}`], JSON.stringify(cm));
  const counted = () => JSON.parse(curl([base.replace(/\/fhir\/R4$/, '') + '/$test/translate'])).requests;

  const state = path.join(dir, 'term.state');
  const cfgWith = (tls) => {
    const f = path.join(h.tmpdir('cmtlscfg'), 'config.json');
    fs.writeFileSync(f, JSON.stringify({ terminology: { base_url: base }, state: { path: state }, tls }));
    return f;
  };
  // without the dev CA the server is not trusted: a warning, the codes stay
  // unmapped, and nothing is cached
  const refused = h.runAdapter(['-c', cfgWith({}), 'map', '--json', LOCAL_INPUT]);
  assert.equal(refused.status, 0, refused.stderr);
  assert.match(refused.stderr, /terminology.*stays unmapped/);
  assert.deepEqual(JSON.parse(refused.stdout).translated, []);
  assert.ok(JSON.parse(refused.stdout).total.some((x) => x.code === 'ER-STATUS'));
  assert.equal(counted(), 0, 'no request got through TLS');

  const ok = h.runAdapter(['-c', cfgWith({ ca_file: path.join(certs, 'ca.pem') }), 'map', '--json', LOCAL_INPUT]);
  assert.equal(ok.status, 0, ok.stderr);
  const j = JSON.parse(ok.stdout);
  assert.deepEqual(j.translated.map((x) => `${x.code}>${x.target}`).sort(),
    ['ER-STATUS>er', 'HER2-STATUS>her2-overall', 'MET-BONE>metastasis:bone', 'PR-STATUS>pr']);
  assert.ok(j.translated.every((x) => x.cached === false));
  assert.ok(counted() > 0);
});
