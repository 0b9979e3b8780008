// Runs the C FHIR-client check (tests/integration/fhir_client_check.c)
// against the test FHIR server: paging, POST _search, conditional update,
// error diagnostics, fault injection, body cap, closed port.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const h = require('./helpers');

test('the C FHIR client passes its checks against the test server', () => {
  const srv = h.startServer();
  try {
    const r = spawnSync(path.join(h.ROOT, 'build/fhir_client_check'), [srv.base], { encoding: 'utf8', timeout: 120000 });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /\b(\d+) passed, 0 failed/);
  } finally {
    h.stopServer(srv);
  }
});
