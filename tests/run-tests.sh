#!/usr/bin/env bash
# Runs every test of the project and ends with one line "N passed, N failed".
#
#   tests/run-tests.sh              unit tests, then Node-driven tests (test FHIR
#                                   server glue, synthetic data, offline CLI,
#                                   integration against the test FHIR server)
#   tests/run-tests.sh --unit-only  only the C unit tests
#
# Called by `make test` / `make unit` after the build.  Exit status 1 when any
# test failed.
set -u
cd "$(dirname "$0")/.."

passed=0
failed=0
failures=()
failure_details=''

count_cmocka() { # name, output, exit status
    local name=$1 out=$2 status=$3 p f
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -n 1)
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -n 1)
    p=${p:-0}
    f=${f:-0}
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1 # crashed or failed outside a test
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    [ "$f" -gt 0 ] && failures+=("$name")
    printf '%-40s %4d passed, %d failed\n' "$name" "$p" "$f"
    [ "$f" -gt 0 ] && failure_details+="  $name:"$'\n'$(printf '%s\n' "$out" |
        grep -E '^\[  (FAILED|ERROR) +\]|^\[   LINE   \]|ERROR: [A-Za-z]+Sanitizer|^SUMMARY: |runtime error:' |
        head -n 10 | sed 's/^/    /')$'\n'
    return 0
}

count_tap() { # name, output, exit status
    local name=$1 out=$2 status=$3 p f
    p=$(printf '%s\n' "$out" | sed -n 's/^# pass \([0-9]*\)$/\1/p' | tail -n 1)
    f=$(printf '%s\n' "$out" | sed -n 's/^# fail \([0-9]*\)$/\1/p' | tail -n 1)
    p=${p:-0}
    f=${f:-0}
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    [ "$f" -gt 0 ] && failures+=("$name")
    printf '%-40s %4d passed, %d failed\n' "$name" "$p" "$f"
    # CI keeps only the end of what is printed: keep each failing test's name,
    # place and error (not its stack) for the end of the run
    [ "$f" -gt 0 ] && failure_details+=$(printf '%s\n' "$out" | awk '
        function flush() { if (on && !parent) printf "%s", buf; on = 0 }
        /^ *not ok / { flush(); on = 1; parent = 0; key = ""; n = 0
                       t = $0; sub(/^ *not ok [0-9]+ - /, "", t); buf = "  not ok: " t "\n"; next }
        !on { next }
        /^ *\.\.\.$/ { flush(); next }
        /subtestsFailed/ { parent = 1 }
        /^ *[a-zA-Z_]+: / { k = $1; key = (k ~ /^(location|error|expected|actual):$/) ? k : "" }
        key != "" && n < 10 { line = $0; sub(/^ +/, "", line); if (line != "") { buf = buf "    " line "\n"; n++ } }
        END { flush() }')$'\n'
    return 0
}

logdir=build/test-logs
mkdir -p "$logdir"

for t in build/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    out=$("$t" 2>&1)
    status=$?
    printf '%s\n' "$out" >"$logdir/$name.log"
    count_cmocka "unit/$name" "$out" "$status"
done

# Fuzz corpus and kept crashers (tests/fuzz/corpus/<target>/), replayed through
# each libFuzzer target linked with a plain main(): one test per target.
for t in build/fuzz-replay/*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    out=$("$t" tests/fuzz/corpus/"$name"/* 2>&1)
    status=$?
    printf '%s\n' "$out" >"$logdir/fuzz-replay-$name.log"
    if [ "$status" -eq 0 ]; then
        passed=$((passed + 1))
        printf '%-40s %4d passed, %d failed\n' "fuzz-replay/$name" 1 0
    else
        failed=$((failed + 1))
        failures+=("fuzz-replay/$name")
        printf '%-40s %4d passed, %d failed\n' "fuzz-replay/$name" 0 1
    fi
done

if [ "${1:-}" != "--unit-only" ]; then
    if [ ! -d tests/fhir-server/node_modules ]; then
        npm ci --prefix tests/fhir-server --no-audit --no-fund --loglevel=error >"$logdir/npm-ci.log" 2>&1 ||
            { echo "npm ci failed, see $logdir/npm-ci.log"; failed=$((failed + 1)); }
    fi
    if [ ! -d tests/oauth-server/node_modules ]; then
        npm ci --prefix tests/oauth-server --no-audit --no-fund --loglevel=error >"$logdir/npm-ci-oauth.log" 2>&1 ||
            { echo "npm ci failed, see $logdir/npm-ci-oauth.log"; failed=$((failed + 1)); }
    fi
    if [ ! -d tests/cds-client/node_modules ]; then
        npm ci --prefix tests/cds-client --no-audit --no-fund --loglevel=error >"$logdir/npm-ci-cds.log" 2>&1 ||
            { echo "npm ci failed, see $logdir/npm-ci-cds.log"; failed=$((failed + 1)); }
    fi
    for suite in tests/fhir-server/test tests/synth/test tests/integration; do
        [ -d "$suite" ] || continue
        files=$(find "$suite" -maxdepth 1 -name '*.test.js' | sort)
        [ -n "$files" ] || continue
        name=${suite#tests/}
        # shellcheck disable=SC2086
        out=$(node --test --test-reporter=tap --test-concurrency=1 $files 2>&1)
        status=$?
        printf '%s\n' "$out" >"$logdir/${name//\//_}.log"
        count_tap "$name" "$out" "$status"
    done
fi

if [ ${#failures[@]} -gt 0 ]; then
    printf '%s' "$failure_details" | head -n 60
    echo "failing suites (logs in $logdir): ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
