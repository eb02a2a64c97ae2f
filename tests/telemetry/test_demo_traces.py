"""The demo's trace file: Jaeger's format, every call, links, and the terminal tree."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_guardrails.ops.cli import main
from agent_guardrails.telemetry import attributes as A
from tests.telemetry.jaeger_ui_format import validate_jaeger_trace_file

EMAIL_LIKE = "c-101"  # a contact id the demo's tools receive as arguments


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("demo")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        mp.delenv(name, raising=False)
    out = io.StringIO()
    try:
        assert main(["demo"], out) == 0
        yield root / "agent-guardrails-trace.json", out.getvalue()
    finally:
        mp.undo()


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span["tags"]}


def test_the_demo_writes_a_trace_file_jaegers_ui_opens(demo_run: tuple[Path, str]) -> None:
    path, text = demo_run
    assert f"Traces: {path.name}" in text
    document = json.loads(path.read_text())
    validate_jaeger_trace_file(document)
    traces = document["data"]
    assert len(traces) == 5  # one per phase
    names = set()
    for trace in traces:
        (root,) = [s for s in trace["spans"] if not s["references"]]
        assert root["operationName"].startswith("invoke_agent campaign-bot · ")
        names.add(root["operationName"])
        assert trace["processes"][root["processID"]]["serviceName"] == "agent-guardrails-demo"
        for span in trace["spans"]:
            if span is not root:
                assert span["references"][0] == {
                    "refType": "CHILD_OF",
                    "traceID": trace["traceID"],
                    "spanID": root["spanID"],
                }
    assert len(names) == 5  # each trace's title says which phase it is


def test_every_decision_kind_and_each_approval_link_is_in_the_file(
    demo_run: tuple[Path, str],
) -> None:
    path, _ = demo_run
    spans = [s for t in json.loads(path.read_text())["data"] for s in t["spans"]]
    calls = [s for s in spans if s["operationName"].startswith("execute_tool ")]
    decisions = {tags(s)[A.DECISION] for s in calls}
    assert decisions == {"allow", "simulate", "require_approval", "deny", "halt"}
    by_id = {s["spanID"]: s for s in spans}
    resumed = [s for s in calls if any(r["refType"] == "FOLLOWS_FROM" for r in s["references"])]
    assert len(resumed) == 4  # send_email, publish_page, reallocate_budget, launch_campaign
    for span in resumed:
        (ref,) = [r for r in span["references"] if r["refType"] == "FOLLOWS_FROM"]
        asking = by_id[ref["spanID"]]
        assert asking["operationName"] == span["operationName"]
        assert [f["value"] for f in asking["logs"][-1]["fields"] if f["key"] == "event"] == [
            A.EVENT_APPROVAL_REQUESTED
        ]
    halted = [s for s in calls if tags(s)[A.DECISION] == "halt"]
    assert tags(halted[0])["error"] is True
    assert tags(halted[0])[A.ERROR_TYPE] == "kill_switch"
    assert EMAIL_LIKE not in path.read_text()  # arguments are not recorded by default


def test_traces_command_prints_the_run_as_a_tree(demo_run: tuple[Path, str]) -> None:
    path, _ = demo_run
    out = io.StringIO()
    assert main(["traces", str(path)], out) == 0
    text = out.getvalue()
    assert text.count("trace ") >= 5
    assert "  invoke_agent campaign-bot · L1 Execute (newsletter)" in text
    assert "    execute_tool send_email" in text
    assert "approve by ana" in text
    assert "* approval.requested" in text
    assert "follows " in text
    assert "ERROR kill_switch" in text

    first = json.loads(path.read_text())["data"][1]["traceID"]
    out = io.StringIO()
    assert main(["traces", str(path), "--trace", first[:8]], out) == 0
    assert out.getvalue().count("\ntrace ") == 0
    assert out.getvalue().startswith(f"trace {first}")


def test_traces_command_explains_bad_input(tmp_path: Path) -> None:
    out = io.StringIO()
    assert main(["traces", str(tmp_path / "missing.json")], out) == 2
    assert "cannot read" in out.getvalue()
    bad = tmp_path / "bad.json"
    bad.write_text('{"spans": 3}')
    out = io.StringIO()
    assert main(["traces", str(bad)], out) == 2
    assert "not a Jaeger trace file" in out.getvalue()
    bad.write_text("{")
    out = io.StringIO()
    assert main(["traces", str(bad)], out) == 2
    assert "is not JSON" in out.getvalue()
    empty = tmp_path / "empty.json"
    empty.write_text('{"data": []}')
    out = io.StringIO()
    assert main(["traces", str(empty), "--trace", "abc"], out) == 1
