"""The weekly scorecard: the data model's checks, the JSON round trip, and what the Markdown and
HTML renderers promise (one summary row per scope, charts counted from the data, no script, no
external URL, every user string escaped, chart scales that follow the numbers)."""

from __future__ import annotations

import dataclasses
import doctest
import json
import math
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from html.parser import HTMLParser
from typing import cast, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_guardrails.ops import _scorecard_svg as _svg
from agent_guardrails.ops import scorecard
from agent_guardrails.ops._scorecard_render import BLOCKS, EMPTY, GAP, key_numbers
from agent_guardrails.ops.scorecard import (
    Anomaly,
    Direction,
    Incident,
    LiftLine,
    MetricLine,
    MetricStatus,
    Recommendation,
    ScopeRow,
    Scorecard,
    Verdict,
    WeekPoint,
    from_json,
    to_html,
    to_json,
    to_markdown,
)

EVIL = "<script>alert(1)</script> \"quoted\" & 'single'"


def week(n: int) -> str:
    return (date(2026, 10, 5) + timedelta(weeks=n)).isoformat()


def series(*values: float | None) -> tuple[WeekPoint, ...]:
    return tuple(WeekPoint(week(i), v) for i, v in enumerate(values))


LABELS = {
    "success_rate": "Success rate",
    "policy_pass_rate": "Policy pass rate",
    "escalation_rate": "Escalation rate",
    "sla_adherence": "SLA adherence",
}


def metric(
    name: str,
    est: float | None,
    low: float | None,
    high: float | None,
    threshold: float,
    status: MetricStatus,
    n: int,
    direction: Direction = "min",
    sentence: str = "",
) -> MetricLine:
    """A gate metric; the sentence defaults to the gate's usual wording for its status."""
    label = LABELS.get(name, name)
    bound = "lower" if direction == "min" else "upper"
    need = f"needs {bound} bound {'≥' if direction == 'min' else '≤'} {threshold:.2f}"
    default = {
        "pass": f"{label} {est} [{low}, {high}] {need}: met on {n} runs",
        "short": f"{label} {est} [{low}, {high}] {need}: about {n // 2} more runs",
        "fail": f"{label} {est} [{low}, {high}] {need}: the whole interval misses it",
        "missing": f"{label}: no data this week; missing data never passes",
    }.get(status, "?")
    return MetricLine(
        name, label, est, low, high, threshold, direction, status, n, sentence or default
    )


CONVERSION = series(0.031, 0.034, None, 0.029, 0.041, 0.044, 0.047, 0.052)
PROMOTE = ScopeRow(
    scope="workflow=abandoned-cart/channel=email",
    dimensions={"workflow": "abandoned-cart", "channel": "email"},
    level=1,
    level_name="Execute",
    verdict="promote",
    explanation="Every gate cleared on its interval bound over 820 runs in 8 weeks.",
    transition="1 → 2",
    metrics=(
        metric("success_rate", 0.975, 0.958, 0.986, 0.95, "pass", 820),
        metric("policy_pass_rate", 0.995, 0.986, 0.999, 0.98, "pass", 820),
        metric("escalation_rate", 0.021, 0.012, 0.034, 0.05, "pass", 820, "max"),
        metric("sla_adherence", 0.97, 0.955, 0.981, 0.95, "pass", 790),
    ),
    kpis={"conversion rate": CONVERSION, "revenue (EUR)": series(12050, 11800, 13420, None)},
    lift=(
        LiftLine("conversion rate", "all", 0.082, 0.031, 0.135, 4100, 4020),
        LiftLine("conversion rate", "new customers", 0.121, 0.040, 0.205, 1500, 1480),
        LiftLine("conversion rate", "returning", 0.034, -0.028, 0.097, 2600, 2540),
        LiftLine("revenue (EUR)", "all", -0.012, -0.051, 0.026, 4100, 4020),
    ),
    wins=("Recovered 312 carts worth EUR 18,400 without an escalation.",),
    anomalies=(),
    incidents=(),
    recommendation="promote",
    recommendation_reason="Raise to L2 Optimize: all four gates pass with margin.",
    evaluation_id="eval-2026-w48-017",
)
DEMOTE = ScopeRow(
    scope="workflow=paid-social-budget/region=emea",
    dimensions={"workflow": "paid-social-budget", "region": "emea"},
    level=2,
    level_name="Optimize",
    verdict="demote",
    explanation="Success and escalations breached their thresholds; SLA data is missing.",
    transition="2 → 1",
    metrics=(
        metric("success_rate", 0.88, 0.84, 0.91, 0.95, "fail", 310),
        metric("policy_pass_rate", 0.97, 0.955, 0.981, 0.98, "short", 310),
        metric("escalation_rate", 0.06, 0.04, 0.09, 0.05, "fail", 310, "max"),
        metric("sla_adherence", None, None, None, 0.95, "missing", 0),
    ),
    kpis={"ROAS": series(3.1, 2.9, 2.4, 2.2, 1.9, None)},
    lift=(),
    wins=(),
    anomalies=(
        Anomaly("spend", week(7), 18250.0, 9000.0, 14000.0, "Spend ran 30% over its band."),
    ),
    incidents=(
        Incident(1234, "budget_exceeded", "2026-11-26T14:03:11Z", "Daily cap hit at 14:03."),
        Incident(1240, "kill_switch", "2026-11-27T09:15:00Z", "Operator engaged the kill switch."),
    ),
    recommendation="rollback",
    recommendation_reason="Roll back to L1 Execute until success recovers.",
    evaluation_id="eval-2026-w48-018",
)
INVALID = ScopeRow(
    scope=f"segment={EVIL}",
    dimensions={"segment": EVIL},
    level=0,
    level_name="Assist",
    verdict="invalid",
    explanation="Sample ratio mismatch: control got 38% of traffic, expected 50%.",
    transition=None,
    metrics=(metric("success_rate", 0.95, 0.9, 0.98, 0.95, "short", 120, sentence=EVIL),),
    kpis={EVIL: series(10, None, 14, 12)},
    lift=(),
    wins=(EVIL,),
    anomalies=(),
    incidents=(),
    recommendation="hold",
    recommendation_reason="Fix the assignment before judging lift.",
    evaluation_id=None,
)
CARD = Scorecard(
    title="Weekly autonomy scorecard",
    week_start="2026-11-23",
    week_end="2026-11-29",
    generated_at="2026-11-30T06:00:00Z",
    pack="growth-pack v3",
    rows=(PROMOTE, DEMOTE, INVALID),
    notes=("SRM: segment control share 38% vs 50% expected (p < 0.001); lift withheld.",),
)
EMPTY_CARD = dataclasses.replace(CARD, rows=(), notes=())


# ---- an HTML reader ---------------------------------------------------------------------------

VOID = {"meta", "br", "link", "img", "hr", "input", "source", "wbr"}


@dataclass
class Svg:
    attrs: dict[str, str]
    children: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    texts: list[tuple[str, dict[str, str], str]] = field(default_factory=list)

    def all(self, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        return [a for t, a in self.children if t == tag and (cls is None or a.get("class") == cls)]


class Page(HTMLParser):
    """Every start tag with its attributes, the SVGs with their children and texts, the CSS."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.svgs: list[Svg] = []
        self.style = ""
        self.text: list[str] = []
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "svg":
            self.svgs.append(Svg(a))
        elif any(t == "svg" for t, _ in self.stack):
            self.svgs[-1].children.append((tag, a))
        if tag not in VOID:
            self.stack.append((tag, a))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack, f"</{tag}> closes nothing"
        assert self.stack[-1][0] == tag, f"</{tag}> closes {self.stack[-1]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.stack and self.stack[-1][0] == "style":
            self.style += data
        elif any(t == "svg" for t, _ in self.stack):
            self.svgs[-1].texts.append((self.stack[-1][0], self.stack[-1][1], data))

    def of_class(self, cls: str) -> list[Svg]:
        return [s for s in self.svgs if s.attrs.get("class") == cls]


@pytest.fixture(scope="module")
def page() -> Page:
    return Page(to_html(CARD))


# ---- HTML -------------------------------------------------------------------------------------


def test_the_summary_has_one_row_per_scope_with_its_verdict_as_text_and_color(page: Page) -> None:
    rows = [a for t, a in page.tags if t == "tr" and "data-scope" in a]
    assert [a["data-scope"] for a in rows] == [r.scope for r in CARD.rows]
    badges = [a["class"] for t, a in page.tags if t == "span" and "badge-" in a.get("class", "")]
    for row in CARD.rows:
        assert f"badge badge-{row.verdict}" in badges
    for label in ("Promote", "Demote", "Invalid", "Rollback", "Hold"):
        assert label in page.text  # a label beside every color


def test_one_svg_per_kpi_sparkline_forest_plot_and_gate_metric(page: Page) -> None:
    kpis = sum(len(r.kpis) for r in CARD.rows)
    forests = sum(1 for r in CARD.rows if r.lift)
    metrics = sum(len(r.metrics) for r in CARD.rows)
    assert (kpis, forests, metrics) == (4, 1, 9)
    assert len(page.of_class("sparkline")) == kpis
    assert len(page.of_class("forest")) == forests
    assert len(page.of_class("interval")) == metrics
    assert len(page.svgs) == kpis + forests + metrics


def test_no_script_and_no_external_url_anywhere(page: Page) -> None:
    html = to_html(CARD)
    assert "script" not in {t for t, _ in page.tags}
    assert "<script" not in html.lower()
    assert {t for t, _ in page.tags}.isdisjoint({"link", "img", "iframe", "object", "embed"})
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            for bad in ("http://", "https://", "//"):
                assert bad not in value.lower(), (tag, name, value)
            assert not name.startswith("on"), (tag, name)
    assert page.style.strip()
    for bad in ("http:", "https:", "//", "url(", "@import", "@font-face"):
        assert bad not in page.style.lower()
    assert "@media print" in page.style
    assert "break-before: page" in page.style


def test_every_svg_has_a_viewbox_size_role_and_title_first(page: Page) -> None:
    for svg in page.svgs:
        assert svg.attrs["viewbox"].startswith("0 0 "), svg.attrs  # HTMLParser lowercases
        _, _, width, height = svg.attrs["viewbox"].split()
        assert (svg.attrs["width"], svg.attrs["height"]) == (width, height)
        assert svg.attrs["role"] == "img"
        assert svg.children[0][0] == "title"
        assert svg.texts[0][0] == "title"
        assert svg.texts[0][2].strip()


def test_user_text_is_escaped_everywhere(page: Page) -> None:
    html = to_html(CARD)
    assert EVIL not in html
    assert "<script>alert(1)</script>" not in html
    text = "".join(page.text)
    assert EVIL in text  # shown to the reader, as text
    assert any(a.get("data-scope") == f"segment={EVIL}" for _, a in page.tags)  # quotes held
    titles = [t for svg in page.svgs for tag, _, t in svg.texts if tag == "title"]
    assert any(EVIL in t for t in titles)  # the KPI's name inside an SVG title too


def test_numbers_are_formatted_for_a_reader() -> None:
    html = to_html(CARD)
    assert "97.5% [95.8%, 98.6%]" in html
    assert "+8.2% [+3.1%, +13.5%]" in html
    assert "13.42k (week of 2026-10-19)" in html  # the last value with data, 4 digits
    assert "audit #1234" in html
    assert "audit #1240" in html
    assert "2026-11-30T06:00:00Z" in html.split("<footer>")[1]
    assert "growth-pack v3" in html.split("<footer>")[1]
    assert "How to read this" in html
    assert "Missing data never passes" in html


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1234.5, "1234"),
        (12345, "12.35k"),
        (9999.7, "10k"),
        (2_500_000, "2.5M"),
        (0.123456, "0.1235"),
        (-0.0, "0"),
        (-12345, "-12.35k"),
    ],
)
def test_kpi_values_keep_four_significant_digits(value: float, text: str) -> None:
    assert _svg.num(value) == text


def test_rates_are_percentages_with_one_decimal() -> None:
    assert _svg.pct_interval(0.93, 0.88, 0.96) == "93.0% [88.0%, 96.0%]"
    assert _svg.pct(-0.00001, signed=True) == "+0.0%"
    assert _svg.pct(-0.034, signed=True) == "-3.4%"


def test_the_forest_plot_places_estimates_on_one_linear_scale(page: Page) -> None:
    (forest,) = page.of_class("forest")
    marks = [float(a["cx"]) for a in forest.all("circle", "estimate")]
    bars = [(float(a["x1"]), float(a["x2"])) for a in forest.all("line", "interval")]
    (zero,) = forest.all("line", "zero")
    x0 = float(zero["x1"])
    estimates = [x.estimate for x in PROMOTE.lift]
    assert len(marks) == len(estimates) == len(bars)
    # Order follows the values, each mark sits inside its bar, and zero splits signs.
    assert sorted(range(len(marks)), key=marks.__getitem__) == sorted(
        range(len(estimates)), key=estimates.__getitem__
    )
    for (lo, hi), cx, line in zip(bars, marks, PROMOTE.lift, strict=True):
        assert lo < cx < hi
        assert (cx > x0) == (line.estimate > 0)
        assert (lo > x0) == (line.low > 0)
    # Linear: pixels per unit of lift are the same for every mark and every tick label.
    scales = [(cx - x0) / e for cx, e in zip(marks, estimates, strict=True)]
    ticks = [(float(a["x"]), t) for tag, a, t in forest.texts if a.get("class") == "tick"]
    assert len(ticks) >= 3
    for x, label in ticks:
        value = float(label.rstrip("%")) / 100
        if value:
            scales.append((x - x0) / value)
        else:
            assert x == pytest.approx(x0, abs=0.01)
    assert max(scales) == pytest.approx(min(scales), rel=1e-3)
    assert min(scales) > 0  # larger lift further right


def test_each_gate_chart_puts_the_interval_on_the_right_side_of_the_threshold(page: Page) -> None:
    charts = page.of_class("interval")
    lines = [m for r in CARD.rows for m in r.metrics]
    assert len(charts) == len(lines)
    for chart, m in zip(charts, lines, strict=True):
        (threshold,) = chart.all("line", "threshold")
        tx = float(threshold["x1"])
        if m.estimate is None:
            assert not chart.all("circle", "estimate")
            assert any(t == "no data" for _, _, t in chart.texts)
            continue
        (bar,) = chart.all("line", "interval")
        low, high = float(bar["x1"]), float(bar["x2"])
        if m.status == "pass":
            assert (low >= tx) if m.direction == "min" else (high <= tx), m.name
        if m.status == "fail" and m.direction == "min":
            assert high < tx, m.name


def test_a_sparkline_breaks_at_missing_weeks_and_marks_the_last_value(page: Page) -> None:
    spark = page.of_class("sparkline")[0]  # conversion rate: a gap in week 3
    assert len(spark.all("line", "gap")) == sum(p.value is None for p in CONVERSION)
    (first, second) = spark.all("polyline", "line")
    assert len(first["points"].split()) == 2
    assert len(second["points"].split()) == 5
    (last,) = spark.all("circle", "last")
    assert float(last["cx"]) == pytest.approx(float(second["points"].split()[-1].split(",")[0]))
    ys = [float(p.split(",")[1]) for p in second["points"].split()]
    assert ys == sorted(ys, reverse=True)  # rising values, smaller y (SVG y points down)


def test_an_empty_week_says_so_in_every_format() -> None:
    assert EMPTY == "No scopes had activity this week."
    page = Page(to_html(EMPTY_CARD))
    assert EMPTY in "".join(page.text)
    assert not page.svgs
    assert not [a for t, a in page.tags if "data-scope" in a]
    assert EMPTY in to_markdown(EMPTY_CARD)
    text = to_json(EMPTY_CARD)
    assert json.loads(text)["summary"] == EMPTY
    assert from_json(text) == EMPTY_CARD


# ---- Markdown ---------------------------------------------------------------------------------


def summary_table(md: str) -> list[list[str]]:
    lines = md.splitlines()
    start = lines.index("| Scope | Level | Verdict | Recommendation | Key numbers |") + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return [[cell.strip() for cell in row.replace("\\|", "¦").split("|")[1:-1]] for row in rows]


def test_markdown_has_one_summary_row_per_scope() -> None:
    rows = summary_table(to_markdown(CARD))
    assert len(rows) == len(CARD.rows)
    assert [r[2].split()[0] for r in rows] == [r.verdict for r in CARD.rows]
    assert [r[3] for r in rows] == [r.recommendation for r in CARD.rows]
    assert "97.5% [95.8%, 98.6%] pass" in rows[0][4]
    assert rows[0][1] == "L1 Execute"
    assert rows[0][2] == "promote (1 → 2)"


def test_markdown_sparklines_follow_the_values() -> None:
    md = to_markdown(CARD)
    kpi_rows = [
        x for x in md.splitlines() if x.startswith("| conversion rate |") and "week of" in x
    ]
    (line,) = kpi_rows
    trend = line.split("|")[2].strip()
    values = [p.value for p in CONVERSION]
    assert len(trend) == len(values)
    known = [v for v in values if v is not None]
    for char, v in zip(trend, values, strict=True):
        if v is None:
            assert char == GAP
        elif v == min(known):
            assert char == BLOCKS[0] == "▁"
        elif v == max(known):
            assert char == BLOCKS[-1] == "█"
    pairs = [(v, BLOCKS.index(c)) for c, v in zip(trend, values, strict=True) if v is not None]
    assert [level for _, level in sorted(pairs)] == sorted(level for _, level in pairs)


def test_markdown_lists_sentences_lift_anomalies_and_incidents_with_text_escaped() -> None:
    md = to_markdown(CARD)
    assert EVIL not in md
    assert "<script>" not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "audit #1234 · budget\\_exceeded" in md
    assert "| conversion rate | new customers | +12.1% [+4.0%, +20.5%] | 1,500 | 1,480 |" in md
    assert "outside [9000, 1.4e+04]" not in md
    assert "18.25k outside [9000, 14k]" in md
    assert md.count("\n## ") == 1 + len(CARD.rows)  # Notes, then one section per scope
    assert "Generated 2026-11-30T06:00:00Z · pack growth-pack v3" in md


# ---- JSON -------------------------------------------------------------------------------------


def test_json_round_trips_exactly_in_a_stable_order() -> None:
    text = to_json(CARD)
    assert from_json(text) == CARD
    assert to_json(from_json(text)) == text
    doc = json.loads(text)
    assert list(doc)[:4] == ["format", "version", "summary", "title"]
    assert list(doc["rows"][0]["kpis"]) == ["conversion rate", "revenue (EUR)"]
    assert doc["rows"][0]["kpis"]["conversion rate"][2] == {"week": week(2), "value": None}
    assert "NaN" not in text
    assert "Infinity" not in text


def corrupt(path: list[str | int], value: object) -> str:
    doc = json.loads(to_json(CARD))
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["rows", 0, "metrics", 1, "low"], math.nan, "$.rows[0].metrics[1].low: needs a finite"),
        (["rows", 0, "lift", 0, "low"], 0.5, "$.rows[0].lift[0]: LiftLine.low: 0.5 is above"),
        (
            ["rows", 1, "incidents", 0, "audit_seq"],
            "1234",
            "$.rows[1].incidents[0].audit_seq: needs an integer",
        ),
        (["rows", 2, "verdict"], "maybe", "$.rows[2]: ScopeRow.verdict: 'maybe' is not one"),
        (["rows", 0, "kpis", "ROAS"], {}, '$.rows[0].kpis["ROAS"]: needs a list'),
        (["rows", 0, "colour"], "red", "$.rows[0].colour: unknown field"),
        (["version"], 2, "$.format"),
        (["week_end"], "2026-11-20", "$: Scorecard.week_end: 2026-11-20 is before"),
    ],
)
def test_bad_json_names_the_path(path: list[str | int], value: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        from_json(corrupt(path, value))


def test_bad_json_documents_are_rejected() -> None:
    with pytest.raises(ValueError, match="JSON"):
        from_json("{not json")
    with pytest.raises(ValueError, match="duplicate key 'title'"):
        from_json('{"title": "a", "title": "b"}')
    doc = json.loads(to_json(CARD))
    del doc["rows"][0]["wins"]
    with pytest.raises(ValueError, match=r"^\$\.rows\[0\]: missing wins"):
        from_json(json.dumps(doc))


# ---- the data model -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field_name"),
    [
        (lambda: metric("s", math.nan, 0.1, 0.9, 0.5, "short", 10), "MetricLine.estimate"),
        (lambda: metric("s", 0.5, 0.6, 0.9, 0.5, "short", 10), "MetricLine.low"),
        (lambda: metric("s", 1.2, 0.6, 1.3, 0.5, "short", 10), "MetricLine.estimate"),
        (lambda: metric("s", None, None, None, 0.5, "pass", 0), "MetricLine.status"),
        (lambda: metric("s", 0.96, 0.94, 0.98, 0.95, "pass", 90), "MetricLine.status"),
        (
            lambda: metric("s", 0.96, 0.94, 0.98, 0.95, cast(MetricStatus, "great"), 90),
            "MetricLine.status",
        ),
        (lambda: metric("s", 0.96, 0.94, 0.98, 0.95, "short", -1), "MetricLine.n"),
        (lambda: LiftLine("k", "all", math.inf, 0, 1, 1, 1), "LiftLine.estimate"),
        (lambda: LiftLine("k", "all", 0.1, 0.2, 0.15, 1, 1), "LiftLine.low"),
        (lambda: LiftLine("k", "", 0.1, 0.0, 0.2, 1, 1), "LiftLine.cohort"),
        (lambda: WeekPoint("2026-02-30", 1.0), "WeekPoint.week"),
        (lambda: WeekPoint("2026-11-30", math.nan), "WeekPoint.value"),
        (lambda: Anomaly("spend", week(1), 5.0, 9.0, 1.0, "x"), "Anomaly.low"),
        (lambda: Incident(7, "kill_switch", "2026-11-30T00:00:00", "x"), "Incident.at"),
        (lambda: Incident(7, "kill_switch", "2026-11-30T00:00:00+00:00", "x"), "Incident.at"),
        (lambda: dataclasses.replace(PROMOTE, verdict=cast(Verdict, "maybe")), "ScopeRow.verdict"),
        (lambda: dataclasses.replace(PROMOTE, level=4), "ScopeRow.level"),
        (lambda: dataclasses.replace(PROMOTE, level=cast(int, 1.0)), "ScopeRow.level"),
        (lambda: dataclasses.replace(PROMOTE, kpis={"k": series(1, 2)[::-1]}), "ScopeRow.kpis"),
        (lambda: dataclasses.replace(CARD, rows=(PROMOTE, PROMOTE)), "Scorecard.rows"),
        (lambda: dataclasses.replace(CARD, generated_at="yesterday"), "Scorecard.generated_at"),
    ],
)
def test_bad_values_raise_naming_the_field(make: object, field_name: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(field_name) + r"[\[:]"):
        make()  # type: ignore[operator]


def test_the_model_is_immutable_and_normalised() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROMOTE.level = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        PROMOTE.dimensions["region"] = "apac"  # type: ignore[index]
    line = LiftLine("k", "all", 1, 0, 2, 10, 10)  # ints are stored as floats
    assert isinstance(line.estimate, float)
    assert to_json(dataclasses.replace(CARD, rows=())).count('"notes": [') == 1


def test_the_module_examples_run() -> None:
    result = doctest.testmod(scorecard)
    assert result.attempted >= 3
    assert result.failed == 0


# ---- property: any valid row round-trips and renders ------------------------------------------

texts = st.text(min_size=1, max_size=12).filter(str.strip)
rates = st.floats(0, 1)
values = st.floats(-1e12, 1e12)


@st.composite
def metric_lines(draw: st.DrawFn) -> MetricLine:
    direction: Direction = draw(st.sampled_from(get_args(Direction)))
    threshold = draw(st.none() | rates)
    name, label, sentence = draw(texts), draw(texts), draw(texts)
    if draw(st.booleans()):
        return MetricLine(
            name, label, None, None, None, threshold, direction, "missing", 0, sentence
        )
    low, est, high = sorted(draw(st.lists(rates, min_size=3, max_size=3)))
    bound = low if direction == "min" else high
    clears = threshold is not None and (
        bound >= threshold if direction == "min" else bound <= threshold
    )
    status: MetricStatus = "pass" if clears else draw(st.sampled_from(("short", "fail")))
    n = draw(st.integers(0, 10**6))
    return MetricLine(name, label, est, low, high, threshold, direction, status, n, sentence)


@st.composite
def lift_lines(draw: st.DrawFn) -> LiftLine:
    low, est, high = sorted(draw(st.lists(st.floats(-5, 5), min_size=3, max_size=3)))
    n = st.integers(0, 10**7)
    return LiftLine(draw(texts), draw(texts), est, low, high, draw(n), draw(n))


@st.composite
def week_series(draw: st.DrawFn) -> tuple[WeekPoint, ...]:
    offsets = sorted(draw(st.sets(st.integers(0, 300), max_size=8)))
    return tuple(WeekPoint(week(k), draw(st.none() | values)) for k in offsets)


@st.composite
def scope_rows(draw: st.DrawFn) -> ScopeRow:
    return ScopeRow(
        scope=draw(texts),
        dimensions=draw(st.dictionaries(texts, texts, max_size=3)),
        level=draw(st.integers(0, 3)),
        level_name=draw(texts),
        verdict=draw(st.sampled_from(get_args(Verdict))),
        explanation=draw(texts),
        transition=draw(st.none() | texts),
        metrics=tuple(draw(st.lists(metric_lines(), max_size=4))),
        kpis=draw(st.dictionaries(texts, week_series(), max_size=3)),
        lift=tuple(draw(st.lists(lift_lines(), max_size=4))),
        wins=tuple(draw(st.lists(texts, max_size=2))),
        anomalies=tuple(
            Anomaly(draw(texts), week(1), v, lo, hi, draw(texts))
            for v, lo, hi in draw(
                st.lists(st.lists(values, min_size=3, max_size=3).map(sorted), max_size=2)
            )
        ),
        incidents=tuple(
            Incident(seq, draw(texts), "2026-11-30T12:00:00.5Z", draw(texts))
            for seq in draw(st.lists(st.integers(0, 10**9), max_size=2))
        ),
        recommendation=draw(st.sampled_from(get_args(Recommendation))),
        recommendation_reason=draw(texts),
        evaluation_id=draw(st.none() | texts),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(scope_rows(), max_size=3, unique_by=lambda r: r.scope))
def test_any_valid_scorecard_round_trips_and_renders(rows: list[ScopeRow]) -> None:
    card = dataclasses.replace(CARD, rows=tuple(rows))
    text = to_json(card)
    assert from_json(text) == card
    assert to_json(from_json(text)) == text
    page = Page(to_html(card))
    assert len([a for t, a in page.tags if t == "tr" and "data-scope" in a]) == len(rows)
    expected = sum(len(r.kpis) + bool(r.lift) + len(r.metrics) for r in rows)
    assert len(page.svgs) == expected
    assert all("nan" not in a.get(k, "") for s in page.svgs for _, a in s.children for k in a)
    md = to_markdown(card)
    assert len(summary_table(md)) == len(rows) if rows else EMPTY in md


def test_the_summary_names_a_rate_over_the_level_only_when_it_holds_the_scope_back() -> None:
    held = metric("success_rate_overall", 0.975, 0.941, 0.99, 0.95, "short", 820)
    cleared = metric("success_rate_overall", 0.975, 0.955, 0.99, 0.95, "pass", 820)
    for extra, shown in ((held, True), (cleared, False)):
        row = dataclasses.replace(PROMOTE, metrics=(*PROMOTE.metrics, extra))
        numbers = key_numbers(row, lambda text: text)
        assert any(part.startswith(extra.label) for part in numbers) is shown
        assert len([p for p in numbers if "lift" not in p]) == 4 + shown
