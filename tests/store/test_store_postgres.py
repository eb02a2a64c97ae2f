"""PostgreSQL-only behaviour: races inside the server, schema selection, upgrades."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from agent_guardrails.store import open_store
from agent_guardrails.store._postgres_schema import chain_lock
from agent_guardrails.store._statements import POSTGRES
from agent_guardrails.store.base import GENESIS, AuditEvent, Outcome, canonical_json, chain_hash
from agent_guardrails.store.postgres import SCHEMA_VERSION, PostgresStore
from tests.store.store_helpers import StoreFactory, pg_base, pg_execute, raw_sql

pytestmark = pytest.mark.postgres


def test_two_appends_with_one_dedupe_racing_leave_one_record(
    pg_url: str, pg_schema: str, open_stores: StoreFactory
) -> None:
    """The second append puts its record in the outbox while the first holds the chain lock,
    then waits for the lock; when it gets it, its record is a duplicate of the committed
    first one and is dropped."""
    import psycopg

    store = open_stores(pg_url)
    store.append_audit(AuditEvent("before", {}))
    append = f'SELECT * FROM "{pg_schema}".ag_append(%s, NULL, %s, %s, %s, %s)'
    first = psycopg.connect(pg_base(), autocommit=True)
    second = psycopg.connect(pg_base(), autocommit=True)
    got: list[Any] = []
    try:
        first.execute("BEGIN")
        assert first.execute(append, ("first", "{}", "dup", 1.5, "1.5")).fetchone() is not None

        def race() -> None:
            got.append(second.execute(append, ("second", "{}", "dup", 2.5, "2.5")).fetchone())

        racer = threading.Thread(target=race)
        racer.start()
        time.sleep(0.5)  # the second append is now waiting for the chain head
        first.execute("COMMIT")
        racer.join(timeout=30)
    finally:
        first.close()
        second.close()
    assert got == [None]
    assert [r.kind for r in store.audit_records()] == ["before", "first"]
    assert store.verify_audit().ok
    record = store.append_audit(AuditEvent("after", {}))
    assert record is not None
    assert record.seq == 3
    assert store.verify_audit().ok


def test_without_a_schema_option_the_current_schema_is_used(
    pg_schema: str, open_stores: StoreFactory
) -> None:
    pg_execute(f'CREATE SCHEMA "{pg_schema}"')
    base = pg_base()
    url = base + ("&" if "?" in base else "?") + f"options=-csearch_path%3D{pg_schema}"
    store = open_stores(url)
    store.set_level("w", 2, by="a", reason="r")
    assert pg_execute(f'SELECT level FROM "{pg_schema}".ag_levels') == [(2,)]


def test_functions_are_replaced_when_they_change(
    pg_url: str, pg_schema: str, open_stores: StoreFactory
) -> None:
    first = open_stores(pg_url)
    first.get_level("w")  # the first operation creates the schema
    first.close()
    pg_execute(f"UPDATE \"{pg_schema}\".ag_meta SET value = 'old' WHERE key = 'functions'")
    pg_execute(
        f'CREATE OR REPLACE FUNCTION "{pg_schema}".ag_start('
        "p_key text, p_now float8, p_kind text, p_call_key text, p_data text, "
        "p_dedupe text, p_ts_repr text) RETURNS boolean LANGUAGE sql AS 'SELECT false'"
    )
    store = open_stores(pg_url)
    assert store.start("k")  # the broken function was replaced on open
    digest = pg_execute(f"SELECT value FROM \"{pg_schema}\".ag_meta WHERE key = 'functions'")
    assert digest != [("old",)]


def test_store_opened_from_many_processes_agrees_on_one_chain(
    pg_url: str, open_stores: StoreFactory
) -> None:
    """Two handles (two connections each) append alternately: one gap-free chain."""
    a = open_stores(pg_url)
    b = open_store(pg_url)
    try:
        for i in range(10):
            (a if i % 2 else b).append_audit(AuditEvent("tick", {"i": i}))
    finally:
        b.close()
    assert [r.data["i"] for r in a.audit_records()] == list(range(10))
    assert a.verify_audit().ok


# ------------------------------------------------------------------ the audit outbox


def _outbox(pg_url: str) -> int:
    return int(raw_sql(pg_url)("SELECT count(*) FROM {t}audit_outbox")[0][0])


@pytest.fixture
def no_chain_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hot-path writes never take a chain step of their own (only reads and close do)."""
    monkeypatch.setattr(PostgresStore, "CHAIN_INTERVAL", 3600.0)


@pytest.mark.usefixtures("no_chain_steps")
def test_hot_path_records_wait_in_the_outbox_until_the_log_is_read(
    pg_url: str, open_stores: StoreFactory
) -> None:
    store = open_stores(pg_url)
    assert store.reserve("k1", [], audit=AuditEvent("decision", {}, "k1", "k1:d")).ok
    assert store.start("k1", audit=AuditEvent("execution.started", {}, "k1", "k1:s"))
    store.finish("k1", ok=True, audit=AuditEvent("execution.finished", {}, "k1", "k1:f"))
    assert _outbox(pg_url) == 3
    assert raw_sql(pg_url)("SELECT count(*) FROM {t}audit") == [(0,)]
    assert [(r.seq, r.kind) for r in store.audit_records()] == [
        (1, "decision"),
        (2, "execution.started"),
        (3, "execution.finished"),
    ]
    assert _outbox(pg_url) == 0
    assert store.verify_audit().ok


@pytest.mark.usefixtures("no_chain_steps")
def test_find_audit_chains_a_waiting_record(pg_url: str, open_stores: StoreFactory) -> None:
    store = open_stores(pg_url)
    assert store.reserve("k1", [], audit=AuditEvent("decision", {"a": 1}, "k1", "k1:d")).ok
    record = store.find_audit("k1:d")
    assert record is not None
    assert (record.seq, record.data) == (1, {"a": 1})
    assert _outbox(pg_url) == 0


def test_hot_path_writes_chain_in_batches_by_themselves(
    pg_url: str, open_stores: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PostgresStore, "CHAIN_INTERVAL", 0.0)
    store = open_stores(pg_url)
    for i in range(5):
        assert store.reserve(f"k{i}", [], audit=AuditEvent("decision", {}, f"k{i}")).ok
    assert _outbox(pg_url) == 0
    assert raw_sql(pg_url)("SELECT max(seq) FROM {t}audit") == [(5,)]


@pytest.mark.usefixtures("no_chain_steps")
def test_close_chains_what_the_store_left_waiting(pg_url: str, open_stores: StoreFactory) -> None:
    store = open_stores(pg_url)
    assert store.reserve("k1", [], audit=AuditEvent("decision", {}, "k1")).ok
    assert _outbox(pg_url) == 1
    store.close()
    assert _outbox(pg_url) == 0
    assert open_stores(pg_url).verify_audit().ok


@pytest.mark.usefixtures("no_chain_steps")
def test_hot_path_duplicates_racing_leave_one_record(
    pg_url: str, pg_schema: str, open_stores: StoreFactory
) -> None:
    """Two transactions put records with one dedupe in the outbox at the same time (no
    check, no lock on the hot path): chaining keeps the first and drops the other."""
    import psycopg

    store = open_stores(pg_url)
    store.get_level("w")  # the first operation creates the schema
    reserve = (
        f'SELECT "{pg_schema}".ag_reserve1(%s, %s, %s, %s, %s, %s, %s, %s, %s, '
        "'{}', '{}', '{}', NULL, NULL, NULL, NULL)"
    )
    conns = [psycopg.connect(pg_base(), autocommit=True) for _ in range(2)]
    try:
        for i, conn in enumerate(conns):
            conn.execute("BEGIN")
            args = (f"k{i}", "[]", 1.5, 1.5, "decision", f"k{i}", canonical_json({"i": i}))
            assert conn.execute(reserve, (*args, "dup", "1.5")).fetchone() == (1,)
        for conn in reversed(conns):
            conn.execute("COMMIT")
    finally:
        for conn in conns:
            conn.close()

    def racer(i: int) -> None:
        store.reserve(f"t{i}", [], audit=AuditEvent("decision", {"t": i}, f"t{i}", "dup2"))

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = store.audit_records()
    assert [r.data for r in records if r.call_key in ("k0", "k1")] == [{"i": 0}]
    assert len([r for r in records if r.call_key and r.call_key.startswith("t")]) == 1
    first = store.find_audit("dup")
    assert first is not None
    assert first.data == {"i": 0}
    assert store.verify_audit().ok


def test_append_audit_waits_for_a_busy_chain_lock(
    pg_url: str, pg_schema: str, open_stores: StoreFactory
) -> None:
    """While another session holds the chain lock, append_audit commits its record to the
    outbox and waits; the record it returns is the one chained when the lock is free."""
    import psycopg

    store = open_stores(pg_url)
    store.append_audit(AuditEvent("before", {}))
    holder = psycopg.connect(pg_base(), autocommit=True)
    got: list[Any] = []
    try:
        holder.execute("BEGIN")
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (chain_lock(pg_schema),))
        waiter = threading.Thread(
            target=lambda: got.append(store.append_audit(AuditEvent("waited", {"x": 1})))
        )
        waiter.start()
        deadline = time.monotonic() + 10
        while _outbox(pg_url) == 0:
            assert time.monotonic() < deadline, "the record never reached the outbox"
            time.sleep(0.02)
        time.sleep(0.1)
        assert got == []  # still waiting for the lock
        holder.execute("COMMIT")
        waiter.join(timeout=30)
    finally:
        holder.close()
    assert len(got) == 1
    assert got[0] is not None
    assert (got[0].seq, got[0].kind) == (2, "waited")
    assert store.audit_records()[-1] == got[0]
    assert store.verify_audit().ok


def test_appends_from_many_threads_chain_together(pg_url: str, open_stores: StoreFactory) -> None:
    store = open_stores(pg_url)
    records: list[Any] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        for j in range(10):
            record = store.append_audit(AuditEvent("tick", {"i": i, "j": j}))
            with lock:
                records.append(record)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.seq for r in records) == list(range(1, 61))
    assert sorted(records, key=lambda r: r.seq) == store.audit_records()
    assert store.verify_audit().ok


# ------------------------------------------------------------------ schema versions


def test_a_version_1_database_is_upgraded_in_place(
    pg_url: str, pg_schema: str, open_stores: StoreFactory
) -> None:
    """A database written by the first schema (every append chained at once, no outbox,
    outcomes without level and pack version) is upgraded when a store opens it; its log and
    chain go on, its outcomes are kept."""
    prefix = f'"{pg_schema}".ag_'
    pg_execute(f'CREATE SCHEMA "{pg_schema}"')
    for statement in POSTGRES.schema(prefix):
        pg_execute(statement)
    # Version 1's outcomes had no level or pack version; version 4 added the gate evidence.
    pg_execute(f'DROP INDEX "{pg_schema}".ag_outcomes_kpi')
    pg_execute(f"DROP TABLE {prefix}gate_calls, {prefix}gate_events")
    pg_execute(f"ALTER TABLE {prefix}outcomes DROP COLUMN level, DROP COLUMN pack_version")
    pg_execute(
        f"INSERT INTO {prefix}outcomes (entity, cohort, metric, value, at, scope_key) "
        "VALUES ('c1', 'treatment', 'revenue', 5, 1704283200, 'global')"
    )
    pg_execute(
        f"INSERT INTO {prefix}meta (key, value) VALUES ('schema_version', '1'), ('functions', 'v1')"
    )
    prev = GENESIS
    for seq in (1, 2):
        ts, data = 1_704_283_200.0 + seq, canonical_json({"old": seq})
        digest = chain_hash(prev, seq, ts, "old", None, data)
        pg_execute(
            f"INSERT INTO {prefix}audit (seq, ts, kind, call_key, data, prev_hash, hash, dedupe) "
            "VALUES (%s, %s, 'old', NULL, %s, %s, %s, %s)",
            (seq, ts, data, prev, digest, f"old{seq}"),
        )
        pg_execute(
            f"UPDATE {prefix}audit_head SET seq = %s, hash = %s, prev = %s", (seq, digest, prev)
        )
        prev = digest

    store = open_stores(pg_url)
    assert dict(pg_execute(f"SELECT key, value FROM {prefix}meta"))["schema_version"] == "1"
    store.get_level("w")  # the first operation upgrades the schema
    meta = dict(pg_execute(f"SELECT key, value FROM {prefix}meta"))
    assert meta["schema_version"] == str(SCHEMA_VERSION) == "6"
    assert store.gate_scopes() == []  # type: ignore[attr-defined]  # the tables exist
    assert meta["functions"] != "v1"
    assert store.reserve("k", [], audit=AuditEvent("decision", {}, "k", "old1")).ok  # a dup
    assert store.reserve("k2", [], audit=AuditEvent("decision", {}, "k2", "new")).ok
    assert [(r.seq, r.kind) for r in store.audit_records()] == [
        (1, "old"),
        (2, "old"),
        (3, "decision"),
    ]
    assert store.verify_audit().ok
    (old,) = store.outcomes()
    assert (old.entity, old.value, old.level, old.pack_version) == ("c1", 5.0, None, None)
    store.record_outcome(Outcome("c2", "control", "revenue", 7.0, 1704283300.0, "global", 1, "4"))
    assert [(o.level, o.pack_version) for o in store.outcomes()] == [(None, None), (1, "4")]
    store.close()
    assert open_stores(pg_url).verify_audit().ok  # a second open changes nothing


def test_reserve_and_start_on_the_fast_path(pg_url: str, open_stores: StoreFactory) -> None:
    """Counters that exist and charges that fit: ag_reserve1 reserves and starts the call in
    one statement, its two records in order; a retry of a released key starts it again."""
    from agent_guardrails.engine.decision import Charge

    budget = Charge("budget:b|USD@0", "budget", 1.0, 10.0, 2**40, "b")
    contact = Charge("exposure:e@0", "exposure", 1.0, 5.0, 2**40, "e")
    store = open_stores(pg_url)
    assert store.reserve("k0", [contact, budget]).ok  # creates the counters
    for key in ("k1", "k1"):
        res = store.reserve(
            key,
            [contact, budget],
            audit=AuditEvent("decision", {}, key),
            start=AuditEvent("execution.started", {}, key),
        )
        assert (res.ok, res.started, res.replay) == (True, True, False)
        record = store.call_record(key)
        assert record is not None
        assert record.state == "started"
        store.release(key)
    assert store.counters() == {budget.key: 1.0, contact.key: 1.0}
    assert [r.kind for r in store.audit_records()] == ["decision", "execution.started"] * 2
    assert store.verify_audit().ok


def test_hot_path_survives_cut_connections_and_forgotten_statements(
    pg_url: str, pg_schema: str, open_stores: StoreFactory
) -> None:
    """reserve, start and finish go through libpq directly: a cut connection is replaced
    and the step retried, a statement the server forgot is prepared again, and a broken
    schema still gives StoreUnavailable."""
    from agent_guardrails.engine.decision import Charge
    from agent_guardrails.errors import StoreUnavailable

    budget = Charge("budget:b|USD@0", "budget", 1.0, 10.0, 2**40, "b")
    app = f"ag-{pg_schema}"
    store = open_stores(f"{pg_url}&application_name={app}&pool_min=1&pool_max=1")
    assert store.reserve("k0", [budget]).ok
    assert store.reserve("k1", [budget]).ok  # prepared on this connection now
    pg_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (app,),
    )
    assert store.reserve("k2", [budget]).ok  # retried on a new connection, prepared again
    assert store.start("k2")
    store.finish("k2", ok=True)
    conns: Any = store._conns  # type: ignore[attr-defined]
    conns.run(lambda conn: conn.execute("DEALLOCATE ALL"))  # as a connection pooler may do
    assert store.reserve("k3", [budget]).ok
    assert store.start("k3")
    pg_execute(f'DROP FUNCTION "{pg_schema}".ag_start')
    with pytest.raises(StoreUnavailable, match="ag_start"):
        store.start("k4")
    assert store.counters() == {budget.key: 4.0}
