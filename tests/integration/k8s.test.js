// Kubernetes manifests (docker/k8s/): valid against the Kubernetes API
// schemas, offline (tests/k8s/validate.js: kubernetes-models and the API
// models of @kubernetes/client-node, installed by `npm ci --prefix
// tests/k8s`), with negative checks that the validator refuses broken
// manifests; what the manifests promise (probes, keys, state, security
// context, shards); and `--shard auto/N` of the real binary taking the
// ordinal from DNMBC_SHARD_INDEX, JOB_COMPLETION_INDEX and the host name.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync, execFileSync } = require('node:child_process');
const h = require('./helpers');

const K8S = path.join(h.ROOT, 'docker/k8s');
const VALIDATOR = path.join(h.ROOT, 'tests/k8s/validate.js');
const MANIFESTS = fs.readdirSync(K8S).filter((f) => f.endsWith('.yaml')).map((f) => path.join(K8S, f));
const haveValidator = fs.existsSync(path.join(h.ROOT, 'tests/k8s/node_modules/kubernetes-models'));
// .ci/run installs the validator and sets DNMBC_REQUIRE_K8S_VALIDATOR=1:
// there a missing validator fails instead of skipping
const needValidator = haveValidator || process.env.DNMBC_REQUIRE_K8S_VALIDATOR === '1' ? false
  : 'tests/k8s/node_modules missing: npm ci --prefix tests/k8s (.ci/run does)';

function yaml() {
  return require(path.join(h.ROOT, 'tests/k8s/node_modules/yaml'));
}

// Every object of every manifest, read as Kubernetes reads YAML (1.1).
function objects() {
  const out = [];
  for (const f of MANIFESTS) {
    for (const d of yaml().parseAllDocuments(fs.readFileSync(f, 'utf8'), { version: '1.1' })) {
      const v = d.toJS();
      if (v) out.push(v);
    }
  }
  return out;
}

function find(kind, name) {
  const o = objects().find((x) => x.kind === kind && (!name || x.metadata.name === name));
  assert.ok(o, `${kind} ${name || ''} in docker/k8s`);
  return o;
}

function validate(files) {
  return spawnSync('node', [VALIDATOR, ...files], { encoding: 'utf8' });
}

test('every manifest in docker/k8s is valid against the Kubernetes API schemas', { skip: needValidator }, () => {
  assert.ok(MANIFESTS.length >= 4, MANIFESTS.join(' '));
  const r = validate(MANIFESTS);
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  assert.match(r.stdout, new RegExp(`${MANIFESTS.length} file\\(s\\) valid`));
});

// Each mutation breaks the StatefulSet in one way the API server refuses.
const broken = [
  ['a misspelt field (strict field validation)', (t) => t.replace('readOnlyRootFilesystem: true', 'readOnlyRootFileSystem: true'), /readOnlyRootFileSystem: unknown field/],
  ['a string where an integer belongs', (t) => t.replace('replicas: 3', 'replicas: "3"'), /replicas must be integer/],
  ['a probe without its port', (t) => t.replace(/( +)path: \/healthz\n +port: http\n/, '$1path: /healthz\n'), /startupProbe\/httpGet must have required property port/],
  ['an unknown kind', (t) => t.replace('kind: StatefulSet', 'kind: StatefulSett'), /unknown apiVersion\/kind apps\/v1\/StatefulSett/],
  ['a wrong apiVersion', (t) => t.replace('apiVersion: apps/v1', 'apiVersion: apps/v2'), /unknown apiVersion\/kind/],
  ['a misplaced field', (t) => t.replace('  serviceName: dnmbc-adapter-shards\n', '  serviceName: dnmbc-adapter-shards\n  fsGroup: 10001\n'), /StatefulSet\.spec\.fsGroup: unknown field/],
  ['broken YAML', (t) => t.replace('spec:\n  serviceName', 'spec:\n serviceName'), /YAML/],
];

test('the validator CLI exits 1 on an invalid manifest and names the problem', { skip: needValidator }, () => {
  const f = path.join(h.tmpdir('k8s'), 'statefulset.yaml');
  fs.writeFileSync(f, broken[0][1](fs.readFileSync(path.join(K8S, 'statefulset.yaml'), 'utf8')));
  const r = validate([...MANIFESTS.filter((m) => !m.endsWith('statefulset.yaml')), f]);
  assert.equal(r.status, 1, `${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /readOnlyRootFileSystem: unknown field/);
  assert.doesNotMatch(r.stdout, /valid\n$/);
});

for (const [name, mutate, expect] of broken) {
  test(`the validator refuses a manifest with ${name}`, { skip: needValidator }, async () => {
    const text = fs.readFileSync(path.join(K8S, 'statefulset.yaml'), 'utf8');
    const bad = mutate(text);
    assert.notEqual(bad, text, 'the mutation applies');
    // in-process (the CLI is run on the real manifests above and below)
    const problems = await require(VALIDATOR).validateText(bad, 'statefulset.yaml');
    assert.ok(problems.some((p) => expect.test(p)), problems.join('\n'));
  });
}

test('the StatefulSet: shards from the ordinal, probes, keys 0400 read-only, state on a volume, non-root, read-only root', { skip: needValidator }, () => {
  const sts = find('StatefulSet', 'dnmbc-adapter');
  const pod = sts.spec.template.spec;
  const c = pod.containers.find((x) => x.name === 'adapter');
  const env = Object.fromEntries(c.env.map((e) => [e.name, e]));
  // N shards = replicas; K from the pod-index label
  const i = c.args.indexOf('--shard');
  assert.equal(c.args[i + 1], 'auto/$(DNMBC_SHARDS)');
  assert.equal(Number(env.DNMBC_SHARDS.value), sts.spec.replicas);
  assert.equal(env.DNMBC_SHARD_INDEX.valueFrom.fieldRef.fieldPath, "metadata.labels['apps.kubernetes.io/pod-index']");
  assert.equal(c.args[0], 'run');
  // probes on the listener's port
  assert.equal(c.livenessProbe.httpGet.path, '/healthz');
  assert.equal(c.readinessProbe.httpGet.path, '/readyz');
  assert.equal(c.ports[0].containerPort, 9464);
  const cm = find('ConfigMap', 'dnmbc-adapter-config');
  const cfg = JSON.parse(cm.data['config.json']);
  assert.equal(cfg.server.listen, '0.0.0.0:9464');
  // the Secret: mode 0400 (octal, as Kubernetes reads it), mounted
  // read-only into the step that copies it; the adapter mounts the copy
  // read-only and never the Secret itself
  const secretVol = pod.volumes.find((v) => v.secret);
  assert.equal(secretVol.secret.defaultMode, 0o400);
  const init = pod.initContainers.find((x) => x.name === 'keys');
  assert.ok(init.volumeMounts.some((m) => m.name === secretVol.name && m.readOnly === true));
  assert.match(init.args.join(' '), /install -m 0400/);
  assert.ok(!c.volumeMounts.some((m) => m.name === secretVol.name), 'the adapter does not mount the Secret');
  const keys = c.volumeMounts.find((m) => m.mountPath === '/run/dnmbc-adapter/keys');
  assert.equal(keys.readOnly, true);
  assert.equal(pod.volumes.find((v) => v.name === keys.name).emptyDir.medium, 'Memory');
  for (const p of [cfg.auth.private_key, cfg.server.notify_secret_file]) assert.ok(p.startsWith('/run/dnmbc-adapter/keys/'), p);
  // the configuration from the ConfigMap, read-only
  const cfgMount = c.volumeMounts.find((m) => m.mountPath === '/etc/dnmbc-adapter');
  assert.equal(cfgMount.readOnly, true);
  assert.equal(pod.volumes.find((v) => v.name === cfgMount.name).configMap.name, 'dnmbc-adapter-config');
  // the state on a persistent volume of its own per shard
  const claim = sts.spec.volumeClaimTemplates[0];
  const stateMount = c.volumeMounts.find((m) => m.name === claim.metadata.name);
  assert.equal(stateMount.mountPath, path.dirname(env.DNMBC_STATE.value));
  assert.ok(!pod.volumes.some((v) => v.name === claim.metadata.name), 'not shadowed by a pod volume');
  // non-root, read-only root filesystem, nothing escalates, in every container
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.ok(pod.securityContext.runAsUser > 0);
  for (const x of [...pod.containers, ...pod.initContainers]) {
    assert.equal(x.securityContext.readOnlyRootFilesystem, true, x.name);
    assert.equal(x.securityContext.allowPrivilegeEscalation, false, x.name);
    assert.deepEqual(x.securityContext.capabilities.drop, ['ALL'], x.name);
  }
  // the Services select these pods
  const svc = find('Service', 'dnmbc-adapter-shards');
  assert.equal(svc.spec.clusterIP, 'None');
  assert.equal(sts.spec.serviceName, svc.metadata.name);
  for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(sts.spec.template.metadata.labels[k], v);
});

test('the backfill: an Indexed Job, `sync --shard auto/N` with N = completions', { skip: needValidator }, () => {
  const job = find('Job', 'dnmbc-adapter-backfill');
  assert.equal(job.spec.completionMode, 'Indexed');
  const c = job.spec.template.spec.containers[0];
  const env = Object.fromEntries(c.env.map((e) => [e.name, e]));
  assert.equal(c.args[0], 'sync');
  assert.equal(c.args[c.args.indexOf('--shard') + 1], 'auto/$(DNMBC_SHARDS)');
  assert.equal(Number(env.DNMBC_SHARDS.value), job.spec.completions);
  assert.equal(env.DNMBC_SHARD_INDEX, undefined, 'K is JOB_COMPLETION_INDEX, set by Kubernetes');
  assert.equal(job.spec.template.spec.securityContext.runAsNonRoot, true);
  for (const x of [...job.spec.template.spec.containers, ...job.spec.template.spec.initContainers]) {
    assert.equal(x.securityContext.readOnlyRootFilesystem, true, x.name);
  }
  assert.equal(job.spec.template.spec.volumes.find((v) => v.secret).secret.defaultMode, 0o400);
});

// --shard auto/N with the real binary against the test server: the same
// patients as the explicit K/N.
let srv;
let work;

function tagsOf(stderr) {
  return [...stderr.matchAll(/sync: patient ([0-9a-f]{12}): /g)].map((m) => m[1]).sort();
}

function dryRun(shard, env, wrap) {
  const args = ['sync', '--dry-run', '--base-url', srv.base, '--state',
    path.join(work, `dry-${Math.random().toString(16).slice(2)}.db`), ...(shard ? ['--shard', shard] : [])];
  const childEnv = { ...process.env, DNMBC_LOG_LEVEL: '', DNMBC_SHARD_INDEX: '', JOB_COMPLETION_INDEX: '', ...env };
  const r = wrap ? spawnSync(wrap[0], [...wrap.slice(1), h.BIN, ...args], { encoding: 'utf8', env: childEnv })
    : spawnSync(h.BIN, args, { encoding: 'utf8', env: childEnv });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, tags: tagsOf(r.stderr || '') };
}

test('--shard auto/N: K from DNMBC_SHARD_INDEX, JOB_COMPLETION_INDEX or the host name, the same patients as K/N', async (t) => {
  work = h.tmpdir('k8s-shard');
  srv = h.startServer();
  t.after(() => h.stopServer(srv));
  const dir = h.tmpdir('k8s-synth');
  execFileSync('node', [path.join(h.ROOT, 'tests/synth/generate.js'), '--out', dir, '--count', '24', '--seed', '18']);
  const files = fs.readdirSync(dir).filter((f) => f.startsWith('patient-')).map((f) => path.join(dir, f));
  execFileSync('node', [path.join(h.ROOT, 'tests/fhir-server/load.js'), '--base', srv.base, '--quiet', ...files]);

  const all = dryRun(null, {});
  assert.equal(all.status, 0, all.stderr);
  assert.ok(all.tags.length > 12, all.stderr);
  const explicit = [0, 1, 2].map((k) => dryRun(`${k}/3`, {}));
  for (const r of explicit) assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(explicit.flatMap((r) => r.tags).sort(), all.tags, 'the explicit shards cover the cohort');
  assert.ok(explicit.every((r) => r.tags.length > 0), 'every shard has patients');

  let r = dryRun('auto/3', { DNMBC_SHARD_INDEX: '1' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.tags, explicit[1].tags);
  assert.match(r.stderr, /--shard auto\/3: shard 1\/3 from DNMBC_SHARD_INDEX/);
  // an Indexed Job's pod
  r = dryRun('auto/3', { JOB_COMPLETION_INDEX: '2' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.tags, explicit[2].tags);
  assert.match(r.stderr, /shard 2\/3 from JOB_COMPLETION_INDEX/);
  // the pod-index label missing (older cluster): "" is unset
  r = dryRun('auto/3', { DNMBC_SHARD_INDEX: '', JOB_COMPLETION_INDEX: '0' });
  assert.deepEqual(r.tags, explicit[0].tags);

  // a replica beyond N, or garbage: refused before any request, naming the source
  r = dryRun('auto/3', { DNMBC_SHARD_INDEX: '3' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /DNMBC_SHARD_INDEX gives '3', not a shard number 0\.\.2/);
  assert.deepEqual(r.tags, []);
  r = dryRun('auto/3', { JOB_COMPLETION_INDEX: '1x' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /JOB_COMPLETION_INDEX gives '1x'/);

  // a StatefulSet pod's host name (a UTS namespace of its own; needs root)
  // (probed with exactly what the checks below do: a new UTS namespace and
  // hostname(1) setting the name inside it)
  const probe = spawnSync('unshare', ['--uts', 'sh', '-c', 'hostname dnmbc-probe-0 && test "$(hostname)" = dnmbc-probe-0'],
    { encoding: 'utf8' });
  if (probe.status !== 0) {
    t.diagnostic(`host-name source not exercised: unshare --uts with hostname(1) is not possible here (${probe.error || probe.stderr})`);
    return;
  }
  r = dryRun('auto/3', {}, ['unshare', '--uts', 'sh', '-c', 'hostname dnmbc-adapter-2 && exec "$@"', 'sh']);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.tags, explicit[2].tags);
  assert.match(r.stderr, /shard 2\/3 from host name/);
  r = dryRun('auto/3', {}, ['unshare', '--uts', 'sh', '-c', 'hostname worker && exec "$@"', 'sh']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /no ordinal/);
});
