'use strict';
/*
 * Self-check of the synthetic patient generator and the offline fixtures:
 * determinism, transaction Bundle shape and reference integrity, coverage of
 * every recommendation code and both palliative states, and agreement of the
 * hand-written oracle with an independent reading of docs/clinical-rules.md.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const { generate } = require('../generate');
const { PATIENTS } = require('../patients');
const { randomSpecs } = require('../random');
const { fixtureFiles, GOOD } = require('../fixtures');
const { evaluate, applyLater } = require('../oracle');

const GEN = path.join(__dirname, '..', 'generate.js');
const FIXTURES = path.join(__dirname, '..', '..', 'fixtures', 'evaluate');
const RECS = ['not-applicable', 'insufficient-data', 'upfront-systemic', 'second-line-systemic',
    'curative-lrt', 'continue-systemic'];
const SUBTYPES = ['HR+/HER2-', 'HR+/HER2+', 'HR-/HER2+', 'TNBC'];
const UUID = /^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const DATE = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/;

function bundlesOf(files) {
    return [...files].filter(([name]) => name !== 'manifest.json').map(([name, text]) => [name, JSON.parse(text)]);
}
function manifestOf(files) {
    return JSON.parse(files.get('manifest.json'));
}

/* Every {reference: "..."} string anywhere in a value. */
function references(value, out = []) {
    if (Array.isArray(value)) value.forEach((v) => references(v, out));
    else if (value && typeof value === 'object') {
        for (const [k, v] of Object.entries(value)) {
            if (k === 'reference' && typeof v === 'string') out.push(v);
            else references(v, out);
        }
    }
    return out;
}

function runCli(args) {
    const r = spawnSync(process.execPath, [GEN, ...args], { encoding: 'utf8' });
    return r;
}

function readDir(dir) {
    const out = new Map();
    for (const name of fs.readdirSync(dir).sort()) out.set(name, fs.readFileSync(path.join(dir, name), 'utf8'));
    return out;
}

const fixed = generate({ count: null, seed: '1' });
const random = generate({ count: 60, seed: 'bench' });

test('the CLI writes byte-identical output for the same arguments', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'synth-'));
    try {
        for (const args of [[], ['--count', '30', '--seed', '42']]) {
            const a = path.join(tmp, `a${args.length}`);
            const b = path.join(tmp, `b${args.length}`);
            assert.equal(runCli(['--out', a, ...args]).status, 0);
            assert.equal(runCli(['--out', b, ...args]).status, 0);
            const fa = readDir(a);
            const fb = readDir(b);
            assert.deepEqual([...fa.keys()], [...fb.keys()]);
            for (const [k, v] of fa) assert.equal(v, fb.get(k), `${k} differs between runs`);
            assert.ok(fa.has('manifest.json'));
        }
    } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
    }
});

test('the seed changes the random patients and nothing else changes them', () => {
    const again = generate({ count: 60, seed: 'bench' });
    assert.deepEqual([...again], [...random]);
    const other = generate({ count: 60, seed: 'other' });
    assert.notEqual(other.get('patient-01.json'), random.get('patient-01.json'));
    /* the fixed set ignores --seed */
    assert.deepEqual([...generate({ count: null, seed: 'zzz' })], [...fixed]);
});

test('bad arguments are refused with exit 2', () => {
    assert.equal(runCli([]).status, 2);
    assert.equal(runCli(['--out', '/tmp/x', '--count', '0']).status, 2);
    assert.equal(runCli(['--out', '/tmp/x', '--count', 'ten']).status, 2);
    assert.equal(runCli(['--out', '/tmp/x', '--bogus']).status, 2);
});

for (const [label, files] of [['fixed', fixed], ['random', random]]) {
    test(`${label}: every Bundle is a transaction whose references resolve`, () => {
        const seenUrls = new Set();
        for (const [name, b] of bundlesOf(files)) {
            assert.equal(b.resourceType, 'Bundle', name);
            assert.equal(b.type, 'transaction', name);
            assert.ok(Array.isArray(b.entry) && b.entry.length >= 2, name);
            const urls = new Set();
            for (const e of b.entry) {
                assert.match(e.fullUrl, UUID, `${name}: fullUrl`);
                assert.ok(!urls.has(e.fullUrl), `${name}: duplicate fullUrl ${e.fullUrl}`);
                assert.ok(!seenUrls.has(e.fullUrl), `${name}: fullUrl reused across bundles`);
                urls.add(e.fullUrl);
                assert.deepEqual(e.request, { method: 'POST', url: e.resource.resourceType }, name);
                assert.equal(e.resource.id, undefined, `${name}: no ids in a POST transaction`);
            }
            urls.forEach((u) => seenUrls.add(u));
            for (const e of b.entry) {
                for (const ref of references(e.resource)) {
                    assert.ok(urls.has(ref), `${name}: ${e.resource.resourceType} references ${ref}, not in the Bundle`);
                }
            }
            const patients = b.entry.filter((e) => e.resource.resourceType === 'Patient');
            assert.equal(patients.length, 1, name);
            const pat = patients[0].resource;
            assert.equal(pat.identifier[0].system, 'urn:dnmbc:synthetic');
            assert.match(pat.birthDate, DATE);
            assert.ok(['female', 'male'].includes(pat.gender));
            assert.ok(pat.name[0].family && pat.name[0].given[0]);
            const patUrl = patients[0].fullUrl;
            for (const e of b.entry) {
                const r = e.resource;
                if (r.resourceType === 'Patient') continue;
                assert.equal(r.subject.reference, patUrl, `${name}: subject`);
                if (r.resourceType === 'Observation') {
                    assert.ok(r.status && r.code && r.code.coding, `${name}: Observation status + code`);
                    assert.match(r.effectiveDateTime, DATE);
                }
                if (r.resourceType === 'Condition') {
                    const ver = r.verificationStatus.coding[0];
                    assert.equal(ver.system, 'http://terminology.hl7.org/CodeSystem/condition-ver-status');
                    if (ver.code === 'entered-in-error') assert.equal(r.clinicalStatus, undefined, 'con-5');
                    else assert.equal(r.clinicalStatus.coding[0].system, 'http://terminology.hl7.org/CodeSystem/condition-clinical');
                    assert.match(r.onsetDateTime, DATE);
                }
            }
        }
    });
}

test('the fixed set has at least 24 patients and covers every code and both palliative states', () => {
    const m = manifestOf(fixed);
    assert.ok(m.length >= 24, `only ${m.length} patients`);
    assert.equal(bundlesOf(fixed).length, m.length);
    for (const rec of RECS) assert.ok(m.some((x) => x.expected.recommendation === rec), `no ${rec}`);
    assert.ok(m.some((x) => x.expected.palliative === true));
    assert.ok(m.some((x) => x.expected.palliative === false));
    const pallRecs = new Set(m.filter((x) => x.expected.palliative).map((x) => x.expected.recommendation));
    assert.ok(pallRecs.size >= 4, `palliative only with ${[...pallRecs]}`);
    const upfront = new Set(m.filter((x) => x.expected.recommendation === 'upfront-systemic').map((x) => x.expected.subtype));
    for (const s of SUBTYPES) assert.ok(upfront.has(s), `no upfront-systemic ${s}`);
    assert.ok(m.filter((x) => x.expected.recommendation === 'not-applicable').length >= 3);
    const benefits = new Set(m.filter((x) => x.expected.recommendation === 'curative-lrt').map((x) => x.detail.benefit));
    assert.ok(benefits.has('high') && benefits.has('moderate'));
    assert.ok(m.some((x) => x.expected.recommendation === 'curative-lrt' && x.detail.ps === 'unverified'));
    for (const x of m) {
        assert.ok(x.why && x.coding, `${x.file}: why and coding`);
        assert.ok(x.file && fixed.has(x.file));
        assert.ok(RECS.includes(x.expected.recommendation));
        assert.ok(SUBTYPES.includes(x.expected.subtype) || x.expected.subtype === 'unknown');
    }
    const ids = m.map((x) => x.identifier.value);
    assert.equal(new Set(ids).size, ids.length, 'identifiers are unique');
});

test('the manifest carries the later entered-in-error and progression changes', () => {
    const m = manifestOf(fixed);
    const eie = m.find((x) => x.laterEnteredInError);
    assert.ok(eie, 'a patient whose metastasis can be marked entered-in-error');
    const l = eie.laterEnteredInError;
    const bundle = JSON.parse(fixed.get(eie.file));
    const target = bundle.entry.find((e) => e.fullUrl === l.fullUrl);
    assert.equal(target.resource.resourceType, 'Condition');
    assert.deepEqual(target.resource.identifier[0], l.identifier);
    assert.equal(l.replacement.verificationStatus.coding[0].code, 'entered-in-error');
    assert.equal(l.replacement.clinicalStatus, undefined);
    assert.notDeepEqual(l.expectedAfter, eie.expected);

    const prog = m.find((x) => x.laterProgression);
    assert.ok(prog, 'a patient to which a progression can be added');
    assert.ok(['curative-lrt', 'continue-systemic'].includes(prog.expected.recommendation));
    assert.equal(prog.laterProgression.expectedAfter.recommendation, 'second-line-systemic');
    const obs = prog.laterProgression.resource;
    assert.equal(obs.resourceType, 'Observation');
    assert.equal(obs.subject.reference, 'Patient/{{PATIENT_ID}}');
    const dates = JSON.parse(fixed.get(prog.file)).entry.map((e) => e.resource.effectiveDateTime).filter(Boolean);
    assert.ok(dates.every((d) => d < obs.effectiveDateTime), 'the progression is the latest assessment');
});

test('random mode spreads over every code and both palliative states, 10-25 resources each', () => {
    const m = manifestOf(random);
    assert.equal(m.length, 60);
    for (const rec of RECS) assert.ok(m.some((x) => x.expected.recommendation === rec), `no ${rec}`);
    assert.ok(m.some((x) => x.expected.palliative) && m.some((x) => !x.expected.palliative));
    const sizes = m.map((x) => x.resources);
    const avg = sizes.reduce((a, b) => a + b, 0) / sizes.length;
    assert.ok(avg >= 10 && avg <= 25, `average ${avg} resources`);
    assert.ok(Math.min(...sizes) >= 6 && Math.max(...sizes) <= 32, `sizes ${Math.min(...sizes)}..${Math.max(...sizes)}`);
});

test('the hand-written oracle agrees with an independent reading of the rules', () => {
    for (const spec of PATIENTS) {
        const got = evaluate(spec);
        const want = spec.expected;
        const label = `patient ${spec.n}`;
        assert.equal(got.recommendation, want.recommendation, `${label}: recommendation`);
        assert.equal(got.palliative, want.palliative, `${label}: palliative`);
        assert.equal(got.subtype, want.subtype, `${label}: subtype`);
        assert.equal(got.benefit, spec.detail.benefit, `${label}: benefit`);
        if (spec.detail.ps) assert.equal(got.ps, spec.detail.ps, `${label}: performance status criterion`);
        if (spec.detail.m1) assert.equal(got.m1, spec.detail.m1, `${label}: M1 subgroup`);
        if (spec.later) {
            const after = evaluate(applyLater(spec));
            for (const k of ['recommendation', 'palliative', 'subtype']) {
                assert.equal(after[k], spec.later.expectedAfter[k], `${label} after the later change: ${k}`);
            }
        }
    }
});

test('random patients get the expected values they were constructed for', () => {
    for (const seed of ['1', '2', 'bench']) {
        for (const spec of randomSpecs(140, seed)) {
            const got = evaluate(spec);
            for (const k of ['recommendation', 'palliative', 'subtype']) {
                assert.equal(got[k], spec.expected[k], `seed ${seed} ${spec.pid}: ${k} (${spec.why})`);
            }
        }
    }
});

test('the committed evaluate fixtures are what fixtures.js writes', () => {
    const files = fixtureFiles();
    for (const [rel, text] of files) {
        const p = path.join(FIXTURES, rel);
        assert.ok(fs.existsSync(p), `${rel} missing: run node tests/synth/fixtures.js`);
        assert.equal(fs.readFileSync(p, 'utf8'), text, `${rel} is stale: run node tests/synth/fixtures.js`);
    }
});

test('evaluate fixtures: at least 8 good Bundles of the three types, each with expected values', () => {
    assert.ok(GOOD.length >= 8);
    const types = new Set();
    for (const [name, n] of GOOD) {
        const b = JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}.json`), 'utf8'));
        types.add(b.type);
        const ids = new Set(b.entry.map((e) => `${e.resource.resourceType}/${e.resource.id}`));
        for (const e of b.entry) {
            assert.ok(e.resource.id, `${name}: resource id`);
            for (const ref of references(e.resource)) assert.ok(ids.has(ref), `${name}: ${ref} does not resolve`);
        }
        const exp = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'expected', `${name}.json`), 'utf8'));
        assert.deepEqual(exp, PATIENTS.find((p) => p.n === n).expected);
    }
    assert.deepEqual([...types].sort(), ['collection', 'searchset', 'transaction']);
});

test('bad fixtures: each one is broken in exactly the advertised way', () => {
    const dir = path.join(FIXTURES, 'bad');
    const expected = JSON.parse(fs.readFileSync(path.join(dir, 'expected.json'), 'utf8'));
    const parse = (f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
    assert.ok(Object.keys(expected).length >= 9);
    assert.throws(() => parse('cut-short.json'), SyntaxError);
    assert.equal(fs.statSync(path.join(dir, 'zero-bytes.json')).size, 0);
    assert.equal(parse('bare-patient.json').resourceType, 'Patient');
    assert.equal(parse('bundle-of-past-versions.json').type, 'history');
    assert.equal(parse('bundle-type-doc.json').type, 'document');
    assert.ok(parse('entry-untyped.json').entry.some((e) => e.resource.resourceType === undefined));
    const obs = (f) => parse(f).entry.map((e) => e.resource).filter((r) => r.resourceType === 'Observation');
    assert.ok(obs('observation-missing-field.json').some((r) => r.code === undefined));
    assert.ok(obs('observation-field-wrong-type.json').some((r) => typeof r.code === 'string'));
    const pats = parse('two-subjects.json').entry.filter((e) => e.resource.resourceType === 'Patient');
    assert.equal(new Set(pats.map((e) => e.resource.id)).size, 2);
    for (const [file, fragment] of Object.entries(expected)) {
        assert.ok(fs.existsSync(path.join(dir, file)), file);
        assert.ok(!file.toLowerCase().includes(fragment.toLowerCase()), `${file} contains its own fragment`);
    }
});

test('README lists every fixed patient with its expected recommendation', () => {
    const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
    for (const p of PATIENTS) {
        const id = `synth-${String(p.n).padStart(2, '0')}`;
        const row = readme.split('\n').find((l) => l.startsWith(`| ${id} |`));
        assert.ok(row, `${id} missing from README`);
        const cells = row.split('|').map((c) => c.trim());
        assert.equal(cells[2], p.expected.recommendation, `${id} recommendation in README`);
        assert.equal(cells[3], p.expected.palliative ? 'yes' : 'no', `${id} palliative in README`);
        assert.equal(cells[4], p.expected.subtype, `${id} subtype in README`);
    }
});
