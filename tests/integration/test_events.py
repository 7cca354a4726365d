# Live updates: GET /api/events (src/http/sse.c) over the event log that
# triggers append in the changing transaction (sql/014_creator_events.sql).
#
# The issue asks: resume with Last-Event-ID loses nothing; two creators
# never see each other's events; events from a second daemon arrive.  The
# SSE format is the WHATWG HTML "Server-sent events" one (id:, event:,
# data: lines, a blank line ends an event, ':' starts a comment), read here
# by a small client over http.client (it decodes the chunked body).
#
# Runs under Debian's /usr/bin/python3 (see tests/run-checks.sh).

import json
import signal
import socket
import time

import pytest

from ofcheck import assert_error, metric_value, parse_metrics
from test_api import SECRET, auth

CONF = {"auth": {"jwt_secret": SECRET, "jwt_audience": "authenticated"},
        "ratelimit": {"rate": "0"}, "events": {"poll_interval": "50ms"}}


class Stream:
    """One open GET /api/events over a raw socket, read event by event (the
    chunked body decoded here: a socket file object cannot be read again
    after a time-out)."""

    def __init__(self, d, who, last_id=None, timeout=10.0, rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", d.port))
        headers = dict(auth(who))
        if last_id:
            headers["Last-Event-ID"] = last_id
        req = "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(
            "%s: %s\r\n" % kv for kv in headers.items()) + "\r\n"
        self.sock.sendall(req.encode())
        self.raw, self.buf, self.comments, self.eof = b"", b"", [], False
        while b"\r\n\r\n" not in self.raw:
            data = self.sock.recv(65536)
            assert data, "connection closed before the headers"
            self.raw += data
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in
                        (l.partition(":") for l in lines[1:])}
        self.chunked = self.headers.get("transfer-encoding") == "chunked"

    def _decode(self):
        """Move whole chunks from raw to buf."""
        if not self.chunked:
            self.buf, self.raw = self.buf + self.raw, b""
            return
        while b"\r\n" in self.raw:
            size_line, rest = self.raw.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                self.eof = True
                self.raw = b""
                return
            if len(rest) < size + 2:
                return
            self.buf += rest[:size]
            self.raw = rest[size + 2:]

    def next(self, timeout=10.0):
        """The next event as {"id","event","data"}, or None at EOF or time-out."""
        end = time.time() + timeout
        while True:
            self._decode()
            while b"\n\n" in self.buf:
                block, self.buf = self.buf.split(b"\n\n", 1)
                ev = self._parse(block.decode())
                if ev is not None:
                    return ev
            left = end - time.time()
            if self.eof or left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return None
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
                return None
            self.raw += data

    def _parse(self, block):
        ev = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                self.comments.append(line)
                continue
            k, _, v = line.partition(":")
            ev[k] = v[1:] if v.startswith(" ") else v
        if "event" not in ev:
            return None     # retry: or a comment
        ev["data"] = json.loads(ev.get("data") or "{}")
        return ev

    def collect(self, n, timeout=10.0, types=None):
        out, end = [], time.time() + timeout
        while len(out) < n and time.time() < end:
            ev = self.next(timeout=end - time.time())
            if ev is None:
                if self.eof:
                    break
                continue
            if types is None or ev["event"] in types:
                out.append(ev)
        return out

    def close(self):
        self.sock.close()


def creator(d, email):
    return d.pg.sql("INSERT INTO creators (email, display_name) VALUES (%s, 'C') RETURNING id::text",
                    (email,), dbname=d.dbname)[0][0]


def order(d, cid, num, status="pending"):
    return d.pg.sql(
        "INSERT INTO orders (user_id, tiktok_order_id, order_number, order_status, total_amount,"
        " customer_name, shipping_address, order_date) VALUES (%s, %s, %s, %s, 10, 'Ann',"
        " '{\"city\":\"Austin\"}', now()) RETURNING id::text",
        (cid, "tt-" + num, "N-" + num, status), dbname=d.dbname)[0][0]


@pytest.fixture
def ev(make_daemon):
    d = make_daemon(overrides=CONF)
    d.start()
    d.a, d.b = creator(d, "a@events.test"), creator(d, "b@events.test")
    return d


def test_live_events_of_the_creator_only(ev):
    sa, sb = Stream(ev, ev.a), Stream(ev, ev.b)
    assert sa.status == 200 and sb.status == 200
    assert sa.headers["content-type"].startswith("text/event-stream"), sa.headers
    assert sa.headers["cache-control"] == "no-store" and sa.chunked
    time.sleep(0.3)     # both streams have their place in the log
    oa = order(ev, ev.a, "A1")
    ob = order(ev, ev.b, "B1")
    (e,) = sa.collect(1)
    assert e["event"] == "order.created" and e["data"]["order_id"] == oa, e
    assert e["data"]["order_number"] == "N-A1" and e["data"]["order_status"] == "pending"
    xid, seq = e["id"].split("-")
    assert xid.isdigit() and seq.isdigit(), e["id"]
    (f,) = sb.collect(1)
    assert f["data"]["order_id"] == ob

    # A status change through the API: its event, and nothing of B's on A's stream.
    r = ev.post("/api/orders/%s/status" % oa, json.dumps({"status": "confirmed"}).encode(),
                headers=dict(auth(ev.a), **{"Content-Type": "application/json"}))
    assert r.status == 200, r
    (g,) = sa.collect(1, types={"order.status_changed"})
    assert g["data"]["from"] == "pending" and g["data"]["to"] == "confirmed", g
    assert g["data"]["version"] == 2
    assert g["id"] > e["id"] or int(g["id"].split("-")[0]) > int(xid)
    order(ev, ev.b, "B2")
    assert sa.collect(1, timeout=1.0) == []
    seen_b = [x["data"].get("order_id") for x in sb.collect(1)]
    assert oa not in seen_b
    sa.close()
    sb.close()


def test_resume_with_last_event_id_loses_nothing_and_repeats_nothing(ev):
    s = Stream(ev, ev.a)
    time.sleep(0.3)
    first = order(ev, ev.a, "R0")
    (e,) = s.collect(1)
    assert e["data"]["order_id"] == first
    s.close()
    missed = [order(ev, ev.a, "R%d" % i) for i in range(1, 6)]
    order(ev, ev.b, "RB")
    s = Stream(ev, ev.a, last_id=e["id"])
    got = s.collect(5)
    assert [x["data"]["order_id"] for x in got] == missed, got
    assert all(x["event"] == "order.created" for x in got)
    # then live, with nothing repeated
    live = order(ev, ev.a, "R6")
    (n,) = s.collect(1)
    assert n["data"]["order_id"] == live
    assert s.collect(1, timeout=0.7) == []
    s.close()


def test_resume_past_retention_says_reset(ev):
    s = Stream(ev, ev.a)
    time.sleep(0.3)
    order(ev, ev.a, "P0")
    (e,) = s.collect(1)
    s.close()
    ev.pg.sql("DELETE FROM creator_events", dbname=ev.dbname)
    kept = order(ev, ev.a, "P1")
    s = Stream(ev, ev.a, last_id=e["id"])
    reset = s.next()
    assert reset["event"] == "reset", reset
    (n,) = s.collect(1)
    assert n["data"]["order_id"] == kept
    s.close()


def test_a_transaction_still_running_holds_later_events_back_and_none_is_skipped(ev):
    s = Stream(ev, ev.a)
    time.sleep(0.3)
    slow = ev.pg.connect(ev.dbname, autocommit=False)
    with slow.cursor() as cur:
        cur.execute("INSERT INTO orders (user_id, tiktok_order_id, order_number, total_amount,"
                    " customer_name, shipping_address, order_date) VALUES (%s, 'tt-T1', 'N-T1', 1,"
                    " 'Ann', '{}', now()) RETURNING id::text", (ev.a,))
        t1 = cur.fetchone()[0]
    t2 = order(ev, ev.a, "T2")      # commits first, with a later xid
    assert s.collect(1, timeout=1.0) == [], "an event passed a transaction still running"
    slow.commit()
    slow.close()
    got = s.collect(2)
    assert [x["data"]["order_id"] for x in got] == [t1, t2], got
    s.close()


def test_a_rolled_back_change_reports_nothing(ev):
    s = Stream(ev, ev.a)
    time.sleep(0.3)
    c = ev.pg.connect(ev.dbname, autocommit=False)
    with c.cursor() as cur:
        cur.execute("INSERT INTO orders (user_id, tiktok_order_id, order_number, total_amount,"
                    " customer_name, shipping_address, order_date) VALUES (%s, 'tt-RB', 'N-RB', 1,"
                    " 'Ann', '{}', now())", (ev.a,))
    c.rollback()
    c.close()
    kept = order(ev, ev.a, "K1")
    (e,) = s.collect(1)
    assert e["data"]["order_id"] == kept
    s.close()


def test_workflow_attention_and_stock_events(ev):
    s = Stream(ev, ev.a)
    time.sleep(0.3)
    oid = order(ev, ev.a, "W1")
    wid = ev.pg.sql("INSERT INTO order_workflows (order_id, user_id, tiktok_order_id, workflow_name,"
                    " current_step, workflow_status) VALUES (%s, %s, 'tt-W1', 'default', 'validate',"
                    " 'running') RETURNING id::text", (oid, ev.a), dbname=ev.dbname)[0][0]
    ev.pg.sql("UPDATE order_workflows SET workflow_status = 'failed', last_error = 'no stock'"
              " WHERE id = %s", (wid,), dbname=ev.dbname)
    ev.pg.sql("INSERT INTO inventory_items (user_id, sku, on_hand, low_stock) VALUES (%s, 'S1', 10, 3)",
              (ev.a,), dbname=ev.dbname)
    ev.pg.sql("UPDATE inventory_items SET on_hand = 5 WHERE sku = 'S1'", dbname=ev.dbname)
    ev.pg.sql("UPDATE inventory_items SET on_hand = 3 WHERE sku = 'S1'", dbname=ev.dbname)
    ev.pg.sql("UPDATE inventory_items SET on_hand = 2 WHERE sku = 'S1'", dbname=ev.dbname)
    got = s.collect(5)
    types = [x["event"] for x in got]
    assert types == ["order.created", "workflow.step", "workflow.step", "attention.needed",
                     "stock.low"], got
    assert got[2]["data"]["status"] == "failed" and got[2]["data"]["from_status"] == "running"
    assert got[3]["data"]["error"] == "no stock" and got[3]["data"]["workflow_id"] == wid
    assert got[4]["data"] == {"sku": "S1", "product_name": None, "on_hand": 3, "reserved": 0,
                              "available": 3, "low_stock": 3}
    assert s.collect(1, timeout=0.7) == [], "stock.low repeated below the mark"
    s.close()


def test_events_from_a_second_daemon_arrive(ev, make_daemon):
    other = make_daemon(pg=ev.pg, dbname=ev.dbname, overrides=CONF)
    other.start(migrate=False)
    s = Stream(ev, ev.a)
    time.sleep(0.3)
    oid = order(ev, ev.a, "D1")
    (e,) = s.collect(1)
    r = other.post("/api/orders/%s/status" % oid, json.dumps({"status": "confirmed"}).encode(),
                   headers=dict(auth(ev.a), **{"Content-Type": "application/json"}))
    assert r.status == 200, r
    (f,) = s.collect(1, types={"order.status_changed"})
    assert f["data"]["order_id"] == oid and f["data"]["to"] == "confirmed"
    s.close()


def test_errors_and_caps(make_daemon):
    d = make_daemon(workers=1, overrides=dict(CONF, events={"max_streams_per_creator": 2,
                                                            "max_streams": 3}))
    d.start()
    a, b = creator(d, "a@caps.test"), creator(d, "b@caps.test")
    assert_error(d.get("/api/events"), 401, "unauthorized")
    assert_error(d.get("/api/events?x=1", headers=auth(a)), 400, "invalid_parameter")
    for bad in ("abc", "1", "1-", "-1", "1-2-3", "1" * 21 + "-1"):
        assert_error(d.get("/api/events", headers=dict(auth(a), **{"Last-Event-ID": bad})),
                     400, "invalid_last_event_id")
    s1, s2 = Stream(d, a), Stream(d, a)
    assert s1.status == 200 and s2.status == 200
    assert_error(d.get("/api/events", headers=auth(a)), 429, "too_many_streams")
    s3 = Stream(d, b)
    assert s3.status == 200
    r = d.get("/api/events", headers=auth(b))
    assert_error(r, 503, "unavailable")
    assert r.header("Retry-After")
    s1.close()
    # the closed stream's place is free again, once the daemon noticed
    end = time.time() + 5
    while True:
        s4 = Stream(d, a)
        if s4.status == 200 or time.time() > end:
            break
        s4.close()
        time.sleep(0.1)
    assert s4.status == 200
    m = parse_metrics(d.get("/metrics").text)
    assert metric_value(m, "orderflow_event_streams") == 3
    assert metric_value(m, "orderflow_event_streams_refused_total") >= 2
    for s in (s2, s3, s4):
        s.close()


def test_heartbeat_on_a_quiet_stream(make_daemon):
    d = make_daemon(overrides=dict(CONF, events={"heartbeat": "1s"}))
    d.start()
    a = creator(d, "a@beat.test")
    s = Stream(d, a)
    assert s.next(timeout=2.5) is None
    assert ": ping" in s.comments, s.comments
    s.close()


def test_a_drain_ends_the_streams(make_daemon):
    d = make_daemon(overrides=dict(CONF, server={"shutdown_timeout": "20s"}))
    d.start()
    a = creator(d, "a@drain.test")
    s = Stream(d, a)
    time.sleep(0.2)
    t0 = time.time()
    d.send_signal(signal.SIGTERM)
    assert s.next(timeout=10) is None     # EOF, not a time-out
    assert time.time() - t0 < 5
    d.wait_exit(10)
    assert time.time() - t0 < 8, "the drain waited for the stream"


def test_a_client_that_does_not_read_is_dropped(make_daemon):
    d = make_daemon(workers=1, overrides=dict(CONF, events={"max_buffer": "8k"}))
    d.start()
    a = creator(d, "a@slow.test")
    s = Stream(d, a, rcvbuf=4096)
    time.sleep(0.3)
    d.pg.sql("INSERT INTO orders (user_id, tiktok_order_id, order_number, total_amount,"
             " customer_name, shipping_address, order_date) SELECT %s, 'tt-S' || g, 'N-S' || g, 1,"
             " 'Ann', '{}', now() FROM generate_series(1, 20000) g", (a,), dbname=d.dbname)
    end = time.time() + 20
    while time.time() < end:
        m = parse_metrics(d.get("/metrics").text)
        if metric_value(m, "orderflow_event_streams_slow_total") >= 1:
            break
        time.sleep(0.2)
    assert metric_value(m, "orderflow_event_streams_slow_total") == 1
    assert metric_value(m, "orderflow_event_streams") == 0
    assert d.get("/healthz").status == 200
    s.close()


def test_old_events_are_deleted_after_retention(make_daemon):
    d = make_daemon(overrides=dict(CONF, events={"retention": "1min"}))
    d.start()
    a = creator(d, "a@ret.test")
    order(d, a, "O1")
    order(d, a, "O2")
    d.pg.sql("UPDATE creator_events SET created_at = now() - interval '2 minutes'"
             " WHERE data->>'order_number' = 'N-O1'", dbname=d.dbname)
    d.stop()
    d.start(migrate=False)      # worker 0 sweeps a second after start
    end = time.time() + 10
    while time.time() < end:
        left = d.pg.sql("SELECT data->>'order_number' FROM creator_events ORDER BY seq",
                        dbname=d.dbname)
        if left == [("N-O2",)]:
            break
        time.sleep(0.2)
    assert left == [("N-O2",)]
