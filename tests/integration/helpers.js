// Shared helpers for the integration tests: start/stop the test FHIR server
// through tests/lib/fhir-server.sh, talk FHIR to it, and run the adapter.
'use strict';

const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'dnmbc-adapter');
const CANONICAL = 'https://dnmbc-adapter.example.org/fhir';

function tmpdir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `dnmbc-${prefix}-`));
}

function startServer() {
  const dir = tmpdir('server');
  const base = execFileSync(path.join(ROOT, 'tests/lib/fhir-server.sh'), ['start', dir], {
    encoding: 'utf8',
  }).trim().split('\n').pop();
  return { dir, base };
}

function stopServer(srv) {
  if (srv) spawnSync(path.join(ROOT, 'tests/lib/fhir-server.sh'), ['stop', srv.dir]);
}

async function fhir(base, method, url, body) {
  const res = await fetch(url.startsWith('http') ? url : `${base}/${url}`, {
    method,
    headers: { accept: 'application/fhir+json', 'content-type': 'application/fhir+json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  return { status: res.status, json, text };
}

// Every resource of a search, following next links.
async function searchAll(base, query) {
  let url = `${base}/${query}`;
  const out = [];
  for (let guard = 0; url && guard < 1000; guard++) {
    const r = await fhir(base, 'GET', url);
    if (r.status !== 200) throw new Error(`GET ${query}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
    for (const e of r.json.entry || []) if (e.resource) out.push(e.resource);
    const next = (r.json.link || []).find((l) => l.relation === 'next');
    url = next ? next.url : null;
  }
  return out;
}

function runAdapter(args, opts = {}) {
  const r = spawnSync(BIN, args, {
    encoding: 'utf8',
    input: opts.input,
    env: { ...process.env, DNMBC_LOG_LEVEL: '', ...(opts.env || {}) },
    maxBuffer: 64 * 1024 * 1024,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function generateSynth() {
  const dir = tmpdir('synth');
  execFileSync('node', [path.join(ROOT, 'tests/synth/generate.js'), '--out', dir]);
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  return { dir, manifest };
}

function loadSynth(base, dir) {
  execFileSync('node', [path.join(ROOT, 'tests/fhir-server/load.js'), '--base', base, dir], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

function idSystem(type) {
  return `${CANONICAL}/identifier/${type.toLowerCase()}`;
}

function categoryCodes(plan) {
  const codes = [];
  for (const c of plan.category || []) for (const x of c.coding || []) codes.push(x.code);
  return codes;
}

module.exports = {
  ROOT, BIN, CANONICAL, tmpdir, startServer, stopServer, fhir, searchAll, runAdapter,
  generateSynth, loadSynth, idSystem, categoryCodes,
};
