// Packaging (issue #6): `make install DESTDIR=… PREFIX=…` lays out the
// binary, man page, mapping tables and systemd unit; the man page renders
// without warnings; the unit passes `systemd-analyze verify`; the
// Dockerfile's HEALTHCHECK command, run here, answers for a live listener;
// compose.yaml is resolved by the Compose client this machine has. Checks
// whose tool is missing are skipped with the reason.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const h = require('./helpers');

let dest;
const PREFIX = '/usr';

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

test.before(() => {
  dest = h.tmpdir('install');
  const r = spawnSync('make', ['--no-print-directory', '-s', 'install', `DESTDIR=${dest}`, `PREFIX=${PREFIX}`],
    { cwd: h.ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});

test('make install lays out binary, man page, mappings and unit under DESTDIR', () => {
  const bin = path.join(dest, 'usr/bin/dnmbc-adapter');
  assert.ok(fs.statSync(bin).mode & 0o111, 'binary is executable');
  assert.ok(fs.existsSync(path.join(dest, 'usr/share/man/man1/dnmbc-adapter.1')));
  const shipped = fs.readdirSync(path.join(h.ROOT, 'mappings')).filter((f) => f.endsWith('.json')).sort();
  const installed = fs.readdirSync(path.join(dest, 'usr/share/dnmbc-adapter/mappings')).sort();
  assert.deepEqual(installed, shipped);
  const unit = fs.readFileSync(path.join(dest, 'usr/lib/systemd/system/dnmbc-adapter.service'), 'utf8');
  assert.match(unit, /^ExecStart=\/usr\/bin\/dnmbc-adapter run /m);
  assert.match(unit, /^ReadOnlyPaths=\/usr\/share\/dnmbc-adapter\/mappings$/m);
  // the installed binary's default mappings directory is the installed one
  let r = spawnSync(bin, ['-n'], { encoding: 'utf8', cwd: dest });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /\/usr\/share\/dnmbc-adapter\/mappings/);
  r = spawnSync(bin, ['-n', '--mappings', path.join(dest, 'usr/share/dnmbc-adapter/mappings')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /configuration OK/);
});

test('man -l renders the page without warnings', (t) => {
  if (!have('man')) return t.skip('man is not installed');
  const page = path.join(dest, 'usr/share/man/man1/dnmbc-adapter.1');
  const r = spawnSync('man', ['--warnings', '-l', page], { encoding: 'utf8', env: { ...process.env, MANWIDTH: '80', MAN_KEEP_FORMATTING: '' } });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '', 'no groff warnings');
  for (const word of ['SYNOPSIS', '--listen', '/metrics', '/notify', 'server.listen', 'EXIT STATUS']) {
    assert.ok(r.stdout.includes(word), `the page mentions ${word}`);
  }
});

test('the installed systemd unit passes systemd-analyze verify', (t) => {
  if (!have('systemd-analyze')) return t.skip('systemd-analyze is not installed');
  // verify checks that ExecStart is executable: point it at the DESTDIR copy
  const unit = fs.readFileSync(path.join(dest, 'usr/lib/systemd/system/dnmbc-adapter.service'), 'utf8');
  const dir = h.tmpdir('unit');
  const file = path.join(dir, 'dnmbc-adapter.service');
  fs.writeFileSync(file, unit.replaceAll('/usr/bin/dnmbc-adapter', path.join(dest, 'usr/bin/dnmbc-adapter')));
  let r = spawnSync('systemd-analyze', ['verify', '--man=no', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.trim(), '', r.stderr);
  // and the check can fail: a misspelt directive is reported
  fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('NoNewPrivileges=', 'NoNewPrivilege='));
  r = spawnSync('systemd-analyze', ['verify', '--man=no', file], { encoding: 'utf8' });
  assert.match(r.stderr, /NoNewPrivilege/);
});

test('the Dockerfile HEALTHCHECK command answers for a live listener', async (t) => {
  if (!have('bash')) return t.skip('bash is not installed');
  const dockerfile = fs.readFileSync(path.join(h.ROOT, 'docker/Dockerfile'), 'utf8');
  const m = dockerfile.match(/^HEALTHCHECK[^\n]*\\\n\s*CMD (\[.*\])$/m);
  assert.ok(m, 'a HEALTHCHECK in exec form');
  const argv = JSON.parse(m[1]);
  const cfg = JSON.parse(fs.readFileSync(path.join(h.ROOT, 'docker/config.example.json'), 'utf8'));
  const port = cfg.server.listen.split(':').pop();
  assert.ok(argv[2].includes(`/dev/tcp/127.0.0.1/${port}`), 'the check asks the port the example configuration listens on');
  assert.match(dockerfile, /^USER 10001:10001$/m);
  assert.match(dockerfile, /^FROM debian:\$\{DEBIAN_SUITE\}-slim AS runtime$/m);

  // nothing listening: the check fails
  const free = await new Promise((res) => {
    const s = require('node:net').createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
  });
  const withPort = (p) => argv.map((a) => a.replace(`/dev/tcp/127.0.0.1/${port}`, `/dev/tcp/127.0.0.1/${p}`));
  let r = spawnSync(argv[0], withPort(free).slice(1), { encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  // a running adapter (its FHIR server unreachable: /healthz is liveness only)
  const state = path.join(h.tmpdir('hc'), 'state.db');
  const child = spawn(h.BIN, ['run', '--base-url', `http://127.0.0.1:${free}/fhir`, '--state', state,
    '--listen', `127.0.0.1:${free}`], { env: { ...process.env, DNMBC_LOG_LEVEL: '' } });
  let err = '';
  child.stderr.on('data', (b) => { err += b; });
  try {
    const t0 = Date.now();
    while (!/listening on/.test(err) && Date.now() - t0 < 20000) await new Promise((res) => setTimeout(res, 50));
    assert.match(err, /listening on http:\/\/127\.0\.0\.1:/);
    r = spawnSync(argv[0], withPort(free).slice(1), { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  } finally {
    child.kill('SIGTERM');
    await new Promise((res) => child.on('exit', res));
  }
});

test('compose.yaml is resolved by docker-compose config', (t) => {
  let cmd = null;
  if (have('docker') && spawnSync('docker', ['compose', 'version']).status === 0) cmd = ['docker', 'compose'];
  else if (have('docker-compose')) cmd = ['docker-compose'];
  if (!cmd) return t.skip('no Compose client');
  let file = path.join(h.ROOT, 'docker/compose.yaml');
  const text = fs.readFileSync(file, 'utf8');
  const v1 = cmd[0] === 'docker-compose' && /version 1\./.test(spawnSync('docker-compose', ['version', '--short'], { encoding: 'utf8' }).stdout + spawnSync('docker-compose', ['version'], { encoding: 'utf8' }).stdout);
  const args = [];
  if (v1) {
    // Compose v1 (Debian 12's docker-compose 1.29) predates the top-level
    // `name:` of the Compose Specification: check the rest of the file.
    file = path.join(h.tmpdir('compose'), 'compose.yaml');
    fs.writeFileSync(file, text.replace(/^name: .*\n/m, ''));
    args.push('--project-directory', path.join(h.ROOT, 'docker'), '-p', 'dnmbc-adapter');
  }
  const r = spawnSync(cmd[0], [...cmd.slice(1), '-f', file, ...args, 'config'], { encoding: 'utf8', cwd: path.join(h.ROOT, 'docker') });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /hapiproject\/hapi/);
  assert.match(r.stdout, /service_completed_successfully/);
  assert.match(r.stdout, /dockerfile: docker\/Dockerfile|Dockerfile/);
});
