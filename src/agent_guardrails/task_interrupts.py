"""How the guarded calls of one LangGraph task share that task's interrupts.

LangGraph answers a task's ``interrupt()`` calls by position: each time the task runs, its
k-th ``interrupt()`` gets the k-th answer given so far (the interrupt id is a hash of the
task's namespace and that position). A ``ToolNode`` runs every tool call of one AI message
in one task, on threads, so the order in which guarded calls reach ``interrupt()`` changes
from run to run, and a call that finished in an earlier run replays without asking. Left
to themselves, answers would reach the wrong calls: a rejected call could run.

So a guarded call asks through its task's :class:`TaskInterrupts`:

- **A slot log in the store.** Each question a call asks takes the task's next slot, and an
  ``approval.slot`` audit record says which ask holds it (tool, allowed decisions, the
  call's key). The record is written before the interrupt is raised.
- **Answers taken in slot order.** On a run's first ask, every logged slot's answer is read
  with ``interrupt()`` in slot order, each checked against its own ask's answer schema, so
  slots of calls that finished (and replay without asking) still line up. Each call then
  gets the answer of its own slot.
- **One new question per run.** The first call that needs a new answer raises its
  interrupt; other calls that need one raise that same interrupt and are asked in a later
  run, once it is answered. So the question shown always belongs to the slot its answer
  fills.
- **An open slot changes hands only when its call stops asking.** If a task re-runs with
  its open question unanswered (another task's interrupt was answered) and another call
  asks first, that call takes the slot over (a new revision of the record) and its
  question replaces the open one under the same interrupt id. Read the question from the
  graph's latest state before answering.

Other code in the same task must not call ``interrupt()`` itself: it would take slots
this log does not know about.

Two identical calls in one task (same tool, same arguments) that cannot tell their tool
call ids apart (``@guarded`` under a plain ``ToolNode``) are told apart by :meth:`ordinal`:
the n-th one to arrive in a run gets number n. They are interchangeable, so which thread
gets which number does not matter.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from langgraph.errors import GraphInterrupt
from langgraph.types import interrupt

from agent_guardrails.store.base import AuditEvent, Store

__all__ = ["TaskInterrupts", "for_task"]

_SCRATCHPAD = "__pregel_scratchpad"  # LangGraph's per-task-run state, in ``configurable``
_registry: weakref.WeakKeyDictionary[Callable[..., Any], TaskInterrupts] = (
    weakref.WeakKeyDictionary()
)
_registry_lock = threading.Lock()


Schema = Callable[[Mapping[str, Any]], Any]
"""Builds the type an answer must have from a slot's record (``tool``, ``allowed``)."""


def for_task(
    config: Mapping[str, Any] | None, store: Store, schema: Schema
) -> TaskInterrupts | None:
    """The :class:`TaskInterrupts` of the task run ``config`` belongs to (``None`` outside a
    checkpointed LangGraph task)."""
    configurable = (config or {}).get("configurable") or {}
    thread = configurable.get("thread_id")
    scratchpad = configurable.get(_SCRATCHPAD)
    # One function object per task run: LangGraph makes it with the run's scratchpad.
    marker = getattr(scratchpad, "get_null_resume", None)
    if thread is None or marker is None:
        return None
    with _registry_lock:
        task = _registry.get(marker)
        if task is None:
            ns = configurable.get("checkpoint_ns", "")
            task = TaskInterrupts(store, f"{thread}|{ns}", schema)
            _registry[marker] = task
    return task


class TaskInterrupts:
    """The interrupts of one run of one task; see the module docstring."""

    def __init__(self, store: Store, task: str, schema: Schema) -> None:
        self._store = store
        self._schema = schema
        self._task = task
        self._lock = threading.Lock()
        self._ordinals: dict[str, int] = {}
        self._loaded = False
        self._owners: list[str] = []  # slot -> the ask holding it (latest revision)
        self._revisions: list[int] = []  # slot -> its next revision number
        self._answers: dict[int, Any] = {}
        self._raised: GraphInterrupt | None = None
        self._failed: BaseException | None = None

    def ordinal(self, name: str) -> int:
        """How many calls named ``name`` arrived in this run before this one."""
        with self._lock:
            n = self._ordinals.get(name, 0)
            self._ordinals[name] = n + 1
            return n

    def answer(self, ask: str, payload: Any, record: Mapping[str, Any]) -> Any:
        """The answer to ``ask`` (``call key#generation``), or raise the interrupt that puts
        ``payload`` to a human. ``record`` is what the slot's audit record keeps: ``tool``
        and ``allowed`` (decisions), from which the answer's type is built, and
        ``call_key``."""
        with self._lock:
            if not self._loaded:
                self._load()
            if self._failed is not None:
                raise self._failed
            mine = [s for s, owner in enumerate(self._owners) if owner == ask]
            if mine and mine[-1] in self._answers:
                return self._answers[mine[-1]]
            if self._raised is not None:  # one new question per run: this one waits
                raise GraphInterrupt(self._raised.args[0])
            slot = len(self._answers)  # the first slot without an answer
            if slot == len(self._owners):
                self._owners.append(ask)
                self._revisions.append(0)
                self._claim(slot, ask, record)
            elif self._owners[slot] != ask:  # its call no longer asks: this one takes over
                self._owners[slot] = ask
                self._claim(slot, ask, record)
            try:
                value = interrupt(payload, response_schema=self._schema(record))
            except GraphInterrupt as exc:
                self._raised = exc
                raise
            self._answers[slot] = value  # answered at once (a resume not aimed at an id)
            return value

    def _load(self) -> None:
        """Read the slot log, then every logged slot's answer, in slot order."""
        logged: list[Mapping[str, Any]] = []
        while True:
            revision, latest, slot = 0, None, len(logged)
            while (found := self._store.find_audit(self._dedupe(slot, revision))) is not None:
                latest, revision = found.data, revision + 1
            if latest is None:
                break
            logged.append(latest)
            self._owners.append(str(latest["ask"]))
            self._revisions.append(revision)
        self._loaded = True
        for slot, data in enumerate(logged):
            try:
                self._answers[slot] = interrupt(dict(data), response_schema=self._schema(data))
            except GraphInterrupt:
                return  # the open question: no later slot can have an answer
            except Exception as exc:  # an answer that does not fit its ask: nothing is kept
                self._failed = exc
                return

    def _claim(self, slot: int, ask: str, record: Mapping[str, Any]) -> None:
        revision = self._revisions[slot]
        self._revisions[slot] = revision + 1
        self._store.append_audit(
            AuditEvent(
                "approval.slot",
                {**record, "ask": ask, "slot": slot, "revision": revision, "task": self._task},
                str(record.get("call_key") or ""),
                self._dedupe(slot, revision),
            )
        )

    def _dedupe(self, slot: int, revision: int) -> str:
        return f"{self._task}|~slot:{slot}.{revision}"
