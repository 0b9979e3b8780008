'use strict';
// Test helpers: start server.js as a child process on an ephemeral port and
// talk to it with fetch.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const SERVER = path.join(__dirname, '..', 'server.js');
const FHIR_JSON = 'application/fhir+json';

async function startServer(extraArgs = [], { scheme = 'http' } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fhir-test-'));
  const portFile = path.join(dir, 'port');
  const child = spawn(process.execPath, [SERVER, '--port', '0', '--port-file', portFile, '--quiet', ...extraArgs], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  // Never leave a server behind, even if the test process dies early.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  child.once('exit', () => process.removeListener('exit', killOnExit));
  const deadline = Date.now() + 30000;
  while (!fs.existsSync(portFile)) {
    if (child.exitCode !== null) {
      throw new Error('server exited: ' + stderr);
    }
    if (Date.now() > deadline) {
      child.kill();
      throw new Error('server did not start: ' + stderr);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const port = Number(fs.readFileSync(portFile, 'utf8').trim());
  const origin = `${scheme}://127.0.0.1:${port}`;
  return {
    port,
    origin,
    base: origin + '/fhir/R4',
    dir,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// Sends a request; resolves to { status, headers, body } with body parsed
// as JSON when there is one.
async function request(method, url, body, headers = {}) {
  const init = { method, headers: { Accept: FHIR_JSON, ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    if (!init.headers['Content-Type']) {
      init.headers['Content-Type'] = FHIR_JSON;
    }
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let json;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
  }
  return { status: res.status, headers: res.headers, body: json };
}

function patient(identifierValue, extra = {}) {
  return {
    resourceType: 'Patient',
    identifier: [{ system: 'urn:test:mrn', value: identifierValue }],
    name: [{ family: 'Test', given: [identifierValue] }],
    gender: 'female',
    birthDate: '1960-01-01',
    ...extra,
  };
}

function observation(subjectRef, code, value) {
  return {
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code }] },
    subject: { reference: subjectRef },
    valueQuantity: { value, unit: '%' },
  };
}

function condition(subjectRef, code) {
  return {
    resourceType: 'Condition',
    code: { coding: [{ system: 'http://snomed.info/sct', code }] },
    subject: { reference: subjectRef },
  };
}

// A transaction Bundle like the synthetic-patient generator's: a Patient and
// its Conditions and Observations, linked through urn:uuid fullUrls.
function patientBundle(mrn, nConditions = 2, nObservations = 3) {
  const { randomUUID } = require('node:crypto');
  const pUrn = 'urn:uuid:' + randomUUID();
  const entry = [{ fullUrl: pUrn, resource: patient(mrn), request: { method: 'POST', url: 'Patient' } }];
  for (let i = 0; i < nConditions; i++) {
    entry.push({
      fullUrl: 'urn:uuid:' + randomUUID(),
      resource: condition(pUrn, String(100000 + i)),
      request: { method: 'POST', url: 'Condition' },
    });
  }
  for (let i = 0; i < nObservations; i++) {
    entry.push({
      fullUrl: 'urn:uuid:' + randomUUID(),
      resource: observation(pUrn, '85319-2', i),
      request: { method: 'POST', url: 'Observation' },
    });
  }
  return { resourceType: 'Bundle', type: 'transaction', entry };
}

module.exports = { startServer, request, patient, observation, condition, patientBundle, FHIR_JSON };
