"""Time per tool call of a ``create_agent`` agent, with and without guardrails, in one run.

    python benchmarks/agent_overhead.py [--quick]

Configurations, each sync and async:
- the bare agent (no middleware): the baseline;
- LangChain's ``HumanInTheLoopMiddleware`` + ``ToolCallLimitMiddleware``, configured not to
  interrupt or stop;
- ``GuardrailsMiddleware`` on the SQLite store, tracing off (no OpenTelemetry configured), in
  its default batched mode: an ``after_model`` node per model turn (here it decides nothing,
  the tool never asks a human, but ``create_agent`` runs the node), then the call decided
  where it runs;
- the same with ``interrupt="per_call"``: no ``after_model`` node, as before the batched default;
- the same with tracing on: an SDK ``TracerProvider`` with a ``BatchSpanProcessor`` (its
  exporter drops the batches, so the network is not measured);
- as a reference, ``GuardrailsMiddleware`` on the in-process memory store: the whole
  pipeline without SQLite, so ours minus this row is what the durable store costs;
- as a reference, LangChain's own cost of the two hooks ours uses: a middleware whose
  ``wrap_tool_call`` and ``wrap_model_call`` only call the handler (LangChain wraps every
  ``wrap_*`` hook in LangSmith's ``traceable``; the built-ins use graph-node hooks instead);
- as a reference, the floor of any durable guard on SQLite: the pass-through middleware
  above, whose tool hook also does, in raw SQL on the same kind of database, the two write
  transactions a guarded call needs (before the tool: hold the budget, mark the call
  started, append an audit row; after it: mark the call finished, append an audit row) and
  nothing else. Its async hook runs the SQL right on the event loop, which blocks it;
- async only, the floor of a durable guard that does not block the loop: the same two
  transactions, each handed to one dedicated thread and awaited (a ``queue.SimpleQueue`` to
  the thread, ``loop.call_soon_threadsafe`` back: the cheapest hand-off we know, two per
  call). The async goal is measured against this floor, since the rule for async code is
  that nothing blocks the event loop; the blocking floor is printed beside it.

A scripted model asks for one tool call per turn, ``TURNS`` turns per run; the time per tool
call is the run's time divided by ``TURNS``, best of many runs, the configurations taking
turns so that noise from the machine hits them alike. The best run is the one that met
fewest rare costs (a SQLite checkpoint, a garbage collection), so the mean over all runs is
printed beside it ("mean added", over the bare agent's mean): noisier, but it counts them.
The bare agent is measured twice, as two configurations; how far apart the two come out is
printed as the run's noise. Results are ratios to the bare agent. The floor row has the
same two hooks as ours, so floor minus pass-through is what durable SQL alone costs inside
the agent (its audit rows are hashed, not chained). The verdict also prints a bound: the
memory-store row plus that SQL, the least a guard with our pipeline and a durable store
could add; when the bound is not below the built-ins, no store can meet the goal on that
machine.
Goals (issue 17): ours adds at most 1.2x what the durable floor adds per tool call, sync and
async; beside it, the ratio to what LangChain's two built-ins add (aim: below 1x).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import queue
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import (
    AgentMiddleware,
    HumanInTheLoopMiddleware,
    ToolCallLimitMiddleware,
)
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from agent_guardrails import Guardrails, PolicyPack
from agent_guardrails.middleware import GuardrailsMiddleware

TURNS = 20
FLOOR = "floor: 2 durable txns, raw SQL"
FLOOR_OFF_LOOP = "floor, async off the loop"
HOOKS = "pass-through tool + model hooks"
MEMORY = "GuardrailsMiddleware (memory store)"
PER_CALL = "GuardrailsMiddleware per_call (SQLite)"
BARE_AGAIN = "bare agent, again (the noise)"
ACTIONS = {"tag_contact": "crm.tag"}  # the tool -> the pack's action, for our middleware

PACK = """
name: bench
version: 1
defaults: {level: execute}
actions:
  crm.tag: {risk: low, cost: 0.001}
budgets:
  - {name: daily, limit: 1.0e12, window: day}
"""


class ScriptedModel(GenericFakeChatModel):
    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedModel:
        return self


@tool
def tag_contact(contact: str) -> str:
    """Tag a contact."""
    return contact


def script() -> ScriptedModel:
    turns = [
        AIMessage(
            content="",
            tool_calls=[{"name": "tag_contact", "args": {"contact": f"c{i}"}, "id": f"t{i}"}],
        )
        for i in range(TURNS)
    ]
    return ScriptedModel(messages=iter([*turns, AIMessage(content="done")]))


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def _awaited(handler: Callable[[Any], Awaitable[Any]], request: Any) -> Any:
    return await handler(request)


class PassThrough(AgentMiddleware):
    """The two hooks GuardrailsMiddleware has, doing nothing: what LangChain charges for them.

    Like ours, the async hooks are plain functions that return a coroutine (an ``async def``
    hook costs two worker-thread hops per call in LangSmith's ``traceable`` wrapper; see
    ``GuardrailsMiddleware.awrap_tool_call``)."""

    def wrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        return handler(request)

    def awrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        return _awaited(handler, request)

    def wrap_model_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        return handler(request)

    def awrap_model_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        return _awaited(handler, request)


class DurableFloor(PassThrough):
    """Two durable write transactions per tool call in raw SQL (WAL, synchronous=NORMAL, a
    pooled connection): the least any guard that records calls durably on SQLite must do.
    Its model hooks are PassThrough's, so it pays LangChain for the same hooks as ours."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = str(path)
        self.idle: list[sqlite3.Connection] = []
        self.lock = threading.Lock()
        self.keys = itertools.count()
        db = self.take()
        db.executescript(
            "CREATE TABLE IF NOT EXISTS budget (k TEXT PRIMARY KEY, used REAL) WITHOUT ROWID;"
            "CREATE TABLE IF NOT EXISTS calls (k TEXT PRIMARY KEY, state TEXT) WITHOUT ROWID;"
            "CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, data TEXT, hash TEXT);"
            "INSERT OR IGNORE INTO budget VALUES ('daily', 0);"
        )
        self.give(db)

    def take(self) -> sqlite3.Connection:
        with self.lock:
            if self.idle:
                return self.idle.pop()
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        return db

    def give(self, db: sqlite3.Connection) -> None:
        with self.lock:
            self.idle.append(db)

    def audit(self, db: sqlite3.Connection, data: str) -> None:
        db.execute(
            "INSERT INTO audit (data, hash) VALUES (?, ?)",
            (data, hashlib.sha256(data.encode()).hexdigest()),
        )

    def before(self) -> str:
        db = self.take()
        key = f"call-{next(self.keys)}"
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE budget SET used = used + 0.001 WHERE k = 'daily' AND used < 1e12")
        db.execute("INSERT INTO calls VALUES (?, 'started')", (key,))
        self.audit(db, f'{{"call":"{key}","decision":"allow"}}')
        db.execute("COMMIT")
        self.give(db)
        return key

    def after(self, key: str) -> None:
        db = self.take()
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE calls SET state = 'finished' WHERE k = ?", (key,))
        self.audit(db, f'{{"call":"{key}","ok":true}}')
        db.execute("COMMIT")
        self.give(db)

    def wrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        key = self.before()
        result = handler(request)
        self.after(key)
        return result

    def awrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        return self._awrap_tool_call(request, handler)  # a coroutine, as PassThrough's

    async def _awrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        key = self.before()
        result = await handler(request)
        self.after(key)
        return result


class OffLoopFloor(DurableFloor):
    """DurableFloor whose async hook awaits each transaction on one dedicated thread."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.work: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            loop, future, fn, arg = self.work.get()
            result = fn() if arg is None else fn(arg)
            loop.call_soon_threadsafe(future.set_result, result)

    async def _off_loop(self, fn: Callable[..., Any], arg: Any = None) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.work.put((loop, future, fn, arg))
        return await future

    async def _awrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        key = await self._off_loop(self.before)
        result = await handler(request)
        await self._off_loop(self.after, key)
        return result


def builders(db: Path) -> dict[str, Callable[[], list[Any]]]:
    pack = PolicyPack.from_yaml(PACK)
    guard = Guardrails(pack, store=f"sqlite:///{db}")
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Drop()))
    traced = Guardrails(pack, store=f"sqlite:///{db}", tracer_provider=provider)
    in_memory = Guardrails(pack, store="memory://")
    floor = DurableFloor(db.with_name("floor.db"))
    off_loop = OffLoopFloor(db.with_name("floor-off-loop.db"))
    return {
        "bare agent": lambda: [],
        BARE_AGAIN: lambda: [],
        "LangChain HITL + ToolCallLimit": lambda: [
            HumanInTheLoopMiddleware(interrupt_on={"tag_contact": False}),
            ToolCallLimitMiddleware(run_limit=10_000),
        ],
        "GuardrailsMiddleware (SQLite)": lambda: [GuardrailsMiddleware(guard, actions=ACTIONS)],
        PER_CALL: lambda: [GuardrailsMiddleware(guard, actions=ACTIONS, interrupt="per_call")],
        "GuardrailsMiddleware, tracing on": lambda: [GuardrailsMiddleware(traced, actions=ACTIONS)],
        MEMORY: lambda: [GuardrailsMiddleware(in_memory, actions=ACTIONS)],
        HOOKS: lambda: [PassThrough()],
        FLOOR: lambda: [floor],
        FLOOR_OFF_LOOP: lambda: [off_loop],
    }


def one_run(middleware: Callable[[], list[Any]], *, use_async: bool) -> float:
    """Seconds per tool call of one agent run."""
    agent: Any = create_agent(script(), [tag_contact], middleware=middleware())
    request = {"messages": [("user", "tag everyone")]}
    start = time.perf_counter()
    if use_async:
        asyncio.run(agent.ainvoke(request))
    else:
        agent.invoke(request)
    return (time.perf_counter() - start) / TURNS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    runs = 3 if args.quick else 30
    with tempfile.TemporaryDirectory() as tmp:
        configs = builders(Path(tmp) / "bench.db")
        for use_async in (False, True):
            mode = "async" if use_async else "sync"
            chosen = {k: v for k, v in configs.items() if use_async or k != FLOOR_OFF_LOOP}
            every: dict[str, list[float]] = {name: [] for name in chosen}
            for _ in range(runs):
                for name, build in chosen.items():
                    every[name].append(one_run(build, use_async=use_async))
            times = {name: min(ts) for name, ts in every.items()}
            means = {name: statistics.fmean(ts) for name, ts in every.items()}
            base = times["bare agent"]
            print(f"\n{mode}: time per tool call (best of {runs} runs of {TURNS} calls)")
            print(
                f"{'configuration':<38}{'per call':>12}{'ratio':>9}{'added':>12}{'mean added':>14}"
            )
            for name, t in times.items():
                print(
                    f"{name:<38}{t * 1e3:>10.3f}ms{t / base:>8.2f}x{(t - base) * 1e6:>10.0f}us"
                    f"{(means[name] - means['bare agent']) * 1e6:>12.0f}us"
                )
            ours = times["GuardrailsMiddleware (SQLite)"] - base
            theirs = times["LangChain HITL + ToolCallLimit"] - base
            blocking_floor = times[FLOOR] - base
            floor = times[FLOOR_OFF_LOOP] - base if use_async else blocking_floor
            hooks = times[HOOKS] - base
            memory = times[MEMORY] - base
            bound = memory + floor - hooks  # our pipeline + the least durable SQL
            to_floor, to_builtins = ours / floor, ours / theirs
            which = "off-the-loop floor" if use_async else "durable floor"
            noise = abs(times[BARE_AGAIN] - base)
            print(
                f"the bare agent measured twice differs by {noise * 1e6:.0f} us per call: "
                "read every figure below with that margin"
            )
            print(
                f"ours adds {ours * 1e6:.0f} us per tool call: {to_floor:.2f}x the {which} "
                f"({floor * 1e6:.0f} us; goal <= 1.2x: {'met' if to_floor <= 1.2 else 'NOT met'}"
                + (
                    f"; {ours / blocking_floor:.2f}x the floor that blocks the loop)"
                    if use_async
                    else ")"
                )
                + ", "
                f"{to_builtins:.2f}x LangChain's HITL + ToolCallLimit ({theirs * 1e6:.0f} us; "
                f"aim < 1x: {'met' if to_builtins < 1 else 'NOT met'})\n"
                f"on the memory store ours adds {memory * 1e6:.0f} us; LangChain's calls of our "
                f"two hooks alone add {hooks * 1e6:.0f} us; bound (memory-store row + the "
                f"floor's durable SQL) = {bound * 1e6:.0f} us = {bound / floor:.2f}x the floor\n"
                f"per_call mode (no after_model node) adds {(times[PER_CALL] - base) * 1e6:.0f} us"
                f" = {(times[PER_CALL] - base) / floor:.2f}x the floor, "
                f"{(times[PER_CALL] - base) / theirs:.2f}x the built-ins"
            )


if __name__ == "__main__":
    main()
