# The workflow engine against the real servers and the fake TikTok Shop
# server (real HTTPS, real signing): a synced order runs its workflow to
# ready_to_ship with its stock reserved, waits for stock and resumes when
# stock comes, retries a failing step and fails it into the inbox, takes
# manual actions, holds while TikTok holds the order, releases the stock
# when TikTok cancels, stops at the buyer's cancellation request, follows
# the creator's rules and definitions.  Crash and concurrency: test_wf_crash.py.
#
# Runs under Debian's /usr/bin/python3 (see tests/run-checks.sh).

import json
import os
import time

import ofharness
from ofcheck import assert_error, metric_value, parse_metrics
from test_api import SECRET, auth
from test_sync import ADMIN, certs, fake, hook, line, seed_shop, sql, wait_sql  # noqa: F401

SKU_A, SKU_B = "SKU-A", "SKU-B"


def engine(make_daemon, fake, certs, start=True, workers=2, overrides=None, **kw):
    """A daemon with the fake TikTok, a shop, a creator who can sign in."""
    conf = {"tiktok": {"api_base": fake.url, "ca_file": os.path.join(certs, "ca.pem"),
                       "retry_base": "100ms", "retry_max": "400ms", "claim_interval": "300ms"},
            "admin": {"token": ADMIN}, "auth": {"jwt_secret": SECRET}, "ratelimit": {"rate": "0"},
            "workflow": {"claim_interval": "200ms", "retry_base": "100ms", "retry_max": "300ms",
                         "stock_recheck": "1s"},
            "inventory": {"retry_base": "100ms", "retry_max": "300ms"}}
    for k, v in (overrides or {}).items():
        conf.setdefault(k, {}).update(v)
    d = make_daemon(overrides=conf, workers=workers, **kw)
    d.migrate()
    seed_shop(d)
    if start:
        d.start(migrate=False)
    return d


def creator(d):
    return sql(d, "SELECT id::text FROM creators ORDER BY created_at LIMIT 1")[0][0]


def stock(d, sku, on_hand):
    sql(d, "INSERT INTO inventory_items (user_id, sku, on_hand) SELECT id, %s, %s FROM creators "
           "ON CONFLICT (user_id, sku) DO UPDATE SET on_hand = EXCLUDED.on_hand", (sku, on_hand))


def order(fake, oid, lines, status="AWAITING_SHIPMENT", update=None, **kw):
    """Seed an order.  Fulfilled by TikTok unless told otherwise: the seller cannot ship it,
    so its run parks at ready_to_ship waiting for TikTok's shipment (ship_package waits as
    await_shipment does), which is where these tests look at reservations and manual
    actions.  The shipping steps themselves are tested in test_shipping.py."""
    doc = {"id": oid, "status": status, "update_time": update or int(time.time()),
           "line_items": lines, "fulfillment_type": "FULFILLMENT_BY_TIKTOK"}
    doc.update(kw)
    fake.seed(doc)


def wf(d, oid):
    rows = sql(d, "SELECT w.workflow_status::text, w.current_step, coalesce(w.wait_kind, ''),"
                  " o.workflow_status::text, w.version, w.id::text FROM order_workflows w"
                  " JOIN orders o ON o.id = w.order_id WHERE o.tiktok_order_id = %s"
                  " ORDER BY w.created_at DESC LIMIT 1", (oid,))
    return rows[0] if rows else None


def wait_wf(d, oid, want, timeout=20):
    last = [None]

    def ok():
        last[0] = wf(d, oid)
        return last[0] is not None and last[0][:len(want)] == want
    try:
        ofharness.wait_for(ok, timeout, 0.1, "workflow of %s" % oid)
    except TimeoutError:
        raise AssertionError("workflow of %s: wanted %r, last %r\n%s"
                             % (oid, want, last[0], d.log_text()[-5000:]))
    return last[0]


def stock_of(d, sku):
    return sql(d, "SELECT on_hand, reserved FROM inventory_items WHERE sku = %s", (sku,))[0]


def history(d, oid):
    return json.loads(sql(d, "SELECT w.step_history::text FROM order_workflows w JOIN orders o"
                             " ON o.id = w.order_id WHERE o.tiktok_order_id = %s"
                             " ORDER BY w.created_at DESC LIMIT 1", (oid,))[0][0])


def api(d, method, path, body=None, headers=None, who=None):
    h = auth(who or creator(d))
    if body is not None:
        h["Content-Type"] = "application/json"
        body = json.dumps(body).encode()
    h.update(headers or {})
    return d.request(method, path, body=body, headers=h)


def act(d, oid, action, version=None, reason=None):
    body = {"action": action}
    if reason is not None:
        body["reason"] = reason
    return api(d, "POST", "/api/orders/%s/workflow/actions" % oid, body,
               {"If-Match": '"%d"' % version} if version else None)


def test_new_order_runs_to_ready_to_ship_with_stock_reserved(make_daemon, fake, certs):
    order(fake, "7001", [line("l1", SKU_A, "5.00"), line("l2", SKU_A, "5.00"),
                         line("l3", SKU_B, "2.00")])
    d = engine(make_daemon, fake, certs, start=False)
    stock(d, "S-" + SKU_A, 10)
    stock(d, "S-" + SKU_B, 1)
    d.start(migrate=False)
    hook(d, "7001", "w1")
    got = wait_wf(d, "7001", ("waiting", "ready_to_ship", "shipment", "ready_to_ship"))
    assert stock_of(d, "S-" + SKU_A) == (10, 2) and stock_of(d, "S-" + SKU_B) == (1, 1)
    # processing once the stock is reserved (the state machine allows confirmed -> processing)
    assert sql(d, "SELECT order_status::text FROM orders") == [("processing",)]
    steps = [(h["outcome"], h.get("action"), h.get("to")) for h in history(d, "7001")]
    assert steps == [("validate", "validate_order", None), ("transition", None, "validated"),
                     ("done", "reserve_stock", None), ("transition", None, "inventory_reserved"),
                     ("transition", None, "ready_to_ship"), ("by_tiktok", "create_shipping_label", None),
                     ("wait", "ship_package", None)], steps
    assert all("ms" in h and "at" in h and "started_at" in h for h in history(d, "7001"))
    assert sql(d, "SELECT count(*), sum(quantity) FROM inventory_reservations"
                  " WHERE status = 'active'") == [(2, 3)]
    assert sql(d, "SELECT compensate FROM order_workflows") == [(["release_stock"],)]
    assert got[4] >= 2
    m = parse_metrics(d.get("/metrics").text)
    assert metric_value(m, "orderflow_workflow_started_total") == 1
    assert metric_value(m, "orderflow_workflow_reservations_total") == 1
    assert metric_value(m, "orderflow_workflow_waits_total", kind="shipment") == 1
    # The order's detail shows the run.
    doc = api(d, "GET", "/api/orders/7001").json()["order"]
    assert doc["workflow"]["current_step"] == "ready_to_ship"
    assert doc["workflow"]["workflow_status"] == "waiting"


def test_no_stock_waits_then_stock_added_resumes(make_daemon, fake, certs):
    order(fake, "7101", [line("l1", SKU_A, "5.00"), line("l2", SKU_A, "5.00")])
    d = engine(make_daemon, fake, certs, start=False)
    stock(d, "S-" + SKU_A, 1)
    d.start(migrate=False)
    hook(d, "7101", "s1")
    wait_wf(d, "7101", ("waiting", "validated", "stock", "validated"))
    assert stock_of(d, "S-" + SKU_A) == (1, 0)      # all or nothing: not one of two units
    inbox = api(d, "GET", "/api/workflows").json()["workflows"]
    assert [(w["tiktok_order_id"], w["status"], w["wait_kind"]) for w in inbox] == \
        [("7101", "waiting", "stock")]
    assert set(inbox[0]["allowed_actions"]) == {"skip", "cancel", "pause"}
    r = api(d, "PUT", "/api/inventory/S-" + SKU_A, {"on_hand": 5})
    assert r.status == 200, r
    wait_wf(d, "7101", ("waiting", "ready_to_ship", "shipment"))
    assert stock_of(d, "S-" + SKU_A) == (5, 2)
    m = parse_metrics(d.get("/metrics").text)
    assert metric_value(m, "orderflow_workflow_backorders_total") >= 1


def test_transient_fault_retried_then_exhausted_fails_then_manual_retry(make_daemon, fake,
                                                                         certs):
    order(fake, "7201", [line("l1", SKU_A, "5.00")])
    order(fake, "7202", [line("l1", SKU_B, "5.00")])
    d = engine(make_daemon, fake, certs, start=False)
    stock(d, "S-" + SKU_A, 3)
    stock(d, "S-" + SKU_B, 3)
    # A fault in the stock row's writes: the first one for SKU A, every one for SKU B.
    sql(d, "CREATE SEQUENCE fault_a")
    sql(d, """CREATE FUNCTION fault() RETURNS trigger LANGUAGE plpgsql AS $$
              BEGIN
                IF NEW.sku = 'S-SKU-A' AND nextval('fault_a') = 1 THEN
                    RAISE EXCEPTION 'injected fault (once)'; END IF;
                IF NEW.sku = 'S-SKU-B' AND NEW.reserved > OLD.reserved THEN
                    RAISE EXCEPTION 'injected fault (always)'; END IF;
                RETURN NEW;
              END $$""")
    sql(d, "CREATE TRIGGER fault BEFORE UPDATE ON inventory_items FOR EACH ROW EXECUTE FUNCTION fault()")
    d.start(migrate=False)
    hook(d, "7201", "f1")
    wait_wf(d, "7201", ("waiting", "ready_to_ship"))
    assert [h["outcome"] for h in history(d, "7201") if h.get("action") == "reserve_stock"] == \
        ["retry", "done"]
    hook(d, "7202", "f2")
    got = wait_wf(d, "7202", ("failed", "validated", "", "validated"))
    failed = [h for h in history(d, "7202") if h["outcome"] == "failed"]
    assert len(failed) == 1 and "injected fault (always)" in failed[0]["error"], failed
    assert failed[0]["attempt"] == 2                  # inventory.retry_attempts
    inbox = api(d, "GET", "/api/workflows?status=failed").json()["workflows"]
    assert [w["tiktok_order_id"] for w in inbox] == ["7202"]
    assert "injected fault" in inbox[0]["reason"]
    assert set(inbox[0]["allowed_actions"]) == {"retry", "skip", "cancel"}
    # Not allowed now: 409 with what is.
    r = act(d, "7202", "resume")
    assert_error(r, 409, "action_not_allowed")
    assert "retry" in r.json()["error"]["message"]
    # A stale version: 412.
    assert_error(act(d, "7202", "retry", version=got[4] + 5), 412, "version_mismatch")
    sql(d, "DROP TRIGGER fault ON inventory_items")
    r = act(d, "7202", "retry", version=got[4])
    assert r.status == 200, r
    assert r.json()["workflow"]["version"] > got[4]
    wait_wf(d, "7202", ("waiting", "ready_to_ship"))
    assert stock_of(d, "S-" + SKU_B) == (3, 1)
    assert sql(d, "SELECT count(*) FROM audit_log WHERE action = 'workflow.manual'") == [(1,)]


def test_skip_pause_resume_and_cancel_by_hand(make_daemon, fake, certs):
    order(fake, "7301", [line("l1", SKU_A, "5.00")])
    d = engine(make_daemon, fake, certs, start=False)
    stock(d, "S-" + SKU_A, 0)
    d.start(migrate=False)
    hook(d, "7301", "p1")
    got = wait_wf(d, "7301", ("waiting", "validated", "stock"))
    assert act(d, "7301", "pause", version=got[4]).status == 200
    got = wait_wf(d, "7301", ("paused", "validated"))
    assert_error(act(d, "7301", "skip"), 409, "action_not_allowed")
    assert act(d, "7301", "resume").status == 200
    wait_wf(d, "7301", ("waiting", "validated", "stock"))
    # Skip the reservation: ship without stock, the creator's call.
    r = act(d, "7301", "skip", reason="ship from the other warehouse")
    assert r.status == 200, r
    wait_wf(d, "7301", ("waiting", "ready_to_ship", "shipment"))
    assert stock_of(d, "S-" + SKU_A) == (0, 0)
    # Skip the shipment wait too (no shipping integration yet): shipped, then delivery.
    assert act(d, "7301", "skip").status == 200
    wait_wf(d, "7301", ("waiting", "shipped", "delivery", "shipped"))
    assert act(d, "7301", "cancel").status == 200
    wait_wf(d, "7301", ("cancelled", "shipped"))
    assert_error(act(d, "7301", "retry"), 404, "not_found")


def test_manual_review_waits_for_approval(make_daemon, fake, certs):
    order(fake, "7401", [line("l1", SKU_A, "500.00")])
    order(fake, "7402", [line("l1", SKU_A, "5.00")])
    order(fake, "7403", [line("l1", SKU_A, "600.00")])
    d = engine(make_daemon, fake, certs, start=False)
    stock(d, "S-" + SKU_A, 5)
    d.start(migrate=False)
    rules = {"rules": [{"name": "big orders", "priority": 10, "workflow": "manual_review",
                        "if": {"field": "total_amount", "op": "gt", "value": 100}}]}
    r = api(d, "PUT", "/api/workflows/rules", rules)
    assert r.status == 200 and r.json()["version"] == 1, r
    hook(d, "7401", "m1")
    hook(d, "7402", "m2")
    hook(d, "7403", "m3")
    wait_wf(d, "7401", ("waiting", "awaiting_approval", "approval", "validated"))
    wait_wf(d, "7402", ("waiting", "ready_to_ship"))
    wait_wf(d, "7403", ("waiting", "awaiting_approval", "approval"))
    assert stock_of(d, "S-" + SKU_A) == (5, 1)       # only the small order reserved
    assert act(d, "7401", "approve").status == 200
    wait_wf(d, "7401", ("waiting", "ready_to_ship"))
    assert act(d, "7403", "reject", reason="looks like fraud").status == 200
    wait_wf(d, "7403", ("failed", "rejected", "", "failed"))
    assert stock_of(d, "S-" + SKU_A) == (5, 2)
    names = sql(d, "SELECT o.tiktok_order_id, w.workflow_name FROM order_workflows w JOIN orders o"
                   " ON o.id = w.order_id ORDER BY 1")
    assert names == [("7401", "manual_review"), ("7402", "standard_fulfillment"),
                     ("7403", "manual_review")]


def test_tiktok_cancel_after_reservation_releases_stock(make_daemon, fake, certs):
    t = int(time.time())
    order(fake, "7501", [line("l1", SKU_A, "5.00"), line("l2", SKU_A, "5.00")], update=t)
    d = engine(make_daemon, fake, certs, start=False)
    stock(d, "S-" + SKU_A, 4)
    d.start(migrate=False)
    hook(d, "7501", "c1")
    wait_wf(d, "7501", ("waiting", "ready_to_ship"))
    assert stock_of(d, "S-" + SKU_A) == (4, 2)
    order(fake, "7501", [line("l1", SKU_A, "5.00"), line("l2", SKU_A, "5.00")],
          status="CANCELLED", update=t + 30)
    hook(d, "7501", "c2", status="CANCEL", kind=11, update=t + 30)
    wait_wf(d, "7501", ("cancelled", "ready_to_ship", "", "cancelled"))
    assert stock_of(d, "S-" + SKU_A) == (4, 0)
    assert sql(d, "SELECT status FROM inventory_reservations") == [("released",)]
    outcomes = [h["outcome"] for h in history(d, "7501")]
    assert outcomes[-2:] == ["cancel", "compensated"], outcomes
    assert sql(d, "SELECT compensate FROM order_workflows") == [([],)]


def test_on_hold_waits_then_resumes_by_itself(make_daemon, fake, certs):
    t = int(time.time())
    order(fake, "7601", [line("l1", SKU_A, "5.00")], status="ON_HOLD", update=t)
    d = engine(make_daemon, fake, certs, start=False)
    stock(d, "S-" + SKU_A, 2)
    d.start(migrate=False)
    hook(d, "7601", "h1", status="ON_HOLD")
    wait_wf(d, "7601", ("waiting", "new", "tiktok_hold", "new"))
    assert stock_of(d, "S-" + SKU_A) == (2, 0)      # nothing reserved while held
    order(fake, "7601", [line("l1", SKU_A, "5.00")], update=t + 10)
    hook(d, "7601", "h2", update=t + 10)
    wait_wf(d, "7601", ("waiting", "ready_to_ship"))
    assert stock_of(d, "S-" + SKU_A) == (2, 1)


def test_buyer_cancel_request_stops_at_a_decision(make_daemon, fake, certs):
    t = int(time.time())
    for oid in ("7701", "7702"):
        order(fake, oid, [line("l1", SKU_A, "5.00")], update=t)
    d = engine(make_daemon, fake, certs, start=False)
    stock(d, "S-" + SKU_A, 5)
    d.start(migrate=False)
    for oid in ("7701", "7702"):
        hook(d, oid, "b" + oid)
        wait_wf(d, oid, ("waiting", "ready_to_ship"))
        order(fake, oid, [line("l1", SKU_A, "5.00")], update=t + 20, is_buyer_request_cancel=True)
        hook(d, oid, "bc" + oid, update=t + 20)
        wait_wf(d, oid, ("waiting", "ready_to_ship", "cancel_decision"))
    inbox = api(d, "GET", "/api/workflows?status=waiting").json()["workflows"]
    assert {w["tiktok_order_id"]: set(w["allowed_actions"]) for w in inbox} == \
        {"7701": {"approve", "reject"}, "7702": {"approve", "reject"}}
    assert stock_of(d, "S-" + SKU_A) == (5, 2)
    assert act(d, "7701", "approve").status == 200   # accept the cancellation
    wait_wf(d, "7701", ("cancelled",))
    assert act(d, "7702", "reject").status == 200    # decline it: go on
    wait_wf(d, "7702", ("waiting", "ready_to_ship", "shipment"))
    assert stock_of(d, "S-" + SKU_A) == (5, 1)


def test_definitions_validated_stored_versioned_and_used(make_daemon, fake, certs):
    order(fake, "7801", [line("l1", SKU_A, "5.00")])
    d = engine(make_daemon, fake, certs, start=False)
    d.start(migrate=False)
    bad = [({"states": {"new": {"entry": ["teleport"], "on": {}}}}, "$.states.new.entry[0]"),
           ({"states": {"new": {"entry": ["validate_order"],
                                "on": {"validate": {"target": "nowhere"}, "reject": {"target": "failed"}}},
                        "failed": {}}}, "$.states.new.on.validate.target"),
           ({"states": {"new": {"on": {"done": {"target": "completed"}}}, "completed": {},
                        "orphan": {"workflow_status": "validated", "on": {"done": {"target": "completed"}}}}},
            "$.states.orphan"),
           ({"states": {"new": {"on": {"done": {"target": "new"}}}}}, "$.states"),
           ({"states": {"new": {"on": {"done": {"target": "completed",
                                                "if": {"field": "weight", "op": "gt", "value": 1}}}},
                        "completed": {}}}, "$.states.new.on.done.if.field")]
    for doc, path in bad:
        r = api(d, "PUT", "/api/workflows/definitions/quick", doc)
        assert_error(r, 400, "invalid_definition")
        assert r.json()["error"]["message"].startswith(path + ":"), (path, r.json())
    quick = {"description": "validate, reserve, done",
             "states": {"new": {"entry": ["validate_order"],
                                "on": {"validate": {"target": "validated"}, "reject": {"target": "failed"}}},
                        "validated": {"entry": ["reserve_stock"], "on": {"done": {"target": "completed"}}},
                        "completed": {}, "failed": {}}}
    r = api(d, "PUT", "/api/workflows/definitions/quick", quick, {"If-Match": "0"})
    assert r.status == 200 and r.json()["version"] == 1, r
    assert_error(api(d, "PUT", "/api/workflows/definitions/quick", quick, {"If-Match": '"0"'}),
                 412, "version_mismatch")
    assert api(d, "PUT", "/api/workflows/definitions/quick", quick,
               {"If-Match": '"1"'}).json()["version"] == 2
    got = api(d, "GET", "/api/workflows/definitions/quick").json()
    assert got["version"] == 2 and got["definition"] == quick
    assert api(d, "GET", "/api/workflows/definitions/quick?version=1").json()["version"] == 1
    names = {x["name"]: x for x in api(d, "GET", "/api/workflows/definitions").json()["definitions"]}
    assert set(names) == {"quick", "standard_fulfillment", "manual_review", "digital"}
    assert names["quick"]["version"] == 2 and names["digital"]["builtin"] is True
    assert api(d, "GET", "/api/workflows/definitions/digital").json()["builtin"] is True
    assert_error(api(d, "PUT", "/api/workflows/definitions/digital", quick), 400, "invalid_name")
    assert_error(api(d, "PUT", "/api/workflows/rules", {"rules": [{"name": "x", "workflow": "nope"}]}),
                 400, "invalid_rules")
    rules = {"rules": [{"name": "all", "workflow": "quick"}]}
    assert api(d, "PUT", "/api/workflows/rules", rules).status == 200
    assert_error(api(d, "PUT", "/api/workflows/rules", rules, {"If-Match": '"7"'}), 412,
                 "version_mismatch")
    hook(d, "7801", "d1")
    wait_wf(d, "7801", ("completed", "completed", "", "completed"))
    assert sql(d, "SELECT workflow_name, definition_version FROM order_workflows") == [("quick", 2)]
    # The stored definition is immutable.
    assert sql(d, "SELECT count(*) FROM workflow_definitions") == [(2,)]


def test_concurrent_orders_for_little_stock_never_oversell(make_daemon, fake, certs):
    ids = ["79%03d" % i for i in range(200)]
    for oid in ids:
        order(fake, oid, [line("l1", SKU_A, "5.00")])
    d = engine(make_daemon, fake, certs, start=False)
    stock(d, "S-" + SKU_A, 50)
    d.start(migrate=False)
    import threading

    def send(chunk):
        for oid in chunk:
            hook(d, oid, "v" + oid)
    threads = [threading.Thread(target=send, args=(ids[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_sql(d, "SELECT count(*) FROM order_workflows WHERE workflow_status = 'waiting'", 200,
             timeout=60)
    assert stock_of(d, "S-" + SKU_A) == (50, 50)
    counts = dict(sql(d, "SELECT current_step, count(*) FROM order_workflows GROUP BY 1"))
    assert counts == {"ready_to_ship": 50, "validated": 150}, counts
    assert sql(d, "SELECT count(*) FROM inventory_reservations WHERE status = 'active'") == [(50,)]
    waiting = sql(d, "SELECT count(*) FROM order_workflows WHERE wait_kind = 'stock'")
    assert waiting == [(150,)]


def test_every_workflow_and_inventory_route_keeps_creators_apart(make_daemon, fake, certs):
    """Creator B tries every /api/workflows and /api/inventory route on A's data."""
    import test_openapi
    order(fake, "7991", [line("l1", SKU_A, "5.00")])
    d = engine(make_daemon, fake, certs, start=False)
    stock(d, "S-" + SKU_A, 0)
    d.start(migrate=False)
    a = creator(d)
    sql(d, "INSERT INTO creators (email, display_name) VALUES ('b@example.com', 'B')")
    b = sql(d, "SELECT id::text FROM creators WHERE email = 'b@example.com'")[0][0]
    hook(d, "7991", "t1")
    wait_wf(d, "7991", ("waiting", "validated", "stock"))
    quick = {"states": {"new": {"on": {"done": {"target": "completed"}}}, "completed": {}}}
    assert api(d, "PUT", "/api/workflows/definitions/mine", quick, who=a).status == 200
    assert api(d, "PUT", "/api/workflows/rules", {"rules": [{"name": "r", "workflow": "mine"}]},
               who=a).status == 200
    before = sql(d, "SELECT sku, on_hand, version FROM inventory_items ORDER BY 1")
    tried = {
        ("/api/workflows", "get"): lambda: api(d, "GET", "/api/workflows?status=waiting", who=b),
        ("/api/workflows/definitions", "get"): lambda: api(d, "GET", "/api/workflows/definitions", who=b),
        ("/api/workflows/definitions/{name}", "get"): lambda: api(d, "GET", "/api/workflows/definitions/mine", who=b),
        ("/api/workflows/definitions/{name}", "put"): lambda: api(d, "PUT", "/api/workflows/definitions/mine",
                                                                  quick, {"If-Match": '"1"'}, who=b),
        ("/api/workflows/rules", "get"): lambda: api(d, "GET", "/api/workflows/rules", who=b),
        ("/api/workflows/rules", "put"): lambda: api(d, "PUT", "/api/workflows/rules",
                                                     {"rules": []}, {"If-Match": '"1"'}, who=b),
        ("/api/inventory", "get"): lambda: api(d, "GET", "/api/inventory", who=b),
        ("/api/inventory/{sku}", "put"): lambda: api(d, "PUT", "/api/inventory/S-" + SKU_A,
                                                     {"on_hand": 9}, {"If-Match": '"1"'}, who=b),
        ("/api/inventory/adjustments", "post"): lambda: api(d, "POST", "/api/inventory/adjustments",
                                                            {"sku": "S-" + SKU_A, "delta": 5, "reason": "x"}, who=b),
        ("/api/inventory/import", "post"): lambda: api(d, "POST", "/api/inventory/import",
                                                       {"items": [{"sku": "B-ONLY", "on_hand": 1}]}, who=b),
        ("/api/inventory/settings", "get"): lambda: api(d, "GET", "/api/inventory/settings", who=b),
        ("/api/inventory/settings", "put"): lambda: api(d, "PUT", "/api/inventory/settings",
                                                        {"untracked_skus": "needs_attention"}, who=b),
    }
    routes = {(p, m) for p, ms in test_openapi.routes().items()
              if p.startswith("/api/workflows") or p.startswith("/api/inventory") for m in ms}
    assert routes == set(tried), "a new route needs a line here: %r" % (routes ^ set(tried))
    assert tried[("/api/workflows", "get")]().json()["workflows"] == []
    names = {x["name"] for x in tried[("/api/workflows/definitions", "get")]().json()["definitions"]}
    assert "mine" not in names
    assert_error(tried[("/api/workflows/definitions/{name}", "get")](), 404, "not_found")
    # B's own first version, If-Match 1 refused: A's versions are not B's.
    assert_error(tried[("/api/workflows/definitions/{name}", "put")](), 412, "version_mismatch")
    assert tried[("/api/workflows/rules", "get")]().json()["version"] == 0
    assert_error(tried[("/api/workflows/rules", "put")](), 412, "version_mismatch")
    assert tried[("/api/inventory", "get")]().json()["items"] == []
    # A SKU of A's is unknown to B: B's If-Match 1 is stale for B's (absent) row.
    assert_error(tried[("/api/inventory/{sku}", "put")](), 412, "version_mismatch")
    assert_error(tried[("/api/inventory/adjustments", "post")](), 404, "not_found")
    assert tried[("/api/inventory/import", "post")]().json()["imported"] == 1
    assert tried[("/api/inventory/settings", "get")]().json() == {"untracked_skus": "not_tracked"}
    assert tried[("/api/inventory/settings", "put")]().status == 200
    # Nothing of A's changed; B's import and setting are B's.
    assert sql(d, "SELECT sku, on_hand, version FROM inventory_items WHERE user_id = %s ORDER BY 1",
               (a,)) == before
    assert sql(d, "SELECT sku FROM inventory_items WHERE user_id = %s", (b,)) == [("B-ONLY",)]
    assert sql(d, "SELECT untracked_skus FROM creators WHERE id = %s", (a,)) == [("not_tracked",)]
    assert sql(d, "SELECT count(*) FROM workflow_definitions WHERE user_id = %s", (a,)) == [(1,)]
    assert api(d, "GET", "/api/workflows/rules", who=a).json()["version"] == 1
    assert wf(d, "7991")[:3] == ("waiting", "validated", "stock")


def test_inventory_endpoints(make_daemon, fake, certs):
    order(fake, "7981", [line("l1", SKU_A, "5.00"), line("l2", SKU_A, "5.00")])
    d = engine(make_daemon, fake, certs)
    r = api(d, "PUT", "/api/inventory/S-" + SKU_A, {"on_hand": 5, "product_name": "Red mug",
                                                     "low_stock": 4})
    assert r.status == 200, r
    item = r.json()
    assert (item["on_hand"], item["reserved"], item["available"], item["version"]) == (5, 0, 5, 1)
    hook(d, "7981", "i1")
    wait_wf(d, "7981", ("waiting", "ready_to_ship"))
    got = api(d, "GET", "/api/inventory?low_stock=true").json()
    assert [(i["sku"], i["available"]) for i in got["items"]] == [("S-" + SKU_A, 3)]
    # on_hand below what is reserved: 409; a stale version: 412.
    assert_error(api(d, "PUT", "/api/inventory/S-" + SKU_A, {"on_hand": 1}), 409, "stock_reserved")
    assert_error(api(d, "PUT", "/api/inventory/S-" + SKU_A, {"on_hand": 8},
                     {"If-Match": '"7"'}), 412, "version_mismatch")
    r = api(d, "POST", "/api/inventory/adjustments", {"sku": "S-" + SKU_A, "delta": -3,
                                                        "reason": "broken in the warehouse"})
    assert r.status == 200 and r.json()["on_hand"] == 2, r
    assert_error(api(d, "POST", "/api/inventory/adjustments", {"sku": "S-" + SKU_A, "delta": -1,
                                                                 "reason": "x"}), 409, "stock_reserved")
    # If-Match: 0 creates, and only creates; on hand never below zero nor over the cap.
    assert api(d, "PUT", "/api/inventory/Z-1", {"on_hand": 0}, {"If-Match": "0"}).status == 200
    assert_error(api(d, "PUT", "/api/inventory/Z-1", {"on_hand": 1}, {"If-Match": "0"}), 412,
                 "version_mismatch")
    assert_error(api(d, "PUT", "/api/inventory/Z-2", {"on_hand": 1}, {"If-Match": '"3"'}), 412,
                 "version_mismatch")
    assert_error(api(d, "POST", "/api/inventory/adjustments", {"sku": "Z-1", "delta": -1,
                                                                 "reason": "x"}), 409, "insufficient_stock")
    assert api(d, "PUT", "/api/inventory/Z-1", {"on_hand": 100000000}).status == 200
    assert_error(api(d, "POST", "/api/inventory/adjustments", {"sku": "Z-1", "delta": 1,
                                                                 "reason": "x"}), 409, "too_many_units")
    sql(d, "DELETE FROM inventory_items WHERE sku = 'Z-1'")
    for body in ({"sku": "S-" + SKU_A, "delta": 0, "reason": "x"}, {"sku": "S-" + SKU_A, "delta": 2},
                 {"sku": "", "delta": 1, "reason": "x"}, {"sku": "S-" + SKU_A, "delta": 1, "reason": "x", "y": 1}):
        assert_error(api(d, "POST", "/api/inventory/adjustments", body), 400, "invalid_body")
    audit = sql(d, "SELECT action, after->>'reason' FROM audit_log WHERE entity_type = 'inventory_item'"
                   " AND entity_id NOT LIKE 'Z-%' ORDER BY id")
    assert audit == [("inventory.set", None), ("inventory.adjusted", "broken in the warehouse")], audit
    # Import: JSON and CSV, per-row errors, the good rows stored.
    r = api(d, "POST", "/api/inventory/import", {"items": [
        {"sku": "N-1", "on_hand": 3}, {"sku": "N-2", "on_hand": -1}, {"sku": "N-1", "on_hand": 4},
        {"sku": "S-" + SKU_A, "on_hand": 0}, {"sku": "N-3", "on_hand": 7, "product_name": "Cup",
                                               "low_stock": 2},
        {"sku": "N-4", "on_hand": 1, "colour": "red"}, {"sku": "N-5", "on_hand": 1, "product_name": 5}]})
    assert r.status == 200, r
    doc = r.json()
    assert doc["imported"] == 2 and doc["failed"] == 5, doc
    assert sorted(e["row"] for e in doc["errors"]) == [2, 3, 4, 6, 7], doc
    h = auth(creator(d))
    h["Content-Type"] = "text/csv"
    csv = 'sku,on_hand,product_name\nC-1,5,"Blue, large"\nC-2,x,Bad\n"C-""3",2,\n"C-4,1\n'
    r = d.post("/api/inventory/import", csv.encode(), headers=h)
    assert r.status == 200, r
    assert r.json()["imported"] == 2 and [e["row"] for e in r.json()["errors"]] == [2, 4], r.json()
    assert "not well-formed CSV" in r.json()["errors"][1]["error"], r.json()
    names = dict(sql(d, "SELECT sku, product_name FROM inventory_items WHERE sku LIKE 'C-%'"))
    assert names == {"C-1": "Blue, large", 'C-"3': None}, names
    assert_error(d.post("/api/inventory/import", b"on_hand\n1\n", headers=h), 400, "invalid_body")
    # Paging by SKU.
    first = api(d, "GET", "/api/inventory?limit=2").json()
    assert len(first["items"]) == 2 and first["next_cursor"] is not None
    import urllib.parse
    rest = api(d, "GET", "/api/inventory?limit=100&cursor=" +
               urllib.parse.quote(first["next_cursor"])).json()
    assert len(first["items"]) + len(rest["items"]) == \
        sql(d, "SELECT count(*) FROM inventory_items")[0][0]
    # Untracked SKUs: needs attention.
    assert api(d, "PUT", "/api/inventory/settings", {"untracked_skus": "needs_attention"}).status == 200
    order(fake, "7982", [line("l1", "UNKNOWN", "5.00")])
    hook(d, "7982", "i2")
    wait_wf(d, "7982", ("failed", "validated"))
    assert "no inventory row" in sql(d, "SELECT w.last_error FROM order_workflows w JOIN orders o ON"
                                        " o.id = w.order_id WHERE o.tiktok_order_id = '7982'")[0][0]


def test_orders_from_before_the_engine_get_their_run_at_migrate(make_daemon, fake, certs):
    """Upgrade: orders stored under 008 that TikTok has not shipped, and run requests stored
    then, run after --migrate; shipped or delivered orders get no run."""
    conf = {"tiktok": {"api_base": fake.url, "ca_file": os.path.join(certs, "ca.pem")},
            "auth": {"jwt_secret": SECRET}, "ratelimit": {"rate": "0"},
            "workflow": {"claim_interval": "200ms"}}
    d = make_daemon(overrides=conf)
    old = os.path.join(d.dir, "sql-008")
    os.makedirs(old)
    for f in sorted(os.listdir(ofharness.migrations_dir())):
        if f.endswith(".sql") and int(f[:3]) <= 8:
            with open(os.path.join(ofharness.migrations_dir(), f)) as src, \
                    open(os.path.join(old, f), "w") as dst:
                dst.write(src.read())
    d.set("postgres", "migrations_dir", old)
    d.write_config()
    d.migrate()
    seed_shop(d)
    cid = creator(d)
    for num, st in (("7901", "AWAITING_SHIPMENT"), ("7902", "DELIVERED"), ("7903", "AWAITING_SHIPMENT")):
        oid = sql(d, "INSERT INTO orders (user_id, shop_id, tiktok_order_id, order_number, order_status,"
                     " tiktok_status, subtotal, tax, total_amount, currency, customer_name, shipping_address,"
                     " order_date)"
                     " SELECT %s, s.id, %s, %s,"
                     " 'confirmed', %s, 4, 0, 4, 'USD', 'Ann', '{}', now() FROM shops s RETURNING id::text",
                  (cid, num, "ORD-" + num, st))[0][0]
        sql(d, "INSERT INTO order_items (order_id, user_id, tiktok_product_id, sku_id, product_name,"
               " product_sku, quantity, unit_price, total_price) VALUES (%s, %s, 'p', 'k', 'Mug',"
               " %s, 1, 4, 4)", (oid, cid, "S-" + SKU_A))
    # A request stored when nothing ran them (the dashboard API of 008).
    sql(d, "INSERT INTO order_workflows (order_id, user_id, workflow_name, current_step)"
           " SELECT id, user_id, 'digital', 'requested' FROM orders WHERE tiktok_order_id = '7903'")
    d.set("postgres", "migrations_dir", ofharness.migrations_dir())
    d.write_config()
    d.migrate()
    # Fulfilled by TikTok, so 7901 parks at ready_to_ship (see order()).
    sql(d, "UPDATE orders SET fulfillment_type = 'FULFILLMENT_BY_TIKTOK'")
    stock(d, "S-" + SKU_A, 5)
    d.start(migrate=False)
    wait_wf(d, "7901", ("waiting", "ready_to_ship", "shipment", "ready_to_ship"))
    wait_wf(d, "7903", ("completed", "completed", "", "completed"))
    assert sql(d, "SELECT workflow_name FROM order_workflows w JOIN orders o ON o.id = w.order_id"
                  " WHERE o.tiktok_order_id = '7903'") == [("digital",)]
    assert wf(d, "7902") is None
    assert stock_of(d, "S-" + SKU_A) == (5, 1)


def test_inbox_pages_in_deadline_order(make_daemon, fake, certs):
    """GET /api/workflows: earliest TikTok deadline first, runs without one last; the cursor
    neither repeats nor skips a run; repeated status parameters add up; times are RFC 3339."""
    now = int(time.time())
    # Stored out of deadline order; none has stock, so each waits for it.
    for num, hours in (("7601", 30), ("7602", 10), ("7603", 50), ("7604", 20), ("7605", 40)):
        order(fake, num, [line("l1", SKU_A, "5.00")], rts_sla_time=now + hours * 3600)
    d = engine(make_daemon, fake, certs, start=False)
    stock(d, "S-" + SKU_A, 0)
    d.start(migrate=False)
    for num in ("7601", "7602", "7603", "7604", "7605"):
        hook(d, num, "p" + num)
    for num in ("7601", "7602", "7603", "7604", "7605"):
        wait_wf(d, num, ("waiting", "validated", "stock"))
    sql(d, "UPDATE order_workflows w SET deadline_at = NULL FROM orders o WHERE o.id = w.order_id"
           " AND o.tiktok_order_id = '7603'")
    seen, cursor = [], None
    for _ in range(5):
        path = "/api/workflows?status=waiting&status=failed&limit=2"
        if cursor:
            path += "&cursor=" + cursor
        r = api(d, "GET", path)
        assert r.status == 200, r
        doc = r.json()
        seen += [w["tiktok_order_id"] for w in doc["workflows"]]
        for w in doc["workflows"]:
            assert "T" in w["waiting_since"] and "T" in w["updated_at"], w
            assert w["deadline"] is None or "T" in w["deadline"], w
            assert w["reason"] == "waiting for stock", w
        cursor = doc["next_cursor"]
        if cursor is None:
            break
    assert seen == ["7602", "7604", "7601", "7605", "7603"], seen
    assert api(d, "GET", "/api/workflows?status=failed").json()["workflows"] == []
    assert_error(api(d, "GET", "/api/workflows?cursor=12.5_" + "0" * 36), 400, "invalid_parameter")


def test_health_counts_the_engine_and_degrades_on_old_due_work(make_daemon, fake, certs):
    """/api/health/orders: parked runs, runs needing attention, due runs and the age of
    the oldest; a due run older than workflow.max_due_age (one another process holds, so
    nobody here can run it) makes the engine degraded."""
    order(fake, "7701", [line("l1", SKU_A, "5.00")])
    d = engine(make_daemon, fake, certs, start=False, overrides={"workflow": {"max_due_age": "1min"}})
    stock(d, "S-" + SKU_A, 0)
    d.start(migrate=False)
    hook(d, "7701", "h1")
    wait_wf(d, "7701", ("waiting", "validated", "stock"))
    wf_check = d.get("/api/health/orders").json()["checks"]["workflowEngine"]
    assert wf_check["status"] == "healthy" and wf_check["parked_runs"] == 1, wf_check
    assert wf_check["due_runs"] == 0 and wf_check["max_due_age_seconds"] == 60, wf_check
    sql(d, "UPDATE order_workflows SET retry_after = now() - interval '10 minutes',"
           " lease_owner = 'another-daemon', lease_until = now() + interval '1 hour'")
    doc = d.get("/api/health/orders").json()
    wf_check = doc["checks"]["workflowEngine"]
    assert wf_check["status"] == "degraded" and wf_check["due_runs"] == 1, wf_check
    assert wf_check["oldest_due_age_seconds"] >= 600 and "message" in wf_check, wf_check
    assert doc["status"] == "degraded", doc
    sql(d, "UPDATE order_workflows SET retry_after = NULL, workflow_status = 'failed'")
    wf_check = d.get("/api/health/orders").json()["checks"]["workflowEngine"]
    assert wf_check["status"] == "healthy" and wf_check["needs_attention"] == 1, wf_check


def test_restart_reserves_the_released_stock_again(make_daemon, fake, certs):
    """force_restart of a run that reserved: the old run releases, the new one reserves the
    same order's lines again (the released rows are taken again, not lost), and the stock
    row's reserved units equal the live reservations throughout."""
    order(fake, "7801", [line("l1", SKU_A, "5.00"), line("l2", SKU_A, "5.00")])
    d = engine(make_daemon, fake, certs, start=False)
    stock(d, "S-" + SKU_A, 5)
    d.start(migrate=False)
    hook(d, "7801", "r1")
    first = wait_wf(d, "7801", ("waiting", "ready_to_ship", "shipment"))[5]
    assert stock_of(d, "S-" + SKU_A) == (5, 2)
    r = api(d, "POST", "/api/orders/7801/workflow",
            {"workflow_name": "standard_fulfillment", "force_restart": True})
    assert r.status == 200 and r.json()["replaced"] == first, r
    second = wait_wf(d, "7801", ("waiting", "ready_to_ship", "shipment"))[5]
    assert second != first
    assert stock_of(d, "S-" + SKU_A) == (5, 2)
    assert sql(d, "SELECT status, quantity FROM inventory_reservations") == [("active", 2)]
    assert sql(d, "SELECT workflow_status::text FROM order_workflows WHERE id = %s", (first,)) \
        == [("cancelled",)]
