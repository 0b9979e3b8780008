'use strict';
// POST /$test/load (ours): many transaction Bundles of plain creates in one
// request, for benchmarks that need 100,000 patients on the server. The
// body is NDJSON, one Bundle a line, each entry `request.method` POST with
// a `urn:uuid:` fullUrl (what tests/synth/generate.js writes). Each
// resource goes through the repository's store (server-assigned meta,
// version log, search index), so the stored state is what the same Bundles
// POSTed to [base] one by one would leave; what is skipped is Medplum's
// per-request router and batch processing and the resource validation
// (the generator's Bundles are loaded through the validating path by the
// integration tests), which made loading 10,000 patients take minutes.
// Not atomic across Bundles: a Bundle that fails stops the load and the
// answer names it.

const { generateId } = require('@medplum/core');

// References to urn:uuid fullUrls of the same Bundle, rewritten in place.
function rewrite(value, ids) {
  if (Array.isArray(value)) {
    for (const v of value) rewrite(v, ids);
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === 'reference' && typeof v === 'string' && ids.has(v)) {
        value[k] = ids.get(v);
      } else if (typeof v === 'object') {
        rewrite(v, ids);
      }
    }
  }
}

async function loadBundles(repo, text) {
  let bundles = 0;
  let resources = 0;
  let lineNo = 0;
  for (const line of text.split('\n')) {
    lineNo++;
    if (line.trim() === '') continue;
    let bundle;
    try {
      bundle = JSON.parse(line);
    } catch (err) {
      throw new Error(`line ${lineNo}: not JSON: ${err.message}`);
    }
    if (!bundle || bundle.resourceType !== 'Bundle' || !Array.isArray(bundle.entry)) {
      throw new Error(`line ${lineNo}: not a Bundle with entries`);
    }
    const ids = new Map();
    for (const [i, e] of bundle.entry.entries()) {
      if (!e.resource || !e.request || e.request.method !== 'POST' || !/^urn:uuid:/.test(e.fullUrl || '')) {
        throw new Error(`line ${lineNo}: entry[${i}]: only POST entries with a urn:uuid fullUrl are loaded`);
      }
      e.resource.id = generateId();
      ids.set(e.fullUrl, `${e.resource.resourceType}/${e.resource.id}`);
    }
    for (const e of bundle.entry) {
      rewrite(e.resource, ids);
      await repo.store(e.resource, 'POST');
      resources++;
    }
    bundles++;
  }
  return { bundles, resources };
}

module.exports = { loadBundles };
