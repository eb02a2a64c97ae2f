"""The public API's types, checked by mypy (``make test`` runs it over the tests) and run by
pytest: ``assert_type`` fails the type check when a signature says something else."""

from __future__ import annotations

import asyncio
from typing import assert_type

from langchain_core.tools import BaseTool, tool

from agent_guardrails import GuardrailResult, Guardrails, PolicyPack, guarded, is_result

PACK = "name: t\nversion: 1\ndefaults: {level: assist}\nactions:\n  email.send: {risk: low}\n"


def test_a_guarded_function_returns_its_result_or_a_guardrail_result() -> None:
    guard = Guardrails(PolicyPack.from_yaml(PACK), store="memory://")

    @guarded(action="email.send", guardrails=guard)
    def send(to: str) -> str:
        return to

    result = send("a")
    assert_type(result, str | GuardrailResult)
    assert is_result(result)  # Assist: a draft, not the body's str
    assert result["status"] == "simulated"


def test_a_guarded_coroutine_function_keeps_its_parameters_and_awaits_to_either() -> None:
    guard = Guardrails(PolicyPack.from_yaml(PACK), store="memory://")

    @guarded(action="email.send", guardrails=guard)
    async def send(to: str, *, subject: str = "") -> str:
        return to + subject

    result = asyncio.run(send("a", subject="b"))
    assert_type(result, str | GuardrailResult)
    assert is_result(result)


def test_a_guarded_langchain_tool_stays_a_tool() -> None:
    guard = Guardrails(PolicyPack.from_yaml(PACK), store="memory://")

    @tool
    def send(to: str) -> str:
        """Send."""
        return to

    wrapped = guarded(action="email.send", guardrails=guard)(send)
    assert_type(wrapped, BaseTool)
    assert wrapped.name == "send"
