// Helpers of the CDS Hooks / $apply tests: an EHR's signing keys (jose), a
// JWKS served on loopback, the adapter's `serve` listener, and the CDS Hooks
// 2.0 response schema written down from the specification.
'use strict';

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { ROOT, BIN, tmpdir } = require('./helpers');

const jose = require(path.join(ROOT, 'tests/oauth-server/node_modules/jose'));

const PUBLIC_URL = 'https://cds.test.example';

async function makeKeys() {
  const es = await jose.generateKeyPair('ES384', { extractable: true });
  const rs = await jose.generateKeyPair('RS384', { extractable: true, modulusLength: 2048 });
  const other = await jose.generateKeyPair('ES384', { extractable: true });
  const esJwk = { ...(await jose.exportJWK(es.publicKey)), kid: 'ehr-es', alg: 'ES384', use: 'sig' };
  const rsJwk = { ...(await jose.exportJWK(rs.publicKey)), kid: 'ehr-rs', alg: 'RS384', use: 'sig' };
  const otherJwk = { ...(await jose.exportJWK(other.publicKey)), kid: 'web-es', alg: 'ES384' };
  return { es, rs, other, esJwk, rsJwk, otherJwk };
}

// A JWKS on loopback: GET /jwks.json.
function serveJwks(jwks) {
  return new Promise((resolve) => {
    const srv = http.createServer((req, res) => {
      srv.hits = (srv.hits || 0) + 1;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(jwks));
    });
    srv.listen(0, '127.0.0.1', () => resolve({ srv, url: `http://127.0.0.1:${srv.address().port}/jwks.json` }));
  });
}

async function sign(key, { alg = 'ES384', kid = 'ehr-es', iss = 'https://ehr.test.example', aud, exp, iat, jti, jku } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const header = { alg, kid, typ: 'JWT' };
  if (jku) header.jku = jku;
  return new jose.SignJWT({})
    .setProtectedHeader(header)
    .setIssuer(iss)
    .setSubject('ehr-client')
    .setAudience(aud)
    .setIssuedAt(iat === undefined ? now : iat)
    .setExpirationTime(exp === undefined ? now + 300 : exp)
    .setJti(jti || crypto.randomUUID())
    .sign(key);
}

// Start `dnmbc-adapter serve` with cfg (object); resolves { base, proc, cfgPath, dir, logs }.
function startServe(cfg, dir = tmpdir('cds')) {
  const cfgPath = path.join(dir, 'config.json');
  fs.writeFileSync(cfgPath, JSON.stringify(cfg, null, 2), { mode: 0o600 });
  const proc = spawn(BIN, ['serve', '-c', cfgPath, '--listen', '127.0.0.1:0'], {
    env: { ...process.env, DNMBC_LOG_LEVEL: '' }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  const out = { proc, cfgPath, dir, logs: '' };
  return new Promise((resolve, reject) => {
    proc.stderr.on('data', (d) => {
      out.logs += d.toString();
      // the whole line (it names the thread count, which tests check)
      const m = /listening on (http\S*?:\d+) [^\n]*\n/.exec(out.logs);
      if (m && !out.base) {
        out.base = m[1];
        resolve(out);
      }
    });
    proc.on('exit', (code) => { if (!out.base) reject(new Error(`serve exited ${code}: ${out.logs}`)); });
  });
}

function stopServe(s) {
  return new Promise((resolve) => {
    if (!s || s.proc.exitCode !== null) return resolve();
    s.proc.on('exit', () => resolve());
    s.proc.kill('SIGTERM');
  });
}

async function call(base, method, p, { token, body, raw, headers = {} } = {}) {
  const h = { 'content-type': 'application/json', ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  const res = await fetch(`${base}${p}`, { method, headers: h, body: raw !== undefined ? raw : body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  return { status: res.status, json, text, headers: res.headers };
}

// CDS Hooks 2.0 "CDS Service Response" (https://cds-hooks.hl7.org/2.0/):
// the required members and their types, and the enumerations.  Returns a
// list of problems ([] when valid).
function validateCdsResponse(r) {
  const errs = [];
  const isStr = (v) => typeof v === 'string' && v.length > 0;
  if (!r || typeof r !== 'object' || !Array.isArray(r.cards)) return ['cards: required array'];
  r.cards.forEach((c, i) => {
    const at = `cards[${i}]`;
    if (c.uuid !== undefined && !/^[0-9a-f-]{36}$/i.test(c.uuid)) errs.push(`${at}.uuid: not a UUID`);
    if (!isStr(c.summary)) errs.push(`${at}.summary: required string`);
    else if (c.summary.length >= 140) errs.push(`${at}.summary: must be under 140 characters`);
    if (!['info', 'warning', 'critical'].includes(c.indicator)) errs.push(`${at}.indicator: info|warning|critical`);
    if (c.detail !== undefined && typeof c.detail !== 'string') errs.push(`${at}.detail: string (Markdown)`);
    if (!c.source || !isStr(c.source.label)) errs.push(`${at}.source.label: required`);
    if (c.source && c.source.topic && !isStr(c.source.topic.code)) errs.push(`${at}.source.topic: a Coding`);
    if (c.suggestions !== undefined) {
      if (!Array.isArray(c.suggestions)) errs.push(`${at}.suggestions: array`);
      else {
        if (!['at-most-one', 'any'].includes(c.selectionBehavior)) errs.push(`${at}.selectionBehavior: required with suggestions`);
        c.suggestions.forEach((s, j) => {
          if (!isStr(s.label)) errs.push(`${at}.suggestions[${j}].label: required`);
          (s.actions || []).forEach((a, k) => {
            if (!['create', 'update', 'delete'].includes(a.type)) errs.push(`${at}.suggestions[${j}].actions[${k}].type`);
            if ((a.type === 'create' || a.type === 'update') && (!a.resource || !a.resource.resourceType)) errs.push(`${at}.suggestions[${j}].actions[${k}].resource: required for ${a.type}`);
          });
        });
      }
    }
    if (c.overrideReasons !== undefined) {
      if (!Array.isArray(c.overrideReasons)) errs.push(`${at}.overrideReasons: array of Coding`);
      else c.overrideReasons.forEach((o, j) => { if (!isStr(o.code) || !isStr(o.display)) errs.push(`${at}.overrideReasons[${j}]: code and display`); });
    }
    if (c.links !== undefined && !Array.isArray(c.links)) errs.push(`${at}.links: array`);
  });
  return errs;
}

// Time stamps of "now" (CarePlan.created, RiskAssessment.occurrenceDateTime)
// differ between two evaluations: replace recent ones.
function maskNow(v) {
  if (typeof v === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/.test(v) && Math.abs(Date.parse(v) - Date.now()) < 86400e3) return '<now>';
  if (Array.isArray(v)) return v.map(maskNow);
  if (v && typeof v === 'object') {
    const o = {};
    for (const k of Object.keys(v)) o[k] = maskNow(v[k]);
    return o;
  }
  return v;
}

module.exports = { jose, PUBLIC_URL, makeKeys, serveJwks, sign, startServe, stopServe, call, validateCdsResponse, maskNow };
