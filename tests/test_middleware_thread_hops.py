"""GuardrailsMiddleware's async hooks add no worker-thread hops to an async agent.

``create_agent`` wraps every ``wrap_*`` hook in LangSmith's ``traceable``, whose wrapper for an
``async def`` starts and ends its run on a worker thread. Our async hooks are plain functions
that return a coroutine, so the wrapper runs inline: an async agent with the middleware hands
work to the executor exactly as often as the same agent without it (its sync model and sync
tool run there). A hop costs more than the whole guarded call (benchmarks/agent_overhead.py).
With LangSmith tracing on, the hooks still run, once per call, and are traced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langsmith import Client
from langsmith.run_helpers import tracing_context

from agent_guardrails import Guardrails, PolicyPack
from agent_guardrails.adapters.middleware import GuardrailsMiddleware
from tests.test_middleware import ScriptedModel

PACK = """
name: hops
version: 1
defaults: {level: execute}
actions:
  crm.tag: {risk: low, cost: 1}
budgets:
  - {name: daily, limit: 1000, window: day}
model_prices:
  ScriptedModel: {input_per_1k: 1, output_per_1k: 1}
"""
TURNS = 3


@tool
def tag_contact(contact: str) -> str:
    """Tag a contact."""
    return contact


class AsyncDefHooks(AgentMiddleware):
    """Pass-through hooks written as ``async def``: the case the test tells ours apart from."""

    async def awrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        return await handler(request)

    async def awrap_model_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        return await handler(request)


def three_calls(middleware: list[Any], usage: dict[str, int] | None = None) -> Any:
    """An agent whose model asks for ``TURNS`` tool calls, one per turn, then says "done"."""
    turns = [
        AIMessage(
            content="",
            tool_calls=[{"name": "tag_contact", "args": {"contact": f"c{i}"}, "id": f"t{i}"}],
            usage_metadata=usage,
        )
        for i in range(TURNS)
    ]
    model = ScriptedModel(messages=iter([*turns, AIMessage(content="done")]))
    return create_agent(model, [tag_contact], middleware=middleware)


def executor_hops(middleware: list[Any], monkeypatch: pytest.MonkeyPatch) -> int:
    """How many times one async run of a 3-tool-call agent hands work to the executor."""
    hops = 0
    real = asyncio.BaseEventLoop.run_in_executor

    def counting(self: asyncio.BaseEventLoop, *args: Any) -> Any:
        nonlocal hops
        hops += 1
        return real(self, *args)

    usage = {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
    agent = three_calls(middleware, usage)  # priced, so the model hook charges the budget
    with monkeypatch.context() as patch:
        patch.setattr(asyncio.BaseEventLoop, "run_in_executor", counting)
        result = asyncio.run(agent.ainvoke({"messages": [("user", "tag")]}))
    assert result["messages"][-1].content == "done"
    return hops


def test_the_async_hooks_add_no_executor_hops(monkeypatch: pytest.MonkeyPatch) -> None:
    guard = Guardrails(PolicyPack.from_yaml(PACK), store="memory://")
    bare = executor_hops([], monkeypatch)
    middleware = GuardrailsMiddleware(guard, actions={"tag_contact": "crm.tag"})
    ours = executor_hops([middleware], monkeypatch)
    async_def = executor_hops([AsyncDefHooks()], monkeypatch)
    assert bare >= 2 * TURNS  # the sync model and the sync tool each run on the executor
    assert ours == bare
    assert async_def > bare  # the count does see traceable's hops
    # ... and the guarded calls did run: 3 tool calls and 4 priced model calls charged.
    assert len([r for r in guard.store.audit_records() if r.kind == "execution.finished"]) == 3
    assert sum(guard.store.counters("budget:").values()) > TURNS


class CapturingClient(Client):
    """A LangSmith client that keeps the runs it is given instead of sending them."""

    def __init__(self) -> None:
        super().__init__(api_url="http://127.0.0.1:9", api_key="test", auto_batch_tracing=False)
        self.names: list[str] = []

    def create_run(self, name: str, inputs: dict[str, Any], run_type: Any, **kw: Any) -> None:
        self.names.append(name)

    def update_run(self, run_id: Any, **kw: Any) -> None:
        pass


def test_the_async_hooks_work_with_langsmith_tracing_on() -> None:
    guard = Guardrails(PolicyPack.from_yaml(PACK), store="memory://")
    agent = three_calls([GuardrailsMiddleware(guard, actions={"tag_contact": "crm.tag"})])
    client = CapturingClient()

    async def traced() -> Any:
        with tracing_context(enabled=True, client=client, project_name="test"):
            return await agent.ainvoke({"messages": [("user", "tag")]})

    result = asyncio.run(traced())
    assert result["messages"][-1].content == "done"
    assert len([r for r in guard.store.audit_records() if r.kind == "execution.finished"]) == 3
    assert client.names.count("GuardrailsMiddleware.awrap_tool_call") == TURNS
    assert client.names.count("tag_contact") == TURNS
