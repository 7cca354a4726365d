# lib.sh - helpers shared by the benchmark scripts (http_bench.sh,
# ingest_bench.sh, api_bench.sh); sourced, not run.
#
# The caller sets BENCH_NAME (the prefix of its messages) and PY (the
# Python interpreter) first, and sources contrib/servers.sh for the stale
# scratch-dir cleanup.  Defines: log, die, udie, is_uint, is_posint,
# stop_pid, proc_starttime, kill_recorded, bench_cleanup_stale,
# bench_new_scratch, free_ports, http_status, wait_ready, psql_q, median, fmt,
# bench_start_servers, bench_start_fake, bench_teardown, bench_migrate_shop,
# joinruns, div, warn (counts WARNINGS), add (appends to the array R),
# wait_child (CHILD_PID), pgb_percentiles.

log() { echo "$BENCH_NAME: $*" >&2; }
die() { echo "$BENCH_NAME: error: $*" >&2; exit 1; }
udie() { echo "$BENCH_NAME: $*" >&2; exit 2; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_posint() { [[ $1 =~ ^0*[1-9][0-9]*$ ]]; }

# stop_pid PID NAME: SIGTERM, up to 20 s grace, then SIGKILL.
stop_pid() {
	local pid=$1 name=$2 i
	[ -n "$pid" ] || return 0
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "$name (pid $pid) ignored SIGTERM, killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

# proc_starttime PID: field 22 of /proc/PID/stat (tells a reused pid apart).
proc_starttime() {
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	s=${s##*) }
	# shellcheck disable=SC2086
	set -- $s
	echo "${20}"
}

# kill_recorded DIR NAME: end the process whose pid DIR/NAME.pid records,
# if it still runs with DIR on its command line (else the pid was reused).
kill_recorded() {
	local dir=$1 name=$2 pid
	[ -r "$dir/$name.pid" ] || return 0
	pid=$(head -n 1 "$dir/$name.pid" 2>/dev/null) || return 0
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/" || return 0
	log "stale run $dir: stopping its $name (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	for _ in {1..50}; do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
}

# bench_cleanup_stale PREFIX NAME...: scratch dirs PREFIX* of earlier runs
# that died without their cleanup (kill -9, a closed terminal...): stop the
# processes recorded as DIR/NAME.pid and the servers, call
# bench_stale_extra DIR when the caller defines it, remove the dir.
bench_cleanup_stale() {
	local prefix=$1 d pid st now name
	shift
	now=$(date +%s)
	for d in "$prefix"*; do
		[ -d "$d" ] || continue
		if [ -r "$d/owner" ]; then
			read -r pid st <"$d/owner" || true
			if [ -n "${pid:-}" ] && [ "$(proc_starttime "$pid" 2>/dev/null)" = "${st:-}" ]; then
				continue	# a run in progress
			fi
		elif (( now - $(stat -c %Y -- "$d") < 60 )); then
			continue	# just being set up by another run
		fi
		log "removing stale scratch dir $d"
		for name in "$@"; do
			kill_recorded "$d" "$name"
		done
		of_redis_stop "$d/redis" >/dev/null 2>&1 || true
		of_pg_stop "$d/pg" >/dev/null 2>&1 || true
		# e.g. backends of a postmaster that was SIGKILLed
		[ ! -d "$d/pg/pgdata" ] || _of_kill_leftovers postgres "$(realpath -m -- "$d/pg/pgdata")" || true
		[ ! -d "$d/redis" ] || _of_kill_leftovers redis-server "$(realpath -m -- "$d/redis")" || true
		if declare -F bench_stale_extra >/dev/null; then
			bench_stale_extra "$d"
		fi
		rm -rf -- "$d"
	done
}

# bench_new_scratch PREFIX: print a new scratch dir PREFIX<random>, owned
# by this run (pid and start time in DIR/owner, for bench_cleanup_stale).
# servers.sh runs the servers as an unprivileged user when we are root and
# creates DIR/pg and DIR/redis itself: that user must reach the dir.
bench_new_scratch() {
	local d
	d=$(mktemp -d "${1}XXXXXX") || return 1
	echo "$$ $(proc_starttime $$)" >"$d/owner"
	chmod 0755 "$d"
	echo "$d"
}

# free_ports N: N distinct free loopback TCP ports, held open together while
# picked so they cannot collide (orderflowd sets SO_REUSEPORT as root, so a
# shared port would silently split the traffic).
free_ports() {
	"$PY" -c '
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
' "$1"
}

# http_status PORT PATH: the HTTP status of GET PATH, or 000 on no answer.
http_status() {
	"$PY" -c '
import http.client, sys
try:
    c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
    c.request("GET", sys.argv[2])
    print(c.getresponse().status)
except Exception:
    print("000")
' "$1" "$2"
}

# wait_ready PID NAME PORT PATH LOGFILE: wait until GET PATH
# answers 200 (at most READY_TIMEOUT seconds); die if PID exits first.
wait_ready() {
	local pid=$1 name=$2 port=$3 path=$4 logf=$5 deadline status
	deadline=$(( SECONDS + READY_TIMEOUT ))
	while :; do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 30 "$logf" >&2 || true
			die "$name exited before $path answered 200"
		fi
		status=$(http_status "$port" "$path")
		[ "$status" = 200 ] && return 0
		if [ "$SECONDS" -ge "$deadline" ]; then
			tail -n 30 "$logf" >&2 || true
			die "$name: $path not 200 after ${READY_TIMEOUT}s (last status $status)"
		fi
		sleep 0.2
	done
}

psql_q() { "$PSQL_BIN" -X -q -At -v ON_ERROR_STOP=1 "$OF_PG_CONNINFO" "$@"; }

median() { # numbers -> median ("nan" for none)
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { if (NR == 0) { print "nan"; exit }
		      if (NR % 2) printf "%.4f\n", v[(NR + 1) / 2];
		      else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
fmt() { awk -v v="$1" -v d="${2:-0}" 'BEGIN { if (v == "nan" || v == "") print "nan"; else printf "%.*f\n", d, v }'; }
joinruns() { # DECIMALS numbers -> a,b,c
	local d=$1 out="" v
	shift
	for v in "$@"; do out="$out${out:+,}$(fmt "$v" "$d")"; done
	echo "$out"
}
div() { awk -v a="$1" -v b="$2" -v m="${3:-1}" 'BEGIN { if (b > 0) printf "%.4f\n", a * m / b; else print "nan" }'; }

WARNINGS=0
warn() { echo "WARNING $*"; log "WARNING $*"; WARNINGS=$((WARNINGS + 1)); }

declare -A R=()	# "figure" -> space-separated values, one per run
add() { R[$1]="${R[$1]:-} $2"; }

CHILD_PID=
# wait_child: wait for CHILD_PID (interruptible by the caller's traps); its status.
wait_child() {
	local rc=0
	wait "$CHILD_PID" || rc=$?
	CHILD_PID=
	return "$rc"
}

# pgb_percentiles LOG...: "p50 p99 p99.9" in ms of pgbench's
# per-transaction logs (3rd field: microseconds).
pgb_percentiles() {
	cat "$@" | awk '{ print $3 }' | sort -n | awk '{ v[NR] = $1 }
		function q(p,  r) { r = int(p * NR); if (r < p * NR) r++; if (r < 1) r = 1; return v[r] / 1000 }
		END { if (NR == 0) print "0 0 0"; else printf "%.3f %.3f %.3f\n", q(0.5), q(0.99), q(0.999) }'
}

# bench_start_servers: a private PostgreSQL 15 (unix socket only, durable:
# fsync and synchronous_commit on, checked) and Redis (unix socket only)
# under $SCRATCH (contrib/servers.sh); sets PG_STARTED, REDIS_STARTED (for
# the caller's cleanup), PGDATA, OF_PG_CONNINFO, OF_REDIS_SOCKET.
bench_start_servers() {
	local pg_port durable
	read -r pg_port <<<"$(free_ports 1)"
	if [ "${OF_PG_FSYNC:-on}" != on ]; then
		log "OF_PG_FSYNC=$OF_PG_FSYNC ignored: this benchmark needs durable commits"
	fi
	export OF_PG_FSYNC=on OF_PG_PORT=$pg_port
	log "starting PostgreSQL (port number $pg_port, unix socket only)"
	PG_STARTED=1
	of_pg_start "$SCRATCH/pg" >"$SCRATCH/pg-start.log" 2>&1 ||
		{ cat "$SCRATCH/pg-start.log" >&2; die "of_pg_start failed"; }
	log "starting Redis (unix socket only)"
	REDIS_STARTED=1
	of_redis_start "$SCRATCH/redis" >"$SCRATCH/redis-start.log" 2>&1 ||
		{ cat "$SCRATCH/redis-start.log" >&2; die "of_redis_start failed"; }
	[ -n "${OF_PG_CONNINFO:-}" ] || die "of_pg_start did not set OF_PG_CONNINFO"
	[ -n "${OF_REDIS_SOCKET:-}" ] || die "of_redis_start did not set OF_REDIS_SOCKET"
	PGDATA=$(realpath -- "$(dirname "$OF_PG_LOG")/pgdata")
	durable=$(psql_q -c "SHOW fsync" -c "SHOW synchronous_commit" | tr '\n' ' ')
	[ "$durable" = "on on " ] || die "PostgreSQL is not durable (fsync synchronous_commit = $durable)"
}

# bench_start_fake ARGS...: the fake TikTok Shop server (HTTPS with a CA made
# in $SCRATCH/tt) with the credentials APP_KEY, APP_SECRET, ACCESS_TOKEN,
# SHOP_CIPHER and the extra faketiktok.py ARGS; sets FAKE_PID and TT_PORT.
bench_start_fake() {
	log "starting the fake TikTok Shop server"
	sh "$SRCDIR/tests/faketiktok/mkcerts.sh" "$SCRATCH/tt" || die "mkcerts.sh failed"
	"$PY" "$SRCDIR/tests/faketiktok/faketiktok.py" --port 0 \
		--cert "$SCRATCH/tt/server.pem" --key "$SCRATCH/tt/server.key" \
		--app-key "$APP_KEY" --app-secret "$APP_SECRET" --access-token "$ACCESS_TOKEN" \
		--shop-cipher "$SHOP_CIPHER" "$@" >"$SCRATCH/faketiktok.out" 2>"$SCRATCH/faketiktok.log" &
	FAKE_PID=$!
	echo "$FAKE_PID" >"$SCRATCH/faketiktok.pid"
	TT_PORT=$(bench_listening "$SCRATCH/faketiktok.out" "$FAKE_PID" faketiktok "$SCRATCH/faketiktok.log") ||
		exit 1
	log "faketiktok on https://127.0.0.1:$TT_PORT (CA $SCRATCH/tt/ca.pem)"
}

# bench_teardown: the end of a run, for the caller's EXIT trap once its own
# processes are stopped: Redis and PostgreSQL (when PG_STARTED and
# REDIS_STARTED say they were), the logs copied to BENCH_KEEP_LOGS when set,
# the scratch dir removed.
bench_teardown() {
	[ -z "${REDIS_STARTED:-}" ] || of_redis_stop "$SCRATCH/redis" >/dev/null 2>&1
	[ -z "${PG_STARTED:-}" ] || of_pg_stop "$SCRATCH/pg" >/dev/null 2>&1
	if [ -n "${BENCH_KEEP_LOGS:-}" ] && [ -n "${SCRATCH:-}" ] && [ -d "$SCRATCH" ]; then
		mkdir -p -- "$BENCH_KEEP_LOGS" &&
			find "$SCRATCH" -maxdepth 3 -type f \( -name '*.log' -o -name '*.out' -o -name '*.conf' \) \
				-exec cp -- {} "$BENCH_KEEP_LOGS"/ \; 2>/dev/null
		[ -z "${OF_PG_LOG:-}" ] || cp -- "$OF_PG_LOG" "$BENCH_KEEP_LOGS/postgresql.log" 2>/dev/null
		log "logs copied to $BENCH_KEEP_LOGS"
	fi
	[ -z "${SCRATCH:-}" ] || [ ! -d "$SCRATCH" ] || rm -rf -- "$SCRATCH"
	return 0
}

# bench_migrate_shop: orderflowd --migrate with $CONF, then the bench
# creator and its shop (TT_SHOP_ID, SHOP_CIPHER, APP_KEY, APP_SECRET,
# ACCESS_TOKEN); sets CREATOR and SHOP_UUID.
bench_migrate_shop() {
	log "running orderflowd --migrate"
	timeout --foreground 120 "$DAEMON" --migrate -c "$CONF" >"$SCRATCH/migrate.log" 2>&1 ||
		{ cat "$SCRATCH/migrate.log" >&2; die "orderflowd --migrate failed"; }
	read -r CREATOR SHOP_UUID <<<"$(psql_q -F ' ' <<EOF
INSERT INTO creators (email, display_name) VALUES ('bench@orderflow.test', 'Bench Creator')
ON CONFLICT (email) DO NOTHING;
INSERT INTO shops (creator_id, tiktok_shop_id, shop_cipher, shop_name, app_key, app_secret,
                   access_token, access_token_expires_at)
SELECT id, '$TT_SHOP_ID', '$SHOP_CIPHER', 'Bench Shop', '$APP_KEY', '$APP_SECRET',
       '$ACCESS_TOKEN', now() + interval '30 days'
FROM creators WHERE email = 'bench@orderflow.test'
ON CONFLICT (tiktok_shop_id) DO NOTHING;
SELECT c.id, s.id FROM creators c JOIN shops s ON s.creator_id = c.id
WHERE s.tiktok_shop_id = '$TT_SHOP_ID';
EOF
)" || die "cannot create the creator and the shop"
	[[ ${SHOP_UUID:-} =~ ^[0-9a-f-]{36}$ ]] || die "unexpected shop id: ${SHOP_UUID:-}"
}

# bench_profile_restart SETTINGS...: restart PostgreSQL with the ALTER SYSTEM
# settings given (name = value strings) and, when BENCH_PROFILE=1,
# pg_stat_statements and auto_explain loaded; then (BENCH_PROFILE=1) the
# extension created, tracking every statement, nested ones too, and
# auto_explain logging the plans of statements slower than
# BENCH_EXPLAIN_MS (200).
bench_profile_restart() {
	local set
	for set in "$@"; do
		psql_q -c "ALTER SYSTEM SET $set" >/dev/null || die "cannot set $set"
	done
	if [ "${BENCH_PROFILE:-0}" = 1 ]; then
		psql_q -c "ALTER SYSTEM SET shared_preload_libraries = pg_stat_statements, auto_explain" \
			-c "ALTER SYSTEM SET log_lock_waits = on" >/dev/null || die "cannot load pg_stat_statements"
	fi
	of_pg_stop "$SCRATCH/pg" >>"$SCRATCH/pg-start.log" 2>&1 || die "of_pg_stop failed"
	of_pg_start "$SCRATCH/pg" >>"$SCRATCH/pg-start.log" 2>&1 ||
		{ cat "$SCRATCH/pg-start.log" >&2; die "PostgreSQL did not restart"; }
	[ "${BENCH_PROFILE:-0}" != 1 ] || psql_q -c "CREATE EXTENSION pg_stat_statements" \
		-c "ALTER SYSTEM SET pg_stat_statements.track = 'all'" \
		-c "ALTER SYSTEM SET auto_explain.log_min_duration = '${BENCH_EXPLAIN_MS:-200}ms'" \
		-c "ALTER SYSTEM SET auto_explain.log_analyze = on" \
		-c "ALTER SYSTEM SET auto_explain.log_nested_statements = on" -c "SELECT pg_reload_conf()" >/dev/null ||
		die "cannot create pg_stat_statements"
}

# bench_profile_report: with BENCH_PROFILE=1, the statements that took the
# most time, on stderr.
bench_profile_report() {
	[ "${BENCH_PROFILE:-0}" = 1 ] || return 0
	log "the statements that took the most time (pg_stat_statements):"
	psql_q -F ' | ' -c "SELECT calls, round(total_exec_time) AS ms, round(mean_exec_time::numeric, 3) AS mean_ms,
		rows, left(regexp_replace(query, '\s+', ' ', 'g'), 110) FROM pg_stat_statements
		ORDER BY total_exec_time DESC LIMIT 25" >&2
}

# cpu_ticks PID: user + system CPU ticks of a process.
cpu_ticks() { awk '{ sub(/.*\) /, ""); split($0, v, " "); print v[12] + v[13] }' "/proc/$1/stat"; }
# pg_ticks: CPU ticks of the PostgreSQL processes now running in PGDATA (the
# daemon's connections live as long as it does, so a run's delta is theirs).
pg_ticks() {
	local t=0 p
	for p in /proc/[0-9]*; do
		[ "$(cat "$p/comm" 2>/dev/null)" = postgres ] || continue
		[ "$(readlink "$p/cwd" 2>/dev/null)" = "$PGDATA" ] || continue
		t=$(( t + $(cpu_ticks "${p#/proc/}" 2>/dev/null || echo 0) ))
	done
	echo "$t"
}

# bench_listening OUT PID NAME LOG: the port a fake printed ("listening
# PORT") on OUT, waiting at most 60 s; fails (with LOG) if PID exits first.
# Run in $(...): the caller exits when it fails.
bench_listening() {
	local out=$1 pid=$2 name=$3 errlog=$4 port= i
	for ((i = 0; i < 600; i++)); do
		port=$(awk '$1 == "listening" { print $2 }' "$out" 2>/dev/null)
		[ -z "$port" ] || break
		kill -0 "$pid" 2>/dev/null || { cat "$errlog" >&2; die "$name exited"; }
		sleep 0.1
	done
	[ -n "$port" ] || die "$name did not print its port"
	echo "$port"
}

# bench_builddir ARGS...: the one BUILD_DIR argument of a benchmark; sets
# BUILDDIR, DAEMON (src/orderflowd) and LOADGEN (tests/bench/webhook_load).
bench_builddir() {
	[ $# -eq 1 ] && [[ $1 != -* ]] || udie "usage: $0 BUILD_DIR"
	[ -d "$1" ] || udie "$1: no such directory"
	BUILDDIR=$(cd "$1" && pwd)
	DAEMON=$BUILDDIR/src/orderflowd
	LOADGEN=$BUILDDIR/tests/bench/webhook_load
}

# bench_config_head PORT WORKERS POOL_SIZE [CLIENT_TIMEOUT]: the [server],
# [log], [postgres] and [redis] sections every benchmark's orderflowd runs
# with (client_timeout 60s unless given).
bench_config_head() {
	cat <<EOF
# generated by tests/bench/$BENCH_NAME.sh
[server]
listen_addr = 127.0.0.1
listen_port = $1
workers = $2
client_timeout = ${4:-60s}
[log]
level = warn
[postgres]
conninfo = $OF_PG_CONNINFO
migrations_dir = $SRCDIR/sql
pool_size = $3
[redis]
socket = $OF_REDIS_SOCKET
EOF
}

# daemon_start / daemon_stop: orderflowd with $CONF on $DAEMON_PORT (under
# $BENCH_WRAPPER when set), its log in $SCRATCH; DAEMON_PID.
daemon_start() {
	# shellcheck disable=SC2086  # BENCH_WRAPPER: a command and its words
	${BENCH_WRAPPER:-} "$DAEMON" -c "$CONF" >>"$SCRATCH/orderflowd.log" 2>&1 &
	DAEMON_PID=$!
	echo "$DAEMON_PID" >"$SCRATCH/orderflowd.pid"
	wait_ready "$DAEMON_PID" orderflowd "$DAEMON_PORT" /readyz "$SCRATCH/orderflowd.log"
}
daemon_stop() { stop_pid "$DAEMON_PID" orderflowd; DAEMON_PID=; }

# begin_run: a fresh daemon (its memory, its connections) and T0, the
# start of the run: every figure counts what committed after T0.  The
# tables are never emptied: plans made for empty tables (seq scans, see
# orderflowd(8) BUGS) would measure the planner, not the engine.
T0=
begin_run() {
	daemon_stop
	psql_q -c "CHECKPOINT" >/dev/null || die "CHECKPOINT failed"
	daemon_start
	T0=$(psql_q -c "SELECT clock_timestamp()")
}

# load TAG ARGS...: webhook_load against the daemon (APP_KEY, APP_SECRET,
# TT_SHOP_ID, bounded by CHILD_TIMEOUT); prints its acknowledged count.
load() {
	local tag=$1 out=$SCRATCH/load-$1.out rc=0
	shift
	timeout "$CHILD_TIMEOUT" "$LOADGEN" -p "$DAEMON_PORT" -k "$APP_KEY" -s "$APP_SECRET" \
		-S "$TT_SHOP_ID" "$@" >"$out" 2>"$out.err" &
	CHILD_PID=$!
	wait_child || rc=$?
	[ "$rc" = 0 ] || { cat "$out" "$out.err" >&2; die "webhook_load failed (status $rc)"; }
	awk '$1 == "acked" { print $2 }' "$out"
}
