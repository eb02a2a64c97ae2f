"""The import path ``agent_guardrails.tool_node``, kept for users: the code is in
:mod:`agent_guardrails.adapters.tool_node`."""

from agent_guardrails.adapters.tool_node import guarded_tool_node

__all__ = ["guarded_tool_node"]
