#!/usr/bin/env bash
# ship_bench.sh - orders from the webhook to shipped: the label bought from the
# fake carrier and the package shipped on the fake TikTok server.
#
# Usage: tests/bench/ship_bench.sh BUILD_DIR
#
# Starts a private PostgreSQL 15 (fsync and synchronous_commit on), Redis,
# the fake TikTok Shop server (seeded with seller-shipped orders: no
# package until Mark Package As Shipped), the fake carrier (EasyPost v2) and
# orderflowd (lib.sh), then, each figure BENCH_RUNS times (median reported),
# the daemon restarted before each run, sends signed webhooks for new orders
# (webhook_load): each order is fetched from the fake TikTok, stored, and
# run through standard_fulfillment: stock reserved (untracked SKUs),
# the carrier's rates for the creator's default parcel, the cheapest rate
# bought, Mark Package As Shipped with the tracking number and TikTok's
# provider id, Get Order Detail until TikTok reports it shipped, then
# shipped (stock consumed) waiting for the delivery.
#
#  rate  BENCH_SHIP_RATE (500) webhooks/s for BENCH_SHIP_SECS (15 s).
#  full  BENCH_SHIP_FULL (6000) webhooks as fast as they are acknowledged.
#
# Figures per run: orders shipped/s (from the first webhook's storing to
# the last package's shipping), the time from a webhook's storing
# (webhook_events.received_at) to its package shipped on TikTok
# (shipments.shipped_at), p50/p99, both database clock; CPU per order of
# each process: orderflowd, PostgreSQL, the fake TikTok, the fake carrier.
# Checked: every acknowledged order shipped, one label bought per order
# (the fake carrier's count) and one package shipped per order (the fake
# TikTok's).
#
# Environment: BENCH_RUNS (3), BENCH_SHIP_RATE (500), BENCH_SHIP_SECS (15),
# BENCH_SHIP_FULL (6000), BENCH_SHIP_CONNS (32), BENCH_WORKERS (0: one per
# CPU), BENCH_POOL_SIZE (4), BENCH_WAIT (300: longest wait for the orders to
# ship, s), BENCH_KEEP_LOGS (a directory for the logs), BENCH_ONLY (a subset
# of "rate full"), BENCH_PROFILE=1 (pg_stat_statements loaded: the
# statements that took the most time on stderr at the end; auto_explain
# logs the plans slower than BENCH_EXPLAIN_MS, 200, see BENCH_KEEP_LOGS).
#
# Output: progress on stderr; on stdout one line per figure, e.g.
#   ship rate=500 shipped_per_s median=... runs=... p50_ms=... p99_ms=...
#   ship full shipped_per_s median=... runs=... p50_ms=... p99_ms=...
#   cpu full us_per_order daemon=... postgres=... faketiktok=... fakecarrier=...
#   target p99_under_30s_at_500 value=... goal=30000 ok|MISSED
#   target shipped_per_s_full value=... goal=300 ok|MISSED
# and WARNING lines when a check fails.  Exit status 0 when every check
# held, 1 when a WARNING was printed or on error, 2 on a usage error.
set -euo pipefail

PY=/usr/bin/python3
SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SCRATCH_PREFIX=/tmp/of-ship-bench.


RUNS=${BENCH_RUNS:-3}
RATE=${BENCH_SHIP_RATE:-500}
SECS=${BENCH_SHIP_SECS:-15}
FULL=${BENCH_SHIP_FULL:-6000}
CONNS=${BENCH_SHIP_CONNS:-32}
WORKERS=${BENCH_WORKERS:-0}
POOL_SIZE=${BENCH_POOL_SIZE:-4}
WAIT=${BENCH_WAIT:-300}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-30}
ONLY=${BENCH_ONLY:-rate full}

BENCH_NAME=ship_bench
# shellcheck source=lib.sh
. "$SRCDIR/tests/bench/lib.sh"
bench_builddir "$@"

for v in RUNS RATE SECS FULL CONNS POOL_SIZE WAIT; do
	is_posint "${!v}" || udie "BENCH_$v must be a positive integer: ${!v}"
done
is_uint "$WORKERS" || udie "BENCH_WORKERS must be an integer"
for v in $ONLY; do
	case $v in rate|full) ;; *) udie "BENCH_ONLY: unknown part $v" ;; esac
done
want() { [[ " $ONLY " == *" $1 "* ]]; }
(( RATE * SECS <= 99999 && FULL <= 99999 )) || udie "at most 99999 orders per run"
CHILD_TIMEOUT=$(( SECS * 2 + WAIT + 120 ))

[ -x "$DAEMON" ] || die "$DAEMON not built (make -C $BUILDDIR)"
[ -x "$LOADGEN" ] || die "$LOADGEN not built (make -C $BUILDDIR)"
[ -x "$PY" ] || die "$PY not found"
# shellcheck source=SCRIPTDIR/../../contrib/servers.sh
. "$SRCDIR/contrib/servers.sh"
PSQL_BIN=$OF_PG_BIN/psql
CLK_TCK=$(getconf CLK_TCK)

APP_KEY=benchappkey
APP_SECRET=benchappsecret0123456789abcdef
ACCESS_TOKEN=benchaccesstoken
SHOP_CIPHER=BENCHCIPHER
TT_SHOP_ID=7495540735365777507
CARRIER_KEY=EZTKbenchkey
HOOK_SECRET=bench-hook-secret
# Order ids of run R of part P: 6 P R 0000 then 1..N (P: 1 rate, 2 full).
PREFIX=6

# ---------------------------------------------------------------- cleanup
SCRATCH=
DAEMON_PID=
FAKE_PID=
CARRIER_PID=
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
	stop_pid "$CHILD_PID" "child"
	stop_pid "$DAEMON_PID" orderflowd
	stop_pid "$FAKE_PID" faketiktok
	stop_pid "$CARRIER_PID" fakecarrier
	bench_teardown
	return "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM HUP

bench_cleanup_stale "$SCRATCH_PREFIX" orderflowd faketiktok fakecarrier
SCRATCH=$(bench_new_scratch "$SCRATCH_PREFIX") || die "cannot create a scratch directory"
log "scratch directory $SCRATCH"

# ---------------------------------------------------------------- servers
bench_start_servers
bench_profile_restart
read -r DAEMON_PORT <<<"$(free_ports 1)"
CONF=$SCRATCH/orderflowd.conf
umask 077
printf '%s\n' "$CARRIER_KEY" >"$SCRATCH/carrier.key"
printf '%s\n' "$HOOK_SECRET" >"$SCRATCH/carrier.secret"
umask 022
write_config() {
	{ bench_config_head "$DAEMON_PORT" "$WORKERS" "$POOL_SIZE"; cat <<EOF
[tiktok]
api_base = https://127.0.0.1:${TT_PORT:-1}
ca_file = $SCRATCH/tt/ca.pem
connections = 8
[carrier]
api_base = https://127.0.0.1:${CARRIER_PORT:-1}/v2
api_key_file = $SCRATCH/carrier.key
webhook_secret_file = $SCRATCH/carrier.secret
ca_file = $SCRATCH/tt/ca.pem
connections = 8
[workflow]
claim_interval = 200ms
EOF
	} >"$CONF"
}
write_config
bench_migrate_shop
psql_q <<EOF >/dev/null || die "cannot store the shipping settings"
INSERT INTO shipping_settings (user_id, from_address, parcel)
VALUES ('$CREATOR', '{"name": "Bench Shop", "street1": "9 Dock Rd", "city": "Austin",
    "state": "TX", "zip": "73301", "country": "US"}',
    '{"weight_oz": 12, "length_in": 9, "width_in": 6, "height_in": 3}')
ON CONFLICT (user_id) DO NOTHING;
EOF

# The fake TikTok, seeded with every run's orders, seller-shipped.
"$PY" - "$SCRATCH/seed.json" "$RUNS" "$(( RATE * SECS ))" "$FULL" "$PREFIX" <<'PYEOF'
import json, sys
path, runs, n_rate, n_full, prefix = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), sys.argv[5]
orders = []
for part, n in ((1, n_rate), (2, n_full)):
    for r in range(1, runs + 1):
        for i in range(1, n + 1):
            orders.append({"id": "%s%d%d0000%d" % (prefix, part, r, i),
                           "shipping_type": "SELLER"})
json.dump({"orders": orders}, open(path, "w"))
PYEOF
bench_start_fake --seed-file "$SCRATCH/seed.json"
log "starting the fake carrier"
"$PY" "$SRCDIR/tests/fakecarrier/fakecarrier.py" --port 0 --cert "$SCRATCH/tt/server.pem" \
	--key "$SCRATCH/tt/server.key" --api-key "$CARRIER_KEY" \
	>"$SCRATCH/fakecarrier.out" 2>"$SCRATCH/fakecarrier.log" &
CARRIER_PID=$!
echo "$CARRIER_PID" >"$SCRATCH/fakecarrier.pid"
CARRIER_PORT=$(bench_listening "$SCRATCH/fakecarrier.out" "$CARRIER_PID" fakecarrier \
	"$SCRATCH/fakecarrier.log") || exit 1
write_config

carrier_purchases() {
	curl -s --cacert "$SCRATCH/tt/ca.pem" "https://127.0.0.1:$CARRIER_PORT/_fake/stats" |
		"$PY" -c 'import json,sys; print(json.load(sys.stdin)["purchases"])'
}
tiktok_ships() {
	curl -s --cacert "$SCRATCH/tt/ca.pem" "https://127.0.0.1:$TT_PORT/_fake/stats" |
		"$PY" -c 'import json,sys; d=json.load(sys.stdin)["packages_shipped"]; print(len(d), sum(d.values()))'
}

# shipped_wait WANT: until WANT orders of this run have every package shipped, at most WAIT s.
shipped_wait() {
	local want=$1 t0=$SECONDS got
	while :; do
		got=$(psql_q -c "SELECT count(DISTINCT order_id) FROM shipments
			WHERE created_at >= '$T0' AND state = 'shipped'")
		[ "$got" -lt "$want" ] || return 0
		if (( SECONDS - t0 >= WAIT )); then
			warn "only $got of $want orders shipped after ${WAIT}s"
			return 1
		fi
		sleep 1
	done
}

# figures: "shipped/s p50_ms p99_ms", from each webhook's storing to its shipment.
figures() {
	psql_q -F ' ' <<EOF
WITH w AS (SELECT order_id AS tid, min(received_at) AS t FROM webhook_events
           WHERE received_at >= '$T0' GROUP BY 1),
s AS (SELECT o.tiktok_order_id AS tid, max(s.shipped_at) AS t FROM shipments s
      JOIN orders o ON o.id = s.order_id WHERE s.created_at >= '$T0' AND s.state = 'shipped'
      GROUP BY 1),
j AS (SELECT extract(epoch FROM s.t - w.t) * 1000 AS ms, w.t AS a, s.t AS b
      FROM w JOIN s USING (tid))
SELECT round(count(*) / nullif(extract(epoch FROM max(b) - min(a)), 0)),
       round(percentile_disc(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(percentile_disc(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1)
FROM j;
EOF
}


declare -A R
WARNINGS=0

run_part() { # TAG PART ROUND LOAD-ARGS...
	local tag=$1 part=$2 round=$3 acked c0 c1 g0 g1 f0 f1 k0 k1 rate p50 p99 b0 b1 ships
	shift 3
	begin_run
	b0=$(carrier_purchases)
	c0=$(cpu_ticks "$DAEMON_PID"); g0=$(pg_ticks)
	f0=$(cpu_ticks "$FAKE_PID"); k0=$(cpu_ticks "$CARRIER_PID")
	acked=$(load "$tag-$round" --prefix "${PREFIX}${part}${round}0000" "$@")
	[ "${acked:-0}" -gt 0 ] || die "$tag: no webhook acknowledged"
	shipped_wait "$acked" || true
	c1=$(cpu_ticks "$DAEMON_PID"); g1=$(pg_ticks)
	f1=$(cpu_ticks "$FAKE_PID"); k1=$(cpu_ticks "$CARRIER_PID")
	b1=$(carrier_purchases)
	[ $(( b1 - b0 )) -eq "$acked" ] ||
		warn "$tag round $round: $(( b1 - b0 )) labels bought for $acked orders"
	read -r rate p50 p99 <<<"$(figures)"
	add "$tag:rate" "$rate"; add "$tag:p50" "$p50"; add "$tag:p99" "$p99"
	add "$tag:cpu_d" "$(div $(( (c1 - c0) * 1000000 / CLK_TCK )) "$acked")"
	add "$tag:cpu_p" "$(div $(( (g1 - g0) * 1000000 / CLK_TCK )) "$acked")"
	add "$tag:cpu_t" "$(div $(( (f1 - f0) * 1000000 / CLK_TCK )) "$acked")"
	add "$tag:cpu_c" "$(div $(( (k1 - k0) * 1000000 / CLK_TCK )) "$acked")"
	log "$tag round $round: orders=$acked shipped/s=$rate webhook->shipped p50=${p50}ms p99=${p99}ms"
}

for ((r = 1; r <= RUNS; r++)); do
	if want rate; then
		run_part rate 1 "$r" -c "$CONNS" -d "$SECS" -r "$RATE" -n "$(( RATE * SECS ))"
	fi
	if want full; then
		run_part full 2 "$r" -c "$CONNS" -d "$(( SECS * 4 ))" -n "$FULL"
	fi
done
bench_profile_report
read -r ships total <<<"$(tiktok_ships)"
[ "$ships" = "$total" ] || warn "the fake TikTok shipped $total times for $ships packages"

report() { # TAG LABEL
	local t=$1
	echo "ship $2 shipped_per_s median=$(fmt "$(median ${R[$t:rate]})") runs=$(joinruns 0 ${R[$t:rate]}) p50_ms=$(fmt "$(median ${R[$t:p50]})" 1) p99_ms=$(fmt "$(median ${R[$t:p99]})" 1)"
	echo "cpu $t us_per_order daemon=$(fmt "$(median ${R[$t:cpu_d]})") postgres=$(fmt "$(median ${R[$t:cpu_p]})") faketiktok=$(fmt "$(median ${R[$t:cpu_t]})") fakecarrier=$(fmt "$(median ${R[$t:cpu_c]})")"
}
if want rate; then
	report rate "rate=$RATE"
	p99=$(median ${R[rate:p99]})
	awk -v v="$p99" 'BEGIN { exit !(v < 30000) }' && ok=ok || ok=MISSED
	echo "target p99_under_30s_at_$RATE value=$(fmt "$p99" 1) goal=30000 $ok"
fi
if want full; then
	report full full
	v=$(median ${R[full:rate]})
	awk -v v="$v" 'BEGIN { exit !(v >= 300) }' && ok=ok || ok=MISSED
	echo "target shipped_per_s_full value=$(fmt "$v") goal=300 $ok"
fi
[ "$WARNINGS" -eq 0 ]
