"""Guardrails over memory://: running, refusing, approvals, costs, windows and the audit log."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from agent_guardrails import (
    ActionDenied,
    ApprovalAnswer,
    ApprovalRejected,
    ApprovalRequest,
    ApprovalRequired,
    AutonomyLevel,
    BudgetExceeded,
    CallRequest,
    ConfigurationError,
    ExposureExceeded,
    Guardrails,
    KillSwitchEngaged,
    PolicyPack,
    Scope,
    ScriptedApprover,
    ValidatorFailed,
    report_cost,
)
from agent_guardrails.pipeline.events import args_digest
from agent_guardrails.store import MemoryStore
from tests.conftest import DAY, Clock, GuardFactory, pack_text

PACK = """
defaults: {level: execute}
actions:
  crm.tag: {risk: low, cost: 1}
  crm.bulk: {risk: low, cost: {arg: n}}
  crm.touch:
    risk: low
    exposure: {entity: contact, limit: 1, window: week}
  crm.enrich: {risk: low, cost: {amount: 0}}
  email.send:
    sensitive: true
    cost: {arg: to, per_unit: 1}
    exposure: {entity: to, limit: 2, window: week}
    validators:
      - banned_terms: {terms: [free], fields: [body]}
    approval: {roles: [marketing_ops], timeout: 1h}
  page.publish:
    risk: high
    approval: {allowed_decisions: [approve, reject]}
  ads.spend:
    kind: optimize
    risk: low
    cost: {arg: amount}
    on_cap_exceeded: approve
    approval: {roles: [revenue_ops]}
levels:
  - {scope: {workflow: drafts}, level: assist}
  - {scope: {workflow: paid}, level: optimize}
budgets:
  - {name: daily, limit: 10, window: day}
"""

OPS = ("marketing_ops",)
GOOD_EMAIL = {"to": ["c1", "c2"], "body": "hello"}


class Tool:
    """A tool body that records every call."""

    def __init__(self, result: Any = "done") -> None:
        self.calls: list[dict[str, Any]] = []
        self.result = result

    def __call__(self, args: Mapping[str, Any]) -> Any:
        self.calls.append(dict(args))
        return self.result


def store_of(guard: Guardrails) -> MemoryStore:
    assert isinstance(guard.store, MemoryStore)
    return guard.store


def spent(guard: Guardrails) -> float:
    """What the daily budget counters hold (0 when nothing is held or committed)."""
    return sum(store_of(guard).counters("budget:").values())


def touches(guard: Guardrails) -> dict[str, float]:
    return {k: v for k, v in store_of(guard).counters("exposure:").items() if v}


def kinds(guard: Guardrails) -> list[str]:
    return [r.kind for r in store_of(guard).audit_records()]


def email(args: Mapping[str, Any] = GOOD_EMAIL, tool: str = "send_email") -> CallRequest:
    return CallRequest(tool, "email.send", dict(args))


@pytest.fixture
def guard(memory_guard: GuardFactory) -> Guardrails:
    return memory_guard(PACK)


# ----------------------------------------------------------------------------- allow


def test_allow_runs_the_body_once_and_commits(guard: Guardrails) -> None:
    body = Tool("tagged")
    assert guard.run(CallRequest("tag", "crm.bulk", {"n": 3}), body, call_key="k1") == "tagged"
    assert body.calls == [{"n": 3}]
    assert spent(guard) == 3.0
    record = store_of(guard).call_record("k1")
    assert record is not None
    assert record.state == "finished"
    assert kinds(guard)[-3:] == ["decision", "execution.started", "execution.finished"]
    finished = store_of(guard).audit_records()[-1]
    assert (finished.call_key, finished.data["cost"]) == ("k1", 3.0)
    assert store_of(guard).verify_audit().ok


def test_the_same_call_key_runs_once_and_replays_its_result(guard: Guardrails) -> None:
    body = Tool({"id": 7})
    first = guard.run(CallRequest("tag", "crm.bulk", {"n": 2}), body, call_key="same")
    again = guard.run(CallRequest("tag", "crm.bulk", {"n": 2}), body, call_key="same")
    assert first == again == {"id": 7}
    assert len(body.calls) == 1
    assert spent(guard) == 2.0


# ----------------------------------------------------------------------------- refusals


def test_a_denied_call_never_runs(guard: Guardrails) -> None:
    body = Tool()
    result = guard.run(email({"to": ["c1"], "body": "free!"}), body)
    assert isinstance(result, dict)
    assert result["status"] == "denied"
    assert result["reasons"] == ["validator_failed:banned_terms"]
    assert body.calls == []
    assert (spent(guard), touches(guard)) == (0.0, {})
    assert kinds(guard)[-1] == "decision"


def test_a_halted_call_never_runs_until_the_switch_is_released(guard: Guardrails) -> None:
    body = Tool()
    guard.kill(Scope(workflow="newsletter"), by="ana", reason="complaints")
    call = CallRequest("tag", "crm.tag", {}, Scope(workflow="newsletter", region="eu"))
    result = guard.run(call, body)
    assert isinstance(result, dict)
    assert (result["status"], result["reasons"]) == ("halted", ["kill_switch:workflow=newsletter"])
    assert guard.run(CallRequest("tag", "crm.tag", {}, Scope(workflow="other")), body) == "done"
    assert len(body.calls) == 1
    guard.unkill(Scope(workflow="newsletter"), by="ana", reason="fixed")
    assert guard.run(call, body) == "done"
    assert len(body.calls) == 2
    assert {"kill_switch.engaged", "kill_switch.released"} <= set(kinds(guard))


def test_a_simulated_call_returns_a_draft_and_never_runs(guard: Guardrails) -> None:
    body = Tool()
    call = CallRequest("send", "email.send", dict(GOOD_EMAIL), Scope(workflow="drafts"))
    result = guard.run(call, body)
    assert isinstance(result, dict)
    assert (result["status"], result["reasons"], result["level"]) == (
        "simulated",
        ["level_too_low"],
        0,
    )
    assert result["draft"]["intended_action"] == "email.send"
    assert result["draft"]["args"] == GOOD_EMAIL
    assert result["draft"]["estimated_cost"] == 2.0
    drafted = guard.run(call, body, simulate=lambda args: f"To: {', '.join(args['to'])}")
    assert isinstance(drafted, dict)
    assert drafted["draft"] == "To: c1, c2"
    assert body.calls == []
    assert (spent(guard), touches(guard)) == (0.0, {})


# ----------------------------------------------------------------------------- exceptions


def test_budget_exceeded_carries_the_numbers(memory_guard: GuardFactory) -> None:
    guard = memory_guard(PACK, raise_on_deny=True)
    guard.run(CallRequest("bulk", "crm.bulk", {"n": 8}), Tool())
    with pytest.raises(BudgetExceeded) as info:
        guard.run(CallRequest("bulk", "crm.bulk", {"n": 3}), Tool())
    err = info.value
    assert (err.budget, err.limit, err.spent, err.requested, err.currency) == (
        "daily",
        10.0,
        8.0,
        3.0,
        "USD",
    )
    assert err.reasons == ("budget_exceeded",)
    assert isinstance(err, ActionDenied)
    assert spent(guard) == 8.0


def test_exposure_exceeded_carries_the_numbers(memory_guard: GuardFactory) -> None:
    guard = memory_guard(PACK, raise_on_deny=True)
    guard.run(CallRequest("touch", "crm.touch", {"contact": "c1"}), Tool())
    with pytest.raises(ExposureExceeded) as info:
        guard.run(CallRequest("touch", "crm.touch", {"contact": "c1"}), Tool())
    assert (info.value.entity, info.value.limit, info.value.used) == ("contact=c1", 1.0, 1.0)
    assert guard.run(CallRequest("touch", "crm.touch", {"contact": "c2"}), Tool()) == "done"


def test_validator_failed_names_the_validator(memory_guard: GuardFactory) -> None:
    guard = memory_guard(PACK, raise_on_deny=True)
    with pytest.raises(ValidatorFailed) as info:
        guard.run(email({"to": ["c1"], "body": "FREE"}), Tool())
    assert info.value.validator == "banned_terms"
    assert info.value.detail == "banned term 'FREE' in body"


def test_kill_switch_engaged_is_raised(memory_guard: GuardFactory) -> None:
    guard = memory_guard(PACK, raise_on_deny=True)
    guard.kill(by="ops", reason="incident")
    with pytest.raises(KillSwitchEngaged) as info:
        guard.run(CallRequest("tag", "crm.tag", {}), Tool())
    assert info.value.reasons == ("kill_switch:global",)


def test_approval_required_is_raised_when_no_approver_can_be_asked(
    memory_guard: GuardFactory,
) -> None:
    guard = memory_guard(PACK, raise_on_deny=True)
    with pytest.raises(ApprovalRequired):
        guard.run(email(), Tool())
    assert (spent(guard), touches(guard)) == (0.0, {})


def test_an_unknown_action_raises_action_denied(memory_guard: GuardFactory) -> None:
    guard = memory_guard(PACK, raise_on_deny=True)
    with pytest.raises(ActionDenied) as info:
        guard.run(CallRequest("x", "sms.send", {}), Tool())
    assert type(info.value) is ActionDenied
    assert info.value.reasons == ("unknown_action:sms.send",)


def test_raise_on_deny_can_be_set_per_call(memory_guard: GuardFactory) -> None:
    quiet = memory_guard(PACK)
    with pytest.raises(ValidatorFailed):
        quiet.run(email({"to": ["c1"], "body": "free"}), Tool(), raise_on_deny=True)
    loud = memory_guard(PACK, raise_on_deny=True)
    result = loud.run(email({"to": ["c1"], "body": "free"}), Tool(), raise_on_deny=False)
    assert isinstance(result, dict)
    assert result["status"] == "denied"


def test_a_draft_is_never_raised(memory_guard: GuardFactory) -> None:
    guard = memory_guard(PACK, raise_on_deny=True)
    call = CallRequest("send", "email.send", dict(GOOD_EMAIL), Scope(workflow="drafts"))
    result = guard.run(call, Tool())
    assert isinstance(result, dict)
    assert result["status"] == "simulated"


# ----------------------------------------------------------------------------- approvals


def approver_guard(
    memory_guard: GuardFactory, answer: ApprovalAnswer, **kwargs: Any
) -> tuple[Guardrails, ScriptedApprover]:
    approver = ScriptedApprover({"email.send": answer, "page.publish": answer, "ads.spend": answer})
    return memory_guard(PACK, approver=approver, **kwargs), approver


def test_approve_runs_the_call_and_the_approver_sees_what_it_binds(
    memory_guard: GuardFactory,
) -> None:
    guard, approver = approver_guard(memory_guard, ApprovalAnswer("approve", by="ana", roles=OPS))
    body = Tool("sent")
    assert guard.run(email(), body) == "sent"
    assert body.calls == [GOOD_EMAIL]
    (request,) = approver.seen
    assert isinstance(request, ApprovalRequest)
    assert (request.tool, request.action, request.roles) == ("send_email", "email.send", OPS)
    assert request.reasons == ("approval_required:sensitive",)
    assert request.args_digest == args_digest("send_email", GOOD_EMAIL)
    assert (request.pack, request.pack_version, request.cost, request.budget_left) == (
        "test",
        "1",
        2.0,
        8.0,
    )
    assert spent(guard) == 2.0
    assert len(touches(guard)) == 2
    resolved = [r for r in store_of(guard).audit_records() if r.kind == "approval.resolved"]
    assert [(r.data["answer"], r.data["by"], r.data["refused"]) for r in resolved] == [
        ("approve", "ana", None)
    ]


def test_an_edit_runs_with_the_edited_arguments(memory_guard: GuardFactory) -> None:
    edited = {"to": ["c3"], "body": "hello, edited"}
    guard, _ = approver_guard(
        memory_guard, ApprovalAnswer("edit", by="ana", roles=OPS, edited_args=edited)
    )
    body = Tool()
    guard.run(email(), body)
    assert body.calls == [edited]
    assert spent(guard) == 1.0  # the edited call's cost, the original's released
    assert list(touches(guard)) == [k for k in touches(guard) if ":c3@" in k]


def test_an_edit_that_breaks_a_validator_is_denied(memory_guard: GuardFactory) -> None:
    edited = {"to": ["c1"], "body": "now free"}
    guard, _ = approver_guard(
        memory_guard, ApprovalAnswer("edit", by="ana", roles=OPS, edited_args=edited)
    )
    body = Tool()
    result = guard.run(email(), body)
    assert isinstance(result, dict)
    assert (result["status"], result["reasons"]) == ("denied", ["validator_failed:banned_terms"])
    assert body.calls == []
    assert (spent(guard), touches(guard)) == (0.0, {})


def test_an_edit_over_the_budget_is_denied(memory_guard: GuardFactory) -> None:
    edited = {"to": [f"c{i}" for i in range(11)], "body": "hello all"}
    guard, _ = approver_guard(
        memory_guard, ApprovalAnswer("edit", by="ana", roles=OPS, edited_args=edited)
    )
    body = Tool()
    result = guard.run(email(), body)
    assert isinstance(result, dict)
    assert result["reasons"] == ["budget_exceeded"]
    assert body.calls == []
    assert spent(guard) == 0.0


def test_an_edit_that_renames_the_tool_is_refused(memory_guard: GuardFactory) -> None:
    answer = ApprovalAnswer(
        "edit", by="ana", roles=OPS, edited_args=dict(GOOD_EMAIL), edited_tool="send_sms"
    )
    guard, _ = approver_guard(memory_guard, answer)
    body = Tool()
    result = guard.run(email(), body)
    assert isinstance(result, dict)
    assert (result["status"], result["reasons"]) == ("denied", ["edit_renames_tool"])
    assert body.calls == []
    assert spent(guard) == 0.0


@pytest.mark.parametrize(("answer", "status"), [("reject", "rejected"), ("respond", "responded")])
def test_reject_and_respond_never_run_and_release(
    memory_guard: GuardFactory, answer: Any, status: str
) -> None:
    guard, _ = approver_guard(
        memory_guard, ApprovalAnswer(answer, by="ana", roles=OPS, message="not this week")
    )
    body = Tool()
    result = guard.run(email(), body)
    assert isinstance(result, dict)
    assert (result["status"], result["message"]) == (status, "not this week")
    assert body.calls == []
    assert (spent(guard), touches(guard)) == (0.0, {})
    assert f"approval.{answer}" in kinds(guard)


def test_an_approver_without_the_required_role_is_refused(memory_guard: GuardFactory) -> None:
    guard, _ = approver_guard(memory_guard, ApprovalAnswer("approve", by="eve", roles=("interns",)))
    body = Tool()
    result = guard.run(email(), body)
    assert isinstance(result, dict)
    assert (result["status"], result["reasons"]) == ("denied", ["approver_not_authorized"])
    assert "eve" in result["message"]
    assert "marketing_ops" in result["message"]
    assert body.calls == []
    assert (spent(guard), touches(guard)) == (0.0, {})
    assert "approval.refused" in kinds(guard)


def test_an_answer_the_action_does_not_allow_is_refused(memory_guard: GuardFactory) -> None:
    answer = ApprovalAnswer("edit", by="ana", edited_args={"url": "/other"})
    guard, _ = approver_guard(memory_guard, answer)
    body = Tool()
    result = guard.run(CallRequest("publish", "page.publish", {"url": "/p"}), body)
    assert isinstance(result, dict)
    assert result["reasons"] == ["decision_not_allowed"]
    assert body.calls == []


def test_an_answer_after_the_timeout_is_refused(memory_guard: GuardFactory, clock: Clock) -> None:
    def slow(request: ApprovalRequest) -> ApprovalAnswer:
        clock.advance(3601)  # the pack gives email.send approvals one hour
        return ApprovalAnswer("approve", by="ana", roles=OPS)

    guard = memory_guard(PACK, approver=slow)
    body = Tool()
    result = guard.run(email(), body)
    assert isinstance(result, dict)
    assert result["reasons"] == ["approval_expired"]
    assert body.calls == []


def test_no_approver_means_pending_approval_and_nothing_held(guard: Guardrails) -> None:
    body = Tool()
    result = guard.run(email(), body, call_key="wait")
    assert isinstance(result, dict)
    assert (result["status"], result["decision"], result["reasons"]) == (
        "pending_approval",
        "require_approval",
        ["approval_required:sensitive"],
    )
    assert body.calls == []
    assert (spent(guard), touches(guard)) == (0.0, {})
    record = store_of(guard).call_record("wait")
    assert record is not None
    assert record.state == "released"
    assert "approval.unavailable" in kinds(guard)


def test_a_pending_call_can_be_approved_later_under_the_same_key(guard: Guardrails) -> None:
    body = Tool()
    guard.run(email(), body, call_key="later")
    guard.approver = ScriptedApprover({"email.send": ApprovalAnswer("approve", roles=OPS)})
    assert guard.run(email(), body, call_key="later") == "done"
    assert len(body.calls) == 1
    assert spent(guard) == 2.0


def test_a_cap_breach_approved_at_optimize_runs_over_the_cap(memory_guard: GuardFactory) -> None:
    guard, approver = approver_guard(
        memory_guard, ApprovalAnswer("approve", by="rob", roles=("revenue_ops",))
    )
    body = Tool()
    call = CallRequest("spend", "ads.spend", {"amount": 12}, Scope(workflow="paid"))
    assert guard.run(call, body) == "done"
    assert approver.seen[0].reasons == ("budget_exceeded", "approval_required:cap_exceeded")
    assert spent(guard) == 12.0  # approved exception: recorded past the limit
    # At Execute the same breach is a denial, and ads.spend (optimize) is only simulated.
    guard.set_level(Scope(workflow="paid"), "execute", by="ana", reason="test", override=True)
    result = guard.run(call, body)
    assert isinstance(result, dict)
    assert result["status"] == "simulated"
    assert len(body.calls) == 1


def test_an_unauthorized_approver_of_a_cap_breach_is_not_a_budget_error(
    memory_guard: GuardFactory,
) -> None:
    guard, _ = approver_guard(
        memory_guard,
        ApprovalAnswer("approve", by="eve", roles=("interns",)),
        raise_on_deny=True,
    )
    call = CallRequest("spend", "ads.spend", {"amount": 12}, Scope(workflow="paid"))
    with pytest.raises(ActionDenied) as info:
        guard.run(call, Tool())
    assert info.value.reasons == ("approver_not_authorized",)
    assert not isinstance(info.value, BudgetExceeded)


def test_a_kill_switch_engaged_while_the_human_decides_still_wins(
    memory_guard: GuardFactory,
) -> None:
    guard = memory_guard(PACK)

    def approver(request: ApprovalRequest) -> ApprovalAnswer:
        guard.kill(by="ops", reason="incident during the approval")
        return ApprovalAnswer("approve", by="ana", roles=OPS)

    guard.approver = approver
    body = Tool()
    result = guard.run(email(), body)
    assert body.calls == []
    assert isinstance(result, dict)
    assert result["status"] == "halted"


class Interrupted(Exception):
    """Stands in for LangGraph's interrupt: the asker leaves without an answer."""


def interrupt(request: ApprovalRequest) -> ApprovalAnswer:
    raise Interrupted


def test_a_call_held_across_an_interrupt_keeps_its_reservation(guard: Guardrails) -> None:
    body = Tool()
    with pytest.raises(Interrupted):
        guard.run(email(), body, call_key="t1", ask=interrupt)
    record = store_of(guard).call_record("t1")
    assert record is not None
    assert record.state == "reserved"
    assert spent(guard) == 2.0  # held while the human decides
    approve = ScriptedApprover({"email.send": ApprovalAnswer("approve", by="ana", roles=OPS)})
    assert guard.run(email(), body, call_key="t1", ask=approve) == "done"
    assert spent(guard) == 2.0  # its own reservation did not count against it
    assert len(body.calls) == 1


def test_approval_expiry_across_an_interrupt_follows_the_guardrails_clock(
    guard: Guardrails, clock: Clock
) -> None:
    body = Tool()
    with pytest.raises(Interrupted):
        guard.run(email(), body, call_key="t2", ask=interrupt)
    clock.advance(2 * 3600)  # email.send approvals expire after one hour
    approve = ScriptedApprover({"email.send": ApprovalAnswer("approve", by="ana", roles=OPS)})
    result = guard.run(email(), body, call_key="t2", ask=approve)
    assert body.calls == []
    assert isinstance(result, dict)
    assert result["reasons"] == ["approval_expired"]


# ----------------------------------------------------------------------------- costs


def test_the_budget_takes_the_reported_actual_cost(guard: Guardrails) -> None:
    def body(args: Mapping[str, Any]) -> str:
        report_cost(2.5)
        return "ok"

    guard.run(CallRequest("bulk", "crm.bulk", {"n": 5}), body)
    assert spent(guard) == 2.5
    guard.run(CallRequest("bulk", "crm.bulk", {"n": 1}), body)
    assert spent(guard) == 5.0
    finished = [r for r in store_of(guard).audit_records() if r.kind == "execution.finished"]
    assert [r.data["cost"] for r in finished] == [2.5, 2.5]


def test_a_reported_cost_above_the_estimate_is_committed_and_then_caps(guard: Guardrails) -> None:
    def body(args: Mapping[str, Any]) -> str:
        report_cost(9.0)
        return "ok"

    guard.run(CallRequest("bulk", "crm.bulk", {"n": 1}), body)
    assert spent(guard) == 9.0
    result = guard.run(CallRequest("bulk", "crm.bulk", {"n": 2}), body)
    assert isinstance(result, dict)
    assert result["reasons"] == ["budget_exceeded"]


def test_a_priced_action_estimated_at_zero_still_commits_its_reported_cost(
    guard: Guardrails,
) -> None:
    def body(args: Mapping[str, Any]) -> str:
        report_cost(4.0)
        return "ok"

    guard.run(CallRequest("enrich", "crm.enrich", {}), body)
    assert spent(guard) == 4.0


def test_report_cost_in_an_async_body(guard: Guardrails) -> None:
    async def body(args: Mapping[str, Any]) -> str:
        await asyncio.sleep(0)
        report_cost(1.5)
        return "ok"

    assert asyncio.run(guard.arun(CallRequest("bulk", "crm.bulk", {"n": 4}), body)) == "ok"
    assert spent(guard) == 1.5


@pytest.mark.parametrize("amount", [-1.0, float("nan"), float("inf"), -float("inf")])
def test_report_cost_refuses_what_is_not_a_finite_amount(amount: float) -> None:
    with pytest.raises(ValueError, match=r"report_cost amount must be a finite number >= 0"):
        report_cost(amount)


def test_a_tool_that_raises_releases_and_audits_the_failure(guard: Guardrails) -> None:
    def body(args: Mapping[str, Any]) -> str:
        raise TimeoutError("CRM timed out")

    with pytest.raises(TimeoutError):
        guard.run(CallRequest("bulk", "crm.bulk", {"n": 4}), body, call_key="boom")
    assert spent(guard) == 0.0
    record = store_of(guard).call_record("boom")
    assert record is not None
    assert record.state == "failed"
    assert store_of(guard).in_doubt() == []
    failed = store_of(guard).audit_records()[-1]
    assert (failed.kind, failed.call_key, failed.data["error"]) == (
        "execution.failed",
        "boom",
        "TimeoutError",
    )
    assert store_of(guard).verify_audit().ok


# ----------------------------------------------------------------------------- windows


def test_a_daily_budget_opens_again_at_midnight_utc(guard: Guardrails, clock: Clock) -> None:
    body = Tool()
    guard.run(CallRequest("bulk", "crm.bulk", {"n": 10}), body)
    denied = guard.run(CallRequest("bulk", "crm.bulk", {"n": 1}), body)
    assert isinstance(denied, dict)
    assert denied["reasons"] == ["budget_exceeded"]
    clock.advance(11 * 3600 + 59 * 60)  # 23:59 the same day
    denied = guard.run(CallRequest("bulk", "crm.bulk", {"n": 1}), body)
    assert isinstance(denied, dict)
    assert denied["reasons"] == ["budget_exceeded"]
    clock.advance(60)  # midnight
    assert guard.run(CallRequest("bulk", "crm.bulk", {"n": 10}), body) == "done"
    assert len(body.calls) == 2


def test_exposure_counts_each_contact_per_week(memory_guard: GuardFactory, clock: Clock) -> None:
    guard, _ = approver_guard(memory_guard, ApprovalAnswer("approve", roles=OPS))
    body = Tool()
    guard.run(email({"to": ["c1", "c2"], "body": "one"}), body)
    guard.run(email({"to": ["c1"], "body": "two"}), body)
    third = guard.run(email({"to": ["c1", "c3"], "body": "three"}), body)
    assert isinstance(third, dict)
    assert third["reasons"] == ["exposure_exceeded"]
    assert guard.run(email({"to": ["c2", "c3"], "body": "four"}), body) == "done"
    clock.advance(5 * DAY)  # Monday: a new ISO week
    assert guard.run(email({"to": ["c1"], "body": "five"}), body) == "done"
    assert len(body.calls) == 4


# ----------------------------------------------------------------------------- async


def test_arun_allows_denies_and_simulates(memory_guard: GuardFactory) -> None:
    guard = memory_guard(PACK, raise_on_deny=True)
    ran: list[Mapping[str, Any]] = []

    async def body(args: Mapping[str, Any]) -> str:
        ran.append(args)
        return "async done"

    async def main() -> None:
        assert await guard.arun(CallRequest("tag", "crm.tag", {}), body) == "async done"
        with pytest.raises(ValidatorFailed):
            await guard.arun(email({"to": ["c1"], "body": "free"}), body)
        draft = await guard.arun(CallRequest("tag", "crm.tag", {}, Scope(workflow="drafts")), body)
        assert isinstance(draft, dict)
        assert draft["status"] == "simulated"

    asyncio.run(main())
    assert len(ran) == 1


def test_an_async_tool_that_raises_releases(guard: Guardrails) -> None:
    async def body(args: Mapping[str, Any]) -> str:
        raise RuntimeError("down")

    with pytest.raises(RuntimeError):
        asyncio.run(guard.arun(CallRequest("bulk", "crm.bulk", {"n": 2}), body))
    assert spent(guard) == 0.0
    assert kinds(guard)[-1] == "execution.failed"


# ----------------------------------------------------------------------------- levels, scope


def test_set_level_moves_the_dial_within_the_ceiling(memory_guard: GuardFactory) -> None:
    capped_rule = "  - {scope: {workflow: capped}, level: execute, ceiling: optimize}\n"
    guard = memory_guard(PACK.replace("levels:\n", "levels:\n" + capped_rule))
    capped = Scope(workflow="capped", region="eu")
    assert guard.level_of(capped) is AutonomyLevel.EXECUTE
    with pytest.raises(ConfigurationError, match="above the ceiling L2 Optimize"):
        guard.set_level(capped, 3, by="ana", reason="too far", override=True)
    guard.set_level(capped, "assist", by="ana", reason="incident", override=True)
    assert guard.level_of(capped) is AutonomyLevel.ASSIST
    assert guard.level_of(Scope(workflow="capped")) is AutonomyLevel.ASSIST  # the same dial
    result = guard.run(CallRequest("tag", "crm.tag", {}, capped), Tool())
    assert isinstance(result, dict)
    assert result["status"] == "simulated"
    assert "level.changed" in kinds(guard)


def test_guardrails_load_a_pack_file(tmp_path: Path) -> None:
    path = tmp_path / "pack.yaml"
    path.write_text(pack_text(PACK), encoding="utf-8")
    guard = Guardrails(path, store="memory://")
    assert guard.policy.name == "test"
    assert guard.run(CallRequest("tag", "crm.tag", {}), Tool()) == "done"
    active = guard.store.active_pack()
    assert active is not None
    assert (active.name, active.version) == ("test", "1")


def test_scope_precedence(memory_guard: GuardFactory) -> None:
    guard = memory_guard(PACK, scope={"agent": "bot", "region": "us", "channel": "web"})
    args = {"region": "eu", "channel": "sms", "segment": "vip"}
    assert guard.resolve_scope(args=args) == Scope(
        agent="bot", region="eu", channel="sms", segment="vip"
    )
    with guard.scope(channel="email", workflow="newsletter"):
        resolved = guard.resolve_scope(args=args, declared={"workflow": "digest"})
    assert resolved == Scope(
        agent="bot", region="eu", channel="email", segment="vip", workflow="digest"
    )
    assert guard.resolve_scope() == Scope(agent="bot", region="us", channel="web")
    with pytest.raises(ConfigurationError, match="unknown scope dimension"), guard.scope(team="x"):
        pass


def test_the_audit_chain_verifies_after_a_mixed_session(memory_guard: GuardFactory) -> None:
    guard, _ = approver_guard(memory_guard, ApprovalAnswer("approve", roles=OPS))
    guard.run(CallRequest("bulk", "crm.bulk", {"n": 1}), Tool())
    guard.run(email(), Tool())
    guard.run(email({"to": ["c9"], "body": "free"}), Tool())
    guard.kill(by="ops", reason="drill")
    guard.run(CallRequest("tag", "crm.tag", {}), Tool())
    result = store_of(guard).verify_audit()
    records = store_of(guard).audit_records()
    assert result.ok
    assert result.checked == len(records)
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert kinds(guard).count("execution.finished") == 2


# ----------------------------------------------------------------------------- review fixes


def test_a_rejection_raises_approval_rejected_when_asked_to_raise(
    memory_guard: GuardFactory,
) -> None:
    guard = memory_guard(PACK)
    guard.raise_on_deny = True
    guard.approver = ScriptedApprover(
        {"email.send": ApprovalAnswer("reject", by="ana", roles=OPS, message="not now")}
    )
    body = Tool()
    with pytest.raises(ApprovalRejected) as info:
        guard.run(email(), body)
    assert "rejected" in info.value.reasons
    assert body.calls == []


def test_an_async_simulate_function_is_awaited(memory_guard: GuardFactory) -> None:
    guard = memory_guard(PACK)

    async def draft(args: Mapping[str, Any]) -> str:
        return f"draft for {args['to']}"

    async def body(args: Mapping[str, Any]) -> str:
        raise AssertionError("never runs at Assist")

    call = CallRequest("send", "email.send", {"to": "c1"}, Scope(workflow="drafts"))
    result = asyncio.run(guard.arun(call, body, simulate=draft))
    assert isinstance(result, dict)
    assert result["status"] == "simulated"
    assert result["draft"] == "draft for c1"


def test_an_answer_binds_to_the_arguments_it_was_asked_about() -> None:
    """A call asked about with some arguments and answered after they changed (a resumed
    node whose checkpoint was edited, say) is refused as stale; nothing runs."""
    pack = PolicyPack.from_yaml(
        pack_text("defaults: {level: execute}\nactions:\n  email.send: {sensitive: true}\n")
    )
    guard = Guardrails(pack, store="memory://")
    runs: list[Mapping[str, Any]] = []
    key = "thread|ns|call-7"
    first = guard.run(CallRequest("send", "email.send", {"to": "a"}), runs.append, call_key=key)
    assert isinstance(first, dict)
    assert first["status"] == "pending_approval"  # asked (no approver here); question recorded
    guard.approver = ScriptedApprover({"email.send": ApprovalAnswer("approve", by="ana")})
    second = guard.run(CallRequest("send", "email.send", {"to": "b"}), runs.append, call_key=key)
    assert isinstance(second, dict)
    assert second["reasons"] == ["approval_stale"]
    assert "arguments changed" in second["message"]
    assert runs == []
