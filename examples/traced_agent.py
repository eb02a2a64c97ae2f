"""Traces of a guarded agent: configure OpenTelemetry once, hand the provider to Guardrails.

python examples/traced_agent.py            # writes traced-agent.json, prints it as a tree
OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 python examples/traced_agent.py  # to Jaeger

Needs the ``otel`` extra (``pip install 'agent-guardrails[otel]'``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from _shared import APPROVER, PACK, ScriptedModel, tool_calls
from agent_guardrails import Guardrails, PolicyPack
from agent_guardrails.middleware import GuardrailsMiddleware
from agent_guardrails.ops.traces import render_traces
from agent_guardrails.telemetry import configure_telemetry
from agent_guardrails.telemetry.jaeger_file import read_trace_file


@tool
def send_email(to: list[str], body: str) -> str:
    """Send an email to contacts."""
    return f"sent to {len(to)} contact(s)"


def main(trace_file: Path | None = None) -> list[str]:
    trace_file = trace_file or Path(tempfile.mkdtemp()) / "traced-agent.json"
    # With OTEL_EXPORTER_OTLP_ENDPOINT set, spans go there; else to the Jaeger file.
    telemetry = configure_telemetry("traced-agent-example", trace_file=trace_file)
    guard = Guardrails(
        PolicyPack.from_yaml(PACK),
        store="memory://",
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    model = ScriptedModel(
        messages=iter(
            [
                tool_calls(("send_email", {"to": ["c1"], "body": "Hi! unsubscribe: link"})),
                AIMessage(content="Sent."),
            ]
        )
    )
    agent: Any = create_agent(
        model,
        [send_email],
        middleware=[GuardrailsMiddleware(guard, actions={"send_email": "email.send"})],
        checkpointer=InMemorySaver(),
    )
    config: Any = {"configurable": {"thread_id": "traced"}}
    first = agent.invoke({"messages": [("user", "Welcome c1")]}, config, version="v2")
    answers = {
        i.id: {"decisions": [{"type": "approve"} for _ in i.value["action_requests"]]}
        for i in first.interrupts
    }
    resumed: Any = {"configurable": {"thread_id": "traced", **APPROVER}}
    agent.invoke(Command(resume=answers), resumed, version="v2")
    telemetry.shutdown()  # flush the batch processor before reading or exiting
    if telemetry.trace_file is None:
        return [f"spans sent to {telemetry.destination}"]
    return render_traces(read_trace_file(telemetry.trace_file))


if __name__ == "__main__":
    print("\n".join(main(Path("traced-agent.json"))))
