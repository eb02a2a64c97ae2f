"""A Jaeger JSON trace file printed as a tree, for ``agent-guardrails traces FILE``.

Each trace is printed with its spans nested by their ``CHILD_OF`` references, one line per
span: the operation, how long it took, and for guarded calls the decision, level, cost,
budget left and reason codes; span events (approval requested and resolved, failed
validators, kill-switch halts) go underneath, and a ``FOLLOWS_FROM`` reference (a resumed
call's link to the span that asked for approval) is shown as ``follows <span id>``.

An excerpt of the demo's trace::

    trace 24b7b9a3... (agent-guardrails-demo, 7 spans)
      invoke_agent campaign-bot  53.6 ms
        execute_tool send_email  7.9 ms  pending require_approval L1 [approval_...]
            * approval.requested approval.required_roles=["marketing_ops"] ...
        execute_tool send_email  7.1 ms  approved allow L1 cost 0.006 USD approve by ana [...]
            follows 206a6a4fea736120 (trace 24b7b9a3...)
            * approval.resolved approval.decision=approve approval.approver=ana ...
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from agent_guardrails.telemetry import attributes as A

__all__ = ["render_trace", "render_traces"]

_NS = "agent_guardrails."


def _tags(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {str(t.get("key")): t.get("value") for t in items if isinstance(t, Mapping)}


def _short(name: str) -> str:
    return name[len(_NS) :] if name.startswith(_NS) else name


def _summary(tags: Mapping[str, Any]) -> str:
    decision = tags.get(A.DECISION)
    if decision is None:
        return ""
    parts = [str(tags.get(A.CALL_OUTCOME, decision)), str(decision)]
    if A.LEVEL in tags:
        parts.append(f"L{tags[A.LEVEL]}")
    cost = tags.get(A.COST_CHARGED, tags.get(A.COST_AMOUNT))
    if isinstance(cost, int | float) and cost:
        parts.append(f"cost {cost:g} {tags.get(A.COST_CURRENCY, '')}".rstrip())
    left = tags.get(A.BUDGET_LEFT)
    if isinstance(left, int | float):
        parts.append(f"budget left {left:g}")
    approver = tags.get(A.APPROVER)
    if approver:
        parts.append(f"{tags.get(A.APPROVAL_DECISION, 'answered')} by {approver}")
    if tags.get(A.REPLAY):
        parts.append("replayed")
    reasons = tags.get(A.REASONS)
    if isinstance(reasons, str) and reasons not in ("allowed", ""):
        parts.append(f"[{reasons.replace(',', ', ')}]")
    return "  " + " ".join(parts)


def _event_line(log: Mapping[str, Any]) -> str:
    fields = _tags(log.get("fields") or [])
    name = _short(str(fields.pop("event", "event")))
    details = " ".join(f"{_short(k)}={v}" for k, v in fields.items())
    return f"* {name} {details}".rstrip()


def render_trace(trace: Mapping[str, Any]) -> Iterator[str]:
    """The lines of one trace (see the module docstring)."""
    spans = [s for s in trace.get("spans") or [] if isinstance(s, Mapping)]
    ids = {str(s.get("spanID")) for s in spans}
    children: dict[str | None, list[Mapping[str, Any]]] = {}
    for span in spans:
        parent = next(
            (
                str(r.get("spanID"))
                for r in span.get("references") or []
                if r.get("refType") == "CHILD_OF" and str(r.get("spanID")) in ids
            ),
            None,
        )
        children.setdefault(parent, []).append(span)
    processes = trace.get("processes") or {}
    services = sorted(
        {str(p.get("serviceName")) for p in processes.values() if isinstance(p, Mapping)}
    )
    yield (
        f"trace {trace.get('traceID')} ({', '.join(services) or 'unknown service'}, "
        f"{len(spans)} spans)"
    )

    def walk(parent: str | None, depth: int) -> Iterator[str]:
        for span in sorted(children.get(parent, []), key=lambda s: s.get("startTime", 0)):
            tags = _tags(span.get("tags") or [])
            pad = "  " * depth
            mark = "  ERROR " + str(tags.get(A.ERROR_TYPE, "")) if tags.get("error") else ""
            ms = float(span.get("duration", 0)) / 1000
            yield f"{pad}{span.get('operationName')}  {ms:.1f} ms{_summary(tags)}{mark}"
            for ref in span.get("references") or []:
                if ref.get("refType") == "FOLLOWS_FROM":
                    yield f"{pad}    follows {ref.get('spanID')} (trace {ref.get('traceID')})"
            for log in span.get("logs") or []:
                yield f"{pad}    {_event_line(log)}"
            yield from walk(str(span.get("spanID")), depth + 1)

    yield from walk(None, 1)


def render_traces(traces: Sequence[Mapping[str, Any]], trace_id: str | None = None) -> list[str]:
    """Every trace (or the one whose id starts with ``trace_id``), oldest first."""
    chosen = [t for t in traces if trace_id is None or str(t.get("traceID")).startswith(trace_id)]
    chosen.sort(key=lambda t: min((s.get("startTime", 0) for s in t.get("spans") or []), default=0))
    lines: list[str] = []
    for trace in chosen:
        if lines:
            lines.append("")
        lines.extend(render_trace(trace))
    return lines
