#!/usr/bin/env node
// Prints the narrative (text.div, tags removed) of one CarePlan on the server,
// preferring one whose category carries the given recommendation code.
'use strict';

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

function toText(div) {
  return div
    .replace(/<(br|\/p|\/li|\/h[1-6]|\/tr|\/div)\s*\/?>/g, '\n')
    .replace(/<li>/g, '  - ')
    .replace(/<[^>]+>/g, '')
    .replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'").replace(/&amp;/g, '&')
    .replace(/\n\s*\n+/g, '\n')
    .trim();
}

async function main() {
  const base = arg('--base');
  const want = arg('--recommendation', null);
  if (!base) {
    console.error('usage: show-plan.js --base URL [--recommendation CODE]');
    process.exit(2);
  }
  const res = await fetch(`${base}/CarePlan?_count=100`, { headers: { accept: 'application/fhir+json' } });
  if (!res.ok) throw new Error(`CarePlan search: HTTP ${res.status}`);
  const bundle = await res.json();
  const plans = (bundle.entry || []).map((e) => e.resource);
  const pick = plans.find((p) => (p.category || []).some((c) => (c.coding || []).some((x) => x.code === want))) || plans[0];
  if (!pick) {
    console.log('(no CarePlan on the server)');
    return;
  }
  console.log(toText(pick.text && pick.text.div ? pick.text.div : '(no narrative)'));
}

main().catch((e) => { console.error(e.message); process.exit(1); });
