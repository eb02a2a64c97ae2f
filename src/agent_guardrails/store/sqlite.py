"""``sqlite:///path.db``: the embedded default store, shared by every thread and process on
one machine.

URLs: ``sqlite:///relative/path.db`` (relative to the working directory) or
``sqlite:////absolute/path.db``; an optional ``?timeout=SECONDS`` sets how long a writer
waits for the database (default 30). The directory must exist; the file and its tables are
created on first open (the tables: ``sql/schema.sql``, described in :mod:`._rows`).

Where things are: this module has the store, its hot path (snapshot, reserve, start,
finish, release) and its audit chain; :mod:`._sqlite_connections` the URL, the connections
and the transactions; :mod:`._operators` the operator steps and reads it shares with
PostgreSQL; the SQL is in ``sql/sqlite.sql`` and ``sql/operators.sql``.

How it keeps the contract:

- **WAL mode, ``synchronous=NORMAL``.** Readers never block the writer nor each other; a
  commit is durable once the WAL is synced at a checkpoint (a power loss can lose the last
  commits, a process crash cannot). ``synchronous=FULL`` is about 4x slower.
- **Checkpoints on the store's own thread** (:mod:`._sqlite_checkpoints`): the WAL is copied
  back into the database file by a background thread soon after commits, not by the commit
  that crosses SQLite's 1,000-page mark (whose caller waited for the copy and two
  ``fsync`` calls); a commit still checkpoints inline past 10,000 pages, so the log stays
  bounded (about 40 MB) if that thread falls behind.
- **One connection per thread**, opened on first use; a thread's connection is parked for
  the next thread when it ends (LangGraph runs each tool call on a fresh thread).
- **Writes are ``BEGIN IMMEDIATE`` transactions**: the write lock is taken at the start, so
  check-then-update inside one is race-free, across threads and processes alike. Every
  atomic step of the contract (check and reserve every charge, the call record and its audit
  record) is one such transaction.
- **Writers queue on a lock file** (``<db>-writer.lock`` next to the database, ``flock``)
  before ``BEGIN IMMEDIATE``. SQLite's own busy handler polls with sleeps of up to 100 ms,
  so under contention the lock sits idle while writers sleep and some wait for seconds
  (unfair, and past Python's default 5 s timeout); the kernel lock hands over at once and
  keeps the worst wait near the queue's length times one transaction. The lock is held only
  around the store's own short transactions, never around a tool. ``SQLiteStore(url,
  queue_writers=False)`` relies on SQLite's busy timeout alone. Where ``fcntl`` does not
  exist (Windows) only the busy timeout applies.
- **A writer waits at most ``timeout`` seconds** (``?timeout=``, 30 by default) in all, for
  the lock file and then for ``BEGIN IMMEDIATE`` (writers that do not queue on the lock
  file: other tools, other versions), and then raises
  :class:`~agent_guardrails.errors.StoreUnavailable` saying the database is locked by
  another writer, how long it waited and the timeout: the guard turns that into a
  fail-closed decision. ``flock`` itself cannot time out, so the writers of one process
  queue on a thread lock (with the deadline), the first of them tries the lock file
  without waiting, and if another process holds it, one *taker* thread per store waits in
  ``flock`` on the writers' behalf (the kernel still hands the lock over at once) while the
  writer waits for it with the deadline (:class:`._sqlite_connections.WriterLock`). A
  writer that gives up leaves the taker waiting; the taker hands the lock to the next
  writer of the process, or releases it at once if none is waiting. So a process *stopped*
  (SIGSTOP, a debugger) while it holds the lock file costs each writer its timeout, where
  it used to stall every writer until it resumed; a killed process releases it at once.
- **The audit chain** is appended in the writing transaction: read the head row, hash,
  insert, update the head. The write lock serialises appends, so the chain has no gaps.
- **The snapshot** is one ``SELECT`` (a ``UNION ALL`` of the level, the engaged
  kill-switches, the counters, the call and the active pack's digest): one implicit read
  transaction, one step through the engine.
- **Numbers**: a charge, ``actual_cost`` or outcome that is not a finite number
  (:func:`~agent_guardrails.store.base.check_finite`) is refused before any transaction.

**Async** (``await store.areserve(...)`` and every other ``a<name>``, from
:class:`~._offload.OffloadedAsync`): each async method runs the sync one on the store's own
*store thread* and awaits it (:class:`~._offload.StoreThreads`: a queue to the thread and
``loop.call_soon_threadsafe`` back, about 40% cheaper per round trip than
``loop.run_in_executor``); the thread starts on first use (a store used only synchronously
has none). The event loop never touches ``sqlite3``, the lock
file or a lock: a call that waits for the write lock waits on the store thread, and its
deadline (``timeout``) counts from when it was called, not from when the thread got to it,
so a held lock costs every queued call one timeout at most, not one each in turn. While the
store thread has been busy with one operation for more than :attr:`SQLiteStore.STALLED`
(20 ms: waiting for a lock held elsewhere, most likely), reads go to two spare reader
threads instead, so snapshots still answer (WAL readers never wait for the writer). The
async path is the sync code, so it keeps the contract the same way; what a cancelled caller
had asked for still completes on the thread (its idempotency key makes a retry safe).
``aclose()`` waits for the threads and closes the connections off the loop.

Chosen by measurement (``python benchmarks/store.py --only async --seconds 8``, 2-core
machine, one process; a call = ``snapshot`` + ``reserve`` with its decision and start
records + ``finish`` with its record; "calls/s" with 200 coroutines on one loop; the
range of 3 runs, every option measured in each run):

============================================  ===========  ===========  ============
async bridge                                  µs per call  calls/s      loop lag p99
============================================  ===========  ===========  ============
sync API, one thread (reference)              172-184      -            -
store thread + spare readers (chosen)         597-621      2,050-2,146  0.8-0.9 ms
store threads, 1 writer + 2 readers           539-561      1,668-1,843  0.9-1.1 ms
store threads, a pool of 4                    508-512      1,647-1,731  1.8-2.5 ms
aiosqlite, the same SQL                       2,142-2,447  398-429      0.3 ms
============================================  ===========  ===========  ============

aiosqlite hands every *statement* to its connection's thread and back (a reservation is
about ten of them), where the store thread takes each *operation* in one hand-off:
aiosqlite was 3.6x slower per call and gave 5x fewer calls per second; it would also need
the SQL steps written a second time, in async. Among thread layouts (all with the same
hand-off), one thread for every operation gave the most calls per second in every run
(median 2,066 against 1,689 for a writer and two readers, +22%) with the lowest lag (more
threads contend for the GIL), for about 10% more time per call when calls come one at a
time; the spare readers keep its one drawback, reads queued behind a write that waits for
a lock, to the first 20 ms. What is left between the async and the sync API is the
hand-offs (a round trip through ``StoreThreads`` costs about 50 µs here, through
``loop.run_in_executor`` about 90 µs). :meth:`SQLiteStore.ahand_off` makes them two per
allowed call, not three: the async driver hands the store thread a run of a flow's
consecutive store operations (:class:`~agent_guardrails.pipeline.effects.StoreRun`), so the
snapshot, the decision between (pure Python, in the caller's context) and the reservation
are one round trip, the finish the other.

**Under load the store thread groups what is queued** (:class:`~._offload.StoreThreads`
with :meth:`._sqlite_connections.SQLiteConnections.run_group`): when it takes an operation,
the ones already queued behind it (up to :data:`~._offload.GROUP_MAX`, 64) run with it,
their writes in one transaction, each in a savepoint of its own, and each waiting event
loop is woken once with all of its answers, after the commit. An operation that fails is
undone alone and gets its own error. A guarded call's snapshot reads in queue order (it
sees what was queued before it, a kill-switch or level change among them, as when each
committed alone) and its answer then stands only if the group commits; other reads answer
from committed data (a second connection while the group's transaction is open). If the
transaction cannot commit (or SQLite ended it under the group, as it does after some I/O
errors), every operation that wrote in it, or read it in queue order, fails with
:class:`~agent_guardrails.errors.StoreUnavailable` (none of its writes was kept, and what
it decided there may rest on another's lost write) and the others keep their answers, so
every answer matches what the file holds (one exception, fail-closed: a call whose snapshot
saw another's reservation that was then not kept may be denied ``budget_exceeded``, and
that denial recorded). A guarded call's run of operations stops right after a write
(:meth:`holds_uncommitted`): its flow goes on (to the tool, say) only once the write is
committed, and otherwise meets the error where it asked; a caller cancelled meanwhile is
ended by the store thread once the commit is known (:meth:`after_commit`). The first write
of a group takes the write lock by its own deadline (one that cannot leaves it to the
next), and an operation that finds the queue empty runs alone, exactly as before. It saves
a commit (the write lock, ``BEGIN IMMEDIATE``, the WAL frames of the pages every call
touches) and a wake-up of the loop per operation: with 200 concurrent agent runs on one
loop, 0.75-0.86 of the bare agent's runs/s against 0.58-0.72 without
(``interrupt="per_call"``; 0.71-0.82 against 0.59-0.63 batched), the store thread's CPU per
run down from about 1.4 to 0.5 ms (A/B in one process, ``benchmarks/README.md``). The price
is latency under load: an answer waits for the rest of its group (a few ms per dozen
operations).

Errors from SQLite (locked past the timeout, disk full, not a database) raise
:class:`~agent_guardrails.errors.StoreUnavailable` naming the file and the error.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from agent_guardrails.engine.decision import Charge
from agent_guardrails.errors import ConfigurationError, StoreUnavailable
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store import _rows
from agent_guardrails.store._offload import OffloadedAsync, StoreThreads
from agent_guardrails.store._operators import SQLOperations
from agent_guardrails.store._rows import EPS, SCHEMA_VERSION
from agent_guardrails.store._sqlite_connections import (
    HINT,
    AfterCommit,
    SQLiteConnections,
    parse_sqlite_url,
)
from agent_guardrails.store._statements import SQLITE, statements
from agent_guardrails.store._steps import ALL, COUNT, ONE, Compute, Step, drive, just
from agent_guardrails.store.base import (
    AuditEvent,
    AuditRecord,
    CallRecord,
    ReserveResult,
    Snapshot,
    chain_hash,
    check_charges,
    check_finite,
)

__all__ = ["SQLiteStore", "parse_sqlite_url"]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")
_HELD = ("reserved", "started", "finished")  # a key in these states replays
_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)  # older SQLite: SELECT, then UPDATE
_SQL = statements(
    SQLITE, {"p": "ag_"}, "operators.sql", "retention.sql", "gate_evidence.sql", "sqlite.sql"
)


@functools.cache
def _snapshot_sql(n_keys: int) -> str:
    """The snapshot as one statement, for ``n_keys`` counter keys (``sql/sqlite.sql``)."""
    counters = _SQL["snapshot_counters"].replace("{marks}", ",".join("?" * n_keys))
    arms = [_SQL["snapshot_head"], counters, _SQL["snapshot_tail"]]
    return "\n".join(arms if n_keys else arms[::2])


@functools.cache
def _counters_sql(n_keys: int) -> str:
    return _SQL["counters_used"].replace("{marks}", ",".join("?" * n_keys))


def _end_held(
    db: sqlite3.Connection, state: str, result: str | None, now: float, key: str
) -> str | None:
    """End a held call (``reserved`` or ``started``) in the caller's write transaction: the
    charges it held (JSON), or ``None`` when it held nothing (unknown, or already ended)."""
    args = (state, result, now, key)
    if _RETURNING:
        row = db.execute(f"{_SQL['end_held']} RETURNING charges", args).fetchone()
        return None if row is None else str(row[0])
    row = db.execute(_SQL["held_charges"], (key,)).fetchone()
    if row is None:
        return None
    db.execute(_SQL["end_held"], args)
    return str(row[0])


class _Append:
    """SQLite's audit append, as an effect of a shared step (:meth:`SQLiteStore._append_step`):
    done by :meth:`SQLiteStore._append_all` in the step's write transaction."""

    __slots__ = ("event", "ts")

    def __init__(self, event: AuditEvent, ts: float) -> None:
        self.event = event
        self.ts = ts


class SQLiteStore(SQLOperations, OffloadedAsync):
    """A :class:`~agent_guardrails.store.base.Store` in one SQLite file (WAL mode).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "guardrails.db"
    >>> store = SQLiteStore(f"sqlite:///{path}")
    >>> from agent_guardrails.engine.decision import Charge
    >>> store.reserve("call-1", [Charge("budget:b@0", "budget", 2.0, 5.0, 86400, "b")]).ok
    True
    >>> store.counters("budget:")
    {'budget:b@0': 2.0}
    >>> store.close()
    """

    _no_limit = SQLITE.no_limit
    _sql = _SQL
    _entities_in_order = True
    #: Async callers' reads go to the spare reader threads (``SPARE_READERS`` of them)
    #: while the store thread has been busy with one operation for longer than this many
    #: seconds (waiting for the write lock, most likely); see the module docstring.
    STALLED = 0.02
    SPARE_READERS = 2

    def __init__(self, url: str, *, queue_writers: bool = True) -> None:
        self.url = url
        self.path, self.timeout = parse_sqlite_url(url)
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise ConfigurationError(
                f"cannot open {url}: directory {directory!r} does not exist; create it, or "
                f"point the URL at an existing directory ({HINT})"
            )
        if os.path.isdir(self.path):
            raise ConfigurationError(f"cannot open {url}: {self.path!r} is a directory")
        self._conns = SQLiteConnections(url, self.path, self.timeout, queue_writers=queue_writers)
        self._scopes: dict[str, Scope] = {}
        # Threads start on first use only: a store used only synchronously has none.
        self._thread = StoreThreads(1, "agent-guardrails-sqlite", url, group=self._run_group)
        self._spare = StoreThreads(self.SPARE_READERS, "agent-guardrails-sqlite-read", url)
        self._busy_since: float | None = None  # when the store thread's operation began
        try:
            self._create_schema()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ plumbing

    def _read(self, step: Callable[[], Step[T]]) -> T:
        with self._conns.read() as db:
            return drive(step(), functools.partial(self._perform, db))

    def _write(self, step: Callable[[], Step[T]], *, serialise: bool = True) -> T:
        with self._conns.write() as db:  # the write lock serialises every write
            return drive(step(), functools.partial(self._perform, db))

    def _perform(self, db: sqlite3.Connection, effect: Any) -> Any:
        """Do one effect of a shared step (:mod:`._steps`) on ``db``."""
        if type(effect) is _Append:
            return self._append_all(db, (effect.event,), effect.ts)[0]
        if type(effect) is Compute:  # (already off the event loop: this is a store thread)
            return effect.fn(*effect.args)
        cur = db.execute(effect.sql, effect.args)
        if effect.fetch == ONE:
            return cur.fetchone()
        if effect.fetch == ALL:
            return cur.fetchall()
        return cur.rowcount if effect.fetch == COUNT else None

    def _append_step(self, event: AuditEvent, ts: float) -> Step[AuditRecord | None]:
        record: AuditRecord | None = yield _Append(event, ts)
        return record

    def _chain_step(self, *, strict: bool = True) -> Step[bool]:
        return just(False)  # every record is chained when it is written

    def _create_schema(self) -> None:
        if self._schema_current():
            return  # (the usual open: no write lock, so a writer elsewhere cannot stop it)
        with self._conns.write() as db:
            has_meta = db.execute(_SQL["schema_version"]).fetchone()[0]
            version = db.execute(_SQL["read_schema_version"]).fetchone() if has_meta else None
            if version is not None and int(version[0]) > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"{self.url} was written by a newer agent-guardrails (schema "
                    f"{version[0]}, this one knows {SCHEMA_VERSION}); upgrade agent-guardrails"
                )
            if version is not None and int(version[0]) == SCHEMA_VERSION:
                return
            for statement in SQLITE.schema("ag_"):
                db.execute(statement)
            # Version 2: outcomes carry level and pack version (a version 1 table lacks them;
            # SQLite has no ADD COLUMN IF NOT EXISTS).
            columns = {row[1] for row in db.execute("PRAGMA table_info(ag_outcomes)")}
            for column, kind in (("level", "INTEGER"), ("pack_version", "TEXT")):
                if column not in columns:
                    db.execute(f"ALTER TABLE ag_outcomes ADD COLUMN {column} {kind}")
            db.execute(_SQL["put_schema_version"], (str(SCHEMA_VERSION),))

    def _schema_current(self) -> bool:
        """The database has this release's schema (read without the write lock); an
        unreadable or locked one says no, and the write below decides."""
        try:
            with self._conns.read() as db:
                if not db.execute(_SQL["schema_version"]).fetchone()[0]:
                    return False
                version = db.execute(_SQL["read_schema_version"]).fetchone()
        except (StoreUnavailable, sqlite3.Error):
            return False
        return version is not None and int(version[0]) == SCHEMA_VERSION

    def _append_all(
        self, db: sqlite3.Connection, events: Sequence[AuditEvent], ts: float
    ) -> list[AuditRecord | None]:
        """Chain ``events`` onto the log, in order, inside the caller's write transaction:
        the head row is read once and written once. ``None`` stands for a duplicate of an
        earlier event (same dedupe), which is dropped."""
        head = db.execute(_SQL["audit_head"]).fetchone()
        if head is None:
            raise StoreUnavailable(
                f"{self.url}: the audit chain head row is missing (tampered?); run "
                "'agent-guardrails audit verify'"
            )
        first = seq = int(head[0])
        prev = digest = str(head[1])
        out: list[AuditRecord | None] = []
        append = _SQL["append"]
        for event in events:
            text, data = _rows.audit_payload(event)
            h = chain_hash(digest, seq + 1, ts, event.kind, event.call_key, text)
            cur = db.execute(
                append, (seq + 1, ts, event.kind, event.call_key, text, digest, h, event.dedupe)
            )
            if cur.rowcount == 0:
                out.append(None)
                continue
            seq += 1
            prev, digest = digest, h
            out.append(AuditRecord(seq, ts, event.kind, event.call_key, data, prev, digest))
        if seq != first:  # something was appended
            db.execute(_SQL["move_audit_head"], (seq, digest, prev))
        return out

    @staticmethod
    def _settle(db: sqlite3.Connection, adjust: Sequence[tuple[str, float]], now: float) -> None:
        db.executemany(_SQL["add_counter"], [(delta, now, key) for key, delta in adjust])

    # ------------------------------------------------------------------ hot path

    def snapshot(self, *, dial_key: str, counter_keys: Sequence[str], call_key: str) -> Snapshot:
        keys = list(counter_keys)
        sql = _snapshot_sql(len(keys))
        try:
            rows = self._conns.in_order().execute(sql, (dial_key, *keys, call_key)).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.url}: {exc}") from exc
        level: int | None = None
        switches: list[Scope] = []
        found: dict[str, float] = {}
        call: CallRecord | None = None
        pack: str | None = None
        scopes = self._scopes
        for row in rows:
            tag = row[0]
            if tag == 2:
                found[row[2]] = float(row[3])
            elif tag == 0:
                level = int(row[2])
            elif tag == 1:
                switches.append(_rows.parse_scope(row[2], scopes))
            elif tag == 3:
                call = _rows.call_record(row[2:])
            else:
                pack = row[2]
        return Snapshot(
            level=level,
            kill_switches=tuple(switches),
            used={k: found.get(k, 0.0) for k in keys},
            call=call,
            pack=pack,
        )

    def reserve(
        self,
        call_key: str,
        charges: Sequence[Charge],
        *,
        audit: AuditEvent | None = None,
        force: bool = False,
        now: float | None = None,
        start: AuditEvent | None = None,
    ) -> ReserveResult:
        audits = (audit,) if audit is not None else ()
        return self._reserve([(call_key, charges)], audits, force, now, start)

    def reserve_many(
        self,
        items: Sequence[tuple[str, Sequence[Charge]]],
        *,
        audit: Sequence[AuditEvent] = (),
        force: bool = False,
        now: float | None = None,
    ) -> ReserveResult:
        return self._reserve(items, audit, force, now, None)

    def _reserve(
        self,
        items: Sequence[tuple[str, Sequence[Charge]]],
        audit: Sequence[AuditEvent],
        force: bool,
        now: float | None,
        start: AuditEvent | None,
    ) -> ReserveResult:
        """Reserve ``items`` in one write transaction; ``start`` (one item only) also marks
        that call started, after its ``audit`` records."""
        for _key, charges in items:
            check_charges(charges)
        ts = time.time()
        stamp = ts if now is None else now
        with self._conns.write() as db:
            fresh = []
            call_state = _SQL["call_state"]
            for key, charges in items:
                row = db.execute(call_state, (key,)).fetchone()
                if row is None or row[0] not in _HELD:
                    fresh.append((key, charges))
            if not fresh:
                return ReserveResult(ok=True, replay=True)
            wanted: dict[str, float] = {}
            first: dict[str, Charge] = {}
            for _key, charges in fresh:
                for c in charges:
                    wanted[c.key] = wanted.get(c.key, 0.0) + c.amount
                    first.setdefault(c.key, c)
            if wanted:
                keys = list(wanted)
                used: dict[str, float] = dict(db.execute(_counters_sql(len(keys)), keys).fetchall())
                if not force:
                    for _key, charges in fresh:
                        for c in charges:
                            held = float(used.get(c.key, 0.0))
                            if held + wanted[c.key] > c.limit + EPS:
                                return ReserveResult(ok=False, breach=c, used=held)
                # The write lock is held: what the SELECT saw is still true.
                for key, amount in wanted.items():
                    if key in used:
                        db.execute(_SQL["add_counter"], (amount, stamp, key))
                    else:
                        c = first[key]
                        db.execute(_SQL["new_counter"], (key, amount, c.limit, c.expires_at, stamp))
            state = "reserved" if start is None else "started"
            db.executemany(
                _SQL["reserve_call"],
                [(key, state, _rows.charges_to_json(ch), stamp) for key, ch in fresh],
            )
            if start is not None:
                self._append_all(db, (*audit, start), ts)
                return ReserveResult(ok=True, started=True)
            if audit:
                self._append_all(db, audit, ts)
        return ReserveResult(ok=True, replay=len(fresh) < len(items))

    def start(self, call_key: str, *, audit: AuditEvent | None = None) -> bool:
        now = time.time()
        with self._conns.write() as db:
            row = db.execute(_SQL["call_state"], (call_key,)).fetchone()
            if row is None:
                db.execute(_SQL["start_new_call"], (call_key, now))
            elif row[0] == "reserved":
                db.execute(_SQL["start_reserved_call"], (now, call_key))
            else:
                return False
            if audit is not None:
                self._append_all(db, (audit,), now)
        return True

    def finish(
        self,
        call_key: str,
        *,
        ok: bool,
        actual_cost: float | None = None,
        result: str | None = None,
        audit: AuditEvent | None = None,
    ) -> None:
        if actual_cost is not None:
            check_finite(actual_cost, "actual_cost")
        now = time.time()
        with self._conns.write() as db:
            held = _end_held(db, "finished" if ok else "failed", result, now, call_key)
            if held is not None and not ok:
                charges = _rows.charges_from_json(held)
                self._settle(db, [(c.key, -c.amount) for c in charges], now)
            elif held is not None and actual_cost is not None:
                charges = _rows.charges_from_json(held)
                self._settle(
                    db,
                    [(c.key, actual_cost - c.amount) for c in charges if c.kind == "budget"],
                    now,
                )
            if audit is not None:
                self._append_all(db, (audit,), now)

    def release(self, call_key: str, *, audit: AuditEvent | None = None) -> None:
        now = time.time()
        with self._conns.write() as db:
            held = _end_held(db, "released", None, now, call_key)
            if held is not None:
                charges = _rows.charges_from_json(held)
                self._settle(db, [(c.key, -c.amount) for c in charges], now)
            if audit is not None:
                self._append_all(db, (audit,), now)

    def append_audit(self, event: AuditEvent) -> AuditRecord | None:
        now = time.time()
        with self._conns.write() as db:
            return self._append_all(db, (event,), now)[0]

    def close(self) -> None:
        """Close the store: wait for what its threads are doing, then close every
        connection (another call raises ``StoreUnavailable``: closed)."""
        self._thread.shutdown()
        self._spare.shutdown()
        self._conns.close()

    # ------------------------------------------------------------------ async

    def _executor(self, write: bool) -> StoreThreads:
        """The store thread; for a read, a spare reader if the store thread is stalled."""
        since = self._busy_since
        if write or since is None or time.monotonic() - since < self.STALLED:
            return self._thread
        return self._spare

    def _on_store_thread(self, deadline: float, call: Callable[[], R]) -> R:
        self._busy_since = time.monotonic()
        try:
            return self._conns.within(deadline, call)
        finally:
            self._busy_since = None

    async def _offload(
        self, write: bool, method: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """``method`` on the store's thread (or a spare reader), awaited. The wait for the
        database counts from now (``within``), however long the call queues."""
        deadline = time.monotonic() + self.timeout
        call = functools.partial(method, *args, **kwargs)
        executor = self._executor(write)
        if executor is self._thread:
            work = functools.partial(self._on_store_thread, deadline, call)
        else:
            work = functools.partial(self._conns.within, deadline, call)
        return await executor.run(work)

    def holds_uncommitted(self) -> bool:
        """True on the store thread while the operation it runs has written in a group
        whose commit is still to come (:class:`~agent_guardrails.pipeline.effects.StoreRun`
        then stops, so no flow goes on before its writes are kept)."""
        return self._conns.holds_uncommitted()

    def rests_on_commit(self) -> bool:
        """True on the store thread while the operation it runs wrote, or read in queue
        order, in a group whose commit is still to come."""
        return self._conns.rests_on_commit()

    def after_commit(self, callback: AfterCommit) -> bool:
        """On the store thread, in a group: tell ``callback`` the group's commit as soon
        as it is known; False outside a group
        (:meth:`._sqlite_connections.SQLiteConnections.after_commit`)."""
        return self._conns.after_commit(callback)

    def _run_group(
        self, works: Sequence[Callable[[], Any]]
    ) -> tuple[list[tuple[bool, Any]], Callable[[], None]]:
        """The store thread's group (:meth:`SQLiteConnections.run_group`); what runs after
        its answers are sent waits for the database by a deadline of its own and counts
        as the thread being busy (reads go to the spare readers meanwhile)."""
        results, then = self._conns.run_group(works)

        def after() -> None:
            self._on_store_thread(time.monotonic() + self.timeout, then)

        return results, after

    async def ahand_off(self, work: Callable[[], R]) -> R:
        """``work()`` on the store thread, awaited: a run of store operations in one
        hand-off (the pipeline's :class:`~agent_guardrails.pipeline.effects.StoreRun`: a
        call's snapshot, decision and reservation in one round trip). Its operations share
        one deadline, counted from now: a run holds store operations and the pure steps
        between them only (asking a human, the tool body and anything awaited end it)."""
        deadline = time.monotonic() + self.timeout
        return await self._thread.run(functools.partial(self._on_store_thread, deadline, work))

    async def aclose(self) -> None:
        """:meth:`close`, on a thread of the loop's default executor: it waits for the
        store's threads and closes files."""
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.url!r})"
