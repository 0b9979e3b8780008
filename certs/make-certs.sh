#!/usr/bin/env bash
# Development certificates for dnmbc-adapter's TLS tests.  NOT FOR PRODUCTION.
#
#   certs/make-certs.sh [--force] [--key-type rsa|ec] [OUTDIR]
#
# OUTDIR defaults to certs/out (git-ignored).  Without --force only what is
# missing or no longer usable is made again: a certificate is re-issued when
# its file or key is missing, when the key does not match it, when it no
# longer verifies against its CA (for example after the CA was re-made), or
# when it expires within a day (except expired.pem, which must be expired).
# --key-type picks RSA 2048 (default) or ECDSA P-256 for new keys.
#
# What is made (see certs/README.md):
#   ca.key ca.pem                    development CA, 10 years
#   server.key server.pem            server, SAN IP:127.0.0.1 DNS:localhost
#   wrong-host.key wrong-host.pem    server, SAN DNS:not-this-host.example only
#   client.key client.pem            client (clientAuth), CN dnmbc-adapter-dev
#   expired.key expired.pem          server for 127.0.0.1/localhost, validity
#                                    entirely in the past
#   rogue-ca.key rogue-ca.pem        a second, untrusted CA
#   rogue-server.key rogue-server.pem  server for 127.0.0.1/localhost signed
#                                    by the rogue CA
#
# Only the openssl command line is used (OpenSSL 3.0 on Debian 12).  The
# 3.0 `openssl x509` has no -not_before/-not_after, so the expired
# certificate is signed with `openssl ca -startdate/-enddate` and a
# throwaway CA database in a temporary directory.
set -euo pipefail

prog=make-certs.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
	printf 'usage: %s [--force] [--key-type rsa|ec] [OUTDIR]\n' "$0" >&2
	exit 2
}

die() {
	printf '%s: %s\n' "$prog" "$*" >&2
	exit 1
}

force=0
key_type=rsa
out=
while [ $# -gt 0 ]; do
	case $1 in
	--force) force=1 ;;
	--key-type)
		[ $# -ge 2 ] || usage
		key_type=$2
		shift
		;;
	--key-type=*) key_type=${1#--key-type=} ;;
	-h | --help) usage ;;
	-*) printf '%s: unknown option %s\n' "$prog" "$1" >&2; usage ;;
	*)
		[ -z "$out" ] || usage
		out=$1
		;;
	esac
	shift
done
case $key_type in
rsa | ec) ;;
*) die "--key-type must be rsa or ec, not '$key_type'" ;;
esac
[ -n "$out" ] || out="$here/out"

command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"

mkdir -p "$out"
out=$(cd "$out" && pwd)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---------------------------------------------------------------------------
# One extension file for every profile.  The [req] part lets `openssl req`
# run without reading the system openssl.cnf.
cat >"$tmp/ext.cnf" <<'EOF'
[req]
distinguished_name = req_dn
prompt             = no
[req_dn]

[v3_ca]
basicConstraints       = critical, CA:true, pathlen:0
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
EOF
profile() { # NAME KEY_USAGE EKU SAN
	cat >>"$tmp/ext.cnf" <<EOF

[$1]
basicConstraints       = critical, CA:false
keyUsage               = $2
extendedKeyUsage       = $3
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid, issuer
EOF
	[ -z "$4" ] || printf 'subjectAltName         = %s\n' "$4" >>"$tmp/ext.cnf"
}

# ---------------------------------------------------------------------------
# Helpers

say() { printf '%s: %s\n' "$prog" "$*"; }

new_key() { # FILE
	local f=$1
	rm -f "$f"
	(
		umask 077
		if [ "$key_type" = rsa ]; then
			openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$f" 2>/dev/null
		else
			openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
				-pkeyopt ec_param_enc:named_curve -out "$f" 2>/dev/null
		fi
	) || die "cannot generate key $f"
	chmod 600 "$f"
}

serial() { printf '0x%s' "$(openssl rand -hex 16)"; }

# Does KEY belong to CERT?
key_matches() { # CERT KEY
	local a b
	a=$(openssl x509 -in "$1" -noout -pubkey 2>/dev/null) || return 1
	b=$(openssl pkey -in "$2" -pubout 2>/dev/null) || return 1
	[ -n "$a" ] && [ "$a" = "$b" ]
}

# Is the pair NAME.key/NAME.pem present, matching, signed by CA and (unless
# NO_TIME) valid for at least another day?
usable() { # NAME CA_PEM [no_time]
	local name=$1 ca=$2 no_time=${3:-}
	[ -s "$out/$name.key" ] && [ -s "$out/$name.pem" ] || return 1
	key_matches "$out/$name.pem" "$out/$name.key" || return 1
	if [ "$name" = "${ca%.pem}" ]; then
		return 0 # self-signed CA: checked by the caller
	fi
	if [ -n "$no_time" ]; then
		openssl verify -no_check_time -CAfile "$out/$ca" "$out/$name.pem" >/dev/null 2>&1 || return 1
	else
		openssl verify -CAfile "$out/$ca" "$out/$name.pem" >/dev/null 2>&1 || return 1
		openssl x509 -in "$out/$name.pem" -noout -checkend 86400 >/dev/null 2>&1 || return 1
	fi
	return 0
}

make_ca() { # NAME SUBJECT
	local name=$1 subj=$2
	new_key "$out/$name.key"
	openssl req -x509 -new -sha256 -config "$tmp/ext.cnf" -extensions v3_ca \
		-key "$out/$name.key" -subj "$subj" -days 3650 -set_serial "$(serial)" \
		-out "$out/$name.pem" || die "cannot make CA $name"
	chmod 644 "$out/$name.pem"
}

# Issue NAME.pem for a fresh NAME.key with PROFILE, signed by CA for DAYS.
issue() { # NAME SUBJECT PROFILE CA DAYS
	local name=$1 subj=$2 prof=$3 ca=$4 days=$5
	new_key "$out/$name.key"
	openssl req -new -sha256 -config "$tmp/ext.cnf" -key "$out/$name.key" \
		-subj "$subj" -out "$tmp/$name.csr" || die "cannot make request for $name"
	openssl x509 -req -sha256 -in "$tmp/$name.csr" \
		-CA "$out/$ca.pem" -CAkey "$out/$ca.key" -set_serial "$(serial)" \
		-days "$days" -extfile "$tmp/ext.cnf" -extensions "$prof" \
		-out "$out/$name.pem" 2>/dev/null || die "cannot sign $name"
	chmod 644 "$out/$name.pem"
}

# The expired certificate: `openssl ca` with explicit dates and a throwaway
# database, because OpenSSL 3.0's `x509 -req` cannot set notBefore/notAfter.
issue_expired() { # NAME SUBJECT PROFILE CA
	local name=$1 subj=$2 prof=$3 ca=$4 db="$tmp/ca-db" start end
	new_key "$out/$name.key"
	openssl req -new -sha256 -config "$tmp/ext.cnf" -key "$out/$name.key" \
		-subj "$subj" -out "$tmp/$name.csr" || die "cannot make request for $name"
	mkdir -p "$db/new"
	: >"$db/index.txt"
	cat >"$tmp/ca.cnf" <<EOF
[ca]
default_ca = throwaway
[throwaway]
database        = $db/index.txt
new_certs_dir   = $db/new
rand_serial     = yes
default_md      = sha256
policy          = any
unique_subject  = no
copy_extensions = none
email_in_dn     = no
[any]
organizationName       = optional
commonName             = supplied
EOF
	# 30 days ago until 1 day ago, in UTC.
	start=$(date -u -d '30 days ago' +%Y%m%d%H%M%SZ)
	end=$(date -u -d '1 day ago' +%Y%m%d%H%M%SZ)
	openssl ca -batch -notext -config "$tmp/ca.cnf" \
		-cert "$out/$ca.pem" -keyfile "$out/$ca.key" \
		-extfile "$tmp/ext.cnf" -extensions "$prof" \
		-startdate "$start" -enddate "$end" \
		-in "$tmp/$name.csr" -out "$out/$name.pem" >/dev/null 2>"$tmp/ca.log" ||
		{ cat "$tmp/ca.log" >&2; die "cannot sign $name"; }
	chmod 644 "$out/$name.pem"
}

# ---------------------------------------------------------------------------
# Profiles.  keyEncipherment only makes sense for RSA server keys; a key is
# always re-made together with its certificate, so the profile fits it.
if [ "$key_type" = rsa ]; then
	ku='critical, digitalSignature, keyEncipherment'
else
	ku='critical, digitalSignature'
fi
profile server "$ku" serverAuth 'IP:127.0.0.1, DNS:localhost'
profile wrong_host "$ku" serverAuth 'DNS:not-this-host.example'
profile client 'critical, digitalSignature' clientAuth ''

O='/O=dnmbc-adapter development (NOT FOR PRODUCTION)'
made=()
kept=()

# Development CA
ca_new=0
if [ "$force" = 1 ] || ! usable ca ca.pem ||
	! openssl verify -CAfile "$out/ca.pem" "$out/ca.pem" >/dev/null 2>&1 ||
	! openssl x509 -in "$out/ca.pem" -noout -checkend 2592000 >/dev/null 2>&1; then
	make_ca ca "$O/CN=dnmbc-adapter development CA"
	ca_new=1
	made+=(ca)
else
	kept+=(ca)
fi

# Leaves of the development CA
leaf() { # NAME SUBJECT PROFILE
	if [ "$force" = 1 ] || [ "$ca_new" = 1 ] || ! usable "$1" ca.pem; then
		issue "$1" "$2" "$3" ca 825
		made+=("$1")
	else
		kept+=("$1")
	fi
}
leaf server "$O/CN=localhost" server
leaf wrong-host "$O/CN=not-this-host.example" wrong_host
leaf client "$O/CN=dnmbc-adapter-dev" client

if [ "$force" = 1 ] || [ "$ca_new" = 1 ] || ! usable expired ca.pem no_time ||
	openssl x509 -in "$out/expired.pem" -noout -checkend 0 >/dev/null 2>&1; then
	issue_expired expired "$O/CN=localhost" server ca
	made+=(expired)
else
	kept+=(expired)
fi

# Rogue CA and its server certificate
rogue_new=0
if [ "$force" = 1 ] || ! usable rogue-ca rogue-ca.pem ||
	! openssl verify -CAfile "$out/rogue-ca.pem" "$out/rogue-ca.pem" >/dev/null 2>&1 ||
	! openssl x509 -in "$out/rogue-ca.pem" -noout -checkend 2592000 >/dev/null 2>&1; then
	make_ca rogue-ca '/O=Rogue test issuer (NOT TRUSTED)/CN=dnmbc-adapter rogue CA'
	rogue_new=1
	made+=(rogue-ca)
else
	kept+=(rogue-ca)
fi
if [ "$force" = 1 ] || [ "$rogue_new" = 1 ] || ! usable rogue-server rogue-ca.pem; then
	issue rogue-server '/O=Rogue test issuer (NOT TRUSTED)/CN=localhost' server rogue-ca 825
	made+=(rogue-server)
else
	kept+=(rogue-server)
fi

chmod 600 "$out"/*.key
say "output in $out"
[ ${#made[@]} -eq 0 ] || say "made: ${made[*]}"
[ ${#kept[@]} -eq 0 ] || say "kept: ${kept[*]}"
