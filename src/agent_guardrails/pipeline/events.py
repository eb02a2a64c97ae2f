"""The audit records one guarded call writes, and the keys that make writing them idempotent.

A call made in a LangGraph run has a stable key (``thread | checkpoint_ns | tool call id``):
LangGraph re-runs an interrupted node from its start, so every record such a call writes
carries a *dedupe* tag (``<key>:<what>``) and is written once however often the node runs.
A call made outside a graph gets an *ephemeral* key (``~...``), never reused, whose records
need no tag.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.messages import ToolMessage

from agent_guardrails.engine.decision import CallRequest, Decision
from agent_guardrails.store.base import AuditEvent, LazyData

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext

__all__ = [
    "args_digest",
    "decision_event",
    "dedupe",
    "ephemeral_key",
    "event",
    "finished_event",
    "question_event",
    "started_event",
    "to_json",
]

_EPHEMERAL_PREFIX = f"~{uuid.uuid4().hex[:12]}-"
_ephemeral_counter = itertools.count(1)


def ephemeral_key() -> str:
    """A key for a call made outside a graph: unique, and never retried under the same key,
    so its audit records need no de-duplication."""
    return f"{_EPHEMERAL_PREFIX}{next(_ephemeral_counter)}"


def dedupe(key: str, tag: str) -> str | None:
    """The de-duplication tag of an audit record; calls with stable keys (from a graph's
    thread, task and tool call) may re-run after an interrupt and must record once."""
    return None if key.startswith("~") else f"{key}:{tag}"


def event(kind: str, data: Mapping[str, Any], key: str, tag: str | None = None) -> AuditEvent:
    """An audit event of the call under ``key``, de-duplicated by ``tag`` (default: kind)."""
    return AuditEvent(kind, data, key, dedupe(key, tag or kind))


def question_event(kind: str, data: Mapping[str, Any], key: str, tag: str) -> AuditEvent:
    """An audit event of a call's question (asked, answered): tagged under an ephemeral key
    too, so that the approvals inbox finds it by its tag (:mod:`agent_guardrails.ops.approvals`)
    instead of reading the whole log."""
    return AuditEvent(kind, data, key, f"{key}:{tag}")


def decision_event(
    decision: Decision,
    key: str,
    trace: SpanContext | None = None,
    tag: str = "decision",
    args: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """The ``decision`` record; ``trace`` (the call span's ids) ties it to its trace. With
    ``args`` (a call decided here and run by another node), the record keeps their digest:
    what the node that runs it checks the call it is handed against."""
    data = _DecisionData(decision, key, trace, args)
    return AuditEvent("decision", data, key, dedupe(key, tag))


def started_event(request: CallRequest, key: str) -> AuditEvent:
    return AuditEvent(
        "execution.started",
        {"action": request.action, "tool": request.tool},
        key,
        dedupe(key, "started"),
    )


def finished_event(
    request: CallRequest,
    key: str,
    *,
    ok: bool,
    cost: float,
    error: BaseException | None,
) -> AuditEvent:
    data: dict[str, Any] = {"action": request.action, "ok": ok}
    if ok:
        data["cost"] = cost
    else:
        data["error"] = type(error).__name__ if error is not None else "unknown"
    return AuditEvent(
        "execution.finished" if ok else "execution.failed",
        data,
        key,
        # A failed call may run again (a retried task): its finish is recorded too.
        dedupe(key, "end" if ok else "failed"),
    )


class _DecisionData(LazyData):
    """A decision's audit data, serialised only when a store reads it (the memory store
    reads lazily, so the hot path does not pay for it)."""

    __slots__ = ("_args", "_decision", "_key", "_trace")

    def __init__(
        self,
        decision: Decision,
        key: str,
        trace: SpanContext | None,
        args: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._decision = decision
        self._key = key
        self._trace = trace
        self._args = args

    def build(self) -> dict[str, Any]:
        data = self._decision.as_dict()
        data["call_key"] = self._key
        if self._trace is not None:
            data["trace_id"] = f"{self._trace.trace_id:032x}"
            data["span_id"] = f"{self._trace.span_id:016x}"
        if self._args is not None:
            data["args_digest"] = args_digest(self._decision.tool, self._args)
        return data


def args_digest(tool: str, args: Mapping[str, Any]) -> str:
    """SHA-256 of the tool name and its canonical JSON arguments (what an approval binds)."""
    body = json.dumps({"tool": tool, "args": args}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def to_json(value: object) -> str | None:
    """A tool's result as the JSON text a replay returns."""
    if isinstance(value, ToolMessage):
        return json.dumps({"tool_message": value.content, "status": value.status}, default=str)
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return json.dumps(repr(value))
