#!/usr/bin/env bash
# Self-check of the development certificates made by certs/make-certs.sh.
#
#   certs/check-certs.sh [OUTDIR]      (default certs/out)
#
# Every certificate is checked for what the TLS tests rely on: the good ones
# verify against their CA for the right purpose and names, and each bad one
# fails for exactly its one reason (expired.pem only because it expired,
# wrong-host.pem only because of its name, rogue-server.pem only because its
# issuer is not ca.pem).  Prints one line per failed check and a summary;
# exits 0 when all pass, 1 when any fails, 2 on bad usage.

# The predicates below are called through expect/refuse (SC2317).
# shellcheck disable=SC2317
set -euo pipefail

prog=check-certs.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

case ${1:-} in
-h | --help)
	printf 'usage: %s [OUTDIR]\n' "$0" >&2
	exit 2
	;;
esac
[ $# -le 1 ] || { printf 'usage: %s [OUTDIR]\n' "$0" >&2; exit 2; }
out=${1:-$here/out}
[ -d "$out" ] || { printf '%s: no directory %s (run certs/make-certs.sh first)\n' "$prog" "$out" >&2; exit 1; }
command -v openssl >/dev/null || { printf '%s: openssl not found\n' "$prog" >&2; exit 1; }

passed=0
failed=0
verbose=${CHECK_CERTS_VERBOSE:-0}

pass() {
	passed=$((passed + 1))
	[ "$verbose" = 0 ] || printf 'ok   %s\n' "$1"
}
fail() {
	failed=$((failed + 1))
	printf 'FAIL %s%s\n' "$1" "${2:+: $2}"
}

# expect DESCRIPTION COMMAND...: the command must succeed.
expect() {
	local what=$1
	shift
	if "$@" >/dev/null 2>&1; then pass "$what"; else fail "$what"; fi
}
# refuse DESCRIPTION COMMAND...: the command must fail.
refuse() {
	local what=$1
	shift
	if "$@" >/dev/null 2>&1; then fail "$what" "unexpectedly succeeded"; else pass "$what"; fi
}

# verify_says DESCRIPTION PATTERN ARGS...: `openssl verify ARGS` must fail
# with an error message matching PATTERN.
verify_says() {
	local what=$1 pat=$2 msg
	shift 2
	if msg=$(openssl verify "$@" 2>&1); then
		fail "$what" "verification succeeded"
	elif grep -Eq "$pat" <<<"$msg"; then
		pass "$what"
	else
		fail "$what" "$(tr '\n' ' ' <<<"$msg")"
	fi
}

ext() { # CERT EXTENSION -> its values on one line, without the header
	openssl x509 -in "$1" -noout -ext "$2" 2>/dev/null | sed 1d | tr -d '\n' | sed 's/^ *//'
}
epoch_of() { # CERT startdate|enddate
	date -u -d "$(openssl x509 -in "$1" -noout -"$2" | cut -d= -f2-)" +%s
}
key_matches() { # CERT KEY
	local a b
	a=$(openssl x509 -in "$1" -noout -pubkey 2>/dev/null) || return 1
	b=$(openssl pkey -in "$2" -pubout 2>/dev/null) || return 1
	[ -n "$a" ] && [ "$a" = "$b" ]
}
mode_is_0600() { [ "$(stat -c %a "$1")" = 600 ]; }
has() { grep -Fq -- "$2" <<<"$1"; }
is_ca() { # CERT
	has "$(ext "$1" basicConstraints)" 'CA:TRUE' &&
		has "$(ext "$1" keyUsage)" 'Certificate Sign' &&
		has "$(ext "$1" keyUsage)" 'CRL Sign'
}
valid_now() { openssl x509 -in "$1" -noout -checkend 0; }
lifetime_days() { echo $((($(epoch_of "$1" enddate) - $(epoch_of "$1" startdate)) / 86400)); }

now=$(date -u +%s)
names=(ca server wrong-host client expired rogue-ca rogue-server)

# --- every pair: present, key private, key matches ----------------------
missing=0
for n in "${names[@]}"; do
	for f in "$n.pem" "$n.key"; do
		if [ -s "$out/$f" ]; then pass "$f present"; else fail "$f present" "missing or empty"; missing=1; fi
	done
done
if [ "$missing" = 1 ]; then
	printf '%s: %d of %d checks failed (files missing; run certs/make-certs.sh)\n' \
		"$prog" "$failed" $((passed + failed)) >&2
	exit 1
fi
for n in "${names[@]}"; do
	expect "$n.key has mode 0600" mode_is_0600 "$out/$n.key"
	expect "$n.key belongs to $n.pem" key_matches "$out/$n.pem" "$out/$n.key"
done

cd "$out"

# --- development CA ------------------------------------------------------
expect "ca.pem is self-signed and verifies" openssl verify -CAfile ca.pem ca.pem
expect "ca.pem is a CA (CA:TRUE, keyCertSign, cRLSign)" is_ca ca.pem
expect "ca.pem is valid now" valid_now ca.pem
d=$(lifetime_days ca.pem)
if [ "$d" -ge 3650 ]; then pass "ca.pem lasts 10 years"; else fail "ca.pem lasts 10 years" "$d days"; fi

# --- server --------------------------------------------------------------
expect "server.pem verifies as a TLS server for 127.0.0.1" \
	openssl verify -CAfile ca.pem -purpose sslserver -verify_ip 127.0.0.1 server.pem
expect "server.pem verifies as a TLS server for localhost" \
	openssl verify -CAfile ca.pem -purpose sslserver -verify_hostname localhost server.pem
san=$(ext server.pem subjectAltName)
if [ "$san" = 'IP Address:127.0.0.1, DNS:localhost' ]; then pass "server.pem SAN"; else fail "server.pem SAN" "$san"; fi
expect "server.pem has extendedKeyUsage serverAuth" has "$(ext server.pem extendedKeyUsage)" 'TLS Web Server Authentication'
expect "server.pem is not a CA" has "$(ext server.pem basicConstraints)" 'CA:FALSE'

# --- wrong host ----------------------------------------------------------
san=$(ext wrong-host.pem subjectAltName)
if [ "$san" = 'DNS:not-this-host.example' ]; then pass "wrong-host.pem SAN is DNS:not-this-host.example only"; else fail "wrong-host.pem SAN" "$san"; fi
refuse "wrong-host.pem SAN lacks 127.0.0.1" has "$san" '127.0.0.1'
refuse "wrong-host.pem SAN lacks localhost" has "$san" 'localhost'
expect "wrong-host.pem chain verifies (only the name is wrong)" \
	openssl verify -CAfile ca.pem -purpose sslserver -verify_hostname not-this-host.example wrong-host.pem
verify_says "wrong-host.pem is refused for 127.0.0.1" 'IP address mismatch' \
	-CAfile ca.pem -purpose sslserver -verify_ip 127.0.0.1 wrong-host.pem
verify_says "wrong-host.pem is refused for localhost" '[Hh]ostname mismatch' \
	-CAfile ca.pem -purpose sslserver -verify_hostname localhost wrong-host.pem

# --- client --------------------------------------------------------------
expect "client.pem verifies as a TLS client" openssl verify -CAfile ca.pem -purpose sslclient client.pem
expect "client.pem has extendedKeyUsage clientAuth" has "$(ext client.pem extendedKeyUsage)" 'TLS Web Client Authentication'
refuse "client.pem is not usable as a TLS server" openssl verify -CAfile ca.pem -purpose sslserver client.pem
cn=$(openssl x509 -in client.pem -noout -subject -nameopt multiline | sed -n 's/^ *commonName *= *//p')
if [ "$cn" = dnmbc-adapter-dev ]; then pass "client.pem CN is dnmbc-adapter-dev"; else fail "client.pem CN" "$cn"; fi

# --- expired -------------------------------------------------------------
refuse "expired.pem notAfter is in the past" valid_now expired.pem
nb=$(epoch_of expired.pem startdate)
if [ "$nb" -lt "$now" ]; then pass "expired.pem notBefore is in the past"; else fail "expired.pem notBefore is in the past"; fi
verify_says "expired.pem is refused as expired" 'certificate has expired' \
	-CAfile ca.pem -purpose sslserver -verify_ip 127.0.0.1 expired.pem
expect "expired.pem is otherwise good (chain, purpose, 127.0.0.1, localhost)" \
	openssl verify -no_check_time -CAfile ca.pem -purpose sslserver -verify_ip 127.0.0.1 -verify_hostname localhost expired.pem
san=$(ext expired.pem subjectAltName)
if [ "$san" = 'IP Address:127.0.0.1, DNS:localhost' ]; then pass "expired.pem SAN"; else fail "expired.pem SAN" "$san"; fi

# --- rogue CA and its server ---------------------------------------------
expect "rogue-ca.pem is a CA" is_ca rogue-ca.pem
refuse "rogue-ca.pem is not the development CA" cmp -s \
	<(openssl x509 -in rogue-ca.pem -noout -pubkey) <(openssl x509 -in ca.pem -noout -pubkey)
verify_says "rogue-server.pem is not verifiable with ca.pem" \
	'unable to get local issuer certificate|certificate signature failure' \
	-CAfile ca.pem -purpose sslserver -verify_ip 127.0.0.1 rogue-server.pem
expect "rogue-server.pem is otherwise good (verifies with rogue-ca.pem for 127.0.0.1, localhost)" \
	openssl verify -CAfile rogue-ca.pem -purpose sslserver -verify_ip 127.0.0.1 -verify_hostname localhost rogue-server.pem
expect "rogue-server.pem is valid now" valid_now rogue-server.pem

# --- validity of the good leaves ------------------------------------------
for n in server wrong-host client; do
	expect "$n.pem is valid for at least another day" openssl x509 -in "$n.pem" -noout -checkend 86400
done

total=$((passed + failed))
if [ "$failed" -eq 0 ]; then
	printf '%s: all %d checks passed (%s)\n' "$prog" "$total" "$out"
	exit 0
fi
printf '%s: %d of %d checks failed (%s)\n' "$prog" "$failed" "$total" "$out" >&2
exit 1
