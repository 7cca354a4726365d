# shellcheck shell=bash
# contrib/servers.sh: private PostgreSQL and Redis servers for orderflowd,
# plus the build helpers shared by contrib/quickstart.sh and contrib/test.sh.
#
# Source it; sourcing only defines functions and OF_BUILD_DEPS.  It does not
# run `set -euo pipefail` because that would change the caller's shell, so
# every function checks its own steps and returns non-zero on failure (which
# also keeps them correct when called from `if` or `||`, where errexit is off).
#
#   of_run_user              user that runs the servers
#   of_pg_start DIR          start (or reuse) PostgreSQL, export OF_PG_CONNINFO
#   of_pg_stop DIR           stop it; fine when not running
#   of_redis_start DIR       start (or reuse) Redis, export OF_REDIS_SOCKET
#   of_redis_stop DIR        stop it; fine when not running
#   of_install_packages PKG  install missing Debian packages
#   of_autoreconf SRCDIR     autoreconf when needed (and undo in-tree builds)
#   of_configure SRCDIR BUILDDIR ARGS...  VPATH configure when needed
#
# Environment: OF_PG_PORT (default 5432), OF_PG_FSYNC (on|off, default on,
# sets fsync and synchronous_commit), OF_PG_MAX_CONNECTIONS (default 200).
# Besides OF_PG_CONNINFO: OF_PG_SOCKDIR and OF_PG_LOG; besides
# OF_REDIS_SOCKET: OF_REDIS_LOG.
#
# Files, under DIR (or /var/tmp/orderflow-HASH when the run user cannot
# write DIR, or when socket paths would get too long):
#   pgdata/ pgsock/ postgresql.log  redis.conf redis.pid redis.log redis.sock

# Debian packages needed to build orderflowd and run all its tests.
# shellcheck disable=SC2034 # used by the scripts that source this file
OF_BUILD_DEPS="build-essential autoconf automake libtool pkg-config libevent-dev
libpq-dev libhiredis-dev libssl-dev libjansson-dev libinih-dev libjwt-dev
libsystemd-dev libcmocka-dev zlib1g-dev postgresql redis-server python3-pytest
python3-psycopg2 python3-redis python3-yaml python3-jsonschema wrk mandoc clang libclang-rt-14-dev openssl
systemd"

OF_PG_BIN=${OF_PG_BIN:-/usr/lib/postgresql/15/bin}

_of_err() { printf 'orderflow: %s\n' "$*" >&2; }

# ---------------------------------------------------------------- users

# initdb and postgres refuse to run as root, so root runs both servers as a
# dedicated system user; anybody else runs them as themselves.
of_run_user() {
	if ((EUID != 0)); then
		id -un
		return
	fi
	if ! getent passwd orderflow >/dev/null; then
		useradd --system --no-create-home --shell /usr/sbin/nologin orderflow >&2 ||
			{ _of_err "cannot create system user orderflow"; return 1; }
	fi
	echo orderflow
}

# _of_as USER CMD...: run CMD as USER.  From / because postgres and initdb
# fail when they cannot read the current directory (e.g. /root).
_of_as() {
	local user=$1
	shift
	if ((EUID == 0)) && [[ $user != root ]]; then
		(cd / && runuser -u "$user" -- "$@")
	else
		(cd / && "$@")
	fi
}

# ---------------------------------------------------------------- state dir

_of_fallback_dir() {
	local sum
	sum=$(printf '%s' "$1" | sha1sum) || return 1
	printf '/var/tmp/orderflow-%s\n' "${sum:0:12}"
}

# Unix socket paths must fit sun_path; stay well under its 108 bytes.  The
# longest port is assumed so that start and stop agree whatever OF_PG_PORT is.
_of_sockets_fit() {
	local pg="$1/pgsock/.s.PGSQL.65535" redis="$1/redis.sock"
	((${#pg} < 100 && ${#redis} < 100))
}

# _of_make_dir_for USER DIR: create DIR if needed (giving a new one to USER)
# and succeed when USER can write it.
_of_make_dir_for() {
	local user=$1 dir=$2 made=
	if [[ ! -d $dir ]]; then
		mkdir -p -- "$dir" 2>/dev/null || return 1
		made=1
		if ((EUID == 0)); then
			chown -- "$user:" "$dir" || return 1
		fi
	fi
	_of_as "$user" test -w "$dir" -a -x "$dir" && return 0
	# e.g. under /root: USER cannot even reach it, so leave no empty dir.
	[[ -z $made ]] || rmdir -- "$dir" 2>/dev/null
	return 1
}

# _of_state_dir DIR: print the directory that really holds the files for DIR.
_of_state_dir() {
	local dir user fb why
	dir=$(realpath -m -- "$1") || return 1
	user=$(of_run_user) || return 1
	if ! _of_sockets_fit "$dir"; then
		why="socket paths under $dir would be too long"
	elif ! _of_make_dir_for "$user" "$dir"; then
		why="$user cannot write $dir"
	else
		printf '%s\n' "$dir"
		return 0
	fi
	fb=$(_of_fallback_dir "$dir") || return 1
	_of_err "$why; keeping the server files in $fb instead"
	if ! _of_make_dir_for "$user" "$fb"; then
		_of_err "$user cannot write $fb either"
		return 1
	fi
	# /var/tmp is world-writable: never use a directory somebody else made.
	if [[ $(stat -c %U -- "$fb") != "$user" ]]; then
		_of_err "$fb is not owned by $user; remove it"
		return 1
	fi
	chmod 0700 -- "$fb"
	printf '%s\n' "$fb"
}

# Both places the files for DIR can be in, without creating anything (stop).
_of_state_candidates() {
	local dir
	dir=$(realpath -m -- "$1") || return 1
	printf '%s\n' "$dir"
	_of_fallback_dir "$dir"
}

# ---------------------------------------------------------------- processes

# _of_procs_in COMM DIR: pids of COMM processes whose cwd is DIR.  Both
# servers chdir to their data directory, so this recognises our servers
# even when a pid file is stale or its pid was reused by something else.
_of_procs_in() {
	local comm=$1 dir=$2 p c
	for p in /proc/[0-9]*; do
		c=
		{ read -r c <"$p/comm"; } 2>/dev/null
		[[ $c == "$comm" ]] || continue
		[[ $(readlink -- "$p/cwd" 2>/dev/null) == "$dir" ]] && printf '%s\n' "${p#/proc/}"
	done
	return 0
}

# _of_live_pid PIDFILE COMM DIR: print the pid in PIDFILE if that process is
# a COMM running in DIR (not merely some process that got the same pid).
_of_live_pid() {
	local pidfile=$1 comm=$2 dir=$3 pid pids
	[[ -r $pidfile ]] || return 1
	pid=$(head -n 1 -- "$pidfile" 2>/dev/null) || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	# (no pipe into grep -q: under pipefail its early exit would fail the pipe)
	pids=$(_of_procs_in "$comm" "$dir")
	grep -qx -- "$pid" <<<"$pids" || return 1
	printf '%s\n' "$pid"
}

# _of_kill_leftovers COMM DIR: end COMM processes still running in DIR
# without their server (e.g. postgres backends after a kill -9 of the
# postmaster: a new postmaster refuses to start while they hold the old
# shared memory).  TERM, up to 5 s grace, then KILL.
_of_kill_leftovers() {
	local comm=$1 dir=$2 pids i
	for i in {1..100}; do
		pids=$(_of_procs_in "$comm" "$dir")
		[[ -n $pids ]] || return 0
		case $i in
		1) _of_err "ending leftover $comm processes in $dir: ${pids//$'\n'/ }"
			# shellcheck disable=SC2086 # one pid per word
			kill -TERM $pids 2>/dev/null ;;
		50)
			# shellcheck disable=SC2086
			kill -KILL $pids 2>/dev/null ;;
		esac
		sleep 0.1
	done
	_of_err "$comm processes in $dir do not exit: ${pids//$'\n'/ }"
	return 1
}

# ---------------------------------------------------------------- PostgreSQL

# _of_pg_port STATE: the port to use, checked.
_of_pg_port() {
	local port=${OF_PG_PORT:-5432}
	if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
		_of_err "OF_PG_PORT: not a port number: $port"
		return 1
	fi
	echo "$port"
}

_of_pg_fsync() {
	local v=${OF_PG_FSYNC:-on}
	case $v in
	on | off | true | false | yes | no | 1 | 0) echo "$v" ;;
	*) _of_err "OF_PG_FSYNC: expected on or off, not $v"; return 1 ;;
	esac
}

# _of_pg_init USER STATE: initdb on first use.  initdb works in pgdata.new
# and is renamed when complete, so a killed initdb is simply redone.
_of_pg_init() {
	local user=$1 state=$2
	local pgdata=$state/pgdata tmp=$state/pgdata.new
	if [[ -f $pgdata/PG_VERSION ]]; then
		return 0
	fi
	if [[ -e $pgdata ]]; then
		_of_err "$pgdata exists but is no PostgreSQL data directory; remove it"
		return 1
	fi
	rm -rf -- "$tmp"
	_of_err "initdb $pgdata"
	if ! _of_as "$user" "$OF_PG_BIN/initdb" -D "$tmp" -A trust -U orderflow \
		-E UTF8 --locale=C >"$state/initdb.log" 2>&1; then
		cat -- "$state/initdb.log" >&2
		_of_err "initdb failed (log: $state/initdb.log)"
		return 1
	fi
	mv -- "$tmp" "$pgdata"
}

# _of_pg_conf USER STATE PORT: our settings go into pgdata/orderflow.conf,
# rewritten on every start so OF_PG_* changes apply; postgresql.conf only
# gets an include line.  Single quotes in paths are doubled for PG.
_of_pg_conf() {
	local user=$1 state=$2 port=$3 fsync maxconn
	local pgdata=$state/pgdata sock=$state/pgsock
	fsync=$(_of_pg_fsync) || return 1
	maxconn=${OF_PG_MAX_CONNECTIONS:-200}
	if ! grep -q "^include_if_exists = 'orderflow.conf'" "$pgdata/postgresql.conf"; then
		printf "\ninclude_if_exists = 'orderflow.conf'\n" |
			_of_as "$user" tee -a -- "$pgdata/postgresql.conf" >/dev/null || return 1
	fi
	printf '%s\n' \
		"# written by contrib/servers.sh on every start: set OF_PG_* instead" \
		"listen_addresses = ''" \
		"unix_socket_directories = '${sock//\'/\'\'}'" \
		"port = $port" \
		"fsync = $fsync" \
		"synchronous_commit = $fsync" \
		"max_connections = $maxconn" |
		_of_as "$user" tee -- "$pgdata/orderflow.conf" >/dev/null
}

# Quote a libpq conninfo value when it needs it.
_of_conninfo_value() {
	local v=$1
	if [[ $v =~ ^[A-Za-z0-9_./-]+$ ]]; then
		printf '%s' "$v"
	else
		v=${v//\\/\\\\}
		printf "'%s'" "${v//\'/\\\'}"
	fi
}

_of_pg_createdb() {
	local sock=$1 port=$2 exists
	local psql=("$OF_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -U orderflow -d postgres)
	exists=$("${psql[@]}" -Atc "SELECT 1 FROM pg_database WHERE datname = 'orderflow'") || return 1
	[[ $exists == 1 ]] && return 0
	# A concurrent caller may win the race; only its absence afterwards is an error.
	"${psql[@]}" -c 'CREATE DATABASE orderflow' 2>/dev/null ||
		[[ $("${psql[@]}" -Atc "SELECT 1 FROM pg_database WHERE datname = 'orderflow'") == 1 ]] ||
		{ _of_err "cannot create database orderflow"; return 1; }
}

of_pg_start() {
	if (($# != 1)); then
		_of_err "usage: of_pg_start DIR"
		return 2
	fi
	local state user port pid pgdata sock log host
	state=$(_of_state_dir "$1") || return 1
	user=$(of_run_user) || return 1
	port=$(_of_pg_port) || return 1
	pgdata=$state/pgdata sock=$state/pgsock log=$state/postgresql.log
	_of_pg_init "$user" "$state" || return 1
	_of_as "$user" mkdir -p -m 0700 -- "$sock" || return 1

	if pid=$(_of_live_pid "$pgdata/postmaster.pid" postgres "$pgdata"); then
		# Reuse it on the port it listens on; fsync and synchronous_commit
		# are reloadable, so OF_PG_FSYNC still applies.
		port=$(sed -n 4p -- "$pgdata/postmaster.pid")
		_of_err "reusing PostgreSQL (pid $pid, port $port) in $pgdata"
		_of_pg_conf "$user" "$state" "$port" || return 1
		_of_as "$user" "$OF_PG_BIN/pg_ctl" -D "$pgdata" -s reload || return 1
		if ! "$OF_PG_BIN/pg_isready" -q -t 30 -h "$sock" -p "$port"; then
			_of_err "PostgreSQL (pid $pid) in $pgdata does not accept connections"
			return 1
		fi
	else
		# Whatever a killed earlier run left behind would block the start.
		_of_kill_leftovers postgres "$pgdata" || return 1
		rm -f -- "$pgdata/postmaster.pid" "$sock"/.s.PGSQL.*
		_of_pg_conf "$user" "$state" "$port" || return 1
		if ! _of_as "$user" "$OF_PG_BIN/pg_ctl" -D "$pgdata" -l "$log" -w -t 60 -s start; then
			tail -n 20 -- "$log" >&2
			_of_err "PostgreSQL did not start (log: $log)"
			return 1
		fi
		_of_err "PostgreSQL started in $pgdata (socket $sock, port $port)"
	fi
	_of_pg_createdb "$sock" "$port" || return 1
	host=$(_of_conninfo_value "$sock")
	export OF_PG_SOCKDIR=$sock OF_PG_LOG=$log
	export OF_PG_CONNINFO="host=$host port=$port user=orderflow dbname=orderflow"
}

of_pg_stop() {
	if (($# != 1)); then
		_of_err "usage: of_pg_stop DIR"
		return 2
	fi
	local state states user pgdata
	user=$(of_run_user) || return 1
	mapfile -t states < <(_of_state_candidates "$1")
	for state in "${states[@]}"; do
		pgdata=$state/pgdata
		# pg_ctl would signal whatever process now has the recorded pid.
		_of_live_pid "$pgdata/postmaster.pid" postgres "$pgdata" >/dev/null || continue
		_of_as "$user" "$OF_PG_BIN/pg_ctl" -D "$pgdata" -m fast -w -t 60 -s stop || return 1
		_of_err "PostgreSQL in $pgdata stopped"
	done
}

# ---------------------------------------------------------------- Redis

# Redis config strings: double quotes with backslash escapes.
_of_redis_quote() {
	local v=${1//\\/\\\\}
	printf '"%s"' "${v//\"/\\\"}"
}

_of_redis_wait() {
	local sock=$1 i
	for i in {1..100}; do
		[[ -S $sock && $(redis-cli -s "$sock" ping 2>/dev/null) == PONG ]] && return 0
		sleep 0.1
	done
	return 1
}

of_redis_start() {
	if (($# != 1)); then
		_of_err "usage: of_redis_start DIR"
		return 2
	fi
	local state user pid sock log
	state=$(_of_state_dir "$1") || return 1
	user=$(of_run_user) || return 1
	sock=$state/redis.sock log=$state/redis.log

	if pid=$(_of_live_pid "$state/redis.pid" redis-server "$state"); then
		_of_err "reusing Redis (pid $pid) in $state"
	else
		_of_kill_leftovers redis-server "$state" || return 1
		rm -f -- "$state/redis.pid" "$sock"
		# No TCP, no persistence: the socket is the only way in, and the
		# daemon treats Redis as a cache.  770: the run user's group may connect.
		printf '%s\n' \
			"# written by contrib/servers.sh on every start" \
			"port 0" \
			"unixsocket $(_of_redis_quote "$sock")" \
			"unixsocketperm 770" \
			"daemonize yes" \
			"pidfile $(_of_redis_quote "$state/redis.pid")" \
			"logfile $(_of_redis_quote "$log")" \
			"dir $(_of_redis_quote "$state")" \
			'save ""' \
			"appendonly no" |
			_of_as "$user" tee -- "$state/redis.conf" >/dev/null || return 1
		_of_as "$user" /usr/bin/redis-server "$state/redis.conf" || return 1
	fi
	if ! _of_redis_wait "$sock"; then
		tail -n 20 -- "$log" >&2
		_of_err "Redis does not answer on $sock (log: $log)"
		return 1
	fi
	[[ -n ${pid:-} ]] || _of_err "Redis started in $state (socket $sock)"
	export OF_REDIS_SOCKET=$sock OF_REDIS_LOG=$log
}

of_redis_stop() {
	if (($# != 1)); then
		_of_err "usage: of_redis_stop DIR"
		return 2
	fi
	local state states pid i
	mapfile -t states < <(_of_state_candidates "$1")
	for state in "${states[@]}"; do
		pid=$(_of_live_pid "$state/redis.pid" redis-server "$state") || continue
		kill -TERM "$pid" 2>/dev/null
		for i in {1..100}; do
			_of_live_pid "$state/redis.pid" redis-server "$state" >/dev/null || break
			sleep 0.1
		done
		# Not gone after 10 s: force it (there is nothing to save anyway).
		_of_kill_leftovers redis-server "$state" || return 1
		rm -f -- "$state/redis.pid" "$state/redis.sock"
		_of_err "Redis in $state stopped"
	done
}

# ---------------------------------------------------------------- packages

# of_install_packages PKG...: arguments may also be whitespace-separated
# lists, so both "$OF_BUILD_DEPS" and $OF_BUILD_DEPS work.
of_install_packages() {
	local arg pkg status missing=() sudo=() list
	for arg in "$@"; do
		read -r -d '' -a list <<<"$arg" || true
		for pkg in "${list[@]}"; do
			status=$(dpkg-query -W -f="\${db:Status-Status}\n" "$pkg" 2>/dev/null) || status=
			grep -qx installed <<<"$status" || missing+=("$pkg")
		done
	done
	((${#missing[@]} > 0)) || return 0
	if ((EUID != 0)); then
		command -v sudo >/dev/null || { _of_err "need root or sudo to install: ${missing[*]}"; return 1; }
		sudo=(sudo)
	fi
	_of_err "installing: ${missing[*]}"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update || return 1
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y --no-install-recommends "${missing[@]}"
}

# ---------------------------------------------------------------- building

# of_autoreconf SRCDIR: make SRCDIR ready for VPATH builds.  An in-tree
# configure makes VPATH configures refuse (and its objects could be picked
# up through VPATH), so it is distcleaned.  autoreconf runs only when its
# inputs changed since the last complete run (build/.autoreconf-stamp), so
# that existing build dirs are not all reconfigured every time.
of_autoreconf() {
	local src=$1 stamp=$1/build/.autoreconf-stamp f
	if [[ -f $src/config.status ]]; then
		_of_err "$src was configured in-tree; running make distclean there"
		make -C "$src" distclean >/dev/null ||
			{ _of_err "make distclean in $src failed; clean it by hand"; return 1; }
	fi
	if [[ -x $src/configure && -f $stamp ]]; then
		local stale=
		for f in "$src/configure.ac" "$src/Makefile.am" "$src"/m4/*.m4; do
			[[ -e $f && $f -nt $stamp ]] && stale=1
		done
		[[ -n $stale ]] || return 0
	fi
	rm -f -- "$stamp"
	(cd "$src" && autoreconf -fi) || { _of_err "autoreconf failed in $src"; return 1; }
	mkdir -p -- "$src/build" && touch -- "$stamp"
}

# of_configure SRCDIR BUILDDIR ARGS...: configure BUILDDIR unless it already
# completed a configure with exactly these ARGS (stamp written only after
# success, so a killed configure is redone from an empty directory).
of_configure() {
	local src=$1 build=$2 want
	shift 2
	want=$(printf '%s\n' "$@")
	if [[ -f $build/Makefile && -f $build/.of-configured &&
		$(<"$build/.of-configured") == "$want" ]]; then
		_of_err "$build: already configured with these options"
		return 0
	fi
	rm -rf -- "$build"
	mkdir -p -- "$build" || return 1
	(cd "$build" && "$src/configure" "$@") || { _of_err "configure failed in $build"; return 1; }
	printf '%s\n' "$want" >"$build/.of-configured"
}
