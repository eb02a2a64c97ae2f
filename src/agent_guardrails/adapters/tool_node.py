"""A guarded ``ToolNode`` for hand-built ``StateGraph``s.

>>> node = guarded_tool_node([send_email], guard)  # doctest: +SKIP
>>> builder.add_node("tools", node)                  # doctest: +SKIP

The node runs the same pipeline as :class:`~agent_guardrails.middleware.GuardrailsMiddleware`
through ``ToolNode(wrap_tool_call=..., awrap_tool_call=...)``: decisions, reservations,
approvals by interrupt (resume by interrupt id), exactly-once execution and audit. A
kill-switch halt comes back as an error ``ToolMessage`` (route on it in your graph), or
raises ``KillSwitchEngaged`` where the pack says ``kill_switch: {on_halt: raise}``.

Several calls of one AI message run in this node's one task and share its interrupts,
which LangGraph answers by position; they ask through the task's slot log
(:mod:`agent_guardrails.adapters.task_interrupts`), one question per run, so each answer reaches the
call it was asked about. Tools in this node must not call ``interrupt()`` themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.tools import BaseTool
from langgraph.prebuilt import ToolNode

from agent_guardrails.adapters.middleware import GuardrailsMiddleware
from agent_guardrails.pipeline.guardrails import Guardrails

__all__ = ["guarded_tool_node"]


def guarded_tool_node(
    tools: Sequence[BaseTool | Any],
    guardrails: Guardrails,
    *,
    actions: Mapping[str, str] | None = None,
    unmapped: Literal["deny", "allow"] = "deny",
    **tool_node_options: Any,
) -> ToolNode:
    """A ``ToolNode`` whose every call goes through ``guardrails``.

    ``actions`` maps tool names to pack actions (tools decorated with ``@guarded`` need no
    entry); other keyword arguments go to ``ToolNode`` (``name``, ``handle_tool_errors``...).
    """
    middleware = GuardrailsMiddleware(guardrails, actions=actions, unmapped=unmapped)
    middleware.end_on_halt = False  # a hand-built graph routes a halted call itself
    return ToolNode(
        list(tools),
        wrap_tool_call=middleware.wrap_tool_call,
        awrap_tool_call=middleware.awrap_tool_call,
        **tool_node_options,
    )
