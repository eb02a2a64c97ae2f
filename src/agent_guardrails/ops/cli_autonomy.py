"""The earned-autonomy commands of ``agent-guardrails``: gates, outcomes and the scorecard
(see :mod:`agent_guardrails.ops.gates`, :mod:`~agent_guardrails.ops.outcomes` and
:mod:`~agent_guardrails.ops.weekly`).

    agent-guardrails gates [SCOPE] [--json] [--dry-run]
    agent-guardrails gates promote SCOPE --by NAME [--reason WHY] [--override]
    agent-guardrails gates --replay --since 2026-11-01 [--until DATE] [--json]
    agent-guardrails outcomes import FILE.csv|FILE.jsonl
    agent-guardrails scorecard [--week DATE] [--format html|md|json] [--out FILE]

``gates`` evaluates every scope's gate, records each verdict in the audit log and applies
the demotions at once (``--dry-run``: only show them). Promotions are only ever applied by
``gates promote``, by a named person.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from agent_guardrails.engine.gates import GateVerdict
from agent_guardrails.ops.gates import Gates, replay
from agent_guardrails.store import open_store
from agent_guardrails.telemetry.spans import iso

__all__ = ["register"]

Command = Callable[..., argparse.ArgumentParser]


def register(sub: Any, cmd: Command, store_opts: Callable[..., None]) -> None:
    g = cmd(
        sub, "gates", _gates, "evaluate promotion gates; apply demotions; promote (by a person)"
    )
    g.add_argument(
        "words",
        nargs="*",
        metavar="[promote] SCOPE",
        help="a scope (dim=value,...) to show only its gate, or 'promote SCOPE'",
    )
    g.add_argument("--by", default=None, help="promote: who applies the promotion (audited)")
    g.add_argument("--reason", default="", help="promote: why (required with --override)")
    g.add_argument(
        "--override", action="store_true", help="promote without a passing gate (audited)"
    )
    g.add_argument("--dry-run", action="store_true", help="show verdicts; record and apply nothing")
    g.add_argument("--replay", action="store_true", help="what the gates would have decided")
    g.add_argument("--since", default=None, help="replay from this date (YYYY-MM-DD, UTC)")
    g.add_argument("--until", default=None, help="replay up to this date (default: now)")
    store_opts(g)

    outcomes = sub.add_parser("outcomes", help="record business KPIs for the gates")
    osub = outcomes.add_subparsers(title="outcomes commands", metavar="COMMAND")
    imp = cmd(osub, "import", _outcomes_import, "record every outcome in a CSV or JSON Lines file")
    imp.add_argument("file")
    store_opts(imp)

    sc = cmd(sub, "scorecard", _scorecard, "write the weekly autonomy scorecard")
    sc.add_argument("--week", default=None, help="any day of the week (default: last week)")
    sc.add_argument("--format", choices=("html", "md", "json"), default="html")
    sc.add_argument("--out", default=None, help="file to write (default: standard output)")
    store_opts(sc, json_out=False)


def _gates(args: argparse.Namespace, out: TextIO) -> int:
    store = open_store(args.store)
    gates = Gates(store)
    words: list[str] = list(args.words)
    if words and words[0] == "promote":
        if len(words) != 2 or not args.by:
            raise ValueError("usage: agent-guardrails gates promote SCOPE --by NAME [--override]")
        change = gates.promote(words[1], by=args.by, reason=args.reason, override=args.override)
        data = {
            "scope": change.scope_key,
            "old": change.old_level,
            "new": change.new_level,
            "by": change.by,
            "evidence": dict(change.evidence),
        }
        if args.json:
            out.write(json.dumps(data, indent=2) + "\n")
        else:
            out.write(
                f"promoted {change.scope_key}: L{change.new_level - 1} -> L{change.new_level} "
                f"by {change.by} (evaluation {str(change.evidence.get('evaluation_id'))[:12]})\n"
            )
        return 0
    if len(words) > 1:
        raise ValueError("give at most one SCOPE (or 'promote SCOPE')")
    scope = words[0] if words else None
    if args.replay:
        if args.since is None:
            raise ValueError("--replay needs --since DATE (YYYY-MM-DD)")
        since = _date(args.since, "--since")
        until = _date(args.until, "--until") if args.until else gates.clock()
        if until < since:
            raise ValueError("--until must not be before --since")
        rows = replay(store, gates.pack, since=since, until=until)
        if args.json:
            payload = [
                {"at": iso(at), "verdicts": [v.as_dict() for v in vs if _wanted(v, scope, gates)]}
                for at, vs in rows
            ]
            out.write(json.dumps(payload, indent=2) + "\n")
            return 0
        for at, verdicts in rows:
            out.write(f"== as of {iso(at)}\n")
            _print(out, [v for v in verdicts if _wanted(v, scope, gates)])
        return 0
    evaluations = gates.evaluations(scope, record=not args.dry_run)
    verdicts = [e.verdict for e in evaluations]
    changes = [] if args.dry_run else gates.apply(evaluations)
    if args.json:
        out.write(
            json.dumps(
                {
                    "verdicts": [v.as_dict() for v in verdicts],
                    "demoted": [
                        {"scope": c.scope_key, "old": c.old_level, "new": c.new_level}
                        for c in changes
                    ],
                },
                indent=2,
            )
            + "\n"
        )
        return 0
    _print(out, verdicts)
    for c in changes:
        out.write(f"demoted {c.scope_key}: L{c.old_level} -> L{c.new_level} ({c.reason})\n")
    return 0


def _outcomes_import(args: argparse.Namespace, out: TextIO) -> int:
    from agent_guardrails.ops.outcomes import import_outcomes

    count = import_outcomes(open_store(args.store), args.file)
    if args.json:
        out.write(json.dumps({"recorded": count}) + "\n")
    else:
        out.write(f"recorded {count} outcome(s) from {args.file}\n")
    return 0


def _scorecard(args: argparse.Namespace, out: TextIO) -> int:
    from agent_guardrails.ops import scorecard
    from agent_guardrails.ops.weekly import weekly_scorecard

    week = datetime.fromtimestamp(_date(args.week, "--week"), UTC).date() if args.week else None
    card = weekly_scorecard(open_store(args.store), week=week)
    render = {"html": scorecard.to_html, "md": scorecard.to_markdown, "json": scorecard.to_json}
    text = render[args.format](card)
    if args.out is None:
        out.write(text)
    else:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
        out.write(f"wrote the scorecard of the week of {card.week_start} to {args.out}\n")
    return 0


def _wanted(v: GateVerdict, scope: str | None, gates: Gates) -> bool:
    if scope is None:
        return True
    from agent_guardrails.policy.scope import Scope

    return v.scope == gates.pack.dial_scope(Scope.parse(scope)).key


def _print(out: TextIO, verdicts: list[GateVerdict]) -> None:
    if not verdicts:
        out.write("(no scopes: nothing decided yet and no level set)\n")
    for v in verdicts:
        to = "" if v.to_level is None else f" -> L{v.to_level}"
        more = "" if v.more is None else f" (about {v.more} more)"
        out.write(f"{v.scope}  L{v.level}{to}  {v.verdict.upper()}{more}\n")
        out.write(f"  {v.explanation}\n")
        for m in v.metrics:
            out.write(f"  - [{m.status}] {m.sentence}\n")


def _date(text: str, flag: str) -> float:
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{flag} must be a date like 2026-11-30, got {text!r}") from None
    return day.timestamp()
