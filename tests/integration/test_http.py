# HTTP hygiene: JSON errors for unknown routes, wrong methods, oversized,
# chunked and malformed requests; keep-alive; idle connections time out.

import json
import re
import socket
import time

import pytest

import ofcheck
from ofcheck import assert_error, assert_json_response


@pytest.fixture(scope="module")
def hdaemon(request, session_pg, session_redis):
    """One daemon for the module (max_body_size 1k, max_header_size 1k, client_timeout 1s)."""
    from ofharness import Orderflowd
    d = Orderflowd(session_pg, session_redis, session_pg.create_database(), workers=2, overrides={
        "server": {"max_body_size": "1k", "max_header_size": "1k", "client_timeout": "1s"}})
    Orderflowd.registry.remove(d)    # module-scoped: not killed after the first test
    d.start()
    yield d
    d.cleanup()


@pytest.fixture(autouse=True)
def _dump_module_daemon(request, hdaemon):
    """Put the module daemon's log into failure reports too."""
    from ofharness import Orderflowd
    Orderflowd.registry.append(hdaemon)
    yield
    if hdaemon in Orderflowd.registry:
        Orderflowd.registry.remove(hdaemon)
    assert hdaemon.running, "daemon died: status %r" % hdaemon.proc.returncode


@pytest.mark.parametrize("method,path", [("GET", "/nope"), ("POST", "/nope"), ("GET", "/healthz/x"),
                                         ("GET", "/api/health"), ("DELETE", "/")])
def test_not_found(hdaemon, method, path):
    assert_error(hdaemon.request(method, path), 404, "not_found")


@pytest.mark.parametrize("method,path", [("POST", "/healthz"), ("PUT", "/readyz"),
                                         ("DELETE", "/metrics"), ("POST", "/api/health/orders")])
def test_method_not_allowed(hdaemon, method, path):
    r = hdaemon.request(method, path, body=b"{}" if method in ("POST", "PUT") else None)
    assert_error(r, 405, "method_not_allowed")
    allow = {m.strip() for m in (r.header("Allow") or "").split(",")}
    assert {"GET", "HEAD"} <= allow, r.header("Allow")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/api/health/orders", "/metrics"])
def test_head(hdaemon, path):
    r = hdaemon.request("HEAD", path)
    assert r.status == 200 and r.body == b"", r


def test_body_too_large(hdaemon):
    assert_error(hdaemon.post("/healthz", b"x" * 4096), 413, "payload_too_large")
    assert_error(hdaemon.post("/nope", b"x" * 4096), 413, "payload_too_large")


def test_body_limit_boundary(hdaemon):
    # Exactly max_body_size is allowed (then the route answers 405); one more byte is not.
    assert_error(hdaemon.post("/healthz", b"x" * 1024), 405, "method_not_allowed")
    assert_error(hdaemon.post("/healthz", b"x" * 1025), 413, "payload_too_large")


def test_chunked_body(hdaemon):
    """A small chunked body is read and routed (405: /healthz takes no POST)."""
    r = ofcheck.raw_request(hdaemon.port, b"POST /healthz HTTP/1.1\r\nHost: t\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "POST")
    assert_error(r, 405, "method_not_allowed")


def test_chunked_body_too_large(hdaemon):
    """A chunked body over max_body_size (1k here) is 413 JSON, as with Content-Length."""
    chunk = b"a" * 700
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3)) + b"0\r\n\r\n"
    r = ofcheck.raw_request(hdaemon.port, b"POST /healthz HTTP/1.1\r\nHost: t\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n" + body, "POST")
    assert_error(r, 413, "payload_too_large")


def test_malformed_request(hdaemon):
    """Garbage gets a JSON 400 and a closed connection.  libevent cannot read a version
    from garbage and answers "HTTP/0.0", which http.client refuses: parse by hand."""
    s = socket.create_connection(("127.0.0.1", hdaemon.port), timeout=10)
    try:
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert re.match(r"HTTP/\d\.\d 400 ", lines[0]), lines
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    assert headers.get("content-type", "").startswith("application/json"), headers
    assert headers.get("connection", "").lower() == "close", headers
    doc = json.loads(body)
    assert doc == {"error": {"code": "bad_request", "message": doc["error"]["message"]}}, doc
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"], doc


def test_header_too_large(hdaemon):
    r = ofcheck.raw_request(hdaemon.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " +
                            b"a" * 4096 + b"\r\n\r\n")
    assert_error(r, 400, "bad_request")


def test_keep_alive(hdaemon):
    c = hdaemon.connection()
    try:
        for path in ("/healthz", "/readyz", "/nope", "/healthz"):
            r = hdaemon.request("GET", path, conn=c)
            assert r.status in (200, 404), r
        assert_json_response(hdaemon.request("GET", "/healthz", conn=c), 200)
    finally:
        c.close()


def test_idle_connection_closed(hdaemon):
    s = socket.create_connection(("127.0.0.1", hdaemon.port), timeout=10)
    try:
        t0 = time.monotonic()
        try:
            data = s.recv(1024)
        except ConnectionResetError:
            data = b""
        took = time.monotonic() - t0
        assert data == b"", "server sent %r on an idle connection" % data
        assert 0.5 <= took <= 4, "idle connection closed after %.2fs (client_timeout 1s)" % took
    finally:
        s.close()


def test_idle_after_request_closed(hdaemon):
    """A kept-alive connection idle after a request is closed too."""
    s = socket.create_connection(("127.0.0.1", hdaemon.port), timeout=10)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        buf = b""
        while b'{"status":"ok"}' not in buf.replace(b" ", b""):
            chunk = s.recv(4096)
            assert chunk, "closed before the response: %r" % buf
            buf += chunk
        t0 = time.monotonic()
        try:
            data = s.recv(1024)
        except ConnectionResetError:
            data = b""
        assert data == b"", data
        assert time.monotonic() - t0 <= 4
    finally:
        s.close()


def _read_all(s):
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("framing", [
    b"Content-Length: 2\r\nContent-Length: 40\r\n",
    b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
])
def test_ambiguous_framing_400_and_closed(hdaemon, framing):
    """RFC 9112 section 6.3: a length that two headers tell differently (a request
    smuggling vector behind a proxy that reads the other) is 400, and the connection
    is closed, so what follows is never taken for a request."""
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    s = socket.create_connection(("127.0.0.1", hdaemon.port), timeout=10)
    try:
        s.sendall(b"POST /webhooks/tiktok HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" +
                  framing + b"\r\n{}" + smuggled)
        data = _read_all(s)
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 400 "), data[:200]
    assert data.count(b"HTTP/1.1 ") == 1, "a second answer: the smuggled request was served"
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower(), head
    assert json.loads(body)["error"]["code"] == "bad_request"


def test_same_content_length_twice_is_one(hdaemon):
    """RFC 9112 allows taking identical values as one."""
    r = ofcheck.raw_request(hdaemon.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n"
                            b"Content-Length: 0\r\nContent-Length: 0\r\n\r\n")
    assert r.status == 200
