"""Tests of the Jaeger UI trace-file validator itself: a good file passes, each rule bites."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from tests.telemetry.jaeger_ui_format import (
    JAEGER_TRACE_FILE_SCHEMA,
    validate_jaeger_trace_file,
)

TRACE_A = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_B = "0af7651916cd43dd8448eb211c80319c"
ASK = "00f067aa0ba902b7"  # execute_tool send_email: asked for approval
BODY = "b7ad6b7169203331"  # a span the tool body opened under ASK
DENY = "5fb397be34d26b51"  # execute_tool reallocate_budget: denied
RESUME = "e457b5a2e4d86bd1"  # execute_tool send_email again, in the resumed run (trace B)
T0 = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z in microseconds

Doc = dict[str, Any]


def _kv(key: str, kind: str, value: object) -> dict[str, object]:
    return {"key": key, "type": kind, "value": value}


def _process() -> dict[str, object]:
    return {
        "serviceName": "agent-guardrails-demo",
        "tags": [
            _kv("telemetry.sdk.language", "string", "python"),
            _kv("telemetry.sdk.version", "string", "1.45.2"),
        ],
    }


def _tool_span(trace_id: str, span_id: str, tool: str, start: int, decision: str) -> dict[str, Any]:
    return {
        "traceID": trace_id,
        "spanID": span_id,
        "flags": 1,
        "operationName": f"execute_tool {tool}",
        "references": [],
        "startTime": start,
        "duration": 2_500,
        "tags": [
            _kv("span.kind", "string", "internal"),
            _kv("otel.scope.name", "string", "agent_guardrails"),
            _kv("gen_ai.operation.name", "string", "execute_tool"),
            _kv("gen_ai.tool.name", "string", tool),
            _kv("gen_ai.tool.type", "string", "function"),
            _kv("gen_ai.conversation.id", "string", "thread-1"),
            _kv("agent_guardrails.decision", "string", decision),
            _kv("agent_guardrails.level", "int64", 2),
            _kv("agent_guardrails.cost.amount", "float64", 12.5),
            _kv("agent_guardrails.reasons", "string", '["budget_exceeded"]'),
            _kv("agent_guardrails.replay", "bool", False),
        ],
        "logs": [],
        "processID": "p1",
        "warnings": None,
    }


def valid_file() -> Doc:
    """Two traces: an approval asked (with a child span) and a denial; the resumed call in a
    second trace, linked back with FOLLOWS_FROM. Every value type appears once."""
    ask = _tool_span(TRACE_A, ASK, "send_email", T0, "require_approval")
    ask["logs"] = [
        {
            "timestamp": T0 + 2_000,
            "fields": [
                _kv("event", "string", "agent_guardrails.approval.requested"),
                _kv("agent_guardrails.approval.expires_at", "string", "2025-01-02T00:00:00Z"),
            ],
        }
    ]
    body = {
        **_tool_span(TRACE_A, BODY, "send_email", T0 + 100, "allow"),
        "operationName": "render template",
        "references": [{"refType": "CHILD_OF", "traceID": TRACE_A, "spanID": ASK}],
        "tags": [
            _kv("big.counter", "int64", str(2**60)),
            _kv("payload.digest", "binary", "AQID"),
        ],
        "duration": 300,
    }
    deny = _tool_span(TRACE_A, DENY, "reallocate_budget", T0 + 5_000, "deny")
    deny["tags"].append(_kv("error", "bool", True))
    deny["tags"].append(_kv("otel.status_code", "string", "ERROR"))
    resume = _tool_span(TRACE_B, RESUME, "send_email", T0 + 60_000_000, "allow")
    resume["references"] = [{"refType": "FOLLOWS_FROM", "traceID": TRACE_A, "spanID": ASK}]
    resume["logs"] = [
        {
            "timestamp": T0 + 60_000_000,
            "fields": [
                _kv("event", "string", "agent_guardrails.approval.resolved"),
                _kv("agent_guardrails.approval.decision", "string", "approve"),
            ],
        }
    ]
    return {
        "data": [
            {
                "traceID": TRACE_A,
                "spans": [ask, body, deny],
                "processes": {"p1": _process()},
                "warnings": None,
            },
            {"traceID": TRACE_B, "spans": [resume], "processes": {"p1": _process()}},
        ],
        "total": 0,
        "limit": 0,
        "offset": 0,
        "errors": None,
    }


def _span(doc: Doc, trace: int, span: int) -> dict[str, Any]:
    result: dict[str, Any] = doc["data"][trace]["spans"][span]
    return result


def _set(trace: int, span: int, field: str, value: object) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        _span(doc, trace, span)[field] = value

    return mutate


def _set_tag(trace: int, span: int, tag: int, **changes: object) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        _span(doc, trace, span)["tags"][tag].update(changes)

    return mutate


def _set_ref(trace: int, span: int, refs: list[dict[str, str]]) -> Callable[[Doc], None]:
    return _set(trace, span, "references", refs)


def _del(trace: int, span: int, field: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        del _span(doc, trace, span)[field]

    return mutate


def _log_time(value: object) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        _span(doc, 0, 0)["logs"][0]["timestamp"] = value

    return mutate


def _cycle(doc: Doc) -> None:
    # ASK (root) -> BODY (CHILD_OF ASK): make ASK a child of BODY as well.
    _span(doc, 0, 0)["references"] = [{"refType": "CHILD_OF", "traceID": TRACE_A, "spanID": BODY}]


def _duplicate_trace(doc: Doc) -> None:
    doc["data"][1]["traceID"] = TRACE_A
    _span(doc, 1, 0)["traceID"] = TRACE_A


def _drop_process(doc: Doc) -> None:
    doc["data"][0]["processes"] = {"p2": _process()}


def _no_service(doc: Doc) -> None:
    del doc["data"][0]["processes"]["p1"]["serviceName"]


def _ref(kind: str, trace: str, span: str) -> dict[str, str]:
    return {"refType": kind, "traceID": trace, "spanID": span}


CHILD = _ref("CHILD_OF", TRACE_A, ASK)
LINK = _ref("FOLLOWS_FROM", TRACE_A, BODY)

BROKEN: list[Any] = [
    # --- envelope and structure (schema)
    pytest.param(lambda d: d.pop("data"), r"'data' is a required property", id="no-data"),
    pytest.param(lambda d: d.update(data=[]), r"data: \[\] should be non-empty", id="empty-data"),
    pytest.param(
        lambda d: d.update(errors=[{"msg": "trace not found"}]),
        r"errors: .* is not valid",
        id="api-errors",
    ),
    pytest.param(
        _set(0, 0, "traceId", TRACE_A), r"Additional properties .*'traceId'", id="field-typo"
    ),
    pytest.param(_del(0, 0, "logs"), r"'logs' is a required property", id="no-logs"),
    pytest.param(_set(0, 0, "tags", None), r"tags: None is not of type 'array'", id="null-tags"),
    pytest.param(
        _set(0, 0, "operationName", ""), r"operationName: '' should be non-empty", id="no-op"
    ),
    pytest.param(_no_service, r"'serviceName' is a required property", id="no-service-name"),
    pytest.param(
        _set_tag(0, 0, 0, type="str"), r"tags\[0\]\.type: 'str' is not one of", id="unknown-type"
    ),
    pytest.param(
        lambda d: _span(d, 0, 0)["tags"][0].pop("type"),
        r"'type' is a required property",
        id="no-tag-type",
    ),
    pytest.param(
        _set_tag(0, 0, 0, value=["a"]), r"\['a'\] is not of type 'string', 'boolean'", id="array"
    ),
    # --- ids
    pytest.param(
        lambda d: d["data"][0].update(traceID=TRACE_A[:20]),
        r"data\[0\] \(trace 4bf92f3577b34da6a3ce\)\.traceID: .* does not match",
        id="trace-id-length",
    ),
    pytest.param(
        _set(0, 0, "spanID", ASK[:15]),
        r"spanID: '00f067aa0ba902b' does not match",
        id="span-id-length",
    ),
    pytest.param(
        _set(0, 0, "spanID", ASK.upper()),
        r"spanID: '00F067AA0BA902B7' does not match",
        id="uppercase",
    ),
    pytest.param(_set(0, 0, "spanID", "0" * 16), r"all-zero span id", id="zero-span-id"),
    pytest.param(
        _set(0, 0, "traceID", TRACE_B),
        r"spans\[0\] .*traceID: 0af7.* is not the trace's traceID",
        id="span-trace-id",
    ),
    pytest.param(
        _set(0, 2, "spanID", ASK), r"spans\[2\] .*spanID: duplicate of spans\[0\]", id="dup-span-id"
    ),
    pytest.param(_duplicate_trace, r"data\[1\] .*traceID: duplicate trace id", id="dup-trace-id"),
    # --- processes
    pytest.param(
        _drop_process,
        r"processID: 'p1' is not in the trace's processes \['p2'\]",
        id="missing-process",
    ),
    pytest.param(
        lambda d: d["data"][0].update(processes={}),
        r"processes: \{\} should be non-empty",
        id="no-processes",
    ),
    # --- tag types
    pytest.param(
        _set_tag(0, 0, 0, value=7),
        r"tags\[0\] \('span.kind'\)\.value: type 'string' needs",
        id="string-int",
    ),
    pytest.param(
        _set_tag(0, 0, 10, value="false"),
        r"type 'bool' needs true/false, got 'false'",
        id="bool-str",
    ),
    pytest.param(
        _set_tag(0, 0, 7, value=2.5), r"type 'int64' needs an integer, got 2.5", id="int-float"
    ),
    pytest.param(
        _set_tag(0, 0, 7, value=True), r"type 'int64' needs an integer, got True", id="int-bool"
    ),
    pytest.param(
        _set_tag(0, 0, 7, value=2**60),
        r"Jaeger writes such int64 values as decimal strings",
        id="int-unsafe",
    ),
    pytest.param(
        _set_tag(0, 0, 7, value="2"),
        r"within ±\(2\*\*53 - 1\) is a JSON number",
        id="int-small-str",
    ),
    pytest.param(_set_tag(0, 0, 7, value=str(2**64)), r"does not fit in int64", id="int-overflow"),
    pytest.param(
        _set_tag(0, 0, 8, value="12.5"), r"type 'float64' needs a JSON number", id="float-str"
    ),
    pytest.param(_set_tag(0, 0, 8, value=float("nan")), r"not strict JSON", id="float-nan"),
    pytest.param(
        _set_tag(0, 1, 1, value="not base64!"), r"type 'binary' needs standard base64", id="binary"
    ),
    pytest.param(
        _set_tag(0, 0, 1, key="span.kind"),
        r"tags\[1\] \('span.kind'\)\.key: duplicate of \[0\]",
        id="dup-tag",
    ),
    # --- times
    pytest.param(
        _set(0, 0, "startTime", T0 // 1000),
        r"startTime: \d+ looks like milliseconds",
        id="start-ms",
    ),
    pytest.param(
        _set(0, 0, "startTime", T0 * 1000), r"startTime: \d+ looks like nanoseconds", id="start-ns"
    ),
    pytest.param(_set(0, 0, "startTime", T0 // 1_000_000), r"looks like seconds", id="start-s"),
    pytest.param(
        _set(0, 0, "startTime", 0), r"startTime: 0 is less than the minimum of 1", id="start-zero"
    ),
    pytest.param(
        _set(0, 0, "startTime", float(T0)),
        r"startTime: .* must be an integer number",
        id="start-float",
    ),
    pytest.param(
        _set(0, 0, "duration", -1), r"duration: -1 is less than the minimum of 0", id="negative"
    ),
    pytest.param(_set(0, 0, "duration", 10**18), r"duration: .* ends after 2100", id="duration-ns"),
    pytest.param(
        _log_time((T0 + 2_000) // 1000),
        r"logs\[0\]\.timestamp: \d+ looks like milliseconds",
        id="log-ms",
    ),
    pytest.param(
        _log_time(T0 + 2_501), r"logs\[0\]\.timestamp: .* outside its span", id="log-after-end"
    ),
    pytest.param(_log_time(T0 - 1), r"outside its span", id="log-before-start"),
    # --- references
    pytest.param(
        _set_ref(0, 2, [_ref("PARENT", TRACE_A, ASK)]), r"'PARENT' is not one of", id="ref-type"
    ),
    pytest.param(
        _set_ref(0, 2, [{"refType": "CHILD_OF", "spanID": ASK}]),
        r"'traceID' is a required property",
        id="ref-no-trace",
    ),
    pytest.param(
        _set_ref(0, 2, [LINK, CHILD]),
        r"references\[1\]: the CHILD_OF \(parent\) reference must come first",
        id="parent-not-first",
    ),
    pytest.param(
        _set_ref(0, 2, [CHILD, _ref("CHILD_OF", TRACE_A, BODY)]),
        r"2 CHILD_OF references",
        id="two-parents",
    ),
    pytest.param(
        _set_ref(1, 0, [CHILD]),
        r"CHILD_OF parent must be in the span's own trace",
        id="parent-other-trace",
    ),
    pytest.param(
        _set_ref(0, 2, [_ref("CHILD_OF", TRACE_A, "1" * 16)]),
        r"no span 1111111111111111 in trace",
        id="dangling",
    ),
    pytest.param(
        _set_ref(0, 2, [_ref("FOLLOWS_FROM", TRACE_A, DENY)]), r"cannot reference itself", id="self"
    ),
    pytest.param(_cycle, r"spans .* -> .* reference each other in a cycle", id="cycle"),
]


def test_valid_file_passes() -> None:
    validate_jaeger_trace_file(valid_file())


def test_valid_file_passes_after_a_json_round_trip() -> None:
    validate_jaeger_trace_file(json.loads(json.dumps(valid_file())))


def test_minimal_file_passes() -> None:
    """Only what is required: no envelope extras, no flags, no warnings, empty lists."""
    span = {
        "traceID": TRACE_B[16:],  # a 64-bit trace id: 16 hex digits
        "spanID": RESUME,
        "operationName": "x",
        "references": [],
        "startTime": T0,
        "duration": 0,
        "tags": [],
        "logs": [],
        "processID": "p1",
    }
    process = {"serviceName": "svc", "tags": []}
    validate_jaeger_trace_file(
        {"data": [{"traceID": TRACE_B[16:], "spans": [span], "processes": {"p1": process}}]}
    )


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(JAEGER_TRACE_FILE_SCHEMA)


@pytest.mark.parametrize(("mutate", "message"), BROKEN)
def test_each_rule_rejects_a_broken_variant(mutate: Callable[[Doc], object], message: str) -> None:
    doc = valid_file()
    mutate(doc)
    with pytest.raises(AssertionError, match=message):
        validate_jaeger_trace_file(doc)


def test_messages_name_trace_span_and_field() -> None:
    doc = valid_file()
    _set_tag(0, 0, 6, value=3)(doc)
    with pytest.raises(AssertionError) as info:
        validate_jaeger_trace_file(doc)
    assert (
        f"data[0] (trace {TRACE_A}).spans[0] (span {ASK} 'execute_tool send_email')"
        ".tags[6] ('agent_guardrails.decision').value: type 'string' needs a JSON string"
    ) in str(info.value)


def test_schema_messages_name_trace_and_span_too() -> None:
    doc = valid_file()
    _set(0, 2, "duration", "5")(doc)
    with pytest.raises(AssertionError) as info:
        validate_jaeger_trace_file(doc)
    assert (
        f"data[0] (trace {TRACE_A}).spans[2] (span {DENY} 'execute_tool reallocate_budget')"
        ".duration: '5' is not of type 'integer'"
    ) in str(info.value)


def test_every_problem_is_reported_not_just_the_first() -> None:
    doc = valid_file()
    _set_tag(0, 0, 7, value=1.5)(doc)
    _drop_process(doc)
    with pytest.raises(AssertionError) as info:
        validate_jaeger_trace_file(doc)
    text = str(info.value)
    assert "problem(s)" in text
    assert "type 'int64' needs an integer" in text
    assert "is not in the trace's processes" in text


def test_dangling_references_can_be_allowed() -> None:
    doc = valid_file()
    _set_ref(0, 2, [_ref("CHILD_OF", TRACE_A, "1" * 16)])(doc)
    validate_jaeger_trace_file(doc, allow_dangling_references=True)


def test_links_to_traces_outside_the_file_are_fine() -> None:
    doc = valid_file()
    _set_ref(1, 0, [_ref("FOLLOWS_FROM", "1" * 32, "2" * 16)])(doc)
    validate_jaeger_trace_file(doc)


def test_follows_from_alone_is_a_valid_parent_within_a_trace() -> None:
    """The UI nests a span under its first resolvable reference, FOLLOWS_FROM included."""
    doc = valid_file()
    _set_ref(0, 2, [_ref("FOLLOWS_FROM", TRACE_A, ASK)])(doc)
    validate_jaeger_trace_file(doc)


def test_large_int64_as_decimal_string_is_what_jaeger_writes() -> None:
    doc = valid_file()
    _set_tag(0, 0, 7, value=str(-(2**63)))(doc)
    validate_jaeger_trace_file(doc)


def test_non_json_objects_are_rejected() -> None:
    doc = valid_file()
    _set_tag(0, 0, 0, value={1, 2})(doc)
    with pytest.raises(AssertionError, match="not JSON-serialisable"):
        validate_jaeger_trace_file(doc)


def test_a_bare_list_is_not_the_portable_shape() -> None:
    doc = valid_file()
    with pytest.raises(AssertionError, match="is not of type 'object'"):
        validate_jaeger_trace_file(doc["data"])


def test_valid_file_is_not_mutated() -> None:
    doc = valid_file()
    before = copy.deepcopy(doc)
    validate_jaeger_trace_file(doc)
    assert doc == before
