"""A guard node between the model and the tools: the model's calls are decided as a batch,
with one approval interrupt for the batch.

    python examples/guard_node.py
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

from _shared import APPROVER, PACK, tool_calls
from agent_guardrails import Guardrails, PolicyPack
from agent_guardrails.guard_node import GuardNode


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


@tool
def send_email(to: list[str], body: str) -> str:
    """Send an email to contacts."""
    return f"sent to {len(to)} contact(s)"


@tool
def tag_contact(contact: str, tag: str) -> str:
    """Tag a contact in the CRM."""
    return f"tagged {contact} {tag}"


def main() -> list[str]:
    guard = Guardrails(PolicyPack.from_yaml(PACK), store="memory://")
    script = iter(
        [
            tool_calls(
                ("tag_contact", {"contact": "c1", "tag": "vip"}),
                ("send_email", {"to": ["c1"], "body": "Hi! unsubscribe: link"}),
                ("send_email", {"to": ["c2"], "body": "no opt-out link"}),
            ),
            AIMessage(content="Done."),
        ]
    )

    def model(state: State) -> dict[str, Any]:
        return {"messages": [next(script)]}

    node = GuardNode(guard, actions={"send_email": "email.send", "tag_contact": "crm.tag"})
    builder = StateGraph(State)
    builder.add_node("model", model)
    builder.add_node("guard", node, destinations=("tools", "model", END))
    builder.add_node("tools", node.tool_node([send_email, tag_contact]))
    builder.add_edge(START, "model")
    builder.add_edge("model", "guard")
    builder.add_edge("tools", "model")
    graph: Any = builder.compile(checkpointer=InMemorySaver())

    config: Any = {"configurable": {"thread_id": "guard-node"}}
    first = graph.invoke({"messages": [("user", "Onboard c1 and c2")]}, config, version="v2")
    (pending,) = first.interrupts
    names = [a["name"] for a in pending.value["action_requests"]]
    lines = [f"one interrupt for the batch: {names}"]
    resumed: Any = {"configurable": {"thread_id": "guard-node", **APPROVER}}
    done = graph.invoke(
        Command(resume={"decisions": [{"type": "approve"}] * len(names)}), resumed, version="v2"
    )
    lines += [f"{m.type}: {m.content}" for m in done.value["messages"][1:]]
    return lines


if __name__ == "__main__":
    print("\n".join(main()))
