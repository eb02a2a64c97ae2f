"""One OpenTelemetry span (and its metrics) per guarded tool call.

:class:`Telemetry` belongs to one :class:`~agent_guardrails.Guardrails`; its :meth:`~Telemetry.call`
opens a :class:`CallSpan` that :meth:`Guardrails.run` feeds as the pipeline moves on: what was
decided, the approval asked and answered, the tool's run, and how the call ended.

The span is ``execute_tool {tool}`` (kind INTERNAL) per the GenAI conventions, current while
the call runs (spans the tool body opens nest under it). It nests under the span current
when the call starts (yours, or OpenLLMetry's, which makes its spans current); OpenInference
never makes its spans current, so when it instruments LangChain the span starts under its
span of the current LangChain run instead (:func:`_parent_context`). When the
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

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from agent_guardrails import _compat
from agent_guardrails.engine.decision import CallRequest, Decision, DecisionKind
from agent_guardrails.telemetry import attributes as A

if TYPE_CHECKING:
    from agent_guardrails.pipeline.approvals import ApprovalAnswer, ApprovalRequest
    from agent_guardrails.telemetry.instruments import Telemetry

__all__ = ["NO_SPAN", "CallSpan"]

_log = logging.getLogger("agent_guardrails.telemetry")
_ERROR_KINDS = (DecisionKind.DENY, DecisionKind.HALT)


def _conversation_id() -> str | None:
    """LangGraph's ``thread_id`` of the run this call belongs to, if any."""
    config = _compat.var_child_runnable_config.get()
    if not config:
        return None
    thread = (config.get("configurable") or {}).get("thread_id")
    return str(thread) if thread is not None else None


def _parent_context() -> otel_context.Context | None:
    """The context to start a call's span in: ``None`` (the current one) unless OpenInference
    traces the LangChain run this call runs in. OpenInference parents its spans by LangChain
    run id and never makes them current, so during a tool call the current span is still the
    one current when the graph was invoked (none, or the application's): start under the
    span of the current run instead, unless the current span began inside that run (a span
    the tool's own code opened around a nested guarded call)."""
    module = sys.modules.get("openinference.instrumentation.langchain")
    if module is None:  # never imported: not instrumented
        return None
    try:
        if not module.LangChainInstrumentor().is_instrumented_by_opentelemetry:
            return None
        run_span = module.get_current_span()
    except Exception:  # another version's API: fall back to the current context
        return None
    if run_span is None or not run_span.get_span_context().is_valid:
        return None
    current = trace.get_current_span()
    current_start = getattr(current, "start_time", None)
    run_start = getattr(run_span, "start_time", None)
    if (
        current.get_span_context().is_valid
        and current_start is not None
        and run_start is not None
        and current_start >= run_start
    ):
        return None
    return trace.set_span_in_context(run_span)


class CallSpan:
    """The span of one guarded call, fed by :class:`~agent_guardrails.Guardrails`.

    Attributes are gathered in a dict and set once, when the span ends (the sampler sees
    only the span's name); metrics are recorded after the span stops being current."""

    __slots__ = (
        "_asked",
        "_cost",
        "_current",
        "_measuring",
        "_ran",
        "_result",
        "_resumed",
        "_started",
        "_tel",
        "_token",
        "_tracing",
        "approval_wait",
        "attrs",
        "decided_after",
        "decision",
        "key",
        "replay",
        "request",
        "span",
    )

    def __init__(
        self,
        tel: Telemetry,
        request: CallRequest,
        key: str | None,
        current: bool = True,
        tracing: bool = True,
        measuring: bool = True,
    ) -> None:
        self._tel = tel
        self._current = current
        self._tracing = tracing
        self._measuring = measuring
        self.request = request
        self.key = key
        self.decision: Decision | None = None
        self.replay = False
        self.decided_after: float | None = None
        self.approval_wait: float | None = None
        self._cost: float | None = None
        self._ran: tuple[float, bool] | None = None  # (seconds, ok) of the tool body
        self._result: tuple[object] | None = None  # the body's result, if content is captured
        self._asked = False  # an approval request is out and unanswered
        self._resumed = False  # this run resumes a call that already asked for approval
        self._started = time.perf_counter()
        self._token: object = None
        self.span: trace.Span | None = None
        self.attrs: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> CallSpan:
        if not self._tracing:
            return self
        request = self.request
        span = self._tel.tracer.start_span(
            f"{A.EXECUTE_TOOL} {request.tool}", context=_parent_context(), kind=SpanKind.INTERNAL
        )
        if span.is_recording():
            self.span = span
            if self._current:
                self._token = otel_context.attach(trace.set_span_in_context(span))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self.span
        if span is not None:
            if self._token is not None:
                otel_context.detach(self._token)  # type: ignore[arg-type]
            try:
                self._finish(span, exc)
            except Exception:  # telemetry must never fail the call it observes
                _log.exception("agent_guardrails: recording the span of a call failed")
            finally:
                span.end()
        if self._measuring:
            try:
                self._record_metrics()
            except Exception:
                _log.exception("agent_guardrails: recording the metrics of a call failed")

    # ------------------------------------------------------------------ what the guard reports

    def decided(self, decision: Decision, key: str, *, resumed: bool) -> None:
        """The engine's decision (and reservation) for the call; ``resumed`` when this run
        picks up a call that already asked for approval. Failed validators become events
        (passed ones are listed in an attribute); a resumed run does not repeat them."""
        self.decision = decision
        self.key = key
        self._resumed = resumed
        self.decided_after = time.perf_counter() - self._started
        span = self.span
        if span is None or resumed or not decision.validators:
            return
        passed = [v.name for v in decision.validators if v.passed]
        if passed:
            self.attrs[A.VALIDATORS_PASSED] = ",".join(passed)
        for outcome in decision.validators:
            if not outcome.passed:
                span.add_event(
                    A.EVENT_VALIDATOR,
                    {A.VALIDATOR_NAME: outcome.name, A.VALIDATOR_PASSED: False},
                )

    def trace_ids(self) -> SpanContext | None:
        """This span's context, for the decision's audit record (None: not recording)."""
        return self.span.get_span_context() if self.span is not None else None

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
        """A human is asked for the first time (the event is recorded once per call)."""
        self._asked = True
        if self.span is None:
            return
        self.attrs[A.REQUIRED_ROLES] = list(request.roles)
        self.span.add_event(
            A.EVENT_APPROVAL_REQUESTED,
            {
                A.REQUIRED_ROLES: list(request.roles),
                A.REASONS: ",".join(request.reasons),
                A.APPROVAL_EXPIRES_AT: iso(request.expires_at),
            },
        )

    def approval_reasked(self, first: Mapping[str, Any]) -> None:
        """A resumed run asks again to read the answer: link to the span that first asked
        (``first``: the ids it recorded) instead of recording the request again."""
        self._asked = True
        self._resumed = True
        self.link_to(first)

    def approval_resolved(self, answer: ApprovalAnswer, refused: str | None, wait_s: float) -> None:
        """The human answered (``refused``: why the answer was not accepted)."""
        self._asked = False
        self.approval_wait = max(wait_s, 0.0)
        self._answered(answer.type, answer.by or "", answer.roles, refused)

    def approved_earlier(
        self,
        answer: str,
        by: str,
        first: Mapping[str, Any] | None,
        wait_s: float | None,
        *,
        refused: str | None = None,
    ) -> None:
        """For a call decided in one place and run in another (a guard node, then the tools
        node): the human's answer given before this span began, linked to the asking span."""
        if wait_s is not None:
            self.approval_wait = max(wait_s, 0.0)
        if first is not None:
            self.link_to(first)
        self._answered(answer, by, None, refused)

    def _answered(
        self, answer: str, by: str, roles: Sequence[str] | None, refused: str | None
    ) -> None:
        """The ``approval.resolved`` event and the approver's attributes."""
        if self.span is None:
            return
        event: dict[str, Any] = {A.APPROVAL_DECISION: answer, A.APPROVER: by}
        if roles is not None:
            event[A.APPROVER_ROLES] = list(roles)
            self.attrs[A.APPROVER_ROLES] = list(roles)
        if refused is not None:
            event[A.APPROVAL_REFUSED] = refused.split(":", 1)[0]
        self.span.add_event(A.EVENT_APPROVAL_RESOLVED, event)
        self.attrs[A.APPROVER] = by
        self.attrs[A.APPROVAL_DECISION] = answer
        if self.approval_wait is not None:
            self.attrs[A.APPROVAL_WAIT] = self.approval_wait

    def ended(self, decision: Decision) -> None:
        """The decision the call finally ended with (after approval, or a stop)."""
        self.decision = decision

    def replayed(self) -> None:
        self.replay = True

    def ran(self, duration_s: float, *, ok: bool, result: object, cost: float | None) -> None:
        """The tool body ran (``ok``: returned ``result``; ``cost``: the committed cost)."""
        self._ran = (duration_s, ok)
        decision = self.decision
        if ok and decision is not None:
            self._cost = decision.cost if cost is None else cost
        if ok and self.span is not None and self._tel.content.capture:
            self._result = (result,)  # exported when the span ends (see _content)

    # ------------------------------------------------------------------ internals

    def _record_metrics(self) -> None:
        tel = self._tel
        decision = self.decision
        action = self.request.action
        if self._ran is not None:
            seconds, ok = self._ran
            tel.tool_duration.record(
                seconds, {A.ACTION: action, A.OUTCOME: "ok" if ok else "error"}
            )
        if self.approval_wait is not None and decision is not None:
            answer = self.attrs.get(A.APPROVAL_DECISION, "none")
            tel.approval_wait.record(
                self.approval_wait, {A.ACTION: action, A.APPROVAL_DECISION: answer}
            )
        if decision is None or self.replay or (self._asked and self._resumed):
            return  # a replay, or a re-ask still waiting: counted when first decided
        scope = tel.scope_key(decision.scope)
        tel.decisions.add(
            1, ((A.DECISION, decision.kind.value), (A.ACTION, action), (A.SCOPE, scope))
        )
        if self._cost:
            tel.cost.add(
                self._cost,
                ((A.SCOPE, scope), (A.COST_CURRENCY, decision.currency), (A.ACTION, action)),
            )

    def _content(self, attrs: dict[str, Any]) -> None:
        """Opted-in content: arguments and result, redacted and scrubbed. A redaction hook
        that fails records nothing of the content (and says so), never fails the call."""
        request = self.request
        tel = self._tel
        fields = tel.personal_fields(request.action)
        try:
            arguments = tel.content.arguments(request.tool, request.args, fields)
            result = (
                tel.content.result(request.tool, self._result[0], fields)
                if self._result is not None
                else None
            )
        except Exception as exc:
            attrs[A.CONTENT_ERROR] = type(exc).__qualname__
            _log.warning(
                "agent_guardrails: content of %s not recorded: the redaction failed (%s)",
                request.tool,
                type(exc).__qualname__,
            )
            return
        if arguments is not None:
            attrs[A.GEN_AI_TOOL_CALL_ARGUMENTS] = arguments
        if result is not None:
            attrs[A.GEN_AI_TOOL_CALL_RESULT] = result

    def _finish(self, span: trace.Span, exc: BaseException | None) -> None:
        request = self.request
        decision = self.decision
        tel = self._tel
        attrs = self.attrs
        attrs.update(tel.static_attributes(request.tool, request.action))
        if request.call_id:
            attrs[A.GEN_AI_TOOL_CALL_ID] = request.call_id
        thread = _conversation_id()
        if thread is not None:
            attrs[A.GEN_AI_CONVERSATION_ID] = thread
        if tel.content.capture:
            self._content(attrs)
        if self.replay:
            attrs[A.REPLAY] = True
        if decision is not None:
            outcome = self._outcome(decision)
            attrs[A.CALL_OUTCOME] = outcome
            attrs[A.EXPLANATION] = self._explanation(decision, outcome)
            attrs[A.DECISION] = decision.kind.value
            attrs[A.REASONS] = ",".join(decision.reasons)
            attrs[A.LEVEL] = int(decision.level)
            attrs[A.LEVEL_NAME] = decision.level.name.lower()
            attrs.update(tel.scope_attributes(decision.scope))
            attrs[A.PACK_NAME] = decision.pack
            attrs[A.PACK_VERSION] = decision.pack_version
            attrs[A.COST_ESTIMATED] = decision.cost
            attrs[A.COST_CURRENCY] = decision.currency
            if self._ran is not None and self._ran[1]:  # only a call that ran well is charged
                attrs[A.COST_CHARGED] = decision.cost if self._cost is None else self._cost
                if decision.budget_left is not None:
                    attrs[A.BUDGET_LEFT] = decision.budget_left
                if decision.exposure_left is not None:
                    attrs[A.EXPOSURE_LEFT] = decision.exposure_left
            if decision.scope.agent:
                attrs[A.GEN_AI_AGENT_NAME] = decision.scope.agent
        if self.decided_after is not None:
            attrs[A.DECISION_LATENCY] = (
                max(self.decided_after - (self.approval_wait or 0.0), 0.0) * 1e3
            )
        if decision is not None and decision.kind is DecisionKind.HALT:
            switch = next((r for r in decision.reasons if r.startswith("kill_switch:")), "")
            span.add_event(A.EVENT_KILL_SWITCH, {A.KILL_SWITCH_SCOPE: switch.partition(":")[2]})
        if exc is None or not self._asked:  # an exception while asked: paused for a human
            failure = _failure(decision, exc)
            if failure is not None:
                attrs[A.ERROR_TYPE] = failure[0]
                if exc is not None and tel.content.capture:
                    span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, failure[1]))
        span.set_attributes(attrs)

    def _outcome(self, decision: Decision) -> str:
        """What happened to the call, in one word (see ``attributes.CALL_OUTCOME``)."""
        if self.replay:
            return "replayed"
        answer = self.attrs.get(A.APPROVAL_DECISION)
        kind = decision.kind
        if kind is DecisionKind.ALLOW:
            return {"approve": "approved", "edit": "edited"}.get(str(answer), "ran")
        if kind is DecisionKind.SIMULATE:
            return "simulated"
        if kind is DecisionKind.HALT:
            return "halted"
        if "in_doubt" in decision.reasons:
            return "in_doubt"
        if kind is DecisionKind.REQUIRE_APPROVAL:
            return "pending"
        return {"reject": "rejected", "respond": "responded"}.get(str(answer), "denied")

    def _explanation(self, decision: Decision, outcome: str) -> str:
        """One sentence: what happened and why."""
        by = self.attrs.get(A.APPROVER) or "a reviewer"
        text = {
            "approved": f"Approved by {by}, then ran.",
            "edited": f"Edited by {by}, decided again and ran.",
            "rejected": f"Rejected by {by}; the tool did not run.",
            "responded": f"{by} answered the agent instead; the tool did not run.",
            "pending": "Waiting for a human: " + decision.message,
            "replayed": "Already ran under this key: its stored result was handed back.",
        }.get(outcome)
        if text is None:
            text = decision.message[:1].upper() + decision.message[1:]
        return text if text.endswith(".") else text + "."


def iso(ts: float) -> str:
    """Epoch seconds as ISO 8601 UTC, e.g. ``2026-12-06T10:00:00Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Off(CallSpan):
    """The call span when no tracer or meter provider is configured: does nothing, fast."""

    __slots__ = ()

    def __init__(self) -> None:
        self.span = None

    def __enter__(self) -> CallSpan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def decided(self, decision: Decision, key: str, *, resumed: bool) -> None:
        return None

    def trace_ids(self) -> SpanContext | None:
        return None

    def link_to(self, ids: Mapping[str, Any] | None) -> None:
        return None

    def approval_requested(self, request: ApprovalRequest) -> None:
        return None

    def approval_reasked(self, first: Mapping[str, Any]) -> None:
        return None

    def approval_resolved(self, answer: ApprovalAnswer, refused: str | None, wait_s: float) -> None:
        return None

    def approved_earlier(
        self,
        answer: str,
        by: str,
        first: Mapping[str, Any] | None,
        wait_s: float | None,
        *,
        refused: str | None = None,
    ) -> None:
        return None

    def ended(self, decision: Decision) -> None:
        return None

    def replayed(self) -> None:
        return None

    def ran(self, duration_s: float, *, ok: bool, result: object, cost: float | None) -> None:
        return None


_OFF = _Off()
NO_SPAN: CallSpan = _OFF
"""A span that records nothing (calls decided in a batch are traced where they stop)."""


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
