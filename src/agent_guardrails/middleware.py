"""The import path ``agent_guardrails.middleware``, kept for users: the code is in
:mod:`agent_guardrails.adapters.middleware`."""

from agent_guardrails.adapters.middleware import GuardrailsMiddleware

__all__ = ["GuardrailsMiddleware"]
