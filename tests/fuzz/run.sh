#!/bin/sh
# tests/fuzz/run.sh SRCDIR BUILDDIR [SECONDS]
#
# Builds tests/fuzz/fuzz_webhook.c with clang's libFuzzer, ASan and UBSan
# and runs it for SECONDS (default 20) from the seed corpus in
# tests/fuzz/corpus (copied, so the checked-in corpus never changes).
# Prints TAP: one test, "ok" when no crash, sanitizer report or failed
# invariant was found.  Without clang it says so and fails: contrib/test.sh
# installs clang and libclang-rt-14-dev.
set -u
src=$1 build=$2 secs=${3:-20}
work="$build/tests/fuzz"
mkdir -p "$work/corpus"
echo "1..1"
if ! command -v clang >/dev/null 2>&1; then
	echo "not ok 1 - fuzz_webhook: clang not installed (apt-get install clang libclang-rt-14-dev)"
	exit 1
fi
cp "$src"/tests/fuzz/corpus/* "$work/corpus/"
# shellcheck disable=SC2046 # pkg-config prints word lists
if ! clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -I"$src/include" -I"$build" \
	-DOF_SYSCONFDIR=\"/etc\" -DOF_PKGDATADIR=\"/usr/share/orderflow\" \
	$(pkg-config --cflags jansson libevent libpq openssl inih) \
	"$src/tests/fuzz/fuzz_webhook.c" "$src/src/order/apply.c" "$src/src/order/order.c" "$src/src/tiktok/whenv.c" "$src/src/tiktok/ttsign.c" \
	"$src/src/io/pg.c" "$src/src/core/config.c" "$src/src/core/log.c" "$src/src/core/util.c" \
	$(pkg-config --libs jansson libevent libpq openssl inih) \
	-o "$work/fuzz_webhook" >"$work/build.log" 2>&1; then
	sed 's/^/# /' "$work/build.log" | tail -20
	echo "not ok 1 - fuzz_webhook: build failed"
	exit 1
fi
if "$work/fuzz_webhook" -max_total_time="$secs" -seed=1 -max_len=8192 -timeout=10 \
	"$work/corpus" >"$work/run.log" 2>&1; then
	echo "# $(grep -E '^#[0-9]+.*(DONE|pulse)' "$work/run.log" | tail -1)"
	echo "ok 1 - fuzz_webhook: ${secs}s without a finding"
else
	sed 's/^/# /' "$work/run.log" | tail -30
	echo "not ok 1 - fuzz_webhook: finding, see $work/run.log"
	exit 1
fi
