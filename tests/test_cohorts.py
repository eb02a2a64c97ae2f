"""Control cohorts: a stable, audited split; the treatment tries the next level; the gates
check the split the pipeline made."""

from __future__ import annotations

import doctest
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agent_guardrails import CallRequest, Guardrails, PolicyPack, Scope
from agent_guardrails.engine import cohorts
from agent_guardrails.engine import gate_stats as stats
from agent_guardrails.engine.cohorts import cohort_of, split
from agent_guardrails.ops.gates import Gates, tally
from agent_guardrails.ops.operations import active_policy, apply_pack
from agent_guardrails.policy.levels import AutonomyLevel
from agent_guardrails.store import open_store
from agent_guardrails.store.base import Store

PACK = """\
name: trial
version: "1"
actions:
  budget.shift: {kind: optimize, risk: low}
levels:
  - {scope: {workflow: ads}, level: execute, ceiling: optimize}
  - {scope: {workflow: capped}, level: execute, ceiling: execute}
gates:
  - {from: execute, to: optimize, min_lift: 0.0, lift_kpi: revenue,
     holdout: 0.3, holdout_entity: campaign, salt: "2026-q4"}
"""
ADS = Scope(workflow="ads")


def test_the_module_examples_run() -> None:
    assert doctest.testmod(cohorts).failed == 0


def test_the_split_is_stable_salted_and_in_proportion() -> None:
    names = [f"campaign-{i}" for i in range(20_000)]
    first = [cohort_of(n, salt="a", holdout=0.3) for n in names]
    assert first == [cohort_of(n, salt="a", holdout=0.3) for n in names]  # once and for good
    control = first.count("control")
    check = stats.srm_check(control, len(names) - control, 0.7)
    assert not check.mismatch, check  # an honest hash passes its own SRM test
    other = [cohort_of(n, salt="b", holdout=0.3) for n in names]
    assert 0.3 < sum(a != b for a, b in zip(first, other, strict=True)) / len(names) < 0.5


def test_split_applies_only_where_an_experiment_runs() -> None:
    pack = PolicyPack.from_yaml(PACK)
    execute = AutonomyLevel.EXECUTE
    trial = split(pack, ADS, execute, {"campaign": "c-1"})
    assert trial is not None
    assert trial.level == (AutonomyLevel.OPTIMIZE if trial.cohort == "treatment" else execute)
    assert "c-1" not in trial.entity  # a hash, never the entity itself
    assert split(pack, ADS, execute, {"other": "c-1"}) is None  # no entity: no experiment
    assert split(pack, ADS, AutonomyLevel.OPTIMIZE, {"campaign": "c-1"}) is None  # no gate up
    capped = Scope(workflow="capped")  # the gate leads above its ceiling
    assert split(pack, capped, execute, {"campaign": "c-1"}) is None


@pytest.fixture
def store(every_store_url: str) -> Iterator[Store]:
    s = open_store(every_store_url)
    apply_pack(s, PACK, by="ana")
    yield s
    s.close()


def shift(guard: Guardrails, campaign: str) -> Any:
    request = CallRequest("shift", "budget.shift", {"campaign": campaign}, ADS)
    return guard.run(request, lambda args: "shifted")


def test_the_treatment_tries_the_next_level_and_every_decision_names_its_cohort(
    store: Store,
) -> None:
    guard = Guardrails(active_policy(store), store=store)
    outcomes = {f"c{i}": shift(guard, f"c{i}") for i in range(60)}
    records = [r for r in store.audit_records() if r.kind == "decision"]
    assert len(records) == 60
    for r in records:
        cohort = r.data["cohort"]
        assert cohort in ("control", "treatment")
        # A budget shift runs from Optimize: the treatment (decided at L2) runs it, the
        # control (at L1, the scope's level) only gets a recommendation.
        assert r.data["decision"] == ("allow" if cohort == "treatment" else "simulate")
        assert r.data["level"] == (2 if cohort == "treatment" else 1)
        assert len(r.data["cohort_entity"]) == 16
    ran = [c for c, result in outcomes.items() if result == "shifted"]
    assert set(ran) == {
        c for c in outcomes if cohort_of(c, salt="2026-q4", holdout=0.3) == "treatment"
    }
    (w,) = tally(store.audit_records(), active_policy(store), now=time.time() + 1)["workflow=ads"]
    assert (w.control, w.treatment) == (60 - len(ran), len(ran))
    assert w.expected_treatment == pytest.approx(0.7)


def test_a_skewed_split_makes_the_gate_invalid(store: Store) -> None:
    guard = Guardrails(active_policy(store), store=store)
    treated = [
        c
        for c in (f"c{i}" for i in range(2000))
        if cohort_of(c, salt="2026-q4", holdout=0.3) == "treatment"
    ]
    for c in treated[:200]:  # only treatment work arrives: the split is broken
        shift(guard, c)
    (v,) = Gates(store).evaluate("workflow=ads", record=False)
    assert v.verdict == "invalid"
    assert "sample_ratio_mismatch" in v.reasons
