"""What the pipeline asks the outside world to do, and the two drivers that do it.

The pipeline of a guarded call (:mod:`agent_guardrails.pipeline.flow`) is written once, as a
generator that *yields* an :class:`Effect` whenever it needs something done outside pure
Python: a store operation, the tool body, a human's answer, a draft. A driver runs the
generator to its end:

- :func:`drive` performs each effect synchronously (the sync store, ``body(args)``);
- :func:`adrive` awaits each one (the store's ``a``-prefixed async method where it has one,
  an ``async`` body or simulate function).

So sync and async share every step of the pipeline; only the I/O differs. An exception an
effect raises (``StoreUnavailable``, a LangGraph interrupt, the tool's own error) is thrown
back into the generator at the ``yield`` that asked for it, so the pipeline handles it where
it happened, exactly as a direct call would.

>>> def double(x: int) -> Flow[int]:
...     y = yield Invoke(lambda v: v * 2, x)
...     return int(y)
>>> drive(double(21), store=None)
42
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

__all__ = ["Await", "Effect", "Flow", "Invoke", "Pause", "StoreOp", "adrive", "drive"]

T = TypeVar("T")


class Effect:
    """Something the pipeline needs done; a driver does it and sends back the result."""

    __slots__ = ()

    def run(self, store: Any) -> Any:
        raise NotImplementedError

    async def arun(self, store: Any) -> Any:
        raise NotImplementedError


Flow = Generator[Effect, Any, T]
"""A pipeline step: yields effects, returns its result."""


class StoreOp(Effect):
    """``store.<name>(*args, **kwargs)``; async: ``store.a<name>(...)`` if the store has it."""

    __slots__ = ("args", "kwargs", "name")

    def __init__(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.name = name
        self.args = args
        self.kwargs = kwargs

    def run(self, store: Any) -> Any:
        return getattr(store, self.name)(*self.args, **self.kwargs)

    async def arun(self, store: Any) -> Any:
        method = getattr(store, "a" + self.name, None)
        if method is None:  # a store with sync I/O only
            return getattr(store, self.name)(*self.args, **self.kwargs)
        return await method(*self.args, **self.kwargs)

    def __repr__(self) -> str:
        return f"StoreOp({self.name!r})"


class Invoke(Effect):
    """``fn(*args)``: the tool body, an approver, a simulate function. In an async driver
    an awaitable result is awaited."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn = fn
        self.args = args

    def run(self, store: Any) -> Any:
        return self.fn(*self.args)

    async def arun(self, store: Any) -> Any:
        result = self.fn(*self.args)
        if inspect.isawaitable(result):
            return await result
        return result


class Pause(Effect):
    """Let other coroutines on the loop run (async); nothing to do in sync code, where
    other threads run anyway."""

    __slots__ = ()

    def run(self, store: Any) -> Any:
        return None

    async def arun(self, store: Any) -> Any:
        await asyncio.sleep(0)


class Await(Effect):
    """An awaitable (an async approver's answer): awaited by the async driver; the sync
    driver cannot, and says so."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.awaitable = awaitable

    def run(self, store: Any) -> Any:
        close = getattr(self.awaitable, "close", None)
        if close is not None:
            close()  # never awaited: close it so Python does not warn
        raise TypeError(
            "an async function was given where the sync API runs (an async approver or "
            "simulate function): use guard.arun() / ainvoke, or make it a plain function"
        )

    async def arun(self, store: Any) -> Any:
        return await self.awaitable


def drive(flow: Flow[T], store: Any) -> T:
    """Run ``flow`` to its end, doing each effect synchronously."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(send) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        send = error = None
        try:
            if isinstance(effect, StoreOp):  # the usual effect: call the store directly
                send = getattr(store, effect.name)(*effect.args, **effect.kwargs)
            else:
                send = effect.run(store)
        except GeneratorExit:
            flow.close()
            raise
        except BaseException as exc:  # thrown back into the flow where it asked
            error = exc


async def adrive(flow: Flow[T], store: Any) -> T:
    """Run ``flow`` to its end, awaiting each effect."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(send) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        send = error = None
        try:
            send = await effect.arun(store)
        except GeneratorExit:  # the coroutine is being closed: close the flow, no more I/O
            flow.close()
            raise
        except BaseException as exc:
            error = exc
