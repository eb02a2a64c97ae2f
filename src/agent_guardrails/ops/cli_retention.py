"""The retention commands of ``agent-guardrails`` (see :mod:`agent_guardrails.store._archive`).

    agent-guardrails audit archive --before 2026-10-01 --out audit-2026-09.jsonl [--json]
    agent-guardrails audit verify --from-archive audit-2026-08.jsonl audit-2026-09.jsonl

``audit archive`` moves every audit record older than ``--before`` (a date or time in UTC,
or epoch seconds) to the file, then deletes them from the store, and prunes the records of
calls that ended before it (a pruned key no longer replays its result: keep more than any
thread's resume horizon). Calls that ended within the active pack's longest approval
``timeout`` (a day by default) are kept whatever the cutoff: a question still waiting may
be answered, and its graph then runs again the calls of its turn that already ended, which
must replay. ``--prune-recent`` prunes them too. ``audit verify --from-archive`` checks
the archives, oldest first, and the store's kept log as one chain.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import yaml

from agent_guardrails.ops import gate_evidence
from agent_guardrails.policy.pack import MAX_APPROVAL_SECONDS, ApprovalRule
from agent_guardrails.policy.windows import parse_duration
from agent_guardrails.store import Store, open_store, verify_audit_archive
from agent_guardrails.store.base import VerifyResult
from agent_guardrails.store.evidence import GateEvidence

__all__ = ["parse_when", "register", "replay_horizon", "verify"]

Command = Callable[..., argparse.ArgumentParser]


def register(asub: Any, cmd: Command, store_opts: Callable[..., None], verify_parser: Any) -> None:
    """Add ``audit archive``, and ``--from-archive`` to ``audit verify``."""
    verify_parser.add_argument(
        "--from-archive",
        nargs="+",
        metavar="FILE",
        default=None,
        help="archive files written by 'audit archive', oldest first: check them and the "
        "store's kept log as one chain",
    )
    a = cmd(
        asub,
        "archive",
        _archive,
        "move audit records older than --before to a JSON Lines file; prune ended calls",
    )
    a.add_argument(
        "--before",
        required=True,
        help="cutoff: a UTC date (2026-10-01), a UTC time (2026-10-01T12:00:00) or epoch seconds",
    )
    a.add_argument("--out", required=True, help="the archive file to write (JSON Lines)")
    a.add_argument(
        "--prune-recent",
        action="store_true",
        help="also prune calls that ended within the pack's longest approval timeout",
    )
    store_opts(a)


def parse_when(text: str, flag: str = "--before") -> float:
    """``text`` as epoch seconds: a number, or an ISO date or time (UTC unless it says)."""
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise ValueError(f"{flag} must be a finite number of epoch seconds, got {text!r}")
        return value
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{flag} must be a date like 2026-10-01, a time like 2026-10-01T12:00:00 (UTC) "
            f"or epoch seconds, got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def verify(args: argparse.Namespace, store: Store) -> VerifyResult:
    """``audit verify``: the store alone, or with ``--from-archive`` files."""
    archives = getattr(args, "from_archive", None)
    if archives:
        return verify_audit_archive(archives, store)
    return store.verify_audit()


def replay_horizon(store: Store) -> float:
    """Seconds a call that ended must still replay: the active pack's longest approval
    ``timeout`` (a question waits that long, and answering it runs its graph's turn again),
    at least the default timeout. Read from the stored YAML itself, so that a pack whose
    custom validators this process has not registered still tells."""
    longest = ApprovalRule().timeout
    active = store.active_pack()
    if active is None:
        return longest
    try:
        data = yaml.safe_load(active.source)
    except yaml.YAMLError:
        return float(MAX_APPROVAL_SECONDS)
    actions = data.get("actions") if isinstance(data, dict) else None
    for action in (actions or {}).values() if isinstance(actions, dict) else ():
        approval = action.get("approval") if isinstance(action, dict) else None
        timeout = approval.get("timeout") if isinstance(approval, dict) else None
        if timeout is not None:
            try:
                longest = max(longest, parse_duration(timeout))
            except ValueError:
                return float(MAX_APPROVAL_SECONDS)  # unreadable here: the most it may be
    return longest


def _archive(args: argparse.Namespace, out: TextIO) -> int:
    before = parse_when(args.before)
    if before > time.time():
        raise ValueError(
            f"--before {args.before} is in the future: that would archive the whole log, "
            "records of today included; give a past date"
        )
    store = open_store(args.store)
    try:
        if isinstance(store, GateEvidence):  # the gates read what is archived first
            gate_evidence.sync(store)
        prune_before = before
        if not args.prune_recent:
            prune_before = min(before, time.time() - replay_horizon(store))
        result = store.archive_audit(before, args.out)
        pruned = store.prune_calls(prune_before)
    finally:
        store.close()
    if args.json:
        data = {
            "before": before,
            "out": args.out,
            "archived": result.records,
            "first_seq": result.first_seq,
            "last_seq": result.last_seq,
            "last_hash": result.last_hash,
            "deleted": result.deleted,
            "pruned_calls": pruned,
            "pruned_before": prune_before,
        }
        out.write(json.dumps(data, indent=2) + "\n")
        return 0
    span = f" (records {result.first_seq}-{result.last_seq})" if result.records else ""
    kept = ""
    if prune_before < before:
        when = datetime.fromtimestamp(prune_before, UTC).isoformat(timespec="seconds")
        kept = (
            f" that ended before {when} (calls that ended since may still replay for a "
            "question waiting for its answer: --prune-recent prunes them too)"
        )
    out.write(
        f"archived {result.records} audit records{span} to {args.out}; "
        f"pruned {pruned} call rows{kept}\n"
    )
    return 0
