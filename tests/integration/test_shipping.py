# Shipping against the real servers, the fake TikTok Shop (fulfillment API,
# real signing) and the fake carrier (EasyPost v2: real HTTPS, API key,
# X-Hmac-Signature webhooks): both shipping paths from the webhook to
# shipped and on to completed, rate rules, missing parcel data, carrier
# faults and the breaker, a lost purchase answer, kill -9 during purchase
# and ship, voids on cancel (and a refused one), forged and replayed carrier
# webhooks, split packages, the drift report and the SLA clock.  What the
# fakes check and why: tests/faketiktok/FULFILLMENT.md, tests/fakecarrier/README.
#
# Runs under Debian's /usr/bin/python3 (see tests/run-checks.sh).

import json
import os
import sys
import time

import pytest

import ofharness
from ofcheck import assert_error, metric_value, parse_metrics
from test_sync import certs, fake, hook, line, sql, wait_sql  # noqa: F401
from test_workflow import api, act, engine, history, stock, stock_of, wait_wf

sys.path.insert(0, os.path.join(ofharness.srcdir(), "tests", "fakecarrier"))
from fakecarrier import FakeCarrier, sign_webhook  # noqa: E402

CARRIER_KEY = "EZTKtestkey123"
HOOK_SECRET = "whsec-test-1"
FROM = {"name": "Glow Shop", "street1": "9 Dock Rd", "city": "Austin", "state": "TX",
        "zip": "73301", "country": "US", "phone": "5125550100"}
PARCEL = {"weight_oz": 12, "length_in": 9, "width_in": 6, "height_in": 3}
SELLER = {"shipping_type": "SELLER"}
USPS_PROVIDER = "7117858858072016686"


@pytest.fixture
def carrier(certs):
    c = FakeCarrier(os.path.join(certs, "server.pem"), os.path.join(certs, "server.key"),
                    api_key=CARRIER_KEY, webhook_secret=HOOK_SECRET).start()
    yield c
    c.stop()


def secret_file(d, name, text):
    path = os.path.join(d.dir, name)
    with open(path, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)
    return path


def shipper(make_daemon, fake, carrier, certs, settings=None, start=True, overrides=None,
            **kw):
    """A daemon with both fakes, a shop, and (settings) the creator's shipping settings."""
    conf = {"carrier": {"api_base": carrier.url, "ca_file": os.path.join(certs, "ca.pem"),
                        "breaker_threshold": "3", "breaker_window": "5s",
                        "breaker_reset": "1s"},
            "shipping": {"retry_base": "100ms", "retry_max": "500ms"}}
    for k, v in (overrides or {}).items():
        conf.setdefault(k, {}).update(v)
    d = engine(make_daemon, fake, certs, start=False, overrides=conf, **kw)
    d.set("carrier", "api_key_file", secret_file(d, "carrier.key", CARRIER_KEY))
    d.set("carrier", "webhook_secret_file", secret_file(d, "carrier.secret", HOOK_SECRET))
    d.write_config()
    if settings is not None:
        sql(d, "INSERT INTO shipping_settings (user_id, from_address, parcel, rate_rule,"
               " handover_method) SELECT id, %s, %s, %s, %s FROM creators",
            (json.dumps(settings["from_address"]) if settings.get("from_address") else None,
             json.dumps(settings.get("parcel", {})),
             json.dumps(settings.get("rate_rule", {"choose": "cheapest"})),
             settings.get("handover_method", "PICKUP")))
    if start:
        d.start(migrate=False)
        carrier.set_webhook("http://127.0.0.1:%d/webhooks/carrier" % d.port, HOOK_SECRET)
    return d


def order(fake, oid, lines, status="AWAITING_SHIPMENT", **kw):
    doc = {"id": oid, "status": status, "update_time": int(time.time()), "line_items": lines}
    doc.update(kw)
    fake.seed(doc)


def shipments(d, oid):
    return sql(d, "SELECT s.state, s.carrier, s.service, s.tracking_number, s.label_url IS NOT NULL,"
                  " s.tiktok_package_id, s.shipping_provider_id, s.tracking_status, s.refund_status"
                  " FROM shipments s JOIN orders o ON o.id = s.order_id"
                  " WHERE o.tiktok_order_id = %s ORDER BY s.created_at", (oid,))


def detail(d, oid):
    return api(d, "GET", "/api/orders/%s" % oid).json()["order"]


def test_tiktok_shipping_ships_on_tiktok_and_completes_on_tiktok_delivery(
        make_daemon, fake, carrier, certs):
    order(fake, "9101", [line("l1", "A", "5.00"), line("l2", "A", "5.00")])
    d = shipper(make_daemon, fake, carrier, certs, settings={"handover_method": "DROP_OFF"},
                start=False)
    stock(d, "S-A", 10)
    d.start(migrate=False)
    hook(d, "9101", "t1")
    wait_wf(d, "9101", ("waiting", "shipped", "delivery", "shipped"))
    st = fake.stats()
    pkg = fake.orders()["9101"]["packages"][0]["id"]
    assert st["packages_shipped"] == {pkg: 1}, st
    rows = shipments(d, "9101")
    assert len(rows) == 1 and rows[0][0] == "shipped" and rows[0][3].startswith("TT") and rows[0][4]
    assert rows[0][5] == pkg
    # The stock left with the package: on hand and reserved both down.
    assert stock_of(d, "S-A") == (8, 0)
    assert carrier.stats()["purchases"] == 0          # TikTok's label, nothing bought
    steps = [(h["outcome"], h.get("action")) for h in history(d, "9101") if h.get("action")]
    assert ("done", "create_shipping_label") in steps and ("done", "ship_package") in steps
    assert ("done", "update_tiktok_status") in steps and ("done", "consume_stock") in steps
    doc = detail(d, "9101")
    assert doc["order_status"] == "shipped"
    info = doc["shipping_info"]
    assert info["shipping_type"] == "TIKTOK" and info["packages"][0]["handover_method"] == "DROP_OFF"
    assert info["label_url"].startswith("https://") and doc["tracking_info"]["tracking_number"]
    # TikTok reports the delivery: completed, order delivered.
    fake.set_status("9101", "DELIVERED")
    hook(d, "9101", "t2", status="DELIVERED")
    wait_wf(d, "9101", ("completed", "completed", "", "completed"))
    assert sql(d, "SELECT order_status::text FROM orders") == [("delivered",)]


def test_seller_shipping_buys_the_label_ships_it_and_completes_on_the_carriers_word(
        make_daemon, fake, carrier, certs):
    order(fake, "9201", [line("l1", "A", "5.00"), line("l2", "B", "7.00")], **SELLER)
    d = shipper(make_daemon, fake, carrier, certs,
                settings={"from_address": FROM, "parcel": PARCEL})
    hook(d, "9201", "s1")
    wait_wf(d, "9201", ("waiting", "shipped", "delivery", "shipped"))
    cs = carrier.stats()
    assert cs["purchases"] == 1 and cs["auth_failures"] == 0, cs
    assert "shipping step did not finish" not in d.log_text(), d.log_text()[-3000:]
    assert list(cs["purchases_by_reference"].values()) == [1]
    rows = shipments(d, "9201")
    assert len(rows) == 1
    state, car, svc, tracking, has_label, pkg, provider = rows[0][:7]
    assert state == "shipped" and car == "USPS" and has_label and provider == USPS_PROVIDER
    # TikTok made the package at Mark Package As Shipped; it holds our tracking number.
    tt = fake.orders()["9201"]
    assert tt["status"] == "AWAITING_COLLECTION"
    assert [p["id"] for p in tt["packages"]] == [pkg]
    assert {li["tracking_number"] for li in tt["line_items"]} == {tracking}
    assert fake.stats()["packages_shipped"] == {pkg: 1}
    doc = detail(d, "9201")
    info = doc["shipping_info"]
    assert info["carrier"] == "USPS" and info["label_cost"] > 0 and info["label_url"]
    assert doc["tracking_info"]["tracking_number"] == tracking
    # The carrier's delivered event: completed (TikTok still says collected).
    out = carrier.track(tracking, "in_transit", "Departed facility")
    assert out["delivered"] and out["status"] == 200, out
    out = carrier.track(tracking, "delivered", "Delivered, front door")
    assert out["delivered"] and out["status"] == 200, out
    wait_wf(d, "9201", ("completed", "completed", "", "completed"))
    doc = detail(d, "9201")
    assert doc["tracking_info"]["status"] == "delivered"
    assert [e["status"] for e in doc["tracking_info"]["events"]] == ["in_transit", "delivered"]
    # The same event again (a replay) is a duplicate; applied once.
    again = carrier.resend(out["event_id"])
    assert again["status"] == 200 and json.loads(again["body"])["duplicate"] is True, again
    assert sql(d, "SELECT count(*) FROM carrier_events") == [(2,)]
    # TikTok's own DELIVERED later is recorded, the run is not completed twice.
    fake.set_status("9201", "DELIVERED")
    hook(d, "9201", "s2", status="DELIVERED")
    wait_sql(d, "SELECT tiktok_status FROM orders", "DELIVERED")
    assert sql(d, "SELECT count(*) FROM order_workflows") == [(1,)]
    hist = history(d, "9201")
    assert sum(1 for h in hist if h.get("to") == "completed") == 1
    assert sql(d, "SELECT order_status::text FROM orders") == [("delivered",)]


def test_rate_rules_pick_the_rate(make_daemon, fake, carrier, certs):
    order(fake, "9301", [line("l1", "A", "5.00")], **SELLER)
    d = shipper(make_daemon, fake, carrier, certs, start=False,
                settings={"from_address": FROM, "parcel": PARCEL,
                          "rate_rule": {"choose": "fastest"}})
    d.start(migrate=False)
    hook(d, "9301", "r0")
    wait_wf(d, "9301", ("waiting", "shipped"))
    assert shipments(d, "9301")[0][1:3] == ("USPS", "Express")       # the fastest
    # The cheapest and a preferred carrier under a cap, through the rates API.
    for rule, want in (({"choose": "cheapest"}, ("USPS", "GroundAdvantage")),
                       ({"carrier": "UPS", "choose": "fastest"}, ("UPS", "2ndDayAir")),
                       ({"carrier": "UPS", "max_cost": "0.50"}, None)):
        body = {"from_address": FROM, "parcel": PARCEL, "rate_rule": rule}
        assert api(d, "PUT", "/api/settings/shipping", body).status == 200
        sql(d, "DELETE FROM shipments WHERE order_id IN (SELECT id FROM orders"
               " WHERE tiktok_order_id = '9302')")
        if not sql(d, "SELECT 1 FROM orders WHERE tiktok_order_id = '9302'"):
            sql(d, "INSERT INTO orders (user_id, shop_id, tiktok_order_id, order_number,"
                   " total_amount, customer_name, shipping_address, order_date, shipping_type)"
                   " SELECT o.user_id, o.shop_id, '9302', '9302', 5, 'Ann', o.shipping_address,"
                   " now(), 'SELLER' FROM orders o WHERE o.tiktok_order_id = '9301'")
            sql(d, "INSERT INTO order_items (order_id, user_id, tiktok_product_id, sku_id,"
                   " product_name, product_sku, quantity, unit_price, total_price,"
                   " tiktok_line_item_ids) SELECT o.id, o.user_id, 'p', 'k', 'Mug', 'S-A', 1, 5,"
                   " 5, '{x1}' FROM orders o WHERE o.tiktok_order_id = '9302'")
        r = api(d, "GET", "/api/orders/9302/shipping/rates")
        assert r.status == 200, r
        pkg = r.json()["packages"][0]
        assert len(pkg["rates"]) >= 6
        chosen = [x for x in pkg["rates"] if x["id"] == pkg["chosen"]]
        if want is None:
            assert pkg["chosen"] is None
        else:
            assert (chosen[0]["carrier"], chosen[0]["service"]) == want, (rule, pkg)
    # Buying a rate of the quote by hand.
    r = api(d, "GET", "/api/orders/9302/shipping/rates").json()["packages"][0]
    express = [x["id"] for x in r["rates"] if x["service"] == "Express"][0]
    assert_error(api(d, "POST", "/api/orders/9302/shipping/label", {"rate_id": "rate_nope"}),
                 409, "not_applicable")
    r = api(d, "POST", "/api/orders/9302/shipping/label", {"rate_id": express})
    assert r.status == 200, r
    assert shipments(d, "9302")[0][:3] == ("purchased", "USPS", "Express")
    assert sql(d, "SELECT count(*) FROM audit_log WHERE action = 'shipping.label'") == [(1,)]


def test_missing_parcel_data_needs_attention_never_a_guess(make_daemon, fake, carrier, certs):
    order(fake, "9401", [line("l1", "A", "5.00"), line("l2", "A", "5.00")], **SELLER)
    d = shipper(make_daemon, fake, carrier, certs, settings={"from_address": FROM})
    hook(d, "9401", "p1")
    wait_wf(d, "9401", ("failed", "ready_to_ship"))
    err = sql(d, "SELECT last_error FROM order_workflows")[0][0]
    assert "no parcel weight" in err and "S-A" in err, err
    assert carrier.stats()["shipments_created"] == 0
    inbox = api(d, "GET", "/api/workflows").json()
    assert [w["tiktok_order_id"] for w in inbox["workflows"]] == ["9401"]
    assert "retry" in inbox["workflows"][0]["allowed_actions"]
    # The SKU's weight and size, then a retry: bought and shipped.
    r = api(d, "PUT", "/api/inventory/S-A", {"on_hand": 0, "parcel": {"weight_oz": 5,
                                                                       "length_in": 8,
                                                                       "width_in": 5,
                                                                       "height_in": 2}})
    assert r.status == 200 and r.json()["parcel"]["weight_oz"] == 5, r
    # Two units of a sized SKU without a default size: still no parcel size.
    assert act(d, "9401", "retry").status == 200
    wait_wf(d, "9401", ("failed", "ready_to_ship"))
    assert "no parcel size" in sql(d, "SELECT last_error FROM order_workflows")[0][0]
    assert api(d, "PUT", "/api/settings/shipping", {"from_address": FROM, "parcel": {
        "length_in": 10, "width_in": 8, "height_in": 4}}).status == 200
    assert act(d, "9401", "retry").status == 200
    wait_wf(d, "9401", ("waiting", "shipped", "delivery"))
    assert carrier.shipments()[0]["parcel"]["weight"] in (10, 10.0, "10", "10.0")


def test_carrier_faults_are_retried_and_the_breaker_opens_and_closes(
        make_daemon, fake, carrier, certs):
    order(fake, "9501", [line("l1", "A", "5.00")], **SELLER)
    d = shipper(make_daemon, fake, carrier, certs, settings={"from_address": FROM, "parcel": PARCEL})
    carrier.fault(path="/shipments", http_status=429, retry_after=1, count=1)
    carrier.fault(path="/shipments", http_status=503, count=3)
    hook(d, "9501", "f1")
    wait_wf(d, "9501", ("waiting", "shipped", "delivery"), timeout=30)
    assert carrier.stats()["purchases"] == 1
    m = parse_metrics(d.get("/metrics").text)
    assert metric_value(m, "orderflow_carrier_throttled_total") >= 1
    assert metric_value(m, "orderflow_carrier_breaker_opens_total") >= 1
    assert metric_value(m, "orderflow_shipping_step_retries_total") >= 2
    steps = [h["outcome"] for h in history(d, "9501")]
    assert "retry" in steps or "breaker_open" in steps
    # Closed again once the carrier answers.
    ofharness.wait_for(lambda: all(
        v == 0 for n, _, v in parse_metrics(d.get("/metrics").text)
        if n == "orderflow_carrier_breaker_state"), 10, 0.2, "the breakers closed")


def test_lost_answer_to_a_purchase_buys_no_second_label(make_daemon, fake, carrier, certs):
    order(fake, "9601", [line("l1", "A", "5.00")], **SELLER)
    d = shipper(make_daemon, fake, carrier, certs, settings={"from_address": FROM, "parcel": PARCEL})
    # The carrier buys, then the answer is lost (twice: a 502, then a dropped connection).
    carrier.fault(path="/shipments/", method="POST", after=True, http_status=502, count=1)
    hook(d, "9601", "l1")
    wait_wf(d, "9601", ("waiting", "shipped", "delivery"), timeout=30)
    st = carrier.stats()
    assert st["purchases"] == 1, st
    assert len(shipments(d, "9601")) == 1


def test_kill_9_during_the_purchase_and_during_the_ship_call_acts_once(
        make_daemon, fake, carrier, certs):
    order(fake, "9701", [line("l1", "A", "5.00")], **SELLER)
    d = shipper(make_daemon, fake, carrier, certs, settings={"from_address": FROM, "parcel": PARCEL},
                overrides={"workflow": {"lease": "5s", "claim_interval": "200ms"}})
    # The purchase is carried out, its answer slow: the daemon dies while waiting for it.
    carrier.fault(path="/shipments/", method="POST", after=True, http_status=502,
                  latency_ms=3000, count=1)
    hook(d, "9701", "k1")
    ofharness.wait_for(lambda: carrier.stats()["buy_calls"] >= 1, 20, 0.05, "a buy call")
    d.proc.kill()
    d.proc.wait(10)
    d.start(migrate=False)
    wait_wf(d, "9701", ("waiting", "shipped", "delivery"), timeout=40)
    assert carrier.stats()["purchases"] == 1
    order(fake, "9702", [line("l1", "A", "5.00")], **SELLER)
    fake.fault(path="/fulfillment/202309/orders/*", after=True, http_status=502,
               latency_ms=3000, count=1)
    hook(d, "9702", "k2")
    ofharness.wait_for(lambda: fake.stats()["ship_calls"] >= 2, 20, 0.05, "the ship call")
    d.proc.kill()
    d.proc.wait(10)
    d.start(migrate=False)
    wait_wf(d, "9702", ("waiting", "shipped", "delivery"), timeout=40)
    st = fake.stats()
    assert all(n == 1 for n in st["packages_shipped"].values()) and \
        len(st["packages_shipped"]) == 2, st
    assert carrier.stats()["purchases"] == 2


def test_cancel_before_pickup_refunds_the_label_and_releases_the_stock(
        make_daemon, fake, carrier, certs):
    order(fake, "9801", [line("l1", "A", "5.00")], **SELLER)
    order(fake, "9802", [line("l1", "A", "5.00")], **SELLER)
    d = shipper(make_daemon, fake, carrier, certs, start=False,
                settings={"from_address": FROM, "parcel": PARCEL})
    stock(d, "S-A", 5)
    d.start(migrate=False)
    carrier.set_webhook("http://127.0.0.1:%d/webhooks/carrier" % d.port, HOOK_SECRET)
    # TikTok refuses the ship call: the run fails at ship_package, its label bought.
    fake.fault(path="/fulfillment/202309/orders/*", code=21011007, count=-1)
    hook(d, "9801", "c1")
    wait_wf(d, "9801", ("failed", "ready_to_ship"))
    assert shipments(d, "9801")[0][0] == "purchased"
    assert stock_of(d, "S-A") == (5, 1)
    assert act(d, "9801", "cancel", reason="buyer changed mind").status == 200
    wait_wf(d, "9801", ("cancelled",))
    assert shipments(d, "9801")[0][0] == "voided" and shipments(d, "9801")[0][8] == "submitted"
    assert stock_of(d, "S-A") == (5, 0)
    # A refund the carrier refuses: needs attention, with the label's cost.
    carrier.refuse_refunds(True)
    hook(d, "9802", "c2")
    wait_wf(d, "9802", ("failed", "ready_to_ship"))
    assert act(d, "9802", "cancel").status == 200
    wait_sql(d, "SELECT count(*) FROM shipments WHERE state = 'void_rejected'", 1)
    wait_wf(d, "9802", ("failed",))
    err = sql(d, "SELECT last_error FROM order_workflows w JOIN orders o ON o.id = w.order_id"
                 " WHERE o.tiktok_order_id = '9802'")[0][0]
    assert "refused to refund" in err and "USPS" in err and "cost" in err, err
    assert shipments(d, "9802")[0][0] == "void_rejected"
    # A person refunded it by hand: skip, and the stock goes back.
    assert act(d, "9802", "skip").status == 200
    wait_wf(d, "9802", ("cancelled",))
    assert stock_of(d, "S-A") == (5, 0)


def test_forged_tampered_and_replayed_carrier_webhooks(make_daemon, fake, carrier, certs):
    order(fake, "9901", [line("l1", "A", "5.00")], **SELLER)
    d = shipper(make_daemon, fake, carrier, certs, settings={"from_address": FROM, "parcel": PARCEL})
    hook(d, "9901", "w1")
    wait_wf(d, "9901", ("waiting", "shipped", "delivery"))
    tracking = shipments(d, "9901")[0][3]
    tracker = sql(d, "SELECT tracker_id FROM shipments")[0][0]
    event = {"id": "evt_forged1", "object": "Event", "description": "tracker.updated",
             "result": {"object": "Tracker", "id": tracker, "tracking_code": tracking,
                        "status": "delivered", "updated_at": "2030-01-01T00:00:00Z"}}
    body = json.dumps(event).encode()

    def post(b, sig):
        h = {"Content-Type": "application/json"}
        if sig is not None:
            h["X-Hmac-Signature"] = sig
        return d.request("POST", "/webhooks/carrier", body=b, headers=h)
    assert_error(post(body, None), 401, "invalid_signature")
    assert_error(post(body, sign_webhook("not-the-secret", body)), 401, "invalid_signature")
    assert_error(post(body.replace(b"delivered", b"delivereD"), sign_webhook(HOOK_SECRET, body)),
                 401, "invalid_signature")
    assert_error(post(body, "hmac-sha256-hex=zz"), 401, "invalid_signature")
    assert sql(d, "SELECT count(*) FROM carrier_events") == [(0,)]
    assert wf_state(d, "9901") == "waiting"
    # Signed right: applied once; the replay is a duplicate.
    r = post(body, sign_webhook(HOOK_SECRET, body))
    assert r.status == 200 and r.json() == {"received": True, "duplicate": False, "applied": True}
    r = post(body, sign_webhook(HOOK_SECRET, body))
    assert r.status == 200 and r.json()["duplicate"] is True
    wait_wf(d, "9901", ("completed",))
    assert sql(d, "SELECT count(*) FROM carrier_events") == [(1,)]
    # Not JSON, or not an event: 400 after the signature.
    bad = b'{"id": 1}'
    assert_error(post(bad, sign_webhook(HOOK_SECRET, bad)), 400, "invalid_event")


def wf_state(d, oid):
    return sql(d, "SELECT w.workflow_status::text FROM order_workflows w JOIN orders o"
                  " ON o.id = w.order_id WHERE o.tiktok_order_id = %s", (oid,))[0][0]


def test_split_packages_ship_one_by_one(make_daemon, fake, carrier, certs):
    lines = [dict(line("l1", "A", "5.00"), package_id="8000000000000000001"),
             dict(line("l2", "B", "6.00"), package_id="8000000000000000002")]
    order(fake, "9951", lines, packages=[{"id": "8000000000000000001"},
                                         {"id": "8000000000000000002"}], **SELLER)
    d = shipper(make_daemon, fake, carrier, certs, start=False,
                settings={"from_address": FROM, "parcel": PARCEL})
    stock(d, "S-A", 5)
    stock(d, "S-B", 5)
    d.start(migrate=False)
    # TikTok refuses the second package once: the first is shipped (its stock gone), the
    # second waits for a person.
    fake.fault(path="/fulfillment/202309/packages/8000000000000000002/ship", code=21011007,
               count=1)
    hook(d, "9951", "sp1")
    wait_wf(d, "9951", ("failed", "ready_to_ship"))
    assert [r[0] for r in shipments(d, "9951")] == ["shipped", "purchased"]
    assert stock_of(d, "S-A") == (4, 0) and stock_of(d, "S-B") == (5, 1)
    assert fake.stats()["packages_shipped"] == {"8000000000000000001": 1}
    # Retried: the second ships; the first is not shipped again.
    assert act(d, "9951", "retry").status == 200
    wait_wf(d, "9951", ("waiting", "shipped", "delivery"), timeout=30)
    rows = shipments(d, "9951")
    assert [r[0] for r in rows] == ["shipped", "shipped"] and len({r[3] for r in rows}) == 2
    assert fake.stats()["packages_shipped"] == {"8000000000000000001": 1,
                                                "8000000000000000002": 1}
    assert carrier.stats()["purchases"] == 2
    assert stock_of(d, "S-A") == (4, 0) and stock_of(d, "S-B") == (4, 0)
    assert sql(d, "SELECT status FROM inventory_reservations ORDER BY 1") == \
        [("consumed",), ("consumed",)]
    assert fake.orders()["9951"]["status"] == "AWAITING_COLLECTION"
    assert len(detail(d, "9951")["shipping_info"]["packages"]) == 2


def test_drift_report_shows_a_disagreement(make_daemon, fake, carrier, certs):
    d = shipper(make_daemon, fake, carrier, certs, overrides={"tiktok": {"sync_interval": "1s"}})
    order(fake, "9961", [line("l1", "A", "5.00")], fulfillment_type="FULFILLMENT_BY_TIKTOK")
    hook(d, "9961", "d1")
    wait_wf(d, "9961", ("waiting", "ready_to_ship", "shipment"))
    assert api(d, "GET", "/api/sync/drift").json()["count"] == 0
    # Injected: shipped here, TikTok still awaiting shipment, for longer than the interval.
    sql(d, "UPDATE orders SET order_status = 'shipped'")
    assert api(d, "GET", "/api/sync/drift").json()["count"] == 0
    time.sleep(1.2)
    r = api(d, "GET", "/api/sync/drift?limit=10").json()
    assert r["count"] == 1 and r["sync_interval_ms"] == 1000, r
    o = r["orders"][0]
    assert (o["tiktok_order_id"], o["order_status"], o["tiktok_status"], o["tiktok_means"]) == \
        ("9961", "shipped", "AWAITING_SHIPMENT", "confirmed")
    other = sql(d, "INSERT INTO creators (email, display_name) VALUES ('drift@example.com',"
                   " 'Other') RETURNING id::text")[0][0]
    assert api(d, "GET", "/api/sync/drift", who=other).json()["count"] == 0
    assert_error(api(d, "GET", "/api/sync/drift?limit=0"), 400, "invalid_parameter")
    assert_error(api(d, "GET", "/api/sync/drift?since=1"), 400, "invalid_parameter")


def test_sla_clock_flags_orders_at_risk_and_counts_late_dispatches(make_daemon, fake, carrier, certs):
    now = int(time.time())
    # Seller orders that cannot ship (no from address): one due in 2 h, one overdue.
    order(fake, "9971", [line("l1", "A", "5.00")], rts_sla_time=now + 7200, **SELLER)
    order(fake, "9972", [line("l1", "A", "5.00")], rts_sla_time=now - 600, **SELLER)
    d = shipper(make_daemon, fake, carrier, certs)
    hook(d, "9971", "sla1")
    hook(d, "9972", "sla2")
    wait_wf(d, "9971", ("failed", "ready_to_ship"))
    wait_wf(d, "9972", ("failed", "ready_to_ship"))
    inbox = api(d, "GET", "/api/workflows").json()["workflows"]
    assert [(w["tiktok_order_id"], w["at_risk"]) for w in inbox] == [("9972", True), ("9971", True)]

    def counted():
        m = parse_metrics(d.get("/metrics").text)
        return metric_value(m, "orderflow_shipping_orders_at_risk") == 1 and \
            metric_value(m, "orderflow_shipping_late_dispatches") == 1
    ofharness.wait_for(counted, 20, 0.2, "the SLA gauges")


def test_shipping_settings_api(make_daemon, fake, carrier, certs):
    d = shipper(make_daemon, fake, carrier, certs)
    got = api(d, "GET", "/api/settings/shipping").json()
    assert got["version"] == 0 and got["from_address"] is None and got["handover_method"] == "PICKUP"
    for bad, why in (({"from_address": {"street1": "x"}}, "from_address.city"),
                     ({"parcel": {"weight_oz": -1}}, "parcel.weight_oz"),
                     ({"rate_rule": {"choose": "slowest"}}, "rate_rule.choose"),
                     ({"handover_method": "MAIL"}, "handover_method"),
                     ({"x": 1}, "x: unknown field")):
        r = api(d, "PUT", "/api/settings/shipping", bad)
        assert_error(r, 400, "invalid_body")
        assert why in r.json()["error"]["message"], (bad, r.json())
    body = {"from_address": FROM, "parcel": PARCEL, "rate_rule": {"choose": "fastest"},
            "handover_method": "DROP_OFF"}
    r = api(d, "PUT", "/api/settings/shipping", body, {"If-Match": "0"})
    assert r.status == 200 and r.json()["version"] == 1, r
    assert_error(api(d, "PUT", "/api/settings/shipping", body, {"If-Match": "0"}), 412,
                 "version_mismatch")
    r = api(d, "PUT", "/api/settings/shipping", {"handover_method": "PICKUP"}, {"If-Match": "1"})
    assert r.status == 200 and r.json()["version"] == 2 and r.json()["from_address"] is None
    assert sql(d, "SELECT count(*) FROM audit_log WHERE action = 'shipping.settings'") == [(2,)]
    # Another creator sees only defaults.
    other = sql(d, "INSERT INTO creators (email, display_name) VALUES ('other@example.com',"
                   " 'Other') RETURNING id::text")[0][0]
    assert api(d, "GET", "/api/settings/shipping", who=other).json()["version"] == 0


def test_partial_cancellation_releases_the_cancelled_lines_stock_only(
        make_daemon, fake, carrier, certs):
    t = int(time.time())
    lines = [line("l1", "A", "5.00"), line("l2", "A", "5.00"), line("l3", "B", "7.00")]
    order(fake, "9981", lines, fulfillment_type="FULFILLMENT_BY_TIKTOK", update_time=t)
    d = shipper(make_daemon, fake, carrier, certs, start=False)
    stock(d, "S-A", 5)
    stock(d, "S-B", 5)
    d.start(migrate=False)
    hook(d, "9981", "pc1", update=t)
    wait_wf(d, "9981", ("waiting", "ready_to_ship", "shipment"))
    assert stock_of(d, "S-A") == (5, 2) and stock_of(d, "S-B") == (5, 1)
    # TikTok cancels the B line and one of the two A lines; the order goes on.
    cancelled = [line("l1", "A", "5.00"), dict(line("l2", "A", "5.00"), display_status="CANCELLED"),
                 dict(line("l3", "B", "7.00"), display_status="CANCELLED")]
    order(fake, "9981", cancelled, fulfillment_type="FULFILLMENT_BY_TIKTOK", update_time=t + 60)
    hook(d, "9981", "pc2", update=t + 60)
    wait_sql(d, "SELECT reserved FROM inventory_items WHERE sku = 'S-B'", 0)
    assert stock_of(d, "S-A") == (5, 1)
    assert sql(d, "SELECT i.sku, r.status, r.quantity FROM inventory_reservations r"
                  " JOIN inventory_items i ON i.id = r.inventory_item_id ORDER BY 1") == \
        [("S-A", "active", 1), ("S-B", "released", 1)]
    assert sql(d, "SELECT product_sku, quantity, cancelled_quantity, tiktok_line_item_ids,"
                  " cancelled_line_item_ids FROM order_items ORDER BY 1") == \
        [("S-A", 1, 1, ["l1"], ["l2"]), ("S-B", 0, 1, [], ["l3"])]
    assert wf_state(d, "9981") == "waiting"
    # TikTok ships what is left: one unit of A consumed, B untouched.
    fake.set_status("9981", "IN_TRANSIT")
    hook(d, "9981", "pc3", status="IN_TRANSIT")
    wait_wf(d, "9981", ("waiting", "shipped", "delivery"))
    assert stock_of(d, "S-A") == (4, 0) and stock_of(d, "S-B") == (5, 0)


def test_tiktoks_later_statuses_never_move_a_shipped_order_back(make_daemon, fake, carrier, certs):
    order(fake, "9991", [line("l1", "A", "5.00")], **SELLER)
    d = shipper(make_daemon, fake, carrier, certs, settings={"from_address": FROM, "parcel": PARCEL})
    hook(d, "9991", "b1")
    wait_wf(d, "9991", ("waiting", "shipped", "delivery", "shipped"))
    # update_tiktok_status stored TikTok's view: no drift, the order stays shipped.
    assert sql(d, "SELECT order_status::text, tiktok_status FROM orders") == \
        [("shipped", "AWAITING_COLLECTION")]
    # TikTok's webhook for the collection arrives later: still shipped.
    hook(d, "9991", "b2", status="AWAITING_COLLECTION", update=int(time.time()) + 5)
    time.sleep(1)
    assert sql(d, "SELECT order_status::text FROM orders") == [("shipped",)]
    fake.set_status("9991", "IN_TRANSIT")
    hook(d, "9991", "b3", status="IN_TRANSIT")
    wait_sql(d, "SELECT tiktok_status FROM orders", "IN_TRANSIT")
    assert sql(d, "SELECT order_status::text FROM orders") == [("shipped",)]
