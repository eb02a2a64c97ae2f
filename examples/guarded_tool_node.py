"""A guarded ToolNode in a hand-built StateGraph (model -> tools -> model).

python examples/guarded_tool_node.py
"""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command
from typing_extensions import TypedDict

from _shared import APPROVER, PACK, ScriptedModel, tool_calls
from agent_guardrails import Guardrails, PolicyPack
from agent_guardrails.tool_node import guarded_tool_node


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


@tool
def send_email(to: list[str], body: str) -> str:
    """Send an email to contacts."""
    return f"sent to {len(to)} contact(s)"


def main() -> list[str]:
    guard = Guardrails(PolicyPack.from_yaml(PACK), store="memory://")
    model = ScriptedModel(
        messages=iter(
            [
                tool_calls(("send_email", {"to": ["c1", "c2"], "body": "News. unsubscribe here"})),
                AIMessage(content="Sent."),
            ]
        )
    )

    def call_model(state: State) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def route(state: State) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

    builder = StateGraph(State)
    builder.add_node("model", call_model)
    builder.add_node(
        "tools", guarded_tool_node([send_email], guard, actions={"send_email": "email.send"})
    )
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", route, ["tools", END])
    builder.add_edge("tools", "model")
    graph: Any = builder.compile(checkpointer=InMemorySaver())

    config: Any = {"configurable": {"thread_id": "tool-node"}}
    first = graph.invoke({"messages": [("user", "Email c1 and c2")]}, config, version="v2")
    (pending,) = first.interrupts
    lines = [f"paused: {pending.value['description']}"]
    resumed: Any = {"configurable": {"thread_id": "tool-node", **APPROVER}}
    done = graph.invoke(Command(resume={pending.id: {"type": "approve"}}), resumed, version="v2")
    lines += [f"{m.type}: {m.content}" for m in done.value["messages"][1:]]
    return lines


if __name__ == "__main__":
    print("\n".join(main()))
