"""Gate evidence: what the gates keep of the audit log, so an evaluation counts rows.

The gates (:mod:`agent_guardrails.ops.gate_evidence`) read the audit log from where they
stopped last time, check the new records' chain, fold them into one :class:`GateCall` per
call and keep the few records that cut or trip windows (level changes, pack activations,
kill-switch engagements), then move a :class:`GateCheckpoint`, in one transaction. A
window is then counted by the store (:meth:`GateEvidence.gate_window`,
:meth:`GateEvidence.kpi_window`) instead of by folding every record again.

The SQL stores implement :class:`GateEvidence` (``sql/gate_evidence.sql``); the memory
store does not, and its gates fold the whole log each time (it holds little).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from agent_guardrails.store.base import GENESIS, AuditRecord

__all__ = [
    "GateCall",
    "GateCheckpoint",
    "GateEvidence",
    "KpiCohort",
    "WindowCounts",
]


@dataclass(frozen=True, slots=True)
class GateCheckpoint:
    """How far the gates have read: the last record (``seq``, ``hash``) and the latest
    time among the records read (``max_ts``; ``-inf`` before any)."""

    seq: int = 0
    hash: str = GENESIS
    max_ts: float = -math.inf

    def encode(self) -> str:
        return f"{self.seq} {self.hash} {self.max_ts!r}"

    @classmethod
    def decode(cls, value: str | None) -> GateCheckpoint:
        if value is None:
            return cls()
        seq, digest, max_ts = value.split(" ")
        return cls(int(seq), digest, float(max_ts))


@dataclass(slots=True)
class GateCall:
    """One call as a page of audit records tells it. ``scope`` (the canonical JSON of its
    decision's scope) is ``None`` when the page holds no decision of the call: the record
    then merges into a call read before, or is dropped if there is none."""

    key: str
    scope: str | None
    action: str = ""
    level: int = 0
    at: float = 0.0
    seq: int = 0
    pack_version: str = ""
    policy_failed: bool = False
    escalated: bool = False
    asked_at: float | None = None
    answered_at: float | None = None
    started_at: float | None = None
    ended: bool | None = None
    cohort: str | None = None
    entity: str | None = None


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """One scope's calls decided in a window: how many were decided, failed a policy check,
    were escalated, answered (and within their action's SLA), ran to an end, ended well,
    or started long ago with no end; the pack versions they were decided under; the audit
    records of policy failures at Execute or above; and each cohort's entities (their
    number, or the entities themselves when asked for, to join the scopes of one dial)."""

    decided: int = 0
    policy_failed: int = 0
    escalated: int = 0
    answered: int = 0
    within_sla: int = 0
    executed: int = 0
    succeeded: int = 0
    unattributed: int = 0
    versions: frozenset[str] = frozenset()
    violations: tuple[int, ...] = ()
    split: Mapping[str, int] = field(default_factory=dict)
    entities: Mapping[str, frozenset[str]] | None = None


@dataclass(frozen=True, slots=True)
class KpiCohort:
    """One cohort's values of a KPI in a window: entities, count, mean and the sum of
    squared deviations from it."""

    entities: int
    n: int
    mean: float
    m2: float


@runtime_checkable
class GateEvidence(Protocol):
    """A store that keeps gate evidence (see the module docstring)."""

    def gate_checkpoint(self) -> GateCheckpoint: ...

    def audit_page(
        self, after: int, limit: int
    ) -> tuple[list[AuditRecord], int | None, str | None]:
        """Up to ``limit`` audit records after ``after`` and the chain head's seq and hash,
        read together."""
        ...

    def save_gate_evidence(
        self,
        calls: Sequence[GateCall],
        events: Sequence[AuditRecord],
        *,
        since: GateCheckpoint,
        to: GateCheckpoint,
    ) -> bool:
        """Merge ``calls``, keep ``events`` and move the checkpoint from ``since`` to ``to``,
        in one transaction; ``False`` (nothing written) when the checkpoint is no longer
        ``since`` (another reader moved it)."""
        ...

    def gate_events(self) -> list[AuditRecord]: ...

    def gate_scopes(self) -> list[str]:
        """The scopes of the calls kept."""
        ...

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
        """``scope``'s calls decided in ``[start, end)``; a call started before
        ``unfinished_before`` with no end counts as unattributed; ``slas`` gives each
        action's approval SLA in seconds."""
        ...

    def kpi_window(self, dial: str, metric: str, start: float, end: float) -> dict[str, KpiCohort]:
        """``dial``'s outcomes of ``metric`` in ``[start, end)``, by cohort (control,
        treatment)."""
        ...
