# server.workers: one event-loop thread per worker, each with its own
# PostgreSQL pool and Redis connection, all listed by /readyz.

import os

import pytest

import ofcheck
from ofcheck import assert_json_response


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_readyz_lists_workers(make_daemon, workers):
    d = make_daemon(workers=workers)
    d.start()
    doc = assert_json_response(d.get("/readyz"), 200)
    assert doc["status"] == "ready"
    assert doc["workers"] == [{"id": i, "postgres": True, "redis": True, "webhooks": True} for i in range(workers)], doc
    h = assert_json_response(d.get("/api/health/orders"), 200)
    assert h["checks"]["workflowEngine"]["workers"] == workers
    assert h["checks"]["redis"]["workers"] == workers
    m = ofcheck.parse_metrics(d.get("/metrics").text)
    assert ofcheck.metric_value(m, "orderflow_workers") == workers


def test_workers_zero_means_cpus(make_daemon):
    d = make_daemon(workers=0)
    d.start()
    doc = assert_json_response(d.get("/readyz"), 200)
    n = os.sysconf("SC_NPROCESSORS_ONLN")
    assert [w["id"] for w in doc["workers"]] == list(range(n)), doc


def test_requests_spread_over_workers(make_daemon):
    """With SO_REUSEPORT, new connections reach both workers (request log shows worker=0 and 1)."""
    d = make_daemon(workers=2, overrides={"log": {"level": "debug"}})
    d.start()
    for _ in range(40):
        assert d.get("/healthz").status == 200
    seen = {r.get("worker") for r in d.find_log(level="debug", msg="request", path="/healthz")}
    assert seen == {"0", "1"}, seen
