"""The gate-evidence steps the SQL stores share (:class:`~.evidence.GateEvidence`): where
the gates stopped reading the audit log, the calls' evidence they keep, and each window's
counts and KPI cohorts, counted in SQL (``sql/gate_evidence.sql``).

:class:`GateEvidenceOperations` is the base of :class:`._operators.SQLOperations`; it holds
what every step is made of (the statement builders) and leaves running a step in a
transaction (``_read``, ``_write``) to the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from agent_guardrails.store import _rows
from agent_guardrails.store._steps import ALL, ONE, RUN, Statement, Step
from agent_guardrails.store.base import AuditRecord, canonical_json
from agent_guardrails.store.evidence import (
    GateCall,
    GateCheckpoint,
    KpiCohort,
    WindowCounts,
)

__all__ = ["GateEvidenceOperations"]

T = TypeVar("T")


class GateEvidenceOperations:
    """The gate-evidence steps, and the statement builders every SQL step uses."""

    #: The store's statements by name (rendered for its dialect and tables).
    _sql: Mapping[str, str]

    def _read(self, step: Callable[[], Step[T]]) -> T:
        """Run the step ``step()`` makes in a read transaction (one consistent view). A
        store that retries an operation makes the step again."""
        raise NotImplementedError

    def _write(self, step: Callable[[], Step[T]], *, serialise: bool = True) -> T:
        """Run ``step()`` in a write transaction. ``serialise``: the step reads and then
        writes what it read (and appends an audit record), so it must not interleave with
        another such step (SQLite: always so; PostgreSQL: takes the chain lock first)."""
        raise NotImplementedError

    def _chain_step(self, *, strict: bool = True) -> Step[bool]:
        """Before the log is read: chain records still waiting to be (PostgreSQL's outbox).
        True if that can have changed what the log holds. ``strict=False``: a damaged head
        leaves them waiting instead of raising (for verification, which names the damage)."""
        raise NotImplementedError

    def _one(self, name: str, args: Sequence[Any] = ()) -> Statement:
        return Statement(self._sql[name], args, ONE)

    def _all(self, name: str, args: Sequence[Any] = ()) -> Statement:
        return Statement(self._sql[name], args, ALL)

    def _run(self, name: str, args: Sequence[Any] = ()) -> Statement:
        return Statement(self._sql[name], args, RUN)

    # ------------------------------------------------------------------ gate evidence

    def _gate_checkpoint_step(self) -> Step[GateCheckpoint]:
        row = yield self._one("gate_checkpoint")
        return GateCheckpoint.decode(None if row is None else str(row[0]))

    def _audit_page_step(
        self, after: int, limit: int
    ) -> Step[tuple[list[AuditRecord], int | None, str | None]]:
        yield from self._chain_step()
        rows = yield self._all("audit_records", (after, limit))
        head = yield self._one("gate_audit_head")
        return (
            [_rows.audit_record(r) for r in rows],
            None if head is None else int(head[0]),
            None if head is None else str(head[1]),
        )

    def _save_gate_evidence_step(
        self,
        calls: Sequence[GateCall],
        events: Sequence[AuditRecord],
        since: GateCheckpoint,
        to: GateCheckpoint,
    ) -> Step[bool]:
        if (yield from self._gate_checkpoint_step()) != since:
            return False
        for c in calls:
            flags = (
                int(c.policy_failed),
                int(c.escalated),
                c.asked_at,
                c.answered_at,
                c.started_at,
            )
            ended = None if c.ended is None else int(c.ended)
            if c.scope is None:
                yield self._run("update_gate_call", (*flags, ended, ended, c.key))
            else:
                yield self._run(
                    "merge_gate_call",
                    (
                        c.scope,
                        c.at,
                        c.key,
                        c.action,
                        c.level,
                        c.seq,
                        c.pack_version,
                        *flags,
                        ended,
                        c.cohort,
                        c.entity,
                    ),
                )
        for r in events:
            yield self._run("add_gate_event", (r.seq, r.ts, r.kind, canonical_json(r.data)))
        yield self._run("put_gate_checkpoint", (to.encode(),))
        return True

    def _gate_events_step(self) -> Step[list[AuditRecord]]:
        rows = yield self._all("gate_events")
        return [
            AuditRecord(int(seq), float(ts), str(kind), None, json.loads(data), "", "")
            for seq, ts, kind, data in rows
        ]

    def _gate_window_step(
        self,
        scope: str,
        start: float,
        end: float,
        unfinished_before: float,
        slas: Mapping[str, float],
        entities: bool,
    ) -> Step[WindowCounts]:
        where = (scope, start, end)
        row = yield self._one("gate_counts", (unfinished_before, *where))
        decided, failed, escalated, answered, executed, succeeded, unattributed = (
            int(v or 0) for v in row[:7]
        )
        if not decided:
            return WindowCounts(entities={} if entities else None)
        violating, with_cohort = int(row[7] or 0), int(row[8] or 0)
        rows = yield self._all("gate_versions", (scope, scope, *where))
        versions = {str(r[0]) for r in rows}
        within = 0
        if answered:
            for (action,) in (yield self._all("gate_answered_actions", where)):
                sla = slas.get(str(action), 86_400.0)
                (n,) = yield self._one("gate_within_sla", (sla, scope, action, start, end))
                within += int(n)
        violations: tuple[int, ...] = ()
        if violating:
            violations = tuple(int(r[0]) for r in (yield self._all("gate_violations", where)))
        split: dict[str, int] = {}
        joined: dict[str, frozenset[str]] | None = {} if entities else None
        if with_cohort and entities:
            sets: dict[str, set[str]] = {"control": set(), "treatment": set()}
            for cohort, entity in (yield self._all("gate_split_entities", where)):
                sets[str(cohort)].add(str(entity))
            split = {k: len(v) for k, v in sets.items()}
            joined = {k: frozenset(v) for k, v in sets.items()}
        elif with_cohort:
            split = {str(k): int(n) for k, n in (yield self._all("gate_split", where))}
        return WindowCounts(
            decided,
            failed,
            escalated,
            answered,
            within,
            executed,
            succeeded,
            unattributed,
            frozenset(versions),
            violations,
            split,
            joined,
        )

    def _kpi_window_step(
        self, dial: str, metric: str, start: float, end: float
    ) -> Step[dict[str, KpiCohort]]:
        out = {}
        for cohort in ("control", "treatment"):
            where = (dial, metric, cohort, start, end)
            first = yield self._one("kpi_shift", where)
            if first is None:
                continue
            k = float(first[0])
            n, s1, s2 = yield self._one("kpi_cohort", (k, k, k, *where))
            n, s1, s2 = int(n), float(s1), float(s2)
            entities = yield from self._kpi_entities_step(where, n)
            out[cohort] = KpiCohort(entities, n, k + s1 / n, max(s2 - s1 * s1 / n, 0.0))
        return out

    #: Whether counting a cohort's entities in entity order (reading all its outcomes, no
    #: sort) can beat sorting the window's: SQLite's sort of a million entities costs
    #: about three times a read of them in order. PostgreSQL's planner chooses by itself.
    _entities_in_order = False

    def _kpi_entities_step(self, where: tuple[Any, ...], n: int) -> Step[int]:
        """The number of entities among one cohort's ``n`` outcomes in the window."""
        step = "kpi_entities"
        if self._entities_in_order:
            dial, metric, cohort, start, end = where
            first, last = yield self._one("kpi_span", (dial, metric, cohort) * 2)
            span = float(last) - float(first)
            window = min(end, float(last)) - max(start, float(first))
            if span <= 3.0 * max(window, 0.0):  # the window holds most of the outcomes
                step = "kpi_entities_in_order"
        (entities,) = yield self._one(step, where)
        return int(entities)

    def gate_checkpoint(self) -> GateCheckpoint:
        return self._read(self._gate_checkpoint_step)

    def audit_page(
        self, after: int, limit: int
    ) -> tuple[list[AuditRecord], int | None, str | None]:
        return self._read(lambda: self._audit_page_step(after, limit))

    def save_gate_evidence(
        self,
        calls: Sequence[GateCall],
        events: Sequence[AuditRecord],
        *,
        since: GateCheckpoint,
        to: GateCheckpoint,
    ) -> bool:
        return self._write(lambda: self._save_gate_evidence_step(calls, events, since, to))

    def gate_events(self) -> list[AuditRecord]:
        return self._read(self._gate_events_step)

    def gate_scopes(self) -> list[str]:
        rows = self._read(lambda: (yield self._all("gate_scopes")))
        return sorted(str(r[0]) for r in rows)

    def gate_window(
        self,
        scope: str,
        start: float,
        end: float,
        *,
        unfinished_before: float,
        slas: Mapping[str, float],
        entities: bool = False,
    ) -> WindowCounts:
        return self._read(
            lambda: self._gate_window_step(scope, start, end, unfinished_before, slas, entities)
        )

    def kpi_window(self, dial: str, metric: str, start: float, end: float) -> dict[str, KpiCohort]:
        return self._read(lambda: self._kpi_window_step(dial, metric, start, end))
