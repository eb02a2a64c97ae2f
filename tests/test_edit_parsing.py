"""An approver's edit read by the tool's argument schema: a chat UI sends a list argument
back as JSON text; it reaches the tool as the list (middleware and a plain ToolNode)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Command

from agent_guardrails import Guardrails, PolicyPack, guarded
from agent_guardrails.middleware import GuardrailsMiddleware

PACK = """
name: edits
version: "1"
defaults: {level: execute}
actions:
  email.send: {sensitive: true, cost: {arg: to, per_unit: 1}}
"""
CALL = {"name": "send_email", "id": "c1", "args": {"to": ["a"], "subject": "Hi"}}
EDIT = {"to": '["a", "b", "c"]', "subject": "Hello"}  # as a chat UI sends a list back
OPS = {"configurable": {"thread_id": "t", "approver": {"id": "ana", "roles": []}}}


class _Model(GenericFakeChatModel):
    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> _Model:
        return self


def _resume(graph: Any) -> list[str]:
    out = graph.invoke(
        {"messages": [("user", "go")]}, {"configurable": {"thread_id": "t"}}, version="v2"
    )
    (pending,) = out.interrupts
    answer: Any = {"type": "edit", "edited_action": {"name": "send_email", "args": EDIT}}
    if "action_requests" in pending.value:  # the middleware's batched question
        answer = {"decisions": [answer]}
    out = graph.invoke(Command(resume={pending.id: answer}), OPS, version="v2")
    return [str(m.content) for m in out.value["messages"] if isinstance(m, ToolMessage)]


@pytest.mark.parametrize(
    "adapter", ["middleware", "middleware per_call", "plain ToolNode + @guarded"]
)
def test_a_json_list_in_an_edit_reaches_the_tool_as_a_list(adapter: str) -> None:
    guard = Guardrails(PolicyPack.from_yaml(PACK), store="memory://")
    seen: list[list[str]] = []

    def send_email(to: list[str], subject: str) -> str:
        """Send an email."""
        seen.append(to)
        return f"sent to {len(to)}"

    model = _Model(messages=iter([AIMessage(content="", tool_calls=[CALL]), AIMessage("ok")]))
    graph: Any
    if adapter.startswith("middleware"):
        mode: Any = "per_call" if adapter.endswith("per_call") else "batched"
        graph = create_agent(
            model,
            [send_email],
            middleware=[
                GuardrailsMiddleware(guard, actions={"send_email": "email.send"}, interrupt=mode)
            ],
            checkpointer=InMemorySaver(),
        )
    else:
        guarded_tool = tool(guarded(action="email.send", guardrails=guard)(send_email))

        def call_model(state: MessagesState) -> dict[str, Any]:
            return {"messages": [model.invoke(state["messages"])]}

        builder = StateGraph(MessagesState)
        builder.add_node("model", call_model)
        builder.add_node("tools", ToolNode([guarded_tool]))
        builder.add_edge(START, "model")
        builder.add_edge("model", "tools")
        graph = builder.compile(checkpointer=InMemorySaver())
    replies = _resume(graph)
    assert seen == [["a", "b", "c"]]
    assert replies == ["sent to 3"]
    assert sum(guard.store.counters("budget:").values()) == 0  # no budget declared
    (record,) = [r for r in guard.store.audit_records() if r.kind == "execution.finished"]
    assert record.data["cost"] == 3.0  # priced by the parsed list: 3 recipients
