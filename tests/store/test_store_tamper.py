"""Tampering with the audit log straight in the database is detected, and the first record
that does not fit is named (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from agent_guardrails.store import MemoryStore, Store, _operators, open_store
from agent_guardrails.store.base import (
    GENESIS,
    AuditEvent,
    ChainCheck,
    canonical_json,
    chain_hash,
)
from tests.store.store_helpers import StoreFactory, raw_sql

Run = Callable[..., list[tuple[Any, ...]]]


def _log(store: Store) -> None:
    for i in range(1, 7):
        store.append_audit(AuditEvent("decision", {"n": i, "decision": "allow"}, f"k{i}", f"d{i}"))
    assert store.verify_audit().ok


def _row(run: Run, seq: int) -> tuple[Any, ...]:
    return run(
        "SELECT seq, ts, kind, call_key, data, prev_hash, hash FROM {t}audit WHERE seq = ?", seq
    )[0]


def _forge(run: Run, seq: int, prev: str, *, good_hash: bool) -> None:
    ts, kind, data = 1_704_283_200.5, "decision", canonical_json({"n": 99, "decision": "allow"})
    digest = chain_hash(prev, seq, ts, kind, "forged", data) if good_hash else "f" * 64
    run(
        "INSERT INTO {t}audit (seq, ts, kind, call_key, data, prev_hash, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        seq,
        ts,
        kind,
        "forged",
        data,
        prev,
        digest,
    )


def edit_data(run: Run) -> None:
    run("UPDATE {t}audit SET data = ? WHERE seq = 3", json.dumps({"n": 3, "decision": "deny"}))


def break_data_json(run: Run) -> None:
    """Data edited into text that is not JSON at all."""
    run("UPDATE {t}audit SET data = ? WHERE seq = 3", '{"n": 3, "decision": ')


def edit_timestamp(run: Run) -> None:
    run("UPDATE {t}audit SET ts = ts + 60 WHERE seq = 3")


def edit_kind(run: Run) -> None:
    run("UPDATE {t}audit SET kind = 'approval.resolved' WHERE seq = 3")


def delete_middle(run: Run) -> None:
    run("DELETE FROM {t}audit WHERE seq = 3")


def delete_last(run: Run) -> None:
    run("DELETE FROM {t}audit WHERE seq = 6")


def delete_last_two(run: Run) -> None:
    run("DELETE FROM {t}audit WHERE seq >= 5")


def swap_two(run: Run) -> None:
    run("UPDATE {t}audit SET seq = -3 WHERE seq = 3")
    run("UPDATE {t}audit SET seq = 3 WHERE seq = 5")
    run("UPDATE {t}audit SET seq = 5 WHERE seq = -3")


def forge_appended(run: Run) -> None:
    """A record appended with a correctly computed hash: only the chain head sees it."""
    _forge(run, 7, _row(run, 6)[6], good_hash=True)


def forge_appended_bad_hash(run: Run) -> None:
    _forge(run, 7, _row(run, 6)[6], good_hash=False)


def forge_inserted(run: Run) -> None:
    """Records 3.. moved up one and a forged record 3 (bad hash) put in the gap."""
    for seq in (6, 5, 4, 3):
        run("UPDATE {t}audit SET seq = seq + 1 WHERE seq = ?", seq)
    _forge(run, 3, _row(run, 2)[6], good_hash=False)


def forge_inserted_good_hash(run: Run) -> None:
    """The same with a correctly computed hash: the forged record links to record 2, and
    the old record 3, now 4, no longer links to anything: it is the first that fails."""
    for seq in (6, 5, 4, 3):
        run("UPDATE {t}audit SET seq = seq + 1 WHERE seq = ?", seq)
    _forge(run, 3, _row(run, 2)[6], good_hash=True)


def rewrite_last(run: Run) -> None:
    """The last record edited and re-hashed consistently: the head still has the old hash."""
    seq, ts, kind, call_key, _data, prev, _digest = _row(run, 6)
    data = canonical_json({"n": 6, "decision": "deny"})
    run(
        "UPDATE {t}audit SET data = ?, hash = ? WHERE seq = 6",
        data,
        chain_hash(prev, seq, ts, kind, call_key, data),
    )


def delete_head(run: Run) -> None:
    run("DELETE FROM {t}audit_head")


def forge_before_the_first(run: Run) -> None:
    """A record forged below the chain (seq 0, linked to the genesis with a correct hash):
    ``find_audit`` would find it by its dedupe key, so verification must see it."""
    _forge(run, 0, GENESIS, good_hash=True)


def forge_negative(run: Run) -> None:
    _forge(run, -5, GENESIS, good_hash=True)


def forge_lowest(run: Run) -> None:
    """At the lowest seq a 64-bit column holds."""
    _forge(run, -(2**63), GENESIS, good_hash=True)


CASES: list[tuple[Callable[[Run], None], int, str]] = [
    (edit_data, 3, "edited"),
    (break_data_json, 3, "edited"),
    (edit_timestamp, 3, "edited"),
    (edit_kind, 3, "edited"),
    (delete_middle, 3, "missing"),
    (delete_last, 6, "missing"),
    (delete_last_two, 5, "missing"),
    (swap_two, 3, "does not link"),
    (forge_appended, 7, "inserted"),
    (forge_appended_bad_hash, 7, "edited"),
    (forge_inserted, 3, "edited"),
    (forge_inserted_good_hash, 4, "does not link"),
    (rewrite_last, 6, "chain head"),
    (delete_head, 7, "head row is missing"),
    (forge_before_the_first, 1, "out of order"),
    (forge_negative, 1, "out of order"),
    (forge_lowest, 1, "out of order"),
]


@pytest.mark.parametrize("page", [2, 5000], ids=["pages-of-2", "one-page"])
@pytest.mark.parametrize(
    ("tamper", "first_bad", "problem"), CASES, ids=[c[0].__name__ for c in CASES]
)
def test_tampering_is_detected(
    durable_url: str,
    open_api: StoreFactory,
    tamper: Callable[[Run], None],
    first_bad: int,
    problem: str,
    page: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Verification reads the log a page at a time: a page boundary changes nothing."""
    monkeypatch.setattr(_operators, "VERIFY_PAGE", page)
    store = open_api(durable_url)
    _log(store)
    tamper(raw_sql(durable_url))
    result = store.verify_audit()
    assert not result.ok
    assert result.first_bad_seq == first_bad, result.problem
    assert problem in result.problem
    assert result.checked <= 6


def test_appending_after_the_head_row_was_deleted_fails_closed(
    durable_url: str, open_api: StoreFactory
) -> None:
    from agent_guardrails.errors import StoreUnavailable

    store = open_api(durable_url)
    _log(store)
    delete_head(raw_sql(durable_url))
    with pytest.raises(StoreUnavailable, match="chain head"):
        store.append_audit(AuditEvent("after", {}))


# ------------------------------------------------------------------ PostgreSQL's outbox
#
# On PostgreSQL the hot path (reserve, start, finish, release) puts its audit records in an
# outbox; they are chained in batches, and always before the log is read or verified. What
# was chained stays tamper-evident while more records are chained after it; what is still
# waiting in the outbox is not (see store/postgres.py).

# Tampering, then records appended through the outbox: the same record is named, except
# that a record rewritten with a consistent hash is now followed by one that does not
# link to it (the chain goes on from the head, which kept the original hash).
PENDING_CASES = [
    (tamper, 7, "does not link") if tamper is rewrite_last else (tamper, first_bad, problem)
    for tamper, first_bad, problem in CASES
]


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("tamper", "first_bad", "problem"),
    PENDING_CASES,
    ids=[c[0].__name__ for c in PENDING_CASES],
)
def test_tampering_is_detected_with_records_waiting_to_be_chained(
    pg_url: str,
    open_stores: StoreFactory,
    tamper: Callable[[Run], None],
    first_bad: int,
    problem: str,
) -> None:
    store = open_stores(pg_url)
    _log(store)
    tamper(raw_sql(pg_url))
    for i in (7, 8):  # never fail: the chain step that would refuse runs later
        assert store.reserve(f"k{i}", [], audit=AuditEvent("decision", {"n": i}, f"k{i}")).ok
    result = store.verify_audit()
    assert not result.ok
    assert result.first_bad_seq == first_bad, result.problem
    assert problem in result.problem
    assert result.checked <= 6


@pytest.mark.postgres
def test_a_log_that_cannot_be_chained_keeps_its_records_waiting(
    pg_url: str, open_stores: StoreFactory
) -> None:
    """A record forged after the chain head stops chaining (nothing is written over it or
    after it): an append that must return its record fails closed, names the problem and
    writes nothing; the hot path goes on, its records waiting in the outbox until an
    operator repairs the log."""
    from agent_guardrails.errors import StoreUnavailable

    store = open_stores(pg_url)
    _log(store)
    run = raw_sql(pg_url)
    forge_appended(run)
    assert store.reserve("k7", [], audit=AuditEvent("decision", {"n": 7}, "k7", "d7")).ok
    with pytest.raises(StoreUnavailable, match="after the chain head"):
        store.append_audit(AuditEvent("after", {}))
    result = store.verify_audit()
    assert (result.ok, result.first_bad_seq) == (False, 7)
    assert run("SELECT count(*) FROM {t}audit_outbox") == [(1,)]
    run("DELETE FROM {t}audit WHERE seq = 7")  # the repair
    assert store.verify_audit().ok
    assert [r.call_key for r in store.audit_records()[6:]] == ["k7"]


@pytest.mark.postgres
def test_a_record_forged_in_the_outbox_cannot_replace_a_recorded_one(
    pg_url: str, open_stores: StoreFactory
) -> None:
    store = open_stores(pg_url)
    _log(store)
    raw_sql(pg_url)(
        "INSERT INTO {t}audit_outbox (ts, ts_repr, kind, call_key, data, dedupe) "
        "VALUES (1.5, '1.5', 'decision', 'k3', ?, 'd3')",
        canonical_json({"n": 3, "decision": "deny"}),
    )
    assert store.verify_audit().ok
    record = store.find_audit("d3")
    assert record is not None
    assert (record.seq, record.data) == (3, {"n": 3, "decision": "allow"})
    assert len(store.audit_records()) == 6


@pytest.mark.postgres
def test_records_waiting_in_the_outbox_are_not_tamper_evident(
    pg_url: str, open_stores: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented limit: until a record is chained (normally within a fraction of a
    second, and always before the log is read), editing or deleting it straight in the
    database leaves no trace."""
    from agent_guardrails.store.postgres import PostgresStore

    monkeypatch.setattr(PostgresStore, "CHAIN_INTERVAL", 3600.0)
    store = open_stores(pg_url)
    _log(store)
    for i in (7, 8):
        assert store.reserve(f"k{i}", [], audit=AuditEvent("decision", {"n": i}, f"k{i}")).ok
    run = raw_sql(pg_url)
    run("UPDATE {t}audit_outbox SET data = ? WHERE call_key = 'k7'", canonical_json({"n": 0}))
    run("DELETE FROM {t}audit_outbox WHERE call_key = 'k8'")
    assert store.verify_audit().ok
    assert [r.data for r in store.audit_records()[6:]] == [{"n": 0}]


@pytest.mark.parametrize("api", ["sync", "async"])
def test_records_appended_while_the_log_is_verified_are_not_taken_for_forgeries(
    durable_url: str, api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head and every page are read from one snapshot: records another process appends
    between two pages (after the head was read) are simply not part of this verification.
    The other writer appends from inside the verification, where a page is hashed (a
    worker thread or the store's thread on the async path, never the event loop)."""
    monkeypatch.setattr(_operators, "VERIFY_PAGE", 2)
    store = open_store(durable_url)
    _log(store)
    other = open_store(durable_url)
    pages = 0
    feed = ChainCheck.feed

    def feed_then_append(check: ChainCheck, records: Any) -> Any:
        nonlocal pages
        pages += 1
        if pages == 1:  # another writer, between the first page and the second
            for i in range(3):
                other.append_audit(AuditEvent("decision", {"late": i}, f"late{i}"))
        return feed(check, records)

    monkeypatch.setattr(ChainCheck, "feed", feed_then_append)
    verify = store.verify_audit if api == "sync" else lambda: asyncio.run(store.averify_audit())  # type: ignore[attr-defined]
    result = verify()
    monkeypatch.setattr(ChainCheck, "feed", feed)
    assert result.ok, result.problem
    assert result.checked == 6
    assert store.verify_audit().checked == 9  # the next verification sees them
    other.close()
    store.close()


def test_a_chain_check_keeps_its_first_failure() -> None:
    """Fed page by page, a failure stands: later pages, and the verdict, say it again."""
    store = MemoryStore()
    for i in range(1, 7):
        store.append_audit(AuditEvent("decision", {"n": i}, f"k{i}"))
    records = store.audit_records()
    edited = [*records[:4], dataclasses.replace(records[4], data={"n": "edited"}), records[5]]
    check = ChainCheck()
    assert check.feed(edited[:3]) is None
    failed = check.feed(edited[3:5])
    assert failed is not None
    assert failed.first_bad_seq == 5
    assert check.feed(edited[5:]) == failed
    assert check.result() == failed


def test_async_verification_hashes_off_the_event_loop(durable_url: str) -> None:
    """Checking the chain is CPU work that grows with the log: ``averify_audit`` does it off
    the event loop (on a worker thread, or SQLite's store thread), never on it."""
    store = open_store(durable_url)
    _log(store)
    on_loop: list[bool] = []
    feed = ChainCheck.feed

    def watched(check: ChainCheck, records: Any) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return feed(check, records)

    ChainCheck.feed = watched  # type: ignore[method-assign,assignment]
    try:
        result = asyncio.run(store.averify_audit())  # type: ignore[attr-defined]
    finally:
        ChainCheck.feed = feed  # type: ignore[method-assign]
        store.close()
    assert result.ok
    assert on_loop
    assert not any(on_loop), "the chain was hashed on the event loop"
