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

A store whose async methods hand each operation to its own thread (SQLite) saves hand-offs
with ``ahand_off``: :func:`adrive` gives it a :class:`StoreRun`, and the store's thread does
the operation and every store operation the flow asks for right after it, advancing the
flow between them (its pure steps: deciding, building records) in the caller's context, and
hands back the first effect that is not a store operation. A call's snapshot, decision and
reservation are then one round trip to the thread instead of two.

>>> def double(x: int) -> Flow[int]:
...     y = yield Invoke(lambda v: v * 2, x)
...     return int(y)
>>> drive(double(21), store=None)
42
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import os
import queue
import threading
from collections.abc import Awaitable, Callable, Generator
from typing import Any, NamedTuple, TypeVar

__all__ = [
    "Advanced",
    "Await",
    "Effect",
    "Flow",
    "Invoke",
    "OffLoop",
    "user_code",
    "user_threads",
    "Pause",
    "StoreOp",
    "StoreRun",
    "adrive",
    "drive",
    "for_event_loop",
]

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


USER_THREADS = 256
"""Most worker threads that run the application's own code at once (made as needed, an idle
one reused first). Generous, because a check that hangs holds its thread until it returns
(``defaults.check_timeout`` stops the call waiting for it, not the check) and an
``approver=`` holds one for the human's whole time: with a few of those, other calls' checks
still start at once. Beyond it, work queues."""


class DaemonThreads(concurrent.futures.Executor):
    """An executor of up to ``most`` *daemon* threads, made as needed (an idle one is taken
    first), each running one submitted function at a time; beyond ``most`` busy, work
    queues. Daemon, unlike ``ThreadPoolExecutor``'s (which the interpreter joins at exit):
    the application's code that never returns (a hung check, an approver nobody answers)
    does not keep the process from exiting."""

    def __init__(self, most: int, name: str) -> None:
        self._most = most
        self._name = name
        self._work: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # one per worker waiting for work
        self._lock = threading.Lock()
        self._live: set[threading.Thread] = set()
        self._made = 0
        self._closed = False

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:  # (so that shutdown() sees every submit before or after it)
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._work.put((future, fn, args, kwargs))
            if self._idle.acquire(blocking=False) or len(self._live) >= self._most:
                return future  # an idle worker takes it, or it waits for one
            worker = self._new_worker()
        try:
            self._start(worker)
        except BaseException:
            future.cancel()  # queued: whichever worker takes it skips it
            raise
        return future

    def _new_worker(self) -> threading.Thread:
        """A worker, counted live (the lock held); :meth:`_start` starts it."""
        self._made += 1
        worker = threading.Thread(
            target=self._serve, name=f"{self._name}_{self._made}", daemon=True
        )
        self._live.add(worker)
        return worker

    def _start(self, worker: threading.Thread) -> None:
        try:
            worker.start()
        except BaseException:  # no thread to be had (the process's limit): give the slot back
            with self._lock:
                self._live.discard(worker)
            raise

    def _serve(self) -> None:
        stopped = False
        try:
            while True:
                item = self._work.get()
                if item is None:
                    stopped = True
                    return
                future, fn, args, kwargs = item
                del item
                if not future.set_running_or_notify_cancel():
                    self._idle.release()
                    continue
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # the caller's to see
                    self._idle.release()  # idle before the caller hears: it may submit again
                    future.set_exception(exc)
                else:
                    self._idle.release()
                    future.set_result(result)
                    del result  # (an idle worker keeps nothing of its last work alive)
                del future, fn, args, kwargs
        finally:
            with self._lock:
                self._live.discard(threading.current_thread())
            if not stopped:  # a done-callback raised through: a new worker takes its place
                self._replace()

    def _replace(self) -> None:
        with self._lock:
            if self._closed:
                return
            worker = self._new_worker()
        with contextlib.suppress(BaseException):  # none to be had: the next submit makes one
            self._start(worker)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; each worker ends once the work queued before is done (or
        cancelled, with ``cancel_futures``). ``wait``: until then (a hung one never)."""
        with self._lock:
            self._closed = True
            if cancel_futures:
                while True:
                    try:
                        item = self._work.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            workers = list(self._live)
            for _ in workers:
                self._work.put(None)
        if wait:
            for worker in workers:
                worker.join()


class _UserThreads:
    """The worker threads of :class:`OffLoop`: a pool of the library's own, not the event
    loop's default executor, which LangGraph also runs sync tools and nodes on (6 threads on
    a 2-core machine): a guard check does not queue behind the application's tools, nor
    they behind a slow check. Made on first use; a forked child makes its own."""

    def __init__(self) -> None:
        self._pool: DaemonThreads | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def pool(self) -> DaemonThreads:
        pool = self._pool
        if pool is not None and self._pid == os.getpid():
            return pool
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = DaemonThreads(USER_THREADS, "agent-guardrails-user")
                self._pid = os.getpid()
            return self._pool


_user_threads = _UserThreads()


def user_threads() -> DaemonThreads:
    """The library's worker threads for the application's own code (see :class:`OffLoop`)."""
    return _user_threads.pool()


class OffLoop(Invoke):
    """:class:`Invoke` where ``fn`` is the application's own sync code, which may block (a
    custom validator or consent check calling an API, a ``simulate=`` function): the sync
    driver calls it on the caller's thread; the async driver runs it on one of the
    library's worker threads (:class:`_UserThreads`, in the caller's :mod:`contextvars`
    context), so neither the event loop nor a store's own thread waits for it. An awaitable
    result is awaited."""

    __slots__ = ()

    async def arun(self, store: Any) -> Any:
        context = contextvars.copy_context()
        result = await asyncio.get_running_loop().run_in_executor(
            _user_threads.pool(), functools.partial(context.run, self.fn, *self.args)
        )
        if inspect.isawaitable(result):
            return await result
        return result


def user_code(fn: Callable[..., Any], *args: Any) -> Invoke:
    """``fn(*args)`` where ``fn`` is the application's (a ``simulate=`` function, an
    ``approver=``): an ``async def`` one is awaited where the call runs, a plain one may
    block, so it runs :class:`OffLoop`."""
    return Invoke(fn, *args) if inspect.iscoroutinefunction(fn) else OffLoop(fn, *args)


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
    """Run ``flow`` to its end, awaiting each effect (runs of store operations in one
    hand-off where the store offers ``ahand_off``)."""
    hand_off: Callable[[StoreRun], Awaitable[Advanced | None]] | None = getattr(
        store, "ahand_off", None
    )
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(send) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        send = error = None
        if hand_off is not None and type(effect) is StoreOp:
            run = StoreRun(flow, effect, store)
            try:
                advanced = await hand_off(run)
            except GeneratorExit as exc:  # the coroutine is being closed: so is the flow
                stopped_at = run.stopped(exc)  # raises it when the store's thread closes it
                if stopped_at is not None and stopped_at.done is not None:
                    result, failed = stopped_at.done  # it first learns what its write did
                    with contextlib.suppress(BaseException):
                        flow.send(result) if failed is None else flow.throw(failed)
                flow.close()  # it never began, or stopped at an effect: close it here
                raise
            except BaseException as exc:  # cancelled, or the store closed meanwhile
                advanced = run.stopped(exc)  # raises exc, or says where to throw it in
                if advanced is None:  # it never began: as if the operation raised
                    error = exc
                    continue
            assert advanced is not None  # a run is skipped only when its caller stopped
            if advanced.effect is None:
                if advanced.error is not None:
                    raise advanced.error
                return advanced.value  # type: ignore[no-any-return]
            if advanced.done is not None:  # the run stopped at a write that has committed
                stopped = advanced.raised
                if isinstance(stopped, Exception):  # ... it did not (StoreUnavailable)
                    error = stopped
                    continue
                send, error = advanced.done
                if stopped is not None:  # cancelled: the flow learns what it did, then that
                    try:
                        flow.send(send) if error is None else flow.throw(error)
                    except BaseException as ended:  # it ended there: the cancellation stands
                        cause = None if isinstance(ended, StopIteration) else ended
                        raise stopped from cause
                    send, error = None, stopped
                continue
            if advanced.raised is not None:  # the caller was stopped as the run ended
                error = advanced.raised
                continue
            effect = advanced.effect
        try:
            send = await effect.arun(store)
        except GeneratorExit:  # the coroutine is being closed: close the flow, no more I/O
            flow.close()
            raise
        except BaseException as exc:
            error = exc


_for_loop: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "agent_guardrails_for_event_loop", default=False
)


def for_event_loop() -> bool:
    """True where a pipeline step must not wait on a lock or a condition: on an event
    loop's thread, or on a store's thread advancing a flow for a caller on one (a
    :class:`StoreRun`), where other calls of that loop need the thread. Such a step yields
    :class:`Pause` and looks again instead."""
    if _for_loop.get():
        return True
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Advanced(NamedTuple):
    """Where a flow stands after a :class:`StoreRun`."""

    effect: Effect | None  # the next effect, for the caller; None: the flow ended
    value: Any = None  # what the flow returned
    error: BaseException | None = None  # or what it raised
    raised: BaseException | None = None  # to throw in at ``effect``: the caller was stopped
    #: The outcome (result, error) of ``effect``, a store operation that was done but whose
    #: writes wait for a commit shared with other callers (``StoreRun``): the caller hands
    #: it to the flow once its hand-off returns, which it does only after that commit.
    done: tuple[Any, BaseException | None] | None = None


class StoreRun:
    """A run of store operations of one flow, done on a store's own thread (``__call__``):
    ``op``, then each store operation the flow asks for right after the one before, the
    flow advanced between them in the caller's :mod:`contextvars` context. Ends at the first
    effect that is not a store operation, or at the flow's end. On a store whose thread
    commits several callers' operations together (SQLite under load) it also ends right
    after an operation that wrote, before the flow sees its result: the caller hands the
    flow that result when the hand-off returns, which is after the commit, or throws the
    commit's failure in where the operation was asked for. So no flow goes on (to run a
    tool, say) on a write that was not kept.

    The caller (:func:`adrive`) may be cancelled while it waits. Whoever claims the run
    first decides who goes on with the flow, so that it never runs on two threads: if the
    run had not begun, the caller throws the cancellation in at ``op``'s ``yield``, as for an
    operation that raised; if it had, the store's thread hands the flow the result of the
    operation under way (it is done: an outbox must know its record was written), throws
    the cancellation in at the next ``yield`` and ends the flow there (nobody waits for
    what it returns); if it had just ended, the caller throws it in at the effect it
    stopped at. A closed caller (``GeneratorExit``) closes the flow instead.
    (``dict.setdefault`` is the claim: one atomic step, so the event loop never waits on a
    lock.)"""

    __slots__ = (
        "_claims",
        "_commit_error",
        "_ctx",
        "_held",
        "_outcome",
        "_raised",
        "flow",
        "op",
        "store",
    )

    def __init__(self, flow: Flow[Any], op: StoreOp, store: Any) -> None:
        self.flow = flow
        self.op = op
        self.store = store
        # A store whose thread commits several callers' operations together says when
        # an operation's writes wait for that commit (SQLite: ``holds_uncommitted``).
        self._held: Callable[[], bool] | None = getattr(store, "holds_uncommitted", None)
        self._commit_error: BaseException | None = None
        self._ctx = contextvars.copy_context()
        self._ctx.run(_for_loop.set, True)
        self._claims: dict[str, str] = {}
        self._outcome: Advanced | None = None
        self._raised: BaseException | None = None

    def __call__(self) -> Advanced | None:
        """On the store's thread. None: the caller stopped waiting before it began."""
        if self._claims.setdefault("begin", "store") != "store":
            return None
        outcome = self._advance(self.op)
        self._outcome = outcome
        if outcome.done is not None:
            return outcome  # the end is claimed once the shared commit is known (_committed)
        rests = getattr(self.store, "rests_on_commit", None)
        if outcome.effect is None and rests is not None and rests():
            # The flow ended here, on reads in queue order (every write it tried failed):
            # its answer stands whatever the commit does; _committed claims the end.
            self.store.after_commit(self._committed)
            return outcome
        if self._claims.setdefault("end", "store") != "store" and outcome.effect is not None:
            self._end_here()  # the caller stopped meanwhile
        return outcome

    def _end_here(self) -> None:
        """End the flow for a caller that stopped (:meth:`_unwind`): now, or in a group
        of operations once its commit is known, so that the flow's own closing writes
        commit on their own and it is told truly what they did."""
        after = getattr(self.store, "after_commit", None)
        if after is None or not after(lambda _error: self._unwind):
            self._unwind()

    def _committed(self, error: BaseException | None) -> Callable[[], None] | None:
        """On the store's thread, as soon as the commit that the run's last operation
        waited for is known (``error``: it failed, so the operation's writes were not
        kept), before the caller is answered. If the caller stopped meanwhile, the flow
        is ended here once the answers are sent (what is returned): it first learns what
        its operation did."""
        self._commit_error = error
        if self._claims.setdefault("end", "store") == "store":
            return None  # the caller hands the flow the outcome: its hand-off returns now
        outcome = self._outcome
        assert outcome is not None
        if outcome.done is None:
            return None  # the flow ended in the run: nothing is left to end
        done = outcome.done if error is None else (None, error)

        def end() -> None:
            try:
                self._step(*done)
            except BaseException:  # its end: nobody waits for what it returns
                return
            self._unwind()

        return end

    def stopped(self, exc: BaseException) -> Advanced | None:
        """On the caller's side, when its wait ended with ``exc``: None if the run never
        began (the caller throws ``exc`` in at ``op``); else raises ``exc`` if the store's
        thread goes on with the flow, or returns where the flow stopped (``raised=exc``)."""
        self._raised = exc
        if self._claims.setdefault("begin", "caller") == "caller":
            return None
        if self._claims.setdefault("end", "caller") == "caller":
            raise exc  # the store's thread ends the flow
        outcome = self._outcome
        assert outcome is not None
        if outcome.effect is None:
            if exc is self._commit_error:
                return outcome  # its flow ended on its own in the group: its answer stands
            raise exc
        if outcome.done is not None and self._commit_error is not None:
            outcome = outcome._replace(done=(None, self._commit_error))  # not kept after all
        return outcome._replace(raised=exc)

    def _step(self, result: Any, error: BaseException | None) -> Effect:
        """Hand the flow an operation's outcome, in the caller's context: its next effect."""
        if error is None:
            return self._ctx.run(self.flow.send, result)
        return self._ctx.run(self.flow.throw, error)

    def _advance(self, op: StoreOp) -> Advanced:
        flow, ctx, held = self.flow, self._ctx, self._held
        while True:
            result, error = _perform(self.store, op)
            if held is not None and held():
                # Its writes are kept only if the store's shared commit succeeds: the flow
                # must not go on before that, so the caller hands it the outcome then.
                self.store.after_commit(self._committed)
                return Advanced(op, done=(result, error))
            try:  # what the operation did is the flow's to know, whoever waits
                effect = ctx.run(flow.send, result) if error is None else ctx.run(flow.throw, error)
            except StopIteration as stop:
                return Advanced(None, value=stop.value)
            except BaseException as exc:
                return Advanced(None, error=exc)
            if "end" in self._claims:  # the caller stopped waiting: end the flow here
                self._end_here()  # thrown in at ``effect``, which is not done
                return Advanced(None, error=self._raised)
            if type(effect) is not StoreOp:
                return Advanced(effect)
            op = effect

    def _unwind(self) -> None:
        """End the flow for a caller that no longer waits, as :func:`adrive` would have:
        the caller's exception thrown in, the store operations the flow then asks for done,
        any other effect refused by closing the flow."""
        flow, ctx = self.flow, self._ctx
        error = self._raised  # set by the caller before it claimed the end
        result: Any = None
        while True:
            try:
                if error is None:
                    effect = ctx.run(flow.send, result)
                elif isinstance(error, GeneratorExit):
                    ctx.run(flow.close)
                    return
                else:
                    effect = ctx.run(flow.throw, error)
            except BaseException:  # its end: nobody waits for what it returns
                return
            if type(effect) is not StoreOp:
                ctx.run(flow.close)
                return
            result, error = _perform(self.store, effect)


def _perform(store: Any, op: StoreOp) -> tuple[Any, BaseException | None]:
    """``op`` on ``store``: its result, or what it raised (for the flow, where it asked)."""
    try:
        return getattr(store, op.name)(*op.args, **op.kwargs), None
    except BaseException as exc:
        return None, exc
