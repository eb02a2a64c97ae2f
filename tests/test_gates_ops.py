"""Gates in operation on every store: evidence from what the pipeline records, promotion by a
person through a passing gate, demotion at once, cooldown, replay, and the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_guardrails import CallRequest, ConfigurationError, Guardrails, Scope
from agent_guardrails.ops.cli import main
from agent_guardrails.ops.gates import AUTO_ACTOR, Gates, tally
from agent_guardrails.ops.operations import active_policy, apply_pack, set_level
from agent_guardrails.pipeline.trip_wires import ACTOR as TRIP_WIRE
from agent_guardrails.store import open_store
from agent_guardrails.store.base import Outcome, Store

PACK = """\
name: gated
version: "1"
actions:
  crm.tag: {risk: low}
  email.send:
    risk: low
    validators:
      - banned_terms: {terms: [free], fields: [body]}
levels:
  - {scope: {workflow: news}, level: execute, ceiling: optimize}
  - {scope: {workflow: ads}, level: assist, ceiling: execute}
gates:
  - {from: execute, to: optimize, min_samples: 20, min_success_rate: 0.7,
     min_policy_pass_rate: 1.0, cooldown: 7d}
  - {from: assist, to: execute, min_samples: 5, min_success_rate: 0.4, cooldown: 7d}
"""

NEWS = Scope(workflow="news")
ADS = Scope(workflow="ads")


@pytest.fixture
def store(every_store_url: str) -> Iterator[Store]:
    s = open_store(every_store_url)
    apply_pack(s, PACK, by="ana")
    yield s
    s.close()


def calls(store: Store, scope: Scope, n: int, *, fail: int = 0, body: str = "hi") -> None:
    guard = Guardrails(active_policy(store), store=store)
    for i in range(n):

        def run(args: Any, i: int = i) -> str:
            if i < fail:
                raise RuntimeError("the CRM said no")
            return "ok"

        action = "email.send" if body != "hi" else "crm.tag"
        request = CallRequest("t", action, {"body": body}, scope)
        with contextlib.suppress(RuntimeError):
            guard.run(request, run)


def later() -> float:
    return time.time() + 1.0


def test_evidence_comes_from_what_the_pipeline_records(store: Store) -> None:
    calls(store, NEWS, 12, fail=2)
    windows = tally(store.audit_records(), active_policy(store), now=later())
    (w,) = windows["workflow=news"]
    assert (w.decided, w.executed, w.succeeded, w.policy_failed) == (12, 12, 10, 0)
    assert w.pack_versions == frozenset({"1"})
    assert w.unattributed == 0
    assert w.violations == ()


def test_drafts_at_assist_count_as_runs(store: Store) -> None:
    calls(store, ADS, 6)
    (w,) = tally(store.audit_records(), active_policy(store), now=later())["workflow=ads"]
    assert (w.decided, w.executed, w.succeeded) == (6, 6, 6)


def test_a_passing_gate_lets_a_person_promote_with_the_evaluation_as_evidence(
    store: Store,
) -> None:
    calls(store, NEWS, 25)
    (v,) = Gates(store).evaluate("workflow=news")
    assert v.verdict == "promote"
    assert v.to_level == 2
    change = Gates(store).promote("workflow=news", by="board")
    assert (change.old_level, change.new_level, change.by) == (None, 2, "board")
    evaluated = [r for r in store.audit_records() if r.kind == "gate.evaluated"]
    assert change.evidence["evaluation_id"] == evaluated[-1].data["evaluation_id"]
    assert evaluated[-1].data["verdict"] == "promote"
    assert evaluated[-1].data["method"].startswith("rates: two-sided Wilson")


def test_raising_a_level_without_a_passing_gate_needs_an_override(store: Store) -> None:
    calls(store, NEWS, 3)  # too few runs: hold
    pack = active_policy(store)
    with pytest.raises(ConfigurationError, match=r"its gate does not pass \(hold\).*--override"):
        set_level(store, NEWS, "optimize", by="ana", reason="feels right", pack=pack)
    with pytest.raises(ConfigurationError, match="does not pass"):
        Gates(store).promote("workflow=news", by="ana")
    assert store.get_level("workflow=news") is None  # nothing changed
    with pytest.raises(ValueError, match="needs a reason"):
        set_level(store, NEWS, "optimize", by="ana", reason=" ", pack=pack, override=True)
    change = set_level(
        store, NEWS, "optimize", by="ana", reason="board minute 12", pack=pack, override=True
    )
    assert change.new_level == 2
    assert change.evidence["override"] is True
    # Down never needs a gate.
    assert set_level(store, NEWS, "assist", by="ops", reason="incident", pack=pack).new_level == 0


def test_a_policy_violation_demotes_in_the_call_then_cooldown_blocks_promotion(
    store: Store,
) -> None:
    calls(store, NEWS, 25)
    calls(store, NEWS, 1, body="free money")  # banned_terms fails at Execute
    assert store.get_level("workflow=news") == 0
    change = store.level_history("workflow=news")[-1]
    assert (change.old_level, change.new_level, change.by) == (None, 0, TRIP_WIRE)
    assert change.evidence["validators"] == ["banned_terms"]
    (trip,) = [r for r in store.audit_records() if r.kind == "trip_wire"]
    assert trip.data["call_key"] == change.evidence["call_key"]
    # A level change starts a new window: the drafts that follow pass the assist gate, but
    # the cooldown holds the promotion until it has run out.
    calls(store, NEWS, 12)
    (v,) = Gates(store).evaluate("workflow=news")
    assert v.level == 0
    assert (v.verdict, v.reasons) == ("hold", ("cooldown",))
    (v,) = Gates(store).evaluate("workflow=news", now=time.time() + 8 * 86_400, record=False)
    assert v.reasons != ("cooldown",)


def test_a_scope_without_a_gate_into_its_level_keeps_its_level(store: Store) -> None:
    text = PACK.replace('version: "1"', 'version: "2"').replace(
        "  - {from: assist, to: execute, min_samples: 5, min_success_rate: 0.4, cooldown: 7d}\n",
        "",
    )
    apply_pack(store, text, by="ana")
    calls(store, NEWS, 1, body="free money")
    assert store.get_level("workflow=news") is None
    assert not [r for r in store.audit_records() if r.kind == "trip_wire"]


def test_a_kill_switch_trip_is_demoted_by_the_gates_run(store: Store) -> None:
    calls(store, NEWS, 5)
    store.set_kill_switch(NEWS, True, by="ops", reason="spend anomaly")
    gates = Gates(store)
    (e,) = gates.evaluations("workflow=news")
    assert (e.verdict.verdict, e.verdict.reasons) == ("demote", ("kill_switch_trip",))
    (change,) = gates.apply([e])
    assert (change.new_level, change.by) == (0, AUTO_ACTOR)
    assert change.evidence["evaluation_id"] == e.id
    assert e.audit_seq is not None
    (record,) = [r for r in store.audit_records() if r.seq == e.audit_seq]
    assert record.kind == "gate.evaluated"
    assert record.data["evaluation_id"] == e.id


def test_the_record_at_a_level_reaches_back_past_the_windows_to_the_last_change(
    store: Store,
) -> None:
    calls(store, NEWS, 25, fail=5)
    # 20 days on, the gate's one 14-day window is empty; the record at the level is not
    (v,) = Gates(store).evaluate("workflow=news", now=time.time() + 20 * 86_400, record=False)
    assert v.verdict == "hold"
    metrics = {m.name: m for m in v.metrics}
    assert metrics["success_rate"].status == "missing"
    overall = metrics["success_rate_overall"]
    assert (overall.n, overall.estimate) == (25, 20 / 25)
    # a level change starts a new record: what came before it no longer counts
    time.sleep(0.01)
    set_level(store, NEWS, "assist", by="ana", reason="a fresh start")
    set_level(store, NEWS, "execute", by="ana", reason="back", override=True)
    calls(store, NEWS, 3)
    (v,) = Gates(store).evaluate("workflow=news", now=time.time() + 20 * 86_400, record=False)
    overall = next(m for m in v.metrics if m.name == "success_rate_overall")
    assert (overall.n, overall.estimate) == (3, 1.0)


def test_an_evaluation_at_the_very_moment_of_a_change_judges_an_empty_window(
    store: Store,
) -> None:
    calls(store, NEWS, 5)
    activated = next(r.ts for r in store.audit_records() if r.kind == "pack.activated")
    (v,) = Gates(store).evaluate("workflow=news", now=activated, record=False)
    assert v.verdict == "hold"
    (w,) = v.windows
    assert (w.start, w.end, w.decided) == (activated, activated, 0)


def test_the_gate_watchs_demotions_never_count_what_came_before_the_windows(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The record at a level can be a long history; only a promotion needs it.
    from agent_guardrails.ops import gates as gates_module

    calls(store, NEWS, 25)
    counted: list[str] = []
    real = gates_module._tenure

    def spy(windows: Any, log: Any, dial: str, source: Any) -> Any:
        counted.append(dial)
        return real(windows, log, dial, source)

    monkeypatch.setattr(gates_module, "_tenure", spy)
    assert Gates(store).demote() == []
    assert counted == []
    (v,) = Gates(store).evaluate("workflow=news", record=False)
    assert v.verdict == "promote"
    assert counted == ["workflow=news"]


def test_replay_is_deterministic_and_records_nothing(store: Store) -> None:
    calls(store, NEWS, 25)
    before = len(store.audit_records())
    gates = Gates(store)
    a = [v.as_dict() for v in gates.evaluate(now=later(), record=False)]
    b = [v.as_dict() for v in gates.evaluate(now=later() + 0.0, record=False)]
    assert [x["verdict"] for x in a] == [x["verdict"] for x in b]
    past = gates.evaluate(now=time.time() - 3600, record=False)
    assert all(v.verdict == "hold" for v in past)  # nothing had happened then
    assert len(store.audit_records()) == before


def test_a_broken_audit_chain_makes_every_verdict_invalid(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    store = open_store(url)
    apply_pack(store, PACK, by="ana")
    calls(store, NEWS, 25)
    store.close()
    with sqlite3.connect(tmp_path / "g.db") as db:
        db.execute("UPDATE ag_audit SET data = replace(data, 'crm.tag', 'crm.xxx') WHERE seq = 5")
    store = open_store(url)
    (v,) = Gates(store).evaluate("workflow=news", record=False)
    assert (v.verdict, v.reasons) == ("invalid", ("audit_chain_broken",))
    store.close()


def test_a_broken_split_is_invalid(store: Store) -> None:
    text = PACK.replace('version: "1"', 'version: "2"').replace(
        "min_policy_pass_rate: 1.0, cooldown: 7d}",
        "min_policy_pass_rate: 1.0, cooldown: 7d,\n     min_lift: 0.0, lift_kpi: revenue,"
        " holdout: 0.5, holdout_entity: contact}",
    )
    apply_pack(store, text, by="ana")
    calls(store, NEWS, 25)
    now = time.time()
    for i in range(300):
        cohort = "treatment" if i % 10 else "control"  # 90/10 where the pack says 50/50
        store.record_outcome(
            Outcome(f"c{i}", cohort, "revenue", float(i % 7), now, "workflow=news")
        )
    (v,) = Gates(store).evaluate("workflow=news", now=later(), record=False)
    assert v.verdict == "invalid"
    assert "sample_ratio_mismatch" in v.reasons
    assert "exact binomial test" in v.explanation


# ---------------------------------------------------------------------------- CLI


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out), out.getvalue()


def test_cli_gates_promote_and_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    store = open_store(url)
    apply_pack(store, PACK, by="ana")
    calls(store, NEWS, 25)
    calls(store, ADS, 2)
    store.close()
    code, text = cli("gates", "--store", url, "--json")
    assert code == 0
    data = json.loads(text)
    verdicts = {v["scope"]: v for v in data["verdicts"]}
    assert verdicts["workflow=news"]["verdict"] == "promote"
    assert verdicts["workflow=ads"]["verdict"] == "hold"
    # 2 clean drafts: the window needs 3 more (min_samples 5), the bound for repeated looks
    # 9 more (11 clean runs prove a rate >= 0.4 on it, 10 do not): the larger is what is missing.
    assert verdicts["workflow=ads"]["more"] == 9
    code, text = cli("gates", "workflow=ads", "--store", url)
    assert code == 0
    assert "HOLD (about 9 more)" in text
    assert "3 more" in text
    code, _ = cli(
        "level", "set", "workflow=ads", "execute", "--by", "x", "--reason", "r", "--store", url
    )
    assert code == 2
    assert "--override" in capsys.readouterr().err
    code, text = cli("gates", "promote", "workflow=news", "--by", "board", "--store", url)
    assert code == 0
    assert "L1 -> L2 by board" in text
    code, text = cli(
        "gates",
        "--replay",
        "--since",
        "2026-01-01",
        "--until",
        "2026-01-15",
        "--store",
        url,
        "--json",
    )
    assert code == 0
    assert len(json.loads(text)) == 3
    code, _ = cli("gates", "--replay", "--store", url)
    assert code == 2
    assert "--since" in capsys.readouterr().err


def test_engaging_a_kill_switch_lowers_the_dials_it_covers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    store = open_store(url)
    apply_pack(store, PACK, by="ana")
    store.close()
    out = io.StringIO()
    code = main(["kill", "workflow=news", "--by", "ops", "--reason", "spam", "--store", url], out)
    assert code == 0
    assert "trip-wire: workflow=news lowered to L0" in out.getvalue()
    store = open_store(url)
    assert store.get_level("workflow=news") == 0
    assert store.get_level("workflow=ads") is None  # not covered by the switch
    change = store.level_history("workflow=news")[-1]
    assert (change.by, change.evidence["switch"]) == (TRIP_WIRE, "workflow=news")
    # Guardrails.kill does the same; a dial with no gate into its level keeps it.
    guard = Guardrails(active_policy(store), store=store)
    guard.kill(Scope(), by="ops", reason="all stop")
    assert store.get_level("workflow=news") == 0  # at Assist: nothing lower
    assert store.get_level("workflow=ads") is None  # assist already
    store.close()


def test_a_switch_engaged_again_trips_nothing_again(tmp_path: Path) -> None:
    # A second operator engaging the switch already engaged (the same incident) records
    # who did; the dials it covers were lowered once, by the first.
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    store = open_store(url)
    apply_pack(store, PACK, by="ana")
    store.set_level("workflow=news", 2, by="board", reason="promoted")  # optimize
    argv = ["kill", "workflow=news", "--by", "ops", "--reason", "spam", "--store", url]
    out = io.StringIO()
    assert main(argv, out) == 0
    assert "lowered to L1" in out.getvalue()
    out = io.StringIO()
    assert main([*argv[:2], "--by", "bo", *argv[4:]], out) == 0
    assert "lowered" not in out.getvalue()
    guard = Guardrails(active_policy(store), store=store)
    guard.kill(NEWS, by="cy", reason="same incident")
    assert store.get_level("workflow=news") == 1
    assert [s.by for s in store.kill_switches() if s.engaged] == ["cy"]
    guard.unkill(NEWS, by="ops", reason="fixed")
    guard.kill(NEWS, by="ops", reason="again")  # a new engagement trips again
    assert store.get_level("workflow=news") == 0
    store.close()
