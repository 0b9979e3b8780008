#!/usr/bin/env bash
# Start, stop and reset the test FHIR server (tests/fhir-server).
#
#   tests/lib/fhir-server.sh start DIR   start on an ephemeral 127.0.0.1 port;
#                                        DIR gets port, pid, log; prints the
#                                        base URL once /metadata answers
#   tests/lib/fhir-server.sh stop DIR    stop the server whose pid is in DIR
#   tests/lib/fhir-server.sh reset DIR   empty its repository, faults, stats
#   tests/lib/fhir-server.sh url DIR     print its base URL
#   tests/lib/fhir-server.sh auth DIR ISSUER|off
#                                        bearer-token mode: require JWT access
#                                        tokens of the OAuth server at ISSUER
#                                        (tests/oauth-server), or no token
#
# HTTPS: with FHIR_SERVER_TLS_DIR set to a directory laid out like
# certs/out (server.pem, server.key, ca.pem, client.pem, client.key) the
# server serves https://127.0.0.1:PORT/fhir/R4 with server.pem; with
# FHIR_SERVER_MTLS=1 as well it requires a client certificate signed by
# ca.pem. FHIR_SERVER_TLS_NAME picks another certificate of that directory
# (e.g. wrong-host or expired: NAME.pem and NAME.key) for tests that expect
# the adapter to refuse it. DIR then also gets curlrc, the curl options that
# reach the server (with `insecure` when the certificate is not server.pem).
#
# Needs node (20+), curl and, the first time, npm: node_modules is installed
# with `npm ci` from the committed package-lock.json only when it is missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
srvdir=$(cd "$here/../fhir-server" && pwd)
start_timeout=${FHIR_SERVER_START_TIMEOUT:-30}

die() {
	printf 'fhir-server.sh: %s\n' "$*" >&2
	exit 1
}

usage() {
	printf 'usage: %s start|stop|reset|url DIR | auth DIR ISSUER|off\n' "$0" >&2
	exit 2
}

base_url() {
	local dir=$1 port scheme=http
	[ -s "$dir/port" ] || die "no port file in $dir (server not started?)"
	port=$(tr -d '[:space:]' <"$dir/port")
	case $port in
	'' | *[!0-9]*) die "bad port in $dir/port: $port" ;;
	esac
	[ ! -s "$dir/curlrc" ] || scheme=https
	printf '%s://127.0.0.1:%s/fhir/R4\n' "$scheme" "$port"
}

# curl with the TLS options the server in DIR needs, if any.
dcurl() {
	local dir=$1
	shift
	if [ -s "$dir/curlrc" ]; then
		curl -K "$dir/curlrc" "$@"
	else
		curl "$@"
	fi
}

alive() {
	local pid=$1
	kill -0 "$pid" 2>/dev/null
}

ensure_deps() {
	if [ ! -d "$srvdir/node_modules/@medplum/fhir-router" ]; then
		command -v npm >/dev/null || die "npm not found (needed once to install tests/fhir-server/node_modules)"
		npm ci --prefix "$srvdir" --no-audit --no-fund --loglevel=error >/dev/null ||
			die "npm ci --prefix $srvdir failed"
	fi
}

cmd_start() {
	local dir=$1 pid url i
	command -v node >/dev/null || die "node not found"
	command -v curl >/dev/null || die "curl not found"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if [ -s "$dir/pid" ] && alive "$(cat "$dir/pid")"; then
		die "a server is already running from $dir (pid $(cat "$dir/pid"))"
	fi
	ensure_deps
	rm -f "$dir/port" "$dir/pid" "$dir/curlrc"
	local -a tlsargs=()
	if [ -n "${FHIR_SERVER_TLS_DIR:-}" ]; then
		local t
		local name=${FHIR_SERVER_TLS_NAME:-server}
		t=$(cd "$FHIR_SERVER_TLS_DIR" && pwd) || die "no directory $FHIR_SERVER_TLS_DIR"
		for f in "$name.pem" "$name.key" ca.pem; do
			[ -r "$t/$f" ] || die "cannot read $t/$f"
		done
		tlsargs=(--tls-cert "$t/$name.pem" --tls-key "$t/$name.key")
		printf 'cacert = "%s"\n' "$t/ca.pem" >"$dir/curlrc"
		[ "$name" = server ] || printf 'insecure\n' >>"$dir/curlrc"
		if [ "${FHIR_SERVER_MTLS:-0}" = 1 ]; then
			for f in client.pem client.key; do
				[ -r "$t/$f" ] || die "cannot read $t/$f"
			done
			tlsargs+=(--tls-client-ca "$t/ca.pem")
			printf 'cert = "%s"\nkey = "%s"\n' "$t/client.pem" "$t/client.key" >>"$dir/curlrc"
		fi
	fi
	node "$srvdir/server.js" --port 0 --port-file "$dir/port" --pid-file "$dir/pid" ${tlsargs[@]+"${tlsargs[@]}"} \
		>>"$dir/log" 2>&1 </dev/null &
	pid=$!
	i=0
	while :; do
		if ! alive "$pid"; then
			tail -n 20 "$dir/log" >&2 || true
			die "server exited during start-up (log: $dir/log)"
		fi
		if [ -s "$dir/port" ]; then
			url=$(base_url "$dir")
			if dcurl "$dir" -fsS -o /dev/null --max-time 2 "$url/metadata" 2>/dev/null; then
				break
			fi
		fi
		i=$((i + 1))
		if [ "$i" -ge $((start_timeout * 10)) ]; then
			kill "$pid" 2>/dev/null || true
			die "server did not answer /metadata within ${start_timeout}s (log: $dir/log)"
		fi
		sleep 0.1
	done
	printf '%s\n' "$pid" >"$dir/pid"
	printf '%s\n' "$url"
}

cmd_stop() {
	local dir=$1 pid i
	[ -s "$dir/pid" ] || return 0
	pid=$(tr -d '[:space:]' <"$dir/pid")
	case $pid in
	'' | *[!0-9]*) die "bad pid in $dir/pid: $pid" ;;
	esac
	if alive "$pid"; then
		kill "$pid" 2>/dev/null || true
		i=0
		while alive "$pid"; do
			i=$((i + 1))
			if [ "$i" -ge 100 ]; then
				kill -9 "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.1
		done
	fi
	rm -f "$dir/pid" "$dir/port" "$dir/curlrc"
}

cmd_reset() {
	local dir=$1 url
	url=$(base_url "$dir")
	dcurl "$dir" -fsS -o /dev/null --max-time 10 -X POST "${url%/fhir/R4}/\$test/reset" ||
		die "reset failed ($url)"
}

cmd_auth() {
	local dir=$1 issuer=$2 url body
	url=$(base_url "$dir")
	if [ "$issuer" = off ]; then
		body='{"issuer":null}'
	else
		case $issuer in
		http://* | https://*) ;;
		*) die "auth: ISSUER must be an http(s) URL or off" ;;
		esac
		body=$(printf '{"issuer":"%s"}' "$issuer")
	fi
	dcurl "$dir" -fsS -o /dev/null --max-time 10 -X POST --data "$body" "${url%/fhir/R4}/\$test/auth" ||
		die "auth failed ($url)"
}

if [ $# -eq 3 ] && [ "$1" = auth ]; then
	cmd_auth "$2" "$3"
	exit 0
fi
[ $# -eq 2 ] || usage
case $1 in
start) cmd_start "$2" ;;
stop) cmd_stop "$2" ;;
reset) cmd_reset "$2" ;;
url) base_url "$2" ;;
*) usage ;;
esac
