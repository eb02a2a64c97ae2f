"""Store throughput: reserve-with-audit per second, next to a plain UPDATE on the same database.

    python benchmarks/store.py [--quick] [--pg postgresql://...] [--seconds S]
                               [--only memory|sqlite|postgres|async ...] [--repeat N]

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

**The async path** (``--only async``; part of a full run): what one guarded call that goes
ahead costs the store, ``snapshot`` + ``reserve`` (decision and ``execution.started``
records, marked started in the same step) + ``finish`` (its record), awaited on one event
loop in one process: the latency of one call at a time, and calls/s with 200 coroutines at
once, with the loop's lag meanwhile (a ticker's p99). Each store's sync API in one thread is
the reference line. For SQLite it also measures, in the same run, the alternatives the
async bridge was chosen against (see ``store/sqlite.py``): the store's threads as one writer
and two readers, or as one pool of 4, instead of one store thread; and aiosqlite running the
same statements (one connection for writes behind an ``asyncio.Lock``, one for reads; each
statement one hand-off to its connection's thread; without the writers' lock file, which
favours it).
"""

from __future__ import annotations

import argparse
import asyncio
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
from agent_guardrails.store import _rows, open_store
from agent_guardrails.store.base import AuditEvent, Snapshot, chain_hash

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


# ---------------------------------------------------------------------------- async

ASYNC_CONCURRENCY = 200
CALL_CHARGE = Charge("budget:async|USD@0", "budget", 0.002, 1e15, 2**62, "async")


def _events(key: str) -> tuple[AuditEvent, AuditEvent, AuditEvent]:
    return (
        AuditEvent("decision", DECISION, key, f"{key}:d"),
        AuditEvent("execution.started", {}, key, f"{key}:s"),
        AuditEvent("execution.finished", {"ok": True}, key, f"{key}:f"),
    )


class _AioSQLite:
    """The alternative bridge measured for SQLite: aiosqlite, the store's own statements,
    each one awaited (a hand-off to the connection's thread and back)."""

    def __init__(self, path: str) -> None:
        self.path = path

    async def open(self) -> None:
        import aiosqlite

        self.w = await aiosqlite.connect(self.path, isolation_level=None, timeout=30)
        self.r = await aiosqlite.connect(self.path, isolation_level=None, timeout=30)
        for db in (self.w, self.r):
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA synchronous = NORMAL")
        self.lock = asyncio.Lock()

    async def close(self) -> None:
        await self.w.close()
        await self.r.close()

    async def _append(self, events: tuple[AuditEvent, ...], ts: float) -> None:
        from agent_guardrails.store.sqlite import _SQL

        cur = await self.w.execute(_SQL["audit_head"])
        seq, digest = (await cur.fetchone())[:2]  # type: ignore[index]
        prev = digest
        for event in events:
            text, _data = _rows.audit_payload(event)
            h = chain_hash(digest, seq + 1, ts, event.kind, event.call_key, text)
            args = (seq + 1, ts, event.kind, event.call_key, text, digest, h, event.dedupe)
            cur = await self.w.execute(_SQL["append"], args)
            if cur.rowcount:
                seq, prev, digest = seq + 1, digest, h
        await self.w.execute(_SQL["move_audit_head"], (seq, digest, prev))

    async def snapshot(self, dial_key: str, keys: list[str], call_key: str) -> Snapshot:
        from agent_guardrails.store.sqlite import _snapshot_sql

        cur = await self.r.execute(_snapshot_sql(len(keys)), (dial_key, *keys, call_key))
        rows = await cur.fetchall()
        used = {row[2]: float(row[3]) for row in rows if row[0] == 2}
        call = next((_rows.call_record(row[2:]) for row in rows if row[0] == 3), None)
        return Snapshot(None, (), {k: used.get(k, 0.0) for k in keys}, call)

    async def reserve(self, key: str, charge: Charge, audit: AuditEvent, start: AuditEvent) -> bool:
        from agent_guardrails.store.sqlite import _SQL, _counters_sql

        ts = time.time()
        async with self.lock:
            await self.w.execute("BEGIN IMMEDIATE")
            try:
                row = await (await self.w.execute(_SQL["call_state"], (key,))).fetchone()
                if row is not None:
                    await self.w.execute("COMMIT")
                    return False
                cur = await self.w.execute(_counters_sql(1), (charge.key,))
                used = {str(row[0]): float(row[1]) for row in await cur.fetchall()}
                if charge.key in used:
                    await self.w.execute(_SQL["add_counter"], (charge.amount, ts, charge.key))
                else:
                    args = (charge.key, charge.amount, charge.limit, charge.expires_at, ts)
                    await self.w.execute(_SQL["new_counter"], args)
                charges = _rows.charges_to_json([charge])
                await self.w.execute(_SQL["reserve_call"], (key, "started", charges, ts))
                await self._append((audit, start), ts)
                await self.w.execute("COMMIT")
            except BaseException:
                await self.w.execute("ROLLBACK")
                raise
        return True

    async def finish(self, key: str, audit: AuditEvent) -> None:
        from agent_guardrails.store.sqlite import _SQL

        ts = time.time()
        async with self.lock:
            await self.w.execute("BEGIN IMMEDIATE")
            try:
                sql = f"{_SQL['end_held']} RETURNING charges"
                await (await self.w.execute(sql, ("finished", None, ts, key))).fetchone()
                await self._append((audit,), ts)
                await self.w.execute("COMMIT")
            except BaseException:
                await self.w.execute("ROLLBACK")
                raise


async def _store_call(store: Any, key: str) -> None:
    decision, started, finished = _events(key)
    await store.asnapshot(dial_key="workflow=w", counter_keys=[CALL_CHARGE.key], call_key=key)
    res = await store.areserve(key, [CALL_CHARGE], audit=decision, start=started)
    if not (res.ok and res.started):
        raise RuntimeError(f"reserve did not go ahead: {res}")
    await store.afinish(key, ok=True, audit=finished)


async def _aio_call(aio: _AioSQLite, key: str) -> None:
    decision, started, finished = _events(key)
    await aio.snapshot("workflow=w", [CALL_CHARGE.key], key)
    assert await aio.reserve(key, CALL_CHARGE, decision, started)
    await aio.finish(key, finished)


def _sync_call(store: Any, key: str) -> None:
    decision, started, finished = _events(key)
    store.snapshot(dial_key="workflow=w", counter_keys=[CALL_CHARGE.key], call_key=key)
    res = store.reserve(key, [CALL_CHARGE], audit=decision, start=started)
    if not (res.ok and res.started):
        raise RuntimeError(f"reserve did not go ahead: {res}")
    store.finish(key, ok=True, audit=finished)


async def _lag_ticker(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - before - 0.001)


async def _async_figures(call: Any, seconds: float, tag: str) -> tuple[float, float, float]:
    """(µs per call one at a time, calls/s with ASYNC_CONCURRENCY coroutines, p99 lag ms)."""
    for i in range(20):
        await call(f"{tag}-warm-{i}")
    n = 0
    end = time.perf_counter() + seconds / 2
    began = time.perf_counter()
    while time.perf_counter() < end:
        await call(f"{tag}-seq-{n}")
        n += 1
    latency = (time.perf_counter() - began) / n * 1e6
    done = 0
    end = time.perf_counter() + seconds / 2

    async def worker(w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < end:
            await call(f"{tag}-c{w}-{i}")
            i += 1
            done += 1
            await asyncio.sleep(0)  # let the others (and the ticker) in, as a real run would

    lags: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.create_task(_lag_ticker(stop, lags))
    began = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(ASYNC_CONCURRENCY)))
    throughput = done / (time.perf_counter() - began)
    stop.set()
    await ticker
    lags.sort()
    return latency, throughput, lags[int(len(lags) * 0.99)] * 1000 if lags else 0.0


def _sync_figures(store: Any, seconds: float, tag: str) -> float:
    for i in range(20):
        _sync_call(store, f"{tag}-swarm-{i}")
    n = 0
    end = time.perf_counter() + seconds / 2
    began = time.perf_counter()
    while time.perf_counter() < end:
        _sync_call(store, f"{tag}-sync-{n}")
        n += 1
    return (time.perf_counter() - began) / n * 1e6


@dataclass(frozen=True)
class AsyncRow:
    backend: str
    how: str
    latency_us: float
    throughput: float | None
    lag_p99_ms: float | None


def _measure_async(
    only: set[str], seconds: float, tmp: Path, pg: str | None, tag: str
) -> list[AsyncRow]:
    from agent_guardrails.store._offload import StoreThreads

    rows: list[AsyncRow] = []

    async def store_rows(backend: str, url: str, variants: list[str]) -> None:
        sync_store = open_store(url)
        rows.append(
            AsyncRow(
                backend,
                "sync API, 1 thread",
                _sync_figures(sync_store, seconds, f"{tag}s"),
                None,
                None,
            )
        )
        sync_store.close()
        for how in variants:
            store: Any = open_store(url)
            if how.startswith("store threads, 4 shared"):
                store._thread.shutdown()
                store._thread = StoreThreads(4, "bench-shared", url)
            elif how.startswith("store threads, 1 writer + 2 readers"):
                store._executor = lambda write, s=store: s._thread if write else s._spare
            latency, throughput, lag = await _async_figures(
                lambda key, store=store: _store_call(store, key), seconds, f"{tag}-{len(rows)}"
            )
            # (memory://: the calls run on the loop itself, and the lag measured is mostly
            # the garbage collector walking the ever-growing in-memory log: not shown)
            shown = None if backend == "memory" else lag
            rows.append(AsyncRow(backend, how, latency, throughput, shown))
            await store.aclose()

    async def main() -> None:
        if "memory" in only:
            await store_rows("memory", "memory://", ["async API (on the loop)"])
        if "sqlite" in only:
            db = tmp / "async.db"
            url = f"sqlite:///{db}"
            await store_rows(
                "sqlite",
                url,
                [
                    "store thread (+ spare readers) (chosen)",
                    "store threads, 1 writer + 2 readers",
                    "store threads, 4 shared",
                ],
            )
            aio = _AioSQLite(str(db))
            await aio.open()
            figures = await _async_figures(lambda key: _aio_call(aio, key), seconds, f"{tag}-aio")
            rows.append(AsyncRow("sqlite", "aiosqlite, same SQL (alternative)", *figures))
            await aio.close()
        if pg and "postgres" in only:
            try:
                await store_rows(
                    "postgres", _with_schema(pg, _schema(f"async_{tag}")), ["async pool"]
                )
            finally:
                _drop_pg(pg, f"async_{tag}")

    asyncio.run(main())
    return rows


def _print_async(rows: list[AsyncRow]) -> None:
    print(
        "\nasync: one call = snapshot + reserve (decision, started) + finish (its record); "
        f"throughput with {ASYNC_CONCURRENCY} coroutines on one loop\n"
    )
    header = f"{'store':<9} {'how':<46} {'µs/call':>8} {'calls/s':>8} {'lag p99':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        tput = f"{r.throughput:8.0f}" if r.throughput is not None else f"{'-':>8}"
        lag = f"{r.lag_p99_ms:6.2f}ms" if r.lag_p99_ms is not None else f"{'-':>8}"
        print(f"{r.backend:<9} {r.how:<46} {r.latency_us:8.0f} {tput} {lag}")


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
        choices=["memory", "sqlite", "postgres", "async"],
        help="measure only this backend, or only the async path (repeatable)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="measure each line N times")
    args = parser.parse_args(argv)
    seconds = args.seconds or (1.5 if args.quick else 5.0)
    only = set(args.only or ["memory", "sqlite", "postgres", "async"])
    if only == {"async"}:
        only |= {"memory", "sqlite", "postgres", "async-only"}
    repeat = max(1, args.repeat)
    pg = args.pg or os.environ.get("AGENT_GUARDRAILS_TEST_POSTGRES")
    tag = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"

    rows: list[Row] = []
    async_rows: list[AsyncRow] = []
    verdict = ""
    tmp = tempfile.TemporaryDirectory(prefix="ag-bench-")
    if "async" in only:
        async_rows = _measure_async(only, seconds, Path(tmp.name), pg, tag)
    if "async-only" in only:
        _print_async(async_rows)
        tmp.cleanup()
        return 0
    pool = Pool()
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
    if async_rows:
        _print_async(async_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
