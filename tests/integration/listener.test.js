// The listener of `run` stays alive and strict whatever its peers do:
// /healthz answers while the FHIR server is silent (readiness is checked
// off the listener thread and cached), a hundred slowloris connections from
// one client do not lock out a probe from another (per-client limit), a
// connection that trickles its headers or body is closed at its deadline,
// /notify takes the bearer secret exactly and refuses a notification naming
// more resources than it will queue, /metrics gives the start time to the
// second, and with log.format json every line is JSON, the last one too.
//
// All traffic is on loopback.  The slowloris clients bind other loopback
// source addresses (127.0.0.2, 127.0.0.3) so that the per-address limit
// sees them as clients other than the probe (127.0.0.1).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');
const h = require('./helpers');
const { sleep, waitFor } = require('./daemon-lib');

const SECRET = 'listener-secret-for-tests-only';
let srv;
let work;
let fwd;
let daemon;

// A TCP forwarder in front of the test FHIR server.  Forwarding, it pipes
// each connection through; silent, it drops the forwarded connections and
// then accepts new ones and never answers them (a server that hangs), and
// records each held connection and whether its client has given up on it.
function startForwarder(target) {
  const t = new URL(target);
  const f = { silent: false, piped: new Set(), held: [] };
  f.server = net.createServer((sock) => {
    if (f.silent) {
      const rec = { sock, bytes: 0, closed: false };
      sock.on('data', (b) => { rec.bytes += b.length; });
      // 'end' is the client's FIN, seen as soon as it arrives
      sock.on('end', () => { rec.closed = true; });
      sock.on('close', () => { rec.closed = true; });
      sock.on('error', () => {});
      f.held.push(rec);
      return;
    }
    const up = net.connect(Number(t.port), t.hostname);
    const pair = { sock, up };
    f.piped.add(pair);
    sock.on('error', () => up.destroy());
    up.on('error', () => sock.destroy());
    sock.on('close', () => { up.destroy(); f.piped.delete(pair); });
    up.on('close', () => sock.destroy());
    sock.pipe(up);
    up.pipe(sock);
  });
  f.goSilent = () => {
    f.silent = true;
    for (const p of f.piped) { p.sock.destroy(); p.up.destroy(); }
  };
  f.resume = () => { f.silent = false; };
  return new Promise((res) => f.server.listen(0, '127.0.0.1', () => {
    f.base = `http://127.0.0.1:${f.server.address().port}${t.pathname}`;
    res(f);
  }));
}

function startDaemon(cfg, base, extraArgs = []) {
  const cfgFile = path.join(work, `cfg-${Date.now()}-${Math.random().toString(16).slice(2)}.json`);
  fs.writeFileSync(cfgFile, JSON.stringify(cfg));
  const child = spawn(h.BIN, ['run', '--config', cfgFile, '--base-url', base, '--state',
    path.join(work, `state-${path.basename(cfgFile)}.db`), ...extraArgs], {
    env: { ...process.env, DNMBC_LOG_LEVEL: '' },
  });
  const d = { child, err: '', port: 0 };
  child.stderr.on('data', (b) => { d.err += b; });
  d.exited = new Promise((res) => child.on('exit', (c) => res(c)));
  return d;
}

async function listening(d) {
  const m = await waitFor('the listener', () => d.err.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/));
  d.port = Number(m[1]);
  return d.port;
}

async function stopDaemon(d) {
  if (d && d.child.exitCode === null) {
    d.child.kill('SIGTERM');
    await d.exited;
  }
}

// One request on a fresh connection from 127.0.0.1.  The signal only keeps a
// broken listener from hanging the test; it is not what the test checks.
async function get(d, p) {
  const r = await fetch(`http://127.0.0.1:${d.port}${p}`, { signal: AbortSignal.timeout(60000) });
  return { status: r.status, text: await r.text(), headers: r.headers };
}

async function notify(d, body, authorization) {
  const headers = { 'content-type': 'application/fhir+json' };
  if (authorization !== null) headers.authorization = authorization;
  const r = await fetch(`http://127.0.0.1:${d.port}/notify`, {
    method: 'POST', headers, body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(60000),
  });
  return { status: r.status, text: await r.text(), headers: r.headers };
}

// A slowloris client: opens a connection from `localAddress`, sends the
// start of a request and then one more header line every `everyMs`, never
// the blank line that ends the head.
function slowloris(port, localAddress, everyMs = 500) {
  const c = { open: false, closed: false };
  c.sock = net.connect({ port, host: '127.0.0.1', localAddress });
  c.sock.on('connect', () => {
    c.open = true;
    c.sock.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    c.timer = setInterval(() => {
      if (!c.closed) c.sock.write('X-Slow: 1\r\n');
    }, everyMs);
  });
  c.sock.on('error', () => {});
  c.sock.on('close', () => { c.closed = true; clearInterval(c.timer); });
  c.stop = () => { clearInterval(c.timer); c.sock.destroy(); };
  return c;
}

// A hog: keeps n slowloris connections from localAddress, opening a new one
// whenever the listener closes one, until told to stop re-opening.
function hog(port, localAddress, n) {
  const hg = { reopen: true, conns: [], opened: 0 };
  const open = () => {
    const c = slowloris(port, localAddress);
    hg.conns.push(c);
    hg.opened++;
    c.sock.on('close', () => { if (hg.reopen) setTimeout(open, 20); });
  };
  for (let i = 0; i < n; i++) open();
  hg.alive = () => hg.conns.filter((c) => !c.closed).length;
  hg.stop = () => { hg.reopen = false; hg.conns.forEach((c) => c.stop()); };
  return hg;
}

function parseMetrics(text) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

test.before(async () => {
  work = h.tmpdir('listener');
  srv = h.startServer();
  fs.writeFileSync(path.join(work, 'secret'), SECRET + '\n', { mode: 0o600 });
  fwd = await startForwarder(srv.base);
  daemon = startDaemon({
    daemon: { interval_s: 3600, overlap_s: 0 },
    server: { notify_secret_file: path.join(work, 'secret') },
  }, fwd.base, ['--listen', '127.0.0.1:0']);
  daemon.startedAfter = Date.now() / 1000;
  await listening(daemon);
  await waitFor('the first cycle', () => /cycle done/.test(daemon.err));
});

test.after(async () => {
  await stopDaemon(daemon);
  if (fwd) {
    for (const r of fwd.held) r.sock.destroy();
    fwd.server.close();
  }
  h.stopServer(srv);
});

// First, while the adapter is idle: nothing else waits on the silent server.
test('/healthz answers while the FHIR server is silent; /readyz answers from its cache with its age', async () => {
  await waitFor('ready', async () => (await get(daemon, '/readyz')).status === 200);
  fwd.goSilent();
  try {
    // a /readyz whose verdict is stale starts a check, which the silent
    // server now holds; keep asking until it has arrived there
    const inflight = [];
    const held = await waitFor('the readiness check held by the silent server', async () => {
      inflight.push(get(daemon, '/readyz').catch((e) => ({ status: 0, text: String(e) })));
      await sleep(200);
      return fwd.held.find((x) => x.bytes > 0 && !x.closed);
    });
    // a probe answers while the check is still held (its client has not
    // given up): the listener never waits for the FHIR server
    const r1 = await get(daemon, '/healthz');
    assert.equal(r1.status, 200);
    assert.equal(held.closed, false, '/healthz answered only after the readiness check gave up');
    const ry = await get(daemon, '/readyz');
    assert.equal(held.closed, false, '/readyz waited for the readiness check');
    // and every further probe answers, the check still held or not
    for (let i = 0; i < 5; i++) {
      const r = await get(daemon, '/healthz');
      assert.equal(r.status, 200);
      assert.equal(r.text, 'ok\n');
    }
    const body = JSON.parse(ry.text);
    assert.equal(typeof body.age_s, 'number');
    assert.ok(body.age_s >= 0);
    for (const p of inflight) assert.notEqual((await p).status, 0);
    // once the check gives up, /readyz says why
    const unready = await waitFor('unready', async () => {
      const x = await get(daemon, '/readyz');
      return x.status === 503 ? JSON.parse(x.text) : null;
    });
    assert.match(unready.detail, /FHIR server/);
    assert.equal(unready.status, 'not ready');
  } finally {
    fwd.resume();
  }
  await waitFor('ready again', async () => (await get(daemon, '/readyz')).status === 200);
});

test('/notify: the secret exactly; more, less or another token gets 401; the scheme in any case', async () => {
  assert.equal((await notify(daemon, undefined, `Bearer ${SECRET}`)).status, 200);
  for (const bad of [`Bearer ${SECRET}X`, `Bearer ${SECRET} X`, `Bearer ${SECRET}\tX`,
    `Bearer ${SECRET.slice(0, -1)}`, `Bearer ${SECRET.slice(0, 1)}`, 'Bearer ', 'Bearer',
    `Bearer ${SECRET.toUpperCase()}`, `Basic ${SECRET}`, `${SECRET}`, `Bearer${SECRET}`,
    `XBearer ${SECRET}`]) {
    const r = await notify(daemon, undefined, bad);
    assert.equal(r.status, 401, `${JSON.stringify(bad)} must be refused`);
    assert.match(r.headers.get('www-authenticate') || '', /^Bearer /);
  }
  // RFC 7235 section 2.1: the scheme name is case-insensitive
  for (const scheme of ['bearer', 'BEARER', 'BeArEr']) {
    assert.equal((await notify(daemon, undefined, `${scheme} ${SECRET}`)).status, 200, scheme);
    assert.equal((await notify(daemon, undefined, `${scheme} ${SECRET}X`)).status, 401, scheme);
  }
});

test('/notify: a notification naming 15,000 resources gets 413 and an OperationOutcome', async () => {
  // R4B SubscriptionStatus with one focus per event: 15,000 of them fit
  // under the 1 MiB body cap
  const status = (n) => ({
    resourceType: 'SubscriptionStatus', type: 'event-notification',
    subscription: { reference: 'Subscription/listener-test' },
    notificationEvent: Array.from({ length: n }, (_, i) => ({
      eventNumber: String(i + 1), focus: { reference: `Patient/p${i}` } })),
  });
  const body = (n) => ({ resourceType: 'Bundle', type: 'history', entry: [{ resource: status(n) }] });
  assert.ok(JSON.stringify(body(15000)).length < 1024 * 1024, 'under the body cap');
  const before = parseMetrics((await get(daemon, '/metrics')).text);
  const r = await notify(daemon, body(15000), `Bearer ${SECRET}`);
  assert.equal(r.status, 413, r.text);
  assert.match(r.headers.get('content-type'), /application\/fhir\+json/);
  const oo = JSON.parse(r.text);
  assert.equal(oo.resourceType, 'OperationOutcome');
  assert.equal(oo.issue[0].severity, 'error');
  assert.equal(oo.issue[0].code, 'too-costly');
  assert.match(oo.issue[0].diagnostics, /more than 1000 resources/);
  const after = parseMetrics((await get(daemon, '/metrics')).text);
  assert.equal(Number(after.dnmbc_notifications_rejected_total),
    Number(before.dnmbc_notifications_rejected_total) + 1);
  assert.equal(Number(after.dnmbc_notify_queue_depth), 0, 'nothing was queued');
  // a small one still goes through (the bound itself: tests/unit/test_listener.c)
  const ok = await notify(daemon, body(2), `Bearer ${SECRET}`);
  assert.equal(ok.status, 200, ok.text);
});

test('/metrics: dnmbc_start_time_seconds is the start time to the millisecond, not rounded', async () => {
  const m = parseMetrics((await get(daemon, '/metrics')).text);
  const v = m.dnmbc_start_time_seconds;
  assert.ok(v !== undefined);
  assert.doesNotMatch(v, /e\+/, `written without an exponent: ${v}`);
  const t = Number(v);
  // started after the test spawned it and before it logged "listening"
  assert.ok(t >= daemon.startedAfter - 2 && t <= Date.now() / 1000,
    `start time ${v} not between ${daemon.startedAfter} and now`);
  assert.ok(t !== Math.round(t / 1000) * 1000, `${v} looks rounded to 1000 s`);
});

test('100 slowloris connections from one client leave room for a probe from another, and end at their deadline', async () => {
  const logFrom = daemon.err.length;
  const hg = hog(daemon.port, '127.0.0.2', 100);
  try {
    // the listener refused some, and the hog keeps opening new ones
    await waitFor('the hog re-opening refused connections', () => hg.opened > 400);
    for (let i = 0; i < 10; i++) {
      const r = await get(daemon, '/healthz');
      assert.equal(r.status, 200);
    }
    hg.reopen = false;
    // a refused connection is not a log line each: over 300 refusals, a few lines
    const lines = daemon.err.slice(logFrom).split('\n').filter((l) => / listener: /.test(l));
    assert.ok(lines.length < 30, `${lines.length} listener log lines:\n${lines.slice(0, 40).join('\n')}`);
    await waitFor('at most 16 connections kept from one client', () => hg.alive() <= 16, 20000);
    assert.ok(hg.alive() > 0, 'the slowloris connections are still there');
    // they trickle a header line every 500 ms, so no inactivity timeout
    // ends them; server.header_timeout_s (default 10 s) does
    await waitFor('every slowloris connection closed by the listener', () => hg.alive() === 0);
    assert.equal((await get(daemon, '/healthz')).status, 200);
  } finally {
    hg.stop();
  }
});

test('a connection that trickles its headers or its body is closed at its deadline', async () => {
  const d = startDaemon({
    daemon: { interval_s: 3600, overlap_s: 0 },
    server: { notify_secret_file: path.join(work, 'secret'), header_timeout_s: 1,
      body_timeout_s: 2, max_connections_per_client: 4 },
  }, srv.base, ['--listen', '127.0.0.1:0']);
  try {
    await listening(d);
    // headers: a line every 200 ms keeps an inactivity timeout from ever
    // firing; only an absolute deadline ends it
    const head = slowloris(d.port, '127.0.0.3', 200);
    await waitFor('the trickled head closed by the listener', () => head.closed);
    // body: complete headers, then the announced body a byte at a time
    const body = { closed: false };
    body.sock = net.connect({ port: d.port, host: '127.0.0.1', localAddress: '127.0.0.3' });
    body.sock.on('error', () => {});
    body.sock.on('connect', () => {
      body.sock.write(`POST /notify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${SECRET}\r\n` +
        'Content-Type: application/fhir+json\r\nContent-Length: 100000\r\n\r\n');
      body.timer = setInterval(() => { if (!body.closed) body.sock.write(' '); }, 200);
    });
    body.sock.on('close', () => { body.closed = true; clearInterval(body.timer); });
    await waitFor('the trickled body closed by the listener', () => body.closed);
    // a per-client limit of 4: the fifth connection from one address is closed at once
    const five = Array.from({ length: 5 }, () => slowloris(d.port, '127.0.0.4', 200));
    await waitFor('one of five refused', () => five.some((c) => c.closed));
    five.forEach((c) => c.stop());
    // and the listener still answers
    assert.equal((await get(d, '/healthz')).status, 200);
  } finally {
    await stopDaemon(d);
  }
});

test('log.format json: every line is JSON, the one saying why the process stopped too', async () => {
  // the listener's port is taken: `run` stops at start-up
  const blocker = net.createServer();
  await new Promise((res) => blocker.listen(0, '127.0.0.1', res));
  try {
    const d = startDaemon({ log: { format: 'json' }, daemon: { interval_s: 3600 } }, srv.base,
      ['--listen', `127.0.0.1:${blocker.address().port}`]);
    const code = await d.exited;
    assert.notEqual(code, 0);
    const lines = d.err.split('\n').filter((l) => l.length > 0);
    assert.ok(lines.length > 0);
    for (const l of lines) {
      let o;
      assert.doesNotThrow(() => { o = JSON.parse(l); }, `not JSON: ${l}`);
      assert.equal(typeof o.time, 'string');
      assert.equal(typeof o.level, 'string');
      assert.equal(typeof o.msg, 'string');
    }
    const last = JSON.parse(lines[lines.length - 1]);
    assert.equal(last.level, 'error');
    assert.match(last.msg, /server\.listen: cannot listen/);
  } finally {
    blocker.close();
  }
});
