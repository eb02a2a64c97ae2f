"""Retention on SQLite: with the audit log archived and ended calls pruned as it goes, the
database file and the time per call stay flat however many calls went through.

    python benchmarks/retention.py [--calls N] [--block B] [--quick] [--keep-files]

Each call is what the guard does for a call that goes ahead, through the store API
directly (no engine, no agent): ``snapshot``, ``reserve`` one budget charge with its
``decision`` and ``execution.started`` records (one step), ``finish`` with its
``execution.finished`` record: three audit records and one call row per call. Every
``--block`` calls (default 100,000; 1,000,000 calls in all) the log's records older than
the block that just ended are archived (``archive_audit``, one JSON Lines file per block)
and the calls that ended before it are pruned (``prune_calls``): the store keeps about
one block. Each block's line shows its time per call and the database's size (with its
WAL) at its end, each against the first block's (ratios near 1.0: flat), and what the
archive step moved and how long it took (not counted in the time per call). At the end
``verify_audit_archive`` checks every archive and the kept log as one chain.

``--quick``: 20,000 calls in blocks of 2,000 (about ten seconds).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agent_guardrails.engine.decision import Charge
from agent_guardrails.store import open_store, verify_audit_archive
from agent_guardrails.store.base import AuditEvent

CHARGE = Charge("budget:retention@0", "budget", 0.001, 1e12, 2**62, "retention")
DECISION: dict[str, Any] = {  # what a real decision record carries
    "decision": "allow",
    "reasons": [],
    "message": "allowed",
    "action": "email.send",
    "tool": "send_email",
    "level": 1,
    "scope": {"agent": "mailer", "workflow": "newsletter", "region": "eu"},
    "pack": "marketing",
    "pack_version": "3",
    "cost": 0.001,
    "currency": "USD",
}


def _call(store: Any, key: str) -> None:
    store.snapshot(dial_key="workflow=newsletter", counter_keys=[CHARGE.key], call_key=key)
    res = store.reserve(
        key,
        [CHARGE],
        audit=AuditEvent("decision", DECISION, key, f"{key}:d"),
        start=AuditEvent("execution.started", {}, key, f"{key}:s"),
    )
    if not (res.ok and res.started):
        raise RuntimeError(f"reserve did not go ahead: {res}")
    store.finish(key, ok=True, audit=AuditEvent("execution.finished", {"ok": True}, key))


def _size(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000, help="calls in all")
    parser.add_argument("--block", type=int, default=100_000, help="archive every B calls")
    parser.add_argument("--quick", action="store_true", help="20,000 calls in blocks of 2,000")
    parser.add_argument("--keep-files", action="store_true", help="keep the database, archives")
    args = parser.parse_args(argv)
    calls, block = (20_000, 2_000) if args.quick else (args.calls, args.block)
    if calls < block or block < 1:
        parser.error("--calls must be at least --block, and --block at least 1")
    work = Path(tempfile.mkdtemp(prefix="ag-retention-"))
    db = work / "guard.db"
    store = open_store(f"sqlite:///{db}")
    archives: list[Path] = []
    print(f"SQLite {db}: {calls:,} calls, archiving every {block:,}")
    header = "block  calls       µs/call  ratio   db MB  ratio   archived  pruned  archive s"
    print(header)
    first_us = first_size = 0.0
    block_start = time.time()
    n = 0
    for number in range(1, calls // block + 1):
        began = time.perf_counter()
        for _ in range(block):
            n += 1
            _call(store, f"c{n}")
        us = (time.perf_counter() - began) / block * 1e6
        # Keep the block that just ended; archive and prune what came before it.
        cutoff, block_start = block_start, time.time()
        out = work / f"audit-{number:04d}.jsonl"
        began = time.perf_counter()
        archived = store.archive_audit(cutoff, out)
        pruned = store.prune_calls(cutoff)
        archive_s = time.perf_counter() - began
        archives.append(out)
        size = float(_size(db))
        first_us, first_size = first_us or us, first_size or size
        print(
            f"{number:5d}  {n:<10,d}  {us:7.1f}  {us / first_us:5.2f}  {size / 1e6:6.1f}  "
            f"{size / first_size:5.2f}  {archived.records:9,d}  {pruned:6,d}  {archive_s:8.2f}"
        )
        sys.stdout.flush()
    result = verify_audit_archive(archives, store)
    state = "intact" if result.ok else f"BROKEN at {result.first_bad_seq}: {result.problem}"
    print(f"archives + kept log: {result.checked:,} records, chain {state}")
    store.close()
    if args.keep_files:
        print(f"files kept in {work}")
    else:
        for path in work.iterdir():
            path.unlink()
        os.rmdir(work)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
