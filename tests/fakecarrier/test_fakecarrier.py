"""Self-tests of the fake EasyPost carrier.

Run: /usr/bin/python3 -m pytest -q tests/fakecarrier
"""

import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import unicodedata

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TT = os.path.join(HERE, "..", "faketiktok")
sys.path.insert(0, HERE)
import fakecarrier  # noqa: E402
from fakecarrier import FakeCarrier, sign_webhook  # noqa: E402

KEY = "EZTKtestkey123"
ADDR_TO = {"name": "Avery Smith", "street1": "417 Montgomery St", "street2": "Floor 5",
           "city": "San Francisco", "state": "CA", "zip": "94104", "country": "US",
           "phone": "4153334445", "email": "a@example.com"}
ADDR_FROM = {"name": "Fake Shop", "street1": "179 N Harbor Dr", "city": "Redondo Beach",
             "state": "CA", "zip": "90277", "country": "US"}


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("certs"))
    subprocess.run(["sh", os.path.join(TT, "mkcerts.sh"), d], check=True)
    return d


@pytest.fixture
def fake(certs):
    f = FakeCarrier(os.path.join(certs, "server.pem"), os.path.join(certs, "server.key"),
                    api_key=KEY).start()
    yield f
    f.stop()


class Client(object):
    def __init__(self, fake, certs, key=KEY, basic=True):
        ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
        self.conn = http.client.HTTPSConnection("127.0.0.1", fake.port, context=ctx, timeout=10)
        self.key = key
        self.basic = basic

    def call(self, method, path, body=None, auth=True):
        h = {}
        if auth and self.key is not None:
            h["Authorization"] = ("Basic " + base64.b64encode((self.key + ":").encode()).decode()
                                  if self.basic else "Bearer " + self.key)
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        self.conn.request(method, "/v2" + path, body=data, headers=h)
        r = self.conn.getresponse()
        raw = r.read()
        assert r.getheader("Content-Length") == str(len(raw))
        return r.status, json.loads(raw), r

    def close(self):
        self.conn.close()


@pytest.fixture
def client(fake, certs):
    c = Client(fake, certs)
    yield c
    c.close()


def shipment(client, weight=16, ref="pkg-1", to=None):
    st, s, _ = client.call("POST", "/shipments", {"shipment": {
        "to_address": to or ADDR_TO, "from_address": ADDR_FROM, "reference": ref,
        "parcel": {"length": "10", "width": 8, "height": "4.5", "weight": weight}}})
    assert st == 201, s
    return s


class Receiver(object):
    """A tiny plain-HTTP webhook receiver on loopback."""

    def __init__(self, status=200):
        self.got = []
        self.status = status
        rec = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                rec.got.append((dict(self.headers), self.rfile.read(n)))
                self.send_response(rec.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass
        self.srv = http.server.HTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d/hooks/easypost" % self.srv.server_port
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


# --------------------------------------------------------------------------

def test_auth(fake, certs):
    for key, basic, want in ((None, True, "APIKEY.REQUIRED"), ("wrong", True, "APIKEY.INACTIVE"),
                             ("wrong", False, "APIKEY.INACTIVE")):
        c = Client(fake, certs, key=key, basic=basic)
        st, e, _ = c.call("GET", "/shipments/shp_" + "0" * 32)
        assert st == 401 and e["error"]["code"] == want and e["error"]["errors"] == []
        c.close()
    c = Client(fake, certs, basic=False)                     # Bearer works too
    st, e, _ = c.call("GET", "/shipments/shp_" + "0" * 32)
    assert st == 404 and e["error"]["code"] == "NOT_FOUND"
    st, e, _ = c.call("GET", "/nothing")
    assert st == 404 and e["error"]["code"] == "NOT_FOUND"
    st, e, r = c.call("GET", "/shipments")
    assert st == 405 and r.getheader("Allow") == "POST"
    c.close()
    assert fake.stats()["auth_failures"] == 3


def test_create_buy_get_refund(fake, client, certs):
    s = shipment(client)
    assert s["id"].startswith("shp_") and len(s["id"]) == 36 and s["object"] == "Shipment"
    assert s["mode"] == "test" and s["status"] == "unknown" and s["reference"] == "pkg-1"
    assert s["to_address"]["id"].startswith("adr_") and s["parcel"]["id"].startswith("prcl_")
    assert s["parcel"]["weight"] == 16.0 and s["created_at"].endswith("Z")
    for k in ("selected_rate", "postage_label", "tracking_code", "tracker", "refund_status"):
        assert s[k] is None
    assert s["fees"] == [] and s["messages"] == []
    got = {(r["carrier"], r["service"]) for r in s["rates"]}
    assert {("USPS", "GroundAdvantage"), ("USPS", "Priority"), ("USPS", "Express"),
            ("UPS", "Ground"), ("UPS", "2ndDayAir"), ("FedEx", "FEDEX_GROUND")} <= got
    for r in s["rates"]:
        assert r["id"].startswith("rate_") and r["object"] == "Rate" and r["shipment_id"] == s["id"]
        assert isinstance(r["rate"], str) and len(r["rate"].split(".")[1]) == 2
        assert float(r["list_rate"]) >= float(r["rate"]) and r["currency"] == "USD"
        assert isinstance(r["delivery_days"], int) and r["carrier_account_id"].startswith("ca_")
    ups = [r for r in s["rates"] if r["carrier"] == "UPS" and r["service"] == "Ground"][0]
    st, b, _ = client.call("POST", "/shipments/%s/buy" % s["id"], {"rate": {"id": ups["id"]},
                                                                   "insurance": "49.99"})
    assert st == 200, b
    assert b["selected_rate"]["id"] == ups["id"] and b["insurance"] == "49.99"
    tc = b["tracking_code"]
    assert tc.startswith("1Z") and len(tc) == 18 and tc[2:].isalnum()
    pl = b["postage_label"]
    assert pl["id"].startswith("pl_") and pl["label_file_type"] == "image/png"
    assert pl["label_size"] == "4x6" and pl["label_resolution"] == 300
    assert b["tracker"]["tracking_code"] == tc and b["tracker"]["status"] == "pre_transit"
    fee = [f for f in b["fees"] if f["type"] == "PostageFee"][0]
    assert fee["amount"] == ups["rate"] + "000" and fee["charged"] and not fee["refunded"]
    # the label is served
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    u = pl["label_url"].split("/", 3)[3]
    c = http.client.HTTPSConnection("127.0.0.1", fake.port, context=ctx, timeout=5)
    c.request("GET", "/" + u)
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "image/png"
    assert r.read().startswith(b"\x89PNG")
    c.close()
    # GET shows the stored state; a second buy is refused
    st, g, _ = client.call("GET", "/shipments/" + s["id"])
    assert g == b
    st, e, _ = client.call("POST", "/shipments/%s/buy" % s["id"], {"rate": {"id": ups["id"]}})
    assert st == 422 and e["error"]["code"] == "SHIPMENT.POSTAGE.EXISTS"
    # refund: submitted in the answer, refunded after; idempotent
    st, rf, _ = client.call("POST", "/shipments/%s/refund" % s["id"])
    assert st == 200 and rf["refund_status"] == "submitted"
    st, g, _ = client.call("GET", "/shipments/" + s["id"])
    assert g["refund_status"] == "refunded"
    st, rf2, _ = client.call("POST", "/shipments/%s/refund" % s["id"])
    assert rf2["refund_status"] == "refunded"
    st = fake.stats()
    assert st["purchases"] == 1 and st["buy_calls"] == 2 and st["shipments_created"] == 1
    assert st["purchases_by_reference"] == {"pkg-1": 1} and st["refunds"] == {s["id"]: "refunded"}
    assert [x["id"] for x in fake.shipments()] == [s["id"]]


def test_buy_and_refund_errors(fake, client):
    s = shipment(client)
    st, e, _ = client.call("POST", "/shipments/%s/refund" % s["id"])
    assert st == 422 and e["error"]["code"] == "SHIPMENT.REFUND.NOT_BOUGHT"
    other = shipment(client, ref="pkg-2")
    for body, code in (({"rate": {"id": other["rates"][0]["id"]}}, "SHIPMENT.RATE.INVALID"),
                       ({"rate": {}}, "PARAMETER.REQUIRED"), ({}, "PARAMETER.REQUIRED"),
                       ({"rate": {"id": s["rates"][0]["id"]}, "insurance": "lots"},
                        "PARAMETER.INVALID")):
        st, e, _ = client.call("POST", "/shipments/%s/buy" % s["id"], body)
        assert st == 422 and e["error"]["code"] == code, (body, e)
    st, e, _ = client.call("POST", "/shipments/%s/buy" % s["id"], b"{nope")
    assert st == 400 and e["error"]["code"] == "BAD_REQUEST"
    assert fake.stats()["purchases"] == 0
    # refusal: rejected, and a rejected refund may be tried again
    st, b, _ = client.call("POST", "/shipments/%s/buy" % s["id"], {"rate": {"id": s["rates"][0]["id"]}})
    fake.refuse_refunds(True)
    st, rf, _ = client.call("POST", "/shipments/%s/refund" % s["id"])
    assert rf["refund_status"] == "rejected"
    fake.refuse_refunds(False)
    fake.fault(refuse_refund=True)                   # a one-shot refusal; other calls pass
    st, g, _ = client.call("GET", "/shipments/" + s["id"])
    assert st == 200 and fake.stats()["faults_pending"] == 1
    st, rf, _ = client.call("POST", "/shipments/%s/refund" % s["id"])
    assert rf["refund_status"] == "rejected"
    st, rf, _ = client.call("POST", "/shipments/%s/refund" % s["id"])
    assert rf["refund_status"] == "submitted"
    assert fake.stats()["refunds"] == {s["id"]: "refunded"}


def test_shipment_validation(client):
    def create(sh):
        return client.call("POST", "/shipments", {"shipment": sh})
    base = {"to_address": ADDR_TO, "from_address": ADDR_FROM, "parcel": {"weight": 10}}
    st, e, _ = create(dict(base, to_address=dict(ADDR_TO, street1="", zip="")))
    assert st == 422 and e["error"]["code"] == "ADDRESS.VERIFY.FAILURE"
    assert {x["field"] for x in e["error"]["errors"]} == {"street1", "zip"}
    st, e, _ = create(dict(base, from_address={"city": "X"}))
    assert e["error"]["code"] == "ADDRESS.VERIFY.FAILURE"
    for parcel in ({}, {"weight": 0}, {"weight": "abc"}, {"weight": 2401}, {"weight": 5, "length": 1001},
                   {"weight": True}, {"weight": -1}):
        st, e, _ = create(dict(base, parcel=parcel))
        assert st == 422 and e["error"]["code"] == "PARCEL.INVALID", parcel
    st, e, _ = create(dict(base, reference="x" * 201))
    assert st == 422 and e["error"]["code"] == "PARAMETER.INVALID"
    st, e, _ = client.call("POST", "/shipments", {"nope": 1})
    assert st == 422 and e["error"]["code"] == "PARAMETER.REQUIRED"
    st, s, _ = create(dict(base, parcel={"weight": "2400"}))
    assert st == 201


def test_rates_deterministic_cheapest_fastest_distinct(client):
    for w, to in ((1, ADDR_TO), (40, ADDR_TO), (2400, dict(ADDR_TO, zip="10001")),
                  (8, dict(ADDR_TO, zip="90210"))):
        a, b = shipment(client, weight=w, to=to), shipment(client, weight=w, to=to)
        key = lambda s: sorted((r["carrier"], r["service"], r["rate"], r["delivery_days"])  # noqa
                               for r in s["rates"])
        assert key(a) == key(b)
        cheapest = min(a["rates"], key=lambda r: float(r["rate"]))
        fastest = min(a["rates"], key=lambda r: (r["delivery_days"], float(r["rate"])))
        assert (cheapest["carrier"], cheapest["service"]) == ("USPS", "GroundAdvantage")
        assert (fastest["carrier"], fastest["service"]) == ("USPS", "Express")
        assert len({r["rate"] for r in a["rates"]}) == len(a["rates"])
    far = shipment(client, to=dict(ADDR_TO, zip="10001"))
    near = shipment(client, to=dict(ADDR_TO, zip="90210"))
    price = lambda s: float([r for r in s["rates"] if r["service"] == "Priority"][0]["rate"])  # noqa
    assert price(far) > price(near)


def test_tracking_codes_per_carrier_and_magic_trackers(fake, client):
    s = shipment(client)
    codes = {}
    for carrier in ("USPS", "FedEx"):
        s = shipment(client)
        r = [x for x in s["rates"] if x["carrier"] == carrier][0]
        st, b, _ = client.call("POST", "/shipments/%s/buy" % s["id"], {"rate": {"id": r["id"]}})
        codes[carrier] = b
    u = codes["USPS"]["tracking_code"]
    assert u.startswith("9400") and len(u) == 22 and u.isdigit()
    f = codes["FedEx"]["tracking_code"]
    assert len(f) == 12 and f.isdigit()
    st, t, _ = client.call("POST", "/trackers", {"tracker": {"tracking_code": u, "carrier": "USPS"}})
    assert st == 200 and t["id"] == codes["USPS"]["tracker"]["id"]
    for code, status in fakecarrier.MAGIC_TRACKING_CODES.items():
        st, t, _ = client.call("POST", "/trackers", {"tracker": {"tracking_code": code,
                                                                 "carrier": "USPS"}})
        assert st == 201 and t["status"] == status and t["id"].startswith("trk_")
        assert t["object"] == "Tracker" and t["tracking_code"] == code
        if status != "unknown":
            assert t["tracking_details"][-1]["status"] == status
        st, g, _ = client.call("GET", "/trackers/" + t["id"])
        assert g == t
    assert t["tracking_details"] == []                       # EZ7000000007: unknown
    st, t, _ = client.call("POST", "/trackers", {"tracker": {"tracking_code": "EZ4000000004"}})
    assert st == 200 and t["signed_by"] == "John Tester"
    st, e, _ = client.call("POST", "/trackers", {"tracker": {}})
    assert st == 422 and e["error"]["code"] == "PARAMETER.REQUIRED"


def test_faults(fake, client):
    fake.fault(http_status=429, retry_after=3, path="/shipments", method="POST")
    fake.fault(http_status=503, path="/trackers")
    st, e, r = client.call("POST", "/shipments", {})
    assert st == 429 and e["error"]["code"] == "RATE_LIMITED" and r.getheader("Retry-After") == "3"
    st, e, _ = client.call("POST", "/trackers/", {})     # prefix match
    assert st == 503 and e["error"]["code"] == "INTERNAL_SERVER_ERROR"
    s = shipment(client)
    # after: the label is bought but the answer is lost
    fake.fault(path="/shipments/%s/buy" % s["id"], after=True, drop=True)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, ssl.SSLError)):
        client.call("POST", "/shipments/%s/buy" % s["id"], {"rate": {"id": s["rates"][0]["id"]}})
    client.close()
    st, g, _ = client.call("GET", "/shipments/" + s["id"])
    assert g["postage_label"] is not None and g["tracking_code"]
    st, e, _ = client.call("POST", "/shipments/%s/buy" % s["id"], {"rate": {"id": s["rates"][0]["id"]}})
    assert e["error"]["code"] == "SHIPMENT.POSTAGE.EXISTS"
    fake.fault(after=True, http_status=500, count=2)
    st, e, _ = client.call("POST", "/shipments/%s/refund" % s["id"])
    assert st == 500
    st, g, _ = client.call("GET", "/shipments/" + s["id"])
    assert st == 500
    st, g, _ = client.call("GET", "/shipments/" + s["id"])
    assert g["refund_status"] == "refunded"
    fake.fault(latency_ms=300)
    t0 = time.monotonic()
    assert client.call("GET", "/shipments/" + s["id"])[0] == 200
    assert time.monotonic() - t0 >= 0.28
    st = fake.stats()
    assert st["purchases"] == 1 and st["faults_served"] == 6 and st["faults_pending"] == 0
    for bad in ({"after": True}, {"http_status": 200}, {"bogus": 1}, {"path": "shipments"},
                {"refuse_refund": "yes"}, {"count": 0}):
        with pytest.raises(ValueError):
            fake.fault(**bad)
    fake.fault(http_status=500, count=-1)
    assert client.call("GET", "/shipments/" + s["id"])[0] == 500
    fake.reset()
    assert client.call("GET", "/shipments/" + s["id"])[0] == 404


def verify(secret, headers, body):
    want = "hmac-sha256-hex=" + hmac.new(unicodedata.normalize("NFKD", secret).encode(), body,
                                         hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("X-Hmac-Signature", ""), want)


def test_webhook_delivered_signed_and_resent(fake, client, certs):
    rec = Receiver()
    try:
        secret = "s\u00e9cr\u00e8t-\ufb01"                 # NFKD matters for these
        fake.set_webhook(rec.url, secret)
        s = shipment(client)
        st, b, _ = client.call("POST", "/shipments/%s/buy" % s["id"], {"rate": {"id": s["rates"][0]["id"]}})
        tc = b["tracking_code"]
        cafile = os.path.join(certs, "ca.pem")
        st, r = fakecarrier.admin_request(fake.url, "POST", "/_fake/track",
                                          {"tracking_code": tc, "status": "in_transit",
                                           "message": "Departed facility"}, cafile)
        assert st == 200 and r["delivered"] and r["status"] == 200 and r["body"] == "ok", r
        headers, body = rec.got[-1]
        assert verify(secret, headers, body)
        assert headers["X-Hmac-Signature"] == sign_webhook(secret, body)
        assert headers["Content-Type"] == "application/json"
        assert headers["User-Agent"].startswith("EasyPost")
        ev = json.loads(body)
        assert ev["id"] == r["event_id"] and ev["id"].startswith("evt_") and ev["object"] == "Event"
        assert ev["description"] == "tracker.updated" and ev["mode"] == "test"
        assert ev["previous_attributes"] == {"status": "pre_transit"}
        assert ev["pending_urls"] == [rec.url] and ev["completed_urls"] == []
        res = ev["result"]
        assert res["object"] == "Tracker" and res["status"] == "in_transit"
        d = res["tracking_details"][-1]
        assert d["object"] == "TrackingDetail" and d["message"] == "Departed facility"
        assert d["status"] == "in_transit" and "tracking_location" in d
        st, g, _ = client.call("GET", "/trackers/" + res["id"])
        assert g["status"] == "in_transit"
        # tampered body: the signature no longer verifies
        assert not verify(secret, headers, body.replace(b"in_transit", b"delivered"))
        # replay: the same bytes again
        st, r2 = fakecarrier.admin_request(fake.url, "POST", "/_fake/resend",
                                           {"event_id": r["event_id"]}, cafile)
        assert st == 200 and r2["delivered"] and rec.got[-1][1] == body
        # a receiver answering 500 is reported
        rec.status = 500
        st, r3 = fakecarrier.admin_request(fake.url, "POST", "/_fake/track",
                                           {"tracking_code": tc, "status": "delivered"}, cafile)
        assert r3["delivered"] is False and r3["status"] == 500
        rec.status = 200
        # refund.successful is sent in the background
        client.call("POST", "/shipments/%s/refund" % s["id"])
        for _ in range(250):
            if len(fake.stats()["webhooks"]) == 4:
                break
            time.sleep(0.02)
        assert json.loads(rec.got[-1][1])["description"] == "refund.successful"
        wh = fake.stats()["webhooks"]
        assert [w["description"] for w in wh] == ["tracker.updated"] * 3 + ["refund.successful"]
        assert [w["status"] for w in wh] == [200, 200, 500, 200]
        # admin errors
        st, r = fakecarrier.admin_request(fake.url, "POST", "/_fake/track",
                                          {"tracking_code": "nope", "status": "delivered"}, cafile)
        assert st == 404
        st, r = fakecarrier.admin_request(fake.url, "POST", "/_fake/track",
                                          {"tracking_code": tc, "status": "cancelled"}, cafile)
        assert st == 400 and "canceled" in r["error"]
        st, r = fakecarrier.admin_request(fake.url, "POST", "/_fake/webhook",
                                          {"url": "ftp://x"}, cafile)
        assert st == 400
    finally:
        rec.close()


def test_webhook_receiver_may_call_back(fake, certs):
    """The admin call delivers from a worker thread: a receiver that calls the
    fake while handling the event does not deadlock it."""
    cafile = os.path.join(certs, "ca.pem")
    seen = []

    class CallingBack(Receiver):
        pass
    rec = CallingBack()
    orig = rec.srv.RequestHandlerClass.do_POST

    def do_post(handler):
        st, t = fakecarrier.admin_request(fake.url, "GET", "/_fake/stats", None, cafile, timeout=5)
        seen.append(st)
        orig(handler)
    rec.srv.RequestHandlerClass.do_POST = do_post
    try:
        fake.set_webhook(rec.url, "k")
        c = Client(fake, certs)
        c.call("POST", "/trackers", {"tracker": {"tracking_code": "EZ1000000001"}})
        c.close()
        st, r = fakecarrier.admin_request(fake.url, "POST", "/_fake/track",
                                          {"tracking_code": "EZ1000000001", "status": "in_transit"},
                                          cafile)
        assert r["delivered"] and seen == [200]
    finally:
        rec.close()


def test_https_webhook_verified_with_cafile(certs):
    """An https:// receiver is verified with cafile_for_webhooks."""
    cert, key = os.path.join(certs, "server.pem"), os.path.join(certs, "server.key")
    rec = Receiver()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    rec.srv.socket = ctx.wrap_socket(rec.srv.socket, server_side=True)
    url = rec.url.replace("http://", "https://")
    try:
        with FakeCarrier(cert, key, api_key=KEY, webhook_url=url, webhook_secret="x",
                         cafile_for_webhooks=os.path.join(certs, "ca.pem")) as f:
            c = Client(f, certs)
            c.call("POST", "/trackers", {"tracker": {"tracking_code": "EZ2000000002"}})
            c.close()
            r = f.track("EZ2000000002", "out_for_delivery")
            assert r["delivered"] and r["status"] == 200
        with FakeCarrier(cert, key, api_key=KEY, webhook_url=url) as f:   # system CAs: refused
            c = Client(f, certs)
            c.call("POST", "/trackers", {"tracker": {"tracking_code": "EZ2000000002"}})
            c.close()
            r = f.track("EZ2000000002", "delivered")
            assert not r["delivered"] and "SSL" in r["error"]
    finally:
        rec.close()


def test_admin_endpoints_and_limits(fake, client, certs):
    cafile = os.path.join(certs, "ca.pem")
    shipment(client)
    st, r = fakecarrier.admin_request(fake.url, "GET", "/_fake/shipments", None, cafile)
    assert st == 200 and len(r["shipments"]) == 1
    st, r = fakecarrier.admin_request(fake.url, "POST", "/_fake/faults", {"http_status": 502}, cafile)
    assert st == 200 and r["queued"] == 1
    st, r = fakecarrier.admin_request(fake.url, "POST", "/_fake/refuse_refunds", {"on": True}, cafile)
    assert st == 200 and fake.stats()["refuse_refunds"] is True
    st, r = fakecarrier.admin_request(fake.url, "GET", "/_fake/stats", None, cafile)
    assert st == 200 and r["shipments_created"] == 1 and r["faults_pending"] == 1
    st, r = fakecarrier.admin_request(fake.url, "POST", "/_fake/reset", {}, cafile)
    st, r = fakecarrier.admin_request(fake.url, "GET", "/_fake/stats", None, cafile)
    assert r["shipments_created"] == 0 and r["faults_pending"] == 0 and not r["refuse_refunds"]
    st, r = fakecarrier.admin_request(fake.url, "GET", "/_fake/track", None, cafile)
    assert st == 405
    # bodies over 1 MiB are refused
    ctx = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as t:
            t.sendall(b"POST /v2/shipments HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                      % (1024 * 1024 + 1))
            data = b""
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = t.recv(65536)
                if not chunk:
                    break
                data += chunk
    assert data.startswith(b"HTTP/1.1 413 ")
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "PAYLOAD.TOO_LARGE"
    client.close()
    # keep-alive: many calls, one connection
    n = fake.stats()["connections"]
    c = Client(fake, certs)
    for _ in range(5):
        c.call("POST", "/trackers", {"tracker": {"tracking_code": "EZ1000000001"}})
    c.close()
    assert fake.stats()["connections"] == n + 1


def test_command_line(certs):
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "fakecarrier.py"), "--port", "0",
                          "--cert", os.path.join(certs, "server.pem"),
                          "--key", os.path.join(certs, "server.key"), "--api-key", KEY],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("listening ")
        port = int(line.split()[1])
        ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
        c.request("GET", "/v2/trackers/trk_" + "0" * 32, headers={"Authorization": "Bearer " + KEY})
        r = c.getresponse()
        assert r.status == 404 and json.loads(r.read())["error"]["code"] == "NOT_FOUND"
        c.close()
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
