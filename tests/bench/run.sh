#!/usr/bin/env bash
# make bench: throughput, CPU and memory of a full sync against the bundled
# test FHIR server, next to the server's own capacity for the same request
# mix (wrk) and a straightforward Node.js peer (node-peer/, fhir-kit-client).
#
#   tests/bench/run.sh [N]...        cohort sizes (default: 1000 10000;
#                                    BENCH_SIZES="1000 10000 100000" also works)
#
# Per size: a fresh server, N synthetic patients (tests/synth/generate.js,
# fixed seed) loaded with tests/fhir-server/load.js, then
#   1. dnmbc-adapter sync (fhir.concurrency, default 4), measured by rusage
#      (wall, user+sys CPU, peak RSS of the child) and the server's
#      /$test/stats (requests);
#   2. wrk replaying the adapter's request mix (mix.js, mix.lua: per
#      written patient the batch fetch and the write transaction, creating
#      new plans as a first sync does) with as many connections as the
#      adapter has workers: the server's capacity in patients/s is wrk's
#      requests/s divided by the mix's requests per patient;
#   3. the Node.js peer, measured the same way.
# Client and server share this machine's cores.  Figures only: nothing here
# asserts a timing.  Progress goes to stderr, the table to stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || read -r -a sizes <<<"${BENCH_SIZES:-1000 10000}"
concurrency=${BENCH_CONCURRENCY:-4}
wrk_seconds=${BENCH_WRK_SECONDS:-15}
page_size=${BENCH_PAGE_SIZE:-1000}
# The bundled server does not index token search: a code= list makes each
# Observation search scan the repository (docs/benchmarks.md).  Off by
# default here; BENCH_CODE_FILTER=true measures it on.
code_filter=${BENCH_CODE_FILTER:-false}
work=$(mktemp -d /tmp/dnmbc-bench.XXXXXX)
srv=""

say() { printf 'bench: %s\n' "$*" >&2; }
cleanup() {
	[ -z "$srv" ] || "$root/tests/lib/fhir-server.sh" stop "$srv" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

for tool in wrk node cc curl; do
	command -v "$tool" >/dev/null || { say "$tool is missing (bash .ci/install-deps)"; exit 2; }
done
make -C "$root" --no-print-directory dnmbc-adapter >&2
cc -O2 -Wall -Wextra -Werror -std=c11 -D_DEFAULT_SOURCE -o "$work/rusage" "$here/rusage.c"
[ -d "$here/node-peer/node_modules" ] ||
	npm ci --prefix "$here/node-peer" --no-audit --no-fund --loglevel=error >&2

# field NAME from a "k=v k=v" line
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2" | tail -1; }
stat_total() { curl -fsS "$1/\$test/stats" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).total))'; }

rows=()
notes=()
for n in "${sizes[@]}"; do
	say "== $n patients"
	srv="$work/srv-$n"
	base=$("$root/tests/lib/fhir-server.sh" start "$srv")
	admin=${base%/fhir/R4}
	node "$root/tests/synth/generate.js" --out "$work/gen-$n" --count "$n" --seed 7 >/dev/null
	t0=$(date +%s.%N)
	node "$root/tests/fhir-server/load.js" --base "$base" --quiet "$work/gen-$n"/patient-*.json >&2
	t1=$(date +%s.%N)
	notes+=("$n patients: loading them into the server took $(awk "BEGIN{printf \"%.0f\", $t1 - $t0}") s")
	cat >"$work/adapter-$n.json" <<JSON
{ "fhir": { "base_url": "$base", "page_size": $page_size, "concurrency": $concurrency,
            "observation_code_filter": $code_filter },
  "mappings": { "dir": "$root/mappings" },
  "state": { "path": "$work/state-$n.db" },
  "log": { "level": "warn" } }
JSON

	# 1. the adapter
	curl -fsS -X DELETE "$admin/\$test/stats" >/dev/null
	say "adapter sync"
	ru=$("$work/rusage" "$root/dnmbc-adapter" sync -c "$work/adapter-$n.json" \
		2>&1 >"$work/adapter-$n.out" | tail -1)
	seen=$(sed -n 's/^patients seen *\([0-9]*\)$/\1/p' "$work/adapter-$n.out")
	failed=$(sed -n 's/^failed *\([0-9]*\)$/\1/p' "$work/adapter-$n.out")
	reqs=$(stat_total "$admin")
	rows+=("$n|dnmbc-adapter (C)|$seen|$failed|$(field wall "$ru")|$(field user "$ru")|$(field sys "$ru")|$(field maxrss_kb "$ru")|$reqs")

	# 2. the server's capacity for the same request mix
	# the list of Observation codes the adapter asks for (a patient that does
	# not exist: nothing else happens)
	{ "$root/dnmbc-adapter" sync --dry-run -c "$work/adapter-$n.json" --patient none \
		--log-level debug 2>&1 >/dev/null || true; } |
		sed -n 's/.*Observation code list: //p' | tail -1 >"$work/codes-$n.txt"
	mix=$(node "$here/mix.js" --base "$base" --codes "$work/codes-$n.txt" --page-size "$page_size" \
		--sample 300 --out "$work/mix-$n.txt")
	say "mix: $mix"
	per=$(node -p "JSON.parse(process.argv[1]).requests_per_patient" "$mix")
	say "wrk, ${wrk_seconds}s, $concurrency connections"
	w=$(MIX="$work/mix-$n.txt" wrk -t1 -c"$concurrency" -d"${wrk_seconds}s" \
		-s "$here/mix.lua" "$admin" | grep '^wrk_')
	rows+=("$n|server capacity (wrk)|-|$(field wrk_non2xx "$w")|$(field wrk_seconds "$w")|-|-|-|$(field wrk_requests "$w")|$per")

	# 3. the Node.js peer
	curl -fsS -X DELETE "$admin/\$test/stats" >/dev/null
	say "node peer"
	ru=$("$work/rusage" node "$here/node-peer/peer.mjs" --base "$base" --mappings "$root/mappings" \
		--concurrency "$concurrency" --page-size "$page_size" 2>&1 >"$work/peer-$n.out" | tail -1)
	peer=$(tail -1 "$work/peer-$n.out")
	pn=$(node -p "JSON.parse(process.argv[1]).patients" "$peer")
	pf=$(node -p "JSON.parse(process.argv[1]).failed" "$peer")
	reqs=$(stat_total "$admin")
	rows+=("$n|Node.js peer (fhir-kit-client)|$pn|$pf|$(field wall "$ru")|$(field user "$ru")|$(field sys "$ru")|$(field maxrss_kb "$ru")|$reqs")

	"$root/tests/lib/fhir-server.sh" stop "$srv" >/dev/null
	srv=""
done

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
printf '\nmachine: %s, %s cores, %s MiB RAM; client and server share these cores\n' \
	"$cpu" "$(nproc)" "$(($(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo) / 1024))"
printf 'adapter: fhir.concurrency %s, page size %s, observation_code_filter %s; wrk: %s connections, %s s\n\n' \
	"$concurrency" "$page_size" "$code_filter" "$concurrency" "$wrk_seconds"
node "$here/table.js" "${rows[@]}"
printf '\n'
printf '%s\n' "${notes[@]}"
