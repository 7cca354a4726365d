# tests/bench/pg_probe: the PostgreSQL pool of src/io/pg.c against a real
# server.  Batches queue and pipeline on a connection (up to its depth of
# 4), each ends in its own sync: one that fails rolls back alone, its
# neighbours on the same connection commit, and every batch gets its own
# results back, once.  A send that fails inside pg_submit calls back on a
# later loop turn, never from inside pg_submit, and the pool reconnects.
#
# Runs under Debian's /usr/bin/python3 (see tests/run-checks.sh).

import json
import os
import subprocess

import pytest

PIPELINE_DEPTH = 4  # PG_PIPELINE_DEPTH in src/io/pg.c


def probe_path():
    path = os.path.join(os.environ.get("OF_BUILDDIR", ""), "tests", "bench", "pg_probe")
    if not os.access(path, os.X_OK):
        pytest.fail("%s not built" % path)
    return path


def run_probe(pg, dbname, *args):
    p = subprocess.run([probe_path(), "--conninfo", pg.conninfo(dbname)] + list(args),
                       capture_output=True, text=True, timeout=60)
    lines = [json.loads(line) for line in p.stdout.splitlines()]
    assert p.returncode == 0, (p.returncode, p.stderr, lines[-3:])
    return [x for x in lines if "k" in x], lines[-1]["summary"]


@pytest.mark.parametrize("pool", [1, 2])
def test_pipelined_batches_keep_their_own_results_and_failures(session_pg, db, pool):
    session_pg.sql("CREATE TABLE probe_t (k integer PRIMARY KEY)", dbname=db)
    n = 40
    batches, summary = run_probe(session_pg, db, "--pool", str(pool), "--batches", str(n),
                                 "--fail-every", "3")
    # everything beyond what the connections can carry waited in the queue
    assert summary["waiting_after_submit"] == n - pool * PIPELINE_DEPTH
    assert summary["batches"] == n and summary["up"] == pool
    assert sorted(b["k"] for b in batches) == list(range(1, n + 1))
    failing = {k for k in range(1, n + 1) if k % 3 == 0}
    for b in batches:
        if b["k"] in failing:
            assert (b["ok"], b["sqlstate"], b["value"]) == (False, "22012", ""), b
        else:
            assert (b["ok"], b["value"]) == (True, str(b["k"])), b
    assert summary["failed"] == len(failing) and summary["stats_errors"] == len(failing)
    # on one connection, answers come back in the order the batches were sent
    if pool == 1:
        assert [b["k"] for b in batches] == list(range(1, n + 1))
    # a failed batch rolled back its own insert only
    rows = session_pg.sql("SELECT k FROM probe_t ORDER BY k", dbname=db)
    assert [r[0] for r in rows] == [k for k in range(1, n + 1) if k not in failing]


def test_no_failures_many_batches(session_pg, db):
    session_pg.sql("CREATE TABLE probe_t (k integer PRIMARY KEY)", dbname=db)
    batches, summary = run_probe(session_pg, db, "--pool", "3", "--batches", "2000",
                                 "--fail-every", "0")
    assert summary["ok"] == 2000 and summary["failed"] == 0
    assert all(b["value"] == str(b["k"]) for b in batches)
    assert session_pg.sql("SELECT count(*) FROM probe_t", dbname=db)[0][0] == 2000


@pytest.mark.parametrize("pool", [1, 2])
def test_send_failure_calls_back_after_pg_submit_returns(session_pg, db, pool):
    # pg_probe --sever shuts down the pool's sockets while they are idle and
    # submits batches in one loop turn until a send fails inside pg_submit
    # (pg_conn_send / pg_conn_flush -> pg_conn_fail; libpq reports a write
    # to a closed socket on the next send on that connection).  A caller
    # that sets state after PG_OK must not find its callback already ran.
    p = subprocess.run([probe_path(), "--conninfo", session_pg.conninfo(db),
                        "--pool", str(pool), "--sever"],
                       capture_output=True, text=True, timeout=60)
    lines = [json.loads(line) for line in p.stdout.splitlines()]
    assert lines and "sever" in lines[-1], (p.returncode, p.stdout, p.stderr)
    r = lines[-1]["sever"]
    assert r["severed"] == pool, r
    # the path under test was taken: a connection went down inside a pg_submit
    assert r["failed_at"] > 0 and r["submit"] == "ok", r
    assert r["inside"] is False, r
    # every batch called back once, after its pg_submit had returned (the
    # lost ones, plus the one sent after the reconnect)
    assert r["each_once"] is True and r["later"] == r["submitted"] + 1, r
    assert r["error"] != "", r
    # the pool came back and the next batch went through
    assert r["reconnected"] is True and r["after_ok"] is True and r["after_calls"] == 1, r
    assert r["stats_batches"] == r["submitted"] + 1 and r["stats_errors"] == r["submitted"], r
    assert p.returncode == 0, (p.returncode, p.stderr, r)
