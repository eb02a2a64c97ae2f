"""Markdown and HTML for the weekly scorecard (private: use ``scorecard.to_markdown`` and
``scorecard.to_html``). Every string from the data is escaped here; charts are in ``_svg``."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from html import escape
from typing import TYPE_CHECKING

from agent_guardrails.ops._scorecard_svg import (
    forest_plot,
    frac,
    interval_chart,
    num,
    pct,
    pct_interval,
    sparkline,
)

if TYPE_CHECKING:
    from agent_guardrails.ops.scorecard import LiftLine, MetricLine, ScopeRow, Scorecard

EMPTY = "No scopes had activity this week."
HOW_TO_READ = (
    "Verdicts are judged on interval bounds, not point values: a metric passes only when its "
    "whole interval clears the threshold (the lower bound for a minimum, the upper bound for a "
    "maximum), so a good-looking estimate from too few runs is reported short, with the runs "
    "it still needs. Missing data never passes. A promotion also needs each rate over the "
    "scope's whole time at its level to pass on a wider bound that holds however often the "
    "gates look (the lines 'at this level (repeated looks)'), so that weekly looks do not add "
    "up to a lucky promotion. Lift is relative to a control cohort (treatment / control - 1); "
    "an interval that spans zero is no evidence of lift."
)
VERDICTS = ("promote", "hold", "demote", "invalid")
BLOCKS = "▁▂▃▄▅▆▇█"
GAP = "·"


# ---- shared wording -------------------------------------------------------------------------


def summary_line(card: Scorecard) -> str:
    """``"3 scopes: 1 promote, 0 hold, 1 demote, 1 invalid."`` or the empty-week sentence."""
    if not card.rows:
        return EMPTY
    counts = ", ".join(f"{sum(r.verdict == v for r in card.rows)} {v}" for v in VERDICTS)
    return f"{len(card.rows)} scope{'s' * (len(card.rows) != 1)}: {counts}."


def level_text(row: ScopeRow) -> str:
    return f"L{row.level} {row.level_name}"


def metric_value(m: MetricLine) -> str:
    if m.estimate is None:
        return "no data"
    if m.low is None or m.high is None:
        return pct(m.estimate)
    return pct_interval(m.estimate, m.low, m.high)


def threshold_text(m: MetricLine) -> str:
    if m.threshold is None:
        return "no threshold"
    return ("≥ " if m.direction == "min" else "≤ ") + pct(m.threshold)


def lift_text(line: LiftLine) -> str:
    return pct_interval(line.estimate, line.low, line.high, signed=True)


def key_numbers(row: ScopeRow, esc: Callable[[str], str]) -> list[str]:
    """The summary table's numbers: each gate metric (those over the scope's time at its
    level only when they hold it back), the pooled lifts, the incident count; ``esc``
    escapes the names from the data."""
    parts = [
        f"{esc(m.label)} {metric_value(m)} {m.status}"
        for m in row.metrics
        if not (m.name.endswith("_overall") and m.status == "pass")
    ]
    parts += [f"lift {esc(x.kpi)} {lift_text(x)}" for x in row.lift if x.cohort == "all"]
    if row.incidents:
        parts.append(f"{len(row.incidents)} incident{'s' * (len(row.incidents) != 1)}")
    return parts


def spark_text(values: Sequence[float | None]) -> str:
    """Unicode blocks, the lowest value ▁ and the highest █; a week without data is ``GAP``."""
    known = [v for v in values if v is not None]
    lo, hi = min(known, default=0.0), max(known, default=0.0)
    return "".join(
        GAP
        if v is None
        else BLOCKS[3]
        if hi == lo
        else BLOCKS[int(frac(v, lo, hi) * (len(BLOCKS) - 1) + 0.5)]
        for v in values
    )


def last_value(points: Sequence[tuple[str, float | None]]) -> str:
    known = [(w, v) for w, v in points if v is not None]
    if not known:
        return "no data"
    week, value = known[-1]
    return f"{num(value)} (week of {week})"


# ---- Markdown -------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~])")


def _md(text: str) -> str:
    """User text safe in Markdown: one line, HTML escaped, Markdown punctuation backslashed."""
    return _MD_SPECIAL.sub(r"\\\1", escape(" ".join(text.split()), quote=False))


def markdown(card: Scorecard) -> str:
    out = [
        f"# {_md(card.title)}",
        "",
        f"Week {card.week_start} to {card.week_end} · pack {_md(card.pack)} · "
        f"generated {card.generated_at}",
        "",
        summary_line(card),
        "",
    ]
    if card.rows:
        out += [
            "| Scope | Level | Verdict | Recommendation | Key numbers |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in card.rows:
            verdict = row.verdict + (f" ({_md(row.transition)})" if row.transition else "")
            numbers = "; ".join(key_numbers(row, _md)) or "none"
            out.append(
                f"| {_md(row.scope)} | {_md(level_text(row))} | {verdict} | "
                f"{row.recommendation} | {numbers} |"
            )
        out.append("")
    out += [f"**How to read this.** {HOW_TO_READ}", ""]
    if card.notes:
        out += ["## Notes", "", *(f"- {_md(note)}" for note in card.notes), ""]
    for row in card.rows:
        out += _md_scope(row)
    out += ["---", "", f"Generated {card.generated_at} · pack {_md(card.pack)}", ""]
    return "\n".join(out)


def _md_scope(row: ScopeRow) -> list[str]:
    dims = " · ".join(f"{_md(k)}: {_md(v)}" for k, v in row.dimensions.items())
    head = f"Level **{_md(level_text(row))}** · verdict **{row.verdict}**"
    head += f" ({_md(row.transition)})" if row.transition else ""
    head += f" · recommendation **{row.recommendation}**"
    head += f" · evaluation {_md(row.evaluation_id)}" if row.evaluation_id else ""
    out = [f"## {_md(row.scope)}", ""]
    out += [dims, ""] if dims else []
    out += [head, "", _md(row.explanation), "", f"Recommendation: {_md(row.recommendation_reason)}"]
    if row.metrics:
        out += ["", "### Gate metrics", ""]
        out += [
            f"- {_md(m.label)}: **{m.status}**, {metric_value(m)}, needs {threshold_text(m)}, "
            f"n = {m.n:,}. {_md(m.sentence)}"
            for m in row.metrics
        ]
    if row.kpis:
        out += [
            "",
            "### KPIs",
            "",
            "| KPI | Weekly trend | Last | Weeks |",
            "| --- | --- | --- | --- |",
        ]
        for kpi, points in row.kpis.items():
            span = f"{points[0].week} to {points[-1].week}" if points else "none"
            trend = spark_text([p.value for p in points]) or "none"
            last = last_value([(p.week, p.value) for p in points])
            out.append(f"| {_md(kpi)} | {trend} | {last} | {span} |")
    if row.lift:
        out += [
            "",
            "### Lift over control",
            "",
            "| KPI | Cohort | Lift [interval] | n control | n treatment |",
            "| --- | --- | --- | --- | --- |",
        ]
        out += [
            f"| {_md(x.kpi)} | {_md(x.cohort)} | {lift_text(x)} | {x.n_control:,} | "
            f"{x.n_treatment:,} |"
            for x in row.lift
        ]
    if row.wins:
        out += ["", "### Wins", "", *(f"- {_md(w)}" for w in row.wins)]
    out += ["", "### Anomalies", ""]
    out += [
        f"- {a.week} {_md(a.metric)}: {num(a.value)} outside [{num(a.low)}, {num(a.high)}]. "
        f"{_md(a.sentence)}"
        for a in row.anomalies
    ] or ["None."]
    out += ["", "### Incidents", ""]
    out += [
        f"- audit #{x.audit_seq} · {_md(x.kind)} · {x.at}: {_md(x.summary)}" for x in row.incidents
    ] or ["None."]
    return [*out, ""]


# ---- HTML -----------------------------------------------------------------------------------

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; color: #1f2328; background: #ffffff; font-size: 14px; line-height: 1.45;
  max-width: 190mm; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin: 24px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 1.05em; margin: 16px 0 6px; }
p { margin: 6px 0; }
.meta, footer { color: #59636e; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; }
th, td { text-align: left; vertical-align: top; padding: 4px 6px;
  border-bottom: 1px solid #d0d7de; }
th { background: #f6f8fa; font-weight: 600; }
td.num, .num { font-variant-numeric: tabular-nums; white-space: nowrap; }
ul { margin: 4px 0; padding-left: 20px; }
svg { display: block; max-width: 100%; height: auto; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 0.85em;
  font-weight: 600; color: #ffffff; white-space: nowrap; }
.badge-promote, .status-pass { background: #1a7f37; }
.badge-hold, .status-short { background: #9a6700; }
.badge-demote, .status-fail { background: #cf222e; }
.badge-rollback { background: #82071e; }
.badge-invalid, .status-missing { background: #6e7781; }
.how { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 12px; }
.empty { font-size: 1.1em; font-weight: 600; padding: 12px 0; }
footer { margin-top: 24px; padding-top: 8px; border-top: 1px solid #d0d7de; font-size: 0.85em; }
a { color: #0969da; }
@page { size: A4; margin: 14mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  section.scope { break-before: page; page-break-before: always; }
  table, figure, li, svg, tr { break-inside: avoid; page-break-inside: avoid; }
  .badge { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  a { color: inherit; text-decoration: none; }
}
"""


def _badge(value: str) -> str:
    return f'<span class="badge badge-{value}">{value.capitalize()}</span>'


def _status(value: str) -> str:
    return f'<span class="badge status-{value}">{value}</span>'


def html(card: Scorecard) -> str:
    e = escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(card.title)}: {card.week_start} to {card.week_end}</title>",
        f"<style>{CSS}</style></head>",
        "<body>",
        f'<header><h1>{e(card.title)}</h1><p class="meta">Week {card.week_start} to '
        f"{card.week_end} · pack {e(card.pack)}</p></header>",
        '<section class="summary"><h2>Summary</h2>',
    ]
    if not card.rows:
        out.append(f'<p class="empty">{EMPTY}</p>')
    else:
        out += [
            f"<p>{summary_line(card)}</p>",
            '<table class="summary"><thead><tr><th>Scope</th><th>Level</th><th>Verdict</th>'
            "<th>Recommendation</th><th>Key numbers</th></tr></thead><tbody>",
        ]
        for i, row in enumerate(card.rows, 1):
            move = f" {e(row.transition)}" if row.transition else ""
            numbers = "<br>".join(key_numbers(row, e)) or "none"
            out.append(
                f'<tr data-scope="{e(row.scope)}"><td><a href="#scope-{i}">{e(row.scope)}</a>'
                f"</td><td>{e(level_text(row))}</td><td>{_badge(row.verdict)}{move}</td>"
                f"<td>{_badge(row.recommendation)}</td><td>{numbers}</td></tr>"
            )
        out.append("</tbody></table>")
    out += ["</section>", f'<section class="how"><h2>How to read this</h2><p>{HOW_TO_READ}</p>']
    out.append("</section>")
    if card.notes:
        items = "".join(f"<li>{e(n)}</li>" for n in card.notes)
        out.append(f'<section class="notes"><h2>Notes</h2><ul>{items}</ul></section>')
    out += [_html_scope(i, row) for i, row in enumerate(card.rows, 1)]
    out += [
        f'<footer>Generated <time datetime="{card.generated_at}">{card.generated_at}</time> · '
        f"pack {e(card.pack)} · agent-guardrails weekly scorecard</footer>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(out)


def _html_scope(i: int, row: ScopeRow) -> str:
    e = escape
    dims = " · ".join(f"{e(k)}: {e(v)}" for k, v in row.dimensions.items())
    move = f" {e(row.transition)}" if row.transition else ""
    evaluation = f" · evaluation {e(row.evaluation_id)}" if row.evaluation_id else ""
    out = [
        f'<section class="scope" id="scope-{i}" data-scope="{e(row.scope)}">',
        f"<h2>{e(row.scope)} {_badge(row.verdict)}</h2>",
        f'<p class="meta">{dims}</p>' if dims else "",
        f"<p>Level <strong>{e(level_text(row))}</strong> · verdict {_badge(row.verdict)}{move}"
        f" · recommendation {_badge(row.recommendation)}{evaluation}</p>",
        f"<p>{e(row.explanation)}</p>",
        f"<p><strong>Recommendation:</strong> {e(row.recommendation_reason)}</p>",
    ]
    if row.metrics:
        out.append(
            '<h3>Gate metrics</h3><table class="metrics"><thead><tr><th>Metric</th>'
            "<th>Status</th><th>Interval</th><th>Chart</th><th>Why</th></tr></thead><tbody>"
        )
        for m in row.metrics:
            value, need = metric_value(m), threshold_text(m)
            title = f"{m.label}: {value}, needs {need}, {m.status}"
            chart = interval_chart(
                title, m.estimate, m.low, m.high, m.threshold, m.direction, m.status
            )
            out.append(
                f"<tr><td>{e(m.label)}</td><td>{_status(m.status)}</td>"
                f'<td class="num">{value}<br>needs {need}<br>n = {m.n:,}</td>'
                f"<td>{chart}</td><td>{e(m.sentence)}</td></tr>"
            )
        out.append("</tbody></table>")
    if row.kpis:
        out.append(
            '<h3>KPIs</h3><table class="kpis"><thead><tr><th>KPI</th><th>Weekly trend</th>'
            "<th>Last</th><th>Weeks</th></tr></thead><tbody>"
        )
        for kpi, points in row.kpis.items():
            weeks, values = [p.week for p in points], [p.value for p in points]
            span = f"{weeks[0]} to {weeks[-1]}" if weeks else "none"
            last = last_value(list(zip(weeks, values, strict=True)))
            out.append(
                f"<tr><td>{e(kpi)}</td><td>{sparkline(kpi, weeks, values)}</td>"
                f'<td class="num">{last}</td><td class="num">{span}</td></tr>'
            )
        out.append("</tbody></table>")
    if row.lift:
        rows = [(f"{x.kpi} · {x.cohort}", x.estimate, x.low, x.high) for x in row.lift]
        out += [
            "<h3>Lift over control</h3><figure>",
            forest_plot(f"Lift over control in {row.scope}, by cohort", rows),
            '</figure><table class="lift"><thead><tr><th>KPI</th><th>Cohort</th>'
            "<th>Lift [interval]</th><th>n control</th><th>n treatment</th></tr></thead><tbody>",
        ]
        out += [
            f'<tr><td>{e(x.kpi)}</td><td>{e(x.cohort)}</td><td class="num">{lift_text(x)}</td>'
            f'<td class="num">{x.n_control:,}</td><td class="num">{x.n_treatment:,}</td></tr>'
            for x in row.lift
        ]
        out.append("</tbody></table>")
    if row.wins:
        out.append("<h3>Wins</h3><ul>" + "".join(f"<li>{e(w)}</li>" for w in row.wins) + "</ul>")
    anomalies = "".join(
        f"<li>{a.week} · {e(a.metric)}: {num(a.value)} outside [{num(a.low)}, {num(a.high)}]. "
        f"{e(a.sentence)}</li>"
        for a in row.anomalies
    )
    out.append(
        f"<h3>Anomalies</h3><ul>{anomalies}</ul>" if anomalies else "<h3>Anomalies</h3><p>None.</p>"
    )
    incidents = "".join(
        f'<li><strong>audit #{x.audit_seq}</strong> · {e(x.kind)} · <time datetime="{x.at}">'
        f"{x.at}</time>: {e(x.summary)}</li>"
        for x in row.incidents
    )
    out.append(
        f"<h3>Incidents</h3><ul>{incidents}</ul>" if incidents else "<h3>Incidents</h3><p>None.</p>"
    )
    out.append("</section>")
    return "\n".join(part for part in out if part)
