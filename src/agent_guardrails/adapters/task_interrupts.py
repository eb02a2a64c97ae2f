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
- **An open question keeps its slot while its call still asks.** When a task re-runs with
  its open question unanswered (another task's interrupt was answered), a call that needs
  a new question waits up to a second for the open question's call to put it again, then
  raises that same question. Only when that call no longer asks (a kill-switch, a new pack
  or level) does the slot change hands: a new revision of its record, and the new question
  replaces the open one under the same interrupt id. On an async ``ToolNode`` nothing can
  wait (the calls share one event loop), so there the slot changes hands at once; read the
  question from the graph's latest state before answering.
- **A question waits for the calls under way.** A run ends on its question, so before a
  call raises one it waits until every other call of the task is asking too or has ended
  (:meth:`TaskInterrupts.call` around each call, :meth:`TaskInterrupts.body` around each
  body): a call answered earlier, or allowed, reaches and finishes its body first. It
  looks again after writing the slot's record, since an async store's write lets the
  loop's other calls move.
- **A question is recorded when it is put.** A call that waits behind another's question
  records its ``approval.requested`` (so its pack version and expiry) only when its own
  question is raised.
- **Per attempt.** A task retried under a ``RetryPolicy`` starts its interrupt count again,
  and so does this (a finished call then replays, it does not run again).

Other code in the same task must not call ``interrupt()`` itself: it would take slots
this log does not know about. All guarded tools of one ``ToolNode`` must use one store
object (a ``ConfigurationError`` says so otherwise): the log lives in it.

LangGraph caveat: it gives an answer sent to a task's *first* interrupt id to the task's
next question (for interrupts saved by older versions). Sending the same resume twice
therefore answers the next question too: resume each interrupt once.

Two identical calls in one task (same tool, same arguments) that cannot tell their tool
call ids apart (``@guarded`` under a plain ``ToolNode``) are told apart by :meth:`ordinal`:
the n-th one to arrive in a run gets number n. They are interchangeable, so which thread
gets which number does not matter.
"""

from __future__ import annotations

import contextvars
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from langgraph.errors import GraphInterrupt
from langgraph.types import interrupt

from agent_guardrails import _compat
from agent_guardrails.errors import ConfigurationError
from agent_guardrails.pipeline.effects import Flow, Pause, StoreOp, for_event_loop
from agent_guardrails.store.base import AuditEvent, AuditRecord, Store

__all__ = ["TaskInterrupts", "for_task"]

_OWNER_WAIT = 1.0  # seconds a call waits for the owner of the open question to raise it
_BODY_WAIT = 60.0  # seconds a new question waits for the task's running tool bodies
# Task run (the function LangGraph makes with each run's scratchpad) -> attempt (the
# interrupt counter, new on each retry under a RetryPolicy; kept so its id stays unique).
_registry: weakref.WeakKeyDictionary[
    Callable[..., Any], dict[int, tuple[object, TaskInterrupts]]
] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()
# The task whose tool body the current thread or coroutine is in, and how deep.
_inside: contextvars.ContextVar[tuple[TaskInterrupts, int] | None] = contextvars.ContextVar(
    "agent_guardrails_inside_body", default=None
)


Schema = Callable[[Mapping[str, Any]], Any]
"""Builds the type an answer must have from a slot's record (``tool``, ``allowed``)."""


class QuestionPending(GraphInterrupt):
    """Raised by a call that needs a new question while another call's question is open in
    the same task: it carries that question, and the call is asked in a later run."""

    question_pending = True


def for_task(
    config: Mapping[str, Any] | None, store: Store, schema: Schema
) -> TaskInterrupts | None:
    """The :class:`TaskInterrupts` of the task run (and retry attempt) ``config`` belongs
    to (``None`` outside a checkpointed LangGraph task)."""
    configurable = _compat.configurable(config)
    thread = configurable.get("thread_id")
    marker, counter = _compat.task_run(config)
    if thread is None or marker is None or counter is None:
        return None
    with _registry_lock:
        attempts = _registry.get(marker)
        if attempts is None:
            attempts = _registry[marker] = {}
        entry = attempts.get(id(counter))
        if entry is None:
            ns = configurable.get("checkpoint_ns", "")
            entry = attempts[id(counter)] = (
                counter,
                TaskInterrupts(store, f"{thread}|{ns}", schema),
            )
    task = entry[1]
    if task.store is not store:
        raise ConfigurationError(
            "guarded tools run by one ToolNode use different stores: their approvals share "
            "the node's interrupts, so give every Guardrails of that node the same store "
            "object (Guardrails(pack, store=shared_store))"
        )
    return task


class TaskInterrupts:
    """The interrupts of one run of one task; see the module docstring."""

    def __init__(self, store: Store, task: str, schema: Schema) -> None:
        self.store = store
        self._schema = schema
        self._task = task
        self._lock = threading.Condition()
        self._ordinals: dict[str, int] = {}
        self._loaded = False
        self._owners: list[str] = []  # slot -> the ask holding it (latest revision)
        self._revisions: list[int] = []  # slot -> its next revision number
        self._answers: dict[int, Any] = {}
        self._raised: tuple[Any, ...] | None = None  # the interrupts raised in this run
        self._failed: BaseException | None = None
        self._claiming: str | None = None  # the ask recording its slot now
        self._bodies = 0  # calls of this task running their tool body now
        self._calls = 0  # calls of this task under way (call())
        self._asking = 0  # of them, those in answer() now

    @contextmanager
    def call(self) -> Iterator[None]:
        """Around a guarded call of this task, from when it reaches the guardrails to its
        end. A new question waits for the task's calls under way that are not asking
        themselves: a call answered in an earlier run, or allowed, is on its way to its
        body through store operations (which an async store awaits), and a run ended by a
        sibling's question meanwhile would cancel it after it was marked started, leaving
        it in doubt (asked again)."""
        with self._lock:
            self._calls += 1
        try:
            yield
        finally:
            with self._lock:
                self._calls -= 1
                self._lock.notify_all()

    def _settled(self, own: int) -> bool:
        """Under the lock: no sibling call runs its body or is on its way to it (``own``:
        the bodies the asking call is inside)."""
        return max(self._bodies, self._calls - self._asking) <= own

    @contextmanager
    def body(self) -> Iterator[None]:
        """Around a tool body of this task: a new question waits for running bodies to end,
        so a run never ends (on its question) while a sibling call's body is still going
        (on an async ToolNode, LangGraph would leave it running detached from the run). A
        question asked from inside a body (a ``@guarded`` function the tool calls) does not
        wait for the body it is in."""
        outer = _inside.get()
        depth = outer[1] if outer is not None and outer[0] is self else 0
        token = _inside.set((self, depth + 1))
        with self._lock:
            self._bodies += 1
        try:
            yield
        finally:
            _inside.reset(token)
            with self._lock:
                self._bodies -= 1
                self._lock.notify_all()

    def ordinal(self, name: str) -> int:
        """How many calls named ``name`` arrived in this run before this one."""
        with self._lock:
            n = self._ordinals.get(name, 0)
            self._ordinals[name] = n + 1
            return n

    def answer(self, ask: str, payload: Any, record: Mapping[str, Any]) -> Flow[Any]:
        """The answer to ``ask`` (``call key#generation``), or raise the interrupt that puts
        ``payload`` to a human. ``record`` is what the slot's audit record keeps: ``tool``
        and ``allowed`` (decisions), from which the answer's type is built, and
        ``call_key``. A flow: its store reads and writes are yielded (see
        :mod:`agent_guardrails.pipeline.effects`), never done while the lock is held, so an
        async ``ToolNode`` never blocks its event loop."""
        asking = [False]  # counted among the calls asking, once it needs a new question
        try:
            return (yield from self._answer(ask, payload, record, asking))
        finally:
            if asking[0]:
                with self._lock:
                    self._asking -= 1
                    self._lock.notify_all()

    def _answer(
        self, ask: str, payload: Any, record: Mapping[str, Any], asking: list[bool]
    ) -> Flow[Any]:
        if not self._loaded:
            logged = yield from self._read_log()
            with self._lock:
                if not self._loaded:
                    self._install(*logged)
        while True:
            with self._lock:
                if self._failed is not None:
                    raise self._failed
                mine = [s for s, owner in enumerate(self._owners) if owner == ask]
                if mine and mine[-1] in self._answers:
                    return self._answers[mine[-1]]
                if not asking[0]:  # no answer for it: it will ask, not head for its body
                    asking[0] = True
                    self._asking += 1
                    self._lock.notify_all()
                if self._claiming is None:
                    claim = self._claim(ask)
                    if claim is None:  # this ask holds the open slot already: put it again
                        return self._raise(payload, record, len(self._answers))
                    self._claiming = ask
                    break
                if not _in_event_loop():  # another thread is recording its question
                    self._lock.wait_for(lambda: self._claiming is None, _OWNER_WAIT)
                    continue
            yield Pause()  # another call of this task (same loop) is recording its question
        slot, revision = claim
        try:
            yield from self._quiet()
            # The slot's record is written before its question is raised.
            yield StoreOp("append_audit", self._slot_event(slot, revision, ask, record))
            # While an async store wrote, a sibling may have taken its answer and set off
            # for its body: let it get there. No await between this look and the raise.
            yield from self._quiet()
            with self._lock:
                return self._raise(payload, record, slot)
        finally:
            with self._lock:
                self._claiming = None
                self._lock.notify_all()

    def _quiet(self) -> Flow[None]:
        """Wait (at most ``_BODY_WAIT`` seconds) until no other call of this task runs its
        body (a question asked from inside a body does not wait for that body)."""
        inside = _inside.get()
        own = inside[1] if inside is not None and inside[0] is self else 0
        deadline = time.monotonic() + _BODY_WAIT
        while True:
            with self._lock:
                if self._settled(own) or time.monotonic() > deadline:
                    return
                if not _in_event_loop():
                    self._lock.wait_for(lambda: self._settled(own), _BODY_WAIT)
                    return
            yield Pause()

    def _claim(self, ask: str) -> tuple[int, int] | None:
        """Under the lock: the slot (and its record's revision) ``ask`` takes for a new
        question, or ``None`` when it holds the open slot already. Raises
        :class:`QuestionPending` when another call's question goes first."""
        slot = len(self._answers)  # the first slot without an answer
        other_open = slot < len(self._owners) and self._owners[slot] != ask
        if other_open and self._raised is None and not _in_event_loop():
            # Another call's question is open: give that call, most likely on another
            # thread of this task, a moment to put it again.
            self._lock.wait_for(lambda: self._raised is not None, _OWNER_WAIT)
        if self._raised is not None:  # one new question per run: this one waits
            raise QuestionPending(self._raised)
        if slot == len(self._owners):
            self._owners.append(ask)
            self._revisions.append(0)
        elif self._owners[slot] != ask:  # its call no longer asks: this one takes over
            self._owners[slot] = ask
        else:
            return None
        revision = self._revisions[slot]
        self._revisions[slot] = revision + 1
        return slot, revision

    def _raise(self, payload: Any, record: Mapping[str, Any], slot: int) -> Any:
        """Under the lock: put the question (LangGraph answers at once when a resume value
        waits for this position)."""
        try:
            value = interrupt(payload, response_schema=self._schema(record))
        except GraphInterrupt as exc:
            self._raised = tuple(exc.args[0])  # the interrupts, not the traceback
            self._lock.notify_all()
            raise
        self._answers[slot] = value  # answered at once (a resume not aimed at an id)
        return value

    def _read_log(self) -> Flow[tuple[list[Mapping[str, Any]], list[int]]]:
        """The slot log: each slot's latest record and its next revision number."""
        logged: list[Mapping[str, Any]] = []
        revisions: list[int] = []
        while True:
            revision, latest, slot = 0, None, len(logged)
            while True:
                found: AuditRecord | None = yield StoreOp(
                    "find_audit", self._dedupe(slot, revision)
                )
                if found is None:
                    break
                latest, revision = found.data, revision + 1
            if latest is None:
                return logged, revisions
            logged.append(latest)
            revisions.append(revision)

    def _install(self, logged: list[Mapping[str, Any]], revisions: list[int]) -> None:
        """Under the lock: take the log, then every logged slot's answer, in slot order."""
        self._owners = [str(data["ask"]) for data in logged]
        self._revisions = list(revisions)
        self._loaded = True
        for slot, data in enumerate(logged):
            try:
                self._answers[slot] = interrupt(dict(data), response_schema=self._schema(data))
            except GraphInterrupt:
                return  # the open question: no later slot can have an answer
            except Exception as exc:  # an answer that does not fit its ask: nothing is kept
                self._failed = exc
                return

    def _slot_event(
        self, slot: int, revision: int, ask: str, record: Mapping[str, Any]
    ) -> AuditEvent:
        return AuditEvent(
            "approval.slot",
            {**record, "ask": ask, "slot": slot, "revision": revision, "task": self._task},
            str(record.get("call_key") or ""),
            self._dedupe(slot, revision),
        )

    def _dedupe(self, slot: int, revision: int) -> str:
        return f"{self._task}|~slot:{slot}.{revision}"


def _in_event_loop() -> bool:
    """True for an async ``ToolNode``'s calls, on the loop's thread or on a store's thread
    advancing the call for it (:func:`~agent_guardrails.pipeline.effects.for_event_loop`):
    waiting there would stall the other calls of the task, which share that loop."""
    return for_event_loop()
