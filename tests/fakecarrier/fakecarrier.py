#!/usr/bin/python3
"""fakecarrier - a fake EasyPost API v2 (label broker) for tests.

Real HTTPS (the fake TikTok's test CA, tests/faketiktok/mkcerts.sh), the
HTTP machinery of tests/faketiktok/fakehttp.py.  Shipments with rates, label
purchase, refunds, trackers (test-mode magic codes EZ1000000001..
EZ7000000007), signed webhooks (X-Hmac-Signature) and injectable faults.

Command line:
    fakecarrier.py --port P --cert server.pem --key server.key
                   [--api-key K] [--webhook-url URL --webhook-secret S]
                   [--webhook-cafile CA] [-v]
prints "listening PORT" on stdout once bound; exits 0 on SIGTERM/SIGINT.

In-process:
    from fakecarrier import FakeCarrier
    fake = FakeCarrier(cert, key, api_key="...").start()
    fake.url (ends in /v2), fake.port, fake.fault(...), fake.stats(),
    fake.reset(), fake.shipments(), fake.stop()

Endpoints, error codes and what they rest on: see README.
Python standard library only (Debian's /usr/bin/python3).
"""

import argparse
import base64
import collections
import hashlib
import hmac
import http.client
import json
import math
import os
import re
import secrets
import ssl
import struct
import sys
import threading
import time
import unicodedata
import urllib.parse
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "faketiktok"))
import fakehttp  # noqa: E402

__all__ = ["FakeCarrier", "sign_webhook", "TRACKER_STATUSES", "MAGIC_TRACKING_CODES",
           "DEFAULT_API_KEY"]

DEFAULT_API_KEY = "EZTKfakecarrierkey"
MAX_BODY_BYTES = 1024 * 1024
MAX_WEBHOOKS_KEPT = 1000
MAX_EVENTS_KEPT = 1000
WEBHOOK_TIMEOUT = 10.0
USER_AGENT = "EasyPost WebHook Agent 1.0 (fakecarrier)"

TRACKER_STATUSES = ("unknown", "pre_transit", "in_transit", "out_for_delivery",
                    "available_for_pickup", "delivered", "return_to_sender", "failure",
                    "canceled", "error")
MAGIC_TRACKING_CODES = {"EZ1000000001": "pre_transit", "EZ2000000002": "in_transit",
                        "EZ3000000003": "out_for_delivery", "EZ4000000004": "delivered",
                        "EZ5000000005": "return_to_sender", "EZ6000000006": "failure",
                        "EZ7000000007": "unknown"}
_STATUS_MESSAGE = {"unknown": "Status unknown", "pre_transit": "Shipping Label Created",
                   "in_transit": "Arrived at USPS Facility", "out_for_delivery": "Out for Delivery",
                   "available_for_pickup": "Available for Pickup", "delivered": "Delivered",
                   "return_to_sender": "Returned to Sender", "failure": "Delivery Attempt Failed",
                   "canceled": "Shipment Canceled", "error": "Carrier Error"}

# (carrier, service, base cents, cents per lb, cents per zone, days(zone))
_SERVICES = [
    ("USPS", "GroundAdvantage", 400, 30, 25, lambda z: 3 + z // 3),
    ("USPS", "Priority", 700, 60, 45, lambda z: 2 + z // 4),
    ("USPS", "Express", 2600, 150, 100, lambda z: 1),
    ("UPS", "Ground", 560, 50, 40, lambda z: 3 + z // 2),
    ("UPS", "2ndDayAir", 1500, 120, 80, lambda z: 2),
    ("FedEx", "FEDEX_GROUND", 520, 45, 35, lambda z: 2 + z // 2),
]
_CARRIER_ACCOUNT = {c: "ca_" + hashlib.sha256(("acct:" + c).encode()).hexdigest()[:32]
                    for c in ("USPS", "UPS", "FedEx")}

_ADDRESS_FIELDS = ("name", "company", "street1", "street2", "city", "state", "zip", "country",
                   "phone", "email")
_ADDRESS_REQUIRED = ("street1", "city", "zip", "country")
_PARCEL_LIMITS = {"length": 1000, "width": 1000, "height": 1000, "weight": 2400}

_SHP_RE = re.compile(r"/shipments/(shp_[0-9a-f]{32})")
_BUY_RE = re.compile(r"/shipments/(shp_[0-9a-f]{32})/buy")
_REFUND_RE = re.compile(r"/shipments/(shp_[0-9a-f]{32})/refund")
_TRK_RE = re.compile(r"/trackers/(trk_[0-9a-f]{32})")
_LABEL_RE = re.compile(r"/labels/(pl_[0-9a-f]{32})\.png")


def _png_1x1():
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff")) + chunk(b"IEND", b""))


_LABEL_PNG = _png_1x1()


def sign_webhook(secret, body):
    """The X-Hmac-Signature header value EasyPost sends:
    "hmac-sha256-hex=" + lowercase hex HMAC-SHA256(key = NFKD(secret) as
    UTF-8, msg = the raw body bytes)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    key = unicodedata.normalize("NFKD", secret).encode("utf-8")
    return "hmac-sha256-hex=" + hmac.new(key, bytes(body), hashlib.sha256).hexdigest()


def _now_iso(t=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def _oid(prefix):
    return "%s_%s" % (prefix, secrets.token_hex(16))


def _money(cents):
    return "%d.%02d" % divmod(int(cents), 100)


class APIError(Exception):
    """An EasyPost error answer: {"error":{"code","message","errors"}}."""

    def __init__(self, status, code, message, errors=None):
        Exception.__init__(self, message)
        self.status = status
        self.code = code
        self.errors = errors or []


def _error_response(status, code, message, errors=None, headers=None):
    return fakehttp.Response(status, fakehttp.encode(
        {"error": {"code": code, "message": message, "errors": errors or []}}), headers=headers)


def _zone(z1, z2):
    """USPS-like zone 1..8 from the first three digits of two ZIP codes
    (5 when either is not numeric)."""
    a, b = z1[:3], z2[:3]
    if not (a.isdigit() and b.isdigit()):
        return 5
    return min(8, 1 + abs(int(a) - int(b)) // 100)


def _check_address(which, a):
    if not isinstance(a, dict):
        raise APIError(422, "ADDRESS.VERIFY.FAILURE", "%s is required (an object)" % which,
                       [{"field": which, "message": "must be an object", "suggestion": None}])
    errors = []
    out = {}
    for k in _ADDRESS_FIELDS:
        v = a.get(k)
        if v is None:
            v = ""
        if not isinstance(v, str) or len(v) > 200:
            errors.append({"field": k, "message": "%s.%s must be a string of at most 200 "
                           "characters" % (which, k), "suggestion": None})
            continue
        out[k] = v.strip()
    for k in _ADDRESS_REQUIRED:
        if k in out and not out[k]:
            errors.append({"field": k, "message": "%s.%s is required" % (which, k),
                           "suggestion": None})
    if errors:
        raise APIError(422, "ADDRESS.VERIFY.FAILURE", "Unable to verify %s" % which, errors)
    return out


def _number(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        x = float(v)
    elif isinstance(v, str) and re.fullmatch(r"\s*[0-9]+(\.[0-9]+)?\s*", v):
        x = float(v)
    else:
        return None
    return x if math.isfinite(x) else None


def _check_parcel(p):
    if not isinstance(p, dict):
        raise APIError(422, "PARCEL.INVALID", "parcel is required (an object)",
                       [{"field": "parcel", "message": "must be an object"}])
    errors = []
    out = {}
    for k, limit in _PARCEL_LIMITS.items():
        if k not in p or p[k] is None:
            if k == "weight":
                errors.append({"field": "weight", "message": "weight is required (ounces)"})
            out[k] = None
            continue
        x = _number(p[k])
        if x is None or not 0 < x <= limit:
            errors.append({"field": k, "message": "%s must be a number > 0 and <= %d (%s)"
                           % (k, limit, "ounces" if k == "weight" else "inches")})
            continue
        out[k] = x
    if errors:
        raise APIError(422, "PARCEL.INVALID", "Invalid parcel", errors)
    return out


class FakeCarrier(fakehttp.Server):
    """The fake EasyPost.

    FakeCarrier(cert, key, api_key=DEFAULT_API_KEY, webhook_url=None,
                webhook_secret="", cafile_for_webhooks=None, port=0,
                host="127.0.0.1", idle_timeout=60.0, max_requests_per_conn=0,
                verbose=False)
    .start() -> self; .port; .url (https://host:port/v2); .stop()
    .fault(**kw) .stats() .reset() .shipments() .set_webhook(url, secret)
    .track(tracking_code, status, message=None, send=True) .resend(event_id)
    .refuse_refunds(on)
    """

    server_name = "fakecarrier"
    max_body_bytes = MAX_BODY_BYTES

    def __init__(self, cert, key, api_key=DEFAULT_API_KEY, webhook_url=None, webhook_secret="",
                 cafile_for_webhooks=None, port=0, host="127.0.0.1", idle_timeout=60.0,
                 max_requests_per_conn=0, verbose=False):
        if not isinstance(api_key, str) or not api_key or ":" in api_key:
            raise ValueError("api_key must be a non-empty string without ':'")
        self._init_server(cert, key, host=host, port=port, threads=1, idle_timeout=idle_timeout,
                          max_requests_per_conn=max_requests_per_conn, verbose=verbose)
        self.api_key = api_key
        self.cafile_for_webhooks = cafile_for_webhooks
        self._lock = threading.RLock()
        self._faults = fakehttp.FaultQueue(
            extra={"refuse_refund": lambda v: None if isinstance(v, bool) else "must be a boolean",
                   "code": lambda v: None if isinstance(v, str) and v else "must be a string",
                   "message": lambda v: None if isinstance(v, str) else "must be a string"},
            replacing=("drop", "http_status"), prefix=True)
        self._webhook = (None, "")
        self._reset_state()
        self.set_webhook(webhook_url, webhook_secret)

    # -- state ------------------------------------------------------------
    def _reset_state(self):
        with self._lock:
            self._shipments = collections.OrderedDict()     # id -> stored shipment
            self._rates = {}                                # rate id -> shipment id
            self._trackers = {}                             # id -> tracker
            self._tracker_by_code = {}                      # tracking code -> tracker id
            self._labels = set()                            # postage label ids
            self._events = collections.OrderedDict()        # evt id -> (description, body)
            self._refuse = False
            self._faults.clear()
            self._stats = {"requests": 0, "by_path": collections.Counter(), "connections": 0,
                           "auth_failures": 0, "faults_served": 0, "shipments_created": 0,
                           "buy_calls": 0, "purchases": 0,
                           "purchases_by_reference": collections.Counter(), "refunds": {},
                           "trackers_created": 0,
                           "webhooks": collections.deque(maxlen=MAX_WEBHOOKS_KEPT)}

    def reset(self):
        """Forget shipments, trackers, events and faults; zero the statistics
        (the webhook URL and secret stay)."""
        self._reset_state()

    def set_webhook(self, url, secret=""):
        """Where events go (url None = nowhere) and the HMAC secret."""
        if url is not None:
            if not isinstance(url, str) or len(url) > 2000:
                raise ValueError("webhook url must be a string of at most 2000 characters")
            u = urllib.parse.urlsplit(url)
            if u.scheme not in ("http", "https") or not u.hostname:
                raise ValueError("webhook url must be http:// or https:// with a host")
        if not isinstance(secret, str) or len(secret) > 1000:
            raise ValueError("webhook secret must be a string of at most 1000 characters")
        with self._lock:
            self._webhook = (url, secret)

    def refuse_refunds(self, on=True):
        """While on, every refund comes back "rejected"."""
        if not isinstance(on, bool):
            raise ValueError("on must be a boolean")
        with self._lock:
            self._refuse = on

    def fault(self, **kw):
        """Queue a fault for the next `count` (default 1; -1 = until reset)
        /v2 requests whose path after /v2 starts with `path` (default: any)
        and whose method is `method` (default: any).  Keys: http_status
        (400..599), code, message, retry_after, latency_ms, drop, after,
        refuse_refund (only matches refund calls), count, path, method."""
        if "http_status" in kw and not (isinstance(kw["http_status"], int)
                                        and 400 <= kw["http_status"] <= 599):
            raise ValueError("http_status must be an integer 400..599")
        return self._faults.add(kw)

    def stats(self):
        with self._lock:
            s = self._stats
            return {"requests": s["requests"], "by_path": dict(s["by_path"]),
                    "connections": s["connections"], "auth_failures": s["auth_failures"],
                    "faults_served": s["faults_served"], "faults_pending": self._faults.pending(),
                    "shipments_created": s["shipments_created"], "buy_calls": s["buy_calls"],
                    "purchases": s["purchases"],
                    "purchases_by_reference": dict(s["purchases_by_reference"]),
                    "refunds": dict(s["refunds"]), "trackers_created": s["trackers_created"],
                    "webhooks": list(s["webhooks"]), "refuse_refunds": self._refuse}

    def shipments(self):
        """Every shipment as GET /v2/shipments/{id} would show it, oldest first."""
        with self._lock:
            return [self._render(s) for s in self._shipments.values()]

    def _count_connection(self):
        with self._lock:
            self._stats["connections"] += 1

    @property
    def url(self):
        return self.base_url + "/v2"

    def _plain_error(self, status, msg):
        codes = {400: "BAD_REQUEST", 413: "PAYLOAD.TOO_LARGE", 431: "HEADERS.TOO_LARGE",
                 500: "INTERNAL_SERVER_ERROR", 501: "NOT_IMPLEMENTED"}
        r = _error_response(status, codes.get(status, "BAD_REQUEST"), msg)
        r.close = True
        return r

    # -- objects --------------------------------------------------------------
    def _render(self, s):
        """A stored shipment as the API shows it (with its tracker as it is now)."""
        out = json.loads(json.dumps(s))
        tid = out.pop("_tracker_id", None)
        out["tracker"] = json.loads(json.dumps(self._trackers[tid])) if tid else None
        return out

    def _new_tracker(self, code, carrier, status, shipment_id=None):
        now = _now_iso()
        t = {"id": _oid("trk"), "object": "Tracker", "mode": "test", "tracking_code": code,
             "status": status, "status_detail": "unknown" if status == "unknown" else "status_update",
             "created_at": now, "updated_at": now, "signed_by": None, "weight": None,
             "est_delivery_date": None, "shipment_id": shipment_id, "carrier": carrier,
             "tracking_details": [], "carrier_detail": None, "finalized": False, "is_return": False,
             "public_url": None}
        t["public_url"] = "%s/trackers/%s/public" % (self.base_url, t["id"])     # not served
        self._trackers[t["id"]] = t
        self._tracker_by_code[code] = t["id"]
        self._stats["trackers_created"] += 1
        return t

    def _add_detail(self, t, status, message=None, source=None):
        t["tracking_details"].append({
            "object": "TrackingDetail", "message": message or _STATUS_MESSAGE[status],
            "description": None, "status": status, "status_detail": "status_update",
            "datetime": _now_iso(), "source": source or t["carrier"],
            "tracking_location": {"object": "TrackingLocation", "city": "SAN FRANCISCO",
                                  "state": "CA", "country": "US", "zip": "94107"}})
        t["status"] = status
        t["status_detail"] = "status_update"
        t["updated_at"] = _now_iso()
        if status == "delivered":
            t["signed_by"] = t["signed_by"] or "John Tester"
        t["finalized"] = status in ("delivered", "return_to_sender", "failure", "canceled")

    def _tracking_code(self, carrier):
        while True:
            if carrier == "USPS":
                code = "9400" + "".join(secrets.choice("0123456789") for _ in range(18))
            elif carrier == "UPS":
                code = "1Z" + "".join(secrets.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ")
                                      for _ in range(16))
            else:
                code = "".join(secrets.choice("0123456789") for _ in range(12))
            if code not in self._tracker_by_code:
                return code

    # -- dispatch -------------------------------------------------------------
    def _handle(self, req):
        path = req.path
        if path.startswith("/_fake/"):
            return self._admin(req)
        m = _LABEL_RE.fullmatch(path)
        if m and req.method == "GET":
            with self._lock:
                known = m.group(1) in self._labels
            if known:
                return fakehttp.Response(200, _LABEL_PNG, ctype="image/png")
            return _error_response(404, "NOT_FOUND", "no such label")
        if path != "/v2" and not path.startswith("/v2/"):
            return _error_response(404, "NOT_FOUND", "The requested resource could not be found.")
        sub = path[3:]
        with self._lock:
            self._stats["requests"] += 1
            self._stats["by_path"][sub] += 1
            if req.method == "POST" and _BUY_RE.fullmatch(sub):
                self._stats["buy_calls"] += 1
        is_refund = req.method == "POST" and _REFUND_RE.fullmatch(sub) is not None
        f = self._faults.take(sub, req.method,
                              accept=lambda f: is_refund or not f.get("refuse_refund"))
        if f is None:
            return self._api(req, sub, False)
        with self._lock:
            self._stats["faults_served"] += 1
        refuse = bool(f.get("refuse_refund"))
        return fakehttp.fault_response(f, lambda: self._api(req, sub, refuse), self._fault_answer)

    def _fault_answer(self, f):
        st = f.get("http_status")
        if st is None:
            return None
        code = f.get("code") or ("RATE_LIMITED" if st == 429 else
                                 "INTERNAL_SERVER_ERROR" if st >= 500 else "BAD_REQUEST")
        msg = f.get("message") or ("Too many requests" if st == 429 else
                                   "Internal server error (injected)" if st >= 500 else
                                   "Bad request (injected)")
        hdrs = {"Retry-After": str(f["retry_after"])} if "retry_after" in f else None
        return _error_response(st, code, msg, headers=hdrs)

    def _auth(self, req):
        h = req.headers.get("authorization", "")
        scheme, _, cred = h.partition(" ")
        key = None
        if scheme.lower() == "basic" and cred:
            try:
                key = base64.b64decode(cred.strip(), validate=True).decode("utf-8").partition(":")[0]
            except (ValueError, UnicodeDecodeError):
                key = None
        elif scheme.lower() == "bearer" and cred.strip():
            key = cred.strip()
        if not key:
            return "APIKEY.REQUIRED", "No API key found. Use HTTP basic auth with your API key as " \
                "the user and an empty password, or Authorization: Bearer <key>."
        if not hmac.compare_digest(key.encode("utf-8"), self.api_key.encode("utf-8")):
            return "APIKEY.INACTIVE", "This API key is no longer active."
        return None

    _ROUTES = [(re.compile(r"/shipments"), "POST", "_create_shipment"),
               (_SHP_RE, "GET", "_get_shipment"), (_BUY_RE, "POST", "_buy"),
               (_REFUND_RE, "POST", "_refund"), (re.compile(r"/trackers"), "POST", "_create_tracker"),
               (_TRK_RE, "GET", "_get_tracker")]

    def _api(self, req, sub, refuse):
        bad = self._auth(req)
        if bad:
            with self._lock:
                self._stats["auth_failures"] += 1
            return _error_response(401, bad[0], bad[1])
        allowed = []
        for rx, meth, name in self._ROUTES:
            m = rx.fullmatch(sub)
            if m:
                if meth == req.method:
                    break
                allowed.append(meth)
        else:
            if allowed:
                return _error_response(405, "METHOD.NOT_ALLOWED", "Method not allowed: %s %s"
                                       % (req.method, req.path), headers={"Allow": ", ".join(allowed)})
            return _error_response(404, "NOT_FOUND", "The requested resource could not be found.")
        try:
            body = None
            if req.method == "POST":
                if not req.body.strip():
                    body = {}
                else:
                    try:
                        body = json.loads(req.body.decode("utf-8"))
                    except (UnicodeDecodeError, ValueError):
                        raise APIError(400, "BAD_REQUEST", "The request body is not valid JSON.")
                    if not isinstance(body, dict):
                        raise APIError(422, "PARAMETER.INVALID", "The request body must be a JSON object.")
            with self._lock:
                status, obj, after = getattr(self, name)(body, refuse, *m.groups())
        except APIError as e:
            return _error_response(e.status, e.code, str(e), e.errors)
        if after is not None:
            threading.Thread(target=after, daemon=True, name="fakecarrier-event").start()
        return fakehttp.Response(status, fakehttp.encode(obj))

    # -- API handlers (lock held); return (status, object, background job) ---
    def _create_shipment(self, body, refuse):
        sh = body.get("shipment")
        if not isinstance(sh, dict):
            raise APIError(422, "PARAMETER.REQUIRED", 'shipment is required: {"shipment":{...}}',
                           [{"field": "shipment", "message": "must be an object"}])
        to = _check_address("to_address", sh.get("to_address"))
        fr = _check_address("from_address", sh.get("from_address"))
        parcel = _check_parcel(sh.get("parcel"))
        ref = sh.get("reference")
        if ref is not None and (not isinstance(ref, str) or len(ref) > 200):
            raise APIError(422, "PARAMETER.INVALID", "reference must be a string of at most 200 "
                           "characters", [{"field": "reference", "message": "too long or not a string"}])
        opts = sh.get("options", {})
        if opts is None:
            opts = {}
        if not isinstance(opts, dict):
            raise APIError(422, "PARAMETER.INVALID", "options must be an object",
                           [{"field": "options", "message": "must be an object"}])
        now = _now_iso()
        sid = _oid("shp")
        for a in (to, fr):
            a.update(id=_oid("adr"), object="Address", mode="test", created_at=now, updated_at=now)
        parcel.update(id=_oid("prcl"), object="Parcel", mode="test", predefined_package=None,
                      created_at=now, updated_at=now)
        zone = _zone(fr["zip"], to["zip"])
        lb = max(1, math.ceil(parcel["weight"] / 16.0))
        rates = []
        for carrier, service, base, per_lb, per_zone, days in _SERVICES:
            cents = base + per_lb * lb + per_zone * zone
            r = {"id": _oid("rate"), "object": "Rate", "mode": "test", "carrier": carrier,
                 "service": service, "rate": _money(cents), "currency": "USD",
                 "retail_rate": _money(cents * 135 // 100), "retail_currency": "USD",
                 "list_rate": _money(cents * 115 // 100), "list_currency": "USD",
                 "delivery_days": days(zone), "est_delivery_days": days(zone),
                 "delivery_date": None, "delivery_date_guaranteed": False, "shipment_id": sid,
                 "carrier_account_id": _CARRIER_ACCOUNT[carrier], "created_at": now,
                 "updated_at": now}
            rates.append(r)
            self._rates[r["id"]] = sid
        s = {"id": sid, "object": "Shipment", "mode": "test", "reference": ref, "status": "unknown",
             "to_address": to, "from_address": fr, "return_address": fr, "buyer_address": to,
             "parcel": parcel, "options": opts, "is_return": False, "usps_zone": zone,
             "rates": rates, "selected_rate": None, "postage_label": None, "tracking_code": None,
             "_tracker_id": None, "insurance": None, "refund_status": None, "fees": [],
             "messages": [], "forms": [], "customs_info": None, "scan_form": None,
             "batch_id": None, "created_at": now, "updated_at": now}
        self._shipments[sid] = s
        self._stats["shipments_created"] += 1
        return 201, self._render(s), None

    def _shipment(self, sid):
        s = self._shipments.get(sid)
        if s is None:
            raise APIError(404, "NOT_FOUND", "The requested resource could not be found.")
        return s

    def _get_shipment(self, body, refuse, sid):
        return 200, self._render(self._shipment(sid)), None

    def _buy(self, body, refuse, sid):
        s = self._shipment(sid)
        if s["postage_label"] is not None:
            raise APIError(422, "SHIPMENT.POSTAGE.EXISTS", "Postage already exists for this shipment.")
        rate = body.get("rate")
        rid = rate.get("id") if isinstance(rate, dict) else None
        if not isinstance(rid, str) or not rid:
            raise APIError(422, "PARAMETER.REQUIRED", 'rate is required: {"rate":{"id":"rate_..."}}',
                           [{"field": "rate", "message": "rate.id is required"}])
        chosen = [r for r in s["rates"] if r["id"] == rid]
        if not chosen:
            raise APIError(422, "SHIPMENT.RATE.INVALID", "Rate %s is not a rate of shipment %s."
                           % (rid[:80], sid), [{"field": "rate", "message": "unknown rate id"}])
        ins = body.get("insurance")
        if ins is not None:
            x = _number(ins)
            if x is None or x > 100000:
                raise APIError(422, "PARAMETER.INVALID", "insurance must be an amount 0..100000",
                               [{"field": "insurance", "message": "not an amount"}])
            s["insurance"] = "%.2f" % x
        r = chosen[0]
        now = _now_iso()
        code = self._tracking_code(r["carrier"])
        plid = _oid("pl")
        self._labels.add(plid)
        s["selected_rate"] = r
        s["tracking_code"] = code
        s["postage_label"] = {"id": plid, "object": "PostageLabel",
                              "label_url": "%s/labels/%s.png" % (self.base_url, plid),
                              "label_pdf_url": None, "label_zpl_url": None, "label_epl2_url": None,
                              "label_size": "4x6", "label_file_type": "image/png",
                              "label_resolution": 300, "label_type": "default",
                              "label_date": now, "integrated_form": "none",
                              "created_at": now, "updated_at": now}
        t = self._new_tracker(code, r["carrier"], "pre_transit", sid)
        s["_tracker_id"] = t["id"]
        s["fees"] = [{"object": "Fee", "type": "LabelFee", "amount": "0.00000", "charged": True,
                      "refunded": False},
                     {"object": "Fee", "type": "PostageFee", "amount": "%s000" % r["rate"],
                      "charged": True, "refunded": False}]
        s["updated_at"] = now
        self._stats["purchases"] += 1
        if s["reference"] is not None:
            self._stats["purchases_by_reference"][s["reference"]] += 1
        return 200, self._render(s), None

    def _refund(self, body, refuse, sid):
        s = self._shipment(sid)
        if s["postage_label"] is None:
            raise APIError(422, "SHIPMENT.REFUND.NOT_BOUGHT", "The shipment has no postage to refund.")
        if s["refund_status"] in ("submitted", "refunded"):
            return 200, self._render(s), None
        s["updated_at"] = _now_iso()
        if refuse or self._refuse:
            s["refund_status"] = "rejected"
            self._stats["refunds"][sid] = "rejected"
            return 200, self._render(s), None
        s["refund_status"] = "submitted"
        answer = self._render(s)
        # the carrier accepts at once: stored "refunded", answer "submitted"
        s["refund_status"] = "refunded"
        for fee in s["fees"]:
            if fee["type"] == "PostageFee":
                fee["refunded"] = True
        self._stats["refunds"][sid] = "refunded"
        url, secret = self._webhook
        job = None
        if url:
            eid, ev = self._make_event("refund.successful", self._render(s),
                                       {"refund_status": "submitted"}, url)
            job = lambda: self._deliver(eid, ev)     # noqa: E731
        return 200, answer, job

    def _create_tracker(self, body, refuse):
        tr = body.get("tracker")
        code = tr.get("tracking_code") if isinstance(tr, dict) else None
        if not isinstance(code, str) or not 1 <= len(code.strip()) <= 64:
            raise APIError(422, "PARAMETER.REQUIRED", 'tracker.tracking_code is required '
                           '(1..64 characters): {"tracker":{"tracking_code":"...","carrier":"..."}}',
                           [{"field": "tracking_code", "message": "required"}])
        code = code.strip()
        carrier = tr.get("carrier", "USPS")
        if not isinstance(carrier, str) or not 1 <= len(carrier) <= 64:
            raise APIError(422, "PARAMETER.INVALID", "tracker.carrier must be a string",
                           [{"field": "carrier", "message": "not a string"}])
        tid = self._tracker_by_code.get(code)
        if tid is not None:
            return 200, json.loads(json.dumps(self._trackers[tid])), None
        status = MAGIC_TRACKING_CODES.get(code, "unknown")
        t = self._new_tracker(code, carrier, "unknown")
        if status != "unknown":
            if status != "pre_transit":
                self._add_detail(t, "pre_transit")
            self._add_detail(t, status)
        return 201, json.loads(json.dumps(t)), None

    def _get_tracker(self, body, refuse, tid):
        t = self._trackers.get(tid)
        if t is None:
            raise APIError(404, "NOT_FOUND", "The requested resource could not be found.")
        return 200, json.loads(json.dumps(t)), None

    # -- events and webhooks --------------------------------------------------
    def _make_event(self, description, result, previous, url):
        """Store an Event; returns (event id, body bytes).  Lock held."""
        now = _now_iso()
        ev = {"id": _oid("evt"), "object": "Event", "description": description, "mode": "test",
              "previous_attributes": previous, "result": result,
              "pending_urls": [url] if url else [], "completed_urls": [], "user_id": "user_fake",
              "status": "pending" if url else "completed", "created_at": now, "updated_at": now}
        body = fakehttp.encode(ev)
        self._events[ev["id"]] = (description, body)
        while len(self._events) > MAX_EVENTS_KEPT:
            self._events.popitem(last=False)
        return ev["id"], body

    def _deliver(self, event_id, body):
        """POST an event to the webhook URL (blocking); records and returns
        {"event_id","delivered","status","body","error"}."""
        with self._lock:
            url, secret = self._webhook
            desc = self._events.get(event_id, ("?",))[0]
        out = {"event_id": event_id, "delivered": False, "status": None, "body": "", "error": None}
        if not url:
            out["error"] = "no webhook URL configured"
        else:
            u = urllib.parse.urlsplit(url)
            target = (u.path or "/") + ("?" + u.query if u.query else "")
            try:
                if u.scheme == "https":
                    ctx = ssl.create_default_context(cafile=self.cafile_for_webhooks)
                    c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx,
                                                    timeout=WEBHOOK_TIMEOUT)
                else:
                    c = http.client.HTTPConnection(u.hostname, u.port, timeout=WEBHOOK_TIMEOUT)
                hdrs = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
                if u.username is not None:
                    cred = "%s:%s" % (urllib.parse.unquote(u.username),
                                      urllib.parse.unquote(u.password or ""))
                    hdrs["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
                if secret:
                    hdrs["X-Hmac-Signature"] = sign_webhook(secret, body)
                try:
                    c.request("POST", target, body=body, headers=hdrs)
                    r = c.getresponse()
                    data = r.read(500)
                    out["status"] = r.status
                    out["body"] = data.decode("utf-8", "replace")
                    out["delivered"] = 200 <= r.status < 300
                finally:
                    c.close()
            except (OSError, http.client.HTTPException, ssl.SSLError) as e:
                out["error"] = "%s: %s" % (type(e).__name__, e)
        with self._lock:
            self._stats["webhooks"].append(dict(out, description=desc, url=url, time=_now_iso()))
        self._log("webhook %s %s -> %s" % (desc, event_id, out["status"] or out["error"]))
        return out

    def track(self, tracking_code, status, message=None, send=True):
        """Advance a tracker (admin): append a TrackingDetail, set status and
        send a tracker.updated Event (blocking).  Returns the delivery result
        plus the tracker."""
        if status not in TRACKER_STATUSES:
            raise ValueError("status must be one of " + ", ".join(TRACKER_STATUSES))
        if message is not None and (not isinstance(message, str) or len(message) > 500):
            raise ValueError("message must be a string of at most 500 characters")
        if not isinstance(send, bool):
            raise ValueError("send must be a boolean")
        with self._lock:
            tid = self._tracker_by_code.get(tracking_code) if isinstance(tracking_code, str) else None
            if tid is None:
                raise KeyError(tracking_code)
            t = self._trackers[tid]
            old = t["status"]
            self._add_detail(t, status, message)
            for s in self._shipments.values():
                if s["_tracker_id"] == tid:
                    s["status"] = status
                    s["updated_at"] = t["updated_at"]
            tracker = json.loads(json.dumps(t))
            url = self._webhook[0]
            eid, body = self._make_event("tracker.updated", tracker, {"status": old}, url)
        if send:
            out = self._deliver(eid, body)
        else:
            out = {"event_id": eid, "delivered": False, "status": None, "body": "",
                   "error": "not sent (send false)"}
        out["tracker"] = tracker
        return out

    def resend(self, event_id):
        """Send a stored event again, the same bytes (a replay)."""
        with self._lock:
            ev = self._events.get(event_id)
        if ev is None:
            raise KeyError(event_id)
        return self._deliver(event_id, ev[1])

    # -- admin ----------------------------------------------------------------
    _ADMIN = {"/_fake/webhook": "POST", "/_fake/track": "POST", "/_fake/resend": "POST",
              "/_fake/refuse_refunds": "POST", "/_fake/faults": "POST", "/_fake/reset": "POST",
              "/_fake/stats": "GET", "/_fake/shipments": "GET"}

    def _admin(self, req):
        def ok(obj):
            return fakehttp.Response(200, fakehttp.encode(obj))

        def err(msg, status=400):
            return fakehttp.Response(status, fakehttp.encode({"error": msg}))
        p = req.path
        want = self._ADMIN.get(p)
        if want is None:
            return err("unknown admin path %s" % p, 404)
        if req.method != want:
            r = err("method not allowed", 405)
            r.headers = {"Allow": want}
            return r
        body = {}
        if want == "POST" and req.body.strip():
            try:
                body = json.loads(req.body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                return err("body is not JSON")
            if not isinstance(body, dict):
                return err("body must be a JSON object")

        def keys(*allowed):
            extra = set(body) - set(allowed)
            if extra:
                raise ValueError("unknown keys: %s" % ", ".join(sorted(extra)))
        try:
            if p == "/_fake/stats":
                return ok(self.stats())
            if p == "/_fake/shipments":
                return ok({"shipments": self.shipments()})
            if p == "/_fake/reset":
                self.reset()
                return ok({"ok": True})
            if p == "/_fake/faults":
                return ok({"queued": self.fault(**body)})
            if p == "/_fake/refuse_refunds":
                keys("on")
                self.refuse_refunds(body.get("on", True))
                return ok({"refuse_refunds": body.get("on", True)})
            if p == "/_fake/webhook":
                keys("url", "secret")
                self.set_webhook(body.get("url"), body.get("secret", ""))
                return ok({"url": body.get("url")})
            if p == "/_fake/track":
                keys("tracking_code", "status", "message", "send")
                args = (body.get("tracking_code"), body.get("status"), body.get("message"),
                        body.get("send", True))
                if body.get("status") not in TRACKER_STATUSES:
                    raise ValueError("status must be one of " + ", ".join(TRACKER_STATUSES))
                with self._lock:
                    if args[0] not in self._tracker_by_code:
                        return err("unknown tracking_code %r" % (args[0],), 404)
                r = fakehttp.Response()
                r.offload = lambda: self._offloaded(self.track, *args)
                return r
            if p == "/_fake/resend":
                keys("event_id")
                eid = body.get("event_id")
                with self._lock:
                    if eid not in self._events:
                        return err("unknown event_id %r" % (eid,), 404)
                r = fakehttp.Response()
                r.offload = lambda: self._offloaded(self.resend, eid)
                return r
        except (ValueError, TypeError) as e:
            return err(str(e))
        return err("unreachable", 500)

    @staticmethod
    def _offloaded(fn, *args):
        """Run a blocking admin call in a worker thread (the loop keeps
        serving, e.g. the receiver calling back while handling the webhook)."""
        try:
            return fakehttp.Response(200, fakehttp.encode(fn(*args)))
        except KeyError as e:
            return fakehttp.Response(404, fakehttp.encode({"error": "unknown %s" % (e,)}))
        except (ValueError, TypeError) as e:
            return fakehttp.Response(400, fakehttp.encode({"error": str(e)}))


def admin_request(base_url, method, path, body=None, cafile=None, timeout=30, headers=None):
    """One request to a running fake (admin or API); (status, JSON or bytes).
    base_url may be fake.url (the /v2 suffix is dropped)."""
    if base_url.endswith("/v2"):
        base_url = base_url[:-3]
    return fakehttp.client_request(base_url, method, path, body, cafile, timeout, headers)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Fake EasyPost API v2 server (HTTPS).")
    ap.add_argument("--port", type=int, default=0, help="TCP port (0 = pick a free one)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--cert", required=True, help="server certificate (PEM)")
    ap.add_argument("--key", required=True, help="server private key (PEM)")
    ap.add_argument("--api-key", default=DEFAULT_API_KEY)
    ap.add_argument("--webhook-url", default=None, help="where events are POSTed (http/https)")
    ap.add_argument("--webhook-secret", default="", help="HMAC secret of X-Hmac-Signature")
    ap.add_argument("--webhook-cafile", default=None, help="CA file to verify an https webhook URL")
    ap.add_argument("--idle-timeout", type=float, default=60.0)
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    if not 0 <= a.port <= 65535:
        ap.error("--port must be 0..65535")
    try:
        fake = FakeCarrier(a.cert, a.key, api_key=a.api_key, webhook_url=a.webhook_url,
                           webhook_secret=a.webhook_secret, cafile_for_webhooks=a.webhook_cafile,
                           port=a.port, host=a.host, idle_timeout=a.idle_timeout, verbose=a.verbose)
    except ValueError as e:
        ap.error(str(e))
    return fakehttp.run_until_signal(fake)


if __name__ == "__main__":
    sys.exit(main())
