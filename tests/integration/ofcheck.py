# Assertions and data helpers shared by the integration tests.
#
# The contract checked here is /tmp/ofspec.md ("orderflowd interface
# contract"): the JSON error body, the shapes of /readyz and
# /api/health/orders, the Prometheus exposition of /metrics.  The data helpers
# insert the few rows the health metrics count (creators, orders,
# order_workflows, webhook_events) with plain SQL, as an operator would with
# psql.

import http.client
import json
import re
import socket
import threading
import uuid

import ofharness

HEALTH_WORDS = ("healthy", "degraded", "unhealthy")
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def is_int(v):
    """A JSON integer (bool is not one)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    """A JSON number (int or float, not bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def media_type(resp):
    """The content-type without parameters, lower-cased."""
    return (resp.header("Content-Type") or "").split(";")[0].strip().lower()


def assert_json_response(resp, status):
    """Status is as expected, content-type is application/json; return the parsed body."""
    assert resp.status == status, "expected HTTP %d, got %d: %r" % (status, resp.status, resp.body[:500])
    assert media_type(resp) == "application/json", \
        "content-type %r is not application/json" % resp.header("Content-Type")
    return resp.json()


def assert_error(resp, status, code):
    """An error response: exactly {"error":{"code":code,"message":str}} (code None: any)."""
    doc = assert_json_response(resp, status)
    assert isinstance(doc, dict) and set(doc) == {"error"}, "error body has keys %r: %r" % (
        list(doc) if isinstance(doc, dict) else type(doc), doc)
    err = doc["error"]
    assert isinstance(err, dict) and set(err) == {"code", "message"}, "error object: %r" % (err,)
    assert isinstance(err["code"], str) and isinstance(err["message"], str), err
    if code is not None:
        assert err["code"] == code, "error code %r, expected %r (message %r)" % (err["code"], code, err["message"])
    assert err["message"], "empty error message"
    return err


def assert_health_shape(doc, workers, max_depth=1000):
    """Check every documented field and type of /api/health/orders."""
    assert set(doc) == {"status", "timestamp", "checks", "metrics"}, sorted(doc)
    assert doc["status"] in HEALTH_WORDS, doc["status"]
    assert isinstance(doc["timestamp"], str) and TS_RE.match(doc["timestamp"]), doc["timestamp"]
    checks = doc["checks"]
    assert set(checks) == {"database", "redis", "workflowEngine", "messageQueue", "tiktokShop"}, \
        sorted(checks)
    for name, c in checks.items():
        assert isinstance(c, dict), (name, c)
        assert c["status"] in HEALTH_WORDS, (name, c)
        if "message" in c:
            assert isinstance(c["message"], str), (name, c)

    db = checks["database"]
    assert set(db) - {"message"} == {"status", "latency_ms", "connections_up", "connections_total"}, db
    assert db["latency_ms"] is None or is_num(db["latency_ms"]), db
    assert is_int(db["connections_up"]) and is_int(db["connections_total"]), db
    assert 0 <= db["connections_up"] <= db["connections_total"], db

    rd = checks["redis"]
    assert set(rd) - {"message"} == {"status", "latency_ms", "workers_connected", "workers"}, rd
    assert rd["latency_ms"] is None or is_num(rd["latency_ms"]), rd
    assert is_int(rd["workers_connected"]) and rd["workers"] == workers, rd
    assert 0 <= rd["workers_connected"] <= workers, rd

    wf = checks["workflowEngine"]
    assert set(wf) - {"message"} == {"status", "workers_alive", "workers", "max_loop_lag_ms",
                                     "parked_runs", "runs_in_memory", "due_runs",
                                     "oldest_due_age_seconds", "max_due_age_seconds",
                                     "needs_attention"}, wf
    assert wf["workers"] == workers and wf["workers_alive"] == workers, wf
    assert is_num(wf["max_loop_lag_ms"]) and wf["max_loop_lag_ms"] >= 0, wf
    for k in ("parked_runs", "runs_in_memory"):
        assert is_int(wf[k]) and wf[k] >= 0, (k, wf)
    # The database's figures are null while it cannot be reached.
    for k in ("due_runs", "needs_attention"):
        assert wf[k] is None or (is_int(wf[k]) and wf[k] >= 0), (k, wf)
    assert wf["oldest_due_age_seconds"] is None or (is_num(wf["oldest_due_age_seconds"]) and
                                                    wf["oldest_due_age_seconds"] >= 0), wf
    assert is_num(wf["max_due_age_seconds"]) and wf["max_due_age_seconds"] > 0, wf

    mq = checks["messageQueue"]
    assert set(mq) - {"message"} == {"status", "depth", "oldest_age_seconds", "max_depth",
                                     "max_age_seconds"}, mq
    assert mq["max_depth"] == max_depth, mq
    assert mq["depth"] is None or is_int(mq["depth"]), mq

    tk = checks["tiktokShop"]
    assert set(tk) == {"status", "breaker", "pausedShops", "paused", "eventsInMemory"}, tk
    assert tk["breaker"] in ("closed", "open", "half_open"), tk
    assert is_int(tk["pausedShops"]) and is_int(tk["eventsInMemory"]), tk
    assert tk["paused"] is None or isinstance(tk["paused"], list), tk

    m = doc["metrics"]
    assert set(m) == {"activeOrders", "pendingWorkflows", "queueDepth", "deadLetters",
                      "lastProcessedOrder"}, sorted(m)
    return doc


def assert_health_db_up(doc):
    """With the database up, the counters are integers."""
    m = doc["metrics"]
    for k in ("activeOrders", "pendingWorkflows", "queueDepth", "deadLetters"):
        assert is_int(m[k]) and m[k] >= 0, (k, m[k])
    assert m["lastProcessedOrder"] is None or isinstance(m["lastProcessedOrder"], str), m
    mq = doc["checks"]["messageQueue"]
    assert is_int(mq["depth"]) and mq["depth"] == m["queueDepth"], (mq, m)
    assert is_num(mq["oldest_age_seconds"]) and mq["oldest_age_seconds"] >= 0, mq
    db = doc["checks"]["database"]
    assert is_num(db["latency_ms"]) and db["latency_ms"] >= 0, db


# --- Prometheus text ----------------------------------------------------------

_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*')


def parse_metrics(text):
    """[(name, {label: value}, float)] of a Prometheus text exposition; rejects bad lines."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        assert m, "malformed metrics line: %r" % line
        labels = {}
        if m.group(3):
            rest = m.group(3)
            pos = 0
            while pos < len(rest):
                lm = _LABEL_RE.match(rest, pos)
                assert lm, "malformed labels in %r" % line
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def metric_value(samples, name, **labels):
    """The value of the one sample with that name and (at least) those labels, or None."""
    found = [v for n, l, v in samples if n == name and all(l.get(k) == str(x) for k, x in labels.items())]
    assert len(found) <= 1, "several samples match %s %r: %r" % (name, labels, found)
    return found[0] if found else None


# --- raw HTTP -------------------------------------------------------------------

class _RawResponse:
    """Minimal Response-alike for raw_request (same attributes as ofharness.Response)."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError as e:
            raise AssertionError("response body is not JSON (%s): %r" % (e, self.body[:2000]))

    def __repr__(self):
        return "<RawResponse %d %r>" % (self.status, self.body[:300])


def raw_request(port, data, method="GET", timeout=10.0):
    """Send raw bytes, parse one HTTP response (raises if the server just closes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        r = http.client.HTTPResponse(s, method=method)
        r.begin()
        body = r.read()
        return _RawResponse(r.status, r.headers, body)
    finally:
        s.close()


# --- data -----------------------------------------------------------------------

def insert_creator(conn):
    """One creator; returns its id."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO creators (email, display_name) VALUES (%s, %s) RETURNING id",
                    ("c-%s@example.com" % uuid.uuid4().hex[:12], "Test Creator"))
        return cur.fetchone()[0]


def insert_order(conn, user_id, status="pending"):
    """One order of user_id in order_status status; returns its id."""
    n = uuid.uuid4().hex[:16]
    with conn.cursor() as cur:
        cur.execute("""INSERT INTO orders (user_id, tiktok_order_id, order_number, order_status,
                                           total_amount, customer_name, shipping_address, order_date)
                       VALUES (%s, %s, %s, %s, 12.50, 'Ann Buyer', '{"city": "Austin"}', now())
                       RETURNING id""",
                    (user_id, "tt-" + n, "N-" + n, status))
        return cur.fetchone()[0]


def insert_workflow(conn, order_id, user_id, status="running", name="default"):
    """One order_workflows row; returns its id."""
    with conn.cursor() as cur:
        cur.execute("""INSERT INTO order_workflows (order_id, user_id, tiktok_order_id, workflow_name,
                           current_step, workflow_status)
                       SELECT %s, %s, tiktok_order_id, %s, 'validate', %s FROM orders WHERE id = %s
                       RETURNING id""",
                    (order_id, user_id, name, status, order_id))
        return cur.fetchone()[0]


def insert_webhook_event(conn, processed=False, age_seconds=0):
    """One webhook_events row received age_seconds ago; processed or not."""
    with conn.cursor() as cur:
        cur.execute("""INSERT INTO webhook_events (dedupe_key, event_type, raw_body, received_at, processed_at)
                       VALUES (%s, 1, '{}', now() - make_interval(secs => %s),
                               CASE WHEN %s THEN now() END)
                       RETURNING id""",
                    ("k-" + uuid.uuid4().hex, age_seconds, processed))
        return cur.fetchone()[0]


# --- holding the database up ---------------------------------------------------

class LockedOrders:
    """Hold LOCK TABLE orders IN ACCESS EXCLUSIVE MODE until release()."""

    def __init__(self, d):
        self.d = d
        self.conn = d.pg.connect(d.dbname, autocommit=False)
        with self.conn.cursor() as cur:
            cur.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")

    def waiters(self):
        """Backends of the test database waiting for a lock."""
        return self.d.pg.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                             "AND wait_event_type = 'Lock'", (self.d.dbname,))[0][0]

    def wait_waiters(self, n=1, timeout=10):
        try:
            ofharness.wait_for(lambda: self.waiters() >= n, timeout, 0.05, "%d blocked queries" % n)
        except TimeoutError:
            raise AssertionError("GET /api/health/orders did not block on the orders lock: "
                                 "does the health query read orders?")

    def release(self):
        if self.conn is not None:
            self.conn.commit()
            self.conn.close()
            self.conn = None


class Background:
    """GET path in a thread; .result is a Response or the exception raised."""

    def __init__(self, d, path="/api/health/orders", timeout=30):
        self.result = None
        self.t = threading.Thread(target=self._run, args=(d, path, timeout), daemon=True)
        self.t.start()

    def _run(self, d, path, timeout):
        try:
            self.result = d.get(path, timeout=timeout)
        except Exception as e:
            self.result = e

    def join(self, timeout=20):
        self.t.join(timeout)
        assert not self.t.is_alive(), "request still running"
        return self.result
