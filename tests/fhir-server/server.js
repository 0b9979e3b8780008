#!/usr/bin/env node
'use strict';
// Test FHIR R4 server for dnmbc-adapter.
//
//   node server.js [--port N] [--port-file FILE] [--pid-file FILE]
//                  [--page-size N] [--quiet]
//                  [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]
//
// Listens on 127.0.0.1 only (port 0 = ephemeral), base URL
// http://127.0.0.1:PORT/fhir/R4, or https:// with --tls-cert/--tls-key
// (--tls-client-ca: require a client certificate signed by that CA). Writes the port number to --port-file once
// listening. See README.md for what is Medplum's and what is ours.

const fs = require('node:fs');
const { startServer } = require('./lib/app');

function usage(message) {
  if (message) {
    process.stderr.write('server.js: ' + message + '\n');
  }
  process.stderr.write(
    'usage: node server.js [--port N] [--port-file FILE] [--pid-file FILE] [--page-size N] [--quiet]\n' +
      '                      [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]\n'
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { port: 0, portFile: undefined, pidFile: undefined, quiet: false, pageSize: undefined, tls: {} };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) {
        usage(arg + ' needs a value');
      }
      return argv[++i];
    };
    switch (arg) {
      case '--port': {
        const v = value();
        if (!/^\d+$/.test(v) || Number(v) > 65535) {
          usage('bad port: ' + v);
        }
        opts.port = Number(v);
        break;
      }
      case '--port-file':
        opts.portFile = value();
        break;
      case '--pid-file':
        opts.pidFile = value();
        break;
      case '--page-size': {
        const v = value();
        if (!/^[1-9]\d*$/.test(v)) {
          usage('bad page size: ' + v);
        }
        opts.pageSize = Number(v);
        break;
      }
      case '--tls-cert':
        opts.tls.cert = value();
        break;
      case '--tls-key':
        opts.tls.key = value();
        break;
      case '--tls-client-ca':
        opts.tls.clientCa = value();
        break;
      case '--quiet':
        opts.quiet = true;
        break;
      case '-h':
      case '--help':
        usage();
        break;
      default:
        usage('unknown argument: ' + arg);
    }
  }
  if (Boolean(opts.tls.cert) !== Boolean(opts.tls.key)) {
    usage('--tls-cert and --tls-key go together');
  }
  if (opts.tls.clientCa && !opts.tls.cert) {
    usage('--tls-client-ca needs --tls-cert and --tls-key');
  }
  return opts;
}

function readTls(tls) {
  if (!tls.cert) {
    return undefined;
  }
  const read = (file) => {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      usage('cannot read ' + file + ': ' + err.message);
    }
  };
  return { cert: read(tls.cert), key: read(tls.key), clientCa: tls.clientCa ? read(tls.clientCa) : undefined };
}

// Writes via a temporary file and rename, so a reader never sees a partial file.
function writeAtomically(file, text) {
  const tmp = file + '.tmp' + process.pid;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const log = opts.quiet ? () => undefined : (line) => process.stderr.write(new Date().toISOString() + ' ' + line + '\n');
  const { server, baseUrl, port } = await startServer({
    port: opts.port,
    log,
    defaultCount: opts.pageSize,
    tls: readTls(opts.tls),
  });
  if (opts.pidFile) {
    writeAtomically(opts.pidFile, process.pid + '\n');
  }
  if (opts.portFile) {
    writeAtomically(opts.portFile, port + '\n');
  }
  log('listening on ' + baseUrl);
  const stop = (signal) => {
    log('stopping on ' + signal);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err) => {
  process.stderr.write('server.js: ' + (err && err.stack ? err.stack : err) + '\n');
  process.exit(1);
});
