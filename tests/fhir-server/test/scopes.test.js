'use strict';
// lib/scopes.js (ours): what each interaction needs and what a token's
// scopes grant, as the bearer mode's scope enforcement uses them.

const test = require('node:test');
const assert = require('node:assert/strict');
const { parseScopes, neededPermissions, missingScope } = require('../lib/scopes');

test('permissions needed per interaction', () => {
  assert.equal(neededPermissions('GET', { hasId: true }), 'r');
  assert.equal(neededPermissions('GET', { hasId: false }), 's');
  assert.equal(neededPermissions('POST', { search: true }), 's');
  assert.equal(neededPermissions('POST', {}), 'c');
  assert.equal(neededPermissions('PUT', { hasId: true }), 'u');
  assert.equal(neededPermissions('PUT', { hasId: false }), 'cu', 'conditional update: create and update');
  assert.equal(neededPermissions('DELETE', { hasId: true }), 'd');
});

test('v2 and v1 scopes, wildcards, and what is missing', () => {
  const g = parseScopes('system/Patient.rs system/CarePlan.cu system/Observation.read system/*.s launch system/Bad.sr');
  assert.equal(missingScope(g, 'Patient', 'r'), null);
  assert.equal(missingScope(g, 'CarePlan', 'cu'), null);
  assert.equal(missingScope(g, 'CarePlan', 's'), null, 'system/*.s');
  assert.equal(missingScope(g, 'CarePlan', 'r'), 'system/CarePlan.r');
  assert.equal(missingScope(g, 'Observation', 'rs'), null);
  assert.equal(missingScope(g, 'Observation', 'cu'), 'system/Observation.cu');
  assert.equal(missingScope(g, 'Device', 'cu'), 'system/Device.cu');
  assert.equal(missingScope(g, 'Bad', 'r'), 'system/Bad.r', 'malformed permissions grant nothing');
  assert.equal(missingScope(parseScopes(''), 'Patient', 's'), 'system/Patient.s');
});
