# /healthz, /readyz, /api/health/orders and /metrics with every dependency up.

import time

import ofcheck
import ofharness
from ofcheck import assert_error, assert_health_db_up, assert_health_shape, assert_json_response


def test_healthz(daemon):
    r = daemon.get("/healthz")
    assert assert_json_response(r, 200) == {"status": "ok"}


def test_head_healthz(daemon):
    r = daemon.request("HEAD", "/healthz")
    assert r.status == 200 and r.body == b""


def test_readyz(daemon):
    doc = assert_json_response(daemon.get("/readyz"), 200)
    assert doc == {"status": "ready", "workers": [
        {"id": 0, "postgres": True, "redis": True, "webhooks": True},
        {"id": 1, "postgres": True, "redis": True, "webhooks": True}]}


def test_health_orders_empty(daemon):
    doc = assert_json_response(daemon.get("/api/health/orders"), 200)
    assert_health_shape(doc, workers=2)
    assert_health_db_up(doc)
    assert doc["status"] == "healthy", doc
    for name, c in doc["checks"].items():
        assert c["status"] == "healthy", (name, c)
    assert doc["metrics"] == {"activeOrders": 0, "pendingWorkflows": 0, "queueDepth": 0,
                              "deadLetters": 0, "lastProcessedOrder": None}, doc["metrics"]
    db = doc["checks"]["database"]
    assert db["connections_total"] == 4, db          # 2 workers x pool_size 2
    assert db["connections_up"] >= 2, db             # ready: >= 1 per worker
    assert doc["checks"]["redis"]["workers_connected"] == 2
    assert doc["checks"]["messageQueue"] == {"status": "healthy", "depth": 0,
                                             "oldest_age_seconds": 0, "max_depth": 1000,
                                             "max_age_seconds": 60}


def _health(d):
    return assert_json_response(d.get("/api/health/orders"), 200)


def _wait_metrics(d, want, timeout=5):
    """Poll until the health metrics contain want (tolerates a short cache); return the doc."""
    last = {}

    def ok():
        nonlocal last
        last = _health(d)
        return all(last["metrics"].get(k) == v for k, v in want.items())
    try:
        ofharness.wait_for(ok, timeout, 0.1, "health metrics %r" % (want,))
    except TimeoutError:
        raise AssertionError("health metrics %r, expected %r" % (last.get("metrics"), want))
    return last


def test_health_orders_counts(make_daemon, session_pg):
    d = make_daemon()
    d.migrate()
    c = session_pg.connect(d.dbname)
    try:
        user = ofcheck.insert_creator(c)
        o1 = ofcheck.insert_order(c, user, "pending")
        ofcheck.insert_order(c, user, "processing")
        o3 = ofcheck.insert_order(c, user, "delivered")
        ofcheck.insert_workflow(c, o1, user, "running")
        ofcheck.insert_workflow(c, o3, user, "completed")
        ofcheck.insert_webhook_event(c, processed=False)
        ofcheck.insert_webhook_event(c, processed=False)
        ofcheck.insert_webhook_event(c, processed=True)
        d.start(migrate=False)
        doc = _health(d)
        assert_health_shape(doc, workers=2)
        assert_health_db_up(doc)
        assert doc["metrics"]["activeOrders"] == 2, doc["metrics"]
        assert doc["metrics"]["pendingWorkflows"] == 1, doc["metrics"]
        assert doc["metrics"]["queueDepth"] == 2, doc["metrics"]
        assert isinstance(doc["metrics"]["lastProcessedOrder"], str), doc["metrics"]
        assert doc["checks"]["messageQueue"]["depth"] == 2
        assert doc["status"] == "healthy", doc

        # Counts follow the database.
        ofcheck.insert_order(c, user, "confirmed")
        ofcheck.insert_order(c, user, "cancelled")
        ofcheck.insert_webhook_event(c, processed=False)
        doc = _wait_metrics(d, {"activeOrders": 3, "queueDepth": 3})
        assert doc["metrics"]["pendingWorkflows"] == 1
    finally:
        c.close()


def test_health_degraded_queue_depth(make_daemon, session_pg):
    d = make_daemon(overrides={"health": {"max_queue_depth": 1}})
    d.migrate()
    c = session_pg.connect(d.dbname)
    try:
        ofcheck.insert_webhook_event(c)
        ofcheck.insert_webhook_event(c)
    finally:
        c.close()
    d.start(migrate=False)
    doc = _health(d)
    assert_health_shape(doc, workers=2, max_depth=1)
    mq = doc["checks"]["messageQueue"]
    assert mq["depth"] == 2 and mq["status"] == "degraded", mq
    assert doc["status"] == "degraded", doc
    assert doc["checks"]["database"]["status"] == "healthy"


def test_health_degraded_queue_age(make_daemon, session_pg):
    d = make_daemon(overrides={"health": {"max_queue_age": "1min"}})
    d.migrate()
    c = session_pg.connect(d.dbname)
    try:
        ofcheck.insert_webhook_event(c, age_seconds=600)
        ofcheck.insert_webhook_event(c, age_seconds=5)
    finally:
        c.close()
    d.start(migrate=False)
    doc = _health(d)
    assert_health_shape(doc, workers=2)
    mq = doc["checks"]["messageQueue"]
    assert mq["depth"] == 2 and mq["status"] == "degraded", mq
    assert 595 <= mq["oldest_age_seconds"] <= 700, mq
    assert doc["status"] == "degraded", doc


# --- /metrics -------------------------------------------------------------------

METRIC_NAMES = [
    "orderflow_http_requests_total",
    "orderflow_http_request_duration_seconds_bucket",
    "orderflow_http_request_duration_seconds_sum",
    "orderflow_http_request_duration_seconds_count",
    "orderflow_pg_connections",
    "orderflow_pg_busy_connections",
    "orderflow_pg_wait_queue",
    "orderflow_pg_queries_total",
    "orderflow_pg_errors_total",
    "orderflow_redis_connected",
    "orderflow_workers",
    "orderflow_uptime_seconds",
]


def _metrics(d):
    r = d.get("/metrics")
    assert r.status == 200, r
    ct = r.header("Content-Type") or ""
    assert ct.startswith("text/plain") and "version=0.0.4" in ct, ct
    return ofcheck.parse_metrics(r.text)


def test_metrics_names(daemon):
    daemon.get("/healthz")
    s = _metrics(daemon)
    names = {n for n, _, _ in s}
    missing = [n for n in METRIC_NAMES if n not in names]
    assert not missing, "missing metrics: %s" % missing
    v = lambda name, **l: ofcheck.metric_value(s, name, **l)
    assert v("orderflow_workers") == 2
    assert v("orderflow_redis_connected", worker="0") == 1
    assert v("orderflow_redis_connected", worker="1") == 1
    up, conn, down = (v("orderflow_pg_connections", state=st) for st in ("up", "connecting", "down"))
    assert None not in (up, conn, down), (up, conn, down)
    assert up >= 2 and up + conn + down == 4, (up, conn, down)
    assert v("orderflow_uptime_seconds") >= 0
    assert v("orderflow_pg_errors_total") == 0
    assert v("orderflow_pg_wait_queue") == 0


def test_metrics_counters_increase(daemon):
    def healthz_count():
        return ofcheck.metric_value(_metrics(daemon), "orderflow_http_requests_total",
                                    route="/healthz", code="200") or 0
    before = healthz_count()
    for _ in range(3):
        assert daemon.get("/healthz").status == 200
    ofharness.wait_for(lambda: healthz_count() >= before + 3, 2, 0.05, "counter +3")
    assert healthz_count() == before + 3

    q0 = ofcheck.metric_value(_metrics(daemon), "orderflow_pg_queries_total")
    assert daemon.get("/api/health/orders").status == 200
    ofharness.wait_for(lambda: ofcheck.metric_value(_metrics(daemon), "orderflow_pg_queries_total") > q0,
                       2, 0.05, "pg queries counter to grow")

    assert daemon.get("/nope").status == 404
    s = _metrics(daemon)
    assert (ofcheck.metric_value(s, "orderflow_http_requests_total", route="unmatched", code="404") or 0) >= 1

    # The histogram of /healthz: +Inf bucket == _count >= 3, buckets cumulative.
    buckets = sorted(((float(l["le"]), val) for n, l, val in s
                      if n == "orderflow_http_request_duration_seconds_bucket" and l.get("route") == "/healthz"))
    assert buckets and buckets[-1][0] == float("inf"), buckets
    count = ofcheck.metric_value(s, "orderflow_http_request_duration_seconds_count", route="/healthz")
    assert count is not None and count >= 3 and buckets[-1][1] == count, (buckets, count)
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), buckets
