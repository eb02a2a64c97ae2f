"""What the gates count, from the whole audit log or from the evidence a store keeps.

A window's calls are counted by a :class:`CallSource`: :class:`FoldedCalls` counts calls
folded from audit records in memory (every evaluation as of a past time, the memory store,
the scorecard's weeks); :class:`StoredCalls` asks a store that keeps gate evidence
(:mod:`agent_guardrails.store.evidence`) to count its rows, after :func:`sync` has read the
audit log from where the gates stopped last time.

:func:`sync` checks the chain of every record it reads (from the last one read, whose hash
the checkpoint keeps, to the chain head), so a verdict never rests on a record that does
not verify; records read by an earlier evaluation are not checked again (``agent-guardrails
audit verify`` checks the whole log). A call's evidence outlives the audit records it came
from: archiving the log (``audit archive``) keeps what the gates have read, and
``prune_calls`` removes the evidence of calls decided before its cutoff.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from agent_guardrails.engine import gate_stats as stats
from agent_guardrails.policy.levels import AutonomyLevel
from agent_guardrails.policy.pack import PolicyPack
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store.base import AuditRecord, Outcome, canonical_json, verify_chain
from agent_guardrails.store.evidence import (
    GateCall,
    GateCheckpoint,
    GateEvidence,
    WindowCounts,
)

__all__ = [
    "EVENT_KINDS",
    "CallSource",
    "FoldedCalls",
    "StoredCalls",
    "fold_page",
    "sla_of",
    "sync",
]

EVENT_KINDS = frozenset({"kill_switch.engaged", "level.changed", "pack.activated"})
"""The records that cut or trip windows, kept whole."""
PAGE = 5000
DEFAULT_SLA = 86_400.0


def sla_of(pack: PolicyPack, action_name: str) -> float:
    """How long a human may take to answer a call of ``action_name``: its approval's
    ``sla``, else its ``timeout``, else a day."""
    action = pack.action(action_name)
    rule = action.approval if action is not None else None
    if rule is None:
        return DEFAULT_SLA
    return rule.sla if rule.sla is not None else rule.timeout


# ---------------------------------------------------------------------------- counting


class CallSource(Protocol):
    """Counts each scope's calls and KPI outcomes in a window."""

    def dials(self) -> set[str]:
        """The dial keys with calls to count."""
        ...

    def count(self, dial: str, start: float, end: float, grace: float) -> WindowCounts:
        """``dial``'s calls decided in ``[start, end)``; one started more than ``grace``
        seconds before ``end`` with no end recorded is unattributed."""
        ...

    def kpi(
        self, dial: str, metric: str, start: float, end: float
    ) -> dict[str, tuple[int, stats.Moments]]:
        """``dial``'s outcomes of ``metric`` in ``[start, end)`` by cohort: the number of
        entities and the values' moments."""
        ...


class FoldedCalls:
    """Counts calls folded in memory (:func:`fold_page` over the whole log) and a list of
    KPI outcomes, under ``pack``: each call's scope is mapped to its dial, each action to
    its SLA. A call whose decision was not among the records does not count."""

    def __init__(
        self, calls: Iterable[GateCall], outcomes: Sequence[Outcome], pack: PolicyPack
    ) -> None:
        dial_of: dict[str, str] = {}
        sla: dict[str, float] = {}
        self._by_dial: dict[str, list[tuple[GateCall, float]]] = {}
        for c in calls:
            if c.scope is None:
                continue
            if c.scope not in dial_of:
                scope = Scope.from_mapping(json.loads(c.scope))
                dial_of[c.scope] = pack.dial_scope(scope).key
            if c.action not in sla:
                sla[c.action] = sla_of(pack, c.action)
            self._by_dial.setdefault(dial_of[c.scope], []).append((c, sla[c.action]))
        self._kpis: dict[str, list[Outcome]] = {}
        for o in outcomes:
            self._kpis.setdefault(o.scope_key, []).append(o)

    def dials(self) -> set[str]:
        return set(self._by_dial)

    def count(self, dial: str, start: float, end: float, grace: float) -> WindowCounts:
        decided = policy_failed = escalated = answered = within = 0
        executed = succeeded = unattributed = 0
        versions: set[str] = set()
        violations: list[int] = []
        split: dict[str, set[str]] = {"control": set(), "treatment": set()}
        for c, sla in self._by_dial.get(dial, ()):
            if not start <= c.at < end:
                continue
            decided += 1
            versions.add(c.pack_version)
            if c.policy_failed:
                policy_failed += 1
                if c.level >= AutonomyLevel.EXECUTE:
                    violations.append(c.seq)
            escalated += c.escalated
            if c.asked_at is not None and c.answered_at is not None:
                answered += 1
                within += c.answered_at - c.asked_at <= sla
            if c.started_at is not None:
                if c.ended is None:
                    unattributed += c.started_at < end - grace
                else:
                    executed += 1
                    succeeded += c.ended
            if c.cohort in split and c.entity is not None:
                split[c.cohort].add(c.entity)
        return WindowCounts(
            decided,
            policy_failed,
            escalated,
            answered,
            within,
            executed,
            succeeded,
            unattributed,
            frozenset(versions),
            tuple(violations),
            {k: len(v) for k, v in split.items()},
        )

    def kpi(
        self, dial: str, metric: str, start: float, end: float
    ) -> dict[str, tuple[int, stats.Moments]]:
        entities: dict[str, set[str]] = {"control": set(), "treatment": set()}
        values: dict[str, list[float]] = {"control": [], "treatment": []}
        for o in self._kpis.get(dial, ()):
            if o.metric != metric or not start <= o.at < end or o.cohort not in values:
                continue
            entities[o.cohort].add(o.entity)
            values[o.cohort].append(o.value)
        out = {}
        for cohort, vs in values.items():
            if vs:  # mean and squared deviations in two passes, with exact sums
                mean = math.fsum(vs) / len(vs)
                m2 = math.fsum((x - mean) ** 2 for x in vs)
                out[cohort] = (len(entities[cohort]), stats.Moments(len(vs), mean, m2))
        return out


class StoredCalls:
    """Counts the gate evidence a store keeps, under ``pack``: each call's scope is mapped
    to its dial, each action to its SLA."""

    def __init__(self, store: GateEvidence, pack: PolicyPack) -> None:
        self._store = store
        self._pack = pack
        self._scopes: dict[str, list[str]] = {}
        for text in store.gate_scopes():
            scope = Scope.from_mapping(json.loads(text))
            self._scopes.setdefault(pack.dial_scope(scope).key, []).append(text)
        self._slas = {name: sla_of(pack, name) for name in pack.actions}

    def dials(self) -> set[str]:
        return set(self._scopes)

    def count(self, dial: str, start: float, end: float, grace: float) -> WindowCounts:
        scopes = self._scopes.get(dial, [])
        parts = [
            self._store.gate_window(
                scope,
                start,
                end,
                unfinished_before=end - grace,
                slas=self._slas,
                entities=len(scopes) > 1,  # a dial of several scopes joins their entities
            )
            for scope in scopes
        ]
        if len(parts) == 1:
            return parts[0]
        entities = {
            cohort: frozenset().union(*((p.entities or {}).get(cohort, ()) for p in parts))
            for cohort in ("control", "treatment")
        }
        return WindowCounts(
            sum(p.decided for p in parts),
            sum(p.policy_failed for p in parts),
            sum(p.escalated for p in parts),
            sum(p.answered for p in parts),
            sum(p.within_sla for p in parts),
            sum(p.executed for p in parts),
            sum(p.succeeded for p in parts),
            sum(p.unattributed for p in parts),
            frozenset().union(*(p.versions for p in parts)),
            tuple(sorted(seq for p in parts for seq in p.violations)),
            {k: len(v) for k, v in entities.items()},
        )

    def kpi(
        self, dial: str, metric: str, start: float, end: float
    ) -> dict[str, tuple[int, stats.Moments]]:
        return {
            cohort: (k.entities, stats.Moments(k.n, k.mean, max(k.m2, 0.0)))
            for cohort, k in self._store.kpi_window(dial, metric, start, end).items()
        }


# ---------------------------------------------------------------------------- reading


def sync(store: GateEvidence) -> tuple[GateCheckpoint, bool]:
    """Read the audit log from the store's checkpoint to its end, check each record's
    chain, fold the records into gate evidence and move the checkpoint, a page per
    transaction. Returns the checkpoint and whether every record read verified (a record
    that does not stops the reading there: nothing from it on is kept)."""
    while True:
        at = store.gate_checkpoint()
        records, head_seq, head_hash = store.audit_page(at.seq, PAGE)
        start = (at.seq, at.hash)
        if records and records[0].seq != at.seq + 1:
            start = _archived_start(store, records[0], start)
        if not verify_chain(records, start_seq=start[0], start_hash=start[1]).ok:
            return at, False
        last_seq, last_hash = (records[-1].seq, records[-1].hash) if records else start
        if len(records) < PAGE:  # the end of the log: it must be the chain head
            if head_seq is None or head_hash is None or head_seq < last_seq:
                return at, False
            if head_seq == last_seq and head_hash != last_hash:
                return at, False
        if not records:
            return at, True
        calls, events = fold_page(records)
        to = GateCheckpoint(last_seq, last_hash, max(at.max_ts, max(r.ts for r in records)))
        store.save_gate_evidence(calls, events, since=at, to=to)
        # A reader that moved the checkpoint first made this save a no-op: read on from it.


def _archived_start(
    store: GateEvidence, first: AuditRecord, start: tuple[int, str]
) -> tuple[int, str]:
    """Where the kept chain starts when records after the checkpoint were archived before
    the gates read them (their evidence is lost to the gates, as to a fold of the log)."""
    through = getattr(store, "audit_archived_through", None)
    if through is None:
        return start
    seq, digest = through()
    return (seq, digest) if seq == first.seq - 1 and seq > start[0] else start


def fold_page(records: Iterable[AuditRecord]) -> tuple[list[GateCall], list[AuditRecord]]:
    """Audit records (a page, or the whole log) as gate evidence: a :class:`GateCall` per
    call they mention and the records of :data:`EVENT_KINDS`."""
    calls: dict[str, GateCall] = {}
    events = []
    scope_text: dict[tuple[tuple[str, Any], ...], str] = {}  # a few scopes, many calls
    for r in records:
        kind, data, key = r.kind, r.data, r.call_key
        if kind in EVENT_KINDS:
            events.append(r)
            continue
        if key is None:
            continue
        call = calls.get(key)
        if kind == "decision":
            if call is None:
                call = calls[key] = GateCall(key, None)
            if call.scope is None:  # its first decision
                call.scope = _scope_text(data.get("scope") or {}, scope_text)
                call.action = str(data.get("action", ""))
                call.level = int(data.get("level", 0))
                call.at, call.seq = r.ts, r.seq
                call.pack_version = str(data.get("pack_version", ""))
                call.cohort, call.entity = data.get("cohort"), data.get("cohort_entity")
            checks = data.get("validators") or ()
            if checks and any(not v.get("passed", True) and not v.get("error") for v in checks):
                call.policy_failed = True
            decided = data.get("decision")
            if decided == "require_approval":
                call.escalated = True
            elif decided == "simulate":  # at Assist a run is a draft, and a draft ended well
                call.started_at, call.ended = r.ts, True
            continue
        if kind not in _CALL_KINDS:
            continue
        if call is None:
            call = calls[key] = GateCall(key, None)
        if kind == "approval.requested":
            asked = data.get("asked_at")
            call.asked_at = float(asked) if isinstance(asked, int | float) else r.ts
        elif kind == "approval.resolved":
            if call.answered_at is None:
                call.answered_at = r.ts
        elif kind == "execution.started":
            call.started_at = r.ts
        elif kind == "execution.finished":
            call.ended = True
        elif call.ended is not True:  # execution.failed
            call.ended = False
    return list(calls.values()), events


def _scope_text(scope: Any, seen: dict[tuple[tuple[str, Any], ...], str]) -> str:
    """A decision's scope as canonical JSON, made once per distinct scope."""
    items = tuple(sorted(scope.items()))
    text = seen.get(items)
    if text is None:
        text = seen[items] = canonical_json(scope)
    return text


_CALL_KINDS = frozenset(
    {
        "approval.requested",
        "approval.resolved",
        "execution.started",
        "execution.finished",
        "execution.failed",
    }
)
