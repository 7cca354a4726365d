#!/bin/bash
# tests/run-checks.sh: everything `make check` runs, in order, with one
# closing line "N passed, N failed" over all suites.
#
#   1. tests/optscan.sh   every config key documented (TAP)
#   2. C unit tests       $UNIT_TESTS, cmocka printing TAP
#   3. fuzz targets       tests/fuzz/run.sh: clang libFuzzer, a short run of each
#   4. integration tests  pytest under Debian's /usr/bin/python3 (it has
#                         python3-pytest, python3-psycopg2, python3-redis;
#                         the pyenv python3 on PATH does not), against real
#                         PostgreSQL and Redis servers the suite starts itself
#
# Environment (set by Makefile.am): OF_SRCDIR, OF_BUILDDIR, ORDERFLOWD,
# UNIT_TESTS.  PYTEST_ARGS adds pytest arguments (e.g. -k reload).
set -uo pipefail

: "${OF_SRCDIR:?}" "${OF_BUILDDIR:?}" "${ORDERFLOWD:?}"
PY=/usr/bin/python3
logdir="$OF_BUILDDIR/tests"
mkdir -p "$logdir"
passed=0
failed=0
skipped=0

# Count TAP lines of one suite's output; a crash or a short plan is a failure.
count_tap() {
	local name=$1 out=$2 rc=$3 ok notok plan
	ok=$(grep -cE '^ok [0-9]+' "$out")
	notok=$(grep -cE '^not ok [0-9]+' "$out")
	plan=$(sed -nE 's/^1\.\.([0-9]+).*/\1/p' "$out" | head -1)
	if [ -z "$plan" ] || [ $((ok + notok)) -ne "$plan" ] || { [ "$rc" -ne 0 ] && [ "$notok" -eq 0 ]; }; then
		echo "FAIL: $name: exit $rc, plan '${plan:-none}', $ok ok, $notok not ok" >&2
		notok=$((notok + 1))
	fi
	passed=$((passed + ok))
	failed=$((failed + notok))
	echo "$name: $ok passed, $notok failed"
}

run_tap() {
	local name=$1 out
	shift
	out="$logdir/$(basename "$name").tap"
	"$@" >"$out" 2>&1
	local rc=$?
	grep -E '^(not ok|#)' "$out" | grep -vE '^# (ok|not ok) - ' | head -40
	count_tap "$name" "$out" "$rc"
}

echo "== option scan"
run_tap optscan bash "$OF_SRCDIR/tests/optscan.sh" "$OF_SRCDIR"

echo "== unit tests"
for t in ${UNIT_TESTS:-}; do
	run_tap "$t" "$OF_BUILDDIR/$t"
done

# run_pytest NAME DIR: one pytest suite, counted from its JUnit XML.
run_pytest() {
	local name=$1 dir=$2 junit="$logdir/$1.xml" rc p f s
	rm -f "$junit"
	if [ ! -x "$PY" ] || ! "$PY" -c 'import pytest, psycopg2, redis' 2>/dev/null; then
		echo "FAIL: $PY with pytest, psycopg2 and redis is needed" \
			"(apt-get install python3-pytest python3-psycopg2 python3-redis)" >&2
		failed=$((failed + 1))
		return
	fi
	# shellcheck disable=SC2086 # PYTEST_ARGS is a word list on purpose
	(cd "$dir" && "$PY" -m pytest -q -p no:cacheprovider --junitxml="$junit" ${PYTEST_ARGS:-})
	rc=$?
	p=0 f=0 s=0
	if [ -f "$junit" ]; then
		read -r p f s < <("$PY" - "$junit" <<-'PYEOF'
			import sys, xml.etree.ElementTree as ET
			p = f = s = 0
			for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
			    kinds = {child.tag for child in case}
			    if kinds & {"failure", "error"}:
			        f += 1
			    elif "skipped" in kinds:
			        s += 1
			    else:
			        p += 1
			print(p, f, s)
		PYEOF
		)
	fi
	# pytest failing without a failed test (collection error, crash) still fails;
	# exit 5 (nothing selected, e.g. by PYTEST_ARGS) is not a failure.
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && [ "$f" -eq 0 ]; then
		echo "FAIL: $name: pytest exited $rc" >&2
		f=1
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
	echo "$name: $p passed, $f failed, $s skipped"
}

# The libFuzzer targets: a short bounded run of each (FUZZ_SECONDS, default 10).
echo "== fuzz (webhook, JWT, authorization, workflow definitions, shipping parsers)"
run_tap fuzz sh "$OF_SRCDIR/tests/fuzz/run.sh" "$OF_SRCDIR" "$OF_BUILDDIR" "${FUZZ_SECONDS:-10}"

echo "== fake TikTok Shop server self-tests"
run_pytest faketiktok "$OF_SRCDIR/tests/faketiktok"

echo "== fake carrier (EasyPost) server self-tests"
run_pytest fakecarrier "$OF_SRCDIR/tests/fakecarrier"

echo "== integration tests (real PostgreSQL and Redis)"
run_pytest integration "$OF_SRCDIR/tests/integration"

if [ $((passed + failed)) -eq 0 ]; then
	echo "FAIL: no test ran" >&2
	failed=1
fi
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
