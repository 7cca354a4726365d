#!/usr/bin/env bash
# ingest_bench.sh - webhook ingest throughput of orderflowd against a pgbench
# baseline, both with durable commits (fsync=on, synchronous_commit=on).
#
# Usage: tests/bench/ingest_bench.sh BUILD_DIR [ingest|e2e]
#
# BUILD_DIR holds src/orderflowd and tests/bench/webhook_load (a VPATH build
# dir, e.g. build/bench).
#
# Mode "ingest" (the default) measures the front door: durable
# acknowledgements against a pgbench baseline.  TikTok is unreachable in this
# mode (api_base is a closed port): the breaker opens and the events wait,
# so the figures are those of ingestion alone (steps 1-8 below).
#
# Mode "e2e" measures webhook in -> order committed: every webhook names a
# new order, the daemon fetches it from the fake TikTok server over HTTPS and
# commits order, items, history and audit rows.  For each rate of
# BENCH_E2E_RATES (default 5000/s) it sends for BENCH_E2E_SECS (60 s) over
# BENCH_E2E_CONNS (256) connections, samples the backlog (rows neither
# processed nor dead) every BENCH_SAMPLE_EVERY (5) s, then waits for it to
# drain; then a run at BENCH_LAT_RATE (1000/s) for BENCH_LAT_SECS (30 s)
# gives the time from acknowledgement to committed order.  Printed per rate
# (median of BENCH_RUNS runs): acknowledged/s, processed/s during the load,
# backlog at the end and its least-squares slope (rows/s; a sustainable rate
# has about 0), drain time, ack->order p50/p99/p99.9 (processed_at -
# received_at: both are transaction start times, so one commit each side),
# orderflowd, PostgreSQL and fake-TikTok CPU per webhook, peak RSS.  Every
# order table is emptied before each run; afterwards every acknowledged
# webhook must be processed into exactly one order, else a WARNING.
#
#  1. Starts a private PostgreSQL 15 and Redis (contrib/servers.sh) in a
#     scratch directory /tmp/of-ingest-bench.XXXXXX, PostgreSQL on a unix
#     socket only (random free port number), Redis on a unix socket only.
#     fsync and synchronous_commit are forced on (and checked with SHOW).
#     Everything (servers, daemon, fake TikTok, load generators) is stopped
#     and the scratch dir removed on exit, error, Ctrl-C or SIGTERM.  Scratch
#     dirs left by an earlier run that was killed (kill -9) are cleaned up
#     at start: their servers, daemon and fake TikTok are stopped.
#  2. Runs orderflowd --migrate, creates a creator and a shop (known app key,
#     secret, access token and shop cipher).
#  3. Starts tests/faketiktok/faketiktok.py (HTTPS, certs by mkcerts.sh) with
#     the same credentials, and orderflowd on a free loopback port.
#  4. Baseline: pgbench -M prepared -c16 -j2 -T BENCH_SECS with a script that
#     does, per transaction, exactly the daemon's statement: one INSERT ...
#     ON CONFLICT DO NOTHING RETURNING id into webhook_events itself (same
#     table, indexes, foreign key to shops), random 19-digit ids, a body like
#     webhook_load's.
#  5. Daemon: webhook_load at 64 and at 8 connections, full speed, BENCH_SECS
#     each, unique notification ids, correctly signed.
#  6. For every run: the daemon's CPU (utime+stime from /proc/PID/stat) per
#     acknowledged webhook, PostgreSQL's CPU (every server process, plus the
#     postmaster's reaped children) per row, the load generator's CPU, the
#     machine's busy fraction and the share of it used by processes outside
#     the benchmark ("other_cpu": a noisy machine shows there),
#     group commits (/metrics) and the daemon's peak RSS (VmHWM, reset before
#     each run through /proc/PID/clear_refs).
#  7. Before every run webhook_events is truncated and a CHECKPOINT taken;
#     after it the row count must equal the acknowledged count (pgbench: the
#     transactions processed), else a WARNING line is printed.
#  8. Rounds are interleaved (pgbench, c=64, c=8, rotated each round) so that
#     machine noise hits every figure alike; the median of BENCH_RUNS runs
#     is reported.
#
# Environment:
#   BENCH_SECS       seconds per run (default 10)
#   BENCH_RUNS       runs per figure (default 3); the median is reported
#   BENCH_WARMUP     seconds of unmeasured warm-up of each kind (default 2, e2e 5;
#                    0 = none); e2e runs ANALYZE after it
#   BENCH_CONNS      webhook_load connection counts (default "64 8")
#   BENCH_PGBENCH_CLIENTS / BENCH_PGBENCH_JOBS   pgbench -c / -j (default 16 / 2)
#   BENCH_WORKERS    orderflowd server.workers (default 0 = one per CPU)
#   BENCH_POOL_SIZE  orderflowd postgres.pool_size (default 4)
#   BENCH_MAX_BATCH  orderflowd webhook.max_batch (default 512)
#   BENCH_DAEMON_ENV "NAME=value ..." added to orderflowd's environment only,
#                    e.g. "EVENT_EPOLL_USE_CHANGELIST=1" (libevent)
#   BENCH_PG_SETTINGS  extra reloadable PostgreSQL settings, "name=value ..."
#                    (applied with ALTER SYSTEM; fsync and synchronous_commit
#                    cannot be changed here), e.g. "commit_delay=50"
#   BENCH_QUIET_PCT  before each run, wait until the machine's CPU use (other
#                    processes: ours are idle then) over 1 s is at most this
#                    percentage (default 0 = do not wait); for shared machines
#   BENCH_QUIET_WAIT longest such wait in seconds (default 120), then run anyway
#   BENCH_READY_TIMEOUT  seconds to wait for the daemon's /readyz (default 30)
#   BENCH_KEEP_LOGS  a directory: the logs and raw outputs are copied there
#   BENCH_TT_CONNS   orderflowd tiktok.connections (default 4)
#   BENCH_DRAIN_WAIT e2e: longest wait for the backlog to drain (default 300 s)
#   BENCH_E2E_RATES, BENCH_E2E_SECS, BENCH_E2E_CONNS, BENCH_LAT_RATE,
#   BENCH_LAT_SECS, BENCH_SAMPLE_EVERY   e2e mode, see above
#
# Output: progress on stderr; on stdout one line per figure, e.g.
#   baseline pgbench c=16 j=2 tps median=4100 runs=4080,4100,4150 p50_ms=3.80 p99_ms=7.10 p99.9_ms=12.00
#   ingest c=64 acked_per_s median=9000 runs=... p50_ms=... p99_ms=... p99.9_ms=...
#   ingest c=64 cpu_us_per_webhook median=... runs=...   (orderflowd)
#   ingest c=64 pg_cpu_us_per_webhook median=... runs=...
#   ingest c=64 commits_per_s median=... avg_batch median=...
#   ingest c=64 peak_rss_kb max=...
#   ratio ingest64/pgbench16=2.20
# and "WARNING ..." lines for row-count mismatches, non-2xx answers or errors.
# Exit status: 0 when every run was clean, 1 when a WARNING was printed or
# on error, 2 on a usage error.
set -euo pipefail

PY=/usr/bin/python3
SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SCRATCH_PREFIX=/tmp/of-ingest-bench.

usage() { echo "usage: $0 BUILD_DIR [ingest|e2e]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
case ${1:-} in -h|--help) usage ;; -*) usage ;; esac
MODE=${2:-ingest}
case $MODE in
ingest) ;;
e2e) ;;
*) usage ;;
esac
[ -d "$1" ] || { echo "ingest_bench: $1: no such directory" >&2; exit 2; }
BUILDDIR=$(cd "$1" && pwd)
DAEMON=$BUILDDIR/src/orderflowd
LOADGEN=$BUILDDIR/tests/bench/webhook_load

SECS=${BENCH_SECS:-10}
RUNS=${BENCH_RUNS:-3}
WARMUP=${BENCH_WARMUP:-$([ "$MODE" = e2e ] && echo 5 || echo 2)}
CONNS_LIST=${BENCH_CONNS:-64 8}
PGB_CLIENTS=${BENCH_PGBENCH_CLIENTS:-16}
PGB_JOBS=${BENCH_PGBENCH_JOBS:-2}
WORKERS=${BENCH_WORKERS:-0}
POOL_SIZE=${BENCH_POOL_SIZE:-4}
MAX_BATCH=${BENCH_MAX_BATCH:-512}
PG_SETTINGS=${BENCH_PG_SETTINGS:-}
DAEMON_ENV=${BENCH_DAEMON_ENV:-}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-30}
QUIET_PCT=${BENCH_QUIET_PCT:-0}
QUIET_WAIT=${BENCH_QUIET_WAIT:-120}
TT_CONNS=${BENCH_TT_CONNS:-4}
DRAIN_WAIT=${BENCH_DRAIN_WAIT:-300}
E2E_RATES=${BENCH_E2E_RATES:-5000}
E2E_SECS=${BENCH_E2E_SECS:-60}
E2E_CONNS=${BENCH_E2E_CONNS:-256}
LAT_RATE=${BENCH_LAT_RATE:-1000}
LAT_SECS=${BENCH_LAT_SECS:-30}
SAMPLE_EVERY=${BENCH_SAMPLE_EVERY:-5}

BENCH_NAME=ingest_bench
# shellcheck source=lib.sh
. "$SRCDIR/tests/bench/lib.sh"

is_posint "$SECS" || udie "BENCH_SECS must be a positive integer: $SECS"
is_posint "$RUNS" || udie "BENCH_RUNS must be a positive integer: $RUNS"
is_uint "$WARMUP" || udie "BENCH_WARMUP must be an integer: $WARMUP"
is_posint "$PGB_CLIENTS" || udie "BENCH_PGBENCH_CLIENTS must be a positive integer"
is_posint "$PGB_JOBS" || udie "BENCH_PGBENCH_JOBS must be a positive integer"
is_uint "$WORKERS" || udie "BENCH_WORKERS must be an integer"
is_posint "$POOL_SIZE" || udie "BENCH_POOL_SIZE must be a positive integer"
is_posint "$MAX_BATCH" || udie "BENCH_MAX_BATCH must be a positive integer"
is_uint "$READY_TIMEOUT" || udie "BENCH_READY_TIMEOUT must be an integer"
is_uint "$QUIET_PCT" || udie "BENCH_QUIET_PCT must be an integer percentage"
is_uint "$QUIET_WAIT" || udie "BENCH_QUIET_WAIT must be an integer"
is_posint "$TT_CONNS" || udie "BENCH_TT_CONNS must be a positive integer"
is_posint "$DRAIN_WAIT" || udie "BENCH_DRAIN_WAIT must be a positive integer"
is_posint "$E2E_SECS" || udie "BENCH_E2E_SECS must be a positive integer"
is_posint "$E2E_CONNS" || udie "BENCH_E2E_CONNS must be a positive integer"
is_posint "$LAT_RATE" || udie "BENCH_LAT_RATE must be a positive integer"
is_posint "$LAT_SECS" || udie "BENCH_LAT_SECS must be a positive integer"
is_posint "$SAMPLE_EVERY" || udie "BENCH_SAMPLE_EVERY must be a positive integer"
[ -n "${E2E_RATES// /}" ] || udie "BENCH_E2E_RATES is empty"
for r in $E2E_RATES; do is_posint "$r" || udie "BENCH_E2E_RATES: bad rate: $r"; done
[ -n "${CONNS_LIST// /}" ] || udie "BENCH_CONNS is empty"
for c in $CONNS_LIST; do is_posint "$c" || udie "BENCH_CONNS: bad connection count: $c"; done
for kv in $PG_SETTINGS; do
	[[ $kv =~ ^[a-z_]+=[A-Za-z0-9_.]+$ ]] || udie "BENCH_PG_SETTINGS: expected name=value, not $kv"
	case ${kv%%=*} in fsync|synchronous_commit|full_page_writes|wal_sync_method)
		udie "BENCH_PG_SETTINGS: ${kv%%=*} must stay at its durable default" ;;
	esac
done
for kv in $DAEMON_ENV; do
	[[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || udie "BENCH_DAEMON_ENV: expected NAME=value, not $kv"
done
# Load generators wait for the requests in flight (10 s timeout) and pgbench
# for its last transactions: this bounds every child.
longest=$SECS
for v in $E2E_SECS $LAT_SECS; do if (( v > longest )); then longest=$v; fi; done
CHILD_TIMEOUT=$(( longest * 2 + 60 ))

[ -x "$DAEMON" ] || die "$DAEMON not built (make -C $BUILDDIR)"
[ -x "$LOADGEN" ] || die "$LOADGEN not built (make -C $BUILDDIR)"
[ -x "$PY" ] || die "$PY not found"
[ -f "$SRCDIR/contrib/servers.sh" ] || die "$SRCDIR/contrib/servers.sh missing"
[ -f "$SRCDIR/tests/faketiktok/faketiktok.py" ] || die "tests/faketiktok/faketiktok.py missing"

# shellcheck source=SCRIPTDIR/../../contrib/servers.sh
. "$SRCDIR/contrib/servers.sh"
PSQL_BIN=$OF_PG_BIN/psql
PGBENCH=$OF_PG_BIN/pgbench
[ -x "$PGBENCH" ] || die "$PGBENCH not found (Debian package postgresql-15)"
CLK_TCK=$(getconf CLK_TCK)

# Credentials shared by the database, the fake TikTok and the load generator.
APP_KEY=benchappkey
APP_SECRET=benchappsecret0123456789abcdef
ACCESS_TOKEN=benchaccesstoken
SHOP_CIPHER=BENCHCIPHER
TT_SHOP_ID=7495540735365777507

# ---------------------------------------------------------------- cleanup
SCRATCH=
DAEMON_PID=
FAKE_PID=
CHILD_PID=
SAMPLER_PID=
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
	stop_pid "$CHILD_PID" "load generator"
	stop_pid "$SAMPLER_PID" "backlog sampler"
	stop_pid "$DAEMON_PID" orderflowd
	stop_pid "$FAKE_PID" faketiktok
	bench_teardown
	return "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM HUP

bench_cleanup_stale "$SCRATCH_PREFIX" loadgen orderflowd faketiktok
SCRATCH=$(bench_new_scratch "$SCRATCH_PREFIX") || die "cannot create a scratch directory"

# ---------------------------------------------------------------- helpers
# other_pct BUSY_TICKS TOTAL_TICKS OURS_US: share (%) of the machine's CPU
# time used by processes that are not part of the benchmark.
other_pct() { awk -v b="$1" -v t="$2" -v o="$3" -v hz="$CLK_TCK" 'BEGIN {
	if (t <= 0) { print "nan"; exit } v = (b - o * hz / 1000000) * 100 / t; if (v < 0) v = 0; printf "%.4f\n", v }'; }

# The measuring probe: one line
#   DAEMON_TICKS PG_TICKS CPU_TOTAL CPU_IDLE ACCEPTED DUPLICATES COMMITS COMMIT_FAILURES REJECTED
# PG_TICKS counts every process running in the data directory plus the
# postmaster's reaped children (backends that exited, e.g. pgbench's).
cat >"$SCRATCH/probe.py" <<'EOF'
import http.client, os, sys

def ticks(pid, children=False):
    try:
        with open("/proc/%s/stat" % pid) as f:
            s = f.read()
    except OSError:
        return 0
    v = s[s.rindex(")") + 2:].split()
    t = int(v[11]) + int(v[12])          # utime stime
    if children:
        t += int(v[13]) + int(v[14])     # cutime cstime
    return t

daemon_pid, pgdata, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
dt = ticks(daemon_pid) if daemon_pid != "0" else 0
pt = 0
try:
    with open(os.path.join(pgdata, "postmaster.pid")) as f:
        pm = f.readline().strip()
except OSError:
    pm = ""
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        with open("/proc/%s/comm" % p) as f:
            if f.read().strip() != "postgres":
                continue
        if os.readlink("/proc/%s/cwd" % p) != pgdata:
            continue
    except OSError:
        continue
    pt += ticks(p, children=(p == pm))
with open("/proc/stat") as f:
    cpu = [int(x) for x in f.readline().split()[1:9]]
total, idle = sum(cpu), cpu[3] + cpu[4]
m = {}
if port:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/metrics")
        for line in c.getresponse().read().decode().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            k, _, v = line.rpartition(" ")
            name = k.split("{")[0]
            m[name] = m.get(name, 0) + float(v)
    except Exception:
        pass
g = lambda k: int(m.get(k, 0))
print(dt, pt, total, idle, g("orderflow_webhooks_accepted_total"),
      g("orderflow_webhooks_duplicate_total"), g("orderflow_webhook_commits_total"),
      g("orderflow_webhook_commit_failures_total"), g("orderflow_webhooks_rejected_total"))
EOF
probe() { "$PY" "$SCRATCH/probe.py" "${DAEMON_PID:-0}" "$PGDATA" "${DAEMON_PORT:-0}"; }

# children_cpu_us VAR: set VAR to the CPU time (user+sys, us) of this shell's
# reaped children; the delta around one load generator run is that
# generator's CPU.  ("times" must run in this shell, not in a $(...)
# subshell, which has children of its own.)
children_cpu_us() {
	times >"$SCRATCH/times.out"
	printf -v "$1" '%s' "$(awk 'NR == 2 {
		t = 0
		for (i = 1; i <= 2; i++) { v = $i; sub(/s$/, "", v); split(v, a, "m"); t += a[1] * 60 + a[2] }
		printf "%.0f\n", t * 1000000 }' "$SCRATCH/times.out")"
}

# ---------------------------------------------------------------- servers
log "scratch directory $SCRATCH"
bench_start_servers

for kv in $PG_SETTINGS; do
	psql_q -c "ALTER SYSTEM SET ${kv%%=*} = '${kv#*=}'" || die "cannot set ${kv%%=*}"
done
[ -z "$PG_SETTINGS" ] || psql_q -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.2
pg_durable=$(psql_q -c "SHOW fsync" -c "SHOW synchronous_commit" | tr '\n' ' ')
[ "$pg_durable" = "on on " ] || die "PostgreSQL is not durable after BENCH_PG_SETTINGS ($pg_durable)"
PG_INFO=$(psql_q -F ' ' -c "SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync','synchronous_commit','wal_sync_method','shared_buffers','max_wal_size','commit_delay','wal_buffers','full_page_writes')")
log "PostgreSQL: $PG_INFO"

# ---------------------------------------------------------------- config, schema, shop
read -r DAEMON_PORT <<<"$(free_ports 1)"
CONF=$SCRATCH/orderflowd.conf
TT_PORT=1	# set once faketiktok is up; the config is written again then
TT_API_PORT=1
write_config() {
	cat >"$CONF" <<EOF
# generated by tests/bench/ingest_bench.sh
[server]
listen_addr = 127.0.0.1
listen_port = $DAEMON_PORT
workers = $WORKERS
client_timeout = 60s

[log]
level = warn

[postgres]
conninfo = $OF_PG_CONNINFO
migrations_dir = $SRCDIR/sql
pool_size = $POOL_SIZE

[redis]
socket = $OF_REDIS_SOCKET

[webhook]
max_batch = $MAX_BATCH

# e2e: the fake TikTok Shop server of this run, so every acknowledged event
# is processed (detail fetched over HTTPS, order committed) as in production.
# ingest: the front door alone; TikTok is unreachable (a closed port), the
# breaker opens and the events wait, as they would during a TikTok outage.
[tiktok]
api_base = https://127.0.0.1:$TT_API_PORT
ca_file = $SCRATCH/tt/ca.pem
connections = $TT_CONNS
EOF
}
write_config

bench_migrate_shop

# ---------------------------------------------------------------- fake TikTok
bench_start_fake
[ "$MODE" = ingest ] || TT_API_PORT=$TT_PORT
write_config

# ---------------------------------------------------------------- daemon
log "starting orderflowd on 127.0.0.1:$DAEMON_PORT (workers=$WORKERS pool_size=$POOL_SIZE max_batch=$MAX_BATCH${DAEMON_ENV:+ env: $DAEMON_ENV})"
# shellcheck disable=SC2086  # one NAME=value per word
env $DAEMON_ENV "$DAEMON" -c "$CONF" >"$SCRATCH/orderflowd.log" 2>&1 &
DAEMON_PID=$!
echo "$DAEMON_PID" >"$SCRATCH/orderflowd.pid"
wait_ready "$DAEMON_PID" orderflowd "$DAEMON_PORT" /readyz "$SCRATCH/orderflowd.log"
NTHREADS=$(awk '/^Threads:/ { print $2 }' "/proc/$DAEMON_PID/status")

# ---------------------------------------------------------------- runs

# wait_quiet: with BENCH_QUIET_PCT set, wait (at most BENCH_QUIET_WAIT s)
# until the machine is at most that busy over one second.
wait_quiet() {
	[ "$QUIET_PCT" -gt 0 ] || return 0
	local deadline=$(( SECONDS + QUIET_WAIT )) a b pct said=
	while :; do
		a=$(head -n 1 /proc/stat); sleep 1; b=$(head -n 1 /proc/stat)
		pct=$(printf '%s\n%s\n' "$a" "$b" | awk '{ t[NR] = 0; for (i = 2; i <= 9; i++) t[NR] += $i; id[NR] = $5 + $6 }
			END { d = t[2] - t[1]; v = 0; if (d > 0) v = 100 * (1 - (id[2] - id[1]) / d); printf "%.0f\n", v }')
		[ "$pct" -gt "$QUIET_PCT" ] || return 0
		if [ "$SECONDS" -ge "$deadline" ]; then
			log "machine still ${pct}% busy after ${QUIET_WAIT}s: running anyway"
			return 0
		fi
		[ -n "$said" ] || log "machine ${pct}% busy (other processes): waiting for <= ${QUIET_PCT}%"
		said=1
	done
}

# metric NAME: the sum of a /metrics series now (0 when absent).
metric() {
	"$PY" - "$DAEMON_PORT" "$1" <<'PYEOF'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
c.request("GET", "/metrics")
t = 0.0
for line in c.getresponse().read().decode().splitlines():
    if line.startswith(sys.argv[2] + " ") or line.startswith(sys.argv[2] + "{"):
        t += float(line.rpartition(" ")[2])
print(int(t))
PYEOF
}
# backlog: events committed but neither processed nor dead.
backlog() { psql_q -c "SELECT count(*) FROM webhook_events WHERE processed_at IS NULL AND dead_at IS NULL"; }

# wait_drain: until the daemon holds no event and none waits in the table
# (at most BENCH_DRAIN_WAIT s); DRAIN_SECS is the time it took.
DRAIN_SECS=0
wait_drain() {
	local t0=$SECONDS mem bl
	while :; do
		mem=$(metric orderflow_events_in_memory) || die "cannot read /metrics"
		bl=$(backlog)
		DRAIN_SECS=$(( SECONDS - t0 ))
		[ "$mem" != 0 ] || [ "$bl" != 0 ] || return 0
		if (( DRAIN_SECS >= DRAIN_WAIT )); then
			warn "backlog not drained after ${DRAIN_WAIT}s ($bl unprocessed rows, $mem events in memory)"
			return 0
		fi
		sleep 0.5
	done
}

# ingest mode: TikTok is unreachable, so events stay unprocessed by design.
reset_table() {
	psql_q -c "TRUNCATE webhook_events" -c "CHECKPOINT" >/dev/null || die "cannot truncate webhook_events"
}
row_count() { psql_q -c "SELECT count(*) FROM webhook_events"; }

# pgbench: the daemon's statement, one row per transaction.
cat >"$SCRATCH/pgbench-insert.sql" <<'EOF'
\set nid random(1000000000000000000, 9223372036854775806)
\set oid random(1000000000000000000, 9223372036854775806)
INSERT INTO webhook_events (source, notification_id, dedupe_key, shop_id, tiktok_shop_id, event_type, order_id, raw_body) VALUES ('tiktok_shop', :nid, :nid, :shop_uuid::uuid, :shop_id, 1, :oid, :body) ON CONFLICT (source, dedupe_key) DO NOTHING RETURNING id;
EOF
now=$(date +%s)
PGB_BODY="{\"type\":1,\"tts_notification_id\":\"17${now}0000001\",\"shop_id\":\"$TT_SHOP_ID\",\"timestamp\":$now,\"data\":{\"is_on_hold_order\":false,\"order_id\":\"57${now}0000001\",\"order_status\":\"AWAITING_SHIPMENT\",\"update_time\":$now}}"
PGB_ARGS=(-n -M prepared -c "$PGB_CLIENTS" -j "$PGB_JOBS" -f "$SCRATCH/pgbench-insert.sql"
	-D "shop_uuid=$SHOP_UUID" -D "shop_id=$TT_SHOP_ID" -D "body=$PGB_BODY"
	-h "$OF_PG_SOCKDIR" -p "$OF_PG_PORT" -U orderflow orderflow)

run_pgbench() { # ROUND SECS MEASURE(0|1)
	local round=$1 secs=$2 measure=$3 out=$SCRATCH/pgbench-$1.out rc
	local b a c0 c1 other tps n p50 p99 p999 rows dticks pticks tot idle
	reset_table
	wait_quiet
	rm -f "$SCRATCH"/pgblog-"$round".*
	b=$(probe)
	children_cpu_us c0
	timeout "$CHILD_TIMEOUT" "$PGBENCH" "${PGB_ARGS[@]}" -T "$secs" -l --log-prefix="$SCRATCH/pgblog-$round" \
		>"$out" 2>&1 &
	CHILD_PID=$!
	rc=0; wait_child || rc=$?
	children_cpu_us c1
	a=$(probe)
	[ "$rc" = 0 ] || { cat "$out" >&2; die "pgbench failed (status $rc)"; }
	[ "$measure" = 1 ] || return 0
	tps=$(awk '/^tps = / { print $3; exit }' "$out")
	n=$(awk -F': *' '/^number of transactions actually processed/ { print $2 }' "$out")
	[ -n "$tps" ] && [ -n "$n" ] || { cat "$out" >&2; die "cannot parse pgbench output"; }
	read -r p50 p99 p999 <<<"$(pgb_percentiles "$SCRATCH"/pgblog-"$round".*)"
	rm -f "$SCRATCH"/pgblog-"$round".*
	rows=$(row_count)
	read -r dticks pticks tot idle <<<"$(paste -d' ' <(echo "$b") <(echo "$a") |
		awk '{ print $10 - $1, $11 - $2, $12 - $3, $13 - $4 }')"
	add pgb:tps "$tps"; add pgb:p50 "$p50"; add pgb:p99 "$p99"; add pgb:p999 "$p999"
	add pgb:pgcpu "$(div "$pticks" "$n" $(( 1000000 / CLK_TCK )))"
	add pgb:busy "$(div $((tot - idle)) "$tot" 100)"
	other=$(other_pct $((tot - idle)) "$tot" $(( pticks * 1000000 / CLK_TCK + c1 - c0 )))
	add pgb:other "$other"
	add pgb:clcpu "$(div $((c1 - c0)) "$n")"
	log "round $round pgbench c=$PGB_CLIENTS: tps=$tps tx=$n rows=$rows p50=${p50}ms p99=${p99}ms p99.9=${p999}ms pg_cpu=$(fmt "$(div "$pticks" "$n" $(( 1000000 / CLK_TCK )))" 1)us/tx busy=$(fmt "$(div $((tot - idle)) "$tot" 100)")% pgbench_cpu=$(fmt "$(div $((c1 - c0)) "$n")" 1)us/tx other_cpu=$(fmt "$other")%"
	[ "$rows" = "$n" ] || warn "round $round pgbench c=$PGB_CLIENTS: webhook_events has $rows rows but pgbench processed $n transactions"
}

run_ingest() { # ROUND CONNS SECS MEASURE(0|1)
	local round=$1 c=$2 secs=$3 measure=$4 out=$SCRATCH/load-$1-c$2.out rc
	local b a c0 c1 other acked rate p50 p99 p999 non2xx errs rows hwm
	local dticks pticks tot idle acc dup commits cfail rej dur
	reset_table
	wait_quiet
	echo 5 2>/dev/null >"/proc/$DAEMON_PID/clear_refs" || true	# reset VmHWM
	b=$(probe)
	children_cpu_us c0
	timeout "$CHILD_TIMEOUT" "$LOADGEN" -p "$DAEMON_PORT" -c "$c" -d "$secs" \
		-k "$APP_KEY" -s "$APP_SECRET" -S "$TT_SHOP_ID" --prefix "b$$r${round}c${c}n" \
		>"$out" 2>"$out.err" &
	CHILD_PID=$!
	echo "$CHILD_PID" >"$SCRATCH/loadgen.pid"
	rc=0; wait_child || rc=$?
	children_cpu_us c1
	a=$(probe)
	[ "$rc" = 0 ] || { cat "$out" "$out.err" >&2; die "webhook_load failed (status $rc)"; }
	kill -0 "$DAEMON_PID" 2>/dev/null || { tail -n 30 "$SCRATCH/orderflowd.log" >&2; die "orderflowd died during the run"; }
	[ "$measure" = 1 ] || return 0
	dur=$(awk '$1 == "duration" { print $2 }' "$out")
	acked=$(awk '$1 == "acked" { print $2 }' "$out")
	rate=$(awk '$1 == "rate" { print $2 }' "$out")
	non2xx=$(awk '$1 == "non-2xx" { print $2 }' "$out")
	errs=$(awk '$1 == "errors" { print $2 }' "$out")
	read -r p50 p99 p999 <<<"$(awk '$1 == "latency" { print $3, $6, $9 }' "$out")"
	[ -n "$acked" ] && [ -n "$rate" ] && [ -n "$p999" ] && [ -n "$dur" ] || { cat "$out" >&2; die "cannot parse webhook_load output"; }
	rows=$(row_count)
	hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$DAEMON_PID/status")
	read -r dticks pticks tot idle acc dup commits cfail rej <<<"$(paste -d' ' <(echo "$b") <(echo "$a") |
		awk '{ for (i = 1; i <= 9; i++) printf "%s ", $(i + 9) - $i; print "" }')"
	local us=$(( 1000000 / CLK_TCK ))
	add "c$c:rate" "$rate"; add "c$c:p50" "$p50"; add "c$c:p99" "$p99"; add "c$c:p999" "$p999"
	add "c$c:cpu" "$(div "$dticks" "$acked" "$us")"
	add "c$c:pgcpu" "$(div "$pticks" "$acked" "$us")"
	add "c$c:busy" "$(div $((tot - idle)) "$tot" 100)"
	other=$(other_pct $((tot - idle)) "$tot" $(( (dticks + pticks) * 1000000 / CLK_TCK + c1 - c0 )))
	add "c$c:other" "$other"
	add "c$c:clcpu" "$(div $((c1 - c0)) "$acked")"
	add "c$c:cps" "$(div "$commits" "$dur")"
	add "c$c:batch" "$(div "$acc" "$commits")"
	add "c$c:rss" "$hwm"
	log "round $round ingest c=$c: acked=$acked rate=${rate}/s rows=$rows p50=${p50}ms p99=${p99}ms p99.9=${p999}ms" \
		"cpu=$(fmt "$(div "$dticks" "$acked" "$us")" 1)us/webhook pg_cpu=$(fmt "$(div "$pticks" "$acked" "$us")" 1)us/webhook" \
		"busy=$(fmt "$(div $((tot - idle)) "$tot" 100)")% loadgen_cpu=$(fmt "$(div $((c1 - c0)) "$acked")" 1)us/req commits=$commits avg_batch=$(fmt "$(div "$acc" "$commits")" 2) vmhwm=${hwm}kB other_cpu=$(fmt "$other")%"
	[ "$rows" = "$acked" ] || warn "round $round ingest c=$c: webhook_events has $rows rows but webhook_load acknowledged $acked"
	[ "$acc" = "$acked" ] || warn "round $round ingest c=$c: orderflowd counted $acc accepted events, webhook_load $acked acknowledged ($dup duplicates)"
	[ "${non2xx:-0}" = 0 ] || warn "round $round ingest c=$c: $(grep '^non-2xx' "$out")"
	[ "${errs:-0}" = 0 ] || warn "round $round ingest c=$c: $(grep '^errors' "$out")"
	[ "$cfail" = 0 ] || warn "round $round ingest c=$c: $cfail group commits failed"
	[ "$rej" = 0 ] || warn "round $round ingest c=$c: orderflowd rejected $rej webhooks"
}

# ---------------------------------------------------------------- e2e mode
# Every webhook names a new order: the daemon fetches it from the fake
# TikTok server over HTTPS and commits the order, its items, history and
# audit rows.  A run sends at a fixed rate for a fixed time; a sampler counts
# the unprocessed rows every BENCH_SAMPLE_EVERY s.
# Rows of earlier runs stay (as in production; an emptied table would also
# leave the planner with the statistics of an empty table): a run's rows are
# the webhook_events above RUN_FIRST_ID and the orders whose ids start with
# its prefix.
RUN_FIRST_ID=0
e2e_reset() {
	wait_drain
	RUN_FIRST_ID=$(psql_q -c "SELECT coalesce(max(id), 0) FROM webhook_events") || die "cannot read webhook_events"
	psql_q -c "CHECKPOINT" >/dev/null || die "CHECKPOINT failed"
}

# sampler OUT: "SECONDS_SINCE_START BACKLOG PROCESSED" every SAMPLE_EVERY s.
sampler() {
	local out=$1 t0=$SECONDS
	while :; do
		sleep "$SAMPLE_EVERY"
		psql_q -F ' ' -c "SELECT $(( SECONDS - t0 )), count(*) FILTER (WHERE processed_at IS NULL AND dead_at IS NULL),
			count(*) FILTER (WHERE processed_at IS NOT NULL) FROM webhook_events WHERE id > $RUN_FIRST_ID" \
			>>"$out" 2>/dev/null || true
	done
}

pid_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

run_e2e() { # TAG RATE SECS
	local tag=$1 rate=$2 secs=$3 out=$SCRATCH/e2e-$1.out rc b a f0 f1 acked sent dur hwm
	local dticks pticks tot idle acc rows orders dead unproc p50 p99 p999 slope samples bl_end proc_end
	local us=$(( 1000000 / CLK_TCK )) prefix
	e2e_reset
	prefix=9$(date +%s%N | cut -c 1-15)
	wait_quiet
	echo 5 2>/dev/null >"/proc/$DAEMON_PID/clear_refs" || true
	: >"$SCRATCH/samples-$tag"
	b=$(probe); f0=$(pid_ticks "$FAKE_PID")
	timeout "$CHILD_TIMEOUT" "$LOADGEN" -p "$DAEMON_PORT" -c "$E2E_CONNS" -d "$secs" -r "$rate" \
		-k "$APP_KEY" -s "$APP_SECRET" -S "$TT_SHOP_ID" --prefix "$prefix" \
		>"$out" 2>"$out.err" &
	CHILD_PID=$!
	echo "$CHILD_PID" >"$SCRATCH/loadgen.pid"
	sampler "$SCRATCH/samples-$tag" &
	SAMPLER_PID=$!
	rc=0; wait_child || rc=$?
	# what was processed while the load ran
	read -r bl_end proc_end <<<"$(psql_q -F ' ' -c "SELECT count(*) FILTER (WHERE processed_at IS NULL AND dead_at IS NULL),
		count(*) FILTER (WHERE processed_at IS NOT NULL) FROM webhook_events WHERE id > $RUN_FIRST_ID")"
	stop_pid "$SAMPLER_PID" "backlog sampler"; SAMPLER_PID=
	[ "$rc" = 0 ] || { cat "$out" "$out.err" >&2; die "webhook_load failed (status $rc)"; }
	wait_drain
	a=$(probe); f1=$(pid_ticks "$FAKE_PID")
	kill -0 "$DAEMON_PID" 2>/dev/null || { tail -n 30 "$SCRATCH/orderflowd.log" >&2; die "orderflowd died during the run"; }
	dur=$(awk '$1 == "duration" { print $2 }' "$out")
	sent=$(awk '$1 == "sent" { print $2 }' "$out")
	acked=$(awk '$1 == "acked" { print $2 }' "$out")
	[ -n "$acked" ] && [ -n "$dur" ] || { cat "$out" >&2; die "cannot parse webhook_load output"; }
	hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$DAEMON_PID/status")
	read -r dticks pticks tot idle acc <<<"$(paste -d' ' <(echo "$b") <(echo "$a") |
		awk '{ print $10 - $1, $11 - $2, $12 - $3, $13 - $4, $14 - $5 }')"
	read -r rows orders dead unproc p50 p99 p999 <<<"$(psql_q -F ' ' -c "SELECT
		count(*), (SELECT count(*) FROM orders WHERE starts_with(tiktok_order_id, '$prefix')),
		count(*) FILTER (WHERE dead_at IS NOT NULL), count(*) FILTER (WHERE processed_at IS NULL),
		round((percentile_cont(0.5) WITHIN GROUP (ORDER BY d))::numeric, 1),
		round((percentile_cont(0.99) WITHIN GROUP (ORDER BY d))::numeric, 1),
		round((percentile_cont(0.999) WITHIN GROUP (ORDER BY d))::numeric, 1)
		FROM (SELECT processed_at, dead_at, extract(epoch FROM processed_at - received_at) * 1000 AS d
		      FROM webhook_events WHERE id > $RUN_FIRST_ID) e")"
	# least-squares slope of the backlog over the samples (rows/s): a
	# backlog that keeps growing shows as a clearly positive slope.
	slope=$(awk '{ n++; sx += $1; sy += $2; sxx += $1 * $1; sxy += $1 * $2 }
		END { d = n * sxx - sx * sx; if (n < 2 || d == 0) print "nan"; else printf "%.1f\n", (n * sxy - sx * sy) / d }' \
		"$SCRATCH/samples-$tag")
	samples=$(awk '{ printf "%s%s", (NR > 1 ? "," : ""), $2 }' "$SCRATCH/samples-$tag")
	add "$tag:sent" "$(div "$sent" "$dur")"
	add "$tag:acked" "$(div "$acked" "$dur")"
	add "$tag:done" "$(div "$proc_end" "$dur")"
	add "$tag:backlog_end" "$bl_end"
	add "$tag:slope" "$slope"
	add "$tag:drain" "$DRAIN_SECS"
	add "$tag:p50" "$p50"; add "$tag:p99" "$p99"; add "$tag:p999" "$p999"
	add "$tag:cpu" "$(div "$dticks" "$acked" "$us")"
	add "$tag:pgcpu" "$(div "$pticks" "$acked" "$us")"
	add "$tag:fakecpu" "$(div $((f1 - f0)) "$acked" "$us")"
	add "$tag:busy" "$(div $((tot - idle)) "$tot" 100)"
	add "$tag:rss" "$hwm"
	log "run $tag rate=$rate/s: sent=$sent acked=$acked processed_during_load=$proc_end ($(fmt "$(div "$proc_end" "$dur")")/s)" \
		"backlog_at_end=$bl_end samples=[$samples] slope=${slope}/s drain=${DRAIN_SECS}s" \
		"ack_to_order ms p50=$p50 p99=$p99 p99.9=$p999 cpu=$(fmt "$(div "$dticks" "$acked" "$us")" 1)us/webhook" \
		"pg_cpu=$(fmt "$(div "$pticks" "$acked" "$us")" 1)us fake_cpu=$(fmt "$(div $((f1 - f0)) "$acked" "$us")" 1)us vmhwm=${hwm}kB"
	[ "$rows" = "$acked" ] || warn "run $tag: webhook_events has $rows rows but webhook_load acknowledged $acked"
	[ "$acc" = "$acked" ] || warn "run $tag: orderflowd counted $acc accepted events, webhook_load $acked acknowledged"
	[ "$orders" = "$acked" ] || warn "run $tag: $orders orders for $acked acknowledged webhooks (one new order each)"
	[ "$dead" = 0 ] || warn "run $tag: $dead dead letters"
	[ "$unproc" = 0 ] || warn "run $tag: $unproc events not processed"
	[ "$acked" = "$sent" ] || warn "run $tag: $((sent - acked)) webhooks not acknowledged: $(grep -E '^(non-2xx|errors)' "$out" | tr '\n' ' ')"
}

if [ "$MODE" = e2e ]; then
	if [ "$WARMUP" -gt 0 ]; then
		log "warm-up: ${WARMUP}s at $LAT_RATE/s"
		run_e2e w "$LAT_RATE" "$WARMUP" >/dev/null
		R=()
	fi
	# Statistics as a database in service has them: the daemon's cached
	# plans are made again with them (see BUGS in orderflowd(8) for the
	# first minute of an empty database).
	psql_q -c "ANALYZE" || die "ANALYZE failed"
	for ((r = 1; r <= RUNS; r++)); do
		for rate in $E2E_RATES; do run_e2e "r$rate" "$rate" "$E2E_SECS"; done
		run_e2e "l$LAT_RATE" "$LAT_RATE" "$LAT_SECS"
	done
	# shellcheck disable=SC2086  # word splitting of the run lists is wanted
	{
		echo "config mode=e2e runs=$RUNS cpus=$(nproc) workers=$WORKERS pool_size=$POOL_SIZE tt_connections=$TT_CONNS e2e_secs=$E2E_SECS lat_secs=$LAT_SECS conns=$E2E_CONNS pg: $PG_INFO"
		for tag in $(for rate in $E2E_RATES; do echo "r$rate"; done) "l$LAT_RATE"; do
			echo "e2e $tag target=${tag#?}/s acked_per_s median=$(fmt "$(median ${R[$tag:acked]})") processed_during_load_per_s median=$(fmt "$(median ${R[$tag:done]})") runs=$(joinruns 0 ${R[$tag:done]})"
			echo "e2e $tag backlog_at_end median=$(fmt "$(median ${R[$tag:backlog_end]})") runs=$(joinruns 0 ${R[$tag:backlog_end]}) backlog_slope_per_s median=$(fmt "$(median ${R[$tag:slope]})" 1) runs=$(joinruns 1 ${R[$tag:slope]}) drain_s median=$(fmt "$(median ${R[$tag:drain]})")"
			echo "e2e $tag ack_to_order_ms p50 median=$(fmt "$(median ${R[$tag:p50]})" 1) runs=$(joinruns 1 ${R[$tag:p50]}) p99 median=$(fmt "$(median ${R[$tag:p99]})" 1) p99.9 median=$(fmt "$(median ${R[$tag:p999]})" 1)"
			echo "e2e $tag cpu_us_per_webhook median=$(fmt "$(median ${R[$tag:cpu]})" 1) runs=$(joinruns 1 ${R[$tag:cpu]}) (orderflowd, ingest+fetch+apply) pg_cpu_us median=$(fmt "$(median ${R[$tag:pgcpu]})" 1) fake_tiktok_cpu_us median=$(fmt "$(median ${R[$tag:fakecpu]})" 1) machine_busy_pct median=$(fmt "$(median ${R[$tag:busy]})" 0)"
			echo "e2e $tag peak_rss_kb max=$(printf '%s\n' ${R[$tag:rss]} | sort -n | tail -n 1) runs=$(joinruns 0 ${R[$tag:rss]})"
		done
	}
	[ "$WARNINGS" = 0 ] || log "$WARNINGS warning(s)"
	[ "$WARNINGS" = 0 ]
	exit
fi

maxc=0
for c in $CONNS_LIST; do if (( c > maxc )); then maxc=$c; fi; done
if [ "$WARMUP" -gt 0 ]; then
	log "warm-up: pgbench and webhook_load c=$maxc, ${WARMUP}s each"
	run_pgbench w "$WARMUP" 0
	run_ingest w "$maxc" "$WARMUP" 0
fi

KINDS=(pgbench)
for c in $CONNS_LIST; do KINDS+=("c$c"); done
for ((r = 1; r <= RUNS; r++)); do
	n=${#KINDS[@]}
	for ((k = 0; k < n; k++)); do
		kind=${KINDS[$(( (k + r - 1) % n ))]}
		case $kind in
		pgbench) run_pgbench "$r" "$SECS" 1 ;;
		c*) run_ingest "$r" "${kind#c}" "$SECS" 1 ;;
		esac
	done
done

# ---------------------------------------------------------------- summary
# shellcheck disable=SC2086  # word splitting of the run lists is wanted
{
	log "done: ${SECS}s per run, $RUNS run(s) per figure, $(nproc) CPU(s), orderflowd threads=$NTHREADS"
	echo "config secs=$SECS runs=$RUNS cpus=$(nproc) workers=$WORKERS pool_size=$POOL_SIZE max_batch=$MAX_BATCH${DAEMON_ENV:+ daemon_env=${DAEMON_ENV// /,}} pg: $PG_INFO"
	pgb_tps=$(median ${R[pgb:tps]})
	echo "baseline pgbench c=$PGB_CLIENTS j=$PGB_JOBS tps median=$(fmt "$pgb_tps") runs=$(joinruns 0 ${R[pgb:tps]})" \
		"p50_ms=$(fmt "$(median ${R[pgb:p50]})" 3) p99_ms=$(fmt "$(median ${R[pgb:p99]})" 3) p99.9_ms=$(fmt "$(median ${R[pgb:p999]})" 3)"
	echo "baseline pgbench c=$PGB_CLIENTS pg_cpu_us_per_tx median=$(fmt "$(median ${R[pgb:pgcpu]})" 1) runs=$(joinruns 1 ${R[pgb:pgcpu]})" \
		"machine_busy_pct median=$(fmt "$(median ${R[pgb:busy]})" 0) pgbench_client_cpu_us_per_tx median=$(fmt "$(median ${R[pgb:clcpu]})" 1) other_cpu_pct median=$(fmt "$(median ${R[pgb:other]})" 0) runs=$(joinruns 0 ${R[pgb:other]})"
	for c in $CONNS_LIST; do
		echo "ingest c=$c acked_per_s median=$(fmt "$(median ${R[c$c:rate]})") runs=$(joinruns 0 ${R[c$c:rate]})" \
			"p50_ms=$(fmt "$(median ${R[c$c:p50]})" 3) p99_ms=$(fmt "$(median ${R[c$c:p99]})" 3) p99.9_ms=$(fmt "$(median ${R[c$c:p999]})" 3)"
		echo "ingest c=$c cpu_us_per_webhook median=$(fmt "$(median ${R[c$c:cpu]})" 1) runs=$(joinruns 1 ${R[c$c:cpu]}) (orderflowd utime+stime)"
		echo "ingest c=$c pg_cpu_us_per_webhook median=$(fmt "$(median ${R[c$c:pgcpu]})" 1) runs=$(joinruns 1 ${R[c$c:pgcpu]})" \
			"machine_busy_pct median=$(fmt "$(median ${R[c$c:busy]})" 0) loadgen_cpu_us_per_req median=$(fmt "$(median ${R[c$c:clcpu]})" 1) other_cpu_pct median=$(fmt "$(median ${R[c$c:other]})" 0) runs=$(joinruns 0 ${R[c$c:other]})"
		echo "ingest c=$c commits_per_s median=$(fmt "$(median ${R[c$c:cps]})") avg_batch median=$(fmt "$(median ${R[c$c:batch]})" 2) runs=$(joinruns 2 ${R[c$c:batch]})"
		echo "ingest c=$c peak_rss_kb max=$(printf '%s\n' ${R[c$c:rss]} | sort -n | tail -n 1) runs=$(joinruns 0 ${R[c$c:rss]})"
	done
	for c in $CONNS_LIST; do
		echo "ratio ingest$c/pgbench$PGB_CLIENTS=$(fmt "$(div "$(median ${R[c$c:rate]})" "$pgb_tps")" 2)"
	done
}
[ "$WARNINGS" = 0 ] || log "$WARNINGS warning(s)"
[ "$WARNINGS" = 0 ]
