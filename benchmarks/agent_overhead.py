"""Time per tool call of a ``create_agent`` agent, with and without guardrails, in one run.

    python benchmarks/agent_overhead.py [--quick]

Configurations, each sync and async:
- the bare agent (no middleware): the baseline;
- LangChain's ``HumanInTheLoopMiddleware`` + ``ToolCallLimitMiddleware``, configured not to
  interrupt or stop;
- ``GuardrailsMiddleware`` on the SQLite store, tracing off (no OpenTelemetry configured);
- the same with tracing on: an SDK ``TracerProvider`` with a ``BatchSpanProcessor`` (its
  exporter drops the batches, so the network is not measured).

A scripted model asks for one tool call per turn, ``TURNS`` turns per run; the time per tool
call is the run's time divided by ``TURNS``. Results are ratios to the bare agent.
Goal: ours adds less than LangChain's two built-ins together and stays under 1.3x the bare
agent on the sync path.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware, ToolCallLimitMiddleware
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from agent_guardrails import Guardrails, PolicyPack
from agent_guardrails.middleware import GuardrailsMiddleware

TURNS = 20

PACK = """
name: bench
version: 1
defaults: {level: execute}
actions:
  crm.tag: {risk: low, cost: 0.001}
budgets:
  - {name: daily, limit: 1.0e12, window: day}
"""


class ScriptedModel(GenericFakeChatModel):
    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedModel:
        return self


@tool
def tag_contact(contact: str) -> str:
    """Tag a contact."""
    return contact


def script() -> ScriptedModel:
    turns = [
        AIMessage(
            content="",
            tool_calls=[{"name": "tag_contact", "args": {"contact": f"c{i}"}, "id": f"t{i}"}],
        )
        for i in range(TURNS)
    ]
    return ScriptedModel(messages=iter([*turns, AIMessage(content="done")]))


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def builders(db: Path) -> dict[str, Callable[[], list[Any]]]:
    pack = PolicyPack.from_yaml(PACK)
    guard = Guardrails(pack, store=f"sqlite:///{db}")
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Drop()))
    traced = Guardrails(pack, store=f"sqlite:///{db}", tracer_provider=provider)
    return {
        "bare agent": lambda: [],
        "LangChain HITL + ToolCallLimit": lambda: [
            HumanInTheLoopMiddleware(interrupt_on={"tag_contact": False}),
            ToolCallLimitMiddleware(run_limit=10_000),
        ],
        "GuardrailsMiddleware (SQLite)": lambda: [
            GuardrailsMiddleware(guard, actions={"tag_contact": "crm.tag"})
        ],
        "GuardrailsMiddleware, tracing on": lambda: [
            GuardrailsMiddleware(traced, actions={"tag_contact": "crm.tag"})
        ],
    }


def per_call(middleware: Callable[[], list[Any]], runs: int, *, use_async: bool) -> float:
    """Best seconds per tool call over ``runs`` agent runs."""
    best = float("inf")
    for _ in range(runs):
        agent: Any = create_agent(script(), [tag_contact], middleware=middleware())
        request = {"messages": [("user", "tag everyone")]}
        start = time.perf_counter()
        if use_async:
            asyncio.run(agent.ainvoke(request))
        else:
            agent.invoke(request)
        best = min(best, (time.perf_counter() - start) / TURNS)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    runs = 3 if args.quick else 10
    with tempfile.TemporaryDirectory() as tmp:
        configs = builders(Path(tmp) / "bench.db")
        for use_async in (False, True):
            mode = "async" if use_async else "sync"
            times = {
                name: per_call(build, runs, use_async=use_async) for name, build in configs.items()
            }
            base = times["bare agent"]
            print(f"\n{mode}: time per tool call (best of {runs} runs of {TURNS} calls)")
            print(f"{'configuration':<34}{'per call':>12}{'ratio':>9}{'added':>12}")
            for name, t in times.items():
                print(f"{name:<34}{t * 1e3:>10.3f}ms{t / base:>8.2f}x{(t - base) * 1e6:>10.0f}us")
            ours = times["GuardrailsMiddleware (SQLite)"] - base
            theirs = times["LangChain HITL + ToolCallLimit"] - base
            verdict = (
                "met"
                if ours < theirs
                and (use_async or times["GuardrailsMiddleware (SQLite)"] / base < 1.3)
                else "NOT met"
            )
            print(f"goal ({'< built-ins' if use_async else '< built-ins and < 1.3x'}): {verdict}")


if __name__ == "__main__":
    main()
