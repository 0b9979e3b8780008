// make bench-cds, step 1: an EHR's key and JWK Set, the adapter's
// configuration, a patient-view request with full prefetch for a patient
// with 200 resources, a $apply Parameters with the same data, and N signed
// tokens per endpoint (each jti is accepted once, so every request needs
// its own).  Usage: node gen.js DIR N.  BENCH_CDS_ALG: the EHR's signing
// algorithm, ES384 (default) or RS384 (RSA 2048), the two the service takes.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');

const ROOT = path.resolve(__dirname, '..', '..', '..');
const jose = require(path.join(ROOT, 'tests/oauth-server/node_modules/jose'));
const [dir, nArg] = process.argv.slice(2);
const N = Number(nArg || 20000);
const ISS = 'https://bench-ehr.example';
const PUBLIC = 'https://cds.bench.example';
const SERVICE = '/cds-services/dnmbc-local-therapy';
const APPLY = '/fhir/PlanDefinition/dnmbc-local-therapy/$apply';
const ALG = process.env.BENCH_CDS_ALG || 'ES384';
if (ALG !== 'ES384' && ALG !== 'RS384') throw new Error(`BENCH_CDS_ALG: ES384 or RS384, not ${ALG}`);

(async () => {
  const { publicKey, privateKey } = await jose.generateKeyPair(ALG, { extractable: true });
  const jwk = { ...(await jose.exportJWK(publicKey)), kid: 'bench', alg: ALG };
  fs.writeFileSync(path.join(dir, 'jwks.json'), JSON.stringify({ keys: [jwk] }));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({
    // 64 clients from one address: the per-address limit (16) would refuse 48
    server: { public_url: PUBLIC, max_connections_per_client: 128 },
    // every one of 64 clients answered: with a bound under 64, the clients
    // over it get 503 and, as wrk ignores Retry-After, ask again at once, so
    // the figures would mostly measure refusals
    cds: { clients: [{ iss: ISS, jwks_file: path.join(dir, 'jwks.json') }], max_body_kb: 1024, max_concurrent: 128 },
    mappings: { dir: path.join(ROOT, 'mappings') },
    state: { path: path.join(dir, 'state.db') },
    log: { level: 'warn' },
  }), { mode: 0o600 });

  // 200 resources: a curative-lrt fixture patient, padded with vital signs
  // (unmapped codes, as a real chart has) and repeated ECOG scores.
  const fix = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests/fixtures/evaluate/curative-palliative-skin.json'), 'utf8'));
  const rs = fix.entry.map((e) => e.resource);
  const pid = rs.find((r) => r.resourceType === 'Patient').id;
  for (let i = 0; rs.length < 200; i++) {
    rs.push({
      resourceType: 'Observation', id: `${pid}-vs-${i}`, status: 'final',
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
      code: { coding: [{ system: 'http://loinc.org', code: i % 2 ? '8867-4' : '29463-7', display: i % 2 ? 'Heart rate' : 'Body weight' }] },
      subject: { reference: `Patient/${pid}` },
      effectiveDateTime: new Date(Date.UTC(2021, 0, 1 + i)).toISOString().slice(0, 10),
      valueQuantity: i % 2 ? { value: 60 + (i % 30), unit: '/min' } : { value: 60 + (i % 10), unit: 'kg' },
    });
  }
  const set = (t) => ({ resourceType: 'Bundle', type: 'searchset', entry: rs.filter((r) => r.resourceType === t).map((resource) => ({ resource })) });
  fs.writeFileSync(path.join(dir, 'hook.json'), JSON.stringify({
    hook: 'patient-view', hookInstance: crypto.randomUUID(), context: { userId: 'Practitioner/1', patientId: pid },
    prefetch: { patient: rs[0], conditions: set('Condition'), observations: set('Observation') },
  }));
  fs.writeFileSync(path.join(dir, 'apply.json'), JSON.stringify({
    resourceType: 'Parameters',
    parameter: [{ name: 'data', resource: { resourceType: 'Bundle', type: 'collection', entry: rs.map((resource) => ({ resource })) } }],
  }));
  const now = Math.floor(Date.now() / 1000);
  for (const [name, p] of [['hook', SERVICE], ['apply', APPLY]]) {
    const out = [];
    for (let i = 0; i < N; i++) {
      out.push(await new jose.SignJWT({}).setProtectedHeader({ alg: ALG, kid: 'bench' }).setIssuer(ISS)
        .setAudience(`${PUBLIC}${p}`).setIssuedAt(now).setExpirationTime(now + 3000).setJti(`${name}-${i}-${crypto.randomUUID()}`).sign(privateKey));
    }
    fs.writeFileSync(path.join(dir, `tokens-${name}.txt`), `${out.join('\n')}\n`);
  }
  process.stdout.write(`${rs.length}\n`);
})();
