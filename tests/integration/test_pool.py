# The PostgreSQL pool's limits: a query that outlives postgres.query_timeout
# costs its connection (which comes back), and once the connections carry
# all they may (one running and three pipelined batches each) and the wait
# queue is full, a request is refused at once instead of queueing without
# bound.

import ofharness
from ofcheck import Background, LockedOrders, assert_json_response


def _database_check(resp):
    doc = assert_json_response(resp, resp.status)
    return doc, doc["checks"]["database"]


def test_query_timeout_drops_connection_and_recovers(make_daemon):
    d = make_daemon(workers=1, overrides={"postgres": {"pool_size": 1, "query_timeout": "500ms"}})
    d.start()
    lock = LockedOrders(d)
    try:
        r = d.get("/api/health/orders", timeout=10)
        doc, db = _database_check(r)
        assert r.status == 503 and doc["status"] == "unhealthy", doc
        # statement_timeout (server side) or the pool's own timer, whichever fires first.
        assert "timeout" in db["message"] or "statement" in db["message"], db
    finally:
        lock.release()
    # The connection comes back on its own and the same daemon is healthy again.
    ofharness.wait_for(lambda: d.get("/api/health/orders").status == 200, 10, 0.1,
                       "health 200 after the timeout")
    assert d.get("/readyz").status == 200


def test_full_wait_queue_refuses_at_once(make_daemon):
    d = make_daemon(workers=1, overrides={"postgres": {"pool_size": 1, "max_wait_queue": 1}})
    d.start()
    lock = LockedOrders(d)
    try:
        busy = Background(d)            # takes the only connection, blocks on the lock
        lock.wait_waiters(1)
        # pipelined behind it on the same connection (PG_PIPELINE_DEPTH 4 in src/io/pg.c)
        piped = [Background(d) for _ in range(3)]
        queued = Background(d)          # waits in the queue (room for one)
        ofharness.wait_for(lambda: "orderflow_pg_wait_queue 1" in d.get("/metrics").text,
                           5, 0.05, "one batch in the wait queue")
        r = d.get("/api/health/orders", timeout=5)     # no room: refused, not queued
        doc, db = _database_check(r)
        assert r.status == 503 and db["status"] == "unhealthy", doc
        assert all(bg.result is None for bg in [busy, queued] + piped)
    finally:
        lock.release()
    for bg in [busy, queued] + piped:
        res = bg.join()
        assert not isinstance(res, Exception) and res.status == 200, res
