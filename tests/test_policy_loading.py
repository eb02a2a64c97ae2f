"""Loading policy packs: scope precedence, budgets stacking, and errors with file, line, field.

Every pack here is written out in the test (``pack_text`` puts ``name`` and ``version`` on
lines 1-2), so the line an error must point at is visible next to the assertion.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from agent_guardrails import AutonomyLevel, PolicyError, PolicyPack, Scope
from agent_guardrails.errors import PolicyProblem
from tests.conftest import pack_text

L0, L1, L2, L3 = (
    AutonomyLevel.ASSIST,
    AutonomyLevel.EXECUTE,
    AutonomyLevel.OPTIMIZE,
    AutonomyLevel.ORCHESTRATE,
)


def problems_of(text: str) -> list[PolicyProblem]:
    with pytest.raises(PolicyError) as info:
        PolicyPack.from_yaml(text)
    return list(info.value.problems)


def only_problem(text: str) -> PolicyProblem:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    return problems[0]


# ----------------------------------------------------------------------------- the demo pack


def test_the_demo_pack_loads_and_resolves_levels_by_specificity() -> None:
    source = resources.files("agent_guardrails.ops.demo").joinpath("marketing_pack.yaml")
    pack = PolicyPack.from_yaml(source.read_text(encoding="utf-8"))
    assert (pack.name, pack.version) == ("marketing-default", "2026.11.1")
    assert set(pack.actions) == {
        "email.send",
        "audience.build",
        "budget.reallocate",
        "page.publish",
        "campaign.launch",
    }
    newsletter_eu = Scope(workflow="newsletter", region="eu")
    assert pack.initial_level(newsletter_eu) is L0  # the 2-dimension rule beats the 1-dim one
    assert pack.ceiling_for(newsletter_eu) is L1
    assert pack.dial_scope(newsletter_eu) == newsletter_eu
    assert pack.initial_level(Scope(workflow="newsletter", region="us")) is L1
    assert pack.dial_scope(Scope(workflow="newsletter", channel="email")) == Scope(
        workflow="newsletter"
    )
    assert pack.initial_level(Scope(workflow="paid_media")) is L2
    assert pack.initial_level(Scope(workflow="unknown")) is L0  # defaults.level
    assert pack.dial_scope(Scope(workflow="unknown")) == Scope()
    assert pack.ceiling_for(Scope(workflow="unknown")) is L3  # defaults.ceiling
    assert len(pack.validators_for("email.send")) == 4
    assert pack.validators_for("budget.reallocate") == ()


# ----------------------------------------------------------------------------- precedence

PRECEDENCE = pack_text(
    """
    defaults: {level: assist, ceiling: execute}
    levels:
      - scope: {workflow: w, region: eu, channel: email}
        level: assist
      - scope: {workflow: w}
        level: execute
      - scope: {workflow: w, region: eu}
        level: optimize
        ceiling: orchestrate
    """
)


@pytest.mark.parametrize(
    ("scope", "level", "rule_scope"),
    [
        (
            Scope(workflow="w", region="eu", channel="email", agent="a"),
            L0,
            "channel=email,region=eu,workflow=w",
        ),
        (Scope(workflow="w", region="eu", channel="sms"), L2, "region=eu,workflow=w"),
        (Scope(workflow="w", region="us", channel="email"), L1, "workflow=w"),
        (Scope(workflow="v", region="eu", channel="email"), L0, "global"),
    ],
)
def test_most_specific_level_rule_wins_whatever_its_place_in_the_file(
    scope: Scope, level: AutonomyLevel, rule_scope: str
) -> None:
    pack = PolicyPack.from_yaml(PRECEDENCE)
    assert pack.initial_level(scope) is level
    assert pack.dial_scope(scope).key == rule_scope


def test_ceiling_comes_from_the_winning_rule_or_the_defaults() -> None:
    pack = PolicyPack.from_yaml(PRECEDENCE)
    assert pack.ceiling_for(Scope(workflow="w", region="eu")) is L3
    assert pack.ceiling_for(Scope(workflow="w")) is L3  # a rule without ceiling: no limit
    assert pack.ceiling_for(Scope(workflow="x")) is L1  # defaults.ceiling


BUDGETS = pack_text(
    """
    actions:
      email.send: {cost: 1}
      ads.buy: {cost: 1}
    budgets:
      - {name: all, limit: 1000}
      - {name: newsletter, scope: {workflow: newsletter}, limit: 100}
      - {name: newsletter-eu, scope: {workflow: newsletter, region: eu}, limit: 10}
      - {name: ads-only, limit: 50, actions: [ads.buy]}
      - {name: paid, scope: {workflow: paid_media}, limit: 5}
    """
)


@pytest.mark.parametrize(
    ("action", "scope", "names"),
    [
        (
            "email.send",
            Scope(workflow="newsletter", region="eu"),
            {"all", "newsletter", "newsletter-eu"},
        ),
        ("email.send", Scope(workflow="newsletter", region="us"), {"all", "newsletter"}),
        ("ads.buy", Scope(workflow="newsletter"), {"all", "newsletter", "ads-only"}),
        ("ads.buy", Scope(workflow="paid_media"), {"all", "ads-only", "paid"}),
        ("email.send", Scope(), {"all"}),
    ],
)
def test_budgets_stack(action: str, scope: Scope, names: set[str]) -> None:
    pack = PolicyPack.from_yaml(BUDGETS)
    assert {b.name for b in pack.budgets_for(action, scope)} == names


# ----------------------------------------------------------------------------- ambiguity


AMBIGUOUS = pack_text(
    """
    levels:
      - scope: {workflow: newsletter}
        level: execute
      - scope: {region: eu}
        level: assist
    """
)


def test_two_equally_specific_compatible_rules_are_a_load_time_error_naming_both() -> None:
    problem = only_problem(AMBIGUOUS)
    assert (problem.line, problem.field) == (6, "levels[1].scope")
    assert "ambiguous" in problem.message
    assert "levels[0] (workflow=newsletter)" in problem.message
    assert "levels[1] (region=eu)" in problem.message
    assert "add a level rule for scope region=eu,workflow=newsletter" in problem.message


def test_ambiguity_is_resolved_by_a_rule_for_the_merged_scope() -> None:
    resolved = AMBIGUOUS + "  - scope: {workflow: newsletter, region: eu}\n    level: assist\n"
    pack = PolicyPack.from_yaml(resolved)
    assert pack.initial_level(Scope(workflow="newsletter", region="eu")) is L0
    assert pack.initial_level(Scope(workflow="newsletter", region="us")) is L1
    assert pack.initial_level(Scope(workflow="paid", region="eu")) is L0


def test_rules_that_can_never_match_one_call_are_not_ambiguous() -> None:
    pack = PolicyPack.from_yaml(
        pack_text(
            """
            levels:
              - {scope: {workflow: newsletter}, level: execute}
              - {scope: {workflow: paid_media}, level: optimize}
              - {scope: {workflow: newsletter, region: eu}, level: assist}
              - {scope: {workflow: paid_media, channel: search}, level: execute}
            """
        )
    )
    assert pack.initial_level(Scope(workflow="paid_media", channel="search", region="eu")) is L1


def test_ambiguity_between_two_dimension_rules() -> None:
    problem = only_problem(
        pack_text(
            """
            levels:
              - {scope: {workflow: w, region: eu}, level: execute}
              - {scope: {workflow: w, channel: email}, level: assist}
            """
        )
    )
    assert (problem.line, problem.field) == (5, "levels[1].scope")
    assert "channel=email,region=eu,workflow=w" in problem.message


def test_duplicate_level_scopes_are_an_error() -> None:
    problem = only_problem(
        pack_text(
            """
            levels:
              - scope: {workflow: newsletter}
                level: execute
              - scope: {workflow: newsletter}
                level: optimize
            """
        )
    )
    assert (problem.line, problem.field) == (6, "levels[1].scope")
    assert "duplicate level rule for scope workflow=newsletter (also levels[0])" in problem.message


# ----------------------------------------------------------------------------- errors


ERRORS: list[tuple[str, str, int, str, str]] = [
    # (id, body, line, field, part of the message)
    (
        "malformed-yaml",
        """
        actions:
          email.send: {risk: low
        levels: []
        """,
        5,
        "",
        "not valid YAML",
    ),
    (
        "unknown-top-level-field",
        """
        description: ok
        budget: []
        """,
        4,
        "budget",
        "unknown field 'budget'; allowed here: name, version, description, defaults, actions, "
        "levels, budgets, gates, model_prices, kill_switch",
    ),
    (
        "unknown-action-field",
        """
        actions:
          email.send:
            risk: low
            sensitve: true
        """,
        6,
        "actions.email.send.sensitve",
        "unknown field 'sensitve'; allowed here: description, risk, sensitive, kind, cost,",
    ),
    (
        "unknown-scope-dimension",
        """
        levels:
          - level: execute
            scope:
              team: growth
        """,
        6,
        "levels[0].scope.team",
        "allowed here: agent, workflow, segment, channel, region",
    ),
    (
        "wrong-type-bool",
        """
        actions:
          email.send:
            sensitive: maybe
        """,
        5,
        "actions.email.send.sensitive",
        "valid boolean",
    ),
    (
        "wrong-literal",
        """
        actions:
          email.send:
            kind: publish
        """,
        5,
        "actions.email.send.kind",
        "'read', 'execute', 'optimize' or 'orchestrate'",
    ),
    (
        "bad-level",
        """
        levels:
          - scope: {workflow: w}
            level: L7
        """,
        5,
        "levels[0].level",
        "unknown autonomy level 'L7'",
    ),
    (
        "negative-budget-limit",
        """
        budgets:
          - name: daily
            limit: -5
        """,
        5,
        "budgets[0].limit",
        "greater than or equal to 0",
    ),
    (
        "negative-exposure-limit",
        """
        actions:
          email.send:
            exposure:
              entity: to
              limit: -1
        """,
        7,
        "actions.email.send.exposure.limit",
        "greater than or equal to 0",
    ),
    (
        "negative-cost",
        """
        actions:
          email.send:
            cost: {amount: -0.5}
        """,
        5,
        "actions.email.send.cost.amount",
        "greater than or equal to 0",
    ),
    (
        "bad-window",
        """
        budgets:
          - limit: 5
            window: fortnight
        """,
        5,
        "budgets[0].window",
        "bad window 'fortnight'",
    ),
    (
        "duplicate-key",
        """
        actions:
          email.send: {risk: low}
          crm.tag: {risk: low}
          email.send: {risk: high}
        """,
        6,
        "actions.email.send",
        "duplicate key (first at line 4)",
    ),
    (
        "ceiling-below-level",
        """
        levels:
          - scope: {workflow: w}
            level: optimize
            ceiling: execute
        """,
        6,
        "levels[0].ceiling",
        "ceiling execute is below level optimize",
    ),
    (
        "default-ceiling-below-default-level",
        """
        defaults:
          level: execute
          ceiling: assist
        """,
        5,
        "defaults.ceiling",
        "ceiling is below the default level",
    ),
    (
        "gate-downwards",
        """
        gates:
          - from: optimize
            to: execute
        """,
        4,
        "gates[0]",
        "'to' (execute) must be above 'from' (optimize)",
    ),
    (
        "gate-to-itself",
        """
        gates:
          - {from: 1, to: L1}
        """,
        4,
        "gates[0]",
        "'to' (execute) must be above 'from' (execute)",
    ),
    (
        "gate-skips-a-level",
        """
        gates:
          - {from: assist, to: optimize}
        """,
        4,
        "gates[0]",
        "one level at a time: 'to' must be the level right above 'from' (execute)",
    ),
    (
        "gate-lift-without-kpi",
        """
        gates:
          - {from: optimize, to: orchestrate, min_lift: 0.02}
        """,
        4,
        "gates[0]",
        "min_lift needs the KPI it is measured on: add lift_kpi",
    ),
    (
        "gate-holdout-without-entity",
        """
        gates:
          - {from: execute, to: optimize, holdout: 0.2}
        """,
        4,
        "gates[0]",
        "holdout and holdout_entity go together",
    ),
    (
        "gate-confidence-one",
        """
        gates:
          - {from: execute, to: optimize, confidence: 1.0}
        """,
        4,
        "gates[0].confidence",
        "less than 1",
    ),
    (
        "unknown-action-in-budget",
        """
        actions:
          email.send: {cost: 1}
        budgets:
          - limit: 5
            actions: [email.send, sms.send]
        """,
        7,
        "budgets[0].actions[1]",
        "unknown action 'sms.send'; actions in this pack: email.send",
    ),
    (
        "duplicate-budget",
        """
        budgets:
          - {scope: {workflow: w}, limit: 5}
          - {scope: {workflow: w}, limit: 9}
        """,
        5,
        "budgets[1]",
        "duplicate budget: same scope, window, currency and actions as budgets[0]",
    ),
    (
        "duplicate-budget-name",
        """
        budgets:
          - {name: daily, scope: {workflow: a}, limit: 5}
          - {name: daily, scope: {workflow: b}, limit: 500}
        """,
        5,
        "budgets[1].name",
        "duplicate budget name 'daily' (also budgets[0])",
    ),
    (
        "exposure-group-windows-differ",
        """
        actions:
          email.send:
            exposure: {entity: to, limit: 3, window: week, group: touches}
          sms.send:
            exposure:
              entity: to
              limit: 1
              group: touches
              window: day
        """,
        11,
        "actions.sms.send.exposure.window",
        "exposure group 'touches' counts per week in action email.send",
    ),
    (
        "unknown-validator",
        """
        actions:
          email.send:
            validators:
              - max_length: {field: subject, max: 78}
              - brand_voice
        """,
        7,
        "actions.email.send.validators[1]",
        "unknown validator 'brand_voice'; known validators: allowed_channels",
    ),
    (
        "validator-setting-out-of-range",
        """
        actions:
          email.send:
            validators:
              - max_length:
                  field: subject
                  max: -1
        """,
        8,
        "actions.email.send.validators[0].max_length.max",
        "greater than or equal to 0",
    ),
    (
        "validator-unknown-setting",
        """
        actions:
          email.send:
            validators:
              - banned_terms:
                  terms: [free]
                  feilds: [body]
        """,
        8,
        "actions.email.send.validators[0].banned_terms.feilds",
        "unknown setting 'feilds'; allowed: terms, fields, case_sensitive",
    ),
    (
        "validator-settings-not-a-mapping",
        """
        actions:
          email.send:
            validators:
              - banned_terms: [free]
        """,
        6,
        "actions.email.send.validators[0]",
        "settings of validator 'banned_terms' must be a mapping",
    ),
    (
        "validator-empty-banned-term",
        """
        actions:
          email.send:
            validators:
              - banned_terms: {terms: [free, ""]}
        """,
        6,
        "actions.email.send.validators[0].banned_terms.terms[1]",
        "at least 1 character",
    ),
    (
        "unknown-consent-check",
        """
        actions:
          email.send:
            validators:
              - consent: {check: no_such_check, entity: to}
        """,
        6,
        "actions.email.send.validators[0]",
        "unknown consent check 'no_such_check'",
    ),
    (
        "uppercase-mapping-key",
        """
        model_prices:
          GPT-4o:
            input_per_1k: -1
            output_per_1k: 0.01
        """,
        5,
        "model_prices.GPT-4o.input_per_1k",
        "greater than or equal to 0",
    ),
    (
        "bad-action-name",
        """
        actions:
          Email Send: {risk: low}
        """,
        3,
        "actions",
        "action name 'Email Send': use dotted lowercase words",
    ),
]


@pytest.mark.parametrize(
    ("body", "line", "field", "message"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
def test_each_problem_names_its_line_and_field(
    body: str, line: int, field: str, message: str
) -> None:
    problem = only_problem(pack_text(body))
    assert (problem.file, problem.line, problem.field) == ("<string>", line, field)
    assert message in problem.message
    prefix = f"<string>:{line}: {field}: " if field else f"<string>:{line}: "
    assert str(problem) == prefix + problem.message


def test_every_problem_is_reported_at_once_in_file_order() -> None:
    problems = problems_of(
        pack_text(
            """
            actions:
              email.send:
                validators: [nope]
            levels:
              - {scope: {workflow: w}, level: optimize, ceiling: assist}
            budgets:
              - {limit: 5, actions: [sms.send]}
            """
        )
    )
    assert [(p.line, p.field) for p in problems] == [
        (5, "actions.email.send.validators[0]"),
        (7, "levels[0].ceiling"),
        (9, "budgets[0].actions[0]"),
    ]


def test_the_error_message_lists_every_problem() -> None:
    with pytest.raises(PolicyError) as info:
        PolicyPack.from_yaml(pack_text("risk: low\nlevel: 2\n"))
    text = str(info.value)
    assert text.startswith("policy pack has 2 problems:")
    assert "<string>:3: risk: unknown field 'risk'" in text
    assert "<string>:4: level: unknown field 'level'" in text


def test_a_missing_required_field() -> None:
    problem = only_problem("name: p\ndescription: no version\n")
    assert (problem.line, problem.field, problem.message) == (
        1,
        "version",
        "required field is missing",
    )


@pytest.mark.parametrize(("text", "got"), [("", "an empty document"), ("- a\n- b\n", "a list")])
def test_a_pack_must_be_a_mapping(text: str, got: str) -> None:
    problem = only_problem(text)
    assert problem.line == 1
    assert got in problem.message


# ----------------------------------------------------------------------------- files


def test_from_yaml_reads_a_file_and_errors_name_it(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(pack_text("defaults: {level: execute}\n"), encoding="utf-8")
    assert PolicyPack.from_yaml(good).defaults.level is L1
    assert PolicyPack.from_yaml(str(good)).defaults.level is L1

    bad = tmp_path / "bad.yaml"
    bad.write_text(pack_text("defaults:\n  level: 9\n"), encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        PolicyPack.from_yaml(bad)
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.field) == (str(bad), 4, "defaults.level")
    assert str(problem).startswith(f"{bad}:4: defaults.level: unknown autonomy level 9")


@pytest.mark.parametrize("as_path", [True, False])
def test_a_missing_file_is_a_policy_error_naming_it(tmp_path: Path, as_path: bool) -> None:
    missing = tmp_path / "nowhere" / "pack.yaml"
    with pytest.raises(PolicyError) as info:
        PolicyPack.from_yaml(missing if as_path else str(missing))
    (problem,) = info.value.problems
    assert problem.file == str(missing)
    assert problem.line is None
    assert "cannot read the file" in problem.message


def test_a_pack_keeps_its_source_text() -> None:
    text = pack_text("defaults: {level: execute}  # a comment survives\n")
    assert PolicyPack.from_yaml(text).to_yaml() == text


def test_from_dict_validates_the_same_way_without_lines() -> None:
    pack = PolicyPack.from_dict({"name": "p", "version": 3, "defaults": {"level": "L2"}})
    assert (pack.version, pack.defaults.level) == ("3", L2)
    with pytest.raises(PolicyError) as info:
        PolicyPack.from_dict({"name": "p", "version": 1, "budgets": [{"limit": -1}]})
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.field) == ("<dict>", None, "budgets[0].limit")


def test_digest_tells_contents_apart_and_ignores_formatting() -> None:
    a = PolicyPack.from_yaml(pack_text("defaults: {level: execute}\n"))
    b = PolicyPack.from_yaml(pack_text("defaults:\n  level: 1   # same thing\n"))
    c = PolicyPack.from_yaml(pack_text("defaults: {level: optimize}\n"))
    assert a.digest == b.digest != c.digest


def test_costs_budgets_and_prices_default_to_the_packs_currency() -> None:
    pack = PolicyPack.from_yaml(
        pack_text(
            """
defaults: {currency: EUR}
actions:
  a.fixed: {cost: 2}
  a.arg: {cost: {arg: n}}
  a.usd: {cost: {amount: 1, currency: USD}}
budgets:
  - {limit: 10}
model_prices:
  m: {input_per_1k: 1, output_per_1k: 2}
"""
        )
    )
    costs = {name: a.cost.currency for name, a in pack.actions.items() if a.cost is not None}
    assert costs == {"a.fixed": "EUR", "a.arg": "EUR", "a.usd": "USD"}
    assert pack.budgets[0].currency == "EUR"
    assert pack.model_prices["m"].currency == "EUR"


# ----------------------------------------------------------------------------- hostile YAML


@pytest.mark.parametrize(
    ("body", "line", "field", "message"),
    [
        ("x: &a [1, *a]\n", 3, "x[1]", "self-referential alias"),
        ("x: &a\n  y: {z: *a}\n", 4, "x.y.z", "self-referential alias"),
        ("x: " + "[" * 70 + "]" * 70 + "\n", 3, "x" + "[0]" * 63, "nested more than 64"),
        ("x: !!python/object:os.system {}\n", 3, "x", "tag !!python/object:os.system"),
        ("x:\n  - !!python/object/apply:os.system ['true']\n", 4, "x[0]", "!!python/object/apply"),
        ("x: !custom 1\n", 3, "x", "tag !custom is not allowed"),
        ("x: !!int abc\n", 3, "x", "cannot read 'abc' as !!int"),
        ("x: [1, 2\ny: 3\n", 4, "", "not valid YAML"),
    ],
)
def test_hostile_yaml_is_one_problem_with_line_and_field(
    body: str, line: int, field: str, message: str
) -> None:
    problem = only_problem(pack_text(body))
    assert (problem.line, problem.field) == (line, field)
    assert message in problem.message


def test_a_billion_laughs_document_is_refused_at_the_alias_that_overflows() -> None:
    body = "l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n"
    for k in range(1, 9):
        body += f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 10)}]\n"
    problem = only_problem(pack_text(body))
    assert "aliases expand the document beyond" in problem.message
    assert problem.line is not None
    assert problem.field.startswith("l")


def test_aliases_that_do_not_recurse_still_work() -> None:
    pack = PolicyPack.from_yaml(
        pack_text(
            """
            actions:
              a.b: {risk: low, approval: &ap {roles: [ops], timeout: 1h}}
              c.d: {risk: low, approval: *ap}
            """
        )
    )
    assert pack.actions["c.d"].approval.roles == ("ops",)


def test_a_bad_date_reaches_the_pack_checks_as_text_with_its_field() -> None:
    problem = only_problem(
        pack_text("description: 2026-13-45\nactions: {a.b: {risk: 2026-01-01}}\n")
    )
    assert (problem.line, problem.field) == (4, "actions.a.b.risk")
    assert "'2026-01-01'" in problem.message
    pack = PolicyPack.from_yaml(pack_text("description: 2026-13-45\n"))
    assert pack.description == "2026-13-45"


def test_invalid_utf8_is_located_by_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(pack_text("description: caf\xe9\n").encode("latin-1"))
    with pytest.raises(PolicyError) as info:
        PolicyPack.from_yaml(path)
    (problem,) = info.value.problems
    assert (problem.file, problem.line) == (str(path), 3)
    assert "not valid UTF-8: byte(s) e9 at column 17" in problem.message


def test_a_nul_character_is_reported_with_its_line() -> None:
    problem = only_problem(pack_text("description: a\x00b\n"))
    assert problem.line == 3
    assert "not allowed in a YAML document" in problem.message


def test_a_key_with_a_newline_stays_on_one_line() -> None:
    problem = only_problem(pack_text('"bad\\nkey": 1\n'))
    assert problem.field == "'bad\\nkey'"
    assert "\n" not in str(problem)


def test_scope_values_with_control_characters_are_refused_with_the_field() -> None:
    problem = only_problem(
        pack_text('levels:\n  - {scope: {workflow: "news\\u200bletter"}, level: assist}\n')
    )
    assert (problem.line, problem.field) == (4, "levels[0].scope.workflow")
    assert "U+200B (ZERO WIDTH SPACE)" in problem.message


@pytest.mark.parametrize(("field", "value"), [("timeout", "31d"), ("sla", "5w")])
def test_approval_timeouts_are_at_most_30_days(field: str, value: str) -> None:
    problem = only_problem(
        pack_text(f"actions:\n  a.b:\n    risk: low\n    approval: {{{field}: {value}}}\n")
    )
    assert problem.field == f"actions.a.b.approval.{field}"
    assert "at most 30 days" in problem.message
    ok = PolicyPack.from_yaml(
        pack_text("actions:\n  a.b:\n    risk: low\n    approval: {timeout: 30d, sla: 7d}\n")
    )
    assert ok.actions["a.b"].approval.timeout == 30 * 86_400


def test_a_version_read_as_a_number_is_refused() -> None:
    # YAML reads 1.10 as 1.1: two releases would collide. Whole numbers are fine.
    with pytest.raises(PolicyError, match="quote it"):
        PolicyPack.from_yaml("name: a\nversion: 1.10\nactions: {x.y: {risk: low}}\n")
    assert PolicyPack.from_yaml("name: a\nversion: 3\nactions: {x.y: {risk: low}}\n").version == "3"
    quoted = PolicyPack.from_yaml('name: a\nversion: "1.10"\nactions: {x.y: {risk: low}}\n')
    assert quoted.version == "1.10"


@pytest.mark.parametrize("window", ["99999999999999999999d", "36501d"])
def test_a_window_past_what_a_store_can_count_is_refused(window: str) -> None:
    # It loaded, then every call on SQLite raised OverflowError (PostgreSQL: out of range).
    text = "name: a\nversion: 1\nactions: {x.y: {risk: low}}\nbudgets:\n"
    with pytest.raises(PolicyError, match="at most 100 years"):
        PolicyPack.from_yaml(text + f"  - {{name: b, limit: 5, window: {window}}}\n")
    PolicyPack.from_yaml(text + "  - {name: b, limit: 5, window: 36500d}\n")
