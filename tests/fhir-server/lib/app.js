'use strict';
// HTTP front end (ours): turns node:http requests into Medplum FhirRequests,
// runs them through Medplum's FhirRouter against our IndexedMemoryRepository
// and writes FHIR JSON responses. Also serves GET /metadata and the
// test-support endpoints under /$test/.

const http = require('node:http');
const https = require('node:https');
const {
  OperationOutcomeError,
  getReferenceString,
  getStatus,
  isOk,
  isResourceType,
} = require('@medplum/core');
const { FhirRouter } = require('@medplum/fhir-router');
const { loadR4Definitions } = require('./definitions');
const { IndexedMemoryRepository } = require('./repo');
const { buildCapabilityStatement } = require('./capability');
const { FaultTable } = require('./faults');
const { Stats } = require('./stats');
const { BearerGuard } = require('./bearer');
const { neededPermissions } = require('./scopes');
const { RacyConditional } = require('./racy');
const { IntegrityModes } = require('./integrity');
const { parseOffset, withOffset } = require('./offset');
const { BulkExport, BulkError } = require('./bulk');
const { loadBundles } = require('./fastload');
const { Translate } = require('./translate');
const { RequestLog } = require('./requestlog');

const BASE_PATH = '/fhir/R4';
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const DEFAULT_BODY_LIMIT = 20 * 1024 * 1024;
const MEDPLUM_VERSION = require('../package.json').dependencies['@medplum/fhir-router'];

function outcome(code, diagnostics) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics }] };
}

class HttpError extends Error {
  constructor(status, code, diagnostics) {
    super(diagnostics);
    this.status = status;
    this.outcome = outcome(code, diagnostics);
  }
}

function isLoopback(address) {
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1';
}

function mediaType(req) {
  return String(req.headers['content-type'] || '')
    .split(';')[0]
    .trim()
    .toLowerCase();
}

function httpDate(instant) {
  return new Date(instant).toUTCString();
}

// Reads the request body, refusing more than `limit` bytes with a 413. An
// oversized body is still read to its end (and thrown away) so that the
// client gets the 413 instead of a reset connection; past `hardCap` bytes
// the connection is closed without waiting.
function readBody(req, limit, hardCap = limit * 8) {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    const tooBig = () => new HttpError(413, 'too-costly', `Request body exceeds the ${limit}-byte limit`);
    if (declared > hardCap) {
      reject(Object.assign(tooBig(), { closeNow: true }));
      return;
    }
    const chunks = [];
    let size = 0;
    let done = false;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
      } else {
        chunks.length = 0;
        if (size > hardCap && !done) {
          done = true;
          reject(Object.assign(tooBig(), { closeNow: true }));
        }
      }
    });
    req.on('end', () => {
      if (done) {
        return;
      }
      done = true;
      if (size > limit) {
        reject(tooBig());
      } else {
        resolve(Buffer.concat(chunks));
      }
    });
    req.on('error', (err) => {
      if (!done) {
        done = true;
        reject(err);
      }
    });
  });
}

function parseJson(buffer) {
  try {
    return JSON.parse(buffer.toString('utf8'));
  } catch (err) {
    throw new HttpError(400, 'structure', 'Request body is not valid JSON: ' + err.message);
  }
}

function formToQuery(text, into) {
  for (const [k, v] of new URLSearchParams(text)) {
    const old = into[k];
    into[k] = old === undefined ? v : [].concat(old, v);
  }
  return into;
}

// Serialises access to the repository: one FHIR interaction (or one whole
// transaction) at a time, so a transaction's journal only sees its own writes.
class Mutex {
  constructor() {
    this.tail = Promise.resolve();
  }
  run(fn) {
    const result = this.tail.then(fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

class FhirTestApp {
  constructor(options = {}) {
    loadR4Definitions();
    this.bodyLimit = options.bodyLimit || DEFAULT_BODY_LIMIT;
    this.log = options.log || (() => undefined);
    this.baseUrl = '';
    this.startedAt = new Date().toISOString();
    this.repo = new IndexedMemoryRepository({ defaultCount: options.defaultCount });
    this.router = new FhirRouter();
    this.faults = new FaultTable();
    this.capabilityPatch = null; // POST /$test/capability
    this.bareTransactionAnswers = false; // POST /$test/bare-transaction-answers
    this.instantOffset = null; // POST /$test/instant-offset (offset.js)
    this.stats = new Stats();
    this.mutex = new Mutex();
    this.faultStatus = new WeakMap(); // OperationOutcome from a fault -> its HTTP status
    this.faultRetryAfter = new WeakMap(); // ... -> its Retry-After (a fault in a transaction)
    this.bearer = new BearerGuard(); // off until POST /$test/auth (bearer.js)
    this.racy = new RacyConditional(); // off until POST /$test/racy-conditional (racy.js)
    this.integrity = new IntegrityModes(); // POST /$test/integrity (integrity.js)
    this.translate = new Translate(); // ConceptMap/$translate, GET /$test/translate (translate.js)
    this.bulk = new BulkExport(); // $export and its status and file URLs (bulk.js)
    this.requestLog = new RequestLog(); // GET /$test/requests (requestlog.js)
    this.wrapRoutes();
  }

  setBaseUrl(origin) {
    this.baseUrl = origin + BASE_PATH;
    this.repo.baseUrl = this.baseUrl;
  }

  // Wraps every Medplum route handler so that requests for unknown resource
  // types get 404 and so that Bundle entries are counted and can be faulted
  // like top-level requests (Medplum's batch processor calls these same
  // handlers with options.batch set).
  wrapRoutes() {
    for (const route of this.router.router.routes) {
      const inner = route.handler;
      const segments = (route.path || []).map((p) => p.value);
      const perms = segments.length === 0 ? null : neededPermissions(route.method, {
        hasId: segments.includes('id'),
        search: segments.includes('_search'),
        history: segments.includes('_history'),
      });
      route.handler = async (req, repo, router, options) => {
        const type = req.params && req.params.resourceType;
        if (type !== undefined && !isResourceType(type)) {
          throw new OperationOutcomeError({
            resourceType: 'OperationOutcome',
            id: 'not-found',
            issue: [{ severity: 'error', code: 'not-found', details: { text: 'Unknown resource type: ' + type } }],
          });
        }
        if (options && options.batch) {
          const query = new URLSearchParams();
          for (const [k, v] of Object.entries(req.query || {})) {
            for (const one of [].concat(v)) {
              query.append(k, one);
            }
          }
          const qs = query.toString();
          const url = BASE_PATH + '/' + req.url.replace(/^\//, '') + (qs ? '?' + qs : '');
          this.stats.countEntry(req.method, type || '_system', url);
          await this.applyFault(req.method, type || '_system', url);
        }
        if (type !== undefined) {
          // SMART scopes (bearer.js, scopes.js): top-level requests and
          // every Bundle entry alike
          this.checkScope(req.method, type, req.url, perms);
        }
        return inner(req, repo, router, options);
      };
    }
  }

  // One FHIR interaction through Medplum's router under the repository
  // mutex, with the scopes of its token (`grants`) for checkScope.
  routed(fhirReq, grants) {
    return this.mutex.run(() => {
      this.grants = grants;
      return this.router.handleRequest(fhirReq, this.repo);
    });
  }

  // 403 when the token of the request being handled (this.grants, set under
  // the mutex) lacks the scope for this interaction.
  checkScope(method, type, url, perms) {
    const missing = this.bearer.allowed(this.grants, method, type, url, perms);
    if (missing) {
      const oo = outcome('forbidden', `insufficient_scope: ${method} ${type} needs scope ${missing}`);
      this.faultStatus.set(oo, 403);
      throw new OperationOutcomeError(oo);
    }
  }

  // Applies the first matching fault rule: waits its delay, then throws its
  // error if it has a status.
  async applyFault(method, resourceType, url) {
    const rule = this.faults.take(method, resourceType, url);
    if (!rule) {
      return;
    }
    this.log(`fault: ${method} ${url} -> ${rule.status || 'delay'} (${rule.delayMs || 0} ms)`);
    if (rule.delayMs) {
      await sleep(rule.delayMs);
    }
    if (rule.status) {
      const oo = outcome(rule.status === 422 ? 'business-rule' : 'processing', rule.diagnostics);
      this.faultStatus.set(oo, rule.status);
      if (rule.retryAfter !== undefined) {
        this.faultRetryAfter.set(oo, rule.retryAfter);
      }
      const err = new OperationOutcomeError(oo);
      err.retryAfter = rule.retryAfter;
      throw err;
    }
  }

  statusOf(oo) {
    return this.faultStatus.get(oo) || getStatus(oo);
  }

  listener() {
    return (req, res) => {
      // requests still being handled, a dead client's included: a request
      // delayed by a fault rule is applied after its client is gone, as a
      // real server applies what it has received (GET /$test/stats)
      this.inflight = (this.inflight || 0) + 1;
      this.handle(req, res).finally(() => { this.inflight -= 1; }).catch((err) => {
        this.log('internal error: ' + (err && err.stack));
        if (!res.headersSent) {
          this.send(res, 500, outcome('exception', 'Internal error: ' + (err && err.message)));
        } else {
          res.destroy();
        }
      });
    };
  }

  send(res, status, body, headers = {}) {
    if (this.instantOffset) {
      body = withOffset(body, this.instantOffset); // POST /$test/instant-offset
    }
    const text = body === undefined ? '' : JSON.stringify(body);
    res.writeHead(status, {
      ...(text ? { 'Content-Type': FHIR_JSON, 'Content-Length': Buffer.byteLength(text) } : { 'Content-Length': 0 }),
      ...headers,
    });
    res.end(text);
  }

  async handle(req, res) {
    const url = new URL(req.url, 'http://127.0.0.1');
    const start = Date.now();
    res.on('finish', () => this.log(`${req.method} ${req.url} ${res.statusCode} ${Date.now() - start}ms`));
    if (!isLoopback(req.socket.remoteAddress)) {
      this.send(res, 403, outcome('forbidden', 'This test server only answers loopback clients'));
      return;
    }
    try {
      if (url.pathname.startsWith('/$test/')) {
        await this.handleAdmin(req, res, url);
        return;
      }
      req.logEntry = this.requestLog.record(req); // GET /$test/requests
      if (url.pathname !== BASE_PATH && !url.pathname.startsWith(BASE_PATH + '/')) {
        throw new HttpError(404, 'not-found', 'Not a FHIR endpoint; the base is ' + BASE_PATH);
      }
      if (this.bearer.enabled) {
        if (url.pathname === BASE_PATH + '/.well-known/smart-configuration') {
          req.resume();
          const text = JSON.stringify(this.bearer.smartConfiguration());
          res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
          res.end(text);
          return;
        }
        const refused = await this.bearer.check(req);
        if (refused) {
          req.resume();
          const err = new HttpError(401, 'login', 'Unauthorized: ' + refused);
          this.send(res, 401, err.outcome, { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
          return;
        }
      }
      if (await this.bulk.handle(this, req, res, url, url.pathname.slice(BASE_PATH.length).replace(/^\/+/, ''))) {
        return;
      }
      await this.handleFhir(req, res, url);
    } catch (err) {
      if (err instanceof BulkError) {
        this.send(res, err.status, err.outcome, err.headers);
        return;
      }
      if (err instanceof HttpError) {
        this.send(res, err.status, err.outcome, err.closeNow ? { Connection: 'close' } : {});
        if (err.closeNow) {
          req.resume(); // discard whatever else arrives until the socket closes
        }
        return;
      }
      if (err instanceof OperationOutcomeError) {
        const headers = err.retryAfter ? { 'Retry-After': String(err.retryAfter) } : {};
        this.send(res, this.statusOf(err.outcome), err.outcome, headers);
        return;
      }
      throw err;
    }
  }

  async readFhirBody(req, rel) {
    if (req.method === 'GET' || req.method === 'DELETE' || req.method === 'HEAD') {
      req.resume();
      return undefined;
    }
    const buffer = await readBody(req, this.bodyLimit);
    const type = mediaType(req);
    if (req.method === 'POST' && rel.endsWith('/_search')) {
      if (buffer.length && type !== 'application/x-www-form-urlencoded') {
        throw new HttpError(415, 'not-supported', 'POST _search takes application/x-www-form-urlencoded');
      }
      return formToQuery(buffer.toString('utf8'), {});
    }
    const jsonTypes = ['', 'application/fhir+json', 'application/json'];
    if (req.method === 'PATCH') {
      jsonTypes.push('application/json-patch+json');
    }
    if (!jsonTypes.includes(type)) {
      throw new HttpError(415, 'not-supported', 'Unsupported content type ' + type + '; send application/fhir+json');
    }
    if (buffer.length === 0) {
      throw new HttpError(400, 'required', 'Request body is empty');
    }
    const body = parseJson(buffer);
    if (req.logEntry && rel === '' && body && body.resourceType === 'Bundle') req.logEntry.bundleType = body.type;
    return body;
  }

  async handleFhir(req, res, url) {
    const rel = url.pathname.slice(BASE_PATH.length).replace(/^\/+/, '');
    const firstSegment = rel.split('/')[0];
    let resourceType = firstSegment || (req.method === 'POST' ? 'Bundle' : '_system');
    const fullUrl = url.pathname + url.search;
    this.stats.countRequest(req.method, resourceType, rel);

    const body = await this.readFhirBody(req, rel);
    if (!firstSegment && req.method === 'POST' && body && body.resourceType !== 'Bundle') {
      resourceType = String(body.resourceType || '');
    }
    await this.applyFault(req.method, resourceType, fullUrl);
    if (await this.translate.handle(this, req, res, url, rel, body)) {
      return; // ConceptMap/$translate from the stored ConceptMaps (translate.js)
    }

    if (rel === 'metadata') {
      if (req.method !== 'GET') {
        throw new HttpError(405, 'not-supported', 'metadata is read-only');
      }
      const cs = buildCapabilityStatement({ baseUrl: this.baseUrl, startedAt: this.startedAt, medplumVersion: MEDPLUM_VERSION });
      this.send(res, 200, patchCapability(cs, this.capabilityPatch));
      return;
    }

    // a misrouting server (POST /$test/integrity): reads of one patient
    // answered with another's
    const target = req.method === 'GET' ? this.integrity.rewriteRead(rel + url.search) : rel + url.search;
    if (req.method === 'POST' && !firstSegment) {
      this.integrity.rewriteBatch(body);
    }
    const fhirReq = {
      method: req.method,
      url: target,
      pathname: '',
      params: {},
      query: {},
      body,
      headers: req.headers,
      // Without this Medplum runs transaction Bundles as batches.
      config: { transactions: true },
    };
    if (req.method === 'POST' && rel.endsWith('/_search')) {
      // Medplum reads POST _search parameters from the body only; FHIR allows
      // them in the URL too.
      formToQuery(url.search.slice(1), body);
      fhirReq.url = rel;
    }

    const [oo, resource] = this.racy.applies(req.method, firstSegment, url.search) && !rel.includes('/')
      ? await this.racy.run(this, fhirReq, req.smartGrants, firstSegment, url.search.slice(1))
      : await this.routed(fhirReq, req.smartGrants);
    const status = this.statusOf(oo);
    const headers = {};
    if (this.integrity.takeDrop(req.method, resourceType, fullUrl, body)) {
      // carried out, answer lost (POST /$test/integrity dropAnswer)
      req.socket.destroy();
      return;
    }
    if (isOk(oo)) {
      await this.integrity.patchAnswer(req.method, target, body, resource, this.repo);
    }
    if (!isOk(oo)) {
      // a fault in a transaction fails the whole request: its Retry-After too
      const retryAfter = this.faultRetryAfter.get(oo);
      this.send(res, status, oo, retryAfter !== undefined ? { 'Retry-After': String(retryAfter) } : {});
      return;
    }
    if (resource && resource.resourceType === 'Bundle' && /^(batch|transaction)-response$/.test(resource.type)) {
      this.finishBatchResponse(resource);
      if (this.bareTransactionAnswers && resource.type === 'transaction-response') {
        // a server that says only the status of each entry (for clients'
        // tests: where the writes went must then be asked)
        for (const entry of resource.entry || []) {
          delete entry.resource;
          delete entry.fullUrl;
          if (entry.response) {
            delete entry.response.location;
            delete entry.response.etag;
          }
        }
      }
    }
    if (resource && resource.id && resource.meta && resource.meta.versionId && resource.resourceType !== 'Bundle') {
      headers.ETag = 'W/"' + resource.meta.versionId + '"';
      if (resource.meta.lastUpdated) {
        headers['Last-Modified'] = httpDate(resource.meta.lastUpdated);
      }
      if (status === 201) {
        headers.Location = `${this.baseUrl}/${getReferenceString(resource)}/_history/${resource.meta.versionId}`;
      }
    }
    const prefer = String(req.headers.prefer || '');
    if (/return=minimal/.test(prefer) && resource && resource.resourceType === 'Bundle' &&
        /^(batch|transaction)-response$/.test(resource.type)) {
      // for a batch or transaction the preference applies to each entry: the
      // response (status, location, etag) without the resource
      for (const entry of resource.entry || []) {
        delete entry.resource;
      }
      this.send(res, status, resource, headers);
    } else if (/return=minimal/.test(prefer)) {
      this.send(res, status, undefined, headers);
    } else if (/return=OperationOutcome/i.test(prefer) || !resource) {
      this.send(res, status, oo, headers);
    } else {
      this.send(res, status, resource, headers);
    }
  }

  // Medplum's batch processor reports each entry with getStatus(), which
  // does not know the status of an injected fault, and gives no etag or
  // versioned location; fill those in.
  finishBatchResponse(bundle) {
    for (const entry of bundle.entry || []) {
      const response = entry.response;
      if (!response) {
        continue;
      }
      if (response.outcome && this.faultStatus.has(response.outcome)) {
        response.status = String(this.faultStatus.get(response.outcome));
      }
      const r = entry.resource;
      if (r && r.id && r.meta && r.meta.versionId && isOk(response.outcome || { id: 'ok' })) {
        entry.fullUrl = `${this.baseUrl}/${getReferenceString(r)}`;
        response.location = `${getReferenceString(r)}/_history/${r.meta.versionId}`;
        response.etag = 'W/"' + r.meta.versionId + '"';
        response.lastModified = r.meta.lastUpdated;
      }
    }
  }

  async handleAdmin(req, res, url) {
    const route = req.method + ' ' + url.pathname;
    let body;
    if (route === 'POST /$test/load') {
      // benchmark loading: many Bundles per request (fastload.js)
      const text = (await readBody(req, 256 * 1024 * 1024)).toString('utf8');
      try {
        this.send(res, 200, await this.mutex.run(() => loadBundles(this.repo, text)));
      } catch (err) {
        throw new HttpError(400, 'invalid', err.message);
      }
      return;
    }
    if (req.method === 'POST') {
      const buffer = await readBody(req, 1024 * 1024);
      body = buffer.length ? parseJson(buffer) : {};
    } else {
      req.resume();
    }
    switch (route) {
      case 'POST /$test/reset':
        this.requestLog.clear();
        this.racy.clear();
        this.bulk.clear();
        this.capabilityPatch = null;
        this.instantOffset = null;
        this.bareTransactionAnswers = false;
        await this.mutex.run(() => this.repo.clear());
        this.faults.clear();
        this.stats.clear();
        this.integrity.clear();
        this.translate.clear();
        this.send(res, 200, { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational', diagnostics: 'repository emptied' }] });
        return;
      case 'POST /$test/fault':
        try {
          this.send(res, 200, { faults: this.faults.add(body) });
        } catch (err) {
          throw new HttpError(400, 'invalid', err.message);
        }
        return;
      case 'GET /$test/fault':
        this.send(res, 200, { faults: this.faults.list() });
        return;
      case 'DELETE /$test/fault':
        this.faults.clear();
        this.send(res, 200, { faults: [] });
        return;
      case 'GET /$test/translate':
        this.send(res, 200, this.translate.report());
        return;
      case 'GET /$test/requests':
        this.send(res, 200, this.requestLog.snapshot(url.searchParams));
        return;
      case 'DELETE /$test/requests':
        this.requestLog.clear();
        this.send(res, 200, this.requestLog.snapshot(url.searchParams));
        return;
      case 'GET /$test/stats':
        // inflight: the other requests being handled (not this one)
        this.send(res, 200, { ...this.stats.snapshot(), inflight: this.inflight - 1 });
        return;
      case 'GET /$test/memory': {
        // the server's own memory, for benchmarks; a full collection first
        // when node runs with --expose-gc, so that heapUsed is what is live
        if (typeof global.gc === 'function') global.gc();
        this.send(res, 200, { ...process.memoryUsage(), collected: typeof global.gc === 'function' });
        return;
      }
      case 'POST /$test/auth':
        try {
          this.send(res, 200, this.bearer.configure(body, this.baseUrl));
        } catch (err) {
          throw new HttpError(400, 'invalid', err.message);
        }
        return;
      case 'GET /$test/auth':
        this.send(res, 200, this.bearer.report());
        return;
      case 'DELETE /$test/stats':
        this.stats.clear();
        this.send(res, 200, this.stats.snapshot());
        return;
      case 'POST /$test/capability':
        if (!body || typeof body !== 'object' || Array.isArray(body)) {
          throw new HttpError(400, 'invalid', 'capability patch must be a JSON object');
        }
        this.capabilityPatch = body;
        this.send(res, 200, { capability: body });
        return;
      case 'POST /$test/bare-transaction-answers':
        this.bareTransactionAnswers = true;
        this.send(res, 200, { bareTransactionAnswers: true });
        return;
      case 'DELETE /$test/bare-transaction-answers':
        this.bareTransactionAnswers = false;
        this.send(res, 200, { bareTransactionAnswers: false });
        return;
      case 'POST /$test/racy-conditional':
        this.send(res, 200, this.racy.configure(body || {}));
        return;
      case 'GET /$test/racy-conditional':
        this.send(res, 200, this.racy.report());
        return;
      case 'DELETE /$test/racy-conditional':
        this.racy.clear();
        this.send(res, 200, this.racy.report());
        return;
      case 'POST /$test/integrity':
        try {
          this.send(res, 200, this.integrity.configure(body));
        } catch (err) {
          throw new HttpError(400, 'invalid', err.message);
        }
        return;
      case 'GET /$test/integrity':
        this.send(res, 200, this.integrity.report());
        return;
      case 'POST /$test/instant-offset':
        try {
          this.instantOffset = parseOffset(body && body.offset);
        } catch (err) {
          throw new HttpError(400, 'invalid', err.message);
        }
        this.send(res, 200, { offset: this.instantOffset.text });
        return;
      case 'DELETE /$test/instant-offset':
        this.instantOffset = null;
        this.send(res, 200, { offset: null });
        return;
      case 'POST /$test/bulk':
        try {
          this.send(res, 200, this.bulk.configure(body));
        } catch (err) {
          throw new HttpError(400, 'invalid', err.message);
        }
        return;
      case 'GET /$test/bulk':
        this.send(res, 200, this.bulk.report());
        return;
      case 'DELETE /$test/capability':
        this.capabilityPatch = null;
        this.send(res, 200, { capability: null });
        return;
      default:
        throw new HttpError(404, 'not-found', 'Unknown test endpoint: ' + route);
    }
  }
}

// Applies a POST /$test/capability patch to the CapabilityStatement: every
// top-level key but `resource` and `types` replaces that key of the
// statement; `resource` fields replace those fields of each rest.resource
// entry (only of the `types` listed, when given); a null value removes the
// key. Lets tests serve a statement without, e.g., conditionalUpdate.
function patchCapability(cs, patch) {
  if (!patch) {
    return cs;
  }
  const set = (obj, key, value) => {
    if (value === null) {
      delete obj[key];
    } else {
      obj[key] = value;
    }
  };
  for (const [key, value] of Object.entries(patch)) {
    if (key !== 'resource' && key !== 'types') {
      set(cs, key, value);
    }
  }
  if (patch.resource && cs.rest) {
    for (const rest of cs.rest) {
      for (const r of rest.resource || []) {
        if (!patch.types || patch.types.includes(r.type)) {
          for (const [key, value] of Object.entries(patch.resource)) {
            set(r, key, value);
          }
        }
      }
    }
  }
  return cs;
}

// Starts a server on 127.0.0.1; resolves to { server, app, port, baseUrl }.
// With options.tls = { cert, key, clientCa } (PEM text) it serves HTTPS, and
// with clientCa it also requires a client certificate signed by that CA.
function startServer(options = {}) {
  const app = new FhirTestApp(options);
  const tls = options.tls;
  const server = tls
    ? https.createServer(
        {
          cert: tls.cert,
          key: tls.key,
          ...(tls.clientCa ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
        },
        app.listener()
      )
    : http.createServer(app.listener());
  server.keepAliveTimeout = 5000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port || 0, '127.0.0.1', () => {
      server.removeListener('error', reject);
      const { port } = server.address();
      app.setBaseUrl(`${tls ? 'https' : 'http'}://127.0.0.1:${port}`);
      resolve({ server, app, port, baseUrl: app.baseUrl });
    });
  });
}

module.exports = { FhirTestApp, startServer, BASE_PATH };
