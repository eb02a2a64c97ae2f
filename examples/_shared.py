"""What the examples share: a small pack and a scripted tool-calling chat model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

PACK = """
name: examples
version: "1"
defaults: {level: execute}
actions:
  email.send:
    sensitive: true
    cost: {arg: to, per_unit: 0.01}
    validators:
      - required_text: {text: unsubscribe, fields: [body]}
    approval: {roles: [marketing_ops]}
  crm.tag: {risk: low}
budgets:
  - {name: daily, limit: 5, window: day}
"""

APPROVER = {"approver": {"id": "ana", "roles": ["marketing_ops"]}}


class ScriptedModel(GenericFakeChatModel):
    """Plays the agent from a script; binding tools is a no-op."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedModel:
        return self


def tool_calls(*calls: tuple[str, dict[str, Any]]) -> AIMessage:
    return AIMessage(
        content="",
        tool_calls=[{"name": n, "args": a, "id": f"call-{i}"} for i, (n, a) in enumerate(calls)],
    )
