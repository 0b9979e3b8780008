#!/usr/bin/env node
// Fault-injecting HTTP proxy for the tests (issue #5): sits between the
// adapter and the test FHIR server and, for a configured share of requests,
// answers 5xx, 429 with Retry-After (seconds or HTTP date), drops the
// connection without an answer, sends a truncated body, or delays the
// answer.  It counts every fault it injected (GET /$proxy/stats).  A real
// server cannot be made to fail like this on demand, hence this stub.
// No dependencies: node:http only.
//
//   node proxy.js --target http://127.0.0.1:PORT [--port 0] [--seed N]
//        [--p5xx 0.10] [--p429 0.05] [--pdrop 0.02] [--ptrunc 0.02]
//        [--pdelay 0.05] [--delay-ms 300] [--retry-after 1]
//        [--hostile objects|arrays|integers --hostile-bytes N --hostile-match RE]
//        [--expires-in N]
// --expires-in rewrites "expires_in" in every answer to N (a hostile token
// endpoint: hostile.js).
// --hostile answers every request whose "METHOD /path?query" matches RE with
// 200 and a hostile body of N bytes (hostile.js), counted as `hostile`.
// Prints "listening http://127.0.0.1:PORT" on stdout once ready.
'use strict';

const http = require('node:http');

function parseArgs(argv) {
  const o = { port: 0, seed: 1, p5xx: 0.1, p429: 0.05, pdrop: 0.02, ptrunc: 0.02, pdelay: 0.05,
    delayMs: 300, retryAfter: 1, target: null, hostile: '', hostileBytes: 0, hostileMatch: '',
    expiresIn: '' };
  for (let i = 2; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!(k in o)) throw new Error(`unknown option ${argv[i]}`);
    o[k] = typeof o[k] === 'string' || o[k] === null ? argv[i + 1] : Number(argv[i + 1]);
  }
  if (!o.target) throw new Error('--target URL is required');
  return o;
}

// Small deterministic PRNG (mulberry32) so a run can be repeated.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function main() {
  const o = parseArgs(process.argv);
  const target = new URL(o.target);
  const rand = rng(o.seed);
  const stats = { requests: 0, e5xx: 0, e429: 0, drop: 0, truncate: 0, delay: 0, hostile: 0 };
  const hostile = o.hostile ? require('./hostile').hostileBody(o.hostile, o.hostileBytes) : null;
  const hostileRe = new RegExp(o.hostileMatch);
  const statuses = [500, 502, 503, 504];
  let useDate = false;

  const server = http.createServer((req, res) => {
    if (req.url.startsWith('/$proxy/stats')) {
      if (req.method === 'DELETE') for (const k of Object.keys(stats)) stats[k] = 0;
      res.writeHead(200, { 'content-type': 'application/json', connection: 'close' });
      res.end(JSON.stringify(stats));
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      stats.requests++;
      if (hostile && hostileRe.test(`${req.method} ${req.url}`)) {
        stats.hostile++;
        res.writeHead(200, { 'content-type': 'application/fhir+json',
          'content-length': hostile.length, connection: 'close' });
        res.end(hostile);
        return;
      }
      const r = rand();
      let fault = null;
      let edge = o.p5xx;
      if (r < edge) fault = '5xx';
      else if (r < (edge += o.p429)) fault = '429';
      else if (r < (edge += o.pdrop)) fault = 'drop';
      else if (r < (edge += o.ptrunc)) fault = 'truncate';
      else if (r < (edge += o.pdelay)) fault = 'delay';
      // Every answer closes its connection, so that a client cannot retry a
      // dropped request silently on a fresh connection.
      if (fault === '5xx') {
        stats.e5xx++;
        const status = statuses[Math.floor(rand() * statuses.length)];
        res.writeHead(status, { 'content-type': 'application/fhir+json', connection: 'close' });
        res.end(JSON.stringify({ resourceType: 'OperationOutcome',
          issue: [{ severity: 'error', code: 'transient', diagnostics: 'injected fault' }] }));
        return;
      }
      if (fault === '429') {
        stats.e429++;
        useDate = !useDate;
        const ra = useDate ? new Date(Date.now() + o.retryAfter * 1000).toUTCString()
          : String(o.retryAfter);
        res.writeHead(429, { 'content-type': 'application/fhir+json', 'retry-after': ra,
          connection: 'close' });
        res.end(JSON.stringify({ resourceType: 'OperationOutcome',
          issue: [{ severity: 'error', code: 'throttled', diagnostics: 'injected throttle' }] }));
        return;
      }
      if (fault === 'drop') {
        stats.drop++;
        req.socket.destroy();
        return;
      }
      forward(req, Buffer.concat(chunks), (status, headers, body) => {
        if (fault === 'truncate' && body.length > 1) {
          stats.truncate++;
          // announce the full length, send half, close: a truncated transfer
          res.writeHead(status, { ...headers, 'content-length': body.length, connection: 'close' });
          res.write(body.subarray(0, Math.floor(body.length / 2)));
          setImmediate(() => req.socket.destroy());
          return;
        }
        const send = () => {
          res.writeHead(status, { ...headers, 'content-length': body.length, connection: 'close' });
          res.end(body);
        };
        if (fault === 'delay') {
          stats.delay++;
          setTimeout(send, o.delayMs);
        } else {
          send();
        }
      }, () => {
        res.writeHead(502, { connection: 'close' });
        res.end();
      });
    });
  });

  function forward(req, body, done, fail) {
    const headers = { ...req.headers, host: target.host };
    delete headers['accept-encoding']; // keep bodies plain so truncation is exact
    delete headers.connection;
    const up = http.request({ host: target.hostname, port: target.port, method: req.method,
      path: req.url, headers }, (ures) => {
      const parts = [];
      ures.on('data', (c) => parts.push(c));
      ures.on('end', () => {
        const h = { ...ures.headers };
        delete h['content-length'];
        delete h['transfer-encoding'];
        delete h.connection;
        delete h['keep-alive'];
        // Location headers name the upstream: point them at the proxy
        for (const k of ['location', 'content-location']) {
          if (h[k]) h[k] = h[k].split(`${target.protocol}//${target.host}`).join(`http://127.0.0.1:${server.address().port}`);
        }
        let out = Buffer.concat(parts);
        if (o.expiresIn) out = require('./hostile').rewriteExpiresIn(out, o.expiresIn);
        const s = out.toString('utf8');
        if (s.includes(target.host)) {
          out = Buffer.from(s.split(`${target.protocol}//${target.host}`).join(`http://127.0.0.1:${server.address().port}`));
        }
        done(ures.statusCode, h, out);
      });
    });
    up.on('error', fail);
    up.end(body);
  }

  server.keepAliveTimeout = 1;
  server.listen(o.port, '127.0.0.1', () => {
    process.stdout.write(`listening http://127.0.0.1:${server.address().port}\n`);
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

main();
