"""The steps the SQL stores share: operator steps, call and counter reads, audit reads.

:class:`SQLOperations` implements :class:`~.base.Dials`, :class:`~.base.PackRegistry`,
:class:`~.base.OutcomeLog`, the reads of :class:`~.base.AuditLog` and the operator reads of
:class:`~.base.Ledger` once, over the shared statements of ``sql/operators.sql``; the gate
evidence it inherits from :class:`._gate_evidence_ops.GateEvidenceOperations`. Each
operation is a *step* (:mod:`._steps`): a generator that yields the statements it needs and
maps their rows (:mod:`._rows`), nothing else. A store supplies the connection handling:
:meth:`SQLOperations._read` and :meth:`SQLOperations._write` run a step in a read or a write
transaction, and the store's own :meth:`SQLOperations._append_step` and
:meth:`SQLOperations._chain_step` append audit records the store's way (SQLite chains each
record at once; PostgreSQL through its outbox).

:class:`AsyncSQLOperations` adds the async twins (``aget_level``, ...), each the same step
run by :meth:`AsyncSQLOperations._aread` or :meth:`AsyncSQLOperations._awrite`: PostgreSQL
awaits the step's statements on its async connections. (SQLite runs the sync methods on its
own threads instead; see :mod:`.sqlite`.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import IO, Any, TypeVar

from agent_guardrails.errors import ConfigurationError
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store import _rows
from agent_guardrails.store._archive import BATCH, archive_prefix, check_cutoff
from agent_guardrails.store._gate_evidence_ops import GateEvidenceOperations
from agent_guardrails.store._steps import COUNT, Compute, Statement, Step
from agent_guardrails.store.base import (
    ArchiveResult,
    AuditEvent,
    AuditRecord,
    CallRecord,
    ChainCheck,
    KillSwitch,
    LevelChange,
    Outcome,
    PackVersion,
    VerifyResult,
    canonical_json,
    check_finite,
    level_data,
    pack_conflict,
)

__all__ = ["AsyncSQLOperations", "SQLOperations"]

T = TypeVar("T")

VERIFY_PAGE = 5000
"""Records read at a time when the audit chain is verified."""

Row = Sequence[Any]


class SQLOperations(GateEvidenceOperations):
    """The shared steps; see the module docstring. Mixed into the SQL stores."""

    #: ``LIMIT`` value that means no limit (the dialect's).
    _no_limit: int | None = -1
    #: ``Scope.parse`` cache for kill-switch rows (the same few keys, read on every call).
    _scopes: dict[str, Scope]
    #: The store's statements by name (rendered for its dialect and tables).
    _sql: Mapping[str, str]

    def _append_step(self, event: AuditEvent, ts: float) -> Step[AuditRecord | None]:
        """Append ``event`` to the audit log in the step's transaction."""
        raise NotImplementedError

    # ------------------------------------------------------------------ ledger reads

    def _call_record_step(self, call_key: str) -> Step[CallRecord | None]:
        row = yield self._one("call_record", (call_key,))
        return _rows.call_record(row) if row is not None else None

    def _in_doubt_step(self) -> Step[list[CallRecord]]:
        rows = yield self._all("in_doubt")
        return [_rows.call_record(r) for r in rows]

    def _open_calls_step(self) -> Step[list[CallRecord]]:
        rows = yield self._all("open_calls")
        return sorted((_rows.call_record(r) for r in rows), key=_oldest_first)

    def _counters_step(self, prefix: str) -> Step[dict[str, float]]:
        rows = yield self._all("counters", (len(prefix), prefix))
        return {str(k): float(v) for k, v in rows}

    def call_record(self, call_key: str) -> CallRecord | None:
        return self._read(lambda: self._call_record_step(call_key))

    def in_doubt(self) -> list[CallRecord]:
        return self._read(self._in_doubt_step)

    def open_calls(self) -> list[CallRecord]:
        return self._read(self._open_calls_step)

    def counters(self, prefix: str = "") -> dict[str, float]:
        return self._read(lambda: self._counters_step(prefix))

    # ------------------------------------------------------------------ dials

    def _get_level_step(self, dial_key: str) -> Step[int | None]:
        row = yield self._one("get_level", (dial_key,))
        return int(row[0]) if row is not None else None

    def _set_level_step(
        self,
        dial_key: str,
        level: int,
        by: str,
        reason: str,
        evidence: Mapping[str, Any] | None,
    ) -> Step[LevelChange]:
        now = time.time()
        old = yield from self._get_level_step(dial_key)
        change = LevelChange(dial_key, old, level, by, reason, dict(evidence or {}), now)
        yield self._run("put_level", (dial_key, level, now))
        yield self._run(
            "add_level_history",
            (dial_key, old, level, by, reason, canonical_json(change.evidence), now),
        )
        yield from self._append_step(AuditEvent("level.changed", level_data(change)), now)
        return change

    def _level_history_step(self, dial_key: str | None) -> Step[list[LevelChange]]:
        if dial_key is None:
            rows = yield self._all("level_history")
        else:
            rows = yield self._all("level_history_of", (dial_key,))
        return [_rows.level_change(r) for r in rows]

    def _set_kill_switch_step(
        self, scope: Scope, engaged: bool, by: str, reason: str
    ) -> Step[KillSwitch]:
        now = time.time()
        yield self._run("put_kill_switch", (scope.key, engaged, by, reason, now))
        kind = "kill_switch.engaged" if engaged else "kill_switch.released"
        event = AuditEvent(kind, {"scope": scope.key, "by": by, "reason": reason})
        yield from self._append_step(event, now)
        return KillSwitch(scope, engaged, by, reason, now)

    def _kill_switches_step(self) -> Step[list[KillSwitch]]:
        rows = yield self._all("kill_switches")
        return [_rows.kill_switch(r, self._scopes) for r in rows]

    def get_level(self, dial_key: str) -> int | None:
        return self._read(lambda: self._get_level_step(dial_key))

    def set_level(
        self,
        dial_key: str,
        level: int,
        *,
        by: str,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
    ) -> LevelChange:
        return self._write(lambda: self._set_level_step(dial_key, level, by, reason, evidence))

    def level_history(self, dial_key: str | None = None) -> list[LevelChange]:
        return self._read(lambda: self._level_history_step(dial_key))

    def set_kill_switch(self, scope: Scope, engaged: bool, *, by: str, reason: str) -> KillSwitch:
        return self._write(lambda: self._set_kill_switch_step(scope, engaged, by, reason))

    def kill_switches(self) -> list[KillSwitch]:
        return self._read(self._kill_switches_step)

    # ------------------------------------------------------------------ packs

    def _save_pack_step(
        self, name: str, version: str, digest: str, source: str, by: str
    ) -> Step[PackVersion]:
        now = time.time()
        row = yield self._one("find_pack", (name, version))
        if row is not None:
            existing = _rows.pack_version(row[1:])
            if existing.digest != digest:
                raise pack_conflict(name, version)
            return existing
        yield self._run("add_pack", (name, version, digest, source, by, now))
        data = {"name": name, "version": version, "digest": digest, "by": by}
        yield from self._append_step(AuditEvent("pack.saved", data), now)
        return PackVersion(name, version, digest, source, False, by, now)

    def _activate_pack_step(
        self, name: str, version: str, by: str, reason: str
    ) -> Step[PackVersion]:
        now = time.time()
        row = yield self._one("find_pack", (name, version))
        if row is None:
            raise ConfigurationError(
                f"no stored version {version} of pack {name}; apply it first "
                "('agent-guardrails policy apply FILE')"
            )
        if row[5]:  # already the active version: nothing changes, nothing is recorded
            return replace(_rows.pack_version(row[1:]), active=True)
        yield self._run("deactivate_other_packs", (row[0],))
        yield self._run("activate_pack", (row[0],))
        data = {"name": name, "version": version, "by": by, "reason": reason}
        yield from self._append_step(AuditEvent("pack.activated", data), now)
        return replace(_rows.pack_version(row[1:]), active=True)

    def _active_pack_step(self) -> Step[PackVersion | None]:
        row = yield self._one("active_pack")
        return _rows.pack_version(row) if row is not None else None

    def _pack_versions_step(self, name: str | None) -> Step[list[PackVersion]]:
        if name is None:
            rows = yield self._all("pack_versions")
        else:
            rows = yield self._all("pack_versions_of", (name,))
        return [_rows.pack_version(r) for r in rows]

    def save_pack(
        self, name: str, version: str, digest: str, source: str, *, by: str
    ) -> PackVersion:
        return self._write(lambda: self._save_pack_step(name, version, digest, source, by))

    def activate_pack(self, name: str, version: str, *, by: str, reason: str = "") -> PackVersion:
        return self._write(lambda: self._activate_pack_step(name, version, by, reason))

    def active_pack(self) -> PackVersion | None:
        return self._read(self._active_pack_step)

    def pack_versions(self, name: str | None = None) -> list[PackVersion]:
        return self._read(lambda: self._pack_versions_step(name))

    # ------------------------------------------------------------------ outcomes

    def _record_outcome_step(self, outcome: Outcome) -> Step[None]:
        o = outcome
        now = time.time()
        yield self._run(
            "add_outcome",
            (
                o.entity,
                o.cohort,
                o.metric,
                float(o.value),
                float(o.at),
                o.scope_key,
                o.level,
                o.pack_version,
            ),
        )
        yield from self._append_step(_rows.outcome_event(outcome), now)

    def _outcomes_step(self, metric: str | None, since: float) -> Step[list[Outcome]]:
        if metric is None:
            rows = yield self._all("outcomes", (float(since),))
        else:
            rows = yield self._all("outcomes_of", (float(since), metric))
        return [_rows.outcome(r) for r in rows]

    def record_outcome(self, outcome: Outcome) -> None:
        check_finite(outcome.value, "outcome value", negative_ok=True)
        self._write(lambda: self._record_outcome_step(outcome), serialise=False)

    def outcomes(self, *, metric: str | None = None, since: float = 0.0) -> list[Outcome]:
        return self._read(lambda: self._outcomes_step(metric, since))

    # ------------------------------------------------------------------ audit reads

    def _audit_records_step(self, after: int, limit: int | None) -> Step[list[AuditRecord]]:
        bound = self._no_limit if limit is None else limit
        yield from self._chain_step()
        rows = yield self._all("audit_records", (after, bound))
        return [_rows.audit_record(r) for r in rows]

    def _find_audit_step(self, dedupe: str) -> Step[AuditRecord | None]:
        row = yield self._one("find_audit", (dedupe,))
        # Chained records never change: only a record still waiting can be it.
        if row is None and (yield from self._chain_step()):
            row = yield self._one("find_audit", (dedupe,))
        return None if row is None else _rows.audit_record(row)

    def _verify_audit_step(self) -> Step[VerifyResult]:
        yield from self._chain_step(strict=False)
        return (yield from self._in_one_snapshot(self._verify_pages_step()))

    def _verify_pages_step(self) -> Step[VerifyResult]:
        """The chain head, then every record a page at a time (a log of millions of
        records is never held whole), checked against the chain and the head. The first
        page has no lower bound: a row forged below the chain (any seq) is read too."""
        head = yield self._one("verify_head")
        head_seq, head_hash, through = head if head is not None else (None, None, None)
        check = ChainCheck(*_rows.archived_through(through))
        rows = yield self._all("audit_first_page", (VERIFY_PAGE,))
        while True:
            failed: VerifyResult | None = yield Compute(_check_page, check, rows)  # CPU work
            if failed is not None:
                return failed
            if len(rows) < VERIFY_PAGE:
                return _rows.head_verdict(
                    check,
                    int(head_seq) if head_seq is not None else None,
                    str(head_hash) if head_hash is not None else None,
                )
            rows = yield self._all("audit_records", (int(rows[-1][0]), VERIFY_PAGE))

    def _in_one_snapshot(self, step: Step[T]) -> Step[T]:
        """``step``, whose statements must read one snapshot of the database. A read
        (``_read``) is one on SQLite; PostgreSQL's driver makes it a transaction."""
        return (yield from step)

    def audit_records(self, *, after: int = 0, limit: int | None = None) -> list[AuditRecord]:
        return self._read(lambda: self._audit_records_step(after, limit))

    def find_audit(self, dedupe: str) -> AuditRecord | None:
        return self._read(lambda: self._find_audit_step(dedupe))

    def verify_audit(self) -> VerifyResult:
        return self._read(self._verify_audit_step)

    # ------------------------------------------------------------------ retention

    def _archived_through_step(self) -> Step[tuple[int, str]]:
        row = yield self._one("audit_archived_through")
        return _rows.archived_through(None if row is None else row[0])

    def _archive_batch_step(self, after: int) -> Step[list[AuditRecord]]:
        rows = yield self._all("archive_batch", (after, BATCH))
        return [_rows.audit_record(r) for r in rows]

    def _drop_archived_step(self, last_seq: int, last_hash: str) -> Step[int]:
        """Delete the archived records up to ``last_seq`` and move where the kept chain
        starts, in one transaction; 0 when another run did it already."""
        through, _ = yield from self._archived_through_step()
        if last_seq <= through:
            return 0
        row = yield self._one("audit_hash_at", (last_seq,))
        if row is None or row[0] != last_hash:
            raise ValueError(
                f"record {last_seq} is not the one archived (changed or deleted meanwhile); "
                "run 'agent-guardrails audit verify'"
            )
        count = yield Statement(self._sql["delete_archived"], (last_seq,), COUNT)
        yield self._run("put_audit_archived_through", (f"{last_seq} {last_hash}",))
        return int(count)

    def _prune_calls_step(self, before: float) -> Step[int]:
        count = yield Statement(self._sql["prune_calls"], (before,), COUNT)
        yield self._run("prune_gate_calls", (before,))
        return int(count)

    def audit_archived_through(self) -> tuple[int, str]:
        return self._read(self._archived_through_step)

    def archive_audit(self, before: float, out: IO[str] | str | os.PathLike[str]) -> ArchiveResult:
        check_cutoff(before)
        self._read(self._chain_step)  # records still waiting (PostgreSQL's outbox)
        return archive_prefix(
            before,
            out,
            self.audit_archived_through(),
            lambda after: self._read(lambda: self._archive_batch_step(after)),
            lambda seq, digest: self._write(lambda: self._drop_archived_step(seq, digest)),
        )

    def prune_calls(self, before: float) -> int:
        cutoff = check_cutoff(before)
        return self._write(lambda: self._prune_calls_step(cutoff), serialise=False)


class AsyncSQLOperations(SQLOperations):
    """:class:`SQLOperations` and their async twins: the same steps, awaited."""

    async def _aread(self, step: Callable[[], Step[T]]) -> T:
        """:meth:`SQLOperations._read`, awaited."""
        raise NotImplementedError

    async def _awrite(self, step: Callable[[], Step[T]], *, serialise: bool = True) -> T:
        """:meth:`SQLOperations._write`, awaited."""
        raise NotImplementedError

    async def acall_record(self, call_key: str) -> CallRecord | None:
        return await self._aread(lambda: self._call_record_step(call_key))

    async def ain_doubt(self) -> list[CallRecord]:
        return await self._aread(self._in_doubt_step)

    async def aopen_calls(self) -> list[CallRecord]:
        return await self._aread(self._open_calls_step)

    async def acounters(self, prefix: str = "") -> dict[str, float]:
        return await self._aread(lambda: self._counters_step(prefix))

    async def aget_level(self, dial_key: str) -> int | None:
        return await self._aread(lambda: self._get_level_step(dial_key))

    async def aset_level(
        self,
        dial_key: str,
        level: int,
        *,
        by: str,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
    ) -> LevelChange:
        return await self._awrite(
            lambda: self._set_level_step(dial_key, level, by, reason, evidence)
        )

    async def alevel_history(self, dial_key: str | None = None) -> list[LevelChange]:
        return await self._aread(lambda: self._level_history_step(dial_key))

    async def aset_kill_switch(
        self, scope: Scope, engaged: bool, *, by: str, reason: str
    ) -> KillSwitch:
        return await self._awrite(lambda: self._set_kill_switch_step(scope, engaged, by, reason))

    async def akill_switches(self) -> list[KillSwitch]:
        return await self._aread(self._kill_switches_step)

    async def asave_pack(
        self, name: str, version: str, digest: str, source: str, *, by: str
    ) -> PackVersion:
        return await self._awrite(lambda: self._save_pack_step(name, version, digest, source, by))

    async def aactivate_pack(
        self, name: str, version: str, *, by: str, reason: str = ""
    ) -> PackVersion:
        return await self._awrite(lambda: self._activate_pack_step(name, version, by, reason))

    async def aactive_pack(self) -> PackVersion | None:
        return await self._aread(self._active_pack_step)

    async def apack_versions(self, name: str | None = None) -> list[PackVersion]:
        return await self._aread(lambda: self._pack_versions_step(name))

    async def arecord_outcome(self, outcome: Outcome) -> None:
        check_finite(outcome.value, "outcome value", negative_ok=True)
        await self._awrite(lambda: self._record_outcome_step(outcome), serialise=False)

    async def aoutcomes(self, *, metric: str | None = None, since: float = 0.0) -> list[Outcome]:
        return await self._aread(lambda: self._outcomes_step(metric, since))

    async def aaudit_records(
        self, *, after: int = 0, limit: int | None = None
    ) -> list[AuditRecord]:
        return await self._aread(lambda: self._audit_records_step(after, limit))

    async def afind_audit(self, dedupe: str) -> AuditRecord | None:
        return await self._aread(lambda: self._find_audit_step(dedupe))

    async def averify_audit(self) -> VerifyResult:
        return await self._aread(self._verify_audit_step)  # (hashing: Compute, off the loop)


def _check_page(check: ChainCheck, rows: Sequence[Sequence[Any]]) -> VerifyResult | None:
    """Read ``rows`` (the ``audit_records`` columns) as records and feed them to ``check``."""
    return check.feed(_rows.audit_record(r) for r in rows)


def _oldest_first(record: CallRecord) -> tuple[float, str]:
    return record.updated_at, record.key
