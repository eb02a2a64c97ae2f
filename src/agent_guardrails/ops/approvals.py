"""The approvals inbox: what waits for a human, for whom, for how long; and the sweep that
records expired questions and warns before they expire.

    agent-guardrails approvals [--json]
    agent-guardrails approvals --sweep [--warn-before 1h] [--webhook URL --secret S]

A question waits from its ``approval.requested`` record until it is answered
(``approval.resolved``), withdrawn (its hold released, the call halted or stale) or
recorded as expired. Each row says what the call is (tool, action, level, estimated cost),
who may answer (roles), its age against its timeout, and where to answer it (the thread
and the call key; the graph's ``get_state(thread).interrupts`` has the interrupt ids).

``sweep`` records each question past its expiry once (``approval.expired``), releases
what the call held (its budget and exposure; ``reservation.released``, reason
``approval_expired``: an answer after the expiry is refused anyway, so the hold served
nothing; it used to stay until a late answer or the end of its counters' window) and
notifies ``expired``; a question within
``warn_before`` of its expiry is notified ``expiring`` once (``approval.expiring``). Run it
from a scheduler (cron, a LangGraph cron job).

>>> from agent_guardrails.store import open_store
>>> [p.call_key for p in pending(open_store("memory://"))]
[]
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agent_guardrails.pipeline.notify import ApprovalEvent, Notifications, Notifier
from agent_guardrails.store.base import AuditEvent, AuditRecord, Store, read_audit

__all__ = ["Pending", "pending", "sweep"]

_CLOSING = frozenset(
    {
        "approval.resolved",
        "approval.unavailable",
        "approval.refused",
        "approval.expired",
        "reservation.released",
        "execution.started",
        "execution.finished",
        "execution.failed",
    }
)


@dataclass(frozen=True, slots=True)
class Pending:
    """One question waiting for a human."""

    call_key: str
    tool: str
    action: str
    roles: tuple[str, ...]
    level: int | None
    cost: float | None
    currency: str
    asked_at: float
    expires_at: float
    now: float
    warned: bool  # an ``expiring`` notice went out

    @property
    def thread_id(self) -> str | None:
        return self.call_key.split("|", 1)[0] if "|" in self.call_key else None

    @property
    def age(self) -> float:
        return self.now - self.asked_at

    @property
    def timeout(self) -> float:
        return self.expires_at - self.asked_at

    @property
    def state(self) -> Literal["waiting", "expired"]:
        return "expired" if self.now > self.expires_at else "waiting"

    def event(self, kind: Literal["expiring", "expired"]) -> ApprovalEvent:
        return ApprovalEvent(
            kind,
            self.call_key,
            self.tool,
            self.action,
            self.roles,
            self.level or 0,
            self.cost or 0.0,
            self.currency,
            self.asked_at,
            self.expires_at,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_key": self.call_key,
            "thread_id": self.thread_id,
            "tool": self.tool,
            "action": self.action,
            "roles": list(self.roles),
            "level": self.level,
            "cost": self.cost,
            "currency": self.currency,
            "asked_at": self.asked_at,
            "expires_at": self.expires_at,
            "age_seconds": round(self.age, 3),
            "timeout_seconds": round(self.timeout, 3),
            "state": self.state,
        }


# The dedupe tags of a call's records that open, mark or close its question (written by
# pipeline/approvals.py, pipeline/events.py and sweep below). tests/test_approvals_inbox.py
# checks the inbox read through them against a fold of the whole log, for every way a
# question ends.
_ASKED = "approval.requested"
_TAGS = (
    "decision",
    "expiring",
    "approval",  # approval.resolved
    "approval.unavailable",
    "approval.refused",
    "expired",
    "started",
    "end",
    "failed",
)


def pending(store: Store, *, now: float | None = None) -> list[Pending]:
    """Every question still waiting (or past its expiry and not yet recorded as expired),
    oldest first.

    Read from the calls that hold or run (``store.open_calls()``, an index) and each one's
    question records, found by their tags: the time and memory grow with the calls open,
    not with the audit log. A store without ``open_calls`` is read whole."""
    now = time.time() if now is None else now
    if not hasattr(store, "open_calls"):
        return _pending(read_audit(store), now)
    return _pending(_question_records(store), now)


def _question_records(store: Store) -> list[AuditRecord]:
    """The audit records of the questions that may still wait, in log order."""
    found: list[AuditRecord] = []
    for call in store.open_calls():
        key = call.key
        if key.startswith("~") and call.state != "reserved":
            continue  # an ephemeral call never runs again: if it runs, it was answered
        asked = store.find_audit(f"{key}:{_ASKED}")
        if asked is None:
            continue  # not asked (or its question was archived)
        found.append(asked)
        found.extend(r for tag in _TAGS if (r := store.find_audit(f"{key}:{tag}")) is not None)
    return sorted(found, key=lambda r: r.seq)


def _pending(records: Iterable[AuditRecord], now: float) -> list[Pending]:
    """The questions ``records`` leave open, read in one pass; what is kept is the
    questions and the decisions that asked them (``require_approval``), not the log."""
    asked: dict[str, AuditRecord] = {}
    decided: dict[str, AuditRecord] = {}
    warned: set[str] = set()
    for r in records:
        key = r.call_key
        if key is None:
            continue
        if r.kind == "decision":
            if r.data.get("decision") == "require_approval":
                decided.setdefault(key, r)
        elif r.kind == "approval.requested":
            asked[key] = r
        elif r.kind == "approval.expiring":
            warned.add(key)
        elif r.kind in _CLOSING:
            asked.pop(key, None)
    out = []
    for key, r in asked.items():
        data: Any = r.data
        d: Any = decided[key].data if key in decided else data
        asked_at = float(data.get("asked_at", r.ts))
        out.append(
            Pending(
                key,
                str(data.get("tool", d.get("tool", ""))),
                str(d.get("action", "")),
                tuple(data.get("roles", ())),
                d.get("level"),
                d.get("cost"),
                str(d.get("currency", "")),
                asked_at,
                float(data.get("expires_at", asked_at)),
                now,
                key in warned,
            )
        )
    return sorted(out, key=lambda p: p.asked_at)


def sweep(
    store: Store,
    notifiers: Sequence[Notifier] = (),
    *,
    warn_before: float = 3600.0,
    now: float | None = None,
) -> tuple[list[Pending], list[Pending]]:
    """Record and notify expired questions; warn about those expiring within
    ``warn_before`` seconds (once each). Returns ``(expired, expiring)``."""
    now = time.time() if now is None else now
    hub = Notifications(notifiers)
    expired, expiring = [], []
    try:
        for p in pending(store, now=now):
            if p.state == "expired":
                data = {"asked_at": p.asked_at, "expires_at": p.expires_at, "roles": list(p.roles)}
                store.append_audit(
                    AuditEvent("approval.expired", data, p.call_key, f"{p.call_key}:expired")
                )
                _release_hold(store, p.call_key)
                hub.send(p.event("expired"))
                expired.append(p)
            elif not p.warned and p.expires_at - now <= warn_before:
                data = {"expires_at": p.expires_at}
                store.append_audit(
                    AuditEvent("approval.expiring", data, p.call_key, f"{p.call_key}:expiring")
                )
                hub.send(p.event("expiring"))
                expiring.append(p)
    finally:
        hub.close()
    return expired, expiring


def _release_hold(store: Store, call_key: str) -> None:
    """Release what an expired question's call holds, if it still only holds (a call that
    started meanwhile keeps its charge: it is running)."""
    record = store.call_record(call_key)
    if record is None or record.state != "reserved":
        return
    event = AuditEvent(
        "reservation.released",
        {"reason": "approval_expired"},
        call_key,
        f"{call_key}:expired-released",
    )
    store.release(call_key, audit=event)
