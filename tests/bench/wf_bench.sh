#!/usr/bin/env bash
# wf_bench.sh - the workflow engine and inventory under load, with the whole
# pipeline running, against a pgbench baseline on the same database.
#
# Usage: tests/bench/wf_bench.sh BUILD_DIR
#
# BUILD_DIR holds src/orderflowd and tests/bench/webhook_load.
#
# Starts a private PostgreSQL 15 (fsync and synchronous_commit on,
# track_commit_timestamp on), Redis, the fake TikTok Shop server and
# orderflowd (lib.sh), then measures, each figure BENCH_RUNS times (median
# reported), the daemon restarted and the order tables emptied before each
# run:
#
#  pipeline  Signed webhooks for new orders (webhook_load), each fetched from
#     the fake over HTTPS, applied, and run through standard_fulfillment to
#     ready_to_ship with its stock reserved (the fake's 32 catalog SKUs have
#     plenty).  At a fixed BENCH_WF_RATE (1000/s) for BENCH_WF_SECS (20 s),
#     and at full speed (BENCH_WF_FULL orders, 30000, sent as fast as they
#     are acknowledged).  Figures: orders committed/s and reserved/s over the
#     run, and the time from an order's commit to its reservation's commit
#     (p50/p99/p99.9): both are PostgreSQL commit timestamps
#     (pg_xact_commit_timestamp of the order_items and inventory_reservations
#     rows), so the figure is commit to commit.  The daemon's CPU per order.
#  hot       BENCH_HOT_ORDERS (5000) orders of one unit each of one SKU that
#     has BENCH_HOT_UNITS (2000) units.  "hot pipeline": through webhooks at
#     full speed (the fake is seeded with them).  "hot backlog": the orders
#     and their due runs inserted by one SQL transaction while the daemon
#     runs, as after an outage (the engine's own rate, not bounded by the
#     ingest).  Checked: exactly BENCH_HOT_UNITS reserved (the stock row and
#     the live reservations), the rest waiting for stock, and in the backlog
#     the reserved orders are the ones with the earliest deadlines.  Figures:
#     reservations/s from the first order's commit to the last reservation's
#     commit, runs decided/s.
#  baseline  pgbench -M prepared -c BENCH_PGBENCH_CLIENTS (16) -j 2 for
#     BENCH_SECS (10 s): the same reservation UPDATE on one stock row, one
#     transaction per order (what a reservation per order costs on a hot
#     row), and the hot backlog again with workflow.max_batch = 1 (the
#     whole step, one transaction per order).  Figures: tps and
#     reservations/s, and the ratios of the hot figures to both (target 5x).
#  parked    BENCH_PARKED (100000) orders with due runs inserted by SQL; the
#     engine takes each to ready_to_ship, where it parks waiting for the
#     shipment.  Figures: the daemon's RSS before and after, its peak RSS,
#     RSS bytes per parked run, runs/s.  Run once.
#
# Environment: BENCH_RUNS (3), BENCH_WF_RATE (1000), BENCH_WF_SECS (20),
# BENCH_WF_FULL (30000), BENCH_WF_CONNS (64), BENCH_HOT_ORDERS (5000),
# BENCH_HOT_UNITS (2000), BENCH_SECS (10), BENCH_PGBENCH_CLIENTS (16),
# BENCH_PARKED (100000), BENCH_WORKERS (0: one per CPU), BENCH_POOL_SIZE (4),
# BENCH_WAIT (300: longest wait for runs to settle, s), BENCH_READY_TIMEOUT
# (30), BENCH_KEEP_LOGS (a directory for the logs), BENCH_ONLY (a subset
# of "pipeline hot parked"; the baseline runs with hot), BENCH_PROFILE=1
# (pg_stat_statements loaded; the statements that took the most time are
# printed on stderr at the end; auto_explain logs the plans of statements
# slower than BENCH_EXPLAIN_MS, 200, in the PostgreSQL log: BENCH_KEEP_LOGS),
# BENCH_WRAPPER (a command the daemon runs under, e.g. "valgrind
# --tool=massif --massif-out-file=/tmp/massif.%p"; its RSS figures are then
# the wrapper's).
#
# Output: progress on stderr; on stdout one line per figure, e.g.
#   pipeline rate=1000 reserved_per_s median=998 runs=... p50_ms=... p99_ms=... p99.9_ms=...
#   hot backlog reserved_per_s median=... runs=...
#   baseline pgbench c=16 hot_row_tps median=... runs=...
#   ratio hot_pipeline/pgbench=... hot_backlog/pgbench=... hot_backlog/max_batch_1=...
#   target hot_backlog_vs_pgbench value=... goal=5 ok|MISSED
#   parked n=100000 rss_before_kb=... rss_after_kb=... peak_rss_kb=... bytes_per_run=...
# and WARNING lines when a check fails.  Exit status 0 when every check
# held, 1 when a WARNING was printed or on error, 2 on a usage error.
set -euo pipefail

PY=/usr/bin/python3
SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SCRATCH_PREFIX=/tmp/of-wf-bench.


RUNS=${BENCH_RUNS:-3}
WF_RATE=${BENCH_WF_RATE:-1000}
WF_SECS=${BENCH_WF_SECS:-20}
WF_FULL=${BENCH_WF_FULL:-30000}
WF_CONNS=${BENCH_WF_CONNS:-64}
HOT_ORDERS=${BENCH_HOT_ORDERS:-5000}
HOT_UNITS=${BENCH_HOT_UNITS:-2000}
SECS=${BENCH_SECS:-10}
PGB_CLIENTS=${BENCH_PGBENCH_CLIENTS:-16}
PARKED=${BENCH_PARKED:-100000}
WORKERS=${BENCH_WORKERS:-0}
POOL_SIZE=${BENCH_POOL_SIZE:-4}
WAIT=${BENCH_WAIT:-300}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-30}
WARM_ORDERS=${BENCH_WARM_ORDERS:-20000}
ONLY=${BENCH_ONLY:-pipeline hot parked}

BENCH_NAME=wf_bench
# shellcheck source=lib.sh
. "$SRCDIR/tests/bench/lib.sh"
bench_builddir "$@"

for v in WARM_ORDERS RUNS WF_RATE WF_SECS WF_FULL WF_CONNS HOT_ORDERS HOT_UNITS SECS PGB_CLIENTS PARKED \
	POOL_SIZE WAIT; do
	is_posint "${!v}" || udie "BENCH_$v must be a positive integer: ${!v}"
done
is_uint "$WORKERS" || udie "BENCH_WORKERS must be an integer"
for v in $ONLY; do
	case $v in pipeline|hot|parked) ;; *) udie "BENCH_ONLY: unknown part $v" ;; esac
done
want() { [[ " $ONLY " == *" $1 "* ]]; }
(( HOT_UNITS < HOT_ORDERS )) || udie "BENCH_HOT_UNITS must be below BENCH_HOT_ORDERS"
(( HOT_ORDERS <= 99999 )) || udie "BENCH_HOT_ORDERS must be at most 99999"
CHILD_TIMEOUT=$(( WF_SECS * 2 + SECS * 2 + 120 ))

[ -x "$DAEMON" ] || die "$DAEMON not built (make -C $BUILDDIR)"
[ -x "$LOADGEN" ] || die "$LOADGEN not built (make -C $BUILDDIR)"
[ -x "$PY" ] || die "$PY not found"
# shellcheck source=SCRIPTDIR/../../contrib/servers.sh
. "$SRCDIR/contrib/servers.sh"
PSQL_BIN=$OF_PG_BIN/psql
PGBENCH=$OF_PG_BIN/pgbench
[ -x "$PGBENCH" ] || die "$PGBENCH not found (Debian package postgresql-15)"
CLK_TCK=$(getconf CLK_TCK)

APP_KEY=benchappkey
APP_SECRET=benchappsecret0123456789abcdef
ACCESS_TOKEN=benchaccesstoken
SHOP_CIPHER=BENCHCIPHER
TT_SHOP_ID=7495540735365777507
# Webhook order ids of hot pipeline run N: HOT_PREFIX N 0000 then 1..HOT_ORDERS.
HOT_PREFIX=9100

# ---------------------------------------------------------------- cleanup
SCRATCH=
DAEMON_PID=
FAKE_PID=
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
	bench_teardown
	return "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM HUP

bench_cleanup_stale "$SCRATCH_PREFIX" orderflowd faketiktok
SCRATCH=$(bench_new_scratch "$SCRATCH_PREFIX") || die "cannot create a scratch directory"
log "scratch directory $SCRATCH"

# ---------------------------------------------------------------- servers
bench_start_servers
# Commit timestamps: the latencies below are commit to commit.
bench_profile_restart "track_commit_timestamp = on"
[ "$(psql_q -c "SHOW track_commit_timestamp")" = on ] || die "track_commit_timestamp is not on"

read -r DAEMON_PORT <<<"$(free_ports 1)"
CONF=$SCRATCH/orderflowd.conf
write_config() {
	{ bench_config_head "$DAEMON_PORT" "$WORKERS" "$POOL_SIZE"; cat <<EOF
[tiktok]
api_base = https://127.0.0.1:${TT_PORT:-1}
ca_file = $SCRATCH/tt/ca.pem
[workflow]
# the backlog figures include the wait for the first claim
claim_interval = 100ms
max_batch = ${WF_MAX_BATCH:-500}
EOF
	} >"$CONF"
}
write_config
bench_migrate_shop
SHOP=$SHOP_UUID
# Stock: the fake's catalog (SKU-000..SKU-031) and the warm-up, parked
# and baseline SKUs without limit; one hot SKU per hot run.
psql_q <<EOF >/dev/null || die "cannot stock the SKUs"
INSERT INTO inventory_items (user_id, sku, on_hand)
SELECT '$CREATOR', 'SKU-' || lpad(g::text, 3, '0'), 100000000 FROM generate_series(0, 31) g;
INSERT INTO inventory_items (user_id, sku, on_hand)
SELECT '$CREATOR', s, 100000000 FROM unnest(ARRAY['WARM', 'PARK', 'HOT-BASE']) s;
INSERT INTO inventory_items (user_id, sku, on_hand)
SELECT '$CREATOR', k || r, $HOT_UNITS FROM generate_series(1, $RUNS) r,
    unnest(ARRAY['HOTP-', 'HOTB-', 'HOTS-']) k;
EOF

# The fake, seeded with the orders of every hot pipeline run (run r: SKU HOTP-r).
"$PY" - "$SCRATCH/hot-seed.json" "$RUNS" "$HOT_ORDERS" "$HOT_PREFIX" <<'PYEOF'
import json, sys
path, runs, n, prefix = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
orders = []
for r in range(1, runs + 1):
    for i in range(1, n + 1):
        oid = "%s%d0000%d" % (prefix, r, i)
        orders.append({"id": oid, "status": "AWAITING_SHIPMENT",
                       "fulfillment_type": "FULFILLMENT_BY_TIKTOK", "line_items": [
            {"id": oid + "1", "sku_id": "17299990000000000%02d" % r,
             "product_id": "1729999000000000000", "product_name": "Viral Mug",
             "sku_name": "Red", "seller_sku": "HOTP-%d" % r, "sale_price": "9.99"}]})
json.dump({"orders": orders}, open(path, "w"))
PYEOF
# Fulfilled by TikTok, generated orders too: runs park at ready_to_ship as
# the engine's figures of issue 11 had them (no shipping in this benchmark;
# tests/bench/ship_bench.sh measures it).
bench_start_fake --seed-file "$SCRATCH/hot-seed.json" --generated-fulfillment-type FULFILLMENT_BY_TIKTOK
write_config

rss_kb() { awk -v k="$2" '$1 == k ":" { print $2 }' "/proc/$1/status"; }

# settle WANT: wait until WANT runs of this run are parked (for the
# shipment, or for stock), at most BENCH_WAIT s.
settle() {
	local want=$1 t0=$SECONDS got
	while :; do
		got=$(psql_q -c "SELECT count(*) FROM order_workflows WHERE started_at >= '$T0'
			AND workflow_status = 'waiting' AND wait_kind IN ('shipment', 'stock')")
		[ "$got" -lt "$want" ] || return 0
		if (( SECONDS - t0 >= WAIT )); then
			warn "only $got of $want runs parked after ${WAIT}s"
			return 1
		fi
		sleep 1
	done
}

# Commit times of this run's rows: order_items (the order's commit; never
# updated here), inventory_reservations (the reservation's commit),
# order_workflows (the run's last commit).
run_cte() {
	cat <<EOF
WITH oc AS (SELECT order_id, min(pg_xact_commit_timestamp(xmin)) AS t FROM order_items
            GROUP BY 1 HAVING min(pg_xact_commit_timestamp(xmin)) > '$T0'),
rc AS (SELECT order_id, inventory_item_id AS item, pg_xact_commit_timestamp(xmin) AS t
       FROM inventory_reservations WHERE pg_xact_commit_timestamp(xmin) > '$T0'),
wc AS (SELECT order_id, pg_xact_commit_timestamp(xmin) AS t FROM order_workflows
       WHERE started_at >= '$T0')
EOF
}

# commit_figures: "orders committed/s reserved/s p50 p99 p99.9" (ms):
# from the commit of each order to the commit of its stock.
commit_figures() {
	psql_q -F ' ' <<EOF
$(run_cte),
r1 AS (SELECT order_id, min(t) AS t FROM rc GROUP BY 1),
j AS (SELECT extract(epoch FROM r1.t - oc.t) * 1000 AS ms, oc.t AS o, r1.t AS r
      FROM oc JOIN r1 USING (order_id))
SELECT round((SELECT count(*) FROM oc) / nullif(extract(epoch FROM (SELECT max(t) - min(t) FROM oc)), 0)),
       round(count(*) / nullif(extract(epoch FROM max(r) - min(o)), 0)),
       round(percentile_disc(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(percentile_disc(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(percentile_disc(0.999) WITHIN GROUP (ORDER BY ms)::numeric, 1)
FROM j;
EOF
}


# insert_backlog N SKU TAG: N orders of one unit of SKU, each with a due run
# (unnamed, as the order write path makes them), in one transaction; order
# n is due before order n+1.  TAG (1..99) keeps the TikTok ids apart.
insert_backlog() {
	psql_q <<EOF >/dev/null || die "cannot insert the backlog"
BEGIN;
CREATE TEMP TABLE nb ON COMMIT DROP AS
SELECT gen_random_uuid() AS id, g, '8' || lpad('$3', 2, '0') || lpad(g::text, 15, '0') AS tid,
       now() + interval '1 day' + g * interval '1 second' AS due
FROM generate_series(1, $1) g;
INSERT INTO orders (id, user_id, shop_id, tiktok_order_id, order_number, order_status, tiktok_status,
    subtotal, tax, total_amount, currency, customer_name, shipping_address, order_date, rts_sla_time,
    fulfillment_type)
SELECT id, '$CREATOR', '$SHOP', tid, 'B-' || tid, 'confirmed', 'AWAITING_SHIPMENT', 9.99, 0, 9.99,
    'USD', 'Bench Buyer', '{"region_code":"US"}', now(), due, 'FULFILLMENT_BY_TIKTOK' FROM nb;
INSERT INTO order_items (order_id, user_id, tiktok_product_id, sku_id, product_name, product_sku,
    quantity, unit_price, total_price)
SELECT id, '$CREATOR', 'p-1', 'k-1', 'Viral Mug', '$2', 1, 9.99, 9.99 FROM nb;
INSERT INTO order_workflows (order_id, user_id, tiktok_order_id, workflow_name, current_step,
    workflow_status, deadline_at, retry_after)
SELECT id, '$CREATOR', tid, '', '', 'running', due, now() FROM nb;
COMMIT;
EOF
}

# ---------------------------------------------------------------- pipeline
run_pipeline() { # TAG ROUND LOAD-ARGS...
	local tag=$1 round=$2 acked c0 c1 g0 g1 oc rs p50 p99 p999 n stored cpu pgcpu
	shift 2
	begin_run
	c0=$(cpu_ticks "$DAEMON_PID")
	g0=$(pg_ticks)
	acked=$(load "$tag-$round" "$@")
	[ "${acked:-0}" -gt 0 ] || die "$tag: no webhook acknowledged"
	settle "$acked" || true
	c1=$(cpu_ticks "$DAEMON_PID")
	g1=$(pg_ticks)
	# Every order stored (at least every one acknowledged: a request whose
	# answer timed out may be stored too) at ready_to_ship.
	read -r stored n <<<"$(psql_q -F ' ' -c "SELECT (SELECT count(*) FROM orders
		WHERE created_at >= '$T0'), (SELECT count(*) FROM order_workflows
		WHERE started_at >= '$T0' AND current_step = 'ready_to_ship')")"
	if [ "$stored" -lt "$acked" ] || [ "$n" != "$stored" ]; then
		warn "$tag round $round: $acked orders acknowledged, $stored stored, $n at ready_to_ship"
	fi
	read -r oc rs p50 p99 p999 <<<"$(commit_figures)"
	cpu=$(div $(( (c1 - c0) * 1000000 / CLK_TCK )) "$acked")
	pgcpu=$(div $(( (g1 - g0) * 1000000 / CLK_TCK )) "$acked")
	add "$tag:oc" "$oc"; add "$tag:rs" "$rs"; add "$tag:p50" "$p50"; add "$tag:p99" "$p99"
	add "$tag:p999" "$p999"; add "$tag:cpu" "$cpu"; add "$tag:pgcpu" "$pgcpu"
	log "$tag round $round: orders=$acked committed/s=$oc reserved/s=$rs commit->reserved p50=${p50}ms p99=${p99}ms p99.9=${p999}ms cpu=$(fmt "$cpu")us/order pg_cpu=$(fmt "$pgcpu")us/order"
}

# ---------------------------------------------------------------- hot SKU
# hot_check TAG ROUND SKU: exactly HOT_UNITS reserved, the others wait for stock.
hot_check() {
	local tag=$1 round=$2 sku=$3 got want
	got=$(psql_q -F ' ' -c "SELECT i.reserved, (SELECT coalesce(sum(quantity), 0) FROM
		inventory_reservations r WHERE r.inventory_item_id = i.id AND r.status = 'active'),
		(SELECT count(*) FROM order_workflows WHERE started_at >= '$T0' AND wait_kind = 'stock')
		FROM inventory_items i WHERE i.sku = '$sku'")
	want="$HOT_UNITS $HOT_UNITS $(( HOT_ORDERS - HOT_UNITS ))"
	[ "$got" = "$want" ] ||
		warn "$tag round $round: reserved, live reservations, waiting = $got; wanted $want"
}

# hot_figures: "reservations/s decided/s" from the first order's commit.
hot_figures() {
	psql_q -F ' ' <<EOF
$(run_cte)
SELECT round((SELECT count(*) FROM rc) / nullif(extract(epoch FROM (SELECT max(t) FROM rc)
           - (SELECT min(t) FROM oc)), 0)),
       round((SELECT count(*) FROM wc) / nullif(extract(epoch FROM (SELECT max(t) FROM wc)
           - (SELECT min(t) FROM oc)), 0));
EOF
}

run_hot_pipeline() { # ROUND
	local round=$1 acked rs ds
	begin_run
	acked=$(load "hot-$round" -c "$WF_CONNS" -d "$WF_SECS" -n "$HOT_ORDERS" \
		--prefix "${HOT_PREFIX}${round}0000")
	[ "$acked" = "$HOT_ORDERS" ] || warn "hot pipeline round $round: $acked of $HOT_ORDERS acknowledged"
	settle "$acked" || true
	hot_check "hot pipeline" "$round" "HOTP-$round"
	read -r rs ds <<<"$(hot_figures)"
	add hotp:rs "$rs"; add hotp:ds "$ds"
	log "hot pipeline round $round: reservations/s=$rs runs decided/s=$ds"
}

run_hot_backlog() { # ROUND [solo]
	local round=$1 rs ds late sku=HOTB-$1 tag=hotb c0 c1 g0 g1 cpu pgcpu
	if [ "${2:-}" = solo ]; then
		sku=HOTS-$round tag=hots
		WF_MAX_BATCH=1 write_config
	fi
	begin_run
	c0=$(cpu_ticks "$DAEMON_PID")
	g0=$(pg_ticks)
	insert_backlog "$HOT_ORDERS" "$sku" "$(( ${2:+30} + 10 + round ))"
	settle "$HOT_ORDERS" || true
	c1=$(cpu_ticks "$DAEMON_PID")
	g1=$(pg_ticks)
	cpu=$(div $(( (c1 - c0) * 1000000 / CLK_TCK )) "$HOT_ORDERS")
	pgcpu=$(div $(( (g1 - g0) * 1000000 / CLK_TCK )) "$HOT_ORDERS")
	[ "$tag" = hotb ] || write_config
	hot_check "hot backlog${2:+ $2}" "$round" "$sku"
	# Deadline order: how many reservations went past the HOT_UNITS earliest.
	late=$(psql_q -c "WITH o AS (SELECT o.id, o.rts_sla_time FROM orders o JOIN order_items i
		ON i.order_id = o.id WHERE i.product_sku = '$sku'),
		edge AS (SELECT rts_sla_time FROM o ORDER BY rts_sla_time OFFSET $(( HOT_UNITS - 1 )) LIMIT 1)
		SELECT count(*) FROM inventory_reservations r JOIN o ON o.id = r.order_id
		WHERE r.status = 'active' AND o.rts_sla_time > (SELECT rts_sla_time FROM edge)")
	read -r rs ds <<<"$(hot_figures)"
	add "$tag:rs" "$rs"; add "$tag:ds" "$ds"; add "$tag:late" "$late"
	add "$tag:cpu" "$cpu"; add "$tag:pgcpu" "$pgcpu"
	log "hot backlog${2:+ $2} round $round: reservations/s=$rs runs decided/s=$ds reserved past the $HOT_UNITS earliest deadlines=$late cpu=$(fmt "$cpu")us/order pg_cpu=$(fmt "$pgcpu")us/order (the insert included)"
}

# ---------------------------------------------------------------- baseline
cat >"$SCRATCH/pgbench-reserve.sql" <<'EOF'
UPDATE inventory_items SET reserved = reserved + 1, version = version + 1 WHERE id = :item::uuid AND on_hand - reserved >= 1;
EOF
run_pgbench() { # ROUND
	local round=$1 out=$SCRATCH/pgbench-$1.out item rc=0 tps
	item=$(psql_q -c "SELECT id FROM inventory_items WHERE sku = 'HOT-BASE'")
	timeout "$CHILD_TIMEOUT" "$PGBENCH" -n -M prepared -c "$PGB_CLIENTS" -j 2 -T "$SECS" \
		-f "$SCRATCH/pgbench-reserve.sql" -D "item=$item" \
		-h "$OF_PG_SOCKDIR" -p "$OF_PG_PORT" -U orderflow orderflow >"$out" 2>&1 &
	CHILD_PID=$!
	wait_child || rc=$?
	[ "$rc" = 0 ] || { cat "$out" >&2; die "pgbench failed (status $rc)"; }
	tps=$(awk '/^tps = / { print $3; exit }' "$out")
	[ -n "$tps" ] || { cat "$out" >&2; die "cannot parse pgbench output"; }
	add pgb:tps "$tps"
	log "baseline round $round: pgbench c=$PGB_CLIENTS one reservation UPDATE per transaction: tps=$tps"
}

# ---------------------------------------------------------------- parked
# A fresh daemon, then BENCH_PARKED runs parked.
run_parked() {
	local t0 parked_metric
	begin_run
	sleep 2
	rss0=$(rss_kb "$DAEMON_PID" VmRSS)
	echo 5 2>/dev/null >"/proc/$DAEMON_PID/clear_refs" || true	# reset VmHWM
	t0=$SECONDS
	insert_backlog "$PARKED" PARK 2
	settle "$PARKED" || true
	sleep 1
	rss1=$(rss_kb "$DAEMON_PID" VmRSS)
	hwm=$(rss_kb "$DAEMON_PID" VmHWM)
	read -r _ parked_rate <<<"$(hot_figures)"
	parked_metric=$("$PY" - "$DAEMON_PORT" <<'PYEOF'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
c.request("GET", "/metrics")
print(int(sum(float(l.rpartition(" ")[2]) for l in c.getresponse().read().decode().splitlines()
              if l.startswith("orderflow_workflow_parked{"))))
PYEOF
)
	[ "$parked_metric" -ge "$PARKED" ] || warn "parked: /metrics counts $parked_metric parked runs, wanted $PARKED"
	log "parked: $PARKED runs in $(( SECONDS - t0 ))s (runs decided/s=$parked_rate); RSS ${rss0} kB -> ${rss1} kB, peak ${hwm} kB"
}

# ---------------------------------------------------------------- runs
log "orderflowd on 127.0.0.1:$DAEMON_PORT (workers=$WORKERS pool_size=$POOL_SIZE); $RUNS runs per figure"
# Warm-up: tables with rows and statistics, warm caches; not measured.
log "warm-up: $WARM_ORDERS orders by SQL, 2000 by webhook, then ANALYZE"
begin_run
insert_backlog "$WARM_ORDERS" WARM 1
settle "$WARM_ORDERS" || true
begin_run
load warm -c "$WF_CONNS" -d "$WF_SECS" -n 2000 >/dev/null
settle 2000 || true
psql_q -c "ANALYZE" >/dev/null || die "ANALYZE failed"
WARNINGS=0

for ((round = 1; round <= RUNS; round++)); do
	if want pipeline; then
		run_pipeline "rate" "$round" -c "$WF_CONNS" -d "$WF_SECS" -r "$WF_RATE"
		run_pipeline "full" "$round" -c "$WF_CONNS" -d "$WF_SECS" -n "$WF_FULL"
	fi
	if want hot; then
		run_hot_pipeline "$round"
		run_hot_backlog "$round"
		run_hot_backlog "$round" solo
		run_pgbench "$round"
	fi
done
! want parked || run_parked

bench_profile_report

# ---------------------------------------------------------------- report
med() { median ${R[$1]}; }
line() { # TAG LABEL
	echo "$2 orders_committed_per_s median=$(fmt "$(med "$1:oc")") runs=$(joinruns 0 ${R[$1:oc]})"
	echo "$2 reserved_per_s median=$(fmt "$(med "$1:rs")") runs=$(joinruns 0 ${R[$1:rs]}) p50_ms=$(fmt "$(med "$1:p50")" 1) p99_ms=$(fmt "$(med "$1:p99")" 1) p99.9_ms=$(fmt "$(med "$1:p999")" 1)"
	echo "$2 cpu_us_per_order median=$(fmt "$(med "$1:cpu")") runs=$(joinruns 0 ${R[$1:cpu]}) pg_cpu_us_per_order median=$(fmt "$(med "$1:pgcpu")")"
}
target() { # NAME VALUE GOAL
	local ok=MISSED
	awk -v v="$2" -v g="$3" 'BEGIN { exit !(v != "nan" && v >= g) }' && ok=ok
	echo "target $1 value=$(fmt "$2" 2) goal=$3 $ok"
}
echo "# wf_bench: $(nproc) CPUs, workers=$WORKERS pool_size=$POOL_SIZE runs=$RUNS; PostgreSQL fsync=on synchronous_commit=on"
if want pipeline; then
	line rate "pipeline rate=$WF_RATE"
	line full "pipeline full n=$WF_FULL"
fi
if want hot; then
	echo "hot pipeline reserved_per_s median=$(fmt "$(med hotp:rs)") runs=$(joinruns 0 ${R[hotp:rs]}) decided_per_s median=$(fmt "$(med hotp:ds)")"
	echo "hot backlog reserved_per_s median=$(fmt "$(med hotb:rs)") runs=$(joinruns 0 ${R[hotb:rs]}) decided_per_s median=$(fmt "$(med hotb:ds)") reserved_past_earliest_deadlines runs=$(joinruns 0 ${R[hotb:late]})"
	echo "hot backlog cpu_us_per_order median=$(fmt "$(med hotb:cpu)") pg_cpu_us_per_order median=$(fmt "$(med hotb:pgcpu)")"
	echo "baseline hot backlog max_batch=1 reserved_per_s median=$(fmt "$(med hots:rs)") runs=$(joinruns 0 ${R[hots:rs]}) cpu_us_per_order median=$(fmt "$(med hots:cpu)") pg_cpu_us_per_order median=$(fmt "$(med hots:pgcpu)")"
	echo "baseline pgbench c=$PGB_CLIENTS hot_row_tps median=$(fmt "$(med pgb:tps)") runs=$(joinruns 0 ${R[pgb:tps]})"
	echo "ratio hot_pipeline/pgbench=$(fmt "$(div "$(med hotp:rs)" "$(med pgb:tps)")" 2) hot_backlog/pgbench=$(fmt "$(div "$(med hotb:rs)" "$(med pgb:tps)")" 2) hot_backlog/max_batch_1=$(fmt "$(div "$(med hotb:rs)" "$(med hots:rs)")" 2)"
fi
! want parked || echo "parked n=$PARKED rss_before_kb=$rss0 rss_after_kb=$rss1 peak_rss_kb=$hwm bytes_per_run=$(fmt "$(div $(( (rss1 - rss0) * 1024 )) "$PARKED")") decided_per_s=$(fmt "$parked_rate")"
if want pipeline; then
	target full_reserved_per_s "$(med full:rs)" 150
	target full_reserved_vs_committed "$(div "$(med full:rs)" "$(med full:oc)")" 0.95
fi
if want hot; then
	target hot_backlog_vs_pgbench "$(div "$(med hotb:rs)" "$(med pgb:tps)")" 5
	target hot_backlog_vs_max_batch_1 "$(div "$(med hotb:rs)" "$(med hots:rs)")" 5
	target hot_pipeline_vs_pgbench "$(div "$(med hotp:rs)" "$(med pgb:tps)")" 5
fi
[ "$WARNINGS" = 0 ] || exit 1
