#!/usr/bin/env bash
# make bench-backlog: memory of the daemon while it works off a change
# backlog (docs/benchmarks.md, "Change backlog").  Not part of make test.
#
#   tests/bench/backlog.sh [N]...    backlog sizes (default: 1000 100000;
#                                    BACKLOG_SIZES="1000 100000" also works)
#
# Per size: a fresh bundled server with BACKLOG_PATIENTS synthetic patients
# (default 100, fixed seed), a first cycle (`run --once`: the cohort, the
# watermark), then N changed Observations (backlog-load.js: one in 100 names
# a patient, the rest a Device, so that the bundled server's slow per-patient
# fetch does not dominate; fhir.observation_code_filter off, as in make bench,
# so a patient's fetch is an indexed search), then the daemon
# (`run`, fhir.page_size 1000, fhir.max_pages 10: a cycle walks at most 10
# pages per type, so 100,000 changes take ten or more cycles) until its
# watermark reaches the newest change; then SIGTERM.  Measured from outside
# by rusage.c (peak RSS of the daemon, wall, CPU).  Figures only.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || read -r -a sizes <<<"${BACKLOG_SIZES:-1000 100000}"
patients=${BACKLOG_PATIENTS:-100}
work=$(mktemp -d /tmp/dnmbc-backlog.XXXXXX)
srv=""
daemon=""

say() { printf 'bench-backlog: %s\n' "$*" >&2; }
cleanup() {
	[ -z "$daemon" ] || kill "$daemon" 2>/dev/null || true
	[ -z "$srv" ] || "$root/tests/lib/fhir-server.sh" stop "$srv" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

make -C "$root" --no-print-directory dnmbc-adapter >&2
cc -O2 -Wall -Wextra -Werror -std=c11 -D_DEFAULT_SOURCE -o "$work/rusage" "$here/rusage.c"
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2" | tail -1; }

rows=()
for n in "${sizes[@]}"; do
	say "== backlog of $n changes, $patients patients"
	srv="$work/srv-$n"
	base=$("$root/tests/lib/fhir-server.sh" start "$srv")
	node "$root/tests/synth/generate.js" --out "$work/gen-$n" --count "$patients" --seed 7 >/dev/null
	node "$root/tests/fhir-server/load.js" --base "$base" --quiet "$work/gen-$n"/patient-*.json >&2
	cat >"$work/adapter-$n.json" <<JSON
{ "fhir": { "base_url": "$base", "page_size": 1000, "max_pages": 10, "concurrency": 4,
            "observation_code_filter": false },
  "daemon": { "interval_s": 3600, "overlap_s": 0 },
  "mappings": { "dir": "$root/mappings" },
  "state": { "path": "$work/state-$n.db" },
  "log": { "level": "info" } }
JSON
	"$root/dnmbc-adapter" run --once -c "$work/adapter-$n.json" 2>"$work/first-$n.log" ||
		{ tail -5 "$work/first-$n.log" >&2; exit 1; }
	t0=$(date +%s.%N)
	newest=$(node "$here/backlog-load.js" "$base" "$n")
	t1=$(date +%s.%N)
	say "loaded in $(awk "BEGIN{printf \"%.0f\", $t1 - $t0}") s; newest change $newest"
	"$work/rusage" "$root/dnmbc-adapter" run -c "$work/adapter-$n.json" 2>"$work/daemon-$n.log" &
	daemon=$!
	# until the watermark reaches the newest change of the backlog
	for _ in $(seq 1 7200); do
		wm=$("$root/dnmbc-adapter" status --state "$work/state-$n.db" 2>/dev/null |
			sed -n 's/^watermark *//p')
		if node -e 'process.exit(Date.parse(process.argv[1]) >= Date.parse(process.argv[2]) ? 0 : 1)' \
			"$wm" "$newest" 2>/dev/null; then
			break
		fi
		kill -0 "$daemon" 2>/dev/null || { tail -5 "$work/daemon-$n.log" >&2; exit 1; }
		sleep 1
	done
	child=$(pgrep -P "$daemon" || true)
	[ -z "$child" ] || kill -TERM "$child"
	wait "$daemon" || true
	daemon=""
	ru=$(grep 'maxrss_kb=' "$work/daemon-$n.log" | tail -1)
	cycles=$(grep -c 'cycle done' "$work/daemon-$n.log" || true)
	resumed=$(grep -c 'the next cycle resumes at' "$work/daemon-$n.log" || true)
	evals=$(sed -n 's/.*cycle done: \([0-9]*\) patient.*/\1/p' "$work/daemon-$n.log" | paste -sd+ | bc)
	failed=$(sed -n 's/.*revoked, \([0-9]*\) failed.*/\1/p' "$work/daemon-$n.log" | paste -sd+ | bc)
	rows+=("| $n | $patients | $cycles | $resumed | $evals | $failed | $(field wall "$ru") | $(field user "$ru") | $(field sys "$ru") | $(awk "BEGIN{printf \"%.1f\", $(field maxrss_kb "$ru") / 1024}") |")
	"$root/tests/lib/fhir-server.sh" stop "$srv" >/dev/null
	srv=""
done

printf '\nmachine: %s, %s cores; client and server share these cores\n' \
	"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" "$(nproc)"
printf 'daemon: fhir.page_size 1000, fhir.max_pages 10, fhir.concurrency 4\n\n'
printf '| backlog | patients | cycles | resumed | patient runs | failed | wall s | user s | sys s | peak RSS MiB |\n'
printf '|--------:|---------:|-------:|--------:|-------------:|-------:|-------:|-------:|------:|-------------:|\n'
printf '%s\n' "${rows[@]}"
