# Order processing and sync against the fake TikTok Shop server (real HTTPS,
# real signing): Get Order Detail after a webhook, the one-transaction apply,
# never moving an order back, retries, the breaker, dead letters and their
# replay, shop pauses, polling reconciliation, and crash safety.
#
# Runs under Debian's /usr/bin/python3 (see tests/run-checks.sh).

import json
import os
import subprocess
import sys
import threading
import time

import pytest

import ofharness
from ofcheck import assert_error, metric_value, parse_metrics
from test_webhook import SHOP, envelope, sign

sys.path.insert(0, os.path.join(ofharness.srcdir(), "tests", "faketiktok"))
from faketiktok import FakeTikTok  # noqa: E402

APP_KEY = "abcdef"
SECRET = "123"
TOKEN = "tok-fake-1"
CIPHER = "cipher-1"
# Fulfilled by TikTok: the seller cannot ship it, so its run parks at ready_to_ship
# waiting for TikTok (what these tests look at; shipping itself: test_shipping.py).
FBT = "FULFILLMENT_BY_TIKTOK"
ADMIN = "admin-secret-token"


@pytest.fixture(scope="session")
def certs():
    d = os.path.join(ofharness.base_dir(), "tt-certs")
    subprocess.run(["sh", os.path.join(ofharness.srcdir(), "tests", "faketiktok", "mkcerts.sh"), d],
                   check=True)
    return d


@pytest.fixture
def fake(certs):
    f = FakeTikTok(os.path.join(certs, "server.pem"), os.path.join(certs, "server.key"),
                   app_key=APP_KEY, app_secret=SECRET, access_token=TOKEN,
                   shop_cipher=CIPHER).start()
    yield f
    f.stop()


def seed_shop(d, shop=SHOP):
    d.pg.sql("INSERT INTO creators (email, display_name) VALUES (%s, 'Seller') "
             "ON CONFLICT (email) DO NOTHING", ("s-%s@example.com" % shop,), dbname=d.dbname)
    d.pg.sql("INSERT INTO shops (creator_id, tiktok_shop_id, app_key, app_secret, access_token, "
             "shop_cipher) SELECT id, %s, %s, %s, %s, %s FROM creators WHERE email = %s",
             (shop, APP_KEY, SECRET, TOKEN, CIPHER, "s-%s@example.com" % shop), dbname=d.dbname)


def synced(make_daemon, fake, certs, tiktok=None, start=True, **kw):
    """A daemon pointed at the fake, its shop seeded before it starts."""
    conf = {"api_base": fake.url, "ca_file": os.path.join(certs, "ca.pem"),
            "retry_base": "100ms", "retry_max": "400ms", "claim_interval": "300ms"}
    conf.update(tiktok or {})
    d = make_daemon(overrides={"tiktok": conf, "admin": {"token": ADMIN}}, **kw)
    d.migrate()
    seed_shop(d)
    if start:
        d.start(migrate=False)
    return d


def post(d, body):
    return d.post("/webhooks/tiktok", body,
                  headers={"Content-Type": "application/json", "Authorization": sign(body)})


def hook(d, order, nid, status="AWAITING_SHIPMENT", kind=1, update=None):
    body = json.loads(envelope(nid=nid, order=order, update=update))
    body["type"] = kind
    body["data"]["order_status"] = status
    r = post(d, json.dumps(body).encode())
    assert r.status == 200, r
    return r


def sql(d, q, args=None):
    return d.pg.sql(q, args, dbname=d.dbname)


def wait_sql(d, q, want, timeout=20, args=None):
    """Wait until the query's first value equals want; return it."""
    last = [None]

    def ok():
        rows = sql(d, q, args)
        last[0] = rows[0][0] if rows else None
        return last[0] == want
    try:
        ofharness.wait_for(ok, timeout, 0.1, q)
    except TimeoutError:
        raise AssertionError("%s: wanted %r, last %r\n%s" % (q, want, last[0], d.log_text()[-4000:]))
    return last[0]


def metrics(d):
    return parse_metrics(d.get("/metrics").text)


def line(lid, sku, price, name="Thing"):
    return {"id": lid, "sku_id": sku, "product_id": "p" + sku, "product_name": name,
            "sku_name": "Red", "seller_sku": "S-" + sku, "sale_price": price}


def test_webhook_fetches_and_applies_in_one_transaction(make_daemon, fake, certs):
    now = int(time.time())
    fake.seed({"id": "5001", "status": "AWAITING_SHIPMENT", "update_time": now, "fulfillment_type": FBT,
               "line_items": [line("l1", "A", "10.50"), line("l2", "B", "3.00"),
                              line("l3", "A", "10.50")]})
    d = synced(make_daemon, fake, certs)
    hook(d, "5001", "n1")
    wait_sql(d, "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL", 1)
    # The workflow then reserves the (untracked) stock and parks at ready_to_ship:
    # processing, one status change later (the engine's, source system).
    wait_sql(d, "SELECT workflow_status::text FROM orders", "ready_to_ship")
    o = sql(d, "SELECT order_status, tiktok_status, total_amount::text, currency, version, "
               "extract(epoch FROM tiktok_update_time)::bigint FROM orders WHERE tiktok_order_id = '5001'")
    assert o[0][:2] == ("processing", "AWAITING_SHIPMENT") and o[0][3] == "USD" and o[0][5] == now, o
    items = sql(d, "SELECT sku_id, quantity, unit_price::text, total_price::text, tiktok_line_item_ids "
                   "FROM order_items ORDER BY sku_id")
    assert items == [("A", 2, "10.50", "21.00", ["l1", "l3"]), ("B", 1, "3.00", "3.00", ["l2"])], items
    hist = sql(d, "SELECT previous_status, new_status, change_source FROM order_status_history"
                  " ORDER BY created_at, change_source DESC")
    assert hist == [(None, "confirmed", "tiktok_shop"), ("confirmed", "processing", "system")], hist
    assert sql(d, "SELECT action FROM audit_log WHERE entity_type = 'order' ORDER BY id") == \
        [("order.created",), ("order.status_changed",)]
    m = metrics(d)
    assert metric_value(m, "orderflow_events_processed_total") == 1
    assert metric_value(m, "orderflow_orders_synced_total", source="webhook", result="applied") == 1
    # The fake saw a signed request with the token and the shop cipher.
    st = fake.stats()
    assert st["by_path"].get("/order/202309/orders") == 1 and not any(st["rejected"].values()), st


def test_same_notification_twice_one_order_one_history_row(make_daemon, fake, certs):
    fake.seed({"id": "5002", "status": "AWAITING_SHIPMENT", "update_time": int(time.time()),
               "fulfillment_type": FBT})
    d = synced(make_daemon, fake, certs)
    hook(d, "5002", "dup-1")
    assert hook(d, "5002", "dup-1").json()["message"] == "duplicate"
    wait_sql(d, "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL", 1)
    # The workflow's own change (processing) comes next; then nothing more.
    wait_sql(d, "SELECT workflow_status::text FROM orders", "ready_to_ship")
    # A second, different notification about the same unchanged order changes nothing.
    hook(d, "5002", "dup-2")
    wait_sql(d, "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL", 2)
    assert sql(d, "SELECT count(*) FROM orders") == [(1,)]
    assert sql(d, "SELECT count(*) FROM order_status_history WHERE change_source = 'tiktok_shop'") \
        == [(1,)]
    assert sql(d, "SELECT count(*) FROM order_status_history") == [(2,)]
    assert sql(d, "SELECT version, order_status::text FROM orders") == [(2, "processing")]


def test_out_of_order_snapshot_never_moves_order_back(make_daemon, fake, certs):
    t = int(time.time())
    fake.seed({"id": "5003", "status": "IN_TRANSIT", "update_time": t})
    d = synced(make_daemon, fake, certs)
    hook(d, "5003", "o1", status="IN_TRANSIT")
    wait_sql(d, "SELECT order_status::text FROM orders", "shipped")
    # TikTok (or a slow path) now hands us an older snapshot.
    fake.seed({"id": "5003", "status": "AWAITING_SHIPMENT", "update_time": t - 60})
    hook(d, "5003", "o2")
    wait_sql(d, "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL", 2)
    assert sql(d, "SELECT order_status::text, tiktok_status FROM orders") == [("shipped", "IN_TRANSIT")]
    assert sql(d, "SELECT count(*) FROM order_status_history") == [(1,)]
    stale = sql(d, "SELECT before->>'tiktok_status', after->>'tiktok_status' FROM audit_log "
                   "WHERE action = 'order.stale_snapshot'")
    assert stale == [("IN_TRANSIT", "AWAITING_SHIPMENT")], stale
    # A newer one moves it on.
    fake.seed({"id": "5003", "status": "DELIVERED", "update_time": t + 60})
    hook(d, "5003", "o3", status="DELIVERED")
    wait_sql(d, "SELECT order_status::text FROM orders", "delivered")
    assert sql(d, "SELECT count(*) FROM order_status_history") == [(2,)]


def test_cancellation_both_spellings(make_daemon, fake, certs):
    now = int(time.time())
    fake.seed([{"id": "5004", "status": "CANCELLED", "update_time": now},
               {"id": "5005", "status": "PARTIALLY_SHIPPING", "update_time": now}])
    d = synced(make_daemon, fake, certs)
    hook(d, "5004", "c1", status="CANCEL", kind=11)
    hook(d, "5005", "c2", status="PARTIALLY_SHIPPING")
    wait_sql(d, "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL", 2)
    assert sql(d, "SELECT tiktok_order_id, order_status::text FROM orders ORDER BY 1") == \
        [("5004", "cancelled"), ("5005", "processing")]


def test_throttled_then_ok_ends_processed_with_retry_counted(make_daemon, fake, certs):
    fake.seed({"id": "5006", "update_time": int(time.time())})
    fake.fault(path="/order/202309/orders", http_status=429, retry_after=0, count=1)
    fake.fault(path="/order/202309/orders", code=36009002, count=1)
    d = synced(make_daemon, fake, certs)
    hook(d, "5006", "t1")
    wait_sql(d, "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL", 1)
    assert sql(d, "SELECT attempts FROM webhook_events") == [(3,)]
    m = metrics(d)
    assert metric_value(m, "orderflow_events_retries_total") == 2
    assert metric_value(m, "orderflow_tiktok_throttled_total") == 2
    assert metric_value(m, "orderflow_tiktok_requests_total", outcome="retry") == 2
    assert fake.stats()["faults_served"] == 2


def _breaker_states(d):
    return [v for n, l, v in metrics(d) if n == "orderflow_tiktok_breaker_state"]


def test_breaker_opens_when_tiktok_is_down_and_closes_after(make_daemon, fake, certs):
    fake.seed([{"id": "60%02d" % i, "update_time": int(time.time())} for i in range(8)])
    fake.fault(path="/order/202309/orders", http_status=500, count=-1)
    d = synced(make_daemon, fake, certs, workers=1,
               tiktok={"breaker_threshold": "3", "breaker_reset": "1s", "retry_attempts": "20",
                       "detail_batch": "1"})
    for i in range(8):
        hook(d, "60%02d" % i, "b%d" % i)
    ofharness.wait_for(lambda: _breaker_states(d) == [2], 15, 0.1, "breaker open")
    h = d.get("/api/health/orders").json()
    assert h["checks"]["tiktokShop"]["breaker"] == "open" and h["status"] == "degraded", h
    served = fake.stats()["faults_served"]
    time.sleep(0.5)
    # While open nothing is sent (at most the probe after reset_ms).
    assert fake.stats()["faults_served"] <= served + 1
    fake.reset()
    fake.seed([{"id": "60%02d" % i, "update_time": int(time.time())} for i in range(8)])
    wait_sql(d, "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL", 8, timeout=30)
    assert _breaker_states(d) == [0]
    m = metrics(d)
    assert metric_value(m, "orderflow_tiktok_breaker_opens_total", worker="0") >= 1
    assert metric_value(m, "orderflow_events_parked_total") >= 1
    assert sql(d, "SELECT count(*) FROM webhook_events WHERE dead_at IS NOT NULL") == [(0,)]


def test_full_workers_leave_new_events_to_the_sweep(make_daemon, fake, certs):
    """TikTok down: once the workers hold tiktok.max_queue events, new ones are
    stored unleased (no statement per event to give it back), and the sweep
    processes them all when TikTok returns."""
    fake.fault(path="/order/202309/orders", http_status=500, count=-1)
    d = synced(make_daemon, fake, certs, workers=1,
               tiktok={"max_queue": "100", "breaker_threshold": "3", "breaker_reset": "1s",
                       "retry_attempts": "20", "claim_interval": "300ms"})
    acked, stop = [], threading.Event()
    _blast(d, "71", 250, acked, stop)
    assert len(acked) == 250
    held = metric_value(metrics(d), "orderflow_events_in_memory")
    assert 100 <= held <= 110, held
    unleased = sql(d, "SELECT count(*) FROM webhook_events WHERE lease_owner IS NULL")[0][0]
    assert unleased >= 140, unleased
    assert metric_value(metrics(d), "orderflow_events_released_total") == 0
    fake.reset()
    wait_sql(d, "SELECT count(*) FROM webhook_events WHERE processed_at IS NULL", 0, timeout=60)
    assert sql(d, "SELECT count(*), count(DISTINCT tiktok_order_id) FROM orders") == [(250, 250)]
    assert metric_value(metrics(d), "orderflow_events_claimed_total") >= 140


def test_exhausted_retries_dead_letter_listed_and_replayed(make_daemon, fake, certs):
    fake.seed({"id": "5007", "update_time": int(time.time())})
    fake.fault(path="/order/202309/orders", http_status=503, count=-1)
    d = synced(make_daemon, fake, certs, tiktok={"retry_attempts": "3", "breaker_threshold": "64"})
    hook(d, "5007", "d1")
    wait_sql(d, "SELECT count(*) FROM webhook_events WHERE dead_at IS NOT NULL", 1)
    assert sql(d, "SELECT attempts, last_error FROM webhook_events") == \
        [(3, "gave up after 3 attempts: HTTP 503")]
    assert metric_value(metrics(d), "orderflow_events_dead_total") == 1
    assert d.get("/api/health/orders").json()["metrics"]["deadLetters"] == 1
    # The admin endpoints want the token.
    assert_error(d.get("/api/admin/dead-letters"), 401, "unauthorized")
    auth = {"Authorization": "Bearer " + ADMIN}
    assert_error(d.get("/api/admin/dead-letters?limit=0", headers=auth), 400, "invalid_parameter")
    assert_error(d.get("/api/admin/dead-letters?bogus=1", headers=auth), 400, "invalid_parameter")
    dl = d.get("/api/admin/dead-letters", headers=auth).json()
    assert [(x["order_id"], x["attempts"]) for x in dl["dead_letters"]] == [("5007", 3)], dl
    assert dl["next_before_id"] is None
    assert_error(d.post("/api/admin/dead-letters/999999/replay", headers=auth), 404, "not_found")
    fake.reset()
    fake.seed({"id": "5007", "update_time": int(time.time())})
    r = d.post("/api/admin/dead-letters/%d/replay" % dl["dead_letters"][0]["id"], headers=auth)
    assert r.status == 200 and r.json() == {"replayed": 1}, r
    wait_sql(d, "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL", 1)
    assert sql(d, "SELECT count(*) FROM orders") == [(1,)]
    assert sql(d, "SELECT count(*) FROM audit_log WHERE action = 'webhook_event.replayed'") == [(1,)]


def test_admin_disabled_without_token(make_daemon):
    d = make_daemon()
    d.start()
    assert_error(d.get("/api/admin/dead-letters"), 403, "admin_disabled")
    assert_error(d.post("/api/admin/dead-letters/replay"), 403, "admin_disabled")


def test_invalid_upstream_order_is_a_dead_letter(make_daemon, fake, certs):
    fake.seed({"id": "5008", "status": "TELEPORTED", "update_time": int(time.time())})
    d = synced(make_daemon, fake, certs)
    hook(d, "5008", "i1")
    wait_sql(d, "SELECT count(*) FROM webhook_events WHERE dead_at IS NOT NULL", 1)
    assert sql(d, "SELECT last_error FROM webhook_events") == \
        [('unknown TikTok order status "TELEPORTED"',)]
    assert sql(d, "SELECT count(*) FROM orders") == [(0,)]


def test_refused_token_pauses_shop_and_keeps_events(make_daemon, fake, certs):
    fake.seed({"id": "5009", "update_time": int(time.time())})
    fake.fault(path="/order/202309/orders", code=105002, message="access token expired", count=1)
    d = synced(make_daemon, fake, certs)
    hook(d, "5009", "k1")
    wait_sql(d, "SELECT status::text FROM shops", "paused")
    h = d.get("/api/health/orders").json()
    tk = h["checks"]["tiktokShop"]
    assert tk["pausedShops"] == 1 and tk["paused"][0]["shop_id"] == SHOP, tk
    assert h["status"] == "degraded"
    time.sleep(1)
    # The event waits in the inbox: neither processed nor dead.
    assert sql(d, "SELECT processed_at IS NULL, dead_at IS NULL FROM webhook_events") == [(True, True)]
    # Re-authorised: the sweep picks it up.
    sql(d, "UPDATE shops SET status = 'active', paused_reason = NULL")
    wait_sql(d, "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL", 1, timeout=30)


def test_deauthorization_and_expiry_webhooks_pause_shop(make_daemon, fake, certs):
    d = synced(make_daemon, fake, certs)
    body = json.loads(envelope(nid="deauth-1"))
    body["type"] = 6
    body["data"] = {"message": "seller deauthorized"}
    assert post(d, json.dumps(body).encode()).status == 200
    wait_sql(d, "SELECT status::text FROM shops", "deauthorized")
    wait_sql(d, "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL", 1)
    assert sql(d, "SELECT action, after->>'status' FROM audit_log") == [("shop.paused", "deauthorized")]
    sql(d, "UPDATE shops SET status = 'active'")
    body["type"] = 7
    body["tts_notification_id"] = "exp-1"
    assert post(d, json.dumps(body).encode()).status == 200
    wait_sql(d, "SELECT status::text FROM shops", "paused")


def test_polling_finds_order_whose_webhook_never_came(make_daemon, fake, certs):
    now = int(time.time())
    fake.seed([{"id": "7001", "update_time": now - 10, "fulfillment_type": FBT},
               {"id": "7002", "status": "IN_TRANSIT", "update_time": now - 5}])
    d = synced(make_daemon, fake, certs, tiktok={"sync_interval": "1s", "sync_page_size": "1"})
    wait_sql(d, "SELECT count(*) FROM orders", 2)
    # 7001 gets a workflow (it reserves, so processing); 7002, first seen shipped, none.
    wait_sql(d, "SELECT workflow_status::text FROM orders WHERE tiktok_order_id = '7001'",
             "ready_to_ship")
    assert sql(d, "SELECT tiktok_order_id, order_status::text FROM orders ORDER BY 1") == \
        [("7001", "processing"), ("7002", "shipped")]
    assert sql(d, "SELECT count(*) FROM order_workflows w JOIN orders o ON o.id = w.order_id"
                  " WHERE o.tiktok_order_id = '7002'") == [(0,)]
    cursor = sql(d, "SELECT extract(epoch FROM sync_cursor)::bigint FROM shops")[0][0]
    assert cursor >= now
    m = metrics(d)
    assert metric_value(m, "orderflow_tiktok_sync_pages_total") >= 2
    assert metric_value(m, "orderflow_tiktok_sync_lag_seconds") < 60
    # A change seen later by polling moves the order on; history says TikTok did it.
    fake.seed({"id": "7001", "status": "DELIVERED", "update_time": int(time.time())})
    wait_sql(d, "SELECT order_status::text FROM orders WHERE tiktok_order_id = '7001'", "delivered")
    # ...and the workflow follows TikTok: shipped and delivered elsewhere, so completed.
    wait_sql(d, "SELECT workflow_status::text FROM order_workflows", "completed")
    assert fake.stats()["rejected"] == {} or not any(fake.stats()["rejected"].values())


def test_database_stopped_503_and_nothing_acknowledged_lost(make_daemon, private_pg, fake, certs):
    d = synced(make_daemon, fake, certs, pg=private_pg, tiktok={"lease": "3s"})
    acked = []
    for i in range(20):
        hook(d, "80%02d" % i, "pg%d" % i)
        acked.append("80%02d" % i)
    private_pg.stop()
    r = post(d, envelope(nid="during", order="8099"))
    assert r.status == 503 and r.header("Retry-After") is not None, r
    private_pg.start()
    wait_sql(d, "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL", 20, timeout=40)
    assert sql(d, "SELECT count(*) FROM orders") == [(20,)]
    assert sql(d, "SELECT count(*) FROM webhook_events WHERE order_id = '8099'") == [(0,)]


def _blast(d, prefix, n, acked, stop):
    """Send n webhooks (unique orders) on one keep-alive connection; record the acknowledged ones."""
    conn = d.connection(timeout=5)
    for i in range(n):
        if stop.is_set():
            return
        order = "%s%05d" % (prefix, i)
        body = envelope(nid="kill-" + order, order=order)
        try:
            conn.request("POST", "/webhooks/tiktok", body=body,
                         headers={"Content-Type": "application/json", "Authorization": sign(body)})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                acked.append(order)
        except OSError:
            return
        except Exception:
            return


def test_kill9_mid_load_then_restart_loses_and_doubles_nothing(make_daemon, fake, certs):
    fake.fault(path="/order/202309/orders", latency_ms=50, count=-1)   # keep work in flight
    d = synced(make_daemon, fake, certs)
    acked, stop = [], threading.Event()
    threads = [threading.Thread(target=_blast, args=(d, "9%d" % t, 400, acked, stop)) for t in range(4)]
    for t in threads:
        t.start()
    ofharness.wait_for(lambda: len(acked) >= 300, 30, 0.05, "300 acknowledged webhooks")
    d.proc.kill()
    d.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(10)
    n = len(acked)
    stored = {r[0] for r in sql(d, "SELECT order_id FROM webhook_events")}
    assert set(acked) <= stored, "acknowledged but not stored: %r" % sorted(set(acked) - stored)[:5]
    fake.reset()
    d.start(migrate=False)
    wait_sql(d, "SELECT count(*) FROM webhook_events WHERE processed_at IS NULL", 0, timeout=60)
    assert sql(d, "SELECT count(*) FROM webhook_events WHERE dead_at IS NOT NULL") == [(0,)]
    orders = sql(d, "SELECT count(*), count(DISTINCT tiktok_order_id) FROM orders")[0]
    # Every stored event, one order each.  Counted now, not at the kill: a
    # commit the killed daemon had sent may land in PostgreSQL just after it.
    total = sql(d, "SELECT count(*) FROM webhook_events")[0][0]
    assert orders[0] == orders[1] == total >= len(stored) >= n, (orders, total, len(stored), n)
    # Items were written once per SKU, never twice.
    assert sql(d, "SELECT count(*) FROM (SELECT order_id, sku_id FROM order_items "
                  "GROUP BY 1, 2 HAVING count(*) > 1) x") == [(0,)]
    assert "freeing the leases of a dead process" in d.log_text()
    # The sweep hands events to their owner workers across threads: the
    # gauge of events held must come back to zero, not drift.
    ofharness.wait_for(lambda: metric_value(metrics(d), "orderflow_events_in_memory") == 0,
                       10, 0.1, "no event held in memory")


def test_two_daemons_never_hold_the_same_event(make_daemon, session_pg, fake, certs):
    fake.fault(path="/order/202309/orders", latency_ms=100, count=-1)
    a = synced(make_daemon, fake, certs, start=False, tiktok={"claim_interval": "200ms"})
    # 200 stored events that nobody holds yet, as after a crash of a third process.
    sql(a, "INSERT INTO webhook_events (dedupe_key, shop_id, tiktok_shop_id, event_type, order_id, "
           "raw_body) SELECT 'pre-' || g, s.id, s.tiktok_shop_id, 1, (300000 + g)::text, '{}' "
           "FROM shops s, generate_series(1, 200) g")
    b = make_daemon(dbname=a.dbname, overrides={"tiktok": dict(a.conf["tiktok"]),
                                                "admin": {"token": ADMIN}})
    a.start(migrate=False)
    b.start(migrate=False)
    wait_sql(a, "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL", 200, timeout=60)
    # Each event was processed exactly once (attempts counts processings).
    assert sql(a, "SELECT attempts, count(*) FROM webhook_events GROUP BY 1") == [(1, 200)]
    claimed = [metric_value(metrics(x), "orderflow_events_claimed_total") for x in (a, b)]
    assert sum(claimed) == 200, claimed


def test_sigterm_with_calls_in_flight_exits_cleanly(make_daemon, fake, certs):
    fake.fault(path="/order/202309/orders", latency_ms=3000, count=-1)
    d = synced(make_daemon, fake, certs)
    for i in range(5):
        hook(d, "95%02d" % i, "s%d" % i)
    fake.seed({"id": "9599", "update_time": int(time.time())})
    ofharness.wait_for(lambda: fake.stats()["requests"] >= 1, 10, 0.05, "a detail call in flight")
    assert d.stop() == 0
    log = d.log_text()
    assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]
    # Nothing was lost: the events wait, leased, for the next start.
    assert sql(d, "SELECT count(*) FROM webhook_events WHERE processed_at IS NULL") == [(5,)]


def test_processed_bodies_purged_after_retention_dead_letters_kept(make_daemon, fake, certs):
    """A processed event's raw body (the buyer's data) goes after webhook.retention; its
    row stays (it deduplicates redeliveries); a dead letter keeps its body."""
    fake.seed({"id": "7701", "update_time": int(time.time())})
    d = synced(make_daemon, fake, certs, start=False)
    d.set("webhook", "retention", "2s")
    d.write_config()
    d.start(migrate=False)
    hook(d, "7701", "ret-1")
    wait_sql(d, "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL", 1)
    sql(d, "INSERT INTO webhook_events (dedupe_key, event_type, raw_body, received_at, dead_at,"
           " last_error) VALUES ('dead-1', 1, '{}', now() - interval '1 day', now(), 'x')")
    wait_sql(d, "SELECT count(*) FROM webhook_events WHERE raw_body IS NULL", 1, timeout=15)
    assert sql(d, "SELECT dedupe_key, raw_body IS NULL FROM webhook_events ORDER BY id") == \
        [("ret-1", True), ("dead-1", False)]
    # The redelivery is still recognised.
    r = hook(d, "7701", "ret-1")
    assert r.json()["message"] == "duplicate", r
    assert metric_value(parse_metrics(d.get("/metrics").text),
                        "orderflow_webhook_bodies_purged_total") == 1
