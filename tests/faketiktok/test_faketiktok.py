"""Self-tests of the fake TikTok Shop server.

Run: /usr/bin/python3 -m pytest -q tests/faketiktok
"""

import http.client
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import warnings

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import faketiktok  # noqa: E402
from faketiktok import FakeTikTok, sign_request, sign_webhook, signed_target  # noqa: E402

APP_KEY = "29a39d"
SECRET = "e59af819cc"
TOKEN = "ROW_testtoken"
CIPHER = "ROW_testcipher"
DETAIL = "/order/202309/orders"
SEARCH = "/order/202309/orders/search"
SHOPS = "/authorization/202309/shops"


# --------------------------------------------------------------------------
# fixtures and helpers

@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("certs"))
    subprocess.run(["sh", os.path.join(HERE, "mkcerts.sh"), d], check=True)
    return d


def ctx_for(certs):
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    return ctx


def make_fake(certs, **kw):
    args = dict(app_key=APP_KEY, app_secret=SECRET, access_token=TOKEN, shop_cipher=CIPHER)
    args.update(kw)
    return FakeTikTok(os.path.join(certs, "server.pem"), os.path.join(certs, "server.key"),
                      **args).start()


@pytest.fixture
def fake(certs):
    f = make_fake(certs)
    yield f
    f.stop()


class Client(object):
    """One kept-alive, verified HTTPS connection to the fake."""

    def __init__(self, fake, certs):
        self.fake = fake
        self.conn = http.client.HTTPSConnection("127.0.0.1", fake.port, context=ctx_for(certs),
                                                timeout=10)

    def raw(self, method, target, body=None, headers=None):
        h = {"x-tts-access-token": TOKEN}
        if body is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        self.conn.request(method, target, body=body, headers=h)
        r = self.conn.getresponse()
        data = r.read()
        assert r.getheader("Content-Length") == str(len(data))
        return r, data

    def api(self, method, path, params=None, body=b"", sign_body=None, timestamp=None,
            app_key=APP_KEY, secret=SECRET, cipher=CIPHER, headers=None, tamper=None):
        """Signed API call; returns (http status, envelope)."""
        target = signed_target(app_key, secret, path, params, body if sign_body is None else sign_body,
                               timestamp=timestamp, shop_cipher=cipher)
        if tamper:
            target = tamper(target)
        r, data = self.raw(method, target, body=body if method == "POST" else None, headers=headers)
        return r.status, json.loads(data)

    def close(self):
        self.conn.close()


@pytest.fixture
def client(fake, certs):
    c = Client(fake, certs)
    yield c
    c.close()


def detail(client, ids, **kw):
    return client.api("GET", DETAIL, {"ids": ",".join(ids)}, **kw)


def search(client, page_size=10, token="", filt=None, order="ASC", field="update_time"):
    params = {"page_size": str(page_size), "sort_field": field, "sort_order": order}
    if token:
        params["page_token"] = token
    return client.api("POST", SEARCH, params, body=json.dumps(filt or {}).encode())


def cents(s):
    return faketiktok._cents(s)


# --------------------------------------------------------------------------
# signing vectors (from the TikTok Shop docs, /tmp/ofspec4.md)

def test_sign_request_vector():
    sig = sign_request("e59af819cc", "/authorization/202309/shops",
                       {"app_key": "29a39d", "timestamp": "1623812664"}, b"")
    assert sig == "b596b73e0cc6de07ac26f036364178ab16b0a907af13d43f0a0cd2345f582dc8"
    # sign and access_token never take part; order of params does not matter
    assert sign_request("e59af819cc", "/authorization/202309/shops",
                        [("timestamp", "1623812664"), ("sign", "x"), ("access_token", "y"),
                         ("app_key", "29a39d")], None) == sig


def test_sign_webhook_vector():
    body = (b'{"type":1,"tts_notification_id":"7380066284010030890","shop_id":"7495540735365777507",'
            b'"timestamp":1718305585,"data":{"is_on_hold_order":true,"order_id":"576653688135258178",'
            b'"order_status":"UNPAID","update_time":1718305585}}')
    assert sign_webhook("abcdef", "123", body) == \
        "5dec0f11ec2f6783b8deee53c9ffbf8d024302f7c7e7fa55a35d17629031ac05"
    assert sign_webhook("abcdef", "123", body.decode()) == sign_webhook("abcdef", "123", body)


# --------------------------------------------------------------------------
# certificates

def test_mkcerts_idempotent_and_sane(certs):
    files = ["ca.pem", "ca.key", "server.pem", "server.key"]
    before = {f: open(os.path.join(certs, f), "rb").read() for f in files}
    r = subprocess.run(["sh", os.path.join(HERE, "mkcerts.sh"), certs], capture_output=True)
    assert r.returncode == 0 and r.stdout == b"" and r.stderr == b""
    assert before == {f: open(os.path.join(certs, f), "rb").read() for f in files}
    text = subprocess.run(["openssl", "x509", "-in", os.path.join(certs, "server.pem"), "-noout",
                           "-text"], capture_output=True, text=True, check=True).stdout
    assert "IP Address:127.0.0.1" in text and "DNS:localhost" in text
    assert "CN = 127.0.0.1" in text and "prime256v1" in text
    # a broken pair is regenerated
    with open(os.path.join(certs, "server.key"), "w") as fh:
        fh.write("garbage\n")
    subprocess.run(["sh", os.path.join(HERE, "mkcerts.sh"), certs], check=True)
    subprocess.run(["openssl", "verify", "-CAfile", os.path.join(certs, "ca.pem"),
                    os.path.join(certs, "server.pem")], check=True, capture_output=True)
    assert open(os.path.join(certs, "server.key"), "rb").read() != b"garbage\n"


# --------------------------------------------------------------------------
# TLS and a signed call

def test_signed_detail_over_verified_tls(fake, client):
    status, env = detail(client, ["576653688135258178", "42"])
    assert status == 200 and env["code"] == 0 and env["message"] == "Success"
    assert env["request_id"]
    orders = env["data"]["orders"]
    assert [o["id"] for o in orders] == ["576653688135258178", "42"]
    assert orders[0] == faketiktok.generate_order("576653688135258178")
    sock = client.conn.sock
    assert sock.version() in ("TLSv1.2", "TLSv1.3")
    assert fake.stats()["ids_requested"] == 2


def test_tls_requires_the_test_ca_and_tls12(fake):
    # the system trust store does not know the test CA
    c = http.client.HTTPSConnection("127.0.0.1", fake.port, context=ssl.create_default_context(),
                                    timeout=5)
    with pytest.raises(ssl.SSLCertVerificationError):
        c.request("GET", "/_fake/stats")
    c.close()
    # TLS 1.1 is refused
    ctx = ssl._create_unverified_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as s:
        with pytest.raises((ssl.SSLError, OSError)):
            ctx.wrap_socket(s).do_handshake()
    # plain HTTP on the TLS port gets no HTTP answer
    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as s:
        s.sendall(b"GET /_fake/stats HTTP/1.1\r\nHost: x\r\n\r\n")
        assert not s.recv(100).startswith(b"HTTP/")


def test_shops_endpoint_no_cipher_needed(client):
    status, env = client.api("GET", SHOPS, cipher=None)
    assert status == 200 and env["code"] == 0
    assert env["data"]["shops"][0]["cipher"] == CIPHER


def test_percent_encoded_params_are_signed_decoded(client):
    # the comma may be sent as %2C: the sign is over decoded values
    q = faketiktok.signed_query(APP_KEY, SECRET, DETAIL, {"ids": "1,2"}, shop_cipher=CIPHER)
    r, data = client.raw("GET", DETAIL + "?" + urllib.parse.urlencode(q))
    assert "%2C" in urllib.parse.urlencode(q)
    env = json.loads(data)
    assert env["code"] == 0 and len(env["data"]["orders"]) == 2


# --------------------------------------------------------------------------
# rejections

def _bad_sign(target):
    i = target.index("sign=") + 5
    return target[:i] + ("0" if target[i] != "0" else "1") + target[i + 1:]


@pytest.mark.parametrize("case,kw,code,kind", [
    ("bad sign", dict(tamper=_bad_sign), 106001, "sign"),
    ("wrong secret", dict(secret="nope"), 106001, "sign"),
    ("bad token", dict(headers={"x-tts-access-token": "expired"}), 105002, "token"),
    ("stale timestamp", dict(timestamp=time.time() - 301 - 5), 106002, "timestamp"),
    ("future timestamp", dict(timestamp=time.time() + 301 + 5), 106002, "timestamp"),
    ("wrong app_key", dict(app_key="other"), 106003, "app_key"),
    ("missing shop_cipher", dict(cipher=None), 36009001, "params"),
    ("wrong shop_cipher", dict(cipher="ROW_other"), 36009001, "params"),
])
def test_rejections(fake, client, case, kw, code, kind):
    status, env = detail(client, ["1"], **kw)
    assert status == 200
    assert env["code"] == code, case
    assert env["data"] is None and env["request_id"] and env["message"]
    st = fake.stats()
    assert st["rejected"][kind] == 1
    assert sum(st["rejected"].values()) == 1
    assert st["requests"] == 1 and st["by_path"] == {DETAIL: 1}


def test_bad_sign_message(client):
    status, env = detail(client, ["1"], tamper=_bad_sign)
    assert env == {"code": 106001, "message": "Invalid credentials: sign",
                   "request_id": env["request_id"], "data": None}


def test_missing_token_and_timestamp_in_window(client):
    q = faketiktok.signed_query(APP_KEY, SECRET, DETAIL, {"ids": "1"}, shop_cipher=CIPHER)
    client.conn.request("GET", DETAIL + "?" + urllib.parse.urlencode(q, safe=","))
    assert json.loads(client.conn.getresponse().read())["code"] == 105002
    status, env = detail(client, ["1"], timestamp=time.time() - 250)
    assert env["code"] == 0
    status, env = detail(client, ["1"], timestamp=time.time() + 250)
    assert env["code"] == 0


def test_sign_covers_body_and_query(client):
    body = json.dumps({"update_time_ge": 0}).encode()
    st, env = client.api("POST", SEARCH, {"page_size": "5"}, body=body,
                         sign_body=b'{"update_time_ge": 1}')
    assert env["code"] == 106001
    st, env = client.api("POST", SEARCH, {"page_size": "5"}, body=body)
    assert env["code"] == 0
    # a query parameter added after signing breaks the sign
    st, env = detail(client, ["1"], tamper=lambda t: t + "&extra=1")
    assert env["code"] == 106001


def test_unknown_path_and_method(client):
    st, env = client.api("GET", "/order/202309/nothing")
    assert st == 404 and env["code"] == faketiktok.CODE_NOT_FOUND
    st, env = client.api("POST", DETAIL, {"ids": "1"})
    assert st == 405 and env["code"] == faketiktok.CODE_METHOD


# --------------------------------------------------------------------------
# detail: ids and generated orders

def test_ids_limits(fake, client):
    ids50 = [str(1000 + i) for i in range(50)]
    st, env = detail(client, ids50)
    assert env["code"] == 0 and len(env["data"]["orders"]) == 50
    for bad in (ids50 + ["2000"], ["1", "", "2"], [""]):
        st, env = detail(client, bad)
        assert env["code"] == 36009003, bad
    st, env = client.api("GET", DETAIL, {})
    assert env["code"] == 36009003
    # duplicates are answered once
    st, env = detail(client, ["7", "7", "8"])
    assert [o["id"] for o in env["data"]["orders"]] == ["7", "8"]


def check_order(o, status="AWAITING_SHIPMENT"):
    assert o["status"] == status and o["payment"]["currency"] == "USD"
    for k in ("create_time", "update_time", "paid_time", "rts_sla_time", "shipping_due_time",
              "collection_due_time", "delivery_sla_time", "cancel_order_sla_time"):
        assert isinstance(o[k], int)
    assert o["create_time"] <= o["paid_time"] <= o["update_time"] < o["rts_sla_time"]
    assert isinstance(o["is_on_hold_order"], bool) and isinstance(o["is_buyer_request_cancel"], bool)
    assert "@" in o["buyer_email"]
    addr = o["recipient_address"]
    for k in ("name", "phone_number", "full_address", "postal_code", "region_code"):
        assert isinstance(addr[k], str) and addr[k]
    assert addr["district_info"] and all(
        d["address_level_name"] and d["address_name"] for d in addr["district_info"])
    lines = o["line_items"]
    per_sku = {}
    for li in lines:
        for k in ("id", "product_id", "product_name", "sku_id", "sku_name", "seller_sku",
                  "sale_price", "original_price", "currency", "package_id", "display_status"):
            assert isinstance(li[k], str) and li[k], k
        per_sku[li["sku_id"]] = per_sku.get(li["sku_id"], 0) + 1
        assert cents(li["original_price"]) >= cents(li["sale_price"]) > 0
    assert len({li["id"] for li in lines}) == len(lines)
    assert 1 <= len(per_sku) <= 4 and all(1 <= n <= 3 for n in per_sku.values())
    p = o["payment"]
    for k, v in p.items():
        if k != "currency":
            assert isinstance(v, str) and "." in v and len(v.split(".")[1]) == 2, (k, v)
    sub = sum(cents(li["sale_price"]) for li in lines)
    assert cents(p["sub_total"]) == sub
    assert cents(p["total_amount"]) == sub + cents(p["shipping_fee"]) + cents(p["tax"])
    assert cents(p["original_total_product_price"]) == sum(cents(li["original_price"]) for li in lines)
    assert cents(p["original_total_product_price"]) - cents(p["seller_discount"]) \
        - cents(p["platform_discount"]) == sub
    return per_sku


def test_generated_orders_deterministic_and_consistent():
    rng = random.Random(7)
    ids = [str(rng.randrange(10 ** 17, 10 ** 18)) for _ in range(300)] + ["abc", "x-1"]
    folded = 0
    skus_seen = set()
    for i in ids:
        o = faketiktok.generate_order(i)
        assert o == faketiktok.generate_order(i)
        assert o["id"] == i
        per_sku = check_order(o)
        folded += any(n > 1 for n in per_sku.values())
        skus_seen.update(per_sku)
    assert folded > 50               # quantity folding is exercised often
    assert len(skus_seen) > 10       # a shared catalog: the same SKU recurs across orders
    a, b = faketiktok.generate_order("1"), faketiktok.generate_order("2")
    assert a != b
    # stable across processes (no hash randomisation involved)
    out = subprocess.run([sys.executable, "-c", "import sys, json; sys.path.insert(0, %r); "
                          "import faketiktok; print(json.dumps(faketiktok.generate_order('99')))"
                          % HERE], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONHASHSEED="123")).stdout
    assert json.loads(out) == faketiktok.generate_order("99")


def test_unknown_ids_missing(certs):
    f = make_fake(certs, unknown_ids="missing")
    try:
        f.seed([{"id": "500"}])
        c = Client(f, certs)
        st, env = detail(c, ["499", "500", "501"])
        assert env["code"] == 0 and [o["id"] for o in env["data"]["orders"]] == ["500"]
        c.close()
    finally:
        f.stop()


def test_seed_defaults_and_recomputed_payment(fake, client):
    done = fake.seed([
        {"id": "9001", "status": "UNPAID", "update_time": 1790000000},
        {"id": "9002", "line_items": [{"sku_id": "S1", "sale_price": "10.00"},
                                      {"sku_id": "S1", "sale_price": "10.00"},
                                      {"sku_id": "S2", "sale_price": "3.50", "original_price": "4.00"}]},
    ])
    assert done[0]["update_time"] == 1790000000
    assert done[0]["create_time"] <= done[0]["paid_time"] <= 1790000000 < done[0]["rts_sla_time"]
    st, env = detail(client, ["9001", "9002"])
    o1, o2 = env["data"]["orders"]
    assert o1["status"] == "UNPAID" and all(li["display_status"] == "UNPAID" for li in o1["line_items"])
    gen = faketiktok.generate_order("9001")
    assert o1["recipient_address"] == gen["recipient_address"] and o1["payment"] == gen["payment"]
    assert [li["sku_id"] for li in o2["line_items"]] == ["S1", "S1", "S2"]
    assert o2["payment"]["sub_total"] == "23.50"
    assert o2["payment"]["original_total_product_price"] == "24.00"
    assert cents(o2["payment"]["total_amount"]) == 2350 + cents(o2["payment"]["shipping_fee"]) \
        + cents(o2["payment"]["tax"])
    assert fake.stats()["orders_seeded"] == 2
    # replace
    fake.seed([{"id": "9001", "status": "CANCELLED"}])
    st, env = detail(client, ["9001"])
    assert env["data"]["orders"][0]["status"] == "CANCELLED"
    with pytest.raises(ValueError):
        fake.seed([{"status": "UNPAID"}])
    with pytest.raises(ValueError):
        fake.seed([{"id": "1", "update_time": "soon"}])


# --------------------------------------------------------------------------
# search

def seed_many(fake, n=57, seed=3):
    rng = random.Random(seed)
    statuses = ["AWAITING_SHIPMENT", "UNPAID", "CANCELLED"]
    orders = [{"id": str(580000000000000000 + rng.randrange(10 ** 15)),
               "update_time": 1790000000 + rng.randrange(40),      # many ties
               "status": rng.choice(statuses)} for _ in range(n)]
    fake.seed(orders)
    return {o["id"]: o for o in orders}


def page_all(client, page_size, filt=None, order="ASC"):
    got, token, pages, total = [], "", 0, None
    while True:
        st, env = search(client, page_size, token, filt, order)
        assert st == 200 and env["code"] == 0, env
        d = env["data"]
        total = d["total_count"] if total is None else total
        assert d["total_count"] == total
        got.extend(d["orders"])
        pages += 1
        token = d["next_page_token"]
        assert len(d["orders"]) <= page_size
        if token == "":
            break
        assert len(d["orders"]) == page_size
        assert pages < 1000
    return got, total, pages


def test_search_paging_every_order_once_in_order(fake, client):
    seeded = seed_many(fake)
    got, total, pages = page_all(client, 10)
    ids = [o["id"] for o in got]
    assert sorted(ids) == sorted(seeded) and len(ids) == len(set(ids)) == total == len(seeded)
    keys = [(o["update_time"], o["id"]) for o in got]
    assert keys == sorted(keys)
    assert pages == (len(seeded) + 9) // 10
    for o in got:
        check_order(o, seeded[o["id"]]["status"])
        assert o["update_time"] == seeded[o["id"]]["update_time"]
    # generated-only ids never show up in search; detail of seeded is the same object
    st, env = detail(client, ids[:3])
    assert env["data"]["orders"] == got[:3]
    # DESC is the reverse
    got_desc, _, _ = page_all(client, 7, order="DESC")
    assert [o["id"] for o in got_desc] == ids[::-1]


def test_search_filters(fake, client):
    seeded = seed_many(fake)
    filt = {"update_time_ge": 1790000010, "update_time_lt": 1790000030, "order_status": "UNPAID"}
    want = sorted(((o["update_time"], i) for i, o in seeded.items()
                   if 1790000010 <= o["update_time"] < 1790000030 and o["status"] == "UNPAID"))
    got, total, _ = page_all(client, 3, filt)
    assert [(o["update_time"], o["id"]) for o in got] == want and total == len(want)
    assert want
    got, total, pages = page_all(client, 100, {"update_time_ge": 1790000040})
    assert got == [] and total == 0 and pages == 1
    # DESC with a range: the reverse of ASC
    got_desc, total, _ = page_all(client, 4, filt, order="DESC")
    assert [(o["update_time"], o["id"]) for o in got_desc] == want[::-1]
    # a create_time filter while sorting by update_time
    fake.seed([{"id": "1", "create_time": 1700000000, "paid_time": 1700000001,
                "update_time": 1790000020, "status": "UNPAID"}])
    got, total, _ = page_all(client, 2, dict(filt, create_time_lt=1700000005))
    assert [o["id"] for o in got] == ["1"] and total == 1


def test_search_bad_params(fake, client):
    seed_many(fake, 5)
    for ps in (0, 101, "x"):
        st, env = search(client, ps)
        assert env["code"] == 36009001, ps
    st, env = search(client, 10, token="!!notatoken")
    assert env["code"] == 36009001
    st, env = client.api("POST", SEARCH, {"page_size": "5"}, body=b"[1,2]")
    assert env["code"] == 36009001
    st, env = client.api("POST", SEARCH, {"page_size": "5"}, body=b'{"update_time_ge":"x"}')
    assert env["code"] == 36009001
    assert fake.stats()["rejected"]["params"] == 6


# --------------------------------------------------------------------------
# faults

def test_fault_latency_then_normal_answer(fake, client):
    fake.fault(latency_ms=300)
    t = time.monotonic()
    st, env = detail(client, ["1"])
    assert time.monotonic() - t >= 0.28
    assert env["code"] == 0 and env["data"]["orders"][0]["id"] == "1"
    t = time.monotonic()
    detail(client, ["1"])
    assert time.monotonic() - t < 0.25
    assert fake.stats()["faults_served"] == 1


def test_fault_latency_does_not_block_other_connections(fake, certs):
    fake.fault(latency_ms=800, path=DETAIL)
    slow, quick = Client(fake, certs), Client(fake, certs)
    slow.conn.request("GET", signed_target(APP_KEY, SECRET, DETAIL, {"ids": "1"},
                                           shop_cipher=CIPHER), headers={"x-tts-access-token": TOKEN})
    time.sleep(0.05)
    t = time.monotonic()
    st, env = detail(quick, ["2"])
    assert env["code"] == 0 and time.monotonic() - t < 0.5
    assert json.loads(slow.conn.getresponse().read())["code"] == 0
    slow.close()
    quick.close()


def test_fault_http_status(fake, client):
    fake.fault(http_status=500)
    fake.fault(http_status=429, retry_after=2)
    fake.fault(http_status=503, code=12345, message="maintenance")
    st, env = detail(client, ["1"])
    assert st == 500 and env["code"] == faketiktok.CODE_SERVER_ERROR and env["data"] is None
    r, data = client.raw("GET", signed_target(APP_KEY, SECRET, DETAIL, {"ids": "1"}, shop_cipher=CIPHER))
    assert r.status == 429 and json.loads(data)["code"] == 36009002
    assert r.getheader("Retry-After") == "2"
    st, env = detail(client, ["1"])
    assert st == 503 and env["code"] == 12345 and env["message"] == "maintenance"
    st, env = detail(client, ["1"])
    assert st == 200 and env["code"] == 0
    assert fake.stats()["faults_served"] == 3


def test_fault_code_only_and_count_and_path(fake, client):
    fake.fault(code=36009002, count=3, path=DETAIL)
    st, env = client.api("GET", SHOPS)          # other path: untouched
    assert env["code"] == 0
    for _ in range(3):
        st, env = detail(client, ["1"])
        assert st == 200 and env["code"] == 36009002 and env["message"] == "Too many requests"
    st, env = detail(client, ["1"])
    assert env["code"] == 0
    fake.fault(code=105002)                      # token expiry injected
    st, env = client.api("GET", SHOPS)
    assert env["code"] == 105002
    s = fake.stats()
    assert s["faults_served"] == 4 and s["faults_pending"] == 0


def test_fault_count_forever_until_reset(fake, client):
    fake.fault(code=36009002, count=-1)
    for _ in range(5):
        assert detail(client, ["1"])[1]["code"] == 36009002
    fake.reset()
    assert detail(client, ["1"])[1]["code"] == 0
    assert fake.stats()["requests"] == 1


def test_fault_drop(fake, client):
    fake.fault(drop=True, latency_ms=50)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, ssl.SSLError)):
        detail(client, ["1"])
    client.close()
    st, env = detail(client, ["1"])             # http.client reconnects
    assert env["code"] == 0
    assert fake.stats()["connections"] == 2


def test_fault_truncate_and_html_body(fake, client):
    fake.fault(truncate=True)
    with pytest.raises(http.client.IncompleteRead):
        detail(client, ["1"])
    client.close()
    fake.fault(http_status=502, body="<html>bad gateway</html>")
    r, data = client.raw("GET", signed_target(APP_KEY, SECRET, DETAIL, {"ids": "1"}, shop_cipher=CIPHER))
    assert r.status == 502 and data == b"<html>bad gateway</html>"


def test_bad_fault_rejected(fake):
    for kw in ({"latency": 5}, {"count": 0}, {"http_status": 99}, {"drop": "yes"}, {"path": "x"}):
        with pytest.raises(ValueError):
            fake.fault(**kw)


# --------------------------------------------------------------------------
# keep-alive and connection handling

def test_keep_alive_one_connection(fake, client):
    for i in range(6):
        st, env = detail(client, [str(i)])
        assert env["code"] == 0
    client.api("GET", SHOPS)
    client.raw("GET", "/_fake/stats")
    s = fake.stats()
    assert s["connections"] == 1 and s["requests"] == 7


def test_pipelined_requests_answered_in_order(fake, certs):
    fake.fault(latency_ms=200, count=1)
    ctx = ctx_for(certs)
    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as raw:
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        reqs = b""
        for i in ("11", "12", "13"):
            t = signed_target(APP_KEY, SECRET, DETAIL, {"ids": i}, shop_cipher=CIPHER)
            reqs += ("GET %s HTTP/1.1\r\nHost: x\r\nx-tts-access-token: %s\r\n\r\n" % (t, TOKEN)).encode()
        s.sendall(reqs)
        f = s.makefile("rb")
        ids = []
        for _ in range(3):
            assert f.readline().startswith(b"HTTP/1.1 200 ")
            length = None
            while True:
                line = f.readline()
                if line == b"\r\n":
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            ids.append(json.loads(f.read(length))["data"]["orders"][0]["id"])
        assert ids == ["11", "12", "13"]
        f.close()


def test_connection_close_and_chunked_body(fake, certs, client):
    seed_many(fake, 4)
    body = json.dumps({}).encode()
    t = signed_target(APP_KEY, SECRET, SEARCH, {"page_size": "10"}, body, shop_cipher=CIPHER)
    ctx = ctx_for(certs)
    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as raw:
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nx-tts-access-token: %s\r\n"
                   "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n%x\r\n" % (t, TOKEN, len(body))
                   ).encode() + body + b"\r\n0\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert b"Connection: close" in head
    env = json.loads(payload)
    assert env["code"] == 0 and env["data"]["total_count"] == 4


def test_idle_timeout_closes_connection(certs):
    f = make_fake(certs, idle_timeout=0.3)
    try:
        with socket.create_connection(("127.0.0.1", f.port), timeout=5) as raw:
            s = ctx_for(certs).wrap_socket(raw, server_hostname="127.0.0.1")
            t = time.monotonic()
            assert s.recv(10) == b""
            assert 0.2 < time.monotonic() - t < 3
    finally:
        f.stop()


def test_max_requests_per_conn(certs):
    f = make_fake(certs, max_requests_per_conn=2)
    try:
        c = Client(f, certs)
        r1, _ = c.raw("GET", "/_fake/stats")
        r2, _ = c.raw("GET", "/_fake/stats")
        assert r1.getheader("Connection") == "keep-alive" and r2.getheader("Connection") == "close"
        c.close()
    finally:
        f.stop()


# --------------------------------------------------------------------------
# admin endpoints over HTTPS and the command line

def test_admin_endpoints(fake, certs, client):
    cafile = os.path.join(certs, "ca.pem")
    st, r = faketiktok.admin_request(fake.url, "POST", "/_fake/orders",
                                     {"orders": [{"id": "77", "update_time": 1790000001}]}, cafile)
    assert st == 200 and r["seeded"] == 1
    st, r = faketiktok.admin_request(fake.url, "POST", "/_fake/faults", {"code": 36009002}, cafile)
    assert st == 200 and r["queued"] == 1
    st, r = faketiktok.admin_request(fake.url, "POST", "/_fake/faults", {"bogus": 1}, cafile)
    assert st == 400
    assert detail(client, ["77"])[1]["code"] == 36009002
    assert detail(client, ["77"])[1]["data"]["orders"][0]["update_time"] == 1790000001
    st, r = faketiktok.admin_request(fake.url, "GET", "/_fake/stats", None, cafile)
    assert r["requests"] == 2 and r["faults_served"] == 1 and r["ids_requested"] == 1
    assert r["by_path"] == {DETAIL: 2}
    assert set(r["rejected"]) >= {"sign", "token", "timestamp"}
    st, r = faketiktok.admin_request(fake.url, "GET", "/_fake/orders", None, cafile)
    assert [o["id"] for o in r["orders"]] == ["77"]
    st, r = faketiktok.admin_request(fake.url, "POST", "/_fake/reset", {}, cafile)
    assert st == 200
    st, r = faketiktok.admin_request(fake.url, "GET", "/_fake/stats", None, cafile)
    assert r["requests"] == 0 and r["orders_seeded"] == 0
    st, r = faketiktok.admin_request(fake.url, "GET", "/_fake/nothing", None, cafile)
    assert st == 404


def test_command_line(certs):
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "faketiktok.py"), "--port", "0",
                          "--cert", os.path.join(certs, "server.pem"),
                          "--key", os.path.join(certs, "server.key"),
                          "--app-key", APP_KEY, "--app-secret", SECRET, "--access-token", TOKEN,
                          "--shop-cipher", CIPHER, "--threads", "2", "--seed-generated", "3"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("listening "), line + p.stderr.read()
        port = int(line.split()[1])
        assert port > 0

        class F(object):
            pass
        f = F()
        f.port = port
        c = Client(f, certs)
        for _ in range(4):
            st, env = search(c, 2)
            assert env["code"] == 0 and env["data"]["total_count"] == 3
        st, env = detail(c, ["1", "2"])
        assert env["code"] == 0
        c.close()
        out = subprocess.run([sys.executable, os.path.join(HERE, "faketiktok.py"), "--sign-url",
                              DETAIL + "?ids=5", "--app-key", APP_KEY, "--app-secret", SECRET,
                              "--shop-cipher", CIPHER], capture_output=True, text=True, check=True)
        c = Client(f, certs)
        r, data = c.raw("GET", out.stdout.strip())
        assert json.loads(data)["code"] == 0
        c.close()
        t = time.monotonic()
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
        assert time.monotonic() - t < 3
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()


# --------------------------------------------------------------------------
# fulfillment

SHIP = "/fulfillment/202309/packages/%s/ship"
DOCS = "/fulfillment/202309/packages/%s/shipping_documents"
PKG = "/fulfillment/202309/packages/%s"
MARK = "/fulfillment/202309/orders/%s/packages"
USPS, UPS = "7117858858072016686", "7117859084333745966"


def post(client, path, body):
    return client.api("POST", path, body=json.dumps(body).encode())


def order_of(client, oid):
    st, env = detail(client, [oid])
    assert env["code"] == 0, env
    return env["data"]["orders"][0]


def test_ship_tiktok_package_then_documents(fake, client, certs):
    o = order_of(client, "5001")                  # generated: the fake now knows its package
    pid = o["packages"][0]["id"]
    st, env = client.api("GET", PKG % pid)
    assert env["code"] == 0 and env["data"]["package_status"] == "TO_FULFILL"
    st, env = client.api("GET", DOCS % pid, {"document_type": "SHIPPING_LABEL"})
    assert env["code"] == faketiktok.CODE_PACKAGE_NOT_SHIPPED
    st, env = client.api("POST", SHIP % pid)      # no body: PICKUP, TikTok's label
    assert st == 200 and env["code"] == 0 and env["data"] == {}
    o2 = order_of(client, "5001")
    assert o2["status"] == "AWAITING_COLLECTION" and o2["update_time"] >= o["update_time"] + 1
    tn = faketiktok.tiktok_tracking_number(pid)
    assert tn.startswith("TT") and len(tn) == 16 and tn[2:].isdigit()
    for li in o2["line_items"]:
        assert (li["package_status"], li["tracking_number"], li["shipping_provider_id"],
                li["shipping_provider_name"], li["display_status"]) == (
                    "PROCESSING", tn, USPS, "USPS", "AWAITING_COLLECTION")
    st, env = client.api("GET", PKG % pid)
    d = env["data"]
    assert d["package_status"] == "PROCESSING" and d["tracking_number"] == tn
    assert d["handover_method"] == "PICKUP" and d["shipping_type"] == "TIKTOK"
    assert d["orders"][0]["id"] == "5001"
    assert sum(s["quantity"] for s in d["orders"][0]["skus"]) == len(o["line_items"])
    assert sorted(d["order_line_item_ids"]) == sorted(li["id"] for li in o["line_items"])
    st, env = client.api("POST", SHIP % pid, body=b'{"handover_method":"DROP_OFF"}')
    assert env["code"] == faketiktok.CODE_PACKAGE_SHIPPED
    st, env = client.api("GET", DOCS % pid, {"document_type": "PACKING_SLIP_X"})
    assert env["code"] == faketiktok.CODE_BAD_PARAMS
    st, env = client.api("GET", DOCS % pid, {"document_type": "SHIPPING_LABEL"})
    assert env["code"] == 0 and env["data"]["tracking_number"] == tn
    url = urllib.parse.urlsplit(env["data"]["doc_url"])
    assert url.path == "/_fake/docs/%s.pdf" % pid and "expires=" in url.query
    r, data = client.raw("GET", url.path + "?" + url.query)
    assert r.status == 200 and r.getheader("Content-Type") == "application/pdf"
    assert data.startswith(b"%PDF-")
    s = fake.stats()
    assert s["ship_calls"] == 2 and s["packages_shipped"] == {pid: 1}
    assert "5001" in fake.orders()                 # remembered from now on
    assert fake.stats()["orders_seeded"] == 0


def test_ship_errors(fake, client):
    st, env = client.api("POST", SHIP % "999")
    assert env["code"] == faketiktok.CODE_PACKAGE_NOT_FOUND
    st, env = client.api("GET", PKG % "999")
    assert env["code"] == faketiktok.CODE_PACKAGE_NOT_FOUND
    pid = order_of(client, "5002")["packages"][0]["id"]
    for body, code in ((b"[1]", 36009001), (b'{"handover_method":"TRUCK"}', 36009001),
                       (b'{"pickup_slot":{"start_time":5,"end_time":4}}', 36009001),
                       (b'{"self_shipment":{"tracking_number":"X1"}}', 36009001),
                       (b'{"self_shipment":{"tracking_number":"X1","shipping_provider_id":"1"}}',
                        faketiktok.CODE_BAD_TRACKING),
                       (json.dumps({"self_shipment": {"tracking_number": "X" * 65,
                                                      "shipping_provider_id": USPS}}).encode(),
                        faketiktok.CODE_BAD_TRACKING)):
        st, env = client.api("POST", SHIP % pid, body=body)
        assert env["code"] == code, (body, env)
    # unsigned / wrongly signed: rejected before anything happens
    st, env = client.api("POST", SHIP % pid, body=b"{}", sign_body=b"{ }")
    assert env["code"] == faketiktok.CODE_BAD_SIGN
    st, env = client.api("PUT", SHIP % pid)
    assert st == 405
    assert fake.stats()["packages_shipped"] == {}
    # cancelled through the admin endpoint
    fake.set_status("5002", "CANCELLED")
    st, env = client.api("POST", SHIP % pid)
    assert env["code"] == faketiktok.CODE_ORDER_CANCELLED
    assert order_of(client, "5002")["status"] == "CANCELLED"
    st, env = client.api("GET", PKG % pid)
    assert env["data"]["package_status"] == "CANCELLED"


def test_seller_order_mark_package_as_shipped(fake, client):
    o = fake.seed([{"id": "6001", "shipping_type": "SELLER"}])[0]
    assert o["packages"] == [] and all(li["package_id"] == "" for li in o["line_items"])
    lines = [li["id"] for li in order_of(client, "6001")["line_items"]]
    if len(lines) < 2:
        o = fake.seed([{"id": "6001", "shipping_type": "SELLER",
                        "line_items": [{"sku_id": CATALOG_SKU(0)}, {"sku_id": CATALOG_SKU(1)}]}])[0]
        lines = [li["id"] for li in o["line_items"]]
    for body, code in (({"order_line_item_ids": [], "tracking_number": "1Z9",
                         "shipping_provider_id": UPS}, 36009001),
                       ({"order_line_item_ids": ["nope"], "tracking_number": "1Z9",
                         "shipping_provider_id": UPS}, 36009001),
                       ({"order_line_item_ids": lines[:1], "shipping_provider_id": UPS}, 36009001),
                       ({"order_line_item_ids": lines[:1], "tracking_number": "",
                         "shipping_provider_id": UPS}, faketiktok.CODE_BAD_TRACKING),
                       ({"order_line_item_ids": lines[:1], "tracking_number": "1Z9",
                         "shipping_provider_id": "42"}, faketiktok.CODE_BAD_TRACKING)):
        st, env = post(client, MARK % "6001", body)
        assert env["code"] == code, (body, env)
    before = order_of(client, "6001")
    st, env = post(client, MARK % "6001", {"order_line_item_ids": lines[:1],
                                           "tracking_number": "1Z999AA10123456784",
                                           "shipping_provider_id": UPS})
    assert env["code"] == 0, env
    d = env["data"]
    assert d["order_id"] == "6001" and d["order_line_item_ids"] == lines[:1] and d["warning"] is None
    pid = d["package_id"]
    o = order_of(client, "6001")
    assert o["status"] == "PARTIALLY_SHIPPING" and o["update_time"] > before["update_time"]
    assert o["packages"] == [{"id": pid}]
    li = [x for x in o["line_items"] if x["id"] == lines[0]][0]
    assert (li["package_id"], li["tracking_number"], li["shipping_provider_name"]) == (
        pid, "1Z999AA10123456784", "UPS")
    st, env = client.api("GET", PKG % pid)
    assert env["data"]["package_status"] == "PROCESSING" and env["data"]["shipping_type"] == "SELLER"
    st, env = client.api("GET", DOCS % pid, {"document_type": "SHIPPING_LABEL"})
    assert env["code"] == faketiktok.CODE_NOT_TIKTOK_SHIPPING
    # again with a shipped line: refused, nothing changes
    st, env = post(client, MARK % "6001", {"order_line_item_ids": lines, "tracking_number": "T2",
                                           "shipping_provider_id": USPS})
    assert env["code"] == faketiktok.CODE_LINES_SHIPPED
    assert order_of(client, "6001") == o
    st, env = post(client, MARK % "6001", {"order_line_item_ids": lines[1:], "tracking_number": "T2",
                                           "shipping_provider_id": USPS})
    assert env["code"] == 0
    o = order_of(client, "6001")
    assert o["status"] == "AWAITING_COLLECTION" and len(o["packages"]) == 2
    assert all(x["display_status"] == "AWAITING_COLLECTION" for x in o["line_items"])
    # a TIKTOK order cannot be marked shipped
    tl = order_of(client, "6002")["line_items"][0]["id"]
    st, env = post(client, MARK % "6002", {"order_line_item_ids": [tl], "tracking_number": "T3",
                                           "shipping_provider_id": USPS})
    assert env["code"] == faketiktok.CODE_NOT_TIKTOK_SHIPPING
    s = fake.stats()
    assert s["ship_calls"] == 9 and s["packages_shipped"] == {pid: 1, o["packages"][1]["id"]: 1}


def CATALOG_SKU(i):
    return faketiktok.CATALOG[i]["sku_id"]


def test_seller_split_packages_ship_package(fake, client):
    fake.seed([{"id": "7001", "shipping_type": "SELLER", "packages": [{"id": "P1"}, {"id": "P2"}],
                "line_items": [{"sku_id": CATALOG_SKU(0), "package_id": "P1"},
                               {"sku_id": CATALOG_SKU(1), "package_id": "P2"}]}])
    with pytest.raises(ValueError):
        fake.seed([{"id": "7002", "packages": [{"id": "P1"}], "line_items": [{"package_id": "P9"}]}])
    with pytest.raises(ValueError):
        fake.seed([{"id": "7003", "shipping_type": "BOAT"}])
    st, env = client.api("POST", SHIP % "P1")
    assert env["code"] == faketiktok.CODE_BAD_TRACKING          # SELLER needs self_shipment
    ss = {"self_shipment": {"tracking_number": "9400111899223197428490",
                            "shipping_provider_id": USPS}}
    st, env = post(client, SHIP % "P1", ss)
    assert env["code"] == 0
    o = order_of(client, "7001")
    assert o["status"] == "PARTIALLY_SHIPPING"
    assert [li["package_status"] for li in o["line_items"]] == ["PROCESSING", "TO_FULFILL"]
    # the seeded order's new update_time is what search sees
    st, env = search(client, filt={"update_time_ge": o["update_time"]})
    assert [x["id"] for x in env["data"]["orders"]] == ["7001"]
    st, env = post(client, SHIP % "P2", ss)
    assert env["code"] == 0
    assert order_of(client, "7001")["status"] == "AWAITING_COLLECTION"
    assert fake.stats()["packages_shipped"] == {"P1": 1, "P2": 1}


def test_fault_after_ship_answer_lost(fake, client):
    pid = order_of(client, "8001")["packages"][0]["id"]
    fake.fault(path="/fulfillment/202309/packages/*", method="POST", after=True, drop=True)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, ssl.SSLError)):
        client.api("POST", SHIP % pid)
    client.close()
    st, env = client.api("GET", PKG % pid)                     # it did happen
    assert env["data"]["package_status"] == "PROCESSING"
    st, env = client.api("POST", SHIP % pid)                   # the retry
    assert env["code"] == faketiktok.CODE_PACKAGE_SHIPPED
    s = fake.stats()
    assert s["packages_shipped"] == {pid: 1} and s["ship_calls"] == 2 and s["faults_served"] == 1
    fake.fault(path=PKG % pid, after=True, http_status=503)   # exact path, after + status
    st, env = client.api("GET", PKG % pid)
    assert st == 503 and env["code"] == faketiktok.CODE_SERVER_ERROR
    with pytest.raises(ValueError):
        fake.fault(after=True)                                  # nothing to replace the answer
    with pytest.raises(ValueError):
        fake.fault(after="yes", drop=True)


def test_shipping_providers_and_admin_status(fake, client, certs):
    st, env = client.api("GET", "/logistics/202309/delivery_options/7091146663229654785/shipping_providers")
    assert env["code"] == 0
    provs = env["data"]["shipping_providers"]
    assert [p["name"] for p in provs] == ["USPS", "UPS", "FedEx", "DHL eCommerce"]
    assert provs[0]["id"] == USPS and len({p["id"] for p in provs}) == 4
    st, env = client.api("GET", "/logistics/202309/delivery_options/abc/shipping_providers")
    assert env["code"] == faketiktok.CODE_BAD_PARAMS
    cafile = os.path.join(certs, "ca.pem")
    pid = order_of(client, "9001")["packages"][0]["id"]
    client.api("POST", SHIP % pid)
    ut = order_of(client, "9001")["update_time"]
    for status, pst in (("IN_TRANSIT", "FULFILLING"), ("DELIVERED", "COMPLETED")):
        st, r = faketiktok.admin_request(fake.url, "POST", "/_fake/orders/9001/status",
                                         {"status": status}, cafile)
        assert st == 200 and r["order"]["status"] == status
        o = order_of(client, "9001")
        assert o["status"] == status and o["update_time"] == ut + 1
        assert all(li["display_status"] == status and li["package_status"] == pst
                   for li in o["line_items"])
        ut = o["update_time"]
        assert client.api("GET", PKG % pid)[1]["data"]["package_status"] == pst
    st, r = faketiktok.admin_request(fake.url, "POST", "/_fake/orders/9001/status",
                                     {"status": "LOST"}, cafile)
    assert st == 400 and "status must be one of" in r["error"]
    st, r = faketiktok.admin_request(fake.url, "GET", "/_fake/orders/9001/status", None, cafile)
    assert st == 405
    st, r = faketiktok.admin_request(fake.url, "GET", "/_fake/docs/nothing.pdf", None, cafile)
    assert st == 404


# --------------------------------------------------------------------------
# authorization flow and token lifecycle (AUTH.md)

AUTHORIZE = "/open/authorize"
TOKEN_GET = "/api/v2/token/get"
TOKEN_REFRESH = "/api/v2/token/refresh"
SERVICE_ID = faketiktok.DEFAULT_SERVICE_ID
REDIRECT = "https://app.example/tiktok/callback"


def authorize(client, service_id=SERVICE_ID, state="st-1"):
    q = {"service_id": service_id}
    if state is not None:
        q["state"] = state
    return client.raw("GET", AUTHORIZE + "?" + urllib.parse.urlencode(q))


def auth_code(client, state="st-1"):
    r, data = authorize(client, state=state)
    assert r.status == 302, data
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(r.getheader("Location")).query)
    assert q["state"] == [state]
    return q["code"][0]


def token_call(client, path, method="GET", body=None, ctype=None, **params):
    """A token endpoint call (not signed); app_key and app_secret default to
    the test app's.  Returns (http status, envelope)."""
    q = {"app_key": APP_KEY, "app_secret": SECRET}
    q.update(params)
    q = {k: v for k, v in q.items() if v is not None}
    headers = {"Content-Type": ctype} if ctype else None
    if body is None:
        target = path + "?" + urllib.parse.urlencode(q)
    else:
        target = path
    r, data = client.raw(method, target, body=body, headers=headers)
    return r.status, json.loads(data)


def exchange(client, code, **kw):
    return token_call(client, TOKEN_GET, **dict(dict(auth_code=code, grant_type="authorized_code"),
                                                **kw))


def refresh(client, rt, **kw):
    return token_call(client, TOKEN_REFRESH, **dict(dict(refresh_token=rt,
                                                         grant_type="refresh_token"), **kw))


def issued(client):
    """Authorize, exchange; the token data."""
    st, env = exchange(client, auth_code(client))
    assert st == 200 and env["code"] == 0, env
    return env["data"]


@pytest.fixture
def afake(certs):
    """A fake with a redirect URL, so /open/authorize answers."""
    f = make_fake(certs, redirect_url=REDIRECT)
    yield f
    f.stop()


@pytest.fixture
def aclient(afake, certs):
    c = Client(afake, certs)
    yield c
    c.close()


def test_authorize_redirect_carries_code_and_state(fake, client):
    r, data = authorize(client)
    assert r.status == 400 and r.getheader("Content-Type").startswith("text/html")
    assert b"redirect" in data                                   # none configured yet
    fake.auth(redirect_url=REDIRECT + "?app=1")
    r, data = authorize(client, service_id="42")
    assert r.status == 400 and b"service_id" in data
    state = "a b&c=d/\u00e9%+?#"
    r, data = authorize(client, state=state)
    assert r.status == 302
    loc = r.getheader("Location")
    assert loc.startswith(REDIRECT + "?app=1&code=")
    assert loc.endswith("&state=" + urllib.parse.quote(state, safe=""))
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)
    assert q["app"] == ["1"] and q["state"] == [state] and len(q["code"][0]) >= 20
    r, data = client.raw("GET", AUTHORIZE + "?service_id=%s&state=%%FF%%00z" % SERVICE_ID)
    assert r.getheader("Location").endswith("&state=%FF%00z")  # not UTF-8: passed as bytes
    code2 = auth_code(client, state="x")
    assert code2 != q["code"][0]                                 # a fresh code each time
    r, data = authorize(client, state=None)                      # missing state: empty
    assert r.status == 302 and r.getheader("Location").endswith("&state=")
    fake.auth(approve=False)
    r, data = authorize(client)
    assert r.status == 200 and r.getheader("Location") is None and b"denied" in data
    r, data = client.raw("POST", AUTHORIZE + "?service_id=" + SERVICE_ID)
    assert r.status == 405
    assert fake.stats()["authorize_calls"] == 8
    assert [c["used"] for c in fake.tokens()["codes"]] == [False] * 4


def test_token_get_shape_and_code_single_use(afake, aclient):
    code = auth_code(aclient)
    t0 = time.time()
    st, env = exchange(aclient, code)
    t1 = time.time()
    assert st == 200 and env["code"] == 0 and env["message"] == "success" and env["request_id"]
    d = env["data"]
    assert set(d) == {"access_token", "access_token_expire_in", "refresh_token",
                      "refresh_token_expire_in", "open_id", "seller_name", "seller_base_region",
                      "user_type", "granted_scopes"}
    assert d["access_token"].startswith("ROW_") and d["refresh_token"].startswith("ROW_")
    assert d["access_token"] != d["refresh_token"]
    # absolute Unix seconds, lifetime ahead
    assert int(t0 + 604800) - 1 <= d["access_token_expire_in"] <= t1 + 604800
    assert int(t0 + 31536000) - 1 <= d["refresh_token_expire_in"] <= t1 + 31536000
    assert (d["open_id"], d["seller_name"], d["seller_base_region"], d["user_type"]) == (
        "fake-open-id-1", "Fake Seller", "US", 0)
    assert d["granted_scopes"] == ["seller.order.info", "seller.fulfillment.basic"]
    # single use
    st, env = exchange(aclient, code)
    assert st == 200 and env["code"] == faketiktok.CODE_AUTH_BAD_CODE and env["data"] is None
    assert env["message"] == "auth_code is invalid, used or expired"
    st, env = exchange(aclient, "nope")
    assert env["code"] == faketiktok.CODE_AUTH_BAD_CODE
    code = auth_code(aclient)
    for kw, want in ((dict(app_secret="wrong"), faketiktok.CODE_AUTH_BAD_APP),
                     (dict(app_key="other"), faketiktok.CODE_AUTH_BAD_APP),
                     (dict(app_secret=None), faketiktok.CODE_AUTH_BAD_APP),
                     (dict(grant_type="refresh_token"), faketiktok.CODE_AUTH_BAD_GRANT)):
        st, env = exchange(aclient, code, **kw)
        assert st == 200 and env["code"] == want, (kw, env)
    st, env = token_call(aclient, TOKEN_GET, auth_code=code)          # grant_type missing
    assert env["code"] == faketiktok.CODE_AUTH_BAD_GRANT
    st, env = token_call(aclient, TOKEN_GET, method="PUT", auth_code=code)
    assert st == 405 and env["code"] == faketiktok.CODE_METHOD
    # the refused calls did not use the code up; POST with a JSON body works
    body = json.dumps({"app_key": APP_KEY, "app_secret": SECRET, "auth_code": code,
                       "grant_type": "authorized_code"}).encode()
    st, env = token_call(aclient, TOKEN_GET, method="POST", body=body, ctype="application/json")
    assert env["code"] == 0 and env["data"]["access_token"] != d["access_token"]
    # ... and a form body
    body = urllib.parse.urlencode({"app_key": APP_KEY, "app_secret": SECRET,
                                   "auth_code": auth_code(aclient),
                                   "grant_type": "authorized_code"}).encode()
    st, env = token_call(aclient, TOKEN_GET, method="POST", body=body,
                         ctype="application/x-www-form-urlencoded")
    assert env["code"] == 0
    st, env = token_call(aclient, TOKEN_GET, method="POST", body=b"[1]", ctype="application/json")
    assert env["code"] == faketiktok.CODE_BAD_PARAMS
    s = afake.stats()
    assert s["token_get_calls"] == 12 and s["token_refresh_calls"] == 0
    assert {k: v for k, v in s["token_refused"].items() if v} == {
        "code_used": 1, "code_unknown": 1, "app": 3, "grant": 2, "method": 1, "params": 1}
    assert s["rejected"] == {"sign": 0, "token": 0, "timestamp": 0, "app_key": 0, "params": 0}
    assert s["by_path"][TOKEN_GET] == 12 and s["requests"] == 12 + s["authorize_calls"]


def test_code_expires(afake, aclient):
    afake.auth(code_lifetime=0.2)
    code = auth_code(aclient)
    time.sleep(0.3)
    st, env = exchange(aclient, code)
    assert env["code"] == faketiktok.CODE_AUTH_BAD_CODE
    assert afake.stats()["token_refused"]["code_expired"] == 1
    afake.auth(code_lifetime=5)
    assert exchange(aclient, auth_code(aclient))[1]["code"] == 0


def test_refresh_rotates_and_old_refresh_refused(afake, aclient):
    d = issued(aclient)
    t0 = time.time()
    st, env = refresh(aclient, d["refresh_token"])
    assert st == 200 and env["code"] == 0, env
    n = env["data"]
    assert set(n) == set(d) and n["open_id"] == d["open_id"]
    assert n["access_token"] != d["access_token"] and n["refresh_token"] != d["refresh_token"]
    assert n["access_token_expire_in"] >= int(t0 + 604800) - 1
    st, env = refresh(aclient, d["refresh_token"])                    # rotated away
    assert env["code"] == faketiktok.CODE_AUTH_BAD_REFRESH
    assert env["message"] == "refresh_token is invalid or expired"
    for kw, want in ((dict(grant_type="authorized_code"), faketiktok.CODE_AUTH_BAD_GRANT),
                     (dict(app_secret="x"), faketiktok.CODE_AUTH_BAD_APP),
                     (dict(refresh_token="ROW_unknown"), faketiktok.CODE_AUTH_BAD_REFRESH)):
        st, env = refresh(aclient, n["refresh_token"], **kw)
        assert env["code"] == want, (kw, env)
    # old access tokens stay valid until their own expiry
    for at in (d["access_token"], n["access_token"]):
        st, env = detail(aclient, ["1"], headers={"x-tts-access-token": at})
        assert env["code"] == 0, env
    # rotate_refresh false: the same refresh token, expiry unchanged
    afake.auth(rotate_refresh=False)
    st, env = refresh(aclient, n["refresh_token"])
    m = env["data"]
    assert (m["refresh_token"], m["refresh_token_expire_in"]) == (
        n["refresh_token"], n["refresh_token_expire_in"])
    assert refresh(aclient, n["refresh_token"])[1]["code"] == 0       # still usable
    s = afake.stats()
    assert s["token_refresh_calls"] == 7
    assert {k: v for k, v in s["token_refused"].items() if v} == {
        "refresh_rotated": 1, "refresh_unknown": 1, "grant": 1, "app": 1}
    toks = afake.tokens()
    assert [r["state"] for r in toks["refresh_tokens"]] == ["rotated", "active"]
    assert len(toks["access_tokens"]) == 4 and not any(a["revoked"] for a in toks["access_tokens"])


def test_revoke_on_refresh(afake, aclient):
    afake.auth(revoke_on_refresh=True)
    d = issued(aclient)
    other = issued(aclient)                       # another grant: not touched
    n = refresh(aclient, d["refresh_token"])[1]["data"]
    st, env = detail(aclient, ["1"], headers={"x-tts-access-token": d["access_token"]})
    assert env["code"] == faketiktok.CODE_BAD_TOKEN and env["message"] == "Access token is invalid"
    for at in (n["access_token"], other["access_token"]):
        assert detail(aclient, ["1"], headers={"x-tts-access-token": at})[1]["code"] == 0
    assert afake.stats()["rejected"]["token"] == 1


def test_issued_token_signed_detail_then_expired(certs):
    f = make_fake(certs, redirect_url=REDIRECT, access_token_lifetime=1.0)
    c = Client(f, certs)
    try:
        d = issued(c)
        hdr = {"x-tts-access-token": d["access_token"]}
        st, env = detail(c, ["576653688135258178"], headers=hdr)
        assert env["code"] == 0
        assert env["data"]["orders"][0] == faketiktok.generate_order("576653688135258178")
        assert d["access_token_expire_in"] <= time.time() + 1.0
        time.sleep(max(0.0, f.tokens()["access_tokens"][0]["expires"] - time.time()) + 0.05)
        st, env = detail(c, ["1"], headers=hdr)
        assert st == 200 and env["code"] == 105002 and env["message"] == "Access token is expired"
        st, env = detail(c, ["1"], headers={"x-tts-access-token": "ROW_never_issued"})
        assert env["code"] == 105002 and env["message"] == "Access token is invalid"
        assert detail(c, ["1"])[1]["code"] == 0               # the static token never expires
        # a refresh gives a working one again (lifetime set through the admin call)
        f.auth(access_token_lifetime=600)
        n = refresh(c, d["refresh_token"])[1]["data"]
        assert detail(c, ["1"], headers={"x-tts-access-token": n["access_token"]})[1]["code"] == 0
        # expire_access_tokens: every issued one expires now
        f.auth(expire_access_tokens=True)
        st, env = detail(c, ["1"], headers={"x-tts-access-token": n["access_token"]})
        assert env["message"] == "Access token is expired"
        assert all(a["expired"] for a in f.tokens()["access_tokens"])
        assert f.stats()["rejected"]["token"] == 3
        # expire_refresh_tokens: refresh refused as expired
        f.auth(expire_refresh_tokens=True)
        assert refresh(c, n["refresh_token"])[1]["code"] == faketiktok.CODE_AUTH_BAD_REFRESH
        assert f.stats()["token_refused"]["refresh_expired"] == 1
    finally:
        c.close()
        f.stop()


def test_shops_of_the_authorization(afake, aclient):
    shops = [{"id": "7000000000000000101", "name": "Shop A", "region": "US",
              "seller_type": "LOCAL", "cipher": "ROW_cipherA", "code": "USA1"},
             {"id": 7000000000000000102, "cipher": "ROW_cipherB"}]
    afake.auth(open_id="seller-2", seller_name="Seller Two", shops=shops)
    d = issued(aclient)
    assert (d["open_id"], d["seller_name"]) == ("seller-2", "Seller Two")
    hdr = {"x-tts-access-token": d["access_token"]}
    st, env = aclient.api("GET", SHOPS, cipher=None, headers=hdr)
    assert env["code"] == 0
    got = env["data"]["shops"]
    assert got[0] == shops[0]
    assert got[1] == {"id": "7000000000000000102", "name": "Fake Shop", "region": "US",
                      "seller_type": "LOCAL", "cipher": "ROW_cipherB", "code": "USLCFAKE01"}
    # the static token: today's one shop
    st, env = aclient.api("GET", SHOPS, cipher=None)
    assert [s["cipher"] for s in env["data"]["shops"]] == [CIPHER]
    # an issued token takes its shops' ciphers on order calls
    assert detail(aclient, ["1"], cipher="ROW_cipherB", headers=hdr)[1]["code"] == 0
    assert detail(aclient, ["1"], cipher=CIPHER, headers=hdr)[1]["code"] == 36009001
    assert detail(aclient, ["1"], cipher="ROW_cipherB")[1]["code"] == 36009001
    # a later change of the settings does not touch tokens already issued
    afake.auth(shops=[])
    assert len(aclient.api("GET", SHOPS, cipher=None, headers=hdr)[1]["data"]["shops"]) == 2
    d2 = issued(aclient)
    st, env = aclient.api("GET", SHOPS, cipher=None,
                          headers={"x-tts-access-token": d2["access_token"]})
    assert env["data"]["shops"] == []


def test_admin_revoke_over_https(afake, aclient, certs):
    cafile = os.path.join(certs, "ca.pem")
    d = issued(aclient)
    code = auth_code(aclient)                                 # not exchanged yet
    st, r = faketiktok.admin_request(afake.url, "POST", "/_fake/auth",
                                     {"open_id": "seller-9"}, cafile)
    assert st == 200 and r["ok"] is True and r["auth"]["open_id"] == "seller-9"
    other = issued(aclient)
    st, r = faketiktok.admin_request(afake.url, "POST", "/_fake/auth",
                                     {"open_id": "fake-open-id-1", "revoke": True}, cafile)
    assert st == 200
    assert refresh(aclient, d["refresh_token"])[1]["code"] == faketiktok.CODE_AUTH_BAD_REFRESH
    assert exchange(aclient, code)[1]["code"] == faketiktok.CODE_AUTH_BAD_CODE
    st, env = detail(aclient, ["1"], headers={"x-tts-access-token": d["access_token"]})
    assert env["code"] == faketiktok.CODE_BAD_TOKEN
    assert detail(aclient, ["1"], headers={"x-tts-access-token": other["access_token"]}
                  )[1]["code"] == 0                           # seller-9 keeps its tokens
    st, r = faketiktok.admin_request(afake.url, "GET", "/_fake/auth", None, cafile)
    assert st == 200 and r["auth"]["open_id"] == "fake-open-id-1"
    assert r["auth"]["redirect_url"] == REDIRECT and r["auth"]["service_id"] == SERVICE_ID
    assert [(a["open_id"], a["revoked"]) for a in r["access_tokens"]] == [
        ("fake-open-id-1", True), ("seller-9", False)]
    assert [(x["open_id"], x["state"]) for x in r["refresh_tokens"]] == [
        ("fake-open-id-1", "revoked"), ("seller-9", "active")]
    assert all(a["expires"] > time.time() for a in r["access_tokens"])
    s = afake.stats()["token_refused"]
    assert s["refresh_revoked"] == 1 and s["code_revoked"] == 1


def test_fault_on_token_refresh(afake, aclient):
    d = issued(aclient)
    afake.fault(path=TOKEN_REFRESH, http_status=503)
    st, env = refresh(aclient, d["refresh_token"])
    assert st == 503 and env["code"] == faketiktok.CODE_SERVER_ERROR
    st, env = refresh(aclient, d["refresh_token"])             # nothing happened: same token works
    assert st == 200 and env["code"] == 0
    afake.fault(path="/api/v2/token/*", drop=True)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, ssl.SSLError)):
        refresh(aclient, env["data"]["refresh_token"])
    aclient.close()
    afake.fault(path=TOKEN_REFRESH, latency_ms=200)
    t = time.monotonic()
    assert refresh(aclient, env["data"]["refresh_token"])[1]["code"] == 0
    assert time.monotonic() - t >= 0.18
    afake.fault(path=AUTHORIZE, code=36009002)
    r, data = authorize(aclient)
    assert r.status == 200 and json.loads(data)["code"] == 36009002
    s = afake.stats()
    assert s["faults_served"] == 4 and s["token_refresh_calls"] == 4


def test_admin_auth_validation(afake, certs):
    cafile = os.path.join(certs, "ca.pem")
    before = afake.auth()
    for body, words in (({"bogus": 1, "other": 2}, "bogus, other"),
                        ({"approve": "yes"}, "approve"),
                        ({"revoke": 1}, "revoke"),
                        ({"code_lifetime": 0}, "code_lifetime"),
                        ({"access_token_lifetime": -1}, "access_token_lifetime"),
                        ({"refresh_token_lifetime": True}, "refresh_token_lifetime"),
                        ({"service_id": ""}, "service_id"),
                        ({"open_id": 5}, "open_id"),
                        ({"redirect_url": "ftp://x"}, "redirect_url"),
                        ({"redirect_url": "https://a b"}, "redirect_url"),
                        ({"shops": {}}, "shops"),
                        ({"shops": [{"id": "12a", "cipher": "c"}]}, "shops[0].id"),
                        ({"shops": [{"id": "1" * 65, "cipher": "c"}]}, "shops[0].id"),
                        ({"shops": [{"id": "1"}]}, "shops[0].cipher"),
                        ({"shops": [{"id": "1", "cipher": "c", "colour": "red"}]}, "colour"),
                        ({"shops": [{"id": "1", "cipher": "c"}, {"id": "1", "cipher": "d"}]},
                         "duplicate"),
                        ({"open_id": "ok", "code_lifetime": "soon"}, "code_lifetime")):
        st, r = faketiktok.admin_request(afake.url, "POST", "/_fake/auth", body, cafile)
        assert st == 400 and words in r["error"], (body, r)
    assert afake.auth() == before                       # nothing applied, not even "ok"
    st, r = faketiktok.admin_request(afake.url, "POST", "/_fake/auth", b"[1]", cafile)
    assert st == 400
    st, r = faketiktok.admin_request(afake.url, "DELETE", "/_fake/auth", None, cafile)
    assert st == 405
    with pytest.raises(ValueError):
        afake.auth(shops=[{"id": "1", "cipher": 7}])
    # reset: tokens forgotten, settings back to the ctor's (redirect_url kept)
    c = Client(afake, certs)
    issued(c)
    afake.auth(redirect_url="", approve=False, service_id="9", code_lifetime=1)
    assert afake.auth()["redirect_url"] == ""
    st, r = faketiktok.admin_request(afake.url, "POST", "/_fake/reset", {}, cafile)
    assert st == 200 and afake.auth() == before
    assert afake.tokens() == {"codes": [], "access_tokens": [], "refresh_tokens": []}
    s = afake.stats()
    assert s["authorize_calls"] == 0 and s["token_get_calls"] == 0 and s["token_refused"]["app"] == 0
    assert auth_code(c)
    c.close()
    assert before == {"service_id": SERVICE_ID, "redirect_url": REDIRECT, "approve": True,
                      "open_id": "fake-open-id-1", "seller_name": "Fake Seller",
                      "shops": [{"id": "7495540735365777507", "name": "Fake Shop", "region": "US",
                                 "seller_type": "LOCAL", "cipher": CIPHER, "code": "USLCFAKE01"}],
                      "code_lifetime": 600.0, "access_token_lifetime": 604800.0,
                      "refresh_token_lifetime": 31536000.0, "rotate_refresh": True,
                      "revoke_on_refresh": False}
    with pytest.raises(ValueError):
        make_fake(certs, code_lifetime=0)


def test_issued_entries_are_bounded(afake, monkeypatch):
    monkeypatch.setattr(faketiktok, "AUTH_MAX_ENTRIES", 3)
    with afake._lock:
        for i in range(5):
            faketiktok._put_bounded(afake._codes, "c%d" % i, {"grant": {"open_id": "o"},
                                                             "expires": 0, "used": False,
                                                             "revoked": False})
    assert [x["code"] for x in afake.tokens()["codes"]] == ["c2", "c3", "c4"]


def test_command_line_auth_options(certs):
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "faketiktok.py"), "--port", "0",
                          "--cert", os.path.join(certs, "server.pem"),
                          "--key", os.path.join(certs, "server.key"),
                          "--app-key", APP_KEY, "--app-secret", SECRET, "--access-token", TOKEN,
                          "--shop-cipher", CIPHER, "--service-id", "123456",
                          "--redirect-url", REDIRECT, "--code-lifetime", "30",
                          "--access-token-lifetime", "2.5", "--refresh-token-lifetime", "100"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("listening "), line + p.stderr.read()

        class F(object):
            pass
        f = F()
        f.port = int(line.split()[1])
        c = Client(f, certs)
        r, data = authorize(c, service_id="123456", state="cli")
        assert r.status == 302
        code = urllib.parse.parse_qs(urllib.parse.urlsplit(r.getheader("Location")).query)["code"][0]
        t = time.time()
        st, env = exchange(c, code)
        d = env["data"]
        assert int(t + 2.5) - 1 <= d["access_token_expire_in"] <= time.time() + 2.5
        assert int(t + 100) - 1 <= d["refresh_token_expire_in"] <= time.time() + 100
        st, env = detail(c, ["1"], headers={"x-tts-access-token": d["access_token"]})
        assert env["code"] == 0
        c.close()
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()
    r = subprocess.run([sys.executable, os.path.join(HERE, "faketiktok.py"), "--cert", "x",
                        "--key", "y", "--code-lifetime", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "code_lifetime" in r.stderr
