"""Over the wire: the demo agent exports to a real OTLP collector (rotel) over HTTP and gRPC.

The demo runs in its own process, configured only by the standard ``OTEL_*`` variables,
exactly as a user points it at Jaeger; the test reads back from the collector's output that
every guarded call arrived with its attributes, events, links and status.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_guardrails.telemetry import attributes as A
from tests.telemetry.rotel_collector import ReceivedSpan, RotelCollector, start_rotel

DECISION_KINDS = {"allow", "simulate", "require_approval", "deny", "halt"}
PHASES = 5
DEMO = "from agent_guardrails.ops.cli import main; raise SystemExit(main())"


OUTCOMES = {
    "ran", "approved", "edited", "simulated", "denied", "halted", "rejected",
    "responded", "in_doubt", "pending", "replayed",
}  # fmt: skip


@pytest.fixture
def rotel(tmp_path: Path) -> Iterator[RotelCollector]:
    with start_rotel(tmp_path) as collector:
        yield collector


def run_demo(tmp_path: Path, env: dict[str, str]) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from agent_guardrails.ops.cli import main; raise SystemExit(main())",
            "demo",
        ],
        cwd=tmp_path,
        env={**base, "OTEL_BSP_SCHEDULE_DELAY": "100", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def calls_arrived(spans: list[ReceivedSpan]) -> bool:
    roots = [s for s in spans if s.name.startswith("invoke_agent campaign-bot · ")]
    return len(roots) == PHASES


@pytest.mark.parametrize(
    ("protocol", "endpoint"),
    [("http/protobuf", "http_endpoint"), ("grpc", "grpc_endpoint")],
    ids=["otlp-http", "otlp-grpc"],
)
def test_demo_spans_arrive_at_a_real_collector(
    rotel: RotelCollector, tmp_path: Path, protocol: str, endpoint: str
) -> None:
    url = getattr(rotel, endpoint)
    out = run_demo(
        tmp_path,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol},
    )
    assert f"Traces: sent to otlp {protocol} {url}" in out
    assert not (tmp_path / "agent-guardrails-trace.json").exists()

    spans = rotel.spans(wait_for=calls_arrived, timeout=20)
    calls = [s for s in spans if s.name.startswith("execute_tool ")]
    ids = {s.span_id for s in spans}
    assert {s.service_name for s in spans} == {"agent-guardrails-demo"}
    assert {s.scope_name for s in calls} == {"agent_guardrails"}
    assert {s.attributes[A.DECISION] for s in calls} == DECISION_KINDS
    for span in calls:
        a = span.attributes
        tool = span.name.removeprefix("execute_tool ")
        assert span.kind == "INTERNAL"
        assert span.parent_span_id in ids  # under the phase's invoke_agent span
        assert a[A.GEN_AI_OPERATION_NAME] == "execute_tool"
        assert a[A.GEN_AI_TOOL_NAME] == tool
        assert a[A.GEN_AI_TOOL_TYPE] == "function"
        assert str(a[A.GEN_AI_TOOL_CALL_ID])
        assert str(a[A.GEN_AI_CONVERSATION_ID]).startswith("demo-")
        assert a[A.GEN_AI_AGENT_NAME] == "campaign-bot"
        assert a[A.PACK_NAME] == "marketing-default"
        assert a[A.PACK_VERSION] == "2026.11.1"
        assert a[A.LEVEL] in (0, 1, 2, 3)
        assert isinstance(a[A.REASONS], str)
        assert a[A.REASONS]
        assert isinstance(a[A.COST_ESTIMATED], float)
        assert a[A.CALL_OUTCOME] in OUTCOMES
        assert str(a[A.EXPLANATION]).endswith(".")
        if A.COST_CHARGED in a:  # only calls that ran are charged
            assert a[A.CALL_OUTCOME] in ("ran", "approved", "edited")
        assert a[A.COST_CURRENCY] == "USD"
        assert str(a[A.ACTION])
        assert str(a[A.SCOPE])
        assert a[A.RISK] in ("low", "medium", "high")
        assert isinstance(a[A.DECISION_LATENCY], float)
        if a[A.DECISION] in ("deny", "halt"):
            assert span.status_code == "ERROR"
            assert a[A.ERROR_TYPE]
        assert "c-101" not in repr(span)  # arguments stay private by default

    resumed = [s for s in calls if s.links]
    assert len(resumed) == 4
    for span in resumed:
        (link,) = span.links
        assert link.span_id in ids
        assert [e.name for e in span.events] == [A.EVENT_APPROVAL_RESOLVED]
        assert span.attributes[A.APPROVER]
    requested = [e for s in calls for e in s.events if e.name == A.EVENT_APPROVAL_REQUESTED]
    assert len(requested) == 4
    (halt,) = [s for s in calls if s.attributes[A.DECISION] == "halt"]
    assert [e.name for e in halt.events] == [A.EVENT_KILL_SWITCH]
