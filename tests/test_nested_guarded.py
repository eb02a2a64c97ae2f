"""A ``@guarded`` function called inside another tool's body is guarded like any call, on
every way in: the adapter that runs the outer tool guards that one tool, not what its body
calls (a low-risk tool must not become a way around a sensitive action's approval)."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.tools import StructuredTool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from typing_extensions import TypedDict

from agent_guardrails import Guardrails, PolicyPack, guarded
from agent_guardrails.guard_node import GuardNode
from agent_guardrails.tool_node import guarded_tool_node
from tests.conftest import pack_text

PACK = pack_text("""
defaults: {level: execute}
actions:
  crm.note: {risk: low}
  email.send: {sensitive: true, approval: {roles: [ops]}}
""")


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


@pytest.mark.parametrize("adapter", ["plain ToolNode", "guarded_tool_node", "GuardNode"])
def test_a_guarded_function_called_by_a_tool_body_asks_for_its_own_approval(adapter: str) -> None:
    guard = Guardrails(PolicyPack.from_yaml(PACK), store="memory://")
    sent: list[str] = []

    @guarded(action="email.send", guardrails=guard)
    def send_email(to: str) -> str:
        sent.append(to)
        return "sent"

    def note_contact(contact: str) -> str:
        """Note a contact, and email them as a helper."""
        return f"noted; {send_email(contact)}"

    fn = guarded(action="crm.note", guardrails=guard)(note_contact)
    tool = StructuredTool.from_function(fn, name="note_contact", description="Note.")
    builder = StateGraph(State)
    if adapter == "GuardNode":
        node = GuardNode(guard, model_node="model")

        def model(state: State) -> dict[str, Any]:
            return {"messages": [AIMessage(content="done")]}

        builder.add_node("guard", node, destinations=("tools", "model", END))
        builder.add_node("tools", node.tool_node([tool]))
        builder.add_node("model", model)
        builder.add_edge(START, "guard")
        builder.add_edge("tools", END)
        builder.add_edge("model", END)
    else:
        tools = (
            ToolNode([tool]) if adapter == "plain ToolNode" else guarded_tool_node([tool], guard)
        )
        builder.add_node("tools", tools)
        builder.add_edge(START, "tools")
        builder.add_edge("tools", END)
    graph = builder.compile(checkpointer=InMemorySaver())
    call = {"name": "note_contact", "args": {"contact": "c1"}, "id": "k1"}
    out = graph.invoke(
        {"messages": [AIMessage(content="", tool_calls=[call])]},
        {"configurable": {"thread_id": "t"}},
        version="v2",
    )
    (pending,) = out.interrupts  # the nested email waits for a human
    assert pending.value["name"] == "send_email"
    assert sent == []
    decided = [r.data["action"] for r in guard.store.audit_records() if r.kind == "decision"]
    assert "email.send" in decided
