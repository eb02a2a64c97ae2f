"""Other processes: the operator CLI, an agent worker that dies mid-call, agents sharing a
budget.

Workers are forked from a ``forkserver`` that has imported this module (and with it
LangGraph, LangChain and agent_guardrails) once, so each one starts in milliseconds and
shares nothing with the test process but the database. The CLI also runs once per durable
store as a fresh ``python -c`` subprocess (:func:`cli_subprocess`).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import multiprocessing
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from agent_guardrails import Guardrails, PolicyPack
from tests.conformance.harness import Agent, Behaviour, Runs, ToolBox

ROOT = Path(__file__).resolve().parents[2]
CTX = multiprocessing.get_context("forkserver")
CTX.set_forkserver_preload(["tests.conformance.workers"])

Calls = Sequence[tuple[str, dict[str, Any]]]


# ---------------------------------------------------------------------------- running them


def _entry(conn: Connection, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        conn.send(("ok", target(*args)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


class Worker:
    """``target(*args)`` in a process of its own; :meth:`result` waits for it."""

    def __init__(self, target: Callable[..., Any], *args: Any) -> None:
        self._conn, child = CTX.Pipe(duplex=False)
        self.process = CTX.Process(target=_entry, args=(child, target, args), daemon=True)
        self.process.start()
        child.close()

    def result(self, timeout: float = 120.0) -> tuple[int | None, Any]:
        """``(exit code, what target returned)``; raises with the worker's traceback if it
        raised. A worker that died returns ``(its exit code, None)``."""
        outcome: Any = None
        if self._conn.poll(timeout):
            with contextlib.suppress(EOFError):
                outcome = self._conn.recv()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
            raise AssertionError(f"harness: worker {self.process.pid} did not end in {timeout}s")
        self._conn.close()
        if outcome is None:
            return self.process.exitcode, None
        kind, value = outcome
        if kind == "error":
            raise AssertionError(f"worker process failed:\n{value}")
        return self.process.exitcode, value


def in_process(target: Callable[..., Any], *args: Any, timeout: float = 120.0) -> Any:
    """Run ``target(*args)`` in another process and return what it returned."""
    code, value = Worker(target, *args).result(timeout)
    if code != 0:
        raise AssertionError(f"worker process exited with {code}")
    return value


# ---------------------------------------------------------------------------- the CLI


def cli_main(argv: list[str]) -> tuple[int, str]:
    """The operator CLI (``agent-guardrails ARGV``), its ``main`` run in this process."""
    from agent_guardrails.ops.cli import main

    out = io.StringIO()
    code = main(argv, out)
    return code, out.getvalue()


def cli(argv: list[str]) -> str:
    """``agent-guardrails ARGV`` in another (forked) process; its output."""
    code, out = in_process(cli_main, argv)
    assert code == 0, f"agent-guardrails {' '.join(argv)} exited {code}: {out}"
    return str(out)


def cli_subprocess(argv: list[str]) -> str:
    """``agent-guardrails ARGV`` as a fresh ``python -c`` subprocess; its output."""
    script = "from agent_guardrails.ops.cli import main; raise SystemExit(main())"
    proc = subprocess.run(
        [sys.executable, "-c", script, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"agent-guardrails {' '.join(argv)}: {proc.stderr[-2000:]}"
    return proc.stdout


# ---------------------------------------------------------------------------- checkpointers


@contextlib.contextmanager
def sqlite_saver(path: Path, mode: str, loop: asyncio.AbstractEventLoop | None) -> Iterator[Any]:
    """A SQLite checkpointer on ``path``: ``SqliteSaver`` for ``invoke``,
    ``AsyncSqliteSaver`` (opened on ``loop``) for ``ainvoke``."""
    if mode == "sync":
        with SqliteSaver.from_conn_string(str(path)) as saver:
            yield saver
        return
    assert loop is not None
    manager = AsyncSqliteSaver.from_conn_string(str(path))
    asaver = loop.run_until_complete(manager.__aenter__())
    try:
        yield asaver
    finally:
        loop.run_until_complete(manager.__aexit__(None, None, None))


# ---------------------------------------------------------------------------- agent workers


def crash_run(
    adapter: str,
    mode: str,
    url: str,
    pack: str,
    tools: list[str],
    saver_path: str,
    runs_path: str,
    thread: str,
    calls: Calls,
) -> str:
    """Start ``thread`` with ``calls``; the first tool body to run kills this process
    (``os._exit``). Returns only if no body ran."""
    guard = Guardrails(PolicyPack.from_yaml(pack), store=url)
    box = ToolBox(Runs(Path(runs_path)), Behaviour(crash=True))
    loop = asyncio.new_event_loop() if mode == "async" else None
    with sqlite_saver(Path(saver_path), mode, loop) as saver:
        # "sync": the model's step is on disk before the tools run (a crash-safe set-up).
        agent = Agent(adapter, mode, guard, tools, box, saver=saver, loop=loop, durability="sync")
        run = agent.start(thread, *calls)
    return f"no body ran; pending: {run.asks}"


def budget_run(
    adapter: str,
    mode: str,
    url: str,
    pack: str,
    runs_path: str,
    prefix: str,
    conversations: int,
    barrier: Any,
) -> list[str]:
    """``conversations`` runs, one ``tag_contact`` call each, against the shared store;
    the tool messages the model got."""
    guard = Guardrails(PolicyPack.from_yaml(pack), store=url)
    box = ToolBox(Runs(Path(runs_path)))
    loop = asyncio.new_event_loop() if mode == "async" else None
    agent = Agent(adapter, mode, guard, ["tag_contact"], box, saver=InMemorySaver(), loop=loop)
    barrier.wait(timeout=60)
    replies = []
    for i in range(conversations):
        thread = f"{prefix}-{i}"
        run = agent.start(thread, ("tag_contact", {"contact": thread}))
        replies.append(run.content("call-0"))
    guard.store.close()
    return replies
