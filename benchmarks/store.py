"""Store throughput: reserve-with-audit per second, next to a plain UPDATE on the same database.

    python benchmarks/store.py [--quick] [--pg postgresql://...] [--seconds S]
                               [--only memory|sqlite|postgres ...] [--repeat N]

One operation is what the guard does for a call that goes ahead: ``reserve`` one budget
charge with its hash-chained ``decision`` audit record, in one transaction. Measured for
``memory://`` (one process), SQLite (one process; 8 processes on one hot budget) and
PostgreSQL when ``AGENT_GUARDRAILS_TEST_POSTGRES`` or ``--pg`` names a server (one process;
8 processes on one hot budget; 8 processes on 8 budgets). Each line shows, measured in the
same run on the same database, a plain autocommit ``UPDATE t SET x = x + 1`` from as many
processes on as many rows, and the ratio between the two.

Goals (DESIGN §6, issue 3): SQLite >= 8,000/s in one process; PostgreSQL, with durable
commits, >= 2,000/s across 8 processes on one hot budget and >= 4,000/s across 8 budgets.
PostgreSQL puts the audit record in an outbox in the reservation's transaction and chains
it in batches (see ``store/postgres.py``): the chaining the workers do as they go is part of
what is measured. At the end one audit read chains what is left and ``verify_audit`` checks
the whole log. A plain UPDATE on one row is the ceiling for one hot budget: each
transaction holds the row's lock until its commit is flushed.

Worker processes are started once (``spawn``) and reused for every measurement; each opens
its own store. PostgreSQL runs in a throw-away schema, dropped at the end. ``--only`` picks
backends; ``--repeat N`` measures each line N times (the machine is shared: look at the
spread, and at the load average printed with each line).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from agent_guardrails.engine.decision import Charge
from agent_guardrails.store import open_store
from agent_guardrails.store.base import AuditEvent

WORKERS = 8
GOALS = {
    ("sqlite", 1, 1): 8_000.0,
    ("postgres", WORKERS, 1): 2_000.0,
    ("postgres", WORKERS, WORKERS): 4_000.0,
}
DECISION: dict[str, Any] = {  # what a real decision record carries
    "decision": "allow",
    "reasons": [],
    "message": "allowed",
    "action": "email.send",
    "tool": "send_email",
    "level": 1,
    "level_name": "execute",
    "scope": {"agent": "mailer", "workflow": "newsletter", "region": "eu"},
    "pack": "marketing",
    "pack_version": "3",
    "cost": 0.002,
    "currency": "USD",
    "budget_left": 42.5,
    "exposure_left": 1.0,
    "validators": [{"name": "banned_terms", "passed": True, "message": ""}],
}


@dataclass(frozen=True)
class Job:
    """One measurement: ``what`` is ``"reserve"`` or ``"update"`` (the baseline)."""

    what: str
    backend: str
    url: str  # the store URL; for "update" the database to update in
    budgets: int
    seconds: float
    tag: str


# ---------------------------------------------------------------------------- the work


def _reserve_loop(job: Job, worker: int, barrier: Barrier | None) -> int:
    store = open_store(job.url)
    budget = worker % job.budgets
    charge = Charge(f"budget:bench-{budget}|USD@0", "budget", 0.002, 1e15, 2**62, "bench")
    prefix = f"{job.tag}-{worker}-{uuid.uuid4().hex[:8]}"
    for i in range(20):  # warm up: connections, prepared statements, caches
        key = f"{prefix}-warm-{i}"
        store.reserve(key, [charge], audit=AuditEvent("decision", DECISION, key, f"{key}:d"))
    if barrier is not None:
        barrier.wait()
    n = 0
    end = time.perf_counter() + job.seconds
    while time.perf_counter() < end:
        key = f"{prefix}-{n}"
        store.reserve(key, [charge], audit=AuditEvent("decision", DECISION, key, f"{key}:d"))
        n += 1
    store.close()
    return n


def _update_loop(job: Job, worker: int, barrier: Barrier | None) -> int:
    row = worker % job.budgets + 1
    run: Any
    if job.backend == "sqlite":
        db = sqlite3.connect(job.url, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")

        def run_sqlite() -> None:
            db.execute("UPDATE bench_baseline SET x = x + 1 WHERE id = ?", (row,))

        run, close = run_sqlite, db.close
    else:
        import psycopg

        conn = psycopg.connect(job.url, autocommit=True)
        table = f'"{_schema(job.tag)}".bench_baseline'

        def run_pg() -> None:
            conn.execute(f"UPDATE {table} SET x = x + 1 WHERE id = %s", (row,))

        run, close = run_pg, conn.close
    for _ in range(20):
        run()
    if barrier is not None:
        barrier.wait()
    n = 0
    end = time.perf_counter() + job.seconds
    while time.perf_counter() < end:
        run()
        n += 1
    close()
    return n


def _measure(job: Job, worker: int, barrier: Barrier | None) -> int:
    if job.what == "reserve":
        return _reserve_loop(job, worker, barrier)
    return _update_loop(job, worker, barrier)


def _worker(index: int, jobs: Any, results: Any, barrier: Barrier) -> None:
    results.put((index, 0, "ready"))  # imports are done: measurements will not compete
    while True:
        job = jobs.get()
        if job is None:
            return
        try:
            results.put((index, _measure(job, index, barrier), ""))
        except BaseException as exc:  # report, keep serving
            barrier.abort()
            results.put((index, 0, f"{type(exc).__name__}: {exc}"))


class Pool:
    """``WORKERS`` spawned processes that run the same job at once, started together."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.barrier = ctx.Barrier(WORKERS)
        self.results: Any = ctx.Queue()
        self.queues: list[Any] = [ctx.Queue() for _ in range(WORKERS)]
        self.procs = [
            ctx.Process(target=_worker, args=(i, q, self.results, self.barrier), daemon=True)
            for i, q in enumerate(self.queues)
        ]
        for p in self.procs:
            p.start()
        for _ in self.procs:
            self.results.get(timeout=120)

    def run(self, job: Job) -> float:
        self.barrier.reset()
        for q in self.queues:
            q.put(job)
        counts = [self.results.get(timeout=job.seconds + 180) for _ in self.queues]
        errors = [e for _, _, e in counts if e]
        if errors:
            raise RuntimeError(f"{job.backend} {job.what}: {errors[0]}")
        return float(sum(n for _, n, _ in counts)) / job.seconds

    def close(self) -> None:
        for q in self.queues:
            q.put(None)
        for p in self.procs:
            p.join(timeout=10)


# ---------------------------------------------------------------------------- set-up


def _schema(tag: str) -> str:
    return f"ag_bench_{tag}"


def _with_schema(url: str, schema: str) -> str:
    return url + ("&" if "?" in url else "?") + f"schema={schema}"


def _prepare_sqlite(path: Path, rows: int) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE IF NOT EXISTS bench_baseline (id INTEGER PRIMARY KEY, x INTEGER)")
    for i in range(1, rows + 1):
        db.execute("INSERT OR IGNORE INTO bench_baseline VALUES (?, 0)", (i,))
    db.close()


def _prepare_pg(url: str, tag: str, rows: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{_schema(tag)}"')
        table = f'"{_schema(tag)}".bench_baseline'
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id int PRIMARY KEY, x bigint)")
        for i in range(1, rows + 1):
            conn.execute(f"INSERT INTO {table} VALUES (%s, 0) ON CONFLICT DO NOTHING", (i,))


def _verify(store_url: str) -> str:
    """Chain what is left (one audit read), then verify the whole log."""
    store = open_store(store_url)
    try:
        start = time.perf_counter()
        store.audit_records(after=2**62)
        chained = time.perf_counter() - start
        result = store.verify_audit()
    finally:
        store.close()
    state = "verifies" if result.ok else f"DOES NOT VERIFY ({result.problem})"
    return f"{result.checked} records, {state}; the last ones chained in {chained * 1000:.0f} ms"


def _load() -> str:
    return f"load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""


def _drop_pg(url: str, tag: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{_schema(tag)}" CASCADE')


# ---------------------------------------------------------------------------- main


@dataclass(frozen=True)
class Row:
    backend: str
    scenario: str
    ops: float
    baseline: float | None
    goal: float | None
    note: str = ""


def _run(job: Job, processes: int, pool: Pool | None) -> float:
    if processes == 1:
        return _measure(job, 0, None) / job.seconds
    assert pool is not None
    return pool.run(job)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (about 30 s in all)")
    parser.add_argument("--seconds", type=float, help="seconds per measurement")
    parser.add_argument("--pg", help="PostgreSQL URL (default: $AGENT_GUARDRAILS_TEST_POSTGRES)")
    parser.add_argument(
        "--only",
        action="append",
        choices=["memory", "sqlite", "postgres"],
        help="measure only this backend (repeatable)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="measure each line N times")
    args = parser.parse_args(argv)
    seconds = args.seconds or (1.5 if args.quick else 5.0)
    only = set(args.only or ["memory", "sqlite", "postgres"])
    repeat = max(1, args.repeat)
    pg = args.pg or os.environ.get("AGENT_GUARDRAILS_TEST_POSTGRES")
    tag = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"

    rows: list[Row] = []
    verdict = ""
    pool = Pool()
    tmp = tempfile.TemporaryDirectory(prefix="ag-bench-")
    try:
        # memory://: one process (it is not shared between processes)
        for _ in range(repeat if "memory" in only else 0):
            ops = _run(Job("reserve", "memory", "memory://", 1, seconds, tag), 1, None)
            rows.append(Row("memory", "1 process", ops, None, None, _load()))

        # SQLite
        if "sqlite" in only:
            db = Path(tmp.name) / "bench.db"
            _prepare_sqlite(db, WORKERS)
            url = f"sqlite:///{db}"
            for processes in (1, WORKERS):
                for _ in range(repeat):
                    ops = _run(Job("reserve", "sqlite", url, 1, seconds, tag), processes, pool)
                    base = _run(Job("update", "sqlite", str(db), 1, seconds, tag), processes, pool)
                    label = "1 process" if processes == 1 else f"{processes} processes, 1 budget"
                    goal = GOALS.get(("sqlite", processes, 1))
                    rows.append(Row("sqlite", label, ops, base, goal, _load()))

        # PostgreSQL
        if pg and "postgres" in only:
            _prepare_pg(pg, tag, WORKERS)
            try:
                store_url = _with_schema(pg, _schema(tag))
                open_store(store_url).close()  # create the tables once, before the race
                for processes, budgets in ((1, 1), (WORKERS, 1), (WORKERS, WORKERS)):
                    for _ in range(repeat):
                        job = Job("reserve", "postgres", store_url, budgets, seconds, tag)
                        ops = _run(job, processes, pool)
                        base_job = Job("update", "postgres", pg, budgets, seconds, tag)
                        base = _run(base_job, processes, pool)
                        label = (
                            "1 process"
                            if processes == 1
                            else f"{processes} processes, {budgets} budget{'s' * (budgets > 1)}"
                        )
                        goal = GOALS.get(("postgres", processes, budgets))
                        rows.append(Row("postgres", label, ops, base, goal, _load()))
                verdict = _verify(store_url)
            finally:
                _drop_pg(pg, tag)
        elif "postgres" in only:
            print("PostgreSQL skipped: set AGENT_GUARDRAILS_TEST_POSTGRES or pass --pg URL\n")
    finally:
        pool.close()
        tmp.cleanup()

    print(f"reserve + hash-chained audit record, {seconds:g} s per measurement\n")
    header = f"{'store':<9} {'scenario':<26} {'ops/s':>9} {'UPDATE/s':>9} {'ratio':>6}  goal"
    print(header)
    print("-" * len(header))
    for r in rows:
        base_text = f"{r.baseline:9.0f}" if r.baseline else f"{'-':>9}"
        ratio_text = f"{r.ops / r.baseline:6.2f}" if r.baseline else f"{'-':>6}"
        goal_text = ""
        if r.goal is not None:
            goal_text = f">= {r.goal:,.0f}/s {'met' if r.ops >= r.goal else 'MISSED'}"
        line = f"{r.backend:<9} {r.scenario:<26} {r.ops:9.0f} {base_text} {ratio_text}  {goal_text}"
        print(f"{line}  ({r.note})" if r.note else line)
    if verdict:
        print(f"\npostgres audit log after the runs: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
