"""``memory://``: a process-local store for tests, notebooks and the benchmarks' baseline.

Everything lives in dictionaries behind one lock; nothing survives the process. Use
``sqlite:///path.db`` (the default) or ``postgresql://...`` to share state between processes.

Calls with an *ephemeral* key (one starting with ``~``: the guard's key for a call made
outside a graph, never retried or replayed under the same key) are forgotten once they end
(finished, failed or released), so a long-running process does not keep a record per call;
their audit records are kept like every other. While such a call is reserved or running
its record is kept as usual, so it still shows in :meth:`MemoryStore.in_doubt`.

The snapshot's pack digest is the active pack's, kept beside the pack list and replaced by
``activate_pack``. Charges, ``actual_cost`` and outcome values are checked
(:func:`~agent_guardrails.store.base.check_finite`) before the lock is taken: a NaN would
otherwise make a counter NaN, and every later comparison with it false.

**Async** (``await store.areserve(...)`` and every other ``a<name>``, from
:class:`~._offload.OffloadedAsync`): the operations are a few dictionary steps under one
short lock, with no I/O, so an async method runs the sync one right on the event loop,
without a thread hop, *when the lock is free*: it takes the lock with a non-blocking
``acquire``, and the sync method re-enters it (the lock is an ``RLock``; the memory store's
benchmark rows pay about 20 ns per operation for that). When another thread holds the lock
at that moment (a sync caller, or an async call already handed to a thread) the loop does
not wait for it: the call runs in the loop's default executor instead, and is awaited. So
the loop never blocks on the lock (``blockbuster`` flags a contended ``Lock.acquire``), and
an uncontended call costs a coroutine and one lock operation more than the sync one
(``benchmarks/store.py --only async``: 11-12 µs for a snapshot, reserve and finish, against
9-10 µs sync).
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import IO, Any, ParamSpec, TypeVar

from agent_guardrails.engine.decision import Charge
from agent_guardrails.errors import ConfigurationError
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store._archive import BATCH, archive_prefix, check_cutoff
from agent_guardrails.store._offload import OffloadedAsync
from agent_guardrails.store.base import (
    GENESIS,
    ArchiveResult,
    AuditEvent,
    AuditRecord,
    CallRecord,
    KillSwitch,
    LevelChange,
    Outcome,
    PackVersion,
    ReserveResult,
    Snapshot,
    VerifyResult,
    canonical_json,
    chain_hash,
    check_charges,
    check_finite,
    level_data,
    pack_conflict,
    verify_chain,
)

__all__ = ["MemoryStore"]

P = ParamSpec("P")
T = TypeVar("T")

_EPS = 1e-9
_HOLDS = frozenset(("reserved", "started", "finished"))  # a key in these states replays
_ENDED = frozenset(("finished", "failed", "released"))


class MemoryStore(OffloadedAsync):
    """In-process store. Thread-safe; every operation holds one lock. Async too: see the
    module docstring."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        # Re-entrant: an async method holds it (non-blocking acquire) around the sync one.
        self._lock = threading.RLock()
        self._counters: dict[str, float] = {}
        self._calls: dict[str, CallRecord] = {}
        self._levels: dict[str, int] = {}
        self._level_history: list[LevelChange] = []
        self._switches: dict[str, KillSwitch] = {}
        self._engaged: tuple[Scope, ...] = ()
        self._packs: list[PackVersion] = []
        self._active_digest: str | None = None  # the active pack's, for the snapshot
        self._outcomes: list[Outcome] = []
        self._audit: list[AuditRecord] = []
        # Records appended and not yet chained, flat: ts, kind, call_key, data, ts, ... (one
        # list rather than a tuple per record: fewer objects for the garbage collector).
        self._unchained: list[Any] = []
        self._dedupe: dict[str, int] = {}  # dedupe string -> the record's seq
        # The last archived record (seq, hash): self._audit[0] is record seq + 1.
        self._archived: tuple[int, str] = (0, GENESIS)

    # ------------------------------------------------------------------ hot path

    def snapshot(self, *, dial_key: str, counter_keys: Sequence[str], call_key: str) -> Snapshot:
        used: dict[str, float] = {}
        with self._lock:
            counters = self._counters
            for k in counter_keys:
                used[k] = counters.get(k, 0.0)
            return Snapshot(
                self._levels.get(dial_key),
                self._engaged,
                used,
                self._calls.get(call_key),
                self._active_digest,
            )

    def reserve(
        self,
        call_key: str,
        charges: Sequence[Charge],
        *,
        audit: AuditEvent | None = None,
        force: bool = False,
        now: float | None = None,
        start: AuditEvent | None = None,
    ) -> ReserveResult:
        # reserve_many() for one call, without its batch bookkeeping (the hot path).
        check_charges(charges)
        with self._lock:
            prior = self._calls.get(call_key)
            if prior is not None and prior.state in _HOLDS:
                return ReserveResult(ok=True, replay=True)
            counters = self._counters
            if len(charges) == 1:
                charge = charges[0]
                amount = 0.0 + charge.amount  # as reserve_many() adds it up
                if not force:
                    used = counters.get(charge.key, 0.0)
                    if used + amount > charge.limit + _EPS:
                        return ReserveResult(ok=False, breach=charge, used=used)
                counters[charge.key] = counters.get(charge.key, 0.0) + amount
            elif charges:
                wanted: dict[str, float] = {}
                for charge in charges:
                    wanted[charge.key] = wanted.get(charge.key, 0.0) + charge.amount
                if not force:
                    for charge in charges:
                        used = counters.get(charge.key, 0.0)
                        if used + wanted[charge.key] > charge.limit + _EPS:
                            return ReserveResult(ok=False, breach=charge, used=used)
                for counter, amount in wanted.items():
                    counters[counter] = counters.get(counter, 0.0) + amount
            stamp = time.time() if now is None else now
            state = "reserved" if start is None else "started"
            self._calls[call_key] = CallRecord(call_key, state, tuple(charges), None, stamp)
            if audit is not None:
                self._append(audit)
            if start is not None:
                self._append(start)
                return ReserveResult(True, started=True)
            return ReserveResult(True)

    def reserve_many(
        self,
        items: Sequence[tuple[str, Sequence[Charge]]],
        *,
        audit: Sequence[AuditEvent] = (),
        force: bool = False,
        now: float | None = None,
    ) -> ReserveResult:
        for _key, charges in items:
            check_charges(charges)
        with self._lock:
            fresh = [
                (key, charges)
                for key, charges in items
                if (prior := self._calls.get(key)) is None or prior.state not in _HOLDS
            ]
            if not fresh:
                return ReserveResult(ok=True, replay=True)
            counters = self._counters
            wanted: dict[str, float] = {}
            for _key, charges in fresh:
                for charge in charges:
                    wanted[charge.key] = wanted.get(charge.key, 0.0) + charge.amount
            if not force:
                for _key, charges in fresh:
                    for charge in charges:
                        used = counters.get(charge.key, 0.0)
                        if used + wanted[charge.key] > charge.limit + _EPS:
                            return ReserveResult(ok=False, breach=charge, used=used)
            for counter, amount in wanted.items():
                counters[counter] = counters.get(counter, 0.0) + amount
            stamp = time.time() if now is None else now
            for key, charges in fresh:
                self._calls[key] = CallRecord(key, "reserved", tuple(charges), None, stamp)
            for event in audit:
                self._append(event)
            return ReserveResult(ok=True, replay=len(fresh) < len(items))

    def start(self, call_key: str, *, audit: AuditEvent | None = None) -> bool:
        with self._lock:
            rec = self._calls.get(call_key)
            if rec is not None and rec.state != "reserved":
                return False
            charges = rec.charges if rec is not None else ()
            self._calls[call_key] = CallRecord(call_key, "started", charges, None, time.time())
            if audit is not None:
                self._append(audit)
            return True

    def finish(
        self,
        call_key: str,
        *,
        ok: bool,
        actual_cost: float | None = None,
        result: str | None = None,
        audit: AuditEvent | None = None,
    ) -> None:
        if actual_cost is not None:
            check_finite(actual_cost, "actual_cost")
        with self._lock:
            rec = self._calls.get(call_key)
            if rec is None or rec.state in _ENDED:
                if audit is not None:
                    self._append(audit)
                return
            if ok:
                if actual_cost is not None:
                    for charge in rec.charges:
                        if charge.kind == "budget":
                            self._counters[charge.key] += actual_cost - charge.amount
            else:
                self._undo(rec)
            if call_key[:1] == "~":  # ephemeral: never replayed, so nothing to remember
                del self._calls[call_key]
            else:
                state = "finished" if ok else "failed"
                self._calls[call_key] = CallRecord(
                    call_key, state, rec.charges, result, time.time()
                )
            if audit is not None:
                self._append(audit)

    def release(self, call_key: str, *, audit: AuditEvent | None = None) -> None:
        with self._lock:
            rec = self._calls.get(call_key)
            if rec is not None and rec.state in ("reserved", "started"):
                self._undo(rec)
                if call_key[:1] == "~":  # ephemeral: see the module docstring
                    del self._calls[call_key]
                else:
                    self._calls[call_key] = replace(rec, state="released", updated_at=time.time())
            if audit is not None:
                self._append(audit)

    def _undo(self, rec: CallRecord) -> None:
        for charge in rec.charges:
            self._counters[charge.key] = self._counters.get(charge.key, 0.0) - charge.amount

    def append_audit(self, event: AuditEvent) -> AuditRecord | None:
        with self._lock:
            return self._append(event)

    def _append(self, event: AuditEvent) -> AuditRecord | None:
        """Queue the record; it is numbered now and hashed into the chain when first read
        (nothing outside this process can touch it in between), which keeps appends cheap."""
        if event.dedupe is not None:
            if event.dedupe in self._dedupe:
                return None
            base = self._archived[0]
            self._dedupe[event.dedupe] = base + len(self._audit) + len(self._unchained) // 4 + 1
        self._unchained += (time.time(), event.kind, event.call_key, event.data)
        return None

    def _chain(self) -> list[AuditRecord]:
        """Hash every queued record into the chain, in append order. Holds the lock."""
        queued = self._unchained
        if queued:
            audit = self._audit
            base, prev = self._archived
            if audit:
                prev = audit[-1].hash
            for i in range(0, len(queued), 4):
                ts, kind, call_key, raw = queued[i : i + 4]
                seq = base + len(audit) + 1
                data = dict(raw)
                digest = chain_hash(prev, seq, ts, kind, call_key, canonical_json(data))
                audit.append(AuditRecord(seq, ts, kind, call_key, data, prev, digest))
                prev = digest
            queued.clear()
        return self._audit

    # ------------------------------------------------------------------ operators

    def call_record(self, call_key: str) -> CallRecord | None:
        with self._lock:
            return self._calls.get(call_key)

    def in_doubt(self) -> list[CallRecord]:
        with self._lock:
            return [r for r in self._calls.values() if r.state == "started"]

    def open_calls(self) -> list[CallRecord]:
        with self._lock:
            held = [r for r in self._calls.values() if r.state in ("reserved", "started")]
        return sorted(held, key=lambda r: (r.updated_at, r.key))

    def counters(self, prefix: str = "") -> dict[str, float]:
        with self._lock:
            return {k: v for k, v in self._counters.items() if k.startswith(prefix)}

    def get_level(self, dial_key: str) -> int | None:
        with self._lock:
            return self._levels.get(dial_key)

    def set_level(
        self,
        dial_key: str,
        level: int,
        *,
        by: str,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
    ) -> LevelChange:
        with self._lock:
            change = LevelChange(
                dial_key,
                self._levels.get(dial_key),
                level,
                by,
                reason,
                dict(evidence or {}),
                time.time(),
            )
            self._levels[dial_key] = level
            self._level_history.append(change)
            self._append(AuditEvent("level.changed", level_data(change)))
            return change

    def level_history(self, dial_key: str | None = None) -> list[LevelChange]:
        with self._lock:
            return [c for c in self._level_history if dial_key is None or c.scope_key == dial_key]

    def set_kill_switch(self, scope: Scope, engaged: bool, *, by: str, reason: str) -> KillSwitch:
        with self._lock:
            switch = KillSwitch(scope, engaged, by, reason, time.time())
            self._switches[scope.key] = switch
            self._engaged = tuple(s.scope for s in self._switches.values() if s.engaged)
            self._append(
                AuditEvent(
                    "kill_switch.engaged" if engaged else "kill_switch.released",
                    {"scope": scope.key, "by": by, "reason": reason},
                )
            )
            return switch

    def kill_switches(self) -> list[KillSwitch]:
        with self._lock:
            return list(self._switches.values())

    def save_pack(
        self, name: str, version: str, digest: str, source: str, *, by: str
    ) -> PackVersion:
        with self._lock:
            for existing in self._packs:
                if existing.name == name and existing.version == version:
                    if existing.digest != digest:
                        raise pack_conflict(name, version)
                    return existing
            pv = PackVersion(name, version, digest, source, False, by, time.time())
            self._packs.append(pv)
            self._append(
                AuditEvent(
                    "pack.saved", {"name": name, "version": version, "digest": digest, "by": by}
                )
            )
            return pv

    def activate_pack(self, name: str, version: str, *, by: str, reason: str = "") -> PackVersion:
        with self._lock:
            target = next((p for p in self._packs if p.name == name and p.version == version), None)
            if target is None:
                raise ConfigurationError(
                    f"no stored version {version} of pack {name}; apply it first "
                    "('agent-guardrails policy apply FILE')"
                )
            if target.active:  # already the active version: nothing changes or is recorded
                return target
            self._packs = [replace(p, active=(p is target)) for p in self._packs]
            self._active_digest = target.digest
            self._append(
                AuditEvent(
                    "pack.activated", {"name": name, "version": version, "by": by, "reason": reason}
                )
            )
            return replace(target, active=True)

    def active_pack(self) -> PackVersion | None:
        with self._lock:
            return next((p for p in self._packs if p.active), None)

    def pack_versions(self, name: str | None = None) -> list[PackVersion]:
        with self._lock:
            return [p for p in self._packs if name is None or p.name == name]

    def record_outcome(self, outcome: Outcome) -> None:
        check_finite(outcome.value, "outcome value", negative_ok=True)
        with self._lock:
            self._outcomes.append(outcome)
            self._append(outcome.event())

    def outcomes(self, *, metric: str | None = None, since: float = 0.0) -> list[Outcome]:
        with self._lock:
            return [
                o
                for o in self._outcomes
                if (metric is None or o.metric == metric) and o.at >= since
            ]

    def audit_records(self, *, after: int = 0, limit: int | None = None) -> list[AuditRecord]:
        with self._lock:
            first = max(0, after - self._archived[0])
            audit = self._chain()
            return audit[first:] if limit is None else audit[first : first + max(0, limit)]

    def find_audit(self, dedupe: str) -> AuditRecord | None:
        with self._lock:
            seq = self._dedupe.get(dedupe)
            if seq is None or seq <= self._archived[0]:
                return None
            return self._chain()[seq - 1 - self._archived[0]]

    def verify_audit(self) -> VerifyResult:
        with self._lock:
            seq, digest = self._archived
            return verify_chain(list(self._chain()), start_seq=seq, start_hash=digest)

    # ------------------------------------------------------------------ retention

    def audit_archived_through(self) -> tuple[int, str]:
        with self._lock:
            return self._archived

    def archive_audit(self, before: float, out: IO[str] | str | os.PathLike[str]) -> ArchiveResult:
        check_cutoff(before)

        def batch(after: int) -> list[AuditRecord]:
            return self.audit_records(after=after, limit=BATCH)

        return archive_prefix(before, out, self.audit_archived_through(), batch, self._drop)

    def _drop(self, last_seq: int, last_hash: str) -> int:
        """Delete the records up to ``last_seq`` (archived) and start the chain after it."""
        with self._lock:
            base = self._archived[0]
            if last_seq <= base:
                return 0  # archived and deleted already
            audit = self._chain()
            if audit[last_seq - base - 1].hash != last_hash:
                raise ValueError(f"record {last_seq} changed while it was archived")
            del audit[: last_seq - base]
            self._archived = (last_seq, last_hash)
            self._dedupe = {k: v for k, v in self._dedupe.items() if v > last_seq}
            return last_seq - base

    def prune_calls(self, before: float) -> int:
        cutoff = check_cutoff(before)
        with self._lock:
            old = [k for k, r in self._calls.items() if r.state in _ENDED and r.updated_at < cutoff]
            for key in old:
                del self._calls[key]
            return len(old)

    def close(self) -> None:
        return None

    # ------------------------------------------------------------------ async

    async def _offload(
        self, write: bool, method: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``method`` on the loop if the lock is free now, else in the default executor."""
        lock = self._lock
        if lock.acquire(blocking=False):
            try:
                return method(*args, **kwargs)
            finally:
                lock.release()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(method, *args, **kwargs))

    async def aclose(self) -> None:
        return None
