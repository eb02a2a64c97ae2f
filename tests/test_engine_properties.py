"""Properties of the engine over generated packs, levels, counters and kill-switches.

- a call whose validator fails, or whose cap is exhausted, is never allowed, at any level and
  whatever the kill-switches;
- the engine is pure: the same inputs give the same decision and nothing is spent by
  deciding (neither the counters handed in nor the store behind a Guardrails move).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_guardrails import (
    AutonomyLevel,
    CallRequest,
    DecisionKind,
    Guardrails,
    PolicyPack,
    Scope,
    decide,
)
from agent_guardrails.engine.charges import charges_for
from agent_guardrails.store import MemoryStore
from tests.conftest import NOON_WEDNESDAY

CALL_SCOPE = Scope(workflow="newsletter", region="eu")
SWITCHES = [
    Scope(),
    Scope(workflow="newsletter"),
    Scope(region="eu"),
    Scope(workflow="newsletter", region="eu"),
    Scope(workflow="paid_media"),  # never matches the call
    Scope(region="us"),  # never matches the call
]


@functools.cache
def make_pack(
    kind: str,
    risk: str,
    sensitive: bool,
    when: str,
    on_cap_exceeded: str,
    budget_limit: float,
    exposure_limit: int,
) -> PolicyPack:
    return PolicyPack.from_dict(
        {
            "name": "generated",
            "version": "1",
            "actions": {
                "email.send": {
                    "kind": kind,
                    "risk": risk,
                    "sensitive": sensitive,
                    "approval": {"when": when},
                    "on_cap_exceeded": on_cap_exceeded,
                    "cost": {"arg": "to", "per_unit": 1.0},
                    "exposure": {"entity": "to", "limit": exposure_limit, "window": "week"},
                    "validators": [{"banned_terms": {"terms": ["free"], "fields": ["body"]}}],
                }
            },
            "budgets": [
                {"name": "team", "scope": {"workflow": "newsletter"}, "limit": budget_limit}
            ],
        }
    )


packs = st.builds(
    make_pack,
    kind=st.sampled_from(["read", "execute", "optimize", "orchestrate"]),
    risk=st.sampled_from(["low", "medium", "high"]),
    sensitive=st.booleans(),
    when=st.sampled_from(["auto", "always", "never"]),
    on_cap_exceeded=st.sampled_from(["deny", "approve"]),
    budget_limit=st.sampled_from([0.0, 1.0, 3.0, 10.0]),
    exposure_limit=st.integers(min_value=0, max_value=3),
)
levels = st.sampled_from(list(AutonomyLevel))
switches = st.lists(st.sampled_from(SWITCHES), max_size=3, unique=True)
recipients = st.lists(st.sampled_from(["c1", "c2", "c3", "c4"]), min_size=1, max_size=4)
bodies = st.sampled_from(["hello", "unsubscribe here", "free offer", "Totally FREE"])
used_amounts = st.floats(min_value=0, max_value=12, allow_nan=False)


def counters(
    pack: PolicyPack, args: Mapping[str, Any], budget_used: float, touched: float
) -> dict[str, float]:
    """Counter values for every charge this call would make: the budget at ``budget_used``,
    every recipient at ``touched`` touches."""
    action = pack.action("email.send")
    assert action is not None
    call = CallRequest("send", "email.send", args, CALL_SCOPE)
    charges = charges_for(call, action, pack, cost=0.0, now=NOON_WEDNESDAY)
    return {c.key: budget_used if c.kind == "budget" else touched for c in charges}


def validator_fails(body: str) -> bool:
    return "free" in body.lower()


@settings(max_examples=300, deadline=None)
@given(
    pack=packs,
    level=levels,
    kill=switches,
    to=recipients,
    body=bodies,
    budget_used=used_amounts,
    touched=st.integers(min_value=0, max_value=4),
    in_doubt=st.booleans(),
)
def test_never_allow_a_failing_validator_or_an_exhausted_cap(
    pack: PolicyPack,
    level: AutonomyLevel,
    kill: list[Scope],
    to: list[str],
    body: str,
    budget_used: float,
    touched: int,
    in_doubt: bool,
) -> None:
    args = {"to": to, "body": body}
    used = counters(pack, args, budget_used, float(touched))
    call = CallRequest("send", "email.send", args, CALL_SCOPE)
    d = decide(
        call,
        pack,
        level=level,
        used=used,
        kill_switches=kill,
        now=NOON_WEDNESDAY,
        in_doubt=in_doubt,
    )

    halted = any(s.matches(CALL_SCOPE) for s in kill)
    cost = float(len(to))
    budget_exhausted = budget_used + cost > pack.budgets[0].limit + 1e-9
    exposure = pack.actions["email.send"].exposure
    assert exposure is not None
    exposure_exhausted = touched + 1 > exposure.limit
    if halted:
        assert d.kind is DecisionKind.HALT
        return
    assert d.kind is not DecisionKind.HALT
    if validator_fails(body):
        assert d.kind is DecisionKind.DENY
        assert d.reasons == ("validator_failed:banned_terms",)
    if budget_exhausted or exposure_exhausted:
        assert d.kind is not DecisionKind.ALLOW
        if d.kind is DecisionKind.REQUIRE_APPROVAL:
            # only an over-cap approval, at Optimize or above, where the pack says so
            assert "approval_required:cap_exceeded" in d.reasons
            assert level >= AutonomyLevel.OPTIMIZE
            assert pack.actions["email.send"].on_cap_exceeded == "approve"
    if d.kind is DecisionKind.ALLOW:
        assert d.budget_left is not None
        assert d.budget_left >= -1e-9
        assert d.exposure_left is not None
        assert d.exposure_left >= 0


@settings(max_examples=150, deadline=None)
@given(
    pack=packs,
    level=levels,
    kill=switches,
    to=recipients,
    body=bodies,
    budget_used=used_amounts,
    touched=st.integers(min_value=0, max_value=4),
)
def test_the_engine_is_pure(
    pack: PolicyPack,
    level: AutonomyLevel,
    kill: list[Scope],
    to: list[str],
    body: str,
    budget_used: float,
    touched: int,
) -> None:
    args = {"to": to, "body": body}
    used = counters(pack, args, budget_used, float(touched))
    before = dict(used)
    call = CallRequest("send", "email.send", args, CALL_SCOPE)
    first = decide(call, pack, level=level, used=used, kill_switches=kill, now=NOON_WEDNESDAY)
    second = decide(call, pack, level=level, used=used, kill_switches=kill, now=NOON_WEDNESDAY)
    assert first == second
    assert used == before
    assert args == {"to": to, "body": body}


@settings(max_examples=60, deadline=None)
@given(pack=packs, level=levels, to=recipients, body=bodies, checks=st.integers(1, 3))
def test_checking_a_call_spends_nothing(
    pack: PolicyPack, level: AutonomyLevel, to: list[str], body: str, checks: int
) -> None:
    store = MemoryStore()
    guard = Guardrails(pack, store=store, clock=lambda: NOON_WEDNESDAY)
    guard.set_level(
        Scope(), min(level, pack.ceiling_for(CALL_SCOPE)), by="test", reason="setup", override=True
    )
    audit_before = len(store.audit_records())
    call = CallRequest("send", "email.send", {"to": to, "body": body}, CALL_SCOPE)
    decisions = [guard.check(call) for _ in range(checks)]
    assert all(d == decisions[0] for d in decisions)
    assert all(v == 0.0 for v in store.counters().values())
    assert store.in_doubt() == []
    assert len(store.audit_records()) == audit_before
