# pytest fixtures for the orderflowd integration tests.
#
# One PostgreSQL cluster and one redis-server are shared by the whole session;
# each test gets its own freshly created database (migrated by the daemon's
# --migrate when the daemon starts) and its own daemon.  Tests that stop a
# server ask for a private one (private_pg, private_redis).  When a test fails,
# the logs of the daemons it started (and of its private servers) are appended
# to the failure report.  Everything is torn down at the end of the session,
# also when tests fail (see ofharness._cleanup).

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ofharness  # noqa: E402
from ofharness import Orderflowd, Postgres, Redis  # noqa: E402


def pytest_sessionstart(session):
    """Refuse to run without a daemon: nothing is skipped silently."""
    try:
        ofharness.daemon_binary()
    except RuntimeError as e:
        raise pytest.UsageError(str(e))
    if not os.path.isdir(ofharness.migrations_dir()):
        raise pytest.UsageError("migrations dir %s does not exist (set OF_SRCDIR to the source tree)"
                                % ofharness.migrations_dir())


_private = []   # private servers of the current test (their logs go in failure reports)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach daemon (and private server) logs to the report of a failed test."""
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    for d in Orderflowd.registry:
        rep.sections.append(("orderflowd log: %s (%s)" % (d.name, d.logfile),
                             d.log_text()[-30000:] or "(empty)"))
    for s in _private:
        rep.sections.append(("%s log (%s)" % (s.name, s.logfile), s.log_text()[-8000:]))


@pytest.fixture(autouse=True)
def _daemon_registry():
    """Kill every daemon a test started once it is over."""
    Orderflowd.registry.clear()
    del _private[:]
    yield
    for d in list(Orderflowd.registry):
        d.cleanup()


@pytest.fixture(scope="session")
def session_pg():
    pg = Postgres("pg-shared")
    pg.start()
    yield pg
    pg.cleanup()


@pytest.fixture(scope="session")
def session_redis():
    r = Redis("redis-shared")
    r.start()
    yield r
    r.cleanup()


@pytest.fixture
def db(session_pg):
    """A fresh, empty database on the shared cluster (dropped afterwards)."""
    name = session_pg.create_database()
    yield name
    try:
        session_pg.drop_database(name)
    except Exception:
        pass


@pytest.fixture
def private_pg():
    """A PostgreSQL cluster of this test's own (it may stop or kill it)."""
    pg = Postgres()
    _private.append(pg)
    pg.start()
    yield pg
    pg.cleanup()


@pytest.fixture
def private_redis():
    """A redis-server of this test's own (it may stop or kill it)."""
    r = Redis()
    _private.append(r)
    r.start()
    yield r
    r.cleanup()


@pytest.fixture
def make_daemon(session_pg, session_redis):
    """Factory: make_daemon(pg=, redis=, dbname=, workers=, overrides=) -> Orderflowd (not started).

    Defaults to the shared servers and a fresh database."""
    def make(pg=None, redis=None, dbname=None, workers=2, overrides=None):
        pg = pg or session_pg
        redis = redis or session_redis
        if dbname is None:
            dbname = pg.create_database()
        return Orderflowd(pg, redis, dbname, workers=workers, overrides=overrides)
    return make


@pytest.fixture
def daemon(make_daemon):
    """A running, ready daemon (2 workers) on the shared servers and a fresh database."""
    d = make_daemon()
    d.start()
    return d
