#!/usr/bin/env node
// make mutation: apply each curated mutation of tests/mutation/mutations.txt
// in a scratch copy of the tree, one at a time, rebuild, run the tests named
// for it (narrowest first, stopping at the first that fails: "killed"), and
// print a table and the kill rate.  Exit status 1 when a mutation survives,
// 2 when the list is stale (an original text not found exactly once) or a
// mutant does not build.
//
//   MUTATION=id[,id...]      only these mutations
//   MUTATION_SUBSET=k/n      every n-th mutation starting at index k
//   MUTATION_SUBSET=day[/n]  the same, k = days since 1970 mod n (n: 8), so CI
//                            covers the whole list over n days
//   MUTATION_BASELINE=1      first run every named test on the unmutated copy
//                            (a test that already fails would "kill" anything)
//   MUTATION_KEEP=1          leave build/mutation-tree for inspection
//   MUTATION_LIST=file       another list (e.g. while writing new lines)
//   MUTATION_REUSE_BUILD=0   build the copy from scratch instead of starting
//                            from this tree's build outputs
//   MUTATION_CHECK=1         only check the whole list against this tree
//                            (each original found once, each named test
//                            file, case and unit suite present, each name
//                            pattern matching a test): no copy, no build;
//                            make test runs it (mutation-list.test.js)
//
// The list format and how to add a line are in docs/testing.md.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..', '..');
const LIST = process.env.MUTATION_LIST ? path.resolve(process.env.MUTATION_LIST) : path.join(__dirname, 'mutations.txt');
const TREE = path.join(ROOT, 'build', 'mutation-tree');
const REPORT = path.join(ROOT, 'build', 'mutation-report.md');
const UNIT_TIMEOUT_S = 120;
const NODE_TIMEOUT_S = 600;

function die(code, msg) {
  process.stderr.write(`mutation: ${msg}\n`);
  process.exit(code);
}

// "\n", "\t" and "\\" in the original and replacement fields.
function unescape(s) {
  return s.replace(/\\([nt\\])/g, (_, c) => (c === 'n' ? '\n' : c === 't' ? '\t' : '\\'));
}

function parseList(text) {
  const muts = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '' || line.startsWith('#')) return;
    const f = line.split('\t');
    if (f.length !== 6) die(2, `${LIST}:${i + 1}: ${f.length} tab-separated fields, expected 6`);
    const [id, file, tests, behaviour, orig, repl] = f;
    const edit = { file, orig: unescape(orig), repl: unescape(repl), line: i + 1 };
    const prev = muts[muts.length - 1];
    if (prev && prev.id === id) {
      // a further edit of the same mutation (e.g. a statement moved)
      if (tests !== '=' || behaviour !== '=') die(2, `${LIST}:${i + 1}: a continuation line has "=" as tests and behaviour`);
      prev.edits.push(edit);
      return;
    }
    if (muts.some((m) => m.id === id)) die(2, `${LIST}:${i + 1}: duplicate id ${id}`);
    if (edit.orig === '') die(2, `${LIST}:${i + 1}: empty original text`);
    muts.push({ id, file, behaviour, tests: tests.split(',').map((s) => s.trim()), edits: [edit] });
  });
  return muts;
}

function select(muts) {
  const only = process.env.MUTATION;
  if (only) {
    const ids = only.split(',').map((s) => s.trim()).filter(Boolean);
    for (const id of ids) if (!muts.some((m) => m.id === id)) die(2, `no mutation with id ${id}`);
    return muts.filter((m) => ids.includes(m.id));
  }
  const sub = process.env.MUTATION_SUBSET;
  if (!sub) return muts;
  let m = /^day(?:\/(\d+))?$/.exec(sub);
  let k;
  let n;
  if (m) {
    n = Number(m[1] || 8);
    k = Math.floor(Date.now() / 86400000) % n;
  } else if ((m = /^(\d+)\/(\d+)$/.exec(sub))) {
    k = Number(m[1]);
    n = Number(m[2]);
  } else {
    die(2, `MUTATION_SUBSET=${sub}: expected k/n or day[/n]`);
  }
  if (n < 1 || k >= n) die(2, `MUTATION_SUBSET=${sub}: need 0 <= k < n`);
  process.stdout.write(`subset ${k}/${n}\n`);
  return muts.filter((_, i) => i % n === k);
}

function sh(cmd, args, opts = {}) {
  return spawnSync(cmd, args, { cwd: TREE, encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
}

function copyTree() {
  fs.rmSync(TREE, { recursive: true, force: true });
  fs.mkdirSync(TREE, { recursive: true });
  // like `make asan`: the sources without build outputs; node_modules linked
  const tar = spawnSync('bash', ['-c',
    `tar --exclude=./build --exclude=./dnmbc-adapter --exclude='./tests/*/node_modules' -cf - . | tar -xf - -C '${TREE}'`],
  { cwd: ROOT, stdio: 'inherit' });
  if (tar.status !== 0) die(2, 'copying the tree failed');
  // The working tree's build outputs come along (tar keeps the times), so
  // make rebuilds only what is out of date instead of the whole tree.
  const outputs = ['build/obj', 'build/tests', 'build/fuzz-replay', 'build/libadapter.a',
    'build/fhir_client_check', 'dnmbc-adapter'].filter((f) => fs.existsSync(path.join(ROOT, f)));
  if (outputs.length && process.env.MUTATION_REUSE_BUILD !== '0') {
    const t2 = spawnSync('bash', ['-c', `tar -cf - ${outputs.join(' ')} | tar -xf - -C '${TREE}'`],
      { cwd: ROOT, stdio: 'inherit' });
    if (t2.status !== 0) die(2, 'copying the build outputs failed');
  }
  for (const d of fs.readdirSync(path.join(ROOT, 'tests'))) {
    const nm = path.join(ROOT, 'tests', d, 'node_modules');
    if (fs.existsSync(nm)) fs.symlinkSync(fs.realpathSync(nm), path.join(TREE, 'tests', d, 'node_modules'));
  }
}

// What a test spec needs built, and how it is run.
//   unit:test_engine        build/tests/test_engine
//   case:a+b                the golden cases a and b (test_cases, ADP_CASE)
//   cases                   every golden case
//   fuzz:mapping            tests/fuzz/corpus/mapping replayed
//   node:path[#pattern]     node --test on one file (--test-name-pattern)
function plan(spec) {
  let m;
  if ((m = /^unit:(test_\w+)$/.exec(spec))) {
    return { target: [`build/tests/${m[1]}`], cmd: [`build/tests/${m[1]}`], timeout: UNIT_TIMEOUT_S };
  }
  if ((m = /^case:([\w.+-]+)$/.exec(spec))) {
    return {
      target: ['build/tests/test_cases'], cmd: ['build/tests/test_cases'],
      env: { ADP_CASE: m[1].split('+').join(',') }, timeout: UNIT_TIMEOUT_S,
    };
  }
  if (spec === 'cases') {
    return { target: ['build/tests/test_cases'], cmd: ['build/tests/test_cases'], timeout: UNIT_TIMEOUT_S };
  }
  if ((m = /^fuzz:(\w+)$/.exec(spec))) {
    return {
      target: [`build/fuzz-replay/${m[1]}`],
      cmd: ['bash', '-c', `build/fuzz-replay/${m[1]} tests/fuzz/corpus/${m[1]}/*`],
      timeout: UNIT_TIMEOUT_S,
    };
  }
  if ((m = /^node:([\w./-]+\.test\.js)(?:#(.+))?$/.exec(spec))) {
    const args = ['--test', '--test-concurrency=1', '--test-reporter=tap'];
    if (m[2]) args.push(`--test-name-pattern=${m[2]}`);
    return {
      target: ['dnmbc-adapter', 'build/fhir_client_check', 'build/dnmbc-adapter-faults'],
      cmd: ['node', ...args, m[1]],
      file: m[1], timeout: NODE_TIMEOUT_S,
    };
  }
  die(2, `unknown test spec "${spec}" (unit:, case:, cases, fuzz:, node:)`);
  return null;
}

function build(targets) {
  const r = sh('make', ['-j2', '--no-print-directory', ...targets]);
  return { ok: r.status === 0, out: (r.stdout || '') + (r.stderr || '') };
}

// Run one test spec: 'pass', 'fail' (with the first failure's name) or
// 'timeout'.  A build failure is reported as 'build'.
function runSpec(spec) {
  const p = plan(spec);
  // built even when the test is missing, so that every mutant is known to compile
  const b = build(p.target);
  if (!b.ok) return { result: 'build', out: b.out };
  if (p.file && !fs.existsSync(path.join(TREE, p.file))) return { result: 'missing' };
  const r = sh(p.cmd[0], p.cmd.slice(1), {
    env: { ...process.env, ...(p.env || {}) }, timeout: p.timeout * 1000, killSignal: 'SIGKILL',
  });
  const out = (r.stdout || '') + (r.stderr || '');
  if (r.error && r.error.code === 'ETIMEDOUT') return { result: 'timeout', out };
  // a name pattern that matches no test would pass every mutant: a stale list
  if (p.file && /^# tests 0$/m.test(out)) die(2, `${spec}: no test matches (stale name pattern?)`);
  if (r.status === 0) return { result: 'pass', out };
  // the first failing test's name, for the table
  const m = /^\[  FAILED  \] (?!\d+ test)(\S+)/m.exec(out) || /^not ok \d+ - (.+)$/m.exec(out) ||
    /^\[  ERROR   \] --- (.+)$/m.exec(out);
  return { result: 'fail', detail: m ? m[1].trim() : `exit ${r.status ?? r.signal}`, out };
}

// The mutated texts of the files mut touches, read under `root`; dies when
// an original text is not found exactly once (a stale list).
function mutate(mut, root) {
  const texts = new Map();
  for (const e of mut.edits) {
    const file = path.join(root, e.file);
    if (!texts.has(file)) {
      if (!fs.existsSync(file)) die(2, `${mut.id}: ${e.file} does not exist (list line ${e.line})`);
      texts.set(file, { orig: fs.readFileSync(file, 'utf8') });
      texts.get(file).now = texts.get(file).orig;
    }
    const t = texts.get(file);
    const count = t.now.split(e.orig).length - 1;
    if (count !== 1) {
      die(2, `${mut.id}: the original text occurs ${count} times in ${e.file}, expected once ` +
        `(list line ${e.line}; the code changed: update the list)\n  original: ${JSON.stringify(e.orig)}`);
    }
    t.now = t.now.replace(e.orig, () => e.repl);
  }
  return texts;
}

function apply(mut) {
  const texts = mutate(mut, TREE);
  const saved = new Map();
  for (const [file, t] of texts) {
    saved.set(file, t.orig);
    fs.writeFileSync(file, t.now);
  }
  return saved;
}

function restore(saved) {
  // written back with a new mtime: make rebuilds what was built from the mutant
  for (const [file, text] of saved) fs.writeFileSync(file, text);
}

function pad(s, n) {
  s = String(s);
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

// The titles of the test() calls of a node:test file, for a name pattern.
function testTitles(file) {
  const text = fs.readFileSync(file, 'utf8');
  const re = /\btest\(\s*(['"`])((?:\\.|(?!\1).)*)\1/g;
  const titles = [];
  let m;
  while ((m = re.exec(text)) !== null) titles.push(m[2].replace(/\\(.)/g, '$1'));
  return titles;
}

// MUTATION_CHECK=1: the list against this tree, without running anything.
function check(all) {
  for (const mut of all) {
    mutate(mut, ROOT);
    for (const spec of mut.tests) {
      const p = plan(spec);
      let m;
      if ((m = /^unit:(test_\w+)$/.exec(spec)) && !fs.existsSync(path.join(ROOT, 'tests/unit', `${m[1]}.c`))) {
        die(2, `${mut.id}: ${spec}: tests/unit/${m[1]}.c does not exist`);
      }
      if ((m = /^case:([\w.+-]+)$/.exec(spec))) {
        for (const c of m[1].split('+')) {
          if (!fs.existsSync(path.join(ROOT, 'tests/cases', c))) die(2, `${mut.id}: ${spec}: no golden case ${c}`);
        }
      }
      if (p.file) {
        if (!fs.existsSync(path.join(ROOT, p.file))) die(2, `${mut.id}: ${spec}: ${p.file} does not exist`);
        const pattern = /#(.+)$/.exec(spec);
        if (pattern && !testTitles(path.join(ROOT, p.file)).some((t) => new RegExp(pattern[1]).test(t))) {
          die(2, `${mut.id}: ${spec}: no test of ${p.file} matches "${pattern[1]}" (stale name pattern)`);
        }
      }
    }
  }
  process.stdout.write(`mutation list: ${all.length} mutations, every original found once, every named test present\n`);
}

function main() {
  if (!fs.existsSync(LIST)) die(2, `${LIST} is missing`);
  const all = parseList(fs.readFileSync(LIST, 'utf8'));
  if (process.env.MUTATION_CHECK === '1') {
    check(all);
    return;
  }
  const muts = select(all);
  if (muts.length === 0) die(2, 'no mutation selected');
  process.stdout.write(`mutation: ${muts.length} of ${all.length} mutations, scratch tree ${path.relative(ROOT, TREE)}\n`);
  // A stale list fails before any time is spent on the copy and the tests.
  for (const mut of muts) mutate(mut, ROOT);
  copyTree();
  const t0 = Date.now();
  const first = build(['build-tests']);
  if (!first.ok) die(2, `the unmutated copy does not build:\n${first.out.slice(-4000)}`);
  process.stdout.write(`built the unmutated copy in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);

  if (process.env.MUTATION_BASELINE === '1') {
    const specs = [...new Set(muts.flatMap((m) => m.tests))];
    for (const spec of specs) {
      const r = runSpec(spec);
      if (r.result !== 'pass' && r.result !== 'missing') {
        die(2, `baseline: ${spec} fails without any mutation (${r.result} ${r.detail || ''}):\n${(r.out || '').slice(-3000)}`);
      }
      process.stdout.write(`baseline: ${spec} ${r.result === 'pass' ? 'passes' : 'is missing'}\n`);
    }
  }

  const rows = [];
  let errors = 0;
  for (const mut of muts) {
    const started = Date.now();
    const saved = apply(mut);
    let row = { mut, result: 'survived', by: '', note: '' };
    const missing = [];
    try {
      for (const spec of mut.tests) {
        const r = runSpec(spec);
        if (r.result === 'pass') continue;
        if (r.result === 'missing') {
          missing.push(spec);
          continue;
        }
        if (r.result === 'build') {
          row = { mut, result: 'ERROR', by: spec, note: 'the mutant does not build' };
          process.stderr.write(`${mut.id}: the mutant does not build:\n${r.out.slice(-3000)}\n`);
          errors++;
          break;
        }
        row = { mut, result: 'killed', by: spec, note: r.result === 'timeout' ? 'timeout' : r.detail };
        break;
      }
    } finally {
      restore(saved);
    }
    if (row.result === 'survived' && missing.length) row.note = `missing: ${missing.join(' ')}`;
    row.seconds = (Date.now() - started) / 1000;
    rows.push(row);
    process.stdout.write(`${pad(mut.id, 26)} ${pad(row.result, 8)} ${pad(row.by, 40)} ${row.seconds.toFixed(0)} s\n`);
  }

  const killed = rows.filter((r) => r.result === 'killed').length;
  const lines = [
    '| id | file | behaviour it breaks | result | by | s |',
    '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.mut.id} | ${r.mut.file} | ${r.mut.behaviour} | ${r.result} | ` +
      `${r.by}${r.note ? ` (${r.note.replace(/\|/g, '\\|').slice(0, 80)})` : ''} | ${r.seconds.toFixed(0)} |`),
  ];
  const rate = `kill rate: ${killed}/${rows.length} (${((100 * killed) / rows.length).toFixed(0)}%)`;
  fs.writeFileSync(REPORT, `${lines.join('\n')}\n\n${rate}\n`);
  process.stdout.write(`\n${lines.join('\n')}\n\n${rate}; table in ${path.relative(ROOT, REPORT)}\n`);
  const survivors = rows.filter((r) => r.result === 'survived');
  if (survivors.length) process.stdout.write(`survived: ${survivors.map((r) => r.mut.id).join(' ')}\n`);
  if (process.env.MUTATION_KEEP !== '1') fs.rmSync(TREE, { recursive: true, force: true });
  process.exit(errors ? 2 : survivors.length ? 1 : 0);
}

main();
