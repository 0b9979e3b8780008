'use strict';
// Fault rules for POST /$test/fault (ours). A rule makes the next `count`
// matching requests wait `delayMs` and/or fail with `status` and an
// OperationOutcome. Top-level requests and the entries of batch and
// transaction Bundles are both matched.

const FIELDS = new Set(['method', 'resourceType', 'match', 'status', 'diagnostics', 'count', 'delayMs', 'retryAfter']);

function normalizeRule(input) {
  if (!input || typeof input !== 'object' || Array.isArray(input)) {
    throw new Error('fault must be a JSON object');
  }
  for (const key of Object.keys(input)) {
    if (!FIELDS.has(key)) {
      throw new Error('unknown fault field: ' + key);
    }
  }
  const rule = {};
  for (const key of ['method', 'resourceType', 'match', 'diagnostics']) {
    if (input[key] !== undefined) {
      if (typeof input[key] !== 'string' || input[key] === '') {
        throw new Error(key + ' must be a non-empty string');
      }
      rule[key] = key === 'method' ? input[key].toUpperCase() : input[key];
    }
  }
  if (input.status !== undefined) {
    if (!Number.isInteger(input.status) || input.status < 400 || input.status > 599) {
      throw new Error('status must be an integer from 400 to 599');
    }
    rule.status = input.status;
  }
  for (const key of ['delayMs', 'retryAfter']) {
    if (input[key] !== undefined) {
      if (!Number.isInteger(input[key]) || input[key] < 0 || input[key] > 600000) {
        throw new Error(key + ' must be a non-negative integer (at most 600000)');
      }
      rule[key] = input[key];
    }
  }
  if (!rule.status && !rule.delayMs) {
    throw new Error('a fault needs a status, a delayMs, or both');
  }
  const count = input.count === undefined ? 1 : input.count;
  if (!Number.isInteger(count) || (count < 1 && count !== -1)) {
    throw new Error('count must be a positive integer, or -1 for every matching request');
  }
  rule.count = count;
  rule.diagnostics = rule.diagnostics || (rule.status ? `Injected test fault (HTTP ${rule.status})` : undefined);
  return rule;
}

class FaultTable {
  constructor() {
    this.rules = [];
  }

  add(input) {
    this.rules.push(normalizeRule(input));
    return this.list();
  }

  list() {
    return this.rules.map((r) => ({ ...r }));
  }

  clear() {
    this.rules = [];
  }

  // Returns the first rule matching the request and uses up one of its
  // count, or undefined.
  take(method, resourceType, url) {
    const i = this.rules.findIndex(
      (r) =>
        (!r.method || r.method === method) &&
        (!r.resourceType || r.resourceType === resourceType) &&
        (!r.match || url.includes(r.match))
    );
    if (i < 0) {
      return undefined;
    }
    const rule = this.rules[i];
    if (rule.count !== -1) {
      rule.count -= 1;
      if (rule.count === 0) {
        this.rules.splice(i, 1);
      }
    }
    return rule;
  }
}

module.exports = { FaultTable, normalizeRule };
