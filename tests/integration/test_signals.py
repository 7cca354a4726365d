# SIGTERM/SIGINT drain and exit status.  Requests are held in flight inside the
# daemon by an ACCESS EXCLUSIVE lock on orders (the health query counts
# orders), taken by the test and released when the test chooses.

import signal
import socket
import time

import pytest

import ofharness
from ofcheck import Background, LockedOrders, assert_error, assert_json_response

SHUTDOWN_TIMEOUT = 5


def _refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


@pytest.fixture
def drain_daemon(make_daemon):
    d = make_daemon(overrides={"server": {"shutdown_timeout": "%ds" % SHUTDOWN_TIMEOUT}})
    d.start()
    return d


def test_sigterm_drains_in_flight(drain_daemon):
    d = drain_daemon
    lock = LockedOrders(d)
    try:
        reqs = [Background(d) for _ in range(3)]
        lock.wait_waiters(1)
        time.sleep(0.3)
        assert all(r.result is None for r in reqs), [r.result for r in reqs]
        t0 = time.monotonic()
        d.send_signal(signal.SIGTERM)

        # Listeners close at once; the in-flight requests keep the process up.
        ofharness.wait_for(lambda: _refused(d.port), 1.0, 0.02, "new connections to be refused")
        time.sleep(max(0, 1.0 - (time.monotonic() - t0)))
        assert d.running, "exited with requests in flight (status %r)" % d.proc.returncode
        assert all(r.result is None for r in reqs), [r.result for r in reqs]
        lock.release()

        for r in reqs:
            res = r.join()
            assert not isinstance(res, Exception), "in-flight request failed: %r" % (res,)
            doc = assert_json_response(res, 200)
            # A worker that had nothing in flight may have ended already: degraded, not down.
            assert doc["status"] in ("healthy", "degraded"), doc
        rc = d.wait_exit(SHUTDOWN_TIMEOUT + 1 - (time.monotonic() - t0))
        assert rc == 0, "exit status %d" % rc
    finally:
        lock.release()


def test_sigterm_keepalive_gets_shutting_down(make_daemon):
    """A request on a kept-alive connection during the drain: 503 shutting_down, Connection: close.

    One worker, so the connections share the worker the in-flight request keeps alive
    (a worker with nothing in flight ends at once and closes its idle connections)."""
    d = make_daemon(workers=1, overrides={"server": {"shutdown_timeout": "%ds" % SHUTDOWN_TIMEOUT}})
    d.start()
    conns = [d.connection() for _ in range(4)]
    for c in conns:
        assert d.request("GET", "/healthz", conn=c).status == 200
    lock = LockedOrders(d)
    try:
        req = Background(d)
        lock.wait_waiters(1)
        d.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        for c in conns:
            r = d.request("GET", "/healthz", conn=c)
            assert_error(r, 503, "shutting_down")
            assert (r.header("Connection") or "").lower() == "close", dict(r.headers)
        lock.release()
        res = req.join()
        assert not isinstance(res, Exception) and res.status == 200, res
        assert d.wait_exit(SHUTDOWN_TIMEOUT) == 0
    finally:
        lock.release()
        for c in conns:
            c.close()


def test_sigterm_timeout_expires(make_daemon):
    """In-flight requests that outlast shutdown_timeout do not keep the daemon alive."""
    d = make_daemon(overrides={"server": {"shutdown_timeout": "1s"}})
    d.start()
    lock = LockedOrders(d)
    try:
        req = Background(d)
        lock.wait_waiters(1)
        t0 = time.monotonic()
        d.send_signal(signal.SIGTERM)
        d.wait_exit(4)
        took = time.monotonic() - t0
        assert 0.8 <= took <= 4, "exited after %.2fs with shutdown_timeout 1s" % took
        assert d.proc.returncode in (0, 1), d.proc.returncode
    finally:
        lock.release()
    req.join()


def test_sigterm_twice_exits_at_once(drain_daemon):
    d = drain_daemon
    lock = LockedOrders(d)
    try:
        req = Background(d)
        lock.wait_waiters(1)
        d.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert d.running, "exited with a request in flight"
        t0 = time.monotonic()
        d.send_signal(signal.SIGTERM)
        rc = d.wait_exit(2)
        assert rc == 1, "second SIGTERM: exit status %d, expected 1" % rc
        assert time.monotonic() - t0 < 2
    finally:
        lock.release()
    req.join()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_idle_stop_is_prompt(make_daemon, sig):
    """Nothing in flight (one idle keep-alive connection): exit 0 well before shutdown_timeout."""
    d = make_daemon(overrides={"server": {"shutdown_timeout": "20s"}})
    d.start()
    c = d.connection()
    try:
        assert d.request("GET", "/healthz", conn=c).status == 200
        t0 = time.monotonic()
        d.send_signal(sig)
        rc = d.wait_exit(3)
        assert rc == 0, "exit status %d" % rc
        assert time.monotonic() - t0 < 3
    finally:
        c.close()
