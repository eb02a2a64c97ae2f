"""The hot path's pipelined connection, for async callers of the PostgreSQL store.

A hot-path statement (:class:`~._steps.Hot`: a reservation, a start, a settlement, the
audit chain's step) sent the usual async way costs this process about 230-300 µs of CPU
per round trip: a pool checkout and return, psycopg's cursor and query conversion, and an
``add_reader``/``remove_reader`` pair on the event loop for every wait. :class:`HotPipe`
sends them through one connection per event loop in libpq's pipeline mode instead, with
one reader that stays registered: about 60 µs per statement sent alone and about 20 µs when
many runs send at once (measured ad hoc, ``benchmarks/README.md``). Everything else (the
snapshot, transactions, operators' reads and writes) keeps its pooled connection.

How it keeps the store's promises:

- Each statement is followed by a ``Sync``: it is its own implicit transaction, committed
  or rolled back alone exactly as in autocommit, and its error aborts nothing else.
- Answers come back in the order statements were sent; each caller gets its own.
- The connection is opened in the background the first time a loop wants it; calls made
  before it is open, and while it is opened again after a failure (at most once a second),
  use the pool as before. No call waits for it, and an unreachable server costs no call a
  connection timeout.
- A lost connection (a server restart, a terminated backend) fails every statement waiting
  on it with :class:`PipeLost`, and the store runs that operation again on a pooled
  connection, as it does when a pooled connection breaks.
- Nothing here blocks: libpq runs non-blocking, the loop's reader and writer callbacks do
  the input and output.

One difference from the pool, by design: statements on one connection run one after the
other on the server, so a reservation that waits for a row lock held by another process's
transaction holds up the hot-path statements queued behind it in this process, where with
the pool only the statements needing the same rows would wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from agent_guardrails.store._postgres_connections import (
    StatementFailed,
    check_text_params,
    error_text,
)

__all__ = ["HotPipe", "PipeLost"]

# What means the session is over: a FATAL (or PANIC) error, a connection exception (class
# 08), a shutdown or crash (57P01-57P05; not 57014, a statement cancelled or timed out).
_SESSION_OVER = ("08", "57P0")
_FORGOTTEN = "26000"  # the server forgot a prepared statement (DISCARD ALL): prepare again
_EXISTS = "42P05"  # prepared already


class PipeLost(Exception):
    """The pipelined connection could not take a statement or was lost before its answer:
    the operation runs again on a pooled connection."""


class _Waiting:
    """A statement sent, waiting for its results and then its ``Sync``."""

    __slots__ = ("expect", "future", "prepare", "result")

    def __init__(
        self, future: asyncio.Future[Any] | None, expect: str, prepare: bytes = b""
    ) -> None:
        self.future = future  # None: a prepare
        self.expect = expect
        self.prepare = prepare
        self.result: Any = None


class HotPipe:
    """One connection of an event loop in libpq's pipeline mode (see the module docstring).

    ``conn`` is an open psycopg ``AsyncConnection`` (autocommit, configured) that nothing
    else uses from now on; ``statements`` maps each hot statement's name to its SQL
    (libpq's ``$n`` parameters), prepared on this connection the first time it is sent.
    """

    def __init__(self, conn: Any, statements: Mapping[bytes, bytes]) -> None:
        from psycopg import pq

        self._conn = conn  # kept: psycopg closes a connection object when it is collected
        self._pgconn: Any = conn.pgconn
        self._statements = statements
        self._prepared: set[bytes] = set()
        self._waiting: deque[_Waiting] = deque()
        self._loop = asyncio.get_running_loop()
        self._status = pq.ExecStatus
        self._ok = pq.ConnStatus.OK
        self._sqlstate = pq.DiagnosticField.SQLSTATE
        self._severity = pq.DiagnosticField.SEVERITY_NONLOCALIZED
        self._writing = False
        self.alive = True
        self._pgconn.nonblocking = 1
        self._pgconn.enter_pipeline_mode()
        self._fd: int = self._pgconn.socket
        self._loop.add_reader(self._fd, self._readable)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    async def run(
        self, name: bytes, params: Sequence[bytes | None], expect: str = ""
    ) -> tuple[bytes | None] | None:
        """Run hot statement ``name`` with text parameters: ``(value,)``, its first column
        in libpq's text format, or ``None`` when it raised SQLSTATE ``expect``. Another
        error raises :class:`StatementFailed`; a lost connection :class:`PipeLost`."""
        if not self.alive:
            raise PipeLost("the pipelined connection is closed")
        check_text_params(params)
        future: asyncio.Future[tuple[bytes | None] | None] = self._loop.create_future()
        self._send(name, params, _Waiting(future, expect))
        return await future

    def _send(self, name: bytes, params: Sequence[bytes | None], waiting: _Waiting) -> None:
        pgconn = self._pgconn
        try:
            if name not in self._prepared:
                pgconn.send_prepare(name, self._statements[name])
                pgconn.pipeline_sync()
                self._waiting.append(_Waiting(None, "", name))
                self._prepared.add(name)
            pgconn.send_query_prepared(name, params)
            pgconn.pipeline_sync()
            self._waiting.append(waiting)
            self._flush()
        except Exception as exc:  # the connection is bad: nothing sent can be trusted
            self._lose(exc)
            future = waiting.future
            if future is not None and not future.done():  # (failed before it was queued)
                future.set_exception(PipeLost(str(exc) or type(exc).__name__))

    def _flush(self) -> None:
        if not self._writing and self._pgconn.flush() != 0:
            # The socket took part of it: send the rest when it can take more.
            self._writing = True
            self._loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        try:
            if self._pgconn.flush() == 0:
                self._writing = False
                self._loop.remove_writer(self._fd)
        except Exception as exc:
            self._lose(exc)

    def _readable(self) -> None:
        if not self.alive:  # (closed, or abandoned in a forked child: not ours to read)
            return
        pgconn = self._pgconn
        try:
            pgconn.consume_input()
            ended = False  # the last result was the end of a statement's results
            while self._waiting and not pgconn.is_busy():
                res = pgconn.get_result()
                if res is None:
                    if ended:  # two ends in a row: libpq has nothing queued that we await
                        raise PipeLost("the pipelined connection is out of step")
                    ended = True
                    continue
                ended = False
                if res.status == self._status.PIPELINE_SYNC:
                    self._answer(self._waiting.popleft())
                elif self._waiting[0].result is None:
                    self._waiting[0].result = res
            if not self._waiting and pgconn.status != self._ok:
                raise PipeLost("the server closed the connection")
        except Exception as exc:
            self._lose(exc)

    def _answer(self, waiting: _Waiting) -> None:
        res = waiting.result
        failed = res is not None and res.status not in (
            self._status.TUPLES_OK,
            self._status.COMMAND_OK,
        )
        state = (res.error_field(self._sqlstate) or b"").decode() if failed else ""
        if waiting.future is None:  # a prepare
            if failed and state != _EXISTS:
                self._prepared.discard(waiting.prepare)  # the statement after it fails too
            return
        future = waiting.future
        if future.done():  # its caller was cancelled
            return
        if not failed:
            future.set_result((res.get_value(0, 0),) if res is not None else (None,))
        elif state == waiting.expect and state:
            future.set_result(None)
        elif self._session_over(res, state) or state == _FORGOTTEN:
            if state == _FORGOTTEN:
                self._prepared.clear()
            future.set_exception(PipeLost(error_text(res)))
        else:
            future.set_exception(StatementFailed(error_text(res)))

    def _session_over(self, res: Any, state: str) -> bool:
        """Whether a failed result ended the session (the statement may run again pooled)."""
        fatal = res.error_field(self._severity) in (b"FATAL", b"PANIC")
        return fatal or state.startswith(_SESSION_OVER)

    def _lose(self, exc: BaseException) -> None:
        """The connection is gone (or out of step): fail what waits, close it."""
        if not self.alive:
            return
        self.alive = False
        waiting, self._waiting = self._waiting, deque()
        try:
            for item in waiting:
                future = item.future
                if future is not None and not future.done() and not future.get_loop().is_closed():
                    future.set_exception(PipeLost(str(exc) or type(exc).__name__))
        finally:
            self._unregister()
            with contextlib.suppress(Exception):
                self._pgconn.finish()

    def _unregister(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._fd)
        if self._writing:
            with contextlib.suppress(Exception):
                self._loop.remove_writer(self._fd)
            self._writing = False

    def close(self) -> None:
        """Close the connection (on its loop's thread, or once that loop is closed): what
        still waits fails with :class:`PipeLost`."""
        self._lose(PipeLost("the store is closed"))

    def abandon(self) -> None:
        """In a forked child: forget the connection without a word to the server (the
        session is the parent's)."""
        self.alive = False
        self._waiting = deque()
