"""Retention on every store: the audit log's prefix archived to JSON Lines and verified
with what is kept, and ended call records pruned."""

from __future__ import annotations

import io
import json
import math
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent_guardrails.engine.decision import Charge
from agent_guardrails.ops.cli import main
from agent_guardrails.ops.operations import apply_pack
from agent_guardrails.store import MemoryStore, Store, open_store, verify_audit_archive
from agent_guardrails.store._archive import read_archive
from agent_guardrails.store.base import GENESIS, AuditEvent, Retention
from tests.store.store_helpers import raw_sql


@pytest.fixture
def store(every_store_url: str) -> Any:
    s = open_store(every_store_url)
    yield s
    s.close()


def _append(store: Store, first: int, count: int) -> None:
    for n in range(first, first + count):
        store.append_audit(AuditEvent("decision", {"n": n}, f"k{n}", f"d{n}"))


def _log_with_cutoff(store: Store, old: int, new: int) -> float:
    """``old`` records, then ``new`` later ones: a cutoff between the two."""
    _append(store, 1, old)
    time.sleep(0.02)
    _append(store, old + 1, new)
    records = store.audit_records()
    assert records[old - 1].ts < records[old].ts
    return (records[old - 1].ts + records[old].ts) / 2


def _tamper(store: Store, url: str, how: str, seq: int) -> None:
    """Edit, delete or swap kept record ``seq`` behind the store's back."""
    if isinstance(store, MemoryStore):
        audit = store._chain()
        i = seq - store.audit_archived_through()[0] - 1
        if how == "edit":
            audit[i] = replace(audit[i], data={"n": -1})
        elif how == "delete":
            del audit[i]
        else:
            audit[i], audit[i + 1] = audit[i + 1], audit[i]
        return
    run = raw_sql(url)
    if how == "edit":
        run("UPDATE {t}audit SET data = ? WHERE seq = ?", json.dumps({"n": -1}), seq)
    elif how == "delete":
        run("DELETE FROM {t}audit WHERE seq = ?", seq)
    else:
        run("UPDATE {t}audit SET seq = -1 WHERE seq = ?", seq)
        run("UPDATE {t}audit SET seq = ? WHERE seq = ?", seq, seq + 1)
        run("UPDATE {t}audit SET seq = ? WHERE seq = -1", seq + 1)


def test_every_store_keeps_the_retention_protocol(store: Store) -> None:
    assert isinstance(store, Retention)
    assert store.audit_archived_through() == (0, GENESIS)


def test_archive_moves_exactly_the_records_before_the_cutoff(store: Store, tmp_path: Path) -> None:
    cutoff = _log_with_cutoff(store, 5, 4)
    before = store.audit_records()
    out = tmp_path / "a.jsonl"
    result = store.archive_audit(cutoff, out)
    assert (result.records, result.first_seq, result.last_seq) == (5, 1, 5)
    assert result.deleted == 5
    assert result.last_hash == before[4].hash
    records, trailer = read_archive(out)
    assert [r.as_dict() for r in records] == [r.as_dict() for r in before[:5]]
    assert trailer == {"first_seq": 1, "last_seq": 5, "last_hash": before[4].hash, "records": 5}
    lines = out.read_text().splitlines()
    assert json.loads(lines[0]) == before[0].as_dict()  # the form of 'audit export'
    kept = store.audit_records()
    assert [r.seq for r in kept] == [6, 7, 8, 9]
    assert store.audit_archived_through() == (5, before[4].hash)
    assert store.verify_audit().ok
    assert store.verify_audit().checked == 4
    assert store.find_audit("d2") is None
    assert store.find_audit("d7") is not None
    # Appending goes on from the kept chain, and it still verifies.
    _append(store, 10, 2)
    assert [r.seq for r in store.audit_records()][-2:] == [10, 11]
    assert store.verify_audit().ok
    assert verify_audit_archive([out], store).ok
    assert verify_audit_archive(out, store).checked == 11


def test_archive_stops_at_the_first_record_not_older(store: Store, tmp_path: Path) -> None:
    cutoff = _log_with_cutoff(store, 3, 3)
    records = store.audit_records()
    # A cutoff after every record archives them all; an empty log then still verifies.
    result = store.archive_audit(records[-1].ts + 1, tmp_path / "all.jsonl")
    assert result.records == 6
    assert store.audit_records() == []
    assert store.verify_audit().ok
    assert verify_audit_archive(tmp_path / "all.jsonl", store).ok
    # Nothing left to move: an empty archive, chained where the store starts.
    empty = store.archive_audit(cutoff, tmp_path / "empty.jsonl")
    assert (empty.records, empty.first_seq, empty.last_seq) == (0, 7, 6)
    assert verify_audit_archive([tmp_path / "all.jsonl", tmp_path / "empty.jsonl"], store).ok


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_cutoff_that_is_not_finite_is_refused(store: Store, tmp_path: Path, bad: float) -> None:
    _append(store, 1, 2)
    with pytest.raises(ValueError, match="finite time in epoch seconds"):
        store.archive_audit(bad, tmp_path / "a.jsonl")
    with pytest.raises(ValueError, match="finite"):
        store.prune_calls(bad)
    assert not (tmp_path / "a.jsonl").exists()
    assert len(store.audit_records()) == 2


@pytest.mark.parametrize("how", ["edit", "delete", "reorder"])
def test_tampering_with_what_is_kept_is_detected(
    store: Store, every_store_url: str, tmp_path: Path, how: str
) -> None:
    cutoff = _log_with_cutoff(store, 4, 5)
    store.archive_audit(cutoff, tmp_path / "a.jsonl")
    _tamper(store, every_store_url, how, 6)
    result = store.verify_audit()
    assert (result.ok, result.first_bad_seq) == (False, 6), result
    assert not verify_audit_archive(tmp_path / "a.jsonl", store).ok


def test_deleting_the_first_kept_record_is_detected(
    store: Store, every_store_url: str, tmp_path: Path
) -> None:
    cutoff = _log_with_cutoff(store, 4, 3)
    store.archive_audit(cutoff, tmp_path / "a.jsonl")
    _tamper(store, every_store_url, "delete", 5)
    result = store.verify_audit()
    assert (result.ok, result.first_bad_seq) == (False, 5), result


def test_an_edited_archive_line_is_detected(store: Store, tmp_path: Path) -> None:
    cutoff = _log_with_cutoff(store, 5, 2)
    out = tmp_path / "a.jsonl"
    store.archive_audit(cutoff, out)
    lines = out.read_text().splitlines()
    edited = json.loads(lines[2])
    edited["data"] = {"n": 42}
    lines[2] = json.dumps(edited)
    out.write_text("\n".join(lines) + "\n")
    result = verify_audit_archive(out, store)
    assert (result.ok, result.first_bad_seq) == (False, 3), result
    assert "edited" in result.problem
    # A removed line, and a truncated file (no trailer), too.
    out.write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    assert verify_audit_archive(out, store).first_bad_seq == 2
    out.write_text("\n".join(lines[:3]) + "\n")
    assert "trailer" in verify_audit_archive(out, store).problem


def test_two_archives_chain_and_verify_in_order(store: Store, tmp_path: Path) -> None:
    first_cut = _log_with_cutoff(store, 3, 3)
    time.sleep(0.02)
    _append(store, 7, 2)
    records = store.audit_records()
    second_cut = (records[5].ts + records[6].ts) / 2
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert store.archive_audit(first_cut, a).last_seq == 3
    second = store.archive_audit(second_cut, b)
    assert (second.first_seq, second.last_seq) == (4, 6)
    assert [r.seq for r in store.audit_records()] == [7, 8]
    assert store.verify_audit().ok
    result = verify_audit_archive([a, b], store)
    assert result.ok
    assert result.checked == 8
    # Out of order, or the newer one alone, or the older one alone: named.
    assert "give the archives before it" in verify_audit_archive([b, a], store).problem
    assert not verify_audit_archive([b], store).ok
    alone = verify_audit_archive([a], store)
    assert not alone.ok
    assert alone.first_bad_seq == 4
    assert "give every archive" in alone.problem
    # An earlier archive is never overwritten.
    with pytest.raises(ValueError, match="give a new file name"):
        store.archive_audit(second_cut + 10, a)


def test_a_crash_between_the_file_and_the_delete_loses_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cutoff = _log_with_cutoff(store, 4, 2)
    before = store.audit_records()
    out = tmp_path / "a.jsonl"
    name = "_drop" if isinstance(store, MemoryStore) else "_drop_archived_step"

    def crash(*args: Any) -> Any:
        raise OSError("killed")

    monkeypatch.setattr(store, name, crash)
    with pytest.raises(OSError, match="killed"):
        store.archive_audit(cutoff, out)
    monkeypatch.undo()
    # Both the file and the rows are there, and together they verify.
    assert store.audit_records() == before
    assert len(read_archive(out)[0]) == 4
    assert store.verify_audit().ok
    assert verify_audit_archive(out, store).ok
    # The re-run writes the same file again and completes.
    text = out.read_text()
    result = store.archive_audit(cutoff, out)
    assert (result.records, result.deleted) == (4, 4)
    assert out.read_text() == text
    assert [r.seq for r in store.audit_records()] == [5, 6]
    assert verify_audit_archive(out, store).ok


def test_the_archive_writes_to_an_open_file(store: Store) -> None:
    cutoff = _log_with_cutoff(store, 2, 1)
    buffer = io.StringIO()
    assert store.archive_audit(cutoff, buffer).records == 2
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[-1])["archive"]["records"] == 2


def _calls(store: Store, when: Callable[[], float]) -> None:
    charge = [Charge("budget:b@0", "budget", 1.0, 1000.0, 86400, "b")]
    for key, end in [
        ("done", "finish"),
        ("broke", "fail"),
        ("dropped", "release"),
        ("held", None),
        ("running", "start"),
    ]:
        store.reserve(key, charge, now=when())
        if end == "finish":
            store.finish(key, ok=True, result="r")
        elif end == "fail":
            store.finish(key, ok=False)
        elif end == "release":
            store.release(key)
        elif end == "start":
            store.start(key)


def test_prune_keeps_reserved_and_started_calls(store: Store) -> None:
    _calls(store, time.time)
    assert store.prune_calls(time.time() - 3600) == 0  # nothing ended that long ago
    assert store.call_record("done") is not None
    assert store.prune_calls(time.time() + 1) == 3
    for key in ("done", "broke", "dropped"):
        assert store.call_record(key) is None
    assert store.call_record("held").state == "reserved"  # type: ignore[union-attr]
    assert store.call_record("running").state == "started"  # type: ignore[union-attr]
    assert [r.key for r in store.in_doubt()] == ["running"]


def test_the_cli_archives_prunes_and_verifies_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    store = open_store(url)
    cutoff = _log_with_cutoff(store, 5, 3)
    _calls(store, time.time)
    store.close()
    time.sleep(0.01)
    out = io.StringIO()
    a = tmp_path / "a.jsonl"
    args = ["audit", "archive", "--before", repr(cutoff), "--out", str(a), "--store", url]
    assert main(args, out) == 0
    assert "archived 5 audit records (records 1-5)" in out.getvalue()
    assert "pruned 0 call rows" in out.getvalue()
    out = io.StringIO()
    b = tmp_path / "b.jsonl"
    future = ["audit", "archive", "--before", "2999-01-01", "--out", str(b), "--store", url]
    assert main(future, out) == 2  # a mistyped year would archive today's records too
    args = ["audit", "archive", "--before", repr(time.time()), "--out", str(b), "--store", url]
    assert main([*args, "--json", "--prune-recent"], out) == 0
    report = json.loads(out.getvalue())
    assert report["archived"] == 3
    assert report["first_seq"] == 6
    assert report["pruned_calls"] == 3
    out = io.StringIO()
    verify = ["audit", "verify", "--store", url, "--from-archive"]
    assert main([*verify, str(a), str(b)], out) == 0
    assert "verified: 8 records" in out.getvalue()
    out = io.StringIO()
    assert main([*verify, str(b)], out) == 1
    assert "BROKEN at record 1" in out.getvalue()
    assert main(["audit", "verify", "--store", url], io.StringIO()) == 0
    bad = ["audit", "archive", "--before", "October", "--out", str(tmp_path / "c.jsonl")]
    assert main([*bad, "--store", url], io.StringIO()) == 2


def test_the_cli_keeps_ended_calls_a_waiting_question_may_replay(tmp_path: Path) -> None:
    """Calls that ended within the pack's longest approval timeout (here 3 days) are not
    pruned, whatever the cutoff: answering a question that waited that long runs its
    graph's turn again, and its calls that already ended must replay, not run again."""
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    store = open_store(url)
    apply_pack(
        store,
        "name: r\nversion: 1\nactions:\n  email.send: {sensitive: true, approval: {timeout: 3d}}\n"
        "  crm.tag: {risk: low}\n",
        by="ops",
    )
    _calls(store, time.time)
    store.close()
    db = sqlite3.connect(tmp_path / "guard.db")
    db.execute("UPDATE ag_calls SET updated_at = ? WHERE key = 'done'", (time.time() - 4 * 86400,))
    db.commit()
    db.close()
    out = io.StringIO()
    args = ["audit", "archive", "--before", repr(time.time()), "--store", url]
    assert main([*args, "--out", str(tmp_path / "a.jsonl"), "--json"], out) == 0
    report = json.loads(out.getvalue())
    assert report["pruned_calls"] == 1  # "done", 4 days ago; "broke", "dropped" just ended
    assert abs(report["pruned_before"] - (time.time() - 3 * 86400)) < 60
    store = open_store(url)
    assert store.call_record("done") is None
    assert store.call_record("broke") is not None
    store.close()
    out = io.StringIO()
    assert main([*args, "--out", str(tmp_path / "b.jsonl")], out) == 0
    assert "pruned 0 call rows that ended before" in out.getvalue()
    assert "--prune-recent" in out.getvalue()
    out = io.StringIO()
    assert main([*args, "--out", str(tmp_path / "c.jsonl"), "--prune-recent"], out) == 0
    assert "pruned 2 call rows\n" in out.getvalue()
