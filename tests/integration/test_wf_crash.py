# The workflow engine under kill -9 and with two daemons on one database:
# every run ends at its right state, the stock reserved equals the sum of
# the live reservations, and no step ran twice.
#
# Runs under Debian's /usr/bin/python3 (see tests/run-checks.sh).

import json
import threading
import time

import ofharness
from test_sync import certs, fake, line, post, sql, wait_sql  # noqa: F401
from test_webhook import envelope
from test_workflow import engine, stock

# Fulfilled by TikTok: runs park at ready_to_ship (see test_workflow.order).
FBT = "FULFILLMENT_BY_TIKTOK"

SKUS = ["SKU-%d" % i for i in range(4)]


def seed_orders(fake, prefix, n):
    """n orders, each 1..2 units of one or two of four SKUs."""
    ids = []
    for i in range(n):
        oid = "%s%04d" % (prefix, i)
        lines = [line("%s-a" % oid, SKUS[i % 4], "5.00")]
        if i % 3 == 0:
            lines.append(line("%s-b" % oid, SKUS[(i + 1) % 4], "3.00"))
        if i % 5 == 0:
            lines.append(line("%s-c" % oid, SKUS[i % 4], "5.00"))
        fake.seed({"id": oid, "status": "AWAITING_SHIPMENT", "update_time": int(time.time()),
                   "line_items": lines, "fulfillment_type": FBT})
        ids.append(oid)
    return ids


def blast(d, ids, acked, nid="n-"):
    for oid in ids:
        try:
            r = post(d, envelope(nid=nid + oid, order=oid))
        except OSError:
            return
        if r.status == 200:
            acked.append(oid)


def settled(d):
    """No run is due or running: every one waits, rests or ended."""
    return sql(d, "SELECT count(*) FROM order_workflows WHERE workflow_status IN "
                  "('running', 'compensating') OR retry_after IS NOT NULL")[0][0] == 0


def check_consistent(d, orders):
    # One run per order, each where it must be.
    runs = sql(d, "SELECT o.tiktok_order_id, w.workflow_status::text, w.current_step,"
                  " coalesce(w.wait_kind, ''), w.step_history::text FROM order_workflows w"
                  " JOIN orders o ON o.id = w.order_id")
    assert len(runs) == len({r[0] for r in runs}) == orders, (len(runs), orders)
    states = {(r[1], r[2], r[3]) for r in runs}
    assert states <= {("waiting", "ready_to_ship", "shipment"), ("waiting", "validated", "stock")}, \
        states
    # Reserved stock is exactly what the live reservations hold, and never more than on hand.
    bad = sql(d, "SELECT i.sku, i.on_hand, i.reserved, coalesce(sum(r.quantity), 0)"
                 " FROM inventory_items i LEFT JOIN inventory_reservations r"
                 " ON r.inventory_item_id = i.id AND r.status = 'active'"
                 " GROUP BY 1, 2, 3 HAVING i.reserved <> coalesce(sum(r.quantity), 0)"
                 " OR i.reserved > i.on_hand")
    assert bad == [], bad
    # Orders at ready_to_ship hold every SKU, those waiting for stock none.
    held = dict(sql(d, "SELECT o.tiktok_order_id, count(r.*) FROM orders o JOIN order_workflows w"
                       " ON w.order_id = o.id LEFT JOIN inventory_reservations r"
                       " ON r.order_id = o.id AND r.status = 'active' GROUP BY 1"))
    lines = dict(sql(d, "SELECT o.tiktok_order_id, count(DISTINCT i.product_sku) FROM orders o"
                        " JOIN order_items i ON i.order_id = o.id GROUP BY 1"))
    for oid, status, step, wait, hist in runs:
        assert held[oid] == (lines[oid] if step == "ready_to_ship" else 0), (oid, step, held[oid])
        # No step twice: each transition once, one reservation done.
        h = json.loads(hist)
        tos = [e["to"] for e in h if e["outcome"] == "transition"]
        assert len(tos) == len(set(tos)), (oid, tos)
        done = [e for e in h if e.get("action") == "reserve_stock" and e["outcome"] == "done"]
        assert len(done) == (1 if step == "ready_to_ship" else 0), (oid, h)


def test_kill9_in_a_burst_of_workflows(make_daemon, fake, certs):
    ids = seed_orders(fake, "91", 240)
    fake.fault(path="/order/202309/orders", latency_ms=20, count=-1)
    d = engine(make_daemon, fake, certs, start=False)
    for i, sku in enumerate(SKUS):
        stock(d, "S-" + sku, [400, 40, 400, 30][i])
    d.start(migrate=False)
    acked = []
    threads = [threading.Thread(target=blast, args=(d, ids[k::4], acked)) for k in range(4)]
    for t in threads:
        t.start()
    ofharness.wait_for(lambda: sql(d, "SELECT count(*) FROM order_workflows WHERE seq > 0")[0][0]
                       >= 40, 30, 0.02, "40 runs past their first step")
    d.proc.kill()
    d.proc.wait(10)
    for t in threads:
        t.join(10)
    time.sleep(0.5)
    # Whatever was acknowledged is stored; send the rest again (TikTok would retry).
    rest = [oid for oid in ids if oid not in set(acked)]
    d.start(migrate=False)
    blast(d, rest, acked)
    wait_sql(d, "SELECT count(*) FROM orders", len(ids), timeout=60)
    ofharness.wait_for(lambda: settled(d) and sql(d, "SELECT count(*) FROM order_workflows")[0][0]
                       == len(ids), 60, 0.2, "every run settled")
    check_consistent(d, len(ids))
    assert "freeing the leases of a dead process" in d.log_text()


def test_two_daemons_on_one_database_never_run_a_step_twice(make_daemon, fake, certs):
    ids = seed_orders(fake, "92", 160)
    a = engine(make_daemon, fake, certs, start=False, workers=1)
    for sku in SKUS:
        stock(a, "S-" + sku, 0)
    b = make_daemon(dbname=a.dbname, workers=1, overrides={k: dict(v) for k, v in a.conf.items()
                                                            if k not in ("server", "postgres",
                                                                         "redis", "log")})
    a.start(migrate=False)
    b.start(migrate=False)
    acked = []
    # Every order reaches both daemons (TikTok retrying on another node, say).
    ta = threading.Thread(target=blast, args=(a, ids, acked, "a-"))
    tb = threading.Thread(target=blast, args=(b, ids, acked, "b-"))
    ta.start()
    tb.start()
    ta.join()
    tb.join()
    wait_sql(a, "SELECT count(*) FROM order_workflows WHERE wait_kind = 'stock'", len(ids),
             timeout=60)
    # Stock comes for a part of them: both daemons' sweeps race for the woken runs.
    for i, sku in enumerate(SKUS):
        stock(a, "S-" + sku, [30, 25, 400, 10][i])
    sql(a, "SELECT wf_wake_stock(NULL, 1000)")
    ofharness.wait_for(lambda: settled(a) and sql(a, "SELECT count(*) FROM order_workflows"
                                                     " WHERE current_step = 'ready_to_ship'")[0][0] > 0,
                       60, 0.2, "woken runs settled")
    time.sleep(1.5)     # the periodic stock checks of both daemons find nothing more
    ofharness.wait_for(lambda: settled(a), 30, 0.2, "settled")
    check_consistent(a, len(ids))
    # Both daemons worked on the runs (each applied and started some).
    started = [sum(v for n, l, v in __import__("ofcheck").parse_metrics(x.get("/metrics").text)
                   if n == "orderflow_workflow_started_total") for x in (a, b)]
    assert sum(started) == len(ids) and all(c > 0 for c in started), started
