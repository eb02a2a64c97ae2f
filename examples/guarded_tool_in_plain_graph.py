"""A @guarded tool run by LangGraph's plain ToolNode: no middleware, same guardrails.

The tool pauses for approval through interrupt() and runs once after the resume.

    python examples/guarded_tool_in_plain_graph.py
"""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.messages import AnyMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.types import Command
from typing_extensions import TypedDict

from _shared import APPROVER, PACK, tool_calls
from agent_guardrails import Guardrails, PolicyPack, guarded, set_default_guardrails


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


@tool
@guarded(action="email.send")
def send_email(to: list[str], body: str) -> str:
    """Send an email to contacts."""
    return f"sent to {len(to)} contact(s)"


def main() -> list[str]:
    set_default_guardrails(Guardrails(PolicyPack.from_yaml(PACK), store="memory://"))
    builder = StateGraph(State)
    builder.add_node("tools", ToolNode([send_email]))
    builder.add_edge(START, "tools")
    builder.add_edge("tools", END)
    graph: Any = builder.compile(checkpointer=InMemorySaver())

    config: Any = {"configurable": {"thread_id": "plain"}}
    start = {"messages": [tool_calls(("send_email", {"to": ["c1"], "body": "Hi, unsubscribe: x"}))]}
    first = graph.invoke(start, config, version="v2")
    (pending,) = first.interrupts
    lines = [
        f"paused: {pending.value['name']} ({', '.join(pending.value['guardrails']['reasons'])})"
    ]
    resumed: Any = {"configurable": {"thread_id": "plain", **APPROVER}}
    done = graph.invoke(Command(resume={pending.id: {"type": "approve"}}), resumed, version="v2")
    lines.append(f"tool: {done.value['messages'][-1].content}")
    set_default_guardrails(None)
    return lines


if __name__ == "__main__":
    print("\n".join(main()))
