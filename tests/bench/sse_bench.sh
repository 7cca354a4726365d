#!/usr/bin/env bash
# sse_bench.sh - GET /api/events: RSS with 5,000 idle streams and the fan-out
# rate to 1,000 subscribers (see tests/bench/sse_bench.py for what it prints).
#
# Usage: tests/bench/sse_bench.sh BUILD_DIR
#   SSE_STREAMS (5000) SSE_SUBSCRIBERS (1000) SSE_CREATORS (10)
#   SSE_EVENTS (1000 per creator and round) SSE_ROUNDS (3)
#
# Private PostgreSQL and Redis are started by the integration harness
# (tests/integration/ofharness.py) under Debian's /usr/bin/python3 and
# removed on exit.  As root, the servers run as the harness's unprivileged
# user.
set -euo pipefail
if [ $# -ne 1 ] || [ ! -x "$1/src/orderflowd" ]; then
	echo "usage: tests/bench/sse_bench.sh BUILD_DIR (holding src/orderflowd)" >&2
	exit 2
fi
SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
export ORDERFLOWD=$(cd "$1" && pwd -P)/src/orderflowd OF_SRCDIR=$SRCDIR
# 5,000 streams and the harness's own files: raise the soft limit.
ulimit -n "$(ulimit -Hn)"
exec /usr/bin/python3 "$SRCDIR/tests/bench/sse_bench.py"
