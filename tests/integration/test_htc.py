# The outbound HTTPS client (src/io/htc.c), driven by tests/bench/htc_probe
# against the fake TikTok Shop server over real TLS, a plain-HTTP Python
# server, and a TCP listener that never answers: verification, keep-alive,
# the connection limit, timeouts, dropped connections, htc_close, the wait
# queue.  Every probe run prints one JSON line per answer and a summary.

import http.server
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

import ofharness

sys.path.insert(0, os.path.join(ofharness.srcdir(), "tests", "faketiktok"))
import faketiktok  # noqa: E402
from faketiktok import FakeTikTok  # noqa: E402

SHOPS = faketiktok.SHOPS_PATH
SEARCH = faketiktok.SEARCH_PATH
APP = faketiktok.DEFAULTS
TOKEN_HEADER = "x-tts-access-token:" + APP["access_token"]


def probe_binary():
    path = os.path.join(os.environ.get("OF_BUILDDIR", ""), "tests", "bench", "htc_probe")
    if not os.access(path, os.X_OK):
        pytest.fail("%s is missing: set OF_BUILDDIR to a build tree and run make" % path)
    return path


def probe(url, *paths, ca=None, timeout=60, **opts):
    """Run htc_probe; returns (answer lines, summary).  opts: connections=3 -> --connections 3."""
    argv = [probe_binary(), "--url", url]
    if ca:
        argv += ["--ca", ca]
    for k, v in opts.items():
        flag = "--" + k.replace("_", "-")
        for one in (v if isinstance(v, (list, tuple)) else [v]):
            argv += [flag, str(one)]
    argv += list(paths)
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    assert p.returncode == 0, "probe exit %d: %s" % (p.returncode, p.stderr.decode()[-4000:])
    lines = [json.loads(x) for x in p.stdout.decode().splitlines() if x.strip()]
    assert lines and "summary" in lines[-1], p.stdout.decode()[-4000:]
    return lines[:-1], lines[-1]["summary"]


def errors(lines):
    return [x.get("error", "rejected") for x in sorted(lines, key=lambda x: x["i"])]


def signed(path, params=None, body=b""):
    return faketiktok.signed_target(APP["app_key"], APP["app_secret"], path, params, body)


def mkcerts(directory):
    subprocess.run(["sh", os.path.join(ofharness.srcdir(), "tests", "faketiktok", "mkcerts.sh"),
                    str(directory)], check=True)
    return str(directory)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return mkcerts(tmp_path_factory.mktemp("htc-certs"))


@pytest.fixture(scope="module")
def fake(certs):
    f = FakeTikTok(os.path.join(certs, "server.pem"), os.path.join(certs, "server.key")).start()
    yield f
    f.stop()


@pytest.fixture(autouse=True)
def _reset_fake(request):
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").reset()


@pytest.fixture
def ca(certs):
    return os.path.join(certs, "ca.pem")


# ---------------------------------------------------------------------------
# TLS and the fake's API


def test_signed_get(fake, ca):
    lines, s = probe(fake.url, signed(SHOPS), ca=ca, header=TOKEN_HEADER)
    assert errors(lines) == ["HTC_OK"], lines
    env = json.loads(lines[0]["body"])
    assert lines[0]["status"] == 200 and env["code"] == 0, env
    assert env["data"]["shops"], env
    assert lines[0]["body_len"] == len(lines[0]["body"])
    st = fake.stats()
    assert st["requests"] == 1 and not any(st["rejected"].values()), st
    assert s["stats"]["requests"] == 1 and s["stats"]["errors"] == 0 and s["stats"]["connects"] == 1


def test_unsigned_get_gets_envelope(fake, ca):
    lines, _ = probe(fake.url, SHOPS, ca=ca)
    assert errors(lines) == ["HTC_OK"]
    env = json.loads(lines[0]["body"])
    assert lines[0]["status"] == 200 and env["code"] == faketiktok.CODE_BAD_APP_KEY, env


def test_signed_post_with_json_body(fake, ca):
    body = '{"update_time_ge":0}'
    target = signed(SEARCH, {"page_size": "10", "sort_field": "create_time", "sort_order": "ASC"},
                    body.encode())
    lines, _ = probe(fake.url, target, ca=ca, method="POST", body=body, header=TOKEN_HEADER)
    env = json.loads(lines[0]["body"])
    assert lines[0]["status"] == 200 and env["code"] == 0, env
    assert env["data"]["total_count"] == 0


def test_keepalive_reuses_one_connection(fake, ca):
    lines, s = probe(fake.url, signed(SHOPS), ca=ca, header=TOKEN_HEADER, count=25)
    assert errors(lines) == ["HTC_OK"] * 25
    assert all(json.loads(x["body"])["code"] == 0 for x in lines)
    assert fake.stats()["connections"] == 1
    assert s["stats"]["connects"] == 1 and s["stats"]["requests"] == 25


def test_concurrency_capped_by_connections(fake, ca):
    fake.fault(latency_ms=30, count=-1)     # keep requests overlapping
    lines, s = probe(fake.url, SHOPS, ca=ca, count=60, concurrency=12, connections=3)
    assert errors(lines) == ["HTC_OK"] * 60
    st = fake.stats()
    assert 1 <= st["connections"] <= 3, st
    assert s["stats"]["connects"] == st["connections"]
    assert s["stats"]["open"] <= 3 and s["stats"]["waiting"] == 0


def test_localhost_name_resolves_and_verifies(fake, ca):
    lines, s = probe("https://localhost:%d" % fake.port, SHOPS, ca=ca, count=2)
    assert errors(lines) == ["HTC_OK"] * 2, lines
    assert s["origin"] == "localhost:%d" % fake.port and s["stats"]["connects"] == 1


def test_wrong_ca_is_connect_error(fake, tmp_path):
    other = mkcerts(tmp_path / "other")
    lines, s = probe(fake.url, SHOPS, ca=os.path.join(other, "ca.pem"), count=2)
    assert errors(lines) == ["HTC_ECONNECT"] * 2, lines
    assert "verification failed" in lines[0]["error_text"], lines[0]
    assert s["stats"]["errors"] == 2 and fake.stats()["requests"] == 0


def test_system_trust_store_rejects_test_ca(fake):
    lines, _ = probe(fake.url, SHOPS)
    assert errors(lines) == ["HTC_ECONNECT"], lines
    assert "verification failed" in lines[0]["error_text"]


@pytest.fixture(scope="module")
def wrong_name_fake(certs, tmp_path_factory):
    """A fake whose certificate (from the same CA) names only wrong.example."""
    d = str(tmp_path_factory.mktemp("htc-wrongname"))
    key, csr, crt, ext = (os.path.join(d, n) for n in ("s.key", "s.csr", "s.pem", "ext.cnf"))
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:wrong.example\n")
    for argv in (["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key],
                 ["openssl", "req", "-new", "-key", key, "-subj", "/CN=wrong.example", "-out", csr],
                 ["openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(certs, "ca.pem"),
                  "-CAkey", os.path.join(certs, "ca.key"), "-CAcreateserial", "-days", "2",
                  "-sha256", "-extfile", ext, "-out", crt]):
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    f = FakeTikTok(crt, key).start()
    yield f
    f.stop()


@pytest.mark.parametrize("host,why", [("127.0.0.1", "IP address mismatch"),
                                      ("localhost", "hostname mismatch")])
def test_certificate_for_another_name(wrong_name_fake, ca, host, why):
    lines, _ = probe("https://%s:%d" % (host, wrong_name_fake.port), SHOPS, ca=ca)
    assert errors(lines) == ["HTC_ECONNECT"], lines
    assert why in lines[0]["error_text"], lines[0]


def test_connection_refused(ca):
    lock = ofharness.PortLock()     # a free port nobody listens on
    try:
        lines, s = probe("https://127.0.0.1:%d" % lock.port, SHOPS, ca=ca, count=2)
    finally:
        lock.release()
    assert errors(lines) == ["HTC_ECONNECT"] * 2, lines
    assert "connect to 127.0.0.1:%d failed" % lock.port in lines[0]["error_text"]
    assert s["stats"]["open"] == 0


# ---------------------------------------------------------------------------
# Timeouts and failures


def test_read_timeout_then_recovers(fake, ca):
    fake.fault(latency_ms=1500, count=1)
    lines, s = probe(fake.url, SHOPS, ca=ca, count=2, timeout_ms=400)
    assert errors(lines) == ["HTC_ETIMEOUT", "HTC_OK"], lines
    assert lines[0]["error_text"].startswith("read timeout"), lines[0]
    assert 350 <= lines[0]["ms"] < 1400, lines[0]
    # the late answer must not be read as the next one: a fresh connection
    assert s["stats"]["connects"] == 2 and fake.stats()["connections"] == 2


@pytest.fixture
def silent_listener():
    """A TCP port that accepts and never says anything (TLS never starts)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held, stop = [], threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except socket.timeout:
                pass
            except OSError:
                return
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(5)
    for c in held:
        c.close()
    srv.close()


def test_connect_timeout(silent_listener, ca):
    lines, _ = probe("https://127.0.0.1:%d" % silent_listener, SHOPS, ca=ca,
                     timeout_ms=3000, connect_timeout_ms=300)
    assert errors(lines) == ["HTC_ETIMEOUT"], lines
    assert lines[0]["error_text"].startswith("connect timeout"), lines[0]
    assert lines[0]["ms"] < 2000


def test_request_deadline_covers_connect(silent_listener, ca):
    lines, _ = probe("https://127.0.0.1:%d" % silent_listener, SHOPS, ca=ca, timeout_ms=400)
    assert errors(lines) == ["HTC_ETIMEOUT"], lines
    assert lines[0]["error_text"].startswith("connect timeout"), lines[0]


def test_dropped_connection_then_fresh_one(fake, ca):
    fake.fault(drop=True, count=1)
    lines, s = probe(fake.url, SHOPS, ca=ca, count=3)
    assert errors(lines) == ["HTC_EPROTO", "HTC_OK", "HTC_OK"], lines
    assert "closed the connection" in lines[0]["error_text"]
    assert s["stats"]["connects"] == 2 and fake.stats()["connections"] == 2


def test_drop_on_reused_connection(fake, ca):
    fake.fault(drop=True, count=1, path="/b")
    lines, s = probe(fake.url, "/a", "/b", "/c", ca=ca, count=3)
    assert errors(lines) == ["HTC_OK", "HTC_EPROTO", "HTC_OK"], lines
    assert "reused connection" in lines[1]["error_text"]
    assert s["stats"]["connects"] == 2


def test_truncated_answer(fake, ca):
    fake.fault(truncate=True, count=1)
    lines, _ = probe(fake.url, SHOPS, ca=ca, count=2)
    assert errors(lines) == ["HTC_EPROTO", "HTC_OK"], lines


def test_http_errors_are_answers_with_retry_after(fake, ca):
    fake.fault(http_status=429, retry_after=7, count=1)
    fake.fault(http_status=500, count=1)
    lines, s = probe(fake.url, SHOPS, ca=ca, count=3)
    assert errors(lines) == ["HTC_OK"] * 3
    assert [x["status"] for x in lines] == [429, 500, 200]
    assert lines[0]["retry_after"] == "7" and lines[1]["retry_after"] is None
    assert json.loads(lines[0]["body"])["code"] == faketiktok.CODE_THROTTLED
    assert s["stats"]["errors"] == 0 and s["stats"]["connects"] == 1


def test_close_fails_in_flight_and_queued(fake, ca):
    fake.fault(latency_ms=2000, count=-1)
    lines, s = probe(fake.url, SHOPS, ca=ca, count=6, concurrency=6, connections=2,
                     close_after_ms=300)
    assert errors(lines) == ["HTC_ECLOSED"] * 6, lines
    assert all(x["ms"] < 1500 for x in lines), lines
    assert s["stats"]["open"] == 0 and s["stats"]["waiting"] == 0 and s["stats"]["errors"] == 6


def test_close_from_inside_a_callback(fake, ca):
    fake.fault(latency_ms=2000, count=-1, path="/slow")
    lines, s = probe(fake.url, "/fast", "/slow", "/slow", ca=ca, count=9, concurrency=3,
                     connections=3, close_after_answers=1)
    assert errors(lines) == ["HTC_OK", "HTC_ECLOSED", "HTC_ECLOSED"], lines
    assert all(x["ms"] < 1500 for x in lines), lines
    assert s["stats"]["open"] == 0 and s["stats"]["requests"] == 3


def test_server_closes_idle_connection(certs, ca):
    with FakeTikTok(os.path.join(certs, "server.pem"), os.path.join(certs, "server.key"),
                    idle_timeout=0.3) as f:
        # the fake sweeps idle connections every 75 ms from 1 s after its start
        lines, s = probe(f.url, SHOPS, ca=ca, count=3, pause_ms=1300)
        assert errors(lines) == ["HTC_OK"] * 3, lines
        assert s["stats"]["connects"] == 3 and f.stats()["connections"] == 3


def test_server_connection_close_answer(certs, ca):
    with FakeTikTok(os.path.join(certs, "server.pem"), os.path.join(certs, "server.key"),
                    max_requests_per_conn=2) as f:
        lines, s = probe(f.url, SHOPS, ca=ca, count=5)
        assert errors(lines) == ["HTC_OK"] * 5, lines
        assert s["stats"]["connects"] == 3 and f.stats()["connections"] == 3


def test_wait_queue_bound(fake, ca):
    fake.fault(latency_ms=300, count=-1)
    lines, s = probe(fake.url, SHOPS, ca=ca, count=6, concurrency=6, connections=2, max_queue=1)
    assert errors(lines) == ["HTC_OK"] * 3 + ["rejected"] * 3, lines
    assert s["rejected"] == 3 and s["stats"]["requests"] == 3


def test_queue_wait_counts_against_the_deadline(fake, ca):
    fake.fault(latency_ms=700, count=-1)
    lines, s = probe(fake.url, SHOPS, ca=ca, count=2, concurrency=2, connections=1, timeout_ms=500)
    assert errors(lines) == ["HTC_ETIMEOUT"] * 2, lines
    assert lines[0]["error_text"].startswith("read timeout"), lines
    # the second waited for the only connection; its deadline ran from htc_request
    assert lines[1]["ms"] < 650, lines


def test_bad_requests_fail_without_connecting(fake, ca):
    lines, s = probe(fake.url, SHOPS, ca=ca, method="BREW")
    assert errors(lines) == ["HTC_EPROTO"] and "unsupported method" in lines[0]["error_text"]
    lines, s = probe(fake.url, "/a b", ca=ca)
    assert errors(lines) == ["HTC_EPROTO"], lines
    assert s["stats"]["connects"] == 0 and fake.stats()["connections"] == 0


@pytest.mark.parametrize("url,ca_file,msg", [
    ("ftp://127.0.0.1/", None, "scheme must be https or http"),
    ("not a url", None, "not an absolute URL"),
    ("https://127.0.0.1:1/?q=1", None, "no user, query or fragment"),
    ("https://127.0.0.1:1", "/nonexistent/ca.pem", "cannot load CA file"),
])
def test_htc_new_refuses_bad_setup(url, ca_file, msg):
    argv = [probe_binary(), "--url", url] + (["--ca", ca_file] if ca_file else []) + ["/"]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert p.returncode == 2 and msg in p.stderr.decode(), p.stderr


# ---------------------------------------------------------------------------
# Name resolution through libevent's resolver, against a DNS server of ours


class FakeDNS:
    """UDP DNS on 127.0.0.1: A records from `names`, NXDOMAIN for nx.test,
    silence for stuck.test, an empty answer for anything else."""

    def __init__(self, names):
        self.names = names
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                q, peer = self.sock.recvfrom(2048)
            except OSError:
                return
            i = 12
            labels = []
            while i < len(q) and q[i] != 0:
                labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
                i += 1 + q[i]
            end = i + 5                         # zero label, qtype, qclass
            name, qtype = ".".join(labels).lower(), int.from_bytes(q[i + 1:i + 3], "big")
            self.queries.append(name)
            if name == "stuck.test":
                continue
            rcode, answers = 0, b""
            if name == "nx.test":
                rcode = 3
            elif name in self.names and qtype == 1:
                answers = (b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" +
                           socket.inet_aton(self.names[name]))
            head = q[:2] + bytes([0x81, 0x80 | rcode]) + b"\x00\x01" + \
                (b"\x00\x01" if answers else b"\x00\x00") + b"\x00\x00\x00\x00"
            self.sock.sendto(head + q[12:end] + answers, peer)

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def private_resolv(tmp_path_factory):
    """(FakeDNS, argv prefix) running a command with /etc/resolv.conf naming the fake DNS."""
    dns = FakeDNS({"wrong.example": "127.0.0.1", "ok.test": "127.0.0.1"})
    conf = tmp_path_factory.mktemp("htc-dns") / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1:%d\noptions timeout:1 attempts:1\n" % dns.port)
    prefix = ["unshare", "--mount", "sh", "-c",
              'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(conf)]
    try:
        subprocess.run(prefix + ["true"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)
    except (OSError, subprocess.SubprocessError):
        dns.close()
        pytest.skip("needs root (unshare --mount) to give the probe its own /etc/resolv.conf")
    yield dns, prefix
    dns.close()


def probe_with_dns(prefix, url, *paths, ca=None, **opts):
    argv = [probe_binary(), "--url", url] + (["--ca", ca] if ca else [])
    for k, v in opts.items():
        argv += ["--" + k.replace("_", "-"), str(v)]
    p = subprocess.run(prefix + argv + list(paths), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, "probe exit %d: %s" % (p.returncode, p.stderr.decode()[-4000:])
    lines = [json.loads(x) for x in p.stdout.decode().splitlines() if x.strip()]
    return lines[:-1], lines[-1]["summary"]


def test_dns_name_sni_and_name_check(private_resolv, wrong_name_fake, fake, ca):
    dns, prefix = private_resolv
    # the certificate names wrong.example, which our DNS maps to the fake: accepted
    lines, s = probe_with_dns(prefix, "https://wrong.example:%d" % wrong_name_fake.port, SHOPS,
                              ca=ca, count=3, concurrency=3, connections=3)
    assert errors(lines) == ["HTC_OK"] * 3, lines
    assert dns.queries.count("wrong.example") >= 1 and s["stats"]["connects"] == 3
    # ok.test resolves too, but the certificate does not name it
    lines, _ = probe_with_dns(prefix, "https://ok.test:%d" % fake.port, SHOPS, ca=ca)
    assert errors(lines) == ["HTC_ECONNECT"] and "hostname mismatch" in lines[0]["error_text"]


def test_dns_failure_is_connect_error(private_resolv, ca):
    _, prefix = private_resolv
    lines, s = probe_with_dns(prefix, "https://nx.test:443", SHOPS, ca=ca, count=2)
    assert errors(lines) == ["HTC_ECONNECT"] * 2, lines
    assert "cannot resolve nx.test" in lines[0]["error_text"], lines[0]
    assert s["stats"]["connects"] == 0


def test_dns_timeout_and_free_while_resolving(private_resolv, ca):
    _, prefix = private_resolv
    lines, _ = probe_with_dns(prefix, "https://stuck.test", SHOPS, ca=ca, timeout_ms=300)
    assert errors(lines) == ["HTC_ETIMEOUT"], lines
    assert lines[0]["error_text"].startswith("connect timeout: stuck.test not resolved"), lines[0]
    # htc_close and htc_free while the lookup is still out (the sanitizer build checks the cleanup)
    lines, _ = probe_with_dns(prefix, "https://stuck.test", SHOPS, ca=ca, count=2, concurrency=2,
                              close_after_ms=100)
    assert errors(lines) == ["HTC_ECLOSED"] * 2, lines


# ---------------------------------------------------------------------------
# Plain HTTP


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def do_GET(self):
        self.server.peers.add(self.client_address)
        if self.path.startswith("/big/"):
            self._send(200, b"x" * int(self.path[5:]), "text/plain")
            return
        self._send(200, json.dumps({"path": self.path, "host": self.headers.get("Host")}).encode())

    def do_POST(self):
        self.server.peers.add(self.client_address)
        n = int(self.headers.get("Content-Length", "-1"))
        body = self.rfile.read(n) if n > 0 else b""
        self._send(200, json.dumps({"path": self.path, "len": n, "body": body.decode(),
                                    "ctype": self.headers.get("Content-Type"),
                                    "x": self.headers.get("X-Test")}).encode())


@pytest.fixture(scope="module")
def plain():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.peers = set()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_plain_http_keepalive_and_prefix(plain):
    plain.peers.clear()
    port = plain.server_address[1]
    lines, s = probe("http://127.0.0.1:%d/api/v1/" % port, "/x?a=1", "y", count=4)
    assert errors(lines) == ["HTC_OK"] * 4, lines
    answers = [json.loads(x["body"]) for x in lines]
    assert [a["path"] for a in answers] == ["/api/v1/x?a=1", "/api/v1/y"] * 2
    assert answers[0]["host"] == "127.0.0.1:%d" % port
    assert len(plain.peers) == 1 and s["stats"]["connects"] == 1


def test_plain_http_post_body_and_headers(plain):
    lines, _ = probe("http://127.0.0.1:%d" % plain.server_address[1], "/p", method="POST",
                     body='{"k":"v"}', header="X-Test: yes")
    a = json.loads(lines[0]["body"])
    assert a == {"path": "/p", "len": 9, "body": '{"k":"v"}', "ctype": "application/json",
                 "x": "yes"}, a
    lines, _ = probe("http://127.0.0.1:%d" % plain.server_address[1], "/p", method="POST")
    assert json.loads(lines[0]["body"])["len"] == 0     # Content-Length: 0, not missing


def test_body_size_cap(plain):
    url = "http://127.0.0.1:%d" % plain.server_address[1]
    lines, s = probe(url, "/big/%d" % (2 * 1024 * 1024), "/big/%d" % (9 * 1024 * 1024), "/ok",
                     count=3, body_max=16)
    assert errors(lines) == ["HTC_OK", "HTC_EPROTO", "HTC_OK"], lines
    assert lines[0]["body_len"] == 2 * 1024 * 1024
    assert "too large" in lines[1]["error_text"], lines[1]
    assert s["stats"]["connects"] == 2
