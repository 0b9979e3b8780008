'use strict';
// Request counters for GET /$test/stats (ours). `requests` counts HTTP
// requests by method and resource type (the first path segment; "Bundle"
// for a POST to the base, "metadata" for /metadata). `entries` counts the
// entries of batch and transaction Bundles the same way. `writes` counts
// create/update/patch/delete attempts from both, whatever their outcome.

const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

class Stats {
  constructor() {
    this.clear();
  }

  clear() {
    this.total = 0;
    this.writes = 0;
    this.requests = {};
    this.entries = {};
  }

  bump(table, method, resourceType) {
    table[method] = table[method] || {};
    table[method][resourceType] = (table[method][resourceType] || 0) + 1;
  }

  isWrite(method, path) {
    return WRITE_METHODS.has(method) && !path.endsWith('_search');
  }

  countRequest(method, resourceType, path) {
    this.total += 1;
    this.bump(this.requests, method, resourceType);
    // A Bundle posted to the base is counted by its entries instead.
    if (this.isWrite(method, path) && path !== '') {
      this.writes += 1;
    }
  }

  countEntry(method, resourceType, url) {
    this.bump(this.entries, method, resourceType);
    if (this.isWrite(method, url.split('?')[0])) {
      this.writes += 1;
    }
  }

  snapshot() {
    return { total: this.total, writes: this.writes, requests: this.requests, entries: this.entries };
  }
}

module.exports = { Stats };
