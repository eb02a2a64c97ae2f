"""The async twins of the store protocols (:mod:`.base`): the same operations, awaited.

For every method ``name`` of :class:`~.base.Ledger`, :class:`~.base.Dials`,
:class:`~.base.PackRegistry`, :class:`~.base.AuditLog` and :class:`~.base.OutcomeLog` there
is a coroutine method ``a<name>`` with the same parameters, results and errors; every backend
implements both, so one store object serves sync callers (the CLI, sync agents) and async
ones (served agents) without blocking their event loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

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
    VerifyResult,
)

__all__ = [
    "AsyncAuditLog",
    "AsyncDials",
    "AsyncLedger",
    "AsyncOutcomeLog",
    "AsyncPackRegistry",
    "AsyncStore",
]


@runtime_checkable
class AsyncLedger(Protocol):
    """:class:`~.base.Ledger`, awaited: the same operations, parameters and results."""

    async def asnapshot(
        self, *, dial_key: str, counter_keys: Sequence[str], call_key: str
    ) -> Snapshot:
        """:meth:`~.base.Ledger.snapshot`."""
        ...

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
        """:meth:`~.base.Ledger.reserve`."""
        ...

    async def areserve_many(
        self,
        items: Sequence[tuple[str, Sequence[Charge]]],
        *,
        audit: Sequence[AuditEvent] = (),
        force: bool = False,
        now: float | None = None,
    ) -> ReserveResult:
        """:meth:`~.base.Ledger.reserve_many`."""
        ...

    async def astart(self, call_key: str, *, audit: AuditEvent | None = None) -> bool:
        """:meth:`~.base.Ledger.start`."""
        ...

    async def afinish(
        self,
        call_key: str,
        *,
        ok: bool,
        actual_cost: float | None = None,
        result: str | None = None,
        audit: AuditEvent | None = None,
    ) -> None:
        """:meth:`~.base.Ledger.finish`."""
        ...

    async def arelease(self, call_key: str, *, audit: AuditEvent | None = None) -> None: ...

    async def acall_record(self, call_key: str) -> CallRecord | None: ...

    async def ain_doubt(self) -> list[CallRecord]: ...

    async def aopen_calls(self) -> list[CallRecord]: ...

    async def acounters(self, prefix: str = "") -> dict[str, float]: ...


@runtime_checkable
class AsyncDials(Protocol):
    """:class:`Dials`, awaited."""

    async def aget_level(self, dial_key: str) -> int | None: ...

    async def aset_level(
        self,
        dial_key: str,
        level: int,
        *,
        by: str,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
    ) -> LevelChange: ...

    async def alevel_history(self, dial_key: str | None = None) -> list[LevelChange]: ...

    async def aset_kill_switch(
        self, scope: Scope, engaged: bool, *, by: str, reason: str
    ) -> KillSwitch: ...

    async def akill_switches(self) -> list[KillSwitch]: ...


@runtime_checkable
class AsyncPackRegistry(Protocol):
    """:class:`PackRegistry`, awaited."""

    async def asave_pack(
        self, name: str, version: str, digest: str, source: str, *, by: str
    ) -> PackVersion: ...

    async def aactivate_pack(
        self, name: str, version: str, *, by: str, reason: str = ""
    ) -> PackVersion: ...

    async def aactive_pack(self) -> PackVersion | None: ...

    async def apack_versions(self, name: str | None = None) -> list[PackVersion]: ...


@runtime_checkable
class AsyncAuditLog(Protocol):
    """:class:`AuditLog`, awaited."""

    async def aappend_audit(self, event: AuditEvent) -> AuditRecord | None: ...

    async def aaudit_records(
        self, *, after: int = 0, limit: int | None = None
    ) -> list[AuditRecord]: ...

    async def afind_audit(self, dedupe: str) -> AuditRecord | None: ...

    async def averify_audit(self) -> VerifyResult: ...


@runtime_checkable
class AsyncOutcomeLog(Protocol):
    """:class:`OutcomeLog`, awaited."""

    async def arecord_outcome(self, outcome: Outcome) -> None: ...

    async def aoutcomes(
        self, *, metric: str | None = None, since: float = 0.0
    ) -> list[Outcome]: ...


@runtime_checkable
class AsyncStore(
    AsyncLedger, AsyncDials, AsyncPackRegistry, AsyncAuditLog, AsyncOutcomeLog, Protocol
):
    """:class:`~.base.Store`, awaited: every method of every concern as ``a<name>``, plus ``url``
    and ``aclose()``. Every backend is both (see the module docstring)."""

    url: str

    async def aclose(self) -> None:
        """:meth:`~.base.Store.close`, awaited: closes the sync and the async connections."""
        ...
