"""Harm judged while agents run: the gates' floors and caps, off the call's path.

A trip-wire (a policy violation, a kill-switch trip) lowers a scope's level in the call
that trips it (:mod:`.trip_wires`). Evidence of harm that needs counting, a rate's whole
interval under its floor (``demote_below_success_rate``, ...) or escalations whose lower
bound exceeds their cap, is judged by the gates. So that nobody has to run
``agent-guardrails gates`` for it, each :class:`~agent_guardrails.pipeline.guardrails.Guardrails`
has a :class:`GateWatch`: after a call ends, at most once per ``every`` seconds
(``Guardrails(..., gate_watch=60.0)`` by default; ``None`` turns it off), a background
thread evaluates every scope's gate under the active pack and applies each ``demote``
verdict (one level down, recorded as ``agent-guardrails gates`` with the evaluation as
evidence, as :meth:`~agent_guardrails.ops.gates.Gates.demote` does). Promotions are never
applied here. Nothing waits for it: a call only checks the time; the evaluation runs on its
own thread (never on an event loop), one at a time, and a failure (the store down) is logged
and tried again at the next interval. The first evaluation comes ``every`` seconds after the
object is made. On the SQL stores an evaluation reads only the audit records written since
the last one (:mod:`agent_guardrails.ops.gate_evidence`); the memory store folds its whole
log. ``close()`` waits for an evaluation in flight.

Several processes sharing a store each watch it; two that find the same harm set the same
lower level (a level is set, not decremented).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from agent_guardrails.errors import ConfigurationError

if TYPE_CHECKING:
    from agent_guardrails.policy.pack import PolicyPack
    from agent_guardrails.store.base import LevelChange, Store

__all__ = ["GateWatch"]

log = logging.getLogger("agent_guardrails.gate_watch")


class GateWatch:
    """See the module docstring. ``policy`` returns the pack to judge under (the active
    one); ``every`` is the least time between evaluations, in seconds (``None``: off)."""

    def __init__(
        self,
        store: Store,
        policy: Callable[[], PolicyPack],
        every: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if every is not None and not (math.isfinite(every) and every >= 0):
            raise ConfigurationError(
                f"gate_watch must be a number of seconds >= 0 or None (off), got {every!r}"
            )
        self.store = store
        self.policy = policy
        self.every = every
        self.clock = clock
        self._last = clock()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.runs = 0
        self.demoted: list[LevelChange] = []

    def poke(self) -> None:
        """A call ended: start an evaluation if the last one began ``every`` seconds ago
        and none is running. Never blocks on the store."""
        if self.every is None or self.clock() - self._last < self.every:
            return
        if not self._lock.acquire(blocking=False):  # another thread is at it: never wait
            return
        try:
            now = self.clock()
            if self._closed or self._thread is not None or now - self._last < self.every:
                return
            self._last = now
            self._thread = threading.Thread(
                target=self._run, name="agent-guardrails-gate-watch", daemon=True
            )
            self._thread.start()
        finally:
            self._lock.release()

    def close(self, timeout: float = 30.0) -> None:
        """Stop watching; wait up to ``timeout`` seconds for an evaluation in flight."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        try:
            from agent_guardrails.ops.gates import Gates  # operator code, loaded on first use

            changes = Gates(self.store, self.policy()).demote()
            self.demoted.extend(changes)
            for change in changes:
                log.warning(
                    "gate watch: %s demoted from %s to %s (%s)",
                    change.scope_key,
                    change.old_level,
                    change.new_level,
                    change.reason,
                )
        except Exception:
            log.warning("gate watch: the evaluation failed; trying again later", exc_info=True)
        finally:
            with self._lock:
                self.runs += 1
                self._thread = None
