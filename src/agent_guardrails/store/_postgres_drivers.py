"""How the PostgreSQL store runs a step (:mod:`._steps`) on a connection, sync or async.

A step yields what it needs: a :class:`~._steps.Statement`, a hot-path statement
(:class:`~._steps.Hot`, prepared per connection: run through libpq directly on a sync
connection, ``execute(prepare=True)`` on an async one) or a :class:`~._steps.Transaction`
around a nested step. :class:`PostgresDrivers` performs each, on a pooled connection, and
gives the rows back; the store (:mod:`.postgres`) holds the pools and the statements.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from agent_guardrails.store._postgres_connections import (
    AsyncPostgresConnections,
    PostgresConnections,
    StatementFailed,
    atransaction,
    transaction,
)
from agent_guardrails.store._postgres_pipe import HotPipe, PipeLost
from agent_guardrails.store._steps import (
    ALL,
    COUNT,
    ONE,
    Compute,
    Hot,
    Statement,
    Step,
    Transaction,
    adrive,
    drive,
)

__all__ = ["PostgresDrivers"]

T = TypeVar("T")


def _text(value: Any) -> bytes | None:
    """A value psycopg parsed, back in libpq's text format (what the sync hot path sees)."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return b"t" if value else b"f"
    return str(value).encode()


class _Unpiped(Exception):
    """A hot-path step asked the pipe for a statement it does not take: run it pooled."""


class PostgresDrivers:
    """The drivers of :class:`~.postgres.PostgresStore`'s steps (mixed into it)."""

    _conns: PostgresConnections
    _aconns: AsyncPostgresConnections
    _hot: dict[bytes, bytes]
    _ahot: dict[bytes, str]
    _ready: bool
    _q: dict[str, str]
    _pg: Any

    def _perform(self, conn: Any, effect: Any) -> Any:
        """Do one effect of a step (:mod:`._steps`) on sync connection ``conn``."""
        kind = type(effect)
        if kind is Compute:
            return effect.fn(*effect.args)
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
            if effect.fetch == COUNT:
                return cur.rowcount
            return cur.fetchall() if effect.fetch == ALL else None
        body = effect.body
        if effect.keyed:  # (a failed COMMIT may be retried: the step is keyed)
            with conn.transaction():
                return self._drive(conn, body)
        return transaction(conn, lambda: self._drive(conn, body))

    async def _aperform(self, conn: Any, effect: Any) -> Any:
        """Do one effect of a step on async connection ``conn``: as :meth:`_perform`."""
        kind = type(effect)
        if kind is Compute:  # CPU work: not on the event loop
            return await asyncio.to_thread(effect.fn, *effect.args)
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
            if effect.fetch == COUNT:
                return cur.rowcount
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

    async def _arun_hot(self, step: Callable[[], Step[T]]) -> T:
        """:meth:`_arun_step` for a hot-path step (the snapshot, a reservation, a start, a
        settlement): its :class:`~._steps.Hot` statements go through this loop's pipelined
        connection when it is open (:mod:`._postgres_pipe`). The step runs on a pooled
        connection when the pipe is not open, and again from its start when the pipe was
        lost or the step needs a statement of another kind before anything committed (the
        general path after ``GR003``, which rolled its statement back; a forced or
        repeated-counter reservation, whose first statement is of that kind)."""
        pipe = self._aconns.pipe(self._hot) if self._ready else None  # (set up first)
        if pipe is not None:
            try:
                return await adrive(step(), functools.partial(self._apiped, pipe))
            except (PipeLost, _Unpiped):
                pass
            except StatementFailed as exc:
                self._aconns.unavailable(exc)
        return await self._arun_step(step)

    async def _apiped(self, pipe: HotPipe, effect: Any) -> Any:
        if type(effect) is not Hot:
            raise _Unpiped
        return await pipe.run(effect.name, effect.params, effect.expect)

    def _read(self, step: Callable[[], Step[T]]) -> T:
        return self._run_step(step)

    def _in_one_snapshot(self, step: Step[T]) -> Step[T]:
        """``step`` in a read-only ``REPEATABLE READ`` transaction: its statements see one
        snapshot (outside one, each sees what was committed when it began)."""

        def inside() -> Step[T]:
            yield Statement("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return (yield from step)

        result: T = yield Transaction(inside())
        return result

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
