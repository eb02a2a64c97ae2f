"""One OpenTelemetry span (and its metrics) per guarded tool call.

:class:`Telemetry` belongs to one :class:`~agent_guardrails.Guardrails`; its :meth:`~Telemetry.call`
opens a :class:`CallSpan` that :meth:`Guardrails.run` feeds as the pipeline moves on: what was
decided, the approval asked and answered, the tool's run, and how the call ended.

The span is ``execute_tool {tool}`` (kind INTERNAL) per the GenAI conventions, current while
the call runs (spans the tool body opens nest under it; it nests under whatever span is
current when the call starts: LangGraph's, OpenInference's or OpenLLMetry's). When the
tracer does not record (no SDK configured, or the sampler said no) nothing but a cheap
non-recording span is made. Names live in :mod:`agent_guardrails.telemetry.attributes`.

Across an approval interrupt: the run that asks ends its span with the decision
``require_approval`` and the event ``approval.requested``, and writes its trace and span id
into the call's decision audit record. The resumed run (LangGraph re-runs the node from its
start, maybe in another process) opens a new span that **links** to the asking span (Jaeger:
a FOLLOWS_FROM reference) and records ``approval.resolved``; it does not repeat the validator
and request events, which belong to the asking span.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from agent_guardrails.decision import CallRequest, Decision, DecisionKind
from agent_guardrails.telemetry import attributes as A
from agent_guardrails.telemetry.content import ContentPolicy

if TYPE_CHECKING:
    from agent_guardrails.approvals import ApprovalAnswer, ApprovalRequest
    from agent_guardrails.policy import PolicyPack

__all__ = ["CallSpan", "Telemetry"]

_VERSION = "0.1.0"
_ERROR_KINDS = (DecisionKind.DENY, DecisionKind.HALT)


def _conversation_id() -> str | None:
    """LangGraph's ``thread_id`` of the run this call belongs to, if any."""
    from langchain_core.runnables.config import var_child_runnable_config

    config = var_child_runnable_config.get()
    if not config:
        return None
    thread = (config.get("configurable") or {}).get("thread_id")
    return str(thread) if thread is not None else None


class Telemetry:
    """Tracer, instruments and content policy of one ``Guardrails`` object.

    Never sets global providers: without ``tracer_provider`` / ``meter_provider`` it uses
    the global ones (no-ops unless the application configured OpenTelemetry).
    """

    def __init__(
        self,
        pack: PolicyPack,
        content: ContentPolicy,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.pack = pack
        self.content = content
        tracers = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        meters = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        self.tracer = tracers.get_tracer(A.INSTRUMENTATION_NAME, _VERSION)
        meter = meters.get_meter(A.INSTRUMENTATION_NAME, _VERSION)
        self.decisions = meter.create_counter(
            A.METRIC_DECISIONS, unit="{decision}", description="Guardrail decisions"
        )
        self.cost = meter.create_counter(
            A.METRIC_COST,
            unit="{currency}",
            description="Committed cost of guarded calls, in the attribute's currency",
        )
        self.tool_duration = meter.create_histogram(
            A.METRIC_TOOL_DURATION, unit="s", description="Run time of guarded tool bodies"
        )
        self.approval_wait = meter.create_histogram(
            A.METRIC_APPROVAL_WAIT, unit="s", description="Time from asking a human to the answer"
        )

    def call(self, request: CallRequest, call_key: str | None) -> CallSpan:
        """A span for one call; use it as a context manager around the whole pipeline."""
        return CallSpan(self, request, call_key)

    def personal_fields(self, action: str) -> tuple[str, ...]:
        policy = self.pack.action(action)
        return policy.personal_data if policy is not None else ()


class CallSpan:
    """The span of one guarded call, fed by :class:`~agent_guardrails.Guardrails`."""

    __slots__ = (
        "_asked",
        "_cost",
        "_resumed",
        "_started",
        "_tel",
        "_token",
        "approval_wait",
        "decided_after",
        "decision",
        "key",
        "replay",
        "request",
        "span",
    )

    def __init__(self, tel: Telemetry, request: CallRequest, key: str | None) -> None:
        self._tel = tel
        self.request = request
        self.key = key
        self.decision: Decision | None = None
        self.replay = False
        self.decided_after: float | None = None
        self.approval_wait = 0.0
        self._cost: float | None = None
        self._asked = False  # an approval request is out and unanswered
        self._resumed = False  # this run resumes a call that already asked for approval
        self._started = time.perf_counter()
        self._token: object = None
        self.span: trace.Span | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> CallSpan:
        request = self.request
        span = self._tel.tracer.start_span(
            f"{A.EXECUTE_TOOL} {request.tool}", kind=SpanKind.INTERNAL
        )
        if span.is_recording():
            attrs: dict[str, Any] = {
                A.GEN_AI_OPERATION_NAME: A.EXECUTE_TOOL,
                A.GEN_AI_TOOL_NAME: request.tool,
                A.GEN_AI_TOOL_TYPE: A.TOOL_TYPE_FUNCTION,
                A.ACTION: request.action,
            }
            if request.call_id:
                attrs[A.GEN_AI_TOOL_CALL_ID] = request.call_id
            thread = _conversation_id()
            if thread is not None:
                attrs[A.GEN_AI_CONVERSATION_ID] = thread
            arguments = self._tel.content.arguments(
                request.tool, request.args, self._tel.personal_fields(request.action)
            )
            if arguments is not None:
                attrs[A.GEN_AI_TOOL_CALL_ARGUMENTS] = arguments
            span.set_attributes(attrs)
            self.span = span
            self._token = otel_context.attach(trace.set_span_in_context(span))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._count()
        span = self.span
        if span is None:
            return
        otel_context.detach(self._token)  # type: ignore[arg-type]
        try:
            self._finish(span, exc)
        finally:
            span.end()

    # ------------------------------------------------------------------ what the guard reports

    def decided(self, decision: Decision, key: str, *, resumed: bool) -> None:
        """The engine's decision (and reservation) for the call; ``resumed`` when this run
        picks up a call that already asked for approval."""
        self.decision = decision
        self.key = key
        self._resumed = resumed
        self.decided_after = time.perf_counter() - self._started
        span = self.span
        if span is None or resumed:
            return
        for outcome in decision.validators:
            span.add_event(
                A.EVENT_VALIDATOR,
                {A.VALIDATOR_NAME: outcome.name, A.VALIDATOR_PASSED: outcome.passed},
            )

    def trace_ids(self) -> dict[str, str] | None:
        """This span's ids as hex, for the decision's audit record (None: not recording)."""
        if self.span is None:
            return None
        ctx = self.span.get_span_context()
        return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}

    def link_to(self, ids: Mapping[str, Any] | None) -> None:
        """Link to the span that asked for approval (ids read back from the audit record)."""
        if self.span is None or not ids:
            return
        try:
            ctx = SpanContext(
                trace_id=int(str(ids["trace_id"]), 16),
                span_id=int(str(ids["span_id"]), 16),
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
        except (KeyError, ValueError):
            return  # an audit record from before tracing: nothing to link to
        self.span.add_link(ctx, {A.CALL_KEY: self.key or ""})

    def approval_requested(self, request: ApprovalRequest) -> None:
        self._asked = True
        if self.span is None or self._resumed:
            return  # a resumed run asks again only to read the answer: already recorded
        self.span.add_event(
            A.EVENT_APPROVAL_REQUESTED,
            {
                A.APPROVER_ROLES: list(request.roles),
                A.REASONS: list(request.reasons),
                A.APPROVAL_EXPIRES_AT: request.expires_at,
            },
        )

    def approval_resolved(self, answer: ApprovalAnswer, refused: str | None, wait_s: float) -> None:
        self._asked = False
        self.approval_wait = wait_s
        self._tel.approval_wait.record(
            max(wait_s, 0.0),
            {A.ACTION: self.request.action, A.APPROVAL_DECISION: answer.type},
        )
        span = self.span
        if span is None:
            return
        event: dict[str, Any] = {
            A.APPROVAL_DECISION: answer.type,
            A.APPROVER: answer.by or "",
            A.APPROVER_ROLES: list(answer.roles),
        }
        if refused is not None:
            event[A.APPROVAL_REFUSED] = refused.split(":", 1)[0]
        span.add_event(A.EVENT_APPROVAL_RESOLVED, event)
        span.set_attributes(
            {
                A.APPROVER: answer.by or "",
                A.APPROVER_ROLES: list(answer.roles),
                A.APPROVAL_DECISION: answer.type,
                A.APPROVAL_WAIT: wait_s,
            }
        )

    def ended(self, decision: Decision) -> None:
        """The decision the call finally ended with (after approval, or a stop)."""
        self.decision = decision

    def replayed(self) -> None:
        self.replay = True

    def ran(self, duration_s: float, *, ok: bool, result: object, cost: float | None) -> None:
        """The tool body ran (``ok``: returned ``result``; ``cost``: the committed cost)."""
        request = self.request
        tel = self._tel
        tel.tool_duration.record(
            duration_s, {A.ACTION: request.action, A.OUTCOME: "ok" if ok else "error"}
        )
        decision = self.decision
        if ok and decision is not None:
            amount = decision.cost if cost is None else cost
            if amount:
                tel.cost.add(
                    amount,
                    {
                        A.SCOPE: decision.scope.key,
                        A.COST_CURRENCY: decision.currency,
                        A.ACTION: request.action,
                    },
                )
            self._cost = amount
        if ok and self.span is not None:
            text = tel.content.result(request.tool, result, tel.personal_fields(request.action))
            if text is not None:
                self.span.set_attribute(A.GEN_AI_TOOL_CALL_RESULT, text)

    # ------------------------------------------------------------------ internals

    def _count(self) -> None:
        decision = self.decision
        if decision is None or self.replay or (self._asked and self._resumed):
            return  # a replay, or a re-ask still waiting: counted when first decided
        self._tel.decisions.add(
            1,
            {
                A.DECISION: decision.kind.value,
                A.ACTION: decision.action,
                A.SCOPE: decision.scope.key,
            },
        )

    def _finish(self, span: trace.Span, exc: BaseException | None) -> None:
        decision = self.decision
        attrs: dict[str, Any] = {}
        if self.key is not None:
            attrs[A.CALL_KEY] = self.key
        if self.replay:
            attrs[A.REPLAY] = True
        if decision is not None:
            attrs.update(
                {
                    A.DECISION: decision.kind.value,
                    A.REASONS: list(decision.reasons),
                    A.LEVEL: int(decision.level),
                    A.LEVEL_NAME: decision.level.name.lower(),
                    A.SCOPE: decision.scope.key,
                    A.PACK_NAME: decision.pack,
                    A.PACK_VERSION: decision.pack_version,
                    A.COST_CURRENCY: decision.currency,
                }
            )
            attrs[A.COST_AMOUNT] = decision.cost if self._cost is None else self._cost
            if decision.budget_left is not None:
                attrs[A.BUDGET_LEFT] = decision.budget_left
            if decision.exposure_left is not None:
                attrs[A.EXPOSURE_LEFT] = decision.exposure_left
            if decision.scope.agent:
                attrs[A.GEN_AI_AGENT_NAME] = decision.scope.agent
            policy = self._tel.pack.action(decision.action)
            if policy is not None:
                attrs[A.RISK] = policy.risk
        if self.decided_after is not None:
            attrs[A.DECISION_LATENCY] = max(self.decided_after - self.approval_wait, 0.0) * 1e3
        span.set_attributes(attrs)
        if decision is not None and decision.kind is DecisionKind.HALT:
            switch = next((r for r in decision.reasons if r.startswith("kill_switch:")), "")
            span.add_event(A.EVENT_KILL_SWITCH, {A.KILL_SWITCH_SCOPE: switch.partition(":")[2]})
        if exc is not None and self._asked:
            return  # the run paused for a human (LangGraph's interrupt): not an error
        failure = _failure(decision, exc)
        if failure is None:
            return
        error_type, description = failure
        span.set_attribute(A.ERROR_TYPE, error_type)
        if exc is not None and self._tel.content.capture:
            span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, description))


def _failure(decision: Decision | None, exc: BaseException | None) -> tuple[str, str] | None:
    """``(error.type, status description)`` for a call that failed, else ``None``.
    Descriptions are reason codes or a type name, never an exception's message (it may
    quote the call's content)."""
    if decision is not None and decision.kind in _ERROR_KINDS:
        return _error_type(decision), ", ".join(decision.reasons)
    if decision is not None and "rejected" in decision.reasons:
        return "approval_rejected", "approval_rejected"
    if exc is not None:
        return type(exc).__qualname__, type(exc).__qualname__
    return None


def _error_type(decision: Decision) -> str:
    """The first reason code, without its detail (``kill_switch:global`` -> ``kill_switch``)."""
    return decision.reasons[0].split(":", 1)[0] if decision.reasons else decision.kind.value
