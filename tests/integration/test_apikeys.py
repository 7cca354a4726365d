# orderflowd --create-api-key / --revoke-api-key / --list-api-keys: the API
# key commands, run as the daemon binary against the harness's PostgreSQL.
#
# Exit status: 0 done, 1 refused by the database's state or no database
# (unknown creator or key, no api_keys table, server down), 2 usage
# (malformed UUID, key id or name; options that exclude each other).

import hashlib
import re
import time
import uuid

import ofharness

KEY_RE = re.compile(r"^ofk_([0-9a-f]{16})_[A-Za-z0-9_-]{43}$")


def _creator(d, email=None):
    """Insert a creator into d's database; return its id (text, lower case)."""
    cid = str(uuid.uuid4())
    d.pg.sql("INSERT INTO creators (id, email, display_name) VALUES (%s, %s, 'Test')",
             (cid, email or "%s@example.com" % cid[:8]), dbname=d.dbname)
    return cid


def _create(d, creator, *extra):
    """--create-api-key; return (key, id) after checking the output's shape."""
    r = d.run_cli("--create-api-key", creator, *extra)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    lines = r.stdout.splitlines()
    assert len(lines) == 2, r.stdout
    key, kid = lines
    m = KEY_RE.match(key)
    assert m, key
    assert m.group(1) == kid
    assert "shown only this once" in r.stderr
    return key, kid


def _list(d, *args):
    """--list-api-keys; the rows as dicts keyed by the header's names."""
    r = d.run_cli("--list-api-keys", *args)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    lines = r.stdout.splitlines()
    assert lines[0].split("\t") == ["ID", "CREATOR", "NAME", "CREATED", "REVOKED", "LAST_USED"]
    return [dict(zip(lines[0].split("\t"), l.split("\t"))) for l in lines[1:]]


def test_create_list_revoke(make_daemon):
    d = make_daemon()
    d.migrate()
    alice, bob = _creator(d), _creator(d)

    key, kid = _create(d, alice, "--key-name", "CI deploy")
    key2, kid2 = _create(d, alice.upper())          # a UUID in upper case is the same creator
    key3, kid3 = _create(d, bob, "--key-name", "bob's")
    assert len({key, key2, key3}) == 3 and len({kid, kid2, kid3}) == 3

    # Only the SHA-256 of the whole key is stored.
    rows = d.pg.sql("SELECT id, creator_id::text, name, key_hash, revoked_at FROM api_keys ORDER BY created_at",
                    dbname=d.dbname)
    byid = {r[0]: r for r in rows}
    assert byid[kid][1:3] == (alice, "CI deploy")
    assert bytes(byid[kid][3]) == hashlib.sha256(key.encode()).digest()
    assert byid[kid2][1:3] == (alice, "default")
    assert byid[kid3][1:3] == (bob, "bob's")
    assert all(r[4] is None for r in rows)
    dump = d.pg.sql("SELECT string_agg(t::text, ' ') FROM api_keys t", dbname=d.dbname)[0][0]
    for k in (key, key2, key3):
        assert k.split("_", 2)[2] not in dump       # no secret anywhere

    every = _list(d)
    assert [r["ID"] for r in every] == [kid, kid2, kid3]
    assert every[0]["CREATOR"] == alice and every[0]["NAME"] == "CI deploy"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", every[0]["CREATED"])
    assert all(r["REVOKED"] == "-" and r["LAST_USED"] == "-" for r in every)
    listing = d.run_cli("--list-api-keys").stdout
    for k, kd in ((key, kid), (key2, kid2), (key3, kid3)):
        assert k not in listing
        assert hashlib.sha256(k.encode()).hexdigest() not in listing
    assert [r["ID"] for r in _list(d, alice)] == [kid, kid2]
    assert [r["ID"] for r in _list(d, bob)] == [kid3]
    carol = _creator(d)
    assert _list(d, carol) == []

    r = d.run_cli("--revoke-api-key", kid)
    assert r.returncode == 0, r.stderr
    assert "revoked" in r.stderr and "api_key_ttl" in r.stderr
    revoked = {x["ID"]: x for x in _list(d)}
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", revoked[kid]["REVOKED"])
    assert revoked[kid2]["REVOKED"] == "-"
    # Revoking twice is not an error, and keeps the first time.
    r = d.run_cli("--revoke-api-key", kid)
    assert r.returncode == 0, r.stderr
    assert "already revoked" in r.stderr
    assert {x["ID"]: x for x in _list(d)}[kid]["REVOKED"] == revoked[kid]["REVOKED"]

    audit = d.pg.sql("SELECT action, entity_id, user_id::text, actor FROM audit_log"
                     " WHERE entity_type = 'api_key' ORDER BY id", dbname=d.dbname)
    assert audit == [("api_key.created", kid, alice, "cli"), ("api_key.created", kid2, alice, "cli"),
                     ("api_key.created", kid3, bob, "cli"), ("api_key.revoked", kid, alice, "cli")]

    # A creator's keys go with the creator.
    d.pg.sql("DELETE FROM creators WHERE id = %s", (bob,), dbname=d.dbname)
    assert [r["ID"] for r in _list(d)] == [kid, kid2]


def test_refused_by_database(make_daemon):
    """Exit 1 with a message naming what is missing; nothing written."""
    d = make_daemon()
    d.migrate()
    nobody = str(uuid.uuid4())
    r = d.run_cli("--create-api-key", nobody)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    assert "no creator with id %s" % nobody in r.stderr
    r = d.run_cli("--revoke-api-key", "0123456789abcdef")
    assert r.returncode == 1
    assert "no API key with id 0123456789abcdef" in r.stderr
    r = d.run_cli("--list-api-keys", nobody)
    assert r.returncode == 1
    assert "no creator with id" in r.stderr
    assert d.pg.sql("SELECT count(*) FROM api_keys", dbname=d.dbname) == [(0,)]


def test_usage_errors(make_daemon):
    """Malformed arguments: exit 2 before the database is contacted."""
    lock = ofharness.PortLock()     # nobody listens: a database error would be exit 1
    try:
        d = make_daemon(overrides={"postgres": {
            "conninfo": "host=127.0.0.1 port=%d dbname=x user=postgres" % lock.port}})
        cid = str(uuid.uuid4())
        cases = [
            (("--create-api-key", "not-a-uuid"), "not a creator id"),
            (("--create-api-key", cid[:-1]), "not a creator id"),
            (("--list-api-keys", "42"), "not a creator id"),
            (("--revoke-api-key", "xyz"), "not an API key id"),
            (("--revoke-api-key", "0123456789ABCDEF"), "not an API key id"),
            (("--revoke-api-key", "ofk_0123456789abcdef_secret"), "not an API key id"),
            (("--create-api-key", cid, "--key-name", "x" * 101), "at most 100"),
            (("--create-api-key", cid, "--key-name", "a\tb"), "control"),
            (("--list-api-keys", "--key-name", "x"), "--key-name goes with --create-api-key"),
            (("--create-api-key", cid, "--revoke-api-key", "0123456789abcdef"), "exclude each other"),
            (("--migrate", "--list-api-keys"), "exclude each other"),
            (("--list-api-keys", cid, cid), "usage"),
            (("--create-api-key",), "usage"),
        ]
        for args, msg in cases:
            r = d.run_cli(*args)
            assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
            assert msg in r.stderr, (args, r.stderr)
            assert r.stdout == "", (args, r.stdout)
        # A name of 100 characters (not bytes) is fine: the database is then asked.
        r = d.run_cli("--create-api-key", cid, "--key-name", "é" * 100)
        assert r.returncode == 1 and "cannot connect" in r.stderr, (r.returncode, r.stderr)
    finally:
        lock.release()


def test_not_migrated_and_down(make_daemon):
    """No api_keys table: exit 1 pointing at --migrate; no server: exit 1."""
    d = make_daemon()
    cid = str(uuid.uuid4())
    for args in (("--create-api-key", cid), ("--revoke-api-key", "0123456789abcdef"),
                 ("--list-api-keys",)):
        r = d.run_cli(*args)
        assert r.returncode == 1, (args, r.returncode, r.stderr)
        assert "run orderflowd --migrate first" in r.stderr or "does not exist" in r.stderr, r.stderr
    d.migrate()
    r = d.run_cli("--list-api-keys")
    assert r.returncode == 0 and r.stdout.splitlines()[1:] == []

    lock = ofharness.PortLock()
    try:
        down = make_daemon(overrides={"postgres": {
            "conninfo": "host=127.0.0.1 port=%d dbname=x user=postgres" % lock.port}})
        r = down.run_cli("--list-api-keys")
        assert r.returncode == 1
        assert "cannot connect to PostgreSQL" in r.stderr
    finally:
        lock.release()


def test_apikey_over_http(make_daemon):
    """A key made by the CLI opens the dashboard API until it is revoked."""
    from ofcheck import assert_error

    d = make_daemon(overrides={"auth": {"api_key_ttl": "200ms"}})
    d.migrate()
    alice = _creator(d)
    key, kid = _create(d, alice)
    d.start(migrate=False)

    def get(headers):
        return d.get("/api/orders", headers=headers)

    for _ in range(4):          # fresh connections: spread over the workers
        r = get({"Authorization": "ApiKey " + key})
        assert r.status == 200, (r.status, r.body)
    assert ofharness.wait_for(lambda: d.pg.sql(
        "SELECT last_used_at IS NOT NULL FROM api_keys WHERE id = %s", (kid,),
        dbname=d.dbname) == [(True,)], 5, what="last_used_at")

    r = get(None)
    err = assert_error(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="orderflow"'
    assert "authentication required" in err["message"]
    bad = key[:-1] + ("A" if key[-1] != "A" else "B")
    for h, msg in (("ApiKey " + bad, "invalid API key"), ("ApiKey ofk_short", "malformed API key"),
                   ("Bearer not.a.jwt", "")):
        r = get({"Authorization": h})
        err = assert_error(r, 401, "unauthorized")
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="orderflow", error="invalid_token"'
        assert msg in err["message"], err

    r = d.run_cli("--revoke-api-key", kid)
    assert r.returncode == 0, r.stderr
    time.sleep(0.4)             # past auth.api_key_ttl on every worker
    for _ in range(4):
        r = get({"Authorization": "ApiKey " + key})
        err = assert_error(r, 401, "unauthorized")
        assert err["message"] == "API key revoked", err
