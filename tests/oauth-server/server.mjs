#!/usr/bin/env node
// OAuth 2.0 authorization server for the dnmbc-adapter tests: oidc-provider
// (pinned in package.json) on 127.0.0.1 with
//   - the client credentials grant,
//   - private_key_jwt client authentication with RS384 and ES384 (and
//     client_secret_basic for secret clients),
//   - resource indicators: every token is for the FHIR base given with
//     --resource (also the default resource), issued as a JWT access token
//     signed ES256 with a key made at start-up,
//   - replay detection of client assertions (oidc-provider refuses a jti it
//     has seen), plus a record of every assertion received.
//
//   node server.mjs --resource URL [--port N] [--port-file FILE] [--pid-file FILE]
//                   [--token-ttl SECONDS] [--scopes v1|v2|both] [--withhold SCOPE]...
//                   [--client ID=JWKS_FILE]... [--secret-client ID=SECRET_FILE]...
//                   [--tls-cert FILE --tls-key FILE]
//
// --scopes v1 makes the server answer invalid_scope to SMART v2 scopes (as
// some EHRs still do). Tokens carry the scopes asked for (`scope` in the
// token response and the JWT), less any --withhold SCOPE: a server that
// grants fewer scopes than asked without an error. Test endpoints (loopback only):
//   GET  /$test/stats   {tokensIssued, assertions: [{jti, alg, kid, iss, sub, aud, exp, iat}],
//                        rawAssertions: [JWT...] (for the log-leak test),
//                        errors: [{error, description}]}
//   POST /$test/reset   forget stats
// Node 20 prints an "unsupported runtime" warning for oidc-provider 9; it works.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

import Provider, { errors } from 'oidc-provider';

// Any well-formed SMART system scope on a resource type is known; which
// forms are accepted depends on --scopes.
const V2 = /^system\/[A-Z][A-Za-z]+\.(?=[cruds])c?r?u?d?s?$/;
const V1 = /^system\/[A-Z][A-Za-z]+\.(read|write)$/;

function usage(msg) {
  if (msg) process.stderr.write('oauth-server: ' + msg + '\n');
  process.stderr.write(
    'usage: node server.mjs --resource URL [--port N] [--port-file FILE] [--pid-file FILE]\n' +
      '         [--token-ttl SECONDS] [--scopes v1|v2|both] [--withhold SCOPE]...\n' +
      '         [--client ID=JWKS_FILE]...\n' +
      '         [--secret-client ID=SECRET_FILE]... [--tls-cert FILE --tls-key FILE]\n'
  );
  process.exit(2);
}

function parseArgs(argv) {
  const o = { port: 0, ttl: 300, scopes: 'both', withhold: [], clients: [], secretClients: [], tls: {} };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) usage(a + ' needs a value');
      return argv[++i];
    };
    const pair = () => {
      const s = v();
      const eq = s.indexOf('=');
      if (eq <= 0) usage(a + ' takes ID=FILE');
      return [s.slice(0, eq), s.slice(eq + 1)];
    };
    switch (a) {
      case '--resource': o.resource = v(); break;
      case '--port': o.port = Number(v()); break;
      case '--port-file': o.portFile = v(); break;
      case '--pid-file': o.pidFile = v(); break;
      case '--token-ttl': o.ttl = Number(v()); break;
      case '--scopes': o.scopes = v(); break;
      case '--withhold': o.withhold.push(v()); break;
      case '--client': o.clients.push(pair()); break;
      case '--secret-client': o.secretClients.push(pair()); break;
      case '--tls-cert': o.tls.cert = v(); break;
      case '--tls-key': o.tls.key = v(); break;
      default: usage('unknown argument ' + a);
    }
  }
  if (!o.resource) usage('--resource is required');
  if (!Number.isInteger(o.ttl) || o.ttl < 1) usage('--token-ttl must be a positive integer');
  if (!['v1', 'v2', 'both'].includes(o.scopes)) usage('--scopes is v1, v2 or both');
  return o;
}

function writeAtomically(file, text) {
  const tmp = file + '.tmp' + process.pid;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

const opts = parseArgs(process.argv.slice(2));
const stats = { tokensIssued: 0, assertions: [], rawAssertions: [], errors: [] };
const known = (s) => (opts.scopes !== 'v1' && V2.test(s)) || (opts.scopes !== 'v2' && V1.test(s));

const clients = [
  ...opts.clients.map(([id, file]) => {
    const jwks = JSON.parse(fs.readFileSync(file, 'utf8'));
    const alg = jwks.keys[0].alg;
    return {
      client_id: id,
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: alg,
      jwks,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    };
  }),
  ...opts.secretClients.map(([id, file]) => ({
    client_id: id,
    client_secret: fs.readFileSync(file, 'utf8').trim(),
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
  })),
];

// An EC key: made at once (RSA key generation can take seconds on a busy CI machine).
const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingJwk = { ...privateKey.export({ format: 'jwk' }), kid: 'at-' + crypto.randomBytes(4).toString('hex'), use: 'sig', alg: 'ES256' };

const tls = opts.tls.cert ? { cert: fs.readFileSync(opts.tls.cert), key: fs.readFileSync(opts.tls.key) } : null;
let provider;
const server = tls
  ? https.createServer(tls, (req, res) => route(req, res))
  : http.createServer((req, res) => route(req, res));

function route(req, res) {
  const remote = req.socket.remoteAddress;
  if (!['127.0.0.1', '::1', '::ffff:127.0.0.1'].includes(remote)) {
    res.writeHead(403).end();
    return;
  }
  if (req.url === '/$test/stats' && req.method === 'GET') {
    const text = JSON.stringify(stats);
    res.writeHead(200, { 'content-type': 'application/json' }).end(text);
    return;
  }
  if (req.url === '/$test/reset' && req.method === 'POST') {
    stats.tokensIssued = 0;
    stats.assertions.length = 0;
    stats.rawAssertions.length = 0;
    stats.errors.length = 0;
    res.writeHead(204).end();
    return;
  }
  provider.callback()(req, res);
}

server.listen(opts.port, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  provider = new Provider(issuer, {
    clients,
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
    jwks: { keys: [signingJwk] },
    scopes: [],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => opts.resource,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, resource) => {
          if (resource !== opts.resource) throw new errors.InvalidTarget();
          const asked = String(ctx.oidc.params.scope || '').split(' ').filter(Boolean);
          const refused = asked.filter((s) => !known(s));
          if (refused.length) {
            throw new errors.InvalidScope('scope not granted to backend services here', refused.join(' '));
          }
          return {
            scope: asked.filter((s) => !opts.withhold.includes(s)).join(' '),
            audience: opts.resource,
            accessTokenTTL: opts.ttl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
    enabledJWA: {
      clientAuthSigningAlgValues: ['RS384', 'ES384'],
    },
    clientAuthMethods: ['private_key_jwt', 'client_secret_basic'],
    // Record each client assertion that passed the signature check (before
    // replay detection: a replayed jti shows up twice here).
    assertJwtClientAuthClaimsAndHeader: async (ctx, claims, header) => {
      stats.rawAssertions.push(ctx.oidc.params.client_assertion);
      stats.assertions.push({
        jti: claims.jti, alg: header.alg, kid: header.kid, typ: header.typ, jku: header.jku,
        iss: claims.iss, sub: claims.sub, aud: claims.aud, exp: claims.exp, iat: claims.iat,
        received: Math.floor(Date.now() / 1000),
      });
      if (claims.sub !== claims.iss) throw new errors.InvalidClientAuth('sub must equal iss');
      if (header.typ !== 'JWT') throw new errors.InvalidClientAuth('typ must be JWT');
      if (!header.kid) throw new errors.InvalidClientAuth('kid is required');
      if (claims.exp - Math.floor(Date.now() / 1000) > 300) {
        throw new errors.InvalidClientAuth('exp more than 5 minutes ahead');
      }
    },
  });
  provider.on('grant.success', () => {
    stats.tokensIssued++;
  });
  provider.on('grant.error', (ctx, err) => {
    stats.errors.push({ error: err.error, description: err.error_description });
  });
  if (opts.pidFile) writeAtomically(opts.pidFile, process.pid + '\n');
  if (opts.portFile) writeAtomically(opts.portFile, port + '\n');
  process.stderr.write(`oauth-server: ${issuer} (resource ${opts.resource})\n`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
