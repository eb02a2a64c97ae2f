"""One step of a hand-built graph whose tools node runs three guarded calls in one task,
in its own process: start, or answer the pending question.

    python -m tests.agent_process.tool_node_run ADAPTER WORKDIR [INTERRUPT_ID VERDICT]

ADAPTER is ``guarded_tool_node`` or ``plain`` (``@guarded`` tools under a plain
``ToolNode``). The graph uses a SqliteSaver checkpoint and the SQLite store under WORKDIR,
so each process continues what the one before left. The tool appends a line to
WORKDIR/runs.txt each time its body runs. Prints the pending question (interrupt id and
the address it is about) and the tool messages so far, as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.types import Command
from typing_extensions import TypedDict

from agent_guardrails import Guardrails, PolicyPack, guarded
from agent_guardrails.adapters.tool_node import guarded_tool_node
from tests.agent_process.run import PACK  # the same pack as the middleware's process test


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def main(adapter: str, workdir: Path, interrupt_id: str | None, verdict: str | None) -> None:
    runs = workdir / "runs.txt"
    guard = Guardrails(PolicyPack.from_yaml(PACK), store=f"sqlite:///{workdir / 'guard.db'}")

    def send_email(to: str) -> str:
        """Send an email."""
        with runs.open("a") as fh:
            fh.write(f"{to}\n")
        return f"sent to {to}"

    node = (
        guarded_tool_node([tool(send_email)], guard, actions={"send_email": "email.send"})
        if adapter == "guarded_tool_node"
        else ToolNode([tool(guarded(action="email.send", guardrails=guard)(send_email))])
    )
    builder = StateGraph(State)
    builder.add_node("tools", node)
    builder.add_edge(START, "tools")
    builder.add_edge("tools", END)
    with SqliteSaver.from_conn_string(str(workdir / "checkpoints.db")) as saver:
        graph: Any = builder.compile(checkpointer=saver)
        config: Any = {
            "configurable": {"thread_id": "th", "approver": {"id": "ana", "roles": ["ops"]}}
        }
        if interrupt_id is None:
            calls = [
                {"name": "send_email", "args": {"to": to}, "id": f"k-{to}"}
                for to in ("c1", "c2", "c3")
            ]
            first = {"messages": [AIMessage(content="", tool_calls=calls)]}
            out = graph.invoke(first, config, version="v2")
        else:
            answer = (
                {"type": verdict, "message": "no"} if verdict == "reject" else {"type": verdict}
            )
            out = graph.invoke(Command(resume={interrupt_id: answer}), config, version="v2")
        print(
            json.dumps(
                {
                    "interrupts": [
                        {"id": i.id, "to": i.value["args"]["to"]} for i in out.interrupts
                    ],
                    "replies": {
                        m.tool_call_id: str(m.content)
                        for m in out.value["messages"]
                        if isinstance(m, ToolMessage)
                    },
                }
            )
        )


if __name__ == "__main__":
    answer = sys.argv[3:5] if len(sys.argv) >= 5 else [None, None]
    main(sys.argv[1], Path(sys.argv[2]), answer[0], answer[1])
