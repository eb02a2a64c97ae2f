"""Code that runs in worker processes (``multiprocessing``, spawn context) for the store tests.

Each worker opens its own store from the URL, as a separate agent process would.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from agent_guardrails.engine.decision import Charge
from agent_guardrails.store import open_store
from agent_guardrails.store.base import AuditEvent

DAY_END = 1_704_326_400
HOT_BUDGET = Charge("budget:hot|USD@1704240000", "budget", 1.0, 100.0, DAY_END, "hot")
HOT_CONTACT = Charge(
    "exposure:email.send:contact-1@1704240000", "exposure", 1.0, 100.0, DAY_END, "contact=1"
)
CHURN_BUDGET = Charge("budget:churn|USD@1704240000", "budget", 0.25, 1e12, DAY_END, "churn")


def reserve_hammer(
    url: str, proc: int, threads: int, attempts: int, barrier: Any, out: Any
) -> None:
    """``threads`` threads each try ``attempts`` reservations of one unit of the hot budget
    and the hot contact; every success is started and finished. Puts ``(key, ok)`` pairs and
    the replay results on ``out``."""
    store = open_store(url)
    results: list[tuple[str, bool]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run(thread: int) -> None:
        try:
            for i in range(attempts):
                key = f"p{proc}-t{thread}-{i}"
                res = store.reserve(
                    key,
                    [HOT_BUDGET, HOT_CONTACT],
                    audit=AuditEvent("decision", {"proc": proc, "i": i}, key, f"{key}:decision"),
                )
                if res.ok:
                    assert store.start(
                        key, audit=AuditEvent("execution.started", {}, key, f"{key}:started")
                    )
                    store.finish(
                        key,
                        ok=True,
                        actual_cost=1.0,
                        audit=AuditEvent("execution.finished", {}, key, f"{key}:end"),
                    )
                else:
                    assert res.breach is not None
                    assert res.used + 1.0 > 100.0
                with lock:
                    results.append((key, res.ok))
        except BaseException as exc:  # reported to the parent
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    barrier.wait(timeout=120)
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    replays = [store.reserve(key, [HOT_BUDGET, HOT_CONTACT]).replay for key, ok in results if ok]
    store.close()
    out.put((proc, results, replays, [repr(e) for e in errors]))


def crash_victim(url: str, ready: str) -> None:
    """Reserve and start ``crash-1``, keep writing from a second thread, say ready, sleep:
    the parent kills this process with SIGKILL, mid-write."""
    store = open_store(url)
    key = "crash-1"
    assert store.reserve(
        key, [HOT_BUDGET], audit=AuditEvent("decision", {}, key, f"{key}:decision")
    ).ok
    assert store.start(key, audit=AuditEvent("execution.started", {}, key, f"{key}:started"))

    def churn() -> None:
        i = 0
        while True:
            k = f"churn-{i}"
            if store.reserve(
                k, [CHURN_BUDGET], audit=AuditEvent("decision", {}, k, f"{k}:decision")
            ).ok:
                store.start(k, audit=AuditEvent("execution.started", {}, k, f"{k}:started"))
                if i % 2:
                    store.finish(
                        k, ok=True, audit=AuditEvent("execution.finished", {}, k, f"{k}:end")
                    )
            i += 1

    threading.Thread(target=churn, daemon=True).start()
    time.sleep(0.3)
    Path(ready).write_text("ready")
    time.sleep(120)
