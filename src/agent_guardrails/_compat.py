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
- ``configurable["__pregel_checkpointer"]``, ``["__pregel_task_id"]``,
  ``["__pregel_resuming"]`` (set for a whole run resumed from a checkpoint) and
  ``["checkpoint_map"]``: the run's checkpointer, the running task's id and the checkpoint
  each namespace runs from. :func:`unanswered_rerun` reads the parent checkpoint's pending
  writes with them: an ``__interrupt__`` write of this task there, the input's write to
  ``branch:to:__end__`` (LangGraph's ``map_command`` for ``Command(goto=END)``, saved as
  a write of ``langgraph._internal._constants.NULL_TASK_ID``) and no resume value in the
  scratchpad (its ``resume`` list and ``get_null_resume``) mean Agent Chat UI's "Mark as
  resolved": LangGraph drops the jump to a node that does not exist and re-runs the paused
  task with no answer. ``invoke(None)`` (continue, e.g. after a crash) writes no jump and
  asks again. The writes are saved by the run's background executor: a re-run that starts
  before they land asks again (the thread stays interrupted, as without this).
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
from langgraph._internal._constants import NULL_TASK_ID

__all__ = [
    "AUTH_USER",
    "SCRATCHPAD",
    "auth_user",
    "injected_params",
    "configurable",
    "runtime_context",
    "scratchpad",
    "task_run",
    "unanswered_rerun",
    "aunanswered_rerun",
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


CHECKPOINTER = "__pregel_checkpointer"
TASK_ID = "__pregel_task_id"
RESUMING = "__pregel_resuming"
GOTO_END = "branch:to:__end__"  # what map_command writes for Command(goto=END)


def _parent_checkpoint(config: Mapping[str, Any] | None) -> tuple[Any, dict[str, Any], Any]:
    """The checkpointer, the config of the checkpoint the running task runs from, and the
    task's id (``(None, {}, None)`` outside a checkpointed task, or when it was answered)."""
    conf = configurable(config)
    saver, task_id = conf.get(CHECKPOINTER), conf.get(TASK_ID)
    pad = conf.get(SCRATCHPAD)
    if not conf.get(RESUMING) or saver is None or task_id is None or pad is None:
        return None, {}, None  # not a resumed run (the cheap test first), or no task
    if "thread_id" not in conf:
        return None, {}, None
    if getattr(pad, "resume", None) or pad.get_null_resume() is not None:
        return None, {}, None  # the run brings an answer
    ns = str(conf.get("checkpoint_ns") or "")
    parent = ns.rsplit("|", 1)[0] if "|" in ns else ""
    target: dict[str, Any] = {"thread_id": conf["thread_id"], "checkpoint_ns": parent}
    checkpoint_id = (conf.get("checkpoint_map") or {}).get(parent)
    if checkpoint_id is not None:
        target["checkpoint_id"] = checkpoint_id
    return saver, {"configurable": target}, task_id


def _paused(found: Any, task_id: Any) -> bool:
    """This task's interrupt, and a jump to the end the run's input made, are both in the
    checkpoint's pending writes."""
    writes = getattr(found, "pending_writes", None) or ()
    asked = any(w[0] == task_id and w[1] == "__interrupt__" for w in writes)
    return asked and any(w[0] == NULL_TASK_ID and w[1] == GOTO_END for w in writes)


def unanswered_rerun(config: Mapping[str, Any] | None) -> bool:
    """True when the running task was paused by an interrupt and runs again with no answer
    (see the module docstring). A killed worker's re-run, whose interrupt was never saved,
    is not one."""
    saver, target, task_id = _parent_checkpoint(config)
    return saver is not None and _paused(saver.get_tuple(target), task_id)


async def aunanswered_rerun(config: Mapping[str, Any] | None) -> bool:
    """:func:`unanswered_rerun` through the checkpointer's async API."""
    saver, target, task_id = _parent_checkpoint(config)
    return saver is not None and _paused(await saver.aget_tuple(target), task_id)


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
