"""What an adapter needs to know about a tool: its action, declared scope and draft.

A tool is bound to one action of the pack. Where that comes from, first match wins: the
adapter's ``actions`` mapping (tool name -> action), the tool's ``@guarded(action=...)``,
``tool.metadata["guardrails_action"]``, the tool's own name when the pack has an action of
that name. A ``@guarded`` tool also declares its scope (``scope=``, which wins over the
run's) and its ``simulate=`` function (the draft at Assist). Every adapter reads tools
through :func:`binding`, so a tool behaves the same on every way in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_guardrails.pipeline.edits import ArgsSchema, schema_of
from agent_guardrails.policy.pack import PolicyPack

__all__ = ["ToolBinding", "binding", "unmapped_action"]


@dataclass(frozen=True, slots=True)
class ToolBinding:
    """A tool's guardrails: ``action`` (``None``: bound to none), the scope it declares, its
    ``simulate`` function and its argument schema."""

    action: str | None
    declared: Mapping[str, str] = field(default_factory=dict)
    simulate: Callable[[Mapping[str, Any]], Any] | None = None
    schema: ArgsSchema | None = None  # reads an approver's edited arguments


def _function(tool: object) -> object:
    return getattr(tool, "func", None) or getattr(tool, "coroutine", None) or tool


def binding(
    name: str, tool: object | None, actions: Mapping[str, str], pack: PolicyPack
) -> ToolBinding:
    """The binding of the tool called ``name`` (``tool``: the tool object, if known)."""
    func = _function(tool) if tool is not None else None
    declared = getattr(func, "__guardrails_scope__", None) or {}
    simulate = getattr(func, "__guardrails_simulate__", None)
    action: object = actions.get(name)
    if action is None:
        action = getattr(func, "__guardrails_action__", None)
    if not isinstance(action, str):
        metadata = getattr(tool, "metadata", None) or {}
        action = metadata.get("guardrails_action")
    if not isinstance(action, str):
        action = name if pack.action(name) is not None else None
    return ToolBinding(action, declared, simulate, schema_of(tool))


def unmapped_action(name: str) -> str:
    """The action name a tool bound to none is decided as (denied: not in the pack)."""
    return f"unmapped.{name.lower()}"
