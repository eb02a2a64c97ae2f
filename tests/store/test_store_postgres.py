"""PostgreSQL-only behaviour: races inside the server, schema selection, upgrades."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from agent_guardrails.store import open_store
from agent_guardrails.store.base import AuditEvent
from tests.store.store_helpers import StoreFactory, pg_base, pg_execute

pytestmark = pytest.mark.postgres


def test_two_appends_with_one_dedupe_racing_leave_one_record(
    pg_url: str, pg_schema: str, open_stores: StoreFactory
) -> None:
    """The second append passes the dedupe check before the first commits, then waits for
    the chain head; when it gets it, its insert conflicts and it must put the head back."""
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
    open_stores(pg_url).close()
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
