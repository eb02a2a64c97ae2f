"""Many guarded agent runs on one event loop, against the same agent without guardrails.

    python benchmarks/concurrency.py [--quick] [--postgres URL]

A served agent runs many conversations at once on one asyncio loop. This runs N = 1, 10,
50 and 200 concurrent ``ainvoke`` runs of one ``create_agent`` agent whose model awaits
200 ms per call (a fast real model) and asks for one guarded tool call per run, and reports
runs per second as a ratio to the same agent without middleware, measured in the same run
(goal: >= 0.9 at N = 50 and N = 200, on SQLite and PostgreSQL; the memory store is shown for
reference). Then the event loop's lag: a ticker task measures its worst and p99 delay while
another process holds the store's write lock for a second and guarded calls wait for it
(goal: p99 < 5 ms; the calls wait, the loop does not).

PostgreSQL rows need ``--postgres URL`` or ``AGENT_GUARDRAILS_TEST_POSTGRES``; each run uses a
throw-away schema.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool

from agent_guardrails import Guardrails, PolicyPack
from agent_guardrails.middleware import GuardrailsMiddleware

MODEL_LATENCY = 0.2
PACK = """
name: concurrency
version: 1
defaults: {level: execute}
actions:
  crm.tag: {risk: low, cost: 0.001}
budgets:
  - {name: daily, limit: 1.0e12, window: day}
"""


class SlowModel(GenericFakeChatModel):
    """Awaits ``MODEL_LATENCY`` per call; asks for one tool call, then answers. Stateless:
    it reads the conversation, so many runs can share it."""

    messages: Any = iter(())

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> SlowModel:
        return self

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        await asyncio.sleep(MODEL_LATENCY)
        if isinstance(messages[-1], HumanMessage):
            text = str(messages[-1].content)
            call = {"name": "tag_contact", "args": {"contact": text}, "id": f"t-{text}"}
            message = AIMessage(content="", tool_calls=[call])
        else:
            message = AIMessage(content="done")
        return ChatResult(generations=[ChatGeneration(message=message)])


@tool
async def tag_contact(contact: str) -> str:
    """Tag a contact."""
    return contact


def agent(guard: Guardrails | None) -> Any:
    middleware = [GuardrailsMiddleware(guard, actions={"tag_contact": "crm.tag"})] if guard else []
    return create_agent(SlowModel(), [tag_contact], middleware=middleware)


async def runs_per_second(graph: Any, n: int) -> float:
    start = time.perf_counter()
    await asyncio.gather(
        *(graph.ainvoke({"messages": [("user", f"c{uuid.uuid4().hex[:8]}")]}) for _ in range(n))
    )
    return n / (time.perf_counter() - start)


def hold_sqlite_lock(path: str, seconds: float, ready: Any) -> None:
    """Another process: take the store's writer lock (lock file and write transaction)."""
    import fcntl
    import sqlite3

    with open(f"{path}-writer.lock", "ab") as lockfile:
        fcntl.flock(lockfile.fileno(), fcntl.LOCK_EX)
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        ready.set()
        time.sleep(seconds)
        db.execute("ROLLBACK")
        db.close()


async def loop_lag(graph: Any, path: str, seconds: float = 1.0) -> tuple[float, float]:
    """Worst and p99 delay of a 1 ms ticker (weighted by the time it was late) while another
    process holds the SQLite writer lock for ``seconds`` and 10 guarded runs wait for it."""
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=hold_sqlite_lock, args=(path, seconds, ready))
    holder.start()
    await asyncio.get_running_loop().run_in_executor(None, ready.wait)
    delays: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        # Each late wake-up stands for every tick it swallowed: a loop blocked for 800 ms
        # counts as 800 late ticks (lags 800, 799, ... ms), not as one sample among many.
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            late = time.perf_counter() - before - 0.001
            delays.extend(late - k * 0.001 for k in range(int(late / 0.001) + 1))

    tick = asyncio.create_task(ticker())
    await asyncio.gather(*(graph.ainvoke({"messages": [("user", f"l{i}")]}) for i in range(10)))
    stop.set()
    await tick
    await asyncio.get_running_loop().run_in_executor(None, holder.join)
    delays.sort()
    return delays[-1], delays[int(len(delays) * 0.99) - 1]


async def main_async(stores: dict[str, str], sizes: Sequence[int], repeats: int) -> None:
    pack = PolicyPack.from_yaml(PACK)
    bare = agent(None)
    print(f"model latency {MODEL_LATENCY * 1e3:.0f} ms; runs/s, best of {repeats}")
    print(f"{'store':<10}{'N':>5}{'bare':>10}{'guarded':>10}{'ratio':>8}")
    for name, url in stores.items():
        guard = Guardrails(pack, store=url)
        guarded = agent(guard)
        await guarded.ainvoke({"messages": [("user", "warm-up")]})
        for n in sizes:
            best_bare = best_guarded = 0.0
            for _ in range(repeats):
                best_bare = max(best_bare, await runs_per_second(bare, n))
                best_guarded = max(best_guarded, await runs_per_second(guarded, n))
            ratio = best_guarded / best_bare
            goal = "" if n < 50 or name == "memory" else ("  met" if ratio >= 0.9 else "  NOT met")
            print(f"{name:<10}{n:>5}{best_bare:>10.1f}{best_guarded:>10.1f}{ratio:>8.2f}{goal}")
        if name == "sqlite":
            worst, p99 = await loop_lag(guarded, url.removeprefix("sqlite:///"))
            verdict = "met" if p99 < 0.005 else "NOT met"
            print(
                f"loop lag while another process holds the SQLite write lock 1 s: worst "
                f"{worst * 1e3:.1f} ms, p99 {p99 * 1e3:.2f} ms (goal p99 < 5 ms: {verdict})"
            )
        guard.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="N up to 50, one repeat")
    parser.add_argument("--postgres", default=os.environ.get("AGENT_GUARDRAILS_TEST_POSTGRES"))
    args = parser.parse_args()
    sizes = (1, 10, 50) if args.quick else (1, 10, 50, 200)
    with tempfile.TemporaryDirectory() as tmp:
        stores = {"memory": "memory://", "sqlite": f"sqlite:///{Path(tmp) / 'c.db'}"}
        schema = f"ag_bench_{uuid.uuid4().hex[:10]}"
        if args.postgres:
            sep = "&" if "?" in args.postgres else "?"
            stores["postgres"] = f"{args.postgres}{sep}schema={schema}&pool_max=20"
        try:
            asyncio.run(main_async(stores, sizes, 1 if args.quick else 3))
        finally:
            if args.postgres:
                import psycopg

                with psycopg.connect(args.postgres, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
