'use strict';
// The CapabilityStatement served at GET [base]/metadata. Medplum's
// fhir-router has no /metadata route, so this is ours. It is generated from
// the same @medplum/core schema that routing, validation and search use, so
// it lists exactly the resource types the server knows and the search
// parameters it can evaluate (not number, quantity, composite or special).

const { getResourceTypes, getSearchParameters } = require('@medplum/core');
const { MATCHABLE_TYPES } = require('./repo');

const TYPE_INTERACTIONS = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type'];

function buildCapabilityStatement(options) {
  const resource = getResourceTypes()
    .sort()
    .map((type) => ({
      type,
      interaction: TYPE_INTERACTIONS.map((code) => ({ code })),
      versioning: 'versioned',
      readHistory: true,
      updateCreate: true,
      conditionalCreate: true,
      conditionalRead: 'not-supported',
      conditionalUpdate: true,
      conditionalDelete: 'single',
      searchParam: Object.values(getSearchParameters(type) || {})
        .filter((sp) => sp.code !== '_compartment' && MATCHABLE_TYPES.has(sp.type))
        .map((sp) => ({ name: sp.code, type: sp.type }))
        .sort((a, b) => a.name.localeCompare(b.name)),
    }));
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: options.startedAt,
    kind: 'instance',
    software: { name: 'dnmbc-adapter test FHIR server (Medplum fhir-router ' + options.medplumVersion + ')' },
    implementation: { description: 'Loopback test server for dnmbc-adapter', url: options.baseUrl },
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [
      {
        mode: 'server',
        documentation:
          'In-memory test server. Reference search parameters match Type/id values ' +
          '(subject=Patient/123); a bare id (patient=123) matches nothing.',
        resource,
        interaction: [{ code: 'transaction' }, { code: 'batch' }],
      },
    ],
  };
}

module.exports = { buildCapabilityStatement };
