// The shape of the sources a newcomer reads (docs/internals.md): no C file in
// adapter/ grows past 1,500 lines (split it along its concerns instead, as
// notify.c was split from server.c), and no comment points at an issue
// number of a tracker that is not in the repository.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');
const ADAPTER = path.join(ROOT, 'adapter');
const MAX_LINES = 1500;

function sources(ext) {
  return fs.readdirSync(ADAPTER).filter((f) => ext.some((e) => f.endsWith(e))).sort();
}

test('no C file in adapter/ is longer than 1,500 lines', () => {
  const files = sources(['.c']);
  assert.ok(files.length > 20, `adapter/ holds the sources (${files.length} .c files)`);
  const long = [];
  for (const f of files) {
    const text = fs.readFileSync(path.join(ADAPTER, f), 'utf8');
    const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
    if (lines > MAX_LINES) long.push(`${f}: ${lines} lines`);
  }
  assert.deepEqual(long, [], `split these along their concerns: ${long.join(', ')}`);
});

test('no comment in adapter/ names a tracker number', () => {
  const found = [];
  // "#16", "issue 16", "issue #16" in a comment; not a preprocessor line.
  // An upstream project's issue named with its repository ("akheron/jansson
  // issue 655") can be looked up, so it may stay.
  const re = /(?:(?<![\w.-]+\/[\w.-]+\s+)\bissues?\s+#?\d+\b|(?<![\w&/])#\d+\b)/i;
  for (const f of sources(['.c', '.h'])) {
    const lines = fs.readFileSync(path.join(ADAPTER, f), 'utf8').split('\n');
    lines.forEach((line, i) => {
      if (/^\s*#\s*[a-z]/.test(line)) return;
      const c = line.indexOf('/*') >= 0 ? line.slice(line.indexOf('/*'))
        : line.indexOf('//') >= 0 ? line.slice(line.indexOf('//'))
          : /^\s*\*/.test(line) ? line : '';
      if (c && re.test(c)) found.push(`${f}:${i + 1}: ${line.trim()}`);
    });
  }
  assert.deepEqual(found, [], 'comments explain why, without tracker numbers');
});
