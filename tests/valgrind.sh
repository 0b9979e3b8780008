#!/usr/bin/env bash
# `make valgrind`: every C unit test and one sync of the fixed synthetic
# patients against the test FHIR server, under valgrind memcheck.  Fails on
# any memcheck error or any definitely lost block; prints one line per run.
set -u
cd "$(dirname "$0")/.."

logdir=build/valgrind
mkdir -p "$logdir"
vg=(valgrind --tool=memcheck --error-exitcode=99 --leak-check=full
    --errors-for-leak-kinds=definite --show-leak-kinds=definite --track-origins=yes
    --suppressions=tests/valgrind.supp --quiet)
bad=0

check() { # name, log, exit status
    if [ "$3" -eq 99 ] || grep -q 'definitely lost: [1-9]' "$2"; then
        printf '%-40s memcheck errors (see %s)\n' "$1" "$2"
        bad=$((bad + 1))
    else
        printf '%-40s clean (exit %d)\n' "$1" "$3"
    fi
}

for t in build/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    "${vg[@]}" --log-file="$logdir/$name.log" "$t" >/dev/null 2>&1
    check "unit/$name" "$logdir/$name.log" $?
done

dir=$(mktemp -d /tmp/dnmbc-valgrind-XXXXXX)
base=$(tests/lib/fhir-server.sh start "$dir/server" | tail -n 1)
node tests/synth/generate.js --out "$dir/synth" >/dev/null
node tests/fhir-server/load.js --base "$base" "$dir"/synth/patient-*.json >/dev/null 2>&1
"${vg[@]}" --log-file="$logdir/sync.log" ./dnmbc-adapter sync --base-url "$base" \
    --state "$dir/state.db" >"$logdir/sync.out" 2>"$logdir/sync.err"
status=$?
check "sync (34 patients)" "$logdir/sync.log" "$status"
"${vg[@]}" --log-file="$logdir/status.log" ./dnmbc-adapter status --state "$dir/state.db" \
    >/dev/null 2>&1
check "status" "$logdir/status.log" $?
tests/lib/fhir-server.sh stop "$dir/server" >/dev/null 2>&1
rm -rf "$dir"
[ "$bad" -eq 0 ] && echo "valgrind: clean" || echo "valgrind: $bad run(s) with errors"
[ "$bad" -eq 0 ]
