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

Also the 202309 fulfillment endpoints (Ship Package, Mark Package As Shipped,
Get Package Detail, Get Package Shipping Document, Get Shipping Providers);
see FULFILLMENT.md.  And the seller authorization flow with its token
lifecycle (GET /open/authorize, /api/v2/token/get, /api/v2/token/refresh,
admin /_fake/auth); see AUTH.md.  The HTTP/TLS machinery is in fakehttp.py
(shared with tests/fakecarrier).

API endpoints, admin endpoints (/_fake/...) and error codes: see README.
Python standard library only (Debian's /usr/bin/python3).
"""

import argparse
import base64
import bisect
import calendar
import collections
import hashlib
import hmac
import html
import itertools
import json
import math
import random
import re
import secrets
import sys
import threading
import time
import urllib.parse

import fakehttp

__all__ = ["FakeTikTok", "sign_request", "sign_webhook", "signed_query",
           "signed_target", "generate_order", "admin_request",
           "CODE_OK", "CODE_BAD_SIGN", "CODE_BAD_TIMESTAMP", "CODE_BAD_APP_KEY",
           "CODE_BAD_TOKEN", "CODE_BAD_PARAMS", "CODE_THROTTLED", "CODE_BAD_IDS",
           "CODE_SERVER_ERROR", "CODE_NOT_FOUND", "CODE_METHOD", "CODE_PACKAGE_NOT_FOUND",
           "CODE_PACKAGE_SHIPPED", "CODE_ORDER_CANCELLED", "CODE_BAD_TRACKING",
           "CODE_LINES_SHIPPED", "CODE_PACKAGE_NOT_SHIPPED", "CODE_NOT_TIKTOK_SHIPPING",
           "CODE_ORDER_NOT_FOUND", "CODE_FBT", "SHIPPING_PROVIDERS", "tiktok_tracking_number",
           "CODE_AUTH_BAD_GRANT", "CODE_AUTH_BAD_APP", "CODE_AUTH_BAD_CODE",
           "CODE_AUTH_BAD_REFRESH"]

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
# fulfillment (FULFILLMENT.md says which come from TikTok's pages and which are the fake's)
CODE_PACKAGE_NOT_FOUND = 21011001   # package id unknown
CODE_ORDER_NOT_FOUND = 21011002     # order id unknown (Mark Package As Shipped)
CODE_PACKAGE_NOT_SHIPPED = 21011004  # shipping document before Ship Package
CODE_NOT_TIKTOK_SHIPPING = 21011005  # document for a SELLER package; mark-shipped on TIKTOK
CODE_LINES_SHIPPED = 21011020       # line items already in a shipped package
CODE_BAD_TRACKING = 21011022        # tracking number / shipping provider invalid or missing
CODE_PACKAGE_SHIPPED = 21011040     # Package has been shipped
CODE_ORDER_CANCELLED = 21011041     # order is cancelled
CODE_FBT = 21008025                 # order fulfilled by TikTok (FBT)
# token endpoints (AUTH.md): the FAKE'S OWN codes; TikTok's exact codes for these
# cases are not in our sources
CODE_AUTH_BAD_GRANT = 36004001      # grant_type is not the one the endpoint wants
CODE_AUTH_BAD_APP = 36004002        # app_key or app_secret wrong or missing
CODE_AUTH_BAD_CODE = 36004004       # auth_code unknown, used, expired or revoked
CODE_AUTH_BAD_REFRESH = 36004006    # refresh_token unknown, expired, rotated away or revoked

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
    CODE_PACKAGE_NOT_FOUND: "package not found",
    CODE_ORDER_NOT_FOUND: "order not found",
    CODE_PACKAGE_NOT_SHIPPED: "package is not shipped",
    CODE_NOT_TIKTOK_SHIPPING: "shipping documents are only for TikTok shipping",
    CODE_LINES_SHIPPED: "line items already shipped",
    CODE_BAD_TRACKING: "tracking number or shipping provider invalid",
    CODE_PACKAGE_SHIPPED: "Package has been shipped",
    CODE_ORDER_CANCELLED: "order is cancelled",
    CODE_FBT: "Seller cannot operate orders which are fulfilled by platform",
    CODE_AUTH_BAD_GRANT: "grant_type is invalid",
    CODE_AUTH_BAD_APP: "invalid app_key or app_secret",
    CODE_AUTH_BAD_CODE: "auth_code is invalid, used or expired",
    CODE_AUTH_BAD_REFRESH: "refresh_token is invalid or expired",
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
AUTHORIZE_PATH = "/open/authorize"              # the seller's authorization page
TOKEN_GET_PATH = "/api/v2/token/get"            # auth_code -> tokens (not signed)
TOKEN_REFRESH_PATH = "/api/v2/token/refresh"    # refresh_token -> tokens (not signed)

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
    _complete_packages(order, partial)
    return order


def _complete_packages(order, partial):
    """Check shipping_type and packages; a SELLER order seeded without
    packages has none until it is shipped (like TikTok for US local sellers):
    packages [] and line package_id "" (lines that name a package_id keep it,
    and those packages are listed)."""
    st = order.get("shipping_type")
    if st not in ("TIKTOK", "SELLER"):
        raise ValueError("shipping_type must be TIKTOK or SELLER")
    if "packages" in partial:
        pk = partial["packages"]
        if not isinstance(pk, list) or len(pk) > 100:
            raise ValueError("packages must be a list of at most 100 objects")
        norm = []
        for i, p in enumerate(pk):
            if (not isinstance(p, dict) or not isinstance(p.get("id"), (str, int))
                    or isinstance(p.get("id"), bool) or not 1 <= len(str(p["id"])) <= 64):
                raise ValueError('packages[%d] must be {"id": 1..64 chars}' % i)
            norm.append(dict(p, id=str(p["id"])))
        if len({p["id"] for p in norm}) != len(norm):
            raise ValueError("packages has duplicate ids")
        order["packages"] = norm
    elif st == "SELLER":
        given = partial.get("line_items") if isinstance(partial.get("line_items"), list) else []
        named = set()
        for i, li in enumerate(order["line_items"]):
            if i < len(given) and given[i].get("package_id"):
                named.add(str(li["package_id"]))
            else:
                li["package_id"] = ""
                if not (i < len(given) and "package_status" in given[i]):
                    li["package_status"] = ""
        order["packages"] = [{"id": pid} for pid in sorted(named)]
    ids = {p["id"] for p in order["packages"]}
    for i, li in enumerate(order["line_items"]):
        pid = li.get("package_id", "")
        if isinstance(pid, int) and not isinstance(pid, bool):
            pid = li["package_id"] = str(pid)
        if not isinstance(pid, str) or (pid and pid not in ids):
            raise ValueError("line_items[%d].package_id %r is not one of the order's packages"
                             % (i, pid))


_encode = fakehttp.encode
_Response = fakehttp.Response


# ---------------------------------------------------------------------------
# Fulfillment (see FULFILLMENT.md)

SHIPPING_PROVIDERS = [            # fixed ids; USPS's is the one in TikTok's doc sample
    {"id": "7117858858072016686", "name": "USPS"},
    {"id": "7117859084333745966", "name": "UPS"},
    {"id": "7129736293713234694", "name": "FedEx"},
    {"id": "7132708441138514730", "name": "DHL eCommerce"},
]
_PROVIDER_NAME = {p["id"]: p["name"] for p in SHIPPING_PROVIDERS}
USPS_PROVIDER_ID = SHIPPING_PROVIDERS[0]["id"]
DOCUMENT_TYPES = ("SHIPPING_LABEL", "PACKING_SLIP", "SHIPPING_LABEL_AND_PACKING_SLIP")
ORDER_STATUSES = ("UNPAID", "ON_HOLD", "AWAITING_SHIPMENT", "PARTIALLY_SHIPPING",
                  "AWAITING_COLLECTION", "IN_TRANSIT", "DELIVERED", "COMPLETED", "CANCELLED")
# package status that follows an order status set through the admin endpoint
_PKG_STATUS_FOR = {"IN_TRANSIT": "FULFILLING", "DELIVERED": "COMPLETED", "COMPLETED": "COMPLETED",
                   "CANCELLED": "CANCELLED"}
_SHIPPED = ("PROCESSING", "FULFILLING", "COMPLETED")
MAX_TRACKING_LEN = 64
MAX_LINE_IDS = 1000

_SHIP_RE = re.compile(r"/fulfillment/202309/packages/([^/]{1,64})/ship")
_DOCS_RE = re.compile(r"/fulfillment/202309/packages/([^/]{1,64})/shipping_documents")
_PKG_RE = re.compile(r"/fulfillment/202309/packages/([^/]{1,64})")
_MARK_RE = re.compile(r"/fulfillment/202309/orders/([^/]{1,64})/packages")
_PROV_RE = re.compile(r"/logistics/202309/delivery_options/([^/]*)/shipping_providers")
_ADMIN_STATUS_RE = re.compile(r"/_fake/orders/([^/]{1,64})/status")
_ADMIN_DOC_RE = re.compile(r"/_fake/docs/([0-9A-Za-z_-]{1,64})\.pdf")

_TINY_PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
             b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
             b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 288 432]>>endobj\n"
             b"trailer<</Root 1 0 R>>\n%%EOF\n")


def tiktok_tracking_number(package_id):
    """The tracking number the fake gives a TIKTOK-shipping package shipped
    without self_shipment: "TT" + 14 digits derived from the package id."""
    h = int(hashlib.sha256(("trk:" + str(package_id)).encode()).hexdigest(), 16)
    return "TT%014d" % (h % 10 ** 14)


class _Reject(Exception):
    """A business error of a fulfillment call: answered as an HTTP 200 envelope."""

    def __init__(self, code, message=None):
        Exception.__init__(self, message or MESSAGES.get(code, "Error"))
        self.code = code


def _need_str(d, key, what=None, maxlen=64):
    v = d.get(key)
    if not isinstance(v, str) or not v:
        raise _Reject(CODE_BAD_PARAMS, "Invalid params: %s is required (a non-empty string)"
                      % (what or key))
    if len(v) > maxlen:
        raise _Reject(CODE_BAD_PARAMS, "Invalid params: %s longer than %d" % (what or key, maxlen))
    return v


def _check_tracking(tn, prov):
    if not isinstance(tn, str) or not 1 <= len(tn) <= MAX_TRACKING_LEN or not tn.isprintable():
        raise _Reject(CODE_BAD_TRACKING, "tracking number or shipping provider invalid: "
                      "tracking_number must be 1..%d printable characters" % MAX_TRACKING_LEN)
    if prov not in _PROVIDER_NAME:
        raise _Reject(CODE_BAD_TRACKING, "tracking number or shipping provider invalid: "
                      "unknown shipping_provider_id %r" % (prov,))


def _json_object(body, allow_empty=False):
    if allow_empty and not body.strip():
        return {}
    try:
        d = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _Reject(CODE_BAD_PARAMS, "Invalid params: body is not JSON")
    if not isinstance(d, dict):
        raise _Reject(CODE_BAD_PARAMS, "Invalid params: body must be a JSON object")
    return d


# ---------------------------------------------------------------------------
# Authorization flow and token lifecycle (see AUTH.md)

DEFAULT_SERVICE_ID = "7000000000000000001"
AUTH_DEFAULTS = dict(code_lifetime=600.0, access_token_lifetime=604800.0,
                     refresh_token_lifetime=31536000.0)
GRANTED_SCOPES = ("seller.order.info", "seller.fulfillment.basic")
DEFAULT_SHOP = {"id": "7495540735365777507", "name": "Fake Shop", "region": "US",
                "seller_type": "LOCAL", "cipher": "", "code": "USLCFAKE01"}   # cipher set per fake
AUTH_MAX_ENTRIES = 10000        # issued codes, access and refresh tokens each; oldest dropped
MAX_LIFETIME = 100 * 365 * 86400
MAX_SHOPS = 100
# admin keys of /_fake/auth: settings (kept) and actions (done once, after the settings)
AUTH_SETTINGS = ("service_id", "redirect_url", "approve", "open_id", "seller_name", "shops",
                 "code_lifetime", "access_token_lifetime", "refresh_token_lifetime",
                 "rotate_refresh", "revoke_on_refresh")
AUTH_ACTIONS = ("expire_access_tokens", "expire_refresh_tokens", "revoke")
_SHOP_KEYS = ("id", "name", "region", "seller_type", "cipher", "code")
_AUTH_COUNTERS = {AUTHORIZE_PATH: "authorize_calls", TOKEN_GET_PATH: "token_get_calls",
                  TOKEN_REFRESH_PATH: "token_refresh_calls"}
# stats.token_refused reasons
REFUSE_REASONS = ("method", "params", "app", "grant", "code_unknown", "code_used", "code_expired",
                  "code_revoked", "refresh_unknown", "refresh_expired", "refresh_rotated",
                  "refresh_revoked")


def _printable(v, maxlen, empty_ok=False):
    return (isinstance(v, str) and (empty_ok or v != "") and len(v) <= maxlen
            and v.isprintable())


def _check_shop(i, sh):
    """One shop of /_fake/auth "shops", completed with defaults."""
    if not isinstance(sh, dict):
        raise ValueError("shops[%d] must be an object" % i)
    bad = set(sh) - set(_SHOP_KEYS)
    if bad:
        raise ValueError("shops[%d]: unknown keys: %s" % (i, ", ".join(sorted(bad))))
    sid = sh.get("id")
    if isinstance(sid, int) and not isinstance(sid, bool) and sid >= 0:
        sid = str(sid)
    if (not isinstance(sid, str) or not 1 <= len(sid) <= 64 or not sid.isdigit()
            or not sid.isascii()):
        raise ValueError("shops[%d].id must be 1..64 digits" % i)
    if not _printable(sh.get("cipher"), 256, empty_ok=True):
        raise ValueError("shops[%d].cipher must be a string (at most 256 chars)" % i)
    out = dict(DEFAULT_SHOP, id=sid, cipher=sh["cipher"])
    for k in ("name", "region", "seller_type", "code"):
        if k in sh:
            if not _printable(sh[k], 256, empty_ok=True):
                raise ValueError("shops[%d].%s must be a string (at most 256 chars)" % (i, k))
            out[k] = sh[k]
    return out


def _check_auth(kw):
    """Validate the keys of /_fake/auth (and FakeTikTok.auth); returns a new
    dict with shops completed and lifetimes as floats.  Raises ValueError."""
    bad = set(kw) - set(AUTH_SETTINGS) - set(AUTH_ACTIONS)
    if bad:
        raise ValueError("unknown auth keys: %s" % ", ".join(sorted(bad)))
    out = {}
    for k, v in kw.items():
        if k in ("approve", "rotate_refresh", "revoke_on_refresh") + AUTH_ACTIONS:
            if not isinstance(v, bool):
                raise ValueError("%s must be a boolean" % k)
        elif k.endswith("_lifetime"):
            if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                    or not 0 < v <= MAX_LIFETIME):
                raise ValueError("%s must be a number of seconds > 0" % k)
            v = float(v)
        elif k == "service_id":
            if not _printable(v, 64):
                raise ValueError("service_id must be a non-empty string (at most 64 chars)")
        elif k == "open_id":
            if not _printable(v, 128):
                raise ValueError("open_id must be a non-empty string (at most 128 chars)")
        elif k == "seller_name":
            if not _printable(v, 256, empty_ok=True):
                raise ValueError("seller_name must be a string (at most 256 chars)")
        elif k == "redirect_url":
            if not isinstance(v, str) or (v and (
                    len(v) > 2048 or not v.isascii() or any(c.isspace() or not c.isprintable()
                                                            for c in v)
                    or not v.startswith(("http://", "https://")))):
                raise ValueError('redirect_url must be "" (none) or an http(s) URL '
                                 "(ASCII, no spaces, at most 2048 chars)")
        elif k == "shops":
            if not isinstance(v, list) or len(v) > MAX_SHOPS:
                raise ValueError("shops must be a list of at most %d objects" % MAX_SHOPS)
            v = [_check_shop(i, sh) for i, sh in enumerate(v)]
            if len({sh["id"] for sh in v}) != len(v):
                raise ValueError("shops has duplicate ids")
        out[k] = v
    return out


def _put_bounded(od, key, value):
    """Insert into an OrderedDict holding at most AUTH_MAX_ENTRIES, dropping the oldest."""
    od[key] = value
    while len(od) > AUTH_MAX_ENTRIES:
        od.popitem(last=False)


def _html(status, title, text, headers=None):
    body = ("<!DOCTYPE html><html><head><title>%s</title></head><body><h1>%s</h1><p>%s</p>"
            "</body></html>\n" % (html.escape(title), html.escape(title), html.escape(text)))
    return _Response(status, body.encode("utf-8"), ctype="text/html; charset=utf-8",
                     headers=headers)


def _redirect_location(redirect_url, code, state):
    """redirect_url + code and state, both percent-encoded (state as raw bytes)."""
    sep = "" if redirect_url.endswith(("?", "&")) else "&" if "?" in redirect_url else "?"
    return "%s%scode=%s&state=%s" % (redirect_url, sep, urllib.parse.quote(code, safe=""),
                                     urllib.parse.quote(state, safe=""))


def _token_params(req):
    """Parameters of a token call: the query, then (POST) a JSON object or
    form body merged over it.  Raises _Reject(CODE_BAD_PARAMS)."""
    try:
        q = dict(urllib.parse.parse_qsl(req.query, keep_blank_values=True, errors="strict"))
    except (UnicodeDecodeError, ValueError):
        raise _Reject(CODE_BAD_PARAMS, "Invalid params: query string")
    body = req.body.strip()
    if req.method != "POST" or not body:
        return q
    ctype = req.headers.get("content-type", "").lower()
    if "x-www-form-urlencoded" in ctype or not body.startswith((b"{", b"[")):
        try:
            q.update(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                            errors="strict"))
        except (UnicodeDecodeError, ValueError):
            raise _Reject(CODE_BAD_PARAMS, "Invalid params: form body")
        return q
    d = _json_object(body)
    for k, v in d.items():
        if v is None:
            continue
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, (int, float)):
            v = str(v)
        elif not isinstance(v, str):
            raise _Reject(CODE_BAD_PARAMS, "Invalid params: %s must be a string" % k)
        q[k] = v
    return q


# ---------------------------------------------------------------------------
# The fake

class FakeTikTok(fakehttp.Server):
    """The fake TikTok Shop server.

    FakeTikTok(cert, key, app_key=..., app_secret=..., access_token=...,
               shop_cipher="" (= not checked), port=0, host="127.0.0.1",
               threads=1, unknown_ids="generate"|"missing",
               idle_timeout=60.0, max_requests_per_conn=0, verbose=False,
               service_id=DEFAULT_SERVICE_ID, redirect_url="" (= none),
               code_lifetime=600, access_token_lifetime=604800,
               refresh_token_lifetime=31536000, rotate_refresh=True,
               revoke_on_refresh=False)
    .start() -> self (serving in background threads); .port; .url; .stop()
    .seed(orders) .fault(**kw) .stats() .reset() .orders() .auth(**kw) .tokens()
    """

    server_name = "faketiktok"
    max_body_bytes = MAX_BODY_BYTES

    def __init__(self, cert, key, app_key=DEFAULTS["app_key"], app_secret=DEFAULTS["app_secret"],
                 access_token=DEFAULTS["access_token"], shop_cipher=DEFAULTS["shop_cipher"],
                 port=0, host="127.0.0.1", threads=1, unknown_ids="generate",
                 idle_timeout=60.0, max_requests_per_conn=0, verbose=False,
                 generated_fulfillment_type="FULFILLMENT_BY_SELLER",
                 service_id=DEFAULT_SERVICE_ID, redirect_url="",
                 code_lifetime=AUTH_DEFAULTS["code_lifetime"],
                 access_token_lifetime=AUTH_DEFAULTS["access_token_lifetime"],
                 refresh_token_lifetime=AUTH_DEFAULTS["refresh_token_lifetime"],
                 rotate_refresh=True, revoke_on_refresh=False):
        if unknown_ids not in ("generate", "missing"):
            raise ValueError("unknown_ids must be 'generate' or 'missing'")
        if generated_fulfillment_type not in ("FULFILLMENT_BY_SELLER", "FULFILLMENT_BY_TIKTOK"):
            raise ValueError("generated_fulfillment_type must be FULFILLMENT_BY_SELLER or "
                             "FULFILLMENT_BY_TIKTOK")
        self.generated_fulfillment_type = generated_fulfillment_type
        self._init_server(cert, key, host=host, port=port, threads=threads,
                          idle_timeout=idle_timeout, max_requests_per_conn=max_requests_per_conn,
                          verbose=verbose)
        self.app_key = app_key
        self.app_secret = app_secret
        self.access_token = access_token
        self.shop_cipher = shop_cipher or ""
        self.unknown_ids = unknown_ids
        self._lock = threading.Lock()
        self._rid = itertools.count(1)
        self._gen_cache = {}        # id -> encoded generated order (bounded)
        self._gen_pkgs = {}         # package id -> order id of generated orders read
        self._faults = fakehttp.FaultQueue(
            extra={"code": lambda v: None if isinstance(v, int) and not isinstance(v, bool)
                   else "must be an integer",
                   "message": lambda v: None if isinstance(v, str) else "must be a string",
                   "body": lambda v: None if isinstance(v, str) else "must be a string",
                   "truncate": lambda v: None if isinstance(v, bool) else "must be a boolean"},
            replacing=("drop", "http_status", "code", "body"), prefix=False)
        # what /_fake/reset goes back to: the ctor's authorization settings
        self._auth_defaults = self._default_auth()
        self._auth_defaults.update(_check_auth(dict(
            service_id=service_id, redirect_url=redirect_url or "", code_lifetime=code_lifetime,
            access_token_lifetime=access_token_lifetime,
            refresh_token_lifetime=refresh_token_lifetime, rotate_refresh=rotate_refresh,
            revoke_on_refresh=revoke_on_refresh)))
        self._grant_ids = itertools.count(1)
        self._reset_state()

    # -- state ------------------------------------------------------------
    def _reset_state(self):
        with self._lock:
            self._seeded = {}           # id -> order dict
            self._seeded_json = {}      # id -> encoded bytes
            self._kept = {}             # generated orders changed since (shipped, status set)
            self._kept_json = {}
            self._pkg_owner = {}        # package id -> order id (seeded and kept orders)
            self._pkgstate = {}         # order id -> {package id: package state}
            self._sorted = None         # search indexes, rebuilt after seeding
            self._faults.clear()
            self._stats = {"requests": 0, "by_path": collections.Counter(),
                           "rejected": collections.Counter(), "faults_served": 0,
                           "ids_requested": 0, "connections": 0, "ship_calls": 0,
                           "packages_shipped": collections.Counter(),
                           "authorize_calls": 0, "token_get_calls": 0,
                           "token_refresh_calls": 0, "token_refused": collections.Counter()}
            self._auth = json.loads(json.dumps(self._auth_defaults))
            # issued codes and tokens, oldest first (each at most AUTH_MAX_ENTRIES)
            self._codes = collections.OrderedDict()     # code -> {grant, expires, used, revoked}
            self._access = collections.OrderedDict()    # token -> {grant, gid, expires, revoked}
            self._refresh = collections.OrderedDict()   # token -> {grant, gid, expires, state}

    def reset(self):
        """Forget seeded orders, shipments, faults, issued codes and tokens;
        zero the statistics; authorization settings back to the ctor's."""
        self._reset_state()

    def seed(self, orders):
        """Seed (insert or replace) orders; missing fields get generated
        defaults (a given update_time alone shifts the generated create/paid/SLA
        times along with it).  Returns the list of completed orders."""
        if isinstance(orders, dict):
            orders = [orders]
        if not isinstance(orders, list):
            raise ValueError("orders must be a list of objects")
        done = [complete_order(o) for o in orders]
        enc = [_encode(o) for o in done]
        with self._lock:
            for o, e in zip(done, enc):
                oid = o["id"]
                self._seeded[oid] = o
                self._seeded_json[oid] = e
                self._kept.pop(oid, None)
                self._kept_json.pop(oid, None)
                self._pkgstate.pop(oid, None)
                for p in o["packages"]:
                    self._pkg_owner[p["id"]] = oid
            self._sorted = None
        return done

    def orders(self):
        """The stored orders by id: the seeded ones plus generated orders that
        changed since (shipped, or status set through the admin endpoint)."""
        with self._lock:
            d = dict(self._kept)
            d.update(self._seeded)
            return json.loads(json.dumps(d))

    def fault(self, **kw):
        """Queue a fault for the next `count` (default 1; -1 = until reset)
        API requests matching `path` (exact; a trailing "*" makes it a
        prefix; default: any API path) and `method` (default: any).
        Keys: latency_ms, http_status, code, message, drop, truncate, body,
        retry_after, after (apply the request, then answer with the fault),
        count, path, method.  Faults are matched in the order queued."""
        return self._faults.add(kw)

    def _check_fault(self, kw):
        return self._faults.check(kw)

    def stats(self):
        with self._lock:
            s = self._stats
            rej = {"sign": 0, "token": 0, "timestamp": 0, "app_key": 0, "params": 0}
            rej.update(s["rejected"])
            return {"requests": s["requests"], "by_path": dict(s["by_path"]),
                    "rejected": rej, "faults_served": s["faults_served"],
                    "ids_requested": s["ids_requested"], "connections": s["connections"],
                    "orders_seeded": len(self._seeded),
                    "faults_pending": self._faults.pending(),
                    "ship_calls": s["ship_calls"],
                    "packages_shipped": dict(s["packages_shipped"]),
                    "authorize_calls": s["authorize_calls"],
                    "token_get_calls": s["token_get_calls"],
                    "token_refresh_calls": s["token_refresh_calls"],
                    "token_refused": dict({r: 0 for r in REFUSE_REASONS},
                                          **s["token_refused"])}

    def _count_connection(self):
        with self._lock:
            self._stats["connections"] += 1

    @property
    def url(self):
        return self.base_url

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

    def _reject(self, kind, code, message=None):
        with self._lock:
            self._stats["rejected"][kind] += 1
        return self._envelope(code, message)

    # -- dispatch -------------------------------------------------------------
    _ROUTES = {DETAIL_PATH: "GET", SEARCH_PATH: "POST", SHOPS_PATH: "GET"}
    # (regex, method, handler name); the first regex that matches decides
    _RE_ROUTES = [(_SHIP_RE, "POST", "_ship"), (_DOCS_RE, "GET", "_documents"),
                  (_PKG_RE, "GET", "_package_detail"), (_MARK_RE, "POST", "_mark_shipped"),
                  (_PROV_RE, "GET", "_providers")]

    def _route(self, path):
        """(method, handler, args) for an API path, or None."""
        want = self._ROUTES.get(path)
        if want is not None:
            return want, None, ()
        for rx, meth, name in self._RE_ROUTES:
            m = rx.fullmatch(path)
            if m:
                return meth, name, m.groups()
        return None

    def _handle(self, req):
        path = req.path
        if path.startswith("/_fake/"):
            return self._admin(req)
        with self._lock:
            st = self._stats
            st["requests"] += 1
            st["by_path"][path] += 1
            if req.method == "POST" and (_SHIP_RE.fullmatch(path) or _MARK_RE.fullmatch(path)):
                st["ship_calls"] += 1
            counter = _AUTH_COUNTERS.get(path)
            if counter is not None:
                st[counter] += 1
        fault = self._faults.take(path, req.method)
        if fault is not None:
            with self._lock:
                self._stats["faults_served"] += 1
            return fakehttp.fault_response(fault, lambda: self._dispatch(req), self._fault_answer)
        return self._dispatch(req)

    def _dispatch(self, req):
        """The answer to a non-admin request (after faults)."""
        if req.path == AUTHORIZE_PATH:
            return self._authorize(req)
        if req.path in (TOKEN_GET_PATH, TOKEN_REFRESH_PATH):
            return self._token(req)
        return self._api(req)

    def _fault_answer(self, f):
        if not ("http_status" in f or "code" in f or "body" in f):
            return None
        st = f.get("http_status", 200)
        code = f.get("code")
        if code is None:
            code = CODE_THROTTLED if st == 429 else CODE_SERVER_ERROR if st >= 500 else CODE_BAD_PARAMS
        hdrs = {"Retry-After": str(f["retry_after"])} if "retry_after" in f else None
        if "body" in f:
            return _Response(st, f["body"].encode("utf-8"), ctype="text/html; charset=utf-8",
                             headers=hdrs)
        return self._envelope(code, f.get("message"), None, status=st, headers=hdrs)

    def _api(self, req):
        route = self._route(req.path)
        if route is None:
            return self._envelope(CODE_NOT_FOUND, "Not found: %s" % req.path, status=404)
        want, handler, args = route
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
        # 4. access token: the static one, or one issued by the token endpoints
        tok = req.headers.get("x-tts-access-token", "")
        grant = None
        if not hmac.compare_digest(tok.encode("utf-8", "replace"), self.access_token.encode("utf-8")):
            grant, why = self._issued_grant(tok)
            if grant is None:
                return self._reject("token", CODE_BAD_TOKEN, why)
        # 5. shop_cipher (not for the shops listing, like TikTok); an issued
        # token takes the ciphers of its authorization's shops
        if self.shop_cipher and req.path != SHOPS_PATH:
            sc = q.get("shop_cipher")
            if (sc != self.shop_cipher if grant is None
                    else sc not in {sh["cipher"] for sh in grant["shops"]}):
                return self._reject("params", CODE_BAD_PARAMS, "Invalid params: shop_cipher")
        if handler is not None:
            try:
                with self._lock:
                    data = getattr(self, handler)(q, req.body, *args)
            except _Reject as e:
                if e.code == CODE_BAD_PARAMS:
                    with self._lock:
                        self._stats["rejected"]["params"] += 1
                return self._envelope(e.code, str(e))
            return self._ok_raw(_encode(data))
        if req.path == DETAIL_PATH:
            return self._detail(q)
        if req.path == SEARCH_PATH:
            return self._search(q, req.body)
        return self._shops(grant)

    def _shops(self, grant=None):
        """Get Authorized Shops: the shops of an issued token's authorization,
        or the one default shop for the static token."""
        if grant is not None:
            return self._ok_raw(_encode({"shops": grant["shops"]}))
        return self._ok_raw(_encode({"shops": [self._default_shop()]}))

    def _default_shop(self):
        return dict(DEFAULT_SHOP, cipher=self.shop_cipher or "ROW_fakeshopcipher")

    # -- authorization flow and token lifecycle (AUTH.md) -----------------------
    def _default_auth(self):
        """The authorization settings of a fake built without auth arguments."""
        return dict(service_id=DEFAULT_SERVICE_ID, redirect_url="", approve=True,
                    open_id="fake-open-id-1", seller_name="Fake Seller",
                    shops=[self._default_shop()], rotate_refresh=True, revoke_on_refresh=False,
                    **AUTH_DEFAULTS)

    def auth(self, **kw):
        """Change the authorization settings and/or act on issued tokens (the
        keys of POST /_fake/auth, see AUTH_SETTINGS and AUTH_ACTIONS); all keys
        are checked before anything changes, the actions run after the
        settings.  Returns the current settings.  Raises ValueError."""
        kw = _check_auth(kw)
        with self._lock:
            for k in AUTH_SETTINGS:
                if k in kw:
                    self._auth[k] = kw[k]
            now = time.time()
            if kw.get("expire_access_tokens"):
                for e in self._access.values():
                    e["expires"] = min(e["expires"], now)
            if kw.get("expire_refresh_tokens"):
                for e in self._refresh.values():
                    e["expires"] = min(e["expires"], now)
            if kw.get("revoke"):
                self._revoke(self._auth["open_id"])
            return json.loads(json.dumps(self._auth))

    def _revoke(self, open_id):
        """Deauthorization: every code and token of open_id stops working (lock held)."""
        for e in self._codes.values():
            if e["grant"]["open_id"] == open_id:
                e["revoked"] = True
        for e in self._access.values():
            if e["grant"]["open_id"] == open_id:
                e["revoked"] = True
        for e in self._refresh.values():
            if e["grant"]["open_id"] == open_id and e["state"] == "active":
                e["state"] = "revoked"

    def tokens(self):
        """The issued codes and tokens, oldest first: {"codes": [{code, open_id,
        expires, used, revoked}], "access_tokens": [{token, open_id, expires,
        expired, revoked}], "refresh_tokens": [{token, open_id, expires,
        expired, state: active|rotated|revoked}]}; expires in float Unix seconds."""
        with self._lock:
            now = time.time()
            return {
                "codes": [{"code": c, "open_id": e["grant"]["open_id"], "expires": e["expires"],
                           "used": e["used"], "revoked": e["revoked"]}
                          for c, e in self._codes.items()],
                "access_tokens": [{"token": t, "open_id": e["grant"]["open_id"],
                                   "expires": e["expires"], "expired": now >= e["expires"],
                                   "revoked": e["revoked"]} for t, e in self._access.items()],
                "refresh_tokens": [{"token": t, "open_id": e["grant"]["open_id"],
                                    "expires": e["expires"], "expired": now >= e["expires"],
                                    "state": e["state"]} for t, e in self._refresh.items()]}

    def _issued_grant(self, tok):
        """(authorization, None) for a valid issued access token, else (None, message)."""
        with self._lock:
            e = self._access.get(tok)
            if e is None or e["revoked"]:
                return None, "Access token is invalid"
            if time.time() >= e["expires"]:
                return None, "Access token is expired"
            return e["grant"], None

    def _authorize(self, req):
        """GET /open/authorize?service_id=&state=: approves at once and sends
        the seller back to redirect_url with a fresh single-use code."""
        if req.method != "GET":
            return _html(405, "Method not allowed", "Use GET.", headers={"Allow": "GET"})
        # latin-1 maps each percent-decoded byte to one character: state stays raw bytes
        q = dict(urllib.parse.parse_qsl(req.query, keep_blank_values=True, encoding="latin-1"))
        service_id = q.get("service_id", "").encode("latin-1").decode("utf-8", "replace")
        state = q.get("state", "").encode("latin-1")
        with self._lock:
            a = self._auth
            if service_id != a["service_id"]:
                return _html(400, "Authorization failed", "Unknown service_id %r (this fake's "
                             "service is %s)." % (service_id, a["service_id"]))
            if not a["approve"]:
                return _html(200, "Authorization denied",
                             "The seller did not authorize the app (approve is false).")
            if not a["redirect_url"]:
                return _html(400, "Authorization failed", "The app has no redirect URL "
                             "(set redirect_url on the fake).")
            code = secrets.token_urlsafe(24)
            grant = json.loads(json.dumps({k: a[k] for k in ("open_id", "seller_name", "shops")}))
            _put_bounded(self._codes, code, {"grant": grant, "used": False, "revoked": False,
                                             "expires": time.time() + a["code_lifetime"]})
            loc = _redirect_location(a["redirect_url"], code, state)
        return _html(302, "Authorized", "Continue to %s" % loc, headers={"Location": loc})

    def _token(self, req):
        """GET (or POST) /api/v2/token/get and /api/v2/token/refresh: not
        signed; app_key and app_secret travel as parameters."""
        refresh = req.path == TOKEN_REFRESH_PATH
        if req.method not in ("GET", "POST"):
            return self._refuse("method", CODE_METHOD, "Method not allowed: %s %s"
                                % (req.method, req.path), status=405,
                                headers={"Allow": "GET, POST"})
        try:
            q = _token_params(req)
        except _Reject as e:
            return self._refuse("params", e.code, str(e))
        if (q.get("app_key") != self.app_key or not hmac.compare_digest(
                q.get("app_secret", "").encode("utf-8"), self.app_secret.encode("utf-8"))):
            return self._refuse("app", CODE_AUTH_BAD_APP)
        if q.get("grant_type") != ("refresh_token" if refresh else "authorized_code"):
            return self._refuse("grant", CODE_AUTH_BAD_GRANT)
        with self._lock:
            if refresh:
                why, data = self._refresh_tokens(q.get("refresh_token", ""))
            else:
                why, data = self._exchange_code(q.get("auth_code", ""))
        if why is not None:
            return self._refuse(why, CODE_AUTH_BAD_REFRESH if refresh else CODE_AUTH_BAD_CODE)
        return self._envelope(CODE_OK, "success", data)

    def _refuse(self, reason, code, message=None, status=200, headers=None):
        with self._lock:
            self._stats["token_refused"][reason] += 1
        return self._envelope(code, message, status=status, headers=headers)

    def _exchange_code(self, code):
        """(refusal reason, None) or (None, token data) for an auth_code (lock held)."""
        c = self._codes.get(code)
        if c is None:
            return "code_unknown", None
        if c["revoked"]:
            return "code_revoked", None
        if c["used"]:
            return "code_used", None
        now = time.time()
        if now >= c["expires"]:
            return "code_expired", None
        c["used"] = True
        gid = next(self._grant_ids)
        rt = "ROW_" + secrets.token_urlsafe(24)
        _put_bounded(self._refresh, rt, {"grant": c["grant"], "gid": gid, "state": "active",
                                         "expires": now + self._auth["refresh_token_lifetime"]})
        return None, self._issue(rt, now)

    def _refresh_tokens(self, rt):
        """(refusal reason, None) or (None, token data) for a refresh_token (lock held)."""
        r = self._refresh.get(rt)
        if r is None:
            return "refresh_unknown", None
        if r["state"] != "active":
            return "refresh_" + r["state"], None
        now = time.time()
        if now >= r["expires"]:
            return "refresh_expired", None
        if self._auth["revoke_on_refresh"]:
            for e in self._access.values():
                if e["gid"] == r["gid"]:
                    e["revoked"] = True
        if self._auth["rotate_refresh"]:
            r["state"] = "rotated"
            rt = "ROW_" + secrets.token_urlsafe(24)
            _put_bounded(self._refresh, rt, dict(r, state="active",
                                                 expires=now + self._auth["refresh_token_lifetime"]))
        return None, self._issue(rt, now)

    def _issue(self, rt, now):
        """A new access token next to refresh token rt; the token data (lock held)."""
        r = self._refresh[rt]
        at = "ROW_" + secrets.token_urlsafe(24)
        exp = now + self._auth["access_token_lifetime"]
        _put_bounded(self._access, at, {"grant": r["grant"], "gid": r["gid"], "expires": exp,
                                        "revoked": False})
        g = r["grant"]
        # TikTok's *_expire_in are absolute Unix seconds; rounded down so a
        # client never trusts a token the fake already counts as expired
        return {"access_token": at, "access_token_expire_in": int(exp), "refresh_token": rt,
                "refresh_token_expire_in": int(r["expires"]), "open_id": g["open_id"],
                "seller_name": g["seller_name"], "seller_base_region": "US", "user_type": 0,
                "granted_scopes": list(GRANTED_SCOPES)}

    def _order_json(self, oid):
        """Encoded order for a detail call, or None when absent (lock held)."""
        e = self._seeded_json.get(oid)
        if e is None:
            e = self._kept_json.get(oid)
        if e is not None:
            return e
        if self.unknown_ids == "missing":
            return None
        e = self._gen_cache.get(oid)
        if e is None:
            o = self._generate(oid)
            e = _encode(o)
            if len(self._gen_cache) >= GENERATED_CACHE_MAX:
                self._gen_cache.clear()
                self._gen_pkgs.clear()
            self._gen_cache[oid] = e
            for p in o["packages"]:
                self._gen_pkgs[p["id"]] = oid
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


    # -- fulfillment (all called with self._lock held) ------------------------
    def _get_order(self, oid):
        """The stored order (mutable), a freshly generated one, or None."""
        o = self._seeded.get(oid)
        if o is None:
            o = self._kept.get(oid)
        if o is None and self.unknown_ids == "generate":
            o = self._generate(oid)
        return o

    def _generate(self, oid):
        """The generated order of an unknown id, with this fake's fulfillment type."""
        o = generate_order(oid)
        o["fulfillment_type"] = self.generated_fulfillment_type
        return o

    def _store(self, order):
        """Remember a changed order (generated ones are kept from now on)."""
        oid = order["id"]
        if oid in self._seeded:
            self._seeded[oid] = order
            self._seeded_json[oid] = _encode(order)
            self._sorted = None
        else:
            self._kept[oid] = order
            self._kept_json[oid] = _encode(order)
        for p in order["packages"]:
            self._pkg_owner[p["id"]] = oid

    def _find_package(self, pid):
        """(order, package id) for a known package, else raise 21011001."""
        oid = self._pkg_owner.get(pid) or self._gen_pkgs.get(pid)
        o = self._get_order(oid) if oid is not None else None
        if o is None or not any(p.get("id") == pid for p in o["packages"]):
            raise _Reject(CODE_PACKAGE_NOT_FOUND)
        return o

    def _pkg(self, order, pid):
        """The state of one package of order (created on first use)."""
        states = self._pkgstate.setdefault(order["id"], {})
        s = states.get(pid)
        if s is None:
            lines = [li for li in order["line_items"] if li.get("package_id") == pid]
            status = "TO_FULFILL"
            for li in lines:
                if li.get("package_status") in _SHIPPED + ("CANCELLED",):
                    status = li["package_status"]
            first = lines[0] if lines else {}
            t = order.get("paid_time") or order["create_time"]
            s = {"status": status, "tracking_number": first.get("tracking_number", ""),
                 "shipping_provider_id": first.get("shipping_provider_id", ""),
                 "shipping_provider_name": first.get("shipping_provider_name", ""),
                 "handover_method": "", "create_time": t, "update_time": t}
            states[pid] = s
        return s

    @staticmethod
    def _bump(order):
        """Advance order.update_time strictly (at least +1); returns it."""
        t = max(int(time.time()), int(order["update_time"]) + 1)
        order["update_time"] = t
        return t

    @staticmethod
    def _check_can_ship(order):
        if order.get("fulfillment_type") == "FULFILLMENT_BY_TIKTOK":
            raise _Reject(CODE_FBT)
        if order.get("status") == "CANCELLED":
            raise _Reject(CODE_ORDER_CANCELLED)

    def _mark_package_shipped(self, order, pid, tn, prov, handover, now):
        s = self._pkg(order, pid)
        s.update(status="PROCESSING", tracking_number=tn, shipping_provider_id=prov,
                 shipping_provider_name=_PROVIDER_NAME[prov], handover_method=handover,
                 update_time=now)
        for li in order["line_items"]:
            if li.get("package_id") == pid:
                li.update(package_status="PROCESSING", tracking_number=tn,
                          shipping_provider_id=prov, shipping_provider_name=_PROVIDER_NAME[prov])
        order["tracking_number"] = tn
        order["shipping_provider_id"] = prov
        order["shipping_provider"] = _PROVIDER_NAME[prov]
        order["rts_time"] = now
        self._stats["packages_shipped"][pid] += 1

    def _update_order_status(self, order):
        """After a ship: AWAITING_COLLECTION once every line and package is in
        a shipped package, PARTIALLY_SHIPPING while only some are."""
        if order["status"] not in ("AWAITING_SHIPMENT", "PARTIALLY_SHIPPING"):
            return
        shipped = {p["id"] for p in order["packages"]
                   if self._pkg(order, p["id"])["status"] in _SHIPPED}
        lines_done = all(li.get("package_id") in shipped for li in order["line_items"])
        if lines_done and len(shipped) == len(order["packages"]):
            order["status"] = "AWAITING_COLLECTION"
            for li in order["line_items"]:
                li["display_status"] = "AWAITING_COLLECTION"
        elif shipped:
            order["status"] = "PARTIALLY_SHIPPING"

    def _ship(self, q, body, pid):
        b = _json_object(body, allow_empty=True)
        handover = b.get("handover_method", "PICKUP")
        if handover not in ("PICKUP", "DROP_OFF"):
            raise _Reject(CODE_BAD_PARAMS, "Invalid params: handover_method must be PICKUP or DROP_OFF")
        slot = b.get("pickup_slot")
        if slot is not None:
            if (not isinstance(slot, dict)
                    or not all(isinstance(slot.get(k), int) and not isinstance(slot.get(k), bool)
                               for k in ("start_time", "end_time"))
                    or slot["start_time"] >= slot["end_time"]):
                raise _Reject(CODE_BAD_PARAMS, "Invalid params: pickup_slot needs integer "
                              "start_time < end_time")
        ss = b.get("self_shipment")
        if ss is not None:
            if not isinstance(ss, dict):
                raise _Reject(CODE_BAD_PARAMS, "Invalid params: self_shipment must be an object")
            for k in ("tracking_number", "shipping_provider_id"):
                if k not in ss:
                    raise _Reject(CODE_BAD_PARAMS, "Invalid params: self_shipment.%s is required" % k)
            _check_tracking(ss["tracking_number"], ss["shipping_provider_id"])
        order = self._find_package(pid)
        self._check_can_ship(order)
        if self._pkg(order, pid)["status"] != "TO_FULFILL":
            raise _Reject(CODE_PACKAGE_SHIPPED)
        if ss is not None:
            tn, prov = ss["tracking_number"], ss["shipping_provider_id"]
        elif order.get("shipping_type", "TIKTOK") == "SELLER":
            raise _Reject(CODE_BAD_TRACKING, "tracking number or shipping provider invalid: "
                          "self_shipment is required for a SELLER-shipping package")
        else:
            tn, prov = tiktok_tracking_number(pid), USPS_PROVIDER_ID
        now = self._bump(order)
        self._mark_package_shipped(order, pid, tn, prov, handover, now)
        self._update_order_status(order)
        self._store(order)
        return {}

    def _documents(self, q, body, pid):
        dt = q.get("document_type")
        if dt not in DOCUMENT_TYPES:
            raise _Reject(CODE_BAD_PARAMS, "Invalid params: document_type must be one of "
                          + ", ".join(DOCUMENT_TYPES))
        order = self._find_package(pid)
        if order.get("shipping_type", "TIKTOK") != "TIKTOK":
            raise _Reject(CODE_NOT_TIKTOK_SHIPPING)
        s = self._pkg(order, pid)
        if s["status"] not in _SHIPPED:
            raise _Reject(CODE_PACKAGE_NOT_SHIPPED)
        expires = int(time.time()) + 86400
        return {"doc_url": "%s/_fake/docs/%s.pdf?expires=%d&document_type=%s"
                % (self.url, urllib.parse.quote(pid, safe=""), expires, dt),
                "tracking_number": s["tracking_number"]}

    def _package_detail(self, q, body, pid):
        order = self._find_package(pid)
        s = self._pkg(order, pid)
        lines = [li for li in order["line_items"] if li.get("package_id") == pid]
        skus = collections.OrderedDict()
        for li in lines:
            k = li.get("sku_id", "")
            if k not in skus:
                skus[k] = {"id": k, "name": li.get("sku_name", ""), "image_url": li.get("sku_image", ""),
                           "quantity": 0}
            skus[k]["quantity"] += 1
        return {"package_id": pid, "orders": [{"id": order["id"], "skus": list(skus.values())}],
                "order_line_item_ids": [li["id"] for li in lines],
                "package_status": s["status"],
                "shipping_type": order.get("shipping_type", "TIKTOK"),
                "shipping_provider_id": s["shipping_provider_id"],
                "shipping_provider_name": s["shipping_provider_name"],
                "tracking_number": s["tracking_number"],
                "delivery_option_id": order.get("delivery_option_id", ""),
                "handover_method": s["handover_method"],
                "create_time": s["create_time"], "update_time": s["update_time"]}

    def _new_package_id(self, order):
        n = len(order["packages"])
        while True:
            h = int(hashlib.sha256(("pkg:%s:%d" % (order["id"], n)).encode()).hexdigest(), 16)
            pid = str(1160000000000000000 + h % 10 ** 17)
            if pid not in self._pkg_owner and pid not in self._gen_pkgs:
                return pid
            n += 1

    def _mark_shipped(self, q, body, oid):
        b = _json_object(body)
        ids = b.get("order_line_item_ids")
        if (not isinstance(ids, list) or not 1 <= len(ids) <= MAX_LINE_IDS
                or not all(isinstance(i, str) and i for i in ids)):
            raise _Reject(CODE_BAD_PARAMS, "Invalid params: order_line_item_ids must be a list of "
                          "1..%d non-empty strings" % MAX_LINE_IDS)
        if len(set(ids)) != len(ids):
            raise _Reject(CODE_BAD_PARAMS, "Invalid params: order_line_item_ids has duplicates")
        for k in ("tracking_number", "shipping_provider_id"):
            if k not in b:
                raise _Reject(CODE_BAD_PARAMS, "Invalid params: %s is required" % k)
        _check_tracking(b["tracking_number"], b["shipping_provider_id"])
        order = self._get_order(oid)
        if order is None:
            raise _Reject(CODE_ORDER_NOT_FOUND)
        by_id = {li["id"]: li for li in order["line_items"]}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise _Reject(CODE_BAD_PARAMS, "Invalid params: not line items of order %s: %s"
                          % (oid, ",".join(unknown[:10])))
        if order.get("shipping_type", "TIKTOK") != "SELLER":
            raise _Reject(CODE_NOT_TIKTOK_SHIPPING, "order is shipped by TikTok (shipping_type "
                          "TIKTOK): use Ship Package and Get Package Shipping Document")
        self._check_can_ship(order)
        done = [i for i in ids if by_id[i].get("package_id")
                and self._pkg(order, by_id[i]["package_id"])["status"] != "TO_FULFILL"]
        if done:
            raise _Reject(CODE_LINES_SHIPPED, "line items already shipped: %s" % ",".join(done[:10]))
        pid = self._new_package_id(order)
        now = self._bump(order)
        old = {by_id[i].get("package_id") for i in ids} - {""}
        for i in ids:
            by_id[i]["package_id"] = pid
        used = {li.get("package_id") for li in order["line_items"]}
        # an unshipped package left without lines goes away
        order["packages"] = [p for p in order["packages"] if p["id"] not in old or p["id"] in used]
        order["packages"].append({"id": pid})
        self._pkgstate.setdefault(order["id"], {})[pid] = {
            "status": "TO_FULFILL", "tracking_number": "", "shipping_provider_id": "",
            "shipping_provider_name": "", "handover_method": "", "create_time": now,
            "update_time": now}
        self._mark_package_shipped(order, pid, b["tracking_number"], b["shipping_provider_id"],
                                   "DROP_OFF", now)
        self._update_order_status(order)
        self._store(order)
        return {"order_id": order["id"], "order_line_item_ids": ids, "package_id": pid,
                "warning": None}

    def _providers(self, q, body, option_id):
        if not (1 <= len(option_id) <= 64 and option_id.isdigit()):
            raise _Reject(CODE_BAD_PARAMS, "Invalid params: delivery_option_id must be 1..64 digits")
        return {"shipping_providers": [dict(p) for p in SHIPPING_PROVIDERS]}

    def set_status(self, order_id, status):
        """Set an order's status (admin): bumps update_time, sets the lines'
        display_status and moves shipped packages along (IN_TRANSIT ->
        FULFILLING, DELIVERED/COMPLETED -> COMPLETED, CANCELLED -> CANCELLED
        for every package).  Returns the order."""
        if status not in ORDER_STATUSES:
            raise ValueError("status must be one of " + ", ".join(ORDER_STATUSES))
        with self._lock:
            order = self._get_order(str(order_id))
            if order is None:
                raise KeyError(order_id)
            order["status"] = status
            now = self._bump(order)
            pst = _PKG_STATUS_FOR.get(status)
            for p in order["packages"]:
                s = self._pkg(order, p["id"])
                if pst and (status == "CANCELLED" or s["status"] in _SHIPPED):
                    s["status"] = pst
                    s["update_time"] = now
            for li in order["line_items"]:
                li["display_status"] = status
                pid = li.get("package_id")
                if pid and any(p["id"] == pid for p in order["packages"]):
                    li["package_status"] = self._pkg(order, pid)["status"]
            if status == "CANCELLED":
                order.setdefault("cancel_reason", "Cancelled by the fake")
            self._store(order)
            return json.loads(json.dumps(order))

    def _doc(self, pid):
        with self._lock:
            oid = self._pkg_owner.get(pid) or self._gen_pkgs.get(pid)
            o = self._get_order(oid) if oid is not None else None
            if (o is None or not any(p["id"] == pid for p in o["packages"])
                    or self._pkg(o, pid)["status"] not in _SHIPPED):
                return None
        return _TINY_PDF

    # -- admin ----------------------------------------------------------------
    def _admin(self, req):
        def ok(obj, status=200):
            return _Response(status, _encode(obj))

        def err(msg, status=400):
            return _Response(status, _encode({"error": msg}))
        p, m = req.path, req.method
        routes = {"/_fake/orders": ("GET", "POST"), "/_fake/faults": ("POST",),
                  "/_fake/reset": ("POST",), "/_fake/stats": ("GET",),
                  "/_fake/auth": ("GET", "POST")}
        st_m = _ADMIN_STATUS_RE.fullmatch(p)
        doc_m = _ADMIN_DOC_RE.fullmatch(p)
        allowed = routes.get(p) or (("POST",) if st_m else ("GET",) if doc_m else None)
        if allowed is None:
            return err("unknown admin path %s" % p, 404)
        if m not in allowed:
            r = err("method not allowed", 405)
            r.headers = {"Allow": ", ".join(allowed)}
            return r
        if doc_m:
            pdf = self._doc(doc_m.group(1))
            if pdf is None:
                return err("no shipped package %s" % doc_m.group(1), 404)
            return _Response(200, pdf, ctype="application/pdf")
        body = None
        if m == "POST":
            try:
                body = json.loads(req.body.decode("utf-8")) if req.body.strip() else {}
            except Exception:
                return err("body is not JSON")
            if not isinstance(body, dict):
                return err("body must be a JSON object")
        try:
            if st_m:
                if set(body) - {"status"}:
                    return err("unknown keys: %s" % ", ".join(sorted(set(body) - {"status"})))
                try:
                    return ok({"order": self.set_status(st_m.group(1), body.get("status"))})
                except KeyError:
                    return err("unknown order %s" % st_m.group(1), 404)
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
            if p == "/_fake/auth":
                if m == "GET":
                    with self._lock:
                        settings = json.loads(json.dumps(self._auth))
                    return ok(dict(self.tokens(), auth=settings))
                return ok({"ok": True, "auth": self.auth(**body)})
        except (ValueError, TypeError) as e:
            return err(str(e))
        return err("unreachable", 500)


# ---------------------------------------------------------------------------
# Client helper for harnesses in other processes

def admin_request(base_url, method, path, body=None, cafile=None, timeout=10):
    """Call an admin endpoint (or anything) of a running fake; returns
    (status, parsed JSON or raw bytes).  TLS verified with cafile when given."""
    return fakehttp.client_request(base_url, method, path, body, cafile, timeout)


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
    ap.add_argument("--generated-fulfillment-type", default="FULFILLMENT_BY_SELLER",
                    choices=("FULFILLMENT_BY_SELLER", "FULFILLMENT_BY_TIKTOK"),
                    help="fulfillment_type of generated orders (FULFILLMENT_BY_TIKTOK: the "
                         "seller cannot ship them)")
    ap.add_argument("--seed-generated", type=int, default=0, metavar="N",
                    help="seed N generated orders with ids 577000000000000001.. at start")
    ap.add_argument("--service-id", default=DEFAULT_SERVICE_ID,
                    help="service_id that /open/authorize accepts (default %s)" % DEFAULT_SERVICE_ID)
    ap.add_argument("--redirect-url", default="",
                    help="the app's registered redirect URL (default: none, /open/authorize "
                         "answers 400 until one is set through /_fake/auth)")
    ap.add_argument("--code-lifetime", type=float, default=AUTH_DEFAULTS["code_lifetime"],
                    metavar="SECONDS", help="auth_code lifetime (default 600)")
    ap.add_argument("--access-token-lifetime", type=float,
                    default=AUTH_DEFAULTS["access_token_lifetime"], metavar="SECONDS",
                    help="lifetime of issued access tokens (default 604800 = 7 days)")
    ap.add_argument("--refresh-token-lifetime", type=float,
                    default=AUTH_DEFAULTS["refresh_token_lifetime"], metavar="SECONDS",
                    help="lifetime of issued refresh tokens (default 31536000 = 365 days)")
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
    try:
        _check_auth(dict(service_id=a.service_id, redirect_url=a.redirect_url,
                         code_lifetime=a.code_lifetime,
                         access_token_lifetime=a.access_token_lifetime,
                         refresh_token_lifetime=a.refresh_token_lifetime))
    except ValueError as e:
        ap.error(str(e))

    fake = FakeTikTok(a.cert, a.key, app_key=a.app_key, app_secret=a.app_secret,
                      access_token=a.access_token, shop_cipher=a.shop_cipher, port=a.port,
                      host=a.host, threads=a.threads, unknown_ids=a.unknown_ids,
                      idle_timeout=a.idle_timeout, max_requests_per_conn=a.max_requests_per_conn,
                      verbose=a.verbose,
                      generated_fulfillment_type=a.generated_fulfillment_type,
                      service_id=a.service_id, redirect_url=a.redirect_url,
                      code_lifetime=a.code_lifetime,
                      access_token_lifetime=a.access_token_lifetime,
                      refresh_token_lifetime=a.refresh_token_lifetime)
    if a.seed_file:
        with open(a.seed_file) as fh:
            d = json.load(fh)
        fake.seed(d["orders"] if isinstance(d, dict) else d)
    if a.seed_generated:
        fake.seed([{"id": str(577000000000000000 + i)} for i in range(1, a.seed_generated + 1)])

    return fakehttp.run_until_signal(fake)


if __name__ == "__main__":
    sys.exit(main())
