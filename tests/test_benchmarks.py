"""Every benchmark runs to its verdict (``--quick``: a smoke run, too short for figures).

The goals are judged by the benchmarks' full runs (``benchmarks/README.md``), never here:
these runs only prove that each still measures what its docstring says and prints the
line its figures are read from, so a change to the library cannot leave a benchmark broken
until the next time someone needs its figures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

# benchmark -> text its verdict line always holds, met or not
VERDICTS = {
    "engine": "@guarded adds",
    "store": "aiosqlite, same SQL",
    "agent_overhead": "the bare agent measured twice differs by",
    "concurrency": "loop lag while another process holds the SQLite write lock",
    "telemetry": "tracing (batch processor) adds",
    "gates": "per million calls and million outcomes",
    "retention": "chain intact",
    "long_log": "the most any operator command holds",
}


def test_every_benchmark_has_a_smoke_run() -> None:
    assert {p.stem for p in BENCHMARKS.glob("*.py")} == set(VERDICTS)


@pytest.mark.parametrize("name", sorted(VERDICTS))
def test_benchmark_runs_to_its_verdict(name: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # whatever a benchmark writes lands here
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert VERDICTS[name] in done.stdout, done.stdout[-3000:]
