#!/usr/bin/python3
"""faketiktok - a fake TikTok Shop Partner API (202309) server for tests and benchmarks.

Speaks real HTTPS (TLS 1.2+, HTTP/1.1 keep-alive, Content-Length on every
answer) and checks every API request the way TikTok does: app_key, timestamp
(+-300 s), sign (HMAC-SHA256 over secret + path + sorted query + body +
secret), the x-tts-access-token header and, when configured, shop_cipher.

Command line:
    faketiktok.py --port P --cert server.pem --key server.key
                  [--app-key K --app-secret S --access-token T --shop-cipher C]
                  [--threads N] [--unknown-ids generate|missing] ...
prints "listening PORT" on stdout once bound; exits 0 on SIGTERM/SIGINT.

In-process:
    from faketiktok import FakeTikTok
    fake = FakeTikTok(cert, key).start()      # background thread
    fake.url, fake.port, fake.seed([...]), fake.fault(code=36009002),
    fake.stats(), fake.reset(), fake.stop()

API endpoints, admin endpoints (/_fake/...) and error codes: see README.
Python standard library only (Debian's /usr/bin/python3).
"""

import argparse
import asyncio
import base64
import bisect
import calendar
import collections
import hashlib
import hmac
import http
import itertools
import json
import random
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse

__all__ = ["FakeTikTok", "sign_request", "sign_webhook", "signed_query",
           "signed_target", "generate_order", "admin_request",
           "CODE_OK", "CODE_BAD_SIGN", "CODE_BAD_TIMESTAMP", "CODE_BAD_APP_KEY",
           "CODE_BAD_TOKEN", "CODE_BAD_PARAMS", "CODE_THROTTLED", "CODE_BAD_IDS",
           "CODE_SERVER_ERROR", "CODE_NOT_FOUND", "CODE_METHOD"]

# ---------------------------------------------------------------------------
# Error codes (documented in README)
CODE_OK = 0
CODE_BAD_SIGN = 106001          # sign missing or wrong
CODE_BAD_TIMESTAMP = 106002     # timestamp missing, not an integer, or > 300 s off
CODE_BAD_APP_KEY = 106003       # app_key missing or not the configured one
CODE_BAD_TOKEN = 105002         # x-tts-access-token missing, wrong or expired
CODE_BAD_PARAMS = 36009001      # bad/missing query parameter or body (incl. shop_cipher)
CODE_THROTTLED = 36009002       # rate limited (only injected by faults)
CODE_BAD_IDS = 36009003         # detail call: ids missing, empty element or > 50
CODE_SERVER_ERROR = 36009500    # default code of injected 5xx answers
CODE_NOT_FOUND = 36009404       # unknown API path (HTTP 404)
CODE_METHOD = 36009405          # known path, wrong method (HTTP 405)

MESSAGES = {
    CODE_OK: "Success",
    CODE_BAD_SIGN: "Invalid credentials: sign",
    CODE_BAD_TIMESTAMP: "Invalid credentials: timestamp expired",
    CODE_BAD_APP_KEY: "Invalid credentials: app_key",
    CODE_BAD_TOKEN: "Access token is invalid or expired",
    CODE_BAD_PARAMS: "Invalid params",
    CODE_THROTTLED: "Too many requests",
    CODE_BAD_IDS: "invalid ids",
    CODE_SERVER_ERROR: "Internal server error",
    CODE_NOT_FOUND: "Not found",
    CODE_METHOD: "Method not allowed",
}

TIMESTAMP_WINDOW = 300          # seconds either side of now
MAX_IDS = 50
MAX_PAGE_SIZE = 100
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024
GENERATED_CACHE_MAX = 20000

DETAIL_PATH = "/order/202309/orders"
SEARCH_PATH = "/order/202309/orders/search"
SHOPS_PATH = "/authorization/202309/shops"

DEFAULTS = dict(app_key="fakeappkey", app_secret="fakeappsecret",
                access_token="fakeaccesstoken", shop_cipher="")


# ---------------------------------------------------------------------------
# Signing

def _b(x):
    if x is None:
        return b""
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    return str(x).encode("utf-8")


def sign_request(secret, path, params, body=b""):
    """TikTok Shop API sign: lowercase hex HMAC-SHA256(key=secret,
    msg=secret + path + concat(key + value for keys sorted, except sign and
    access_token) + body + secret).  params: dict or iterable of (key, value)
    pairs with DECODED values; body: bytes/str/None (the raw request body)."""
    items = params.items() if hasattr(params, "items") else params
    parts = [_b(secret), _b(path)]
    for k, v in sorted((str(k), "" if v is None else str(v)) for k, v in items):
        if k in ("sign", "access_token"):
            continue
        parts.append(_b(k))
        parts.append(_b(v))
    parts.append(_b(body))
    parts.append(_b(secret))
    return hmac.new(_b(secret), b"".join(parts), hashlib.sha256).hexdigest()


def sign_webhook(app_key, secret, body):
    """Webhook Authorization header: lowercase hex HMAC-SHA256(key=secret,
    msg=app_key + raw body)."""
    return hmac.new(_b(secret), _b(app_key) + _b(body), hashlib.sha256).hexdigest()


def signed_query(app_key, secret, path, params=None, body=b"", timestamp=None,
                 shop_cipher=None):
    """Return a dict with params + app_key, timestamp, shop_cipher (if given)
    and sign, ready for urlencode."""
    q = dict(params or {})
    q["app_key"] = app_key
    q["timestamp"] = str(int(time.time()) if timestamp is None else int(timestamp))
    if shop_cipher:
        q["shop_cipher"] = shop_cipher
    q.pop("sign", None)
    q["sign"] = sign_request(secret, path, q, body)
    return q


def signed_target(app_key, secret, path, params=None, body=b"", timestamp=None,
                  shop_cipher=None):
    """Request target "path?query" with a valid sign (commas kept literal)."""
    q = signed_query(app_key, secret, path, params, body, timestamp, shop_cipher)
    return path + "?" + urllib.parse.urlencode(q, safe=",")


# ---------------------------------------------------------------------------
# Deterministic order generation

_BASE_TIME = calendar.timegm((2026, 10, 1, 0, 0, 0))    # generated create_time >= this
_SPAN = 30 * 86400

_FIRST = ["Avery", "Jordan", "Taylor", "Morgan", "Riley", "Casey", "Jamie", "Quinn",
          "Harper", "Rowan", "Emerson", "Skyler", "Dakota", "Reese", "Finley", "Sage"]
_LAST = ["Smith", "Garcia", "Chen", "Okafor", "Novak", "Patel", "Kim", "Rossi",
         "Muller", "Silva", "Nguyen", "Cohen", "Larsen", "Haddad", "Ito", "Brown"]
_STREETS = ["Main St", "Oak Ave", "Maple Dr", "Cedar Ln", "Pine St", "Elm St",
            "Lakeview Rd", "Sunset Blvd", "Hillcrest Ave", "River Rd"]
# (state, state code, county, city, zip prefix)
_PLACES = [("California", "CA", "Los Angeles County", "Los Angeles", "900"),
           ("New York", "NY", "Kings County", "Brooklyn", "112"),
           ("Texas", "TX", "Travis County", "Austin", "787"),
           ("Washington", "WA", "King County", "Seattle", "981"),
           ("Illinois", "IL", "Cook County", "Chicago", "606"),
           ("Florida", "FL", "Miami-Dade County", "Miami", "331"),
           ("Colorado", "CO", "Denver County", "Denver", "802"),
           ("Georgia", "GA", "Fulton County", "Atlanta", "303")]
_PRODUCTS = ["Glow Serum", "Matte Lipstick", "Hydra Cream", "Silk Scrunchie", "Phone Grip",
             "LED Ring Light", "Yoga Mat", "Water Bottle", "Hair Clip Set", "Tote Bag",
             "Lash Curler", "Face Mask Pack", "Nail Kit", "Mini Fan", "Sticker Pack",
             "Charging Cable"]
_VARIANTS = ["Red", "Blue", "Black", "White", "Pink", "Green", "S", "M", "L", "XL"]


def _make_catalog():
    rng = random.Random("faketiktok-catalog")
    cat = []
    for i in range(32):
        pname = _PRODUCTS[i % len(_PRODUCTS)]
        product_id = str(1729000000000000000 + (i // 2) * 7919)
        sku_id = str(1729500000000000000 + i * 104729)
        sale = rng.randrange(299, 4999)                  # cents
        orig = sale + rng.choice([0, 0, 100, 200, 500])
        cat.append(dict(product_id=product_id, product_name=pname,
                        sku_id=sku_id, sku_name=_VARIANTS[i % len(_VARIANTS)],
                        seller_sku="SKU-%03d" % i, sale=sale, orig=orig))
    return cat


CATALOG = _make_catalog()


def _money(cents):
    return "%d.%02d" % divmod(int(cents), 100)


def _cents(s):
    """Parse a decimal money string ("12.3", "12.30", "12") to cents."""
    s = str(s).strip()
    neg = s.startswith("-")
    if neg:
        s = s[1:]
    whole, _, frac = s.partition(".")
    frac = (frac + "00")[:2]
    v = int(whole or "0") * 100 + int(frac or "0")
    return -v if neg else v


def _line_item(order_id, n, sku, package_id, status):
    return {
        "id": "%s%03d" % (order_id, n) if order_id.isdigit() else "%s-%d" % (order_id, n),
        "product_id": sku["product_id"],
        "product_name": sku["product_name"],
        "sku_id": sku["sku_id"],
        "sku_name": sku["sku_name"],
        "sku_image": "https://p16-oec-va.ibyteimg.com/fake/%s.jpeg" % sku["sku_id"],
        "seller_sku": sku["seller_sku"],
        "sku_type": "NORMAL",
        "sale_price": _money(sku["sale"]),
        "original_price": _money(sku["orig"]),
        "seller_discount": _money(sku["orig"] - sku["sale"]),
        "platform_discount": "0.00",
        "currency": "USD",
        "package_id": package_id,
        "package_status": "TO_FULFILL",
        "display_status": status,
        "is_gift": False,
        "tracking_number": "",
        "shipping_provider_id": "",
        "shipping_provider_name": "",
    }


def _payment(lines, shipping_cents, tax_cents, currency="USD"):
    sub = sum(_cents(li.get("sale_price", "0")) for li in lines)
    orig = sum(_cents(li.get("original_price", li.get("sale_price", "0"))) for li in lines)
    return {
        "currency": currency,
        "sub_total": _money(sub),
        "shipping_fee": _money(shipping_cents),
        "seller_discount": _money(orig - sub),
        "platform_discount": "0.00",
        "original_total_product_price": _money(orig),
        "original_shipping_fee": _money(shipping_cents),
        "shipping_fee_seller_discount": "0.00",
        "shipping_fee_platform_discount": "0.00",
        "tax": _money(tax_cents),
        "product_tax": _money(tax_cents),
        "shipping_fee_tax": "0.00",
        "total_amount": _money(sub + shipping_cents + tax_cents),
    }


def generate_order(order_id):
    """The order the fake returns for an id it was not seeded with.
    Deterministic: the same id always gives the same order (seed = id string).
    1-4 distinct SKUs with 1-3 unit lines each (one line = one unit), payment
    amounts as decimal strings with sub_total = sum(sale_price) and
    total_amount = sub_total + shipping_fee + tax."""
    order_id = str(order_id)
    rng = random.Random("order:" + order_id)
    status = "AWAITING_SHIPMENT"
    create = _BASE_TIME + rng.randrange(_SPAN)
    paid = create + rng.randrange(5, 600)
    update = paid + rng.randrange(1, 3600)
    package_id = str(1150000000000000000 + rng.randrange(10 ** 17))
    skus = rng.sample(CATALOG, rng.randint(1, 4))
    lines = []
    for sku in skus:
        for _ in range(rng.randint(1, 3)):
            lines.append(sku)
    rng.shuffle(lines)          # same-SKU lines are not necessarily adjacent
    line_items = [_line_item(order_id, i + 1, sku, package_id, status)
                  for i, sku in enumerate(lines)]
    shipping = rng.choice([0, 0, 299, 499, 599])
    sub = sum(sku["sale"] for sku in lines)
    tax = (sub * rng.choice([0, 600, 725, 875, 1025]) + 5000) // 10000   # basis points
    state, code, county, city, zipp = rng.choice(_PLACES)
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    street = "%d %s" % (rng.randint(1, 9999), rng.choice(_STREETS))
    unit = rng.choice(["", "", "Apt %d" % rng.randint(1, 40)])
    postal = zipp + "%02d" % rng.randrange(100)
    full = ", ".join(x for x in (street, unit, city, county, state, "United States") if x)
    user = str(7490000000000000000 + rng.randrange(10 ** 17))
    return {
        "id": order_id,
        "status": status,
        "user_id": user,
        "buyer_email": "v%s@scs.tiktokw.us" % hashlib.sha1(order_id.encode()).hexdigest()[:16],
        "buyer_message": "",
        "create_time": create,
        "update_time": update,
        "paid_time": paid,
        "rts_sla_time": paid + 3 * 86400,
        "tts_sla_time": paid + 4 * 86400,
        "shipping_due_time": paid + 3 * 86400,
        "collection_due_time": paid + 5 * 86400,
        "delivery_sla_time": paid + 10 * 86400,
        "delivery_due_time": paid + 10 * 86400,
        "cancel_order_sla_time": create + 3600,
        "is_on_hold_order": False,
        "is_buyer_request_cancel": False,
        "is_cod": False,
        "is_sample_order": False,
        "is_replacement_order": False,
        "order_type": "NORMAL",
        "commerce_platform": "TIKTOK_SHOP",
        "fulfillment_type": "FULFILLMENT_BY_SELLER",
        "shipping_type": "TIKTOK",
        "delivery_type": "HOME_DELIVERY",
        "delivery_option_id": "7091146663229654785",
        "delivery_option_name": "Standard shipping",
        "shipping_provider": "",
        "shipping_provider_id": "",
        "tracking_number": "",
        "payment_method_name": rng.choice(["Credit card", "PayPal", "Apple Pay"]),
        "warehouse_id": "7068517275539719942",
        "packages": [{"id": package_id}],
        "payment": _payment(line_items, shipping, tax),
        "recipient_address": {
            "name": "%s %s" % (first, last),
            "first_name": first,
            "last_name": last,
            "phone_number": "(+1)555%07d" % rng.randrange(10 ** 7),
            "address_detail": unit,
            "address_line1": street,
            "address_line2": unit,
            "address_line3": "",
            "address_line4": "",
            "full_address": full,
            "postal_code": postal,
            "region_code": "US",
            "district_info": [
                {"address_level": "L0", "address_level_name": "Country", "address_name": "United States"},
                {"address_level": "L1", "address_level_name": "State", "address_name": state},
                {"address_level": "L2", "address_level_name": "County", "address_name": county},
                {"address_level": "L3", "address_level_name": "City", "address_name": city},
            ],
        },
        "line_items": line_items,
    }


_TIME_FIELDS = ("create_time", "update_time", "paid_time", "rts_sla_time", "tts_sla_time",
                "shipping_due_time", "collection_due_time", "delivery_sla_time",
                "delivery_due_time", "cancel_order_sla_time")


def complete_order(partial):
    """A seeded order: generated defaults for the id, overridden field by
    field by what was given.  Given line_items are completed line by line
    (catalog data for known sku_ids); when line_items are given without
    payment, payment is recomputed from them so the amounts still add up; a
    given status without line_items also becomes the lines' display_status."""
    if not isinstance(partial, dict):
        raise ValueError("order must be an object")
    oid = partial.get("id")
    if not isinstance(oid, (str, int)) or isinstance(oid, bool) or str(oid) == "":
        raise ValueError("order needs a non-empty string id")
    oid = str(oid)
    order = generate_order(oid)
    gen_lines = order["line_items"]
    ut = partial.get("update_time")
    if (isinstance(ut, int) and not isinstance(ut, bool)
            and not any(k in partial for k in _TIME_FIELDS if k != "update_time")):
        # keep the generated time line consistent around the given update_time
        delta = ut - order["update_time"]
        for k in _TIME_FIELDS:
            order[k] += delta
    for k, v in partial.items():
        order[k] = v
    order["id"] = oid
    for k in ("create_time", "update_time", "paid_time"):
        if not isinstance(order.get(k), int) or isinstance(order.get(k), bool):
            raise ValueError("%s must be an integer (unix seconds)" % k)
    status = order.get("status")
    if not isinstance(status, str) or not status:
        raise ValueError("status must be a non-empty string")
    if "line_items" in partial:
        if not isinstance(partial["line_items"], list):
            raise ValueError("line_items must be a list")
        by_sku = {c["sku_id"]: c for c in CATALOG}
        pkg = order["packages"][0]["id"] if order.get("packages") else ""
        lines = []
        for i, li in enumerate(partial["line_items"]):
            if not isinstance(li, dict):
                raise ValueError("line_items[%d] must be an object" % i)
            sku = by_sku.get(str(li.get("sku_id")), CATALOG[i % len(CATALOG)])
            base = _line_item(oid, i + 1, sku, pkg, status)
            if "sku_id" in li and str(li["sku_id"]) not in by_sku:
                for k in ("product_id", "product_name", "sku_name", "seller_sku", "sku_image"):
                    base[k] = ""
            if "sale_price" in li and "original_price" not in li:
                base["original_price"] = li["sale_price"]
                base["seller_discount"] = "0.00"
            base.update(li)
            lines.append(base)
        order["line_items"] = lines
        if "payment" not in partial:
            gp = generate_order(oid)["payment"]
            order["payment"] = _payment(lines, _cents(gp["shipping_fee"]), _cents(gp["tax"]),
                                        gp["currency"])
    elif "status" in partial:
        order["line_items"] = [dict(li, display_status=status) for li in gen_lines]
    return order


def _encode(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# ---------------------------------------------------------------------------
# HTTP plumbing

class _HTTPError(Exception):
    def __init__(self, status, msg):
        Exception.__init__(self, msg)
        self.status = status


class _Request(object):
    __slots__ = ("method", "target", "path", "query", "version", "headers", "body", "keep_alive")


_REASONS = {s.value: s.phrase for s in http.HTTPStatus}


class _Response(object):
    __slots__ = ("status", "body", "ctype", "headers", "close", "drop", "truncate", "delay", "then")

    def __init__(self, status=200, body=b"", ctype="application/json", headers=None):
        self.status = status
        self.body = body
        self.ctype = ctype
        self.headers = headers
        self.close = False
        self.drop = False
        self.truncate = False
        self.delay = 0.0
        self.then = None        # callable returning the real response after delay


_date_cache = [0, b""]


def _http_date():
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode()
    return _date_cache[1]


class _Conn(asyncio.Protocol):
    """One HTTP/1.1 connection: sequential request processing (pipelining
    answered in order), keep-alive, Content-Length or chunked request bodies."""

    def __init__(self, srv, lc):
        self.srv = srv
        self.lc = lc
        self.buf = bytearray()
        self.transport = None
        self.busy = False
        self.closed = False
        self.paused = False
        self.task = None
        self.nreq = 0
        self.sent_continue = False
        self.last = time.monotonic()

    # asyncio callbacks
    def connection_made(self, transport):
        self.transport = transport
        self.lc.conns.add(self)
        self.srv._count_connection()

    def connection_lost(self, exc):
        self.closed = True
        self.lc.conns.discard(self)
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data):
        self.last = time.monotonic()
        self.buf += data
        if not self.busy:
            self._process()
        if not self.closed and len(self.buf) > MAX_BODY_BYTES + MAX_HEADER_BYTES and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def eof_received(self):
        return False    # close

    # parsing
    def _parse(self):
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEADER_BYTES:
                raise _HTTPError(431, "request header too large")
            # tolerate leading empty lines (RFC 9112 2.2)
            return None
        if end > MAX_HEADER_BYTES:
            raise _HTTPError(431, "request header too large")
        head = bytes(buf[:end]).decode("latin-1")
        lines = head.split("\r\n")
        while lines and lines[0] == "":
            lines.pop(0)
        if not lines:
            del buf[:end + 4]
            return self._parse()
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _HTTPError(400, "bad request line")
        method, target, version = parts
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _HTTPError(400, "bad header line")
            name = name.lower()
            value = value.strip()
            if name in headers:
                headers[name] = headers[name] + ", " + value
            else:
                headers[name] = value
        start = end + 4
        te = headers.get("transfer-encoding")
        if te is not None:
            if te.lower() != "chunked":
                raise _HTTPError(501, "unsupported transfer-encoding")
            body, consumed = self._dechunk(start)
            if body is None:
                self._maybe_continue(headers, version)
                return None
            del buf[:consumed]
        else:
            cl = headers.get("content-length", "0")
            if not cl.isdigit():
                raise _HTTPError(400, "bad content-length")
            cl = int(cl)
            if cl > MAX_BODY_BYTES:
                raise _HTTPError(413, "body too large")
            if len(buf) - start < cl:
                self._maybe_continue(headers, version)
                return None
            body = bytes(buf[start:start + cl])
            del buf[:start + cl]
        self.sent_continue = False
        req = _Request()
        req.method = method
        req.target = target
        if target.startswith("http://") or target.startswith("https://"):
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        path, _, query = target.partition("?")
        req.path = path
        req.query = query
        req.version = version
        req.headers = headers
        req.body = body
        conn = headers.get("connection", "").lower()
        if version == "HTTP/1.1":
            req.keep_alive = "close" not in conn
        else:
            req.keep_alive = "keep-alive" in conn
        return req

    def _dechunk(self, pos):
        buf = self.buf
        out = []
        total = 0
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None, 0
            size_s = bytes(buf[pos:eol]).split(b";")[0].strip()
            try:
                size = int(size_s, 16)
            except ValueError:
                raise _HTTPError(400, "bad chunk size")
            pos = eol + 2
            if size == 0:
                # trailers until empty line
                while True:
                    eol = buf.find(b"\r\n", pos)
                    if eol < 0:
                        return None, 0
                    if eol == pos:
                        return b"".join(out), eol + 2
                    pos = eol + 2
            total += size
            if total > MAX_BODY_BYTES:
                raise _HTTPError(413, "body too large")
            if len(buf) < pos + size + 2:
                return None, 0
            out.append(bytes(buf[pos:pos + size]))
            pos += size + 2

    def _maybe_continue(self, headers, version):
        if (not self.sent_continue and version == "HTTP/1.1"
                and headers.get("expect", "").lower() == "100-continue"):
            self.sent_continue = True
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    # processing
    def _process(self):
        while not self.closed and not self.busy and self.buf:
            try:
                req = self._parse()
            except _HTTPError as e:
                self._write(self.srv._plain_error(e.status, str(e)), False)
                return
            if req is None:
                break
            self.nreq += 1
            keep = req.keep_alive
            mr = self.srv.max_requests_per_conn
            if mr and self.nreq >= mr:
                keep = False
            try:
                resp = self.srv._handle(req)
            except Exception as e:      # a bug in the fake: answer 500, keep going
                self.srv._log("internal error: %r" % (e,))
                resp = self.srv._plain_error(500, "fake internal error: %r" % (e,))
            if resp.delay > 0 or resp.then is not None:
                self.busy = True
                self.task = asyncio.ensure_future(self._delayed(resp, keep))
                return
            self._write(resp, keep)
        if self.paused and not self.closed and len(self.buf) <= MAX_BODY_BYTES:
            self.paused = False
            self.transport.resume_reading()

    async def _delayed(self, resp, keep):
        try:
            if resp.delay > 0:
                await asyncio.sleep(resp.delay)
            if resp.then is not None:
                resp = resp.then()
        except asyncio.CancelledError:
            return
        self.task = None
        self.busy = False
        if self.closed:
            return
        self._write(resp, keep)
        self._process()

    def _write(self, resp, keep):
        if self.closed:
            return
        if resp.drop:
            self.closed = True
            self.transport.close()
            return
        if resp.close:
            keep = False
        body = resp.body
        h = [b"HTTP/1.1 %d %s\r\n" % (resp.status, _REASONS.get(resp.status, "Unknown").encode()),
             b"Date: ", _http_date(), b"\r\nServer: faketiktok\r\nContent-Type: ",
             resp.ctype.encode(), b"\r\nContent-Length: %d\r\n" % len(body)]
        if resp.headers:
            for k, v in resp.headers.items():
                h.append(("%s: %s\r\n" % (k, v)).encode("latin-1"))
        h.append(b"Connection: keep-alive\r\n\r\n" if keep else b"Connection: close\r\n\r\n")
        if resp.truncate:
            h.append(body[:len(body) // 2])
            self.transport.write(b"".join(h))
            self.closed = True
            self.transport.close()
            return
        h.append(body)
        self.transport.write(b"".join(h))
        self.last = time.monotonic()
        if not keep:
            self.closed = True
            self.transport.close()


class _LoopCtx(object):
    def __init__(self):
        self.loop = None
        self.server = None
        self.conns = set()
        self.thread = None
        self.sweeper = None


# ---------------------------------------------------------------------------
# The fake

_FAULT_KEYS = {"latency_ms", "http_status", "code", "message", "drop", "truncate",
               "count", "path", "body", "retry_after"}


class FakeTikTok(object):
    """The fake TikTok Shop server.

    FakeTikTok(cert, key, app_key=..., app_secret=..., access_token=...,
               shop_cipher="" (= not checked), port=0, host="127.0.0.1",
               threads=1, unknown_ids="generate"|"missing",
               idle_timeout=60.0, max_requests_per_conn=0, verbose=False)
    .start() -> self (serving in background threads); .port; .url; .stop()
    .seed(orders) .fault(**kw) .stats() .reset() .orders()
    """

    def __init__(self, cert, key, app_key=DEFAULTS["app_key"], app_secret=DEFAULTS["app_secret"],
                 access_token=DEFAULTS["access_token"], shop_cipher=DEFAULTS["shop_cipher"],
                 port=0, host="127.0.0.1", threads=1, unknown_ids="generate",
                 idle_timeout=60.0, max_requests_per_conn=0, verbose=False):
        if unknown_ids not in ("generate", "missing"):
            raise ValueError("unknown_ids must be 'generate' or 'missing'")
        self.cert = cert
        self.key = key
        self.app_key = app_key
        self.app_secret = app_secret
        self.access_token = access_token
        self.shop_cipher = shop_cipher or ""
        self.host = host
        self.port = port
        self.threads = max(1, int(threads))
        self.unknown_ids = unknown_ids
        self.idle_timeout = float(idle_timeout)
        self.max_requests_per_conn = int(max_requests_per_conn)
        self.verbose = verbose
        self._lock = threading.Lock()
        self._loops = []
        self._socks = []
        self._started = False
        self._rid = itertools.count(1)
        self._gen_cache = {}
        self._reset_state()

    # -- state ------------------------------------------------------------
    def _reset_state(self):
        with self._lock:
            self._seeded = {}           # id -> order dict
            self._seeded_json = {}      # id -> encoded bytes
            self._sorted = None         # search indexes, rebuilt after seeding
            self._faults = []           # list of dicts with remaining "count"
            self._stats = {"requests": 0, "by_path": collections.Counter(),
                           "rejected": collections.Counter(), "faults_served": 0,
                           "ids_requested": 0, "connections": 0}

    def reset(self):
        """Forget seeded orders and faults; zero the statistics."""
        self._reset_state()

    def seed(self, orders):
        """Seed (insert or replace) orders; missing fields get generated
        defaults (a given update_time alone shifts the generated create/paid/SLA
    times along with it).  Returns the list of completed orders."""
        if isinstance(orders, dict):
            orders = [orders]
        done = [complete_order(o) for o in orders]
        enc = [_encode(o) for o in done]
        with self._lock:
            for o, e in zip(done, enc):
                self._seeded[o["id"]] = o
                self._seeded_json[o["id"]] = e
            self._sorted = None
        return done

    def orders(self):
        """The seeded orders (completed), by id."""
        with self._lock:
            return json.loads(json.dumps(self._seeded))

    def fault(self, **kw):
        """Queue a fault for the next `count` (default 1; -1 = until reset)
        API requests whose path equals `path` (default: any API path).
        Keys: latency_ms, http_status, code, message, drop, truncate, body,
        retry_after, count, path.  Faults are matched in the order queued."""
        f = self._check_fault(kw)
        with self._lock:
            self._faults.append(f)
            return len(self._faults)

    @staticmethod
    def _check_fault(kw):
        bad = set(kw) - _FAULT_KEYS
        if bad:
            raise ValueError("unknown fault keys: %s" % ", ".join(sorted(bad)))

        def isint(v):
            return isinstance(v, int) and not isinstance(v, bool)
        f = dict(kw)
        f.setdefault("count", 1)
        if not isint(f["count"]) or (f["count"] < 1 and f["count"] != -1):
            raise ValueError("count must be a positive integer or -1")
        lat = f.get("latency_ms", 0)
        if isinstance(lat, bool) or not isinstance(lat, (int, float)) or lat < 0 or lat > 600000:
            raise ValueError("latency_ms must be a number 0..600000")
        if "http_status" in f and (not isint(f["http_status"]) or not 200 <= f["http_status"] <= 599):
            raise ValueError("http_status must be an integer 200..599")
        if "code" in f and not isint(f["code"]):
            raise ValueError("code must be an integer")
        for k in ("drop", "truncate"):
            if k in f and not isinstance(f[k], bool):
                raise ValueError("%s must be a boolean" % k)
        if "path" in f and (not isinstance(f["path"], str) or not f["path"].startswith("/")):
            raise ValueError("path must start with /")
        if "body" in f and not isinstance(f["body"], str):
            raise ValueError("body must be a string")
        if "message" in f and not isinstance(f["message"], str):
            raise ValueError("message must be a string")
        if "retry_after" in f and not isint(f["retry_after"]):
            raise ValueError("retry_after must be an integer")
        return f

    def stats(self):
        with self._lock:
            s = self._stats
            rej = {"sign": 0, "token": 0, "timestamp": 0, "app_key": 0, "params": 0}
            rej.update(s["rejected"])
            return {"requests": s["requests"], "by_path": dict(s["by_path"]),
                    "rejected": rej, "faults_served": s["faults_served"],
                    "ids_requested": s["ids_requested"], "connections": s["connections"],
                    "orders_seeded": len(self._seeded),
                    "faults_pending": sum(1 for f in self._faults if f["count"] != 0)}

    def _count_connection(self):
        with self._lock:
            self._stats["connections"] += 1

    def _log(self, msg):
        if self.verbose:
            sys.stderr.write("faketiktok: %s\n" % msg)
            sys.stderr.flush()

    # -- server lifecycle -----------------------------------------------------
    @property
    def url(self):
        return "https://%s:%d" % (self.host if ":" not in self.host else "[%s]" % self.host, self.port)

    def _ssl_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def _make_sockets(self):
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        socks = []
        port = self.port
        for i in range(self.threads):
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.threads > 1:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind((self.host, port))
            s.listen(1024)
            s.setblocking(False)
            port = s.getsockname()[1]
            socks.append(s)
        self.port = port
        return socks

    def start(self):
        """Bind, then serve in background thread(s).  Returns self."""
        if self._started:
            raise RuntimeError("already started")
        ctx = self._ssl_context()
        self._socks = self._make_sockets()
        ready = []
        for i, sock in enumerate(self._socks):
            lc = _LoopCtx()
            ev = threading.Event()
            err = []
            lc.thread = threading.Thread(target=self._run_loop, args=(lc, sock, ctx, ev, err),
                                         name="faketiktok-%d" % i, daemon=True)
            lc.thread.start()
            ev.wait(30)
            if err:
                self.stop()
                raise err[0]
            self._loops.append(lc)
            ready.append(ev)
        self._started = True
        return self

    def _run_loop(self, lc, sock, ctx, ev, err):
        loop = asyncio.new_event_loop()
        lc.loop = loop
        asyncio.set_event_loop(loop)
        try:
            lc.server = loop.run_until_complete(loop.create_server(
                lambda: _Conn(self, lc), sock=sock, ssl=ctx, ssl_handshake_timeout=10))
            lc.sweeper = loop.call_later(1.0, self._sweep, lc)
        except Exception as e:
            err.append(e)
            ev.set()
            loop.close()
            return
        ev.set()
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(asyncio.sleep(0))
            except Exception:
                pass
            loop.close()

    def _sweep(self, lc):
        """Close connections idle longer than idle_timeout."""
        if self.idle_timeout > 0:
            cutoff = time.monotonic() - self.idle_timeout
            for c in list(lc.conns):
                if not c.busy and c.last < cutoff:
                    c.closed = True
                    c.transport.close()
        lc.sweeper = lc.loop.call_later(min(1.0, max(0.05, self.idle_timeout / 4)), self._sweep, lc)

    def stop(self):
        """Stop serving: close the listener and every connection."""
        for lc in self._loops:
            if lc.loop is None or lc.loop.is_closed():
                continue

            def shut(lc=lc):
                if lc.sweeper:
                    lc.sweeper.cancel()
                if lc.server:
                    lc.server.close()
                for c in list(lc.conns):
                    c.closed = True
                    if c.task is not None:
                        c.task.cancel()
                    c.transport.abort()
                lc.loop.call_later(0.05, lc.loop.stop)
            try:
                lc.loop.call_soon_threadsafe(shut)
            except RuntimeError:
                pass
        for lc in self._loops:
            if lc.thread is not None:
                lc.thread.join(10)
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass
        self._loops = []
        self._socks = []
        self._started = False

    def __enter__(self):
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- responses ------------------------------------------------------------
    def _request_id(self):
        return "%s%010X" % (time.strftime("%Y%m%d%H%M%S", time.gmtime()), next(self._rid))

    def _envelope(self, code, message=None, data=None, status=200, headers=None):
        rid = self._request_id()
        body = _encode({"code": code, "message": MESSAGES.get(code, "Error") if message is None else message,
                        "request_id": rid, "data": data})
        h = {"X-Tt-Logid": rid}
        if headers:
            h.update(headers)
        return _Response(status, body, headers=h)

    def _ok_raw(self, data_json):
        """Success envelope around already-encoded data."""
        rid = self._request_id()
        body = b'{"code":0,"message":"Success","request_id":"' + rid.encode() + b'","data":' + data_json + b"}"
        return _Response(200, body, headers={"X-Tt-Logid": rid})

    def _plain_error(self, status, msg):
        r = _Response(status, _encode({"error": msg}))
        r.close = status >= 400 and status not in (404, 405)
        return r

    def _reject(self, kind, code, message=None):
        with self._lock:
            self._stats["rejected"][kind] += 1
        return self._envelope(code, message)

    # -- dispatch -------------------------------------------------------------
    _ROUTES = {DETAIL_PATH: "GET", SEARCH_PATH: "POST", SHOPS_PATH: "GET"}

    def _handle(self, req):
        path = req.path
        if path.startswith("/_fake/"):
            return self._admin(req)
        fault = None
        with self._lock:
            st = self._stats
            st["requests"] += 1
            st["by_path"][path] += 1
            if self._faults:
                for f in self._faults:
                    if f["count"] != 0 and f.get("path", path) == path:
                        if f["count"] > 0:
                            f["count"] -= 1
                        st["faults_served"] += 1
                        fault = f
                        break
                self._faults = [f for f in self._faults if f["count"] != 0]
        if fault is not None:
            return self._faulted(req, fault)
        return self._api(req)

    def _faulted(self, req, f):
        lat = f.get("latency_ms", 0) / 1000.0
        if f.get("drop"):
            r = _Response()
            r.drop = True
        elif "http_status" in f or "code" in f or "body" in f:
            st = f.get("http_status", 200)
            code = f.get("code")
            if code is None:
                code = CODE_THROTTLED if st == 429 else CODE_SERVER_ERROR if st >= 500 else CODE_BAD_PARAMS
            hdrs = {"Retry-After": str(f["retry_after"])} if "retry_after" in f else None
            if "body" in f:
                r = _Response(st, f["body"].encode("utf-8"), ctype="text/html; charset=utf-8",
                              headers=hdrs)
            else:
                r = self._envelope(code, f.get("message"), None, status=st, headers=hdrs)
        else:
            # latency only: a normal answer, computed after the delay
            r = _Response()
            r.then = lambda: self._api(req)
        if f.get("truncate"):
            if r.then is not None:
                inner = r.then

                def trunc():
                    x = inner()
                    x.truncate = True
                    return x
                r.then = trunc
            else:
                r.truncate = True
        r.delay = lat
        return r

    def _api(self, req):
        want = self._ROUTES.get(req.path)
        if want is None:
            return self._envelope(CODE_NOT_FOUND, "Not found: %s" % req.path, status=404)
        if req.method != want:
            return self._envelope(CODE_METHOD, "Method not allowed: %s %s" % (req.method, req.path),
                                  status=405, headers={"Allow": want})
        try:
            q = dict(urllib.parse.parse_qsl(req.query, keep_blank_values=True, strict_parsing=False,
                                            errors="strict"))
        except (UnicodeDecodeError, ValueError):
            return self._reject("params", CODE_BAD_PARAMS, "Invalid params: query string")
        # 1. app_key
        if q.get("app_key") != self.app_key:
            return self._reject("app_key", CODE_BAD_APP_KEY)
        # 2. timestamp
        ts = q.get("timestamp", "")
        if not ts.isdigit() or abs(int(ts) - time.time()) > TIMESTAMP_WINDOW:
            return self._reject("timestamp", CODE_BAD_TIMESTAMP)
        # 3. sign
        sign = q.get("sign", "")
        want_sign = sign_request(self.app_secret, req.path, q, req.body)
        if not hmac.compare_digest(sign.encode("utf-8", "replace"), want_sign.encode()):
            return self._reject("sign", CODE_BAD_SIGN)
        # 4. access token
        tok = req.headers.get("x-tts-access-token", "")
        if not hmac.compare_digest(tok.encode("utf-8", "replace"), self.access_token.encode("utf-8")):
            return self._reject("token", CODE_BAD_TOKEN)
        # 5. shop_cipher (not for the shops listing, like TikTok)
        if self.shop_cipher and req.path != SHOPS_PATH and q.get("shop_cipher") != self.shop_cipher:
            return self._reject("params", CODE_BAD_PARAMS, "Invalid params: shop_cipher")
        if req.path == DETAIL_PATH:
            return self._detail(q)
        if req.path == SEARCH_PATH:
            return self._search(q, req.body)
        return self._shops()

    def _shops(self):
        shop = {"id": "7495540735365777507", "name": "Fake Shop", "region": "US",
                "seller_type": "LOCAL", "cipher": self.shop_cipher or "ROW_fakeshopcipher",
                "code": "USLCFAKE01"}
        return self._ok_raw(_encode({"shops": [shop]}))

    def _order_json(self, oid):
        """Encoded order for a detail call, or None when absent."""
        e = self._seeded_json.get(oid)
        if e is not None:
            return e
        if self.unknown_ids == "missing":
            return None
        e = self._gen_cache.get(oid)
        if e is None:
            e = _encode(generate_order(oid))
            if len(self._gen_cache) >= GENERATED_CACHE_MAX:
                self._gen_cache.clear()
            self._gen_cache[oid] = e
        return e

    def _detail(self, q):
        raw = q.get("ids")
        if raw is None:
            return self._reject("params", CODE_BAD_IDS, "invalid ids: ids is required")
        ids = raw.split(",")
        if not 1 <= len(ids) <= MAX_IDS or any(not i.strip() for i in ids):
            return self._reject("params", CODE_BAD_IDS,
                                "invalid ids: 1..%d non-empty comma-separated ids" % MAX_IDS)
        seen = set()
        uniq = []
        for i in ids:
            i = i.strip()
            if i not in seen:
                seen.add(i)
                uniq.append(i)
        with self._lock:
            self._stats["ids_requested"] += len(ids)
            parts = [e for e in (self._order_json(i) for i in uniq) if e is not None]
        return self._ok_raw(b'{"orders":[' + b",".join(parts) + b"]}")

    def _search(self, q, body):
        ps = q.get("page_size", "")
        if not ps.isdigit() or not 1 <= int(ps) <= MAX_PAGE_SIZE:
            return self._reject("params", CODE_BAD_PARAMS,
                                "Invalid params: page_size must be 1..%d" % MAX_PAGE_SIZE)
        ps = int(ps)
        sort_field = q.get("sort_field", "create_time")
        if sort_field not in ("create_time", "update_time"):
            return self._reject("params", CODE_BAD_PARAMS, "Invalid params: sort_field")
        sort_order = q.get("sort_order", "DESC")
        if sort_order not in ("ASC", "DESC"):
            return self._reject("params", CODE_BAD_PARAMS, "Invalid params: sort_order")
        tok = q.get("page_token", "")
        offset = 0
        if tok:
            try:
                d = json.loads(base64.urlsafe_b64decode(tok.encode("ascii") + b"==").decode())
                offset = d["o"]
                if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
                    raise ValueError
            except Exception:
                return self._reject("params", CODE_BAD_PARAMS, "Invalid params: page_token")
        try:
            filt = json.loads(body.decode("utf-8")) if body.strip() else {}
            if not isinstance(filt, dict):
                raise ValueError
        except Exception:
            return self._reject("params", CODE_BAD_PARAMS, "Invalid params: body is not a JSON object")
        conds = []
        for k in ("update_time_ge", "update_time_lt", "create_time_ge", "create_time_lt"):
            if k in filt:
                v = filt[k]
                if not isinstance(v, int) or isinstance(v, bool):
                    return self._reject("params", CODE_BAD_PARAMS, "Invalid params: %s" % k)
                conds.append((k[:11], k[12:], v))
        status = filt.get("order_status")
        if status is not None and not isinstance(status, str):
            return self._reject("params", CODE_BAD_PARAMS, "Invalid params: order_status")
        with self._lock:
            # index per (sort field, status filter): sort keys and ids, sorted by (key, id)
            ikey = (sort_field, status)
            idx = self._sorted.get(ikey) if self._sorted is not None else None
            if idx is None:
                if self._sorted is None:
                    self._sorted = {}
                rows = sorted((o[sort_field], o["id"]) for o in self._seeded.values()
                              if status is None or o.get("status") == status)
                idx = ([r[0] for r in rows], [r[1] for r in rows])
                self._sorted[ikey] = idx
            keys, ids = idx
            lo, hi = 0, len(keys)
            other = []
            for field, op, v in conds:
                if field == sort_field:
                    if op == "ge":
                        lo = max(lo, bisect.bisect_left(keys, v))
                    else:
                        hi = min(hi, bisect.bisect_left(keys, v))
                else:
                    other.append((field, op, v))
            if other:
                sel = []
                for i in ids[lo:hi]:
                    o = self._seeded[i]
                    for field, op, v in other:
                        t = o[field]
                        if (op == "ge" and t < v) or (op == "lt" and t >= v):
                            break
                    else:
                        sel.append(i)
            else:
                sel = ids[lo:hi] if lo < hi else []
            total = len(sel)
            if sort_order == "DESC":
                page = sel[max(0, total - offset - ps):max(0, total - offset)][::-1]
            else:
                page = sel[offset:offset + ps]
            parts = [self._seeded_json[i] for i in page]
        nxt = ""
        if offset + ps < total:
            nxt = base64.urlsafe_b64encode(_encode({"o": offset + ps})).decode().rstrip("=")
        data = (b'{"orders":[' + b",".join(parts) + b'],"next_page_token":' + _encode(nxt)
                + b',"total_count":%d}' % total)
        return self._ok_raw(data)

    # -- admin ----------------------------------------------------------------
    def _admin(self, req):
        def ok(obj, status=200):
            return _Response(status, _encode(obj))

        def err(msg, status=400):
            return _Response(status, _encode({"error": msg}))
        p, m = req.path, req.method
        routes = {"/_fake/orders": ("GET", "POST"), "/_fake/faults": ("POST",),
                  "/_fake/reset": ("POST",), "/_fake/stats": ("GET",)}
        if p not in routes:
            return err("unknown admin path %s" % p, 404)
        if m not in routes[p]:
            r = err("method not allowed", 405)
            r.headers = {"Allow": ", ".join(routes[p])}
            return r
        body = None
        if m == "POST":
            try:
                body = json.loads(req.body.decode("utf-8")) if req.body.strip() else {}
            except Exception:
                return err("body is not JSON")
            if not isinstance(body, dict):
                return err("body must be a JSON object")
        try:
            if p == "/_fake/stats":
                return ok(self.stats())
            if p == "/_fake/reset":
                self.reset()
                return ok({"ok": True})
            if p == "/_fake/orders":
                if m == "GET":
                    return ok({"orders": list(self.orders().values())})
                orders = body.get("orders")
                if not isinstance(orders, list):
                    return err('body must be {"orders":[...]}')
                done = self.seed(orders)
                return ok({"seeded": len(done), "ids": [o["id"] for o in done],
                           "total": self.stats()["orders_seeded"]})
            if p == "/_fake/faults":
                n = self.fault(**body)
                return ok({"queued": n})
        except (ValueError, TypeError) as e:
            return err(str(e))
        return err("unreachable", 500)


# ---------------------------------------------------------------------------
# Client helper for harnesses in other processes

def admin_request(base_url, method, path, body=None, cafile=None, timeout=10):
    """Call an admin endpoint (or anything) of a running fake; returns
    (status, parsed JSON or raw bytes).  TLS verified with cafile when given."""
    import http.client
    u = urllib.parse.urlsplit(base_url)
    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl._create_unverified_context()
    c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=timeout)
    try:
        data = None if body is None else (body if isinstance(body, bytes) else _encode(body))
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        c.request(method, path, body=data, headers=hdrs)
        r = c.getresponse()
        raw = r.read()
        try:
            return r.status, json.loads(raw)
        except ValueError:
            return r.status, raw
    finally:
        c.close()


# ---------------------------------------------------------------------------
# Command line

def main(argv=None):
    ap = argparse.ArgumentParser(description="Fake TikTok Shop Partner API server (HTTPS).")
    ap.add_argument("--port", type=int, default=0, help="TCP port (0 = pick a free one)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--cert", help="server certificate (PEM)")
    ap.add_argument("--key", help="server private key (PEM)")
    ap.add_argument("--app-key", default=DEFAULTS["app_key"])
    ap.add_argument("--app-secret", default=DEFAULTS["app_secret"])
    ap.add_argument("--access-token", default=DEFAULTS["access_token"])
    ap.add_argument("--shop-cipher", default=DEFAULTS["shop_cipher"],
                    help="required shop_cipher on order calls (default: not checked)")
    ap.add_argument("--threads", type=int, default=1,
                    help="event-loop threads, each with its own SO_REUSEPORT listener (default 1)")
    ap.add_argument("--unknown-ids", choices=("generate", "missing"), default="generate")
    ap.add_argument("--idle-timeout", type=float, default=60.0,
                    help="close keep-alive connections idle this many seconds (0 = never)")
    ap.add_argument("--max-requests-per-conn", type=int, default=0,
                    help="answer the Nth request of a connection with Connection: close (0 = no limit)")
    ap.add_argument("--seed-file", help="JSON file {\"orders\":[...]} seeded at start")
    ap.add_argument("--seed-generated", type=int, default=0, metavar="N",
                    help="seed N generated orders with ids 577000000000000001.. at start")
    ap.add_argument("--sign-url", metavar="PATH?QUERY",
                    help="print PATH?QUERY with app_key, timestamp, shop_cipher and sign added; exit")
    ap.add_argument("--body", default="", help="request body for --sign-url")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)

    if a.sign_url:
        path, _, query = a.sign_url.partition("?")
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        print(signed_target(a.app_key, a.app_secret, path, params, a.body.encode(),
                            shop_cipher=a.shop_cipher or None))
        return 0
    if not a.cert or not a.key:
        ap.error("--cert and --key are required")
    if not 0 <= a.port <= 65535:
        ap.error("--port must be 0..65535")
    if a.threads < 1 or a.threads > 64:
        ap.error("--threads must be 1..64")

    fake = FakeTikTok(a.cert, a.key, app_key=a.app_key, app_secret=a.app_secret,
                      access_token=a.access_token, shop_cipher=a.shop_cipher, port=a.port,
                      host=a.host, threads=a.threads, unknown_ids=a.unknown_ids,
                      idle_timeout=a.idle_timeout, max_requests_per_conn=a.max_requests_per_conn,
                      verbose=a.verbose)
    if a.seed_file:
        with open(a.seed_file) as fh:
            d = json.load(fh)
        fake.seed(d["orders"] if isinstance(d, dict) else d)
    if a.seed_generated:
        fake.seed([{"id": str(577000000000000000 + i)} for i in range(1, a.seed_generated + 1)])

    # block the stop signals before the loop threads exist (they inherit the
    # mask), then wait for one synchronously
    sigs = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        fake.start()
    except (OSError, ssl.SSLError) as e:
        sys.stderr.write("faketiktok: %s\n" % e)
        return 1
    sys.stdout.write("listening %d\n" % fake.port)
    sys.stdout.flush()
    signal.sigwait(sigs)
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
