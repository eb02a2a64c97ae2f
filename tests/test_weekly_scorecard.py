"""The weekly scorecard built from a store: rows, incidents with audit ids, recommendations,
and the CLI writing HTML, Markdown and JSON."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from agent_guardrails import CallRequest, Guardrails, Scope
from agent_guardrails.ops import scorecard
from agent_guardrails.ops.cli import main
from agent_guardrails.ops.operations import active_policy, apply_pack
from agent_guardrails.ops.weekly import weekly_scorecard
from agent_guardrails.store import open_store
from agent_guardrails.store.base import Store

PACK = """\
name: weekly
version: "1"
actions:
  crm.tag: {risk: low}
  page.publish:
    risk: low
    validators:
      - banned_terms: {terms: [guaranteed], fields: [title]}
levels:
  - {scope: {workflow: news}, level: execute, ceiling: optimize}
  - {scope: {workflow: ads}, level: optimize, ceiling: optimize}
  - {scope: {workflow: idle}, level: execute, ceiling: optimize}
gates:
  - {from: execute, to: optimize, min_samples: 20, min_success_rate: 0.8}
"""


def work(store: Store) -> None:
    guard = Guardrails(active_policy(store), store=store)
    for i in range(40):
        guard.run(CallRequest("tag", "crm.tag", {"n": i}, Scope(workflow="news")), lambda a: "ok")
    bad = CallRequest("publish", "page.publish", {"title": "Guaranteed"}, Scope(workflow="ads"))
    guard.run(bad, lambda a: "published")  # a violation at Optimize: the trip-wire fires
    store.set_kill_switch(Scope(workflow="ads"), True, by="ops", reason="anomaly")


def test_one_row_per_active_scope_with_incidents_and_recommendations() -> None:
    store = open_store("memory://")
    apply_pack(store, PACK, by="ana")
    work(store)
    card = weekly_scorecard(store, week=datetime.now(UTC).date())
    rows = {r.scope: r for r in card.rows}
    assert set(rows) == {"workflow=news", "workflow=ads"}  # idle did nothing
    news, ads = rows["workflow=news"], rows["workflow=ads"]
    assert (news.verdict, news.recommendation) == ("promote", "promote")
    assert news.kpis["Runs"][-1].value == 40.0
    assert [m.name for m in news.metrics] == ["success_rate", "success_rate_overall"]
    assert news.metrics[1].label == "Success rate at this level (repeated looks)"
    assert ads.level == 1
    kinds = [i.kind for i in ads.incidents]
    assert kinds == ["pack.activated", "trip_wire", "level.changed", "kill_switch.engaged"]
    seqs = {r.seq: r.kind for r in store.audit_records()}
    assert all(seqs[i.audit_seq] == i.kind for i in ads.incidents)
    assert card.pack == "weekly v1"
    assert scorecard.from_json(scorecard.to_json(card)) == card


def test_a_week_with_nothing_is_an_empty_scorecard() -> None:
    store = open_store("memory://")
    apply_pack(store, PACK, by="ana")
    work(store)
    long_ago = (datetime.now(UTC) - timedelta(days=70)).date()
    card = weekly_scorecard(store, week=long_ago)
    assert card.rows == ()
    assert "No scopes had activity this week" in scorecard.to_markdown(card)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_the_cli_writes_each_format(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    store = open_store(url)
    apply_pack(store, PACK, by="ana")
    work(store)
    store.close()
    day = datetime.now(UTC).date().isoformat()
    for fmt in ("html", "md", "json"):
        out = io.StringIO()
        target = tmp_path / f"card.{fmt}"
        args = ["scorecard", "--week", day, "--format", fmt, "--out", str(target), "--store", url]
        assert main(args, out) == 0
        assert str(target) in out.getvalue()
    html = (tmp_path / "card.html").read_text()
    parser = _Tags()
    parser.feed(html)
    rows = [str(a["data-scope"]) for t, a in parser.tags if t == "tr" and "data-scope" in a]
    assert sorted(rows) == ["workflow=ads", "workflow=news"]
    assert not [t for t, _ in parser.tags if t == "script"]
    assert "http://" not in html
    assert "https://" not in html
    assert "| workflow=news |" in (tmp_path / "card.md").read_text()
    card = scorecard.from_json((tmp_path / "card.json").read_text())
    assert {r.scope for r in card.rows} == set(rows)
    code = main(["scorecard", "--week", "last tuesday", "--store", url], io.StringIO())
    assert code == 2


def test_generated_at_is_the_time_given() -> None:
    store = open_store("memory://")
    apply_pack(store, PACK, by="ana")
    now = time.time()
    card = weekly_scorecard(store, now=now)
    assert card.generated_at == datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_lift_over_control_reaches_the_scorecard() -> None:
    from agent_guardrails.store.base import Outcome

    text = PACK.replace('version: "1"', 'version: "2"').replace(
        "min_samples: 20, min_success_rate: 0.8}",
        "min_samples: 20, min_success_rate: 0.8,\n     min_lift: 0.05, lift_kpi: revenue}",
    )
    store = open_store("memory://")
    apply_pack(store, text, by="ana")
    work(store)
    now = time.time()
    for i in range(200):
        cohort = "control" if i % 2 else "treatment"
        value = (10.0 if cohort == "control" else 12.0) + (i % 7) * 0.1
        store.record_outcome(Outcome(f"c{i}", cohort, "revenue", value, now, "workflow=news"))
    card = weekly_scorecard(store, week=datetime.now(UTC).date(), now=now + 1)
    (news,) = [r for r in card.rows if r.scope == "workflow=news"]
    (line,) = news.lift
    assert line.kpi == "revenue"
    assert (line.n_control, line.n_treatment) == (100, 100)
    assert 0.15 < line.low < line.estimate < line.high < 0.25  # +20% relative lift
    assert news.kpis["revenue (mean)"][-1].value == pytest.approx(11.0 + 0.3, abs=0.05)
    html = scorecard.to_html(card)
    assert "forest" in html


# ---------------------------------------------------------------------------- anomalies


def test_each_gate_rate_and_the_kpi_is_checked_for_anomalies() -> None:
    from agent_guardrails.engine import gate_stats as stats
    from agent_guardrails.engine.gates import Window
    from agent_guardrails.ops.weekly import _anomalies

    def week(i: int, **counts: Any) -> Window:
        return Window(i * 7.0, (i + 1) * 7.0, **counts)

    usual = {
        "decided": 200,
        "policy_failed": 2,
        "escalated": 20,
        "executed": 180,
        "succeeded": 171,
        "answered": 20,
        "within_sla": 19,
        "kpi_control": stats.Moments.of([10.0, 11.0, 9.0, 10.5] * 10),
    }
    labels = ["2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23"]
    calm = [week(i, **usual) for i in range(4)]
    assert _anomalies(labels, calm) == ()

    odd = {
        **usual,
        "policy_failed": 40,  # pass 80% against 99%
        "escalated": 90,  # 45% against 10%
        "succeeded": 120,  # 67% against 95%
        "within_sla": 5,  # SLA 25% against 95%
        "kpi_control": stats.Moments.of([30.0, 31.0] * 20),
    }
    found = _anomalies(labels, [*calm[:3], week(3, **odd)])
    assert [a.metric for a in found] == [
        "Success rate",
        "Policy pass rate",
        "Escalation rate",
        "SLA adherence",
        "KPI mean",
    ]
    for a in found:
        assert not a.low <= a.value <= a.high
        assert a.week == "2026-11-23"
        assert "99% interval" in a.sentence
    assert "above" in found[2].sentence  # escalations rose
    assert "below" in found[0].sentence  # success fell


def test_a_pack_changed_this_week_with_a_failing_metric_is_a_rollback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The version before it was activated weeks earlier (outside the week): a rollback is
    still possible, and recommended when a metric fails since the change."""
    store = open_store("memory://")
    with monkeypatch.context() as m:
        m.setattr(time, "time", lambda: _weeks_ago(3))
        apply_pack(store, PACK, by="ana")
    apply_pack(store, PACK.replace('version: "1"', 'version: "2"'), by="ana")
    guard = Guardrails(active_policy(store), store=store)

    def fails(args: Any) -> Any:
        raise RuntimeError("the CRM refused")

    for i in range(30):
        request = CallRequest("tag", "crm.tag", {"n": i}, Scope(workflow="news"))
        with pytest.raises(RuntimeError):
            guard.run(request, fails)
    card = weekly_scorecard(store, week=datetime.now(UTC).date())
    (news,) = [r for r in card.rows if r.scope == "workflow=news"]
    assert news.recommendation == "rollback", (news.verdict, news.recommendation_reason)
    assert "Pack v2 was activated this week" in news.recommendation_reason


def _weeks_ago(n: int) -> float:
    return (datetime.now(UTC) - timedelta(weeks=n)).timestamp()
