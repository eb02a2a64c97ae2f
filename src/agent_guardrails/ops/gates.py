"""Gates in operation: count what each scope did, judge it, record the verdict, demote at
once on harm, and let a person apply a promotion.

The evidence is what the pipeline already records, nothing more for an application to do:
every call's ``decision`` (its scope, level, pack version and validator results),
``approval.requested``/``approval.resolved`` (when a human was asked and answered),
``execution.started``/``execution.finished``/``execution.failed`` (whether the tool ran and
ended well), kill-switch and level changes, in the hash-chained audit log; plus the business
KPIs the application records (:mod:`agent_guardrails.ops.outcomes`), each with its cohort
and the scope's dial key. At Assist a run is a draft: a simulated call counts as a run that
ended well (an application that judges its drafts records that as a KPI). :func:`tally`
folds them into :class:`~agent_guardrails.engine.gates.Window` s and the pure
:func:`~agent_guardrails.engine.gates.evaluate` judges them.

Windows: a gate's ``window`` long, the last one ending now, ``consecutive_windows`` of them.
A level change on the scope or a pack activation starts a new window: nothing before it
counts. The scope's *tenure*, everything it did since that change, is counted too: a
promotion needs its rates on a bound that holds however often the gates look. A call that
started more than :data:`UNFINISHED_GRACE` seconds before the end of its window and
recorded no end makes the window ``invalid`` (its outcome is unknown).

Every evaluation made by :meth:`Gates.evaluate` with ``record=True`` is appended to the audit
log (``gate.evaluated``, with its inputs, method and verdict; its id is the SHA-256 of that
record's content); a demotion (``apply``) and a promotion (``promote``) name it as evidence.

>>> from agent_guardrails.store import open_store
>>> from agent_guardrails.ops.operations import apply_pack
>>> store = open_store("memory://")
>>> _ = apply_pack(store, '''
... name: p
... version: 1
... levels: [{scope: {workflow: news}, level: assist, ceiling: optimize}]
... gates: [{from: assist, to: execute, min_samples: 50, min_success_rate: 0.9}]
... ''', by="ana")
>>> [v.verdict for v in Gates(store).evaluate("workflow=news", record=False)]
['hold']
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from agent_guardrails.engine.gate_metrics import combined
from agent_guardrails.engine.gates import GateVerdict, Window, evaluate, gate_for
from agent_guardrails.errors import ConfigurationError
from agent_guardrails.ops.gate_evidence import (
    CallSource,
    FoldedCalls,
    StoredCalls,
    fold_page,
    sync,
)
from agent_guardrails.policy.levels import AutonomyLevel
from agent_guardrails.policy.pack import GateRule, PolicyPack
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store.base import (
    AuditEvent,
    AuditRecord,
    KillSwitch,
    LevelChange,
    Outcome,
    Store,
    read_audit,
)
from agent_guardrails.store.evidence import GateCall, GateEvidence

__all__ = [
    "AUTO_ACTOR",
    "UNFINISHED_GRACE",
    "Evaluation",
    "Evidence",
    "Gates",
    "demote_on_kill",
    "replay",
    "tally",
]

AUTO_ACTOR = "agent-guardrails gates"
"""Who a demotion applied by the gates is recorded as."""
UNFINISHED_GRACE = 3600.0
"""How long a call may run before a missing end makes its window untrustworthy."""


@dataclass(slots=True)
class _Log:
    """The audit log, folded: calls by key, and the events that cut or trip windows."""

    calls: list[GateCall] = field(default_factory=list)
    cuts: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    global_cuts: list[float] = field(default_factory=list)
    kill_trips: list[tuple[float, int, Scope]] = field(default_factory=list)
    demotions: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    levels: dict[str, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything the gates read from a store, as it stood at ``now``: the records that
    cut or trip windows (``log``), what counts each window's calls and KPI outcomes
    (``calls``), and whether the audit chain verified."""

    now: float
    log: _Log
    calls: CallSource
    chain_ok: bool


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A recorded verdict: its id (the SHA-256 of what was recorded) and audit record."""

    id: str
    verdict: GateVerdict
    audit_seq: int | None


def tally(
    records: Iterable[AuditRecord],
    pack: PolicyPack,
    *,
    now: float,
    outcomes: Sequence[Outcome] = (),
    dials: Iterable[str] = (),
) -> dict[str, list[Window]]:
    """Each scope's windows (oldest first) as of ``now``, from the audit ``records`` and
    the KPI ``outcomes``. Scopes: the dial keys calls were decided under or levels were set
    on, plus ``dials``."""
    log = _fold([r for r in records if r.ts <= now], pack)
    return _tally(log, pack, now, FoldedCalls(log.calls, outcomes, pack), dials)


def _tally(
    log: _Log, pack: PolicyPack, now: float, calls: CallSource, dials: Iterable[str]
) -> dict[str, list[Window]]:
    out: dict[str, list[Window]] = {}
    for dial in sorted(set(log.levels) | calls.dials() | set(dials)):
        scope = Scope.parse(dial)
        level = _level_at(log, dial, pack, now)
        rule = gate_for(pack, scope, level, up=True) or gate_for(pack, scope, level, up=False)
        spans = _spans(rule, log, dial, now)
        out[dial] = [_window(start, end, calls, dial, rule, log, scope) for start, end in spans]
    return out


class Gates:
    """The gates of one store, under its active pack (or ``pack``)."""

    def __init__(
        self,
        store: Store,
        pack: PolicyPack | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.clock = clock
        if pack is None:
            from agent_guardrails.ops.operations import active_policy

            pack = active_policy(store)
        self.pack = pack

    def evaluate(
        self, scope: str | None = None, *, now: float | None = None, record: bool = True
    ) -> list[GateVerdict]:
        """Every scope's verdict (or only ``scope``'s, a dial key or a ``dim=value`` form),
        as of ``now``; with ``record``, each is appended to the audit log."""
        return [e.verdict for e in self.evaluations(scope, now=now, record=record)]

    def evaluations(
        self, scope: str | None = None, *, now: float | None = None, record: bool = True
    ) -> list[Evaluation]:
        """Like :meth:`evaluate`, with each verdict's id and audit record number."""
        evidence = self.read(now)
        wanted = None if scope is None else self.pack.dial_scope(Scope.parse(scope)).key
        return [
            self._record(v, evidence.now) if record else _unrecorded(v)
            for v in self.judge(evidence, () if wanted is None else (wanted,))
            if wanted is None or v.scope == wanted
        ]

    def read(
        self, now: float | None = None, records: Iterable[AuditRecord] | None = None
    ) -> Evidence:
        """What the gates read from the store, as it stood at ``now`` (default: now).

        A store that keeps gate evidence (:mod:`agent_guardrails.ops.gate_evidence`) is
        read from where the gates stopped last time and its rows are counted, unless
        ``now`` is before a record already read (a past evaluation: the log is folded as it
        stood then). ``records``: the audit log, when the caller has read it already."""
        if records is None and isinstance(self.store, GateEvidence):
            checkpoint, chain_ok = sync(self.store)
            at = max(self.clock(), checkpoint.max_ts) if now is None else now
            if checkpoint.max_ts <= at:
                log = _fold(self.store.gate_events(), self.pack)
                return Evidence(at, log, StoredCalls(self.store, self.pack), chain_ok)
        at = self.clock() if now is None else now
        source = read_audit(self.store) if records is None else records
        log = _fold((r for r in source if r.ts <= at), self.pack)
        outcomes = [o for o in self.store.outcomes() if o.at <= at]
        return Evidence(
            at,
            log,
            FoldedCalls(log.calls, outcomes, self.pack),
            self.store.verify_audit().ok,
        )

    def judge(
        self, evidence: Evidence, dials: Iterable[str] = (), *, tenure: bool = True
    ) -> list[GateVerdict]:
        """The verdict of every scope in ``evidence`` (and of ``dials``). ``tenure=False``:
        the rates over each scope's time at its level are judged on its windows alone, with
        no count of what came before them; for callers that act only on demotions, which
        never depend on those rates (the gate watch)."""
        log, now, calls = evidence.log, evidence.now, evidence.calls
        windows = _tally(log, self.pack, now, calls, dials)
        return [
            self._judge(
                dial,
                series,
                functools.partial(_tenure, series, log, dial, calls) if tenure else None,
                log,
                now,
                evidence.chain_ok,
            )
            for dial, series in windows.items()
        ]

    def weekly(self, evidence: Evidence, dial: str, *, weeks: int) -> list[Window]:
        """``dial``'s last ``weeks`` calendar-free weeks ending at ``evidence.now`` (oldest
        first), uncut by level or pack changes: for reports, not for verdicts."""
        scope = Scope.parse(dial)
        level = _level_at(evidence.log, dial, self.pack, evidence.now)
        rule = gate_for(self.pack, scope, level, up=True) or gate_for(
            self.pack, scope, level, up=False
        )
        week = 7 * 86_400.0
        return [
            _window(
                evidence.now - (i + 1) * week,
                evidence.now - i * week,
                evidence.calls,
                dial,
                rule,
                evidence.log,
                scope,
            )
            for i in range(weeks - 1, -1, -1)
        ]

    def _judge(
        self,
        dial: str,
        windows: list[Window],
        tenure: Callable[[], Window] | None,
        log: _Log,
        now: float,
        chain_ok: bool,
    ) -> GateVerdict:
        scope = Scope.parse(dial)
        level = _level_at(log, dial, self.pack, now)
        up = gate_for(self.pack, scope, level, up=True)
        down = gate_for(self.pack, scope, level, up=False)
        cooldown = up.cooldown if up is not None else 0.0
        cooling = any(now - at < cooldown for at in log.demotions.get(dial, ()))
        with _span(dial, level) as done:
            verdict = evaluate(
                dial,
                level,
                windows,
                up=up,
                down=down,
                ceiling=int(self.pack.ceiling_for(scope)),
                chain_ok=chain_ok,
                cooling=cooling,
                tenure=tenure,
            )
            done(verdict)
        return verdict

    def _record(self, verdict: GateVerdict, now: float) -> Evaluation:
        data = {**verdict.as_dict(), "evaluated_at": now}
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        data["evaluation_id"] = digest
        tag = f"gate.evaluated:{digest}"
        rec = self.store.append_audit(AuditEvent("gate.evaluated", data, None, tag))
        if rec is None:  # recorded before, or a store that numbers records lazily
            rec = self.store.find_audit(tag)
        return Evaluation(digest, verdict, rec.seq if rec is not None else None)

    def apply(self, evaluations: Sequence[Evaluation] | None = None) -> list[LevelChange]:
        """Apply every ``demote`` among ``evaluations`` (default: evaluate and record every
        scope now): one level down, recorded as :data:`AUTO_ACTOR` with the evaluation as
        evidence. Promotions are never applied here: see :meth:`promote`."""
        return self._lower(
            e
            for e in (self.evaluations() if evaluations is None else evaluations)
            if e.verdict.verdict == "demote"
            and e.verdict.level > AutonomyLevel.ASSIST
            and self._still_at(e.verdict)  # moved since (another process's watch, a person)
        )

    def _lower(self, demotions: Iterable[Evaluation]) -> list[LevelChange]:
        """One level down for each demotion, with its evaluation as evidence."""
        changes = []
        for e in demotions:
            v = e.verdict
            evidence = {
                "evaluation_id": e.id,
                "audit_seq": e.audit_seq,
                "verdict": "demote",
                "explanation": v.explanation,
            }
            reason = f"demoted by its gate: {', '.join(v.reasons)}"
            changes.append(
                self.store.set_level(
                    v.scope, v.level - 1, by=AUTO_ACTOR, reason=reason, evidence=evidence
                )
            )
        return changes

    def _still_at(self, verdict: GateVerdict) -> bool:
        """Whether the scope's dial is still at the level ``verdict`` judged. Several
        processes each run a gate watch: the one that demotes first moves the dial, and
        the others' demotion of the same evidence no longer applies (a look just before
        the change: two watches within the same few milliseconds can still both record)."""
        live = self.store.get_level(verdict.scope)
        level = (
            live if live is not None else int(self.pack.initial_level(Scope.parse(verdict.scope)))
        )
        return level == verdict.level

    def demote(self) -> list[LevelChange]:
        """Evaluate every scope now and apply each ``demote`` (one level down, recorded as
        :data:`AUTO_ACTOR` with its evaluation as evidence); only those verdicts are recorded
        (what the pipeline's gate watch runs, see :mod:`agent_guardrails.pipeline.gate_watch`)."""
        evidence = self.read()
        found = [
            v
            for v in self.judge(evidence, tenure=False)
            if v.verdict == "demote" and v.level > AutonomyLevel.ASSIST and self._still_at(v)
        ]
        now = self.clock()
        return self._lower([self._record(v, now) for v in found])

    def promote(
        self, scope: str, *, by: str, reason: str = "", override: bool = False
    ) -> LevelChange:
        """Raise ``scope`` one level, by a person (``by``), when its gate passes now (the
        evaluation's id is recorded as evidence). ``override=True`` raises it without a
        passing gate; ``reason`` is then required and recorded."""
        if not by.strip():
            raise ValueError("promote needs --by: the person applying the promotion")
        self.pack.named_dial(Scope.parse(scope))
        (e,) = self.evaluations(scope) or (None,)
        if e is None:
            raise ConfigurationError(f"no scope {scope!r} to promote")
        v = e.verdict
        target = v.level + 1
        if target > int(self.pack.ceiling_for(Scope.parse(v.scope))):
            raise ConfigurationError(
                f"{v.scope} is at its ceiling; raise the ceiling in a new pack version first"
            )
        if v.verdict != "promote" and not override:
            raise ConfigurationError(
                f"the gate of {v.scope} does not pass ({v.verdict}): {v.explanation} "
                "To raise it anyway, pass --override with --reason."
            )
        if override and not reason.strip():
            raise ValueError("an override needs --reason: why the gate is bypassed")
        return self.store.set_level(
            v.scope,
            target,
            by=by,
            reason=reason or "gate passed",
            evidence={
                "evaluation_id": e.id,
                "audit_seq": e.audit_seq,
                "verdict": v.verdict,
                "override": override,
            },
        )


def engage_kill_switch(
    store: Store, pack: PolicyPack | None, scope: Scope, *, by: str, reason: str
) -> tuple[KillSwitch, list[LevelChange]]:
    """Engage the kill-switch on ``scope`` and trip what it covers
    (:func:`demote_on_kill`, with ``pack``; ``None``: no pack, nothing to trip), once per
    engagement: engaging a switch already engaged (a second operator, the same incident)
    records who did, and lowers nothing again."""
    was = any(s.engaged and s.scope == scope for s in store.kill_switches())
    switch = store.set_kill_switch(scope, True, by=by, reason=reason)
    lowered = demote_on_kill(store, pack, scope) if pack is not None and not was else []
    return switch, lowered


def demote_on_kill(store: Store, pack: PolicyPack, scope: Scope) -> list[LevelChange]:
    """A kill-switch engaged on ``scope`` is a trip-wire: every level dial the switch covers
    whole (its scope matches the dial's), at level 1 or above, where the pack declares a
    gate into that level, goes one level down now (recorded as the trip-wire, with the
    switch as evidence). Dials of scopes without such a gate keep their level."""
    from agent_guardrails.pipeline.trip_wires import ACTOR

    dials = {rule.scope.to_scope().key for rule in pack.levels} | {"global"}
    dials |= {c.scope_key for c in store.level_history()}
    changes = []
    for key in sorted(dials):
        dial = Scope.parse(key)
        if not scope.matches(dial):
            continue
        live = store.get_level(key)
        level = live if live is not None else int(pack.initial_level(dial))
        if level < AutonomyLevel.EXECUTE or gate_for(pack, dial, level, up=False) is None:
            continue
        changes.append(
            store.set_level(
                key,
                level - 1,
                by=ACTOR,
                reason=f"kill-switch engaged on {scope.key}",
                evidence={"reason": "kill_switch_trip", "switch": scope.key},
            )
        )
    return changes


# ---------------------------------------------------------------------------- folding


def _fold(records: Iterable[AuditRecord], pack: PolicyPack) -> _Log:
    """The log's calls (:func:`~agent_guardrails.ops.gate_evidence.fold_page`, the same
    fold the kept evidence is made of) and the records that cut or trip windows."""
    log = _Log()
    calls, events = fold_page(records)
    log.calls = calls
    for r in events:
        kind, data = r.kind, r.data
        if kind == "kill_switch.engaged":
            log.kill_trips.append((r.ts, r.seq, Scope.parse(str(data.get("scope", "")))))
        elif kind == "level.changed":
            dial = str(data.get("scope", ""))
            old, new = data.get("old"), data.get("new")
            log.cuts[dial].append(r.ts)
            if isinstance(new, int):
                if not isinstance(old, int):  # the dial's first move: from the pack's level
                    old = _level_at(log, dial, pack, r.ts)
                log.levels[dial].append((r.ts, new))
                if new < old:
                    log.demotions[dial].append(r.ts)
        elif kind == "pack.activated":
            log.global_cuts.append(r.ts)
    return log


def _level_at(log: _Log, dial: str, pack: PolicyPack, now: float) -> int:
    """The scope's level at ``now``: its last recorded change, else the pack's level."""
    changes = [level for at, level in log.levels.get(dial, ()) if at <= now]
    return changes[-1] if changes else int(pack.initial_level(Scope.parse(dial)))


def _spans(rule: GateRule | None, log: _Log, dial: str, now: float) -> list[tuple[float, float]]:
    length = rule.window if rule is not None else 14 * 86_400.0
    count = rule.consecutive_windows if rule is not None else 1
    cut = _last_cut(log, dial, now)
    spans = []
    for i in range(count - 1, -1, -1):
        start, end = now - (i + 1) * length, now - i * length
        if end <= cut and i > 0:
            continue  # before the last level or pack change: does not count
        spans.append((max(start, cut), end))  # the current one, empty if the cut is now
    return spans


def _last_cut(log: _Log, dial: str, now: float) -> float:
    """When ``dial``'s level or the pack last changed, as of ``now`` (-inf: never)."""
    cuts = [*log.cuts.get(dial, ()), *log.global_cuts]
    return max((c for c in cuts if c <= now), default=float("-inf"))


def _tenure(windows: Sequence[Window], log: _Log, dial: str, calls: CallSource) -> Window:
    """Everything ``dial`` did since its level or the pack last changed (since the log began,
    if neither has): its windows plus what came before the oldest of them."""
    first = windows[0].start
    since = max(_last_cut(log, dial, windows[-1].end), 0.0)  # the windows begin after it
    if since >= first:
        return combined(windows)
    before = _window(since, first, calls, dial, None, log, Scope.parse(dial))
    return combined([before, *windows])


def _window(
    start: float,
    end: float,
    calls: CallSource,
    dial: str,
    rule: GateRule | None,
    log: _Log,
    scope: Scope,
) -> Window:
    n = calls.count(dial, start, end, UNFINISHED_GRACE)
    trips = tuple(seq for at, seq, s in log.kill_trips if start <= at < end and s.matches(scope))
    control = treatment = 0
    kpi_c = kpi_t = expected = None
    if rule is not None and rule.lift_kpi is not None:
        cohorts = calls.kpi(dial, rule.lift_kpi, start, end)
        control, kpi_c = cohorts.get("control", (0, None))
        treatment, kpi_t = cohorts.get("treatment", (0, None))
        expected = None if rule.holdout is None else 1.0 - rule.holdout
    split = (n.split.get("control", 0), n.split.get("treatment", 0))
    if any(split):  # the split the pipeline made, by entity
        control, treatment = split
    return Window(
        start,
        end,
        decided=n.decided,
        policy_failed=n.policy_failed,
        escalated=n.escalated,
        executed=n.executed,
        succeeded=n.succeeded,
        answered=n.answered,
        within_sla=n.within_sla,
        unattributed=n.unattributed,
        pack_versions=n.versions,
        control=control,
        treatment=treatment,
        expected_treatment=expected,
        kpi_control=kpi_c,
        kpi_treatment=kpi_t,
        violations=n.violations,
        kill_trips=trips,
    )


def _unrecorded(verdict: GateVerdict) -> Evaluation:
    data = json.dumps(verdict.as_dict(), sort_keys=True).encode()
    return Evaluation(hashlib.sha256(data).hexdigest(), verdict, None)


# ---------------------------------------------------------------------------- tracing


@contextmanager
def _span(dial: str, level: int) -> Iterator[Callable[[GateVerdict], None]]:
    """A ``gate.evaluate`` span with the scope, the levels from/to and the verdict."""
    from opentelemetry import trace

    tracer = trace.get_tracer("agent_guardrails")
    with tracer.start_as_current_span(
        "gate.evaluate",
        attributes={"agent_guardrails.scope": dial, "agent_guardrails.gate.level_from": level},
    ) as span:

        def done(verdict: GateVerdict) -> None:
            to = verdict.to_level if verdict.verdict in ("promote", "demote") else level
            span.set_attributes(
                {
                    "agent_guardrails.gate.verdict": verdict.verdict,
                    "agent_guardrails.gate.level_to": level if to is None else to,
                    "agent_guardrails.gate.reasons": list(verdict.reasons),
                    "agent_guardrails.explanation": verdict.explanation,
                }
            )

        yield done


def replay(
    store: Store, pack: PolicyPack, *, since: float, until: float, step: float = 7 * 86_400.0
) -> list[tuple[float, list[GateVerdict]]]:
    """What the gates would have decided at each ``step`` from ``since`` to ``until``,
    from the audit log as it stood then (nothing is recorded or applied)."""
    gates = Gates(store, pack)
    out = []
    at = since
    while at <= until:
        out.append((at, gates.evaluate(now=at, record=False)))
        at += step
    return out
