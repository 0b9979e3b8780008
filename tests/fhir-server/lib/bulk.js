'use strict';
// Bulk Data Access (HL7 FHIR Bulk Data IG v2) `$export` for the test server
// (ours, all of it): kick-off at [base]/Patient/$export,
// [base]/Group/[id]/$export and [base]/$export with `Prefer: respond-async`
// -> 202 + Content-Location; the status URL answers 202 with X-Progress and
// Retry-After while "in progress", then 200 with the manifest; NDJSON file
// URLs; DELETE of the status URL cancels / releases the job. `_since`,
// `_type` and `_typeFilter` are honoured; `deleted` lists, with `_since`,
// one Bundle of DELETE entries for the resources deleted since then.
//
// The export is computed at kick-off (a snapshot), so that a job's output
// does not change while a client downloads it, as a real server's files do
// not. Faults for clients' tests are set with POST /$test/bulk (see the
// README): 429 + Retry-After on polling, 5xx and truncated bodies on
// downloads, expired file URLs.

const crypto = require('node:crypto');
const { parseSearchRequest, matchesSearchRequest } = require('@medplum/core');

const NDJSON = 'application/fhir+ndjson';
const SUPPORTED_TYPES = ['Patient', 'Condition', 'Observation', 'Group'];

function oo(code, diagnostics) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics }] };
}

class BulkError extends Error {
  constructor(status, code, diagnostics, headers = {}) {
    super(diagnostics);
    this.status = status;
    this.outcome = oo(code, diagnostics);
    this.headers = headers;
  }
}

const DEFAULTS = {
  pollsBeforeReady: 1, // 202 answers before the manifest
  retryAfter: 0, // Retry-After (s) on an "in progress" answer
  linesPerFile: 1000, // NDJSON lines per output file
  poll429: 0, // the next N polls answer 429
  poll429RetryAfter: 1,
  download5xx: 0, // the next N downloads answer 503
  truncate: 0, // the next N downloads are cut off half-way
  expire: 0, // the next N downloads find their URL expired (403); the manifest then has new URLs
  ignoreTypeFilter: false, // a server that ignores _typeFilter (clients must filter themselves)
  holdPolls: false, // answer 202 until released (POST /$test/bulk {"holdPolls": false})
  badLine: 0, // the next N downloads carry one line that is not JSON, after the first
  stallDownloadsAfter: -1, // serve N downloads, then leave the next ones unanswered (-1: off)
  absoluteSubjects: false, // lines give their subject as an absolute URL on the base, as some servers export them
};

// The patient a resource belongs to, as "Patient/id", or undefined.
function patientOf(resource) {
  if (resource.resourceType === 'Patient') {
    return 'Patient/' + resource.id;
  }
  const ref = resource.subject && resource.subject.reference;
  return typeof ref === 'string' && ref.startsWith('Patient/') ? ref : undefined;
}

// A resource's text with its subject "Patient/id" made "<base>/Patient/id".
function absoluteSubject(json, base) {
  const r = JSON.parse(json);
  const ref = r.subject && r.subject.reference;
  if (typeof ref !== 'string' || !ref.startsWith('Patient/')) {
    return json;
  }
  r.subject.reference = `${base}/${ref}`;
  return JSON.stringify(r);
}

class BulkExport {
  constructor() {
    this.jobs = new Map();
    this.config = { ...DEFAULTS };
    this.counters = { kickoffs: 0, polls: 0, downloads: 0, deletes: 0 };
  }

  clear() {
    this.jobs.clear();
    this.config = { ...DEFAULTS };
    this.counters = { kickoffs: 0, polls: 0, downloads: 0, deletes: 0 };
  }

  configure(body) {
    for (const [k, v] of Object.entries(body || {})) {
      if (!(k in DEFAULTS)) {
        throw new Error('unknown bulk setting ' + k);
      }
      this.config[k] = v;
    }
    return this.report();
  }

  report() {
    return { config: this.config, counters: this.counters, jobs: [...this.jobs.keys()] };
  }

  // Handles a bulk request under the FHIR base; false when rel is not one.
  async handle(app, req, res, url, rel) {
    let m;
    if (/^(\$export|Patient\/\$export|Group\/[^/]+\/\$export)$/.test(rel)) {
      req.resume();
      this.kickoff(app, req, res, url, rel);
      return true;
    }
    if ((m = /^\$bulk-status\/([0-9a-f]+)$/.exec(rel))) {
      req.resume();
      this.status(app, req, res, m[1]);
      return true;
    }
    if ((m = /^\$bulk-file\/([0-9a-f]+)\/(\d+)$/.exec(rel))) {
      req.resume();
      this.download(app, req, res, url, m[1], Number(m[2]));
      return true;
    }
    return false;
  }

  kickoff(app, req, res, url, rel) {
    if (req.method !== 'GET' && req.method !== 'POST') {
      throw new BulkError(405, 'not-supported', '$export takes GET (or POST)');
    }
    if (!/respond-async/.test(String(req.headers.prefer || ''))) {
      throw new BulkError(400, 'invalid', '$export needs the header Prefer: respond-async');
    }
    const accept = String(req.headers.accept || 'application/fhir+json');
    if (!/application\/fhir\+json|\*\/\*/.test(accept)) {
      throw new BulkError(400, 'invalid', '$export answers application/fhir+json only (Accept: ' + accept + ')');
    }
    const q = url.searchParams;
    const format = q.get('_outputFormat');
    if (format && !['application/fhir+ndjson', 'application/ndjson', 'ndjson'].includes(format)) {
      throw new BulkError(400, 'not-supported', 'unsupported _outputFormat ' + format);
    }
    const types = q.get('_type') ? q.getAll('_type').join(',').split(',').map((t) => t.trim()).filter(Boolean) : ['Patient', 'Condition', 'Observation'];
    for (const t of types) {
      if (!SUPPORTED_TYPES.includes(t)) {
        throw new BulkError(400, 'not-supported', '_type ' + t + ' is not exported by this server');
      }
    }
    const since = q.get('_since');
    if (since && Number.isNaN(Date.parse(since))) {
      throw new BulkError(400, 'invalid', '_since is not an instant: ' + since);
    }
    // _typeFilter: "Type?query", repeated or comma-separated; several for
    // one type are ORed (IG v2)
    const filters = new Map();
    for (const raw of q.getAll('_typeFilter')) {
      for (const one of raw.split(/,(?=[A-Z][A-Za-z]*\?)/)) {
        const qm = one.indexOf('?');
        const type = qm < 0 ? one : one.slice(0, qm);
        if (!SUPPORTED_TYPES.includes(type)) {
          throw new BulkError(400, 'invalid', '_typeFilter type ' + type + ' not supported');
        }
        const query = Object.fromEntries(new URLSearchParams(qm < 0 ? '' : one.slice(qm + 1)));
        filters.set(type, (filters.get(type) || []).concat(parseSearchRequest(type, query)));
      }
    }
    const repo = app.repo;
    let members = null; // Set of "Patient/id", null: every patient
    const gm = /^Group\/([^/]+)\//.exec(rel);
    if (gm) {
      const group = repo.currentEntry('Group', gm[1]);
      if (!group) {
        throw new BulkError(404, 'not-found', 'Group/' + gm[1] + ' not found');
      }
      members = new Set((group.resource.member || []).map((x) => x.entity && x.entity.reference).filter(Boolean));
    }
    const transactionTime = new Date().toISOString();
    const sinceMs = since ? Date.parse(since) : -Infinity;
    const lines = new Map(types.map((t) => [t, []]));
    const deleted = [];
    const inScope = (resource) => {
      const p = patientOf(resource);
      return p !== undefined && (members === null || members.has(p));
    };
    for (const [key, list] of repo.versions) {
      const last = list[list.length - 1];
      const type = key.slice(0, key.indexOf('/'));
      if (!lines.has(type)) {
        continue;
      }
      if (Date.parse(last.lastUpdated) <= sinceMs) {
        continue;
      }
      if (last.deleted) {
        const prior = [...list].reverse().find((v) => !v.deleted);
        if (since && prior && inScope(prior.resource)) {
          deleted.push({ request: { method: 'DELETE', url: key } });
        }
        continue;
      }
      const r = last.resource;
      if (!inScope(r)) {
        continue;
      }
      const f = filters.get(type);
      if (f && !this.config.ignoreTypeFilter && !f.some((sr) => matchesSearchRequest(r, sr))) {
        continue;
      }
      lines.get(type).push(this.config.absoluteSubjects ? absoluteSubject(last.json, app.baseUrl) : last.json);
    }
    const id = crypto.randomBytes(8).toString('hex');
    const files = [];
    for (const [type, all] of lines) {
      for (let i = 0; i < all.length; i += this.config.linesPerFile) {
        files.push({ type, text: all.slice(i, i + this.config.linesPerFile).join('\n') + '\n', count: Math.min(this.config.linesPerFile, all.length - i) });
      }
    }
    const deletedFiles = [];
    if (deleted.length) {
      deletedFiles.push({ type: 'Bundle', text: JSON.stringify({ resourceType: 'Bundle', type: 'batch', entry: deleted }) + '\n' });
    }
    this.jobs.set(id, {
      id,
      request: app.baseUrl + '/' + rel + url.search,
      transactionTime,
      files,
      deletedFiles,
      polls: 0,
      gen: 1,
      withToken: app.bearer.enabled,
    });
    this.counters.kickoffs++;
    app.send(res, 202, undefined, { 'Content-Location': app.baseUrl + '/$bulk-status/' + id });
  }

  job(jobId) {
    const job = this.jobs.get(jobId);
    if (!job) {
      throw new BulkError(404, 'not-found', 'no bulk export job ' + jobId + ' (deleted, or never started)');
    }
    return job;
  }

  status(app, req, res, jobId) {
    const job = this.job(jobId);
    if (req.method === 'DELETE') {
      this.jobs.delete(jobId);
      this.counters.deletes++;
      app.send(res, 202, undefined);
      return;
    }
    if (req.method !== 'GET') {
      throw new BulkError(405, 'not-supported', 'the status URL takes GET or DELETE');
    }
    this.counters.polls++;
    if (this.config.poll429 > 0) {
      this.config.poll429--;
      throw new BulkError(429, 'throttled', 'polling too often', { 'Retry-After': String(this.config.poll429RetryAfter) });
    }
    if (this.config.holdPolls || job.polls < this.config.pollsBeforeReady) {
      job.polls++;
      const pct = Math.min(99, Math.round((100 * job.polls) / (this.config.pollsBeforeReady + 1)));
      res.writeHead(202, { 'X-Progress': pct + '% done', 'Retry-After': String(this.config.retryAfter), 'Content-Length': 0 });
      res.end();
      return;
    }
    const fileUrl = (n) => `${app.baseUrl}/$bulk-file/${job.id}/${n}?gen=${job.gen}`;
    const manifest = {
      transactionTime: job.transactionTime,
      request: job.request,
      requiresAccessToken: job.withToken,
      output: job.files.map((f, n) => ({ type: f.type, url: fileUrl(n), count: f.count })),
      deleted: job.deletedFiles.map((f, n) => ({ type: f.type, url: fileUrl(job.files.length + n) })),
      error: [],
    };
    res.writeHead(200, { 'Content-Type': 'application/json', Expires: new Date(Date.now() + 3600e3).toUTCString() });
    res.end(JSON.stringify(manifest));
  }

  download(app, req, res, url, jobId, n) {
    const job = this.job(jobId);
    const file = n < job.files.length ? job.files[n] : job.deletedFiles[n - job.files.length];
    if (!file || req.method !== 'GET') {
      throw new BulkError(404, 'not-found', 'no such bulk file');
    }
    this.counters.downloads++;
    if (this.config.stallDownloadsAfter >= 0 && this.counters.downloads > this.config.stallDownloadsAfter) {
      // a download that never ends, for a client killed mid-download
      // (the socket closes with the client)
      res.writeHead(200, { 'Content-Type': NDJSON });
      res.write(file.text.slice(0, 10));
      return;
    }
    if (Number(url.searchParams.get('gen')) !== job.gen) {
      throw new BulkError(403, 'expired', 'this file URL has expired; poll the status URL for a new one');
    }
    if (this.config.expire > 0) {
      this.config.expire--;
      job.gen++;
      throw new BulkError(403, 'expired', 'this file URL has expired; poll the status URL for a new one');
    }
    if (this.config.download5xx > 0) {
      this.config.download5xx--;
      throw new BulkError(503, 'transient', 'file temporarily unavailable', { 'Retry-After': '0' });
    }
    const body = Buffer.from(file.text, 'utf8');
    if (this.config.truncate > 0) {
      this.config.truncate--;
      // the length is promised, half of it is sent, then the connection
      // drops: the client must notice the short body
      res.writeHead(200, { 'Content-Type': NDJSON, 'Content-Length': body.length });
      res.write(body.subarray(0, Math.floor(body.length / 2)), () => res.destroy());
      return;
    }
    let full = body;
    if (this.config.badLine > 0) {
      // only on an answer that is otherwise whole, so that the client sees it
      this.config.badLine--;
      const cut = file.text.indexOf('\n') + 1;
      full = Buffer.from(file.text.slice(0, cut) + '{"resourceType": "Observation", broken\n' + file.text.slice(cut), 'utf8');
    }
    res.writeHead(200, { 'Content-Type': NDJSON, 'Content-Length': full.length });
    res.end(full);
  }
}

module.exports = { BulkExport, BulkError };
