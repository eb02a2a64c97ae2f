"""The OpenTelemetry instruments of one ``Guardrails``: its tracer, its meters and the
content policy its spans follow, and the ``chat {model}`` spans of priced model calls.

:meth:`Telemetry.call` opens the :class:`~agent_guardrails.telemetry.spans.CallSpan` of one
guarded call (or hands back a do-nothing span when no provider is configured).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind

from agent_guardrails.engine.decision import CallRequest
from agent_guardrails.policy.scope import Scope
from agent_guardrails.telemetry import attributes as A
from agent_guardrails.telemetry.content import ContentPolicy
from agent_guardrails.telemetry.spans import NO_SPAN, CallSpan

try:  # the global meter provider before the application sets one (no public name)
    from opentelemetry.metrics._internal import _ProxyMeterProvider as _PROXY_METERS
except ImportError:  # pragma: no cover - a future API layout: treat metrics as configured
    _PROXY_METERS = ()  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from agent_guardrails.policy.pack import PolicyPack

__all__ = ["Telemetry"]

_VERSION = "0.1.0"
_CACHE_LIMIT = 4096  # tools x actions, and scopes, remembered per Telemetry


class _GlobalProviders:
    """Whether the application has set the global tracer / meter provider. Once set they
    stay set (OpenTelemetry allows one set per process), so a positive answer is kept; a
    negative one is looked up again at most every ``RECHECK`` seconds, which keeps the
    lookup (it reads the environment) off the path of every call."""

    RECHECK = 1.0

    def __init__(self) -> None:
        self.tracing = False
        self.metrics = False
        self._next = 0.0

    def configured(self) -> tuple[bool, bool]:
        if not (self.tracing and self.metrics):
            now = time.monotonic()
            if now >= self._next:
                self._next = now + self.RECHECK
                tracer_provider = trace.get_tracer_provider()
                self.tracing = not isinstance(tracer_provider, trace.ProxyTracerProvider)
                self.metrics = not isinstance(metrics.get_meter_provider(), _PROXY_METERS)
        return self.tracing, self.metrics


_GLOBALS = _GlobalProviders()


class _Tally:
    """Counters summed in process and reported when a metric reader collects (as
    observable counters): adding to a dict is far cheaper per call than a synchronous SDK
    counter, which hashes its attributes and offers exemplars on every add."""

    __slots__ = ("_lock", "values")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: dict[tuple[tuple[str, str], ...], float] = {}

    def add(self, amount: float, key: tuple[tuple[str, str], ...]) -> None:
        with self._lock:
            self.values[key] = self.values.get(key, 0.0) + amount

    def observe(self, _options: metrics.CallbackOptions) -> Iterator[metrics.Observation]:
        with self._lock:
            items = list(self.values.items())
        for key, value in items:
            yield metrics.Observation(value, dict(key))


class Telemetry:
    """Tracer, instruments and content policy of one ``Guardrails`` object.

    Never sets global providers: without ``tracer_provider`` / ``meter_provider`` it uses
    the global ones (no-ops unless the application configured OpenTelemetry; one the
    application sets later is picked up within a second). With no provider at all a call
    costs well under a microsecond of telemetry work.
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
        self._static: dict[tuple[str, str], dict[str, Any]] = {}
        self._scope_keys: dict[Scope, dict[str, str]] = {}
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._static_tracing = _real(tracer_provider) if tracer_provider is not None else None
        self._static_metrics = _real(meter_provider) if meter_provider is not None else None
        tracers = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        meters = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        self.tracer = tracers.get_tracer(A.INSTRUMENTATION_NAME, _VERSION)
        meter = meters.get_meter(A.INSTRUMENTATION_NAME, _VERSION)
        self.decisions = _Tally()
        self.cost = _Tally()
        meter.create_observable_counter(
            A.METRIC_DECISIONS,
            callbacks=[self.decisions.observe],
            unit="{decision}",
            description="Guardrail decisions",
        )
        meter.create_observable_counter(
            A.METRIC_COST,
            callbacks=[self.cost.observe],
            unit="{currency}",
            description="Committed cost of guarded calls, in the attribute's currency",
        )
        self.tool_duration = meter.create_histogram(
            A.METRIC_TOOL_DURATION, unit="s", description="Run time of guarded tool bodies"
        )
        self.approval_wait = meter.create_histogram(
            A.METRIC_APPROVAL_WAIT, unit="s", description="Time from asking a human to the answer"
        )

    def use_pack(self, pack: PolicyPack) -> None:
        """A new active pack: its risks and personal-data fields apply from the next span."""
        self.pack = pack
        self.content = replace(
            self.content,
            personal_data=frozenset(f.lower() for f in pack.privacy.personal_data),
            treatment=pack.privacy.treatment,
        )
        self._static = {}

    def call(self, request: CallRequest, call_key: str | None, *, current: bool = True) -> CallSpan:
        """A span for one call; use it as a context manager around the whole pipeline.
        ``current=False`` keeps it from becoming the current span (for the spans of a
        batch, which are siblings)."""
        tracing = self._static_tracing
        measuring = self._static_metrics
        if tracing is None or measuring is None:  # global providers, which may be set later
            global_tracing, global_metrics = _GLOBALS.configured()
            tracing = global_tracing if tracing is None else tracing
            measuring = global_metrics if measuring is None else measuring
        if not tracing and not measuring:
            return NO_SPAN  # no provider configured: nothing to do for this call
        return CallSpan(self, request, call_key, current, tracing, measuring)

    def model_spend(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cost: float,
        currency: str,
        scope: str,
        started_ns: int | None,
    ) -> None:
        """A ``chat {model}`` span (GenAI conventions) for a model call the middleware
        priced, with its tokens and cost; the cost also goes to the cost metric."""
        if cost:
            self.cost.add(
                cost, ((A.SCOPE, scope), (A.COST_CURRENCY, currency), (A.ACTION, "model.call"))
            )
        span = self.tracer.start_span(
            f"{A.CALL_MODEL} {model}", kind=SpanKind.CLIENT, start_time=started_ns
        )
        if span.is_recording():
            span.set_attributes(
                {
                    A.GEN_AI_OPERATION_NAME: A.CALL_MODEL,
                    A.GEN_AI_REQUEST_MODEL: model,
                    A.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
                    A.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
                    A.COST_AMOUNT: cost,
                    A.COST_CURRENCY: currency,
                    A.COST_TOKENS: input_tokens + output_tokens,
                    A.SCOPE: scope,
                }
            )
        span.end()

    def static_attributes(self, tool: str, action: str) -> dict[str, Any]:
        """The attributes every span of ``tool`` bound to ``action`` carries (cached)."""
        attrs = self._static.get((tool, action))
        if attrs is None:
            attrs = {
                A.GEN_AI_OPERATION_NAME: A.EXECUTE_TOOL,
                A.GEN_AI_TOOL_NAME: tool,
                A.GEN_AI_TOOL_TYPE: A.TOOL_TYPE_FUNCTION,
                A.ACTION: action,
            }
            policy = self.pack.action(action)
            if policy is not None:
                attrs[A.RISK] = policy.risk
            if len(self._static) < _CACHE_LIMIT:
                self._static[(tool, action)] = attrs
        return attrs

    def scope_key(self, scope: Scope) -> str:
        """``scope.key``, cached per scope (it sorts and joins on every call otherwise)."""
        return str(self.scope_attributes(scope)[A.SCOPE])

    def scope_attributes(self, scope: Scope) -> dict[str, str]:
        """The scope as span attributes: ``agent_guardrails.scope`` (``agent=...,region=...``)
        and one ``agent_guardrails.scope.<dimension>`` per set dimension (cached)."""
        attrs = self._scope_keys.get(scope)
        if attrs is None:
            attrs = {A.SCOPE: scope.key}
            attrs.update({f"{A.SCOPE}.{dim}": value for dim, value in scope.items()})
            if len(self._scope_keys) < _CACHE_LIMIT:
                self._scope_keys[scope] = attrs
        return attrs

    def personal_fields(self, action: str) -> tuple[str, ...]:
        policy = self.pack.action(action)
        return policy.personal_data if policy is not None else ()


def _real(provider: object) -> bool:
    """False for the API's no-op providers (nothing would be recorded)."""
    return not isinstance(provider, trace.NoOpTracerProvider | metrics.NoOpMeterProvider)
