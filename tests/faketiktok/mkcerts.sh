#!/bin/sh
# mkcerts.sh DIR - test PKI for the fake TikTok Shop server.
#
# Creates in DIR (made if missing):
#   ca.pem ca.key          self-signed test CA (EC P-256)
#   server.pem server.key  server certificate CN=127.0.0.1,
#                          subjectAltName IP:127.0.0.1, DNS:localhost,
#                          signed by the CA, serverAuth
# All certificates are valid 30 days.  Idempotent: existing files are reused
# when they are still valid for at least one more day and the server
# certificate verifies against the CA; otherwise everything is made anew.
# Quiet on success (exit 0); errors on stderr, exit 1.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
dir=$1
mkdir -p "$dir"
cd "$dir"

valid() {
	for f in ca.pem ca.key server.pem server.key; do
		[ -s "$f" ] || return 1
	done
	openssl x509 -in ca.pem -noout -checkend 86400 >/dev/null 2>&1 || return 1
	openssl x509 -in server.pem -noout -checkend 86400 >/dev/null 2>&1 || return 1
	openssl verify -CAfile ca.pem server.pem >/dev/null 2>&1 || return 1
	# the key must belong to the certificate
	[ "$(openssl x509 -in server.pem -noout -pubkey 2>/dev/null)" = \
	  "$(openssl pkey -in server.key -pubout 2>/dev/null)" ] || return 1
	return 0
}

valid && exit 0

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mkcerts.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
umask 077

{
	openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/ca.key"
	openssl req -x509 -new -key "$tmp/ca.key" -sha256 -days 30 \
		-subj "/O=orderflow tests/CN=orderflow test CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-out "$tmp/ca.pem"
	openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/server.key"
	openssl req -new -key "$tmp/server.key" -subj "/O=orderflow tests/CN=127.0.0.1" \
		-out "$tmp/server.csr"
	cat >"$tmp/ext.cnf" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EXT
	openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
		-CAcreateserial -days 30 -sha256 -extfile "$tmp/ext.cnf" -out "$tmp/server.pem"
} >"$tmp/log" 2>&1 || {
	echo "mkcerts.sh: openssl failed:" >&2
	cat "$tmp/log" >&2
	exit 1
}

chmod 644 "$tmp/ca.pem" "$tmp/server.pem"
chmod 600 "$tmp/ca.key" "$tmp/server.key"
# keys first, certificates last: a concurrent reader sees a matching pair or
# fails validation and regenerates
for f in ca.key ca.pem server.key server.pem; do
	mv -f "$tmp/$f" "./$f"
done
