# Integration test harness for orderflowd.
#
# Owns the throwaway servers the integration tests run against: a private
# PostgreSQL 15 cluster (Postgres), a redis-server (Redis) and the daemon under
# test (Orderflowd).  Every server listens on 127.0.0.1 on a port picked by the
# kernel and held with a lock file (PortLock), lives in one private temporary
# directory (/tmp/orderflow-tests-XXXX) and is killed when the test session
# ends, whether the tests passed or not (atexit, plus PR_SET_PDEATHSIG so a
# killed pytest does not leave servers behind).  Modelled on pgbouncer's
# test/utils.py (Postgres, Bouncer, PortLock).
#
# initdb and postgres refuse to run as root: when the tests run as root they
# run as the unprivileged system user "oftest" (created on first use).  The
# postmaster is a direct child of the test process (Popen(user=...), the
# equivalent of "runuser -u oftest --" without the intermediate process), so
# the harness can signal it and kill its whole process group.
#
# Run "/usr/bin/python3 ofharness.py" to exercise the harness alone (no daemon
# needed): it starts, stops, restarts and kill -9s PostgreSQL and Redis.

import atexit
import ctypes
import fcntl
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

PGBIN = os.environ.get("OF_PGBIN", "/usr/lib/postgresql/15/bin")
REDIS_SERVER = os.environ.get("OF_REDIS_SERVER", "/usr/bin/redis-server")
TEST_USER = "oftest"
PORT_LOCK_DIR = "/tmp/orderflow-tests-ports"

_lock = threading.Lock()
_base = None            # session temp dir, created on first use
_template = None        # initdb'd data directory copied by every Postgres
_children = []          # every Popen we started (killed at exit)
_servers = []           # every Postgres/Redis/Orderflowd (stopped at exit)
_counter = 0            # unique names


def _next_id():
    """Return a number unique within this test session."""
    global _counter
    with _lock:
        _counter += 1
        return _counter


def base_dir():
    """Return the session's private temp dir, creating it on first use."""
    global _base
    with _lock:
        if _base is None:
            _base = tempfile.mkdtemp(prefix="orderflow-tests-", dir="/tmp")
            os.chmod(_base, 0o755)
        return _base


def _is_root():
    """True when the tests run as root (servers then run as TEST_USER)."""
    return os.geteuid() == 0


def ensure_test_user():
    """Create the unprivileged system user PostgreSQL runs as, if missing."""
    if not _is_root():
        return
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", TEST_USER],
                       check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)


def _chown_test_user(path):
    """Give path (recursively) to TEST_USER when running as root."""
    if not _is_root():
        return
    pw = pwd.getpwnam(TEST_USER)
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for f in files:
            os.lchown(os.path.join(root, f), pw.pw_uid, pw.pw_gid)


_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when the test process dies."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(argv, as_test_user=False, **kw):
    """Start argv in its own process group, remembered for cleanup."""
    if as_test_user and _is_root():
        kw["user"] = TEST_USER
        kw["group"] = TEST_USER
        kw["extra_groups"] = []
    kw.setdefault("stdin", subprocess.DEVNULL)
    p = subprocess.Popen(argv, start_new_session=True,
                         preexec_fn=_die_with_parent, **kw)
    with _lock:
        _children.append(p)
    return p


def run(argv, as_test_user=False, timeout=60, **kw):
    """Run argv to completion and return the CompletedProcess."""
    if as_test_user and _is_root():
        kw["user"] = TEST_USER
        kw["group"] = TEST_USER
        kw["extra_groups"] = []
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.run(argv, timeout=timeout, **kw)


def kill_group(p, sig=signal.SIGKILL):
    """Send sig to p's process group (p was started in a new session)."""
    if p is None:
        return
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _cleanup():
    """atexit: stop every server and kill every child, remove the temp dir."""
    for s in list(reversed(_servers)):
        try:
            s.cleanup()
        except Exception:
            pass
    for p in list(_children):
        if p.poll() is None:
            kill_group(p)
            try:
                p.wait(5)
            except Exception:
                pass
        else:
            # The leader is gone, but children of a killed postmaster may not be.
            kill_group(p)
    if _base and not os.environ.get("OF_KEEP_TMP"):
        shutil.rmtree(_base, ignore_errors=True)


atexit.register(_cleanup)


class PortLock:
    """A free TCP port on 127.0.0.1, held with an flock'ed file until release()."""

    def __init__(self):
        os.makedirs(PORT_LOCK_DIR, exist_ok=True)
        try:
            os.chmod(PORT_LOCK_DIR, 0o1777)
        except PermissionError:
            pass
        for _ in range(100):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            fd = os.open(os.path.join(PORT_LOCK_DIR, "%d.lock" % port),
                         os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.port = port
            self._fd = fd
            return
        raise RuntimeError("no free port found")

    def release(self):
        """Give the port back."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def port_is_open(port, host="127.0.0.1"):
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def wait_for(pred, timeout, interval=0.05, what="condition"):
    """Poll pred() until it returns a true value or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:   # predicate may raise while not ready yet
            last_exc = e
        if time.monotonic() >= deadline:
            msg = "timed out after %.1fs waiting for %s" % (timeout, what)
            if last_exc is not None:
                msg += " (last error: %r)" % (last_exc,)
            raise TimeoutError(msg)
        time.sleep(interval)


def _tail(path, n=8000):
    """Return the last n characters of a text file, or '' if missing."""
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

def _template_datadir():
    """initdb once per session; every Postgres starts from a copy of it."""
    global _template
    with _lock:
        if _template is not None:
            return _template
    ensure_test_user()
    tdir = os.path.join(base_dir(), "pg-template")
    os.makedirs(tdir, mode=0o700)
    _chown_test_user(tdir)
    r = run([os.path.join(PGBIN, "initdb"), "-D", tdir, "-U", "postgres",
             "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
            as_test_user=True, cwd=base_dir(), timeout=120)
    if r.returncode != 0:
        raise RuntimeError("initdb failed:\n%s\n%s" % (r.stdout.decode(), r.stderr.decode()))
    with open(os.path.join(tdir, "postgresql.conf"), "a") as f:
        f.write("\n# orderflow integration tests\n"
                "listen_addresses = '127.0.0.1'\n"
                "fsync = off\n"
                "full_page_writes = off\n"
                "max_connections = 200\n"
                "shared_buffers = 32MB\n"
                "log_min_messages = warning\n"
                "log_line_prefix = '%m [%p] '\n")
    with _lock:
        _template = tdir
    return tdir


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1:port, trust auth, user postgres."""

    def __init__(self, name=None):
        self.name = name or "pg%d" % _next_id()
        self.dir = os.path.join(base_dir(), self.name)
        self.datadir = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "postgres.log")
        tmpl = _template_datadir()
        os.makedirs(self.dir, mode=0o755)
        shutil.copytree(tmpl, self.datadir, symlinks=True)
        os.chmod(self.datadir, 0o700)
        _chown_test_user(self.dir)
        self._portlock = PortLock()
        self.port = self._portlock.port
        self.proc = None
        self._dbs = 0
        _servers.append(self)

    def conninfo(self, dbname="postgres"):
        """libpq conninfo for the daemon (TCP, no name lookup)."""
        return "host=127.0.0.1 port=%d dbname=%s user=postgres" % (self.port, dbname)

    def _spawn(self):
        """Start the postmaster in the background (no wait)."""
        log = open(self.logfile, "ab")
        argv = [os.path.join(PGBIN, "postgres"), "-D", self.datadir,
                "-p", str(self.port), "-k", self.dir,
                "-c", "listen_addresses=127.0.0.1"]
        self.proc = spawn(argv, as_test_user=True, cwd=self.dir,
                          stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def _ready(self):
        """True once a connection succeeds; raises if the postmaster died."""
        if self.proc.poll() is not None:
            raise RuntimeError("postgres exited with status %d" % self.proc.returncode)
        import psycopg2
        try:
            c = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                                 dbname="postgres", connect_timeout=2)
        except psycopg2.OperationalError:
            return False
        c.close()
        return True

    def start(self, timeout=30):
        """Start the server and wait (bounded) until it accepts connections."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        for attempt in range(3):
            self._spawn()
            try:
                wait_for(self._ready, timeout, 0.05, "postgres %s to start" % self.name)
                return self
            except RuntimeError:
                # Lost a race for the port?  Pick another one (only possible on
                # the first start: restarts must keep the port).
                log = _tail(self.logfile)
                if "could not bind" in log and attempt < 2 and not self._dbs:
                    self._portlock.release()
                    self._portlock = PortLock()
                    self.port = self._portlock.port
                    continue
                raise RuntimeError("postgres %s failed to start:\n%s" % (self.name, log))
            except TimeoutError:
                self.kill()
                raise RuntimeError("postgres %s did not start within %ds:\n%s"
                                   % (self.name, timeout, _tail(self.logfile)))

    def stop(self, mode="fast", timeout=30):
        """Shut down: mode smart (SIGTERM), fast (SIGINT) or immediate (SIGQUIT)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT,
               "immediate": signal.SIGQUIT}[mode]
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        # Backends exit right after the postmaster; make sure none is left.
        wait_for(lambda: not self._group_alive(), 10, 0.05,
                 "postgres %s children to exit" % self.name)

    def _group_alive(self):
        """True while any process of the postmaster's group exists."""
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    def kill(self):
        """kill -9 the postmaster and all its backends."""
        if self.proc is None:
            return
        kill_group(self.proc, signal.SIGKILL)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        try:
            wait_for(lambda: not self._group_alive(), 10, 0.05,
                     "postgres %s children to die" % self.name)
        except TimeoutError:
            pass

    def restart(self, mode="fast"):
        """stop() then start() on the same port."""
        self.stop(mode)
        return self.start()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def connect(self, dbname="postgres", autocommit=True):
        """A psycopg2 connection as superuser postgres."""
        import psycopg2
        c = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                             dbname=dbname, connect_timeout=5)
        c.autocommit = autocommit
        return c

    def sql(self, query, args=None, dbname="postgres"):
        """Run one statement in autocommit mode; return all rows (or None)."""
        c = self.connect(dbname)
        try:
            with c.cursor() as cur:
                cur.execute(query, args)
                return cur.fetchall() if cur.description else None
        finally:
            c.close()

    def create_database(self, name=None):
        """CREATE DATABASE with a fresh unique name; return the name."""
        self._dbs += 1
        name = name or "t%d" % _next_id()
        self.sql('CREATE DATABASE "%s"' % name)
        return name

    def drop_database(self, name):
        """DROP DATABASE ... WITH (FORCE)."""
        self.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)

    def log_text(self):
        return _tail(self.logfile, 1 << 20)

    def cleanup(self):
        """Stop (or kill) and release the port."""
        if self.running:
            try:
                self.stop("immediate", timeout=10)
            except Exception:
                self.kill()
        elif self.proc is not None:
            kill_group(self.proc)
        self._portlock.release()


# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------

class Redis:
    """A redis-server on 127.0.0.1:port without persistence; stop/start keep the port."""

    def __init__(self, name=None):
        self.name = name or "redis%d" % _next_id()
        self.dir = os.path.join(base_dir(), self.name)
        os.makedirs(self.dir, mode=0o755)
        self.logfile = os.path.join(self.dir, "redis.log")
        self._portlock = PortLock()
        self.port = self._portlock.port
        self.proc = None
        self._started = False
        _servers.append(self)

    def _spawn(self):
        """Start redis-server in the background (no wait)."""
        log = open(self.logfile, "ab")
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", self.dir, "--protected-mode", "no"]
        self.proc = spawn(argv, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def ping(self, timeout=1.0):
        """True if the server answers PING with +PONG."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError("redis-server exited with status %d" % self.proc.returncode)
        return self.ping()

    def start(self, timeout=15):
        """Start the server and wait (bounded) for PONG."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        for attempt in range(5):
            self._spawn()
            try:
                wait_for(self._ready, timeout, 0.02, "redis %s to start" % self.name)
                self._started = True
                return self
            except RuntimeError:
                log = _tail(self.logfile)
                if "in use" not in log or attempt == 4:
                    raise RuntimeError("redis %s failed to start:\n%s" % (self.name, log))
                if not self._started:
                    self._portlock.release()
                    self._portlock = PortLock()
                    self.port = self._portlock.port
                else:
                    time.sleep(0.5)   # same port required: wait for it
            except TimeoutError:
                self.kill()
                raise RuntimeError("redis %s did not start within %ds:\n%s"
                                   % (self.name, timeout, _tail(self.logfile)))

    def stop(self, timeout=15):
        """SIGTERM and wait; SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        """kill -9."""
        if self.proc is None:
            return
        kill_group(self.proc, signal.SIGKILL)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def restart(self):
        self.stop()
        return self.start()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def client(self):
        """A redis-py client."""
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def log_text(self):
        return _tail(self.logfile, 1 << 20)

    def cleanup(self):
        if self.running:
            self.kill()
        self._portlock.release()


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

class Response:
    """A fully read HTTP response."""

    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers      # http.client.HTTPMessage (case-insensitive)
        self.body = body            # bytes

    def header(self, name, default=None):
        return self.headers.get(name, default)

    @property
    def text(self):
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        """Parse the body as JSON (with the raw body in the error if it is not)."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError as e:
            raise AssertionError("response body is not JSON (%s): %r" % (e, self.body[:2000]))

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:300])


def http_request(port, method, path, body=None, headers=None, timeout=10.0,
                 host="127.0.0.1", conn=None):
    """One request (new connection unless conn is given); returns Response."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.reason, r.headers, data)
    finally:
        if own:
            conn.close()


# ---------------------------------------------------------------------------
# orderflowd
# ---------------------------------------------------------------------------

def daemon_binary():
    """Path of the daemon under test ($ORDERFLOWD), or raise with a clear message."""
    path = os.environ.get("ORDERFLOWD")
    if not path:
        raise RuntimeError("ORDERFLOWD is not set: export ORDERFLOWD=/path/to/built/orderflowd "
                           "(e.g. $OF_BUILDDIR/src/orderflowd) before running the integration tests")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RuntimeError("ORDERFLOWD=%s is not an executable file" % path)
    return os.path.abspath(path)


def srcdir():
    """$OF_SRCDIR, or the source tree this file lives in."""
    return os.path.abspath(os.environ.get("OF_SRCDIR") or
                           os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def migrations_dir():
    return os.path.join(srcdir(), "sql")


def render_config(conf):
    """INI text from {section: {key: value}} (values written verbatim)."""
    out = ["# generated by tests/integration/ofharness.py"]
    for section, keys in conf.items():
        out.append("")
        out.append("[%s]" % section)
        for k, v in keys.items():
            if v is None:
                continue
            out.append("%s = %s" % (k, v))
    return "\n".join(out) + "\n"


# Log lines are logfmt: key=value or key="quoted value".
_LOGFMT_RE = re.compile(r'(\w[\w.]*)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_logfmt(line):
    """Dict of a logfmt line's fields (quotes removed)."""
    d = {}
    for k, v in _LOGFMT_RE.findall(line):
        if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
            v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        d[k] = v
    return d


class Orderflowd:
    """The daemon under test with a generated config; one instance per test."""

    registry = []   # daemons started in the current test (for log dumps/cleanup)

    def __init__(self, pg, redis, dbname, workers=2, overrides=None, name=None):
        self.name = name or "orderflowd%d" % _next_id()
        self.dir = os.path.join(base_dir(), self.name)
        os.makedirs(self.dir, mode=0o755)
        self.bin = daemon_binary()
        self.pg = pg
        self.redis = redis
        self.dbname = dbname
        self._portlock = PortLock()
        self.port = self._portlock.port
        self.conffile = os.path.join(self.dir, "orderflowd.conf")
        self.logfile = os.path.join(self.dir, "orderflowd.log")
        self.proc = None
        self.conf = {
            "server": {
                "listen_addr": "127.0.0.1",
                "listen_port": self.port,
                "workers": workers,
                "shutdown_timeout": "5s",
                "client_timeout": "30s",
            },
            "log": {"level": os.environ.get("OF_LOG_LEVEL", "info")},
            "postgres": {
                "conninfo": pg.conninfo(dbname),
                "pool_size": 2,
                "connect_timeout": "2s",
                "query_timeout": "10s",
                "reconnect_min": "50ms",
                "reconnect_max": "500ms",
                "migrations_dir": migrations_dir(),
            },
            "redis": {
                "host": "127.0.0.1",
                "port": redis.port,
                "connect_timeout": "1s",
                "command_timeout": "1s",
                "reconnect_min": "50ms",
                "reconnect_max": "500ms",
            },
            "health": {},
            # The dashboard's files from the source tree (installed ones
            # would be stale or absent).
            "www": {"root": os.path.join(srcdir(), "contrib", "www")},
            # Nothing listens on port 1: processing fails fast unless a test
            # points api_base at its fake TikTok server.  No polling unless asked.
            "tiktok": {
                "api_base": "https://127.0.0.1:1",
                "sync_interval": "0",
                "retry_base": "100ms",
                "retry_max": "1s",
            },
        }
        for section, keys in (overrides or {}).items():
            self.conf.setdefault(section, {}).update(keys)
        self.write_config()
        _servers.append(self)
        Orderflowd.registry.append(self)

    # --- configuration ---------------------------------------------------

    def set(self, section, key, value):
        """Change one key in the in-memory config (call write_config() after)."""
        self.conf.setdefault(section, {})[key] = value

    def write_config(self, text=None):
        """Write the config file (rendered from self.conf unless text is given)."""
        tmp = self.conffile + ".tmp"
        with open(tmp, "w") as f:
            f.write(render_config(self.conf) if text is None else text)
        os.replace(tmp, self.conffile)

    @property
    def workers(self):
        return int(self.conf["server"]["workers"])

    # --- process -----------------------------------------------------------

    def run_cli(self, *args, timeout=60):
        """Run the binary with -c conffile and extra args; CompletedProcess (text)."""
        r = run([self.bin, "-c", self.conffile] + list(args), timeout=timeout, cwd=self.dir)
        r.stdout = r.stdout.decode(errors="replace")
        r.stderr = r.stderr.decode(errors="replace")
        return r

    def migrate(self, check=True):
        """orderflowd --migrate; raise with its output if it fails and check is set."""
        r = self.run_cli("--migrate")
        if check and r.returncode != 0:
            raise RuntimeError("orderflowd --migrate exited %d:\n%s%s"
                               % (r.returncode, r.stdout, r.stderr))
        return r

    def start(self, wait="ready", timeout=20, migrate=True, args=(), env=None):
        """Start the daemon; wait for /readyz 200 (wait="ready"), /healthz (wait="live") or not at all.

        env: extra environment variables for the daemon."""
        if migrate:
            self.migrate()
        log = open(self.logfile, "ab")
        self.proc = spawn([self.bin, "-c", self.conffile] + list(args), cwd=self.dir,
                          stdout=log, stderr=subprocess.STDOUT,
                          env=dict(os.environ, **env) if env else None)
        log.close()
        if wait == "ready":
            self.wait_ready(timeout)
        elif wait == "live":
            self.wait_live(timeout)
        return self

    def _check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError("orderflowd exited with status %d; log:\n%s"
                               % (self.proc.returncode, self.log_text()[-6000:]))

    def wait_ready(self, timeout=20):
        """Wait (bounded) until GET /readyz answers 200."""
        def ready():
            self._check_alive()
            try:
                return self.get("/readyz", timeout=2).status == 200
            except OSError:
                return False
        try:
            wait_for(ready, timeout, 0.05, "orderflowd /readyz 200")
        except TimeoutError as e:
            raise TimeoutError("%s; log:\n%s" % (e, self.log_text()[-6000:]))

    def wait_live(self, timeout=20):
        """Wait (bounded) until GET /healthz answers 200."""
        def live():
            self._check_alive()
            try:
                return self.get("/healthz", timeout=2).status == 200
            except OSError:
                return False
        wait_for(live, timeout, 0.05, "orderflowd /healthz 200")

    @property
    def pid(self):
        return self.proc.pid

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Wait up to timeout seconds for the daemon to exit; return its status."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("orderflowd (pid %d) did not exit within %.1fs"
                                 % (self.proc.pid, timeout))

    def stop(self, timeout=15):
        """SIGTERM, wait, SIGKILL if needed; return the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                kill_group(self.proc)
                self.proc.wait(10)
        return self.proc.returncode

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            kill_group(self.proc)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self._portlock.release()

    # --- HTTP ----------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, timeout=10.0, conn=None):
        r = http_request(self.port, method, path, body, headers, timeout, conn=conn)
        if os.environ.get("OF_SCHEMA_CHECK", "1") != "0":
            import ofschema
            try:
                ofschema.check(srcdir(), method, path, r.status, r.header("Content-Type"), r.body)
            except ofschema.SchemaMismatch as e:
                report = os.environ.get("OF_SCHEMA_REPORT")
                if not report:
                    raise
                with open(report, "a") as f:
                    f.write(str(e) + "\n")
        return r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=b"", **kw):
        return self.request("POST", path, body=body, **kw)

    def connection(self, timeout=10.0):
        """A keep-alive http.client connection to the daemon."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    # --- log -----------------------------------------------------------------

    def log_text(self):
        return _tail(self.logfile, 1 << 22)

    def log_lines(self):
        return self.log_text().splitlines()

    def log_records(self):
        """Parsed logfmt records of every log line."""
        return [parse_logfmt(l) for l in self.log_lines()]

    def find_log(self, offset=0, **fields):
        """Records (after line offset) whose fields equal the given values."""
        out = []
        for line in self.log_lines()[offset:]:
            rec = parse_logfmt(line)
            if all(rec.get(k) == str(v) for k, v in fields.items()):
                out.append(rec)
        return out

    def wait_log(self, timeout=10, offset=0, **fields):
        """Wait (bounded) for a log record with the given fields; return it."""
        try:
            return wait_for(lambda: (self.find_log(offset, **fields) or [None])[0],
                            timeout, 0.05, "log line with %r" % (fields,))
        except TimeoutError as e:
            raise AssertionError("%s; log:\n%s" % (e, self.log_text()[-6000:]))


# ---------------------------------------------------------------------------
# Self-test of the harness (no daemon needed)
# ---------------------------------------------------------------------------

def _selftest():
    t0 = time.monotonic()
    pg = Postgres()
    pg.start()
    print("pg started on port %d in %.2fs" % (pg.port, time.monotonic() - t0))
    db = pg.create_database()
    assert pg.sql("SELECT 1", dbname=db) == [(1,)]
    for i in range(2):
        pg.stop()
        assert not pg.running and not port_is_open(pg.port)
        pg.start()
        assert pg.sql("SELECT current_database()", dbname=db) == [(db,)]
        print("pg stop/start %d ok" % (i + 1))
    pg.kill()
    assert not port_is_open(pg.port)
    pg.start()
    assert pg.sql("SELECT 2", dbname=db) == [(2,)]
    print("pg kill -9/start ok (port %d)" % pg.port)
    pg2 = Postgres().start()
    assert pg2.port != pg.port
    print("second pg ok on port %d" % pg2.port)
    pg2.stop()

    r = Redis().start()
    port = r.port
    assert r.client().ping()
    for i in range(2):
        r.stop()
        assert not r.ping()
        r.start()
        assert r.port == port and r.client().ping()
        print("redis stop/start %d ok" % (i + 1))
    r.kill()
    assert not r.ping()
    r.start()
    assert r.port == port and r.client().ping()
    print("redis kill -9/start ok (port %d)" % port)
    pg.stop()
    r.stop()
    print("selftest passed in %.2fs (tmp %s)" % (time.monotonic() - t0, base_dir()))


if __name__ == "__main__":
    _selftest()
