"""Operators' commands on a long audit log: the memory they hold, against the log held whole.

    python benchmarks/long_log.py [--calls N] [--quick]

A SQLite store is given ``--calls`` calls (default 200,000: 600,000 audit records), each
written through the store API as the guard writes a call that goes ahead (``reserve`` with
its ``decision`` and ``execution.started`` records, ``finish`` with ``execution.finished``),
over the week before the run. Then, each measured with ``tracemalloc`` (the peak of Python
memory it allocated) and its wall time:

- the baseline: ``store.audit_records()``, the log read into one list, held;
- ``verify_audit()`` (``agent-guardrails audit verify``);
- the approvals inbox (``ops.approvals.pending``);
- the weekly scorecard of the week (``ops.weekly.weekly_scorecard``);
- ``agent-guardrails audit export`` to ``/dev/null``, and ``audit tail -n 20``.

Results are each command's peak as a share of the baseline's, and its time as a ratio to
the baseline's. ``tracemalloc`` slows Python down (about 2x), alike for every row.

``--quick``: 3,000 calls.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent_guardrails.engine.decision import Charge
from agent_guardrails.ops.approvals import pending
from agent_guardrails.ops.cli import main as cli
from agent_guardrails.ops.operations import apply_pack
from agent_guardrails.ops.weekly import weekly_scorecard
from agent_guardrails.store import open_store
from agent_guardrails.store.base import AuditEvent, Store

PACK = """
name: long-log
version: 1
defaults: {level: execute}
actions:
  email.send: {risk: low, cost: 0.001}
levels:
  - {scope: {workflow: newsletter}, level: execute}
gates:
  - {from: execute, to: optimize, min_samples: 50, min_success_rate: 0.9}
"""
CHARGE = Charge("budget:long-log@0", "budget", 0.001, 1e12, 2**62, "long-log")
DECISION: dict[str, Any] = {  # what a real decision record carries
    "decision": "allow",
    "reasons": ["allowed"],
    "message": "allowed: email.send (0.00 USD)",
    "action": "email.send",
    "tool": "send_email",
    "level": 1,
    "level_name": "execute",
    "scope": {"workflow": "newsletter"},
    "pack": "long-log",
    "pack_version": "1",
    "cost": 0.001,
    "currency": "USD",
    "budget_left": None,
    "exposure_left": None,
    "validators": [],
    "approval_roles": [],
}


def fill(store: Store, calls: int, start: float) -> None:
    step = 6 * 86_400 / max(calls, 1)  # spread over six days of the week
    for i in range(calls):
        key = f"thread-{i // 20}|tools|call-{i}"
        now = start + i * step
        store.reserve(
            key,
            [CHARGE],
            audit=AuditEvent("decision", {**DECISION, "call_key": key}, key),
            now=now,
            start=AuditEvent("execution.started", {"tool": "send_email", "args": {"n": i}}, key),
        )
        store.finish(key, ok=True, audit=AuditEvent("execution.finished", {"ok": True}, key))


def measured(what: Callable[[], Any]) -> tuple[float, float]:
    """(peak MB of Python memory, seconds) of ``what()``, whose result is held until the end."""
    tracemalloc.start()
    began = time.perf_counter()
    result = what()
    seconds = time.perf_counter() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return peak / 1e6, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    calls = 3_000 if args.quick else args.calls
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'long.db'}"
        store = open_store(url)
        apply_pack(store, PACK, by="bench")
        today = datetime.now(UTC).date()
        monday = datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp() - (
            today.weekday() * 86_400
        )
        began = time.perf_counter()
        fill(store, calls, monday - 7 * 86_400)
        records = store.verify_audit().checked
        print(
            f"{calls:,} calls, {records:,} audit records written in "
            f"{time.perf_counter() - began:.1f} s",
            flush=True,
        )
        week = datetime.fromtimestamp(monday - 7 * 86_400, UTC).date()
        devnull = open(os.devnull, "w")  # noqa: SIM115 - closed below

        rows: list[tuple[str, Callable[[], Any]]] = [
            ("the log held whole (baseline)", lambda: store.audit_records()),
            ("audit verify", store.verify_audit),
            ("approvals inbox", lambda: pending(store)),
            ("weekly scorecard", lambda: weekly_scorecard(store, week=week)),
            ("audit export", lambda: cli(["audit", "export", "--store", url], devnull)),
            (
                "audit tail -n 20",
                lambda: cli(["audit", "tail", "-n", "20", "--store", url], io.StringIO()),
            ),
        ]
        results = [(name, *measured(what)) for name, what in rows]
        devnull.close()
        store.close()
    base_mb, base_s = results[0][1], results[0][2]
    header = ("peak MB", "of baseline", "seconds", "x baseline")
    print(f"\n{'command':32s} {header[0]:>9s} {header[1]:>12s} {header[2]:>9s} {header[3]:>11s}")
    for name, mb, seconds in results:
        print(f"{name:32s} {mb:9.1f} {mb / base_mb:11.1%} {seconds:9.2f} {seconds / base_s:10.2f}x")
    worst = max(results[1:], key=lambda r: r[1])
    print(
        f"\nthe log held whole takes {base_mb:.0f} MB; the most any operator command holds: "
        f"{worst[1]:.1f} MB ({worst[1] / base_mb:.1%} of it, {worst[0]})"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
