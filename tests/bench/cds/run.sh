#!/usr/bin/env bash
# make bench-cds: p50 / p99 latency and requests/s of CDS Hooks patient-view
# (full prefetch) and of $apply, for a patient with 200 resources, at 1, 8
# and 64 concurrent clients (wrk), against `dnmbc-adapter serve` on loopback.
# Every request carries its own signed JWT (tokens made beforehand by gen.js;
# BENCH_CDS_ALG=RS384 for an EHR that signs with RSA, default ES384).
set -euo pipefail
cd "$(dirname "$0")/../../.."
secs=${BENCH_CDS_SECONDS:-5}
ntok=${BENCH_CDS_TOKENS:-30000}
for tool in wrk node; do command -v "$tool" >/dev/null || { echo "bench-cds needs $tool" >&2; exit 2; }; done
dir=$(mktemp -d /tmp/dnmbc-bench-cds.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
nres=$(node tests/bench/cds/gen.js "$dir" "$ntok")
printf 'patient with %s resources; %s s per run; tokens per endpoint: %s; JWTs signed %s\n' \
    "$nres" "$secs" "$ntok" "${BENCH_CDS_ALG:-ES384}"
printf '%-12s %8s %10s %10s %10s %8s\n' endpoint clients p50_ms p99_ms req/s non-2xx
for c in 1 8 64; do
    for ep in hook apply; do
        # a fresh listener per run: every token is new to it
        DNMBC_LOG_LEVEL=info ./dnmbc-adapter serve -c "$dir/config.json" --listen 127.0.0.1:0 2>"$dir/serve.log" &
        pid=$!
        port=
        for _ in $(seq 1 200); do
            port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$dir/serve.log" | head -1)
            [ -n "$port" ] && break
            sleep 0.05
        done
        [ -n "$port" ] || { cat "$dir/serve.log" >&2; exit 1; }
        if [ "$ep" = hook ]; then p=/cds-services/dnmbc-local-therapy; else p='/fhir/PlanDefinition/dnmbc-local-therapy/$apply'; fi
        t=$(( c < 2 ? 1 : 2 ))
        out=$(TOKENS="$dir/tokens-$ep.txt" BODY="$dir/$ep.json" PATHQ="$p" THREADS=$t \
            wrk -t "$t" -c "$c" -d "${secs}s" --timeout 10s -s tests/bench/cds/cds.lua "http://127.0.0.1:$port" 2>&1)
        r=$(printf '%s\n' "$out" | grep '^RESULT' || { printf '%s\n' "$out" >&2; exit 1; })
        v() { printf '%s\n' "$r" | sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
        name=$([ "$ep" = hook ] && echo patient-view || echo '$apply')
        printf '%-12s %8s %10s %10s %10s %8s\n' "$name" "$c" "$(v p50_ms)" "$(v p99_ms)" "$(v rps)" "$(v non2xx)"
        kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    done
done
