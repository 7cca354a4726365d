# The rate limiter (src/http/ratelimit.c) against a real Redis, driven by
# tests/bench/rl_probe: the Lua token bucket (burst, refusals with the right
# retry-after, refill, key expiry), one bucket shared by two processes,
# independent subjects, EVALSHA falling back to EVAL after SCRIPT FLUSH, and
# the in-process buckets when Redis is stopped or hangs.  Every probe run
# prints one JSON line per decision and a summary with the counters and the
# /metrics text.  Tests that flush, stop or freeze Redis use their own.

import hashlib
import json
import os
import signal
import subprocess
import time
import uuid

import pytest

import ofharness


def probe_binary():
    path = os.path.join(os.environ.get("OF_BUILDDIR", ""), "tests", "bench", "rl_probe")
    if not os.access(path, os.X_OK):
        pytest.fail("%s is missing: set OF_BUILDDIR to a build tree and run make" % path)
    return path


def probe_argv(redis, *subjects, **opts):
    argv = [probe_binary(), "--port", str(redis.port)]
    for k, v in opts.items():
        flag = "--" + k.replace("_", "-")
        argv += [flag] if v is True else [flag, str(v)]
    return argv + list(subjects)


def parse(out):
    lines = [json.loads(x) for x in out.splitlines() if x.strip().startswith("{")]
    assert lines and "summary" in lines[-1], out[-4000:]
    return sorted(lines[:-1], key=lambda x: x["i"]), lines[-1]["summary"]


def probe(redis, *subjects, timeout=60, **opts):
    """Run rl_probe to the end; returns (decision lines in order, summary)."""
    p = subprocess.run(probe_argv(redis, *subjects, **opts), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    assert p.returncode == 0, "probe exit %d: %s" % (p.returncode, p.stderr.decode()[-4000:])
    return parse(p.stdout.decode())


def start_probe(redis, *subjects, **opts):
    return subprocess.Popen(probe_argv(redis, *subjects, **opts), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def finish(p, timeout=60):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, "probe exit %d: %s" % (p.returncode, err.decode()[-4000:])
    return parse(out.decode())


def subject():
    return "c:" + str(uuid.uuid4())


def key(s):
    return "of:rl:" + s


def commandstats(client):
    st = client.info("commandstats")
    return {k: st.get("cmdstat_" + k, {}).get("calls", 0) for k in ("eval", "evalsha")}


def script_sha():
    p = subprocess.run([probe_binary(), "--print-sha"], stdout=subprocess.PIPE, check=True)
    return p.stdout.decode().strip()


# ---------------------------------------------------------------------------


def test_burst_then_refused(session_redis):
    s = subject()
    lines, summ = probe(session_redis, s, rate=1, burst=5, count=8)
    assert [x["allowed"] for x in lines] == [True] * 5 + [False] * 3, lines
    assert all(x["source"] == "redis" and x["limit"] == 5 for x in lines), lines
    assert [x["remaining"] for x in lines] == [4, 3, 2, 1, 0, 0, 0, 0], lines
    for x in lines[:5]:
        assert x["retry_after_ms"] == 0 and x["retry_after_s"] == 0, x
    for x in lines[5:]:
        # One token a second, and the first was taken a moment ago.
        assert 900 <= x["retry_after_ms"] <= 1000, x
        assert x["retry_after_s"] == 1, x
        assert 4900 <= x["reset_ms"] <= 5000 and x["reset_s"] == 5, x
    assert summ["stats"]["redis_errors"] == 0 and summ["stats"]["fallback"] == 0, summ
    assert summ["allowed"] == 5 and summ["limited"] == 3

    c = session_redis.client()
    h = c.hgetall(key(s))
    assert set(h) == {b"tokens", b"ts"}, h
    assert 0 <= float(h[b"tokens"]) < 1, h
    # ts is the Redis server's clock, in ms.
    server_ms = int(c.time()[0]) * 1000
    assert abs(int(h[b"ts"]) - server_ms) < 5000, (h, server_ms)
    assert 0 < c.pttl(key(s)) <= 5000


def test_retry_after_then_refill(session_redis):
    s = subject()
    lines, _ = probe(session_redis, s, rate=10, burst=3, count=4)
    assert [x["allowed"] for x in lines] == [True, True, True, False], lines
    wait_ms = lines[3]["retry_after_ms"]
    assert 0 < wait_ms <= 100, lines[3]
    assert lines[3]["retry_after_s"] == 1
    time.sleep(wait_ms / 1000.0 + 0.03)
    lines, _ = probe(session_redis, s, rate=10, burst=3, count=1)
    assert lines[0]["allowed"], lines
    # 300 ms refills the whole bucket of 3, and no more.
    time.sleep(0.4)
    lines, _ = probe(session_redis, s, rate=10, burst=3, count=5)
    assert [x["allowed"] for x in lines][:3] == [True, True, True], lines
    assert not lines[4]["allowed"], lines


def test_two_clients_share_one_bucket(session_redis):
    """Two processes (two connections, pipelined checks) never get more than burst in all."""
    s = subject()
    start_at = int(time.time() * 1000) + 800
    opts = dict(rate=1, burst=20, count=60, concurrency=8, start_at_ms=start_at)
    a = start_probe(session_redis, s, **opts)
    b = start_probe(session_redis, s, **opts)
    la, sa = finish(a)
    lb, sb = finish(b)
    assert all(x["source"] == "redis" for x in la + lb)
    allowed = sa["allowed"] + sb["allowed"]
    elapsed_s = max(sa["elapsed_ms"], sb["elapsed_ms"]) / 1000.0
    # The bucket holds 20 and refills one a second while the probes run.
    assert 20 <= allowed <= 20 + int(elapsed_s) + 1, (sa, sb)
    assert sa["decisions"] == 60 and sb["decisions"] == 60
    refused = [x for x in la + lb if not x["allowed"]]
    assert refused and all(1 <= x["retry_after_s"] <= 1 for x in refused)


def test_subjects_independent(session_redis):
    subs = [subject(), "k:" + uuid.uuid4().hex, subject()]
    lines, _ = probe(session_redis, *subs, rate=1, burst=2, count=9)
    for s in subs:
        mine = [x["allowed"] for x in lines if x["subject"] == s]
        assert mine == [True, True, False], (s, lines)
    c = session_redis.client()
    assert all(c.exists(key(s)) for s in subs)


def test_key_expires_when_full_again(session_redis):
    c = session_redis.client()
    s = subject()
    lines, _ = probe(session_redis, s, rate=10, burst=2, count=1)
    assert lines[0]["allowed"] and lines[0]["reset_ms"] == 100, lines
    ttl = c.pttl(key(s))
    assert 0 < ttl <= 100, ttl
    time.sleep(0.3)
    assert not c.exists(key(s))

    # A refused subject's key lives as long as its refill takes.
    s = subject()
    lines, _ = probe(session_redis, s, rate=1, burst=2, count=3)
    assert [x["allowed"] for x in lines] == [True, True, False]
    ttl = c.pttl(key(s))
    assert 1000 < ttl <= 2000, ttl
    assert abs(ttl - lines[2]["reset_ms"]) < 500


def test_script_sha_is_redis_sha(session_redis):
    script = subprocess.run([probe_binary(), "--print-script"], stdout=subprocess.PIPE,
                            check=True).stdout
    sha = script_sha()
    assert sha == hashlib.sha1(script).hexdigest()
    assert session_redis.client().script_load(script) == sha


def test_noscript_falls_back_to_eval(private_redis):
    c = private_redis.client()
    sha = script_sha()
    c.script_flush()
    c.config_resetstat()
    s = subject()
    lines, summ = probe(private_redis, s, rate=1, burst=3, count=4)
    assert [x["allowed"] for x in lines] == [True, True, True, False], lines
    assert all(x["source"] == "redis" for x in lines)
    assert summ["stats"]["redis_errors"] == 0 and summ["stats"]["fallback"] == 0, summ
    st = commandstats(c)
    assert st["eval"] == 1 and st["evalsha"] == 4, st
    assert c.script_exists(sha) == [True]

    # Flushed again in the middle of a run: the next check reloads it.
    c.config_resetstat()
    p = start_probe(private_redis, s, rate=1000, burst=1000, count=12, pause_ms=150)
    time.sleep(0.9)
    c.script_flush()
    lines, summ = finish(p)
    assert len(lines) == 12 and all(x["allowed"] and x["source"] == "redis" for x in lines), lines
    assert summ["stats"]["redis_errors"] == 0, summ
    st = commandstats(c)
    assert st["eval"] == 1 and st["evalsha"] == 12, st
    assert c.script_exists(sha) == [True]


def test_rate_zero_never_asks_redis(private_redis):
    c = private_redis.client()
    c.config_resetstat()
    lines, summ = probe(private_redis, subject(), rate=0, burst=1, count=20)
    assert all(x["allowed"] and x["source"] == "off" and x["limit"] == 0 for x in lines)
    assert commandstats(c) == {"eval": 0, "evalsha": 0}
    assert summ["stats"]["fallback"] == 0


def test_invalid_subject_refused(session_redis):
    lines, summ = probe(session_redis, "c:a b", "x", rate=1, burst=1, count=2)
    assert lines == [{"i": 0, "invalid": True}, {"i": 1, "invalid": True}], lines
    assert summ["invalid"] == 2 and summ["decisions"] == 0, summ


def test_redis_stopped_in_process_buckets(private_redis):
    private_redis.stop()
    s = subject()
    lines, summ = probe(private_redis, s, rate=1, burst=3, count=5, no_wait=True)
    assert [x["allowed"] for x in lines] == [True, True, True, False, False], lines
    assert all(x["source"] == "local" and x["limit"] == 3 for x in lines), lines
    assert [x["retry_after_s"] for x in lines[3:]] == [1, 1]
    assert all(900 <= x["retry_after_ms"] <= 1000 for x in lines[3:]), lines
    st = summ["stats"]
    assert st["fallback"] == 5 and st["fallback_active"] == 1, st
    assert st["redis_errors"] == 0, st   # not connected is not a failed command
    m = summ["metrics"]
    assert "orderflow_ratelimit_fallback_total 5\n" in m, m
    assert "orderflow_ratelimit_fallback_active 1\n" in m, m
    assert 'orderflow_ratelimit_requests_total{result="allowed"} 3\n' in m, m
    assert 'orderflow_ratelimit_requests_total{result="limited"} 2\n' in m, m
    assert "orderflow_ratelimit_redis_errors_total 0\n" in m, m


def test_redis_hangs_then_recovers(private_redis):
    """A frozen Redis: checks time out into in-process decisions, then Redis decides again."""
    s = subject()
    p = start_probe(private_redis, s, rate=1000, burst=1000, count=60, pause_ms=100,
                    timeout_ms=200, reconnect_ms=50)
    pid = private_redis.proc.pid
    try:
        time.sleep(0.8)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(1.5)
    finally:
        os.kill(pid, signal.SIGCONT)
    lines, summ = finish(p)
    src = [x["source"] for x in lines]
    assert src[0] == "redis" and "local" in src, src
    assert src[-5:] == ["redis"] * 5, src       # back on Redis once it answers
    assert all(x["allowed"] for x in lines)
    st = summ["stats"]
    assert st["redis_errors"] >= 1 and st["fallback"] == src.count("local"), st
    assert st["fallback_active"] == 0, st
    # A check Redis never answered waited about command_timeout, not longer, and
    # the checks after it did not wait: a hung server costs a timeout per
    # connection to it (the client may reconnect to the frozen server, whose
    # kernel still accepts), not one per check.
    slow = [x["ms"] for x in lines if x["source"] == "local"]
    assert max(slow) < 1000, slow
    n_slow = len([ms for ms in slow if ms >= 150])
    assert 1 <= n_slow <= len(slow) // 2, slow
    assert "orderflow_ratelimit_fallback_active 0\n" in summ["metrics"]


def test_daemon_metrics_list_ratelimit(daemon):
    r = daemon.get("/metrics")
    assert r.status == 200
    for name in ("orderflow_ratelimit_requests_total{result=\"allowed\"}",
                 "orderflow_ratelimit_requests_total{result=\"limited\"}",
                 "orderflow_ratelimit_fallback_total", "orderflow_ratelimit_redis_errors_total",
                 "orderflow_ratelimit_fallback_active"):
        assert "\n" + name + " " in r.text, name
