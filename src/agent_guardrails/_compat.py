"""The private parts of LangGraph and LangChain this package relies on, in one place.

Everything here is outside those libraries' documented API, so ``pyproject.toml`` pins
``langgraph``, ``langchain`` and ``langchain-core`` to the ranges the test suite ran on (CI
runs the adapter tests on the lowest and the newest allowed versions). When a new release
moves one of these, this module is the one to change.

- ``configurable["__pregel_scratchpad"]``: LangGraph's per-task-run state; its
  ``interrupt_counter`` (a new one per run and per retry attempt) and ``get_null_resume``
  tell the task runs apart (:mod:`agent_guardrails.adapters.task_interrupts`).
- ``configurable["__pregel_runtime"]``: the run's ``Runtime``, whose ``context`` is the
  ``context=`` given to ``invoke`` (read where no ``ToolRuntime`` is handed to us).
- ``configurable["langgraph_auth_user"]``: the authenticated user LangGraph's server puts
  in a run's config when the deployment has custom auth.
- A ``Send`` to a ``ToolNode`` carrying ``{"__type": "tool_call_with_context", "tool_call":
  ..., "state": ...}``: how ``create_agent`` hands one tool call to a tool node; the guard
  node uses the same form.
- ``langchain_core.runnables.config.var_child_runnable_config``: the context variable
  holding the current run's config (a cheap "are we inside a run?" check).
- ``langchain_core.tools.base._is_injected_arg_type``: which parameters of a tool function
  LangChain injects (``ToolRuntime``, ``InjectedState``, ``InjectedToolCallId`` ...) rather
  than the model filling them.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from typing import Any

from langchain_core.runnables.config import var_child_runnable_config
from langchain_core.tools.base import _is_injected_arg_type

__all__ = [
    "AUTH_USER",
    "SCRATCHPAD",
    "auth_user",
    "injected_params",
    "configurable",
    "runtime_context",
    "scratchpad",
    "task_run",
    "tool_call_send_payload",
    "var_child_runnable_config",
]

SCRATCHPAD = "__pregel_scratchpad"
RUNTIME = "__pregel_runtime"
AUTH_USER = "langgraph_auth_user"


def configurable(config: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """``config["configurable"]``, or an empty mapping."""
    return (config or {}).get("configurable") or {}


def scratchpad(config: Mapping[str, Any] | None) -> Any:
    """The running task's scratchpad (``None`` outside a LangGraph task)."""
    return configurable(config).get(SCRATCHPAD)


def task_run(config: Mapping[str, Any] | None) -> tuple[Any, Any]:
    """What tells one run (and retry attempt) of a LangGraph task from another: the
    scratchpad's ``get_null_resume`` (a new function per run) and ``interrupt_counter`` (a
    new one per attempt). ``(None, None)`` outside a task."""
    pad = scratchpad(config)
    return getattr(pad, "get_null_resume", None), getattr(pad, "interrupt_counter", None)


def runtime_context(config: Mapping[str, Any] | None) -> Any:
    """The ``context=`` of the LangGraph run ``config`` belongs to, if any."""
    runtime = configurable(config).get(RUNTIME)
    return getattr(runtime, "context", None) if runtime is not None else None


def auth_user(config: Mapping[str, Any] | None) -> Any:
    """The user LangGraph's server authenticated for this run (custom auth), if any."""
    return configurable(config).get(AUTH_USER)


def tool_call_send_payload(tool_call: Mapping[str, Any], state: Any) -> dict[str, Any]:
    """What a ``Send`` to a ``ToolNode`` carries for one tool call."""
    return {"__type": "tool_call_with_context", "tool_call": tool_call, "state": state}


def injected_params(fn: Any) -> frozenset[str]:
    """The parameters of ``fn`` LangChain injects when it runs the function as a tool (a
    ``ToolRuntime``, ``InjectedState`` ...): not the model's arguments, so not what a
    guard decides on, binds approvals to, or shows a human."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable annotations: look at the raw ones
        hints = dict(getattr(fn, "__annotations__", {}) or {})
    names = inspect.signature(fn).parameters
    return frozenset(
        name
        for name in names
        if name in hints and not isinstance(hints[name], str) and _is_injected_arg_type(hints[name])
    )
