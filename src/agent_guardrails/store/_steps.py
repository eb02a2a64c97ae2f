"""Store operations written once, as generators of the statements they need, and the two
drivers that run them: :func:`drive` (sync) and :func:`adrive` (async).

A SQL store's operation (a *step*) is a generator: it yields what it needs done on the
database, a :class:`Statement` (run it; send back its first row, every row or nothing), a
:class:`Hot` statement (PostgreSQL's prepared hot-path functions) or a :class:`Transaction`
(run another step inside one), or :class:`Compute` (CPU work on rows it read, which an
async driver does off the event loop), and gets the result back at its ``yield``; it
returns the operation's result. An error the database raises is thrown back into the step at the
``yield`` that asked, so the step handles it where it happened, exactly as a direct call
would (the pipeline, :mod:`agent_guardrails.pipeline.effects`, works the same way).

A driver runs a step to its end with a *performer*, a function of one effect that does it on
a connection: the sync performer calls the sync driver (``conn.execute``, libpq for
:class:`Hot`), the async one awaits the async driver. So a step's logic (which statements,
in which order, what their rows mean, which error means what) is written once, and sync and
async differ only in how a statement reaches the server.

>>> def answer() -> Step[int]:
...     row = yield Statement("SELECT 42", (), ONE)
...     return int(row[0])
>>> drive(answer(), lambda effect: (42,))
42
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, TypeVar

__all__ = [
    "ALL",
    "COUNT",
    "Compute",
    "ONE",
    "RUN",
    "Hot",
    "Statement",
    "Step",
    "Transaction",
    "adrive",
    "drive",
    "just",
]

T = TypeVar("T")

#: What a :class:`Statement` sends back: nothing, its first row (or ``None``), every row,
#: how many rows it changed.
RUN, ONE, ALL, COUNT = 0, 1, 2, 3

Step = Generator[Any, Any, T]
"""An operation: yields effects, returns its result."""


class Statement:
    """Run ``sql`` with ``args`` (``None``: run the text as it is, no placeholders) and send
    back what ``fetch`` asks for (:data:`RUN`, :data:`ONE`, :data:`ALL`, :data:`COUNT`)."""

    __slots__ = ("args", "fetch", "sql")

    def __init__(self, sql: str, args: Sequence[Any] | None = (), fetch: int = RUN) -> None:
        self.sql = sql
        self.args = args
        self.fetch = fetch

    def __repr__(self) -> str:
        return f"Statement({self.sql[:40]!r}...)"


class Hot:
    """PostgreSQL's hot-path statement ``name`` (prepared once per connection) with text
    parameters (UTF-8 bytes, libpq's text format). Sends back ``(value,)``, the first
    column of the first row in libpq's text format (``b"t"``, ``b"3"``), or ``None`` when
    the statement raised SQLSTATE ``expect``."""

    __slots__ = ("expect", "name", "params")

    def __init__(self, name: bytes, params: Sequence[bytes | None], expect: str = "") -> None:
        self.name = name
        self.params = params
        self.expect = expect

    def __repr__(self) -> str:
        return f"Hot({self.name!r})"


class Transaction:
    """Run ``body`` in one transaction and send back its result. ``keyed``: the body is
    keyed by an idempotency key, so a ``COMMIT`` that failed may simply be retried;
    otherwise such a failure raises ``CommitUnknown`` (the outcome is unknown)."""

    __slots__ = ("body", "keyed")

    def __init__(self, body: Step[Any], *, keyed: bool = False) -> None:
        self.body = body
        self.keyed = keyed


class Compute:
    """``fn(*args)``: CPU work a step does on what it read (hashing a page of the audit
    chain). A sync driver calls it in place; PostgreSQL's async driver on a worker thread,
    so that it does not hold the event loop (SQLite's async work is on its store thread)."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn = fn
        self.args = args


def just(value: T) -> Step[T]:
    """A step that needs nothing done and returns ``value``."""
    yield from ()
    return value


def drive(step: Step[T], perform: Callable[[Any], Any]) -> T:
    """Run ``step`` to its end, doing each effect with ``perform``."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = step.send(send) if error is None else step.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        send = error = None
        try:
            send = perform(effect)
        except BaseException as exc:  # thrown back into the step where it asked
            error = exc


async def adrive(step: Step[T], perform: Callable[[Any], Awaitable[Any]]) -> T:
    """Run ``step`` to its end, awaiting each effect done by ``perform``."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = step.send(send) if error is None else step.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        send = error = None
        try:
            send = await perform(effect)
        except BaseException as exc:
            error = exc
