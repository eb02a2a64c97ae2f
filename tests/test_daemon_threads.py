"""The worker threads the application's own code runs on (``pipeline.effects.DaemonThreads``):
made as needed up to a bound, an idle one reused, daemon (a hung check does not hold the
process at exit, see ``tests/test_validators.py``), and robust to what user code and the
process can do to a worker."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import threading
import time
import weakref
from typing import Any

import pytest

from agent_guardrails.pipeline.effects import DaemonThreads, user_threads


def test_an_idle_worker_takes_the_next_work() -> None:
    pool = DaemonThreads(3, "t-reuse")
    names = {pool.submit(lambda: threading.current_thread().name).result(5) for _ in range(50)}
    assert len(names) == 1
    pool.shutdown()


def test_no_more_than_most_run_at_once_and_the_rest_wait() -> None:
    pool = DaemonThreads(3, "t-bound")
    gate, lock = threading.Event(), threading.Lock()
    running: list[str] = []

    def hold() -> str:
        with lock:
            running.append(threading.current_thread().name)
        gate.wait(5)
        return "done"

    futures = [pool.submit(hold) for _ in range(5)]
    time.sleep(0.3)
    assert len(running) == 3  # the other two wait for a worker
    gate.set()
    assert [f.result(5) for f in futures] == ["done"] * 5
    assert len(set(running)) == 3
    pool.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(lambda: None)


def test_what_user_code_raises_reaches_the_caller_and_the_worker_goes_on() -> None:
    pool = DaemonThreads(1, "t-raise")

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pool.submit(interrupted).result(5)
    with pytest.raises(ValueError, match="bad"):
        pool.submit(lambda: int("bad")).result(5)
    assert pool.submit(lambda: 42).result(5) == 42
    pool.shutdown()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_worker_killed_by_a_callback_is_replaced() -> None:
    """A done-callback that raises ``SystemExit`` ends its worker: the next work gets a new
    one (the bound counts live threads)."""
    pool = DaemonThreads(1, "t-callback")
    gate = threading.Event()
    future = pool.submit(lambda: gate.wait(5))

    def exits(_done: Any) -> None:
        raise SystemExit

    future.add_done_callback(exits)  # before it is done: it runs on the worker
    gate.set()
    assert future.result(5) is True
    time.sleep(0.1)
    assert pool.submit(lambda: 2).result(5) == 2
    pool.shutdown()


def test_cancelled_work_never_runs_and_frees_its_place() -> None:
    pool = DaemonThreads(1, "t-cancel")
    gate, ran = threading.Event(), threading.Event()
    busy = pool.submit(gate.wait, 5)
    queued = pool.submit(ran.set)
    assert queued.cancel()
    gate.set()
    assert busy.result(5) is True
    assert pool.submit(lambda: "next").result(5) == "next"
    assert not ran.is_set()
    pool.shutdown()


def test_a_thread_that_cannot_be_started_gives_its_place_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Out of threads (the process's limit): the submit fails and its work never runs; once
    threads can be made again, the pool makes them."""
    pool = DaemonThreads(1, "t-start")
    start = threading.Thread.start

    def refused(thread: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    ran = threading.Event()
    monkeypatch.setattr(threading.Thread, "start", refused)
    with pytest.raises(RuntimeError, match="can't start"):
        pool.submit(ran.set)
    monkeypatch.setattr(threading.Thread, "start", start)
    assert pool.submit(lambda: "ok").result(5) == "ok"
    time.sleep(0.1)
    assert not ran.is_set()
    pool.shutdown()


def test_an_idle_worker_keeps_nothing_of_its_last_work() -> None:
    class Result:
        pass

    pool = DaemonThreads(1, "t-free")
    future = pool.submit(Result)
    ref = weakref.ref(future.result(5))
    del future
    time.sleep(0.1)
    gc.collect()
    assert ref() is None
    pool.shutdown()


def test_shutdown_waits_or_cancels_what_is_queued() -> None:
    pool = DaemonThreads(1, "t-shutdown")
    gate = threading.Event()
    busy = pool.submit(gate.wait, 5)
    queued = pool.submit(lambda: "late")
    threading.Timer(0.2, gate.set).start()
    began = time.monotonic()
    pool.shutdown(wait=True, cancel_futures=True)
    assert time.monotonic() - began >= 0.15  # waited for the running work
    assert busy.result(0) is True
    assert queued.cancelled()


def test_an_async_caller_uses_the_pool_through_run_in_executor() -> None:
    assert asyncio.run(_name()).startswith("agent-guardrails-user")


async def _name() -> str:
    thread = await asyncio.get_running_loop().run_in_executor(
        user_threads(), threading.current_thread
    )
    return thread.name


def _in_child(out: Any) -> None:
    out.put(user_threads().submit(lambda: "from the child").result(5))


def test_a_forked_child_gets_a_pool_of_its_own() -> None:
    assert user_threads().submit(lambda: "parent").result(5) == "parent"  # made here first
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_in_child, args=(out,))
    child.start()
    assert out.get(timeout=20) == "from the child"
    child.join(20)
    assert child.exitcode == 0
