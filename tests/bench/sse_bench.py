# sse_bench.py - GET /api/events: memory of idle streams and fan-out rate.
#
# Run by tests/bench/sse_bench.sh (Debian's /usr/bin/python3, the harness of
# tests/integration: private PostgreSQL and Redis, the daemon under
# $ORDERFLOWD).  Prints:
#
#   rss_idle_kb            the daemon's VmRSS with no stream
#   rss_streams_kb         with SSE_STREAMS (5,000) open idle streams
#   per_stream_kb          the difference over SSE_STREAMS
#   fanout                 SSE_SUBSCRIBERS (1,000) streams over SSE_CREATORS
#                          (10) creators; each creator gets SSE_EVENTS
#                          (1,000) new orders in one statement; the time from
#                          the first insert until every subscriber has every
#                          event; events delivered / that time (median of
#                          SSE_ROUNDS rounds)
#
# The reader is this Python process (selectors, one thread): the fan-out
# figure is a lower bound of what the daemon can do, shared with it on the
# same two cores.  Bounded: at most SSE_STREAMS connections, a 120 s limit
# per phase.

import os
import resource
import selectors
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import ofharness  # noqa: E402
from test_api import SECRET, jwt  # noqa: E402

STREAMS = int(os.environ.get("SSE_STREAMS", "5000"))
SUBSCRIBERS = int(os.environ.get("SSE_SUBSCRIBERS", "1000"))
CREATORS = int(os.environ.get("SSE_CREATORS", "10"))
EVENTS = int(os.environ.get("SSE_EVENTS", "1000"))
ROUNDS = int(os.environ.get("SSE_ROUNDS", "3"))
LIMIT_S = 120


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_streams(port, tokens):
    """One connected, answered stream per token; returns the sockets."""
    socks = []
    for tok in tokens:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(("GET /api/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                   % tok).encode())
        socks.append(s)
    for s in socks:
        head = b""
        while b"\r\n\r\n" not in head:
            data = s.recv(4096)
            if not data:
                raise RuntimeError("stream closed before its headers")
            head += data
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError("stream refused: %r" % head[:200])
        s.setblocking(False)
    return socks


def drain(socks, want, deadline):
    """Read until each socket saw `want` events."""
    sel = selectors.DefaultSelector()
    state = {}
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
        state[s] = [0, b""]
    left = len(socks)
    while left and time.time() < deadline:
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            try:
                data = s.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                raise RuntimeError("a stream closed during the run")
            st = state[s]
            # "\nid: " starts every event (after its chunk's CRLF); the
            # carry of 4 bytes finds one split across reads, never twice.
            buf = st[1] + data
            st[0] += buf.count(b"\nid: ")
            st[1] = buf[-4:]
            if st[0] >= want:
                sel.unregister(s)
                left -= 1
    sel.close()
    if left:
        raise RuntimeError("%d streams did not get their %d events in time (got %s)"
                           % (left, want, sorted(v[0] for v in state.values())[:5]))


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = STREAMS + 1000
    if hard < need:
        raise SystemExit("sse_bench: RLIMIT_NOFILE hard limit %d < %d needed" % (hard, need))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    pg, redis = ofharness.Postgres("pg-sse"), ofharness.Redis("redis-sse")
    pg.start()
    redis.start()
    d = None
    try:
        per_creator = max(STREAMS // CREATORS + 1, SUBSCRIBERS // CREATORS + 1)
        d = ofharness.Orderflowd(pg, redis, pg.create_database(), workers=2, overrides={
            "auth": {"jwt_secret": SECRET, "jwt_audience": "authenticated"},
            "ratelimit": {"rate": "0"},
            "log": {"level": "warn"},
            "events": {"heartbeat": "1h", "max_streams": STREAMS,
                       "max_streams_per_creator": per_creator, "max_buffer": "64m"}})
        d.start()
        creators = [pg.sql("INSERT INTO creators (email, display_name) VALUES (%s, 'B')"
                           " RETURNING id::text", ("c%d@bench.test" % i,), dbname=d.dbname)[0][0]
                    for i in range(CREATORS)]
        tokens = {c: jwt(c, exp=int(time.time()) + 86400) for c in creators}
        pid = d.pid
        time.sleep(0.5)
        idle = rss_kb(pid)
        socks = open_streams(d.port, [tokens[creators[i % CREATORS]] for i in range(STREAMS)])
        time.sleep(1.0)
        full = rss_kb(pid)
        print("rss_idle_kb %d" % idle)
        print("rss_streams_kb %d (%d streams)" % (full, len(socks)))
        print("per_stream_kb %.2f" % ((full - idle) / len(socks)))
        for s in socks:
            s.close()
        time.sleep(1.0)

        rates, secs = [], []
        for r in range(ROUNDS):
            subs = open_streams(d.port, [tokens[creators[i % CREATORS]] for i in range(SUBSCRIBERS)])
            time.sleep(1.0)     # every worker has its place in the log
            t0 = time.time()
            for i, c in enumerate(creators):
                pg.sql("INSERT INTO orders (user_id, tiktok_order_id, order_number, total_amount,"
                       " customer_name, shipping_address, order_date) SELECT %s, %s || g,"
                       " 'N' || g, 1, 'Ann', '{}', now() FROM generate_series(1, %s) g",
                       (c, "tt-%d-%d-" % (r, i), EVENTS), dbname=d.dbname)
            drain(subs, EVENTS, t0 + LIMIT_S)
            dt = time.time() - t0
            secs.append(dt)
            rates.append(SUBSCRIBERS * EVENTS / dt)
            for s in subs:
                s.close()
            time.sleep(1.0)
        print("fanout subscribers=%d creators=%d events_per_creator=%d rounds=%d"
              % (SUBSCRIBERS, CREATORS, EVENTS, ROUNDS))
        print("fanout_seconds median %.3f (%s)" % (statistics.median(secs),
                                                   ", ".join("%.3f" % x for x in secs)))
        print("fanout_events_per_s median %.0f" % statistics.median(rates))
    finally:
        if d is not None:
            d.cleanup()
        redis.cleanup()
        pg.cleanup()


if __name__ == "__main__":
    main()
