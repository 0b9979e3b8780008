'use strict';
// SMART scope enforcement for the bearer-token mode (ours): what each FHIR
// interaction needs, and whether a token's scopes grant it.
//
// SMART App Launch 2.0 permissions: c create, r read (read, vread, instance
// history), u update (update, patch), d delete, s search (type search, type
// history). Combined interactions need every permission involved: a
// conditional update (PUT Type?query) needs c and u, a conditional delete d
// and s, a conditional patch u and s. SMART v1 forms are understood too:
// `.read` grants r and s, `.write` c, u and d, `.*` everything. The
// resource type may be `*`; the context prefix (system/, user/, patient/) is
// not distinguished (this server has no launch context). A scope with a
// query part (`?category=...`) grants nothing here (not supported).

const V1 = { read: 'rs', write: 'cud', '*': 'cruds' };

// Parses a space-separated scope string into Map(type -> Set(perms)).
function parseScopes(text) {
  const grants = new Map();
  for (const s of String(text || '').split(/\s+/).filter(Boolean)) {
    const m = /^(?:system|user|patient)\/([A-Za-z]+|\*)\.([a-z*]+)$/.exec(s);
    if (!m) continue;
    let perms = m[2];
    if (Object.prototype.hasOwnProperty.call(V1, perms)) {
      perms = V1[perms];
    } else if (!/^c?r?u?d?s?$/.test(perms)) {
      continue;
    }
    const set = grants.get(m[1]) || new Set();
    for (const p of perms) set.add(p);
    grants.set(m[1], set);
  }
  return grants;
}

// The permissions (a string of c r u d s) an interaction needs, from the
// route Medplum matched: method, whether the path names an id, whether it is
// _search or _history. null: none needed
// (batch/transaction Bundles: their entries are judged one by one).
function neededPermissions(method, { hasId, search, history }) {
  switch (method) {
    case 'GET':
      if (hasId) return 'r';
      return 's';
    case 'POST':
      if (search) return 's';
      // a conditional create (If-None-Exist) is a create
      return 'c';
    case 'PUT':
      return hasId ? 'u' : 'cu';
    case 'PATCH':
      return hasId ? 'u' : 'us';
    case 'DELETE':
      return hasId ? 'd' : 'ds';
    default:
      return history ? 'r' : null;
  }
}

// The scope text that names what is missing, e.g. "system/CarePlan.cu", or
// null when grants cover `perms` on `type`.
function missingScope(grants, type, perms) {
  const have = new Set([...(grants.get(type) || []), ...(grants.get('*') || [])]);
  const missing = [...perms].filter((p) => !have.has(p));
  if (missing.length === 0) return null;
  const order = 'cruds';
  return `system/${type}.${missing.sort((a, b) => order.indexOf(a) - order.indexOf(b)).join('')}`;
}

module.exports = { parseScopes, neededPermissions, missingScope };
