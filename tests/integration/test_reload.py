# SIGHUP reload and the log level: reloadable keys take effect, keys that need
# a restart are reported and ignored, a broken file keeps the old config.
# Also -v and the logfmt request line.

import signal
import time

import ofharness
from ofcheck import assert_error


def _request_lines(d, offset=0, path="/healthz"):
    return d.find_log(offset, level="debug", msg="request", path=path)


def _levels(d):
    return {r.get("level") for r in d.log_records()}


def test_log_level_reload(make_daemon):
    d = make_daemon(overrides={"log": {"level": "warn"}})
    d.start()
    assert d.get("/healthz").status == 200
    time.sleep(0.3)
    levels = _levels(d)
    assert "debug" not in levels and "info" not in levels, \
        "lines below warn with log.level = warn:\n%s" % d.log_text()[-3000:]

    d.set("log", "level", "debug")
    d.write_config()
    n = len(d.log_lines())
    d.send_signal(signal.SIGHUP)
    d.wait_log(offset=n, msg="config reloaded")
    assert d.get("/healthz").status == 200
    rec = d.wait_log(offset=n, level="debug", msg="request", path="/healthz")
    assert rec.get("method") == "GET" and rec.get("status") == "200", rec
    assert rec.get("worker") in ("0", "1"), rec
    assert float(rec["dur_ms"]) >= 0, rec
    assert ofharness.parse_logfmt(d.log_lines()[0]).get("ts"), d.log_lines()[0]

    # And back: no more request lines at info.
    d.set("log", "level", "info")
    d.write_config()
    n = len(d.log_lines())
    d.send_signal(signal.SIGHUP)
    d.wait_log(offset=n, msg="config reloaded")
    n = len(d.log_lines())
    assert d.get("/healthz").status == 200
    time.sleep(0.3)
    assert _request_lines(d, n) == []
    assert d.running


def test_reload_needs_restart(make_daemon):
    d = make_daemon()
    d.start()
    old = d.port
    other = ofharness.PortLock()
    try:
        d.set("server", "listen_port", other.port)
        d.write_config()
        n = len(d.log_lines())
        d.send_signal(signal.SIGHUP)
        rec = d.wait_log(offset=n, msg="config key needs restart", key="server.listen_port")
        assert rec.get("level") == "warn", rec
        time.sleep(0.2)
        assert d.running
        assert d.get("/healthz").status == 200          # still on the old port
        assert d.get("/readyz").status == 200
        assert not ofharness.port_is_open(other.port), "daemon listens on the new port"
        assert d.port == old
    finally:
        other.release()


def test_reload_broken_file_keeps_old_config(make_daemon):
    d = make_daemon(overrides={"log": {"level": "info"}})
    d.start()
    d.set("log", "level", "debug")
    text = ofharness.render_config(d.conf) + "\n[server]\nworkers = abc\n"
    d.write_config(text)
    n = len(d.log_lines())
    d.send_signal(signal.SIGHUP)
    rec = d.wait_log(offset=n, msg="config reload failed")
    assert rec.get("level") == "error", rec
    assert d.find_log(n, msg="config reloaded") == []
    assert d.running
    assert d.get("/healthz").status == 200
    time.sleep(0.3)
    assert _request_lines(d, n) == [], "log.level of the broken file was applied"

    # The next good file is applied.
    d.write_config()
    n = len(d.log_lines())
    d.send_signal(signal.SIGHUP)
    d.wait_log(offset=n, msg="config reloaded")
    assert d.get("/healthz").status == 200
    d.wait_log(offset=n, level="debug", msg="request", path="/healthz")


def test_reload_max_body_size(make_daemon):
    """A reloadable limit takes effect on SIGHUP."""
    d = make_daemon()
    d.start()
    assert d.post("/healthz", b"x" * 4096).status == 405
    d.set("server", "max_body_size", "1k")
    d.write_config()
    n = len(d.log_lines())
    d.send_signal(signal.SIGHUP)
    d.wait_log(offset=n, msg="config reloaded")
    ofharness.wait_for(lambda: d.post("/healthz", b"x" * 4096).status == 413, 2, 0.05,
                       "413 after reload")
    assert_error(d.post("/healthz", b"x" * 4096), 413, "payload_too_large")


def test_verbose_flag_forces_debug(make_daemon):
    d = make_daemon(overrides={"log": {"level": "error"}})
    d.start(args=["-v"])
    assert d.get("/healthz").status == 200
    rec = d.wait_log(level="debug", msg="request", path="/healthz")
    assert rec.get("status") == "200", rec


def test_ready_logged(make_daemon):
    d = make_daemon()
    d.start()
    d.wait_log(level="info", msg="ready")
    assert len(d.find_log(msg="ready")) == 1
    rec = d.wait_log(level="info", msg="listening")
    assert rec.get("addr") == "127.0.0.1:%d" % d.port and rec.get("workers") == "2", rec
