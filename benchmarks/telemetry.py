"""What tracing adds to a guarded call, in one run, as ratios to the same call untraced.

    python benchmarks/telemetry.py [--quick]

Runs the same ``Guardrails.run`` on the in-memory store (allowed call, one validator, one
budget) with: telemetry off (no-op providers), the OpenTelemetry API only (no SDK
configured: the global proxy providers), our own code alone (a span that claims to
record and does nothing), the SDK with a ``BatchSpanProcessor`` (its exporter drops the
batches, so the network is not measured), the SDK with the sampler off, and the SDK with
batch spans plus metrics; and, as a reference, the SDK's own floor: one bare span with as
many attributes. Goal: tracing with the batch processor adds under 40 us per guarded
call. Best of several repeats, interleaved, so that noise from other work on the machine
hits every case alike.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import (
    NonRecordingSpan,
    NoOpTracerProvider,
    Span,
    SpanContext,
    TraceFlags,
    Tracer,
    set_span_in_context,
)
from opentelemetry.trace import TracerProvider as TracerProviderApi

from agent_guardrails import CallRequest, Guardrails, PolicyPack, Scope
from agent_guardrails.store import MemoryStore

PACK = """
name: bench
version: 1
defaults: {level: execute}
actions:
  crm.tag:
    risk: low
    cost: 0.001
    validators:
      - banned_terms: {terms: [spam, scam], fields: [note]}
budgets:
  - {name: daily, limit: 1.0e12, window: day}
"""


class DropExporter(SpanExporter):
    """Receives batches and drops them: the cost of export I/O is not what is measured."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


class _NullSpan(NonRecordingSpan):
    """A span that says it records and does nothing: what is left is our own code's cost."""

    def __init__(self) -> None:
        super().__init__(SpanContext(1, 2, False, TraceFlags(TraceFlags.SAMPLED)))

    def is_recording(self) -> bool:
        return True


class _NullTracer(Tracer):
    def start_span(self, *args: Any, **kwargs: Any) -> Span:
        return _NullSpan()

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class _NullTracerProvider(TracerProviderApi):
    def get_tracer(self, *args: Any, **kwargs: Any) -> Tracer:
        return _NullTracer()


def make_case(name: str) -> tuple[Callable[[], object], Callable[[], None]]:
    """A zero-argument guarded call for one telemetry set-up, and its shutdown."""
    pack = PolicyPack.from_yaml(PACK)
    kwargs: dict[str, Any] = {}
    closers: list[Any] = []
    if name == "off":
        kwargs = {"tracer_provider": NoOpTracerProvider(), "meter_provider": NoOpMeterProvider()}
    elif name == "our code only":
        kwargs = {"tracer_provider": _NullTracerProvider(), "meter_provider": NoOpMeterProvider()}
    elif name.startswith("sdk"):
        provider = TracerProvider(sampler=ALWAYS_OFF if name == "sdk sampled off" else None)
        provider.add_span_processor(BatchSpanProcessor(DropExporter()))
        kwargs["tracer_provider"] = provider
        closers.append(provider)
        if name == "sdk batch + metrics":
            meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
            kwargs["meter_provider"] = meters
            closers.append(meters)
    guard = Guardrails(pack, store=MemoryStore(), **kwargs)
    request = CallRequest("tag_contact", "crm.tag", {"note": "hello"}, Scope(agent="bench"))

    def body(args: Any) -> str:
        return "ok"

    def call() -> object:
        return guard.run(request, body)

    def close() -> None:
        for c in closers:
            c.shutdown()

    return call, close


CASES = ("off", "api only", "our code only", "sdk sampled off", "sdk batch", "sdk batch + metrics")


def sdk_floor(n: int) -> float:
    """What any instrumentation pays for one span like ours with the same SDK set-up: start,
    make current, 20 attributes, end, batch processor. Our added cost is compared to it."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DropExporter()))
    tracer = provider.get_tracer("floor")
    attrs: dict[str, Any] = {f"agent_guardrails.attr{i}": "value" for i in range(16)}
    attrs.update({"n": 1, "x": 0.5, "b": True, "s": "allowed"})

    def span() -> None:
        s = tracer.start_span("execute_tool tag_contact")
        token = otel_context.attach(set_span_in_context(s))
        otel_context.detach(token)
        s.set_attributes(attrs)
        s.end()

    for _ in range(min(n, 500)):
        span()
    start = time.perf_counter()
    for _ in range(n):
        span()
    elapsed = (time.perf_counter() - start) / n
    provider.shutdown()
    return elapsed


def per_call(name: str, n: int) -> float:
    call, close = make_case(name)
    for _ in range(min(n, 500)):
        call()  # warm up
    gc.collect()
    start = time.perf_counter()
    for _ in range(n):
        call()
    elapsed = (time.perf_counter() - start) / n
    close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (for CI smoke runs)")
    args = parser.parse_args()
    n, repeats = (2_000, 3) if args.quick else (10_000, 7)

    def bare() -> object:
        return "ok"

    best = dict.fromkeys(("bare", "sdk floor", *CASES), float("inf"))
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            bare()
        best["bare"] = min(best["bare"], (time.perf_counter() - start) / n)
        best["sdk floor"] = min(best["sdk floor"], sdk_floor(n))
        for name in CASES:
            best[name] = min(best[name], per_call(name, n))

    off = best["off"]
    print(f"guarded call, {n} calls x {repeats} repeats (best), memory:// store")
    print(f"{'telemetry':<22}{'us/call':>10}{'vs off':>10}{'added us':>11}")
    for name in CASES:
        us = best[name] * 1e6
        print(f"{name:<22}{us:>10.1f}{best[name] / off:>9.2f}x{(best[name] - off) * 1e6:>11.1f}")
    added = (best["sdk batch"] - off) * 1e6
    floor = best["sdk floor"] * 1e6
    print(
        f"the SDK's own floor (one span, 20 attributes, current, batch): {floor:.1f} us; "
        f"tracing adds {added / floor:.2f}x that"
    )
    verdict = "meets" if added < 40 else "misses"
    print(f"tracing (batch processor) adds {added:.1f} us per call: {verdict} the goal (< 40)")


if __name__ == "__main__":
    main()
