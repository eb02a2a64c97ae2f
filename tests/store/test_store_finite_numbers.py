"""Only finite, non-negative numbers are charged (DESIGN §3.14), on every backend.

A NaN, an infinity or a negative amount must never reach a counter: NaN makes every later
``used + amount <= limit`` comparison false (or, on some backends, true), and an infinite
limit turns a cap off. Every store refuses such a charge with a ``ValueError`` naming the
field and the charge, *before* it writes anything: nothing is held, the call record and
the audit log are unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from agent_guardrails.engine.decision import Charge
from agent_guardrails.store import Store
from agent_guardrails.store.base import AuditEvent, Outcome

DAY_END = 1_704_326_400
BAD = [math.nan, math.inf, -math.inf]
BAD_IDS = ["nan", "+inf", "-inf"]
NEGATIVE = -1.0


def budget(amount: float = 1.0, limit: float = 10.0, name: str = "daily") -> Charge:
    return Charge(f"budget:{name}|USD@1704240000", "budget", amount, limit, DAY_END, name)


def contact(amount: float = 1.0, limit: float = 2.0) -> Charge:
    return Charge("exposure:email.send:c1@1704240000", "exposure", amount, limit, DAY_END, "c1")


def observable(store: Store, *keys: str) -> tuple[Any, ...]:
    """Everything a refused write must leave as it was."""
    return (
        store.counters(),
        [store.call_record(k) for k in keys],
        [(r.seq, r.kind, r.call_key) for r in store.audit_records()],
    )


@pytest.fixture
def seeded(store: Store) -> Store:
    """A store with one finished call (both counters exist) and one reserved call."""
    assert store.reserve("k0", [budget(2.0), contact()], audit=AuditEvent("decision", {})).ok
    assert store.start("k0")
    store.finish("k0", ok=True, actual_cost=1.5)
    assert store.reserve("held", [budget(1.0)], audit=AuditEvent("decision", {}, "held")).ok
    return store


def _message(field: str, label: str, value: float, *, negative_ok: bool = False) -> str:
    bound = "" if negative_ok else r" >= 0"
    return rf"charge {field} for {label} must be a finite number{bound}, got {value!r}"


@pytest.mark.parametrize("value", [*BAD, NEGATIVE], ids=[*BAD_IDS, "negative"])
@pytest.mark.parametrize("force", [False, True], ids=["", "force"])
def test_reserve_refuses_a_bad_amount(seeded: Store, value: float, force: bool) -> None:
    before = observable(seeded, "k0", "held", "k1")
    with pytest.raises(ValueError, match=_message("amount", "budget daily", value)):
        seeded.reserve(
            "k1",
            [contact(), budget(value)],
            audit=AuditEvent("decision", {}, "k1"),
            start=AuditEvent("execution.started", {}, "k1"),
            force=force,
        )
    assert observable(seeded, "k0", "held", "k1") == before
    assert seeded.call_record("k1") is None


@pytest.mark.parametrize("value", BAD, ids=BAD_IDS)
def test_reserve_refuses_a_bad_limit(seeded: Store, value: float) -> None:
    before = observable(seeded, "k0", "held", "k1")
    with pytest.raises(ValueError, match=_message("limit", "exposure c1", value, negative_ok=True)):
        seeded.reserve("k1", [budget(), contact(limit=value)], audit=AuditEvent("decision", {}))
    assert observable(seeded, "k0", "held", "k1") == before


@pytest.mark.parametrize("value", [*BAD, NEGATIVE], ids=[*BAD_IDS, "negative"])
def test_reserve_many_refuses_a_bad_charge_anywhere_in_the_batch(
    seeded: Store, value: float
) -> None:
    before = observable(seeded, "k0", "held", "a", "b")
    with pytest.raises(ValueError, match=_message("amount", "budget other", value)):
        seeded.reserve_many(
            [("a", [budget(1.0)]), ("b", [contact(), budget(value, name="other")])],
            audit=[AuditEvent("decision", {}, "a"), AuditEvent("decision", {}, "b")],
        )
    assert observable(seeded, "k0", "held", "a", "b") == before


def test_a_bad_charge_is_refused_even_for_a_key_that_would_replay(seeded: Store) -> None:
    """The check comes first: a replay does not hide a bad charge from the caller."""
    with pytest.raises(ValueError, match="amount"):
        seeded.reserve("held", [budget(math.nan)])
    with pytest.raises(ValueError, match="limit"):
        seeded.reserve_many([("held", [budget(limit=math.inf)])])


@pytest.mark.parametrize("value", [*BAD, NEGATIVE], ids=[*BAD_IDS, "negative"])
@pytest.mark.parametrize("ok", [True, False], ids=["ok", "failed"])
def test_finish_refuses_a_bad_actual_cost(seeded: Store, value: float, ok: bool) -> None:
    assert seeded.start("held")
    before = observable(seeded, "k0", "held")
    with pytest.raises(ValueError, match=rf"actual_cost must be a finite number >= 0, got {value}"):
        seeded.finish(
            "held", ok=ok, actual_cost=value, result='{"x": 1}', audit=AuditEvent("done", {})
        )
    assert observable(seeded, "k0", "held") == before
    record = seeded.call_record("held")
    assert record is not None
    assert record.state == "started"
    # ... and the call can still be settled properly.
    seeded.finish("held", ok=True, actual_cost=0.5)
    assert seeded.counters()[budget().key] == 2.0


def test_finish_takes_a_finite_actual_cost_of_zero(seeded: Store) -> None:
    seeded.finish("held", ok=True, actual_cost=0.0)
    assert seeded.counters()[budget().key] == 1.5


@pytest.mark.parametrize("value", BAD, ids=BAD_IDS)
def test_record_outcome_refuses_a_non_finite_value(store: Store, value: float) -> None:
    store.record_outcome(Outcome("c0", "agent", "revenue", -5.0, 100.0))  # negative is fine
    before = ([o.value for o in store.outcomes()], len(store.audit_records()))
    with pytest.raises(ValueError, match=rf"outcome value must be a finite number, got {value}"):
        store.record_outcome(Outcome("c1", "agent", "revenue", value, 200.0))
    assert ([o.value for o in store.outcomes()], len(store.audit_records())) == before


def test_the_check_itself() -> None:
    from agent_guardrails.store.base import check_finite

    check_finite(0.0, "x")
    check_finite(-3, "x", negative_ok=True)
    for bad in (math.nan, math.inf, -math.inf, -0.5, "1", None):
        with pytest.raises(ValueError, match="x must be a finite number >= 0"):
            check_finite(bad, "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"x must be a finite number, got nan"):
        check_finite(math.nan, "x", negative_ok=True)
