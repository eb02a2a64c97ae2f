"""``postgresql://...``: the store for many workers on many machines (psycopg 3 and
psycopg_pool).

URLs are libpq URLs (``postgresql://user:password@host:5432/dbname?sslmode=require``) plus
options of ours (:mod:`.postgres_url`):

``schema=NAME``
    Keep every table (and the store's functions) in schema ``NAME``, created if missing.
    Without it they go into the connection's current schema (usually ``public``; libpq's
    ``options=-csearch_path%3DNAME`` works too). Several independent stores can share one
    database in different schemas. The test suite gives every test a throw-away schema
    this way and drops it afterwards.
``pool_min=N&pool_max=M``
    The connection pool's size, by default 1 and 10: at least ``N`` connections are kept
    open, up to ``M`` are opened when that many threads use the store at once, and a
    thread beyond that waits for a free one. A bad value is a ``ConfigurationError``.

``connect_timeout`` defaults to 10 seconds and ``application_name`` to
``agent-guardrails`` unless the URL sets them; connections use ``client_encoding`` UTF8.
Needs ``pip install 'agent-guardrails[postgres]'``. The tables are the ones described in
:mod:`._rows` (``sql/schema.sql``), plus ``ag_audit_outbox`` (below).

Where things are: this module has the store, its hot path and its audit chain;
:mod:`._postgres_connections` the pool and the retry rule; :mod:`._operators` the operator
steps and reads it shares with SQLite; the SQL is in ``sql/postgres.sql``,
``sql/postgres_functions.sql``, ``sql/postgres_upgrade_2.sql`` and ``sql/operators.sql``.
Every operation is one *step* (:mod:`._steps`): a generator that yields the statements it
needs and decides what their rows and errors mean, run on a connection by a driver.

**Connections.** Constructing the store (``PostgresStore(url)``, ``open_store(url)``)
parses and checks the URL and nothing else: it never connects. The first operation creates
or upgrades the schema (below) on a connection of its own, then opens the pool
(``psycopg_pool.ConnectionPool``); it does so once, under a lock, and if the server cannot
be reached then, that operation raises ``StoreUnavailable`` and the next one tries again.
Each operation takes a connection from the pool and gives it back; an operation waits at
most ``connect_timeout`` seconds for one (all ``pool_max`` busy, or the server down), then
raises ``StoreUnavailable``. Connections are in autocommit mode. A child process made by
``fork`` never uses its parent's pool: it opens its own on its first operation.

**The retry rule.** A connection found broken (the server restarted, the backend was
terminated, the network dropped it) is discarded, and the operation runs once more on a
fresh connection (one that answers an empty query), so a server restart between two calls
costs no call. Only a second failure, or any other error, raises ``StoreUnavailable``.
This is safe because every hot-path step is keyed by the call's idempotency key and is one
statement: if the first attempt committed and only its answer was lost, the retry sees
the key's state instead of acting twice. A retried ``reserve`` then returns ``replay=True``
(with ``started=False`` even if the first attempt started the call: the call record says
``started``, so the pipeline treats it as in doubt and never runs it again); a retried
``start`` returns False (the same: in doubt); a retried ``finish`` or ``release`` settles
nothing twice. That is the safe side: a call that looks started or in doubt, never a
double charge. An audit record that rode on such a step (or on ``append_audit``) is written
again, and dropped when chained if it has a ``dedupe`` string (the pipeline's have); one
without may appear twice. Operator steps (levels, kill-switches, packs, outcomes) run in a
client transaction and are retried only when it failed before its ``COMMIT`` was sent; a
failed ``COMMIT`` raises ``StoreUnavailable`` saying the outcome is unknown.

**Schema versions and upgrades.** ``ag_meta`` records the schema version
(:data:`SCHEMA_VERSION`, 2; SQLite keeps its own) and a digest of the text of
``sql/postgres_functions.sql``. The first operation creates what is missing, under a
transaction-scoped advisory lock so many processes may start on one database at once. A
version 1 database (every append chained at once under the chain-head row's lock) is
upgraded in place, in one transaction (``sql/postgres_upgrade_2.sql``): the outbox table
and the ``ag_audit.src`` column are added (no rewrite, no data moved; its chain goes on
from its head) and the functions replaced; functions whose digest differs are replaced
(``CREATE OR REPLACE``) too. Workers of the previous release still running keep working on
the upgraded database (the functions they call keep their signatures and now append
through the outbox; only their operator steps, which lock the head row before the chain
lock, can deadlock with chaining and fail), and a previous release refuses to *open* a
version 2 database: restart old workers with the new release.

How it keeps the contract:

- **Numbers**: a charge, ``actual_cost`` or outcome that is not a finite number
  (:func:`~agent_guardrails.store.base.check_finite`) is refused before any statement.
- **The snapshot** is one ``SELECT``: the level, the engaged kill-switches, the counters,
  the call's row and the active pack's digest (one sub-select on the packs' partial unique
  index), so the pipeline can tell on every call whether the live policy changed.
- **Durable commits.** ``synchronous_commit`` is left as the server has it (``on``): a
  committed reservation or audit record survives a crash of the database server.
- **Each hot-path step is one statement: one round trip, one transaction.** ``reserve``
  (also with ``start=``, which marks the call started in the same step), ``start``,
  ``finish`` and ``release`` call functions the store installs in its schema
  (``ag_reserve1``, ``ag_start``, ``ag_settle``; ``sql/postgres_functions.sql``), prepared
  once per pooled connection and run through libpq directly
  (:meth:`~._postgres_connections.PostgresConnections.exec_prepared`): psycopg's ``execute``
  cost about 100 µs of Python per call more, which on a small machine is CPU the database needs.
  ``reserve_many`` and a reservation that leaves the fast path use ``ag_reserve``;
  ``snapshot`` is one ``SELECT``. The functions run with ``plan_cache_mode =
  force_generic_plan``: re-planning their statements on every call cost more than running
  them.
- **Reserving**: insert the call row (``ON CONFLICT``: a key already reserved, started or
  finished is a replay and touches nothing else; a failed or released one reserves
  again), put the audit records in the outbox, then one conditional ``UPDATE ... WHERE
  used + amount <= limit`` per counter, in key order (code point order: ``COLLATE "C"``
  wherever locks are taken), the last statements before the commit, so a hot counter row
  stays locked for as short a time as possible. If a counter is new or a charge does not
  fit, the function raises and the whole statement rolls back. The client then runs the
  general path (``ag_reserve`` without its fast path): create the missing counter rows,
  lock every counter ``FOR UPDATE`` in key order, check every charge against what the
  batch wants of its counter, and raise ``GR001`` naming the first charge that does not
  fit (the client turns that into ``ReserveResult(ok=False, breach=..., used=...)``), or
  add the amounts. Nothing is ever read, decided in Python and written back.
- **One audit chain, chained in batches.** Issue 3 measured the old design, where every
  append locked one chain-head row until its commit was flushed: a second hot lock that
  serialised every audited commit across all budgets (1.4-2.0k/s whatever the number of
  budgets). Now the hot path only *inserts* its records into ``ag_audit_outbox`` (ordered
  by an identity column; no hash, no shared lock), and ``ag_chain_pending`` moves them,
  in id order, into ``ag_audit``: it numbers each record, hashes it with
  :func:`~agent_guardrails.store.base.chain_hash`'s text
  ``prev|seq|repr(ts)|kind|call_key|data`` (``repr(ts)`` and the canonical JSON computed
  in Python when the record was written), advances ``ag_audit_head`` and deletes the rows
  from the outbox, all in one transaction, under a transaction-scoped advisory lock (one
  chainer at a time; the lock itself writes nothing). The chain stays one gap-free
  sequence. Chaining happens

  * after a store's own hot-path writes, at most every :attr:`PostgresStore.CHAIN_INTERVAL`
    seconds per store and up to :attr:`PostgresStore.CHAIN_BATCH` records, only if no one
    else is chaining (``pg_try_advisory_xact_lock``: nobody waits, and a failure there
    never fails the write that triggered it);
  * before the log is read: ``audit_records``, ``find_audit`` (when the record is not
    chained yet), ``verify_audit`` and so ``agent-guardrails audit verify/export``;
  * by ``append_audit`` and the operator steps (``set_level``, kill-switches, packs,
    outcomes), which return or need their record: ``append_audit`` commits its record and
    chains it at once when the lock is free, else waits for the lock, by when the holder
    (or the next waiter) has chained every waiting record in one commit;
  * when a store is closed, for what it left waiting.

  Duplicates: the hot path does not check ``dedupe`` (the outbox has no unique index);
  chaining inserts with ``ON CONFLICT (dedupe) DO NOTHING``, so the first record with a
  ``dedupe`` string (in chain order, which is commit-then-id order) is kept and any later
  one, from any process, is dropped before it gets a number. ``append_audit`` returns
  ``None`` for such a duplicate. A record's position is fixed when it is chained: records
  written by one thread keep their order; records committed concurrently by different
  processes are chained in id order as far as they are visible, else in the next batch.
- **Tamper evidence, honestly.** A chained record is as tamper-evident as before (edits,
  deletions, insertions, reordering and a deleted or rewound head are detected and the
  first bad record named, also while more records are chained after the damage). A
  record still waiting in the outbox (normally for well under a second, and never when
  the log is read: every read chains first) is *not*: editing or deleting it straight in
  the database leaves no trace, and a forged row inserted there is chained like any other
  (but cannot displace a recorded ``dedupe``). If the head row is missing or a record
  was forged after it, chaining refuses (``GR002``): the hot path goes on and its records
  wait in the outbox, ``append_audit`` fails closed naming the problem, and
  ``verify_audit`` reports the damage, until an operator repairs the log.
- **Locks** are always taken in the same order (call row, counter rows by key; the chain
  lock only by chaining and operator steps, which take nothing the hot path holds first),
  so two calls never deadlock. The hot path never waits for chaining.
- **Throughput** (``python benchmarks/store.py``): one hot budget is bounded by its row
  lock, held until each commit is flushed, like a plain ``UPDATE`` of one row; over many
  budgets, by CPU. Every record is written twice (outbox, then log), off the hot locks.

**Async** (``await store.areserve(...)`` and every other ``a<name>``): native, through
psycopg's async connections and ``psycopg_pool.AsyncConnectionPool`` (the same
``pool_min``/``pool_max``, ``connect_timeout`` and settings as the sync pool), opened by
the first async operation, lazily, after the same schema setup if the sync side has not
done it. The rules are the sync ones: a broken connection is discarded and the operation
retried once on a fresh one, a failed ``COMMIT`` of an operator step is not retried, a
pool with no free connection for ``connect_timeout`` seconds raises ``StoreUnavailable``.
Waiting for a row lock held by another transaction, for the chain lock or for a pooled
connection happens on the server or in the pool, awaited: the event loop goes on.

Nothing is written twice: every operation is one *step* (:mod:`._steps`), a generator that
yields the statements it needs, gets their rows back and decides what they mean (which
error is a denial, when to take the general path, when to chain); the schema setup is one
too (:mod:`._postgres_schema`). The sync driver runs a step with ``conn.execute`` and the
hot path's statements through libpq (:meth:`._postgres_connections.PostgresConnections
.exec_prepared`, as before); the async driver awaits ``conn.execute`` (the hot path's
statements with ``prepare=True``, the same SQL and the same text parameters). The ``.sql``
files are read on a worker thread before the first async operation (file I/O, once per
process).

One store object serves both: ``close()`` closes the sync pool and every async one (each on
its own event loop), ``aclose()`` the same from async code (the sync pool on a worker
thread), both after chaining what the store left waiting. An async pool belongs to the
event loop that opened it: a store used from several loops (``asyncio.run`` more than once,
loops in several threads) has one pool per loop; one whose loop has been closed is let go
(its idle connections are closed) when the next pool opens, or by ``close()``. Call
``await store.aclose()`` before a loop ends to close its connections cleanly.

Measured (``python benchmarks/store.py --only async``, 2-core machine, server on the same
machine, 3 runs): one call (``snapshot`` + ``reserve`` with its records + ``finish``) takes
1,065-1,099 µs awaited against 945-964 µs on the sync API (``execute(prepare=True)`` costs a
little more Python than the libpq fast path), and 200 coroutines on one loop make
1,630-1,740 calls/s with the default ``pool_max=10``, the loop's lag p99 1.5-1.8 ms.

Errors from the server or the network raise
:class:`~agent_guardrails.errors.StoreUnavailable` with the driver's message. Passwords are
never included: ``store.url`` has them replaced by ``***``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from agent_guardrails.engine.decision import Charge
from agent_guardrails.errors import ConfigurationError
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store import _rows
from agent_guardrails.store._operators import AsyncSQLOperations
from agent_guardrails.store._postgres_connections import (
    AsyncPostgresConnections,
    PostgresConnections,
    atransaction,
    transaction,
)
from agent_guardrails.store._postgres_schema import (
    SCHEMA_VERSION,
    chain_lock,
    create_schema,
    current_schema,
    quote_ident,
)
from agent_guardrails.store._statements import POSTGRES, preload, statements
from agent_guardrails.store._steps import (
    ALL,
    ONE,
    Hot,
    Statement,
    Step,
    Transaction,
    adrive,
    drive,
)
from agent_guardrails.store.base import (
    AuditEvent,
    AuditRecord,
    ReserveResult,
    Snapshot,
    check_charges,
    check_finite,
)
from agent_guardrails.store.postgres_url import PostgresURL, parse_postgres_url, redact_url

__all__ = ["SCHEMA_VERSION", "PostgresStore", "PostgresURL", "parse_postgres_url"]

T = TypeVar("T")
_DENIED = "GR001"  # raised by ag_reserve when a charge does not fit
_TAMPERED = "GR002"  # raised by ag_chain_pending: the head row is missing or behind the log
_GENERAL = "GR003"  # raised by ag_reserve's fast path: run the general path
# The hot-path statements prepared on each pooled connection (sql/postgres.sql, hot_*).
_RESERVE1, _START, _SETTLE = b"ag_reserve1", b"ag_start", b"ag_settle"
_DOLLAR = re.compile(r"\$\d+")


def _text(value: Any) -> bytes | None:
    """A value psycopg parsed, back in libpq's text format (what the sync hot path sees)."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return b"t" if value else b"f"
    return str(value).encode()


class PostgresStore(AsyncSQLOperations):
    """A :class:`~agent_guardrails.store.base.Store` (and
    :class:`~agent_guardrails.store.base.AsyncStore`) in a PostgreSQL database.

    Constructing one never connects (see the module docstring):

    >>> store = PostgresStore("postgresql://postgres@127.0.0.1:1/test?schema=guardrails")
    >>> store.url
    'postgresql://postgres@127.0.0.1:1/test?schema=guardrails'
    >>> store.close()
    """

    #: Seconds between the chain steps a store takes after its own hot-path writes.
    CHAIN_INTERVAL = 0.5
    #: At most this many records chained by one such step (reads chain everything).
    CHAIN_BATCH = 5000

    _no_limit = POSTGRES.no_limit

    def __init__(self, url: str) -> None:
        try:
            import psycopg
            import psycopg_pool  # noqa: F401 - checked here, used by the connections
        except ImportError:
            raise ConfigurationError(
                "the PostgreSQL store needs psycopg 3 and psycopg_pool: "
                "pip install 'agent-guardrails[postgres]'"
            ) from None
        self._pg: Any = psycopg
        self.url = redact_url(url)
        self.options = parse_postgres_url(url)
        self.schema: str | None = self.options.schema
        self._scopes: dict[str, Scope] = {}
        self._ready = False  # set up (schema found or created, statements rendered)
        # time.monotonic() of the next chain step after a hot-path write (see _appended)
        self._chain_due = time.monotonic() + self.CHAIN_INTERVAL
        self._unchained = False  # this store appended to the outbox since it last chained
        o = self.options
        self._conns = PostgresConnections(
            self.url,
            o.conninfo,
            pool_min=o.pool_min,
            pool_max=o.pool_max,
            timeout=o.connect_timeout,
            setup=lambda conn: self._drive(conn, self._setup_step()),
            ready=lambda: self._ready,
        )
        self._aconns = AsyncPostgresConnections(
            self.url,
            o.conninfo,
            pool_min=o.pool_min,
            pool_max=o.pool_max,
            timeout=o.connect_timeout,
            setup=self._asetup,
            ready=lambda: self._ready,
        )

    # ------------------------------------------------------------------ first use

    def _setup_step(self) -> Step[None]:
        """On the first operation (sync or async), on a connection of its own: find the
        schema, render the statements for it, and create or upgrade it
        (:mod:`._postgres_schema`)."""
        schema = self.options.schema
        if schema is None:
            schema = yield from current_schema(self.url)
        s = quote_ident(schema)
        fill = {"s": s, "p": f"{s}.ag_", "lock": str(chain_lock(schema))}
        q = statements(POSTGRES, fill, "operators.sql", "postgres.sql")
        hot = {
            _RESERVE1: q["hot_reserve1"].encode(),
            _START: q["hot_start"].encode(),
            _SETTLE: q["hot_settle"].encode(),
        }
        # The async driver runs the same statements through psycopg (prepared there too).
        ahot = {name: _DOLLAR.sub("%s", sql.decode()) for name, sql in hot.items()}
        yield from create_schema(self.url, schema, fill, q)
        self.schema, self._q, self._sql, self._hot, self._ahot = schema, q, q, hot, ahot
        self._ready = True

    async def _asetup(self, conn: Any) -> None:
        """:meth:`_setup_step` on an async connection; the SQL files are read first, on a
        worker thread (file I/O, once per process)."""
        await asyncio.to_thread(preload)
        await self._adrive(conn, self._setup_step())

    # ------------------------------------------------------------------ the drivers

    def _perform(self, conn: Any, effect: Any) -> Any:
        """Do one effect of a step (:mod:`._steps`) on sync connection ``conn``."""
        kind = type(effect)
        if kind is Hot:
            res = self._conns.exec_prepared(
                conn, effect.name, self._hot[effect.name], effect.params, effect.expect
            )
            return None if res is None else (res.get_value(0, 0),)
        if kind is Statement:
            if effect.args is None:
                cur = conn.execute(effect.sql)
            else:
                cur = conn.execute(effect.sql, effect.args)
            if effect.fetch == ONE:
                return cur.fetchone()
            return cur.fetchall() if effect.fetch == ALL else None
        body = effect.body
        if effect.keyed:  # (a failed COMMIT may be retried: the step is keyed)
            with conn.transaction():
                return self._drive(conn, body)
        return transaction(conn, lambda: self._drive(conn, body))

    async def _aperform(self, conn: Any, effect: Any) -> Any:
        """Do one effect of a step on async connection ``conn``: as :meth:`_perform`."""
        kind = type(effect)
        if kind is Hot:
            params = [None if p is None else p.decode() for p in effect.params]
            try:
                cur = await conn.execute(self._ahot[effect.name], params, prepare=True)
            except self._pg.Error as exc:
                if effect.expect and getattr(exc, "sqlstate", None) == effect.expect:
                    return None
                raise
            row = await cur.fetchone()
            return (_text(row[0]),)
        if kind is Statement:
            if effect.args is None:
                cur = await conn.execute(effect.sql)
            else:
                cur = await conn.execute(effect.sql, effect.args)
            if effect.fetch == ONE:
                return await cur.fetchone()
            return await cur.fetchall() if effect.fetch == ALL else None
        body = effect.body
        if effect.keyed:
            async with conn.transaction():
                return await self._adrive(conn, body)
        return await atransaction(conn, lambda: self._adrive(conn, body))

    def _drive(self, conn: Any, step: Step[T]) -> T:
        return drive(step, functools.partial(self._perform, conn))

    async def _adrive(self, conn: Any, step: Step[T]) -> T:
        return await adrive(step, functools.partial(self._aperform, conn))

    def _run_step(self, step: Callable[[], Step[T]]) -> T:
        """``step()`` on a pooled connection (made again if the operation is retried)."""
        return self._conns.run(lambda conn: self._drive(conn, step()))

    async def _arun_step(self, step: Callable[[], Step[T]]) -> T:
        """:meth:`_run_step`, awaited on this event loop's async pool."""
        return await self._aconns.run(lambda conn: self._adrive(conn, step()))

    def _read(self, step: Callable[[], Step[T]]) -> T:
        return self._run_step(step)

    async def _aread(self, step: Callable[[], Step[T]]) -> T:
        return await self._arun_step(step)

    def _write(self, step: Callable[[], Step[T]], *, serialise: bool = True) -> T:
        return self._run_step(lambda: self._write_step(step, serialise))

    async def _awrite(self, step: Callable[[], Step[T]], *, serialise: bool = True) -> T:
        return await self._arun_step(lambda: self._write_step(step, serialise))

    def _write_step(self, step: Callable[[], Step[T]], serialise: bool) -> Step[T]:
        """A client transaction; ``serialise`` takes the chain lock first, for steps that
        read, then write, then append (and chain) an audit record anyway."""

        def body() -> Step[T]:
            if serialise:
                yield Statement(self._q["lock_chain"])
            return (yield from step())

        result: T = yield Transaction(body())
        return result

    # ------------------------------------------------------------------ the audit chain

    def _appended_step(self) -> Step[None]:
        """After a hot-path write put audit records in the outbox: a chain step, at most
        every :attr:`CHAIN_INTERVAL` seconds per store and only if no other session is at it.
        It never waits and never fails the caller, whose write is committed already: a step
        that fails leaves the records waiting, and the next audit read says why."""
        self._unchained = True
        now = time.monotonic()
        if now < self._chain_due:
            return
        self._chain_due = now + self.CHAIN_INTERVAL
        with contextlib.suppress(self._pg.Error):  # (a broken connection goes back to
            # the pool, which replaces it)
            yield Statement(self._q["chain"], (False, self.CHAIN_BATCH, None, None))

    def _chain_all_step(self) -> Step[None]:
        """Chain every waiting record, waiting for the chain lock: before reading the log."""
        yield Statement(self._q["chain"], (True, None, None, None))
        self._unchained = False

    def _chain_step(self, *, strict: bool = True) -> Step[bool]:
        try:
            yield from self._chain_all_step()
        except self._pg.Error as exc:
            # The head row is missing or behind the log: the records wait unchained, and
            # verification names the first bad record.
            if strict or getattr(exc, "sqlstate", None) != _TAMPERED:
                raise
        return True

    def _append_step(self, event: AuditEvent, ts: float) -> Step[AuditRecord | None]:
        text, data = _rows.audit_payload(event)
        args = (event.kind, event.call_key, text, event.dedupe, ts, repr(ts))
        row = yield Statement(self._q["append"], args, ONE)
        if row is None:
            return None
        seq, prev, digest = row
        return AuditRecord(int(seq), ts, event.kind, event.call_key, data, prev, digest)

    # ------------------------------------------------------------------ hot path: steps

    def _snapshot_step(self, dial_key: str, keys: list[str], call_key: str) -> Step[Snapshot]:
        row = yield Statement(self._q["snapshot"], (dial_key, keys, keys, call_key), ONE)
        level, switches, found_keys, found_used, pack, *call = row
        found = dict(zip(found_keys, found_used, strict=True))
        scopes = self._scopes
        return Snapshot(
            level=int(level) if level is not None else None,
            kill_switches=tuple(_rows.parse_scope(k, scopes) for k in switches),
            used={k: float(found.get(k, 0.0)) for k in keys},
            call=_rows.call_record(call) if call[0] is not None else None,
            pack=pack,
        )

    def _reserve1_step(
        self,
        call_key: str,
        charges: Sequence[Charge],
        audit: AuditEvent | None,
        now: float | None,
        start: AuditEvent | None,
    ) -> Step[ReserveResult]:
        """``reserve`` of distinct counters, not forced: ``ag_reserve1`` (one statement),
        and on ``GR003`` (a new counter, or a charge that does not fit) the general path."""
        ts = time.time()
        stamp = ts if now is None else now
        # Locks in one order everywhere: by key, code point order (COLLATE "C" in SQL).
        ordered = sorted(charges, key=_rows.charge_key) if len(charges) > 1 else charges
        ts_repr = repr(ts).encode()
        params = [
            call_key.encode(),
            _rows.charges_to_json(charges).encode(),
            repr(float(stamp)).encode(),
            ts_repr,
            *_rows.pg_text_params(audit),
            ts_repr,
            _rows.pg_text_array([c.key for c in ordered]),
            _rows.pg_float_array([c.amount for c in ordered]),
            _rows.pg_float_array([c.limit for c in ordered]),
            *_rows.pg_text_params(start),
        ]
        res = yield Hot(_RESERVE1, params, _GENERAL)
        if res is None:  # GR003
            audits = (audit,) if audit is not None else ()
            items = [(call_key, charges)]
            return (yield from self._reserve_step(items, audits, False, now, False, start))
        if res[0] == b"0":
            return ReserveResult(ok=True, replay=True)
        if audit is not None or start is not None:
            yield from self._appended_step()
        return ReserveResult(ok=True, started=start is not None)

    def _reserve_step(
        self,
        items: Sequence[tuple[str, Sequence[Charge]]],
        audit: Sequence[AuditEvent],
        force: bool,
        now: float | None,
        fast: bool,
        start: AuditEvent | None,
    ) -> Step[ReserveResult]:
        """``ag_reserve`` (one statement), or with ``start`` (one call, from :meth:`reserve`
        off its fast path: rare) ``ag_reserve`` and the start in one client transaction."""
        ts = time.time()
        stamp = ts if now is None else now
        flat: list[Charge] = []
        owner: list[int] = []
        for index, (_key, charges) in enumerate(items, 1):
            flat.extend(charges)
            owner.extend([index] * len(charges))
        params: list[Any] = [
            [key for key, _ in items],
            [_rows.charges_to_json(charges) for _, charges in items],
            owner,
            [c.key for c in flat],
            [float(c.amount) for c in flat],
            [float(c.limit) for c in flat],
            [int(c.expires_at) for c in flat],
            force,
            fast,
            stamp,
            [e.kind for e in audit],
            [e.call_key for e in audit],
            [_rows.audit_payload(event)[0] for event in audit],
            [e.dedupe for e in audit],
            ts,
            repr(ts),
        ]
        reserve = Statement(self._q["reserve"], params, ONE)

        def reserve_and_start(start: AuditEvent) -> Step[Any]:
            row = yield reserve
            if int(row[0]) > 0:
                text, _data = _rows.audit_payload(start)
                yield Statement(self._q["start_reserved"], (stamp, items[0][0]))
                yield Statement(
                    self._q["outbox"],
                    (ts, repr(ts), start.kind, start.call_key, text, start.dedupe),
                )
            return row

        while True:
            try:
                if start is None:
                    row = yield reserve
                else:
                    row = yield Transaction(reserve_and_start(start), keyed=True)
                break
            except self._pg.Error as exc:
                state = getattr(exc, "sqlstate", None)
                if state == _GENERAL and params[8]:
                    params[8] = False
                    continue
                if state != _DENIED:
                    raise
                position, used_hex = str(exc.diag.message_detail).split()
                used = struct.unpack(">d", bytes.fromhex(used_hex))[0]
                return ReserveResult(ok=False, breach=flat[int(position) - 1], used=used)
        fresh = int(row[0])
        if fresh == 0:
            return ReserveResult(ok=True, replay=True)
        if audit or start is not None:
            yield from self._appended_step()
        distinct = len({key for key, _ in items})
        return ReserveResult(ok=True, replay=fresh < distinct, started=start is not None)

    def _reserve_one(
        self,
        call_key: str,
        charges: Sequence[Charge],
        audit: AuditEvent | None,
        force: bool,
        now: float | None,
        start: AuditEvent | None,
    ) -> Callable[[], Step[ReserveResult]]:
        """The step of :meth:`reserve` (checked first): the fast path when it can be."""
        check_charges(charges)
        distinct = len({c.key for c in charges}) == len(charges)
        if force or not distinct:
            audits = (audit,) if audit is not None else ()
            items = [(call_key, charges)]
            fast = distinct and not force
            return lambda: self._reserve_step(items, audits, force, now, fast, start)
        return lambda: self._reserve1_step(call_key, charges, audit, now, start)

    def _reserve_batch(
        self,
        items: Sequence[tuple[str, Sequence[Charge]]],
        audit: Sequence[AuditEvent],
        force: bool,
        now: float | None,
    ) -> Callable[[], Step[ReserveResult]]:
        """The step of :meth:`reserve_many` (checked first)."""
        for _key, charges in items:
            check_charges(charges)
        keys = [c.key for _, charges in items for c in charges]
        # The fast path needs every counter charged once; it hands anything unusual (a new
        # counter, a charge that does not fit) back with GR003, for the general path.
        fast = not force and len(set(keys)) == len(keys)
        return lambda: self._reserve_step(items, audit, force, now, fast, None)

    def _start_step(self, call_key: str, audit: AuditEvent | None) -> Step[bool]:
        now = repr(time.time()).encode()
        params = [
            call_key.encode(),
            now,
            *_rows.pg_text_params(audit),
            now if audit is not None else None,
        ]
        res = yield Hot(_START, params)
        started: bool = res[0] == b"t"
        if started and audit is not None:
            yield from self._appended_step()
        return started

    def _settle_step(
        self,
        call_key: str,
        ok: bool,
        release: bool,
        actual_cost: float | None,
        result: str | None,
        audit: AuditEvent | None,
    ) -> Step[None]:
        now = repr(time.time()).encode()
        params = [
            call_key.encode(),
            b"t" if ok else b"f",
            b"t" if release else b"f",
            None if actual_cost is None else repr(float(actual_cost)).encode(),
            None if result is None else result.encode(),
            now,
            *_rows.pg_text_params(audit),
            now if audit is not None else None,
        ]
        yield Hot(_SETTLE, params)
        if audit is not None:
            yield from self._appended_step()

    def _append_audit_step(self, event: AuditEvent) -> Step[AuditRecord | None]:
        """Append ``event`` and chain it: one statement when no other session is chaining;
        else the record is committed to the outbox first and this waits for the chain lock
        (whoever holds it next chains every waiting record in one commit)."""
        ts = time.time()
        text, data = _rows.audit_payload(event)
        args = (event.kind, event.call_key, text, event.dedupe, ts, repr(ts))
        row = yield Statement(self._q["append_try"], args, ONE)
        outbox_id, after, count, seq, prev, digest = row
        if count < 0:
            chain = (True, None, outbox_id, after)
            seq, prev, digest = (yield Statement(self._q["chain"], chain, ONE))[1:]
        if seq is None:
            return None  # a duplicate of an earlier event (same dedupe): dropped
        return AuditRecord(int(seq), ts, event.kind, event.call_key, data, prev, digest)

    # ------------------------------------------------------------------ hot path: sync

    def snapshot(self, *, dial_key: str, counter_keys: Sequence[str], call_key: str) -> Snapshot:
        keys = list(counter_keys)
        return self._run_step(lambda: self._snapshot_step(dial_key, keys, call_key))

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
        return self._run_step(self._reserve_one(call_key, charges, audit, force, now, start))

    def reserve_many(
        self,
        items: Sequence[tuple[str, Sequence[Charge]]],
        *,
        audit: Sequence[AuditEvent] = (),
        force: bool = False,
        now: float | None = None,
    ) -> ReserveResult:
        return self._run_step(self._reserve_batch(items, audit, force, now))

    def start(self, call_key: str, *, audit: AuditEvent | None = None) -> bool:
        return self._run_step(lambda: self._start_step(call_key, audit))

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
        self._run_step(lambda: self._settle_step(call_key, ok, False, actual_cost, result, audit))

    def release(self, call_key: str, *, audit: AuditEvent | None = None) -> None:
        self._run_step(lambda: self._settle_step(call_key, False, True, None, None, audit))

    def append_audit(self, event: AuditEvent) -> AuditRecord | None:
        return self._run_step(lambda: self._append_audit_step(event))

    def close(self) -> None:
        """Chain what this store left waiting (best effort), then close the pools: the
        sync one, and the async ones (each on its event loop)."""
        last = None
        if self._unchained and self._conns.opened:
            last = self._chain_now
        self._conns.close(last)
        self._aconns.close(self._achain_now if self._unchained else None)

    # ------------------------------------------------------------------ hot path: async

    async def asnapshot(
        self, *, dial_key: str, counter_keys: Sequence[str], call_key: str
    ) -> Snapshot:
        keys = list(counter_keys)
        return await self._arun_step(lambda: self._snapshot_step(dial_key, keys, call_key))

    async def areserve(
        self,
        call_key: str,
        charges: Sequence[Charge],
        *,
        audit: AuditEvent | None = None,
        force: bool = False,
        now: float | None = None,
        start: AuditEvent | None = None,
    ) -> ReserveResult:
        step = self._reserve_one(call_key, charges, audit, force, now, start)
        return await self._arun_step(step)

    async def areserve_many(
        self,
        items: Sequence[tuple[str, Sequence[Charge]]],
        *,
        audit: Sequence[AuditEvent] = (),
        force: bool = False,
        now: float | None = None,
    ) -> ReserveResult:
        return await self._arun_step(self._reserve_batch(items, audit, force, now))

    async def astart(self, call_key: str, *, audit: AuditEvent | None = None) -> bool:
        return await self._arun_step(lambda: self._start_step(call_key, audit))

    async def afinish(
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
        await self._arun_step(
            lambda: self._settle_step(call_key, ok, False, actual_cost, result, audit)
        )

    async def arelease(self, call_key: str, *, audit: AuditEvent | None = None) -> None:
        await self._arun_step(lambda: self._settle_step(call_key, False, True, None, None, audit))

    async def aappend_audit(self, event: AuditEvent) -> AuditRecord | None:
        return await self._arun_step(lambda: self._append_audit_step(event))

    def _chain_now(self, conn: Any) -> None:
        self._drive(conn, self._chain_all_step())

    async def _achain_now(self, conn: Any) -> None:
        await self._adrive(conn, self._chain_all_step())

    async def aclose(self) -> None:
        """:meth:`close`, awaited: this loop's async pool is closed here (after chaining
        what the store left waiting), the sync pool on a worker thread (closing it joins
        its threads)."""
        await self._aconns.aclose(self._achain_now if self._unchained else None)
        last = None
        if self._unchained and self._conns.opened:
            last = self._chain_now
        await asyncio.to_thread(self._conns.close, last)

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r})"
