'use strict';
// ConceptMap/$translate (ours; Medplum's router does not implement it):
// GET or POST [base]/ConceptMap/$translate and [base]/ConceptMap/[id]/$translate
// with system, code and optionally targetsystem (R4 operation parameters, in
// the query or in a Parameters body). The answer comes from the ConceptMaps
// stored on this server: every element of a group whose source is the system
// and whose code is the code gives a match (targets with equivalence
// unmatched or disjoint give result false). GET /$test/translate reports how
// many $translate requests arrived, so that a test can show a client's cache
// at work; POST /$test/reset clears the count.

const TRANSLATE = /^ConceptMap(?:\/([A-Za-z0-9\-.]{1,64}))?\/\$translate$/;
const NO_MATCH = new Set(['unmatched', 'disjoint']);

function param(query, body, name) {
  if (query.has(name)) {
    return query.get(name);
  }
  for (const p of (body && body.parameter) || []) {
    if (p.name === name) {
      return p.valueUri ?? p.valueCode ?? p.valueString ?? p.valueCanonical;
    }
  }
  return undefined;
}

class Translate {
  constructor() {
    this.clear();
  }

  clear() {
    this.requests = 0;
  }

  report() {
    return { requests: this.requests };
  }

  // true when the request was a $translate (answered here)
  async handle(app, req, res, url, rel, body) {
    const m = TRANSLATE.exec(rel);
    if (!m || (req.method !== 'GET' && req.method !== 'POST')) {
      return false;
    }
    this.requests += 1;
    const system = param(url.searchParams, body, 'system');
    const code = param(url.searchParams, body, 'code');
    const targetSystem = param(url.searchParams, body, 'targetsystem');
    if (!system || !code) {
      app.send(res, 400, {
        resourceType: 'OperationOutcome',
        issue: [{ severity: 'error', code: 'required', diagnostics: '$translate needs system and code' }],
      });
      return true;
    }
    const maps = m[1]
      ? [await app.repo.readResource('ConceptMap', m[1])]
      : await app.repo.searchResources({ resourceType: 'ConceptMap', count: 1000 });
    const match = [];
    for (const cm of maps) {
      for (const g of cm.group || []) {
        if (g.source !== system || (targetSystem && g.target !== targetSystem)) {
          continue;
        }
        for (const el of g.element || []) {
          if (el.code !== code) {
            continue;
          }
          for (const t of el.target || []) {
            match.push({
              name: 'match',
              part: [
                { name: 'equivalence', valueCode: t.equivalence },
                ...(t.code ? [{ name: 'concept', valueCoding: { system: g.target, code: t.code } }] : []),
                { name: 'source', valueUri: cm.url },
              ],
            });
          }
        }
      }
    }
    const found = match.some((x) => !NO_MATCH.has(x.part[0].valueCode));
    app.send(res, 200, {
      resourceType: 'Parameters',
      parameter: [
        { name: 'result', valueBoolean: found },
        ...(found ? [] : [{ name: 'message', valueString: `no mapping for ${system}|${code}` }]),
        ...match,
      ],
    });
    return true;
  }
}

module.exports = { Translate };
