#!/usr/bin/env bash
# make-token.sh CREATOR_ID [SECONDS]: print an HS256 JWT for the dashboard API,
# signed with auth.jwt_secret, the way Supabase Auth signs its tokens
# (sub = creator id, aud = authenticated, exp = now + SECONDS, default 3600).
#
# The secret is read from $OF_JWT_SECRET, else from run/jwt.secret (written by
# contrib/quickstart.sh).  Needs openssl.
set -euo pipefail

die() { echo "make-token.sh: $*" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: make-token.sh CREATOR_ID [SECONDS]"
sub=$1
ttl=${2:-3600}
[[ $sub =~ ^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$ ]] || die "not a creator id (UUID): $sub"
[[ $ttl =~ ^[1-9][0-9]{0,7}$ ]] || die "SECONDS must be a positive integer: $ttl"
srcdir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secret=${OF_JWT_SECRET:-}
if [ -z "$secret" ]; then
	[ -r "$srcdir/run/jwt.secret" ] || die "set OF_JWT_SECRET or run contrib/quickstart.sh first"
	secret=$(<"$srcdir/run/jwt.secret")
fi
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
now=$(date +%s)
header=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
payload=$(printf '{"sub":"%s","aud":"authenticated","role":"authenticated","iat":%d,"exp":%d}' \
	"${sub,,}" "$now" $((now + ttl)) | b64url)
sig=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -hmac "$secret" -binary | b64url)
printf '%s.%s.%s\n' "$header" "$payload" "$sig"
