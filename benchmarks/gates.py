"""Promotion gates: operating characteristics, and what evaluating a million outcomes costs.

1. **Operating characteristics.** Scopes with a known true success rate run a simulated
   number of calls per week; each week the gate (``min_success_rate`` with ``min_samples``)
   judges a 4-week window and the scope's record since it reached its level. Beside it, in
   the same run, the baseline: the window's one-look 95% Wilson bound alone (the gate
   before the bound for repeated looks). Reported per true rate and weekly volume: how
   often a week's verdict is a wrong ``promote`` (true rate at or below the threshold; the
   goal is at most the declared alpha, 5% two-sided, so 2.5% on the side that promotes),
   how often such a scope is ever promoted over all the weekly looks (the same goal), how
   many runs a truly good scope needs before its first ``promote``, and how many weeks a
   truly bad scope at the next level takes to be demoted by its floor.
2. **Cost.** Counting the evidence of N recorded calls (``tally`` over their decision,
   started and finished audit records) and of N KPI outcomes (the lift's cohorts), against
   a bare Python loop over the same records in the same run (the baseline), then the pure
   verdict itself. Goal: one million outcomes in under a second.
3. **Cost on a store that keeps gate evidence** (SQLite; PostgreSQL too when
   ``AGENT_GUARDRAILS_TEST_POSTGRES`` is set): ``Gates.evaluate`` over N calls' kept evidence
   and N KPI outcomes (the store counts them in SQL), against a plain ``SELECT SUM(...)``
   over the same rows in the same run (the baseline); and what the first reading of a log
   costs per audit record (checking the chain and folding it into evidence), measured on a
   log written through the store.

    .venv/bin/python benchmarks/gates.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from agent_guardrails.engine.gate_stats import wilson
from agent_guardrails.engine.gates import Window, evaluate
from agent_guardrails.ops.gates import tally
from agent_guardrails.policy.pack import GateRule, PolicyPack
from agent_guardrails.store.base import AuditRecord, Outcome

THRESHOLD = 0.95
UP = GateRule.model_validate(
    {"from": 1, "to": 2, "min_samples": 50, "min_success_rate": THRESHOLD, "window": "28d"}
)
DOWN = GateRule.model_validate({"from": 1, "to": 2, "demote_below_success_rate": 0.90})


def binomial(rng: random.Random, n: int, p: float) -> int:
    return sum(rng.random() < p for _ in range(n))


def operating(weeks: int, trials: int, rng: random.Random) -> None:
    print(
        "1. operating characteristics: gate success >= 0.95, min 50 runs, a 4-week window "
        f"judged every week for {weeks} weeks, {trials} scopes each"
    )
    print(
        "   one look: the window's 95% Wilson lower bound alone (the baseline);\n"
        "   the gate: that, and the record since the scope reached its level on the bound for "
        "repeated looks"
    )
    print(
        f"{'true rate':>9} {'runs/week':>9} {'wrong promote per look':>23} "
        f"{'ever, in ' + str(weeks) + ' looks':>19} {'runs to promote (median)':>25}"
    )
    print(f"{'':>19} {'one look':>11} {'the gate':>11} {'one look':>9} {'the gate':>9}")
    for volume in (25, 100, 400):
        for p in (0.90, 0.93, 0.95, 0.97, 0.99):
            looks = [0, 0]
            wrong = [0, 0]
            ever = [0, 0]
            runs_to: list[list[int]] = [[], []]
            for _ in range(trials):
                history: list[int] = []
                promoted = [False, False]
                for _ in range(weeks):
                    history.append(binomial(rng, volume, p))
                    recent = history[-4:]
                    n = volume * len(recent)
                    k = sum(recent)
                    w = Window(0.0, 1.0, decided=n, executed=n, succeeded=k)
                    total = volume * len(history)
                    tenure = Window(0.0, 1.0, decided=total, executed=total, succeeded=sum(history))
                    verdicts = (
                        n >= 50 and wilson(k, n).low >= THRESHOLD,
                        evaluate("s", 1, [w], up=UP, tenure=tenure).verdict == "promote",
                    )
                    for i, promotes in enumerate(verdicts):
                        if promoted[i]:
                            continue  # promoted: the scope has left this gate
                        looks[i] += 1
                        if not promotes:
                            continue
                        promoted[i] = True
                        if p <= THRESHOLD:
                            wrong[i] += 1
                            ever[i] += 1
                        else:
                            runs_to[i].append(total)
                    if all(promoted):
                        break
            if p <= THRESHOLD:
                cells = [f"{wrong[i] / looks[i]:.2%}" for i in (0, 1)]
                cells += [f"{ever[i] / trials:.1%}" for i in (0, 1)]
                medians = "-"
            else:
                cells = ["-"] * 4
                each: list[str] = []
                for i in (0, 1):
                    m = f"{statistics.median(runs_to[i]):,.0f}" if runs_to[i] else "never"
                    if 0 < len(runs_to[i]) < trials:
                        m += f" ({trials - len(runs_to[i])} never)"
                    each.append(m)
                medians = " / ".join(each)
            print(
                f"{p:>9.2f} {volume:>9} {cells[0]:>11} {cells[1]:>11} {cells[2]:>9} "
                f"{cells[3]:>9} {medians:>25}"
            )
    print(
        "   wrong promote: share of weekly looks that promote a scope whose true rate is at or\n"
        "   below 0.95 (goal: <= 2.5%, the one-sided alpha of a 95% interval); 'ever': share\n"
        f"   of such scopes promoted at least once in {weeks} weekly looks (goal: <= 2.5% too:\n"
        "   repeated looks add up for a one-look bound); runs to promote: one look / the gate"
    )
    print()
    print("   demotion floor 0.90 (interval's upper bound below it), judged weekly on that week")
    for volume in (50, 200):
        for p in (0.70, 0.80, 0.85):
            weeks_to = []
            for _ in range(trials):
                for week in range(weeks):
                    k = binomial(rng, volume, p)
                    w = Window(0.0, 1.0, decided=volume, executed=volume, succeeded=k)
                    if evaluate("s", 2, [w], down=DOWN).verdict == "demote":
                        weeks_to.append(week + 1)
                        break
            shown = f"{statistics.median(weeks_to):.0f}" if weeks_to else "never"
            print(
                f"   true rate {p:.2f}, {volume} runs/week: median {shown} week(s), "
                f"demoted in {len(weeks_to)} of {trials}"
            )


PACK = PolicyPack.from_yaml(
    """
name: bench
version: "1"
actions:
  crm.tag: {risk: low}
levels:
  - {scope: {workflow: w}, level: execute, ceiling: optimize}
gates:
  - {from: execute, to: optimize, min_samples: 50, min_success_rate: 0.95,
     min_lift: 0.0, lift_kpi: revenue}
"""
)


def synthetic(n: int) -> tuple[list[AuditRecord], list[Outcome]]:
    """``n`` calls as the pipeline records them (decision, started, finished) and ``n`` KPI
    outcomes, all in one scope, within the last day."""
    now = time.time()
    records: list[AuditRecord] = []
    seq = 0
    decision_base = {
        "decision": "allow",
        "action": "crm.tag",
        "tool": "tag",
        "level": 1,
        "scope": {"workflow": "w"},
        "pack": "bench",
        "pack_version": "1",
        "validators": [],
    }
    for i in range(n):
        key = f"k{i}"
        at = now - 86_000 + i * (86_000 / n)
        for kind, data in (
            ("decision", decision_base),
            ("execution.started", {"action": "crm.tag"}),
            ("execution.finished" if i % 50 else "execution.failed", {"action": "crm.tag"}),
        ):
            seq += 1
            records.append(AuditRecord(seq, at, kind, key, data, "", ""))
    outcomes = [
        Outcome(
            f"e{i}",
            "control" if i % 5 == 0 else "treatment",
            "revenue",
            float(i % 17),
            now - 80_000 + i * (80_000 / n),
            "workflow=w",
        )
        for i in range(n)
    ]
    return records, outcomes


def timed(fn: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def cost(n: int) -> None:
    print(f"2. cost of evaluating {n:,} recorded calls and {n:,} KPI outcomes (best of 3)")
    records, outcomes = synthetic(n)
    now = time.time() + 1

    def bare() -> int:
        count = 0
        for r in records:
            if r.kind == "execution.finished":
                count += 1
        for o in outcomes:
            if o.cohort == "control":
                count += 1
        return count

    windows = tally(records, PACK, now=now, outcomes=outcomes)["workflow=w"]
    base = timed(bare)
    counted = timed(lambda: tally(records, PACK, now=now, outcomes=outcomes))
    verdict = timed(lambda: evaluate("workflow=w", 1, windows, up=PACK.gates[0]))
    print(f"   bare loop over the records and outcomes   {base:8.3f} s   1.0x")
    print(f"   tally: fold the audit log, count windows  {counted:8.3f} s   {counted / base:.1f}x")
    print(f"   evaluate: the verdict from the counts     {verdict * 1e3:8.3f} ms")
    per_million = (counted + verdict) * 1_000_000 / n
    met = "met" if per_million < 1.0 else "NOT met"
    print(f"   per million outcomes: {per_million:.2f} s (goal < 1 s: {met})")
    w = windows[-1]
    print(
        f"   (counted {w.executed:,} runs, {w.succeeded:,} ended well; lift over "
        f"{w.kpi_treatment.n if w.kpi_treatment else 0:,} treatment outcomes)"
    )


KEPT_PACK = """
name: bench
version: "1"
actions:
  crm.tag: {risk: low}
levels:
  - {scope: {workflow: w}, level: execute, ceiling: optimize}
gates:
  - {from: execute, to: optimize, min_samples: 50, min_success_rate: 0.95, window: 28d,
     lift_kpi: revenue}
"""


def kept(url: str, n: int, label: str) -> None:
    """Section 3 on one store."""
    from agent_guardrails.ops.gate_evidence import sync
    from agent_guardrails.ops.gates import Gates
    from agent_guardrails.ops.operations import apply_pack
    from agent_guardrails.store import open_store
    from agent_guardrails.store.base import AuditEvent
    from agent_guardrails.store.evidence import GateCall, GateEvidence

    store = open_store(url)
    assert isinstance(store, GateEvidence)
    apply_pack(store, KEPT_PACK, by="bench")
    # The first reading, per record, on a log written through the store.
    m = max(n // 100, 1000)
    for i in range(m):
        key = f"r{i}"
        decision = {
            "decision": "allow",
            "action": "crm.tag",
            "level": 1,
            "scope": {"workflow": "w"},
            "pack_version": "1",
            "validators": [],
        }
        store.append_audit(AuditEvent("decision", decision, key))
        store.append_audit(AuditEvent("execution.started", {}, key))
        store.append_audit(AuditEvent("execution.finished", {}, key))
    t0 = time.perf_counter()
    at, ok = sync(store)
    first = time.perf_counter() - t0
    assert ok
    # N calls' evidence and N KPI outcomes, written straight into the tables (set-up only).
    now = time.time()
    page = []
    for i in range(n):
        at_i = now + 1 + i * (86_000 / n)
        page.append(
            GateCall(
                f"k{i}",
                '{"workflow":"w"}',
                "crm.tag",
                1,
                at_i,
                i + 10,
                "1",
                started_at=at_i,
                ended=bool(i % 50),
            )
        )
        if len(page) == 5000:
            store.save_gate_evidence(page, [], since=at, to=at)
            page = []
    if page:
        store.save_gate_evidence(page, [], since=at, to=at)
    rows = [
        (
            f"e{i}",
            "control" if i % 5 == 0 else "treatment",
            "revenue",
            float(i % 17),
            now + 1 + i * (80_000 / n),
            "workflow=w",
            1,
            "1",
        )
        for i in range(n)
    ]
    columns = "entity, cohort, metric, value, at, scope_key, level, pack_version"
    count_sql: list[str] = []
    if url.startswith("sqlite"):
        import sqlite3

        db = sqlite3.connect(url[len("sqlite:///") :])
        db.executemany(f"INSERT INTO ag_outcomes ({columns}) VALUES (?,?,?,?,?,?,?,?)", rows)
        db.commit()
        count_sql = ["SELECT SUM(at) FROM ag_gate_calls", "SELECT SUM(value) FROM ag_outcomes"]

        def bare() -> None:
            for q in count_sql:
                db.execute(q).fetchall()
    else:
        import psycopg

        schema = url.split("schema=")[1]
        conn = psycopg.connect(url.split("?")[0], autocommit=True)
        with conn.cursor().copy(f'COPY "{schema}".ag_outcomes ({columns}) FROM STDIN') as cp:
            for row in rows:
                cp.write_row(row)
        conn.execute(f'ANALYZE "{schema}".ag_outcomes')
        conn.execute(f'ANALYZE "{schema}".ag_gate_calls')
        count_sql = [
            f'SELECT SUM(at) FROM "{schema}".ag_gate_calls',
            f'SELECT SUM(value) FROM "{schema}".ag_outcomes',
        ]

        def bare() -> None:
            for q in count_sql:
                conn.execute(q).fetchall()

    later = now + 86_100
    gates = Gates(store)
    verdicts = gates.evaluate(now=later, record=False)
    base = timed(bare)
    spent = timed(lambda: Gates(store).evaluate(now=later, record=False))
    w = verdicts[0].windows[-1]
    print(
        f"   {label}: evaluate over {w.executed:,} kept calls + "
        f"{w.kpi_treatment.n + w.kpi_control.n if w.kpi_treatment and w.kpi_control else 0:,}"
        f" KPI outcomes   {spent:6.3f} s   ({spent / base:.1f}x a plain SUM over both tables, "
        f"{base:.3f} s; verdict {verdicts[0].verdict})"
    )
    per_million = spent * 1_000_000 / w.executed
    met = "met" if per_million < 1.0 else "NOT met"
    print(
        f"   {label}: per million calls and million outcomes: {per_million:.2f} s "
        f"(goal < 1 s: {met})"
    )
    print(
        f"   {label}: first reading of a log: {first / (3 * m) * 1e6:.1f} us per audit record "
        f"({3 * m:,} records)"
    )
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, too short for figures")
    parser.add_argument(
        "--only",
        type=int,
        choices=(1, 2, 3),
        action="append",
        help="run only this section (repeatable; default: all three)",
    )
    args = parser.parse_args()
    sections = set(args.only or (1, 2, 3))
    rng = random.Random(20261206)
    n = 20_000 if args.quick else 1_000_000
    if 1 in sections:
        operating(weeks=12 if args.quick else 26, trials=20 if args.quick else 200, rng=rng)
        print()
    if 2 in sections:
        cost(n)
        print()
    if 3 in sections:
        kept_everywhere(n)


def kept_everywhere(n: int) -> None:
    print(
        f"3. cost on a store that keeps gate evidence ({n:,} calls, {n:,} KPI outcomes; best of 3)"
    )
    import os
    import tempfile
    import uuid

    with tempfile.TemporaryDirectory() as tmp:
        kept(f"sqlite:///{tmp}/gates.db", n, "SQLite")
    pg = os.environ.get("AGENT_GUARDRAILS_TEST_POSTGRES")
    if pg:
        schema = f"ag_bench_{uuid.uuid4().hex[:8]}"
        sep = "&" if "?" in pg else "?"
        try:
            kept(f"{pg}{sep}schema={schema}", n, "PostgreSQL")
        finally:
            import psycopg

            with psycopg.connect(pg.split("?")[0], autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
