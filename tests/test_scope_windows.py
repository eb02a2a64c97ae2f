"""Scopes (matching, specificity, parsing) and counting windows (durations, buckets)."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agent_guardrails import Scope
from agent_guardrails.policy.windows import parse_duration, validate_window, window_bucket


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# ----------------------------------------------------------------------------- scopes


def test_a_rule_matches_calls_that_agree_on_every_dimension_it_names() -> None:
    rule = Scope(workflow="newsletter", region="eu")
    assert rule.matches(Scope(workflow="newsletter", region="eu"))
    assert rule.matches(Scope(agent="bot", workflow="newsletter", region="eu", channel="email"))
    assert not rule.matches(Scope(workflow="newsletter"))  # region unknown: no match
    assert not rule.matches(Scope(workflow="newsletter", region="us"))
    assert not rule.matches(Scope(workflow="paid_media", region="eu"))


def test_the_global_scope_matches_everything_and_is_least_specific() -> None:
    assert Scope().matches(Scope())
    assert Scope().matches(Scope(workflow="w", region="r"))
    assert Scope().specificity == 0
    assert Scope().key == "global"
    assert Scope(workflow="w", region="r", channel="c").specificity == 3


def test_key_is_canonical_whatever_the_construction_order() -> None:
    a = Scope.parse("workflow=newsletter,region=eu")
    b = Scope.parse("region=eu, workflow=newsletter")
    assert a == b
    assert a.key == b.key == "region=eu,workflow=newsletter"
    assert str(a) == a.key
    assert Scope.parse(a.key) == a  # the key round-trips through the CLI form


@pytest.mark.parametrize("text", ["", "global", "*", "  global  "])
def test_parse_global(text: str) -> None:
    assert Scope.parse(text) == Scope()


@pytest.mark.parametrize("text", ["workflow", "workflow=", "=eu", "workflow=a,,region=b"])
def test_parse_rejects_malformed_text_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match=r"dim=value pairs.*workflow=newsletter,region=eu"):
        Scope.parse(text)


def test_parse_rejects_unknown_dimensions_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown scope dimension\(s\) team") as info:
        Scope.parse("team=growth")
    assert "agent, workflow, segment, channel, region" in str(info.value)


def test_parse_rejects_a_dimension_given_twice() -> None:
    with pytest.raises(ValueError, match="workflow is given more than once"):
        Scope.parse("workflow=a,region=eu,workflow=b")


def test_from_mapping_stringifies_ints_and_skips_none() -> None:
    assert Scope.from_mapping({"segment": 42, "region": None}) == Scope(segment="42")


@pytest.mark.parametrize("value", ["", True, 1.5, ["eu"]])
def test_from_mapping_rejects_values_that_are_not_names(value: object) -> None:
    with pytest.raises(ValueError, match="scope region must be a non-empty string"):
        Scope.from_mapping({"region": value})


def test_compatible_and_merge() -> None:
    newsletter = Scope(workflow="newsletter")
    eu = Scope(region="eu")
    assert newsletter.compatible(eu)
    assert eu.compatible(newsletter)
    assert newsletter.merge(eu) == Scope(workflow="newsletter", region="eu")
    assert not newsletter.compatible(Scope(workflow="paid_media", region="eu"))
    assert newsletter.compatible(Scope(workflow="newsletter", channel="email"))
    assert Scope().compatible(newsletter)


# ----------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("24h", 86_400),
        ("7d", 604_800),
        ("2w", 1_209_600),
        (" 1.5h ", 5400),
        (45, 45),
        (0.5, 0.5),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value", ["5x", "", "h", "-5m", "1 day", True, None, [1], 0, -3, "0s", float("nan"), 1e309]
)
def test_parse_duration_rejects_bad_and_non_positive_values(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize("name", ["total", "hour", "day", "week", "month", "6h", "7d", "90m"])
def test_validate_window_accepts_names_and_durations(name: str) -> None:
    assert validate_window(name) == name


@pytest.mark.parametrize("name", ["fortnight", "daily", "", "-1d"])
def test_validate_window_names_the_choices(name: str) -> None:
    with pytest.raises(ValueError, match=r"bad window .*total, hour, day, week, month"):
        validate_window(name)


@pytest.mark.parametrize("name", ["0.5s", "1.5s"])
def test_windows_are_whole_seconds(name: str) -> None:
    # A "0.5s" bucket used to reach window_bucket and divide by zero.
    with pytest.raises(ValueError, match="whole number of seconds"):
        validate_window(name)


# ----------------------------------------------------------------------------- buckets


def test_total_is_one_bucket_forever() -> None:
    assert window_bucket("total", 0.0) == window_bucket("total", ts(2090, 1, 1))


def test_day_buckets_are_utc_calendar_days() -> None:
    start, end = window_bucket("day", ts(2024, 1, 3, 23, 59, 59))
    assert (utc(start), utc(end)) == (
        datetime(2024, 1, 3, tzinfo=UTC),
        datetime(2024, 1, 4, tzinfo=UTC),
    )
    # midnight belongs to the new day, one second before to the old one
    assert window_bucket("day", ts(2024, 1, 4))[0] == end
    assert window_bucket("day", ts(2024, 1, 4) - 1)[0] == start


def test_hour_buckets() -> None:
    start, end = window_bucket("hour", ts(2024, 5, 6, 7, 30))
    assert (utc(start), end - start) == (datetime(2024, 5, 6, 7, tzinfo=UTC), 3600)


@pytest.mark.parametrize(
    ("when", "monday"),
    [
        ((2024, 1, 3, 12), (2024, 1, 1)),  # a Wednesday
        ((2024, 1, 1, 0), (2024, 1, 1)),  # Monday 00:00 opens its own week
        ((2024, 1, 7, 23, 59), (2024, 1, 1)),  # Sunday night still in it
        ((1970, 1, 1, 0), (1969, 12, 29)),  # the epoch was a Thursday
    ],
)
def test_week_buckets_are_iso_weeks_starting_monday(
    when: tuple[int, ...], monday: tuple[int, int, int]
) -> None:
    start, end = window_bucket("week", ts(*when))
    assert utc(start) == datetime(*monday, tzinfo=UTC)
    assert utc(start).weekday() == 0
    assert end - start == 7 * 86_400


@pytest.mark.parametrize(
    ("when", "first", "next_first"),
    [
        ((2024, 2, 15), (2024, 2, 1), (2024, 3, 1)),  # leap February: 29 days
        ((2023, 2, 28, 23), (2023, 2, 1), (2023, 3, 1)),
        ((2023, 12, 31, 23, 59), (2023, 12, 1), (2024, 1, 1)),
        ((2024, 4, 1), (2024, 4, 1), (2024, 5, 1)),
    ],
)
def test_month_buckets_are_calendar_months(
    when: tuple[int, ...], first: tuple[int, int, int], next_first: tuple[int, int, int]
) -> None:
    start, end = window_bucket("month", ts(*when))
    assert utc(start) == datetime(*first, tzinfo=UTC)
    assert utc(end) == datetime(*next_first, tzinfo=UTC)


def test_fixed_duration_buckets_align_to_the_epoch() -> None:
    start, end = window_bucket("7d", ts(2024, 1, 3, 12))
    assert end - start == 7 * 86_400
    assert start % (7 * 86_400) == 0
    assert utc(start).weekday() == calendar.THURSDAY  # the epoch's weekday
    start, end = window_bucket("90m", ts(2024, 1, 3, 1, 29))
    assert (utc(start), utc(end)) == (
        datetime(2024, 1, 3, 0, 0, tzinfo=UTC),
        datetime(2024, 1, 3, 1, 30, tzinfo=UTC),
    )


@example(now=2_051_222_399.9999995, window="month")  # rounded up into 2035-01 once
@given(
    now=st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False),
    window=st.sampled_from(["hour", "day", "week", "month", "6h", "7d", "90m", "45s"]),
)
def test_every_instant_falls_in_exactly_one_bucket(now: float, window: str) -> None:
    start, end = window_bucket(window, now)
    assert start <= now < end
    assert window_bucket(window, start) == (start, end)  # the start belongs to it
    assert window_bucket(window, end)[0] == end  # the end opens the next bucket
    assert end - start <= timedelta(days=31).total_seconds()


@pytest.mark.parametrize("bad", ["a\u200bb", "a\x00b", "a\nb", "a\u202eb", "\ufeffa", "a\u2028b"])
def test_scope_values_with_invisible_or_control_characters_are_refused(bad: str) -> None:
    code = re.escape(f"U+{ord(next(c for c in bad if c not in 'ab')):04X}")
    with pytest.raises(ValueError, match=rf"scope workflow .* contains {code}"):
        Scope.from_mapping({"workflow": bad})
    with pytest.raises(ValueError, match=rf"contains {code}"):
        Scope.parse(f"region=eu,workflow={bad}")
    with pytest.raises(ValueError, match=rf"scope workflow .* contains {code}"):
        Scope(workflow=bad)  # built directly, too


@pytest.mark.parametrize("bad", ["", 5, None])
def test_a_scope_built_directly_needs_non_empty_text(bad: object) -> None:
    if bad is None:
        assert Scope(workflow=None).as_dict() == {}  # None: the dimension is not set
        return
    with pytest.raises(ValueError, match="scope workflow must be a non-empty string"):
        Scope(workflow=bad)  # type: ignore[arg-type]


def test_scope_values_may_be_any_visible_text() -> None:
    assert Scope.parse("workflow=café-ñ,region=東京").as_dict() == {
        "workflow": "café-ñ",
        "region": "東京",
    }
    assert Scope(region="eu\u00a0west").region == "eu\u00a0west"  # a no-break space shows
