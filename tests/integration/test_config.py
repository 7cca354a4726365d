# Command line and configuration file checks (-n, -V, -h, usage errors, and
# the "FILE:LINE: section.key: reason" message for every kind of bad file).
# None of these needs a server: -n must not connect anywhere.

import os
import re
import signal
import subprocess

import pytest

import ofharness


def good_config():
    """Every documented key with a valid non-default value, plus comments and quotes."""
    return """\
# orderflowd test configuration: every key
; semicolon comment

[server]
listen_addr = 127.0.0.1
listen_port = 18080
workers = 2
listen_backlog = 128
max_body_size = 64k
max_header_size = 8k
client_timeout = 15s
shutdown_timeout = 3s

[log]
level = debug

[postgres]
conninfo = "host=127.0.0.1 port=5432 dbname=orderflow user=postgres"
pool_size = 3
max_wait_queue = 100
connect_timeout = 500ms
query_timeout = 2min
reconnect_min = 10ms
reconnect_max = 2min
migrations_dir = %s

[redis]
host = 127.0.0.1
port = 6379
socket =
db = 1
password =
connect_timeout = 100ms
command_timeout = 5min
reconnect_min = 1min
reconnect_max = 10min

[health]
max_queue_depth = 5000
max_queue_age = 24h
""" % ofharness.migrations_dir()


def run(args, timeout=30):
    r = ofharness.run([ofharness.daemon_binary()] + list(args), timeout=timeout)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def write(tmp_path, text, name="of.conf"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_check_good_config(tmp_path):
    path = write(tmp_path, good_config())
    rc, out, err = run(["-c", path, "-n"])
    assert rc == 0, err
    assert "orderflowd: %s: configuration OK" % path in err, err


def test_check_minimal_config(tmp_path):
    """An (almost) empty file is valid: every key has a default."""
    path = write(tmp_path, "[postgres]\nmigrations_dir = %s\n" % ofharness.migrations_dir())
    rc, out, err = run(["-c", path, "-n"])
    assert rc == 0, err
    assert "configuration OK" in err


def test_version():
    rc, out, err = run(["-V"])
    assert rc == 0, err
    assert re.search(r"\d+\.\d+\.\d+", out + err), out + err


def test_help():
    rc, out, err = run(["-h"])
    assert rc == 0, err
    assert "--migrate" in out + err and "-c" in out + err, out + err


def test_usage_error():
    rc, out, err = run(["--no-such-option"])
    assert rc == 2, (rc, out, err)
    rc, out, err = run(["-c"])          # missing argument
    assert rc == 2, (rc, out, err)


def test_missing_config_file(tmp_path):
    path = str(tmp_path / "nope.conf")
    rc, out, err = run(["-c", path, "-n"])
    assert rc == 1, (rc, err)
    assert path in err, err


# (name, file lines, 1-based line of the error, text the message must contain)
LONG = "1" * 5000
BAD = [
    ("unknown_key",
     ["# c", "[server]", "workers = 2", "bogus = 1"], 4, "server.bogus: unknown key"),
    ("not_a_number",      # the example of the contract, verbatim
     ["# c", "", "[server]", "workers = abc"], 4, 'server.workers: not an integer: "abc"'),
    ("out_of_range",
     ["[server]", "listen_port = 8080", "", "workers = 65"], 4, "server.workers"),
    ("negative",
     ["[server]", "workers = -1"], 2, "server.workers"),
    ("port_zero",
     ["[server]", "listen_port = 0"], 2, "server.listen_port"),
    ("port_too_big",
     ["[redis]", "port = 65536"], 2, "redis.port"),
    ("bad_duration_unit",
     ["[server]", "workers = 1", "client_timeout = 5x"], 3, "server.client_timeout"),
    ("duration_below_min",
     ["[server]", "client_timeout = 500ms"], 2, "server.client_timeout"),
    ("duration_not_number",
     ["[postgres]", "reconnect_min = fast"], 2, "postgres.reconnect_min"),
    ("bad_size",
     ["[server]", "max_body_size = 10q"], 2, "server.max_body_size"),
    ("size_too_big",
     ["[server]", "max_body_size = 65m"], 2, "server.max_body_size"),
    ("bad_enum",
     ["[server]", "workers = 1", "[log]", "level = verbose"], 4, "log.level"),
    ("listen_addr_not_ip",
     ["[server]", "listen_addr = localhost"], 2, "server.listen_addr"),
    ("redis_host_not_ip",
     ["[redis]", "host = redis.example.com"], 2, "redis.host"),
    ("conninfo_host_name",
     ["[postgres]", "conninfo = host=db.example.com dbname=x"], 2, "postgres.conninfo"),
    ("health_depth_zero",
     ["[health]", "max_queue_depth = 0"], 2, "health.max_queue_depth"),
    ("no_equals",
     ["# c", "[server]", "workers 2"], 3, None),
    ("too_long_line",
     ["[server]", "workers = 1", "listen_addr = " + LONG], 3, None),
]


@pytest.mark.parametrize("name,lines,line,text", BAD, ids=[b[0] for b in BAD])
def test_check_bad_config(tmp_path, name, lines, line, text):
    # A valid migrations_dir first so only the line under test is wrong.
    if not any(l.startswith("migrations_dir") for l in lines):
        lines = lines + ["[postgres]", "migrations_dir = %s" % ofharness.migrations_dir()]
    path = write(tmp_path, "\n".join(lines) + "\n")
    rc, out, err = run(["-c", path, "-n"])
    assert rc == 1, "exit status %d, stderr %r" % (rc, err[:500])
    assert "orderflowd: %s:%d: " % (path, line) in err, err[:1000]
    if text:
        assert "orderflowd: %s:%d: %s" % (path, line, text) in err, err[:1000]
    assert "configuration OK" not in err


def test_check_unknown_section(tmp_path):
    lines = ["[server]", "workers = 1", "", "[bogus]", "x = 1"]
    path = write(tmp_path, "\n".join(lines) + "\n")
    rc, out, err = run(["-c", path, "-n"])
    assert rc == 1, (rc, err)
    # The section header (line 4) or its first key (line 5).
    assert re.search(r"orderflowd: %s:[45]: \[bogus\]: unknown section" % re.escape(path), err), err


def test_start_with_bad_config_fails(tmp_path):
    """Starting the daemon (not -n) with a bad file: same message, non-zero exit, promptly."""
    path = write(tmp_path, "[server]\nlisten_addr = 127.0.0.1\nworkers = 65\n")
    r = ofharness.run([ofharness.daemon_binary(), "-c", path], timeout=15)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 1, (r.returncode, err)
    assert "orderflowd: %s:3: server.workers" % path in err, err


def test_migrations_dir_checked_by_migrate_only(make_daemon):
    """-n does not need the SQL files (a config can be checked anywhere); --migrate does."""
    d = make_daemon(overrides={"postgres": {"migrations_dir": "/nonexistent/orderflow/sql"}})
    r = d.run_cli("-n")
    assert r.returncode == 0, r.stderr
    r = d.run_cli("--migrate")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "cannot open migrations directory" in r.stderr, r.stderr
    assert "/nonexistent/orderflow/sql" in r.stderr, r.stderr
