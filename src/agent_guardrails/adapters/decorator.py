"""``@guarded``: put one tool behind the guardrails.

Works on plain functions and on LangChain tools, sync and async, over or under ``@tool``
(the tool's name, description and argument schema are unchanged):

>>> from agent_guardrails import Guardrails, PolicyPack, guarded
>>> guard = Guardrails(PolicyPack.from_yaml('''
... name: demo
... version: 1
... defaults: {level: assist}
... actions:
...   email.send: {risk: medium}
... '''), store="memory://")
>>> @guarded(action="email.send", guardrails=guard)
... def send_email(to: str, subject: str) -> str:
...     raise AssertionError("never runs at Assist")
>>> send_email("a@example.com", "Hi")["status"]
'simulated'

Which ``Guardrails`` applies: the ``guardrails=`` argument, else the one made current with
``with use_guardrails(guard):`` (the middleware does this), else the process default from
:func:`set_default_guardrails`. It is looked up at call time, so tools can be defined before
the guardrails are built.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, ParamSpec, TypeVar, overload

from langchain_core.tools import BaseTool, StructuredTool, Tool, create_schema_from_function
from pydantic import BaseModel

from agent_guardrails import _compat
from agent_guardrails.engine.decision import CallRequest
from agent_guardrails.errors import ConfigurationError
from agent_guardrails.pipeline.edits import ArgsSchema
from agent_guardrails.pipeline.events import args_digest
from agent_guardrails.pipeline.guardrails import Guardrails
from agent_guardrails.pipeline.results import GuardrailResult
from agent_guardrails.pipeline.scoping import NO_SOURCES, ScopeSources
from agent_guardrails.policy.scope import DIMENSIONS, Scope

__all__ = ["guarded", "inside_adapter", "set_default_guardrails", "use_guardrails"]

P = ParamSpec("P")
R = TypeVar("R")
ToolT = TypeVar("ToolT", bound=BaseTool)

_current: contextvars.ContextVar[Guardrails | None] = contextvars.ContextVar(
    "agent_guardrails_current", default=None
)
_default: list[Guardrails] = []
_guarded_by_adapter: contextvars.ContextVar[object] = contextvars.ContextVar(
    "agent_guardrails_guarded_by_adapter", default=None
)


@contextmanager
def inside_adapter(tool: object) -> Iterator[None]:
    """Mark the tool an adapter is running and already guards (the middleware, a guarded
    ``ToolNode``, a guard node's tools node): its own ``@guarded`` function runs its body
    directly, so the call is guarded once. Only that function: a ``@guarded`` function the
    body calls in turn is guarded as any other call."""
    token = _guarded_by_adapter.set(tool)
    try:
        yield
    finally:
        _guarded_by_adapter.reset(token)


_NO_TASK: AbstractContextManager[None] = nullcontext()  # reusable: outside a LangGraph task


def _passed_by_adapter(wrapper: object) -> bool:
    """True when an adapter already guards this call of ``wrapper`` (see
    :func:`inside_adapter`); the mark is cleared for what the body calls."""
    tool = _guarded_by_adapter.get()
    if tool is None:
        return False
    if getattr(tool, "func", None) is wrapper or getattr(tool, "coroutine", None) is wrapper:
        _guarded_by_adapter.set(None)  # this context only: nested calls are guarded
        return True
    return False


class _InGraph:
    """What a ``@guarded`` call learns from the LangGraph run it is in (if any): its stable
    key, an interrupt-based asker and the run's scope values."""

    __slots__ = ("ask", "key", "sources", "task")

    def __init__(self, key: str | None, ask: Any, sources: ScopeSources, task: Any = None) -> None:
        self.key = key
        self.ask = ask
        self.sources = sources
        self.task = task  # the ToolNode task's shared interrupts


_OUTSIDE = _InGraph(None, None, NO_SOURCES)
_GLOBAL = Scope()  # a placeholder: the pipeline resolves the call's scope


def _in_graph(
    guard: Guardrails, tool: str, args: Mapping[str, Any], declared: Mapping[str, str]
) -> _InGraph:
    """The function never sees its tool call id, so a digest of the tool and its arguments
    stands in for it; identical calls in one task are numbered in the order they arrive
    (they are interchangeable), so each runs and is charged once."""
    if _compat.var_child_runnable_config.get() is None:
        return _OUTSIDE
    from agent_guardrails.adapters.graph import (
        call_key,
        current_config,
        interrupt_asker,
        run_sources,
        slot_schema,
    )
    from agent_guardrails.adapters.task_interrupts import for_task

    config = current_config()
    if config is None:
        return _OUTSIDE
    sources = run_sources(None, config, declared)
    name = f"{tool}:{args_digest(tool, args)[:16]}"
    task = for_task(config, guard.store, slot_schema)
    n = task.ordinal(name) if task is not None else 0
    key = call_key(config, name if n == 0 else f"{name}#{n}")
    if key is None:
        return _InGraph(None, None, sources)
    return _InGraph(key, interrupt_asker("", None, config, guard.store), sources, task)


def set_default_guardrails(guard: Guardrails | None) -> None:
    """Make ``guard`` the one ``@guarded`` tools use when nothing more specific is set."""
    _default[:] = [guard] if guard is not None else []


@contextmanager
def use_guardrails(guard: Guardrails) -> Iterator[Guardrails]:
    """Make ``guard`` current for ``@guarded`` tools called inside the block."""
    token = _current.set(guard)
    try:
        yield guard
    finally:
        _current.reset(token)


def _resolve(explicit: Guardrails | None) -> Guardrails:
    guard = explicit or _current.get() or (_default[0] if _default else None)
    if guard is None:
        raise ConfigurationError(
            "no Guardrails for this @guarded tool: pass guardrails=..., wrap the call in "
            "'with use_guardrails(guard):', or call set_default_guardrails(guard)"
        )
    return guard


class _Spec:
    __slots__ = ("action", "guardrails", "raise_on_deny", "scope", "simulate", "tool_name")

    def __init__(
        self,
        action: str,
        guardrails: Guardrails | None,
        scope: Mapping[str, str] | None,
        simulate: Callable[..., Any] | None,
        raise_on_deny: bool | None,
        tool_name: str | None,
    ) -> None:
        self.action = action
        self.guardrails = guardrails
        self.scope = dict(scope or {})
        self.simulate = simulate
        self.raise_on_deny = raise_on_deny
        self.tool_name = tool_name


class _Guarded:
    """What ``@guarded(...)`` returns: applied to a tool or a function. The wrapped function
    returns the body's result, or a :class:`~agent_guardrails.pipeline.results.GuardrailResult`
    when the body did not run, and its type says so."""

    __slots__ = ("spec",)

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec

    @overload
    def __call__(self, target: ToolT) -> ToolT: ...

    @overload
    def __call__(
        self, target: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R | GuardrailResult]]: ...

    @overload
    def __call__(self, target: Callable[P, R]) -> Callable[P, R | GuardrailResult]: ...

    def __call__(self, target: Any) -> Any:
        spec = self.spec
        if isinstance(target, BaseTool):
            return _guard_tool(target, spec)
        if callable(target):
            name = spec.tool_name or str(getattr(target, "__name__", "tool"))
            return _guard_function(target, spec, name)
        raise ConfigurationError(
            f"@guarded applies to functions and LangChain tools, not {type(target).__name__}"
        )


def guarded(
    *,
    action: str,
    guardrails: Guardrails | None = None,
    scope: Mapping[str, str] | None = None,
    simulate: Callable[..., Any] | None = None,
    raise_on_deny: bool | None = None,
    name: str | None = None,
) -> _Guarded:
    """Guard a tool bound to ``action`` (a key of the pack's ``actions``).

    Args:
        action: the business action the tool performs, e.g. ``"email.send"``.
        guardrails: the :class:`Guardrails` to use (default: current or process default).
        scope: scope values declared by the tool (``{"channel": "email"}``); they win over
            the run's context and the call's arguments.
        simulate: called with the tool's arguments at Assist (level 0) instead of the body;
            its return value is the draft the agent sees. An ``async def`` is awaited; a
            plain function runs on a worker thread on async paths (it may block), on the
            caller's thread on sync ones.
        raise_on_deny: raise ``GuardrailError`` subclasses instead of returning a
            :class:`~agent_guardrails.pipeline.results.GuardrailResult` (default: the
            guardrails').
        name: the tool name used in decisions (default: the tool's or function's name).

    The wrapped function returns the body's result, or a ``GuardrailResult`` dict when the
    body did not run: its return type is ``R | GuardrailResult`` (use ``is_result`` or the
    ``status`` key to tell them apart), a LangChain tool stays a tool.
    """
    if not isinstance(action, str) or not action:
        raise ConfigurationError("@guarded needs action='<name in the pack>', e.g. 'email.send'")
    bad = sorted(set(scope or {}) - set(DIMENSIONS))
    if bad:
        raise ConfigurationError(
            f"@guarded scope has unknown dimension(s) {', '.join(bad)}: use {', '.join(DIMENSIONS)}"
        )
    return _Guarded(_Spec(action, guardrails, scope, simulate, raise_on_deny, name))


class _Binder:
    """Turns ``(*args, **kwargs)`` into the argument mapping the guardrails see, and back.

    Plain signatures (no positional-only parameters, no ``*args`` / ``**kwargs``) take a fast
    path that costs about a quarter of :meth:`inspect.Signature.bind`; anything else uses it.
    """

    __slots__ = ("_defaults", "_every", "_names", "_positional", "_sig", "plain")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._sig = inspect.signature(fn)
        params = list(self._sig.parameters.values())
        kinds = {p.kind for p in params}
        self.plain = kinds <= {
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        }
        self._names = tuple(p.name for p in params)
        self._positional = sum(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
        # Calls that pass every parameter positionally (when there is no keyword-only one).
        self._every = len(params) if self._positional == len(params) else -1
        self._defaults = {p.name: p.default for p in params if p.default is not p.empty}

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if not kwargs and len(args) == self._every and self.plain:
            # Every parameter, in order (lengths checked: ``strict=`` would cost a third more).
            return dict(zip(self._names, args))  # noqa: B905
        if self.plain and len(args) <= self._positional:
            arguments = dict(zip(self._names, args, strict=False))
            ok = True
            for k, v in kwargs.items():
                if k in arguments or (k not in self._defaults and k not in self._names):
                    ok = False
                    break
                arguments[k] = v
            if ok and len(arguments) < len(self._names):
                for name in self._names:
                    if name not in arguments:
                        if name not in self._defaults:
                            ok = False
                            break
                        arguments[name] = self._defaults[name]
            if ok:
                return arguments
        bound = self._sig.bind(*args, **kwargs)  # raises the usual TypeError
        bound.apply_defaults()
        return dict(bound.arguments)

    def call(self, fn: Callable[..., Any], arguments: Mapping[str, Any]) -> Any:
        if self.plain:
            return fn(**arguments)
        bound = inspect.BoundArguments(self._sig, dict(arguments))
        return fn(*bound.args, **bound.kwargs)


def _guard_function(fn: Callable[..., Any], spec: _Spec, tool_name: str) -> Callable[..., Any]:
    if getattr(fn, "__guardrails_action__", None) is not None:
        raise ConfigurationError(f"{tool_name} is already @guarded; apply @guarded once")
    binder = _Binder(fn)
    declared = spec.scope
    injected = _compat.injected_params(fn)  # LangChain's: not the model's arguments

    if binder.plain:

        def body(arguments: Mapping[str, Any]) -> Any:
            return fn(**arguments)  # what binder.call() does for a plain signature

    else:

        def body(arguments: Mapping[str, Any]) -> Any:
            return binder.call(fn, arguments)

    simulate: Callable[[Mapping[str, Any]], Any] | None = None
    if spec.simulate is not None:
        sim = spec.simulate
        if inspect.iscoroutinefunction(sim):  # stays a coroutine function: awaited, no thread

            async def asimulate(arguments: Mapping[str, Any]) -> Any:
                return await binder.call(sim, arguments)

            simulate = asimulate
        else:

            def simulate(arguments: Mapping[str, Any]) -> Any:
                return binder.call(sim, arguments)

    schema = _schema(tool_name, fn)

    def prepared(
        args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Guardrails, CallRequest, _InGraph, Callable[[Mapping[str, Any]], Any]]:
        """The call as the guardrails see it: the model's arguments, without what LangChain
        injects (a ``ToolRuntime`` ...), which the body still gets."""
        try:
            arguments = binder.bind(args, kwargs)
        except TypeError as exc:
            raise TypeError(f"{tool_name}: {exc}") from None
        run: Callable[[Mapping[str, Any]], Any] = body
        if injected:
            hidden = {k: arguments.pop(k) for k in injected if k in arguments}

            def with_hidden(visible: Mapping[str, Any]) -> Any:
                return body({**visible, **hidden})

            run = with_hidden

        guard = _resolve(spec.guardrails)
        graph = _in_graph(guard, tool_name, arguments, declared)
        return guard, CallRequest(tool_name, spec.action, arguments, _GLOBAL), graph, run

    outside = ScopeSources({}, declared) if declared else NO_SOURCES  # one per tool

    def sources(graph: _InGraph) -> ScopeSources:
        return outside if graph.sources is NO_SOURCES else graph.sources

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            if _passed_by_adapter(async_wrapper):
                return await fn(*args, **kwargs)
            guard, req, graph, run = prepared(args, kwargs)
            task = graph.task

            async def tracked(arguments: Mapping[str, Any]) -> Any:
                with task.body():
                    return await run(arguments)

            with _NO_TASK if task is None else task.call():
                return await guard.arun(
                    req,
                    run if task is None else tracked,
                    simulate=simulate,
                    raise_on_deny=spec.raise_on_deny,
                    call_key=graph.key,
                    ask=graph.ask,
                    sources=sources(graph),
                    in_graph=graph.key is not None,
                    args_schema=schema,
                )

        wrapper: Callable[..., Any] = async_wrapper
    else:

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            if _passed_by_adapter(sync_wrapper):
                return fn(*args, **kwargs)
            guard, req, graph, run = prepared(args, kwargs)
            task = graph.task

            def tracked(arguments: Mapping[str, Any]) -> Any:
                with task.body():
                    return run(arguments)

            with _NO_TASK if task is None else task.call():
                return guard.run(
                    req,
                    run if task is None else tracked,
                    simulate=simulate,
                    raise_on_deny=spec.raise_on_deny,
                    call_key=graph.key,
                    ask=graph.ask,
                    sources=sources(graph),
                    in_graph=graph.key is not None,
                    args_schema=schema,
                )

        wrapper = sync_wrapper
    # What adapters that guard the call themselves (the middleware) read from the tool.
    wrapper.__guardrails_action__ = spec.action  # type: ignore[attr-defined]
    wrapper.__guardrails_scope__ = dict(spec.scope)  # type: ignore[attr-defined]
    wrapper.__guardrails_simulate__ = simulate  # type: ignore[attr-defined]
    return wrapper


def _schema(tool_name: str, fn: Callable[..., Any]) -> ArgsSchema | None:
    """The function's arguments as a pydantic model, to read an approver's edit by (None
    where its signature cannot be turned into one: the edit is then taken as given)."""
    try:
        model: object = create_schema_from_function(tool_name, fn, include_injected=False)
    except Exception:
        return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _guard_tool(tool: BaseTool, spec: _Spec) -> BaseTool:
    """A copy of ``tool`` whose function (and coroutine) run through the guardrails."""
    if not isinstance(tool, StructuredTool | Tool):
        raise ConfigurationError(
            f"@guarded over {type(tool).__name__}: only tools made with @tool, "
            "StructuredTool or Tool can be wrapped; put @guarded under @tool, on the function"
        )
    name = spec.tool_name or tool.name
    update: dict[str, Any] = {}
    if tool.func is not None:
        update["func"] = _guard_function(tool.func, spec, name)
    if tool.coroutine is not None:
        update["coroutine"] = _guard_function(tool.coroutine, spec, name)
    return tool.model_copy(update=update)
