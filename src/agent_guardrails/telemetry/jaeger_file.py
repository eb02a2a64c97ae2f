"""Write spans as a trace file in Jaeger's JSON format, which Jaeger's UI opens directly.

With no collector, a user still sees the trace: open Jaeger's UI, and on the Search page
upload the file (or run ``agent-guardrails traces FILE`` for a tree in the terminal).

The file is ``{"data": [trace, ...]}``, one entry per trace, as Jaeger's query API returns
it: each trace has ``traceID``, ``spans`` and ``processes``; each span ``traceID``, ``spanID``,
``operationName``, ``references`` (``CHILD_OF`` its parent, ``FOLLOWS_FROM`` each link),
``startTime`` and ``duration`` in microseconds, ``tags`` (typed ``{key, type, value}``),
``logs`` (span events: ``timestamp`` and ``fields``, the event name as field ``event``),
``processID`` and ``flags``. Attributes and status map the way Jaeger maps OTLP: span kind
as ``span.kind``, ERROR status as ``error=true`` plus ``otel.status_code`` and
``otel.status_description``, arrays as JSON strings.

>>> exporter = JaegerFileExporter("trace.json")  # doctest: +SKIP
>>> provider.add_span_processor(BatchSpanProcessor(exporter))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

__all__ = ["JaegerFileExporter", "jaeger_trace_document", "read_trace_file"]

_KINDS = {
    SpanKind.INTERNAL: "internal",
    SpanKind.SERVER: "server",
    SpanKind.CLIENT: "client",
    SpanKind.PRODUCER: "producer",
    SpanKind.CONSUMER: "consumer",
}


class JaegerFileExporter(SpanExporter):
    """A span exporter that keeps the spans it is given and rewrites ``path`` after each
    batch (atomically: a reader never sees half a file). Meant for demos and local runs:
    it keeps the last ``max_spans`` spans in memory (older ones leave the file), so a
    long-running process should export to a collector instead."""

    def __init__(self, path: str | Path, *, max_spans: int = 10_000) -> None:
        if max_spans < 1:
            raise ValueError(f"max_spans must be at least 1, got {max_spans}")
        self.path = Path(path)
        self.max_spans = max_spans
        self._spans: list[ReadableSpan] = []
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self._spans.extend(spans)
            del self._spans[: max(len(self._spans) - self.max_spans, 0)]
            document = jaeger_trace_document(self._spans)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_name(self.path.name + ".tmp")
                tmp.write_text(json.dumps(document, indent=1))
                os.replace(tmp, self.path)
            except OSError:
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def jaeger_trace_document(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """Spans grouped by trace, in Jaeger's JSON format (see the module docstring)."""
    traces: dict[str, dict[str, Any]] = {}
    process_ids: dict[str, dict[tuple[tuple[str, str], ...], str]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        ctx = span.get_span_context()
        if ctx is None:
            continue
        trace_id = f"{ctx.trace_id:032x}"
        entry = traces.setdefault(
            trace_id, {"traceID": trace_id, "spans": [], "processes": {}, "warnings": None}
        )
        resource = dict(span.resource.attributes) if span.resource is not None else {}
        ident = tuple(sorted((str(k), json.dumps(v, default=str)) for k, v in resource.items()))
        ids = process_ids.setdefault(trace_id, {})
        pid = ids.get(ident)
        if pid is None:
            pid = ids[ident] = f"p{len(ids) + 1}"
            service = str(resource.pop("service.name", "unknown_service"))
            entry["processes"][pid] = {"serviceName": service, "tags": _tags(resource)}
        entry["spans"].append(_span(span, trace_id, pid))
    return {"data": list(traces.values())}


def _span(span: ReadableSpan, trace_id: str, pid: str) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    references: list[dict[str, str]] = []
    if span.parent is not None and span.parent.is_valid:
        references.append(
            {
                "refType": "CHILD_OF",
                "traceID": f"{span.parent.trace_id:032x}",
                "spanID": f"{span.parent.span_id:016x}",
            }
        )
    for link in span.links:
        references.append(
            {
                "refType": "FOLLOWS_FROM",
                "traceID": f"{link.context.trace_id:032x}",
                "spanID": f"{link.context.span_id:016x}",
            }
        )
    start = (span.start_time or 0) // 1000
    end = (span.end_time or span.start_time or 0) // 1000
    tags = _tags(dict(span.attributes or {}))
    tags.append(_tag("span.kind", _KINDS.get(span.kind, "internal")))
    scope = span.instrumentation_scope
    if scope is not None:
        tags.append(_tag("otel.scope.name", scope.name))
        if scope.version:
            tags.append(_tag("otel.scope.version", scope.version))
    status = span.status
    if status.status_code is StatusCode.ERROR:
        tags.append(_tag("error", True))
        tags.append(_tag("otel.status_code", "ERROR"))
        if status.description:
            tags.append(_tag("otel.status_description", status.description))
    elif status.status_code is StatusCode.OK:
        tags.append(_tag("otel.status_code", "OK"))
    logs = [
        {
            "timestamp": event.timestamp // 1000,
            "fields": [_tag("event", event.name), *_tags(dict(event.attributes or {}))],
        }
        for event in span.events
    ]
    return {
        "traceID": trace_id,
        "spanID": f"{ctx.span_id:016x}",
        "operationName": span.name,
        "references": references,
        "startTime": start,
        "duration": max(end - start, 0),
        "tags": tags,
        "logs": logs,
        "processID": pid,
        "warnings": None,
        "flags": int(ctx.trace_flags),
    }


def _tags(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [_tag(key, value) for key, value in attributes.items()]


def _tag(key: str, value: object) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        # Jaeger writes integers beyond JavaScript's exact range as decimal strings.
        exact = -(2**53 - 1) <= value <= 2**53 - 1
        return {"key": key, "type": "int64", "value": value if exact else str(value)}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    if isinstance(value, str):
        return {"key": key, "type": "string", "value": value}
    if isinstance(value, Sequence | Mapping):
        return {"key": key, "type": "string", "value": json.dumps(list(value), default=str)}
    return {"key": key, "type": "string", "value": str(value)}


def read_trace_file(path: str | Path) -> list[dict[str, Any]]:
    """The traces of a Jaeger JSON file (``{"data": [...]}``, or one bare trace object).

    Raises ``ValueError`` with what is wrong when the file is not such a file."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(doc, dict) and "spans" in doc:
        doc = {"data": [doc]}
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list) or not all(
        isinstance(t, dict) and isinstance(t.get("spans"), list) for t in data
    ):
        raise ValueError(
            f'{path} is not a Jaeger trace file: expected {{"data": [{{"traceID": ..., '
            '"spans": [...], "processes": {...}}]}'
        )
    return data
