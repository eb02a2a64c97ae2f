"""Spans, events, links, status and metrics of guarded calls, read from in-memory exporters."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from agent_guardrails import (
    ApprovalAnswer,
    BudgetExceeded,
    CallRequest,
    Guardrails,
    PolicyPack,
    Scope,
    ScriptedApprover,
    report_cost,
)
from agent_guardrails.adapters.middleware import GuardrailsMiddleware
from agent_guardrails.store import MemoryStore
from agent_guardrails.telemetry import attributes as A
from agent_guardrails.telemetry.spans import iso
from tests.conftest import Clock
from tests.telemetry.conftest import Otel

PACK = """
name: traced
version: '7'
defaults: {level: execute}
actions:
  crm.tag: {risk: low, cost: {amount: 1}}
  email.send:
    risk: medium
    sensitive: true
    cost: {amount: 0.5}
    validators:
      - banned_terms: {terms: [guaranteed], fields: [subject]}
    approval: {roles: [ops], timeout: 1h}
    personal_data: [to]
  budget.reallocate: {kind: optimize, cost: {arg: amount}}
levels:
  - {scope: {workflow: drafts}, level: assist}
budgets:
  - {name: daily, limit: 3, window: day}
"""

EMAIL = "seeded.person@example.com"
CONTACT = "contact-7f3a9"


def make_guard(otel: Otel, clock: Clock, **kwargs: Any) -> Guardrails:
    return Guardrails(
        PolicyPack.from_yaml(PACK),
        store=kwargs.pop("store", MemoryStore()),
        clock=clock,
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
        scope={"agent": "campaign-bot"},
        **kwargs,
    )


BOT = Scope(agent="campaign-bot")


def req(tool: str, action: str, args: Any, scope: Scope = BOT, call_id: str = "") -> CallRequest:
    return CallRequest(tool, action, args, scope, call_id)


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def events(span: ReadableSpan, name: str) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == name]


def only(otel: Otel, name: str) -> ReadableSpan:
    spans = otel.spans(name)
    assert len(spans) == 1, [s.name for s in otel.spans()]
    return spans[0]


@pytest.fixture
def clock() -> Clock:
    return Clock()


# ------------------------------------------------------------------ each decision kind


def test_allowed_call_is_an_execute_tool_span_with_genai_and_guardrail_attributes(
    otel: Otel, clock: Clock
) -> None:
    guard = make_guard(otel, clock)
    tracer = otel.tracer_provider.get_tracer("test")

    def body(args: Any) -> str:
        with tracer.start_as_current_span("crm.http"):  # the tool's own work nests inside
            return "tagged"

    with tracer.start_as_current_span("agent.step") as outer:
        call = req("tag_contact", "crm.tag", {"id": "c1"}, call_id="tc-1")
        assert guard.run(call, body) == "tagged"

    span = only(otel, "execute_tool tag_contact")
    a = attrs(span)
    assert span.kind is SpanKind.INTERNAL
    assert span.status.status_code is StatusCode.UNSET
    assert span.parent is not None
    assert span.parent.span_id == outer.get_span_context().span_id
    assert only(otel, "crm.http").parent.span_id == span.context.span_id  # type: ignore[union-attr]
    assert a[A.GEN_AI_OPERATION_NAME] == "execute_tool"
    assert a[A.GEN_AI_TOOL_NAME] == "tag_contact"
    assert a[A.GEN_AI_TOOL_TYPE] == "function"
    assert a[A.GEN_AI_TOOL_CALL_ID] == "tc-1"
    assert a[A.GEN_AI_AGENT_NAME] == "campaign-bot"
    assert a[A.DECISION] == "allow"
    assert a[A.REASONS] == "allowed"
    assert a[A.LEVEL] == 1
    assert (a[A.ACTION], a[A.RISK]) == ("crm.tag", "low")
    assert a[A.SCOPE] == "agent=campaign-bot"
    assert a[A.SCOPE + ".agent"] == "campaign-bot"  # one attribute per dimension too
    assert (a[A.CALL_OUTCOME], a[A.LEVEL_NAME]) == ("ran", "execute")
    assert a[A.EXPLANATION] == "Allowed: crm.tag at L1 Execute (2.00 USD left in budget)."
    assert (a[A.PACK_NAME], a[A.PACK_VERSION]) == ("traced", "7")
    assert (a[A.COST_ESTIMATED], a[A.COST_CHARGED], a[A.COST_CURRENCY]) == (1.0, 1.0, "USD")
    assert a[A.BUDGET_LEFT] == 2.0
    assert a[A.DECISION_LATENCY] >= 0
    assert A.ERROR_TYPE not in a
    assert A.GEN_AI_TOOL_CALL_ARGUMENTS not in a  # content is private by default


def test_actual_cost_reported_by_the_body_replaces_the_estimate(otel: Otel, clock: Clock) -> None:
    guard = make_guard(otel, clock)

    def body(args: Any) -> str:
        report_cost(0.25)
        return "ok"

    guard.run(req("tag_contact", "crm.tag", {}), body)
    a = attrs(only(otel, "execute_tool tag_contact"))
    assert (a[A.COST_ESTIMATED], a[A.COST_CHARGED]) == (1.0, 0.25)


def test_simulated_call_at_assist_is_recorded_without_error(otel: Otel, clock: Clock) -> None:
    guard = make_guard(otel, clock)
    ran: list[str] = []
    request = req("tag_contact", "crm.tag", {}, Scope(workflow="drafts"))
    out = guard.run(request, lambda a: ran.append("x"))
    assert out["status"] == "simulated"  # type: ignore[index]
    span = only(otel, "execute_tool tag_contact")
    assert ran == []
    assert attrs(span)[A.DECISION] == "simulate"
    assert attrs(span)[A.LEVEL] == 0
    assert span.status.status_code is StatusCode.UNSET


def test_budget_denial_is_an_error_with_the_reason_code(otel: Otel, clock: Clock) -> None:
    guard = make_guard(otel, clock)
    request = req("move_budget", "budget.reallocate", {"amount": 50})
    guard.run(request, lambda a: "moved")  # level execute: optimize-kind is simulated
    guard.set_level(Scope(), 2, by="test", reason="optimize", override=True)
    out = guard.run(request, lambda a: "moved")
    assert out["status"] == "denied"  # type: ignore[index]
    span = otel.spans("execute_tool move_budget")[-1]
    a = attrs(span)
    assert a[A.DECISION] == "deny"
    assert "budget_exceeded" in a[A.REASONS].split(",")
    assert a[A.ERROR_TYPE] == "budget_exceeded"
    assert span.status.status_code is StatusCode.ERROR
    assert "budget_exceeded" in (span.status.description or "")


def test_a_raised_denial_keeps_the_same_error_type(otel: Otel, clock: Clock) -> None:
    guard = make_guard(otel, clock, raise_on_deny=True)
    guard.set_level(Scope(), 2, by="test", reason="optimize", override=True)
    with pytest.raises(BudgetExceeded):
        guard.run(req("move_budget", "budget.reallocate", {"amount": 50}), lambda a: 1)
    a = attrs(only(otel, "execute_tool move_budget"))
    assert a[A.ERROR_TYPE] == "budget_exceeded"


def test_failed_validator_is_an_event_and_a_denial(otel: Otel, clock: Clock) -> None:
    guard = make_guard(otel, clock)
    args = {"to": EMAIL, "subject": "guaranteed returns"}
    guard.run(req("send_email", "email.send", args), lambda a: "sent")
    span = only(otel, "execute_tool send_email")
    assert events(span, A.EVENT_VALIDATOR) == [
        {A.VALIDATOR_NAME: "banned_terms", A.VALIDATOR_PASSED: False}
    ]
    assert attrs(span)[A.ERROR_TYPE] == "validator_failed"
    assert span.status.status_code is StatusCode.ERROR


def test_kill_switch_halt_is_an_event_and_an_error(otel: Otel, clock: Clock) -> None:
    guard = make_guard(otel, clock)
    guard.kill(Scope(agent="campaign-bot"), by="ops", reason="incident")
    guard.run(req("tag_contact", "crm.tag", {}), lambda a: "tagged")
    span = only(otel, "execute_tool tag_contact")
    assert attrs(span)[A.DECISION] == "halt"
    assert attrs(span)[A.ERROR_TYPE] == "kill_switch"
    assert events(span, A.EVENT_KILL_SWITCH) == [{A.KILL_SWITCH_SCOPE: "agent=campaign-bot"}]
    assert span.status.status_code is StatusCode.ERROR


def test_tool_failure_records_the_type_but_not_the_message(otel: Otel, clock: Clock) -> None:
    guard = make_guard(otel, clock)

    def body(args: Any) -> str:
        raise ValueError(f"mailbox {EMAIL} is full")

    with pytest.raises(ValueError, match="mailbox"):
        guard.run(req("tag_contact", "crm.tag", {}), body)
    span = only(otel, "execute_tool tag_contact")
    assert attrs(span)[A.ERROR_TYPE] == "ValueError"
    assert span.status.status_code is StatusCode.ERROR
    assert EMAIL not in span.to_json()
    points = otel.metric_points(A.METRIC_TOOL_DURATION)
    assert [dict(p.attributes)[A.OUTCOME] for p in points] == ["error"]


# ------------------------------------------------------------------ approvals


def test_synchronous_approval_records_request_and_answer_in_one_span(
    otel: Otel, clock: Clock
) -> None:
    approver = ScriptedApprover({"email.send": ApprovalAnswer("approve", by="ana", roles=("ops",))})
    guard = make_guard(otel, clock, approver=approver)
    out = guard.run(req("send_email", "email.send", {"to": EMAIL}), lambda a: "sent")
    assert out == "sent"
    span = only(otel, "execute_tool send_email")
    a = attrs(span)
    (asked,) = events(span, A.EVENT_APPROVAL_REQUESTED)
    assert asked[A.REQUIRED_ROLES] == ("ops",)
    assert asked[A.REASONS] == "approval_required:sensitive"  # one format, as on the span
    assert asked[A.APPROVAL_EXPIRES_AT] == iso(clock.now + 3600)
    assert asked[A.APPROVAL_EXPIRES_AT].endswith("Z")
    (answered,) = events(span, A.EVENT_APPROVAL_RESOLVED)
    assert answered == {
        A.APPROVAL_DECISION: "approve",
        A.APPROVER: "ana",
        A.APPROVER_ROLES: ("ops",),
    }
    assert (a[A.DECISION], a[A.APPROVER], a[A.APPROVAL_DECISION]) == ("allow", "ana", "approve")
    assert (a[A.CALL_OUTCOME], a[A.EXPLANATION]) == ("approved", "Approved by ana, then ran.")
    assert (a[A.REQUIRED_ROLES], a[A.APPROVER_ROLES]) == (("ops",), ("ops",))
    assert a[A.REASONS].split(",") == ["approval_required:sensitive", "approved"]
    assert span.status.status_code is StatusCode.UNSET
    (wait,) = otel.metric_points(A.METRIC_APPROVAL_WAIT)
    assert dict(wait.attributes) == {A.ACTION: "email.send", A.APPROVAL_DECISION: "approve"}


def test_rejection_and_unauthorised_approver_are_errors(otel: Otel, clock: Clock) -> None:
    approver = ScriptedApprover(
        {"email.send": ApprovalAnswer("approve", by="bob", roles=("intern",))},
        default=ApprovalAnswer("reject", by="ana", roles=("ops",)),
    )
    guard = make_guard(otel, clock, approver=approver)
    guard.run(req("send_email", "email.send", {"to": EMAIL}), lambda a: "sent")
    span = only(otel, "execute_tool send_email")
    (answered,) = events(span, A.EVENT_APPROVAL_RESOLVED)
    assert answered[A.APPROVAL_REFUSED] == "approver_not_authorized"
    assert attrs(span)[A.ERROR_TYPE] == "approver_not_authorized"

    otel.exporter.clear()
    approver.answers.clear()
    guard.run(req("send_email", "email.send", {"to": EMAIL}), lambda a: "sent")
    span = only(otel, "execute_tool send_email")
    assert attrs(span)[A.ERROR_TYPE] == "approval_rejected"
    assert span.status.status_code is StatusCode.ERROR


class ScriptedModel(GenericFakeChatModel):
    """A chat model that answers from a script and ignores tool binding."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedModel:
        return self


def test_interrupt_and_resume_link_the_spans_and_record_each_event_once(
    otel: Otel, clock: Clock
) -> None:
    guard = make_guard(otel, clock)
    sent: list[str] = []

    @tool
    def send_email(to: str) -> str:
        """Send an email."""
        sent.append(to)
        return "sent"

    model = ScriptedModel(
        messages=iter(
            [
                AIMessage(
                    content="",
                    tool_calls=[
                        {"name": "send_email", "args": {"to": "a@example.com"}, "id": "t1"},
                        {"name": "send_email", "args": {"to": "b@example.com"}, "id": "t2"},
                    ],
                ),
                AIMessage(content="done"),
            ]
        )
    )
    agent: Any = create_agent(
        model,
        [send_email],
        middleware=[
            GuardrailsMiddleware(guard, actions={"send_email": "email.send"}, interrupt="per_call")
        ],
        checkpointer=InMemorySaver(),
    )
    cfg: Any = {"configurable": {"thread_id": "th-9", "approver": {"id": "ana", "roles": ["ops"]}}}
    first = agent.invoke({"messages": [("user", "send")]}, cfg, version="v2")
    assert len(first.interrupts) == 2
    asking = {attrs(s)[A.GEN_AI_TOOL_CALL_ID]: s for s in otel.spans()}
    assert sorted(asking) == ["t1", "t2"]
    for span in asking.values():
        assert attrs(span)[A.DECISION] == "require_approval"
        assert attrs(span)[A.GEN_AI_CONVERSATION_ID] == "th-9"
        assert span.status.status_code is StatusCode.UNSET  # a pause, not an error
        assert len(events(span, A.EVENT_APPROVAL_REQUESTED)) == 1

    # Answer only t1: both calls' tasks re-run; t2 asks again and must not re-record.
    by_id = {i.value["tool_call_id"]: i.id for i in first.interrupts}
    clock.advance(30)
    agent.invoke(Command(resume={by_id["t1"]: {"type": "approve"}}), cfg, version="v2")
    agent.invoke(
        Command(resume={by_id["t2"]: {"type": "reject", "message": "no"}}), cfg, version="v2"
    )
    assert sent == ["a@example.com"]

    spans = otel.spans()
    requested = sum(len(events(s, A.EVENT_APPROVAL_REQUESTED)) for s in spans)
    resolved = [e for s in spans for e in events(s, A.EVENT_APPROVAL_RESOLVED)]
    checked = [s for s in spans if A.VALIDATORS_PASSED in attrs(s)]
    assert requested == 2
    assert sorted(e[A.APPROVAL_DECISION] for e in resolved) == ["approve", "reject"]
    assert sorted(checked, key=id) == sorted(asking.values(), key=id)  # not on resume
    assert attrs(checked[0])[A.VALIDATORS_PASSED] == "banned_terms"
    for call_id, decision in (("t1", "allow"), ("t2", "require_approval")):
        final = [s for s in spans if attrs(s)[A.GEN_AI_TOOL_CALL_ID] == call_id][-1]
        assert attrs(final)[A.DECISION] == decision
        (link,) = final.links
        assert link.context.span_id == asking[call_id].context.span_id
        assert link.context.trace_id == asking[call_id].context.trace_id
        assert attrs(final)[A.APPROVAL_WAIT] >= 30
    # The decision audit record carries the asking span's ids (audit <-> trace).
    records = [r for r in guard.store.audit_records() if r.kind == "decision"]
    assert {r.data.get("span_id") for r in records} >= {
        f"{s.context.span_id:016x}" for s in asking.values()
    }
    counted = {
        dict(p.attributes)[A.DECISION]: p.value for p in otel.metric_points(A.METRIC_DECISIONS)
    }
    assert counted == {"require_approval": 3, "allow": 1}  # t2's re-ask is not counted again


# ------------------------------------------------------------------ sampling, metrics, privacy


def test_sampling_off_exports_nothing_and_changes_nothing(clock: Clock) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    guard = Guardrails(
        PolicyPack.from_yaml(PACK), store=MemoryStore(), clock=clock, tracer_provider=provider
    )
    assert guard.run(req("tag_contact", "crm.tag", {}), lambda a: "tagged") == "tagged"
    assert exporter.get_finished_spans() == ()
    (record,) = [r for r in guard.store.audit_records() if r.kind == "decision"]
    assert "trace_id" not in record.data


def test_metrics_count_decisions_cost_and_tool_time(otel: Otel, clock: Clock) -> None:
    guard = make_guard(otel, clock)
    for _ in range(4):  # the daily budget of 3 holds three
        guard.run(req("tag_contact", "crm.tag", {}), lambda a: "tagged")
    counted = {
        dict(p.attributes)[A.DECISION]: p.value for p in otel.metric_points(A.METRIC_DECISIONS)
    }
    assert counted == {"allow": 3, "deny": 1}
    (cost,) = otel.metric_points(A.METRIC_COST)
    assert cost.value == 3.0
    assert dict(cost.attributes) == {
        A.SCOPE: "agent=campaign-bot",
        A.COST_CURRENCY: "USD",
        A.ACTION: "crm.tag",
    }
    (duration,) = otel.metric_points(A.METRIC_TOOL_DURATION)
    assert duration.count == 3


def test_seeded_personal_data_appears_nowhere_in_spans_by_default(otel: Otel, clock: Clock) -> None:
    approver = ScriptedApprover({"email.send": ApprovalAnswer("approve", by="ana", roles=("ops",))})
    guard = make_guard(otel, clock, approver=approver)
    args = {"to": EMAIL, "contact_id": CONTACT, "subject": "guaranteed"}
    guard.run(req("send_email", "email.send", args), lambda a: {"to": EMAIL})
    args["subject"] = "Hello"
    guard.run(req("send_email", "email.send", args), lambda a: {"to": EMAIL})
    guard.run(req("tag_contact", "crm.tag", {"contact_id": CONTACT}), lambda a: CONTACT)
    exported = json.dumps([json.loads(s.to_json()) for s in otel.spans()])
    assert len(otel.spans()) == 3
    assert EMAIL not in exported
    assert CONTACT not in exported


def test_opted_in_content_is_redacted_then_hashed(otel: Otel, clock: Clock) -> None:
    seen: list[Any] = []

    def redact(tool: str, value: Any) -> Any:
        seen.append(tool)
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k != "secret"}
        return value

    guard = Guardrails(
        PolicyPack.from_yaml(PACK + "privacy: {personal_data: [contact_id]}\n"),
        store=MemoryStore(),
        clock=clock,
        tracer_provider=otel.tracer_provider,
        capture_content=True,
        redact=redact,
        hash_key="k1",
        approver=ScriptedApprover(
            {"email.send": ApprovalAnswer("approve", by="a", roles=("ops",))}
        ),
    )
    args = {"to": EMAIL, "contact_id": CONTACT, "secret": "s3", "subject": "Hi"}
    guard.run(req("send_email", "email.send", args), lambda a: {"contact_id": CONTACT})
    span = only(otel, "execute_tool send_email")
    sent = json.loads(attrs(span)[A.GEN_AI_TOOL_CALL_ARGUMENTS])
    result = json.loads(attrs(span)[A.GEN_AI_TOOL_CALL_RESULT])
    assert sent["subject"] == "Hi"
    assert "secret" not in sent
    assert sent["to"].startswith("sha256:")  # the action's personal data
    assert sent["contact_id"].startswith("sha256:")  # the pack-wide personal data
    assert result["contact_id"] == sent["contact_id"]  # same value, same hash
    assert EMAIL not in span.to_json()
    assert CONTACT not in span.to_json()
    assert seen == ["send_email", "send_email"]


def test_capture_variable_must_be_a_boolean(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent_guardrails import ConfigurationError

    monkeypatch.setenv("AGENT_GUARDRAILS_CAPTURE_CONTENT", "maybe")
    with pytest.raises(ConfigurationError, match="AGENT_GUARDRAILS_CAPTURE_CONTENT"):
        Guardrails(PolicyPack.from_yaml(PACK), store=MemoryStore(), clock=clock)


def test_priced_model_calls_are_chat_spans_with_tokens_and_cost(otel: Otel, clock: Clock) -> None:
    guard = Guardrails(
        PolicyPack.from_yaml(
            PACK + "model_prices:\n  gpt-x: {input_per_1k: 2, output_per_1k: 4}\n"
        ),
        store=MemoryStore(),
        clock=clock,
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
    )
    started = 1_700_000_000_000_000_000
    cost = guard.record_model_spend(
        model="gpt-x", input_tokens=500, output_tokens=250, scope=BOT, started_ns=started
    )
    assert cost == pytest.approx(2.0)
    span = only(otel, "chat gpt-x")
    a = attrs(span)
    assert span.kind is SpanKind.CLIENT
    assert span.start_time == started
    assert a[A.GEN_AI_OPERATION_NAME] == "chat"
    assert a[A.GEN_AI_REQUEST_MODEL] == "gpt-x"
    assert (a[A.GEN_AI_USAGE_INPUT_TOKENS], a[A.GEN_AI_USAGE_OUTPUT_TOKENS]) == (500, 250)
    assert (a[A.COST_AMOUNT], a[A.COST_CURRENCY], a[A.COST_TOKENS]) == (2.0, "USD", 750)
    (point,) = otel.metric_points(A.METRIC_COST)
    assert point.value == pytest.approx(2.0)
    assert dict(point.attributes)[A.ACTION] == "model.call"
    # an unpriced model is neither charged nor traced
    assert guard.record_model_spend(model="other", input_tokens=1, output_tokens=1, scope=BOT) == 0
    assert len(otel.spans()) == 1


def test_personal_data_can_be_dropped_instead_of_hashed(otel: Otel, clock: Clock) -> None:
    guard = Guardrails(
        PolicyPack.from_yaml(PACK + "privacy: {personal_data: [Contact_ID], treatment: drop}\n"),
        store=MemoryStore(),
        clock=clock,
        tracer_provider=otel.tracer_provider,
        capture_content=True,
    )
    args = {"note": "hi", "people": [{"contact_id": CONTACT, "name": "Ann"}]}
    guard.run(req("tag_contact", "crm.tag", args), lambda a: "tagged")
    sent = json.loads(attrs(only(otel, "execute_tool tag_contact"))[A.GEN_AI_TOOL_CALL_ARGUMENTS])
    assert sent == {"note": "hi", "people": [{"name": "Ann"}]}  # nested, case-insensitive


def test_without_providers_a_call_does_no_telemetry_work(clock: Clock) -> None:
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    from agent_guardrails.telemetry.spans import CallSpan

    explicit = Guardrails(
        PolicyPack.from_yaml(PACK),
        store=MemoryStore(),
        clock=clock,
        tracer_provider=NoOpTracerProvider(),
        meter_provider=NoOpMeterProvider(),
    )
    default = Guardrails(PolicyPack.from_yaml(PACK), store=MemoryStore(), clock=clock)
    request = req("tag_contact", "crm.tag", {})
    for guard in (explicit, default):  # this test process sets no global provider
        call = guard.telemetry.call(request, None)
        assert type(call) is not CallSpan  # the shared do-nothing span
        assert guard.run(request, lambda a: "tagged") == "tagged"
    metered = Guardrails(
        PolicyPack.from_yaml(PACK),
        store=MemoryStore(),
        clock=clock,
        tracer_provider=NoOpTracerProvider(),
        meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
    )
    assert type(metered.telemetry.call(request, None)) is CallSpan  # metrics still count


def test_async_calls_are_traced_like_sync_ones(otel: Otel, clock: Clock) -> None:
    import asyncio

    guard = make_guard(otel, clock)
    tracer = otel.tracer_provider.get_tracer("test")

    async def body(args: Any) -> str:
        await asyncio.sleep(0)
        with tracer.start_as_current_span("crm.http"):
            return "tagged"

    async def main() -> None:
        with tracer.start_as_current_span("agent.step"):
            calls = [guard.arun(req("tag_contact", "crm.tag", {"i": i}), body) for i in range(3)]
            assert await asyncio.gather(*calls) == ["tagged"] * 3

    asyncio.run(main())
    (outer,) = otel.spans("agent.step")
    ours = otel.spans("execute_tool tag_contact")
    assert len(ours) == 3
    assert {s.parent.span_id for s in ours if s.parent} == {outer.context.span_id}
    inner = otel.spans("crm.http")
    assert {s.parent.span_id for s in inner if s.parent} == {s.context.span_id for s in ours}
    assert [attrs(s)[A.DECISION] for s in ours] == ["allow"] * 3


def test_a_failing_redaction_hook_records_no_content_and_never_fails_the_call(
    otel: Otel, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    def redact(tool: str, value: Any) -> Any:
        raise RuntimeError(f"cannot redact {value}")

    guard = make_guard(otel, clock, capture_content=True, redact=redact)
    out = guard.run(req("tag_contact", "crm.tag", {"contact_id": CONTACT}), lambda a: CONTACT)
    assert out == CONTACT
    span = only(otel, "execute_tool tag_contact")
    a = attrs(span)
    assert a[A.CONTENT_ERROR] == "RuntimeError"
    assert A.GEN_AI_TOOL_CALL_ARGUMENTS not in a
    assert A.GEN_AI_TOOL_CALL_RESULT not in a
    assert a[A.DECISION] == "allow"  # the rest of the span is intact
    assert CONTACT not in span.to_json()
    assert CONTACT not in caplog.text
    assert "redaction failed" in caplog.text
