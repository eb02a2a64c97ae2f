"""Spans of a guard node's batch: decided in the guard node, run in the tools node."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from typing_extensions import TypedDict

from agent_guardrails import Guardrails, PolicyPack
from agent_guardrails.adapters.guard_node import GuardNode
from agent_guardrails.telemetry import attributes as A
from tests.telemetry.conftest import Otel

PACK = """
name: node
version: 3
defaults: {level: execute}
actions:
  crm.tag: {risk: low, cost: 1}
  email.send:
    sensitive: true
    cost: 1
    approval: {roles: [ops]}
    validators:
      - banned_terms: {terms: [guaranteed], fields: [subject]}
budgets:
  - {name: daily, limit: 100, window: day}
"""

OPS: Any = {"configurable": {"thread_id": "n1", "approver": {"id": "ana", "roles": ["ops"]}}}


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def build(guard: Guardrails, runs: list[str], *turns: AIMessage) -> Any:
    @tool
    def tag_contact(contact: str) -> str:
        """Tag a contact."""
        runs.append(f"tag {contact}")
        return "tagged"

    @tool
    def send_email(to: str, subject: str) -> str:
        """Send an email."""
        runs.append(f"send {to}")
        return "sent"

    tools: list[BaseTool] = [tag_contact, send_email]
    script: Iterator[AIMessage] = iter([*turns, AIMessage(content="done")])
    node = GuardNode(guard, actions={"tag_contact": "crm.tag", "send_email": "email.send"})
    builder = StateGraph(State)
    builder.add_node("model", lambda state: {"messages": [next(script)]})
    builder.add_node("guard", node, destinations=("tools", "model", END))
    builder.add_node("tools", node.tool_node(tools))
    builder.add_edge(START, "model")
    builder.add_edge("model", "guard")
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=InMemorySaver())


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def by_call(spans: list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        out.setdefault(str(attrs(span)[A.GEN_AI_TOOL_CALL_ID]), []).append(span)
    return out


def test_a_batch_traces_each_call_once_and_links_answers_to_the_ask(otel: Otel) -> None:
    guard = Guardrails(
        PolicyPack.from_yaml(PACK),
        store="memory://",
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
    )
    runs: list[str] = []
    calls = [
        ("tag_contact", {"contact": "a"}),
        ("send_email", {"to": "b", "subject": "Hi"}),
        ("send_email", {"to": "c", "subject": "Hello"}),
        ("send_email", {"to": "d", "subject": "guaranteed"}),
    ]
    turn = AIMessage(
        content="",
        tool_calls=[{"name": n, "args": a, "id": f"c{i}"} for i, (n, a) in enumerate(calls)],
    )
    graph = build(guard, runs, turn)
    first = graph.invoke({"messages": [("user", "go")]}, OPS, version="v2")
    (pending,) = first.interrupts
    spans = by_call(otel.spans())
    assert sorted(spans) == ["c1", "c2", "c3"]  # c0 is allowed: traced where it runs
    for call_id in ("c1", "c2"):
        (asking,) = spans[call_id]
        assert attrs(asking)[A.DECISION] == "require_approval"
        assert [e.name for e in asking.events] == [A.EVENT_APPROVAL_REQUESTED]
        assert asking.status.status_code is StatusCode.UNSET
    (denied,) = spans["c3"]
    assert attrs(denied)[A.ERROR_TYPE] == "validator_failed"
    assert [e.name for e in denied.events] == [A.EVENT_VALIDATOR]

    answers = {"decisions": [{"type": "approve"}, {"type": "reject", "message": "not now"}]}
    graph.invoke(Command(resume={pending.id: answers}), OPS, version="v2")
    assert sorted(runs) == ["send b", "tag a"]

    spans = by_call(otel.spans())
    asked = {c: spans[c][0] for c in ("c1", "c2")}
    assert [attrs(s)[A.DECISION] for s in spans["c0"]] == ["allow"]
    (_, approved) = spans["c1"]
    (_, rejected) = spans["c2"]
    assert attrs(approved)[A.DECISION] == "allow"
    assert (attrs(approved)[A.APPROVER], attrs(approved)[A.APPROVAL_DECISION]) == ("ana", "approve")
    assert attrs(rejected)[A.ERROR_TYPE] == "approval_rejected"
    assert rejected.status.status_code is StatusCode.ERROR
    for call_id, span in (("c1", approved), ("c2", rejected)):
        (link,) = span.links
        assert link.context.span_id == asked[call_id].context.span_id
        assert [e.name for e in span.events] == [A.EVENT_APPROVAL_RESOLVED]
    requested = sum(
        1 for s in otel.spans() for e in s.events if e.name == A.EVENT_APPROVAL_REQUESTED
    )
    assert requested == 2
    kinds = [r.kind for r in guard.store.audit_records()]
    assert kinds.count("approval.requested") == 2
