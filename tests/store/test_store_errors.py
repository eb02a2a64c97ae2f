"""Bad URLs, unreachable servers, missing drivers and broken files: clear errors, never a raw
driver exception, never a password."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from agent_guardrails.engine.decision import Charge
from agent_guardrails.errors import ConfigurationError, StoreUnavailable
from agent_guardrails.store import open_store
from agent_guardrails.store.postgres import PostgresStore, parse_postgres_url
from agent_guardrails.store.sqlite import SQLiteStore, parse_sqlite_url
from tests.store.store_helpers import StoreFactory, pg_base, pg_execute, with_schema


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:/x",
        "sqlite:x.db",
        "postgresql://",
        "postgresql:///",
        "postgres://",
        "foo://x",
        "mysql://root@localhost/db",
        "no-scheme-at-all",
    ],
)
def test_malformed_urls_say_what_to_write(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"://"):
        open_store(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:/x", "sqlite:///relative/path.db"),
        ("sqlite://", "sqlite:///relative/path.db"),
        ("sqlite:///", "no file name"),
        ("sqlite://host/x.db", "sqlite:////absolute/path.db"),
        ("sqlite:///:memory:", "memory://"),
        ("sqlite:///x.db?cache=shared", "timeout=SECONDS"),
        ("sqlite:///x.db?timeout=soon", "number of seconds"),
        ("sqlite:///x.db?timeout=0", "positive"),
    ],
)
def test_bad_sqlite_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("?", r"\?")):
        SQLiteStore(url)


def test_sqlite_url_forms() -> None:
    assert parse_sqlite_url("sqlite:///rel/path.db") == ("rel/path.db", 30.0)
    assert parse_sqlite_url("sqlite:////abs/path.db") == ("/abs/path.db", 30.0)
    assert parse_sqlite_url("sqlite:////abs/my%20file.db?timeout=2.5") == ("/abs/my file.db", 2.5)


def test_sqlite_relative_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = SQLiteStore("sqlite:///rel.db")
    store.set_level("x", 1, by="a", reason="r")
    store.close()
    assert (tmp_path / "rel.db").exists()


def test_sqlite_in_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    with pytest.raises(ConfigurationError, match="does not exist") as info:
        open_store(f"sqlite:///{missing}/store.db")
    assert str(missing) in str(info.value)


def test_sqlite_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is a directory"):
        open_store(f"sqlite:///{tmp_path}")


def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is not a database, just some notes" * 100)
    with pytest.raises(StoreUnavailable, match="not a database") as info:
        open_store(f"sqlite:///{path}")
    assert str(path) in str(info.value)


def test_a_closed_store_is_unavailable(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.get_level("x")


def test_sqlite_writer_waits_for_a_long_transaction(tmp_path: Path) -> None:
    """A writer holding the database past the timeout gives StoreUnavailable, not a raw
    sqlite3 error."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 's.db'}?timeout=0.2"
    store = SQLiteStore(url, queue_writers=False)
    blocker = sqlite3.connect(str(tmp_path / "s.db"), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            store.set_level("x", 1, by="a", reason="r")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    store.set_level("x", 1, by="a", reason="r")
    assert store.get_level("x") == 1
    store.close()


# ------------------------------------------------------------------ PostgreSQL


def test_postgres_url_parsing() -> None:
    parsed = parse_postgres_url("postgresql://u:pw@db.example:5433/app?schema=guard")
    assert parsed.schema == "guard"
    assert parsed.conninfo.startswith("postgresql://u:pw@db.example:5433/app?")
    assert "schema" not in parsed.conninfo
    assert "connect_timeout=10" in parsed.conninfo
    assert "application_name=agent-guardrails" in parsed.conninfo
    assert (parsed.pool_min, parsed.pool_max, parsed.connect_timeout) == (1, 10, 10.0)
    parsed = parse_postgres_url(
        "postgres://u@h/app?connect_timeout=3&application_name=me&pool_min=0&pool_max=4"
    )
    assert parsed.schema is None
    assert "connect_timeout=3" in parsed.conninfo
    assert "application_name=me" in parsed.conninfo
    assert "pool_" not in parsed.conninfo
    assert "options" not in parsed.conninfo  # PgBouncer refuses startup options
    assert (parsed.pool_min, parsed.pool_max, parsed.connect_timeout) == (0, 4, 3.0)
    assert parse_postgres_url("postgresql:///app").schema is None  # local socket, database app
    assert parse_postgres_url("postgresql://db.example").schema is None  # host only
    assert parse_postgres_url("postgresql://h/db?pool_min=5&pool_max=5").pool_max == 5


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://", "names no server and no database"),
        ("postgresql://h/db?schema=bad-name", "bad schema"),
        ("postgresql://h/db?schema=1abc", "bad schema"),
        ("postgresql://h:notaport/db", "bad PostgreSQL URL"),
        ("postgresql://h/db?pool_max=0", r"bad pool_max='0'.*whole number of connections >= 1"),
        ("postgresql://h/db?pool_max=ten", r"bad pool_max='ten'.*\?pool_min=1&pool_max=10"),
        ("postgresql://h/db?pool_min=-1", r"bad pool_min='-1'.*>= 0"),
        ("postgresql://h/db?pool_min=1.5", r"bad pool_min='1.5'"),
        ("postgresql://h/db?pool_min=4&pool_max=2", "make pool_max at least pool_min"),
        ("postgresql://h/db?connect_timeout=soon", "bad connect_timeout='soon'"),
    ],
)
def test_bad_postgres_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PostgresStore(url)


def test_unreachable_postgres_is_unavailable_quickly() -> None:
    store = open_store("postgresql://postgres:s3cret-pw@127.0.0.1:1/test")  # never connects
    start = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        store.snapshot(dial_key="w", counter_keys=["budget:x@0"], call_key="k")
    assert time.monotonic() - start < 15
    message = str(info.value)
    assert "127.0.0.1" in message
    assert "s3cret-pw" not in message
    assert "postgresql://postgres:***@127.0.0.1:1/test" in message
    assert not isinstance(info.value.__cause__, StoreUnavailable)
    with pytest.raises(StoreUnavailable):  # the next operation tries again, and fails again
        store.get_level("w")
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.get_level("w")


def test_password_in_query_is_redacted_too() -> None:
    store = open_store("postgresql://postgres@127.0.0.1:1/test?password=hunter2&sslmode=disable")
    with pytest.raises(StoreUnavailable) as info:
        store.get_level("w")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in store.url
    store.close()


@pytest.mark.parametrize("module", ["psycopg", "psycopg_pool"])
def test_missing_psycopg_says_what_to_install(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ConfigurationError, match=r"pip install 'agent-guardrails\[postgres\]'"):
        open_store("postgresql://postgres@127.0.0.1:5432/test")


@pytest.mark.postgres
def test_store_url_hides_the_password(pg_schema: str, open_stores: StoreFactory) -> None:
    base = pg_base()
    if "@" not in base:
        pytest.skip("the test server URL has no user part")
    user, _, rest = base.partition("://")[2].partition("@")
    url = with_schema(f"postgresql://{user.split(':')[0]}:ignored-by-trust@{rest}", pg_schema)
    store = open_stores(url)
    assert "ignored-by-trust" not in store.url
    assert "***" in store.url


@pytest.mark.postgres
def test_a_cut_connection_is_replaced_and_other_errors_are_store_unavailable(
    pg_url: str, pg_schema: str, open_stores: StoreFactory
) -> None:
    app = f"ag-{pg_schema}"  # this test's connections, and no one else's
    store = open_stores(f"{pg_url}&application_name={app}")
    store.set_level("w", 1, by="a", reason="r")
    # Cut every connection this store holds, as a server restart or a network drop would.
    killed = pg_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (app,),
    )
    assert killed
    assert all(row == (True,) for row in killed)
    assert store.get_level("w") == 1  # retried on a fresh connection: no error
    pg_execute(f'DROP TABLE "{pg_schema}".ag_levels CASCADE')
    with pytest.raises(StoreUnavailable, match="ag_levels"):
        store.get_level("w")


@pytest.mark.postgres
def test_many_stores_opening_one_new_schema_at_once(pg_url: str, open_stores: StoreFactory) -> None:
    import threading

    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            open_stores(pg_url).get_level("w")  # the first operation creates the schema
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = open_stores(pg_url)
    assert store.verify_audit().ok


@pytest.mark.postgres
def test_a_database_from_a_newer_version_is_refused(
    pg_url: str, pg_schema: str, open_stores: StoreFactory
) -> None:
    open_stores(pg_url).get_level("w")  # the first operation creates the schema
    pg_execute(f"UPDATE \"{pg_schema}\".ag_meta SET value = '999' WHERE key = 'schema_version'")
    store = open_stores(pg_url)  # constructing it never connects: the first operation refuses
    for _ in range(2):
        with pytest.raises(ConfigurationError, match="newer agent-guardrails"):
            store.snapshot(dial_key="w", counter_keys=[], call_key="k")


def test_a_sqlite_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path / 's.db'}"
    open_store(url).close()
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute("UPDATE ag_meta SET value = '999' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(ConfigurationError, match="newer agent-guardrails"):
        open_store(url)


def test_a_version_1_sqlite_database_is_upgraded_in_place(tmp_path: Path) -> None:
    """Version 1's outcomes had no level or pack version: opening the file adds them, and the
    outcomes already recorded are kept (level and pack version not known)."""
    import sqlite3

    from agent_guardrails.store.base import Outcome

    url = f"sqlite:///{tmp_path / 's.db'}"
    open_store(url).close()
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute("DROP INDEX ag_outcomes_kpi")  # version 3's additions
    db.execute("DROP TABLE ag_gate_calls")
    db.execute("DROP TABLE ag_gate_events")
    db.execute("ALTER TABLE ag_outcomes DROP COLUMN level")
    db.execute("ALTER TABLE ag_outcomes DROP COLUMN pack_version")
    db.execute(
        "INSERT INTO ag_outcomes (entity, cohort, metric, value, at, scope_key) "
        "VALUES ('c1', 'treatment', 'revenue', 5, 1704283200, 'global')"
    )
    db.execute("UPDATE ag_meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.close()

    store = open_store(url)
    (old,) = store.outcomes()
    assert (old.entity, old.value, old.level, old.pack_version) == ("c1", 5.0, None, None)
    store.record_outcome(Outcome("c2", "control", "revenue", 7.0, 1704283300.0, "global", 1, "4"))
    assert [(o.level, o.pack_version) for o in store.outcomes()] == [(None, None), (1, "4")]
    store.close()
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("SELECT value FROM ag_meta WHERE key = 'schema_version'").fetchone() == ("5",)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert {"ag_gate_calls", "ag_gate_events", "ag_outcomes_kpi", "ag_gate_calls_versions"} <= (
        tables
    )
    db.close()


def _written_by_version(tmp_path: Path, version: int, lacking: str) -> str:
    """A SQLite store as schema ``version`` left it: without index ``lacking``."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 's.db'}"
    open_store(url).close()
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute(f"DROP INDEX {lacking}")
    db.execute(f"UPDATE ag_meta SET value = '{version}' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    return url


def test_a_version_3_sqlite_store_gains_the_index_of_pack_versions(tmp_path: Path) -> None:
    import sqlite3

    url = _written_by_version(tmp_path, 3, "ag_gate_calls_versions")
    open_store(url).close()
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("SELECT value FROM ag_meta WHERE key = 'schema_version'").fetchone() == ("5",)
    plan = db.execute(
        "EXPLAIN QUERY PLAN SELECT MIN(pack_version) FROM ag_gate_calls WHERE scope = 'x'"
    ).fetchall()
    assert "ag_gate_calls_versions" in str(plan)
    db.close()


def test_a_version_4_sqlite_store_gains_the_index_of_reserved_calls(tmp_path: Path) -> None:
    import sqlite3

    url = _written_by_version(tmp_path, 4, "ag_calls_reserved")
    store = open_store(url)
    assert store.reserve("k", []).ok
    assert [(c.key, c.state) for c in store.open_calls()] == [("k", "reserved")]
    store.close()
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("SELECT value FROM ag_meta WHERE key = 'schema_version'").fetchone() == ("5",)
    plan = db.execute("EXPLAIN QUERY PLAN SELECT key FROM ag_calls WHERE state = 'reserved'")
    assert "ag_calls_reserved" in str(plan.fetchall())
    db.close()


def test_a_row_lock_held_elsewhere_fails_closed_in_time(pg_url: str) -> None:
    """Another session (a psql left in a transaction) holds a budget counter's row: a call
    waits at most the URL's timeout, then the store is unavailable (a fail-closed
    decision), never a hung run."""
    import time

    import psycopg

    from tests.store.store_helpers import pg_base

    url = pg_url + "&connect_timeout=2"
    store = open_store(url)
    charge = Charge("budget:b|USD@0", "budget", 1.0, 10.0, 2**40, "b")
    assert store.reserve("k1", [charge]).ok
    holder = psycopg.connect(pg_base())
    try:
        schema = pg_url.rsplit("schema=", 1)[1]
        holder.execute(f'SELECT * FROM "{schema}".ag_counters FOR UPDATE').fetchall()
        began = time.monotonic()
        with pytest.raises(StoreUnavailable, match="lock timeout"):
            store.reserve("k2", [charge])
        assert time.monotonic() - began < 6
    finally:
        holder.rollback()
        holder.close()
    assert store.reserve("k2", [charge]).ok
    store.close()


def test_an_existing_sqlite_store_opens_while_another_process_writes(tmp_path: Path) -> None:
    # "A store opened from a URL never fails at Guardrails(...)": opening an existing
    # database reads its schema version without the write lock another writer holds.
    import sqlite3

    url = f"sqlite:///{tmp_path / 's.db'}?timeout=0.2"
    open_store(url).close()
    blocker = sqlite3.connect(str(tmp_path / "s.db"), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        store = open_store(url)
        assert store.get_level("x") is None  # reads go on
        with pytest.raises(StoreUnavailable, match="locked"):
            store.set_level("x", 1, by="a", reason="r")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    store.set_level("x", 1, by="a", reason="r")
    store.close()
