# Creators and shops: the operator's commands and API, connecting a shop
# through TikTok's authorization flow against the fake (its authorization
# page, token endpoints and Get Authorized Shops: tests/faketiktok/AUTH.md),
# the state's single use and expiry, renewing tokens before they expire and
# when TikTok says one expired, a refused renewal pausing the shop with its
# events kept, two daemons renewing once, and /api/shops.
#
# Facts relied on (TikTok Shop partner docs "Authorization overview", and
# SDK models seen with the search tool): the seller comes back to the app's
# redirect URL with ?code=&state=; GET auth.tiktok-shops.com/api/v2/token/get
# with app_key, app_secret, auth_code, grant_type=authorized_code; /refresh
# with refresh_token, grant_type=refresh_token; access_token_expire_in is a
# Unix timestamp; Get Authorized Shops is /authorization/202309/shops with
# data.shops[] {id, name, region, cipher}.
#
# Runs under Debian's /usr/bin/python3 (see tests/run-checks.sh).

import http.client
import json
import os
import ssl
import time
import urllib.parse

import pytest

import ofharness
from ofcheck import assert_error, metric_value
from test_api import auth
from test_sync import ADMIN, APP_KEY, CIPHER, SECRET, TOKEN, certs, hook, metrics, sql, wait_sql  # noqa: F401
from test_webhook import SHOP

import sys
sys.path.insert(0, os.path.join(ofharness.srcdir(), "tests", "faketiktok"))
from faketiktok import FakeTikTok  # noqa: E402

JWT_SECRET = "api-test-secret-0123456789"
SERVICE_ID = "7000000000000000001"


@pytest.fixture
def fake(certs):
    f = FakeTikTok(os.path.join(certs, "server.pem"), os.path.join(certs, "server.key"),
                   app_key=APP_KEY, app_secret=SECRET, access_token=TOKEN,
                   shop_cipher=CIPHER, service_id=SERVICE_ID).start()
    f.auth(shops=[{"id": SHOP, "name": "Demo Shop", "region": "US", "cipher": CIPHER}])
    yield f
    f.stop()


def connector(make_daemon, fake, certs, tiktok=None, dbname=None, migrate=True, **kw):
    """A daemon that can connect shops through the fake; the fake sends sellers back to it."""
    d = make_daemon(dbname=dbname, overrides={"auth": {"jwt_secret": JWT_SECRET,
                                                        "jwt_audience": "authenticated"},
                                               "ratelimit": {"rate": "0"},
                                               "admin": {"token": ADMIN}}, **kw)
    secret = os.path.join(d.dir, "app_secret")
    with open(secret, "w") as f:
        f.write(SECRET + "\n")
    os.chmod(secret, 0o600)
    conf = {"api_base": fake.url, "ca_file": os.path.join(certs, "ca.pem"),
            "retry_base": "100ms", "retry_max": "400ms", "claim_interval": "300ms",
            "app_key": APP_KEY, "app_secret_file": secret, "service_id": SERVICE_ID,
            "authorize_url": fake.url + "/open/authorize", "auth_base": fake.url}
    conf.update(tiktok or {})
    d.conf["tiktok"].update(conf)
    d.write_config()
    if migrate:
        d.migrate()
    d.start(migrate=False)
    fake.auth(redirect_url="http://127.0.0.1:%d/oauth/tiktok/callback" % d.port)
    return d


def creator(d, email="seller@example.com", *extra):
    r = d.run_cli("--create-creator", email, *extra)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def fake_get(fake, certs, url):
    """GET a URL of the fake without following its redirect."""
    u = urllib.parse.urlsplit(url)
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=10)
    try:
        c.request("GET", u.path + ("?" + u.query if u.query else ""))
        r = c.getresponse()
        return r.status, r.getheader("Location"), r.read()
    finally:
        c.close()


def authorize(d, fake, certs, who):
    """The creator opens the connect link; TikTok approves: the callback path it sends back."""
    r = d.get("/api/shops/connect", headers=auth(who))
    assert r.status == 302, r
    link = r.header("Location")
    assert link == r.json()["authorize_url"] and link.startswith(fake.url + "/open/authorize?")
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["service_id"] == [SERVICE_ID]
    status, back, _ = fake_get(fake, certs, link)
    assert status == 302, back
    u = urllib.parse.urlsplit(back)
    assert u.port == d.port and u.path == "/oauth/tiktok/callback"
    return u.path + "?" + u.query


def connect(d, fake, certs, who):
    r = d.get(authorize(d, fake, certs, who))
    assert r.status == 200, r.text
    assert "Connected: Demo Shop (%s)" % SHOP in r.text
    return r


def shops(d, who):
    r = d.get("/api/shops", headers=auth(who))
    assert r.status == 200, r
    return r.json()["shops"]


def test_creators_from_the_command_line(make_daemon):
    d = make_daemon()
    d.migrate()
    cid = creator(d, "one@example.com", "--name", "Shop One")
    supa = "0b9c6f1e-2d3a-4b5c-8d7e-9f0a1b2c3d4e"
    assert creator(d, "two@example.com", "--id", supa.upper()) == supa
    r = d.run_cli("--list-creators")
    assert r.returncode == 0
    lines = [ln.split("\t") for ln in r.stdout.strip().split("\n")]
    assert lines[0] == ["ID", "EMAIL", "NAME", "CREATED", "SHOPS"]
    assert {(ln[0], ln[1], ln[2], ln[4]) for ln in lines[1:]} == {
        (cid, "one@example.com", "Shop One", "0"), (supa, "two@example.com", "two", "0")}
    dup = d.run_cli("--create-creator", "one@example.com")
    assert dup.returncode == 1 and "exists already" in dup.stderr
    for bad in (["--create-creator", "no-at-sign"], ["--create-creator", "a@b", "--name", ""],
                ["--create-creator", "a@b.c", "--id", "nope"], ["--list-creators", "--name", "x"]):
        r = d.run_cli(*bad)
        assert r.returncode == 2, (bad, r.stderr)
    assert sql(d, "SELECT count(*) FROM audit_log WHERE action = 'creator.created'") == [(2,)]


def test_creators_operator_api(make_daemon):
    d = make_daemon(overrides={"admin": {"token": ADMIN}})
    d.start()
    adm = {"Authorization": "Bearer " + ADMIN, "Content-Type": "application/json"}
    r = d.post("/api/admin/creators", json.dumps({"email": "a@example.com", "name": "A"}), headers=adm)
    assert r.status == 201, r
    a = r.json()
    assert a["email"] == "a@example.com" and a["name"] == "A" and a["shops"] == 0
    supa = "0b9c6f1e-2d3a-4b5c-8d7e-9f0a1b2c3d4e"
    r = d.post("/api/admin/creators", json.dumps({"email": "b@example.com", "id": supa}), headers=adm)
    assert r.status == 201 and r.json()["id"] == supa and r.json()["name"] == "b"
    assert_error(d.post("/api/admin/creators", json.dumps({"email": "a@example.com"}), headers=adm),
                 409, "conflict")
    for bad in ({"email": "x"}, {}, {"email": "c@d.e", "id": "z"}, {"email": "c@d.e", "extra": 1},
                {"email": "c@d.e", "name": "x" * 256}):
        assert_error(d.post("/api/admin/creators", json.dumps(bad), headers=adm), 400, "invalid_body")
    assert_error(d.post("/api/admin/creators", json.dumps({"email": "c@d.e"}),
                        headers={"Content-Type": "application/json"}), 401, "unauthorized")
    page = d.get("/api/admin/creators?limit=1", headers=adm).json()
    assert len(page["creators"]) == 1 and page["next_after"] is not None
    rest = d.get("/api/admin/creators?after=" + page["next_after"], headers=adm).json()
    assert {c["email"] for c in page["creators"] + rest["creators"]} == {"a@example.com", "b@example.com"}
    assert rest["next_after"] is None
    assert_error(d.get("/api/admin/creators?limit=0", headers=adm), 400, "invalid_parameter")
    assert_error(d.get("/api/admin/creators?after=x", headers=adm), 400, "invalid_parameter")


def test_connect_end_to_end_then_orders_flow(make_daemon, fake, certs):
    d = connector(make_daemon, fake, certs)
    who = creator(d)
    page = connect(d, fake, certs, who)
    assert page.header("Content-Security-Policy").startswith("default-src 'none'")
    row = sql(d, "SELECT s.creator_id::text, s.shop_cipher, s.shop_name, s.region, s.status::text,"
                 " s.access_token IS NULL, a.open_id, a.version, a.access_token LIKE 'ROW_%%',"
                 " a.access_token_expires_at > now() + interval '6 days' FROM shops s"
                 " JOIN tiktok_authorizations a ON a.id = s.authorization_id WHERE s.tiktok_shop_id = %s",
              (SHOP,))
    assert row == [(who, CIPHER, "Demo Shop", "US", "active", True, "fake-open-id-1", 1, True, True)]
    assert sql(d, "SELECT count(*) FROM oauth_states") == [(0,)]
    listed = shops(d, who)
    assert len(listed) == 1 and listed[0]["status"] == "active" and listed[0]["authorization"] == "active"
    text = json.dumps(listed)
    for tok in sql(d, "SELECT access_token, refresh_token FROM tiktok_authorizations")[0]:
        assert tok not in text
    # The shop works with the issued token: a webhook's order is fetched and stored.
    fake.seed({"id": "9101", "update_time": int(time.time())})
    hook(d, "9101", "c-1")
    wait_sql(d, "SELECT count(*) FROM orders WHERE tiktok_order_id = '9101' AND user_id = %s", 1,
             args=(who,))
    assert fake.stats()["token_get_calls"] == 1
    # Connecting again (the same seller) renews the grant; nothing is duplicated.
    connect(d, fake, certs, who)
    assert sql(d, "SELECT count(*), max(a.version) FROM shops s JOIN tiktok_authorizations a"
                  " ON a.id = s.authorization_id") == [(1, 2)]


def test_state_is_single_use_signed_and_short_lived(make_daemon, fake, certs):
    d = connector(make_daemon, fake, certs, tiktok={"state_lifetime": "2s"})
    who = creator(d)
    back = authorize(d, fake, certs, who)
    assert d.get(back).status == 200
    replay = d.get(back)
    assert replay.status == 400 and "used already" in replay.text
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(back).query)
    state = q["state"][0]
    forged = state[:10] + ("A" if state[10] != "A" else "B") + state[11:]
    for bad_state in (forged, "x" * 75, "", "nope"):
        r = d.get("/oauth/tiktok/callback?" + urllib.parse.urlencode({"code": "c", "state": bad_state}))
        assert r.status == 400, (bad_state, r.text)
    r = d.get("/oauth/tiktok/callback?" + urllib.parse.urlencode({"code": "c", "state": forged}))
    assert "altered or forged" in r.text
    assert d.get("/oauth/tiktok/callback?code=abc").status == 400
    assert d.get("/oauth/tiktok/callback").status == 400
    # Expired: the link of a state made 2 s ago.
    late = authorize(d, fake, certs, who)
    time.sleep(2.2)
    r = d.get(late)
    assert r.status == 400 and "expired" in r.text
    # An expired authorization code: TikTok refuses it, nothing is stored.
    fake.auth(code_lifetime=0.2)
    back = authorize(d, fake, certs, who)
    time.sleep(0.5)
    r = d.get(back)
    assert r.status == 400 and "TikTok refused the authorization code" in r.text, r.text
    assert sql(d, "SELECT count(*), max(version) FROM tiktok_authorizations") == [(1, 1)]
    # TikTok said no at its page.
    r = d.get("/oauth/tiktok/callback?error=access_denied&state=" + state)
    assert r.status == 400 and "did not authorize" in r.text


def test_shop_of_another_creator_is_refused_and_nothing_stored(make_daemon, fake, certs):
    d = connector(make_daemon, fake, certs)
    a = creator(d, "a@example.com")
    b = creator(d, "b@example.com")
    connect(d, fake, certs, a)
    before = sql(d, "SELECT access_token, version FROM tiktok_authorizations")
    r = d.get(authorize(d, fake, certs, b))
    assert r.status == 409 and "connected to another creator" in r.text, r.text
    assert sql(d, "SELECT access_token, version FROM tiktok_authorizations") == before
    assert sql(d, "SELECT creator_id::text FROM shops") == [(a,)]
    assert shops(d, b) == []
    # Someone unknown to the service gets no link.
    assert_error(d.get("/api/shops/connect", headers=auth("5b3f5d8e-0000-4000-8000-000000000001")),
                 403, "unknown_creator")


def test_connect_not_configured_is_501(make_daemon):
    d = make_daemon(overrides={"auth": {"jwt_secret": JWT_SECRET, "jwt_audience": "authenticated"}})
    d.start()
    assert_error(d.get("/api/shops/connect", headers=auth("5b3f5d8e-0000-4000-8000-000000000001")),
                 501, "not_configured")
    assert d.get("/oauth/tiktok/callback?code=a&state=b").status == 501


def test_token_expiring_in_a_burst_is_renewed_once_and_nothing_lost(make_daemon, fake, certs):
    d = connector(make_daemon, fake, certs)
    who = creator(d)
    connect(d, fake, certs, who)
    now = int(time.time())
    fake.seed([{"id": str(9200 + i), "update_time": now} for i in range(60)])
    fake.auth(expire_access_tokens=True)
    for i in range(60):
        hook(d, str(9200 + i), "burst-%d" % i)
    wait_sql(d, "SELECT count(*) FROM orders WHERE tiktok_order_id LIKE '92%%'", 60, timeout=40)
    assert sql(d, "SELECT count(*) FROM webhook_events WHERE processed_at IS NULL OR dead_at IS NOT NULL"
               ) == [(0,)]
    assert fake.stats()["token_refresh_calls"] == 1
    assert sql(d, "SELECT version, status FROM tiktok_authorizations") == [(2, "active")]
    assert sql(d, "SELECT status::text FROM shops") == [("active",)]
    assert metric_value(metrics(d), "orderflow_tiktok_token_renewals_total", outcome="renewed") == 1


def test_refused_renewal_pauses_keeps_events_and_reconnect_resumes(make_daemon, fake, certs):
    d = connector(make_daemon, fake, certs)
    who = creator(d)
    connect(d, fake, certs, who)
    fake.seed({"id": "9301", "update_time": int(time.time())})
    fake.auth(revoke=True)
    hook(d, "9301", "rv-1")
    wait_sql(d, "SELECT status::text FROM shops", "paused")
    reason = sql(d, "SELECT paused_reason FROM shops")[0][0]
    assert "TikTok refused to renew" in reason and "connect the shop again" in reason
    assert sql(d, "SELECT status FROM tiktok_authorizations") == [("refused",)]
    time.sleep(1)
    assert sql(d, "SELECT processed_at IS NULL, dead_at IS NULL FROM webhook_events") == [(True, True)]
    inbox = d.get("/api/workflows", headers=auth(who)).json()
    assert [(s["tiktok_shop_id"], s["action"], s["pending_events"]) for s in inbox["shops"]] == \
        [(SHOP, "reconnect", 1)]
    sid = shops(d, who)[0]["id"]
    assert_error(d.post("/api/shops/%s/resume" % sid, headers=auth(who)), 409, "conflict")
    # Connecting again gives new tokens: the shop runs and its event is processed.
    connect(d, fake, certs, who)
    wait_sql(d, "SELECT count(*) FROM orders WHERE tiktok_order_id = '9301'", 1, timeout=30)
    assert sql(d, "SELECT s.status::text, a.status FROM shops s JOIN tiktok_authorizations a"
                  " ON a.id = s.authorization_id") == [("active", "active")]
    assert d.get("/api/workflows", headers=auth(who)).json()["shops"] == []


def test_renewed_before_expiry_on_the_wheel(make_daemon, fake, certs):
    fake.auth(access_token_lifetime=4)
    d = connector(make_daemon, fake, certs, tiktok={"token_refresh_margin": "1s"})
    who = creator(d)
    connect(d, fake, certs, who)
    first = sql(d, "SELECT access_token FROM tiktok_authorizations")[0][0]
    wait_sql(d, "SELECT version FROM tiktok_authorizations", 2, timeout=8)
    assert sql(d, "SELECT access_token <> %s, access_token_expires_at > now(), status"
                  " FROM tiktok_authorizations", (first,)) == [(True, True, "active")]
    fake.seed({"id": "9401", "update_time": int(time.time())})
    hook(d, "9401", "wh-1")
    wait_sql(d, "SELECT count(*) FROM orders WHERE tiktok_order_id = '9401'", 1)
    assert sql(d, "SELECT action FROM audit_log WHERE action = 'authorization.renewed' LIMIT 1") == \
        [("authorization.renewed",)]


def test_two_daemons_renew_once(make_daemon, session_pg, fake, certs):
    fake.auth(access_token_lifetime=6)
    d1 = connector(make_daemon, fake, certs, tiktok={"token_refresh_margin": "1s"})
    d2 = connector(make_daemon, fake, certs, tiktok={"token_refresh_margin": "1s"},
                   dbname=d1.dbname, migrate=False)
    fake.auth(redirect_url="http://127.0.0.1:%d/oauth/tiktok/callback" % d1.port)
    who = creator(d1)
    connect(d1, fake, certs, who)
    # Both daemons load the shop (within webhook.shop_refresh) and both own a timer for it.
    time.sleep(0.5)
    wait_sql(d1, "SELECT version FROM tiktok_authorizations", 2, timeout=12)
    time.sleep(1.5)
    assert fake.stats()["token_refresh_calls"] == 1
    assert sql(d1, "SELECT version FROM tiktok_authorizations") == [(2,)]


def test_upcoming_expiry_webhook_renews_and_deauthorization_revokes(make_daemon, fake, certs):
    from test_sync import post
    from test_webhook import envelope
    d = connector(make_daemon, fake, certs)
    who = creator(d)
    connect(d, fake, certs, who)
    body = json.loads(envelope(nid="exp-7"))
    body["type"] = 7
    body["data"] = {"message": "authorization expires soon"}
    # The connect page came once every worker had loaded the shop: accepted at once.
    assert post(d, json.dumps(body).encode()).status == 200
    wait_sql(d, "SELECT version FROM tiktok_authorizations", 2)
    wait_sql(d, "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL", 1)
    assert sql(d, "SELECT status::text FROM shops") == [("active",)]
    body["type"] = 6
    body["tts_notification_id"] = "deauth-6"
    assert post(d, json.dumps(body).encode()).status == 200
    wait_sql(d, "SELECT status FROM tiktok_authorizations", "revoked")
    assert sql(d, "SELECT status::text FROM shops") == [("deauthorized",)]
    sid = shops(d, who)[0]["id"]
    r = d.post("/api/shops/%s/resume" % sid, headers=auth(who))
    assert_error(r, 409, "conflict")
    assert "deauthorized" in r.json()["error"]["message"]


def test_pause_resume_disconnect_and_creators_kept_apart(make_daemon, fake, certs):
    import test_openapi
    d = connector(make_daemon, fake, certs)
    a = creator(d, "a@example.com")
    b = creator(d, "b@example.com")
    connect(d, fake, certs, a)
    sid = shops(d, a)[0]["id"]
    js = {"Content-Type": "application/json"}
    tried = {
        ("/api/shops", "get"): lambda: shops(d, b),
        ("/api/shops/connect", "get"): lambda: d.get("/api/shops/connect",
                                                     headers=dict(auth(b), Accept="application/json")),
        ("/api/shops/{id}", "delete"): lambda: d.request("DELETE", "/api/shops/" + sid, headers=auth(b)),
        ("/api/shops/{id}/pause", "post"): lambda: d.post("/api/shops/%s/pause" % sid, headers=auth(b)),
        ("/api/shops/{id}/resume", "post"): lambda: d.post("/api/shops/%s/resume" % sid, headers=auth(b)),
    }
    routes = {(p, m) for p, ms in test_openapi.routes().items() if p.startswith("/api/shops")
              for m in ms}
    assert routes == set(tried), "a new /api/shops route needs a line here: %r" % (routes ^ set(tried))
    assert tried[("/api/shops", "get")]() == []
    link = tried[("/api/shops/connect", "get")]()
    assert link.status == 200 and link.header("Location") is None
    for k in (("/api/shops/{id}", "delete"), ("/api/shops/{id}/pause", "post"),
              ("/api/shops/{id}/resume", "post")):
        assert_error(tried[k](), 404, "not_found")
    assert sql(d, "SELECT status::text FROM shops") == [("active",)]
    # A's own: pause (a reason), the event waits; resume, it is processed.
    r = d.post("/api/shops/%s/pause" % sid, json.dumps({"reason": "holiday"}), headers=dict(auth(a), **js))
    assert_error(d.post("/api/shops/%s/pause" % sid, json.dumps({"reason": "x" * 256}),
                        headers=dict(auth(a), **js)), 400, "invalid_body")
    assert r.status == 200 and r.json()["status"] == "paused" and r.json()["paused_reason"] == "holiday"
    assert_error(d.post("/api/shops/%s/pause" % sid, json.dumps({"x": 1}), headers=dict(auth(a), **js)),
                 400, "invalid_body")
    fake.seed({"id": "9501", "update_time": int(time.time())})
    hook(d, "9501", "p-1")
    time.sleep(1.5)
    assert sql(d, "SELECT count(*) FROM orders") == [(0,)]
    r = d.post("/api/shops/%s/resume" % sid, headers=auth(a))
    assert r.status == 200 and r.json()["status"] == "active" and r.json()["paused_reason"] is None
    wait_sql(d, "SELECT count(*) FROM orders", 1)
    # Disconnect: no token left, the orders stay, and it cannot be resumed.
    r = d.request("DELETE", "/api/shops/" + sid, headers=auth(a))
    assert r.status == 200 and r.json()["status"] == "disconnected" and r.json()["authorization"] == "manual"
    assert sql(d, "SELECT count(*) FROM tiktok_authorizations") == [(0,)]
    assert sql(d, "SELECT access_token IS NULL, authorization_id IS NULL FROM shops") == [(True, True)]
    assert sql(d, "SELECT count(*) FROM orders") == [(1,)]
    assert_error(d.post("/api/shops/%s/resume" % sid, headers=auth(a)), 409, "conflict")
    assert d.request("DELETE", "/api/shops/" + sid, headers=auth(a)).status == 200
    # Its webhooks are no longer taken: nothing would ever process them.
    from test_sync import post
    from test_webhook import envelope
    ofharness.wait_for(lambda: post(d, envelope(nid="after-1", order="9502")).status == 401, 5)
    assert_error(d.post("/api/shops/not-a-uuid/pause", headers=auth(a)), 400, "invalid_parameter")
    assert sql(d, "SELECT action FROM audit_log WHERE entity_type = 'shop' ORDER BY id") == \
        [("shop.connected",), ("shop.paused",), ("shop.resumed",), ("shop.disconnected",)]


def test_renewal_that_fails_is_retried_and_pauses_nothing(make_daemon, fake, certs):
    d = connector(make_daemon, fake, certs)
    who = creator(d)
    connect(d, fake, certs, who)
    fake.seed({"id": "9601", "update_time": int(time.time())})
    fake.fault(path="/api/v2/token/refresh", http_status=503, count=2)
    fake.auth(expire_access_tokens=True)
    hook(d, "9601", "f-1")
    wait_sql(d, "SELECT count(*) FROM orders WHERE tiktok_order_id = '9601'", 1, timeout=30)
    assert fake.stats()["token_refresh_calls"] == 3
    assert sql(d, "SELECT s.status::text, a.status, a.version FROM shops s"
                  " JOIN tiktok_authorizations a ON a.id = s.authorization_id") == [("active", "active", 2)]
