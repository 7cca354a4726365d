# orderflowd --migrate: applies sql/NNN_name.sql in order, each in its own
# transaction, records them in schema_migrations, and is idempotent.

import glob
import os
import re
import shutil

import ofharness

TABLES = {"creators", "shops", "orders", "order_items", "order_workflows",
          "order_status_history", "audit_log", "webhook_events",
          "inventory_items", "inventory_reservations", "schema_migrations"}


def migration_files(d):
    """[(version, name)] of the NNN_name.sql files in d, in order."""
    out = []
    for p in sorted(glob.glob(os.path.join(d, "*.sql"))):
        m = re.match(r"^(\d+)_(.+)\.sql$", os.path.basename(p))
        assert m, "migration file not named NNN_name.sql: %s" % p
        out.append((int(m.group(1)), m.group(2)))
    return out


def migration_rows(pg, db):
    """[(version, name, applied_at)]; name normalised ("001_x.sql" and "x" both give "x")."""
    rows = pg.sql("SELECT version, name, applied_at FROM schema_migrations ORDER BY version", dbname=db)
    return [(v, re.sub(r"^\d+_|\.sql$", "", n), t) for v, n, t in rows]


def tables(pg, db):
    return {r[0] for r in pg.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", dbname=db)}


def schema_dump(pg, db):
    r = ofharness.run([os.path.join(ofharness.PGBIN, "pg_dump"), "-h", "127.0.0.1", "-p", str(pg.port),
                       "-U", "postgres", "--schema-only", "--no-owner", db])
    assert r.returncode == 0, r.stderr.decode()
    # pg_dump >= 15.14 brackets the dump with \restrict KEY / \unrestrict KEY, KEY random.
    return re.sub(r"(?m)^\\(un)?restrict .*$", "", r.stdout.decode())


def test_migrate_twice(make_daemon, session_pg):
    d = make_daemon()
    r1 = d.migrate(check=False)
    assert r1.returncode == 0, r1.stdout + r1.stderr
    files = migration_files(ofharness.migrations_dir())
    assert files, "no migrations in %s" % ofharness.migrations_dir()
    rows1 = migration_rows(session_pg, d.dbname)
    assert [(v, n) for v, n, _ in rows1] == files, (rows1, files)
    have = tables(session_pg, d.dbname)
    assert TABLES <= have, "missing tables: %s" % sorted(TABLES - have)
    dump1 = schema_dump(session_pg, d.dbname)

    r2 = d.migrate(check=False)
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert "up to date" in r2.stdout + r2.stderr, r2.stdout + r2.stderr
    assert migration_rows(session_pg, d.dbname) == rows1
    assert schema_dump(session_pg, d.dbname) == dump1


def test_migrate_failure_rolls_back(make_daemon, session_pg, tmp_path):
    """A failing migration is not recorded and leaves nothing behind; earlier ones stay."""
    mdir = tmp_path / "sql"
    shutil.copytree(ofharness.migrations_dir(), str(mdir))
    good = migration_files(str(mdir))
    bad_version = good[-1][0] + 1
    (mdir / ("%03d_broken.sql" % bad_version)).write_text(
        "CREATE TABLE of_partial (x int);\nSELECT * FROM of_no_such_table;\n")
    d = make_daemon(overrides={"postgres": {"migrations_dir": str(mdir)}})
    r = d.migrate(check=False)
    assert r.returncode == 1, (r.returncode, r.stdout + r.stderr)
    assert [(v, n) for v, n, _ in migration_rows(session_pg, d.dbname)] == good
    assert "of_partial" not in tables(session_pg, d.dbname)

    # Fixed: the next run applies it.
    (mdir / ("%03d_broken.sql" % bad_version)).write_text("CREATE TABLE of_partial (x int);\n")
    r = d.migrate(check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [(v, n) for v, n, _ in migration_rows(session_pg, d.dbname)] == good + [(bad_version, "broken")]
    assert "of_partial" in tables(session_pg, d.dbname)


def test_migrate_database_down(make_daemon, session_pg):
    """No server: exit 1 (bounded by postgres.connect_timeout), not a hang or a crash."""
    lock = ofharness.PortLock()     # a port nobody listens on
    try:
        d = make_daemon(overrides={"postgres": {
            "conninfo": "host=127.0.0.1 port=%d dbname=x user=postgres" % lock.port,
            "connect_timeout": "1s"}})
        r = d.migrate(check=False)
        assert r.returncode == 1, (r.returncode, r.stdout + r.stderr)
        assert r.stderr.strip(), "no error message"
    finally:
        lock.release()


def _copy_migrations(d):
    """A private copy of the migrations directory the daemon d will use."""
    target = os.path.join(d.dir, "sql")
    shutil.copytree(ofharness.migrations_dir(), target)
    d.set("postgres", "migrations_dir", target)
    d.write_config()
    return target


def test_new_migration_applied_once(make_daemon):
    d = make_daemon()
    sql = _copy_migrations(d)
    d.migrate()
    with open(os.path.join(sql, "900_probe.sql"), "w") as f:
        f.write("CREATE TABLE migrate_probe (id int PRIMARY KEY);\n"
                "INSERT INTO migrate_probe VALUES (1);\n")
    r = d.migrate()
    assert "migration applied" in r.stderr and "900_probe.sql" in r.stderr, r.stderr
    assert d.pg.sql("SELECT count(*) FROM migrate_probe", dbname=d.dbname) == [(1,)]
    d.migrate()     # a second insert would fail on the primary key
    assert [v for v, _, _ in migration_rows(d.pg, d.dbname)][-1] == 900


def test_changed_migration_refused(make_daemon):
    d = make_daemon()
    sql = _copy_migrations(d)
    d.migrate()
    with open(os.path.join(sql, "001_schema.sql"), "a") as f:
        f.write("\n-- edited after it was applied\n")
    r = d.migrate(check=False)
    assert r.returncode == 1, r.stderr
    assert "migration changed after it was applied" in r.stderr, r.stderr
