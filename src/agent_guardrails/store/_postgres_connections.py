"""The PostgreSQL store's connections: a ``psycopg_pool`` pool opened on first use, the retry
rule, fork safety, and the hot path's prepared statements run through libpq; and the same
for async callers (:class:`AsyncPostgresConnections`, ``psycopg_pool.AsyncConnectionPool``).

See :mod:`.postgres` ("Connections") for what the store promises; this module keeps it:

- :meth:`PostgresConnections.run` runs one operation (a function of a connection) on a
  connection from the pool. The first call opens the pool, after ``setup`` (schema
  creation) has run on a connection of its own, once, under a lock; if that fails the
  call raises and the next one tries again.
- A connection found broken (its libpq status is bad after an error) goes back to the
  pool, which discards and replaces it, and the operation runs once more on a connection
  checked alive (an empty query; connections that fail the check are handed back too).
  A write whose ``COMMIT`` itself failed (:class:`CommitUnknown`) is not retried.
- Every other driver error, and a pool that has no connection for ``timeout`` seconds,
  raises :class:`~agent_guardrails.errors.StoreUnavailable` with the redacted URL.

:class:`AsyncPostgresConnections` keeps the same rules with psycopg's async connections:
:meth:`AsyncPostgresConnections.run` awaits ``work(connection)``, the first call on an
event loop opens that loop's ``AsyncConnectionPool`` (after ``setup``, unless the sync side
has done it), a broken connection is replaced and the operation retried once, and errors
raise the same :class:`StoreUnavailable`. Each loop also gets, opened in the background,
the hot path's pipelined connection (:meth:`AsyncPostgresConnections.pipe`,
:mod:`._postgres_pipe`). An async pool belongs to the event loop that
opened it (its connections and workers live on that loop): a store used from several loops
(``asyncio.run`` called more than once, or loops in several threads) opens one pool per
loop, each sized ``pool_min``/``pool_max``, and forgets the pool of a loop that was closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from agent_guardrails.errors import StoreUnavailable

if TYPE_CHECKING:
    from agent_guardrails.store._postgres_pipe import HotPipe

__all__ = [
    "AsyncPostgresConnections",
    "CommitUnknown",
    "PostgresConnections",
    "StatementFailed",
    "atransaction",
    "transaction",
]

T = TypeVar("T")
# Pools a forked child inherited: never used nor closed there (closing would end the
# parent's sessions), only kept referenced so that nothing is torn down behind its back.
_ABANDONED: list[Any] = []


class StatementFailed(Exception):
    """A statement run through libpq (:meth:`PostgresConnections.exec_prepared`) failed."""


class CommitUnknown(Exception):
    """``COMMIT`` failed: the transaction may or may not have committed (not retried)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def transaction(conn: Any, body: Callable[[], T]) -> T:
    """Run ``body`` in a transaction on ``conn``. A failure of the ``COMMIT`` itself
    raises :class:`CommitUnknown`: the operation must not be retried blindly."""
    committing = False
    try:
        with conn.transaction():
            result = body()
            committing = True
    except Exception as exc:
        if committing:
            raise CommitUnknown(exc) from exc
        raise
    return result


async def atransaction(conn: Any, body: Callable[[], Awaitable[T]]) -> T:
    """:func:`transaction`, on an async connection."""
    committing = False
    try:
        async with conn.transaction():
            result = await body()
            committing = True
    except Exception as exc:
        if committing:
            raise CommitUnknown(exc) from exc
        raise
    return result


def no_connection(url: str, timeout: float, pool_max: int) -> StoreUnavailable:
    return StoreUnavailable(
        f"{url}: no connection within {timeout:g} s: the server cannot be reached, or all "
        f"{pool_max} of the pool's connections are busy (raise ?pool_max=)"
    )


def message(exc: BaseException) -> str:
    """A driver error's message on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def check_text_params(params: Sequence[bytes | None]) -> None:
    """Refuse a text parameter holding a NUL byte: libpq reads text parameters up to their
    first NUL, so ``"a\\x00b"`` would be sent as ``"a"`` (two call keys would become one).
    Raises :class:`StatementFailed`, as psycopg refuses them on its own path."""
    for param in params:
        if param is not None and b"\x00" in param:
            raise StatementFailed("PostgreSQL text fields cannot contain NUL (0x00) bytes")


def error_text(res: Any) -> str:
    """The server's message in a failed libpq result, on one line, without its severity."""
    text = str(res.error_message.decode(errors="replace"))
    if text.startswith(("ERROR:", "FATAL:")):
        text = text.split(":", 1)[1]
    return " ".join(text.split()) or "the statement failed"


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def raise_unavailable(url: str, pools: Any, exc: BaseException, note: str = "") -> NoReturn:
    """Raise ``StoreUnavailable`` for driver error ``exc``."""
    if isinstance(exc, pools.PoolClosed):
        raise StoreUnavailable(f"{url}: the store is closed") from exc
    raise StoreUnavailable(f"{url}: {message(exc)}{note}") from exc


_UNKNOWN = " (the outcome of its commit is unknown)"


class PostgresConnections:
    """The pool of one store; see the module docstring."""

    def __init__(
        self,
        url: str,
        conninfo: str,
        *,
        pool_min: int,
        pool_max: int,
        timeout: float,
        setup: Callable[[Any], None],
        ready: Callable[[], bool] = lambda: False,
    ) -> None:
        import psycopg
        import psycopg_pool

        self.url = url  # redacted
        self._ready = ready
        self._pg: Any = psycopg
        self._pools: Any = psycopg_pool
        self._conninfo = conninfo
        self._min, self._max, self.timeout = pool_min, pool_max, timeout
        self._setup = setup
        self._pool: Any = None
        self._lock = threading.Lock()
        self.closed = False
        self._prepared: weakref.WeakKeyDictionary[Any, set[bytes]] = weakref.WeakKeyDictionary()
        self._ok = psycopg.pq.ExecStatus.COMMAND_OK
        self._rows = psycopg.pq.ExecStatus.TUPLES_OK
        self._sqlstate = psycopg.pq.DiagnosticField.SQLSTATE
        if hasattr(os, "register_at_fork"):
            me = weakref.ref(self)

            def forked() -> None:
                conns = me()
                if conns is not None:
                    conns._forget()

            os.register_at_fork(after_in_child=forked)

    # ------------------------------------------------------------------ the pool

    def _forget(self) -> None:
        """In a forked child: the parent's pool is not ours; open a new one on first use."""
        if self._pool is not None:
            _ABANDONED.append(self._pool)
        self._pool = None
        self._lock = threading.Lock()
        self._prepared = weakref.WeakKeyDictionary()

    def _configure(self, conn: Any) -> None:
        # Timestamps must come back exactly as written: they are hashed into the chain.
        conn.execute("SET extra_float_digits = 3")
        # A row lock held elsewhere (a psql left in a transaction) fails the statement after
        # the URL's timeout: a fail-closed decision, never a hung run. (A SET, not a startup
        # option: PgBouncer refuses unknown startup parameters.)
        conn.execute(f"SET lock_timeout = {lock_ms(self.timeout)}")

    def _connect(self) -> Any:
        """A connection of its own, outside the pool (for ``setup``)."""
        try:
            # UTF8 whatever the server's encoding: the hot path encodes its own parameters.
            conn = self._pg.connect(self._conninfo, autocommit=True, client_encoding="UTF8")
        except self._pg.Error as exc:
            raise StoreUnavailable(f"{self.url}: {message(exc)}") from exc
        try:
            self._configure(conn)
        except self._pg.Error as exc:
            conn.close()
            raise StoreUnavailable(f"{self.url}: {message(exc)}") from exc
        return conn

    @property
    def opened(self) -> bool:
        """Whether the pool is open (some operation has used it)."""
        return self._pool is not None

    def _open(self) -> Any:
        """The pool, opened (after ``setup``, unless ``ready()``) by the first call, once."""
        with self._lock:
            if self.closed:
                raise StoreUnavailable(f"{self.url}: the store is closed")
            if self._pool is None:
                if not self._ready():
                    conn = self._connect()
                    try:
                        self._setup(conn)
                    except self._pg.Error as exc:
                        raise StoreUnavailable(f"{self.url}: {message(exc)}") from exc
                    finally:
                        conn.close()
                pool = self._pools.ConnectionPool(
                    self._conninfo,
                    kwargs={"autocommit": True, "client_encoding": "UTF8"},
                    min_size=self._min,
                    max_size=self._max,
                    configure=self._configure,
                    timeout=self.timeout,
                    name="agent-guardrails",
                    num_workers=2,
                    open=False,
                )
                pool.open()
                if self._min:
                    # Wait for pool_min connections: a first request that found none ready
                    # would make the pool grow by one more than a single thread needs.
                    try:
                        pool.wait(timeout=self.timeout)
                    except self._pools.PoolTimeout:
                        pool.close()
                        raise StoreUnavailable(
                            f"{self.url}: no connection within {self.timeout:g} s"
                        ) from None
                self._pool = pool
            return self._pool

    def _get(self, pool: Any, *, checked: bool = False) -> Any:
        """A connection from ``pool``; ``checked``: one that answered an empty query."""
        deadline = time.monotonic() + self.timeout
        timeout = self.timeout
        while True:
            try:
                conn = pool.getconn(timeout)
            except self._pools.PoolTimeout:
                raise no_connection(self.url, self.timeout, self._max) from None
            except self._pools.PoolClosed:
                raise StoreUnavailable(f"{self.url}: the store is closed") from None
            if not checked:
                return conn
            try:
                pool.check_connection(conn)
                return conn
            except self._pg.Error:
                pool.putconn(conn)  # broken: the pool replaces it
            timeout = max(deadline - time.monotonic(), 0.001)

    def run(self, work: Callable[[Any], T], *, retry: bool = True) -> T:
        """``work(connection)`` on a pooled connection, retried once on a fresh one if the
        connection turns out broken (not after :class:`CommitUnknown`, nor if not
        ``retry``). Driver errors raise :class:`StoreUnavailable`."""
        pool = self._pool
        if pool is None:
            pool = self._open()
        conn = self._get(pool)
        try:
            return work(conn)
        except CommitUnknown as exc:
            self._raise(exc.error, _UNKNOWN)
        except (self._pg.Error, StatementFailed) as exc:
            if not (retry and conn.closed):
                self._raise(exc)
        finally:
            pool.putconn(conn)  # a broken one is discarded and replaced by the pool
        conn = self._get(pool, checked=True)
        try:
            return work(conn)
        except CommitUnknown as exc:
            self._raise(exc.error, _UNKNOWN)
        except (self._pg.Error, StatementFailed) as exc:
            self._raise(exc)
        finally:
            pool.putconn(conn)

    def _raise(self, exc: BaseException, note: str = "") -> NoReturn:
        raise_unavailable(self.url, self._pools, exc, note)

    def close(self, last: Callable[[Any], None] | None = None) -> None:
        """Run ``last`` on a connection if the pool is open (best effort), then close it."""
        with self._lock:
            self.closed = True
            pool, self._pool = self._pool, None
        if pool is None:
            return
        if last is not None:
            try:
                conn = pool.getconn(timeout=self.timeout)
            except self._pg.Error:
                conn = None
            if conn is not None:
                try:
                    last(conn)
                except self._pg.Error:
                    pass
                finally:
                    pool.putconn(conn)
        pool.close()

    # ------------------------------------------------------------------ the hot path

    def exec_prepared(
        self, conn: Any, name: bytes, sql: bytes, params: Sequence[bytes | None], expect: str = ""
    ) -> Any:
        """Run statement ``name`` (``sql``, prepared on this connection on first use) with
        text parameters, through libpq directly (``Connection.pgconn``, psycopg's documented
        low-level interface): one round trip, as ``conn.execute`` would, with about 100 µs
        less Python per call, which is most of what a process spends per reservation. The
        result, or ``None`` when the statement raised SQLSTATE ``expect``; any other error
        raises :class:`StatementFailed`."""
        check_text_params(params)
        pgconn = conn.pgconn
        prepared = self._prepared.get(conn)
        if prepared is None:
            prepared = self._prepared[conn] = set()
        for attempt in (1, 2):
            if name not in prepared:
                res = pgconn.prepare(name, sql)
                if res.status != self._ok and res.error_field(self._sqlstate) != b"42P05":
                    self._failed(res)  # (42P05: it was prepared already)
                prepared.add(name)
            res = pgconn.exec_prepared(name, params)
            if res.status == self._rows:
                return res
            state = (res.error_field(self._sqlstate) or b"").decode()
            if state and state == expect:  # (a lost connection's error has no SQLSTATE)
                return None
            if state == "26000" and attempt == 1:  # the server forgot it (DISCARD ALL)
                prepared.discard(name)
                continue
            self._failed(res)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _failed(res: Any) -> NoReturn:
        raise StatementFailed(error_text(res))


# ---------------------------------------------------------------------------- async


class AsyncPostgresConnections:
    """The async pools of one store (one per event loop); see the module docstring."""

    def __init__(
        self,
        url: str,
        conninfo: str,
        *,
        pool_min: int,
        pool_max: int,
        timeout: float,
        setup: Callable[[Any], Awaitable[None]],
        ready: Callable[[], bool],
    ) -> None:
        import psycopg
        import psycopg_pool

        self.url = url  # redacted
        self._pg: Any = psycopg
        self._pools: Any = psycopg_pool
        self._conninfo = conninfo
        self._min, self._max, self.timeout = pool_min, pool_max, timeout
        self._setup = setup
        self._ready = ready
        # Pools and their opening locks, by event loop. Touched only by the loop they
        # belong to, except by close() (and a dict operation is atomic).
        self._by_loop: dict[asyncio.AbstractEventLoop, Any] = {}
        self._opening: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._closing: set[asyncio.Task[None]] = set()
        # The hot path's pipelined connections (:mod:`._postgres_pipe`), by event loop, and
        # when each loop may next try to open one.
        self._pipes: dict[asyncio.AbstractEventLoop, HotPipe] = {}
        self._pipe_due: dict[asyncio.AbstractEventLoop, float] = {}
        # libpq 14 or later has pipeline mode (psycopg[binary] ships one); else the pool.
        self._pipelines: bool = psycopg.pq.version() >= 140000
        self.closed = False
        if hasattr(os, "register_at_fork"):
            me = weakref.ref(self)

            def forked() -> None:
                conns = me()
                if conns is not None:
                    _ABANDONED.extend(conns._by_loop.values())
                    conns._by_loop = {}
                    conns._opening = {}
                    for pipe in conns._pipes.values():
                        pipe.abandon()
                    _ABANDONED.extend(conns._pipes.values())
                    conns._pipes = {}
                    conns._pipe_due = {}

            os.register_at_fork(after_in_child=forked)

    @property
    def opened(self) -> bool:
        """Whether some event loop's pool is open."""
        return bool(self._by_loop)

    async def _configure(self, conn: Any) -> None:
        # Timestamps must come back exactly as written: they are hashed into the chain.
        await conn.execute("SET extra_float_digits = 3")
        await conn.execute(f"SET lock_timeout = {lock_ms(self.timeout)}")  # see the sync one

    async def _connect(self) -> Any:
        """A connection of its own, outside the pool (for ``setup``)."""
        try:
            conn = await self._pg.AsyncConnection.connect(
                self._conninfo, autocommit=True, client_encoding="UTF8"
            )
        except self._pg.Error as exc:
            raise StoreUnavailable(f"{self.url}: {message(exc)}") from exc
        try:
            await self._configure(conn)
        except self._pg.Error as exc:
            await conn.close()
            raise StoreUnavailable(f"{self.url}: {message(exc)}") from exc
        return conn

    async def _open(self) -> Any:
        """This event loop's pool, opened (after ``setup``, unless ``ready()``) by its first
        call, once."""
        loop = asyncio.get_running_loop()
        lock = self._opening.get(loop)
        if lock is None:
            lock = self._opening.setdefault(loop, asyncio.Lock())
        async with lock:
            if self.closed:
                raise StoreUnavailable(f"{self.url}: the store is closed")
            pool = self._by_loop.get(loop)
            if pool is not None:
                return pool
            for other in [lp for lp in self._by_loop if lp.is_closed()]:
                # Its loop is gone (asyncio.run ended without aclose()): let it go.
                self._opening.pop(other, None)
                self._pipe_due.pop(other, None)
                gone_pipe = self._pipes.pop(other, None)
                if gone_pipe is not None:
                    gone_pipe.close()
                gone = self._by_loop.pop(other, None)
                if gone is not None:
                    self._close_elsewhere(other, gone, None)
            if not self._ready():
                conn = await self._connect()
                try:
                    await self._setup(conn)
                except self._pg.Error as exc:
                    raise StoreUnavailable(f"{self.url}: {message(exc)}") from exc
                finally:
                    await conn.close()
            pool = self._pools.AsyncConnectionPool(
                self._conninfo,
                kwargs={"autocommit": True, "client_encoding": "UTF8"},
                min_size=self._min,
                max_size=self._max,
                configure=self._configure,
                timeout=self.timeout,
                name="agent-guardrails-async",
                num_workers=2,
                open=False,
            )
            await pool.open()
            if self._min:
                try:
                    await pool.wait(timeout=self.timeout)
                except self._pools.PoolTimeout:
                    await pool.close()
                    raise StoreUnavailable(
                        f"{self.url}: no connection within {self.timeout:g} s"
                    ) from None
            self._by_loop[loop] = pool
            return pool

    async def _get(self, pool: Any, *, checked: bool = False) -> Any:
        """A connection from ``pool``; ``checked``: one that answered an empty query."""
        deadline = time.monotonic() + self.timeout
        timeout = self.timeout
        while True:
            try:
                conn = await pool.getconn(timeout)
            except self._pools.PoolTimeout:
                raise no_connection(self.url, self.timeout, self._max) from None
            except self._pools.PoolClosed:
                raise StoreUnavailable(f"{self.url}: the store is closed") from None
            if not checked:
                return conn
            try:
                await pool.check_connection(conn)
                return conn
            except self._pg.Error:
                await pool.putconn(conn)  # broken: the pool replaces it
            timeout = max(deadline - time.monotonic(), 0.001)

    async def run(self, work: Callable[[Any], Awaitable[T]], *, retry: bool = True) -> T:
        """:meth:`PostgresConnections.run`, awaited: ``await work(connection)`` on a
        pooled connection, retried once on a fresh one if the connection broke."""
        pool = self._by_loop.get(asyncio.get_running_loop())
        if pool is None:
            pool = await self._open()
        conn = await self._get(pool)
        try:
            return await work(conn)
        except CommitUnknown as exc:
            raise_unavailable(self.url, self._pools, exc.error, _UNKNOWN)
        except (self._pg.Error, StatementFailed) as exc:
            if not (retry and conn.closed):
                raise_unavailable(self.url, self._pools, exc)
        finally:
            await pool.putconn(conn)  # a broken one is discarded and replaced by the pool
        conn = await self._get(pool, checked=True)
        try:
            return await work(conn)
        except CommitUnknown as exc:
            raise_unavailable(self.url, self._pools, exc.error, _UNKNOWN)
        except (self._pg.Error, StatementFailed) as exc:
            raise_unavailable(self.url, self._pools, exc)
        finally:
            await pool.putconn(conn)

    def unavailable(self, exc: BaseException) -> NoReturn:
        """Raise :class:`StoreUnavailable` for driver error ``exc``."""
        raise_unavailable(self.url, self._pools, exc)

    # ------------------------------------------------------------------ the hot path's pipe

    PIPE_RETRY = 1.0  # seconds between attempts to open a loop's pipelined connection

    def pipe(self, statements: Mapping[bytes, bytes]) -> HotPipe | None:
        """This event loop's pipelined connection for the hot path (:mod:`._postgres_pipe`),
        or ``None`` while it is not open: then it is opened in the background (at most once
        every :attr:`PIPE_RETRY` seconds) and the caller uses the pool meanwhile."""
        loop = asyncio.get_running_loop()
        pipe = self._pipes.get(loop)
        if pipe is not None and pipe.alive:
            return pipe
        now = time.monotonic()
        if self.closed or not self._pipelines or now < self._pipe_due.get(loop, 0.0):
            return None
        self._pipe_due[loop] = math.inf  # one opening at a time; retried after it ends
        task = loop.create_task(self._open_pipe(loop, statements))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return None

    async def _open_pipe(
        self, loop: asyncio.AbstractEventLoop, statements: Mapping[bytes, bytes]
    ) -> None:
        from agent_guardrails.store._postgres_pipe import HotPipe

        try:
            try:
                await self._open()  # the pool first: the schema is set up by then
                conn = await self._connect()
            except StoreUnavailable:
                return  # tried again on a later call, at most once every PIPE_RETRY seconds
            try:
                if not self.closed:
                    self._pipes[loop] = HotPipe(conn, statements)
                    return
            except Exception:  # (e.g. lost at once) tried again later, as above
                pass
            await conn.close()
        finally:
            self._pipe_due[loop] = time.monotonic() + self.PIPE_RETRY

    def _close_pipes(self, pipes: list[HotPipe]) -> None:
        current = _running_loop()
        for pipe in pipes:
            loop = pipe.loop
            if loop is current or loop.is_closed() or not loop.is_running():
                pipe.close()
                continue
            try:
                loop.call_soon_threadsafe(pipe.close)
            except RuntimeError:  # it closed meanwhile
                pipe.close()

    async def _close_pool(self, pool: Any, last: Callable[[Any], Awaitable[None]] | None) -> None:
        if last is not None:
            try:
                conn = await pool.getconn(timeout=self.timeout)
            except self._pg.Error:
                conn = None
            except self._pools.PoolTimeout:
                conn = None
            if conn is not None:
                try:
                    await last(conn)
                except self._pg.Error:
                    pass
                finally:
                    await pool.putconn(conn)
        await pool.close()

    def _take(self) -> list[tuple[asyncio.AbstractEventLoop, Any]]:
        self.closed = True
        pipes, self._pipes = list(self._pipes.values()), {}
        self._close_pipes(pipes)
        pools = list(self._by_loop.items())
        self._by_loop = {}
        self._opening = {}
        return pools

    async def aclose(self, last: Callable[[Any], Awaitable[None]] | None = None) -> None:
        """Close every pool: this loop's here (``last`` first, on one of its connections,
        best effort), the others' on their own loops."""
        current = asyncio.get_running_loop()
        for loop, pool in self._take():
            if loop is current:
                await self._close_pool(pool, last)
            else:
                await asyncio.to_thread(self._close_elsewhere, loop, pool, last)

    def close(self, last: Callable[[Any], Awaitable[None]] | None = None) -> None:
        """Close every pool, from sync code: each on its own loop."""
        for loop, pool in self._take():
            self._close_elsewhere(loop, pool, last)

    def _close_elsewhere(
        self,
        loop: asyncio.AbstractEventLoop,
        pool: Any,
        last: Callable[[Any], Awaitable[None]] | None,
    ) -> None:
        """Close ``pool`` of ``loop`` from a thread not running ``loop``, or schedule it if
        this thread runs it (a sync ``close()`` called from async code)."""
        if loop.is_closed():
            # Nothing can await on that loop any more: close its idle connections' sockets
            # (libpq's PQfinish, no waiting), and let the rest go with the pool.
            for conn in list(getattr(pool, "_pool", ())):
                with contextlib.suppress(Exception):
                    conn.pgconn.finish()
            return
        if _running_loop() is loop:
            task = loop.create_task(self._close_pool(pool, last))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        elif loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._close_pool(pool, last), loop)
            future.result(timeout=self.timeout + 10)
        else:
            loop.run_until_complete(self._close_pool(pool, last))


def lock_ms(timeout: float) -> int:
    """How long a statement waits for a row lock, in milliseconds: the URL's timeout."""
    return max(int(timeout * 1000), 1)
