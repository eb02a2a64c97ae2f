"""The weekly autonomy scorecard: a data model and three renderers (JSON, Markdown, HTML).

The gate evaluation fills a :class:`Scorecard`; the renderers only format it. Every number is
checked on construction (finite, intervals ordered, rates in [0, 1]) and every renderer
returns a string: no store, no I/O.

>>> card = Scorecard(
...     title="Weekly autonomy scorecard", week_start="2026-11-23", week_end="2026-11-29",
...     generated_at="2026-11-30T06:00:00Z", pack="growth-pack v3", rows=())
>>> from_json(to_json(card)) == card
True
>>> "No scopes had activity this week." in to_markdown(card)
True
>>> MetricLine("success", "Success rate", 0.93, 0.95, 0.97, 0.9, "min", "pass", 40, "ok")
Traceback (most recent call last):
ValueError: MetricLine.low: 0.95 is above estimate 0.93
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from types import MappingProxyType, UnionType
from typing import Any, Literal, cast, get_args, get_origin, get_type_hints

from agent_guardrails.ops import _scorecard_render as _render
from agent_guardrails.ops._scorecard_render import summary_line

__all__ = [
    "Anomaly",
    "Incident",
    "LiftLine",
    "MetricLine",
    "Scorecard",
    "ScopeRow",
    "WeekPoint",
    "from_json",
    "to_html",
    "to_json",
    "to_markdown",
]

Direction = Literal["min", "max"]
MetricStatus = Literal["pass", "short", "fail", "missing"]
Verdict = Literal["promote", "hold", "demote", "invalid"]
Recommendation = Literal["promote", "hold", "demote", "rollback"]

FORMAT = "agent-guardrails/scorecard"
VERSION = 1

# ---- validation -----------------------------------------------------------------------------

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)  # normalising a frozen dataclass's own field


def _where(obj: object, name: str) -> str:
    return f"{type(obj).__name__}.{name}"


def _text(obj: object, name: str, *, optional: bool = False) -> None:
    value = getattr(obj, name)
    if optional and value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{_where(obj, name)}: needs a non-empty string, got {value!r}")


def _number(obj: object, name: str, *, optional: bool = False, rate: bool = False) -> None:
    value = getattr(obj, name)
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{_where(obj, name)}: needs a finite number, got {value!r}")
    if rate and not 0.0 <= value <= 1.0:
        raise ValueError(f"{_where(obj, name)}: a rate must lie in [0, 1], got {value!r}")
    _set(obj, name, float(value))


def _count(obj: object, name: str, *, lowest: int = 0) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise ValueError(f"{_where(obj, name)}: needs an integer >= {lowest}, got {value!r}")


def _choice(obj: object, name: str, allowed: object) -> None:
    options = get_args(allowed)
    if getattr(obj, name) not in options:
        raise ValueError(
            f"{_where(obj, name)}: {getattr(obj, name)!r} is not one of {', '.join(options)}"
        )


def _ordered(obj: object, low: float | None, estimate: float | None, high: float | None) -> None:
    pairs = (("low", low, "estimate", estimate), ("estimate", estimate, "high", high))
    for a, va, b, vb in (*pairs, ("low", low, "high", high)):
        if va is not None and vb is not None and va > vb:
            raise ValueError(f"{_where(obj, a)}: {va!r} is above {b} {vb!r}")


def _matches(value: object, pattern: re.Pattern[str], parse: Callable[[str], object]) -> bool:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        return False
    try:
        parse(value)
    except ValueError:  # the right shape, but no such day or time ("2026-02-30")
        return False
    return True


def _date(obj: object, name: str) -> None:
    value = getattr(obj, name)
    if not _matches(value, _DATE, date.fromisoformat):
        raise ValueError(f"{_where(obj, name)}: needs a date like '2026-11-30', got {value!r}")


def _timestamp(obj: object, name: str) -> None:
    value = getattr(obj, name)
    if not _matches(value, _TIMESTAMP, datetime.fromisoformat):
        raise ValueError(
            f"{_where(obj, name)}: needs a UTC time like '2026-11-30T00:00:00Z', got {value!r}"
        )


def _items(obj: object, name: str, kind: type) -> None:
    value = getattr(obj, name)
    if isinstance(value, str | Mapping):
        raise ValueError(f"{_where(obj, name)}: needs a tuple, got {value!r}")
    value = tuple(value)
    for i, item in enumerate(value):
        if not isinstance(item, kind) or (isinstance(item, str) and not item.strip()):
            raise ValueError(f"{_where(obj, name)}[{i}]: needs a {kind.__name__}, got {item!r}")
    _set(obj, name, value)


# ---- the data model -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetricLine:
    """One gate metric (a rate in [0, 1]): its interval, threshold, status and a sentence.

    ``direction`` is ``"min"`` when the lower bound must reach the threshold, ``"max"`` when
    the upper bound must stay under it. ``"pass"`` needs the interval to clear the threshold.
    """

    name: str
    label: str
    estimate: float | None
    low: float | None
    high: float | None
    threshold: float | None
    direction: Direction
    status: MetricStatus
    n: int
    sentence: str

    def __post_init__(self) -> None:
        for name in ("name", "label", "sentence"):
            _text(self, name)
        for name in ("estimate", "low", "high", "threshold"):
            _number(self, name, optional=True, rate=True)
        _ordered(self, self.low, self.estimate, self.high)
        _choice(self, "direction", Direction)
        _choice(self, "status", MetricStatus)
        _count(self, "n")
        if self.status == "pass":
            bound = self.low if self.direction == "min" else self.high
            if self.estimate is None or bound is None or self.threshold is None:
                raise ValueError(
                    f"{_where(self, 'status')}: 'pass' without data: missing data never passes"
                )
            if bound < self.threshold if self.direction == "min" else bound > self.threshold:
                side = "low" if self.direction == "min" else "high"
                raise ValueError(
                    f"{_where(self, 'status')}: 'pass' but {side} {bound!r} does not clear "
                    f"threshold {self.threshold!r}"
                )


@dataclass(frozen=True, slots=True)
class LiftLine:
    """The relative lift of a KPI over control (treatment / control - 1) in one cohort;
    cohort ``"all"`` is the pooled estimate."""

    kpi: str
    cohort: str
    estimate: float
    low: float
    high: float
    n_control: int
    n_treatment: int

    def __post_init__(self) -> None:
        _text(self, "kpi")
        _text(self, "cohort")
        for name in ("estimate", "low", "high"):
            _number(self, name)
        _ordered(self, self.low, self.estimate, self.high)
        _count(self, "n_control")
        _count(self, "n_treatment")


@dataclass(frozen=True, slots=True)
class WeekPoint:
    """A KPI's value in the week starting ``week``; ``None`` when there was no data."""

    week: str
    value: float | None

    def __post_init__(self) -> None:
        _date(self, "week")
        _number(self, "value", optional=True)


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A weekly value outside its expected band ``[low, high]``."""

    metric: str
    week: str
    value: float
    low: float
    high: float
    sentence: str

    def __post_init__(self) -> None:
        _text(self, "metric")
        _date(self, "week")
        for name in ("value", "low", "high"):
            _number(self, name)
        _ordered(self, self.low, None, self.high)
        _text(self, "sentence")


@dataclass(frozen=True, slots=True)
class Incident:
    """An incident, linked to its audit record (shown as "audit #1234")."""

    audit_seq: int
    kind: str
    at: str
    summary: str

    def __post_init__(self) -> None:
        _count(self, "audit_seq")
        _text(self, "kind")
        _timestamp(self, "at")
        _text(self, "summary")


@dataclass(frozen=True, slots=True)
class ScopeRow:
    """One scope's week: level, verdict and why, gate metrics, KPIs, lift, wins, anomalies,
    incidents and the recommendation. Mappings are copied read-only; KPI weeks ascend."""

    scope: str
    dimensions: Mapping[str, str]
    level: int
    level_name: str
    verdict: Verdict
    explanation: str
    transition: str | None
    metrics: tuple[MetricLine, ...]
    kpis: Mapping[str, tuple[WeekPoint, ...]]
    lift: tuple[LiftLine, ...]
    wins: tuple[str, ...]
    anomalies: tuple[Anomaly, ...]
    incidents: tuple[Incident, ...]
    recommendation: Recommendation
    recommendation_reason: str
    evaluation_id: str | None

    def __post_init__(self) -> None:
        for name in ("scope", "level_name", "explanation", "recommendation_reason"):
            _text(self, name)
        _text(self, "transition", optional=True)
        _text(self, "evaluation_id", optional=True)
        level = self.level
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 3:
            raise ValueError(f"ScopeRow.level: needs 0, 1, 2 or 3, got {self.level!r}")
        _choice(self, "verdict", Verdict)
        _choice(self, "recommendation", Recommendation)
        dims = dict(self.dimensions)
        for key, value in dims.items():
            if not all(isinstance(s, str) and s.strip() for s in (key, value)):
                raise ValueError(f"ScopeRow.dimensions[{key!r}]: needs non-empty strings")
        _set(self, "dimensions", MappingProxyType(dims))
        kpis = {key: tuple(points) for key, points in self.kpis.items()}
        for key, points in kpis.items():
            if not isinstance(key, str) or not key.strip():
                raise ValueError(f"ScopeRow.kpis: a KPI needs a non-empty name, got {key!r}")
            if not all(isinstance(p, WeekPoint) for p in points):
                raise ValueError(f"ScopeRow.kpis[{key!r}]: needs WeekPoint values")
            weeks = [p.week for p in points]
            if weeks != sorted(set(weeks)):
                raise ValueError(f"ScopeRow.kpis[{key!r}]: weeks must be distinct and ascending")
        _set(self, "kpis", MappingProxyType(kpis))
        for name, kind in (("metrics", MetricLine), ("lift", LiftLine), ("wins", str)):
            _items(self, name, kind)
        _items(self, "anomalies", Anomaly)
        _items(self, "incidents", Incident)


@dataclass(frozen=True, slots=True)
class Scorecard:
    """The week's scorecard: one :class:`ScopeRow` per scope with activity."""

    title: str
    week_start: str
    week_end: str
    generated_at: str
    pack: str
    rows: tuple[ScopeRow, ...]
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _text(self, "title")
        _text(self, "pack")
        _date(self, "week_start")
        _date(self, "week_end")
        if self.week_end < self.week_start:
            raise ValueError(f"Scorecard.week_end: {self.week_end} is before {self.week_start}")
        _timestamp(self, "generated_at")
        _items(self, "rows", ScopeRow)
        _items(self, "notes", str)
        scopes = [row.scope for row in self.rows]
        for scope in scopes:
            if scopes.count(scope) > 1:
                raise ValueError(f"Scorecard.rows: scope {scope!r} appears more than once")


# ---- JSON -----------------------------------------------------------------------------------


def _plain(value: object) -> object:
    if isinstance(
        value, Scorecard | ScopeRow | MetricLine | LiftLine | WeekPoint | Anomaly | Incident
    ):
        return {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def to_json(card: Scorecard) -> str:
    """The scorecard as JSON: keys in field order, mappings in their order, indent 2."""
    body = cast(dict[str, object], _plain(card))
    doc = {"format": FORMAT, "version": VERSION, "summary": summary_line(card), **body}
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


_MODEL = (Scorecard, ScopeRow, MetricLine, LiftLine, WeekPoint, Anomaly, Incident)
_HINTS = {cls: get_type_hints(cls) for cls in _MODEL}


def _decode(hint: Any, data: object, path: str) -> object:
    """``data`` (parsed JSON) as ``hint``; a model class is built field by field."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is UnionType:  # ``X | None``
        if data is None:
            return None
        return _decode(next(a for a in args if a is not type(None)), data, path)
    if hint in _HINTS:
        if not isinstance(data, dict):
            raise ValueError(f"{path}: needs an object, got {_shown(data)}")
        names = _HINTS[hint]
        missing = [name for name in names if name not in data]
        if missing:
            raise ValueError(f"{path}: missing {', '.join(missing)}")
        for name in data:
            if name not in names and not (hint is Scorecard and name in _HEADER):
                raise ValueError(f"{path}.{name}: unknown field")
        fields = {name: _decode(names[name], data[name], f"{path}.{name}") for name in names}
        try:
            return hint(**fields)
        except ValueError as exc:  # the constructor names the field; add where it is
            raise ValueError(f"{path}: {exc}") from None
    if origin is tuple and isinstance(data, list):
        return tuple(_decode(args[0], item, f"{path}[{i}]") for i, item in enumerate(data))
    if origin is Mapping and isinstance(data, dict):
        return {k: _decode(args[1], v, f"{path}[{json.dumps(k)}]") for k, v in data.items()}
    if (hint is str or origin is Literal) and isinstance(data, str):
        return data
    if hint is int and isinstance(data, int) and not isinstance(data, bool):
        return data
    numeric = isinstance(data, int | float) and not isinstance(data, bool)
    if hint is float and numeric and math.isfinite(cast(float, data)):
        return data
    wanted = {str: "a string", int: "an integer", float: "a finite number"}.get(hint)
    wanted = wanted or (
        "a string" if origin is Literal else "a list" if origin is tuple else "an object"
    )
    raise ValueError(f"{path}: needs {wanted}, got {_shown(data)}")


_HEADER = ("format", "version", "summary")


def _shown(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    data: dict[str, object] = {}
    for k, v in pairs:
        if k in data:
            raise ValueError(f"JSON: duplicate key {k!r} in one object")
        data[k] = v
    return data


def from_json(text: str) -> Scorecard:
    """Read :func:`to_json`'s output back; anything else raises ``ValueError`` naming the path
    (``$.rows[0].metrics[1].low: ...``)."""
    try:  # NaN and Infinity load as floats, so the decoder can name the field holding one
        data = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=float)
    except json.JSONDecodeError as exc:
        raise ValueError(f"JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"$: needs an object, got {_shown(data)}")
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ValueError(f"$.format: needs format {FORMAT!r} version {VERSION}")
    if not isinstance(data.get("summary", ""), str):
        raise ValueError("$.summary: needs a string")
    return cast(Scorecard, _decode(Scorecard, data, "$"))


def to_markdown(card: Scorecard) -> str:
    """The scorecard as Markdown: a summary table, then a section per scope."""
    return _render.markdown(card)


def to_html(card: Scorecard) -> str:
    """The scorecard as one self-contained, printable HTML5 page (inline CSS and SVG only)."""
    return _render.html(card)
