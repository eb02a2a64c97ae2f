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

__all__ = ["Bindings", "ToolBinding", "binding", "unmapped_action"]


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


class Bindings:
    """An adapter's :func:`binding` of each tool, worked out once per tool object and pack
    (every model turn stamps its calls and every call is decided by its tool's binding; a
    live pack change or a new tool object works it out again). ``actions`` is the adapter's
    mapping, copied: it is fixed when the adapter is made.

    >>> pack = PolicyPack.from_dict({"name": "p", "version": 1, "actions": {"crm.tag": {}}})
    >>> bindings = Bindings({"tag": "crm.tag"})
    >>> bindings.of("tag", None, pack).action
    'crm.tag'
    >>> bindings.of("tag", None, pack) is bindings.of("tag", None, pack)
    True
    """

    __slots__ = ("_seen", "actions")

    LIMIT = 1024  # names kept (a model may call tools that do not exist)

    def __init__(self, actions: Mapping[str, str] | None = None) -> None:
        self.actions: Mapping[str, str] = dict(actions or {})
        self._seen: dict[str, tuple[object | None, PolicyPack, ToolBinding]] = {}

    def of(self, name: str, tool: object | None, pack: PolicyPack) -> ToolBinding:
        """The binding of the tool called ``name`` (``tool``: the tool object, if known)
        under ``pack``."""
        seen = self._seen.get(name)
        if seen is not None and seen[0] is tool and seen[1] is pack:
            return seen[2]
        bound = binding(name, tool, self.actions, pack)
        if seen is not None or len(self._seen) < self.LIMIT:
            self._seen[name] = (tool, pack, bound)
        return bound


def unmapped_action(name: str) -> str:
    """The action name a tool bound to none is decided as (denied: not in the pack)."""
    return f"unmapped.{name.lower()}"
