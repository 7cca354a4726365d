#!/bin/sh
# tests/fuzz/run.sh SRCDIR BUILDDIR [SECONDS]
# tests/fuzz/run.sh --long SRCDIR BUILDDIR [RUNS]
#
# Builds each libFuzzer target of tests/fuzz with clang, ASan and UBSan,
# and runs it from its seed corpus (tests/fuzz/corpus/TARGET, copied, so
# the checked-in corpus never changes): for SECONDS each (default 20), or
# with --long for RUNS executions each (default 10,000,000).
#
#   webhook  the signature, the envelope and the order parser of a webhook
#   jwt      the dashboard's JWT parser and base64url
#   ttauth   the authorization state and TikTok's token and shop answers
#   wfdef    workflow definitions and rules (their PUT bodies)
#   ship     shipping settings, parcels, the carrier's rates, TikTok's
#            providers and addresses
#
# FUZZ_TARGETS (a space-separated list) runs only those.
#
# Prints TAP: one test per target, "ok" when no crash, sanitizer report or
# failed invariant was found, with its execution count.  A finding leaves
# the input in BUILDDIR/tests/fuzz/TARGET/ (crash-*): add it to the corpus
# once fixed.  Without clang it says so and fails: contrib/test.sh
# installs clang and libclang-rt-14-dev.
set -u
long=0
if [ "${1:-}" = "--long" ]; then
	long=1
	shift
fi
src=$1 build=$2
limit=${3:-}
[ -n "$limit" ] || { [ $long = 1 ] && limit=10000000 || limit=20; }
work="$build/tests/fuzz"
targets=${FUZZ_TARGETS:-webhook jwt ttauth wfdef ship}
core="$src/src/core/config.c $src/src/core/log.c $src/src/core/util.c $src/src/tiktok/ttsign.c"

# The sources each target links besides its own file and the core.
sources() {
	case $1 in
	webhook) echo "$src/src/order/apply.c $src/src/order/order.c $src/src/tiktok/whenv.c $src/src/io/pg.c" ;;
	jwt) echo "$src/src/http/jwt.c" ;;
	ttauth) echo "$src/src/tiktok/ttauth.c $src/src/http/jwt.c" ;;
	wfdef) echo "$src/src/wf/wf_def.c $src/src/wf/wf_cond.c $src/src/order/order.c" ;;
	ship) echo "$src/src/ship/ship_plan.c" ;;
	esac
}

n=0
for t in $targets; do n=$((n + 1)); done
echo "1..$n"
if ! command -v clang >/dev/null 2>&1; then
	i=0
	for t in $targets; do
		i=$((i + 1))
		echo "not ok $i - fuzz_$t: clang not installed (apt-get install clang libclang-rt-14-dev)"
	done
	exit 1
fi
rc=0 i=0
for t in $targets; do
	i=$((i + 1))
	dir="$work/$t"
	rm -rf "$dir"
	mkdir -p "$dir/corpus"
	cp "$src"/tests/fuzz/corpus/"$t"/* "$dir/corpus/"
	# shellcheck disable=SC2046 # pkg-config and sources print word lists
	if ! clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined -I"$src/include" -I"$build" \
		-DOF_SYSCONFDIR=\"/etc\" -DOF_PKGDATADIR=\"/usr/share/orderflow\" \
		$(pkg-config --cflags jansson libevent libpq openssl inih) \
		"$src/tests/fuzz/fuzz_$t.c" $(sources "$t") $core \
		$(pkg-config --libs jansson libevent libpq openssl inih) -lm \
		-o "$dir/fuzz_$t" >"$dir/build.log" 2>&1; then
		sed 's/^/# /' "$dir/build.log" | tail -20
		echo "not ok $i - fuzz_$t: build failed"
		rc=1
		continue
	fi
	if [ $long = 1 ]; then
		how="-runs=$limit"
	else
		how="-max_total_time=$limit"
	fi
	if (cd "$dir" && ./"fuzz_$t" "$how" -seed=1 -max_len=8192 -timeout=10 corpus \
		>run.log 2>&1); then
		runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$dir/run.log" | tail -1)
		echo "# $(grep -E '^#[0-9]+.*(DONE|pulse)' "$dir/run.log" | tail -1)"
		echo "ok $i - fuzz_$t: ${runs:-?} executions without a finding"
	else
		sed 's/^/# /' "$dir/run.log" | tail -30
		echo "not ok $i - fuzz_$t: finding, see $dir/run.log"
		rc=1
	fi
done
exit $rc
