"""fakehttp - the HTTPS/HTTP-1.1 server machinery shared by the test fakes
(tests/faketiktok/faketiktok.py, tests/fakecarrier/fakecarrier.py).

One asyncio event loop per thread, a parser built on asyncio.Protocol:
TLS 1.2+ (ALPN http/1.1), keep-alive, pipelining answered in order,
Content-Length or chunked request bodies, Expect: 100-continue, bounded
header and body sizes, idle timeout, Content-Length on every answer.

A fake subclasses Server and implements _handle(req) -> Response.  A Response
may be delayed (delay seconds), computed after the delay (then: callable ->
Response, run in the loop thread) or computed in a worker thread (offload:
callable -> Response, for blocking work such as delivering a webhook while
the loop keeps serving other connections).

FaultQueue and fault_response implement the injectable faults both fakes
share (count, path, method, latency_ms, drop, after, ...).

Python standard library only (Debian's /usr/bin/python3).
"""

import asyncio
import http
import json
import socket
import ssl
import sys
import threading
import time
import urllib.parse

__all__ = ["HTTPError", "Request", "Response", "Server", "FaultQueue", "fault_response",
           "encode", "client_request"]

MAX_HEADER_BYTES = 64 * 1024


def encode(obj):
    """Compact UTF-8 JSON."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class HTTPError(Exception):
    def __init__(self, status, msg):
        Exception.__init__(self, msg)
        self.status = status


class Request(object):
    __slots__ = ("method", "target", "path", "query", "version", "headers", "body", "keep_alive")


_REASONS = {s.value: s.phrase for s in http.HTTPStatus}


class Response(object):
    __slots__ = ("status", "body", "ctype", "headers", "close", "drop", "truncate", "delay",
                 "then", "offload")

    def __init__(self, status=200, body=b"", ctype="application/json", headers=None):
        self.status = status
        self.body = body
        self.ctype = ctype
        self.headers = headers
        self.close = False
        self.drop = False
        self.truncate = False
        self.delay = 0.0
        self.then = None        # callable -> Response, run in the loop after delay
        self.offload = None     # callable -> Response, run in a worker thread after delay


_date_cache = [0, b""]


def http_date():
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode()
    return _date_cache[1]


class Conn(asyncio.Protocol):
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
        if (not self.closed and not self.paused
                and len(self.buf) > self.srv.max_body_bytes + MAX_HEADER_BYTES):
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
                raise HTTPError(431, "request header too large")
            return None
        if end > MAX_HEADER_BYTES:
            raise HTTPError(431, "request header too large")
        head = bytes(buf[:end]).decode("latin-1")
        lines = head.split("\r\n")
        while lines and lines[0] == "":      # tolerate leading empty lines (RFC 9112 2.2)
            lines.pop(0)
        if not lines:
            del buf[:end + 4]
            return self._parse()
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise HTTPError(400, "bad request line")
        method, target, version = parts
        if len(lines) > 200:
            raise HTTPError(431, "too many header lines")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise HTTPError(400, "bad header line")
            name = name.lower()
            value = value.strip()
            if name in headers:
                headers[name] = headers[name] + ", " + value
            else:
                headers[name] = value
        start = end + 4
        limit = self.srv.max_body_bytes
        te = headers.get("transfer-encoding")
        if te is not None:
            if te.lower() != "chunked":
                raise HTTPError(501, "unsupported transfer-encoding")
            body, consumed = self._dechunk(start, limit)
            if body is None:
                self._maybe_continue(headers, version)
                return None
            del buf[:consumed]
        else:
            cl = headers.get("content-length", "0")
            if not cl.isdigit():
                raise HTTPError(400, "bad content-length")
            cl = int(cl)
            if cl > limit:
                raise HTTPError(413, "body too large (limit %d bytes)" % limit)
            if len(buf) - start < cl:
                self._maybe_continue(headers, version)
                return None
            body = bytes(buf[start:start + cl])
            del buf[:start + cl]
        self.sent_continue = False
        req = Request()
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

    def _dechunk(self, pos, limit):
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
                raise HTTPError(400, "bad chunk size")
            pos = eol + 2
            if size == 0:
                while True:                 # trailers until an empty line
                    eol = buf.find(b"\r\n", pos)
                    if eol < 0:
                        return None, 0
                    if eol == pos:
                        return b"".join(out), eol + 2
                    pos = eol + 2
            total += size
            if total > limit:
                raise HTTPError(413, "body too large (limit %d bytes)" % limit)
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
            except HTTPError as e:
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
            if resp.delay > 0 or resp.then is not None or resp.offload is not None:
                self.busy = True
                self.task = asyncio.ensure_future(self._delayed(resp, keep))
                return
            self._write(resp, keep)
        if self.paused and not self.closed and len(self.buf) <= self.srv.max_body_bytes:
            self.paused = False
            self.transport.resume_reading()

    async def _delayed(self, resp, keep):
        try:
            if resp.delay > 0:
                await asyncio.sleep(resp.delay)
            if resp.then is not None:
                resp = resp.then()
            if resp.offload is not None:
                fn = resp.offload
                try:
                    resp = await asyncio.get_running_loop().run_in_executor(None, fn)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    self.srv._log("internal error: %r" % (e,))
                    resp = self.srv._plain_error(500, "fake internal error: %r" % (e,))
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
             b"Date: ", http_date(), b"\r\nServer: ", self.srv.server_name.encode(),
             b"\r\nContent-Type: ", resp.ctype.encode(), b"\r\nContent-Length: %d\r\n" % len(body)]
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


class Server(object):
    """Base of a fake: TLS listener(s) and event-loop thread(s).

    A subclass sets server_name, max_body_bytes, calls _init_server(...) and
    implements _handle(req) -> Response and _count_connection()."""

    server_name = "fakehttp"
    max_body_bytes = 8 * 1024 * 1024

    def _init_server(self, cert, key, host="127.0.0.1", port=0, threads=1, idle_timeout=60.0,
                     max_requests_per_conn=0, verbose=False):
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError("port must be 0..65535")
        self.cert = cert
        self.key = key
        self.host = host
        self.port = port
        self.threads = max(1, int(threads))
        self.idle_timeout = float(idle_timeout)
        self.max_requests_per_conn = int(max_requests_per_conn)
        self.verbose = verbose
        self._loops = []
        self._socks = []
        self._started = False

    # -- to override ------------------------------------------------------
    def _handle(self, req):
        raise NotImplementedError

    def _count_connection(self):
        pass

    def _plain_error(self, status, msg):
        r = Response(status, encode({"error": msg}))
        r.close = status >= 400 and status not in (404, 405)
        return r

    def _log(self, msg):
        if self.verbose:
            sys.stderr.write("%s: %s\n" % (self.server_name, msg))
            sys.stderr.flush()

    # -- lifecycle ------------------------------------------------------------
    @property
    def base_url(self):
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
        try:
            for _ in range(self.threads):
                s = socket.socket(fam, socket.SOCK_STREAM)
                socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if self.threads > 1:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                s.bind((self.host, port))
                s.listen(1024)
                s.setblocking(False)
                port = s.getsockname()[1]
        except OSError:
            for s in socks:
                s.close()
            raise
        self.port = port
        return socks

    def start(self):
        """Bind, then serve in background thread(s).  Returns self."""
        if self._started:
            raise RuntimeError("already started")
        ctx = self._ssl_context()
        self._socks = self._make_sockets()
        for i, sock in enumerate(self._socks):
            lc = _LoopCtx()
            ev = threading.Event()
            err = []
            lc.thread = threading.Thread(target=self._run_loop, args=(lc, sock, ctx, ev, err),
                                         name="%s-%d" % (self.server_name, i), daemon=True)
            lc.thread.start()
            ev.wait(30)
            if err:
                self.stop()
                raise err[0]
            self._loops.append(lc)
        self._started = True
        return self

    def _run_loop(self, lc, sock, ctx, ev, err):
        loop = asyncio.new_event_loop()
        lc.loop = loop
        asyncio.set_event_loop(loop)
        try:
            lc.server = loop.run_until_complete(loop.create_server(
                lambda: Conn(self, lc), sock=sock, ssl=ctx, ssl_handshake_timeout=10))
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


# ---------------------------------------------------------------------------
# Faults

def _isint(v):
    return isinstance(v, int) and not isinstance(v, bool)


class FaultQueue(object):
    """Queued faults, matched in the order queued against (path, method).

    Common keys: count (default 1, -1 = until cleared), path, method,
    latency_ms, http_status, retry_after, drop, after.  `extra` maps the
    fake's own keys to a validator (value -> error message or None).
    `replacing` names the keys that replace the answer (needed by "after").
    Path matching: prefix=False -> exact, or a prefix when the pattern ends
    in "*"; prefix=True -> always a prefix (a trailing "*" is ignored)."""

    COMMON = ("count", "path", "method", "latency_ms", "http_status", "retry_after", "drop",
              "after")

    def __init__(self, extra=None, replacing=("drop", "http_status"), prefix=False):
        self.extra = dict(extra or {})
        self.replacing = tuple(replacing)
        self.prefix = prefix
        self._lock = threading.Lock()
        self._q = []

    def check(self, kw):
        bad = set(kw) - set(self.COMMON) - set(self.extra)
        if bad:
            raise ValueError("unknown fault keys: %s" % ", ".join(sorted(bad)))
        f = dict(kw)
        f.setdefault("count", 1)
        if not _isint(f["count"]) or (f["count"] < 1 and f["count"] != -1):
            raise ValueError("count must be a positive integer or -1")
        lat = f.get("latency_ms", 0)
        if isinstance(lat, bool) or not isinstance(lat, (int, float)) or not 0 <= lat <= 600000:
            raise ValueError("latency_ms must be a number 0..600000")
        if "http_status" in f and (not _isint(f["http_status"]) or not 200 <= f["http_status"] <= 599):
            raise ValueError("http_status must be an integer 200..599")
        for k in ("drop", "after"):
            if k in f and not isinstance(f[k], bool):
                raise ValueError("%s must be a boolean" % k)
        if "path" in f and (not isinstance(f["path"], str) or not f["path"].startswith("/")
                            or len(f["path"]) > 1000):
            raise ValueError("path must be a string starting with / (at most 1000 chars)")
        if "method" in f:
            if not isinstance(f["method"], str) or not f["method"].isalpha() or len(f["method"]) > 16:
                raise ValueError("method must be an HTTP method name")
            f["method"] = f["method"].upper()
        if "retry_after" in f and (not _isint(f["retry_after"]) or f["retry_after"] < 0):
            raise ValueError("retry_after must be a non-negative integer")
        for k, check in self.extra.items():
            if k in f:
                msg = check(f[k])
                if msg:
                    raise ValueError("%s %s" % (k, msg))
        if f.get("after") and not any(f.get(k) not in (None, False) for k in self.replacing):
            raise ValueError("after needs one of: %s" % ", ".join(self.replacing))
        return f

    def add(self, kw):
        f = self.check(kw)
        with self._lock:
            self._q.append(f)
            return len(self._q)

    def _matches(self, f, path, method):
        m = f.get("method")
        if m is not None and m != method:
            return False
        p = f.get("path")
        if p is None:
            return True
        if self.prefix or p.endswith("*"):
            return path.startswith(p.rstrip("*"))
        return p == path

    def take(self, path, method, accept=None):
        """The first pending fault matching (and accepted by accept(f) when
        given), with its count used once; or None."""
        with self._lock:
            if not self._q:
                return None
            for f in self._q:
                if (f["count"] != 0 and self._matches(f, path, method)
                        and (accept is None or accept(f))):
                    if f["count"] > 0:
                        f["count"] -= 1
                    self._q = [g for g in self._q if g["count"] != 0]
                    return f
            return None

    def pending(self):
        with self._lock:
            return sum(1 for f in self._q if f["count"] != 0)

    def clear(self):
        with self._lock:
            self._q = []


def fault_response(f, run, error):
    """The answer for a request hit by fault f.  run() computes the real
    answer; error(f) builds the replacing answer, or None when f only delays
    (or truncates) the real one.  With "after", run() is called at once (the
    request takes effect) and its answer is thrown away."""
    if f.get("drop"):
        rep = Response()
        rep.drop = True
    else:
        rep = error(f)
    if rep is None:
        r = Response()
        r.then = run
    else:
        if f.get("after"):
            real = run()
            if real.then is not None:       # finish delayed work, answer lost
                real.then()
        r = rep
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
    r.delay = f.get("latency_ms", 0) / 1000.0
    return r


# ---------------------------------------------------------------------------
# Client helper

def client_request(base_url, method, path, body=None, cafile=None, timeout=10, headers=None):
    """One request to a running fake (or anything); returns (status, parsed
    JSON or raw bytes).  TLS verified with cafile when given."""
    import http.client
    u = urllib.parse.urlsplit(base_url)
    if u.scheme == "http":
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    else:
        ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl._create_unverified_context()
        c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=timeout)
    try:
        data = None if body is None else (body if isinstance(body, bytes) else encode(body))
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
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

def run_until_signal(server):
    """Start server, print "listening PORT" on stdout, serve until SIGTERM or
    SIGINT, stop; returns the exit status (0, or 1 when it cannot start)."""
    import signal
    # block the stop signals before the loop threads exist (they inherit the
    # mask), then wait for one synchronously
    sigs = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        server.start()
    except (OSError, ssl.SSLError) as e:
        sys.stderr.write("%s: %s\n" % (server.server_name, e))
        return 1
    sys.stdout.write("listening %d\n" % server.port)
    sys.stdout.flush()
    signal.sigwait(sigs)
    server.stop()
    return 0
