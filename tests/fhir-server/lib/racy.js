'use strict';
// Racy conditional update (ours), POST /$test/racy-conditional: a
// top-level conditional update (PUT Type?query) runs as its two steps, the
// search and then the create or update, each under the repository mutex but
// not together, as on servers whose conditional update is not atomic. Between
// the steps a request waits until `parties` conditional updates with the
// same URL are between their steps too (or `waitMs` passed), so that writers
// starting together deterministically all see "no match" and all create:
// the duplicate a client must not provoke. Off by default and after
// DELETE /$test/racy-conditional or POST /$test/reset.
//
//   { "parties": 3, "waitMs": 15000, "types": ["Device"] }   types optional: all

class RacyConditional {
  constructor() {
    this.config = null;
    this.waiting = new Map(); // url -> [resolve]
    this.split = 0; // conditional updates run in two steps
  }

  configure(body) {
    const parties = Number.isInteger(body.parties) && body.parties > 1 ? body.parties : 2;
    const waitMs = Number.isInteger(body.waitMs) && body.waitMs >= 0 ? body.waitMs : 10000;
    const types = Array.isArray(body.types) ? body.types : null;
    this.config = { parties, waitMs, types };
    this.split = 0;
    return this.report();
  }

  clear() {
    this.config = null;
    for (const list of this.waiting.values()) for (const r of list) r();
    this.waiting.clear();
  }

  report() {
    return { racyConditional: this.config, split: this.split };
  }

  applies(method, type, search) {
    return this.config !== null && method === 'PUT' && search !== '' &&
      (this.config.types === null || this.config.types.includes(type));
  }

  meet(url) {
    const { parties, waitMs } = this.config;
    return new Promise((resolve) => {
      const list = this.waiting.get(url) || [];
      list.push(resolve);
      this.waiting.set(url, list);
      if (list.length >= parties) {
        this.waiting.delete(url);
        for (const r of list) r();
      } else {
        setTimeout(resolve, waitMs).unref();
      }
    });
  }

  // Runs `PUT type?query` (fhirReq) in two steps through app's router;
  // resolves to [outcome, resource] like FhirRouter.handleRequest.
  async run(app, fhirReq, grants, type, query) {
    this.split++;
    const [soo, bundle] = await app.routed({ ...fhirReq, method: 'GET', url: `${type}?${query}`, body: undefined }, grants);
    if (!bundle || bundle.resourceType !== 'Bundle') return [soo, bundle];
    const matches = (bundle.entry || []).filter((e) => !e.search || e.search.mode !== 'include');
    await this.meet(`${type}?${query}`);
    if (matches.length > 1) {
      return [{ resourceType: 'OperationOutcome', id: 'precondition-failed',
        issue: [{ severity: 'error', code: 'processing', details: { text: 'Multiple resources match' } }] }, undefined];
    }
    const body = { ...fhirReq.body };
    if (matches.length === 1) {
      body.id = matches[0].resource.id;
      return app.routed({ ...fhirReq, url: `${type}/${body.id}`, body }, grants);
    }
    delete body.id;
    return app.routed({ ...fhirReq, method: 'POST', url: type, body }, grants);
  }
}

module.exports = { RacyConditional };
