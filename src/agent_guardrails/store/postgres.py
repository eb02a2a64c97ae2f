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
:mod:`._postgres_connections` the pools and the retry rule; :mod:`._postgres_pipe` the async
hot path's pipelined connection; :mod:`._operators` the operator
steps and reads it shares with SQLite; the SQL is in ``sql/postgres.sql``,
``sql/postgres_functions.sql``, ``sql/postgres_upgrade_2.sql`` and ``sql/operators.sql``.
Every operation is one *step* (:mod:`._steps`): a generator that yields the statements it
needs and decides what their rows and errors mean, run on a connection by a driver.

In short: construction never connects (the first operation sets up the schema and opens a
``psycopg_pool`` pool); a broken connection is retried once on a fresh one; each hot-path
step is one statement calling a function the store installs (``sql/postgres_functions.sql``);
audit records go to an outbox in the hot path and are chained in batches (before every read
of the log); async callers get the same steps on ``psycopg_pool.AsyncConnectionPool``, the
hot path's through one pipelined connection per event loop (:mod:`._postgres_pipe`). How
each point of the contract is kept, the retry rule, schema upgrades, tamper evidence and the
measurements: ``docs/postgres-store.md``. Errors from the server or the network raise
:class:`~agent_guardrails.errors.StoreUnavailable` with the driver's message; passwords are
never included (``store.url`` has them replaced by ``***``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
    StatementFailed,
)
from agent_guardrails.store._postgres_drivers import PostgresDrivers
from agent_guardrails.store._postgres_pipe import PipeLost
from agent_guardrails.store._postgres_schema import (
    SCHEMA_VERSION,
    chain_lock,
    create_schema,
    current_schema,
    quote_ident,
)
from agent_guardrails.store._statements import POSTGRES, preload, statements
from agent_guardrails.store._steps import (
    ONE,
    Hot,
    Statement,
    Step,
    Transaction,
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
_CHAIN, _SNAPSHOT = b"ag_chain", b"ag_snapshot"
_DOLLAR = re.compile(r"\$\d+")


class PostgresStore(PostgresDrivers, AsyncSQLOperations):
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
        q = statements(
            POSTGRES, fill, "operators.sql", "retention.sql", "gate_evidence.sql", "postgres.sql"
        )
        hot = {
            _RESERVE1: q["hot_reserve1"].encode(),
            _START: q["hot_start"].encode(),
            _SETTLE: q["hot_settle"].encode(),
            _CHAIN: q["hot_chain"].encode(),
            _SNAPSHOT: q["hot_snapshot"].encode(),
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
        # (A broken pooled connection goes back to the pool, which replaces it; a lost
        # pipe is opened again.)
        with contextlib.suppress(self._pg.Error, StatementFailed, PipeLost):
            yield Hot(_CHAIN, [str(self.CHAIN_BATCH).encode()])

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
        listed = _rows.pg_text_array(keys)
        params = [dial_key.encode(), listed, listed, call_key.encode()]
        (text,) = yield Hot(_SNAPSHOT, params)
        level, switches, found_keys, found_used, pack, call = json.loads(text)
        found = dict(zip(found_keys, found_used, strict=True))
        scopes = self._scopes
        return Snapshot(
            level=int(level) if level is not None else None,
            kill_switches=tuple(_rows.parse_scope(k, scopes) for k in switches),
            used={k: float(found.get(k, 0.0)) for k in keys},
            call=_rows.call_record(call) if call is not None else None,
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
        return await self._arun_hot(lambda: self._snapshot_step(dial_key, keys, call_key))

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
        return await self._arun_hot(step)

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
        return await self._arun_hot(lambda: self._start_step(call_key, audit))

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
        await self._arun_hot(
            lambda: self._settle_step(call_key, ok, False, actual_cost, result, audit)
        )

    async def arelease(self, call_key: str, *, audit: AuditEvent | None = None) -> None:
        await self._arun_hot(lambda: self._settle_step(call_key, False, True, None, None, audit))

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
