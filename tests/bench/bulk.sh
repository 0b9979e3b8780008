#!/usr/bin/env bash
# make bench-bulk: the Bulk Data path (`sync --bulk`) beside the REST path
# (`sync`) on the same server in the same run (docs/benchmarks.md, "Bulk
# export path").  Called by `make bench`; not part of make test.
#
#   tests/bench/bulk.sh [N]...       cohort sizes (default: 10000 100000;
#                                    BULK_SIZES="10000 100000" also works)
#
# Per size: a fresh bundled server, N synthetic patients (tests/synth, seed
# 7, the Bundles generate.js writes) loaded through POST /$test/load
# (tests/bench/bulk-load.js, 500 Bundles a request), then
#   1. `sync` (REST: fhir.concurrency 4, page size 1000, code filter off,
#      as in make bench) from an empty state file;
#   2. `sync --bulk` from another empty state file, with another
#      output.canonical_base, so that it too creates every plan (the REST
#      run's plans carry other identifiers) on the same server;
# each measured from outside by rusage.c (wall, user+sys CPU, peak RSS of
# the child) and the server's /$test/stats (requests).  The adapter binary
# is copied first, so that a rebuild during a long run changes nothing.
# Figures only: nothing here asserts.  Progress and each row as soon as it
# is measured go to stderr, the table to stdout.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$root/tests/bench
if [ $# -gt 0 ]; then sizes=("$@"); else read -r -a sizes <<<"${BULK_SIZES:-10000 100000}"; fi
concurrency=${BENCH_CONCURRENCY:-4}
# the bundled server holds every resource (Medplum's store, and its version
# log as JSON text) plus its search index: about 90 KB per patient, and
# 40-50 KB more per patient written; 100,000 patients with the plans of one
# path took 14 GB (both paths together: about 18 GB by that measure, not
# tried); Node's default heap limit is far lower
heap_mb=${BULK_SERVER_HEAP_MB:-20000}
srv=""
work=$(mktemp -d /tmp/dnmbc-bench-bulk.XXXXXX)
# the server of the size being measured, and the work files, go at the end
trap '[ -z "$srv" ] || "$root/tests/lib/fhir-server.sh" stop "$srv" >/dev/null 2>&1; rm -rf "$work"' EXIT
say() { printf 'bench-bulk: %s\n' "$*" >&2; }
type node cc curl >/dev/null || { say "node, cc and curl are needed (bash .ci/install-deps)"; exit 2; }
make -C "$root" --no-print-directory dnmbc-adapter >&2
cp "$root/dnmbc-adapter" "$work/dnmbc-adapter"
commit=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)
cc -O2 -Wall -Wextra -Werror -std=c11 -D_DEFAULT_SOURCE -o "$work/rusage" "$here/rusage.c"

field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2" | tail -1; }
stat_total() { curl -fsS "$1/\$test/stats" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).total))'; }
count_of() { sed -n "s/^$1 *\\([0-9]*\\)$/\\1/p" "$2"; }

rows=()
notes=()
# one measured run: label, then the adapter's arguments
measure() {
	local n=$1 label=$2 tag=$3
	shift 3
	curl -fsS -X DELETE "$admin/\$test/stats" >/dev/null
	say "$n: $label"
	local ru seen created failed reqs row
	ru=$("$work/rusage" "$work/dnmbc-adapter" "$@" 2>"$work/$tag-$n.err" >"$work/$tag-$n.out"; true)
	ru=$(grep 'maxrss_kb=' "$work/$tag-$n.err" | tail -1)
	seen=$(count_of 'patients seen' "$work/$tag-$n.out")
	created=$(count_of created "$work/$tag-$n.out")
	failed=$(count_of failed "$work/$tag-$n.out")
	reqs=$(stat_total "$admin")
	if [ "$(field status "$ru")" != 0 ]; then
		tail -5 "$work/$tag-$n.err" >&2
		notes+=("$n patients, $label: exit status $(field status "$ru")")
	fi
	row="$n|$label|${seen:-0}|${created:-0}|${failed:-0}|$(field wall "$ru")|$(field user "$ru")|$(field sys "$ru")|$(field maxrss_kb "$ru")|$reqs"
	say "row: $row"
	rows+=("$row")
}

for n in "${sizes[@]}"; do
	say "== $n patients"
	srv="$work/srv-$n"
	base=$(NODE_OPTIONS="--max-old-space-size=$heap_mb" "$root/tests/lib/fhir-server.sh" start "$srv")
	admin=${base%/fhir/R4}
	t0=$(date +%s.%N)
	loaded=$(node "$here/bulk-load.js" "$base" "$n" 7)
	t1=$(date +%s.%N)
	notes+=("$n patients: loading them ($loaded) through /\$test/load took $(awk "BEGIN{printf \"%.0f\", $t1 - $t0}") s")
	for path in rest bulk; do
		canon=https://dnmbc.example.org/fhir
		[ "$path" = rest ] || canon=https://dnmbc.example.org/bench-bulk
		cat >"$work/$path-$n.json" <<JSON
{ "fhir": { "base_url": "$base", "page_size": 1000, "concurrency": $concurrency,
            "observation_code_filter": false },
  "output": { "canonical_base": "$canon" },
  "mappings": { "dir": "$root/mappings" },
  "state": { "path": "$work/state-$path-$n.db" },
  "log": { "level": "warn" } }
JSON
	done
	# BULK_PATHS="bulk": the bulk path alone (its memory at a size where the
	# REST run would take too long); the table then has no ratio for it
	case " ${BULK_PATHS:-rest bulk} " in *" rest "*) measure "$n" "REST sync" rest sync -c "$work/rest-$n.json" ;; esac
	case " ${BULK_PATHS:-rest bulk} " in *" bulk "*) measure "$n" "sync --bulk" bulk sync --bulk -c "$work/bulk-$n.json" ;; esac
	"$root/tests/lib/fhir-server.sh" stop "$srv" >/dev/null
	srv=""
done

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
printf '\nmachine: %s, %s cores, %s MiB RAM; client and server share these cores; load average at the end: %s\n' \
	"$cpu" "$(nproc)" "$(($(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo) / 1024))" \
	"$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'adapter %s: fhir.concurrency %s, page size 1000, observation_code_filter false; bulk: parallel_downloads 4, type_filter on\n\n' \
	"$commit" "$concurrency"
node "$here/bulk-table.js" "${rows[@]}"
printf '\n'
printf '%s\n' "${notes[@]}"
