"""Inline SVG charts and number formats for the scorecard's HTML (private to the scorecard).

Every chart is one ``<svg>`` with a ``viewBox``, a width and height, ``role="img"`` and a
``<title>`` first, drawn with presentation attributes only: no stylesheet, no script, no URL
(not even an ``xmlns``, which inline SVG in HTML5 does not need). Callers pass plain values;
all text is escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

FONT = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"
INK = "#1f2328"
MUTED = "#59636e"
RULE = "#d0d7de"
LINE = "#0969da"
STATUS_COLORS = {"pass": "#1a7f37", "short": "#9a6700", "fail": "#cf222e", "missing": "#6e7781"}


# ---- number formats -------------------------------------------------------------------------


def pct(x: float, *, signed: bool = False) -> str:
    """A rate as a percentage with one decimal: ``0.93`` → ``"93.0%"`` (``"+4.0%"`` signed)."""
    text = f"{x * 100:+.1f}" if signed else f"{x * 100:.1f}"
    if text in ("-0.0", "+0.0"):  # a tiny negative rounds to zero: no sign on zero
        text = "+0.0" if signed else "0.0"
    return text + "%"


def pct_interval(estimate: float, low: float, high: float, *, signed: bool = False) -> str:
    """``"93.0% [88.0%, 96.0%]"``."""
    return f"{pct(estimate, signed=signed)} [{pct(low, signed=signed)}, {pct(high, signed=signed)}]"


def num(x: float) -> str:
    """A KPI value with up to 4 significant digits: ``1234.56`` → ``"1235"``, ``12345`` →
    ``"12.35k"``, ``0.12345`` → ``"0.1235"``."""
    text = f"{x:.4g}"
    if "e+" in text:
        for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
            if abs(x) >= scale * 0.99995:
                text = f"{x / scale:.4g}{suffix}"
                break
    return "0" if text == "-0" else text


def _f(x: float) -> str:
    """A coordinate: two decimals at most."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def frac(v: float, lo: float, hi: float) -> float:
    """Where ``v`` lies in ``[lo, hi]``, 0 to 1 (halved first: no overflow on huge spans)."""
    return (v / 2 - lo / 2) / (hi / 2 - lo / 2)


def _open(kind: str, width: int, height: int, title: str, desc: str = "") -> list[str]:
    parts = [
        f'<svg class="{kind}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" font-family="{FONT}" font-size="10" fill="{INK}">',
        f"<title>{escape(title)}</title>",
    ]
    if desc:
        parts.append(f"<desc>{escape(desc)}</desc>")
    return parts


def _text(x: float, y: float, text: str, anchor: str = "start", **attrs: str) -> str:
    extra = "".join(f' {k.rstrip("_").replace("_", "-")}="{escape(v)}"' for k, v in attrs.items())
    return f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}"{extra}>{escape(text)}</text>'


# ---- sparkline -------------------------------------------------------------------------------


def sparkline(kpi: str, weeks: Sequence[str], values: Sequence[float | None]) -> str:
    """Weekly values as a line, broken at weeks without data, the last value marked."""
    width, height, pad = 132, 30, 4
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    if not known:
        parts = _open("sparkline", width, height, f"{kpi}: no data in {len(weeks)} weeks")
        parts.append(_text(width / 2, height / 2 + 3, "no data", "middle", fill=MUTED))
        return "".join([*parts, "</svg>"])
    lo = min(v for _, v in known)
    hi = max(v for _, v in known)
    step = (width - 2 * pad) / (len(values) - 1) if len(values) > 1 else 0.0

    def x(i: int) -> float:
        return pad + i * step if len(values) > 1 else width / 2

    def y(v: float) -> float:
        if hi == lo:
            return height / 2
        return height - pad - frac(v, lo, hi) * (height - 2 * pad)

    by_week = dict(known)
    last_i, last_v = known[-1]
    gaps = len(values) - len(known)
    title = (
        f"{kpi}: {len(values)} weeks from {weeks[0]} to {weeks[-1]}, "
        f"range {num(lo)} to {num(hi)}, last {num(last_v)} in week {weeks[last_i]}"
        + (f", {gaps} week{'s' if gaps != 1 else ''} without data" if gaps else "")
    )
    desc = "; ".join(
        f"{w}: {'no data' if v is None else num(v)}" for w, v in zip(weeks, values, strict=True)
    )
    parts = _open("sparkline", width, height, title, desc)
    run: list[int] = []
    for i in [*range(len(values)), -1]:  # -1 closes the last run
        if i >= 0 and values[i] is not None:
            run.append(i)
            continue
        if i >= 0:  # a week without data: a faint tick on the baseline
            parts.append(
                f'<line class="gap" x1="{_f(x(i))}" y1="{height - 1}" x2="{_f(x(i))}" '
                f'y2="{height - 4}" stroke="{RULE}" stroke-width="1.5"/>'
            )
        if len(run) == 1:  # a week with data between two without: a dot
            parts.append(
                f'<circle class="point" cx="{_f(x(run[0]))}" cy="{_f(y(by_week[run[0]]))}" r="1.5" '
                f'fill="{LINE}"/>'
            )
        elif run:
            points = " ".join(f"{_f(x(j))},{_f(y(by_week[j]))}" for j in run)
            parts.append(
                f'<polyline class="line" points="{points}" fill="none" stroke="{LINE}" '
                f'stroke-width="1.5" stroke-linejoin="round" stroke-linecap="round"/>'
            )
        run = []
    parts.append(
        f'<circle class="last" cx="{_f(x(last_i))}" cy="{_f(y(last_v))}" r="3" fill="{LINE}" '
        f'stroke="#ffffff" stroke-width="1"/>'
    )
    return "".join([*parts, "</svg>"])


# ---- forest plot -----------------------------------------------------------------------------


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten, at least 0.001: the labels
    show 0.1%) covering ``[lo, hi]``."""
    if hi - lo < 1e-9:  # one value (often 0): a small window around it
        lo, hi = lo - 0.01, hi + 0.01
    raw = hi / max(count - 1, 1) - lo / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = max(0.001, next(m * power for m in (1, 2, 5, 10) if m * power >= raw))
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def forest_plot(title: str, rows: Sequence[tuple[str, float, float, float]]) -> str:
    """Lift per cohort: one row per ``(label, estimate, low, high)``, a zero line, ticks."""
    label_w, plot_w, value_w, row_h, top, axis_h = 170, 300, 150, 24, 8, 30
    width = label_w + plot_w + value_w
    height = top + row_h * len(rows) + axis_h
    ticks = nice_ticks(min(0.0, *(r[2] for r in rows)), max(0.0, *(r[3] for r in rows)))
    lo, hi = ticks[0], ticks[-1]
    x0, x1 = label_w + 10, label_w + plot_w - 10

    def x(v: float) -> float:
        return x0 + frac(v, lo, hi) * (x1 - x0)

    desc = "; ".join(f"{lab}: {pct_interval(e, a, b, signed=True)}" for lab, e, a, b in rows)
    parts = _open("forest", width, height, title, desc)
    axis_y = top + row_h * len(rows) + 4
    for t in ticks:
        parts.append(
            f'<line class="grid" x1="{_f(x(t))}" y1="{top}" x2="{_f(x(t))}" y2="{axis_y}" '
            f'stroke="{RULE}" stroke-width="0.5"/>'
        )
        parts.append(
            f'<line class="tick" x1="{_f(x(t))}" y1="{axis_y}" x2="{_f(x(t))}" '
            f'y2="{axis_y + 4}" stroke="{MUTED}"/>'
        )
        parts.append(
            _text(x(t), axis_y + 15, pct(t, signed=t != 0), "middle", fill=MUTED, class_="tick")
        )
    parts.append(
        f'<line class="axis" x1="{x0}" y1="{axis_y}" x2="{x1}" y2="{axis_y}" stroke="{MUTED}"/>'
    )
    parts.append(
        f'<line class="zero" x1="{_f(x(0.0))}" y1="{top - 4}" x2="{_f(x(0.0))}" y2="{axis_y}" '
        f'stroke="{INK}" stroke-width="1" stroke-dasharray="3 2"/>'
    )
    for k, (label, estimate, low, high) in enumerate(rows):
        cy = top + row_h * k + row_h / 2
        shown = label if len(label) <= 28 else label[:27] + "…"
        parts.append(f'<g class="row"><title>{escape(label)}</title>')
        parts.append(_text(label_w, cy + 3.5, shown, "end"))
        parts.append(
            f'<line class="interval" x1="{_f(x(low))}" y1="{_f(cy)}" x2="{_f(x(high))}" '
            f'y2="{_f(cy)}" stroke="{LINE}" stroke-width="2"/>'
        )
        parts.append(
            f'<circle class="estimate" cx="{_f(x(estimate))}" cy="{_f(cy)}" r="4" fill="{LINE}"/>'
        )
        parts.append(_text(x1 + 14, cy + 3.5, pct_interval(estimate, low, high, signed=True)))
        parts.append("</g>")
    return "".join([*parts, "</svg>"])


# ---- gate metric interval --------------------------------------------------------------------


def interval_chart(
    title: str,
    estimate: float | None,
    low: float | None,
    high: float | None,
    threshold: float | None,
    direction: str,
    status: str,
) -> str:
    """A rate's interval on a zoomed 0-100% axis, the threshold marked and its passing side
    shaded; ``"no data"`` when there is no estimate."""
    width, height, pad, mid, axis = 200, 46, 8, 22, 32
    shown = [v for v in (estimate, low, high, threshold) if v is not None]
    lo = max(0.0, math.floor((min(shown, default=0.0) - 0.02) * 20) / 20)
    hi = min(1.0, math.ceil((max(shown, default=1.0) + 0.02) * 20) / 20)

    def x(v: float) -> float:
        return pad + frac(v, lo, hi) * (width - 2 * pad)

    parts = _open("interval", width, height, title)
    if threshold is not None:
        a, b = (x(threshold), x(hi)) if direction == "min" else (x(lo), x(threshold))
        parts.append(
            f'<rect class="pass-zone" x="{_f(a)}" y="{mid - 9}" width="{_f(b - a)}" height="18" '
            f'fill="{STATUS_COLORS["pass"]}" fill-opacity="0.12"/>'
        )
    parts.append(
        f'<line class="axis" x1="{pad}" y1="{axis}" x2="{width - pad}" y2="{axis}" '
        f'stroke="{MUTED}" stroke-width="0.5"/>'
    )
    parts.append(_text(pad, axis + 11, pct(lo), "start", fill=MUTED))
    parts.append(_text(width - pad, axis + 11, pct(hi), "end", fill=MUTED))
    color = STATUS_COLORS.get(status, MUTED)
    if low is not None and high is not None:
        parts.append(
            f'<line class="interval" x1="{_f(x(low))}" y1="{mid}" x2="{_f(x(high))}" y2="{mid}" '
            f'stroke="{color}" stroke-width="4" stroke-linecap="round"/>'
        )
    if estimate is not None:
        parts.append(
            f'<circle class="estimate" cx="{_f(x(estimate))}" cy="{mid}" r="3.5" fill="#ffffff" '
            f'stroke="{color}" stroke-width="2"/>'
        )
    else:
        parts.append(_text(width / 2, mid + 3.5, "no data", "middle", fill=MUTED))
    if threshold is not None:
        tx = x(threshold)
        parts.append(
            f'<line class="threshold" x1="{_f(tx)}" y1="{mid - 11}" x2="{_f(tx)}" '
            f'y2="{axis}" stroke="{INK}" stroke-width="1.5"/>'
        )
        mark = ("≥ " if direction == "min" else "≤ ") + pct(threshold)
        label_x = min(max(tx, pad + 22), width - pad - 22)
        parts.append(_text(label_x, 9, mark, "middle", font_weight="600"))
    return "".join([*parts, "</svg>"])
