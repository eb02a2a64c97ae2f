"""One step of an agent run in its own process: start, resume, or resume-and-crash.

    python -m tests.agent_process.run PHASE WORKDIR [INTERRUPT_ID]

The agent uses a SqliteSaver checkpoint and the SQLite store, both under WORKDIR, so a
later process continues what an earlier one began. The tool appends a line to
WORKDIR/runs.txt each time its body starts; in the ``crash`` phase it then kills its own
process with SIGKILL, mid-call. Each phase writes its spans to WORKDIR/trace-PHASE.json.
LangGraph's ``durability`` comes from ``$AG_TEST_DURABILITY`` (default: LangGraph's own):
with ``exit`` nothing of a run is checkpointed before it ends, so a run killed mid-call
leaves only what was saved before it began.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from agent_guardrails import Guardrails, PolicyPack
from agent_guardrails.adapters.middleware import GuardrailsMiddleware
from agent_guardrails.telemetry import configure_telemetry
from tests.test_middleware import ScriptedModel

DURABLE: Any = (
    {"durability": os.environ["AG_TEST_DURABILITY"]} if os.environ.get("AG_TEST_DURABILITY") else {}
)
PACK = """
name: proc
version: 1
defaults: {level: execute}
actions:
  email.send: {sensitive: true, cost: 5, approval: {roles: [ops]}}
budgets:
  - {name: daily, limit: 100, window: day}
"""


def main(phase: str, workdir: Path, interrupt_id: str | None) -> None:
    runs = workdir / "runs.txt"

    @tool
    def send_email(to: str) -> str:
        """Send an email."""
        with runs.open("a") as fh:
            fh.write(f"{to}\n")
        if phase == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        return f"sent to {to}"

    telemetry = configure_telemetry("proc", trace_file=workdir / f"trace-{phase}.json")
    guard = Guardrails(
        PolicyPack.from_yaml(PACK),
        store=f"sqlite:///{workdir / 'guard.db'}",
        tracer_provider=telemetry.tracer_provider,
    )
    # Each process continues the conversation: only the first one asks for the tool.
    script = [AIMessage(content="done")]
    if phase == "start":
        call = {"name": "send_email", "args": {"to": "c1"}, "id": "t1"}
        script.insert(0, AIMessage(content="", tool_calls=[call]))
    model = ScriptedModel(messages=iter(script))
    with SqliteSaver.from_conn_string(str(workdir / "checkpoints.db")) as saver:
        agent: Any = create_agent(
            model,
            [send_email],
            middleware=[GuardrailsMiddleware(guard, actions={"send_email": "email.send"})],
            checkpointer=saver,
        )
        config: Any = {
            "configurable": {"thread_id": "th", "approver": {"id": "ana", "roles": ["ops"]}}
        }
        if phase == "start":
            out = agent.invoke(
                {"messages": [("user", "email c1")]}, config, version="v2", **DURABLE
            )
        elif phase == "continue":
            out = agent.invoke(None, config, version="v2", **DURABLE)
        else:
            # Answered by the pending question's dialect: the turn's batched HITLRequest,
            # or a per-call ToolApprovalRequest (a call found in doubt is asked per call).
            (pending,) = [i for i in agent.get_state(config).interrupts if i.id == interrupt_id]
            answer: Any = {"type": "approve"}
            if "action_requests" in pending.value:
                answer = {"decisions": [answer] * len(pending.value["action_requests"])}
            out = agent.invoke(
                Command(resume={interrupt_id: answer}), config, version="v2", **DURABLE
            )
        print(
            json.dumps(
                {
                    "interrupts": [
                        {"id": i.id, "reasons": _reasons(i.value)} for i in out.interrupts
                    ],
                    "last": str(out.value["messages"][-1].content),
                }
            )
        )
    telemetry.shutdown()


def _reasons(value: Any) -> list[str]:
    details = value["guardrails"]
    if isinstance(details, list):  # batched: one entry per action
        return [r for d in details for r in d["reasons"]]
    return list(details["reasons"])


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
