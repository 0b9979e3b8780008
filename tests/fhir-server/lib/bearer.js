'use strict';
// Bearer-token mode of the test FHIR server: every FHIR request must carry
// "Authorization: Bearer <JWT>" whose signature verifies against the JWKS of
// the configured OAuth server (tests/oauth-server, oidc-provider), whose
// `aud` names this server's base URL, and that has not expired. Verification
// uses node:crypto only (RS256/RS384/PS256/ES256/ES384 access tokens).
//
// Configured at run time through POST /$test/auth (see README.md), so that
// test data can be loaded before the mode is switched on:
//   { "issuer": "http://127.0.0.1:PORT" }   require tokens from that issuer
//   { "issuer": null }                      no token needed (the default)
//   { "revokeSeen": true }                  every token seen so far is revoked
//   { "rejectAll": true|false }             refuse every token (an invalidated client)
//   { "revokeAfter": N, "refusalBarrier": K }
//                                           after N more accepted requests every token seen
//                                           is revoked, and the first K requests refused for
//                                           it are answered together (each waits until K are
//                                           waiting, at most 30 s): K workers meet a revoked
//                                           token at once (single-flight renewal test)
//   { "capabilities": [...]|null }          SMART `capabilities` served (null: the default)
//   { "enforceScopes": true|false }         the token's `scope` claim gates each
//                                           interaction and each Bundle entry (scopes.js):
//                                           what it does not grant is answered 403
// GET /$test/auth reports the mode and counters (tokens seen, accepted and
// refused requests, distinct token ids) and the last 200 raw tokens received
// (test data only: the log-leak test looks for them in the adapter's logs).

const crypto = require('node:crypto');
const { parseScopes, missingScope } = require('./scopes');
const http = require('node:http');
const https = require('node:https');

function b64urlJson(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

function getJson(url) {
  return new Promise((resolve, reject) => {
    const mod = url.startsWith('https:') ? https : http;
    const req = mod.get(url, { headers: { accept: 'application/json' } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        if (res.statusCode !== 200) {
          reject(new Error(`GET ${url}: HTTP ${res.statusCode}`));
          return;
        }
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('error', reject);
  });
}

const ALGS = {
  RS256: { hash: 'sha256' },
  RS384: { hash: 'sha384' },
  PS256: { hash: 'sha256', padding: crypto.constants.RSA_PKCS1_PSS_PADDING },
  ES256: { hash: 'sha256', dsaEncoding: 'ieee-p1363' },
  ES384: { hash: 'sha384', dsaEncoding: 'ieee-p1363' },
};

class BearerGuard {
  constructor() {
    this.issuer = null;
    this.audience = null;
    this.keys = new Map(); // kid -> KeyObject
    this.revoked = new Set();
    this.seen = new Set();
    this.tokens = []; // the last bearer tokens received, for log-leak tests
    this.rejectAll = false;
    this.accepted = 0;
    this.refused = 0;
    this.enforceScopes = false;
    this.capabilities = null;
    this.revokeAt = null; // revokeAfter: revoke every token seen once `accepted` reaches it
    this.barrier = null; // refusalBarrier: {size, waiting: [resolve]}
    this.forbidden = []; // [{method, type, url, missing}] answered 403 for want of a scope
  }

  get enabled() {
    return this.issuer !== null;
  }

  configure(body, baseUrl) {
    if (Object.prototype.hasOwnProperty.call(body, 'issuer')) {
      if (body.issuer !== null && typeof body.issuer !== 'string') {
        throw new Error('issuer must be a URL string or null');
      }
      this.issuer = body.issuer ? body.issuer.replace(/\/+$/, '') : null;
      this.audience = body.audience || baseUrl;
      this.keys.clear();
    }
    if (body.revokeSeen) {
      for (const id of this.seen) this.revoked.add(id);
    }
    if (typeof body.rejectAll === 'boolean') {
      this.rejectAll = body.rejectAll;
    }
    if (Number.isInteger(body.revokeAfter) && body.revokeAfter >= 0) {
      this.revokeAt = this.accepted + body.revokeAfter;
      this.barrier = Number.isInteger(body.refusalBarrier) && body.refusalBarrier > 1
        ? { size: body.refusalBarrier, waiting: [] } : null;
    }
    if (Object.prototype.hasOwnProperty.call(body, 'capabilities')) {
      // null: the default list; an array: served as SMART `capabilities`
      this.capabilities = Array.isArray(body.capabilities) ? body.capabilities : null;
    }
    if (typeof body.enforceScopes === 'boolean') {
      this.enforceScopes = body.enforceScopes;
    }
    if (body.resetCounters) {
      this.accepted = 0;
      this.refused = 0;
      this.forbidden.length = 0;
      this.seen.clear();
      this.tokens.length = 0;
    }
    return this.report();
  }

  // {base}/.well-known/smart-configuration while a token is required.
  smartConfiguration() {
    return {
      issuer: this.issuer,
      jwks_uri: this.issuer + '/jwks',
      token_endpoint: this.issuer + '/token',
      grant_types_supported: ['client_credentials'],
      token_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_basic'],
      token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
      scopes_supported: ['system/*.rs', 'system/*.cu', 'system/*.read', 'system/*.write'],
      capabilities: this.capabilities || ['client-confidential-asymmetric', 'client-confidential-symmetric', 'permission-v1', 'permission-v2'],
    };
  }

  report() {
    return {
      issuer: this.issuer,
      audience: this.audience,
      rejectAll: this.rejectAll,
      enforceScopes: this.enforceScopes,
      forbidden: this.forbidden,
      accepted: this.accepted,
      refused: this.refused,
      distinctTokens: this.seen.size,
      revoked: this.revoked.size,
      tokens: this.tokens,
    };
  }

  async key(kid) {
    if (!this.keys.has(kid)) {
      const jwks = await getJson(this.issuer + '/jwks');
      this.keys.clear();
      for (const jwk of jwks.keys || []) {
        this.keys.set(jwk.kid, crypto.createPublicKey({ key: jwk, format: 'jwk' }));
      }
    }
    return this.keys.get(kid);
  }

  // Resolves to null when the request may go on, else to the reason it is
  // refused (the caller answers 401 with that text).
  // A request that may go on carries req.smartGrants (the token's scopes)
  // for allowed().
  async check(req) {
    const reason = await this.verify(req.headers.authorization || '', req);
    if (reason) {
      this.refused++;
      if (this.barrier && reason === 'token revoked') await this.meet(this.barrier);
    } else {
      this.accepted++;
      if (this.revokeAt !== null && this.accepted >= this.revokeAt) {
        this.revokeAt = null;
        for (const id of this.seen) this.revoked.add(id);
      }
    }
    return reason;
  }

  // Resolves when `barrier.size` refused requests wait (or after 30 s);
  // later refusals pass at once.
  meet(barrier) {
    return new Promise((resolve) => {
      barrier.waiting.push(resolve);
      if (barrier.waiting.length >= barrier.size) {
        if (this.barrier === barrier) this.barrier = null;
        for (const r of barrier.waiting) r();
      } else {
        setTimeout(resolve, 30000).unref();
      }
    });
  }

  // null when the scopes of the request's token (check() ran) grant `perms`
  // on `type`, else the missing scope (recorded; the caller answers 403).
  allowed(grants, method, type, url, perms) {
    if (!this.enabled || !this.enforceScopes || !perms) return null;
    const missing = missingScope(grants || new Map(), type, perms);
    if (missing) this.forbidden.push({ method, type, url, missing });
    return missing;
  }

  async verify(header, req) {
    const m = /^Bearer ([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(header);
    if (!m) return 'missing or malformed bearer token';
    const raw = m[1] + '.' + m[2] + '.' + m[3];
    if (!this.tokens.includes(raw)) {
      this.tokens.push(raw);
      if (this.tokens.length > 200) this.tokens.shift();
    }
    let head;
    let claims;
    try {
      head = b64urlJson(m[1]);
      claims = b64urlJson(m[2]);
    } catch {
      return 'token is not a JWT';
    }
    const alg = ALGS[head.alg];
    if (!alg) return 'unsupported token alg ' + head.alg;
    const key = await this.key(head.kid);
    if (!key) return 'token signed with an unknown key';
    const ok = crypto.verify(
      alg.hash,
      Buffer.from(m[1] + '.' + m[2]),
      { key, padding: alg.padding, dsaEncoding: alg.dsaEncoding },
      Buffer.from(m[3], 'base64url')
    );
    if (!ok) return 'bad token signature';
    const id = claims.jti || m[3];
    this.seen.add(id);
    if (claims.iss !== this.issuer) return 'token from another issuer';
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!aud.includes(this.audience)) return 'token not for this server (aud)';
    if (typeof claims.exp !== 'number' || claims.exp * 1000 <= Date.now()) return 'token expired';
    if (this.revoked.has(id)) return 'token revoked';
    if (this.rejectAll) return 'client access revoked';
    if (req) req.smartGrants = parseScopes(claims.scope);
    return null;
  }
}

module.exports = { BearerGuard };
