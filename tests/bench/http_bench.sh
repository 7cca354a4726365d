#!/usr/bin/env bash
# http_bench.sh - measure orderflowd's HTTP layer against a trivial libevent server.
#
# Usage: tests/bench/http_bench.sh [BUILDDIR]
#
# BUILDDIR (default: the source tree) holds src/orderflowd and
# tests/bench/trivial_httpd.  The script starts a private PostgreSQL and Redis
# in a scratch directory under /tmp, runs `orderflowd --migrate`, then for each
# worker count starts orderflowd and trivial_httpd (same thread count) on free
# loopback ports and runs wrk against orderflowd's /healthz and /readyz and
# trivial_httpd's /, interleaving the runs so that machine noise hits both.
# Everything is stopped and the scratch directory removed on exit, error or
# Ctrl-C.  Only 127.0.0.1 is ever contacted.
#
# Environment:
#   BENCH_DURATION  wrk duration per run (default 10s; wrk syntax: 2s, 1m)
#   BENCH_RUNS      runs per figure (default 3); the median is reported
#   BENCH_CONNS     wrk connections (default 64); wrk uses one thread
#   BENCH_WORKERS   worker counts to measure (default "1 2")
#   BENCH_READY_TIMEOUT  seconds to wait for /readyz = 200 (default 30)
#
# Output: one summary line per figure on stdout, e.g.
#   workers=1 /healthz orderflowd median=27000 req/s (runs 26900 27000 27100) p99=4.10ms | trivial median=30000 req/s (runs ...) p99=3.90ms | ratio=0.90
# Progress goes to stderr.  Exit 0 when every run answered only 2xx, else 1.
set -euo pipefail

PY=/usr/bin/python3
SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILDDIR=${1:-$SRCDIR}
if [ $# -gt 1 ] || [ "${BUILDDIR#-}" != "$BUILDDIR" ]; then
	echo "usage: $0 [BUILDDIR]" >&2
	exit 2
fi
BUILDDIR=$(cd "$BUILDDIR" && pwd)
DAEMON=$BUILDDIR/src/orderflowd
TRIVIAL=$BUILDDIR/tests/bench/trivial_httpd

DURATION=${BENCH_DURATION:-10s}
RUNS=${BENCH_RUNS:-3}
CONNS=${BENCH_CONNS:-64}
WORKERS_LIST=${BENCH_WORKERS:-1 2}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-30}

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_posint() { [[ $1 =~ ^0*[1-9][0-9]*$ ]]; }
is_posint "$RUNS" || die "BENCH_RUNS must be a positive integer: $RUNS"
is_posint "$CONNS" || die "BENCH_CONNS must be a positive integer: $CONNS"
is_uint "$READY_TIMEOUT" || die "BENCH_READY_TIMEOUT must be an integer: $READY_TIMEOUT"
[ -n "${WORKERS_LIST// /}" ] || die "BENCH_WORKERS is empty"
for w in $WORKERS_LIST; do
	is_posint "$w" || die "BENCH_WORKERS: bad worker count: $w"
done

# wrk duration (e.g. 10, 10s, 2m, 1h) in seconds, to bound every run.
duration_seconds() {
	local d=$1
	case $d in
	*[0-9]s) echo "${d%s}" ;;
	*[0-9]m) echo $(( ${d%m} * 60 )) ;;
	*[0-9]h) echo $(( ${d%h} * 3600 )) ;;
	*) echo "$d" ;;
	esac
}
DUR_S=$(duration_seconds "$DURATION")
is_posint "$DUR_S" || die "BENCH_DURATION must be like 10s, 2m: $DURATION"
WRK_TIMEOUT=$(( DUR_S * 2 + 30 ))

[ -x "$DAEMON" ] || die "$DAEMON not built"
[ -x "$TRIVIAL" ] || die "$TRIVIAL not built"
[ -x "$PY" ] || die "$PY not found"
[ -f "$SRCDIR/contrib/servers.sh" ] || die "$SRCDIR/contrib/servers.sh missing"
[ -d "$SRCDIR/sql" ] || die "$SRCDIR/sql missing"

# shellcheck source=SCRIPTDIR/../../contrib/servers.sh
. "$SRCDIR/contrib/servers.sh"

if ! command -v wrk >/dev/null 2>&1; then
	log "installing wrk"
	of_install_packages wrk
	command -v wrk >/dev/null 2>&1 || die "wrk still missing after of_install_packages"
fi

# ---------------------------------------------------------------- cleanup
SCRATCH=
DAEMON_PID=
TRIVIAL_PID=
PG_STARTED=
REDIS_STARTED=
CLEANED=

stop_pid() { # PID NAME: SIGTERM, wait up to 20 s, then SIGKILL
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

# shellcheck disable=SC2317  # invoked through the EXIT trap
cleanup() {
	local rc=$?
	[ -z "$CLEANED" ] || return 0
	CLEANED=1
	trap '' INT TERM HUP
	set +e
	stop_pid "$DAEMON_PID" orderflowd
	stop_pid "$TRIVIAL_PID" trivial_httpd
	DAEMON_PID=''
	TRIVIAL_PID=''
	[ -z "$REDIS_STARTED" ] || of_redis_stop "$SCRATCH/redis" >/dev/null 2>&1
	[ -z "$PG_STARTED" ] || of_pg_stop "$SCRATCH/pg" >/dev/null 2>&1
	if [ -n "$SCRATCH" ] && [ -d "$SCRATCH" ]; then
		rm -rf -- "$SCRATCH"
	fi
	return "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM HUP

SCRATCH=$(mktemp -d /tmp/of-bench.XXXXXX)
# servers.sh runs the servers as an unprivileged user (root runs them as
# "orderflow") and creates DIR itself: it must be able to reach the scratch
# dir, and DIR must not exist yet (else it is root's and it falls back to
# /var/tmp, out of reach of the cleanup).
chmod 0755 "$SCRATCH"
# Nothing here needs durable commits; a caller may still override it.
export OF_PG_FSYNC=${OF_PG_FSYNC:-off}

# ---------------------------------------------------------------- helpers
# free_ports N: N distinct free loopback TCP ports, held open together while
# picked so they cannot collide (orderflowd and trivial_httpd both set
# SO_REUSEPORT as root, so a shared port would silently split the traffic).
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

# wait_ready PID NAME PORT PATH LOGFILE: wait until GET PATH answers 200.
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

# write_config FILE PORT WORKERS
write_config() {
	cat >"$1" <<EOF
# generated by tests/bench/http_bench.sh
[server]
listen_addr = 127.0.0.1
listen_port = $2
workers = $3

[log]
level = warn

[postgres]
conninfo = $OF_PG_CONNINFO
migrations_dir = $SRCDIR/sql

[redis]
socket = $OF_REDIS_SOCKET
EOF
}

median() { # numbers on the command line -> median
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { if (NR % 2) printf "%.2f\n", v[(NR + 1) / 2];
		      else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# run_wrk LABEL URL PIDTOCHECK LOGFILE OUTFILE: one wrk run; sets WRK_RPS,
# WRK_P99_MS, WRK_NON2XX, WRK_SOCKERR.
run_wrk() {
	local label=$1 url=$2 pid=$3 logf=$4 out=$5
	if ! timeout --foreground "$WRK_TIMEOUT" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$url" >"$out" 2>&1; then
		cat "$out" >&2
		die "wrk failed or timed out against $label ($url)"
	fi
	if ! kill -0 "$pid" 2>/dev/null; then
		tail -n 30 "$logf" >&2 || true
		die "$label exited during the run"
	fi
	WRK_RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
	WRK_P99_MS=$(awk '$1 == "99%" {
		v = $2
		if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v) }
		else if (v ~ /m$/) { sub(/m$/, "", v); v *= 60000 }
		else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }
		printf "%.2f\n", v }' "$out")
	WRK_NON2XX=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
	WRK_SOCKERR=$(awk '/Socket errors:/ { sub(/^ *Socket errors: */, ""); print }' "$out")
	if [ -z "$WRK_RPS" ] || [ -z "$WRK_P99_MS" ]; then
		cat "$out" >&2
		die "cannot parse wrk output for $label"
	fi
	WRK_NON2XX=${WRK_NON2XX:-0}
}

# ---------------------------------------------------------------- servers
log "scratch directory $SCRATCH"
log "starting PostgreSQL"
PG_STARTED=1
of_pg_start "$SCRATCH/pg" >"$SCRATCH/pg-start.log" 2>&1 || { cat "$SCRATCH/pg-start.log" >&2; die "of_pg_start failed"; }
log "starting Redis"
REDIS_STARTED=1
of_redis_start "$SCRATCH/redis" >"$SCRATCH/redis-start.log" 2>&1 || { cat "$SCRATCH/redis-start.log" >&2; die "of_redis_start failed"; }
[ -n "${OF_PG_CONNINFO:-}" ] || die "of_pg_start did not set OF_PG_CONNINFO"
[ -n "${OF_REDIS_SOCKET:-}" ] || die "of_redis_start did not set OF_REDIS_SOCKET"

read -r port_migrate _ <<<"$(free_ports 1)"
write_config "$SCRATCH/migrate.conf" "$port_migrate" 1
log "running orderflowd --migrate"
if ! timeout --foreground 120 "$DAEMON" -c "$SCRATCH/migrate.conf" --migrate >"$SCRATCH/migrate.log" 2>&1; then
	cat "$SCRATCH/migrate.log" >&2
	die "orderflowd --migrate failed"
fi

# ---------------------------------------------------------------- runs
FAILED=0
TARGETS=(healthz trivial readyz)   # run order within a round; rotated each round

for W in $WORKERS_LIST; do
	read -r port_d port_t <<<"$(free_ports 2)"
	conf=$SCRATCH/orderflowd-w$W.conf
	dlog=$SCRATCH/orderflowd-w$W.log
	tlog=$SCRATCH/trivial-w$W.log
	write_config "$conf" "$port_d" "$W"

	log "workers=$W: orderflowd on 127.0.0.1:$port_d, trivial_httpd on 127.0.0.1:$port_t"
	"$DAEMON" -c "$conf" >"$dlog" 2>&1 &
	DAEMON_PID=$!
	"$TRIVIAL" -p "$port_t" -t "$W" >"$tlog" 2>&1 &
	TRIVIAL_PID=$!
	wait_ready "$DAEMON_PID" orderflowd "$port_d" /readyz "$dlog"
	wait_ready "$TRIVIAL_PID" trivial_httpd "$port_t" / "$tlog"

	declare -A RPS=() P99=() BAD=()
	for ((r = 1; r <= RUNS; r++)); do
		n=${#TARGETS[@]}
		for ((k = 0; k < n; k++)); do
			tgt=${TARGETS[$(( (k + r - 1) % n ))]}
			case $tgt in
			healthz) label="orderflowd /healthz"; url="http://127.0.0.1:$port_d/healthz"; pid=$DAEMON_PID; lf=$dlog ;;
			readyz) label="orderflowd /readyz"; url="http://127.0.0.1:$port_d/readyz"; pid=$DAEMON_PID; lf=$dlog ;;
			trivial) label="trivial_httpd /"; url="http://127.0.0.1:$port_t/"; pid=$TRIVIAL_PID; lf=$tlog ;;
			esac
			run_wrk "$label" "$url" "$pid" "$lf" "$SCRATCH/wrk-w$W-$tgt-$r.out"
			RPS[$tgt]="${RPS[$tgt]:-} $WRK_RPS"
			P99[$tgt]="${P99[$tgt]:-} $WRK_P99_MS"
			extra=
			if [ "$WRK_NON2XX" != 0 ]; then
				BAD[$tgt]=$(( ${BAD[$tgt]:-0} + WRK_NON2XX ))
				extra=" non-2xx=$WRK_NON2XX"
			fi
			[ -z "$WRK_SOCKERR" ] || extra="$extra socket-errors: $WRK_SOCKERR"
			log "workers=$W run $r/$RUNS $label: $WRK_RPS req/s p99=${WRK_P99_MS}ms$extra"
		done
	done

	stop_pid "$DAEMON_PID" orderflowd
	stop_pid "$TRIVIAL_PID" trivial_httpd
	DAEMON_PID=''
	TRIVIAL_PID=''

	# shellcheck disable=SC2086  # word splitting of the run lists is wanted
	{
		t_med=$(median ${RPS[trivial]})
		t_p99=$(median ${P99[trivial]})
		for tgt in healthz readyz; do
			d_med=$(median ${RPS[$tgt]})
			d_p99=$(median ${P99[$tgt]})
			ratio=$(awk -v a="$d_med" -v b="$t_med" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
			runs=$(printf '%.0f ' ${RPS[$tgt]}); runs=${runs% }
			truns=$(printf '%.0f ' ${RPS[trivial]}); truns=${truns% }
			line=$(printf 'workers=%s /%s orderflowd median=%.0f req/s (runs %s) p99=%.2fms | trivial median=%.0f req/s (runs %s) p99=%.2fms | ratio=%s' \
				"$W" "$tgt" "$d_med" "$runs" "$d_p99" "$t_med" "$truns" "$t_p99" "$ratio")
			if [ -n "${BAD[$tgt]:-}" ] || [ -n "${BAD[trivial]:-}" ]; then
				line="$line | INVALID: non-2xx answers (orderflowd ${BAD[$tgt]:-0}, trivial ${BAD[trivial]:-0})"
				FAILED=1
			fi
			echo "$line"
		done
	}
	unset RPS P99 BAD
done

log "done: wrk -t1 -c$CONNS -d$DURATION, $RUNS run(s) per figure, $(nproc) CPU(s)"
exit "$FAILED"
