"""Only finite, non-negative numbers are charged (DESIGN §3.14): a NaN or an infinity
compares false against every limit, so a guard that let one through would pass every later
call. Each case on every store: nothing runs, nothing is charged, the reason is clear."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from agent_guardrails import CallRequest, Guardrails, PolicyPack, report_cost
from tests.conftest import pack_text

PACK = pack_text("""
defaults: {level: execute}
actions:
  ads.boost: {risk: low, cost: {arg: amount, per_unit: 1.0}}
  crm.tag: {risk: low, cost: 1.0}
budgets:
  - {name: daily, limit: 100, window: day}
""")
BAD: list[Any] = [math.nan, math.inf, -math.inf, -5.0, 10**400]
IDS = ["nan", "inf", "-inf", "negative", "int-past-float"]


@pytest.fixture
def guard(every_store_url: str) -> Iterator[Guardrails]:
    guard = Guardrails(PolicyPack.from_yaml(PACK), store=every_store_url)
    yield guard
    guard.close()


def spent(guard: Guardrails) -> float:
    return sum(guard.store.counters("budget:").values())


@pytest.mark.parametrize("amount", BAD, ids=IDS)
def test_an_argument_that_prices_a_call_must_be_finite(guard: Guardrails, amount: float) -> None:
    runs: list[Mapping[str, Any]] = []
    result = guard.run(CallRequest("boost", "ads.boost", {"amount": amount}), runs.append)
    assert runs == []
    assert isinstance(result, dict)
    assert result["reasons"] == ["cost_unknown"]
    assert "finite number >= 0" in result["message"]
    assert spent(guard) == 0.0
    # ... and the budget still works for the next, honest call.
    assert guard.run(CallRequest("boost", "ads.boost", {"amount": 99.0}), lambda a: "ok") == "ok"
    over = guard.run(CallRequest("boost", "ads.boost", {"amount": 2.0}), lambda a: "ok")
    assert isinstance(over, dict)
    assert over["reasons"] == ["budget_exceeded"]
    assert spent(guard) == 99.0


def test_a_price_that_overflows_is_not_charged(every_store_url: str) -> None:
    # Each factor finite, the product not: the call is refused, nothing is charged.
    pack = PACK.replace("per_unit: 1.0", "per_unit: 1.0e300")
    guard = Guardrails(PolicyPack.from_yaml(pack), store=every_store_url)
    runs: list[Mapping[str, Any]] = []
    result = guard.run(CallRequest("boost", "ads.boost", {"amount": 1e10}), runs.append)
    assert runs == []
    assert isinstance(result, dict)
    assert result["reasons"] == ["cost_unknown"]
    assert "overflows" in result["message"]
    assert spent(guard) == 0.0
    guard.close()


@pytest.mark.parametrize("amount", BAD, ids=IDS)
def test_report_cost_with_a_bad_amount_fails_the_call_and_charges_nothing(
    guard: Guardrails, amount: float
) -> None:
    def body(args: Mapping[str, Any]) -> str:
        report_cost(amount)
        return "sent"

    with pytest.raises(ValueError, match="report_cost amount must be a finite number >= 0"):
        guard.run(CallRequest("tag", "crm.tag", {"id": "c1"}), body, call_key="t|ns|bad")
    assert spent(guard) == 0.0  # released: the estimate is not kept either
    record = guard.store.call_record("t|ns|bad")
    assert record is not None
    assert record.state == "failed"
    kinds = [r.kind for r in guard.store.audit_records() if r.call_key == "t|ns|bad"]
    assert kinds == ["decision", "execution.started", "execution.failed"]


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "-1"])
def test_a_pack_with_a_non_finite_or_negative_number_is_refused(value: str) -> None:
    for body in (
        f"actions:\n  a.b: {{cost: {value}}}\n",
        f"budgets:\n  - {{limit: {value}}}\n",
        f"model_prices:\n  m: {{input_per_1k: {value}, output_per_1k: 0}}\n",
    ):
        refused = r"<string>:4: .*(finite number|greater than or equal)"
        with pytest.raises(ValueError, match=refused):
            PolicyPack.from_yaml(pack_text(body))
