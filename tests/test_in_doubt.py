"""A call left in doubt (its run started it and died) is never run again without a human:
not after a re-run nobody answered, not after a human said no, not on a tight budget."""

from __future__ import annotations

import contextlib
from typing import Any

from agent_guardrails import ApprovalAnswer, CallRequest, Guardrails, PolicyPack
from agent_guardrails.engine.charges import charges_for
from agent_guardrails.store import open_store

PACK = """
name: doubt
version: "1"
defaults: {level: orchestrate, ceiling: orchestrate}
actions:
  crm.tag: {risk: low, cost: 5}
budgets:
  - {name: daily, limit: 5, window: day}
"""
KEY = "thread-1|ns|call-1"
REQUEST = CallRequest("tag_contact", "crm.tag", {"contact": "c1"})


def _died_mid_call(guard: Guardrails) -> None:
    """What a worker killed inside the tool leaves: the call held and started."""
    pack = guard.policy
    action = pack.action("crm.tag")
    assert action is not None
    charges = charges_for(REQUEST, action, pack, cost=5.0, now=guard.clock())
    assert guard.store.reserve(KEY, charges).ok
    assert guard.store.start(KEY)


def test_a_call_in_doubt_is_asked_about_on_every_re_run(every_store_url: str) -> None:
    store = open_store(every_store_url)
    ran: list[str] = []

    def body(args: Any) -> str:
        ran.append("ran")
        return "done"

    guard = Guardrails(PolicyPack.from_yaml(PACK), store=store)
    _died_mid_call(guard)
    for _ in range(3):  # nobody answers: it waits, still in doubt, its budget still held
        result: Any = guard.run(REQUEST, body, call_key=KEY)
        assert (result["status"], result["reasons"]) == ("pending_approval", ["in_doubt"])
        assert [c.key for c in store.in_doubt()] == [KEY]
    no = ApprovalAnswer("reject", by="ana", message="it may have run")
    result = guard.run(REQUEST, body, call_key=KEY, ask=lambda request: no)
    assert result["status"] == "rejected"
    result = guard.run(REQUEST, body, call_key=KEY)  # the next re-run asks again
    assert result["status"] == "pending_approval"
    assert ran == []
    assert [c.key for c in store.in_doubt()] == [KEY]
    assert sum(store.counters("budget:").values()) == 5.0
    yes = ApprovalAnswer("approve", by="ana")
    assert guard.run(REQUEST, body, call_key=KEY, ask=lambda request: yes) == "done"
    assert ran == ["ran"]
    assert store.in_doubt() == []
    assert sum(store.counters("budget:").values()) == 5.0  # charged once
    guard.close()
    store.close()


class _Died(BaseException):
    """What a killed worker looks like from inside: the body never returns."""


def test_a_call_approved_then_in_doubt_runs_when_another_approver_says_yes(
    every_store_url: str,
) -> None:
    # Approved by ana, the run died inside the body; bo approves the re-run. The re-ask
    # shares the first question's records: bo's answer is not a rival of ana's.
    store = open_store(every_store_url)
    pack = PACK.replace("crm.tag: {risk: low, cost: 5}", "crm.tag: {sensitive: true, cost: 5}")
    guard = Guardrails(PolicyPack.from_yaml(pack), store=store)
    ana = ApprovalAnswer("approve", by="ana")

    def dies(args: Any) -> str:
        raise _Died

    with contextlib.suppress(_Died):
        guard.run(REQUEST, dies, call_key=KEY, ask=lambda request: ana)
    assert [c.key for c in store.in_doubt()] == [KEY]
    bo = ApprovalAnswer("approve", by="bo")
    assert guard.run(REQUEST, lambda a: "done", call_key=KEY, ask=lambda request: bo) == "done"
    assert store.in_doubt() == []
    guard.close()
    store.close()
