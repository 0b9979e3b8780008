// Local faults (the state file, files, disk) against the bundled test FHIR
// server: a state write that fails stops the run and the summary matches
// what the server holds; private files are created 0600 and readable key and
// secret files are refused the same way by `-n` and by a run; a damaged or
// read-only state file is refused at start (exit 2); a state directory
// removed under `run` is logged and makes /readyz unready, with no further
// writes; a FIFO in the mappings directory is refused, not waited on; an
// outbox replay does not count a patient twice.
//
// The full disk is a small tmpfs when the test runs as root and may mount;
// otherwise the same write failure comes from a file size limit (ulimit -f:
// the kernel refuses the write with EFBIG where a full disk gives ENOSPC).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./helpers');
const { waitFor } = require('./daemon-lib');
const R = require('./robust-lib');

const COUNT = 16;
let env;
let work;
const mounts = [];

test.before(() => {
  env = R.loadRandom(COUNT, '17');
  work = h.tmpdir('localfaults');
});

test.after(() => {
  for (const m of mounts) spawnSync('umount', ['-l', m]);
  h.stopServer(env && env.srv);
});

// A config file with its own output base: every patient needs writes again.
function config(name, extra = {}) {
  const dir = path.join(work, name);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify({
    output: { canonical_base: `https://${name}.example.org/fhir` }, ...extra }));
  return { dir, file, canonical: `https://${name}.example.org/fhir` };
}

function isRoot() {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

// A small tmpfs at dir (root only); false when it cannot be mounted.
function tmpfs(dir, size) {
  if (!isRoot()) return false;
  fs.mkdirSync(dir, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  if (r.status !== 0) return false;
  mounts.push(dir);
  return true;
}

// The adapter through sh, for a umask or a file size limit.
function runSh(prelude, args) {
  const quoted = [h.BIN, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const r = spawnSync('sh', ['-c', `${prelude}; exec ${quoted}`], {
    encoding: 'utf8', env: { ...process.env, DNMBC_LOG_LEVEL: '' }, maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// Our CarePlans on the server, by patient reference.
async function plansOnServer(canonical) {
  const by = await R.ours(env.srv.base, 'CarePlan', canonical);
  return Object.keys(by).length;
}

test('a state file that cannot be written stops the run; the summary counts what the server holds', async () => {
  const c = config('fulldisk');
  const dir = path.join(c.dir, 'state');
  let r;
  let how;
  if (tmpfs(dir, '512k')) {
    // leave about 160 KiB: the schema and a few patients fit, not 30
    fs.writeFileSync(path.join(dir, 'filler'), Buffer.alloc(352 * 1024));
    how = 'tmpfs';
    r = h.runAdapter(['sync', '--config', c.file, '--base-url', env.srv.base,
      '--state', path.join(dir, 'state.db')]);
  } else {
    fs.mkdirSync(dir, { recursive: true });
    how = 'ulimit -f';
    r = runSh("trap '' XFSZ; ulimit -f 240", ['sync', '--config', c.file, '--base-url',
      env.srv.base, '--state', path.join(dir, 'state.db')]);
  }
  const written = R.summary(r.stdout, 'created') + R.summary(r.stdout, 'updated');
  const onServer = await plansOnServer(c.canonical);
  console.log(`# full disk (${how}): exit ${r.status}, ${written} written, ${onServer} on the server`);
  assert.equal(r.status, 2, r.stderr.slice(-2000));
  const stops = r.stderr.match(/^dnmbc-adapter: stopped: the state file cannot be written.*$/gm) || [];
  assert.equal(stops.length, 1, r.stderr.slice(-2000));
  assert.match(stops[0], /state\.db/);
  assert.ok(onServer > 0, 'some patients were written before the disk was full');
  assert.ok(onServer < COUNT / 2, `the run stopped writing (${onServer} plans)`);
  assert.equal(written, onServer, 'every plan on the server is counted as written, no more');
  // nothing is written after the stop: the server holds no write the run
  // did not count, and no patient is logged after the stop
  assert.ok(R.summary(r.stdout, 'patients seen') < COUNT, 'patients after the stop are not pulled');
});

test('the state file and --report are created 0600 whatever the umask', () => {
  const c = config('modes');
  const st = path.join(c.dir, 'state.db');
  const report = path.join(c.dir, 'report.txt');
  const r = runSh('umask 000', ['sync', '--config', c.file, '--base-url', env.srv.base,
    '--state', st, '--report', report]);
  assert.equal(r.status, 0, r.stderr.slice(-2000));
  assert.equal(fs.statSync(st).mode & 0o777, 0o600);
  assert.equal(fs.statSync(report).mode & 0o777, 0o600);
  // an older report readable by others is made private when overwritten
  fs.chmodSync(report, 0o644);
  const again = runSh('umask 000', ['sync', '--config', c.file, '--base-url', env.srv.base,
    '--state', st, '--report', report]);
  assert.equal(again.status, 0, again.stderr.slice(-2000));
  assert.equal(fs.statSync(report).mode & 0o777, 0o600);
});

test('key and secret files readable by others are refused by -n and by a run alike', () => {
  const dir = path.join(work, 'secrets');
  fs.mkdirSync(dir, { recursive: true });
  const file = (name, content, mode) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, content);
    fs.chmodSync(p, mode);
    return p;
  };
  const cases = [
    { key: 'auth.bearer_token_file', cmd: 'sync',
      cfg: (p) => ({ auth: { mode: 'bearer', bearer_token_file: p } }), content: 'tok-123\n' },
    { key: 'server.notify_secret_file', cmd: 'run',
      cfg: (p) => ({ server: { notify_secret_file: p } }), content: 'notify-secret-123\n' },
    { key: 'server.tls_key', cmd: 'run',
      cfg: (p) => ({ server: { tls_cert: p, tls_key: p } }), content: 'not a key\n' },
  ];
  for (const c of cases) {
    const secret = file(`${c.key}.txt`, c.content, 0o644);
    const cfgFile = path.join(dir, `${c.key}.json`);
    fs.writeFileSync(cfgFile, JSON.stringify(c.cfg(secret)));
    const re = new RegExp(`${c.key.replace('.', '\\.')}: .* readable by others \\(mode 644\\)`);
    const n = h.runAdapter(['-n', '--config', cfgFile]);
    assert.equal(n.status, 2, `${c.key} -n: ${n.stderr}`);
    assert.match(n.stderr, re);
    const args = [c.cmd, '--config', cfgFile, '--base-url', env.srv.base, '--state',
      path.join(dir, 'state.db')];
    if (c.cmd === 'run') args.push('--once', '--listen', '127.0.0.1:0');
    const run = h.runAdapter(args);
    assert.equal(run.status, 2, `${c.key} ${c.cmd}: ${run.stderr.slice(-1000)}`);
    assert.match(run.stderr, re);
    // private (and group-readable, for a key handed over by the service
    // manager's group) is accepted by -n
    fs.chmodSync(secret, 0o640);
    const ok = h.runAdapter(['-n', '--config', cfgFile]);
    assert.equal(ok.status, 0, `${c.key} 0640: ${ok.stderr}`);
  }
});

// A synced state file to break.
function syncedState(name) {
  const c = config(name);
  const st = path.join(c.dir, 'state.db');
  const r = h.runAdapter(['sync', '--config', c.file, '--base-url', env.srv.base, '--state', st]);
  assert.equal(r.status, 0, r.stderr.slice(-2000));
  return { c, st, seen: R.summary(r.stdout, 'patients seen') };
}

test('a damaged state file is refused at start with exit 2, not patient by patient', () => {
  const { c, st } = syncedState('damaged');
  const size = fs.statSync(st).size;
  assert.ok(size >= 4 * 4096, `state file of ${size} bytes`);
  const fd = fs.openSync(st, 'r+');
  fs.writeSync(fd, Buffer.alloc(2 * 4096), 0, 2 * 4096, 2 * 4096); // pages 3 and 4
  fs.closeSync(fd);
  const r = h.runAdapter(['sync', '--config', c.file, '--base-url', env.srv.base, '--state', st]);
  assert.equal(r.status, 2, r.stderr.slice(-2000));
  assert.match(r.stderr, /state .*state\.db is damaged/);
  assert.doesNotMatch(r.stderr, /patient \S+ failed/);
  assert.doesNotMatch(r.stdout, /summary/);
});

test('a read-only state file is refused at start with exit 2; status still reads it', () => {
  const { c, st } = syncedState('readonly');
  // root writes through a file's mode: make the file itself read-only with
  // a read-only bind mount of it (its directory stays writable)
  if (isRoot() && spawnSync('mount', ['--bind', st, st]).status === 0) {
    mounts.push(st);
    assert.equal(spawnSync('mount', ['-o', 'remount,bind,ro', st]).status, 0);
  } else {
    fs.chmodSync(st, 0o444);
  }
  const target = st;
  const r = h.runAdapter(['sync', '--config', c.file, '--base-url', env.srv.base, '--state',
    target]);
  assert.equal(r.status, 2, r.stderr.slice(-2000));
  assert.match(r.stderr, /state .*state\.db is read-only/);
  assert.doesNotMatch(r.stderr, /patient \S+ failed/);
  const s = h.runAdapter(['status', '--state', target]);
  assert.equal(s.status, 0, s.stderr);
  assert.match(s.stdout, /outbox/);
});

test('a state directory removed under run: logged, /readyz unready, nothing more written', async () => {
  const c = config('removed', { daemon: { interval_s: 1, overlap_s: 0 } });
  const stateDir = path.join(c.dir, 'state');
  fs.mkdirSync(stateDir);
  const child = spawn(h.BIN, ['run', '--config', c.file, '--base-url', env.srv.base, '--state',
    path.join(stateDir, 'state.db'), '--listen', '127.0.0.1:0', '--log-level', 'info'],
  { env: { ...process.env, DNMBC_LOG_LEVEL: '' } });
  let err = '';
  child.stderr.on('data', (b) => { err += b; });
  const done = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    const port = await waitFor('the listener', () => {
      const m = err.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      return m && m[1];
    });
    await waitFor('the first cycle', () => /cycle done/.test(err));
    const plans = await plansOnServer(c.canonical);
    assert.ok(plans > 0, 'the first cycle wrote');
    fs.rmSync(stateDir, { recursive: true, force: true });
    const gone = /state \S*state\.db (is gone|was deleted)/g;
    await waitFor('the error', () => (err.match(gone) || []).length > 0);
    const ready = await waitFor('/readyz 503', async () => {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      const body = await res.text();
      return res.status === 503 && /state\.db (is gone|was deleted)/.test(body) ? body : null;
    });
    assert.match(ready, /restart/);
    // a new patient in the cohort would be written by a healthy daemon
    const m = env.manifest.find((x) => x.expected.recommendation !== 'not-applicable');
    const { execFileSync } = require('node:child_process');
    execFileSync('node', [path.join(h.ROOT, 'tests/fhir-server/load.js'), '--base', env.srv.base,
      path.join(env.dir, m.file)], { stdio: 'ignore' });
    const errorsBefore = (err.match(gone) || []).length;
    await waitFor('two more cycles', () => (err.match(gone) || []).length >= errorsBefore + 2);
    assert.equal(await plansOnServer(c.canonical), plans, 'nothing written after the loss');
  } finally {
    child.kill('SIGTERM');
    await done;
  }
});

test('a FIFO in the mappings directory is refused by -n, not waited on', () => {
  const dir = path.join(work, 'fifo-mappings');
  fs.cpSync(path.join(h.ROOT, 'mappings'), dir, { recursive: true });
  assert.equal(spawnSync('mkfifo', [path.join(dir, 'zz-pipe.json')]).status, 0);
  // the timeout only guards the suite against the old behaviour (blocking
  // forever); the assertions are on the exit status and the message
  const r = spawnSync(h.BIN, ['-n', '--mappings', dir], { encoding: 'utf8', timeout: 60000,
    env: { ...process.env, DNMBC_LOG_LEVEL: '' } });
  assert.equal(r.signal, null, '-n returned by itself');
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /zz-pipe\.json: not a regular file/);
});

test('after an outbox replay each patient is counted once', () => {
  const { c, st, seen } = syncedState('replaycount');
  // three decisions left in the outbox, as by a run killed mid-write
  const rows = spawnSync('sqlite3', [st, 'SELECT patient_id FROM patient ORDER BY patient_id LIMIT 3'],
    { encoding: 'utf8' });
  assert.equal(rows.status, 0, rows.stderr);
  const ids = rows.stdout.trim().split('\n');
  assert.equal(ids.length, 3);
  for (const id of ids) {
    const ins = spawnSync('sqlite3', [st, `INSERT INTO outbox(patient_id, kind, decision_hash) VALUES('${id}', 'post', 'x')`]);
    assert.equal(ins.status, 0, String(ins.stderr));
  }
  const r = h.runAdapter(['sync', '--config', c.file, '--base-url', env.srv.base, '--state', st]);
  assert.equal(r.status, 0, r.stderr.slice(-2000));
  assert.equal(R.summary(r.stdout, 'outbox replayed'), 3);
  assert.equal(R.summary(r.stdout, 'patients seen'), seen, r.stdout);
  const counted = ['created', 'updated', 'unchanged', 'revoked', 'failed']
    .reduce((n, k) => n + R.summary(r.stdout, k), 0);
  assert.ok(counted <= seen, `outcomes counted once (${counted} for ${seen})`);
  assert.equal(R.status(st).outbox, 0);
});
