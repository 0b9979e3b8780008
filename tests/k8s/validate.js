#!/usr/bin/env node
// Validates Kubernetes manifests offline (ours):
//
//   node tests/k8s/validate.js FILE.yaml...
//
// Each YAML document is checked twice:
//  1. against the Kubernetes API's JSON schema of its apiVersion and kind
//     (kubernetes-models: types, required fields, formats, enums);
//  2. for fields the API does not know, as the API server's strict field
//     validation (kubectl's default) refuses them: a misspelt field such
//     as `readOnlyRootFileSystem` would otherwise be dropped without a word
//     (the API models of @kubernetes/client-node list every field).
// A kind neither package knows is an error, not a pass. Nothing is fetched:
// both packages ship the schemas and are installed with `npm ci` from
// package-lock.json. Prints one line per problem; exits 1 when there is any,
// 2 on a usage or YAML error.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const YAML = require('yaml');
const k8s = require('@kubernetes/client-node');

// "apps/v1" -> { group: "apps", version: "v1" }; "v1" -> core.
function splitApiVersion(apiVersion) {
  const i = apiVersion.lastIndexOf('/');
  return i < 0 ? { group: '', version: apiVersion } : { group: apiVersion.slice(0, i), version: apiVersion.slice(i + 1) };
}

async function schemaModel(apiVersion, kind) {
  const { group, version } = splitApiVersion(apiVersion);
  if (!/^[a-z0-9.]*$/.test(group) || !/^v[0-9a-z]+$/.test(version) || !/^[A-Z][A-Za-z0-9]*$/.test(kind)) return null;
  const spec = `kubernetes-models/${group ? `${group}/` : ''}${version}/${kind}`;
  try {
    const mod = await import(spec);
    return mod[kind] || null;
  } catch {
    return null;
  }
}

// The client-node model class of a top-level object: V1StatefulSet, ...
function fieldModel(apiVersion, kind) {
  const { version } = splitApiVersion(apiVersion);
  const name = version.charAt(0).toUpperCase() + version.slice(1) + kind;
  const c = k8s[name];
  return c && typeof c.getAttributeTypeMap === 'function' ? name : null;
}

// Every key of obj must be a field of the model `type` (recursively).
function unknownFields(obj, type, where, out) {
  if (obj === null || obj === undefined) return;
  let m = /^Array<(.+)>$/.exec(type);
  if (m) {
    if (Array.isArray(obj)) obj.forEach((v, i) => unknownFields(v, m[1], `${where}[${i}]`, out));
    return;
  }
  m = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (m) {
    if (typeof obj === 'object' && !Array.isArray(obj)) {
      for (const [k, v] of Object.entries(obj)) unknownFields(v, m[1], `${where}.${k}`, out);
    }
    return;
  }
  const c = k8s[type];
  if (!c || typeof c.getAttributeTypeMap !== 'function') return; // string, number, IntOrString, any ...
  if (typeof obj !== 'object' || Array.isArray(obj)) return; // the schema check reports the type
  const fields = new Map(c.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(obj)) {
    if (!fields.has(k)) out.push(`${where}.${k}: unknown field (not in ${type})`);
    else unknownFields(v, fields.get(k), `${where}.${k}`, out);
  }
}

async function validateDoc(doc, label) {
  const problems = [];
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return [`${label}: not an object`];
  const { apiVersion, kind } = doc;
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return [`${label}: apiVersion and kind are required`];
  const name = `${label} ${kind} ${(doc.metadata && doc.metadata.name) || '(no name)'}`;
  const Model = await schemaModel(apiVersion, kind);
  const typeName = fieldModel(apiVersion, kind);
  if (!Model || !typeName) return [`${name}: unknown apiVersion/kind ${apiVersion}/${kind}`];
  if (!doc.metadata || typeof doc.metadata.name !== 'string' || doc.metadata.name === '') {
    problems.push(`${name}: metadata.name is required`);
  }
  try {
    new Model(doc).validate();
  } catch (e) {
    problems.push(`${name}: ${String(e.message).split('\n').join('; ')}`);
  }
  unknownFields(doc, typeName, kind, problems);
  return problems.map((p) => (p.startsWith(name) ? p : `${name}: ${p}`));
}

// All problems of one YAML text (file name for the messages).
async function validateText(text, file) {
  // YAML 1.1, as Kubernetes reads manifests (sigs.k8s.io/yaml): 0400 is octal
  const docs = YAML.parseAllDocuments(text, { version: '1.1' });
  const problems = [];
  let n = 0;
  for (const [i, d] of docs.entries()) {
    if (d.errors.length) {
      problems.push(`${file}#${i + 1}: YAML: ${d.errors[0].message}`);
      continue;
    }
    const v = d.toJS();
    if (v === null || v === undefined) continue; // an empty document
    n++;
    problems.push(...await validateDoc(v, `${file}#${i + 1}`));
  }
  if (n === 0) problems.push(`${file}: no Kubernetes object`);
  return problems;
}

async function main(files) {
  if (files.length === 0) {
    process.stderr.write('usage: node tests/k8s/validate.js FILE.yaml...\n');
    process.exit(2);
  }
  const problems = [];
  for (const f of files) {
    let text;
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch (e) {
      process.stderr.write(`${f}: ${e.message}\n`);
      process.exit(2);
    }
    problems.push(...await validateText(text, path.basename(f)));
  }
  for (const p of problems) process.stdout.write(`${p}\n`);
  if (problems.length) process.exit(1);
  process.stdout.write(`${files.length} file(s) valid\n`);
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((e) => {
    process.stderr.write(`${e.stack}\n`);
    process.exit(2);
  });
}

module.exports = { validateText };
