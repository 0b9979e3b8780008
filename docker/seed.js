#!/usr/bin/env node
'use strict';
/*
 * The one-shot seed job of docker/compose.yaml.
 *
 *   node docker/seed.js --base URL [--wait SECONDS] [--count N] [--seed S]
 *
 * 1. waits until URL/metadata answers with a CapabilityStatement (the HAPI
 *    image has no shell or curl for a compose healthcheck, so the job waits
 *    itself; default 300 s, HAPI's first start takes a minute or two);
 * 2. writes the synthetic patients with tests/synth/generate.js into a
 *    temporary directory (--count/--seed are passed on);
 * 3. asks the server, per patient, whether a Patient with the synthetic
 *    identifier of the manifest is already there, and loads only the missing
 *    ones with tests/fhir-server/load.js, so that running the job again
 *    (every `docker compose up` does) duplicates nothing.
 *
 * Node.js 20 or newer, built-in modules only (nothing to install).
 * Exit status: 0 done, 1 server not ready or a load failed, 2 usage.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const REPO = path.resolve(__dirname, '..');
const GENERATE = path.join(REPO, 'tests', 'synth', 'generate.js');
const LOAD = path.join(REPO, 'tests', 'fhir-server', 'load.js');

function usage(msg) {
    if (msg) process.stderr.write(`seed.js: ${msg}\n`);
    process.stderr.write('usage: node docker/seed.js --base URL [--wait SECONDS] [--count N] [--seed S]\n');
    process.exit(2);
}

function parseArgs(argv) {
    const o = { base: null, wait: 300, gen: [] };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const val = () => {
            if (i + 1 >= argv.length) usage(`${a} needs a value`);
            return argv[++i];
        };
        if (a === '--base') o.base = val().replace(/\/+$/, '');
        else if (a === '--wait') {
            const v = val();
            if (!/^[0-9]+$/.test(v)) usage(`--wait must be a number of seconds, not "${v}"`);
            o.wait = Number(v);
        } else if (a === '--count' || a === '--seed') o.gen.push(a, val());
        else if (a === '-h' || a === '--help') usage();
        else usage(`unknown argument "${a}"`);
    }
    if (!o.base) usage('--base is required');
    if (!/^https?:\/\//.test(o.base)) usage('--base must be an http(s) URL');
    return o;
}

function log(msg) {
    process.stderr.write(`seed.js: ${msg}\n`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function getJson(url, timeoutMs) {
    const res = await fetch(url, {
        headers: { Accept: 'application/fhir+json' },
        signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let body;
    try {
        body = JSON.parse(text);
    } catch {
        body = null;
    }
    return { status: res.status, body };
}

async function waitForServer(base, seconds) {
    const deadline = Date.now() + seconds * 1000;
    let last = '';
    let tries = 0;
    for (;;) {
        tries += 1;
        try {
            const r = await getJson(`${base}/metadata`, 10000);
            if (r.status === 200 && r.body && r.body.resourceType === 'CapabilityStatement') {
                log(`${base} is up (FHIR ${r.body.fhirVersion || '?'}, after ${tries} tries)`);
                return true;
            }
            last = `HTTP ${r.status}`;
        } catch (err) {
            last = err.cause ? err.cause.code || err.cause.message : err.message;
        }
        if (Date.now() >= deadline) {
            log(`${base}/metadata did not answer within ${seconds} s (last: ${last})`);
            return false;
        }
        if (tries === 1 || tries % 15 === 0) log(`waiting for ${base}/metadata (${last})`);
        await sleep(2000);
    }
}

async function present(base, identifier) {
    const q = encodeURIComponent(`${identifier.system}|${identifier.value}`);
    const r = await getJson(`${base}/Patient?identifier=${q}&_count=1`, 30000);
    if (r.status !== 200 || !r.body || r.body.resourceType !== 'Bundle') {
        throw new Error(`search for ${identifier.value}: HTTP ${r.status}`);
    }
    return Array.isArray(r.body.entry) && r.body.entry.length > 0;
}

async function main() {
    const opts = parseArgs(process.argv.slice(2));
    if (!(await waitForServer(opts.base, opts.wait))) process.exit(1);

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dnmbc-seed-'));
    try {
        const gen = spawnSync(process.execPath, [GENERATE, '--out', dir, ...opts.gen], {
            stdio: ['ignore', 'ignore', 'inherit'],
        });
        if (gen.status !== 0) {
            log(`generate.js failed (exit ${gen.status})`);
            process.exitCode = 1;
            return;
        }
        const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
        const todo = [];
        for (const m of manifest) {
            if (!(await present(opts.base, m.identifier))) todo.push(path.join(dir, m.file));
        }
        const have = manifest.length - todo.length;
        if (todo.length === 0) {
            log(`all ${manifest.length} synthetic patients are already on the server; nothing loaded`);
            return;
        }
        log(`loading ${todo.length} synthetic patients (${have} already there)`);
        const load = spawnSync(process.execPath, [LOAD, '--base', opts.base, ...todo], { stdio: 'inherit' });
        if (load.status !== 0) {
            log(`load.js failed (exit ${load.status})`);
            process.exitCode = 1;
        }
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

main().catch((err) => {
    log(err.message);
    process.exit(1);
});
