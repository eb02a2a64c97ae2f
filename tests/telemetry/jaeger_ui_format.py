"""What Jaeger's UI accepts as a trace file, as a JSON Schema plus the checks a schema cannot do.

Jaeger's UI opens a JSON file on its search page (the **Upload** tab: "Click or drag files to
this area.") entirely in the browser: no query, no storage, the Jaeger process only serves the
page. The file is the query service's ``GET /api/traces`` response::

    {"data": [{"traceID": "...", "spans": [...], "processes": {"p1": {...}}, "warnings": null}]}

:func:`validate_jaeger_trace_file` checks a parsed document against
:data:`JAEGER_TRACE_FILE_SCHEMA` (JSON Schema draft 2020-12) and then the cross-checks below,
and raises :class:`AssertionError` naming the trace, span and field of every problem found.

Where the rules come from
-------------------------
Jaeger UI (repository ``jaegertracing/jaeger-ui``):

- ``packages/jaeger-ui/src/utils/readJsonFile.ts``: the file is read as text and
  ``JSON.parse``d (falling back to one JSON document per line). A document with
  ``resourceSpans`` (OTLP JSON, or an array of them) is **not** read by the UI: it is POSTed to
  the Jaeger backend's ``/api/transform``, which converts it to this format; so an OTLP file
  needs a running Jaeger v2 query service, a file in this format does not.
- ``packages/jaeger-ui/src/components/SearchTracePage/FileLoader.tsx``: ``accept=".json,.jsonl"``;
  the newest UI takes ``{"data": [...]}``, ``{"data": {...}}``, a bare array or a bare trace,
  and silently skips a trace ``transformTraceData`` returns null for. Older UIs
  (``src/reducers/trace.ts`` ``loadJsonDone``) require ``payload.data`` to be an array whose
  traces all have a ``spans`` array ("Invalid trace data: missing or invalid spans"). We require
  ``{"data": [...]}``, the one shape every UI version since the upload feature (2019) reads.
- ``packages/jaeger-ui/src/model/transform-trace-data.ts`` (``transformTraceData``): a trace
  without ``traceID`` is dropped; spans with a falsy ``startTime`` are filtered out; a duplicate
  ``spanID`` is renamed ``<id>_<n>`` with a console warning; ``processes[processID]`` missing
  becomes ``unknown-service`` (older versions crash on it); ``tags``, ``logs``, ``references``
  default to ``[]``; duplicate key/value tags are dropped with a span warning; the tree parent
  is the first ``CHILD_OF`` or ``FOLLOWS_FROM`` reference whose span is in the trace, a span
  whose references resolve to nothing is counted as an orphan and shown as a root, and spans
  caught in a reference cycle are never reached from a root (not shown); every reference after
  the first is a "subsidiary" reference (so the parent must come first). Trace start and end
  are ``min(startTime)`` and ``max(startTime + duration)``; all times are microseconds
  (``src/types/trace.tsx``: "All timestamps are in microseconds").
- ``packages/jaeger-ui/src/model/OtelSpanFacade.ts``: the parent is the earliest ``CHILD_OF``
  with the span's own ``traceID``, else the earliest such ``FOLLOWS_FROM``; the other
  references become links; a truthy ``error`` tag is the ERROR status (the red mark);
  ``span.kind`` gives the kind; a log's ``event`` field gives the event's name.
- ``packages/jaeger-ui/src/components/TracePage/TraceTimelineViewer/SpanDetail/``
  ``AccordionEvents.tsx``: logs outside the viewed time range (the whole trace by default)
  are hidden behind a toggle.
- ``packages/jaeger-ui/src/components/SearchTracePage/index.tsx``: uploaded traces are
  de-duplicated by ``traceID``; a second trace with the same id is not shown.

Jaeger backend (repository ``jaegertracing/jaeger``; older copy at ``model/json/model.go``):

- ``internal/uimodel/model.go``: the field names and types (``traceID``, ``spans``,
  ``processes``, ``warnings``; span ``traceID spanID flags operationName references startTime
  duration tags logs processID warnings``; reference ``refType traceID spanID``; process
  ``serviceName tags``; log ``timestamp fields``; key-value ``key type value``; ``refType`` is
  ``CHILD_OF`` | ``FOLLOWS_FROM``; ``type`` is ``string`` | ``bool`` | ``int64`` | ``float64``
  | ``binary``; ``startTime`` is microseconds since the Unix epoch, ``duration`` microseconds).
- ``internal/uimodel/converter/v1/json/from_domain.go``: ``references``, ``tags``, ``logs`` and
  a process's ``tags`` are always arrays; ``int64`` values beyond JavaScript's safe integers
  (``±(2**53 - 1)``) are written as decimal strings; ``binary`` values are base64 strings
  (Go's ``[]byte`` JSON encoding); log timestamps are microseconds.
- ``jaegertracing/jaeger-idl`` ``model/v1/ids.go``: ids are lowercase hex, a trace id is 16 hex
  digits when its high 64 bits are zero and 32 otherwise, a span id is always 16.
- ``cmd/jaeger/internal/extension/jaegerquery/internal/http_handler.go``: ``POST /api/transform``
  (OTLP JSON in, this format out) and the ``data``/``total``/``limit``/``offset``/``errors``
  envelope.

Stricter than the UI (so files look like what Jaeger itself writes, and exporter bugs show):
the exact envelope, no unknown fields, every ``type`` present and matching its value,
integers (not floats) for times, a non-empty ``operationName`` and ``serviceName``, no
all-zero ids (invalid in OpenTelemetry), at most one ``CHILD_OF`` and it comes first, a
``CHILD_OF`` stays in its trace, no duplicate tag keys, log timestamps inside their span,
and (unless ``allow_dangling_references``) every reference to a trace in the file resolves.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import jsonschema

__all__ = [
    "JAEGER_TRACE_FILE_SCHEMA",
    "MAX_EPOCH_MICROS",
    "MIN_EPOCH_MICROS",
    "validate_jaeger_trace_file",
]

MIN_EPOCH_MICROS: Final = 946_684_800_000_000
"""2000-01-01T00:00:00Z in microseconds: the earliest plausible ``startTime``."""
MAX_EPOCH_MICROS: Final = 4_102_444_800_000_000
"""2100-01-01T00:00:00Z in microseconds: the latest plausible end of a span."""
JS_MAX_SAFE_INTEGER: Final = 2**53 - 1
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
UINT32_MAX: Final = 2**32 - 1

_TRACE_ID_RE: Final = "^(?:[0-9a-f]{16}|[0-9a-f]{32})$"
_SPAN_ID_RE: Final = "^[0-9a-f]{16}$"
_MAX_PROBLEMS: Final = 50

JAEGER_TRACE_FILE_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "urn:agent-guardrails:test:jaeger-ui-trace-file",
    "title": "Jaeger UI trace file",
    "description": (
        "The Jaeger query service's /api/traces response, which the Jaeger UI's Upload tab "
        "reads. Fields from jaegertracing/jaeger internal/uimodel/model.go."
    ),
    "type": "object",
    "required": ["data"],
    "additionalProperties": False,
    "properties": {
        "data": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/trace"}},
        "total": {"type": "integer", "minimum": 0},
        "limit": {"type": "integer", "minimum": 0},
        "offset": {"type": "integer", "minimum": 0},
        "errors": {
            "description": "The API's error list: a file of good traces has none.",
            "anyOf": [{"type": "null"}, {"type": "array", "maxItems": 0}],
        },
    },
    "$defs": {
        "traceID": {
            "description": "Lowercase hex: 16 digits if the high 64 bits are zero, else 32.",
            "type": "string",
            "pattern": _TRACE_ID_RE,
        },
        "spanID": {
            "description": "16 lowercase hex digits.",
            "type": "string",
            "pattern": _SPAN_ID_RE,
        },
        "micros": {
            "description": "Microseconds since the Unix epoch (range checked in code).",
            "type": "integer",
            "minimum": 1,
        },
        "warnings": {
            "anyOf": [{"type": "null"}, {"type": "array", "items": {"type": "string"}}],
        },
        "keyValue": {
            "type": "object",
            "required": ["key", "type", "value"],
            "additionalProperties": False,
            "properties": {
                "key": {"type": "string", "minLength": 1},
                "type": {"enum": ["string", "bool", "int64", "float64", "binary"]},
                "value": {"type": ["string", "boolean", "integer", "number"]},
            },
        },
        "keyValues": {"type": "array", "items": {"$ref": "#/$defs/keyValue"}},
        "reference": {
            "type": "object",
            "required": ["refType", "traceID", "spanID"],
            "additionalProperties": False,
            "properties": {
                "refType": {"enum": ["CHILD_OF", "FOLLOWS_FROM"]},
                "traceID": {"$ref": "#/$defs/traceID"},
                "spanID": {"$ref": "#/$defs/spanID"},
            },
        },
        "log": {
            "type": "object",
            "required": ["timestamp", "fields"],
            "additionalProperties": False,
            "properties": {
                "timestamp": {"$ref": "#/$defs/micros"},
                "fields": {"$ref": "#/$defs/keyValues"},
            },
        },
        "process": {
            "type": "object",
            "required": ["serviceName", "tags"],
            "additionalProperties": False,
            "properties": {
                "serviceName": {"type": "string", "minLength": 1},
                "tags": {"$ref": "#/$defs/keyValues"},
            },
        },
        "span": {
            "type": "object",
            "required": [
                "traceID",
                "spanID",
                "operationName",
                "references",
                "startTime",
                "duration",
                "tags",
                "logs",
                "processID",
            ],
            "additionalProperties": False,
            "properties": {
                "traceID": {"$ref": "#/$defs/traceID"},
                "spanID": {"$ref": "#/$defs/spanID"},
                "flags": {"type": "integer", "minimum": 0, "maximum": UINT32_MAX},
                "operationName": {"type": "string", "minLength": 1},
                "references": {"type": "array", "items": {"$ref": "#/$defs/reference"}},
                "startTime": {"$ref": "#/$defs/micros"},
                "duration": {"description": "Microseconds.", "type": "integer", "minimum": 0},
                "tags": {"$ref": "#/$defs/keyValues"},
                "logs": {"type": "array", "items": {"$ref": "#/$defs/log"}},
                "processID": {"type": "string", "minLength": 1},
                "warnings": {"$ref": "#/$defs/warnings"},
            },
        },
        "trace": {
            "type": "object",
            "required": ["traceID", "spans", "processes"],
            "additionalProperties": False,
            "properties": {
                "traceID": {"$ref": "#/$defs/traceID"},
                "spans": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/span"}},
                "processes": {
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": {"type": "string", "minLength": 1},
                    "additionalProperties": {"$ref": "#/$defs/process"},
                },
                "warnings": {"$ref": "#/$defs/warnings"},
            },
        },
    },
}

_VALIDATOR: Final = jsonschema.Draft202012Validator(JAEGER_TRACE_FILE_SCHEMA)


def validate_jaeger_trace_file(doc: object, *, allow_dangling_references: bool = False) -> None:
    """Raise :class:`AssertionError` unless ``doc`` (a parsed JSON document) is a trace file
    every Jaeger UI version opens and renders as written.

    ``allow_dangling_references``: accept references to spans missing from a trace that is in
    the file (the UI shows such a span as an orphan root, or an unresolved link). References to
    traces that are not in the file are always accepted: a link may point anywhere.

    >>> validate_jaeger_trace_file({"data": []})
    Traceback (most recent call last):
    AssertionError: Jaeger trace file: 1 problem(s):
      data: [] should be non-empty
    """
    problems = _json_problems(doc)
    if not problems:
        problems = [_schema_problem(doc, error) for error in _schema_errors(doc)]
    if not problems:
        assert isinstance(doc, dict)  # the schema said so
        problems = list(_cross_check(doc["data"], allow_dangling_references))
    if problems:
        shown = "\n".join(f"  {problem}" for problem in problems[:_MAX_PROBLEMS])
        more = len(problems) - _MAX_PROBLEMS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise AssertionError(f"Jaeger trace file: {len(problems)} problem(s):\n{shown}{tail}")


# ---------------------------------------------------------------- JSON and schema


def _json_problems(doc: object) -> list[str]:
    """The browser's ``JSON.parse`` rejects NaN/Infinity; everything must be plain JSON."""
    try:
        json.dumps(doc, allow_nan=False)
    except ValueError as exc:
        return [f"document: not strict JSON ({exc}); JSON.parse rejects NaN and Infinity"]
    except TypeError as exc:
        return [f"document: not JSON-serialisable ({exc})"]
    return []


def _schema_errors(doc: object) -> list[jsonschema.ValidationError]:
    return sorted(_VALIDATOR.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])


def _schema_problem(doc: object, error: jsonschema.ValidationError) -> str:
    return f"{_locate(doc, list(error.absolute_path))}: {error.message}"


def _locate(doc: object, path: Sequence[str | int]) -> str:
    """``data[0] (trace 4bf9...).spans[2] (span 00f0... 'execute_tool x').tags[1].value``."""
    out = ""
    node: object = doc
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
        if isinstance(node, Mapping):
            node = node.get(step)
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
        else:
            node = None
        if isinstance(step, int) and isinstance(node, Mapping):
            if out.endswith(f"spans[{step}]") and isinstance(node.get("spanID"), str):
                out += f" (span {node['spanID']} {node.get('operationName')!r})"
            elif out == f"data[{step}]" and isinstance(node.get("traceID"), str):
                out += f" (trace {node['traceID']})"
    return out or "document"


# ---------------------------------------------------------------- cross-checks


def _cross_check(traces: list[dict[str, Any]], allow_dangling: bool) -> Iterable[str]:
    spans_by_trace: dict[str, set[str]] = {}
    for i, trace in enumerate(traces):
        trace_id: str = trace["traceID"]
        where = f"data[{i}] (trace {trace_id})"
        if trace_id in spans_by_trace:
            yield f"{where}.traceID: duplicate trace id; the UI shows only one of them"
        spans_by_trace.setdefault(trace_id, set()).update(s["spanID"] for s in trace["spans"])
    for i, trace in enumerate(traces):
        yield from _check_trace(i, trace, spans_by_trace, allow_dangling)


def _check_trace(
    index: int, trace: dict[str, Any], spans_by_trace: Mapping[str, set[str]], allow_dangling: bool
) -> Iterable[str]:
    trace_id: str = trace["traceID"]
    where = f"data[{index}] (trace {trace_id})"
    if _all_zero(trace_id):
        yield f"{where}.traceID: all-zero trace id is invalid"
    for pid, process in trace["processes"].items():
        yield from _check_key_values(f"{where}.processes[{pid!r}].tags", process["tags"])

    seen: dict[str, int] = {}
    parents: dict[str, str] = {}
    for j, span in enumerate(trace["spans"]):
        span_id: str = span["spanID"]
        at = f"{where}.spans[{j}] (span {span_id} {span['operationName']!r})"
        if span_id in seen:
            yield f"{at}.spanID: duplicate of spans[{seen[span_id]}]; the UI renames it"
        seen.setdefault(span_id, j)
        if _all_zero(span_id):
            yield f"{at}.spanID: all-zero span id is invalid"
        if span["traceID"] != trace_id:
            yield f"{at}.traceID: {span['traceID']} is not the trace's traceID {trace_id}"
        if span["processID"] not in trace["processes"]:
            known = sorted(trace["processes"])
            yield f"{at}.processID: {span['processID']!r} is not in the trace's processes {known}"
        yield from _check_times(at, span)
        yield from _check_key_values(f"{at}.tags", span["tags"])
        for k, log in enumerate(span["logs"]):
            yield from _check_key_values(f"{at}.logs[{k}].fields", log["fields"])
        yield from _check_references(at, span, trace_id, spans_by_trace, allow_dangling)
        parent = _tree_parent(span, trace_id, spans_by_trace.get(trace_id, set()))
        if parent is not None:
            parents[span_id] = parent
    yield from _check_cycles(where, parents)


def _check_times(at: str, span: Mapping[str, Any]) -> Iterable[str]:
    start, duration = span["startTime"], span["duration"]
    for field, value in (("startTime", start), ("duration", duration)):
        if not isinstance(value, int):
            yield f"{at}.{field}: {value!r} must be an integer number of microseconds"
    if not (isinstance(start, int) and isinstance(duration, int)):
        return
    bad_start = list(_check_epoch_micros(f"{at}.startTime", start))
    yield from bad_start
    if bad_start:
        return  # the logs' window would be wrong too: one message is enough
    if start + duration > MAX_EPOCH_MICROS:
        yield f"{at}.duration: {duration} µs ends after 2100; is it in nanoseconds?"
    for k, log in enumerate(span["logs"]):
        stamp = log["timestamp"]
        field = f"{at}.logs[{k}].timestamp"
        if not isinstance(stamp, int):
            yield f"{field}: {stamp!r} must be an integer number of microseconds"
            continue
        bad_unit = list(_check_epoch_micros(field, stamp))
        yield from bad_unit
        if not bad_unit and not start <= stamp <= start + duration:
            yield (
                f"{field}: {stamp} is outside its span [{start}, {start + duration}] µs "
                "(the UI hides logs outside the trace's time range; compute the span's "
                "duration as end_us - start_us so events at its end stay inside)"
            )


def _check_epoch_micros(field: str, value: int) -> Iterable[str]:
    if MIN_EPOCH_MICROS <= value <= MAX_EPOCH_MICROS:
        return
    for unit, factor in (("nanoseconds", 1e-3), ("milliseconds", 1e3), ("seconds", 1e6)):
        if MIN_EPOCH_MICROS <= value * factor <= MAX_EPOCH_MICROS:
            yield f"{field}: {value} looks like {unit} since the epoch; Jaeger wants microseconds"
            return
    yield f"{field}: {value} is not microseconds since the epoch between 2000 and 2100"


def _check_key_values(where: str, items: Sequence[Mapping[str, Any]]) -> Iterable[str]:
    keys: dict[str, int] = {}
    for n, item in enumerate(items):
        key, kind, value = item["key"], item["type"], item["value"]
        at = f"{where}[{n}] ({key!r})"
        if key in keys:
            yield f"{at}.key: duplicate of [{keys[key]}]"
        keys.setdefault(key, n)
        problem = _value_problem(kind, value)
        if problem:
            yield f"{at}.value: {problem}"


def _value_problem(kind: str, value: object) -> str | None:
    shown = f"{value!r} ({type(value).__name__})"
    if kind == "string":
        return None if isinstance(value, str) else f"type 'string' needs a JSON string, got {shown}"
    if kind == "bool":
        return None if isinstance(value, bool) else f"type 'bool' needs true/false, got {shown}"
    if kind == "int64":
        return _int64_problem(value, shown)
    if kind == "float64":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"type 'float64' needs a JSON number, got {shown}"
        return (
            None if math.isfinite(value) else f"type 'float64' needs a finite number, got {shown}"
        )
    # binary: Go encodes []byte as standard base64 with padding.
    if not isinstance(value, str):
        return f"type 'binary' needs a base64 string, got {shown}"
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return f"type 'binary' needs standard base64, got {value!r}"
    return None


def _int64_problem(value: object, shown: str) -> str | None:
    if isinstance(value, bool):
        return f"type 'int64' needs an integer, got {shown}"
    if isinstance(value, int):
        if abs(value) <= JS_MAX_SAFE_INTEGER:
            return None
        if INT64_MIN <= value <= INT64_MAX:
            return (
                f"{value} is beyond JavaScript's safe integers: Jaeger writes such int64 "
                f"values as decimal strings ({str(value)!r})"
            )
        return f"{value} does not fit in int64"
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
        number = int(value)
        if not INT64_MIN <= number <= INT64_MAX:
            return f"{value} does not fit in int64"
        if abs(number) <= JS_MAX_SAFE_INTEGER:
            return f"type 'int64' within ±(2**53 - 1) is a JSON number, got the string {value!r}"
        return None
    return f"type 'int64' needs an integer, got {shown}"


def _check_references(
    at: str,
    span: Mapping[str, Any],
    trace_id: str,
    spans_by_trace: Mapping[str, set[str]],
    allow_dangling: bool,
) -> Iterable[str]:
    refs: list[Mapping[str, str]] = span["references"]
    child_of = [n for n, ref in enumerate(refs) if ref["refType"] == "CHILD_OF"]
    if len(child_of) > 1:
        yield f"{at}.references: {len(child_of)} CHILD_OF references; a span has one parent"
    if child_of and child_of[0] != 0:
        yield (
            f"{at}.references[{child_of[0]}]: the CHILD_OF (parent) reference must come "
            "first; the UI treats every later reference as a subsidiary one"
        )
    for n, ref in enumerate(refs):
        here = f"{at}.references[{n}] ({ref['refType']} {ref['traceID']}/{ref['spanID']})"
        if _all_zero(ref["spanID"]) or _all_zero(ref["traceID"]):
            yield f"{here}: all-zero ids are invalid"
        if ref["traceID"] == trace_id and ref["spanID"] == span["spanID"]:
            yield f"{here}: a span cannot reference itself"
        if ref["refType"] == "CHILD_OF" and ref["traceID"] != trace_id:
            yield f"{here}: a CHILD_OF parent must be in the span's own trace {trace_id}"
        known = spans_by_trace.get(ref["traceID"])
        if not allow_dangling and known is not None and ref["spanID"] not in known:
            yield f"{here}: no span {ref['spanID']} in trace {ref['traceID']} of this file"


def _tree_parent(span: Mapping[str, Any], trace_id: str, span_ids: set[str]) -> str | None:
    """The parent the UI nests ``span`` under (``transformTraceData``), if any."""
    for ref in span["references"]:
        if ref["traceID"] == trace_id and ref["spanID"] in span_ids:
            return str(ref["spanID"])
    return None


def _check_cycles(where: str, parents: Mapping[str, str]) -> Iterable[str]:
    reported: set[str] = set()
    for start in parents:
        path: list[str] = []
        node: str | None = start
        while node is not None and node not in path and node not in reported:
            path.append(node)
            node = parents.get(node)
        if node is not None and node in path:
            cycle = path[path.index(node) :]
            reported.update(cycle)
            yield (
                f"{where}: spans {' -> '.join([*cycle, node])} reference each other in a "
                "cycle; the UI shows none of them"
            )
        reported.update(path)


def _all_zero(hex_id: str) -> bool:
    return set(hex_id) == {"0"}
