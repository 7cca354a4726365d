# Dependency outages: Redis or PostgreSQL stops (or is killed) under a running
# daemon and comes back on the same port; the daemon reports it and recovers
# without a restart.  Each test owns the server it stops.

import ofharness
from ofcheck import assert_error, assert_health_shape, assert_json_response

RECOVER = 15    # seconds a recovery may take (reconnect_max is 500ms in tests)


def _wait_status(d, path, status, timeout=10):
    """Poll path until it answers status; return the last response."""
    last = [None]

    def ok():
        last[0] = d.get(path, timeout=5)
        return last[0].status == status
    try:
        ofharness.wait_for(ok, timeout, 0.1, "%s -> %d" % (path, status))
    except TimeoutError:
        raise AssertionError("%s did not answer %d within %ds; last: %r" % (path, status, timeout, last[0]))
    return last[0]


def _wait_not_ready(d, dep, timeout=10):
    """Poll /readyz until it is a 503 not_ready error naming dep ("postgres"/"redis")."""
    last = [None]

    def ok():
        r = last[0] = d.get("/readyz", timeout=5)
        return r.status == 503 and dep in r.text
    try:
        ofharness.wait_for(ok, timeout, 0.1, "/readyz 503 naming %s" % dep)
    except TimeoutError:
        raise AssertionError("/readyz did not report %s down within %ds; last: %r" % (dep, timeout, last[0]))
    err = assert_error(last[0], 503, "not_ready")
    assert dep in err["message"], err
    return err


def _assert_recovered(d, pid):
    _wait_status(d, "/readyz", 200, RECOVER)
    doc = assert_json_response(d.get("/readyz"), 200)
    assert all(w["postgres"] and w["redis"] for w in doc["workers"]), doc

    def healthy():
        h = d.get("/api/health/orders")
        return h.status == 200 and h.json()["status"] == "healthy"
    ofharness.wait_for(healthy, RECOVER, 0.1, "health healthy again")
    assert d.running and d.pid == pid, "daemon restarted or died"


def test_redis_down_and_back(make_daemon, private_redis):
    d = make_daemon(redis=private_redis)
    d.start()
    pid = d.pid
    private_redis.stop()

    _wait_not_ready(d, "redis")

    h = d.get("/api/health/orders")
    doc = assert_json_response(h, 200)
    assert_health_shape(doc, workers=2)
    assert doc["status"] == "degraded", doc
    assert doc["checks"]["redis"]["status"] == "unhealthy", doc["checks"]["redis"]
    assert doc["checks"]["redis"]["workers_connected"] == 0, doc["checks"]["redis"]
    assert doc["checks"]["database"]["status"] == "healthy", doc["checks"]["database"]
    assert isinstance(doc["metrics"]["activeOrders"], int)
    assert d.get("/healthz").status == 200

    private_redis.start()
    _assert_recovered(d, pid)


def test_redis_killed_and_back(make_daemon, private_redis):
    d = make_daemon(redis=private_redis)
    d.start()
    pid = d.pid
    private_redis.kill()
    _wait_not_ready(d, "redis")
    private_redis.start()
    _assert_recovered(d, pid)


def _assert_db_down(d):
    _wait_not_ready(d, "postgres")

    # Redis may still be connecting when the daemon has just started.
    last = [None]

    def redis_up():
        last[0] = d.get("/api/health/orders")
        return last[0].json()["checks"]["redis"]["status"] == "healthy"
    try:
        ofharness.wait_for(redis_up, 5, 0.1, "redis healthy")
    except TimeoutError:
        pass
    doc = assert_json_response(last[0], 503)
    assert_health_shape(doc, workers=2)
    assert doc["status"] == "unhealthy", doc
    assert doc["checks"]["database"]["status"] == "unhealthy", doc["checks"]["database"]
    assert doc["checks"]["database"]["connections_up"] == 0, doc["checks"]["database"]
    assert doc["checks"]["redis"]["status"] == "healthy", doc["checks"]["redis"]
    assert doc["metrics"] == {"activeOrders": None, "pendingWorkflows": None, "queueDepth": None,
                              "deadLetters": None, "lastProcessedOrder": None}, doc["metrics"]
    assert d.get("/healthz").status == 200


def test_postgres_down_and_back(make_daemon, private_pg):
    d = make_daemon(pg=private_pg)
    d.start()
    pid = d.pid
    private_pg.stop("fast")
    _assert_db_down(d)
    private_pg.start()
    _assert_recovered(d, pid)


def test_postgres_killed_and_back(make_daemon, private_pg):
    d = make_daemon(pg=private_pg)
    d.start()
    pid = d.pid
    private_pg.kill()
    _assert_db_down(d)
    private_pg.start()
    _assert_recovered(d, pid)


def test_start_with_redis_down(make_daemon, private_redis):
    """The daemon starts and answers /healthz without Redis, and becomes ready when it comes."""
    private_redis.stop()
    d = make_daemon(redis=private_redis)
    d.start(wait="live")
    pid = d.pid
    _wait_not_ready(d, "redis")
    private_redis.start()
    _assert_recovered(d, pid)


def test_start_with_postgres_down(make_daemon, private_pg):
    """Likewise without PostgreSQL (migrations applied beforehand)."""
    d = make_daemon(pg=private_pg)
    d.migrate()
    private_pg.stop()
    d.start(wait="live", migrate=False)
    pid = d.pid
    _assert_db_down(d)
    private_pg.start()
    _assert_recovered(d, pid)
