# The workflow engine against the real servers and the fake TikTok Shop
# server: a synced order runs its workflow to ready_to_ship with its stock
# reserved, waits for stock, holds, cancels with compensation, manual
# actions, rules, definitions, crash and two daemons on one database.
#
# Runs under Debian's /usr/bin/python3 (see tests/run-checks.sh).

import json
import time

import pytest

import ofharness
from test_sync import certs, fake, hook, line, sql, synced, wait_sql  # noqa: F401

SKU_A, SKU_B = "SKU-A", "SKU-B"


def creator(d):
    return sql(d, "SELECT id::text FROM creators LIMIT 1")[0][0]


def stock(d, sku, on_hand):
    sql(d, "INSERT INTO inventory_items (user_id, sku, on_hand) SELECT id, %s, %s FROM creators "
           "ON CONFLICT (user_id, sku) DO UPDATE SET on_hand = EXCLUDED.on_hand", (sku, on_hand))


def order(fake, oid, lines, status="AWAITING_SHIPMENT", **kw):
    doc = {"id": oid, "status": status, "update_time": int(time.time()), "line_items": lines}
    doc.update(kw)
    fake.seed(doc)


def wf(d, oid):
    rows = sql(d, "SELECT w.workflow_status::text, w.current_step, coalesce(w.wait_kind, ''),"
                  " o.workflow_status::text, w.version FROM order_workflows w JOIN orders o"
                  " ON o.id = w.order_id WHERE o.tiktok_order_id = %s ORDER BY w.created_at DESC"
                  " LIMIT 1", (oid,))
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


def reserved(d, sku):
    return sql(d, "SELECT on_hand, reserved FROM inventory_items WHERE sku = %s", (sku,))[0]


def test_new_order_runs_to_ready_to_ship_with_stock_reserved(make_daemon, fake, certs):
    order(fake, "7001", [line("l1", SKU_A, "5.00"), line("l2", SKU_A, "5.00"),
                         line("l3", SKU_B, "2.00")])
    d = synced(make_daemon, fake, certs, start=False)
    stock(d, "S-" + SKU_A, 10)
    stock(d, "S-" + SKU_B, 1)
    d.start(migrate=False)
    hook(d, "7001", "w1")
    got = wait_wf(d, "7001", ("waiting", "ready_to_ship", "shipment", "ready_to_ship"))
    assert reserved(d, "S-" + SKU_A) == (10, 2) and reserved(d, "S-" + SKU_B) == (1, 1)
    # processing once the stock is reserved (the state machine allows confirmed -> processing)
    assert sql(d, "SELECT order_status::text FROM orders") == [("processing",)]
    hist = json.loads(sql(d, "SELECT step_history::text FROM order_workflows")[0][0])
    steps = [(h["outcome"], h.get("action"), h.get("to")) for h in hist]
    assert steps == [("validate", "validate_order", None), ("transition", None, "validated"),
                     ("done", "reserve_stock", None), ("transition", None, "inventory_reserved"),
                     ("transition", None, "ready_to_ship"), ("wait", "await_shipment", None)], steps
    assert all("ms" in h and "at" in h for h in hist)
    assert got[4] >= 2
