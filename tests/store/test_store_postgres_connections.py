"""PostgreSQL connections: construction never connects, the pool opens on first use, a
broken connection is replaced and the operation retried once, a restart costs no call."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from agent_guardrails.engine.decision import Charge
from agent_guardrails.errors import StoreUnavailable
from agent_guardrails.store import Store, open_store
from agent_guardrails.store.base import AuditEvent
from tests.store.store_helpers import StoreFactory, pg_base, pg_execute

DAY_END = 1_704_326_400
BUDGET = Charge("budget:conn|USD@1704240000", "budget", 1.0, 1e9, DAY_END, "conn")


def test_constructing_a_store_never_connects() -> None:
    store = open_store("postgresql://postgres:pw@127.0.0.1:1/test")  # nothing listens there
    with pytest.raises(StoreUnavailable, match=r"postgresql://postgres:\*\*\*@127\.0\.0\.1:1"):
        store.snapshot(dial_key="w", counter_keys=["budget:x@0"], call_key="k")
    store.close()
    store.close()  # twice is fine


@pytest.mark.postgres
def test_the_schema_is_created_by_the_first_operation_not_by_construction(
    pg_url: str, pg_schema: str, open_stores: StoreFactory
) -> None:
    store = open_stores(pg_url)
    exists = "SELECT count(*) FROM pg_namespace WHERE nspname = %s"
    assert pg_execute(exists, (pg_schema,)) == [(0,)]
    assert store.snapshot(dial_key="w", counter_keys=[], call_key="k").level is None
    assert pg_execute(exists, (pg_schema,)) == [(1,)]


@pytest.fixture
def new_database() -> Iterator[str]:
    """The name of a database that does not exist yet; dropped afterwards if created."""
    pg_base()
    name = f"ag_test_db_{uuid.uuid4().hex[:10]}"
    yield name
    pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
def test_a_failed_first_operation_is_tried_again_by_the_next(new_database: str) -> None:
    """The first operation cannot set up (the database does not exist yet): it raises, and
    the next operation, once the database is there, sets up and succeeds."""
    parts = urlsplit(pg_base())
    store = open_store(urlunsplit(parts._replace(path=f"/{new_database}")))
    try:
        with pytest.raises(StoreUnavailable, match=new_database):
            store.get_level("w")
        pg_execute(f'CREATE DATABASE "{new_database}"')
        store.set_level("w", 2, by="ana", reason="r")
        assert store.get_level("w") == 2
    finally:
        store.close()


# ------------------------------------------------------------------ the retry rule


@pytest.mark.postgres
def test_the_retry_rule(pg_url: str, open_stores: StoreFactory) -> None:
    """One retry, on a fresh connection, only when the connection broke; never after a
    failed COMMIT; never for an error that left the connection working."""
    import psycopg

    from agent_guardrails.store._postgres_connections import CommitUnknown

    store = open_stores(pg_url)
    store.get_level("w")
    conns: Any = store._conns  # type: ignore[attr-defined]
    seen: list[Any] = []

    def breaks_once(conn: Any) -> int:
        seen.append(conn)
        if len(seen) == 1:
            conn.close()  # as a server restart would leave it
            raise psycopg.OperationalError("the connection is lost")
        return int(conn.execute("SELECT 1").fetchone()[0])

    assert conns.run(breaks_once) == 1
    assert len(seen) == 2
    assert seen[0] is not seen[1]
    assert seen[0].closed
    assert not seen[1].closed

    def always_breaks(conn: Any) -> None:
        seen.append(conn)
        conn.close()
        raise psycopg.OperationalError("the connection is lost")

    seen.clear()
    with pytest.raises(StoreUnavailable, match="the connection is lost"):
        conns.run(always_breaks)
    assert len(seen) == 2  # one retry, not more

    def commit_fails(conn: Any) -> None:
        seen.append(conn)
        conn.close()
        raise CommitUnknown(psycopg.OperationalError("server closed the connection"))

    seen.clear()
    with pytest.raises(StoreUnavailable, match="outcome of its commit is unknown"):
        conns.run(commit_fails)
    assert len(seen) == 1

    def bad_sql(conn: Any) -> None:
        seen.append(conn)
        conn.execute("SELEC 1")

    seen.clear()
    with pytest.raises(StoreUnavailable, match="syntax error"):
        conns.run(bad_sql)
    assert len(seen) == 1

    seen.clear()
    with pytest.raises(StoreUnavailable, match="the connection is lost"):
        conns.run(breaks_once, retry=False)
    assert len(seen) == 1


def _hammer(store: Store, tag: str, threads: int = 4, rounds: int = 10) -> list[BaseException]:
    """Every kind of operation, from several threads at once: the errors they met."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def work(n: int) -> None:
        try:
            barrier.wait()
            for i in range(rounds):
                key = f"{tag}-{n}-{i}"
                res = store.reserve(
                    key,
                    [BUDGET],
                    audit=AuditEvent("decision", {"n": n}, key, f"{key}:d"),
                    start=AuditEvent("execution.started", {}, key, f"{key}:s"),
                )
                assert res.ok
                assert res.started
                store.finish(key, ok=True, audit=AuditEvent("done", {}, key, f"{key}:f"))
                snap = store.snapshot(dial_key="w", counter_keys=[BUDGET.key], call_key=key)
                assert snap.call is not None
                assert snap.call.state == "finished"
                if i % 5 == 0:
                    store.set_level(f"w{n}", i % 4, by="ops", reason="test")
                    store.append_audit(AuditEvent("note", {"n": n, "i": i}))
                    store.audit_records(after=0, limit=5)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return errors


@pytest.fixture
def app_store(pg_url: str, pg_schema: str, open_stores: StoreFactory) -> tuple[Store, str]:
    """A store whose connections carry an application name of their own, so that a test
    can terminate them without touching anyone else's sessions on the server."""
    app = f"agent-guardrails-{pg_schema}"
    return open_stores(f"{pg_url}&application_name={app}&pool_min=2&pool_max=4"), app


def _terminate(app: str) -> int:
    rows = pg_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = %s AND pid <> pg_backend_pid()",
        (app,),
    )
    return sum(1 for (killed,) in rows if killed)


@pytest.mark.postgres
def test_terminated_backends_cost_no_call(app_store: tuple[Store, str]) -> None:
    store, app = app_store
    assert _hammer(store, "before") == []
    assert _terminate(app) >= 2  # the pool held several connections: every one is cut
    assert _hammer(store, "after") == []
    assert _terminate(app) >= 1
    assert store.get_level("w0") is not None  # a single-statement read retries too
    assert store.counters() == {BUDGET.key: 80.0}
    records = store.audit_records()
    assert len([r for r in records if r.kind == "decision"]) == 80
    assert store.verify_audit().ok


@pytest.mark.postgres
def test_pool_max_bounds_the_connections(
    pg_url: str, pg_schema: str, open_stores: StoreFactory
) -> None:
    def peak(pool_max: int) -> int:
        app = f"ag-{pg_schema}-{pool_max}"
        store = open_stores(f"{pg_url}&application_name={app}&pool_min=0&pool_max={pool_max}")
        store.get_level("w")
        conns: Any = store._conns  # type: ignore[attr-defined]
        most = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal most
            while not done.is_set():
                count = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                most = max(most, int(pg_execute(count, (app,))[0][0]))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        workers = [
            threading.Thread(target=conns.run, args=(lambda c: c.execute("SELECT pg_sleep(0.3)"),))
            for _ in range(6)
        ]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        done.set()
        sampler.join()
        return most

    assert peak(2) == 2
    assert peak(6) > 2


# ------------------------------------------------------------------ a real restart


def _cluster() -> tuple[str, str] | None:
    """``(version, name)`` of the local cluster the test server runs on, if it can be
    restarted from here (Debian's pg_ctlcluster, the server on this machine)."""
    host = urlsplit(pg_base()).hostname or "localhost"
    if shutil.which("pg_ctlcluster") is None or host not in ("127.0.0.1", "localhost", "::1"):
        return None
    if not os.path.isdir("/etc/postgresql"):
        return None
    versions = sorted(os.listdir("/etc/postgresql"))
    return (versions[-1], "main") if versions else None


def _wait_ready(timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError("the PostgreSQL server did not come back")


@pytest.mark.slow
@pytest.mark.postgres
def test_a_server_restart_costs_no_call(app_store: tuple[Store, str]) -> None:
    cluster = _cluster()
    if cluster is None:
        pytest.skip("needs a local server that pg_ctlcluster can restart")
    store, _app = app_store

    def ctl(what: str) -> subprocess.CompletedProcess[bytes]:
        command = ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, what]
        return subprocess.run(command, check=False, capture_output=True)

    assert _hammer(store, "before") == []
    try:
        restarted = ctl("restart")
        assert restarted.returncode == 0, restarted.stderr
        _wait_ready()
        assert _hammer(store, "after") == []
    finally:
        if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], check=False).returncode:
            ctl("start")
            _wait_ready()
    assert store.counters() == {BUDGET.key: 80.0}
    assert store.verify_audit().ok


def test_a_connection_lost_mid_statement_is_a_failure_not_an_expected_error(
    pg_url: str,
) -> None:
    # A connection cut under a statement (a proxy's reset, a failover) ends it with an error
    # that has no SQLSTATE. That is not the "expected" error a hot statement may name (""
    # by default): taken for it, a finish was dropped silently and a snapshot crashed with
    # a TypeError. It fails, so the store retries the operation on a fresh connection.
    import socket

    import psycopg

    from agent_guardrails.store._postgres_connections import (
        PostgresConnections,
        StatementFailed,
    )

    conns = PostgresConnections(pg_url, pg_base(), pool_min=0, pool_max=1, timeout=3, setup=print)
    conn = psycopg.connect(pg_base(), autocommit=True)
    try:
        assert conns.exec_prepared(conn, b"ag_test_one", b"SELECT 1", []) is not None
        cut = socket.socket(fileno=conn.pgconn.socket)
        cut.shutdown(socket.SHUT_RDWR)
        cut.detach()
        with pytest.raises(StatementFailed):
            conns.exec_prepared(conn, b"ag_test_one", b"SELECT 1", [])
    finally:
        conn.close()
