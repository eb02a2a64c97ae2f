"""Two approvers answer one question at the same moment (two resumes of one thread): the
answer recorded first is the one acted on, by both runs, and the log says what was done."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agent_guardrails import ApprovalAnswer, CallRequest, Guardrails, PolicyPack
from agent_guardrails.store import open_store

PACK = """
name: race
version: "1"
defaults: {level: execute}
actions:
  email.send: {sensitive: true, cost: 1, approval: {roles: [ops]}}
budgets:
  - {name: daily, limit: 10, window: day}
"""
KEY = "thread-1|ns|call-1"
REQUEST = CallRequest("send_email", "email.send", {"to": "c1"})


class _Paused(Exception):
    pass


def _pause(request: Any) -> Any:
    raise _Paused


def test_the_first_answer_recorded_is_the_one_acted_on(every_store_url: str) -> None:
    spent = 0.0  # what earlier rounds spent (one store for every round)
    for n in range(6):  # which answer comes first varies from round to round
        spent += _race(every_store_url, f"{KEY}-{n}", spent)


def _race(url: str, key: str, before: float) -> float:
    """One question, approve and reject at once; what the round spent."""
    store = open_store(url)
    guard = Guardrails(PolicyPack.from_yaml(PACK), store=store)
    with pytest.raises(_Paused):
        guard.run(REQUEST, lambda a: "sent", call_key=key, ask=_pause)
    ran: list[str] = []
    both = threading.Barrier(2)
    results: dict[str, Any] = {}

    def resume(answer: ApprovalAnswer) -> None:
        def ask(request: Any) -> ApprovalAnswer:
            both.wait(10)  # both runs have decided and hold: now both answer
            return answer

        def body(args: Any) -> str:
            ran.append(answer.type)
            return "sent"

        results[answer.type] = guard.run(REQUEST, body, call_key=key, ask=ask)

    yes = ApprovalAnswer("approve", by="ana", roles=("ops",))
    no = ApprovalAnswer("reject", by="bo", roles=("ops",), message="no")
    threads = [threading.Thread(target=resume, args=(a,)) for a in (yes, no)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    guard.flush()
    records = [r for r in store.audit_records() if r.call_key == key]
    answers = [r.data for r in records if r.kind == "approval.resolved"]
    assert len(answers) == 1
    spent = sum(store.counters("budget:").values()) - before
    if answers[0]["answer"] == "approve":
        assert (ran, spent, results["approve"]) == (["approve"], 1.0, "sent")
        assert results["reject"]["reasons"] == ["approval_answered"]
    else:
        assert (ran, spent, results["reject"]["status"]) == ([], 0.0, "rejected")
        assert results["approve"]["reasons"] == ["approval_answered"]
    assert store.verify_audit().ok
    guard.close()
    store.close()
    return spent
