"""The steps the SQL stores share: operator steps, call and counter reads, audit reads.

:class:`SQLOperations` implements :class:`~.base.Dials`, :class:`~.base.PackRegistry`,
:class:`~.base.OutcomeLog`, the reads of :class:`~.base.AuditLog` and the operator reads of
:class:`~.base.Ledger` once, over the shared statements of ``sql/operators.sql``. A store
supplies the connection handling: :meth:`SQLOperations._read` and :meth:`SQLOperations._write`
run a step (a function of a :class:`Tx`) in a read or a write transaction, and the
:class:`Tx` they hand it runs named statements and appends audit records the store's way
(SQLite chains each record at once; PostgreSQL through its outbox). Each step is its
statements and their row mapping (:mod:`._rows`), nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from agent_guardrails.errors import ConfigurationError
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store import _rows
from agent_guardrails.store.base import (
    AuditEvent,
    AuditRecord,
    CallRecord,
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

__all__ = ["SQLOperations", "Tx"]

T = TypeVar("T")
Row = Sequence[Any]


class Tx(Protocol):
    """One transaction of a SQL store, as the shared steps see it."""

    def one(self, name: str, args: Sequence[Any] = ()) -> Row | None:
        """Run statement ``name``; its first row, if any."""
        ...

    def all(self, name: str, args: Sequence[Any] = ()) -> list[Row]:
        """Run statement ``name``; every row."""
        ...

    def run(self, name: str, args: Sequence[Any] = ()) -> None:
        """Run statement ``name`` for its effect."""
        ...

    def append(self, event: AuditEvent, ts: float) -> AuditRecord | None:
        """Append ``event`` to the audit log in this transaction."""
        ...

    def chain(self, *, strict: bool = True) -> bool:
        """Before the log is read: chain records still waiting to be (PostgreSQL's outbox).
        True if that can have changed what the log holds. ``strict=False``: a damaged head
        leaves them waiting instead of raising (for verification, which names the damage)."""
        ...


class SQLOperations:
    """The shared steps; see the module docstring. Mixed into the SQL stores."""

    #: ``LIMIT`` value that means no limit (the dialect's).
    _no_limit: int | None = -1
    #: ``Scope.parse`` cache for kill-switch rows (the same few keys, read on every call).
    _scopes: dict[str, Scope]

    def _read(self, step: Callable[[Tx], T]) -> T:
        """Run ``step`` in a read transaction (one consistent view)."""
        raise NotImplementedError

    def _write(self, step: Callable[[Tx], T], *, serialise: bool = True) -> T:
        """Run ``step`` in a write transaction. ``serialise``: the step reads and then
        writes what it read (and appends an audit record), so it must not interleave with
        another such step (SQLite: always so; PostgreSQL: takes the chain lock first)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ ledger reads

    def call_record(self, call_key: str) -> CallRecord | None:
        row = self._read(lambda tx: tx.one("call_record", (call_key,)))
        return _rows.call_record(row) if row is not None else None

    def in_doubt(self) -> list[CallRecord]:
        return [_rows.call_record(r) for r in self._read(lambda tx: tx.all("in_doubt"))]

    def counters(self, prefix: str = "") -> dict[str, float]:
        rows = self._read(lambda tx: tx.all("counters", (len(prefix), prefix)))
        return {str(k): float(v) for k, v in rows}

    # ------------------------------------------------------------------ dials

    def get_level(self, dial_key: str) -> int | None:
        row = self._read(lambda tx: tx.one("get_level", (dial_key,)))
        return int(row[0]) if row is not None else None

    def set_level(
        self,
        dial_key: str,
        level: int,
        *,
        by: str,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
    ) -> LevelChange:
        def step(tx: Tx) -> LevelChange:
            now = time.time()
            row = tx.one("get_level", (dial_key,))
            old = int(row[0]) if row is not None else None
            change = LevelChange(dial_key, old, level, by, reason, dict(evidence or {}), now)
            tx.run("put_level", (dial_key, level, now))
            tx.run(
                "add_level_history",
                (dial_key, old, level, by, reason, canonical_json(change.evidence), now),
            )
            tx.append(AuditEvent("level.changed", level_data(change)), now)
            return change

        return self._write(step)

    def level_history(self, dial_key: str | None = None) -> list[LevelChange]:
        if dial_key is None:
            rows = self._read(lambda tx: tx.all("level_history"))
        else:
            rows = self._read(lambda tx: tx.all("level_history_of", (dial_key,)))
        return [_rows.level_change(r) for r in rows]

    def set_kill_switch(self, scope: Scope, engaged: bool, *, by: str, reason: str) -> KillSwitch:
        def step(tx: Tx) -> KillSwitch:
            now = time.time()
            tx.run("put_kill_switch", (scope.key, engaged, by, reason, now))
            kind = "kill_switch.engaged" if engaged else "kill_switch.released"
            tx.append(AuditEvent(kind, {"scope": scope.key, "by": by, "reason": reason}), now)
            return KillSwitch(scope, engaged, by, reason, now)

        return self._write(step)

    def kill_switches(self) -> list[KillSwitch]:
        rows = self._read(lambda tx: tx.all("kill_switches"))
        return [_rows.kill_switch(r, self._scopes) for r in rows]

    # ------------------------------------------------------------------ packs

    def save_pack(
        self, name: str, version: str, digest: str, source: str, *, by: str
    ) -> PackVersion:
        def step(tx: Tx) -> PackVersion:
            now = time.time()
            row = tx.one("find_pack", (name, version))
            if row is not None:
                existing = _rows.pack_version(row[1:])
                if existing.digest != digest:
                    raise pack_conflict(name, version)
                return existing
            tx.run("add_pack", (name, version, digest, source, by, now))
            data = {"name": name, "version": version, "digest": digest, "by": by}
            tx.append(AuditEvent("pack.saved", data), now)
            return PackVersion(name, version, digest, source, False, by, now)

        return self._write(step)

    def activate_pack(self, name: str, version: str, *, by: str, reason: str = "") -> PackVersion:
        def step(tx: Tx) -> PackVersion:
            now = time.time()
            row = tx.one("find_pack", (name, version))
            if row is None:
                raise ConfigurationError(
                    f"no stored version {version} of pack {name}; apply it first "
                    "('agent-guardrails policy apply FILE')"
                )
            tx.run("deactivate_other_packs", (row[0],))
            tx.run("activate_pack", (row[0],))
            data = {"name": name, "version": version, "by": by, "reason": reason}
            tx.append(AuditEvent("pack.activated", data), now)
            return replace(_rows.pack_version(row[1:]), active=True)

        return self._write(step)

    def active_pack(self) -> PackVersion | None:
        row = self._read(lambda tx: tx.one("active_pack"))
        return _rows.pack_version(row) if row is not None else None

    def pack_versions(self, name: str | None = None) -> list[PackVersion]:
        if name is None:
            rows = self._read(lambda tx: tx.all("pack_versions"))
        else:
            rows = self._read(lambda tx: tx.all("pack_versions_of", (name,)))
        return [_rows.pack_version(r) for r in rows]

    # ------------------------------------------------------------------ outcomes

    def record_outcome(self, outcome: Outcome) -> None:
        check_finite(outcome.value, "outcome value", negative_ok=True)
        o = outcome
        args = (o.entity, o.cohort, o.metric, float(o.value), float(o.at), o.scope_key)

        def step(tx: Tx) -> None:
            now = time.time()
            tx.run("add_outcome", args)
            tx.append(_rows.outcome_event(outcome), now)

        self._write(step, serialise=False)

    def outcomes(self, *, metric: str | None = None, since: float = 0.0) -> list[Outcome]:
        if metric is None:
            rows = self._read(lambda tx: tx.all("outcomes", (float(since),)))
        else:
            rows = self._read(lambda tx: tx.all("outcomes_of", (float(since), metric)))
        return [_rows.outcome(r) for r in rows]

    # ------------------------------------------------------------------ audit reads

    def audit_records(self, *, after: int = 0, limit: int | None = None) -> list[AuditRecord]:
        bound = self._no_limit if limit is None else limit

        def step(tx: Tx) -> list[Row]:
            tx.chain()
            return tx.all("audit_records", (after, bound))

        return [_rows.audit_record(r) for r in self._read(step)]

    def find_audit(self, dedupe: str) -> AuditRecord | None:
        def step(tx: Tx) -> Row | None:
            row = tx.one("find_audit", (dedupe,))
            # Chained records never change: only a record still waiting can be it.
            if row is None and tx.chain():
                row = tx.one("find_audit", (dedupe,))
            return row

        row = self._read(step)
        return None if row is None else _rows.audit_record(row)

    def verify_audit(self) -> VerifyResult:
        def step(tx: Tx) -> list[Row]:
            tx.chain(strict=False)
            return tx.all("verify_audit")

        return _rows.verify_head_rows(self._read(step))
