#!/usr/bin/env bash
# The demo: start the bundled test FHIR server, load synthetic patients made
# by tests/synth/generate.js, run one `sync`, print the summary and the
# narrative of one posted CarePlan, run `sync` again to show that nothing is
# written twice, then stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."

out=tests/out/demo
rm -rf "$out"
mkdir -p "$out"
server_dir="$out/server"
trap 'tests/lib/fhir-server.sh stop "$server_dir" >/dev/null 2>&1 || true' EXIT

echo "== starting the test FHIR server (Medplum engine, in memory, 127.0.0.1)"
base=$(tests/lib/fhir-server.sh start "$server_dir")
echo "   $base"

echo "== generating and loading synthetic patients"
node tests/synth/generate.js --out "$out/synth" >/dev/null
node tests/fhir-server/load.js --base "$base" "$out"/synth/patient-*.json

echo "== dnmbc-adapter sync"
./dnmbc-adapter sync --base-url "$base" --state "$out/demo.state"

echo
echo "== one CarePlan's narrative, as a clinician sees it"
node tests/lib/show-plan.js --base "$base" --recommendation curative-lrt

echo
echo "== second sync: nothing changed, so nothing is written"
./dnmbc-adapter sync --base-url "$base" --state "$out/demo.state" --log-level warn
