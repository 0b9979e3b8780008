// Shared by the integration tests that run `dnmbc-adapter run --listen`
// against the test FHIR server (ops, listener, localfaults, metrics-lint,
// trace): polling without timed assertions, the daemon's start and stop,
// and Subscription notifications.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const h = require('./helpers');

function sleep(ms) {
  return new Promise((res) => setTimeout(res, ms));
}

// Polls fn until it returns a truthy value and returns that; throws after
// limitMs (a bound against hanging on a loaded machine, not a timing
// assertion).
async function waitFor(what, fn, limitMs = 60000) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > limitMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

// `run --listen 127.0.0.1:0` with cfg (written to dir/cfg.json) against the
// FHIR server at base, the state in dir; resolves once it listens, with
// { child, err (its stderr so far), port, exited (a promise of the exit
// code) }.
async function startDaemon(dir, base, cfg) {
  const cfgFile = path.join(dir, 'cfg.json');
  fs.writeFileSync(cfgFile, JSON.stringify(cfg), { mode: 0o600 });
  const child = spawn(h.BIN, ['run', '--config', cfgFile, '--base-url', base, '--state',
    path.join(dir, 'state.db'), '--listen', '127.0.0.1:0'], { env: { ...process.env, DNMBC_LOG_LEVEL: '' } });
  const d = { child, err: '', port: 0 };
  child.stderr.on('data', (b) => { d.err += b; });
  d.exited = new Promise((res) => child.on('exit', (c) => res(c)));
  const m = await waitFor('the listener', () => d.err.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/)
    || (d.child.exitCode !== null && Promise.reject(new Error(`the daemon exited: ${d.err}`))));
  d.port = Number(m[1]);
  return d;
}

async function stopDaemon(d) {
  if (d && d.child.exitCode === null) {
    d.child.kill('SIGTERM');
    await d.exited;
  }
}

// A notification secret file (0600) in dir; returns its path.
function secretFile(dir, secret) {
  const f = path.join(dir, 'secret');
  fs.writeFileSync(f, `${secret}\n`, { mode: 0o600 });
  return f;
}

// Marks every Condition of the patient entered-in-error: the patient is
// then not applicable and the adapter revokes the plan. Returns the last
// Condition written.
async function withdrawConditions(base, pid) {
  const conds = await h.searchAll(base, `Condition?subject=Patient/${pid}`);
  let last;
  for (const c of conds) {
    delete c.clinicalStatus; // con-5: no clinicalStatus when entered-in-error
    c.verificationStatus = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', code: 'entered-in-error' }] };
    const r = await h.fhir(base, 'PUT', `Condition/${c.id}`, c);
    assert.equal(r.status, 200, r.text);
    last = r.json;
  }
  return last;
}

// A Subscriptions R5 Backport notification Bundle of the FHIR server at
// base: the SubscriptionStatus of `type` with extraParams, then entries.
function backportBundle(base, type, extraParams, entries) {
  return {
    resourceType: 'Bundle', type: 'history', timestamp: new Date().toISOString(),
    entry: [{
      fullUrl: 'urn:uuid:2d5afc69-6ef2-420f-a8d1-8500c99eb96c',
      resource: {
        resourceType: 'Parameters',
        parameter: [
          { name: 'subscription', valueReference: { reference: `${base}/Subscription/dnmbc` } },
          { name: 'topic', valueCanonical: 'http://example.org/SubscriptionTopic/condition-changes' },
          { name: 'status', valueCode: 'active' },
          { name: 'type', valueCode: type },
          ...extraParams,
        ],
      },
      request: { method: 'GET', url: `${base}/Subscription/dnmbc/$status` },
      response: { status: '200' },
    }, ...entries],
  };
}

// The event numbering parameters of notification number n.
function eventParams(n) {
  return [
    { name: 'events-since-subscription-start', valueString: String(n) },
    { name: 'notification-event', part: [{ name: 'event-number', valueString: String(n) }] },
  ];
}

module.exports = {
  sleep, waitFor, startDaemon, stopDaemon, secretFile, withdrawConditions, backportBundle, eventParams,
};
