"""AutonomyLevel.parse and the recommend_level decision matrix."""

from __future__ import annotations

import itertools

import pytest

from agent_guardrails import AutonomyLevel, recommend_level

L0, L1, L2, L3 = (
    AutonomyLevel.ASSIST,
    AutonomyLevel.EXECUTE,
    AutonomyLevel.OPTIMIZE,
    AutonomyLevel.ORCHESTRATE,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, L0),
        (1, L1),
        (2, L2),
        (3, L3),
        (L2, L2),
        ("0", L0),
        ("3", L3),
        (" 2 ", L2),
        ("L0", L0),
        ("L2", L2),
        ("l3", L3),
        ("assist", L0),
        ("EXECUTE", L1),
        ("Optimize", L2),
        ("  orchestrate ", L3),
    ],
)
def test_parse_accepts_ints_names_and_l_forms(value: object, expected: AutonomyLevel) -> None:
    assert AutonomyLevel.parse(value) is expected


@pytest.mark.parametrize(
    "value",
    [
        -1,
        4,
        99,
        True,
        False,
        2.0,
        None,
        "",
        "L",
        "L4",
        "l7",
        "²",
        "L-1",
        "-1",
        "LL2",
        "Lassist",
        "two",
        "opt",
        [2],
    ],
)
def test_parse_rejects_anything_else_naming_the_spellings(value: object) -> None:
    with pytest.raises(ValueError, match="unknown autonomy level") as info:
        AutonomyLevel.parse(value)
    message = str(info.value)
    assert repr(value) in message
    for spelling in ("0-3", "L0-L3", "assist", "execute", "optimize", "orchestrate"):
        assert spelling in message


def test_levels_are_ordered_and_labelled() -> None:
    assert L0 < L1 < L2 < L3
    assert [int(level) for level in AutonomyLevel] == [0, 1, 2, 3]
    assert L2.label == "L2 Optimize"
    assert L3.label == "L3 Orchestrate"


# The matrix from recommend_level's docstring, one row per use case:
# (risk, data quality) -> (level, ceiling or None when the row does not say).
MATRIX_ROWS: list[tuple[str, str, str, AutonomyLevel, AutonomyLevel | None]] = [
    ("subject lines", "low", "good", L1, None),
    ("subject lines", "medium", "good", L1, None),  # "low-medium" risk covers both
    ("audience lists", "medium", "strong", L1, L2),
    ("offer/channel allocation", "medium", "reliable", L2, None),
    ("publishing and booking", "high", "varies", L0, L1),
    ("end-to-end orchestration", "high", "mature", L3, None),
]


@pytest.mark.parametrize(
    ("use_case", "risk", "quality", "level", "ceiling"),
    MATRIX_ROWS,
    ids=[f"{row[0]}-{row[1]}-{row[2]}" for row in MATRIX_ROWS],
)
def test_recommend_level_matches_every_matrix_row(
    use_case: str,
    risk: str,
    quality: str,
    level: AutonomyLevel,
    ceiling: AutonomyLevel | None,
) -> None:
    rec = recommend_level(risk, quality)
    assert rec.level is level, use_case
    if ceiling is not None:
        assert rec.ceiling is ceiling, use_case
    assert rec.ceiling >= rec.level
    assert rec.rationale


# "Anything weaker than the row it resembles drops to Assist": data weaker than 'good'.
@pytest.mark.parametrize(
    ("risk", "quality"),
    [(r, q) for r in ("low", "medium", "high") for q in ("weak", "varies")],
)
def test_weak_data_drops_to_assist(risk: str, quality: str) -> None:
    assert recommend_level(risk, quality).level is L0


QUALITIES = ("weak", "varies", "good", "strong", "reliable", "mature")


@pytest.mark.parametrize("risk", ["low", "medium", "high"])
def test_better_data_never_lowers_the_recommendation(risk: str) -> None:
    levels = [recommend_level(risk, q).level for q in QUALITIES]
    assert levels == sorted(levels)


@pytest.mark.parametrize("risk", ["low", "medium", "high"])
@pytest.mark.parametrize("quality", QUALITIES)
def test_every_recommendation_keeps_the_base_guardrails(risk: str, quality: str) -> None:
    rec = recommend_level(risk, quality)
    assert rec.ceiling >= rec.level
    for guardrail in ("validators", "audit log", "kill-switch"):
        assert guardrail in rec.guardrails


def test_recommend_level_ignores_case_and_spaces() -> None:
    assert recommend_level(" HIGH ", "Mature") == recommend_level("high", "mature")


def test_recommend_level_rejects_an_unknown_risk_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown risk 'extreme'.*low, medium, high"):
        recommend_level("extreme", "good")


def test_recommend_level_rejects_an_unknown_data_quality_naming_the_choices() -> None:
    with pytest.raises(
        ValueError, match=r"unknown data quality 'excellent'.*weak, varies, good, strong"
    ):
        recommend_level("low", "excellent")


RISKS = ("low", "medium", "high")


@pytest.mark.parametrize("quality", QUALITIES)
def test_higher_risk_never_gets_a_higher_level_with_the_same_evidence(quality: str) -> None:
    recs = [recommend_level(risk, quality) for risk in RISKS]
    for lower, higher in itertools.pairwise(recs):
        assert higher.level <= lower.level, quality
        assert higher.ceiling <= lower.ceiling, quality


@pytest.mark.parametrize(
    ("risk", "quality", "argument"),
    [
        (None, "good", "risk"),
        (3, "good", "risk"),
        ("low", None, "data_quality"),
        ("low", ["good"], "data_quality"),
    ],
)
def test_recommend_level_rejects_non_strings_with_a_value_error(
    risk: object, quality: object, argument: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{argument} must be a string, one of") as info:
        recommend_level(risk, quality)  # type: ignore[arg-type]
    assert not isinstance(info.value, AttributeError)


def test_recommend_level_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match=r"for risk: use one of low, medium, high"):
        recommend_level("extreme", "good")
    with pytest.raises(ValueError, match=r"for data_quality: use one of weak, varies"):
        recommend_level("low", "excellent")
