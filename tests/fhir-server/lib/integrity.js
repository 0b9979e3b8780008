'use strict';
// Misbehaving-server modes for the adapter's data-integrity tests (ours):
// POST /$test/integrity. A real server does not fail like this on demand; a
// misrouted proxy, a stale cache or a patient merge does, so these stand in
// for them.
//
//   {"swap": {"from": "A", "to": "B"}}
//       every read that names Patient/A (the read itself, subject= and
//       patient= searches, top level or inside a batch) is answered as if it
//       named Patient/B: A's reads get B's Patient, Conditions, Observations.
//       "types": ["Condition"] limits it to those resource types.
//   {"foreign": {"type": "CarePlan", "add": "CarePlan/ID"}}
//       every identifier= search of that type (top level or in a batch)
//       also returns the resource named by add (another patient's plan).
//   {"absoluteSubjects": true}
//       in the answer to a subject= or identifier= search (top level or in
//       a batch) every resource gives its subject as an absolute URL on this
//       server's base, as some servers do: a legitimate form a client must
//       accept.  {"absoluteSubjects": "all"}: in the answer to every search
//       (the cohort's code= search and the _lastUpdated change searches too),
//       as a server that stores or renders references absolute does.
//   {"dropAnswer": {"method": "POST", "resourceType": "Bundle",
//                   "bundleType": "transaction", "match": "...", "count": 1}}
//       the next `count` matching requests are carried out (committed) and
//       then the connection is closed without an answer: a lost response.
//   {}   clears every mode and answers with what they did (POST /$test/reset
//        clears them too).
// GET /$test/integrity reports the modes and how often each acted.

class IntegrityModes {
  constructor() {
    this.clear();
  }

  clear() {
    this.swap = null;
    this.foreign = null;
    this.absoluteSubjects = false;
    this.drops = [];
    this.counts = { swapped: 0, foreign: 0, dropped: 0, absolute: 0 };
  }

  configure(body) {
    if (!body || typeof body !== 'object' || Array.isArray(body)) {
      throw new Error('integrity mode must be a JSON object');
    }
    for (const key of Object.keys(body)) {
      if (!['swap', 'foreign', 'dropAnswer', 'absoluteSubjects'].includes(key)) {
        throw new Error('unknown integrity mode: ' + key);
      }
    }
    if (Object.keys(body).length === 0) {
      const last = this.report(); // what the modes did, for the test that ends them
      this.clear();
      return last;
    }
    if (body.swap !== undefined) {
      const s = body.swap;
      if (s !== null && (typeof s.from !== 'string' || typeof s.to !== 'string' || !s.from || !s.to)) {
        throw new Error('swap needs "from" and "to" patient ids');
      }
      this.swap = s;
    }
    if (body.foreign !== undefined) {
      const f = body.foreign;
      if (f !== null && (typeof f.type !== 'string' || typeof f.add !== 'string' || !f.add.startsWith(f.type + '/'))) {
        throw new Error('foreign needs "type" and "add" ("Type/id")');
      }
      this.foreign = f;
    }
    if (body.absoluteSubjects !== undefined) {
      const v = body.absoluteSubjects;
      if (v !== true && v !== false && v !== 'all') {
        throw new Error('absoluteSubjects: true, false or "all"');
      }
      this.absoluteSubjects = v;
    }
    if (body.dropAnswer !== undefined) {
      const d = body.dropAnswer;
      if (d === null) {
        this.drops = [];
      } else {
        const count = d.count === undefined ? 1 : d.count;
        if (!Number.isInteger(count) || (count < 1 && count !== -1)) {
          throw new Error('dropAnswer.count must be a positive integer or -1');
        }
        this.drops.push({ ...d, method: d.method && String(d.method).toUpperCase(), count });
      }
    }
    return this.report();
  }

  report() {
    return { swap: this.swap, foreign: this.foreign, absoluteSubjects: this.absoluteSubjects,
      dropAnswer: this.drops, counts: this.counts };
  }

  // The relative URL of a read (path and query), with Patient/A replaced by
  // Patient/B when a swap is on and applies to the type.
  rewriteRead(rel) {
    const s = this.swap;
    if (!s) {
      return rel;
    }
    const type = rel.replace(/^\/+/, '').split(/[/?]/)[0];
    if (s.types && !s.types.includes(type)) {
      return rel;
    }
    const esc = (x) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const re = new RegExp(`(^|[=,/])Patient(/|%2F)${esc(s.from)}(?=$|[&/?,])`, 'gi');
    const out = type === 'Patient'
      ? rel.replace(new RegExp(`^(/?Patient/)${esc(s.from)}(?=$|[/?])`), `$1${s.to}`)
      : rel.replace(re, `$1Patient$2${s.to}`);
    if (out !== rel) {
      this.counts.swapped++;
    }
    return out;
  }

  // Rewrites the GET entries of a batch Bundle (in place).
  rewriteBatch(body) {
    if (!this.swap || !body || body.resourceType !== 'Bundle' || !Array.isArray(body.entry)) {
      return;
    }
    for (const e of body.entry) {
      if (e && e.request && e.request.method === 'GET' && typeof e.request.url === 'string') {
        e.request.url = this.rewriteRead(e.request.url);
      }
    }
  }

  wantsForeign(type, url) {
    return this.foreign && this.foreign.type === type && /[?&]identifier=/.test(url);
  }

  // Adds the foreign resource to a searchset (in place), once.
  async addForeign(bundle, repo) {
    const [type, id] = this.foreign.add.split('/');
    if (!bundle || bundle.type !== 'searchset') {
      return;
    }
    bundle.entry = bundle.entry || [];
    if (bundle.entry.some((e) => e.resource && e.resource.resourceType === type && e.resource.id === id)) {
      return;
    }
    const res = await repo.readResource(type, id);
    bundle.entry.push({ fullUrl: `${repo.baseUrl}/${type}/${id}`, resource: res, search: { mode: 'match' } });
    if (typeof bundle.total === 'number') {
      bundle.total += 1;
    }
    this.counts.foreign++;
  }

  // Subject references of a searchset made absolute (in place).
  absolutize(bundle, repo) {
    for (const e of (bundle && bundle.type === 'searchset' && bundle.entry) || []) {
      const ref = e.resource && e.resource.subject && e.resource.subject.reference;
      if (typeof ref === 'string' && ref.startsWith('Patient/')) {
        e.resource.subject.reference = `${repo.baseUrl}/${ref}`;
        this.counts.absolute++;
      }
    }
  }

  // The searchsets of a top-level search or of a batch-response.
  async patchAnswer(method, rel, reqBody, resource, repo) {
    if (!resource || resource.resourceType !== 'Bundle') {
      return;
    }
    const patientSearch = (url) => this.absoluteSubjects === 'all' || /[?&](subject|identifier)=/.test(url);
    if (this.absoluteSubjects) {
      if ((method === 'GET' && patientSearch(rel)) || (this.absoluteSubjects === 'all' && resource.type === 'searchset')) {
        // ("all": a search by POST [type]/_search too)
        this.absolutize(resource, repo);
      }
      if (method === 'POST' && resource.type === 'batch-response' && reqBody && Array.isArray(reqBody.entry)) {
        reqBody.entry.forEach((e, i) => {
          const out = resource.entry && resource.entry[i];
          if (e && e.request && patientSearch(String(e.request.url)) && out) {
            this.absolutize(out.resource, repo);
          }
        });
      }
    }
    if (!this.foreign) {
      return;
    }
    const type = rel.replace(/^\/+/, '').split(/[/?]/)[0];
    if (method === 'GET' && resource.type === 'searchset' && this.wantsForeign(type, rel)) {
      await this.addForeign(resource, repo);
      return;
    }
    if (method === 'POST' && resource.type === 'batch-response' && reqBody && Array.isArray(reqBody.entry)) {
      for (let i = 0; i < reqBody.entry.length; i++) {
        const rq = reqBody.entry[i] && reqBody.entry[i].request;
        const out = resource.entry && resource.entry[i];
        if (rq && rq.method === 'GET' && out && out.resource) {
          const t = String(rq.url).replace(/^\/+/, '').split(/[/?]/)[0];
          if (this.wantsForeign(t, '?' + String(rq.url).split('?')[1])) {
            await this.addForeign(out.resource, repo);
          }
        }
      }
    }
  }

  // Should the answer to this (already carried out) request be dropped?
  takeDrop(method, resourceType, url, body) {
    const i = this.drops.findIndex((d) =>
      (!d.method || d.method === method) &&
      (!d.resourceType || d.resourceType === resourceType) &&
      (!d.bundleType || (body && body.type === d.bundleType)) &&
      (!d.match || url.includes(d.match)));
    if (i < 0) {
      return false;
    }
    const d = this.drops[i];
    if (d.count !== -1 && --d.count === 0) {
      this.drops.splice(i, 1);
    }
    this.counts.dropped++;
    return true;
  }
}

module.exports = { IntegrityModes };
