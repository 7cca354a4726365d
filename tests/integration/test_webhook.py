# POST /webhooks/tiktok: TikTok's signature over the raw body, validation,
# dedupe, the durability contract (2xx only once committed, 503 while the
# database is away) and group commit.

import hashlib
import hmac
import json
import threading
import time

import pytest

import ofharness
from ofcheck import assert_error, metric_value, parse_metrics

APP_KEY = "abcdef"
SECRET = "123"
SHOP = "7495540735365777507"
# TikTok's published example: app key abcdef, secret 123.
VECTOR_BODY = (b'{"type":1,"tts_notification_id":"7380066284010030890","shop_id":"7495540735365777507",'
               b'"timestamp":1718305585,"data":{"is_on_hold_order":true,"order_id":"576653688135258178",'
               b'"order_status":"UNPAID","update_time":1718305585}}')
VECTOR_SIG = "5dec0f11ec2f6783b8deee53c9ffbf8d024302f7c7e7fa55a35d17629031ac05"


def sign(body, app_key=APP_KEY, secret=SECRET):
    return hmac.new(secret.encode(), app_key.encode() + body, hashlib.sha256).hexdigest()


def envelope(nid="n-1", shop=SHOP, ts=None, order="576653688135258178", update=None, **extra):
    now = int(time.time())
    doc = {"type": 1, "shop_id": shop, "timestamp": now if ts is None else ts,
           "data": {"order_id": order, "order_status": "AWAITING_SHIPMENT",
                    "is_on_hold_order": False, "update_time": now if update is None else update}}
    if nid is not None:
        doc["tts_notification_id"] = nid
    doc.update(extra)
    return json.dumps(doc).encode()


def seed_shop(d, shop=SHOP, app_key=APP_KEY, secret=SECRET):
    d.pg.sql("INSERT INTO creators (email, display_name) VALUES (%s, 'Seller') "
             "ON CONFLICT (email) DO NOTHING", ("s-%s@example.com" % shop,), dbname=d.dbname)
    d.pg.sql("INSERT INTO shops (creator_id, tiktok_shop_id, app_key, app_secret) "
             "SELECT id, %s, %s, %s FROM creators WHERE email = %s",
             (shop, app_key, secret, "s-%s@example.com" % shop), dbname=d.dbname)


def started(make_daemon, overrides=None, **kw):
    """A daemon whose database knows the shop before it starts."""
    d = make_daemon(overrides=overrides, **kw)
    d.migrate()
    seed_shop(d)
    d.start(migrate=False)
    return d


def post(d, body, sig=None, ctype="application/json", headers=None):
    h = {"Content-Type": ctype}
    if sig is not False:
        h["Authorization"] = sign(body) if sig is None else sig
    h.update(headers or {})
    return d.post("/webhooks/tiktok", body, headers=h)


def events(d):
    return d.pg.sql("SELECT notification_id, dedupe_key, event_type, order_id, raw_body "
                    "FROM webhook_events ORDER BY id", dbname=d.dbname)


def metrics(d):
    return parse_metrics(d.get("/metrics").text)


def test_published_vector_accepted_once(make_daemon):
    d = started(make_daemon, {"webhook": {"max_age": "0"}})     # the vector is from 2024
    r = post(d, VECTOR_BODY, VECTOR_SIG)
    assert r.status == 200 and r.json() == {"code": 0, "message": "success"}, r
    r = post(d, VECTOR_BODY, VECTOR_SIG)
    assert r.status == 200 and r.json() == {"code": 0, "message": "duplicate"}, r
    rows = events(d)
    assert len(rows) == 1, rows
    nid, key, etype, order, raw = rows[0]
    assert (nid, key, etype, order) == ("7380066284010030890", "7380066284010030890", 1,
                                        "576653688135258178")
    assert raw.encode() == VECTOR_BODY      # stored byte for byte
    m = metrics(d)
    assert metric_value(m, "orderflow_webhooks_accepted_total") == 1
    assert metric_value(m, "orderflow_webhooks_duplicate_total") == 1


REJECTIONS = [
    # name, body, sig (None: correct; False: absent), content type, status, code, reason
    ("missing_signature", envelope(), False, "application/json", 401, "missing_signature",
     "missing_signature"),
    ("wrong_signature", envelope(), "0" * 64, "application/json", 401, "invalid_signature",
     "bad_signature"),
    ("bearer_prefix", envelope(), "Bearer " + sign(envelope()), "application/json", 401,
     "invalid_signature", "bad_signature"),
    ("wrong_secret", envelope(), sign(envelope(), secret="124"), "application/json", 401,
     "invalid_signature", "bad_signature"),
    ("unknown_shop", envelope(shop="1111111111111111111"), None, "application/json", 401,
     "unknown_shop", "unknown_shop"),
    ("not_json", b"type=1&shop_id=7495540735365777507", None, "application/json", 400,
     "invalid_json", "bad_json"),
    ("json_array", b"[1,2,3]", None, "application/json", 400, "invalid_json", "bad_json"),
    ("missing_shop_id", envelope(shop=None), None, "application/json", 400, "invalid_field",
     "bad_field"),
    ("type_not_integer", envelope(type="1"), None, "application/json", 400, "invalid_field",
     "bad_field"),
    ("order_status_change_without_order", envelope(order=None), None, "application/json", 400,
     "invalid_field", "bad_field"),
    ("wrong_content_type", envelope(), None, "text/plain", 415, "unsupported_media_type",
     "content_type"),
    ("stale", envelope(ts=int(time.time()) - 7200), None, "application/json", 400,
     "invalid_timestamp", "stale"),
    ("future", envelope(ts=int(time.time()) + 3600), None, "application/json", 400,
     "invalid_timestamp", "future"),
]


@pytest.fixture(scope="module")
def wdaemon(request, session_pg, session_redis):
    """One daemon for the rejection cases (module scoped: they are many)."""
    from ofharness import Orderflowd
    d = Orderflowd(session_pg, session_redis, session_pg.create_database(), workers=2,
                   overrides={"server": {"max_body_size": "2k"}})
    Orderflowd.registry.remove(d)
    d.migrate()
    seed_shop(d)
    d.start(migrate=False)
    request.addfinalizer(d.cleanup)
    return d


@pytest.mark.parametrize("name,body,sig,ctype,status,code,reason", REJECTIONS,
                         ids=[c[0] for c in REJECTIONS])
def test_rejection_writes_nothing(wdaemon, name, body, sig, ctype, status, code, reason):
    d = wdaemon
    before = metric_value(metrics(d), "orderflow_webhooks_rejected_total", reason=reason)
    n = len(events(d))
    assert_error(post(d, body, sig, ctype), status, code)
    assert len(events(d)) == n
    after = metric_value(metrics(d), "orderflow_webhooks_rejected_total", reason=reason)
    assert after == before + 1, (reason, before, after)


def test_reserialised_json_fails(wdaemon):
    """The signature is over the bytes sent, not the JSON they mean."""
    d = wdaemon
    body = envelope(nid="reser")
    reser = json.dumps(json.loads(body), indent=1).encode()
    assert_error(post(d, reser, sign(body)), 401, "invalid_signature")
    assert not [e for e in events(d) if e[0] == "reser"]


def test_body_too_large(wdaemon):
    d = wdaemon
    body = envelope(nid="big", padding="x" * 4096)
    n = len(events(d))
    assert_error(post(d, body), 413, "payload_too_large")
    assert len(events(d)) == n


def test_unknown_type_stored(wdaemon):
    d = wdaemon
    body = envelope(nid="type-99", type=99, order=None)
    r = post(d, body)
    assert r.status == 200, r
    assert [e[2] for e in events(d) if e[0] == "type-99"] == [99]


def test_dedupe_without_notification_id(wdaemon):
    """Without tts_notification_id, shop + type + order + update time + status identify an event."""
    d = wdaemon
    a = envelope(nid=None, order="dedupe-1", update=1700000000, ts=int(time.time()))
    b = envelope(nid=None, order="dedupe-1", update=1700000000, ts=int(time.time()) + 1)
    c = envelope(nid=None, order="dedupe-1", update=1700000001)
    for body, msg in ((a, "success"), (b, "duplicate"), (c, "success")):
        r = post(d, body)
        assert r.status == 200 and r.json()["message"] == msg, (r, msg)
    assert len([e for e in events(d) if e[3] == "dedupe-1"]) == 2


def test_new_shop_known_without_restart(wdaemon):
    d = wdaemon
    seed_shop(d, shop="2222222222222222222")
    body = envelope(nid="new-shop", shop="2222222222222222222")
    # The first miss triggers a reload; TikTok would retry, and so do we.
    ofharness.wait_for(lambda: post(d, body).status == 200, 5, 0.2, "the new shop to be known")


def test_postgres_down_answers_503(make_daemon, private_pg):
    d = make_daemon(pg=private_pg)
    d.migrate()
    seed_shop(d)
    d.start(migrate=False)
    assert post(d, envelope(nid="before")).status == 200
    private_pg.stop()
    r = post(d, envelope(nid="during"))
    assert_error(r, 503, "unavailable")
    assert r.header("Retry-After") == "1", dict(r.headers)
    private_pg.start()
    ofharness.wait_for(lambda: post(d, envelope(nid="during")).status == 200, 15, 0.2,
                       "webhooks accepted again")
    assert sorted(e[0] for e in events(d)) == ["before", "during"]


def test_group_commit_batches_concurrent_webhooks(make_daemon):
    d = started(make_daemon, workers=1)
    n, results = 120, []
    lock = threading.Lock()

    def send(i):
        r = post(d, envelope(nid="gc-%d" % i, order="gc-order-%d" % i))
        with lock:
            results.append(r.status)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count(200) == n, results
    assert len(events(d)) == n
    m = metrics(d)
    commits = metric_value(m, "orderflow_webhook_commits_total")
    assert metric_value(m, "orderflow_webhooks_accepted_total") == n
    # Concurrent webhooks share transactions: fewer commits than events.
    assert commits < n, commits
