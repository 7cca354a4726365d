# tests/bench/seed_orders: loads creators, shops, orders, items and history
# rows with COPY.  Checks the counts per creator against --creators-out, the
# money arithmetic, statuses and dates, the foreign keys, determinism of
# --seed, all-or-nothing on failure, the index rebuild, and usage errors.

import os
import re
import subprocess

import pytest

import ofharness

STATUSES = {"pending", "confirmed", "processing", "shipped", "delivered", "cancelled", "returned"}


def seed_binary():
    path = os.path.join(os.environ.get("OF_BUILDDIR", ""), "tests", "bench", "seed_orders")
    if not os.access(path, os.X_OK):
        pytest.fail("%s is missing: set OF_BUILDDIR to a build tree and run make" % path)
    return path


def seed(pg, dbname, *args, timeout=120):
    """Run seed_orders against dbname; returns the CompletedProcess (text)."""
    argv = [seed_binary(), "-d", pg.conninfo(dbname)] + [str(a) for a in args]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, universal_newlines=True)


def seed_ok(pg, dbname, *args):
    """Run seed_orders, require success, return the fields of its summary line."""
    r = seed(pg, dbname, *args)
    assert r.returncode == 0, "exit %d:\n%s%s" % (r.returncode, r.stdout, r.stderr)
    m = re.fullmatch(r"seeded orders=(\d+) items=(\d+) creators=(\d+) seconds=([\d.]+) "
                     r"orders_per_s=(\d+)\n", r.stdout)
    assert m, r.stdout
    return {"orders": int(m.group(1)), "items": int(m.group(2)), "creators": int(m.group(3))}


@pytest.fixture
def migrated(make_daemon):
    """(pg, dbname) of a fresh database with the schema applied."""
    d = make_daemon()
    d.migrate()
    return d.pg, d.dbname


def test_seed_counts_and_consistency(migrated, tmp_path):
    pg, db = migrated
    out = tmp_path / "creators.tsv"
    res = seed_ok(pg, db, "--orders", 3000, "--creators", 10, "--big-creator", 500,
                  "--items", 2.5, "--days", 90, "--seed", 7, "--creators-out", out)
    assert res["orders"] == 3000 and res["creators"] == 11, res
    q = lambda sql: pg.sql(sql, dbname=db)  # noqa: E731

    # --creators-out: one line per creator, exact counts, the big one included.
    rows = [l.split("\t") for l in out.read_text().splitlines()]
    assert len(rows) == 11 and all(len(r) == 3 for r in rows), rows
    want = {r[0]: int(r[2]) for r in rows}
    assert sum(want.values()) == 3000
    assert sorted(want.values())[-1] == 500 and list(want.values()).count(500) >= 1
    assert all(re.fullmatch(r"seed-7-\d{6}@orderflow\.test", r[1]) for r in rows), rows
    have = dict(q("SELECT c.id::text, count(o.id) FROM creators c"
                  " LEFT JOIN orders o ON o.user_id = c.id GROUP BY c.id"))
    assert have == want
    assert dict(q("SELECT id::text, email FROM creators")) == {r[0]: r[1] for r in rows}

    # One active shop per creator; orders point at their creator's shop.
    assert q("SELECT count(*), count(DISTINCT creator_id), count(DISTINCT tiktok_shop_id),"
             " count(*) FILTER (WHERE status = 'active') FROM shops") == [(11, 11, 11, 11)]
    assert q("SELECT count(*) FROM orders o JOIN shops s ON s.id = o.shop_id"
             " AND s.creator_id = o.user_id") == [(3000,)]

    # Items: the reported count, 1..6 per order, about --items on average, distinct SKUs
    # from a catalog of a few hundred.
    (n_items, avg, lo, hi, skus), = q(
        "SELECT sum(n), avg(n), min(n), max(n), (SELECT count(DISTINCT sku_id) FROM order_items)"
        " FROM (SELECT count(i.id) n FROM orders o LEFT JOIN order_items i ON i.order_id = o.id"
        " GROUP BY o.id) x")
    assert n_items == res["items"]
    assert abs(float(avg) - 2.5) < 0.15, avg
    assert lo >= 1 and hi <= 6, (lo, hi)
    assert 100 <= skus <= 500, skus
    assert q("SELECT count(*) FROM order_items i JOIN orders o ON o.id = i.order_id"
             " AND o.user_id = i.user_id") == [(n_items,)]

    # Money: line totals, subtotal = sum of lines, total = subtotal + tax + shipping.
    assert q("SELECT count(*) FROM order_items WHERE total_price <> quantity * unit_price"
             " OR shipped_quantity > quantity") == [(0,)]
    assert q("SELECT count(*) FROM orders o WHERE subtotal IS DISTINCT FROM"
             " (SELECT sum(total_price) FROM order_items i WHERE i.order_id = o.id)") == [(0,)]
    assert q("SELECT count(*) FROM orders WHERE total_amount <> subtotal + tax + shipping_cost"
             " OR tax IS NULL OR shipping_cost IS NULL OR currency <> 'USD'") == [(0,)]
    assert q("SELECT count(DISTINCT total_amount) > 1000 FROM orders") == [(True,)]

    # Statuses: valid, several kinds, mostly delivered/shipped; dates follow them.
    mix = dict(q("SELECT order_status::text, count(*) FROM orders GROUP BY 1"))
    assert set(mix) <= STATUSES and len(mix) >= 5, mix
    assert mix.get("delivered", 0) + mix.get("shipped", 0) > 1500, mix
    assert q("SELECT count(*) FROM orders WHERE (shipped_date IS NOT NULL) <>"
             " (order_status IN ('shipped', 'delivered', 'returned'))") == [(0,)]
    assert q("SELECT count(*) FROM orders WHERE (delivered_date IS NOT NULL) <>"
             " (order_status IN ('delivered', 'returned'))") == [(0,)]
    assert q("SELECT count(*) FROM orders WHERE shipped_date < order_date"
             " OR delivered_date < shipped_date OR order_date > now()"
             " OR order_date < now() - interval '91 days' OR updated_at < order_date"
             " OR updated_at > now()") == [(0,)]

    # Customers: varied, so prefix search means something.
    (names, emails, letters), = q("SELECT count(DISTINCT customer_name),"
                                  " count(DISTINCT customer_email),"
                                  " count(DISTINCT lower(left(customer_name, 1))) FROM orders")
    assert names > 1000 and emails > 1500 and letters >= 15, (names, emails, letters)
    assert q("SELECT count(*) FROM orders WHERE jsonb_typeof(shipping_address) <> 'object'"
             " OR shipping_address->>'name' <> customer_name") == [(0,)]
    assert q("SELECT count(DISTINCT order_number), count(DISTINCT tiktok_order_id)"
             " FROM orders") == [(3000, 3000)]

    # History: one row per order, into its current status, from TikTok Shop.
    assert q("SELECT count(*), count(DISTINCT h.order_id) FROM order_status_history h"
             " JOIN orders o ON o.id = h.order_id AND o.user_id = h.user_id"
             " AND o.order_status = h.new_status WHERE h.change_source = 'tiktok_shop'") \
        == [(3000, 3000)]
    # Statistics are fresh.
    assert q("SELECT count(*) FROM pg_stats WHERE tablename = 'orders'")[0][0] > 0


def test_seed_deterministic(make_daemon):
    """The same --seed gives the same ids in another database; another seed does not."""
    ids = []
    for s in (5, 5, 6):
        d = make_daemon()
        d.migrate()
        seed_ok(d.pg, d.dbname, "--orders", 800, "--creators", 3, "--seed", s)
        ids.append(d.pg.sql("SELECT array_agg(tiktok_order_id ORDER BY tiktok_order_id),"
                            " array_agg(id::text ORDER BY id), sum(total_amount),"
                            " (SELECT array_agg(id::text ORDER BY id) FROM creators)"
                            " FROM orders", dbname=d.dbname)[0])
    assert ids[0] == ids[1]
    assert not set(ids[0][0]) & set(ids[2][0])
    assert not set(ids[0][3]) & set(ids[2][3])


def test_seed_all_or_nothing(migrated, tmp_path):
    """A run that fails (the same seed twice collides) leaves nothing behind."""
    pg, db = migrated
    seed_ok(pg, db, "--orders", 1500, "--creators", 4, "--seed", 3)
    counts = pg.sql("SELECT (SELECT count(*) FROM creators), (SELECT count(*) FROM orders),"
                    " (SELECT count(*) FROM order_items)", dbname=db)
    out = tmp_path / "c.tsv"
    r = seed(pg, db, "--orders", 1500, "--creators", 4, "--seed", 3, "--creators-out", out)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "duplicate key" in r.stderr and r.stdout == "", r.stderr
    assert not out.exists()
    # A different seed whose orders collide only later: creators are new, orders are not.
    r = seed(pg, db, "--orders", 1500, "--creators", 4, "--seed", 10003)
    assert r.returncode == 1, r.stdout + r.stderr
    assert pg.sql("SELECT (SELECT count(*) FROM creators), (SELECT count(*) FROM orders),"
                  " (SELECT count(*) FROM order_items)", dbname=db) == counts


def schema(pg, db):
    r = ofharness.run([os.path.join(ofharness.PGBIN, "pg_dump"), "-h", "127.0.0.1",
                       "-p", str(pg.port), "-U", "postgres", "--schema-only", "--no-owner", db])
    assert r.returncode == 0, r.stderr.decode()
    return re.sub(r"(?m)^\\(un)?restrict .*$", "", r.stdout.decode())


def test_seed_rebuilds_indexes(migrated):
    """--rebuild-indexes (the default for big loads) leaves the schema as it was."""
    pg, db = migrated
    before = schema(pg, db)
    r = seed(pg, db, "--orders", 2500, "--creators", 5, "--rebuild-indexes", "--jobs", 2)
    assert r.returncode == 0, r.stderr
    assert "dropping" in r.stderr and "building" in r.stderr, r.stderr
    assert schema(pg, db) == before
    assert pg.sql("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
                  " WHERE c.relname = 'orders' AND NOT i.indisvalid", dbname=db) == [(0,)]
    # A failing run rebuilds them too (and seeds nothing).
    r = seed(pg, db, "--orders", 2500, "--creators", 5, "--rebuild-indexes", "--seed", 10001)
    assert r.returncode == 1 and "building" in r.stderr, r.stderr
    assert schema(pg, db) == before
    assert pg.sql("SELECT count(*) FROM orders", dbname=db) == [(2500,)]


@pytest.mark.parametrize("args,message", [
    ([], "-d CONNINFO is required"),
    (["-d"], "needs a value"),
    (["-d", "x", "--orders", "abc"], "--orders"),
    (["-d", "x", "--orders", "-5"], "--orders"),
    (["-d", "x", "--orders", "100000001"], "--orders"),
    (["-d", "x", "--creators", "0"], "--creators"),
    (["-d", "x", "--creators", "12x"], "--creators"),
    (["-d", "x", "--items", "0.5"], "--items"),
    (["-d", "x", "--items", "7"], "--items"),
    (["-d", "x", "--items", "nan"], "--items"),
    (["-d", "x", "--days", "0"], "--days"),
    (["-d", "x", "--seed", "-1"], "--seed"),
    (["-d", "x", "--jobs", "0"], "--jobs"),
    (["-d", "x", "--orders", "100", "--big-creator", "101"], "--big-creator"),
    (["-d", "x", "--creators-out", ""], "--creators-out"),
    (["-d", "x", "--bogus"], "--bogus"),
    (["-d", "x", "extra"], "unexpected argument"),
])
def test_seed_usage_errors(args, message):
    r = subprocess.run([seed_binary()] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=10, universal_newlines=True)
    assert r.returncode == 2, (args, r.returncode, r.stderr)
    assert message in r.stderr and "usage: seed_orders" in r.stderr, r.stderr
    assert r.stdout == ""


def test_seed_connection_error():
    lock = ofharness.PortLock()     # nobody listens there
    try:
        r = subprocess.run([seed_binary(), "-d", "host=127.0.0.1 port=%d connect_timeout=2"
                            % lock.port, "--orders", "10"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=20, universal_newlines=True)
    finally:
        lock.release()
    assert r.returncode == 1 and "cannot connect" in r.stderr, r.stderr
