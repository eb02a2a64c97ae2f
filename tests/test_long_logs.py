"""Operators' commands read the audit log a page at a time: ``audit verify``, ``audit tail``,
``audit export``, the approvals inbox and the weekly scorecard never ask a store for the
whole log at once (a log of millions of records would not fit in memory), and their
answers are the same whatever the page size."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent_guardrails import CallRequest, Guardrails, Scope
from agent_guardrails.ops.approvals import pending
from agent_guardrails.ops.cli import main
from agent_guardrails.ops.weekly import weekly_scorecard
from agent_guardrails.store import _operators, base, open_store
from agent_guardrails.store.base import AuditEvent, Store
from agent_guardrails.store.sqlite import SQLiteStore
from tests.conftest import pack_text

PACK = pack_text(
    """
defaults: {level: execute}
actions:
  crm.tag: {risk: low}
  email.send: {risk: high}
levels:
  - {scope: {workflow: promo}, level: execute}
gates:
  - {from: execute, to: optimize, min_samples: 5, min_success_rate: 0.5}
"""
)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A SQLite store with a few dozen records: calls, and one question still open."""
    url = f"sqlite:///{tmp_path / 'long.db'}"
    guard = Guardrails(PACK, store=url)
    for i in range(8):
        request = CallRequest("tag", "crm.tag", {"n": i}, Scope(workflow="promo"))
        guard.run(request, lambda args: args["n"])
    now = time.time()
    decision = {"decision": "require_approval", "action": "email.send", "level": 1, "cost": 0}
    asked = {"tool": "send", "roles": ["ops"], "asked_at": now, "expires_at": now + 3600}
    # A question as the pipeline leaves it: the call held, its records tagged.
    key = "open-question"
    guard.store.reserve(key, [], audit=AuditEvent("decision", decision, key, f"{key}:decision"))
    guard.store.append_audit(
        AuditEvent("approval.requested", asked, key, f"{key}:approval.requested")
    )
    guard.close()
    return url


class Reads:
    """Every ``limit`` the store's ``audit_records`` was called with."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.limits: list[int | None] = []
        read = SQLiteStore.audit_records

        def audit_records(store: Any, *, after: int = 0, limit: int | None = None) -> Any:
            self.limits.append(limit)
            return read(store, after=after, limit=limit)

        monkeypatch.setattr(SQLiteStore, "audit_records", audit_records)


def _everything(url: str) -> dict[str, Any]:
    """What each command answers on the store at ``url``."""
    out: dict[str, Any] = {}
    for name, argv in {
        "verify": ["audit", "verify", "--json"],
        "tail": ["audit", "tail", "-n", "3", "--json"],
        "export": ["audit", "export"],
    }.items():
        text = io.StringIO()
        assert main([*argv, "--store", url], text) == 0, text.getvalue()
        out[name] = text.getvalue()
    store: Store = open_store(url)
    out["pending"] = [p.call_key for p in pending(store)]
    week = datetime.now(UTC).date()
    card = weekly_scorecard(store, week=week)
    out["scorecard"] = [(r.scope, r.verdict, len(r.incidents)) for r in card.rows]
    out["verified"] = store.verify_audit()
    store.close()
    return out


def test_the_log_is_read_a_page_at_a_time_with_the_same_answers(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = _everything(store_url)
    records = [json.loads(line) for line in whole["export"].splitlines()]
    assert len(records) > 20
    assert whole["pending"] == ["open-question"]
    assert whole["scorecard"], "the scorecard has no row to compare"
    last = len(records)
    assert [r["seq"] for r in json.loads(whole["tail"])] == [last - 2, last - 1, last]
    assert whole["verified"].ok
    assert whole["verified"].checked == len(records)

    monkeypatch.setattr(base, "AUDIT_PAGE", 2)
    monkeypatch.setattr(_operators, "VERIFY_PAGE", 2)
    reads = Reads(monkeypatch)
    paged = _everything(store_url)
    assert paged == whole
    assert reads.limits, "the log was not read through audit_records"
    assert all(limit == 2 for limit in reads.limits), reads.limits
