#!/usr/bin/env node
'use strict';
// Posts FHIR transaction (or batch) Bundles to a FHIR base URL.
//
//   node load.js --base URL [--cacert FILE] [--cert FILE --key FILE] [--quiet] FILE_OR_DIR...
//
// For an https base, --cacert names the CA to trust and --cert/--key the
// client certificate for mutual TLS.
// Each *.json file (directories are read recursively, in name order) is
// POSTed to the base as application/fhir+json; in a directory, JSON files
// that are not Bundles (a generator's manifest.json) are skipped. A non-2xx answer, or a batch
// entry whose response status is not 2xx, is reported with the server's
// OperationOutcome. Exits 1 if anything failed, 2 on bad usage.

const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const path = require('node:path');

function usage(message) {
  if (message) {
    process.stderr.write('load.js: ' + message + '\n');
  }
  process.stderr.write(
    'usage: node load.js --base URL [--cacert FILE] [--cert FILE --key FILE] [--quiet] FILE_OR_DIR...\n'
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { base: undefined, quiet: false, inputs: [], tls: {} };
  const tlsFlags = { '--cacert': 'ca', '--cert': 'cert', '--key': 'key' };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--base' || tlsFlags[argv[i]]) {
      if (i + 1 >= argv.length) {
        usage(argv[i] + ' needs a value');
      }
      const v = argv[++i];
      if (argv[i - 1] === '--base') {
        opts.base = v.replace(/\/+$/, '');
      } else {
        try {
          opts.tls[tlsFlags[argv[i - 1]]] = fs.readFileSync(v);
        } catch (err) {
          usage('cannot read ' + v + ': ' + err.message);
        }
      }
    } else if (argv[i] === '--quiet') {
      opts.quiet = true;
    } else if (argv[i] === '-h' || argv[i] === '--help') {
      usage();
    } else if (argv[i].startsWith('--')) {
      usage('unknown option: ' + argv[i]);
    } else {
      opts.inputs.push(argv[i]);
    }
  }
  if (!opts.base) {
    usage('--base is required');
  }
  if (opts.inputs.length === 0) {
    usage('no input files');
  }
  if (Boolean(opts.tls.cert) !== Boolean(opts.tls.key)) {
    usage('--cert and --key go together');
  }
  return opts;
}

// Files named on the command line must be Bundles; JSON files found in a
// directory that are not Bundles (such as a generator's manifest.json) are
// skipped with a note.
function collect(input, out, explicit = true) {
  const st = fs.statSync(input);
  if (st.isDirectory()) {
    for (const name of fs.readdirSync(input).sort()) {
      const p = path.join(input, name);
      if (fs.statSync(p).isDirectory() || name.endsWith('.json')) {
        collect(p, out, false);
      }
    }
  } else {
    out.push({ file: input, explicit });
  }
  return out;
}

function describeOutcome(oo) {
  if (!oo || oo.resourceType !== 'OperationOutcome' || !Array.isArray(oo.issue)) {
    return JSON.stringify(oo);
  }
  return oo.issue
    .map((i) => {
      const where = i.expression ? ' at ' + i.expression.join(', ') : '';
      return `${i.severity}/${i.code}: ${i.diagnostics || (i.details && i.details.text) || ''}${where}`;
    })
    .join('; ');
}

// POSTs text as FHIR JSON; resolves to { status, text }.
function post(url, text, tls) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const lib = u.protocol === 'https:' ? https : http;
    const req = lib.request(
      u,
      {
        method: 'POST',
        headers: {
          'Content-Type': 'application/fhir+json',
          Accept: 'application/fhir+json',
          'Content-Length': Buffer.byteLength(text),
        },
        ...(u.protocol === 'https:' ? tls : {}),
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      }
    );
    req.on('error', reject);
    req.end(text);
  });
}

async function postFile(base, file, explicit, tls) {
  let text;
  let bundle;
  try {
    text = fs.readFileSync(file, 'utf8');
    bundle = JSON.parse(text);
  } catch (err) {
    return [`${file}: cannot read JSON: ${err.message}`];
  }
  if (!explicit && (!bundle || bundle.resourceType !== 'Bundle')) {
    return undefined;
  }
  if (!bundle || bundle.resourceType !== 'Bundle' || !['transaction', 'batch'].includes(bundle.type)) {
    return [`${file}: not a transaction or batch Bundle`];
  }
  let res;
  try {
    res = await post(base, text, tls);
  } catch (err) {
    return [`${file}: POST ${base} failed: ${err.message}`];
  }
  const body = res.text;
  let json;
  try {
    json = JSON.parse(body);
  } catch {
    json = body.slice(0, 500);
  }
  if (res.status < 200 || res.status > 299) {
    return [`${file}: HTTP ${res.status}: ${describeOutcome(json)}`];
  }
  const errors = [];
  (json.entry || []).forEach((entry, i) => {
    const status = entry.response && entry.response.status;
    if (!/^2\d\d/.test(String(status))) {
      errors.push(`${file}: entry ${i} status ${status}: ${describeOutcome(entry.response && entry.response.outcome)}`);
    }
  });
  return errors;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  let files;
  try {
    files = opts.inputs.flatMap((input) => collect(input, []));
  } catch (err) {
    usage(err.message);
  }
  let failed = 0;
  let skipped = 0;
  const start = Date.now();
  for (const { file, explicit } of files) {
    const errors = await postFile(opts.base, file, explicit, opts.tls);
    if (errors === undefined) {
      skipped += 1;
      if (!opts.quiet) {
        process.stderr.write(`load.js: ${file}: skipped (not a Bundle)\n`);
      }
    } else if (errors.length) {
      failed += 1;
      for (const e of errors) {
        process.stderr.write('load.js: ' + e + '\n');
      }
    }
  }
  if (!opts.quiet) {
    process.stderr.write(
      `load.js: ${files.length - skipped - failed} of ${files.length - skipped} bundles loaded in ${Date.now() - start} ms\n`
    );
  }
  process.exit(failed ? 1 : 0);
}

main();
