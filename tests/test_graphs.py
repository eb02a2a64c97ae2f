"""Hand-built StateGraphs: a guarded ToolNode, and @guarded tools run by a plain ToolNode."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import pytest
from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.types import Command
from typing_extensions import TypedDict

from agent_guardrails import Guardrails, PolicyPack, guarded
from agent_guardrails.tool_node import guarded_tool_node

PACK = """
name: graphs
version: 1
defaults: {level: execute}
actions:
  email.send: {sensitive: true, cost: 2, approval: {roles: [ops]}}
  crm.tag: {risk: low}
budgets:
  - {limit: 10, window: day}
"""


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def graph(tools_node: Any) -> Any:
    """START -> tools -> END: the state arrives holding the model's AI message."""
    builder = StateGraph(State)
    builder.add_node("tools", tools_node)
    builder.add_edge(START, "tools")
    builder.add_edge("tools", END)
    return builder.compile(checkpointer=InMemorySaver())


def ai(*calls: tuple[str, dict[str, Any], str]) -> dict[str, Any]:
    return {
        "messages": [
            AIMessage(content="", tool_calls=[{"name": n, "args": a, "id": i} for n, a, i in calls])
        ]
    }


CFG: Any = {"configurable": {"thread_id": "g1"}}
OPS: Any = {"configurable": {"thread_id": "g1", "approver": {"id": "ana", "roles": ["ops"]}}}


@pytest.fixture
def guard() -> Guardrails:
    return Guardrails(PolicyPack.from_yaml(PACK), store="memory://")


def results(out: Any) -> dict[str, ToolMessage]:
    return {m.tool_call_id: m for m in out.value["messages"] if isinstance(m, ToolMessage)}


def test_guarded_tool_node_pauses_and_resumes_once(guard: Guardrails) -> None:
    runs: list[str] = []

    @tool
    def send_email(to: str) -> str:
        """Send."""
        runs.append(to)
        return f"sent {to}"

    g = graph(guarded_tool_node([send_email], guard, actions={"send_email": "email.send"}))
    first = g.invoke(ai(("send_email", {"to": "c1"}, "k1")), CFG, version="v2")
    (pending,) = first.interrupts
    assert pending.value["guardrails"]["action"] == "email.send"
    assert runs == []
    out = g.invoke(Command(resume={pending.id: {"type": "approve"}}), OPS, version="v2")
    assert results(out)["k1"].content == "sent c1"
    assert runs == ["c1"]
    assert sum(guard.store.counters("budget:").values()) == 2


@pytest.mark.parametrize("over_tool", [True, False], ids=["guarded-over-tool", "tool-over-guarded"])
def test_guarded_tool_in_a_plain_tool_node_interrupts_and_runs_once(
    guard: Guardrails, over_tool: bool
) -> None:
    runs: list[str] = []

    def send_email(to: str) -> str:
        """Send."""
        runs.append(to)
        return f"sent {to}"

    the_tool: BaseTool = (
        guarded(action="email.send", guardrails=guard)(tool(send_email))
        if over_tool
        else tool(guarded(action="email.send", guardrails=guard)(send_email))
    )
    g = graph(ToolNode([the_tool]))
    first = g.invoke(ai(("send_email", {"to": "c1"}, "k1")), CFG, version="v2")
    (pending,) = first.interrupts
    assert pending.value["type"] == "tool_approval"
    assert pending.value["name"] == "send_email"
    out = g.invoke(Command(resume={pending.id: {"type": "approve"}}), OPS, version="v2")
    assert results(out)["k1"].content == "sent c1"
    assert runs == ["c1"]
    assert [r.kind for r in guard.store.audit_records()].count("decision") == 1
    assert sum(guard.store.counters("budget:").values()) == 2


def test_async_guarded_tool_in_a_plain_tool_node(guard: Guardrails) -> None:
    runs: list[str] = []

    @tool
    @guarded(action="email.send", guardrails=guard)
    async def send_email(to: str) -> str:
        """Send."""
        runs.append(to)
        return f"sent {to}"

    async def scenario() -> None:
        g = graph(ToolNode([send_email]))
        first = await g.ainvoke(ai(("send_email", {"to": "c1"}, "k1")), CFG, version="v2")
        (pending,) = first.interrupts
        out = await g.ainvoke(Command(resume={pending.id: {"type": "reject"}}), OPS, version="v2")
        body = json.loads(str(results(out)["k1"].content))
        assert body["status"] == "rejected"

    asyncio.run(scenario())
    assert runs == []
    assert sum(guard.store.counters("budget:").values()) == 0


def test_refusal_status_plain_tool_node_vs_guarded_tool_node() -> None:
    """The README's caveat: LangChain marks a tool's return value ``success``, so a refusal
    by a ``@guarded`` tool in a plain ``ToolNode`` carries that status; the guarded ToolNode
    builds the message itself and marks it ``error``. Both carry the same JSON result."""
    pack = PACK.replace("  crm.tag:", "  crm.big: {risk: low, cost: 11}\n  crm.tag:")
    guard = Guardrails(PolicyPack.from_yaml(pack), store="memory://")

    @tool
    def big_tag(contact: str) -> str:
        """Tag at a cost the day's budget (10) cannot hold."""
        raise AssertionError("a refused call never runs")

    plain = graph(ToolNode([guarded(action="crm.big", guardrails=guard)(big_tag)]))
    ours = graph(guarded_tool_node([big_tag], guard, actions={"big_tag": "crm.big"}))
    call = ("big_tag", {"contact": "c1"}, "k1")
    answers = [
        results(g.invoke(ai(call), {"configurable": {"thread_id": t}}, version="v2"))["k1"]
        for g, t in ((plain, "p"), (ours, "n"))
    ]
    plain_msg, node_msg = answers
    for message in (plain_msg, node_msg):
        body = json.loads(str(message.content))
        assert (body["status"], body["reasons"]) == ("denied", ["budget_exceeded"])
    assert plain_msg.status == "success"
    assert node_msg.status == "error"
    assert guard.store.counters("budget:") == {}


@pytest.mark.xfail(
    strict=True,
    reason="known bug: several calls of one ToolNode task that each need approval share the "
    "task's interrupts, which LangGraph answers by position; a call replayed from the store "
    "does not take its answer again, so a later answer reaches the wrong call. Put a GuardNode "
    "before the tools until it is fixed (see the README)",
)
@pytest.mark.parametrize("adapter", ["guarded_tool_node", "plain ToolNode + @guarded"])
def test_two_approvals_in_one_tool_node_task_reach_their_own_calls(adapter: str) -> None:
    guard = Guardrails(PolicyPack.from_yaml(PACK), store="memory://")
    runs: list[str] = []

    def send_email(to: str) -> str:
        """Send."""
        runs.append(to)
        return f"sent {to}"

    node = (
        guarded_tool_node([tool(send_email)], guard, actions={"send_email": "email.send"})
        if adapter == "guarded_tool_node"
        else ToolNode([tool(guarded(action="email.send", guardrails=guard)(send_email))])
    )
    g = graph(node)
    two = ai(("send_email", {"to": "c1"}, "k1"), ("send_email", {"to": "c2"}, "k2"))
    out = g.invoke(two, CFG, version="v2")
    rejected = []
    for answer in ({"type": "approve"}, {"type": "reject", "message": "no"}):
        (pending,) = out.interrupts
        if answer["type"] == "reject":
            rejected.append(pending.value["args"]["to"])
        out = g.invoke(Command(resume={pending.id: answer}), OPS, version="v2")
    assert not out.interrupts
    assert len(runs) == 1
    assert rejected[0] not in runs
