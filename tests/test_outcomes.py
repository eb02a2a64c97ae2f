"""Business KPIs: recorded by call or by entity, imported from CSV/JSON Lines all or nothing."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent_guardrails import CallRequest, Guardrails, Scope
from agent_guardrails.engine.cohorts import cohort_of
from agent_guardrails.ops.cli import main
from agent_guardrails.ops.operations import active_policy, apply_pack
from agent_guardrails.ops.outcomes import import_outcomes, record_outcome
from agent_guardrails.store import open_store

PACK = """\
name: kpi
version: "1"
actions:
  email.send: {risk: low}
levels:
  - {scope: {workflow: news}, level: execute, ceiling: optimize}
gates:
  - {from: execute, to: optimize, min_lift: 0.0, lift_kpi: revenue,
     holdout: 0.5, holdout_entity: contact, salt: s}
"""


@pytest.fixture
def url(tmp_path: Path) -> str:
    u = f"sqlite:///{tmp_path / 'kpi.db'}"
    store = open_store(u)
    apply_pack(store, PACK, by="ana")
    store.close()
    return u


def test_by_entity_the_cohort_is_the_pipelines(url: str) -> None:
    store = open_store(url)
    o = record_outcome(store, "revenue", 4.5, entity="c-9", scope="workflow=news")
    assert o.scope_key == "workflow=news"
    assert o.cohort == cohort_of("c-9", salt="s", holdout=0.5)
    assert store.outcomes(metric="revenue")[-1].value == 4.5
    # Attributed: treatment works at the candidate level (Optimize), control at Execute.
    want = 2 if o.cohort == "treatment" else 1
    assert (o.level, o.pack_version) == (want, "1")
    assert store.outcomes(metric="revenue")[-1] == o


def test_by_entity_each_cohort_has_its_level(url: str) -> None:
    store = open_store(url)
    seen = {}
    for n in range(40):
        o = record_outcome(store, "revenue", 1.0, entity=f"c-{n}", scope="workflow=news")
        seen[o.cohort] = o.level
    assert seen == {"control": 1, "treatment": 2}
    # A cohort given that is not the entity's own: its level is not known.
    entity = next(
        f"c-{n}" for n in range(40) if cohort_of(f"c-{n}", salt="s", holdout=0.5) == "control"
    )
    o = record_outcome(
        store, "revenue", 1.0, entity=entity, scope="workflow=news", cohort="treatment"
    )
    assert (o.cohort, o.level, o.pack_version) == ("treatment", None, "1")


def test_by_call_key_the_scope_and_cohort_come_from_its_decision(url: str) -> None:
    store = open_store(url)
    guard = Guardrails(active_policy(store), store=store)
    request = CallRequest("send", "email.send", {"contact": "c-3"}, Scope(workflow="news"))
    guard.run(request, lambda args: "sent", call_key="thread-1|ns|call-1")
    o = record_outcome(store, "reply", 1.0, call_key="thread-1|ns|call-1")
    assert (o.scope_key, o.cohort) == ("workflow=news", cohort_of("c-3", salt="s", holdout=0.5))
    assert (o.level, o.pack_version) == (2 if o.cohort == "treatment" else 1, "1")
    with pytest.raises(ValueError, match="no decision is recorded for call 'nope'"):
        record_outcome(store, "reply", 1.0, call_key="nope")


@pytest.mark.parametrize(
    ("value", "text"),
    [(float("nan"), "finite"), (float("inf"), "finite"), ("ten", "a number"), (True, "true")],
)
def test_a_bad_value_is_refused(url: str, value: object, text: str) -> None:
    store = open_store(url)
    with pytest.raises(ValueError, match=text):
        record_outcome(store, "revenue", value, entity="c", scope="workflow=news")  # type: ignore[arg-type]
    assert store.outcomes() == []


@pytest.mark.parametrize("at", [float("nan"), float("inf"), "next tuesday"])
def test_a_bad_time_is_refused(url: str, at: object) -> None:
    # A NaN time was recorded and never counted; a text one broke every later read.
    store = open_store(url)
    with pytest.raises(ValueError, match="at: "):
        record_outcome(store, "revenue", 1.0, entity="c", scope="workflow=news", at=at)  # type: ignore[arg-type]
    assert store.outcomes() == []
    when = record_outcome(store, "revenue", 1.0, entity="c", at="2026-11-30T10:00:00Z")
    assert when.at == datetime(2026, 11, 30, 10, tzinfo=UTC).timestamp()


def test_import_csv_and_jsonl(url: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "revenue.csv"
    csv_file.write_text(
        "metric,value,entity,scope,at\n"
        "revenue,3.5,c-1,workflow=news,2026-11-30T10:00:00Z\n"
        "revenue,0,c-2,workflow=news,1796000000\n"
    )
    lines = tmp_path / "replies.jsonl"
    lines.write_text(
        json.dumps({"metric": "reply", "value": 1, "entity": "c-1", "scope": "workflow=news",
                    "cohort": "control"}) + "\n\n"
    )  # fmt: skip
    store = open_store(url)
    assert import_outcomes(store, csv_file) == 2
    out = io.StringIO()
    assert main(["outcomes", "import", str(lines), "--store", url], out) == 0
    assert "recorded 1 outcome(s)" in out.getvalue()
    got = sorted((o.metric, o.entity, o.value, o.cohort) for o in open_store(url).outcomes())
    assert got[0] == ("reply", "c-1", 1.0, "control")
    assert [g[:3] for g in got[1:]] == [("revenue", "c-1", 3.5), ("revenue", "c-2", 0.0)]
    when = datetime(2026, 11, 30, 10, tzinfo=UTC).timestamp()
    assert sorted(o.at for o in open_store(url).outcomes(metric="revenue")) == [1796000000.0, when]


def test_a_time_without_a_zone_is_utc_whatever_the_machines_zone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warehouse export's zone-less times mean the same instant on every machine (they
    were read as the machine's local time)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        rows = tmp_path / "r.csv"
        rows.write_text(
            "metric,value,entity,at\n"
            "revenue,1,c-1,2026-11-30T10:00:00\n"
            "revenue,2,c-2,2026-11-30 10:00\n"
            "revenue,3,c-3,2026-11-30T05:00:00-05:00\n"
        )
        store = open_store("memory://")
        apply_pack(store, PACK, by="ana")
        assert import_outcomes(store, rows) == 3
        when = datetime(2026, 11, 30, 10, tzinfo=UTC).timestamp()
        assert [o.at for o in store.outcomes()] == [when, when, when]
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_file_with_bad_rows_records_nothing_and_names_each(url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"metric": "revenue", "value": 1, "entity": "ok"}\n'
        '{"metric": "revenue", "value": "NaN", "entity": "x"}\n'
        "not json\n"
        '{"metric": "revenue", "value": 2}\n'
        '{"metric": "revenue", "value": 2, "entity": "y", "colour": "red"}\n'
        '{"metric": "revenue", "value": 2, "entity": "y", "at": "yesterday"}\n'
    )
    store = open_store(url)
    with pytest.raises(ValueError, match="nothing recorded") as info:
        import_outcomes(store, bad)
    text = str(info.value)
    assert "5 bad row(s), nothing recorded" in text
    for where in ("line 2: value: a finite number", "line 3: not JSON", "line 4: entity",
                  "line 5: unknown field(s) colour", "line 6: at: ISO 8601"):  # fmt: skip
        assert where in text
    assert store.outcomes() == []
    undecodable = tmp_path / "latin1.csv"
    undecodable.write_bytes(b"metric,value,entity\nrevenue,1,caf\xe9\n")
    with pytest.raises(ValueError, match="not UTF-8 text"):
        import_outcomes(store, undecodable)
    with pytest.raises(ValueError, match=r"use a \.csv or \.jsonl file"):
        import_outcomes(store, tmp_path / "x.xlsx")
