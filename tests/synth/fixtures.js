#!/usr/bin/env node
'use strict';
/*
 * Write the offline fixtures of tests/fixtures/evaluate/ from the fixed
 * synthetic patients: Bundles as a server would return them (logical ids,
 * plain "Type/id" references; searchset, collection or transaction with PUT)
 * with expected/<name>.json, plus the bad inputs of bad/ with the error
 * substring each must produce (bad/expected.json).
 *
 *   node tests/synth/fixtures.js [--dir DIR]     (re)write the fixtures
 *   node tests/synth/fixtures.js --check         exit 1 if the committed
 *                                                fixtures differ
 */
const fs = require('node:fs');
const path = require('node:path');
const { PATIENTS } = require('./patients');
const B = require('./build');

const DEFAULT_DIR = path.join(__dirname, '..', 'fixtures', 'evaluate');
const BASE = 'http://fhir.example.org/fhir/R4';

/* name -> [patient number, Bundle type] */
const GOOD = [
    ['upfront-hrpos-her2neg-mcode', 1, 'searchset'],
    ['upfront-tnbc-stu2', 2, 'collection'],
    ['upfront-her2pos-inflammatory', 3, 'transaction'],
    ['upfront-hrpos-her2pos-synthea', 4, 'searchset'],
    ['second-line-icdo3', 5, 'searchset'],
    ['second-line-tnbc-palliative', 6, 'collection'],
    ['curative-bone-only-noise', 7, 'searchset'],
    ['curative-ps-unverified', 9, 'transaction'],
    ['curative-palliative-skin', 10, 'collection'],
    ['continue-brain', 11, 'searchset'],
    ['continue-tnbc-responder', 13, 'transaction'],
    ['insufficient-her2-equivocal', 17, 'collection'],
    ['insufficient-no-site-synthea', 18, 'searchset'],
    ['not-applicable-recurrent-t4b', 21, 'collection'],
    ['not-applicable-no-primary', 22, 'searchset'],
    ['upfront-boundary-day-90', 29, 'transaction'],
    ['not-applicable-boundary-day-91', 30, 'collection'],
];

function json(v) {
    return JSON.stringify(v, null, 2) + '\n';
}

function badInputs() {
    const spec = PATIENTS.find((p) => p.n === 1);
    const good = B.toServerBundle(spec, 'searchset', BASE);
    const goodText = json(good);
    const clone = () => JSON.parse(goodText);
    const files = new Map();
    const expected = {};
    const add = (name, text, fragment) => {
        /* the runner matches the fragment anywhere in stderr, which may echo
         * the file name: the name must not contain it */
        if (name.toLowerCase().includes(fragment.toLowerCase())) throw new Error(`${name} contains "${fragment}"`);
        files.set(name, text);
        expected[name] = fragment;
    };

    add('cut-short.json', goodText.slice(0, Math.floor(goodText.length / 2)), 'malformed JSON');
    add('zero-bytes.json', '', 'empty');
    add('bare-patient.json', json(good.entry[0].resource), 'not a Bundle');

    const history = clone();
    history.type = 'history';
    history.entry = history.entry.map((e) => ({
        fullUrl: e.fullUrl,
        resource: e.resource,
        request: { method: 'PUT', url: `${e.resource.resourceType}/${e.resource.id}` },
        response: { status: '200 OK' },
    }));
    add('bundle-of-past-versions.json', json(history), 'history');

    const doc = clone();
    doc.type = 'document';
    doc.identifier = { system: 'urn:dnmbc:synthetic:document', value: 'doc-1' };
    doc.timestamp = '2024-03-01T10:00:00Z';
    doc.entry = doc.entry.map((e) => ({ fullUrl: e.fullUrl, resource: e.resource }));
    add('bundle-type-doc.json', json(doc), 'document');

    const noType = clone();
    delete noType.entry[3].resource.resourceType;
    add('entry-untyped.json', json(noType), 'resourceType');

    const findObs = (b) => b.entry.find((e) => e.resource.resourceType === 'Observation').resource;
    const noCode = clone();
    delete findObs(noCode).code;
    add('observation-missing-field.json', json(noCode), 'code');

    const codeString = clone();
    findObs(codeString).code = '85337-4';
    add('observation-field-wrong-type.json', json(codeString), 'code');

    const two = clone();
    const other = B.toServerBundle(PATIENTS.find((p) => p.n === 2), 'searchset', BASE);
    two.entry.push(other.entry[0]);
    two.total = two.entry.length;
    add('two-subjects.json', json(two), 'distinct Patient');

    files.set('expected.json', json(expected));
    return files;
}

/* Every file of the fixture tree, relative path -> text. */
function fixtureFiles() {
    const files = new Map();
    for (const [name, n, type] of GOOD) {
        const spec = PATIENTS.find((p) => p.n === n);
        if (!spec) throw new Error(`no patient ${n}`);
        files.set(`${name}.json`, json(B.toServerBundle(spec, type, BASE)));
        files.set(`expected/${name}.json`, json(spec.expected));
    }
    for (const [name, text] of badInputs()) files.set(`bad/${name}`, text);
    return files;
}

function main() {
    const args = process.argv.slice(2);
    const check = args.includes('--check');
    const di = args.indexOf('--dir');
    const dir = di >= 0 ? args[di + 1] : DEFAULT_DIR;
    const files = fixtureFiles();
    let stale = 0;
    for (const [rel, text] of files) {
        const p = path.join(dir, rel);
        if (check) {
            const cur = fs.existsSync(p) ? fs.readFileSync(p, 'utf8') : null;
            if (cur !== text) {
                process.stderr.write(`fixtures.js: ${rel} is out of date\n`);
                stale++;
            }
        } else {
            fs.mkdirSync(path.dirname(p), { recursive: true });
            fs.writeFileSync(p, text);
        }
    }
    if (check && stale) process.exit(1);
    if (!check) process.stdout.write(`wrote ${files.size} files to ${dir}\n`);
}

if (require.main === module) main();

module.exports = { fixtureFiles, GOOD };
