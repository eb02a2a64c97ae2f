"""The gate watch: evidence of harm (a rate under its floor) lowers a scope's level while
agents run, off the call's path, at most once per interval, on every store, sync and
async; a failure of the watch never reaches a call."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agent_guardrails import CallRequest, ConfigurationError, Guardrails, Scope
from agent_guardrails.ops.gates import AUTO_ACTOR, Gates
from agent_guardrails.ops.operations import apply_pack
from agent_guardrails.pipeline.gate_watch import GateWatch
from agent_guardrails.store import open_store
from agent_guardrails.store.base import Store

PACK = """\
name: watched
version: "1"
actions:
  crm.tag: {risk: low}
levels:
  - {scope: {workflow: news}, level: optimize, ceiling: optimize}
gates:
  - {from: execute, to: optimize, min_samples: 5, min_success_rate: 0.9,
     demote_below_success_rate: 0.9}
"""
NEWS = Scope(workflow="news")


@pytest.fixture
def store(every_store_url: str) -> Iterator[Store]:
    s = open_store(every_store_url)
    apply_pack(s, PACK, by="ana")
    yield s
    s.close()


def failing(args: Any) -> str:
    raise RuntimeError("the CRM is down")


async def afailing(args: Any) -> str:
    raise RuntimeError("the CRM is down")


def settle(watch: GateWatch) -> None:
    """Wait for the evaluation in flight, then run one more over everything recorded."""
    deadline = time.monotonic() + 30
    while watch._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    watch._last = float("-inf")
    watch.poke()
    while watch._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)


def failures(guard: Guardrails, n: int) -> None:
    for _ in range(n):
        with pytest.raises(RuntimeError):
            guard.run(CallRequest("tag", "crm.tag", {}, NEWS), failing)


def test_a_success_rate_under_its_floor_lowers_the_level(store: Store) -> None:
    guard = Guardrails(PACK, store=store, gate_watch=0.0)
    failures(guard, 12)
    settle(guard.gate_watch)
    guard.close()
    assert store.get_level("workflow=news") == 1  # optimize -> execute
    (change,) = [c for c in store.level_history("workflow=news") if c.by == AUTO_ACTOR]
    assert (change.old_level, change.new_level) == (None, 1)  # the dial's first move
    assert change.evidence["verdict"] == "demote"
    assert "harm:success_rate" in change.reason
    evaluated = [r for r in store.audit_records() if r.kind == "gate.evaluated"]
    assert [r.data["evaluation_id"] for r in evaluated] == [change.evidence["evaluation_id"]]
    # the next call is decided at the lower level
    (v,) = Gates(store).evaluate("workflow=news", record=False)
    assert v.level == 1


def test_the_async_path_watches_too_without_blocking_its_loop(store: Store) -> None:
    async def main() -> None:
        guard = Guardrails(PACK, store=store, gate_watch=0.0)
        for _ in range(12):
            with pytest.raises(RuntimeError):
                await guard.arun(CallRequest("tag", "crm.tag", {}, NEWS), afailing)
        await asyncio.to_thread(settle, guard.gate_watch)
        await guard.aclose()

    asyncio.run(main())
    assert store.get_level("workflow=news") == 1


def test_the_watch_runs_at_most_once_per_interval(store: Store) -> None:
    guard = Guardrails(PACK, store=store)  # the default: every 60 s, the first after 60 s
    failures(guard, 12)
    guard.close()
    assert guard.gate_watch.runs == 0
    assert store.get_level("workflow=news") is None  # still the pack's optimize

    off = Guardrails(PACK, store=store, gate_watch=None)
    off.gate_watch._last = float("-inf")
    failures(off, 2)
    off.close()
    assert off.gate_watch.runs == 0


def test_a_failing_evaluation_is_logged_and_never_reaches_a_call(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: Gates) -> list[Any]:
        raise RuntimeError("the store went away")

    monkeypatch.setattr(Gates, "demote", broken)
    guard = Guardrails(PACK, store=store, gate_watch=0.0)
    with caplog.at_level(logging.WARNING, logger="agent_guardrails.gate_watch"):
        assert guard.run(CallRequest("tag", "crm.tag", {}, NEWS), lambda args: "ok") == "ok"
        settle(guard.gate_watch)
        guard.close()
    assert guard.gate_watch.runs == 2
    assert "the evaluation failed" in caplog.text
    assert store.get_level("workflow=news") is None


@pytest.mark.parametrize("every", [-1.0, float("nan"), float("inf")])
def test_a_bad_interval_is_refused(every: float) -> None:
    with pytest.raises(ConfigurationError, match="gate_watch must be"):
        Guardrails(PACK, store="memory://", gate_watch=every)


def test_two_watches_of_the_same_evidence_demote_once(store: Store) -> None:
    """Two processes' watches judge the same harm: the first lowers the level; the second's
    demotion of that evidence no longer applies (the dial moved), so it neither records an
    evaluation nor moves the dial again."""
    guard = Guardrails(PACK, store=store, gate_watch=None)
    failures(guard, 12)
    guard.close()
    first, second = Gates(store), Gates(store)
    found = [e for e in second.evaluations(record=False) if e.verdict.verdict == "demote"]
    assert len(found) == 1  # judged before the first watch acted
    assert len(first.demote()) == 1
    assert second.apply(found) == []  # its evaluation is stale now
    assert second.demote() == []  # and evaluating again finds no harm at the new level
    changes = [c for c in store.level_history("workflow=news") if c.by == AUTO_ACTOR]
    assert [(c.old_level, c.new_level) for c in changes] == [(None, 1)]
    evaluated = [r for r in store.audit_records() if r.kind == "gate.evaluated"]
    assert len(evaluated) == 1
