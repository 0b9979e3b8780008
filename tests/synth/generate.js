#!/usr/bin/env node
'use strict';
/*
 * Write synthetic dnMBC patients as FHIR R4 transaction Bundles.
 *
 *   node tests/synth/generate.js --out DIR [--count N] [--seed S]
 *
 * Without --count: the fixed, hand-designed set of patients.js (the oracle
 * for the integration tests).  With --count: N patients constructed
 * pseudo-randomly from the seed (default "1"), for benchmarks.
 * Output: DIR/patient-XX.json (one transaction Bundle each) and
 * DIR/manifest.json.  Same arguments, byte-identical output.
 */
const fs = require('node:fs');
const path = require('node:path');
const { PATIENTS } = require('./patients');
const { randomSpecs } = require('./random');
const B = require('./build');

const FIXED_SEED = 'fixed';
const RES_ID_SYSTEM = 'urn:dnmbc:synthetic:resource';

function usage(msg) {
    if (msg) process.stderr.write(`generate.js: ${msg}\n`);
    process.stderr.write('usage: node tests/synth/generate.js --out DIR [--count N] [--seed S]\n');
    process.exit(2);
}

function parseArgs(argv) {
    const o = { out: null, count: null, seed: '1' };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const val = () => {
            if (i + 1 >= argv.length) usage(`${a} needs a value`);
            return argv[++i];
        };
        if (a === '--out') o.out = val();
        else if (a === '--count') {
            const v = val();
            if (!/^[1-9][0-9]*$/.test(v)) usage(`--count must be a positive integer, not "${v}"`);
            o.count = Number(v);
        } else if (a === '--seed') {
            o.seed = val();
            if (!/^[A-Za-z0-9_-]{1,32}$/.test(o.seed)) usage('--seed must be 1-32 characters of [A-Za-z0-9_-]');
        } else if (a === '-h' || a === '--help') usage();
        else usage(`unknown argument "${a}"`);
    }
    if (!o.out) usage('--out is required');
    return o;
}

function fileOf(spec) {
    return spec.file || `patient-${String(spec.n).padStart(2, '0')}.json`;
}

/* Resolve the placeholder references of a resource to be written later. */
function standalone(resource, spec) {
    const pid = B.pidOf(spec);
    return JSON.parse(JSON.stringify(resource), (k, v) => {
        if (typeof v !== 'string') return v;
        if (v.startsWith('urn:uuid:')) {
            if (v === `urn:uuid:${B.uuidFor(FIXED_SEED, pid, 'patient')}`) return 'Patient/{{PATIENT_ID}}';
            if (v === `urn:uuid:${B.uuidFor(FIXED_SEED, pid, 'primary')}`) return 'Condition/{{PRIMARY_ID}}';
            throw new Error(`${pid}: standalone resource references ${v}`);
        }
        return v;
    });
}

function laterEntry(spec, bundle) {
    const l = spec.later;
    const pid = B.pidOf(spec);
    if (l.kind === 'entered-in-error') {
        const urn = `urn:uuid:${B.uuidFor(FIXED_SEED, pid, l.key)}`;
        const entry = bundle.entry.find((e) => e.fullUrl === urn);
        if (!entry) throw new Error(`${pid}: no entry ${l.key}`);
        const cond = standalone(entry.resource, spec);
        delete cond.clinicalStatus; /* con-5 */
        cond.verificationStatus = {
            coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', code: 'entered-in-error' }],
        };
        return {
            laterEnteredInError: {
                resourceType: entry.resource.resourceType,
                identifier: { system: RES_ID_SYSTEM, value: `${pid}-${l.key}` },
                fullUrl: urn,
                how: 'Find the Condition by identifier, then PUT this replacement with {{CONDITION_ID}} as its id and {{PATIENT_ID}} filled in (verificationStatus entered-in-error, clinicalStatus removed as con-5 requires).',
                replacement: { resourceType: cond.resourceType, id: '{{CONDITION_ID}}', ...cond },
                expectedAfter: l.expectedAfter,
            },
        };
    }
    if (l.kind === 'progression') {
        const obs = B.standaloneResponse(spec, l.response, 'response-later');
        return {
            laterProgression: {
                how: 'POST this Observation to [base]/Observation after replacing {{PATIENT_ID}} with the server id of the Patient.',
                resource: obs,
                expectedAfter: l.expectedAfter,
            },
        };
    }
    throw new Error(`unknown later kind ${l.kind}`);
}

function generate(opts) {
    const fixed = opts.count === null;
    const specs = fixed ? PATIENTS : randomSpecs(opts.count, opts.seed);
    const seed = fixed ? FIXED_SEED : opts.seed;
    const files = new Map();
    const manifest = [];
    for (const spec of specs) {
        const bundle = B.toTransaction(spec, seed);
        const file = fileOf(spec);
        files.set(file, JSON.stringify(bundle, null, 2) + '\n');
        const m = {
            file,
            identifier: { system: 'urn:dnmbc:synthetic', value: B.pidOf(spec) },
            expected: spec.expected,
        };
        if (spec.detail) m.detail = spec.detail;
        m.why = spec.why;
        m.coding = spec.coding;
        m.resources = bundle.entry.length;
        if (spec.later) Object.assign(m, laterEntry(spec, bundle));
        manifest.push(m);
    }
    files.set('manifest.json', JSON.stringify(manifest, null, 2) + '\n');
    return files;
}

function main() {
    const opts = parseArgs(process.argv.slice(2));
    const files = generate(opts);
    fs.mkdirSync(opts.out, { recursive: true });
    for (const [name, text] of files) fs.writeFileSync(path.join(opts.out, name), text);
    process.stdout.write(`wrote ${files.size - 1} patients and manifest.json to ${opts.out}\n`);
}

if (require.main === module) main();

module.exports = { generate, parseArgs };
