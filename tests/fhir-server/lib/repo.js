'use strict';
// IndexedMemoryRepository: Medplum's MemoryRepository with the behaviour a
// test double of a real FHIR server needs and the stock class lacks.
//
// What stays Medplum's: storage of the current version of each resource,
// id and versionId generation, search matching semantics
// (matchesSearchRequest), FHIRPath evaluation, resource validation
// (validateResource) and the full-scan search used when no index applies.
//
// What this file adds (ours):
//   - validateResource() on every create and update (400 + OperationOutcome);
//   - server-assigned ids and meta on create, as real servers do (the stock
//     class keeps a client's id, meta.versionId and meta.lastUpdated);
//   - a version log kept here, because the stock readHistory() reverses its
//     stored array in place on every call and forgets deletes; history,
//     vread and "410 Gone" after delete are answered from this log;
//   - an index on reference and token search parameters, so that
//     `subject=Patient/ID`, `identifier=system|value` or `code=system|code`
//     does not evaluate a FHIRPath expression for every stored resource (the
//     stock search parses the parameter's expression once per resource and
//     search). The index keys are computed with @medplum/core's own
//     conversions (convertToSearchableReferences/Tokens) and mirror its
//     matching rules, so indexed answers equal the stock matcher's (checked
//     by test/index.test.js); other filters still go through the stock
//     matchesSearchRequest, on the index's candidates only;
//   - searchset Bundles with fullUrl, search.mode, a default and maximum page
//     size and self/next/previous links;
//   - 400 for search parameters the resource type does not define (the stock
//     search silently matches nothing);
//   - all-or-nothing transactions: withTransaction() keeps a journal and
//     undoes the writes of a failed transaction (the stock one runs the
//     callback with no rollback).

const {
  DEFAULT_MAX_SEARCH_COUNT,
  DEFAULT_SEARCH_COUNT,
  Operator,
  OperationOutcomeError,
  badRequest,
  convertToSearchableReferences,
  convertToSearchableTokens,
  deepClone,
  evalFhirPathTyped,
  formatSearchQuery,
  generateId,
  getParsedExpressionForResourceType,
  getSearchParameters,
  gone,
  matchesSearchRequest,
  notFound,
  preconditionFailed,
  splitSearchOnComma,
  toTypedValue,
  validateResource,
} = require('@medplum/core');
const { MemoryRepository } = require('@medplum/fhir-router');

const NO_MATCH_KEY = '\u0000no-match';
// Search parameter types @medplum/core's matchesSearchRequest can evaluate.
const MATCHABLE_TYPES = new Set(['reference', 'string', 'uri', 'token', 'date']);

function refKey(resourceType, id) {
  return resourceType + '/' + id;
}

function lower(value) {
  return value === undefined || value === null ? undefined : String(value).toLowerCase();
}

// Index keys for one token value. They mirror the four query forms of a
// token search (code, system|code, |code, system|) with the same
// case-insensitive comparison that @medplum/core's matcher uses.
function tokenIndexKeys(token, out) {
  const system = lower(token.system);
  const value = lower(token.value);
  if (value !== undefined) {
    out.push('*|' + value);
    out.push((system || '') + '|' + value);
  }
  if (system) {
    out.push(system + '|*');
  }
}

// Index key a token query value looks up, or undefined when the value is
// not one the index can answer.
function tokenQueryKey(filterValue) {
  if (!filterValue.includes('|')) {
    return '*|' + filterValue.toLowerCase();
  }
  const [system, value] = filterValue.split('|').map((s) => s.toLowerCase());
  if (!system && !value) {
    return NO_MATCH_KEY;
  }
  if (!value) {
    return system + '|*';
  }
  return (system || '') + '|' + value;
}

// One entry of the version log. The resource is kept as its JSON text:
// a version never changes once written, each read gets its own copy, and
// the text takes less memory than the parsed object (48 against 68 MiB for
// 3,000 patients; the bulk bench holds 100,000 patients in this log).
class Version {
  constructor(resource, method) {
    this.json = JSON.stringify(resource);
    this.method = method;
    this.versionId = resource.meta.versionId;
    this.lastUpdated = resource.meta.lastUpdated;
  }

  get resource() {
    return JSON.parse(this.json);
  }
}

function stripServerMeta(resource) {
  if (resource.meta) {
    delete resource.meta.versionId;
    delete resource.meta.lastUpdated;
    if (Object.keys(resource.meta).length === 0) {
      delete resource.meta;
    }
  }
}

function checkValid(resource) {
  if (!resource || typeof resource !== 'object' || Array.isArray(resource)) {
    throw new OperationOutcomeError(badRequest('Request body must be a FHIR resource'));
  }
  try {
    validateResource(resource);
  } catch (err) {
    if (err instanceof OperationOutcomeError) {
      throw err;
    }
    throw new OperationOutcomeError(badRequest('Invalid resource: ' + (err && err.message)));
  }
}


class IndexedMemoryRepository extends MemoryRepository {
  constructor(options = {}) {
    super();
    this.baseUrl = options.baseUrl || '';
    this.defaultCount = options.defaultCount || DEFAULT_SEARCH_COUNT;
    this.maxCount = options.maxCount || DEFAULT_MAX_SEARCH_COUNT;
    this.paramCache = new Map();
    this.resetState();
  }

  resetState() {
    this.versions = new Map(); // "Type/id" -> [Version, or { deleted, method, versionId, lastUpdated }]
    this.order = new Map(); // "Type/id" -> creation sequence, for stable search order
    this.seq = 0;
    // "Type\0code\0key" -> the id itself while one resource has the key
    // (every _id and most identifier keys), else a Set of ids whose .pkey
    // is the key; a Set per key was most of the index's memory
    this.postings = new Map();
    this.keysOf = new Map(); // "Type/id" -> what holds it: a key string (one id) or the Set
    this.journal = undefined;
  }

  clear() {
    super.clear();
    this.resetState();
  }

  // The reference and token search parameters of a resource type, each
  // with its FHIRPath expression parsed once and cut down to this type.
  indexedParams(resourceType) {
    let params = this.paramCache.get(resourceType);
    if (params) {
      return params;
    }
    params = new Map();
    for (const sp of Object.values(getSearchParameters(resourceType) || {})) {
      const isReference = sp.type === 'reference' && sp.code !== '_compartment';
      const isToken = sp.type === 'token';
      if ((isReference || isToken) && sp.expression) {
        params.set(sp.code, {
          kind: isReference ? 'reference' : 'token',
          atom: getParsedExpressionForResourceType(resourceType, sp.expression),
        });
      }
    }
    this.paramCache.set(resourceType, params);
    return params;
  }

  // ---- index maintenance -------------------------------------------------

  reindex(resourceType, id, resource) {
    const key = refKey(resourceType, id);
    // held: the Sets themselves, or the map's own key string, not a new
    // key string per resource and posting (that was a quarter of the heap)
    for (const held of this.keysOf.get(key) || []) {
      const pkey = typeof held === 'string' ? held : held.pkey;
      const ids = this.postings.get(pkey);
      if (ids === id) {
        this.postings.delete(pkey);
      } else if (ids instanceof Set) {
        ids.delete(id);
        if (ids.size === 0) {
          this.postings.delete(pkey);
        }
      }
    }
    this.keysOf.delete(key);
    if (!resource) {
      return;
    }
    const held = [];
    const input = [toTypedValue(resource)];
    for (const [code, param] of this.indexedParams(resourceType)) {
      const values = evalFhirPathTyped(param.atom, input);
      if (values.length === 0) {
        continue;
      }
      const raw = [];
      if (param.kind === 'reference') {
        raw.push(...convertToSearchableReferences(values));
      } else {
        for (const token of convertToSearchableTokens(values)) {
          tokenIndexKeys(token, raw);
        }
      }
      for (const k of new Set(raw)) {
        const pkey = resourceType + '\u0000' + code + '\u0000' + k;
        const ids = this.postings.get(pkey);
        if (ids === undefined || ids === id) {
          this.postings.set(pkey, id);
          held.push(pkey);
        } else if (typeof ids === 'string') {
          const set = new Set([ids, id]);
          set.pkey = pkey;
          this.postings.set(pkey, set);
          held.push(set);
        } else {
          ids.add(id);
          held.push(ids);
        }
      }
    }
    this.keysOf.set(key, held);
  }

  // ---- writes ------------------------------------------------------------

  currentEntry(resourceType, id) {
    const list = this.versions.get(refKey(resourceType, id));
    const last = list && list[list.length - 1];
    return last && !last.deleted ? last : undefined;
  }

  remember(resourceType, id) {
    if (this.journal) {
      const key = refKey(resourceType, id);
      this.journal.push({
        resourceType,
        id,
        prevCurrent: this.currentEntry(resourceType, id),
        prevLength: (this.versions.get(key) || []).length,
        prevOrder: this.order.get(key),
      });
    }
  }

  async store(copy, method) {
    if (copy.id) {
      this.remember(copy.resourceType, copy.id);
    }
    const stored = await super.createResource(copy);
    const key = refKey(stored.resourceType, stored.id);
    // The stock class keeps every version in its own history as well; this
    // class answers history and vread from this.versions, so that copy is
    // dropped (it was the whole of each superseded version).
    this.history?.get(stored.resourceType)?.delete(stored.id);
    if (!copy.id) {
      this.remember(stored.resourceType, stored.id);
    }
    let list = this.versions.get(key);
    if (!list) {
      list = [];
      this.versions.set(key, list);
    }
    list.push(new Version(stored, method));
    if (!this.order.has(key)) {
      this.order.set(key, ++this.seq);
    }
    this.reindex(stored.resourceType, stored.id, stored);
    return stored;
  }

  async createResource(resource, options) {
    checkValid(resource);
    const copy = deepClone(resource);
    if (!options || !options.assignedId) {
      // A plain create ignores a client id; ids pre-assigned by Medplum's
      // batch processor (urn:uuid entries) arrive with assignedId.
      delete copy.id;
    }
    stripServerMeta(copy);
    return this.store(copy, 'POST');
  }

  async updateResource(resource, options) {
    checkValid(resource);
    if (!resource.id) {
      throw new OperationOutcomeError(badRequest('Missing id'));
    }
    if (options && options.ifMatch) {
      const current = this.currentEntry(resource.resourceType, resource.id);
      if (!current) {
        throw new OperationOutcomeError(notFound);
      }
      if (current.versionId !== options.ifMatch) {
        throw new OperationOutcomeError(preconditionFailed);
      }
    }
    const copy = deepClone(resource);
    stripServerMeta(copy);
    return this.store(copy, 'PUT');
  }

  async deleteResource(resourceType, id) {
    const key = refKey(resourceType, id);
    const list = this.versions.get(key);
    if (!list) {
      throw new OperationOutcomeError(notFound);
    }
    if (list[list.length - 1].deleted) {
      return; // deleting a deleted resource is a no-op, as on most servers
    }
    this.remember(resourceType, id);
    await super.deleteResource(resourceType, id);
    list.push({ deleted: true, method: 'DELETE', versionId: generateId(), lastUpdated: new Date().toISOString() });
    this.order.delete(key);
    this.reindex(resourceType, id, undefined);
  }

  async withTransaction(callback) {
    if (this.journal) {
      return callback(undefined); // nested: the outer call owns the journal
    }
    this.journal = [];
    try {
      return await callback(undefined);
    } catch (err) {
      const journal = this.journal;
      this.journal = undefined;
      await this.rollback(journal);
      throw err;
    } finally {
      this.journal = undefined;
    }
  }

  async rollback(journal) {
    for (const step of journal.reverse()) {
      const key = refKey(step.resourceType, step.id);
      const list = this.versions.get(key);
      if (list) {
        list.length = step.prevLength;
        if (list.length === 0) {
          this.versions.delete(key);
        }
      }
      if (step.prevOrder === undefined) {
        this.order.delete(key);
      } else {
        this.order.set(key, step.prevOrder);
      }
      if (step.prevCurrent) {
        // The stock createResource keeps a given id, versionId and
        // lastUpdated, so this puts the old version back unchanged.
        await super.createResource(step.prevCurrent.resource);
      } else {
        try {
          await super.deleteResource(step.resourceType, step.id);
        } catch {
          // it was not there: nothing to undo
        }
      }
      this.reindex(step.resourceType, step.id, step.prevCurrent && step.prevCurrent.resource);
    }
  }

  // ---- reads -------------------------------------------------------------

  async readResource(resourceType, id) {
    const list = this.versions.get(refKey(resourceType, id));
    if (list && list[list.length - 1].deleted) {
      throw new OperationOutcomeError(gone);
    }
    return super.readResource(resourceType, id);
  }

  async readVersion(resourceType, id, versionId) {
    const list = this.versions.get(refKey(resourceType, id));
    const version = list && list.find((v) => v.versionId === versionId);
    if (!version) {
      throw new OperationOutcomeError(notFound);
    }
    if (version.deleted) {
      throw new OperationOutcomeError(gone);
    }
    return version.resource;
  }

  async readHistory(resourceType, id, options) {
    const list = this.versions.get(refKey(resourceType, id));
    if (!list) {
      throw new OperationOutcomeError(notFound);
    }
    const newestFirst = list.slice().reverse();
    const offset = options && options.offset > 0 ? options.offset : 0;
    const limit = options && options.limit >= 0 ? options.limit : newestFirst.length;
    const entry = newestFirst.slice(offset, offset + limit).map((v, i) => {
      const isFirst = list.length - 1 - (offset + i) === 0;
      const e = {
        fullUrl: this.baseUrl + '/' + refKey(resourceType, id),
        request: {
          method: v.method,
          url: v.method === 'POST' ? resourceType : refKey(resourceType, id),
        },
        response: {
          status: v.deleted ? '204' : isFirst ? '201' : '200',
          etag: 'W/"' + v.versionId + '"',
          lastModified: v.lastUpdated,
        },
      };
      if (!v.deleted) {
        e.resource = v.resource;
      }
      return e;
    });
    return {
      resourceType: 'Bundle',
      type: 'history',
      total: list.length,
      ...(entry.length ? { entry } : {}),
    };
  }

  // ---- search ------------------------------------------------------------

  // Splits the filters into those the index answers and the rest. Returns
  // undefined when no filter can use the index.
  planIndexed(searchRequest) {
    const params = this.indexedParams(searchRequest.resourceType);
    const sets = [];
    const remaining = [];
    for (const filter of searchRequest.filters || []) {
      const param = params.get(filter.code);
      if (!param || filter.operator !== Operator.EQUALS || filter.value === '') {
        remaining.push(filter);
        continue;
      }
      const ids = new Set();
      for (const v of splitSearchOnComma(filter.value)) {
        const k = param.kind === 'reference' ? v : tokenQueryKey(v);
        const hit = this.postings.get(searchRequest.resourceType + '\u0000' + filter.code + '\u0000' + k);
        if (typeof hit === 'string') {
          ids.add(hit);
        } else {
          for (const id of hit || []) {
            ids.add(id);
          }
        }
      }
      sets.push(ids);
    }
    if (sets.length === 0) {
      return undefined;
    }
    sets.sort((a, b) => a.size - b.size);
    const candidates = new Set([...sets[0]].filter((id) => sets.every((set) => set.has(id))));
    return { candidates, remaining };
  }

  checkSearchParameters(searchRequest) {
    const known = getSearchParameters(searchRequest.resourceType) || {};
    for (const filter of searchRequest.filters || []) {
      if (filter.code === '_has' || filter.code.startsWith('_has:') || filter.code.includes('.')) {
        throw new OperationOutcomeError(badRequest('Chained and _has searches are not supported: ' + filter.code));
      }
      const sp = known[filter.code];
      if (!sp) {
        throw new OperationOutcomeError(
          badRequest(`Unknown search parameter for ${searchRequest.resourceType}: ${filter.code}`)
        );
      }
      if (!MATCHABLE_TYPES.has(sp.type)) {
        // @medplum/core's in-memory matcher silently matches nothing for these
        throw new OperationOutcomeError(
          badRequest(`Search parameter ${filter.code} (type ${sp.type}) is not supported by this test server`)
        );
      }
    }
    for (const rule of searchRequest.sortRules || []) {
      if (!known[rule.code]) {
        throw new OperationOutcomeError(badRequest(`Unknown sort parameter for ${searchRequest.resourceType}: ${rule.code}`));
      }
    }
  }

  pageBounds(searchRequest) {
    let count = searchRequest.count;
    if (count === undefined) {
      count = this.defaultCount;
    }
    if (!Number.isInteger(count) || count < 0) {
      throw new OperationOutcomeError(badRequest('Invalid _count'));
    }
    const offset = searchRequest.offset === undefined ? 0 : searchRequest.offset;
    if (!Number.isInteger(offset) || offset < 0) {
      throw new OperationOutcomeError(badRequest('Invalid _offset'));
    }
    return { count: Math.min(count, this.maxCount), offset };
  }

  async search(searchRequest) {
    if (searchRequest.types && searchRequest.types.length) {
      throw new OperationOutcomeError(badRequest('Searches across several types are not supported'));
    }
    this.checkSearchParameters(searchRequest);
    const { count, offset } = this.pageBounds(searchRequest);
    const plan = this.planIndexed(searchRequest);
    let total;
    let resources;
    if (plan) {
      const rest = { resourceType: searchRequest.resourceType, filters: plan.remaining };
      const matched = [];
      for (const id of plan.candidates) {
        const resource = await super.readResource(searchRequest.resourceType, id);
        if (matchesSearchRequest(resource, rest)) {
          matched.push(resource);
        }
      }
      this.sortResources(matched, searchRequest.sortRules);
      total = matched.length;
      resources = matched.slice(offset, offset + count);
    } else {
      const bundle = await super.search({ ...searchRequest, offset, count });
      total = bundle.total;
      resources = (bundle.entry || []).map((e) => e.resource);
    }
    return this.searchset(searchRequest, resources, total, offset, count);
  }

  // Creation order unless _sort is given; for _sort the values of the sort
  // parameter are compared as JSON text, the rule the stock search uses.
  sortResources(resources, sortRules) {
    const seqOf = (r) => this.order.get(refKey(r.resourceType, r.id)) || 0;
    const rules = (sortRules || []).map((rule) => {
      const sp = getSearchParameters(resources[0] ? resources[0].resourceType : '')?.[rule.code];
      const atom = sp && sp.expression && getParsedExpressionForResourceType(resources[0].resourceType, sp.expression);
      return { atom, descending: rule.descending };
    });
    const keyCache = new Map();
    const sortKey = (r, i) => {
      const ck = r.id + '\u0000' + i;
      if (!keyCache.has(ck)) {
        const atom = rules[i].atom;
        keyCache.set(ck, atom ? JSON.stringify(evalFhirPathTyped(atom, [toTypedValue(r)]).map((v) => v.value)) : '');
      }
      return keyCache.get(ck);
    };
    resources.sort((a, b) => {
      for (let i = 0; i < rules.length; i++) {
        const c = sortKey(a, i).localeCompare(sortKey(b, i));
        if (c !== 0) {
          return rules[i].descending ? -c : c;
        }
      }
      return seqOf(a) - seqOf(b);
    });
  }

  searchset(searchRequest, resources, total, offset, count) {
    const base = this.baseUrl + '/' + searchRequest.resourceType;
    const pageUrl = (o) => base + formatSearchQuery({ ...searchRequest, offset: o, count });
    const link = [{ relation: 'self', url: pageUrl(offset) }];
    if (count > 0 && offset + count < total) {
      link.push({ relation: 'next', url: pageUrl(offset + count) });
    }
    if (count > 0 && offset > 0) {
      link.push({ relation: 'previous', url: pageUrl(Math.max(0, offset - count)) });
    }
    const bundle = { resourceType: 'Bundle', type: 'searchset', total, link };
    if (resources.length) {
      bundle.entry = resources.map((resource) => ({
        fullUrl: this.baseUrl + '/' + refKey(resource.resourceType, resource.id),
        resource,
        search: { mode: 'match' },
      }));
    }
    return bundle;
  }
}

module.exports = { IndexedMemoryRepository, MATCHABLE_TYPES };
