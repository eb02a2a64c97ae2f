"""The README's main command: the demo agent runs end to end on SQLite with no API key."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from agent_guardrails.ops.cli import main
from agent_guardrails.ops.demo import tools
from agent_guardrails.store import open_store


def test_demo_walks_every_level_and_records_a_verified_audit_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    assert main(["demo"], out) == 0
    text = out.getvalue()
    sections = text.split("\n== ")
    assert len(sections) == 7
    assist, execute, optimize, orchestrate, kill, earned = sections[1:]
    assert "SIMULATED" in assist
    assert "RAN" not in assist
    assert "validator_failed:banned_terms" in assist
    assert "send_email waits for approval" in execute
    assert "send_email         RAN" in execute
    assert "publish_page       REJECTED" in execute
    assert "reallocate_budget  RAN" in optimize
    assert "approval_required:cap_exceeded" in optimize
    assert "launch_campaign    RAN" in orchestrate
    assert "HALTED     kill_switch:workflow=paid_media" in kill
    assert "agent: Stopped by a kill-switch" in kill
    assert "a kill-switch is a trip-wire too: paid media went down to L2 Optimize" in kill
    assert "gate execute -> optimize for workflow=newsletter: PROMOTE" in earned
    assert "the lower bound clears 0.95" in earned
    assert "maria (marketing ops lead) applied it: newsletter L1 -> L2" in earned
    assert "DENIED (validator_failed:banned_terms)" in earned
    assert "paid media is now L1 Execute, by itself (agent-guardrails trip-wire" in earned
    scorecard = tmp_path / "agent-guardrails-scorecard.html"
    assert "scorecard of the week of" in earned
    assert str(scorecard) in earned
    html = scorecard.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html
    assert 'data-scope="workflow=paid_media"' in html
    assert "hash chain verified" in text
    # Drafts and refusals never reached the tools.
    assert not any("Guaranteed" in event for event in tools.OUTBOX.events)
    assert sum("sent " in event for event in tools.OUTBOX.events) == 1

    store = open_store("sqlite:///.agent_guardrails/demo.db")
    assert store.verify_audit().ok
    assert store.get_level("workflow=paid_media") == 1  # the kill-switch, then a violation
    assert store.get_level("workflow=newsletter") == 2  # promoted through its gate
    promotion = store.level_history("workflow=newsletter")[-1]
    assert promotion.by == "maria (marketing ops lead)"
    evaluated = {
        r.data["evaluation_id"] for r in store.audit_records() if r.kind == "gate.evaluated"
    }
    assert promotion.evidence["evaluation_id"] in evaluated
