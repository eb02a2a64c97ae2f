"""Decision-engine and ``@guarded`` overhead, against the bare function, in one run.

    python benchmarks/engine.py [--quick]

Prints decisions per second of the pure engine and the time ``@guarded`` adds around a
no-op function on the in-memory store (goal: under 20 us per call), as ratios to the bare
call measured in the same run. Best of several repeats, to keep noise from other work out.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from agent_guardrails import CallRequest, Guardrails, PolicyPack, Scope, decide, guarded
from agent_guardrails.levels import AutonomyLevel

PACK = """
name: bench
version: 1
defaults: {level: execute}
actions:
  crm.tag:
    risk: low
    cost: 0.001
    validators:
      - banned_terms: {terms: [spam, scam], fields: [note]}
      - max_length: {field: note, max: 200}
levels:
  - {scope: {workflow: w}, level: execute}
budgets:
  - {name: daily, scope: {workflow: w}, limit: 1.0e12, window: day}
"""


def best_per_call(make: Callable[[], Callable[[], object]], n: int, repeats: int) -> float:
    """Seconds per call: the best of ``repeats`` runs of ``n`` calls, each run on a fresh
    ``make()`` (a fresh memory store: it keeps every record, and a store grown by earlier
    runs would measure the garbage collector rather than the guard)."""
    best = float("inf")
    for _ in range(repeats):
        fn = make()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best


def best_per_call_async(make: Callable[[], Callable[[], Any]], n: int, repeats: int) -> float:
    async def loop() -> float:
        best = float("inf")
        for _ in range(repeats):
            fn = make()
            start = time.perf_counter()
            for _ in range(n):
                await fn()
            best = min(best, (time.perf_counter() - start) / n)
        return best

    return asyncio.run(loop())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (CI smoke run)")
    args = parser.parse_args()
    n, repeats = (2_000, 3) if args.quick else (20_000, 5)

    pack = PolicyPack.from_yaml(PACK)
    call = CallRequest("tag", "crm.tag", {"contact": "c1", "note": "vip"}, Scope(workflow="w"))

    def bare(contact: str, note: str) -> str:
        return contact

    async def abare(contact: str, note: str) -> str:
        return contact

    def guarded_sync() -> Callable[[], object]:
        guard = Guardrails(pack, store="memory://")
        wrapped = guarded(action="crm.tag", guardrails=guard, scope={"workflow": "w"})(bare)
        assert wrapped("c1", "vip") == "c1"
        return lambda: wrapped("c1", "vip")

    def guarded_async() -> Callable[[], Any]:
        guard = Guardrails(pack, store="memory://")
        wrapped = guarded(action="crm.tag", guardrails=guard, scope={"workflow": "w"})(abare)
        return lambda: wrapped("c1", "vip")

    now = time.time()
    t_engine = best_per_call(
        lambda: lambda: decide(call, pack, level=AutonomyLevel.EXECUTE, used={}, now=now),
        n,
        repeats,
    )
    t_bare = best_per_call(lambda: lambda: bare("c1", "vip"), n, repeats)
    t_guarded = best_per_call(guarded_sync, n, repeats)
    t_abare = best_per_call_async(lambda: lambda: abare("c1", "vip"), n, repeats)
    t_aguarded = best_per_call_async(guarded_async, n, repeats)

    us = 1e6
    rows = [
        ("bare function", t_bare, t_bare),
        ("pure engine decide()", t_engine, t_bare),
        ("@guarded, memory store (sync)", t_guarded, t_bare),
        ("bare coroutine", t_abare, t_abare),
        ("@guarded, memory store (async)", t_aguarded, t_abare),
    ]
    print(f"{'measure':<34}{'per call':>12}{'per second':>14}{'ratio':>10}")
    for name, t, base in rows:
        print(f"{name:<34}{t * us:>10.2f}us{1 / t:>14,.0f}{t / base:>10.1f}x")
    added = (t_guarded - t_bare) * us
    added_async = (t_aguarded - t_abare) * us
    goal = 20.0
    print(
        f"\n@guarded adds {added:.1f} us per sync call and {added_async:.1f} us per async call "
        f"(goal: under {goal:.0f} us): {'met' if max(added, added_async) < goal else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
