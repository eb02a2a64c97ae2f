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

from agent_guardrails.errors import StoreUnavailable
from agent_guardrails.pipeline.effects import Flow, StoreOp

__all__ = ["Outbox", "write"]

_log = logging.getLogger("agent_guardrails")


class Outbox:
    """Store writes waiting for the store; thread-safe."""

    __slots__ = ("_lock", "_waiting")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: list[StoreOp] = []

    @property
    def pending(self) -> int:
        return len(self._waiting)

    def keep(self, op: StoreOp) -> None:
        with self._lock:
            self._waiting.append(op)

    def flush(self) -> Flow[int]:
        """Write what waits, in order, until the store fails again; returns how many wait."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for i, op in enumerate(waiting):
            try:
                yield op
            except StoreUnavailable:
                with self._lock:
                    self._waiting[:0] = waiting[i:]
                break
        return len(self._waiting)

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
