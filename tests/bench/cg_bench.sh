#!/usr/bin/env bash
# cg_bench.sh - instructions per request, counted by valgrind --tool=callgrind:
# a figure that does not drift with the machine's load.
#
# Usage: tests/bench/cg_bench.sh BUILD_DIR
#
# Starts a private PostgreSQL 15, Redis and orderflowd (workers = 1) under
# callgrind, seeds one creator with BENCH_CG_ORDERS (1000) orders, then for
# each path sends N and then 2N requests over one keep-alive connection,
# with the counters zeroed before and dumped after each batch:
#
#   healthz  GET /healthz
#   webhook  POST /webhooks/tiktok, signed, a new order each (webhook_load);
#            TikTok is unreachable, so this is the acknowledgement and one
#            failed detail fetch per event (retries are 10 minutes away)
#   detail   GET /api/orders/{id}, the order cache off (api.order_cache_ttl 0)
#   list     GET /api/orders?limit=50 of that creator
#
# The figure of a path is (Ir(2N) - Ir(N)) / N: the start-up, the first
# connections and the caches warming cancel out.  tests/bench/trivial_httpd
# (a bare evhttp server) is measured the same way for GET /, the baseline of
# /healthz.
#
# Environment: BENCH_CG_N (200), BENCH_CG_ORDERS (1000), BENCH_CG_TOP (15:
# functions listed per path), BENCH_KEEP_LOGS (a directory for the logs and
# callgrind files).
#
# Output: progress on stderr; on stdout one line per path,
#   cg healthz ir_per_request=... n=200
#   cg trivial_httpd ir_per_request=...
#   ratio healthz/trivial_httpd=...
# then, per path, its top functions by their own cost (the frames that
# were on the stack at the dump, the thread and the event loop, left out):
#   top healthz 9.4% 3610 ir_per_request file:function [object]
# Exit status 0, 1 on error, 2 on a usage error.
set -euo pipefail

PY=/usr/bin/python3
SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SCRATCH_PREFIX=/tmp/of-cg-bench.


N=${BENCH_CG_N:-200}
ORDERS=${BENCH_CG_ORDERS:-1000}
TOP=${BENCH_CG_TOP:-15}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-120}

BENCH_NAME=cg_bench
# shellcheck source=lib.sh
. "$SRCDIR/tests/bench/lib.sh"
bench_builddir "$@"
TRIVIAL=$BUILDDIR/tests/bench/trivial_httpd

for v in N ORDERS TOP; do
	is_posint "${!v}" || udie "BENCH_CG_$v must be a positive integer: ${!v}"
done
for t in "$DAEMON" "$LOADGEN" "$TRIVIAL"; do
	[ -x "$t" ] || die "$t not built (make -C $BUILDDIR)"
done
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null &&
	command -v callgrind_annotate >/dev/null || die "valgrind is needed (apt-get install valgrind)"
command -v curl >/dev/null || die "curl is needed (apt-get install curl)"
# shellcheck source=SCRIPTDIR/../../contrib/servers.sh
. "$SRCDIR/contrib/servers.sh"
PSQL_BIN=$OF_PG_BIN/psql

APP_KEY=benchappkey
APP_SECRET=benchappsecret0123456789abcdef
ACCESS_TOKEN=benchaccesstoken
SHOP_CIPHER=BENCHCIPHER
TT_SHOP_ID=7495540735365777507
JWT_SECRET=cg-bench-jwt-secret-0123456789abcdef

SCRATCH=
DAEMON_PID=
TRIVIAL_PID=
PG_STARTED=
REDIS_STARTED=
CLEANED=

# shellcheck disable=SC2317  # invoked through the EXIT trap
cleanup() {
	local rc=$?
	[ -z "$CLEANED" ] || return 0
	CLEANED=1
	trap '' INT TERM HUP
	set +e
	stop_pid "$DAEMON_PID" orderflowd
	stop_pid "$TRIVIAL_PID" trivial_httpd
	if [ -n "${BENCH_KEEP_LOGS:-}" ] && [ -n "$SCRATCH" ]; then
		mkdir -p -- "$BENCH_KEEP_LOGS" && cp -- "$SCRATCH"/cg.* "$BENCH_KEEP_LOGS"/ 2>/dev/null
	fi
	bench_teardown
	return "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM HUP

bench_cleanup_stale "$SCRATCH_PREFIX" orderflowd trivial_httpd
SCRATCH=$(bench_new_scratch "$SCRATCH_PREFIX") || die "cannot create a scratch directory"
log "scratch directory $SCRATCH"

bench_start_servers
read -r PORT TPORT <<<"$(free_ports 2)"
CONF=$SCRATCH/orderflowd.conf
{ bench_config_head "$PORT" 1 2 600s; cat <<EOF
[tiktok]
api_base = https://127.0.0.1:1
retry_base = 10min
retry_max = 1h
request_timeout = 60s
[auth]
jwt_secret = $JWT_SECRET
[ratelimit]
rate = 0
[api]
order_cache_ttl = 0
[postgres]
query_timeout = 600s
[redis]
command_timeout = 60s
EOF
} >"$CONF"
bench_migrate_shop
psql_q <<EOF >/dev/null || die "cannot seed the orders"
INSERT INTO orders (user_id, shop_id, tiktok_order_id, order_number, order_status, tiktok_status,
    subtotal, tax, total_amount, currency, customer_name, customer_email, shipping_address,
    order_date, workflow_status)
SELECT '$CREATOR', '$SHOP_UUID', 'CG' || g, 'CG-' || g, 'shipped', 'IN_TRANSIT', 9.99, 0, 9.99,
    'USD', 'Buyer ' || g, 'b' || g || '@example.com', '{"region_code":"US"}',
    now() - g * interval '1 minute', 'shipped'
FROM generate_series(1, $ORDERS) g;
INSERT INTO order_items (order_id, user_id, tiktok_product_id, sku_id, product_name, product_sku,
    quantity, unit_price, total_price)
SELECT o.id, o.user_id, 'p', 'k' || k, 'Mug', 'SKU-' || k, 1, 4.99, 4.99
FROM orders o CROSS JOIN generate_series(1, 2) k WHERE o.user_id = '$CREATOR';
ANALYZE;
EOF
TOKEN=$(OF_JWT_SECRET=$JWT_SECRET "$SRCDIR/contrib/make-token.sh" "$CREATOR" 86400) ||
	die "cannot make a token"
mapfile -t IDS < <(psql_q -c "SELECT id FROM orders WHERE user_id = '$CREATOR' ORDER BY id")

# ---------------------------------------------------------------- runs
# start_cg NAME PID-VAR ARGV...: ARGV under callgrind, counting from the start.
start_cg() {
	local name=$1 var=$2
	shift 2
	valgrind --tool=callgrind --callgrind-out-file="$SCRATCH/cg.$name.%p" \
		--dump-instr=no --compress-strings=no "$@" >>"$SCRATCH/$name.log" 2>&1 &
	printf -v "$var" '%s' "$!"
}

# ir_of FILE: the total instructions a callgrind dump counted.
ir_of() { awk '/^(summary|totals):/ { print $2; exit }' "$1"; }

# newest_dump TAG: the callgrind file its last dump wrote.
newest_dump() { ls -t "$SCRATCH"/cg."$1".*.[0-9]* 2>/dev/null | head -1; }

# measure NAME PID SENDER TAG: Ir per request of SENDER COUNT (N, then 2N).
declare -A IR
measure() {
	local name=$1 pid=$2 sender=$3 tag=$4 f1 f2 a b
	callgrind_control -z "$pid" >/dev/null 2>&1
	"$sender" "$N"
	callgrind_control -d "$name-n" "$pid" >/dev/null 2>&1
	f1=$(newest_dump "$tag")
	callgrind_control -z "$pid" >/dev/null 2>&1
	"$sender" $((N * 2))
	callgrind_control -d "$name-2n" "$pid" >/dev/null 2>&1
	f2=$(newest_dump "$tag")
	[ -n "$f1" ] && [ -n "$f2" ] && [ "$f1" != "$f2" ] || die "$name: callgrind wrote no dump"
	a=$(ir_of "$f1"); b=$(ir_of "$f2")
	IR[$name]=$(( (b - a) / N ))
	echo "cg $name ir_per_request=${IR[$name]} n=$N"
	callgrind_annotate --inclusive=no --threshold=100 "$f2" 2>/dev/null | awk -v n="$N" -v top="$TOP" \
		-v name="$name" -v total="$b" '
		$1 ~ /^[0-9,]+$/ && $2 ~ /\(/ && !/PROGRAM TOTALS/ && shown < top {
			# + 0: a field gsub changed is a string, and strings compare as text.
			ir = $1; gsub(",", "", ir); ir += 0
			# The frames on the stack at the dump (the thread, the loop) hold it all.
			if (ir > 0.99 * total)
				next
			sub(/^[^)]*\) */, "")
			printf "top %s %.1f%% %d ir_per_request %s\n", name, 100 * ir / total, ir / (2 * n), $0
			shown++
		}'
}

curl_many() { # COUNT URL [CURL-ARGS...]: COUNT GETs of URL on one connection
	local n=$1 url=$2 i args=()
	shift 2
	for ((i = 0; i < n; i++)); do args+=("$url"); done
	curl -s --max-time 600 "$@" "${args[@]}" >/dev/null || die "curl failed"
}
send_healthz() { curl_many "$1" "http://127.0.0.1:$PORT/healthz"; }
send_trivial() { curl_many "$1" "http://127.0.0.1:$TPORT/"; }
send_list() { curl_many "$1" "http://127.0.0.1:$PORT/api/orders?limit=50" -H "Authorization: Bearer $TOKEN"; }
send_detail() {
	local n=$1 i args=()
	for ((i = 0; i < n; i++)); do args+=("http://127.0.0.1:$PORT/api/orders/${IDS[i % ${#IDS[@]}]}"); done
	curl -s --max-time 600 -H "Authorization: Bearer $TOKEN" "${args[@]}" >/dev/null ||
		die "curl failed"
}
WH_ROUND=0
send_webhook() {
	WH_ROUND=$((WH_ROUND + 1))
	timeout 900 "$LOADGEN" -p "$PORT" -c 1 -d 600 -n "$1" -k "$APP_KEY" -s "$APP_SECRET" \
		-S "$TT_SHOP_ID" --prefix "77${WH_ROUND}000" --timeout 120 >"$SCRATCH/load-$WH_ROUND.out" \
		2>&1 || { cat "$SCRATCH/load-$WH_ROUND.out" >&2; die "webhook_load failed"; }
}

log "starting orderflowd under callgrind (slow)"
start_cg orderflowd DAEMON_PID "$DAEMON" -c "$CONF"
wait_ready "$DAEMON_PID" orderflowd "$PORT" /readyz "$SCRATCH/orderflowd.log"
# Warm up every path once before counting.
send_healthz 20; send_list 5; send_detail 20; send_webhook 20
for p in healthz webhook detail list; do
	log "measuring $p"
	measure "$p" "$DAEMON_PID" "send_$p" orderflowd
done
stop_pid "$DAEMON_PID" orderflowd; DAEMON_PID=

log "starting trivial_httpd under callgrind"
start_cg trivial_httpd TRIVIAL_PID "$TRIVIAL" -p "$TPORT" -t 1
wait_ready "$TRIVIAL_PID" trivial_httpd "$TPORT" / "$SCRATCH/trivial_httpd.log"
send_trivial 20
measure trivial_httpd "$TRIVIAL_PID" send_trivial trivial_httpd
echo "ratio healthz/trivial_httpd=$(div "${IR[healthz]}" "${IR[trivial_httpd]}")"
