#!/usr/bin/env bash
# contrib/quickstart.sh: build orderflowd and run it in the foreground
# against a private PostgreSQL and Redis, on a Debian 12 machine (as root,
# or with sudo for the package installation).
#
#   contrib/quickstart.sh        (OF_PORT=8081 to listen elsewhere)
#
# Build: build/quickstart.  Config, pid files, secrets and server data:
# run/ (data is kept between runs).  ^C (or SIGINT/SIGTERM/SIGHUP to this
# script, e.g. kill -TERM -- -PGID of its process group when it runs in the
# background) stops orderflowd, the fake servers, Redis and PostgreSQL; what
# a killed (kill -9) earlier run left running is stopped at the next start.
#
# TikTok Shop itself cannot be reached from here, so the demo shop talks to
# the fake TikTok Shop server of the tests (tests/faketiktok, real HTTPS and
# signing, with a test CA in run/tt): webhooks sent with
# contrib/send-webhook.sh become orders.  The demo creator is made with
# orderflowd --create-creator and its shop connected through the fake's
# authorization page and token endpoints, as a real one is through
# TikTok's.  Labels of seller-shipped orders
# are bought from the fake carrier of the tests (tests/fakecarrier, an
# EasyPost v2 API, same test CA), whose tracker events come back signed to
# POST /webhooks/carrier.  For real shops, point tiktok.api_base,
# authorize_url and auth_base at TikTok and set your app's app_key,
# app_secret_file and service_id; for a real carrier, carrier.api_base,
# api_key_file and webhook_secret_file.
set -euo pipefail

SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
BUILDDIR=$SRCDIR/build/quickstart
RUNDIR=$SRCDIR/run
# A subdirectory that servers.sh creates itself, so that it can hand it to
# the server user (run/ itself stays the invoking user's).
DATADIR=$RUNDIR/data
CONF=$RUNDIR/orderflowd.conf
PIDFILE=$RUNDIR/orderflowd.pid
FAKE_PIDFILE=$RUNDIR/faketiktok.pid
FAKE_PID=
FAKE_PORT=
CARRIER_PIDFILE=$RUNDIR/fakecarrier.pid
# The demo app's secret (0600) and service id, as Partner Center gives them.
APP_SECRET_FILE=$RUNDIR/tiktok-app.secret
DEMO_SERVICE_ID=7000000000000000001
CARRIER_PID=
CARRIER_PORT=
# The fake carrier's API key and webhook secret (0600, kept between runs).
CARRIER_KEY_FILE=$RUNDIR/carrier.key
CARRIER_SECRET_FILE=$RUNDIR/carrier.secret
ADMIN_TOKEN=
PORT=${OF_PORT:-8080}
DAEMON=$BUILDDIR/src/orderflowd
DAEMON_PID=

# shellcheck source=servers.sh source-path=SCRIPTDIR
. "$SRCDIR/contrib/servers.sh"

die() {
	printf 'quickstart: %s\n' "$*" >&2
	exit 1
}

say() { printf 'quickstart: %s\n' "$*" >&2; }

build() {
	of_autoreconf "$SRCDIR"
	of_configure "$SRCDIR" "$BUILDDIR" --with-systemd
	# Always make: picks up source changes since the last run.
	make -C "$BUILDDIR" -j"$(nproc)"
	[[ -x $DAEMON ]] || die "make did not produce $DAEMON"
}

# _alive PID: running and not a zombie (kill -0 succeeds on zombies).
_alive() {
	local state
	state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $state && $state != Z ]]
}

# A daemon from a killed earlier run (it has its own session, so it
# outlives us) would hold the port: stop it if it is ours.
stop_leftover_daemon() {
	local pid comm
	[[ -r $PIDFILE ]] || return 0
	pid=$(<"$PIDFILE")
	comm=$(cat "/proc/$pid/comm" 2>/dev/null) || comm=
	if [[ $pid =~ ^[0-9]+$ && $comm == orderflowd ]] &&
		tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF -- "$CONF"; then
		say "stopping orderflowd left over from an earlier run (pid $pid)"
		stop_daemon "$pid"
	fi
	rm -f -- "$PIDFILE"
}

# stop_daemon PID: SIGTERM, then what shutdown_timeout (10 s) allows plus
# a margin, then SIGKILL.
stop_daemon() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in {1..150}; do
		_alive "$pid" || return 0
		sleep 0.1
	done
	say "orderflowd (pid $pid) ignored SIGTERM for 15 s; killing it"
	kill -KILL "$pid" 2>/dev/null || true
}

# stop_leftover_fake PIDFILE SCRIPT WHAT: the fake server (SCRIPT) of a
# killed earlier run, recorded in PIDFILE: stop it if it is ours (that
# script, with this run directory's certificate).
stop_leftover_fake() {
	local pidfile=$1 script=$2 what=$3 pid args
	[[ -r $pidfile ]] || return 0
	pid=$(<"$pidfile")
	if [[ $pid =~ ^[0-9]+$ ]] && args=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null) &&
		grep -qxF -- "$script" <<<"$args" && grep -qxF -- "$RUNDIR/tt/server.pem" <<<"$args"; then
		say "stopping the $what left over from an earlier run (pid $pid)"
		stop_fake "$pid"
	fi
	rm -f -- "$pidfile"
}

# stop_fake PID: SIGTERM (the fakes exit 0 on it), up to 5 s, then SIGKILL.
stop_fake() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in {1..50}; do
		_alive "$pid" || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

# wait_listening OUT PID: print the port once the fake server PID has
# written "listening PORT" to OUT; fail if it exits or takes over 10 s.
wait_listening() {
	local out=$1 pid=$2 port
	for _ in {1..100}; do
		port=$(sed -n 's/^listening \([0-9][0-9]*\)$/\1/p' "$out")
		if [[ -n $port ]]; then
			printf '%s\n' "$port"
			return 0
		fi
		_alive "$pid" || return 1
		sleep 0.1
	done
	return 1
}

# Start tests/faketiktok on a free port with the demo shop's credentials.
# Own session (setsid), like the daemon: only this script stops it.
start_fake() {
	local out=$RUNDIR/faketiktok.out
	sh "$SRCDIR/tests/faketiktok/mkcerts.sh" "$RUNDIR/tt" || die "cannot make the test certificates"
	: >"$out"
	setsid /usr/bin/python3 "$SRCDIR/tests/faketiktok/faketiktok.py" --port 0 \
		--cert "$RUNDIR/tt/server.pem" --key "$RUNDIR/tt/server.key" \
		--app-key demo-app-key --app-secret demo-app-secret \
		--access-token demo-access-token --service-id "$DEMO_SERVICE_ID" \
		--redirect-url "http://127.0.0.1:$PORT/oauth/tiktok/callback" \
		>"$out" 2>"$RUNDIR/faketiktok.log" &
	FAKE_PID=$!
	echo "$FAKE_PID" >"$FAKE_PIDFILE"
	FAKE_PORT=$(wait_listening "$out" "$FAKE_PID") ||
		die "the fake TikTok Shop server did not start; see $RUNDIR/faketiktok.log"
}

# secret_file FILE: a random secret, made once, 0600 (orderflowd refuses
# secret files that every user can read).
secret_file() {
	if [[ ! -s $1 ]]; then
		(umask 077 && openssl rand -hex 24 >"$1") || die "cannot make $1"
	fi
	chmod 0600 -- "$1" || die "cannot chmod $1"
}

# Start tests/fakecarrier on a free port (same test certificates), then
# point its webhook at orderflowd's /webhooks/carrier.  The secret goes
# through the admin endpoint, not the command line, which every local user
# can read (the API key of the fake has no other way in).
start_carrier() {
	local out=$RUNDIR/fakecarrier.out
	secret_file "$CARRIER_KEY_FILE"
	secret_file "$CARRIER_SECRET_FILE"
	: >"$out"
	setsid /usr/bin/python3 "$SRCDIR/tests/fakecarrier/fakecarrier.py" --port 0 \
		--cert "$RUNDIR/tt/server.pem" --key "$RUNDIR/tt/server.key" \
		--api-key "$(<"$CARRIER_KEY_FILE")" >"$out" 2>"$RUNDIR/fakecarrier.log" &
	CARRIER_PID=$!
	echo "$CARRIER_PID" >"$CARRIER_PIDFILE"
	CARRIER_PORT=$(wait_listening "$out" "$CARRIER_PID") ||
		die "the fake carrier did not start; see $RUNDIR/fakecarrier.log"
	printf '{"url":"http://127.0.0.1:%s/webhooks/carrier","secret":"%s"}' \
		"$PORT" "$(<"$CARRIER_SECRET_FILE")" |
		curl -sSf --max-time 10 -o /dev/null --cacert "$RUNDIR/tt/ca.pem" \
			-H 'Content-Type: application/json' --data-binary @- \
			"https://127.0.0.1:$CARRIER_PORT/_fake/webhook" ||
		die "cannot set the fake carrier's webhook; see $RUNDIR/fakecarrier.log"
}

# One admin token per run directory, kept between runs.
admin_token() {
	if [[ ! -s $RUNDIR/admin.token ]]; then
		(umask 077 && openssl rand -hex 16 >"$RUNDIR/admin.token") || die "cannot make an admin token"
	fi
	ADMIN_TOKEN=$(<"$RUNDIR/admin.token")
	# The dashboard API's JWT secret (contrib/make-token.sh signs with it).
	if [[ ! -s $RUNDIR/jwt.secret ]]; then
		(umask 077 && openssl rand -hex 32 >"$RUNDIR/jwt.secret") || die "cannot make a JWT secret"
	fi
	JWT_SECRET=$(<"$RUNDIR/jwt.secret")
}

check_port() {
	if ! [[ $PORT =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65535)); then
		die "OF_PORT: not a port number: $PORT"
	fi
	# Connecting succeeds only if something listens there already.
	if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
		die "port $PORT on 127.0.0.1 is already in use; stop that program or run with OF_PORT=another-port"
	fi
}

write_config() {
	local tmp=$CONF.tmp
	cat >"$tmp" <<EOF
# Written by contrib/quickstart.sh on every run: edit the script, not this.
[server]
listen_addr = 127.0.0.1
listen_port = $PORT

[log]
level = info

[postgres]
conninfo = $OF_PG_CONNINFO
migrations_dir = $SRCDIR/sql

[redis]
socket = $OF_REDIS_SOCKET

# The dashboard page, from the source tree.
[www]
root = $SRCDIR/contrib/www

# The fake TikTok Shop server started by quickstart.sh (see its header).
# The demo shop is connected through the fake's authorization page and
# token endpoints, as a real shop is through TikTok's (README "Shops").
[tiktok]
api_base = https://127.0.0.1:$FAKE_PORT
ca_file = $RUNDIR/tt/ca.pem
sync_interval = 30s
app_key = demo-app-key
app_secret_file = $APP_SECRET_FILE
service_id = $DEMO_SERVICE_ID
authorize_url = https://127.0.0.1:$FAKE_PORT/open/authorize
auth_base = https://127.0.0.1:$FAKE_PORT

# The fake carrier (EasyPost v2) started by quickstart.sh: labels of
# seller-shipped orders; its tracker events come to /webhooks/carrier.
[carrier]
api_base = https://127.0.0.1:$CARRIER_PORT/v2
api_key_file = $CARRIER_KEY_FILE
webhook_secret_file = $CARRIER_SECRET_FILE
ca_file = $RUNDIR/tt/ca.pem

[admin]
token = $ADMIN_TOKEN

# Dashboard API tokens: contrib/make-token.sh CREATOR_ID mints one.
[auth]
jwt_secret = $JWT_SECRET
jwt_audience = authenticated
EOF
	mv -- "$tmp" "$CONF"
}

# The demo creator, as an operator makes one (once; kept between runs).
demo_creator() {
	DEMO_CREATOR=$("$OF_PG_BIN/psql" -X -Atq "$OF_PG_CONNINFO" \
		-c "SELECT id FROM creators WHERE email = 'demo@orderflow.test'") ||
		die "cannot read the creators"
	if [[ -z $DEMO_CREATOR ]]; then
		DEMO_CREATOR=$("$DAEMON" -c "$CONF" --create-creator demo@orderflow.test \
			--name "Demo Creator") || die "orderflowd --create-creator failed"
	fi
}

# Connect the demo shop the way a creator does: the connect link (as the
# creator), TikTok's authorization page (the fake approves at once), and
# the callback it sends the browser back to.
connect_demo_shop() {
	local h link back page
	h="Authorization: Bearer $(OF_JWT_SECRET=$JWT_SECRET "$SRCDIR/contrib/make-token.sh" "$DEMO_CREATOR")"
	link=$(curl -fsS -H "$h" -H 'Accept: application/json' "http://127.0.0.1:$PORT/api/shops/connect" |
		jq -r .authorize_url) || die "GET /api/shops/connect failed"
	back=$(curl -fsS --cacert "$RUNDIR/tt/ca.pem" -o /dev/null -w '%{redirect_url}' "$link") ||
		die "the fake TikTok authorization page failed; see $RUNDIR/faketiktok.log"
	page=$(curl -sS "$back") || die "the authorization callback failed"
	[[ $page == *"Connected:"* ]] || die "the demo shop was not connected: $page"
	say "demo shop connected through the authorization flow"
}

# wait_ready: until /readyz answers 200 (bounded), or the daemon exits.
wait_ready() {
	local i
	for ((i = 0; i < 300; i++)); do
		kill -0 "$DAEMON_PID" 2>/dev/null || die "orderflowd exited; see its output above"
		curl -fs -o /dev/null "http://127.0.0.1:$PORT/readyz" && return 0
		sleep 0.1
	done
	die "orderflowd did not become ready within 30 s"
}

# Idempotent: ON CONFLICT on the unique user_id / (user_id, sku).
seed_demo_data() {
	"$OF_PG_BIN/psql" -X -q -1 -v ON_ERROR_STOP=1 "$OF_PG_CONNINFO" <<'EOF'

-- Stock for the SKUs of the fake TikTok server's catalog (SKU-000..SKU-031),
-- so a demo order has its stock reserved and waits at ready_to_ship; stock
-- already there (changed through the API) is left as it is.
INSERT INTO inventory_items (user_id, sku, product_name, on_hand, low_stock)
SELECT c.id, 'SKU-' || lpad(g::text, 3, '0'), 'Demo product ' || g, 50, 5
FROM creators c, generate_series(0, 31) g WHERE c.email = 'demo@orderflow.test'
ON CONFLICT (user_id, sku) DO NOTHING;

-- Shipping settings, so that a seller-shipped demo order gets its label
-- from the fake carrier: a US from address and a default parcel (the
-- SKUs have no weight or size of their own).  Settings changed through
-- PUT /api/settings/shipping are left as they are.
INSERT INTO shipping_settings (user_id, from_address, parcel, rate_rule, handover_method)
SELECT c.id,
       '{"name": "Demo Creator", "street1": "417 Montgomery St", "city": "San Francisco",
         "state": "CA", "zip": "94104", "country": "US", "phone": "4155550100",
         "email": "demo@orderflow.test"}',
       '{"weight_oz": 16, "length_in": 10, "width_in": 8, "height_in": 4}',
       '{"choose": "cheapest"}', 'PICKUP'
FROM creators c WHERE c.email = 'demo@orderflow.test'
ON CONFLICT (user_id) DO NOTHING;
EOF
}

# Single-quote for copy-pasting into a shell.
shquote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

print_howto() {
	local url=http://127.0.0.1:$PORT ca=$RUNDIR/tt/ca.pem hook=contrib/send-webhook.sh
	local tt=https://127.0.0.1:$FAKE_PORT carrier=https://127.0.0.1:$CARRIER_PORT
	[[ $PORT == 8080 ]] || hook="OF_URL=$url $hook"
	local signin
	signin=$(OF_JWT_SECRET=$JWT_SECRET "$SRCDIR/contrib/make-token.sh" "$DEMO_CREATOR" 43200) ||
		die "cannot make the dashboard sign-in token"
	cat >&2 <<EOF

orderflowd is starting on $url
The dashboard: open $url/ in a browser and paste this sign-in token (the demo
creator's, valid 12 hours; contrib/make-token.sh $DEMO_CREATOR 43200 makes another):
  $signin
  curl $url/healthz
  curl $url/readyz
  curl $url/api/health/orders
  curl $url/metrics
Send a signed demo webhook; the order is fetched from the fake TikTok server
($tt), stored, and run through its workflow (validated, stock reserved,
shipped on TikTok with TikTok's label, then waiting for the delivery):
  $hook 576653688135258178 AWAITING_SHIPMENT
  psql ... -c 'SELECT tiktok_order_id, order_status, workflow_status, total_amount FROM orders'
Dead letters (admin token in $RUNDIR/admin.token):
  curl -H "Authorization: Bearer \$(cat $RUNDIR/admin.token)" $url/api/admin/dead-letters
Dashboard API as the demo creator (token by contrib/make-token.sh):
  creator=$DEMO_CREATOR
  H="Authorization: Bearer \$(contrib/make-token.sh \$creator)"
  curl -H "\$H" $url/api/shops                              # the demo shop, connected through the authorization flow
  curl -H "\$H" '$url/api/orders?limit=10'
  curl -H "\$H" $url/api/orders/576653688135258178         # workflow, shipping_info, tracking_info
  curl -H "\$H" '$url/api/workflows?status=waiting'         # the needs-attention inbox
  curl -H "\$H" '$url/api/inventory?low_stock=true'         # stock: on hand, reserved
  curl -N -H "\$H" $url/api/events                          # live updates (Server-Sent Events); send a webhook meanwhile
Shipping (README "Shipping"; the fakes' admin endpoints take no credentials):
  TT=$tt CARRIER=$carrier
  # shipped by TikTok: the demo order above goes on to shipped; TikTok delivers it
  curl -s -H "\$H" $url/api/orders/576653688135258178 | jq '.order | {order_status, shipping_info: (.shipping_info | del(.address)), tracking_info}'
  curl -s --cacert $ca -d '{"status":"DELIVERED"}' $tt/_fake/orders/576653688135258178/status | jq -c '.order | {id, status}'
  $hook 576653688135258178 DELIVERED
  # shipped by the seller: the label is bought from the fake carrier ($carrier/v2)
  curl -s --cacert $ca -d '{"orders":[{"id":"576653688135258179","shipping_type":"SELLER"}]}' $tt/_fake/orders
  $hook 576653688135258179 AWAITING_SHIPMENT
  curl -s -H "\$H" $url/api/orders/576653688135258179 | jq '.order | {order_status, shipping_info: (.shipping_info | del(.address)), tracking_info}'
  # the carrier delivers it: its signed tracker event completes the order
  t=\$(curl -s -H "\$H" $url/api/orders/576653688135258179 | jq -r .order.tracking_info.tracking_number)
  curl -s --cacert $ca -d "{\"tracking_code\":\"\$t\",\"status\":\"delivered\"}" $carrier/_fake/track
  curl -s -H "\$H" $url/api/orders/576653688135258179/shipping/rates     # per package, the rule's pick (or "bought")
  curl -s -H "\$H" $url/api/settings/shipping                            # PUT replaces them
  curl -s -H "\$H" '$url/api/workflows?status=failed'                    # e.g. a label step without a parcel weight
  curl -s -H "\$H" -H 'Content-Type: application/json' -d '{"action":"retry","reason":"parcel weight set"}' $url/api/orders/576653688135258180/workflow/actions
  curl -s -H "\$H" $url/api/sync/drift                                   # status here and on TikTok disagree
Database (demo creator demo@orderflow.test, shop 7495540735365777507):
  psql $(shquote "$OF_PG_CONNINFO")
Config: $CONF
Stop with Ctrl-C: stops orderflowd, the fake TikTok server, the fake carrier, Redis and PostgreSQL (data stays in ${OF_PG_SOCKDIR%/pgsock}).

EOF
}

# EXIT trap (also reached through the signal traps): daemon first, since
# it would otherwise log connection errors while the servers go away.
# shellcheck disable=SC2317 # called from traps
cleanup() {
	trap - EXIT INT TERM HUP
	if [[ -n $DAEMON_PID ]]; then
		stop_daemon "$DAEMON_PID"
		wait "$DAEMON_PID" 2>/dev/null || true
		rm -f -- "$PIDFILE"
	fi
	if [[ -n $CARRIER_PID ]]; then
		stop_fake "$CARRIER_PID"
		wait "$CARRIER_PID" 2>/dev/null || true
		rm -f -- "$CARRIER_PIDFILE"
	fi
	if [[ -n $FAKE_PID ]]; then
		stop_fake "$FAKE_PID"
		wait "$FAKE_PID" 2>/dev/null || true
		rm -f -- "$FAKE_PIDFILE"
	fi
	of_redis_stop "$DATADIR" || true
	of_pg_stop "$DATADIR" || true
}

# shellcheck disable=SC2317 # called from traps
on_signal() {
	cleanup
	exit "$1"
}

main() {
	(($# == 0)) || die "usage: contrib/quickstart.sh (no arguments; OF_PORT=PORT to change the port)"
	# curl and jq: the commands print_howto prints.
	of_install_packages "$OF_BUILD_DEPS curl jq"
	build
	mkdir -p -- "$RUNDIR"
	stop_leftover_daemon
	stop_leftover_fake "$FAKE_PIDFILE" "$SRCDIR/tests/faketiktok/faketiktok.py" "fake TikTok server"
	stop_leftover_fake "$CARRIER_PIDFILE" "$SRCDIR/tests/fakecarrier/fakecarrier.py" "fake carrier"
	check_port

	trap cleanup EXIT
	trap 'on_signal 130' INT
	trap 'on_signal 143' TERM
	trap 'on_signal 129' HUP
	of_pg_start "$DATADIR"
	of_redis_start "$DATADIR"
	start_fake
	start_carrier
	admin_token
	# The fake's app secret: what it signs webhooks and checks calls with.
	if ! (umask 077 && printf 'demo-app-secret\n' >"$APP_SECRET_FILE") ||
		! chmod 0600 -- "$APP_SECRET_FILE"; then
		die "cannot write $APP_SECRET_FILE"
	fi
	write_config
	"$DAEMON" -c "$CONF" --migrate || die "orderflowd --migrate failed"
	demo_creator
	seed_demo_data || die "could not create the demo data"

	# Own session (setsid): a terminal ^C reaches only this script, which
	# sends one SIGTERM; two signals would make orderflowd exit at once.
	setsid "$DAEMON" -c "$CONF" &
	DAEMON_PID=$!
	echo "$DAEMON_PID" >"$PIDFILE"
	wait_ready
	connect_demo_shop
	print_howto
	local rc=0
	wait "$DAEMON_PID" || rc=$?
	DAEMON_PID=
	rm -f -- "$PIDFILE"
	say "orderflowd exited with status $rc"
	exit "$rc"
}

main "$@"
