// Every document the code or the mapping tables cite is in the repository.
//
// Scans the comments and string literals of adapter/*.[ch], the string
// values of mappings/*.json, mappings/*.md and docs/*.md for citations of the
// form `<path>.md §x.y` and checks that the named document exists in the
// repository and has a heading numbered x.y.  A bare `§x.y` that follows a
// named citation in the same comment or JSON string (e.g. "codes.md §6.2;
// §6.3 ISH rule") is read as pointing at that same document.  In adapter/
// and mappings/, a `.md` named without a section must exist too.
//
// The requirement documents the project was written from are not in the
// repository; their content lives in docs/ (codes.md, models.md,
// clinical-rules.md).  A citation of the old bare name is reported with the
// docs/ name it should use.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');

// Old names of the requirement documents and where their content lives now.
const MOVED = {
  'fhir-codes.md': 'docs/codes.md',
  'prognostic-models.md': 'docs/models.md',
  'clinical-rules.md': 'docs/clinical-rules.md',
};

// A path ending in .md (optionally with directories; a leading '/' makes it
// absolute), not preceded by a path character, then optionally a section.
// Between the name and '§' only a closing backquote (markdown), blanks and
// comment decoration may stand, so a citation wrapped across two comment
// lines is still one citation.
const CITE_RE =
  /(?<![\w./-])((?:[\w.-]*\/)*[\w-]+\.md)(?![\w-])`?(?:[\s*/]*§\s*([0-9]+[a-z]?(?:\.[0-9]+)*))?/g;
const SECTION_RE = /§\s*([0-9]+[a-z]?(?:\.[0-9]+)*)/g;
const TAGS_RE = /^(?:\s*\[([A-Za-z]+)\])+/;

// Comment and string-literal ranges of a C source file, as [start, end)
// offsets.  Line comments on consecutive lines are merged into one range so
// that a wrapped citation stays together.
function cRanges(src) {
  const out = [];
  let i = 0;
  const n = src.length;
  const push = (start, end, line) => {
    const last = out[out.length - 1];
    if (line && last && last.line && /^[ \t]*\n[ \t]*$/.test(src.slice(last.end, start))) {
      last.end = end;
      return;
    }
    out.push({ start, end, line });
  };
  while (i < n) {
    const c = src[i];
    const d = src[i + 1];
    if (c === '/' && d === '*') {
      const e = src.indexOf('*/', i + 2);
      const end = e < 0 ? n : e + 2;
      push(i, end, false);
      i = end;
    } else if (c === '/' && d === '/') {
      let e = src.indexOf('\n', i);
      if (e < 0) e = n;
      push(i, e, true);
      i = e;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < n && src[j] !== c && src[j] !== '\n') j += src[j] === '\\' ? 2 : 1;
      if (c === '"') push(i, Math.min(j + 1, n), false);
      i = j + 1;
    } else {
      i++;
    }
  }
  return out;
}

// String-literal ranges of a JSON file.
function jsonRanges(src) {
  const out = [];
  const re = /"(?:[^"\\\n]|\\.)*"/g;
  let m;
  while ((m = re.exec(src)) !== null) out.push({ start: m.index, end: m.index + m[0].length });
  return out;
}

function lineOf(src, offset) {
  let line = 1;
  for (let i = 0; i < offset; i++) if (src.charCodeAt(i) === 10) line++;
  return line;
}

// Citations in one text range: {name, section, tags, offset}.  With
// `chain`, a bare § after a named citation in the same range inherits its
// document.
function citationsIn(src, range, chain) {
  const text = src.slice(range.start, range.end);
  const out = [];
  const named = [];
  let m;
  CITE_RE.lastIndex = 0;
  while ((m = CITE_RE.exec(text)) !== null) {
    const after = text.slice(CITE_RE.lastIndex);
    const t = m[2] ? TAGS_RE.exec(after) : null;
    const tags = t ? [...t[0].matchAll(/\[([A-Za-z]+)\]/g)].map((x) => x[1]) : [];
    const c = { name: m[1], section: m[2] || null, tags, offset: range.start + m.index };
    named.push({ at: m.index, end: CITE_RE.lastIndex, name: m[1] });
    out.push(c);
  }
  if (chain && named.length > 0) {
    SECTION_RE.lastIndex = 0;
    while ((m = SECTION_RE.exec(text)) !== null) {
      const at = m.index;
      if (named.some((x) => at >= x.at && at < x.end)) continue; // part of a named one
      let owner = null;
      for (const x of named) if (x.at < at) owner = x;
      if (owner === null) continue; // no document named before it: not resolvable
      const after = text.slice(SECTION_RE.lastIndex);
      const t = TAGS_RE.exec(after);
      const tags = t ? [...t[0].matchAll(/\[([A-Za-z]+)\]/g)].map((x) => x[1]) : [];
      out.push({ name: owner.name, section: m[1], tags, offset: range.start + at, chained: true });
    }
  }
  return out;
}

function listDir(dir, re) {
  const abs = path.join(ROOT, dir);
  if (!fs.existsSync(abs)) return [];
  return fs
    .readdirSync(abs)
    .filter((f) => re.test(f))
    .sort()
    .map((f) => path.join(dir, f));
}

// Every citation in the scanned files: {file, line, name, section, tags, chained}.
function scan() {
  const all = [];
  const files = [
    ...listDir('adapter', /\.[ch]$/).map((f) => [f, 'c']),
    ...listDir('mappings', /\.json$/).map((f) => [f, 'json']),
    ...listDir('mappings', /\.md$/).map((f) => [f, 'md']),
    ...listDir('docs', /\.md$/).map((f) => [f, 'md']),
  ];
  for (const [file, kind] of files) {
    const src = fs.readFileSync(path.join(ROOT, file), 'utf8');
    let ranges;
    if (kind === 'c') ranges = cRanges(src);
    else if (kind === 'json') ranges = jsonRanges(src);
    else ranges = [{ start: 0, end: src.length }];
    for (const r of ranges)
      for (const c of citationsIn(src, r, kind !== 'md'))
        all.push({ file, line: lineOf(src, c.offset), ...c });
  }
  return all;
}

// Resolve a cited name to a repository file, or null.  Names are relative to
// the repository root; in a markdown file they may also be relative to the
// file's own directory (as its links are).
function resolve(file, name) {
  if (path.isAbsolute(name)) return null;
  const cands = [path.join(ROOT, name)];
  if (file.endsWith('.md')) cands.push(path.join(ROOT, path.dirname(file), name));
  for (const p of cands) {
    const rel = path.relative(ROOT, p);
    if (rel.startsWith('..')) continue;
    if (fs.existsSync(p) && fs.statSync(p).isFile()) return p;
  }
  return null;
}

// Section numbers of a markdown file's headings: "## 6. ER, PR" gives "6",
// "### 6.3 Value codes" gives "6.3", "### 6b. Shien" gives "6b".
const sectionCache = new Map();
function sections(p) {
  if (!sectionCache.has(p)) {
    const set = new Set();
    for (const line of fs.readFileSync(p, 'utf8').split('\n')) {
      const m = /^#{1,6}\s+(?:§\s*)?([0-9]+[a-z]?(?:\.[0-9]+)*)\.?(?=\s|$)/.exec(line);
      if (m) set.add(m[1]);
    }
    sectionCache.set(p, set);
  }
  return sectionCache.get(p);
}

// The verification tags docs/codes.md defines in its §0.1 table.
function definedTags() {
  const p = path.join(ROOT, 'docs', 'codes.md');
  const set = new Set();
  if (!fs.existsSync(p)) return set;
  const text = fs.readFileSync(p, 'utf8');
  const m = /^#{1,6}\s+0\.1\b.*\n([\s\S]*?)(?=^#{1,6}\s)/m.exec(text);
  if (m) for (const t of m[1].matchAll(/^\|\s*\*{0,2}\[([A-Za-z]+)\]\*{0,2}\s*\|/gm)) set.add(t[1]);
  return set;
}

function where(c) {
  return `${c.file}:${c.line}: ${c.name}${c.section ? ' §' + c.section : ''}`;
}

function problems(cites, { withSection }) {
  const bad = [];
  for (const c of cites) {
    if (withSection !== !!c.section) continue;
    const base = path.basename(c.name);
    const p = resolve(c.file, c.name);
    if (p === null) {
      let hint = MOVED[c.name] || MOVED[base];
      if (hint === c.name) hint = null;
      bad.push(
        `${where(c)}: ${c.name} is not in the repository` +
          (hint ? ` (its content is in ${hint}; cite that)` : ''),
      );
      continue;
    }
    if (c.section && !sections(p).has(c.section))
      bad.push(`${where(c)}: ${path.relative(ROOT, p)} has no heading numbered ${c.section}`);
  }
  return bad;
}

test('the scanner finds wrapped, chained and tagged citations, and skips code', () => {
  const src = [
    'x.md = 1; /* see docs/codes.md',
    ' * §6.2 [P][T]; §6.3 and docs/models.md §3 */',
    '// a mapping (docs/codes.md',
    '// §4.6 [S])',
    'y = "docs/clinical-rules.md §2";',
    '/* `docs/models.md` §6b */',
  ].join('\n');
  const got = [];
  for (const r of cRanges(src))
    for (const c of citationsIn(src, r, true))
      got.push(`${lineOf(src, c.offset)}:${c.name}:${c.section}:${c.tags.join('')}`);
  assert.deepEqual(got.sort(), [
    '1:docs/codes.md:6.2:PT',
    '2:docs/codes.md:6.3:',
    '2:docs/models.md:3:',
    '3:docs/codes.md:4.6:S',
    '5:docs/clinical-rules.md:2:',
    '6:docs/models.md:6b:',
  ]);
});

test('every scanned source cites something (the scan is not empty)', () => {
  const cites = scan();
  const inAdapter = cites.filter((c) => c.file.startsWith('adapter/') && c.section);
  const inMappings = cites.filter((c) => c.file.endsWith('.json') && c.section);
  assert.ok(inAdapter.length >= 10, `only ${inAdapter.length} section citations in adapter/`);
  assert.ok(inMappings.length >= 200, `only ${inMappings.length} section citations in mappings/`);
});

test('every cited section exists in a document in the repository', () => {
  const bad = problems(scan(), { withSection: true });
  assert.deepEqual(bad, [], `${bad.length} citation(s) to a missing document or section:\n` + bad.join('\n'));
});

test('every .md named in adapter/ and mappings/ is in the repository', () => {
  const cites = scan().filter((c) => !c.file.startsWith('docs/'));
  const bad = problems(cites, { withSection: false });
  assert.deepEqual(bad, [], `${bad.length} document(s) not in the repository:\n` + bad.join('\n'));
});

test('every verification tag cited with docs/codes.md is defined in its §0.1', () => {
  const tags = definedTags();
  assert.ok(tags.size >= 4, 'docs/codes.md §0.1 defines no verification tags');
  const bad = [];
  for (const c of scan()) {
    if (path.basename(c.name) !== 'codes.md' || resolve(c.file, c.name) === null) continue;
    for (const t of c.tags) if (!tags.has(t)) bad.push(`${where(c)}: tag [${t}] is not defined`);
  }
  assert.deepEqual(bad, [], bad.join('\n'));
});
