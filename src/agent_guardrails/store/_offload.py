"""The async twins of a store whose operations are synchronous: each ``a<name>`` runs the sync
method ``<name>`` where it cannot block the event loop.

:class:`OffloadedAsync` is mixed into :class:`~.memory.MemoryStore` and
:class:`~.sqlite.SQLiteStore`. It defines every method of
:class:`~agent_guardrails.store.base.AsyncStore` once, as "run the sync method through
:meth:`OffloadedAsync._offload`", and each store says how in its ``_offload``:

- the memory store runs it right on the loop when its lock is free (a non-blocking
  acquire), and in a worker thread when another thread holds it (:mod:`.memory`);
- SQLite runs it on the store's own threads, one writer and a few readers, and awaits the
  result (:mod:`.sqlite`).

Reads and writes are told apart (``write=True``) because SQLite gives them different
threads. Nothing else differs: the sync method is the operation, so sync and async share
every step, every check and every error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from agent_guardrails.engine.decision import Charge
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store.base import (
    AuditEvent,
    AuditRecord,
    CallRecord,
    KillSwitch,
    LevelChange,
    Outcome,
    PackVersion,
    ReserveResult,
    Snapshot,
    Store,
    VerifyResult,
)

__all__ = ["OffloadedAsync"]

P = ParamSpec("P")
T = TypeVar("T")


class OffloadedAsync(Store):
    """Every ``a<name>`` of :class:`~.base.AsyncStore` as ``<name>`` run by
    :meth:`_offload`. List it *after* any base that implements the sync methods (its own
    are the protocol's stubs)."""

    async def _offload(
        self, write: bool, method: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``method(*args, **kwargs)`` without blocking the running event loop."""
        raise NotImplementedError

    # ------------------------------------------------------------------ ledger

    async def asnapshot(
        self, *, dial_key: str, counter_keys: Sequence[str], call_key: str
    ) -> Snapshot:
        return await self._offload(
            False, self.snapshot, dial_key=dial_key, counter_keys=counter_keys, call_key=call_key
        )

    async def areserve(
        self,
        call_key: str,
        charges: Sequence[Charge],
        *,
        audit: AuditEvent | None = None,
        force: bool = False,
        now: float | None = None,
        start: AuditEvent | None = None,
    ) -> ReserveResult:
        return await self._offload(
            True, self.reserve, call_key, charges, audit=audit, force=force, now=now, start=start
        )

    async def areserve_many(
        self,
        items: Sequence[tuple[str, Sequence[Charge]]],
        *,
        audit: Sequence[AuditEvent] = (),
        force: bool = False,
        now: float | None = None,
    ) -> ReserveResult:
        return await self._offload(
            True, self.reserve_many, items, audit=audit, force=force, now=now
        )

    async def astart(self, call_key: str, *, audit: AuditEvent | None = None) -> bool:
        return await self._offload(True, self.start, call_key, audit=audit)

    async def afinish(
        self,
        call_key: str,
        *,
        ok: bool,
        actual_cost: float | None = None,
        result: str | None = None,
        audit: AuditEvent | None = None,
    ) -> None:
        await self._offload(
            True, self.finish, call_key, ok=ok, actual_cost=actual_cost, result=result, audit=audit
        )

    async def arelease(self, call_key: str, *, audit: AuditEvent | None = None) -> None:
        await self._offload(True, self.release, call_key, audit=audit)

    async def acall_record(self, call_key: str) -> CallRecord | None:
        return await self._offload(False, self.call_record, call_key)

    async def ain_doubt(self) -> list[CallRecord]:
        return await self._offload(False, self.in_doubt)

    async def acounters(self, prefix: str = "") -> dict[str, float]:
        return await self._offload(False, self.counters, prefix)

    # ------------------------------------------------------------------ dials

    async def aget_level(self, dial_key: str) -> int | None:
        return await self._offload(False, self.get_level, dial_key)

    async def aset_level(
        self,
        dial_key: str,
        level: int,
        *,
        by: str,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
    ) -> LevelChange:
        return await self._offload(
            True, self.set_level, dial_key, level, by=by, reason=reason, evidence=evidence
        )

    async def alevel_history(self, dial_key: str | None = None) -> list[LevelChange]:
        return await self._offload(False, self.level_history, dial_key)

    async def aset_kill_switch(
        self, scope: Scope, engaged: bool, *, by: str, reason: str
    ) -> KillSwitch:
        return await self._offload(True, self.set_kill_switch, scope, engaged, by=by, reason=reason)

    async def akill_switches(self) -> list[KillSwitch]:
        return await self._offload(False, self.kill_switches)

    # ------------------------------------------------------------------ packs

    async def asave_pack(
        self, name: str, version: str, digest: str, source: str, *, by: str
    ) -> PackVersion:
        return await self._offload(True, self.save_pack, name, version, digest, source, by=by)

    async def aactivate_pack(
        self, name: str, version: str, *, by: str, reason: str = ""
    ) -> PackVersion:
        return await self._offload(True, self.activate_pack, name, version, by=by, reason=reason)

    async def aactive_pack(self) -> PackVersion | None:
        return await self._offload(False, self.active_pack)

    async def apack_versions(self, name: str | None = None) -> list[PackVersion]:
        return await self._offload(False, self.pack_versions, name)

    # ------------------------------------------------------------------ audit, outcomes

    async def aappend_audit(self, event: AuditEvent) -> AuditRecord | None:
        return await self._offload(True, self.append_audit, event)

    async def aaudit_records(
        self, *, after: int = 0, limit: int | None = None
    ) -> list[AuditRecord]:
        return await self._offload(False, self.audit_records, after=after, limit=limit)

    async def afind_audit(self, dedupe: str) -> AuditRecord | None:
        return await self._offload(False, self.find_audit, dedupe)

    async def averify_audit(self) -> VerifyResult:
        return await self._offload(False, self.verify_audit)

    async def arecord_outcome(self, outcome: Outcome) -> None:
        await self._offload(True, self.record_outcome, outcome)

    async def aoutcomes(self, *, metric: str | None = None, since: float = 0.0) -> list[Outcome]:
        return await self._offload(False, self.outcomes, metric=metric, since=since)
