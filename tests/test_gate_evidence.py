"""Gate evidence kept by the SQL stores counts every window exactly as a fold of the whole
audit log does: on random logs read a few records at a time, across evaluations, after
archiving, with two readers at once, and a record that does not verify stops the reading."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_guardrails.engine.gates import Window
from agent_guardrails.ops import gate_evidence, gates
from agent_guardrails.ops.gates import Gates, _fold, _tally
from agent_guardrails.ops.operations import apply_pack, set_level
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store import open_store
from agent_guardrails.store.base import AuditEvent, Outcome, Store
from agent_guardrails.store.evidence import GateCall, GateCheckpoint, GateEvidence

PACK = """\
name: evidence
version: "1"
actions:
  crm.tag: {risk: low}
  email.send: {risk: high, approval: {roles: [ops], sla: 1m}}
levels:
  - {scope: {workflow: news}, level: execute, ceiling: optimize}
  - {scope: {workflow: ads}, level: execute, ceiling: optimize}
gates:
  - {from: execute, to: optimize, min_samples: 5, min_success_rate: 0.5, window: 1m,
     consecutive_windows: 3, lift_kpi: revenue}
"""
SCOPES = (
    {"workflow": "news", "region": "eu"},
    {"workflow": "news", "region": "us"},  # the same dial as the one above
    {"workflow": "ads"},
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    schema = f"ag_test_{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ev.db'}"
    else:
        from tests.store.store_helpers import pg_base, with_schema

        url = with_schema(pg_base(), schema)
    store = open_store(url)
    apply_pack(store, PACK, by="ana")
    yield store
    store.close()
    if request.param == "postgres":
        from tests.store.store_helpers import pg_execute

        pg_execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few records per page, so calls straddle pages; an unfinished call counts as
    unattributed after a fraction of a second, so that rule is exercised too."""
    monkeypatch.setattr(gate_evidence, "PAGE", 7)
    monkeypatch.setattr(gates, "UNFINISHED_GRACE", 0.05)


def write_calls(
    store: Store, rng: random.Random, n: int, versions: tuple[str, ...] = ("1", "1", "2")
) -> None:
    """``n`` calls' records, interleaved as concurrent calls would write them."""
    scripts = []
    for _ in range(n):
        key = f"c{uuid.uuid4().hex[:10]}"
        action = rng.choice(("crm.tag", "email.send"))
        decision = {
            "decision": rng.choice(("allow", "allow", "require_approval", "simulate")),
            "action": action,
            "level": rng.choice((0, 1, 2)),
            "scope": rng.choice(SCOPES),
            "pack_version": rng.choice(versions),
            "validators": [{"passed": rng.random() > 0.15}],
        }
        if rng.random() < 0.5:
            decision["cohort"] = rng.choice(("control", "treatment"))
            decision["cohort_entity"] = f"contact-{rng.randrange(12)}"
        steps = [AuditEvent("decision", decision, key)]
        if decision["decision"] == "require_approval":
            asked = time.time() - rng.uniform(0, 120)  # within the SLA of 1m or not
            steps.append(AuditEvent("approval.requested", {"asked_at": asked}, key))
            for _ in range(rng.choice((0, 1, 2))):
                steps.append(AuditEvent("approval.resolved", {}, key))
            if rng.random() < 0.2:  # asked again: the last question counts
                steps.append(AuditEvent("decision", {**decision, "validators": []}, key))
        if rng.random() < 0.85:
            steps.append(AuditEvent("execution.started", {}, key))
            choices: tuple[tuple[str, ...], ...] = (
                (),
                ("execution.finished",),
                ("execution.failed",),
            )
            ends = rng.choice(choices) + rng.choice(choices)
            steps += [AuditEvent(kind, {}, key) for kind in ends]
        scripts.append(steps)
    while scripts:
        steps = rng.choice(scripts)
        store.append_audit(steps.pop(0))
        if not steps:
            scripts.remove(steps)
        if rng.random() < 0.01:
            time.sleep(0.06)  # some started calls age past the grace


def write_outcomes(store: Store, rng: random.Random, n: int) -> None:
    now = time.time()
    for i in range(n):
        store.record_outcome(
            Outcome(
                f"contact-{rng.randrange(30)}",
                rng.choice(("control", "treatment", "other")),
                rng.choice(("revenue", "revenue", "clicks")),
                rng.uniform(-5, 50),
                now + rng.uniform(-30, 120),  # around the calls: some windows hold most
                rng.choice(("workflow=news", "workflow=ads")),
            )
        )
        del i


def assert_same(store: Store, at: float) -> None:
    """The windows counted from the kept evidence equal those of a fold of the whole log."""
    g = Gates(store)
    kept = g.read(at)
    assert isinstance(kept.calls, gate_evidence.StoredCalls)  # not the fold
    records = [r for r in store.audit_records() if r.ts <= at]
    log = _fold(records, g.pack)
    folded = gate_evidence.FoldedCalls(log.calls, store.outcomes(), g.pack)
    want = _tally(log, g.pack, at, folded, ())
    got = _tally(kept.log, g.pack, at, kept.calls, ())
    assert set(got) == set(want)
    for dial in want:
        assert [strip(w) for w in got[dial]] == [strip(w) for w in want[dial]], dial
        for w in want[dial]:  # the KPI's entities too (a window's split comes from calls)
            kpi_got = kept.calls.kpi(dial, "revenue", w.start, w.end)
            kpi_want = folded.kpi(dial, "revenue", w.start, w.end)
            assert {c: e for c, (e, _) in kpi_got.items()} == {
                c: e for c, (e, _) in kpi_want.items()
            }
        for g_w, w_w in zip(got[dial], want[dial], strict=True):
            for name in ("kpi_control", "kpi_treatment"):
                a, b = getattr(g_w, name), getattr(w_w, name)
                assert (a is None) == (b is None)
                if a is not None and b is not None:
                    assert a.n == b.n
                    assert a.mean == pytest.approx(b.mean, rel=1e-12, abs=1e-12)
                    assert a.m2 == pytest.approx(b.m2, rel=1e-9, abs=1e-9)


def strip(w: Window) -> Window:
    return dataclasses.replace(w, kpi_control=None, kpi_treatment=None)


def nows(store: Store) -> list[float]:
    """Times at which the three one-minute windows cut the calls in different places."""
    ts = [r.ts for r in store.audit_records()]
    lo, hi = min(ts), max(ts)
    return [hi + 0.001, *(lo + k * 60 + f * (hi - lo) for k in (1, 2, 3) for f in (0.3, 0.7))]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kept_evidence_counts_every_window_as_the_fold_does(sql_store: Store, seed: int) -> None:
    rng = random.Random(seed)
    write_outcomes(sql_store, rng, 60)
    for round_ in range(3):  # each evaluation reads on from where the last one stopped
        write_calls(sql_store, rng, 40)
        if round_ == 1:
            set_level(sql_store, "workflow=ads", 2, by="ana", override=True, reason="test")
            sql_store.set_kill_switch(Scope(workflow="news"), True, by="ana", reason="test")
        for at in nows(sql_store):
            assert_same(sql_store, at)
    assert isinstance(sql_store, GateEvidence)
    assert sql_store.gate_checkpoint().seq == sql_store.audit_records()[-1].seq


def test_a_windows_pack_versions_are_read_as_the_fold_does(sql_store: Store) -> None:
    # Calls under three versions (read from the index of versions, not the rows): every
    # window's set of versions, one or several, matches a fold of the whole log.
    rng = random.Random(11)
    write_calls(sql_store, rng, 60, versions=("1", "2", "10", "3"))
    for at in nows(sql_store):
        assert_same(sql_store, at)
    g = Gates(sql_store)
    (latest,) = {w.pack_versions for ws in _tally(*_args(g, time.time() + 1)).values() for w in ws}
    assert latest == {"1", "2", "3", "10"}


def _args(g: Gates, at: float) -> tuple[Any, ...]:
    evidence = g.read(at)
    return evidence.log, g.pack, at, evidence.calls, ()


def test_a_past_evaluation_folds_the_log_as_it_stood(sql_store: Store) -> None:
    write_calls(sql_store, random.Random(4), 10)
    first = sql_store.audit_records()[0].ts
    Gates(sql_store).evaluate(record=False)  # reads everything
    past = Gates(sql_store).read(first)
    assert isinstance(past.calls, gate_evidence.FoldedCalls)


def test_two_readers_at_once_count_each_record_once(sql_store: Store) -> None:
    write_calls(sql_store, random.Random(5), 60)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            Gates(sql_store).read()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert_same(sql_store, time.time() + 1)


def test_evidence_read_before_an_archive_outlives_its_records(
    sql_store: Store, tmp_path: Path
) -> None:
    write_calls(sql_store, random.Random(6), 30)
    at = time.time() + 1
    before = Gates(sql_store).evaluate(now=at, record=False)
    sql_store.archive_audit(at, tmp_path / "a.jsonl")
    assert sql_store.audit_records() == []
    after = Gates(sql_store).evaluate(now=at, record=False)
    assert [v.as_dict() for v in after] == [v.as_dict() for v in before]
    assert all("audit_chain_broken" not in v.reasons for v in after)
    assert sum(w.decided for v in after for w in v.windows) > 0  # still counted


def test_records_archived_before_they_were_read_leave_a_valid_chain(
    sql_store: Store, tmp_path: Path
) -> None:
    write_calls(sql_store, random.Random(7), 20)
    sql_store.archive_audit(time.time() + 1, tmp_path / "a.jsonl")
    write_calls(sql_store, random.Random(8), 20)
    checkpoint, ok = gate_evidence.sync(sql_store)  # type: ignore[arg-type]
    assert ok
    assert checkpoint.seq == sql_store.audit_records()[-1].seq


def test_pruning_calls_prunes_their_evidence(sql_store: Store) -> None:
    write_calls(sql_store, random.Random(9), 20)
    Gates(sql_store).read()
    assert isinstance(sql_store, GateEvidence)
    assert sql_store.gate_scopes()
    sql_store.prune_calls(time.time() + 1)
    assert sql_store.gate_scopes() == []


def test_a_record_that_does_not_verify_stops_the_reading(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    store = open_store(url)
    apply_pack(store, PACK, by="ana")
    write_calls(store, random.Random(10), 10)
    Gates(store).read()  # read and checked up to here
    checkpoint = store.gate_checkpoint()  # type: ignore[attr-defined]
    write_calls(store, random.Random(11), 10)
    store.close()
    with sqlite3.connect(tmp_path / "g.db") as db:
        db.execute(
            """UPDATE ag_audit SET data = '{"edited":true}' WHERE seq = ?""",
            (checkpoint.seq + 3,),
        )
    store = open_store(url)
    verdicts = Gates(store).evaluate(record=False)
    assert verdicts
    assert {(v.verdict, v.reasons) for v in verdicts} == {("invalid", ("audit_chain_broken",))}
    assert store.gate_checkpoint().seq < checkpoint.seq + 3  # type: ignore[attr-defined]
    store.close()


def test_records_of_one_call_in_different_pages_merge_as_the_fold_does(
    sql_store: Store,
) -> None:
    """Each merge rule on its own: the first decision's fields stay, flags once set stay
    set, the last question and the last start win, the first answer wins, finished wins
    over failed, and a later record of a call never read is dropped."""
    assert isinstance(sql_store, GateEvidence)
    scope = '{"workflow":"news"}'
    first = GateCall("k", scope, "email.send", 1, 100.0, 7, "1", escalated=True)
    pages = [
        [first, GateCall("k2", scope, "crm.tag", 2, 101.0, 8, "1", started_at=102.0)],
        [GateCall("k", None, asked_at=50.0, answered_at=160.0, started_at=170.0, ended=False)],
        [GateCall("k", None, asked_at=200.0, answered_at=500.0, started_at=300.0, ended=True)],
        [GateCall("k", None, ended=False), GateCall("never-decided", None, ended=True)],
        [dataclasses.replace(first, action="crm.tag", at=900.0, policy_failed=True, ended=False)],
    ]
    at = sql_store.gate_checkpoint()
    for i, calls in enumerate(pages, start=1):
        to = GateCheckpoint(at.seq + i, f"h{i}", 1.0)
        assert sql_store.save_gate_evidence(calls, [], since=at, to=to)
        at = to
    # a reader that lost the race writes nothing
    assert not sql_store.save_gate_evidence(pages[0], [], since=GateCheckpoint(), to=at)
    found = sql_store.gate_window(
        scope, 0.0, 1000.0, unfinished_before=103.0, slas={"email.send": 60.0}
    )
    # k: the first decision's action and time stay, its flags merged; k2: started, no end
    assert (found.decided, found.policy_failed, found.escalated, found.answered) == (2, 1, 1, 1)
    assert (found.executed, found.succeeded, found.unattributed) == (1, 1, 1)
    assert found.within_sla == 1  # the first answer (160) to the last question (200)
    assert found.violations == (7,)
    assert found.versions == {"1"}
    assert sql_store.gate_window(scope, 0.0, 100.0, unfinished_before=0.0, slas={}).decided == 0
    # the SLA is the action's: 60 s for email.send
    late = sql_store.gate_window(
        scope, 0.0, 1000.0, unfinished_before=103.0, slas={"email.send": 1.0}
    )
    assert late.within_sla == 1  # -40 s is within any SLA


@pytest.mark.parametrize("in_order", [True, False])
def test_a_cohorts_entities_are_counted_alike_by_either_read(
    sql_store: Store, in_order: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite counts a window's entities in entity order when the window holds most of the
    cohort's outcomes, else by sorting the window's; both agree with the fold."""
    monkeypatch.setattr(sql_store, "_entities_in_order", in_order)
    rng = random.Random(12)
    write_outcomes(sql_store, rng, 200)
    assert isinstance(sql_store, GateEvidence)
    folded = gate_evidence.FoldedCalls((), sql_store.outcomes(), Gates(sql_store).pack)
    now = time.time()
    for start, end in [(now - 40, now + 20), (now + 10, now + 200), (now - 100, now + 100)]:
        for dial in ("workflow=news", "workflow=ads"):
            got = sql_store.kpi_window(dial, "revenue", start, end)
            want = folded.kpi(dial, "revenue", start, end)
            assert {c: (k.entities, k.n) for c, k in got.items()} == {
                c: (e, m.n) for c, (e, m) in want.items()
            }


def test_a_check_that_could_not_answer_is_no_policy_failure() -> None:
    """A decision denied because the application's check raised or timed out (``error``)
    counts as decided, not against the policy pass rate; a failed check does."""
    store = open_store("memory://")
    said = {
        "ok": [{"name": "crm", "passed": True}],
        "failed": [{"name": "crm", "passed": False}],
        "error": [{"name": "crm", "passed": False, "error": True}],
    }
    for key, validators in said.items():
        data = {"decision": "deny", "action": "crm.tag", "level": 1, "validators": validators}
        store.append_audit(AuditEvent("decision", {**data, "scope": {}}, key))
    calls, _events = gate_evidence.fold_page(store.audit_records())
    assert {call.key: call.policy_failed for call in calls} == {
        "ok": False,
        "failed": True,
        "error": False,
    }
    store.close()


def test_the_cli_lets_the_gates_read_what_it_archives(tmp_path: Path) -> None:
    # Records the gates had not read yet were archived away with their evidence.
    import io

    from agent_guardrails.ops.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    store = open_store(url)
    apply_pack(store, PACK, by="ana")
    write_calls(store, random.Random(12), 30, versions=("1",))
    store.close()
    cutoff = repr(time.time())
    out = io.StringIO()
    argv = ["audit", "archive", "--before", cutoff, "--out", str(tmp_path / "a.jsonl")]
    assert main([*argv, "--store", url], out) == 0, out.getvalue()
    store = open_store(url)
    assert store.audit_records() == []
    counted = Gates(store).evaluate(now=time.time() + 1, record=False)
    assert sum(w.decided for v in counted for w in v.windows) == 30
    store.close()
