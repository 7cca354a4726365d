# The dashboard API: GET /api/orders (filters, search, sort, pagination,
# cursor, summary) and GET /api/orders/{id}, authenticated by JWT, scoped by
# creator, rate limited.  Orders are seeded with SQL: exact expected ids.
#
# Runs under Debian's /usr/bin/python3 (see tests/run-checks.sh).

import base64
import datetime
import decimal
import hashlib
import hmac
import json
import os
import threading
import time
import urllib.parse

import pytest

import test_sync
from ofcheck import assert_error, metric_value
from test_sync import certs, fake  # noqa: F401  (fixtures)

SECRET = "api-test-secret-0123456789"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(sub, secret=SECRET, alg="HS256", exp=None, aud="authenticated", **claims):
    header = {"alg": alg, "typ": "JWT"}
    payload = {"sub": sub, "exp": int(time.time()) + 3600 if exp is None else exp,
               "aud": aud, "role": "authenticated"}
    payload.update(claims)
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    if alg == "none":
        return head + "."
    sig = hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest()
    return head + "." + b64(sig)


def auth(sub, **kw):
    return {"Authorization": "Bearer " + jwt(sub, **kw)}


# (order number suffix, status, workflow status, order_date, total, customer name, email)
ORDERS_A = [
    ("A1", "pending", "new", "2026-01-05T10:00:00Z", "10.00", "Alice Smith", "alice@example.com"),
    ("A2", "confirmed", "validated", "2026-01-06T10:00:00Z", "25.50", "Bob Jones", "bob@shop.test"),
    ("A3", "shipped", "shipped", "2026-01-07T10:00:00Z", "99.99", "Carol King", "carol@example.com"),
    ("A4", "delivered", "completed", "2026-01-07T10:00:00Z", "5.00", "alan Brown", "al@x.test"),
    ("A5", "delivered", "completed", "2026-01-07T10:00:00Z", "42.00", "Dave Null", "dave@y.test"),
    ("A6", "cancelled", "failed", "2026-02-01T00:00:00Z", "12.34", "Eve Adams", "eve@z.test"),
    ("A7", "processing", "ready_to_ship", "2026-02-02T23:59:59Z", "70.00", "Alfred Zed", "zed@q.test"),
]
ORDERS_B = [
    ("B1", "pending", "new", "2026-01-05T11:00:00Z", "1000.00", "Alice Other", "alice@other.test"),
]


def seed(d, email, orders):
    d.pg.sql("INSERT INTO creators (email, display_name) VALUES (%s, 'C')", (email,), dbname=d.dbname)
    cid = d.pg.sql("SELECT id::text FROM creators WHERE email = %s", (email,), dbname=d.dbname)[0][0]
    d.pg.sql("INSERT INTO shops (creator_id, tiktok_shop_id, app_key, app_secret) "
             "VALUES (%s, %s, 'k', 's')", (cid, "shop-" + email), dbname=d.dbname)
    ids = {}
    for num, st, wf, date, total, name, mail in orders:
        oid = d.pg.sql(
            "INSERT INTO orders (user_id, shop_id, tiktok_order_id, order_number, order_status,"
            " workflow_status, subtotal, tax, total_amount, customer_name, customer_email,"
            " shipping_address, order_date) SELECT %s, s.id, %s, %s, %s, %s, %s, 0, %s, %s, %s,"
            " '{\"full_address\":\"1 Main St\"}', %s FROM shops s WHERE s.creator_id = %s"
            " RETURNING id::text",
            (cid, "77" + num, "ORD-" + num, st, wf, total, total, name, mail, date, cid),
            dbname=d.dbname)[0][0]
        d.pg.sql("INSERT INTO order_items (order_id, user_id, tiktok_product_id, sku_id, product_name, product_sku,"
                 " quantity, unit_price, total_price) VALUES (%s, %s, 'p-1', 'sku-1', 'Thing', 'T-1', 1, %s, %s)",
                 (oid, cid, total, total), dbname=d.dbname)
        for i, (prev, new) in enumerate([(None, "pending"), ("pending", st)]):
            d.pg.sql("INSERT INTO order_status_history (order_id, user_id, previous_status, new_status,"
                     " change_source, created_at) VALUES (%s, %s, %s, %s, 'tiktok_shop',"
                     " now() - interval '1 hour' + %s * interval '1 minute')",
                     (oid, cid, prev, new, i), dbname=d.dbname)
        ids[num] = oid
    return cid, ids


@pytest.fixture
def api(make_daemon):
    d = make_daemon(overrides={"auth": {"jwt_secret": SECRET, "jwt_audience": "authenticated"},
                               "ratelimit": {"rate": "0"}})
    d.migrate()
    a, ids_a = seed(d, "a@example.com", ORDERS_A)
    b, ids_b = seed(d, "b@example.com", ORDERS_B)
    d.start(migrate=False)
    d.a, d.b, d.ids = a, b, dict(ids_a, **ids_b)
    return d


def numbers(doc):
    return [o["order_number"][4:] for o in doc["orders"]]


def listing(d, who, **params):
    q = urllib.parse.urlencode(params, doseq=True)
    r = d.get("/api/orders" + ("?" + q if q else ""), headers=auth(who))
    assert r.status == 200, r
    return r.json()


def test_detail_by_uuid_and_by_tiktok_id(api):
    for key in (api.ids["A3"], "77A3"):
        r = api.get("/api/orders/" + key, headers=auth(api.a))
        assert r.status == 200, r
        o = r.json()["order"]
        assert o["id"] == api.ids["A3"] and o["order_number"] == "ORD-A3"
        assert [i["sku_id"] for i in o["items"]] == ["sku-1"]
        assert [h["new_status"] for h in o["status_history"]] == ["shipped", "pending"]
        assert o["shipping_info"]["address"] == {"full_address": "1 Main St"}
        assert o["workflow"] is None


def test_other_creators_order_is_not_found(api):
    for key in (api.ids["B1"], "77B1", "00000000-0000-0000-0000-000000000000", "nope"):
        assert_error(api.get("/api/orders/" + key, headers=auth(api.a)), 404, "not_found")
    assert "B1" not in numbers(listing(api, api.a, limit=200))
    assert numbers(listing(api, api.b)) == ["B1"]


def test_list_default_sort_ties_broken_by_id_and_summary(api):
    doc = listing(api, api.a)
    same_day = sorted(["A3", "A4", "A5"], key=lambda n: api.ids[n], reverse=True)
    assert numbers(doc) == ["A7", "A6"] + same_day + ["A2", "A1"]
    assert doc["pagination"] == {"page": 1, "limit": 50, "total": 7, "total_pages": 1}
    s = doc["summary"]
    assert s["total_orders"] == 7 and abs(s["total_amount"] - 264.83) < 1e-9
    assert s["status_breakdown"] == {"pending": 1, "confirmed": 1, "processing": 1, "shipped": 1,
                                     "delivered": 2, "cancelled": 1, "returned": 0}
    assert doc["next_cursor"] is None


def test_filters_search_and_sort(api):
    a = api.a
    assert numbers(listing(api, a, status="delivered,shipped", sort_by="total_amount",
                           sort_order="asc")) == ["A4", "A5", "A3"]
    assert numbers(listing(api, a, status=["pending", "cancelled"], sort_by="order_date",
                           sort_order="asc")) == ["A1", "A6"]
    assert numbers(listing(api, a, workflow_status="completed,failed", sort_by="total_amount")) == \
        ["A5", "A6", "A4"]
    assert numbers(listing(api, a, date_from="2026-02-01", date_to="2026-02-02",
                           sort_order="asc")) == ["A6", "A7"]
    assert numbers(listing(api, a, date_to="2026-01-06T10:00:00Z", sort_order="asc")) == ["A1", "A2"]
    assert numbers(listing(api, a, date_from="2026-01-06T11:00:00+01:00", sort_order="asc",
                           sort_by="total_amount")) == ["A4", "A6", "A2", "A5", "A7", "A3"]
    # prefix, case-insensitive, over number, TikTok id, name and email
    assert numbers(listing(api, a, search="AL", sort_by="total_amount")) == ["A7", "A1", "A4"]
    assert numbers(listing(api, a, search="ord-a2")) == ["A2"]
    assert numbers(listing(api, a, search="77A6")) == ["A6"]
    assert numbers(listing(api, a, search="carol@")) == ["A3"]
    assert numbers(listing(api, a, search="smith")) == []
    doc = listing(api, a, status="delivered")
    assert doc["summary"]["total_orders"] == 2 and doc["summary"]["total_amount"] == 47
    assert doc["summary"]["status_breakdown"]["delivered"] == 2
    assert doc["summary"]["status_breakdown"]["pending"] == 0


def bound(text, upper):
    """The instant a date_from/date_to value names; date_to is inclusive (a whole day or +1 us)."""
    if len(text) == 10:
        t = datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.timezone.utc)
        return t + datetime.timedelta(days=1) if upper else t
    t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t + datetime.timedelta(microseconds=1) if upper else t


def expected_summary(rows, params):
    """The summary computed in Python from the creator's rows (order_date, status, wf, total)."""
    st = params.get("status", "").split(",") if params.get("status") else None
    wf = params.get("workflow_status", "").split(",") if params.get("workflow_status") else None
    lo = bound(params["date_from"], False) if "date_from" in params else None
    hi = bound(params["date_to"], True) if "date_to" in params else None
    keep = [r for r in rows if (st is None or r[1] in st) and (wf is None or r[2] in wf)
            and (lo is None or r[0] >= lo) and (hi is None or r[0] < hi)]
    breakdown = {s: 0 for s in ("pending", "confirmed", "processing", "shipped", "delivered",
                                "cancelled", "returned")}
    for r in keep:
        breakdown[r[1]] += 1
    return len(keep), sum((r[3] for r in keep), decimal.Decimal(0)), breakdown


SUMMARY_FILTERS = [
    {"status": s, "workflow_status": w, "date_from": f, "date_to": t}
    for s in (None, "delivered,shipped,confirmed")
    for w in (None, "completed,shipped,validated")
    for f in (None, "2026-01-06", "2026-01-06T11:00:00+01:00", "2026-01-07T10:00:00Z", "2026-01-07T10:00:01Z")
    for t in (None, "2026-01-07", "2026-01-06T23:59:59Z", "2026-02-01T00:00:00Z", "2026-01-07T10:00:00Z")
]


def check_summaries(d, who):
    rows = d.pg.sql("SELECT order_date, order_status::text, workflow_status::text, total_amount"
                    " FROM orders WHERE user_id = %s", (who,), dbname=d.dbname)
    checked = 0
    for f in SUMMARY_FILTERS:
        params = {k: v for k, v in f.items() if v is not None}
        if "date_from" in params and "date_to" in params and \
                bound(params["date_from"], False) >= bound(params["date_to"], True):
            continue
        n, total, breakdown = expected_summary(rows, params)
        doc = listing(d, who, **params)["summary"]
        assert (doc["total_orders"], decimal.Decimal(str(doc["total_amount"])), doc["status_breakdown"]) == \
            (n, total, breakdown), params
        checked += 1
    return checked


def test_summary_is_exact_before_and_after_the_roll_up(api):
    a, ids = api.a, api.ids
    # Hold the roll-up's lock: the daemon's roll-up must find it taken.
    lock = api.pg.connect(dbname=api.dbname)
    lock.cursor().execute("SELECT pg_advisory_lock(hashtext('orderflow.order_stats_rollup'))")
    assert post_status(api, a, ids["A2"], {"status": "processing"}).status == 200
    assert post_status(api, a, ids["A2"], {"status": "shipped"}).status == 200
    sql = lambda q, args=None: api.pg.sql(q, args, dbname=api.dbname)  # noqa: E731
    # an order moves to another day and changes its amount; one is added and removed again
    sql("UPDATE orders SET order_date = '2026-01-06T23:30:00Z', total_amount = 11.11 WHERE id = %s", (ids["A1"],))
    sql("UPDATE orders SET workflow_status = 'shipped' WHERE id = %s", (ids["A4"],))
    cid, extra = seed(api, "c@example.com", [("C1", "pending", "new", "2026-01-07T12:00:00Z", "3.00",
                                               "Carl", "carl@x.test")])
    sql("DELETE FROM order_items WHERE order_id = %s", (extra["C1"],))
    sql("DELETE FROM order_status_history WHERE order_id = %s", (extra["C1"],))
    sql("UPDATE orders SET user_id = %s, shop_id = (SELECT shop_id FROM orders WHERE id = %s)"
        " WHERE id = %s", (a, ids["A1"], extra["C1"]))
    sql("INSERT INTO orders (user_id, shop_id, tiktok_order_id, order_number, order_status, subtotal, tax,"
        " total_amount, customer_name, customer_email, shipping_address, order_date)"
        " SELECT user_id, shop_id, '77GONE', 'ORD-GONE', 'delivered', 1, 0, 1, 'x', 'x@x.test', '{}',"
        " '2026-01-07T01:00:00Z' FROM orders WHERE id = %s", (ids["A1"],))
    sql("DELETE FROM orders WHERE order_number = 'ORD-GONE'")
    assert sql("SELECT count(*) FROM order_stats_delta WHERE user_id = %s", (a,))[0][0] > 0
    checked = check_summaries(api, a)
    assert checked > 80
    # creator b's summary is its own
    assert listing(api, api.b)["summary"]["total_orders"] == 1
    # the daemon folds the deltas once the lock is free, and drops counters that reach zero
    lock.close()
    deadline = time.time() + 15
    while sql("SELECT count(*) FROM order_stats_delta")[0][0] > 0:
        assert time.time() < deadline, "the deltas were not folded"
        time.sleep(0.1)
    assert sql("SELECT count(*) FROM order_stats WHERE orders = 0")[0][0] == 0
    live = ("SELECT user_id, (order_date AT TIME ZONE 'UTC')::date, order_status, workflow_status,"
            " count(*), sum(total_amount) FROM orders GROUP BY 1, 2, 3, 4")
    kept = "SELECT user_id, day, order_status, workflow_status, orders, amount FROM order_stats"
    assert sql("SELECT count(*) FROM ((%s EXCEPT %s) UNION ALL (%s EXCEPT %s)) x" % (live, kept, kept, live)
               )[0][0] == 0
    assert check_summaries(api, a) == checked
    m = test_sync.metrics(api)
    assert metric_value(m, "orderflow_order_stats_folded_total") > 0
    assert metric_value(m, "orderflow_order_stats_rollup_failures_total") == 0


def test_pages_and_cursor_never_repeat_or_skip(api):
    everything = numbers(listing(api, api.a, sort_by="order_date", sort_order="asc"))
    for sort_by in ("order_date", "updated_at", "total_amount"):
        for order in ("asc", "desc"):
            full = numbers(listing(api, api.a, sort_by=sort_by, sort_order=order))
            paged = []
            for page in range(1, 5):
                doc = listing(api, api.a, sort_by=sort_by, sort_order=order, limit=2, page=page)
                assert doc["pagination"]["total"] == 7 and doc["pagination"]["total_pages"] == 4
                paged += numbers(doc)
            assert paged == full
            walked, cursor = [], None
            while True:
                params = {"sort_by": sort_by, "sort_order": order, "limit": 3}
                if cursor:
                    params["cursor"] = cursor
                doc = listing(api, api.a, **params)
                walked += numbers(doc)
                cursor = doc["next_cursor"]
                if cursor is None:
                    break
            assert walked == full, (sort_by, order)
            assert sorted(full) == sorted(everything)


BAD_QUERIES = [
    ("bogus=1", "bogus"), ("limit=0", "limit"), ("limit=201", "limit"), ("page=0", "page"),
    ("page=x", "page"), ("status=lost", "status"), ("status=pending,", "status"),
    ("workflow_status=done", "workflow_status"), ("date_from=2026-13-01", "date_from"),
    ("date_from=2026-02-30", "date_from"), ("date_to=yesterday", "date_to"),
    ("date_from=2026-02-02&date_to=2026-01-01", "date_to"), ("sort_by=name", "sort_by"),
    ("sort_order=up", "sort_order"), ("search=" + "x" * 101, "search"),
    ("cursor=zz", "cursor"), ("cursor=od_1_00000000-0000-0000-0000-000000000000&page=2", "cursor"),
    ("sort_by=total_amount&cursor=od_1_00000000-0000-0000-0000-000000000000", "cursor"),
]


def test_bad_parameters_are_400_naming_the_parameter(api):
    for query, param in BAD_QUERIES:
        err = assert_error(api.get("/api/orders?" + query, headers=auth(api.a)), 400,
                           "invalid_parameter")
        assert '"%s"' % param in err["message"], (query, err)


def test_authentication_is_required_and_checked(api):
    bad = [
        {},
        {"Authorization": "Basic abc"},
        auth(api.a, secret="wrong-secret"),
        {"Authorization": "Bearer " + jwt(api.a, alg="none")},
        {"Authorization": "Bearer " + jwt(api.a, alg="HS384")},
        auth(api.a, exp=int(time.time()) - 3600),
        auth(api.a, aud="someone-else"),
        auth("not-a-uuid"),
    ]
    for h in bad:
        for path in ("/api/orders", "/api/orders/" + api.ids["A1"]):
            r = api.get(path, headers=h)
            assert_error(r, 401, "unauthorized")
            assert r.header("WWW-Authenticate", "").startswith("Bearer"), r.headers


def test_valid_token_of_no_creator_is_403_everywhere(api):
    """Every signed-in Supabase user holds a valid token: one who is no creator gets 403,
    never an empty dashboard, and never a 503 that says to try again."""
    nobody = auth("5b3f5d8e-0000-4000-8000-0000000000aa")
    for _ in range(2):      # the second time from the worker's memory
        for path in ("/api/orders", "/api/orders/" + api.ids["A1"], "/api/workflows",
                     "/api/inventory", "/api/shops"):
            assert_error(api.get(path, headers=nobody), 403, "unknown_creator")
    r = api.post("/api/orders/bulk/status", json.dumps({"order_ids": ["77A1"], "status": "confirmed"}),
                 headers=dict(nobody, **{"Content-Type": "application/json"}))
    assert_error(r, 403, "unknown_creator")
    assert api.pg.sql("SELECT count(*) FROM bulk_batches", dbname=api.dbname) == [(0,)]
    # A creator made now is let in (within auth.api_key_ttl; this one was never asked about).
    fresh = "5b3f5d8e-0000-4000-8000-0000000000bb"
    api.pg.sql("INSERT INTO creators (id, email, display_name) VALUES (%s, 'fresh@x.test', 'F')",
               (fresh,), dbname=api.dbname)
    r = api.get("/api/orders", headers=auth(fresh))
    assert r.status == 200 and r.json()["orders"] == []


def test_failed_authentication_limited_per_address_before_any_lookup(make_daemon):
    d = make_daemon(workers=1, overrides={"auth": {"jwt_secret": SECRET, "failure_burst": "5",
                                                   "failure_refill": "300ms"},
                                          "ratelimit": {"rate": "0"}})
    d.migrate()
    a, _ = seed(d, "fl@example.com", ORDERS_A[:1])
    d.start(migrate=False)
    guesses = ["ApiKey ofk_%016x_%s" % (i, "A" * 43) for i in range(8)]
    codes = [d.get("/api/orders", headers={"Authorization": g}).status for g in guesses]
    assert codes[:5] == [401] * 5 and codes[5:] == [429] * 3, codes
    r = d.get("/api/orders", headers=auth(a))      # valid, but from the same address
    assert_error(r, 429, "too_many_failures")
    assert int(r.header("Retry-After")) >= 1
    m = test_sync.metrics(d)
    assert metric_value(m, "orderflow_auth_failures_total") == 5
    assert metric_value(m, "orderflow_auth_throttled_total") == 4
    time.sleep(0.7)     # two failures forgiven
    assert d.get("/api/orders", headers=auth(a)).status == 200


def test_rate_limit_429_then_recovery(make_daemon):
    d = make_daemon(overrides={"auth": {"jwt_secret": SECRET}, "ratelimit": {"rate": "2", "burst": "3"}})
    d.migrate()
    a, _ = seed(d, "rl@example.com", ORDERS_A[:1])
    d.start(migrate=False)
    codes = [d.get("/api/orders", headers=auth(a)) for _ in range(5)]
    assert [r.status for r in codes[:3]] == [200, 200, 200]
    assert codes[0].header("RateLimit-Limit") == "3"
    refused = [r for r in codes[3:] if r.status == 429]
    assert refused, [r.status for r in codes]
    assert_error(refused[0], 429, "rate_limited")
    assert int(refused[0].header("Retry-After")) >= 1
    time.sleep(1.2)
    assert d.get("/api/orders", headers=auth(a)).status == 200


def post_status(d, who, key, body, headers=None, ctype="application/json"):
    h = auth(who)
    h["Content-Type"] = ctype
    h.update(headers or {})
    return d.post("/api/orders/%s/status" % key, json.dumps(body).encode(), headers=h)


def test_status_change_follows_the_state_machine(api):
    a, ids = api.a, api.ids
    r = post_status(api, a, ids["A1"], {"status": "confirmed", "reason": "paid"})
    assert r.status == 200, r
    doc = r.json()
    assert doc["success"] is True and doc["queued_actions"] == []
    assert doc["order"]["order_status"] == "confirmed" and doc["order"]["version"] == 2
    hist = api.pg.sql("SELECT previous_status::text, new_status::text, change_source, changed_by::text,"
                      " status_reason FROM order_status_history WHERE order_id = %s ORDER BY created_at DESC"
                      " LIMIT 1", (ids["A1"],), dbname=api.dbname)
    assert hist == [("pending", "confirmed", "user", a, "paid")]
    audit = api.pg.sql("SELECT before->>'order_status', after->>'order_status' FROM audit_log"
                       " WHERE entity_id = %s AND action = 'order.status_changed'", (ids["A1"],),
                       dbname=api.dbname)
    assert audit == [("pending", "confirmed")]
    err = assert_error(post_status(api, a, ids["A1"], {"status": "delivered"}), 409, "invalid_transition")
    assert "processing" in err["message"] and "cancelled" in err["message"], err
    # cancel only before shipping; returned only after delivery
    assert_error(post_status(api, a, ids["A3"], {"status": "cancelled"}), 409, "invalid_transition")
    assert_error(post_status(api, a, ids["A2"], {"status": "returned"}), 409, "invalid_transition")
    assert post_status(api, a, "77A4", {"status": "returned"}).status == 200
    assert_error(post_status(api, a, ids["A6"], {"status": "pending"}), 409, "invalid_transition")
    # outbound actions are queued in the same transaction
    r = post_status(api, a, ids["A7"], {"status": "shipped", "sync_to_tiktok": True,
                                        "notify_customer": True})
    assert r.status == 200 and sorted(r.json()["queued_actions"]) == ["notify_customer", "sync_to_tiktok"]
    assert api.pg.sql("SELECT action, status FROM order_actions WHERE order_id = %s ORDER BY action",
                      (ids["A7"],), dbname=api.dbname) == [("notify_customer", "pending"),
                                                          ("sync_to_tiktok", "pending")]


def test_status_change_errors(api):
    a, ids = api.a, api.ids
    assert_error(post_status(api, a, ids["B1"], {"status": "confirmed"}), 404, "not_found")
    assert_error(post_status(api, api.b, "77A1", {"status": "confirmed"}), 404, "not_found")
    for body in ({}, {"status": "lost"}, {"status": "confirmed", "extra": 1},
                 {"status": "confirmed", "reason": "x" * 256}, {"status": "confirmed", "version": 0},
                 {"status": "confirmed", "notify_customer": "yes"}, ["confirmed"]):
        assert_error(post_status(api, a, ids["A1"], body), 400, "invalid_body")
    assert_error(post_status(api, a, ids["A1"], {"status": "confirmed"}, ctype="text/plain"),
                 415, "unsupported_media_type")
    assert_error(post_status(api, a, ids["A1"], {"status": "confirmed", "version": 2},
                             headers={"If-Match": '"1"'}), 400, "invalid_body")
    assert api.pg.sql("SELECT version FROM orders WHERE id = %s", (ids["A1"],), dbname=api.dbname) == [(1,)]


def test_stale_version_412_and_only_one_of_two_racers_wins(api):
    a, ids = api.a, api.ids
    assert post_status(api, a, ids["A1"], {"status": "confirmed"}, headers={"If-Match": '"1"'}).status == 200
    err = assert_error(post_status(api, a, ids["A1"], {"status": "processing"},
                                   headers={"If-Match": '"1"'}), 412, "version_mismatch")
    assert "version 2" in err["message"], err
    results = []
    barrier = threading.Barrier(2)

    def racer(status):
        barrier.wait()
        results.append(post_status(api, a, ids["A1"], {"status": status, "version": 2}).status)
    threads = [threading.Thread(target=racer, args=(s,)) for s in ("processing", "cancelled")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 412], results
    assert api.pg.sql("SELECT version FROM orders WHERE id = %s", (ids["A1"],), dbname=api.dbname) == [(3,)]
    assert api.pg.sql("SELECT count(*) FROM order_status_history WHERE order_id = %s AND change_source"
                      " = 'user'", (ids["A1"],), dbname=api.dbname) == [(2,)]


def test_detail_cache_is_used_and_never_stale_after_a_change(make_daemon):
    d = make_daemon(overrides={"auth": {"jwt_secret": SECRET}, "ratelimit": {"rate": "0"},
                               "api": {"order_cache_ttl": "60s"}})
    d.migrate()
    a, ids = seed(d, "cache@example.com", ORDERS_A[:2])
    d.start(migrate=False)
    path = "/api/orders/" + ids["A1"]
    assert d.get(path, headers=auth(a)).json()["order"]["customer_name"] == "Alice Smith"
    # A change behind the daemon's back is not seen: the copy comes from Redis.
    d.pg.sql("UPDATE orders SET customer_name = 'Changed Directly' WHERE id = %s", (ids["A1"],),
             dbname=d.dbname)
    assert d.get(path, headers=auth(a)).json()["order"]["customer_name"] == "Alice Smith"
    assert d.get("/api/orders/77A1", headers=auth(a)).json()["order"]["customer_name"] == "Changed Directly"
    # A change through the API is seen at once, under both ids.
    assert post_status(d, a, ids["A1"], {"status": "confirmed"}).status == 200
    for key in (ids["A1"], ids["A1"].upper(), "77A1"):
        o = d.get("/api/orders/" + key, headers=auth(a)).json()["order"]
        assert o["order_status"] == "confirmed" and o["version"] == 2, key
    # Another creator never gets the cached copy.
    assert_error(d.get(path, headers=auth(seed(d, "other@example.com", [])[0])), 404, "not_found")


def test_cache_forgotten_when_tiktok_changes_the_order(make_daemon, fake, certs):
    t = int(time.time())
    # Fulfilled by TikTok, so the run parks at ready_to_ship (see test_workflow.order).
    fake.seed({"id": "8801", "status": "AWAITING_SHIPMENT", "update_time": t,
               "fulfillment_type": "FULFILLMENT_BY_TIKTOK"})
    d = make_daemon(overrides={
        "tiktok": {"api_base": fake.url, "ca_file": os.path.join(certs, "ca.pem")},
        "auth": {"jwt_secret": SECRET}, "ratelimit": {"rate": "0"}, "api": {"order_cache_ttl": "60s"}})
    d.migrate()
    test_sync.seed_shop(d)
    d.start(migrate=False)
    creator = d.pg.sql("SELECT creator_id::text FROM shops", dbname=d.dbname)[0][0]
    test_sync.hook(d, "8801", "n1")
    # The workflow reserves the (untracked) stock: processing, parked at ready_to_ship.
    test_sync.wait_sql(d, "SELECT workflow_status::text FROM orders", "ready_to_ship")
    assert d.get("/api/orders/8801", headers=auth(creator)).json()["order"]["order_status"] == "processing"
    fake.seed({"id": "8801", "status": "IN_TRANSIT", "update_time": t + 60})
    test_sync.hook(d, "8801", "n2", status="IN_TRANSIT")
    test_sync.wait_sql(d, "SELECT order_status::text FROM orders", "shipped")
    assert d.get("/api/orders/8801", headers=auth(creator)).json()["order"]["order_status"] == "shipped"


def post_workflow(d, who, key, body, ctype="application/json"):
    h = auth(who)
    h["Content-Type"] = ctype
    return d.post("/api/orders/%s/workflow" % key, json.dumps(body).encode(), headers=h)


def post_action(d, who, key, body, headers=None):
    h = auth(who)
    h["Content-Type"] = "application/json"
    h.update(headers or {})
    return d.post("/api/orders/%s/workflow/actions" % key, json.dumps(body).encode(), headers=h)


def test_workflow_request_runs_once_unless_forced(api):
    """POST .../workflow starts the engine's run now; a second one is refused
    unless force_restart, which cancels (and compensates) the live run first."""
    import ofharness
    a, ids = api.a, api.ids
    r = post_workflow(api, a, ids["A2"], {"workflow_name": "standard_fulfillment",
                                          "config": {"carrier": "usps"}})
    assert r.status == 200, r
    first = r.json()["workflow_id"]
    assert r.json()["success"] is True and r.json()["workflow_name"] == "standard_fulfillment"
    assert_error(post_workflow(api, a, "77A2", {"workflow_name": "standard_fulfillment"}),
                 409, "workflow_running")
    assert_error(post_workflow(api, a, ids["A2"], {"workflow_name": "digital"}), 409,
                 "workflow_running")
    r = post_workflow(api, a, ids["A2"], {"workflow_name": "digital", "force_restart": True})
    assert r.status == 200, r
    assert r.json()["replaced"] == first
    second = r.json()["workflow_id"]
    assert second is not None and second != first

    def settled():
        rows = api.pg.sql("SELECT id::text, workflow_name, workflow_status::text, workflow_config"
                          " FROM order_workflows WHERE order_id = %s ORDER BY created_at",
                          (ids["A2"],), dbname=api.dbname)
        return rows if len(rows) == 2 and rows[1][2] == "completed" else None
    rows = ofharness.wait_for(settled, 10, 0.1, "the digital workflow to complete")
    assert rows[0] == (first, "standard_fulfillment", "cancelled", {"carrier": "usps"}), rows
    assert rows[1][:3] == (second, "digital", "completed"), rows
    detail = api.get("/api/orders/" + ids["A2"], headers=auth(a)).json()["order"]
    assert detail["workflow"]["id"] == second
    for body in ({}, {"workflow_name": "Teleport!"}, {"workflow_name": "digital", "config": [1]},
                 {"workflow_name": "digital", "force_restart": 1},
                 {"workflow_name": "digital", "x": 1}):
        assert_error(post_workflow(api, a, ids["A2"], body), 400, "invalid_body")
    assert_error(post_workflow(api, a, ids["A2"], {"workflow_name": "teleport"}), 400,
                 "unknown_workflow")
    assert_error(post_workflow(api, a, ids["B1"], {"workflow_name": "digital"}), 404, "not_found")
    # force_restart with nothing live to replace is a plain start, answered as one.
    r = post_workflow(api, a, ids["A1"], {"workflow_name": "digital", "force_restart": True})
    assert r.status == 200, r
    assert "replaced" not in r.json() and r.json()["workflow_name"] == "digital", r.json()


def test_make_token_script_mints_tokens_the_daemon_accepts(api):
    import subprocess
    import ofharness
    script = os.path.join(ofharness.srcdir(), "contrib", "make-token.sh")
    env = dict(os.environ, OF_JWT_SECRET=SECRET)
    token = subprocess.run(["bash", script, api.a, "60"], env=env, check=True,
                           capture_output=True, text=True).stdout.strip()
    r = api.get("/api/orders/" + api.ids["A1"], headers={"Authorization": "Bearer " + token})
    assert r.status == 200, r
    bad = subprocess.run(["bash", script, "nope"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "UUID" in bad.stderr


def post_bulk(d, who, body):
    h = auth(who)
    h["Content-Type"] = "application/json"
    return d.post("/api/orders/bulk/status", json.dumps(body).encode(), headers=h)


def test_bulk_status_mixed_batch(api):
    a, ids = api.a, api.ids
    body = {"order_ids": [ids["A1"], "77A2", ids["A3"], "no-such-order", ids["B1"], "77B1",
                          ids["A1"], ids["A6"], "77A7"],
            "status": "cancelled", "reason": "out of stock", "batch_size": 2}
    r = post_bulk(api, a, body)
    assert r.status == 200, r
    doc = r.json()
    assert doc["success"] is True and doc["processed"] == 3 and doc["failed"] == 6, doc
    errors = {e["order_id"]: e["error"] for e in doc["errors"]}
    assert set(errors) == {ids["A3"], "no-such-order", ids["B1"], "77B1", ids["A1"], ids["A6"]}, errors
    assert errors[ids["B1"]] == errors["77B1"] == errors["no-such-order"] == "not found"
    assert "shipped" in errors[ids["A3"]]
    got = {n: api.pg.sql("SELECT order_status::text FROM orders WHERE order_number = %s",
                         ("ORD-" + n,), dbname=api.dbname)[0][0] for n in ("A1", "A2", "A3", "A7", "B1")}
    assert got == {"A1": "cancelled", "A2": "cancelled", "A3": "shipped", "A7": "cancelled",
                   "B1": "pending"}
    hist = api.pg.sql("SELECT count(*) FROM order_status_history WHERE change_source = 'user'"
                      " AND metadata->>'bulk_batch_id' = %s", (doc["batch_id"],), dbname=api.dbname)
    assert hist == [(3,)]
    stored = api.get("/api/orders/bulk/" + doc["batch_id"], headers=auth(a))
    assert stored.status == 200, stored
    s = stored.json()
    assert s["state"] == "done" and s["total"] == 9 and s["processed"] == 3 and s["failed"] == 6
    assert [i["order_id"] for i in s["items"]] == body["order_ids"]
    assert [i["ok"] for i in s["items"]] == [True, True, False, False, False, False, False, False, True]
    # the batch is the caller's only
    assert_error(api.get("/api/orders/bulk/" + doc["batch_id"], headers=auth(api.b)), 404, "not_found")
    assert_error(api.get("/api/orders/bulk/nope", headers=auth(a)), 404, "not_found")
    assert_error(api.get("/api/orders/bulk/" + doc["batch_id"]), 401, "unauthorized")


def test_bulk_status_bad_bodies(api):
    for body in ({"status": "cancelled"}, {"order_ids": [], "status": "cancelled"},
                 {"order_ids": ["x"] * 10001, "status": "cancelled"},
                 {"order_ids": [1], "status": "cancelled"}, {"order_ids": ["x" * 65], "status": "cancelled"},
                 {"order_ids": ["x"], "status": "lost"}, {"order_ids": ["x"]},
                 {"order_ids": ["x"], "status": "cancelled", "batch_size": 0},
                 {"order_ids": ["x"], "status": "cancelled", "batch_size": 1001},
                 {"order_ids": ["x"], "status": "cancelled", "other": True}):
        assert_error(post_bulk(api, api.a, body), 400, "invalid_body")
    # The message names the field it does not know (as the OpenAPI document says).
    r = post_bulk(api, api.a, {"order_ids": ["x"], "status": "cancelled", "colour": "red"})
    assert r.json()["error"]["message"].endswith('does not know: "colour"'), r.json()
    assert api.pg.sql("SELECT count(*) FROM bulk_batches", dbname=api.dbname) == [(0,)]


def test_every_endpoint_keeps_creators_apart(api):
    """Creator B tries every /api/orders route on creator A's data."""
    import test_openapi
    a, b, ids = api.a, api.b, api.ids
    batch = post_bulk(api, a, {"order_ids": ["77A1"], "status": "confirmed"}).json()["batch_id"]
    tried = {
        ("/api/orders", "get"): lambda: listing(api, b, limit=200),
        ("/api/orders/{id}", "get"): lambda: [api.get("/api/orders/" + k, headers=auth(b))
                                              for k in (ids["A2"], "77A2")],
        ("/api/orders/{id}/status", "post"): lambda: post_status(api, b, ids["A2"], {"status": "cancelled"}),
        ("/api/orders/{id}/workflow", "post"): lambda: post_workflow(api, b, "77A2",
                                                                     {"workflow_name": "digital"}),
        ("/api/orders/{id}/workflow/actions", "post"): lambda: post_action(api, b, ids["A2"],
                                                                           {"action": "cancel"}),
        ("/api/orders/bulk/status", "post"): lambda: post_bulk(api, b, {"order_ids": [ids["A2"], "77A3"],
                                                                        "status": "cancelled"}),
        ("/api/orders/bulk/{id}", "get"): lambda: api.get("/api/orders/bulk/" + batch, headers=auth(b)),
        ("/api/orders/{id}/shipping/rates", "get"): lambda: [
            api.get("/api/orders/%s/shipping/rates" % k, headers=auth(b)) for k in (ids["A2"], "77A2")],
        ("/api/orders/{id}/shipping/label", "post"): lambda: api.request(
            "POST", "/api/orders/77A2/shipping/label", body=b"{}",
            headers=dict(auth(b), **{"Content-Type": "application/json"})),
        ("/api/orders/{id}/shipping/void", "post"): lambda: api.request(
            "POST", "/api/orders/%s/shipping/void" % ids["A2"], body=b"{}",
            headers=dict(auth(b), **{"Content-Type": "application/json"})),
    }
    routes = {(p, m) for p, ms in test_openapi.routes().items() if p.startswith("/api/orders")
              for m in ms}
    assert routes == set(tried), "a new /api/orders route needs a line here: %r" % (routes ^ set(tried))
    doc = tried[("/api/orders", "get")]()
    assert numbers(doc) == ["B1"] and doc["summary"]["total_orders"] == 1
    assert doc["summary"]["total_amount"] == 1000
    for r in tried[("/api/orders/{id}", "get")]():
        assert_error(r, 404, "not_found")
    assert_error(tried[("/api/orders/{id}/status", "post")](), 404, "not_found")
    assert_error(tried[("/api/orders/{id}/workflow", "post")](), 404, "not_found")
    assert_error(tried[("/api/orders/{id}/workflow/actions", "post")](), 404, "not_found")
    bulk = tried[("/api/orders/bulk/status", "post")]().json()
    assert bulk["processed"] == 0 and {e["error"] for e in bulk["errors"]} == {"not found"}
    assert_error(tried[("/api/orders/bulk/{id}", "get")](), 404, "not_found")
    for r in tried[("/api/orders/{id}/shipping/rates", "get")]():
        assert_error(r, 404, "not_found")
    assert_error(tried[("/api/orders/{id}/shipping/label", "post")](), 404, "not_found")
    assert_error(tried[("/api/orders/{id}/shipping/void", "post")](), 404, "not_found")
    assert api.pg.sql("SELECT count(*) FROM shipments", dbname=api.dbname) == [(0,)]
    # nothing of A's changed
    assert api.pg.sql("SELECT order_number, order_status::text, version FROM orders WHERE user_id = %s"
                      " AND order_number IN ('ORD-A2', 'ORD-A3') ORDER BY 1", (a,), dbname=api.dbname) == \
        [("ORD-A2", "confirmed", 1), ("ORD-A3", "shipped", 1)]
    assert api.pg.sql("SELECT count(*) FROM order_workflows", dbname=api.dbname) == [(0,)]


def test_redis_down_rate_limit_falls_back_in_process(make_daemon, private_redis):
    from ofcheck import metric_value, parse_metrics
    d = make_daemon(redis=private_redis, workers=1,
                    overrides={"auth": {"jwt_secret": SECRET}, "ratelimit": {"rate": "1", "burst": "2"},
                               "redis": {"command_timeout": "300ms"}})
    d.migrate()
    a, ids = seed(d, "redis-down@example.com", ORDERS_A[:1])
    d.start(migrate=False)
    assert [d.get("/api/orders", headers=auth(a)).status for _ in range(3)] == [200, 200, 429]
    private_redis.stop()
    time.sleep(0.5)
    # still answered, still limited: the worker's own bucket (a fresh one, full)
    codes = [d.get("/api/orders/" + ids["A1"], headers=auth(a)).status for _ in range(4)]
    assert codes[:2] == [200, 200] and 429 in codes[2:], codes
    m = parse_metrics(d.get("/metrics").text)
    assert metric_value(m, "orderflow_ratelimit_fallback_active") == 1
    assert metric_value(m, "orderflow_ratelimit_fallback_total") >= 4
