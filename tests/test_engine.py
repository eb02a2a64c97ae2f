"""The decision engine: the level table, the fixed order of guardrails, caps and windows.

The engine is pure, so these tests call ``decide`` directly with the level, the counters
already used, the engaged kill-switches and the time.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any

import pytest

from agent_guardrails import (
    AutonomyLevel,
    CallRequest,
    Decision,
    DecisionKind,
    PolicyPack,
    Scope,
    decide,
)
from agent_guardrails.engine.charges import budget_counter, call_cost, charges_for
from tests.conftest import DAY, NOON_WEDNESDAY, pack_text

ALLOW, SIM, ASK, DENY, HALT = (
    DecisionKind.ALLOW,
    DecisionKind.SIMULATE,
    DecisionKind.REQUIRE_APPROVAL,
    DecisionKind.DENY,
    DecisionKind.HALT,
)
LEVELS = list(AutonomyLevel)


def run(
    pack: PolicyPack,
    action: str,
    args: Mapping[str, Any] | None = None,
    *,
    level: int = 1,
    scope: Scope = Scope(),
    used: Mapping[str, float] | None = None,
    kill: Collection[Scope] = (),
    now: float = NOON_WEDNESDAY,
    in_doubt: bool = False,
) -> Decision:
    call = CallRequest("tool", action, dict(args or {}), scope)
    return decide(
        call,
        pack,
        level=AutonomyLevel(level),
        used=used or {},
        kill_switches=kill,
        now=now,
        in_doubt=in_doubt,
    )


# ----------------------------------------------------------------------------- the level table

VARIANTS = {
    "plain": "risk: low, sensitive: false",
    "sensitive": "risk: low, sensitive: true",
    "high": "risk: high, sensitive: false",
}
KINDS = ("read", "execute", "optimize", "orchestrate")
WHENS = ("auto", "always", "never")


def _table_pack() -> PolicyPack:
    lines = ["actions:"]
    for kind in KINDS:
        for variant, flags in VARIANTS.items():
            for when in WHENS:
                lines.append(
                    f"  t.{kind}.{variant}.{when}: "
                    f"{{kind: {kind}, {flags}, approval: {{when: {when}}}}}"
                )
    return PolicyPack.from_yaml(pack_text("\n".join(lines) + "\n"))


TABLE_PACK = _table_pack()

# The table in engine.py's docstring, written out: for each level and kind, the outcome for
#   when=auto:   plain, sensitive, high-risk | when=always: same three | when=never: same three
# S = simulate (a draft), A = allow (runs), Q = require approval.
EXPECTED: dict[tuple[int, str], str] = {
    # 0 Assist: nothing runs
    (0, "read"): "SSS SSS SSS",
    (0, "execute"): "SSS SSS SSS",
    (0, "optimize"): "SSS SSS SSS",
    (0, "orchestrate"): "SSS SSS SSS",
    # 1 Execute: read/execute run, sensitive or high-risk ask; optimize/orchestrate simulated
    (1, "read"): "AQQ QQQ AAA",
    (1, "execute"): "AQQ QQQ AAA",
    (1, "optimize"): "SSS SSS SSS",
    (1, "orchestrate"): "SSS SSS SSS",
    # 2 Optimize: as 1, and optimize runs; orchestrate simulated
    (2, "read"): "AQQ QQQ AAA",
    (2, "execute"): "AQQ QQQ AAA",
    (2, "optimize"): "AQQ QQQ AAA",
    (2, "orchestrate"): "SSS SSS SSS",
    # 3 Orchestrate: everything runs; approval only where the action says always
    (3, "read"): "AAA QQQ AAA",
    (3, "execute"): "AAA QQQ AAA",
    (3, "optimize"): "AAA QQQ AAA",
    (3, "orchestrate"): "AAA QQQ AAA",
}
LETTER = {"S": SIM, "A": ALLOW, "Q": ASK}
REASON = {
    ("S", "plain"): "level_too_low",
    ("S", "sensitive"): "level_too_low",
    ("S", "high"): "level_too_low",
    ("A", "plain"): "allowed",
    ("A", "sensitive"): "allowed",
    ("A", "high"): "allowed",
    ("Q", "plain"): "approval_required:always",
    ("Q", "sensitive"): "approval_required:sensitive",
    ("Q", "high"): "approval_required:high_risk",
}
TABLE_CASES = [
    (level, kind, variant, when, EXPECTED[(level, kind)].split()[w][v])
    for (level, kind) in EXPECTED
    for w, when in enumerate(WHENS)
    for v, variant in enumerate(VARIANTS)
]


@pytest.mark.parametrize(
    ("level", "kind", "variant", "when", "letter"),
    TABLE_CASES,
    ids=[f"L{c[0]}-{c[1]}-{c[2]}-{c[3]}" for c in TABLE_CASES],
)
def test_level_table(level: int, kind: str, variant: str, when: str, letter: str) -> None:
    d = run(TABLE_PACK, f"t.{kind}.{variant}.{when}", level=level)
    assert d.kind is LETTER[letter]
    expected_reason = REASON[(letter, variant)]
    if letter == "Q" and when == "always":
        expected_reason = "approval_required:always"
    assert d.reasons == (expected_reason,)
    assert d.level == level


def test_the_table_covers_every_level_and_kind() -> None:
    assert set(EXPECTED) == {(int(lv), k) for lv in LEVELS for k in KINDS}
    assert len(TABLE_CASES) == 4 * 4 * 3 * 3


# ----------------------------------------------------------------------------- fixed order

ORDER = pack_text(
    """
    actions:
      email.send:
        risk: low
        sensitive: true
        cost: {arg: to, per_unit: 1}
        exposure: {entity: to, limit: 1, window: week}
        validators:
          - banned_terms: {terms: [free]}
      budget.move:
        kind: optimize
        risk: low
        cost: {arg: amount}
        on_cap_exceeded: approve
      crm.tag:
        risk: low
        cost: {arg: n}
        on_cap_exceeded: approve
    budgets:
      - {name: daily, limit: 10, window: day}
    """
)
PACK = PolicyPack.from_yaml(ORDER)
DAILY = budget_counter(PACK.budgets[0], NOON_WEDNESDAY)[0]
GOOD = {"to": ["c1"], "body": "hello"}
BAD = {"to": ["c1"], "body": "free stuff"}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(
    "switch", [Scope(), Scope(workflow="newsletter"), Scope(workflow="newsletter", region="eu")]
)
def test_kill_switch_wins_over_everything(level: AutonomyLevel, switch: Scope) -> None:
    scope = Scope(workflow="newsletter", region="eu", channel="email")
    full = {DAILY: 10.0}
    for action, args in [("email.send", BAD), ("email.send", GOOD), ("no.such", {})]:
        d = run(PACK, action, args, level=level, scope=scope, used=full, kill=[switch])
        assert d.kind is HALT
        assert d.reasons == (f"kill_switch:{switch.key}",)
        assert switch.key in d.message


def test_a_kill_switch_for_another_scope_does_not_halt() -> None:
    scope = Scope(workflow="newsletter", region="eu")
    others = [Scope(workflow="paid_media"), Scope(workflow="newsletter", region="us")]
    d = run(PACK, "crm.tag", {"n": 1}, scope=scope, kill=others)
    assert d.kind is ALLOW


@pytest.mark.parametrize("level", LEVELS)
def test_a_failing_validator_denies_at_every_level(level: AutonomyLevel) -> None:
    # Level 0 included: a draft that breaks policy is denied, not simulated.
    d = run(PACK, "email.send", BAD, level=level)
    assert d.kind is DENY
    assert d.reasons == ("validator_failed:banned_terms",)
    assert d.message == "denied: banned_terms: banned term 'free' in body"
    assert [(v.name, v.passed) for v in d.validators] == [("banned_terms", False)]


def test_validators_come_before_caps() -> None:
    d = run(PACK, "email.send", BAD, used={DAILY: 10.0})
    assert d.reasons == ("validator_failed:banned_terms",)


def test_every_failing_validator_is_reported() -> None:
    pack = PolicyPack.from_yaml(
        pack_text(
            """
            actions:
              email.send:
                validators:
                  - banned_terms: {terms: [free]}
                  - max_length: {field: subject, max: 5}
                  - required_text: {text: unsubscribe, fields: [body]}
            """
        )
    )
    d = run(pack, "email.send", {"subject": "too long", "body": "free unsubscribe"})
    assert d.reasons == ("validator_failed:banned_terms", "validator_failed:max_length")
    assert [v.passed for v in d.validators] == [False, False, True]


def test_a_cap_breach_wins_over_approval() -> None:
    # email.send is sensitive (approval at L1) but the budget is spent: deny, don't ask.
    d = run(PACK, "email.send", GOOD, used={DAILY: 9.5})
    assert d.kind is DENY
    assert d.reasons == ("budget_exceeded",)
    assert d.extra["limit"] == 10.0
    assert d.extra["spent"] == 9.5
    assert d.extra["requested"] == 1.0
    assert d.message == "denied: budget daily has 0.50 USD left of 10.00; this call needs 1.00"


def test_approval_only_when_everything_before_passes() -> None:
    d = run(PACK, "email.send", GOOD, used={DAILY: 9.0})
    assert d.kind is ASK
    assert d.reasons == ("approval_required:sensitive",)
    assert d.budget_left == 0.0
    assert d.exposure_left == 0.0


@pytest.mark.parametrize("level", [2, 3])
def test_on_cap_exceeded_approve_asks_at_optimize_and_above(level: int) -> None:
    for action, args in [("budget.move", {"amount": 11}), ("crm.tag", {"n": 11})]:
        d = run(PACK, action, args, level=level)
        assert d.kind is ASK
        assert d.reasons == ("budget_exceeded", "approval_required:cap_exceeded")
        assert d.extra["over_cap"] is True
        assert d.budget_left == -1.0


def test_on_cap_exceeded_approve_still_denies_at_execute() -> None:
    d = run(PACK, "crm.tag", {"n": 11}, level=1)
    assert d.kind is DENY
    assert d.reasons == ("budget_exceeded",)
    assert "over_cap" not in d.extra


def test_simulations_do_not_check_caps() -> None:
    d = run(PACK, "email.send", GOOD, level=0, used={DAILY: 10.0})
    assert d.kind is SIM
    assert d.charges == ()
    assert d.cost == 1.0  # the draft still says what it would cost


def test_an_unknown_action_is_denied() -> None:
    d = run(PACK, "sms.send", {}, level=3)
    assert (d.kind, d.reasons) == (DENY, ("unknown_action:sms.send",))


@pytest.mark.parametrize("level", [1, 2, 3])
def test_in_doubt_calls_need_approval_even_where_none_is_asked(level: int) -> None:
    d = run(TABLE_PACK, "t.read.plain.never", level=level, in_doubt=True)
    assert (d.kind, d.reasons) == (ASK, ("in_doubt",))


def test_in_doubt_at_assist_is_still_only_a_draft() -> None:
    d = run(TABLE_PACK, "t.read.plain.never", level=0, in_doubt=True)
    assert d.kind is SIM


# ----------------------------------------------------------------------------- costs

COSTS = pack_text(
    """
    actions:
      fixed.fee: {risk: low, cost: 0.25}
      per.item: {risk: low, cost: {amount: 1, arg: items, per_unit: 0.5, currency: EUR}}
      free.read: {risk: low, kind: read}
    """
)
COST_PACK = PolicyPack.from_yaml(COSTS)


@pytest.mark.parametrize(
    ("action", "args", "cost"),
    [
        ("fixed.fee", {}, 0.25),
        ("per.item", {"items": 4}, 3.0),
        ("per.item", {"items": 2.5}, 2.25),
        ("per.item", {"items": ["a", "b", "c"]}, 2.5),
        ("per.item", {"items": []}, 1.0),
        ("free.read", {"anything": 1}, 0.0),
    ],
)
def test_call_cost(action: str, args: Mapping[str, Any], cost: float) -> None:
    policy = COST_PACK.action(action)
    assert policy is not None
    assert call_cost(policy, args) == pytest.approx(cost)
    d = run(COST_PACK, action, args)
    assert d.cost == pytest.approx(cost)
    assert d.currency == ("EUR" if action == "per.item" else "USD")


@pytest.mark.parametrize("items", ["three", None, True, {"n": 3}, -1])
def test_a_cost_argument_that_is_not_a_count_denies_cost_unknown(items: object) -> None:
    args = {} if items is None else {"items": items}
    d = run(COST_PACK, "per.item", args, level=3)
    assert (d.kind, d.reasons) == (DENY, ("cost_unknown",))
    assert "argument 'items'" in d.message


def test_cost_unknown_is_a_cap_problem_checked_after_level_and_validators() -> None:
    pack = PolicyPack.from_yaml(
        pack_text(
            """
            actions:
              ads.buy:
                cost: {arg: amount}
                validators: [{allowed_values: {field: market, values: [us]}}]
            """
        )
    )
    # At Assist the call is only a draft: nothing is spent, so it is simulated.
    assert run(pack, "ads.buy", {"amount": "lots", "market": "us"}, level=0).kind is SIM
    # A failing validator is reported before the price.
    d = run(pack, "ads.buy", {"amount": "lots", "market": "fr"}, level=1)
    assert d.reasons == ("validator_failed:allowed_values",)
    d = run(pack, "ads.buy", {"amount": "lots", "market": "us"}, level=1)
    assert d.reasons == ("cost_unknown",)


# ----------------------------------------------------------------------------- budgets

STACK = pack_text(
    """
    actions:
      ads.buy: {risk: low, cost: {arg: amount}}
      email.send: {risk: low, cost: {arg: amount}}
    budgets:
      - {name: global, limit: 100}
      - {name: paid, scope: {workflow: paid}, limit: 10}
      - {name: ads, limit: 30, actions: [ads.buy], window: week}
      - {name: euros, limit: 1, currency: EUR}
    """
)
STACK_PACK = PolicyPack.from_yaml(STACK)


def key(name: str, now: float = NOON_WEDNESDAY) -> str:
    budget = next(b for b in STACK_PACK.budgets if b.name == name)
    return budget_counter(budget, now)[0]


def test_every_matching_budget_must_have_room() -> None:
    paid = Scope(workflow="paid")
    d = run(STACK_PACK, "email.send", {"amount": 10}, scope=paid)
    assert d.kind is ALLOW
    assert {c.label for c in d.charges} == {"global", "paid"}  # other currency: not charged
    assert d.budget_left == 0.0  # the smallest headroom
    d = run(STACK_PACK, "email.send", {"amount": 11}, scope=paid)
    assert (d.kind, d.extra["cap"]) == (DENY, "paid")
    d = run(STACK_PACK, "email.send", {"amount": 11}, scope=Scope(workflow="organic"))
    assert d.kind is ALLOW
    d = run(STACK_PACK, "ads.buy", {"amount": 5}, used={key("ads"): 26.0})
    assert (d.kind, d.extra["cap"]) == (DENY, "ads")
    d = run(STACK_PACK, "email.send", {"amount": 5}, used={key("ads"): 26.0})
    assert d.kind is ALLOW  # the ads budget is for ads.buy only


def test_a_call_that_exactly_fills_a_budget_is_allowed() -> None:
    assert run(STACK_PACK, "ads.buy", {"amount": 30}).kind is ALLOW
    assert run(STACK_PACK, "ads.buy", {"amount": 30.01}).kind is DENY
    assert run(STACK_PACK, "ads.buy", {"amount": 4}, used={key("global"): 96.0}).kind is ALLOW
    assert run(STACK_PACK, "ads.buy", {"amount": 4}, used={key("global"): 96.5}).kind is DENY


def test_budget_counters_start_again_in_the_next_window() -> None:
    monday = NOON_WEDNESDAY - 2 * DAY - 12 * 3600  # Monday 00:00 UTC
    assert key("global", NOON_WEDNESDAY) != key("global", NOON_WEDNESDAY + DAY)
    assert key("global", NOON_WEDNESDAY) == key("global", NOON_WEDNESDAY + 11 * 3600)
    assert key("ads", monday) == key("ads", NOON_WEDNESDAY) == key("ads", monday + 7 * DAY - 1)
    assert key("ads", monday + 7 * DAY) != key("ads", monday)

    spent_today = {key("global"): 100.0}
    assert run(STACK_PACK, "email.send", {"amount": 1}, used=spent_today).kind is DENY
    tomorrow = NOON_WEDNESDAY + DAY
    assert run(STACK_PACK, "email.send", {"amount": 1}, used=spent_today, now=tomorrow).allowed
    one_second_before_midnight = NOON_WEDNESDAY + 12 * 3600 - 1
    d = run(
        STACK_PACK, "email.send", {"amount": 1}, used=spent_today, now=one_second_before_midnight
    )
    assert d.kind is DENY


def test_charges_name_their_window_end() -> None:
    d = run(STACK_PACK, "ads.buy", {"amount": 1})
    ends = {c.label: c.expires_at for c in d.charges}
    assert ends["global"] == NOON_WEDNESDAY + 12 * 3600  # midnight
    assert ends["ads"] == NOON_WEDNESDAY + 4 * DAY + 12 * 3600  # next Monday 00:00


def test_a_priced_call_with_zero_cost_still_carries_its_budget_charges() -> None:
    # so that a cost reported by the tool (report_cost) is committed to the budget
    d = run(STACK_PACK, "email.send", {"amount": 0})
    assert {c.label: c.amount for c in d.charges} == {"global": 0.0}
    d = run(STACK_PACK, "email.send", {"amount": 0}, used={key("global"): 100.5})
    assert d.kind is DENY  # already overspent by reported costs


# ----------------------------------------------------------------------------- exposures

EXPOSURE = pack_text(
    """
    actions:
      email.send:
        risk: low
        exposure: {entity: to, limit: 2, window: week, group: touches}
      sms.send:
        risk: low
        exposure: {entity: phone, limit: 2, window: week, group: touches}
      call.book:
        risk: low
        exposure: {entity: contact, limit: 0, window: day}
    """
)
EXPOSURE_PACK = PolicyPack.from_yaml(EXPOSURE)


def exposure_key(entity: str, group: str = "touches") -> str:
    policy = EXPOSURE_PACK.action("email.send")
    assert policy is not None
    call = CallRequest("t", "email.send", {"to": entity})
    (charge,) = charges_for(call, policy, EXPOSURE_PACK, cost=0.0, now=NOON_WEDNESDAY)
    return charge.key.replace("touches", group)


def test_each_entity_in_a_list_argument_is_one_touch() -> None:
    d = run(EXPOSURE_PACK, "email.send", {"to": ["c1", "c2", "c1"]})
    assert d.kind is ALLOW
    assert sorted(c.label for c in d.charges) == ["to=c1", "to=c2"]  # duplicates count once
    assert all(c.kind == "exposure" and c.amount == 1.0 for c in d.charges)


def test_one_over_exposed_entity_denies_the_whole_call() -> None:
    used = {exposure_key("c2"): 2.0}
    d = run(EXPOSURE_PACK, "email.send", {"to": ["c1", "c2", "c3"]}, used=used)
    assert (d.kind, d.reasons) == (DENY, ("exposure_exceeded",))
    assert d.extra["cap"] == "to=c2"
    assert d.extra["cap_kind"] == "exposure"
    assert (d.extra["limit"], d.extra["spent"]) == (2.0, 2.0)
    assert "exposure cap for to=c2 reached (2 of 2 touches in this window)" in d.message
    used = {exposure_key("c2"): 1.0}
    d = run(EXPOSURE_PACK, "email.send", {"to": ["c1", "c2", "c3"]}, used=used)
    assert (d.kind, d.exposure_left) == (ALLOW, 0.0)


def test_actions_in_one_group_share_their_counters() -> None:
    used = {exposure_key("c1"): 2.0}
    assert run(EXPOSURE_PACK, "sms.send", {"phone": "c1"}, used=used).kind is DENY
    assert run(EXPOSURE_PACK, "sms.send", {"phone": "c9"}, used=used).kind is ALLOW


def test_an_exposure_limit_of_zero_allows_no_touch() -> None:
    assert run(EXPOSURE_PACK, "call.book", {"contact": "c1"}).kind is DENY
    # No entity: the cap cannot be checked, so the call fails closed.
    missing = run(EXPOSURE_PACK, "call.book", {})
    assert missing.kind is DENY
    assert missing.reasons == ("exposure_unknown",)


# ----------------------------------------------------------------------------- purity


def test_decide_reads_but_never_changes_what_it_is_given() -> None:
    used = {DAILY: 3.0}
    frozen = MappingProxyType(dict(used))
    first = run(PACK, "email.send", GOOD, used=frozen)
    again = run(PACK, "email.send", GOOD, used=frozen)
    assert first == again
    assert dict(frozen) == used


# ----------------------------------------------------------------------------- messages


def test_an_allowed_message_reads_the_same_however_it_is_read() -> None:
    # The engine formats an allowed call's message only when it is read: every way of
    # reading a decision must see the same text as if it had been formatted up front.
    text = "allowed: ads.buy at L1 Execute (26.00 USD left in budget)"

    def allowed() -> Decision:
        d = run(STACK_PACK, "ads.buy", {"amount": 4})
        assert (d.kind, d.budget_left) == (ALLOW, 26.0)
        return d

    d = allowed()
    assert d.message == text
    assert d.message is d.message  # formatted once
    assert allowed().as_dict()["message"] == text
    assert f"message={text!r}" in repr(allowed())
    assert dataclasses.asdict(allowed())["message"] == text
    assert pickle.loads(pickle.dumps(allowed())).message == text
    assert copy.copy(allowed()).message == text
    assert copy.deepcopy(allowed()).message == text
    assert allowed() == d
    assert allowed() == dataclasses.replace(d)
    assert dataclasses.replace(allowed(), reasons=("x",)).message == text
    assert dataclasses.replace(allowed(), message="other").message == "other"
    changed = allowed()
    changed.message = "set by hand"
    assert changed.message == "set by hand"
    assert changed != d


def test_an_allowed_message_without_a_budget_names_only_the_level() -> None:
    d = run(TABLE_PACK, "t.read.plain.auto", level=3)
    assert (d.kind, d.budget_left) == (ALLOW, None)
    assert d.message == "allowed: t.read.plain.auto at L3 Orchestrate"


def test_a_decision_without_extra_reads_as_an_empty_mapping() -> None:
    d = run(STACK_PACK, "ads.buy", {"amount": 4})
    assert d.extra.get("over_cap") is None
    assert d.extra.get("over_cap", 1) == 1
    assert "over_cap" not in d.extra
    assert dict(d.extra) == {}
    with pytest.raises(KeyError):
        d.extra["over_cap"]


# ---------------------------------------------------------------------------- may_ask


@pytest.mark.parametrize(
    ("policy", "asks"),
    [
        ("{risk: low}", False),
        ("{risk: high}", True),
        ("{sensitive: true}", True),
        ("{risk: low, approval: {when: always}}", True),
        ("{risk: high, approval: {when: never}}", False),
        ("{risk: low, on_cap_exceeded: approve}", True),
    ],
)
def test_may_ask_says_whether_an_action_can_need_a_human(policy: str, asks: bool) -> None:
    from agent_guardrails.engine.rules import may_ask

    pack = PolicyPack.from_yaml(f"name: p\nversion: 1\nactions:\n  a.b: {policy}\n")
    assert may_ask(pack, "a.b") is asks
    assert may_ask(pack, "not.in.pack") is False


def test_what_the_pipeline_checked_is_not_run_again() -> None:
    """``checked`` carries what the application's validators said (run off the event loop
    by the pipeline, by their index): the engine uses it and runs only the others."""
    from agent_guardrails.engine.rules import user_validators
    from agent_guardrails.policy.validators import ValidatorRegistry

    calls: list[str] = []

    def mine(call: CallRequest, params: Any) -> str | None:
        calls.append(call.action)
        return "from the function"

    registry = ValidatorRegistry()
    registry.register("mine", mine)
    pack = PolicyPack.from_yaml(
        pack_text(
            "defaults: {level: execute}\n"
            "actions:\n"
            "  crm.tag:\n"
            "    risk: low\n"
            "    validators:\n"
            "      - banned_terms: {terms: [spam]}\n"
            "      - mine: {}\n"
        ),
        registry=registry,
    )
    assert [i for i, _ in user_validators(pack, "crm.tag")] == [1]  # built-ins run inline
    call = CallRequest("tag", "crm.tag", {"note": "hello"}, Scope())

    def at_execute(request: CallRequest, checked: Mapping[int, str | None]) -> Decision:
        return decide(
            request,
            pack,
            level=AutonomyLevel.EXECUTE,
            used={},
            now=NOON_WEDNESDAY,
            checked=checked,
        )

    passed = at_execute(call, {1: None})
    assert passed.kind is DecisionKind.ALLOW
    assert calls == []
    refused = at_execute(call, {1: "no consent"})
    assert refused.kind is DecisionKind.DENY
    assert calls == []
    assert refused.reasons == ("validator_failed:mine",)
    assert "mine: no consent" in refused.message
    spam = CallRequest("tag", "crm.tag", {"note": "spam"}, Scope())
    both = at_execute(spam, {1: "no consent"})
    assert both.reasons == ("validator_failed:banned_terms", "validator_failed:mine")
    assert calls == []  # after the first failure the rest are reported from `checked` too
    unchecked = decide(call, pack, level=AutonomyLevel.EXECUTE, used={}, now=NOON_WEDNESDAY)
    assert unchecked.kind is DecisionKind.DENY
    assert calls == ["crm.tag"]
