# The dashboard's static files (src/http/www.c): served from memory, only
# what the walk of www.root found, with CSP, ETag revalidation and gzip.
# Path traversal, encoded bytes and NUL never reach another file
# (the issue's "Static files: path traversal (/../, encoded, NUL), wrong
# methods, cache headers").

import gzip
import os
import signal
import time

import pytest

from ofcheck import assert_error

INDEX = b"<!doctype html><title>orderflow</title><script src=/app.js type=module></script>"
# Long and repetitive: gzip saves most of it.
APP = b"export const x = 1;\n" + b"console.log('orderflow dashboard');\n" * 200
CSS = b"body { margin: 0 }\n"


def make_site(root):
    os.makedirs(os.path.join(root, "sub"), exist_ok=True)
    files = {"index.html": INDEX, "app.js": APP, "sub/site.css": CSS,
             ".hidden": b"secret", "a b.txt": b"odd name"}
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    link = os.path.join(root, "passwd.txt")
    if not os.path.lexists(link):
        os.symlink("/etc/passwd", link)
    return root


@pytest.fixture
def site_daemon(make_daemon, tmp_path):
    root = make_site(str(tmp_path / "www"))
    d = make_daemon(overrides={"www": {"root": root}})
    d.start()
    d.site_root = root
    return d


def test_index_and_headers(site_daemon):
    r = site_daemon.get("/")
    assert r.status == 200 and r.body == INDEX, r
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    csp = r.header("Content-Security-Policy") or ""
    assert "script-src 'self'" in csp and "default-src 'none'" in csp, csp
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp, csp
    assert r.header("X-Content-Type-Options") == "nosniff"
    assert r.header("Cache-Control") == "no-cache"
    etag = r.header("ETag")
    assert etag and etag.startswith('"') and etag.endswith('"') and len(etag) == 34, etag
    assert site_daemon.get("/index.html").body == INDEX
    css = site_daemon.get("/sub/site.css")
    assert css.status == 200 and css.body == CSS
    assert css.header("Content-Type") == "text/css; charset=utf-8"
    assert site_daemon.get("/app.js").header("Content-Type") == "text/javascript; charset=utf-8"


def test_revalidation(site_daemon):
    etag = site_daemon.get("/app.js").header("ETag")
    for inm in (etag, "W/" + etag, '"other", ' + etag, "*"):
        r = site_daemon.get("/app.js", headers={"If-None-Match": inm})
        assert r.status == 304 and r.body == b"", (inm, r)
        assert r.header("ETag") == etag
    r = site_daemon.get("/app.js", headers={"If-None-Match": '"0000"'})
    assert r.status == 200 and r.body == APP


def test_gzip_when_accepted(site_daemon):
    r = site_daemon.get("/app.js", headers={"Accept-Encoding": "br, gzip"})
    assert r.status == 200 and r.header("Content-Encoding") == "gzip", r
    assert len(r.body) < len(APP) / 4
    assert gzip.decompress(r.body) == APP
    assert "Accept-Encoding" in (r.header("Vary") or "")
    for ae in ("identity", "gzip;q=0", "deflate"):
        r = site_daemon.get("/app.js", headers={"Accept-Encoding": ae})
        assert r.header("Content-Encoding") is None and r.body == APP, (ae, r)
    # Too small to be worth it: never compressed.
    r = site_daemon.get("/sub/site.css", headers={"Accept-Encoding": "gzip"})
    assert r.header("Content-Encoding") is None and r.body == CSS


def test_head_and_methods(site_daemon):
    r = site_daemon.request("HEAD", "/app.js")
    assert r.status == 200 and r.body == b"" and r.header("ETag"), r
    for method in ("POST", "PUT", "DELETE"):
        r = site_daemon.request(method, "/app.js", body=b"x")
        assert_error(r, 405, "method_not_allowed")
        assert r.header("Allow") == "GET, HEAD"


@pytest.mark.parametrize("path", [
    "/../index.html", "/sub/../app.js", "/./app.js", "/%2e%2e/index.html",
    "/app%2ejs", "/app.js%00", "/app.js%00.html", "/.hidden", "/a%20b.txt", "/passwd.txt",
    "/sub", "/sub/", "/etc/passwd", "/index.html/", "/APP.JS",
])
def test_nothing_outside_the_walk(site_daemon, path):
    r = site_daemon.get(path)
    assert_error(r, 404, "not_found")
    assert b"root:" not in r.body and b"secret" not in r.body


def test_api_routes_win(site_daemon):
    assert site_daemon.get("/healthz").status == 200
    assert_error(site_daemon.get("/api/nope"), 404, "not_found")


def wait_body(d, path, want, timeout=10):
    end = time.time() + timeout
    while True:
        r = d.get(path)
        if (r.status, r.body) == want or time.time() > end:
            return r
        time.sleep(0.05)


def test_reload_reads_the_files_again_and_keeps_them_when_bad(site_daemon):
    d, root = site_daemon, site_daemon.site_root
    with open(os.path.join(root, "new.txt"), "wb") as f:
        f.write(b"fresh")
    n = len(d.log_lines())
    d.send_signal(signal.SIGHUP)
    d.wait_log(offset=n, msg="config reloaded")
    r = wait_body(d, "/new.txt", (200, b"fresh"))
    assert r.status == 200 and r.body == b"fresh", r

    # A file over the 4 MiB limit: the reload fails and the old files stay.
    with open(os.path.join(root, "huge.txt"), "wb") as f:
        f.write(b"x" * (4 * 1024 * 1024 + 1))
    os.remove(os.path.join(root, "new.txt"))
    n = len(d.log_lines())
    d.send_signal(signal.SIGHUP)
    rec = d.wait_log(offset=n, msg="config reload failed")
    assert "huge.txt" in rec.get("error", ""), rec
    time.sleep(0.2)
    assert d.get("/new.txt").body == b"fresh"
    assert d.get("/").body == INDEX


def test_missing_root_serves_the_api(make_daemon, tmp_path):
    d = make_daemon(overrides={"www": {"root": str(tmp_path / "absent")}})
    d.start()
    assert d.find_log(msg="no dashboard page"), d.log_text()[-2000:]
    assert_error(d.get("/"), 404, "not_found")
    assert d.get("/healthz").status == 200


def test_bad_root_refuses_to_start(make_daemon, tmp_path):
    root = make_site(str(tmp_path / "www"))
    with open(os.path.join(root, "huge.js"), "wb") as f:
        f.write(b"x" * (4 * 1024 * 1024 + 1))
    d = make_daemon(overrides={"www": {"root": root}})
    with pytest.raises(Exception):
        d.start(timeout=5)
    assert "huge.js" in d.log_text(), d.log_text()[-2000:]
