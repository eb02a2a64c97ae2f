"""The rotel harness itself: SDK spans reach a real OTLP collector, over OTLP/HTTP and gRPC, and
come back from its output exactly as they were sent."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, format_span_id, format_trace_id
from opentelemetry.util.types import AttributeValue as OtelAttributeValue

from tests.telemetry import rotel_collector
from tests.telemetry.rotel_collector import (
    AttributeValue,
    ReceivedEvent,
    ReceivedLink,
    ReceivedSpan,
    RotelCollector,
    RotelNotInstalledError,
    RotelParseError,
    RotelStartError,
    SpansNotReceivedError,
    find_rotel_agent,
    parse_attribute_value,
    parse_rotel_output,
    start_rotel,
)

PROTOCOLS = ["http", "grpc"]

CHILD_ATTRIBUTES: dict[str, OtelAttributeValue] = {
    "gen_ai.tool.name": "crm.tag",
    "text": "hello, world (1): Str(not a value)",
    "count": 42,
    "negative": -7,
    "ratio": 0.1,
    "whole_float": 2.0,  # rotel prints Double(2): it must still come back as a float
    "allowed": False,
    "audited": True,
    "tags": ["a", "b, c", "d)"],
    "ints": [1, 2, 3],
    "floats": [1.5, -0.25],
    "bools": [True, False],
}
EVENT_ATTRIBUTES: dict[str, OtelAttributeValue] = {
    "rule": "budget.daily",
    "spent": 12,
    "limit": 10.5,
    "blocked": True,
    "scopes": ["workflow:promo", "tenant:acme"],
}
LINK_ATTRIBUTES: dict[str, OtelAttributeValue] = {"link.reason": "retry", "link.attempt": 2}


@pytest.fixture
def rotel(tmp_path: Path) -> Iterator[RotelCollector]:
    with start_rotel(tmp_path) as collector:
        yield collector


def _exporter(rotel: RotelCollector, protocol: str) -> SpanExporter:
    if protocol == "http":
        return HttpSpanExporter(endpoint=rotel.http_traces_endpoint, timeout=5)
    return GrpcSpanExporter(endpoint=rotel.grpc_endpoint, insecure=True, timeout=5)


def _provider(
    rotel: RotelCollector, protocol: str, *, max_export_batch_size: int = 512
) -> TracerProvider:
    """A private provider (never the global one) exporting to ``rotel``."""
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": f"harness-{protocol}", "harness.protocol": protocol}
        )
    )
    provider.add_span_processor(
        BatchSpanProcessor(_exporter(rotel, protocol), max_export_batch_size=max_export_batch_size)
    )
    return provider


def _typed(value: object) -> object:
    """``value`` with the type of every scalar, since ``True == 1`` and ``2 == 2.0``."""
    if isinstance(value, list | tuple):
        return ("list", [_typed(item) for item in value])
    return (type(value).__name__, value)


def _typed_attributes(attributes: Mapping[str, object]) -> dict[str, object]:
    return {key: _typed(value) for key, value in attributes.items()}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_spans_arrive_exactly(rotel: RotelCollector, protocol: str) -> None:
    provider = _provider(rotel, protocol)
    tracer = provider.get_tracer("tests.telemetry.harness", "1.0")
    with tracer.start_as_current_span("linked-target") as target:
        pass
    with tracer.start_as_current_span(
        "parent", kind=SpanKind.SERVER, attributes={"marker": "root"}
    ) as parent:
        links = [Link(target.get_span_context(), LINK_ATTRIBUTES)]
        with tracer.start_as_current_span("child", links=links) as child:
            child.set_attributes(CHILD_ATTRIBUTES)
            child.add_event("guardrails.decision", EVENT_ATTRIBUTES)
            child.set_status(Status(StatusCode.ERROR, "denied: over budget"))
    assert provider.force_flush(10_000)
    provider.shutdown()

    spans = rotel.spans(wait_for=3)
    assert sorted(span.name for span in spans) == ["child", "linked-target", "parent"]
    received_parent = rotel.span("parent")
    received_child = rotel.span("child")
    received_target = rotel.span("linked-target")

    parent_context = parent.get_span_context()
    child_context = child.get_span_context()
    target_context = target.get_span_context()
    assert received_parent.trace_id == format_trace_id(parent_context.trace_id)
    assert received_parent.span_id == format_span_id(parent_context.span_id)
    assert received_parent.parent_span_id is None
    assert received_parent.kind == SpanKind.SERVER.name
    assert received_parent.status_code == StatusCode.UNSET.name
    assert received_parent.attributes == {"marker": "root"}
    assert received_parent.events == []
    assert received_parent.links == []

    assert received_child.trace_id == format_trace_id(child_context.trace_id)
    assert received_child.trace_id == received_parent.trace_id
    assert received_child.span_id == format_span_id(child_context.span_id)
    assert received_child.parent_span_id == received_parent.span_id
    assert received_child.kind == "INTERNAL"
    assert received_child.status_code == "ERROR"
    assert received_child.status_message == "denied: over budget"
    assert _typed_attributes(received_child.attributes) == _typed_attributes(CHILD_ATTRIBUTES)
    assert len(received_child.events) == 1
    event = received_child.events[0]
    assert event.name == "guardrails.decision"
    assert _typed_attributes(event.attributes) == _typed_attributes(EVENT_ATTRIBUTES)
    assert (
        received_child.start_time_unix_nano
        <= event.timestamp_unix_nano
        <= received_child.end_time_unix_nano
    )
    assert len(received_child.links) == 1
    link = received_child.links[0]
    assert link.trace_id == format_trace_id(target_context.trace_id)
    assert link.span_id == format_span_id(target_context.span_id)
    assert link.trace_id != received_child.trace_id
    assert _typed_attributes(link.attributes) == _typed_attributes(LINK_ATTRIBUTES)

    assert received_target.span_id == format_span_id(target_context.span_id)
    assert received_target.parent_span_id is None
    for span in spans:
        assert span.service_name == f"harness-{protocol}"
        assert span.resource["harness.protocol"] == protocol
        assert span.resource["telemetry.sdk.language"] == "python"
        assert span.scope_name == "tests.telemetry.harness"
        assert span.scope_version == "1.0"
        assert 0 < span.start_time_unix_nano <= span.end_time_unix_nano
    assert len(rotel.spans()) == 3  # nothing else arrived meanwhile


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_many_spans_in_several_requests(rotel: RotelCollector, protocol: str) -> None:
    provider = _provider(rotel, protocol, max_export_batch_size=16)
    tracer = provider.get_tracer("tests.telemetry.harness")
    total = 120
    for i in range(total):
        with tracer.start_as_current_span(f"step {i}") as sent:
            sent.set_attribute("i", i)
            sent.set_attribute("labels", [f"l{i}", "shared, label"])
    assert provider.force_flush(10_000)
    provider.shutdown()

    spans = rotel.spans(wait_for=total)
    assert len(spans) == total
    assert rotel.output().count("ResourceSpans #0\n") >= total // 16  # one block per request
    by_index: dict[int, ReceivedSpan] = {}
    for span in spans:
        index = span.attributes["i"]
        assert type(index) is int
        by_index[index] = span
    assert sorted(by_index) == list(range(total))
    for i, span in by_index.items():
        assert span.name == f"step {i}"
        assert span.attributes["labels"] == [f"l{i}", "shared, label"]
    assert len({span.trace_id for span in spans}) == total


def test_waiting_for_spans_that_never_come_fails_clearly(rotel: RotelCollector) -> None:
    assert rotel.spans() == []
    started = time.monotonic()
    with pytest.raises(SpansNotReceivedError) as failure:
        rotel.spans(wait_for=1, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 3
    message = str(failure.value)
    assert "waited for 1 span(s)" in message
    assert "received 0 span(s)" in message
    assert "within 0.3s" in message
    assert "Starting Rotel" in message  # rotel's own output, to debug with

    with pytest.raises(SpansNotReceivedError, match="name == 'missing'"):
        rotel.span("missing", timeout=0.1)


def test_collector_ports_life_cycle_and_death(tmp_path: Path) -> None:
    with start_rotel(tmp_path) as collector:
        assert collector.running
        assert collector.grpc_port != collector.http_port
        assert {collector.grpc_port, collector.http_port}.isdisjoint({4317, 4318})
        assert collector.http_endpoint == f"http://127.0.0.1:{collector.http_port}"
        assert collector.http_traces_endpoint == f"{collector.http_endpoint}/v1/traces"
        assert collector.grpc_endpoint == f"http://127.0.0.1:{collector.grpc_port}"
        assert collector.output_path.parent.parent == tmp_path
    assert not collector.running
    assert collector.returncode is not None
    collector.stop()  # idempotent
    started = time.monotonic()
    with pytest.raises(SpansNotReceivedError, match="rotel exited"):
        collector.spans(wait_for=1, timeout=10)
    assert time.monotonic() - started < 2  # does not sit out the timeout
    # In the foreground rotel writes neither its pid file nor its log file.
    assert [path.name for path in collector.workdir.iterdir()] == ["rotel-output.log"]


def test_a_port_taken_before_rotel_binds_it_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = int(squatter.getsockname()[1])
        picks = iter([taken])
        real_free_port = rotel_collector._free_port
        monkeypatch.setattr(
            rotel_collector, "_free_port", lambda used: next(picks, None) or real_free_port(used)
        )
        with start_rotel(tmp_path) as collector:
            assert collector.running
            assert taken not in (collector.grpc_port, collector.http_port)


def test_a_collector_that_cannot_start_says_why(tmp_path: Path) -> None:
    fake = tmp_path / "rotel-agent"
    fake.write_text("#!/bin/sh\necho 'ERROR: something is wrong' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(RotelStartError, match=r"(?s)exited, exit code 3.*something is wrong"):
        start_rotel(tmp_path, binary=fake, timeout=5)


def test_binary_is_found_in_the_rotel_package_and_missing_is_explained(tmp_path: Path) -> None:
    binary = find_rotel_agent()
    assert binary.name == "rotel-agent"
    assert binary.parent.name == "rotel"
    with pytest.raises(RotelNotInstalledError, match="make test"):
        start_rotel(tmp_path, binary=tmp_path / "no-such-rotel-agent")


# The parser on output whose shape was taken from rotel itself, with the awkward cases.

BLOCKS = """\
\x1b[2m2026-11-23T22:37:56.194151Z\x1b[0m \x1b[32m INFO\x1b[0m Starting Rotel. grpc_endpoint="x"
ResourceSpans #0
Resource SchemaURL:⎵
Resource attributes:
     -> service.name: Str(svc-a)
     -> res.int: Int(5)
ScopeSpans #0
ScopeSpans SchemaURL:⎵
InstrumentationScope scoped 0.1
InstrumentationScope attributes:
     -> scope.attr: Str(sv)
Span #0
    Trace ID       : 00000000000000000000000000001234
    Parent ID      : 0000000000005678
    ID             : a764cae453601f30
    Name           : all
    Kind           : SPAN_KIND_CLIENT
    TraceState     : vendor=abc
Start time: 1795473548592380811
End time: 1795473548592502668
    Status code    : STATUS_CODE_OK
    Status message :⎵
Attributes:
     -> Name: Str(an attribute called Name)
     -> multi: Str(line1
Span #7
     -> fake: Str(x))
     -> paren: Str(a)b)
     -> tail: Str(ends)
with text)
     -> empty: Str()
Events:
SpanEvent #0
     -> Name: e1
     -> Timestamp: 1795473548592414179
     -> DroppedAttributesCount: 0
SpanEvent #1
     -> Name: e2
     -> Timestamp: 1795473548592479224
     -> DroppedAttributesCount: 0
     -> Attributes::
          -> x: Slice(Double(1.5), Double(2), Double(-0))
          -> y: Slice(Bool(true), Bool(false))
          -> z: Slice()
          -> special: Slice(Double(inf), Double(-inf), Double(NaN))
          -> tricky: Slice(Str(a), Str(b), Str(c)), Str(d, Int(1)))
          -> map: Map(k:Str(v), n:Int(1), inner:Slice(Str(x:y)))
          -> bytes: Bytes([1, 2, 255])
          -> nothing: Empty
Links:
SpanLink #0
     -> Trace ID: 000000000000000000000000000000ab
     -> ID: 00000000000000cd
     -> TraceState: k=v
     -> DroppedAttributesCount: 0
     -> Attributes::
          -> link.attr: Str(x)
2026-11-23T22:39:08.000000Z  WARN something between two blocks
ResourceSpans #0
Resource SchemaURL:⎵
Resource attributes:
     -> service.name: Str(svc-b)
ScopeSpans #0
ScopeSpans SchemaURL:⎵
InstrumentationScope two⎵
Span #0
    Trace ID       : 224c5c9ef405a64ba1d384f4ed49df2b
    Parent ID      :⎵
    ID             : e51e1122d39fb857
    Name           : name with
newline
    Kind           : SPAN_KIND_CONSUMER
Start time: 1795473548592641682
End time: 1795473548592652788
    Status code    : STATUS_CODE_ERROR
    Status message : multi
line message
ResourceSpans #1
Resource SchemaURL:⎵
Resource attributes:
     -> service.name: Str(svc-c)
ScopeSpans #0
ScopeSpans SchemaURL:⎵
InstrumentationScope my scope⎵
Span #0
    Trace ID       : 324c5c9ef405a64ba1d384f4ed49df2b
    Parent ID      :⎵
    ID             : f51e1122d39fb857
    Name           : third
    Kind           : SPAN_KIND_INTERNAL
Start time: 1
End time: 2
    Status code    : STATUS_CODE_UNSET
    Status message :⎵
Links:
SpanLink #0
     -> Trace ID: 000000000000000000000000000000ab
     -> ID: 00000000000000cd
     -> TraceState:⎵
     -> DroppedAttributesCount: 0
2026-11-23T22:40:01.779853Z  INFO Shutdown signal received.
""".replace("⎵", " ")  # rotel leaves a space after an empty value


def test_parser_reads_every_part_of_the_format() -> None:
    first, second, third = parse_rotel_output(BLOCKS)

    assert first.name == "all"
    assert first.trace_id == "00000000000000000000000000001234"
    assert first.parent_span_id == "0000000000005678"
    assert first.span_id == "a764cae453601f30"
    assert (first.kind, first.status_code, first.status_message) == ("CLIENT", "OK", "")
    assert first.trace_state == "vendor=abc"
    assert (first.start_time_unix_nano, first.end_time_unix_nano) == (
        1795473548592380811,
        1795473548592502668,
    )
    assert first.resource == {"service.name": "svc-a", "res.int": 5}
    assert (first.scope_name, first.scope_version) == ("scoped", "0.1")
    assert first.scope_attributes == {"scope.attr": "sv"}
    assert first.attributes == {
        "Name": "an attribute called Name",
        "multi": "line1\nSpan #7\n     -> fake: Str(x)",
        "paren": "a)b",
        "tail": "ends)\nwith text",
        "empty": "",
    }
    assert first.events[0] == ReceivedEvent("e1", 1795473548592414179, {})
    e2 = first.events[1]
    assert e2.name == "e2"
    assert _typed(e2.attributes["x"]) == _typed([1.5, 2.0, -0.0])
    assert e2.attributes["y"] == [True, False]
    assert e2.attributes["z"] == []
    special = e2.attributes["special"]
    assert isinstance(special, list)
    assert special[:2] == [math.inf, -math.inf]
    assert isinstance(special[2], float)
    assert math.isnan(special[2])
    # Ambiguous: the first reading that accounts for the whole value, shortest strings first.
    assert e2.attributes["tricky"] == ["a", "b", "c)", "d, Int(1)"]
    assert e2.attributes["map"] == {"k": "v", "n": 1, "inner": ["x:y"]}
    assert e2.attributes["bytes"] == b"\x01\x02\xff"
    assert e2.attributes["nothing"] is None
    assert first.links == [
        ReceivedLink(
            "000000000000000000000000000000ab", "00000000000000cd", "k=v", {"link.attr": "x"}
        )
    ]

    assert second.name == "name with\nnewline"
    assert second.parent_span_id is None
    assert (second.kind, second.status_code) == ("CONSUMER", "ERROR")
    assert second.status_message == "multi\nline message"
    assert second.resource == {"service.name": "svc-b"}
    assert (second.scope_name, second.scope_version) == ("two", "")
    assert second.events == []
    assert second.links == []

    assert third.service_name == "svc-c"
    assert (third.scope_name, third.scope_version) == ("my scope", "")
    assert third.links[0].trace_state == ""
    assert third.links[0].attributes == {}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Str(a)", "a"),
        ("Str()", ""),
        ("Str(a)b)", "a)b"),
        ("Int(-12)", -12),
        ("Double(0.1)", 0.1),
        ("Bool(false)", False),
        ("Slice(Str(a), Str(b, c))", ["a", "b, c"]),
        ("Slice(Str(a)), Str(b))", ["a)", "b"]),
        ("Slice(Slice(Int(1)), Slice())", [[1], []]),
        ("Map()", {}),
        ("Bytes([])", b""),
        ("Empty", None),
    ],
)
def test_attribute_values(text: str, value: AttributeValue) -> None:
    assert _typed(parse_attribute_value(text)) == _typed(value)


def test_unreadable_attribute_values_are_errors() -> None:
    for text in ("Int(x)", "Slice(Str(a)", "Bool(yes)", "Nope(1)"):
        with pytest.raises(RotelParseError, match="cannot read attribute value"):
            parse_attribute_value(text)
