"""Decision-engine and ``@guarded`` overhead, against the bare function, in one run.

    python benchmarks/engine.py [--quick] [--wall]

Prints decisions per second of the pure engine and the time ``@guarded`` adds around a
no-op function on the in-memory store (goal: under 20 us per call), as ratios to the bare
call measured in the same run, twice: in *steady state* (runs of 2,000 calls, each on a
fresh ``Guardrails``) and over *long runs* of 20,000 calls, where the garbage collector's
full collections (which walk LangChain's large heap) show. Each figure is the best of
several repeats, to keep noise from other work out.

Times are the CPU time of this process (``time.process_time``), which other processes on
the machine disturb far less than wall-clock time; ``--wall`` measures wall-clock time
instead. The load average is printed with the results: on a 2-core machine with other work
running, even CPU time rises with load (the cores share caches), so compare runs made at
similar loads, or the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from agent_guardrails import CallRequest, Guardrails, PolicyPack, Scope, decide, guarded
from agent_guardrails.policy.levels import AutonomyLevel

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

Clock = Callable[[], float]


def best_per_call(
    make: Callable[[], Callable[[], object]], n: int, repeats: int, clock: Clock
) -> float:
    """Seconds per call: the best of ``repeats`` runs of ``n`` calls, each run on a fresh
    ``make()`` (a fresh memory store: it keeps every audit record, and a store grown by
    earlier runs would measure the garbage collector rather than the guard)."""
    best = float("inf")
    for _ in range(repeats):
        fn = make()
        start = clock()
        for _ in range(n):
            fn()
        best = min(best, (clock() - start) / n)
    return best


def best_per_call_async(
    make: Callable[[], Callable[[], Any]], n: int, repeats: int, clock: Clock
) -> float:
    async def loop() -> float:
        best = float("inf")
        for _ in range(repeats):
            fn = make()
            start = clock()
            for _ in range(n):
                await fn()
            best = min(best, (clock() - start) / n)
        return best

    return asyncio.run(loop())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (CI smoke run)")
    parser.add_argument("--wall", action="store_true", help="wall-clock instead of CPU time")
    args = parser.parse_args()
    clock: Clock = time.perf_counter if args.wall else time.process_time
    # (calls, repeats) for the baselines, steady-state runs and long runs
    if args.quick:
        n, steady, long = (2_000, 3), (2_000, 3), (5_000, 1)
    else:
        n, steady, long = (20_000, 5), (2_000, 15), (20_000, 3)

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

    load_before = os.getloadavg()
    now = time.time()
    t_engine = best_per_call(
        lambda: lambda: decide(call, pack, level=AutonomyLevel.EXECUTE, used={}, now=now),
        *n,
        clock,
    )
    t_bare = best_per_call(lambda: lambda: bare("c1", "vip"), *n, clock)
    t_guarded = best_per_call(guarded_sync, *steady, clock)
    t_guarded_long = best_per_call(guarded_sync, *long, clock)
    t_abare = best_per_call_async(lambda: lambda: abare("c1", "vip"), *n, clock)
    t_aguarded = best_per_call_async(guarded_async, *steady, clock)
    t_aguarded_long = best_per_call_async(guarded_async, *long, clock)
    load_after = os.getloadavg()

    us = 1e6
    long_label = f"{long[0]:,} calls"
    rows = [
        ("bare function", t_bare, t_bare),
        ("pure engine decide()", t_engine, t_bare),
        ("@guarded, memory store (sync)", t_guarded, t_bare),
        (f"  same, runs of {long_label}", t_guarded_long, t_bare),
        ("bare coroutine", t_abare, t_abare),
        ("@guarded, memory store (async)", t_aguarded, t_abare),
        (f"  same, runs of {long_label}", t_aguarded_long, t_abare),
    ]
    what = "wall-clock" if args.wall else "CPU"
    loads = ", ".join(f"{a:.2f}->{b:.2f}" for a, b in zip(load_before, load_after, strict=True))
    print(f"{what} time per call; load average (1, 5, 15 min) {loads}")
    print(f"{'measure':<36}{'per call':>12}{'per second':>14}{'ratio':>10}")
    for name, t, base in rows:
        print(f"{name:<36}{t * us:>10.2f}us{1 / t:>14,.0f}{t / base:>10.1f}x")
    added = {
        "sync": (t_guarded - t_bare) * us,
        "async": (t_aguarded - t_abare) * us,
        "sync, long": (t_guarded_long - t_bare) * us,
        "async, long": (t_aguarded_long - t_abare) * us,
    }
    goal = 20.0
    print(
        f"\n@guarded adds {added['sync']:.1f} us per sync call and {added['async']:.1f} us per "
        f"async call in steady state; {added['sync, long']:.1f} / {added['async, long']:.1f} us "
        f"over runs of {long_label} (goal: under {goal:.0f} us): "
        f"{'met' if max(added.values()) < goal else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
