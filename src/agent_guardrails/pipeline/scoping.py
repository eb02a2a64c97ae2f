"""Where a call happens: the one scope resolver every adapter uses.

A call's scope has five dimensions (``agent``, ``workflow``, ``segment``, ``channel``,
``region``). Their values come from four sources; a later one wins:

1. the ``Guardrails(scope=...)`` defaults;
2. the call's arguments (a tool taking a ``channel`` or ``region`` parameter; where the
   tool's argument schema is known, only the parameters it declares);
3. the run's context: what the adapter read from the LangGraph run (``configurable`` and
   ``runtime.context``, see :func:`agent_guardrails.adapters.graph.run_scope`), then the
   values of an enclosing ``with guard.scope(...):``;
4. the tool's own declaration, ``@guarded(scope=...)``, which always wins.

:class:`ScopeSources` keeps 3 and 4 with the call, so an approver's edit of the arguments is
re-scoped the same way (an edit that changes ``region`` is decided under the new region's
level, kill-switch and budgets).

>>> resolver = ScopeResolver({"agent": "bot"})
>>> resolver.resolve(ScopeSources({"workflow": "news"}, {}), {"region": "eu"}).key
'agent=bot,region=eu,workflow=news'
"""

from __future__ import annotations

import contextvars
from collections.abc import Container, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from agent_guardrails.errors import ConfigurationError
from agent_guardrails.policy.scope import DIMENSIONS, Scope

__all__ = ["NO_SOURCES", "ScopeResolver", "ScopeSources", "scope_values", "using_scope"]

_EMPTY: Mapping[str, str] = MappingProxyType({})
_overrides: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "agent_guardrails_scope", default=_EMPTY
)
_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class ScopeSources:
    """The scope values a call keeps whatever its arguments: the run's context and the
    tool's declaration."""

    context: Mapping[str, str] = field(default_factory=dict)
    declared: Mapping[str, str] = field(default_factory=dict)


NO_SOURCES = ScopeSources(_EMPTY, _EMPTY)


def scope_values(source: object) -> dict[str, str]:
    """The scope dimensions a mapping or object names (non-empty strings only)."""
    values: dict[str, str] = {}
    if source is None:
        return values
    mapping = source if isinstance(source, Mapping) else None
    for dim in DIMENSIONS:
        value = mapping.get(dim) if mapping is not None else getattr(source, dim, None)
        if isinstance(value, str) and value:
            values[dim] = value
    return values


@contextmanager
def using_scope(**values: str) -> Iterator[None]:
    """Scope values for calls made inside the block (``Guardrails.scope``)."""
    bad = sorted(set(values) - set(DIMENSIONS))
    if bad:
        raise ConfigurationError(
            f"unknown scope dimension(s) {', '.join(bad)}: use {', '.join(DIMENSIONS)}"
        )
    token = _overrides.set({**_overrides.get(), **values})
    try:
        yield
    finally:
        _overrides.reset(token)


class ScopeResolver:
    """Resolves call scopes for one ``Guardrails``; equal scopes share one object."""

    __slots__ = ("_fixed", "_interned", "default", "defaults")

    def __init__(self, defaults: Mapping[str, Any] | None = None) -> None:
        self.default = Scope.from_mapping(defaults or {})
        self.defaults = dict(self.default.items())
        self._interned: dict[tuple[tuple[str, str], ...], Scope] = {}
        self._fixed: dict[int, tuple[ScopeSources, Scope]] = {}  # by the sources' identity

    def resolve(
        self,
        sources: ScopeSources,
        args: Mapping[str, Any] | None,
        params: Container[str] | None = None,
    ) -> Scope:
        """The scope of a call with ``args`` (lowest precedence first: defaults, arguments,
        run context, ``guard.scope()``, declaration). With ``params`` (the parameters the
        tool's schema declares), only those arguments count: a model that adds
        ``region="eu"`` to a tool without that parameter does not move the call (LangChain
        drops the argument before the tool runs)."""
        overrides = _overrides.get()
        found = _dims(args, params) if args else None
        if found is None and not overrides:  # the usual call: its sources alone decide
            fixed = self._fixed.get(id(sources))
            if fixed is not None and fixed[0] is sources:
                return fixed[1]
            scope = self._merge((sources.context, sources.declared))
            if len(self._fixed) < _CACHE_LIMIT:  # the entry keeps its sources alive
                self._fixed[id(sources)] = (sources, scope)
            return scope
        return self._merge((found, sources.context, overrides, sources.declared))

    def _merge(self, layers: tuple[Mapping[str, str] | None, ...]) -> Scope:
        values: dict[str, str] | None = None
        for layer in layers:
            if not layer:
                continue
            for dim in DIMENSIONS:
                v = layer.get(dim)
                if isinstance(v, str) and v:
                    if values is None:
                        values = dict(self.defaults)
                    values[dim] = v
        if values is None:
            return self.default
        ident = tuple(sorted(values.items()))
        scope = self._interned.get(ident)
        if scope is None:
            scope = Scope(**values)
            if len(self._interned) < _CACHE_LIMIT:  # one shared object per scope seen
                self._interned[ident] = scope
        return scope


def _dims(args: Mapping[str, Any], params: Container[str] | None) -> dict[str, str] | None:
    """The scope dimensions a call's arguments name (``None``: none), among ``params`` when
    the tool's parameters are known."""
    found: dict[str, str] | None = None
    for dim in DIMENSIONS:
        if dim in args and (params is None or dim in params):
            v = args[dim]
            if isinstance(v, str) and v:
                if found is None:
                    found = {}
                found[dim] = v
    return found
