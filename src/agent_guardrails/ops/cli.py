"""``agent-guardrails``: the operator's command line.

Every command that reads or changes state takes ``--store URL`` (or the
``AGENT_GUARDRAILS_STORE`` environment variable; default ``sqlite:///agent_guardrails.db``).
Tables are for people; ``--json`` prints JSON for scripts. Exit status: 0 on success, 1 when
a check fails (invalid pack, broken audit chain), 2 on usage or configuration errors.

    agent-guardrails demo
    agent-guardrails policy validate pack.yaml
    agent-guardrails policy schema > pack.schema.json
    agent-guardrails policy apply pack.yaml --by ana --reason "Q4 caps"
    agent-guardrails policy history | rollback [VERSION] | diff OLD NEW
    agent-guardrails status
    agent-guardrails kill workflow=paid_media --by ops --reason "spend anomaly"
    agent-guardrails unkill workflow=paid_media --by ops --reason "explained"
    agent-guardrails gates [SCOPE] [--json] [--dry-run] | --replay --since DATE
    agent-guardrails gates promote workflow=newsletter --by board [--override --reason WHY]
    agent-guardrails outcomes import revenue.csv
    agent-guardrails approvals [--json] | --sweep [--webhook URL --secret S]
    agent-guardrails scorecard --week 2026-11-30 --format html --out scorecard.html
    agent-guardrails level set workflow=newsletter assist --by ops --reason "incident"
    agent-guardrails level history
    agent-guardrails audit tail | verify [--from-archive FILE ...] | export
    agent-guardrails audit archive --before 2026-10-01 --out audit-2026-09.jsonl
    agent-guardrails traces agent-guardrails-trace.json [--trace ID]
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from agent_guardrails.errors import GuardrailError, PolicyError, PolicyProblem
from agent_guardrails.ops import cli_autonomy, cli_retention
from agent_guardrails.ops import operations as ops
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store import DEFAULT_STORE_URL, Store, open_store
from agent_guardrails.store.base import LevelChange, read_audit

__all__ = ["main"]


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``agent-guardrails`` console script."""
    out = out or sys.stdout
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help(out)
        return 2
    try:
        code: int = args.run(args, out)
        return code
    except PolicyError as exc:
        out.write(f"{exc}\n")
        return 1
    except (GuardrailError, ValueError) as exc:
        sys.stderr.write(f"agent-guardrails: {exc}\n")
        return 2
    except BrokenPipeError:  # the reader went away (``| head``): nothing more to say
        if out is sys.stdout:  # and nothing for Python to fail on when it flushes at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OSError, OverflowError, ImportError) as exc:  # a file, a number, a --plugin
        sys.stderr.write(f"agent-guardrails: {exc}\n")
        return 2


def _said(flag: str) -> Callable[[str], str]:
    """An audited ``--by``/``--reason``: not blank (the log would say nothing of who or why)."""

    def check(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{flag} must say something (it is audited)")
        return text

    return check


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agent-guardrails",
        description="Operate agent-guardrails: packs, levels, kill-switches, audit.",
    )
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    def cmd(
        parent: Any, name: str, fn: Callable[[argparse.Namespace, TextIO], int], help: str
    ) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help)
        sp.set_defaults(run=fn)
        return sp

    def store_opts(sp: argparse.ArgumentParser, *, json_out: bool = True) -> None:
        sp.add_argument(
            "--store",
            default=os.environ.get("AGENT_GUARDRAILS_STORE", DEFAULT_STORE_URL),
            help="store URL (env AGENT_GUARDRAILS_STORE; default %(default)s)",
        )
        if json_out:
            sp.add_argument("--json", action="store_true", help="print JSON")

    def who(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--by", required=True, type=_said("--by"), help="who is doing this (audited)"
        )
        sp.add_argument("--reason", required=True, type=_said("--reason"), help="why (audited)")

    demo = cmd(sub, "demo", _demo, "run the demo agent on a fresh SQLite store")
    demo.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    tr = cmd(sub, "traces", _traces, "print a Jaeger JSON trace file as a tree of calls")
    tr.add_argument("file", help="a trace file, e.g. the demo's agent-guardrails-trace.json")
    tr.add_argument("--trace", default=None, help="only the trace whose id starts with this")

    policy = sub.add_parser("policy", help="validate, apply, roll back and diff policy packs")
    psub = policy.add_subparsers(title="policy commands", metavar="COMMAND")
    v = cmd(psub, "validate", _policy_validate, "check pack files; print every problem")
    v.add_argument("files", nargs="+")
    v.add_argument(
        "--plugin",
        action="append",
        default=[],
        help="import this module first (it registers custom validators)",
    )
    cmd(psub, "schema", _policy_schema, "print the JSON Schema of pack files")
    a = cmd(psub, "apply", _policy_apply, "validate a pack file, store it and activate it")
    a.add_argument("file")
    a.add_argument("--by", required=True, type=_said("--by"))
    a.add_argument("--reason", default="")
    a.add_argument("--plugin", action="append", default=[])
    store_opts(a)
    h = cmd(psub, "history", _policy_history, "list stored pack versions")
    store_opts(h)
    r = cmd(psub, "rollback", _policy_rollback, "activate an older version (default: the previous)")
    r.add_argument("version", nargs="?")
    r.add_argument("--by", required=True, type=_said("--by"))
    r.add_argument("--reason", default="")
    store_opts(r)
    d = cmd(psub, "diff", _policy_diff, "diff two stored versions")
    d.add_argument("old")
    d.add_argument("new")
    d.add_argument("--name", help="pack name (default: the active pack's)")
    store_opts(d, json_out=False)

    s = cmd(sub, "status", _status, "levels, kill-switches, budgets and calls in doubt")
    store_opts(s)
    k = cmd(sub, "kill", _kill, "engage a kill-switch (SCOPE: global or dim=value,...)")
    k.add_argument("scope", nargs="?", default="global")
    who(k)
    store_opts(k)
    u = cmd(sub, "unkill", _unkill, "release a kill-switch")
    u.add_argument("scope", nargs="?", default="global")
    who(u)
    store_opts(u)

    level = sub.add_parser("level", help="set and inspect the level dial")
    lsub = level.add_subparsers(title="level commands", metavar="COMMAND")
    ls = cmd(lsub, "set", _level_set, "move the level dial of a scope (within its ceiling)")
    ls.add_argument("scope")
    ls.add_argument("level", help="0-3, L0-L3 or assist/execute/optimize/orchestrate")
    who(ls)
    ls.add_argument("--evidence", default=None, help="JSON object with the evidence")
    ls.add_argument(
        "--override",
        action="store_true",
        help="raise the level without a passing gate (--reason says why; it is audited)",
    )
    store_opts(ls)
    lh = cmd(lsub, "history", _level_history, "every level change")
    lh.add_argument("scope", nargs="?")
    store_opts(lh)

    cli_autonomy.register(sub, cmd, store_opts)

    ap = cmd(sub, "approvals", _approvals, "what waits for a human; --sweep expires and warns")
    ap.add_argument("--sweep", action="store_true", help="record expired questions, warn")
    ap.add_argument("--warn-before", default="1h", help="warn this long before expiry (1h)")
    ap.add_argument(
        "--webhook",
        default=os.environ.get("AGENT_GUARDRAILS_WEBHOOK_URL"),
        help="--sweep: POST each notice here (env AGENT_GUARDRAILS_WEBHOOK_URL)",
    )
    ap.add_argument(
        "--secret",
        default=os.environ.get("AGENT_GUARDRAILS_WEBHOOK_SECRET"),
        help="the webhook's HMAC secret (env AGENT_GUARDRAILS_WEBHOOK_SECRET)",
    )
    store_opts(ap)

    audit = sub.add_parser("audit", help="read, verify and export the audit log")
    asub = audit.add_subparsers(title="audit commands", metavar="COMMAND")
    t = cmd(asub, "tail", _audit_tail, "the last records")
    t.add_argument("-n", type=int, default=20)
    store_opts(t)
    vf = cmd(asub, "verify", _audit_verify, "check the hash chain; name the first bad record")
    store_opts(vf)
    e = cmd(asub, "export", _audit_export, "write every record as JSON Lines")
    e.add_argument("--output", "-o", default="-", help="file (default: standard output)")
    store_opts(e, json_out=False)
    cli_retention.register(asub, cmd, store_opts, vf)
    return p


# --------------------------------------------------------------------------- helpers


def _open(args: argparse.Namespace) -> Store:
    return open_store(args.store)


def _emit_json(out: TextIO, data: Any) -> None:
    out.write(json.dumps(data, indent=2, default=str) + "\n")


def _table(out: TextIO, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    line = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))
    out.write(line.rstrip() + "\n")
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
    if not rows:
        out.write("(none)\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _plugins(names: Sequence[str]) -> None:
    for name in names:
        importlib.import_module(name)


# --------------------------------------------------------------------------- commands


def _demo(args: argparse.Namespace, out: TextIO) -> int:
    from agent_guardrails.ops.demo.run import main as demo_main

    return demo_main(args.rest, out)


def _traces(args: argparse.Namespace, out: TextIO) -> int:
    from agent_guardrails.ops.traces import render_traces
    from agent_guardrails.telemetry.jaeger_file import read_trace_file

    try:
        traces = read_trace_file(args.file)
    except ValueError as exc:
        out.write(f"{exc}\n")
        return 2
    lines = render_traces(traces, args.trace)
    if not lines:
        out.write(f"no trace in {args.file} has an id starting with {args.trace!r}\n")
        return 1
    out.write("\n".join(lines) + "\n")
    return 0


def _policy_validate(args: argparse.Namespace, out: TextIO) -> int:
    """Check every file and print every problem of each, one per line; a file that cannot
    be read or decoded is one problem for that file, and the other files are still checked."""
    from agent_guardrails.policy.pack import PolicyPack

    _plugins(args.plugin)
    failed = 0
    for path in args.files:
        try:
            pack = PolicyPack.from_yaml(Path(path))
        except PolicyError as exc:
            failed += 1
            for problem in exc.problems:
                out.write(f"{problem}\n")
            continue
        except (ValueError, TypeError, RecursionError) as exc:  # a loader bug: report, go on
            failed += 1
            message = f"cannot load the pack ({type(exc).__name__}: {exc}); please report this"
            out.write(f"{PolicyProblem(path, None, '', message)}\n")
            continue
        out.write(
            f"{path}: ok ({pack.name} v{pack.version}: {len(pack.actions)} actions, "
            f"{len(pack.levels)} level rules, {len(pack.budgets)} budgets)\n"
        )
    return 1 if failed else 0


def _policy_schema(args: argparse.Namespace, out: TextIO) -> int:
    from agent_guardrails.policy.loader import pack_json_schema

    _emit_json(out, pack_json_schema())
    return 0


def _policy_apply(args: argparse.Namespace, out: TextIO) -> int:
    _plugins(args.plugin)
    store = _open(args)
    pv = ops.apply_pack(store, Path(args.file), by=args.by, reason=args.reason)
    if args.json:
        _emit_json(out, {"name": pv.name, "version": pv.version, "digest": pv.digest})
    else:
        out.write(f"applied {pv.name} v{pv.version} (now active)\n")
    return 0


def _policy_history(args: argparse.Namespace, out: TextIO) -> int:
    versions = _open(args).pack_versions()
    if args.json:
        _emit_json(
            out,
            [
                {
                    "name": v.name,
                    "version": v.version,
                    "active": v.active,
                    "digest": v.digest,
                    "applied_by": v.applied_by,
                    "applied_at": v.applied_at,
                }
                for v in versions
            ],
        )
        return 0
    _table(
        out,
        ["name", "version", "active", "applied by", "applied at", "digest"],
        [
            [
                v.name,
                v.version,
                "*" if v.active else "",
                v.applied_by,
                _when(v.applied_at),
                v.digest[:12],
            ]
            for v in versions
        ],
    )
    return 0


def _policy_rollback(args: argparse.Namespace, out: TextIO) -> int:
    pv = ops.rollback_pack(_open(args), args.version, by=args.by, reason=args.reason)
    if args.json:
        _emit_json(out, {"name": pv.name, "version": pv.version})
    else:
        out.write(f"rolled back: {pv.name} v{pv.version} is active\n")
    return 0


def _policy_diff(args: argparse.Namespace, out: TextIO) -> int:
    text = ops.diff_packs(_open(args), args.old, args.new, name=args.name)
    out.write(text or "(no differences)\n")
    return 0


def _status(args: argparse.Namespace, out: TextIO) -> int:
    st = ops.status(_open(args))
    if args.json:
        _emit_json(out, st.as_dict())
        return 0
    pack = f"{st.pack.name} v{st.pack.version}" if st.pack else "none (run 'policy apply')"
    out.write(f"policy pack: {pack}\n\nLEVELS\n")
    _table(
        out,
        ["scope", "level", "initial", "ceiling"],
        [[r["scope"], r["level"], r["initial"], r["ceiling"]] for r in st.levels],
    )
    out.write("\nKILL-SWITCHES\n")
    _table(
        out,
        ["scope", "state", "by", "reason", "at"],
        [
            [
                s["scope"],
                "ENGAGED" if s["engaged"] else "released",
                s["by"],
                s["reason"],
                _when(s["at"]),
            ]
            for s in st.switches
        ],
    )
    out.write("\nBUDGETS (current window)\n")
    _table(
        out,
        ["budget", "scope", "window", "used", "left", "limit", "currency"],
        [
            [b["budget"], b["scope"], b["window"], b["used"], b["left"], b["limit"], b["currency"]]
            for b in st.budgets
        ],
    )
    out.write("\nCALLS IN DOUBT (started, never finished: not re-run; resolve by hand)\n")
    _table(out, ["call key", "since"], [[d["call_key"], _when(d["since"])] for d in st.in_doubt])
    return 0


def _kill(args: argparse.Namespace, out: TextIO) -> int:
    return _switch(args, out, engaged=True)


def _unkill(args: argparse.Namespace, out: TextIO) -> int:
    return _switch(args, out, engaged=False)


def _switch(args: argparse.Namespace, out: TextIO, *, engaged: bool) -> int:
    scope = Scope.parse(args.scope)
    store = _open(args)
    lowered: list[LevelChange] = []
    if engaged:
        from agent_guardrails.ops.gates import engage_kill_switch

        pack = ops.active_policy(store) if store.active_pack() is not None else None
        sw, lowered = engage_kill_switch(store, pack, scope, by=args.by, reason=args.reason)
    else:
        sw = store.set_kill_switch(scope, False, by=args.by, reason=args.reason)
    if args.json:
        _emit_json(
            out,
            {
                "scope": sw.scope.key,
                "engaged": sw.engaged,
                "by": sw.by,
                "demoted": [{"scope": c.scope_key, "new": c.new_level} for c in lowered],
            },
        )
    else:
        state = "ENGAGED" if engaged else "released"
        out.write(f"kill-switch {sw.scope.key}: {state} by {sw.by} ({sw.reason})\n")
        for c in lowered:
            out.write(f"  trip-wire: {c.scope_key} lowered to L{c.new_level}\n")
    return 0


def _level_set(args: argparse.Namespace, out: TextIO) -> int:
    evidence = None
    if args.evidence:
        try:
            evidence = json.loads(args.evidence)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--evidence must be a JSON object: {exc}") from None
        if not isinstance(evidence, dict):
            raise ValueError("--evidence must be a JSON object, e.g. '{\"success_rate\": 0.97}'")
    change = ops.set_level(
        _open(args),
        Scope.parse(args.scope),
        args.level,
        by=args.by,
        reason=args.reason,
        evidence=evidence,
        override=args.override,
    )
    if args.json:
        _emit_json(
            out, {"scope": change.scope_key, "old": change.old_level, "new": change.new_level}
        )
    else:
        old = "-" if change.old_level is None else f"L{change.old_level}"
        out.write(f"level of {change.scope_key}: {old} -> L{change.new_level} by {change.by}\n")
    return 0


def _approvals(args: argparse.Namespace, out: TextIO) -> int:
    from agent_guardrails.ops.approvals import pending, sweep
    from agent_guardrails.pipeline.notify import Notifier, Webhook
    from agent_guardrails.policy.windows import parse_duration

    store = _open(args)
    if args.sweep:
        notifiers: list[Notifier] = []
        if args.webhook:
            if not args.secret:
                raise ValueError("--webhook needs --secret (or AGENT_GUARDRAILS_WEBHOOK_SECRET)")
            notifiers.append(Webhook(args.webhook, args.secret))
        expired, expiring = sweep(store, notifiers, warn_before=parse_duration(args.warn_before))
        if args.json:
            _emit_json(
                out,
                {
                    "expired": [p.as_dict() for p in expired],
                    "expiring": [p.as_dict() for p in expiring],
                },
            )
        else:
            out.write(f"{len(expired)} expired (recorded), {len(expiring)} expiring (warned)\n")
        return 0
    waiting = pending(store)
    if args.json:
        _emit_json(out, [p.as_dict() for p in waiting])
        return 0
    _table(
        out,
        ["asked", "tool", "action", "roles", "level", "cost", "age / timeout", "state", "thread"],
        [
            [
                _when(p.asked_at),
                p.tool,
                p.action,
                ", ".join(p.roles) or "anyone",
                "-" if p.level is None else f"L{p.level}",
                "-" if p.cost is None else f"{p.cost:g} {p.currency}",
                f"{_span(p.age)} / {_span(p.timeout)}",
                p.state,
                p.thread_id or p.call_key,
            ]
            for p in waiting
        ],
    )
    return 0


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86_400:.1f}d"


def _level_history(args: argparse.Namespace, out: TextIO) -> int:
    key = Scope.parse(args.scope).key if args.scope else None
    history = _open(args).level_history(key)
    if args.json:
        _emit_json(
            out,
            [
                {
                    "scope": c.scope_key,
                    "old": c.old_level,
                    "new": c.new_level,
                    "by": c.by,
                    "reason": c.reason,
                    "evidence": dict(c.evidence),
                    "at": c.at,
                }
                for c in history
            ],
        )
        return 0
    _table(
        out,
        ["at", "scope", "change", "by", "reason"],
        [
            [
                _when(c.at),
                c.scope_key,
                f"{'-' if c.old_level is None else c.old_level} -> {c.new_level}",
                c.by,
                c.reason,
            ]
            for c in history
        ],
    )
    return 0


def _audit_tail(args: argparse.Namespace, out: TextIO) -> int:
    store = _open(args)
    # A page at a time: the last n are kept, the log is never held whole.
    tail = list(collections.deque(read_audit(store), maxlen=args.n)) if args.n > 0 else []
    if args.json:
        _emit_json(out, [r.as_dict() for r in tail])
        return 0
    rows = []
    for r in tail:
        data = r.data
        summary = data.get("message") or data.get("reason") or data.get("answer") or ""
        rows.append([r.seq, _when(r.ts), r.kind, data.get("action", ""), str(summary)[:70]])
    _table(out, ["seq", "at", "kind", "action", "summary"], rows)
    return 0


def _audit_verify(args: argparse.Namespace, out: TextIO) -> int:
    result = cli_retention.verify(args, _open(args))
    if args.json:
        _emit_json(
            out,
            {
                "ok": result.ok,
                "checked": result.checked,
                "first_bad_seq": result.first_bad_seq,
                "problem": result.problem,
            },
        )
    elif result.ok:
        out.write(f"audit log verified: {result.checked} records, hash chain intact\n")
    else:
        out.write(f"audit log BROKEN at record {result.first_bad_seq}: {result.problem}\n")
    return 0 if result.ok else 1


def _audit_export(args: argparse.Namespace, out: TextIO) -> int:
    records = read_audit(_open(args))  # a page at a time, written as read
    if args.output == "-":
        for r in records:
            out.write(json.dumps(r.as_dict(), default=str) + "\n")
        return 0
    written = 0
    with open(args.output, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r.as_dict(), default=str) + "\n")
            written += 1
    out.write(f"wrote {written} records to {args.output}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
