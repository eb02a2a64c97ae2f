"""Records the store could not take, kept in order and written when it is back.

When the store cannot be reached, a call still decides (it fails closed, or runs where the
pack says ``fail_open``) and its records (decision, start, finish, approvals) must not be
lost (DESIGN §3.11). Each write that fails with ``StoreUnavailable`` is kept here, as the
store operation itself, and the pipeline writes what is waiting, in order, before the next
call on any adapter, and when :meth:`Guardrails.close` is called (also at interpreter exit).
What still cannot be written then is counted in a warning; ``pending`` says how many wait.

>>> box = Outbox()
>>> box.pending
0
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from agent_guardrails.errors import StoreUnavailable
from agent_guardrails.pipeline.effects import Flow, StoreOp

__all__ = ["Outbox", "write"]

_log = logging.getLogger("agent_guardrails")


class Outbox:
    """Store writes waiting for the store; thread-safe without a lock a caller waits on.

    Keeping is a ``deque.append`` (atomic), so an event loop never waits here, even while
    a store's thread runs another call's steps (:class:`~.effects.StoreRun`). One flush
    writes at a time (a lock taken without waiting): a flush begun meanwhile returns at once
    and leaves the writing, in order, to the one under way or the next."""

    __slots__ = ("_flushing", "_waiting")

    def __init__(self) -> None:
        self._flushing = threading.Lock()
        self._waiting: deque[StoreOp] = deque()

    @property
    def pending(self) -> int:
        return len(self._waiting)

    def keep(self, op: StoreOp) -> None:
        self._waiting.append(op)

    def flush(self) -> Flow[int]:
        """Write what waits, in order, until the store fails again; returns how many wait."""
        if not self._flushing.acquire(blocking=False):  # another flush is writing
            return len(self._waiting)
        try:
            waiting = self._waiting
            while waiting:
                op = waiting[0]  # only the flush takes from the left: the head stays put
                try:
                    yield op
                except StoreUnavailable:
                    break
                waiting.popleft()
        finally:
            self._flushing.release()
        return len(self._waiting)

    def wait_for_flush(self, timeout: float) -> None:
        """Wait, at most ``timeout`` seconds, for a flush under way (on another thread) to
        end, so that closing writes, or counts as lost, what is left rather than what that
        flush is writing. Blocks: never on an event loop's thread."""
        if self._flushing.acquire(timeout=timeout):
            self._flushing.release()

    def warn_if_pending(self, where: str) -> None:
        if self._waiting:
            _log.warning(
                "agent-guardrails: %d audit/ledger writes could not reach %s and are lost "
                "with this process; check the store and 'agent-guardrails audit verify'",
                len(self._waiting),
                where,
            )


def write(op: StoreOp, outbox: Outbox) -> Flow[object]:
    """Do ``op``; if the store is unavailable keep it in ``outbox`` for later."""
    if outbox.pending:  # keep the order: behind what already waits
        outbox.keep(op)
        return None
    try:
        return (yield op)
    except StoreUnavailable:
        outbox.keep(op)
        return None
