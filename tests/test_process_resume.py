"""Interrupt in one process, resume in another; a worker killed mid-call leaves the call in
doubt, and the next run asks a human instead of running the tool again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent_guardrails.ops.operations import status
from agent_guardrails.store import open_store

ROOT = Path(__file__).resolve().parents[1]


def step(
    phase: str, workdir: Path, interrupt_id: str | None = None, durability: str = ""
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "tests.agent_process.run", phase, str(workdir)]
    if interrupt_id:
        argv.append(interrupt_id)
    env = {**os.environ, "AG_TEST_DURABILITY": durability}
    return subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False, env=env
    )


def ok(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def spans(trace_file: Path) -> list[dict[str, Any]]:
    """The ``execute_tool`` spans of a process's Jaeger trace file."""
    traces = json.loads(trace_file.read_text())["data"]
    return [s for t in traces for s in t["spans"] if s["operationName"].startswith("execute_tool")]


def events(span: dict[str, Any]) -> list[str]:
    return [f["value"] for log in span["logs"] for f in log["fields"] if f["key"] == "event"]


def runs(workdir: Path) -> list[str]:
    path = workdir / "runs.txt"
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
def test_interrupt_in_one_process_resume_in_another(tmp_path: Path) -> None:
    first = ok(step("start", tmp_path))
    (pending,) = first["interrupts"]
    assert pending["reasons"] == ["approval_required:sensitive"]
    assert runs(tmp_path) == []

    done = ok(step("resume", tmp_path, pending["id"]))
    assert done["interrupts"] == []
    assert done["last"] == "done"
    assert runs(tmp_path) == ["c1"]
    store = open_store(f"sqlite:///{tmp_path / 'guard.db'}")
    assert sum(store.counters("budget:").values()) == 5  # reserved once, across processes
    kinds = [r.kind for r in store.audit_records()]
    assert kinds.count("decision") == 1
    assert kinds.count("execution.finished") == 1
    assert store.verify_audit().ok

    # The resumed process's span links to the span the first process asked from.
    (asking,) = spans(tmp_path / "trace-start.json")
    (resumed,) = spans(tmp_path / "trace-resume.json")
    assert events(asking) == ["agent_guardrails.approval.requested"]
    assert events(resumed) == ["agent_guardrails.approval.resolved"]
    assert resumed["references"] == [
        {"refType": "FOLLOWS_FROM", "traceID": asking["traceID"], "spanID": asking["spanID"]}
    ]


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["sync", "exit"])
def test_a_worker_killed_mid_call_leaves_it_in_doubt_and_it_is_not_rerun(
    tmp_path: Path, durability: str
) -> None:
    """``sync``: the turn's decision was checkpointed before the tool ran, so the next run
    finds the call in doubt where it runs. ``exit``: nothing of the killed run was, so the
    next run decides the turn again and finds it in doubt there; either way one question,
    and one answer settles it."""
    (pending,) = ok(step("start", tmp_path))["interrupts"]
    crashed = step("crash", tmp_path, pending["id"], durability)
    assert crashed.returncode == -signal.SIGKILL
    assert runs(tmp_path) == ["c1"]

    store = open_store(f"sqlite:///{tmp_path / 'guard.db'}")
    doubt = status(store).in_doubt
    assert len(doubt) == 1
    assert store.verify_audit().ok
    assert "execution.started" in [r.kind for r in store.audit_records()]
    store.close()

    again = ok(step("continue", tmp_path, durability=durability))
    (question,) = again["interrupts"]
    assert question["reasons"] == ["in_doubt"]
    assert runs(tmp_path) == ["c1"]  # not re-run silently

    # One answer settles it, whether or not the checkpointer saved the pre-crash answer:
    # the slot log says which position holds the in-doubt question.
    done = ok(step("resume", tmp_path, question["id"], durability))
    assert done["interrupts"] == []
    assert runs(tmp_path) == ["c1", "c1"]  # re-run only because a human approved it
    store = open_store(f"sqlite:///{tmp_path / 'guard.db'}")
    assert status(store).in_doubt == []
    assert sum(store.counters("budget:").values()) == 5
    assert store.verify_audit().ok
    assert os.path.exists(tmp_path / "checkpoints.db")


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["guarded_tool_node", "plain"])
def test_three_approvals_in_one_tool_node_task_across_processes(
    tmp_path: Path, adapter: str
) -> None:
    """Each question is answered by a fresh process: the slot log lives in the SQLite store
    and the answers in the SqliteSaver checkpoint, and each answer reaches its own call."""
    verdicts = {"c1": "approve", "c2": "reject", "c3": "approve"}

    def run(*extra: str) -> Any:
        argv = [sys.executable, "-m", "tests.agent_process.tool_node_run", adapter, str(tmp_path)]
        proc = subprocess.run(
            [*argv, *extra], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )
        return ok(proc)

    out = run()
    asked = []
    while out["interrupts"]:
        (pending,) = out["interrupts"]
        asked.append(pending["to"])
        out = run(pending["id"], verdicts[pending["to"]])
    assert sorted(asked) == ["c1", "c2", "c3"]
    assert sorted(runs(tmp_path)) == ["c1", "c3"]
    assert out["replies"]["k-c1"] == "sent to c1"
    assert out["replies"]["k-c3"] == "sent to c3"
    assert json.loads(out["replies"]["k-c2"])["status"] == "rejected"
    store = open_store(f"sqlite:///{tmp_path / 'guard.db'}")
    assert sum(store.counters("budget:").values()) == 10
    assert [r.kind for r in store.audit_records()].count("approval.slot") == 3
    assert store.verify_audit().ok
