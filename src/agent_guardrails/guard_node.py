"""The import path ``agent_guardrails.guard_node``, kept for users: the code is in
:mod:`agent_guardrails.adapters.guard_node`."""

from agent_guardrails.adapters.guard_node import GuardNode

__all__ = ["GuardNode"]
