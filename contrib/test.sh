#!/usr/bin/env bash
# contrib/test.sh: install what is missing, then build and test orderflowd
# in VPATH builds, the way CI does (.ci/run):
#
#   build/werror       --enable-werror --with-systemd                       make, make check
#   build/sanitizers   --enable-werror --enable-sanitizers --with-systemd   make, make check
#
#   contrib/test.sh [--quick]     --quick: only build/werror
#
# Both builds run even when the first fails, so one run shows everything;
# the exit status is non-zero if any step of any build failed.  Build dirs
# are reused when they were configured with the same flags.
set -euo pipefail

SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# shellcheck source=servers.sh source-path=SCRIPTDIR
. "$SRCDIR/contrib/servers.sh"

RESULTS=()
FAILED=0
STEP=

usage() {
	echo "usage: contrib/test.sh [--quick]" >&2
	exit 2
}

banner() { printf '\n===== %s\n' "$*"; }

# summary_of LOG: the check runner's last "N passed, N failed" line.
summary_of() {
	local line
	line=$(grep -E '[0-9]+ passed, [0-9]+ failed' -- "$1" 2>/dev/null | tail -n 1) || true
	printf '%s\n' "${line:-(no "N passed, N failed" line)}"
}

# run_build NAME CONFIGURE-ARGS...: configure, make, make check in
# build/NAME; on failure sets STEP to the step that failed.
run_build() {
	local name=$1
	shift
	local build=$SRCDIR/build/$name

	banner "build/$name: configure $*"
	of_configure "$SRCDIR" "$build" "$@" || { STEP=configure; return 1; }
	banner "build/$name: make -j2"
	make -C "$build" -j2 || { STEP="make"; return 1; }
	banner "build/$name: make check"
	# tee: the output stays visible and the summary line can be found later.
	make -C "$build" check 2>&1 | tee -- "$build/make-check.log" || { STEP="make check"; return 1; }
}

# record NAME CONFIGURE-ARGS...: run one build and remember how it went.
record() {
	local name=$1 log=$SRCDIR/build/$1/make-check.log summary
	shift
	rm -f -- "$log"
	STEP=
	if run_build "$name" "$@"; then
		RESULTS+=("build/$name: ok: $(summary_of "$log")")
		return
	fi
	# A failure before make check leaves no log: no tests ran.
	summary="no tests run"
	[[ ! -f $log ]] || summary=$(summary_of "$log")
	RESULTS+=("build/$name: FAILED in $STEP: $summary")
	FAILED=1
}

# The OpenAPI validator of test_openapi.py (tests/openapi, pinned by its
# package-lock.json).  npm ci starts from an empty node_modules, so a run
# killed halfway is repaired by the next one.  Node.js and npm are the
# machine's (Debian's nodejs and npm packages where there are none).
install_node_modules() {
	command -v npm >/dev/null 2>&1 || of_install_packages "nodejs npm" || return 1
	banner "npm ci --prefix tests/openapi"
	npm ci --prefix "$SRCDIR/tests/openapi" --no-audit --no-fund
}

main() {
	local quick=
	case $# in
	0) ;;
	1) [[ $1 == --quick ]] || usage; quick=1 ;;
	*) usage ;;
	esac

	of_install_packages "$OF_BUILD_DEPS" || { echo "test.sh: package installation failed" >&2; exit 1; }
	install_node_modules || { echo "test.sh: npm ci --prefix tests/openapi failed" >&2; exit 1; }
	of_autoreconf "$SRCDIR" || { echo "test.sh: autoreconf failed" >&2; exit 1; }

	record werror --enable-werror --with-systemd
	[[ -n $quick ]] || record sanitizers --enable-werror --enable-sanitizers --with-systemd

	banner "summary"
	printf '%s\n' "${RESULTS[@]}"
	exit "$FAILED"
}

main "$@"
