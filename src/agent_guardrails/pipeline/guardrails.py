"""``Guardrails``: the one object that runs a tool call through the engine and the store.

The whole pipeline of one guarded call is :meth:`Guardrails.run`: :meth:`Guardrails._prepare`
(decide, reserve, audit, ask for approval), :meth:`Guardrails._begin` (mark it started, or
replay it) and :meth:`Guardrails._running` around the body (commit or release). Every
adapter (``@guarded``, the middleware, the guarded ``ToolNode``) is a thin shim over
:meth:`Guardrails.run` / :meth:`Guardrails.arun`.

>>> from agent_guardrails import Guardrails, PolicyPack, CallRequest
>>> pack = PolicyPack.from_yaml('''
... name: demo
... version: 1
... defaults: {level: execute}
... actions:
...   crm.tag: {risk: low}
... ''')
>>> guard = Guardrails(pack, store="memory://")
>>> guard.run(CallRequest("tag_contact", "crm.tag", {"id": "c1"}), lambda args: "tagged")
'tagged'
"""

from __future__ import annotations

import contextvars
import hashlib
import inspect
import itertools
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_core.messages import ToolMessage

from agent_guardrails.engine.decide import CostError, budget_charges, call_cost, charges_for, decide
from agent_guardrails.engine.decision import CallRequest, Decision, DecisionKind
from agent_guardrails.errors import (
    CallInDoubt,
    ConfigurationError,
    KillSwitchEngaged,
    StoreUnavailable,
)
from agent_guardrails.pipeline.approvals import ApprovalAnswer, ApprovalRequest, Approver
from agent_guardrails.pipeline.results import (
    GuardrailResult,
    Status,
    error_for,
    is_result,
    result_for,
)
from agent_guardrails.policy.levels import AutonomyLevel
from agent_guardrails.policy.pack import MODEL_ACTION, PolicyPack
from agent_guardrails.policy.scope import DIMENSIONS, Scope
from agent_guardrails.store import Store, open_store
from agent_guardrails.store.base import (
    AuditEvent,
    AuditRecord,
    CallRecord,
    ReserveResult,
    Snapshot,
)
from agent_guardrails.telemetry.content import ContentPolicy, Redactor
from agent_guardrails.telemetry.spans import CallSpan, Telemetry

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import SpanContext, TracerProvider

__all__ = ["Guardrails", "report_cost"]

R = TypeVar("R")
Body = Callable[[Mapping[str, Any]], R]
Simulator = Callable[[Mapping[str, Any]], Any]
Asker = Callable[[ApprovalRequest], "ApprovalAnswer | None"]
"""Asks a human about one call: the ``approver`` callable, or a LangGraph interrupt."""

_GOES_AHEAD = (DecisionKind.ALLOW, DecisionKind.REQUIRE_APPROVAL)
_actual_cost: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "agent_guardrails_actual_cost", default=None
)
_scope_overrides: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "agent_guardrails_scope", default=MappingProxyType({})
)


def report_cost(amount: float) -> None:
    """Inside a guarded tool body: the call's actual cost, committed instead of the estimate.

    >>> report_cost(0.0)  # outside a guarded call it is ignored
    """
    if amount < 0:
        raise ValueError(f"actual cost must not be negative, got {amount}")
    _actual_cost.set(float(amount))


@dataclass(slots=True)
class _Ready:
    """A call cleared to run."""

    request: CallRequest
    decision: Decision
    key: str
    keep_result: bool
    rerun: bool = False  # a human approved re-running a call that was in doubt
    started: bool = False  # the reservation already marked it started (one store step)


class _Running:
    """Around the tool body (:meth:`Guardrails._running`): collect ``report_cost``, then
    record how the call ended (finished with its result and actual cost, or failed and
    released). A plain class: a ``@contextmanager`` generator costs about 1 us more per call.
    The body's result is set on it as ``result``."""

    __slots__ = ("_call", "_guard", "_ready", "_started", "_token", "result")

    def __init__(self, guard: Guardrails, ready: _Ready, call: CallSpan | None) -> None:
        self._guard = guard
        self._ready = ready
        self._call = call
        self.result: Any = None

    def __enter__(self) -> _Running:
        self._token = _actual_cost.set(None)
        if self._call is not None:
            self._call.ended(self._ready.decision)
        self._started = time.perf_counter()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        took = time.perf_counter() - self._started
        actual = _actual_cost.get()
        _actual_cost.reset(self._token)
        call = self._call
        if exc is not None:
            if call is not None:
                call.ran(took, ok=False, result=None, cost=None)
            self._guard._end(self._ready, ok=False, error=exc)
            return  # the exception propagates
        if call is not None:
            call.ran(took, ok=True, result=self.result, cost=actual)
        self._guard._end(self._ready, ok=True, result=self.result, actual_cost=actual)


@dataclass(slots=True)
class _Stop:
    """A call that ends without running the body."""

    request: CallRequest
    decision: Decision
    status: Status | None = None
    message: str | None = None


@dataclass(slots=True)
class _Replay:
    """A call that already finished under this key: hand back what it returned."""

    record: CallRecord


class Guardrails:
    """Runs tool calls through policy, ledger, approvals and audit.

    Args:
        policy: a :class:`PolicyPack` or a path to its YAML file.
        store: a :class:`~agent_guardrails.store.Store` or a URL (``memory://``,
            ``sqlite:///path.db``, ``postgresql://...``); default ``sqlite:///agent_guardrails.db``.
        approver: called for calls that need approval outside a LangGraph run (see
            :mod:`agent_guardrails.approvals`). Without one such calls come back
            ``pending_approval`` and hold nothing.
        raise_on_deny: raise :class:`~agent_guardrails.errors.GuardrailError` subclasses
            instead of returning a :class:`~agent_guardrails.results.GuardrailResult`.
        scope: default scope values for every call (e.g. ``{"agent": "campaign-bot"}``).
        clock: seconds since the epoch; injectable for tests of windows and expiry.
        tracer_provider / meter_provider: where spans and metrics go (default: the global
            providers, which are no-ops unless the application configured OpenTelemetry;
            this object never sets them). See :mod:`agent_guardrails.telemetry`.
        capture_content: record tool arguments and results in spans (default: the
            ``AGENT_GUARDRAILS_CAPTURE_CONTENT`` variable, else off).
        redact: ``redact(tool, value) -> value``, run on arguments and results before they
            are recorded; the pack's personal-data fields are then hashed or dropped.
        hash_key: the HMAC key for hashing personal data (default:
            ``AGENT_GUARDRAILS_HASH_KEY``).

    The pack given here is saved to the store (so its version is on record) and activated
    there if the store has no active pack yet.
    """

    def __init__(
        self,
        policy: PolicyPack | str | Path,
        *,
        store: Store | str | None = None,
        approver: Approver | None = None,
        raise_on_deny: bool = False,
        scope: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        capture_content: bool | None = None,
        redact: Redactor | None = None,
        hash_key: str | bytes | None = None,
    ) -> None:
        self.policy = policy if isinstance(policy, PolicyPack) else PolicyPack.from_yaml(policy)
        self.store: Store = (
            store if store is not None and not isinstance(store, str) else open_store(store)
        )
        self.approver = approver
        self.raise_on_deny = raise_on_deny
        self.default_scope = Scope.from_mapping(scope or {})
        self._default_items = self.default_scope.items()
        self._scopes: dict[tuple[tuple[str, str], ...], Scope] = {}
        self._declared: dict[tuple[tuple[str, Any], ...], Scope] = {}  # declared-only calls
        self.clock = clock
        self._backlog: list[Callable[[], object]] = []
        self._backlog_lock = threading.Lock()
        pack = self.policy
        try:
            content = ContentPolicy.build(
                capture=capture_content,
                redact=redact,
                personal_data=pack.privacy.personal_data,
                treatment=pack.privacy.treatment,
                hash_key=hash_key,
            )
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        self._telemetry = Telemetry(
            pack, content, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
        try:
            self.store.save_pack(
                pack.name, pack.version, pack.digest, pack.to_yaml(), by="guardrails"
            )
            if self.store.active_pack() is None:
                self.store.activate_pack(
                    pack.name, pack.version, by="guardrails", reason="first use"
                )
        except StoreUnavailable:
            pass  # calls will fail closed and say why; construction must not crash the app

    # ------------------------------------------------------------------ public API

    def run(
        self,
        request: CallRequest,
        body: Body[R],
        *,
        simulate: Simulator | None = None,
        call_key: str | None = None,
        raise_on_deny: bool | None = None,
        ask: Asker | None = None,
    ) -> R | GuardrailResult:
        """Run one call: decide, maybe ask a human, then run ``body(args)`` or refuse.

        ``call_key`` identifies the call across retries and resumes (adapters derive it
        from the graph's thread, namespace and tool call id); ``ask`` replaces the
        ``approver`` for this call (adapters pass a LangGraph interrupt)."""
        with self._telemetry.call(request, call_key) as call:
            step = self._prepare(request, call_key, ask, call)
            if isinstance(step, _Ready):
                begun = self._begin(step)
                if begun is None:
                    with self._running(step, call) as run:
                        run.result = body(step.request.args)
                    return run.result  # type: ignore[no-any-return]
                step = begun
            answer: GuardrailResult = self._answer(step, simulate, raise_on_deny, call)
            return answer

    async def arun(
        self,
        request: CallRequest,
        body: Callable[[Mapping[str, Any]], Awaitable[R]],
        *,
        simulate: Simulator | None = None,
        call_key: str | None = None,
        raise_on_deny: bool | None = None,
        ask: Asker | None = None,
    ) -> R | GuardrailResult:
        """The async twin of :meth:`run`: only the tool body is awaited."""
        with self._telemetry.call(request, call_key) as call:
            step = self._prepare(request, call_key, ask, call)
            if isinstance(step, _Ready):
                begun = self._begin(step)
                if begun is None:
                    with self._running(step, call) as run:
                        run.result = await body(step.request.args)
                    return run.result  # type: ignore[no-any-return]
                step = begun
            answer: GuardrailResult = self._answer(step, simulate, raise_on_deny, call)
            if "draft" in answer and inspect.isawaitable(answer["draft"]):
                answer["draft"] = await answer["draft"]  # an async simulate function
            return answer

    def check(self, request: CallRequest) -> Decision:
        """The decision for ``request`` right now, without reserving or recording anything."""
        decision, _snap = self._decide(request, _ephemeral_key())
        return decision

    @contextmanager
    def scope(self, **values: str) -> Iterator[None]:
        """Set scope values (workflow, segment, channel, region, agent) for calls made inside.

        >>> guard = Guardrails(PolicyPack.from_yaml("name: p\\nversion: 1"), store="memory://")
        >>> with guard.scope(workflow="newsletter"):
        ...     pass
        """
        bad = sorted(set(values) - set(DIMENSIONS))
        if bad:
            raise ConfigurationError(
                f"unknown scope dimension(s) {', '.join(bad)}: use {', '.join(DIMENSIONS)}"
            )
        token = _scope_overrides.set({**_scope_overrides.get(), **values})
        try:
            yield
        finally:
            _scope_overrides.reset(token)

    def resolve_scope(
        self,
        *,
        declared: Mapping[str, str] | None = None,
        context: Mapping[str, Any] | None = None,
        args: Mapping[str, Any] | None = None,
    ) -> Scope:
        """The call's scope. Precedence, lowest first: this object's default scope, the
        call's arguments (``channel``, ``region`` ... when the tool takes them), the run's
        context (``runtime.context`` / ``configurable`` / :meth:`scope`), then the tool's
        own declaration, which always wins."""
        overrides = _scope_overrides.get()
        if args or context or overrides or not declared:
            return self._merged_scope((args, context, overrides, declared))
        # The usual @guarded call: the tool's declared scope alone, resolved once.
        try:
            ident = tuple(declared.items())
            scope = self._declared.get(ident)
        except TypeError:  # an unhashable value (ignored by the merge below)
            return self._merged_scope((declared,))
        if scope is None:
            scope = self._merged_scope((declared,))
            if len(self._declared) < 4096:
                self._declared[ident] = scope
        return scope

    def _merged_scope(self, sources: tuple[Mapping[str, Any] | None, ...]) -> Scope:
        """The default scope overlaid with each source's scope values, in order."""
        values: dict[str, str] | None = None
        for source in sources:
            if source:
                for dim in DIMENSIONS:
                    v = source.get(dim)
                    if isinstance(v, str) and v:
                        if values is None:
                            values = dict(self._default_items)
                        values[dim] = v
        if values is None:
            return self.default_scope
        ident = tuple(values.items())
        scope = self._scopes.get(ident)
        if scope is None:
            scope = Scope(**values)
            if len(self._scopes) < 4096:  # one shared object per scope seen
                self._scopes[ident] = scope
        return scope

    def set_level(
        self,
        scope: Scope,
        level: AutonomyLevel | int | str,
        *,
        by: str,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
    ) -> None:
        """Move the level dial of the rule governing ``scope``, within the pack's ceiling."""
        from agent_guardrails.ops.operations import set_level

        set_level(
            self.store,
            scope,
            int(AutonomyLevel.parse(level)),
            by=by,
            reason=reason,
            evidence=dict(evidence or {}),
            pack=self.policy,
        )

    def level_of(self, scope: Scope) -> AutonomyLevel:
        """The live level for calls in ``scope`` (the dial, or the pack's starting level)."""
        value = self.store.get_level(self.policy.dial_scope(scope).key)
        return AutonomyLevel(value) if value is not None else self.policy.initial_level(scope)

    def kill(self, scope: Scope = Scope(), *, by: str, reason: str) -> None:
        """Engage the kill-switch for ``scope`` (global by default)."""
        self.store.set_kill_switch(scope, True, by=by, reason=reason)

    def unkill(self, scope: Scope = Scope(), *, by: str, reason: str) -> None:
        """Release the kill-switch for ``scope``."""
        self.store.set_kill_switch(scope, False, by=by, reason=reason)

    def record_model_spend(
        self,
        *,
        model: str,
        input_tokens: int,
        output_tokens: int,
        scope: Scope,
        call_key: str | None = None,
        started_ns: int | None = None,
    ) -> float:
        """Charge one model call, priced from the pack's ``model_prices``, to every budget
        that covers ``model.call`` in ``scope``. The spend already happened, so it is
        recorded even past a budget's limit; the next call then finds the budget spent.
        Returns the cost (0 for a model with no price in the pack). It is traced as a
        ``chat {model}`` span (from ``started_ns``, the call's start in epoch nanoseconds)
        with the tokens and the cost."""
        price = self.policy.model_prices.get(model)
        if price is None:
            return 0.0
        cost = input_tokens / 1000 * price.input_per_1k + output_tokens / 1000 * price.output_per_1k
        key = call_key or _ephemeral_key()
        charges = budget_charges(
            MODEL_ACTION, scope, self.policy, cost, price.currency, self.clock()
        )
        data = {
            "model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost": cost,
            "currency": price.currency,
            "scope": scope.as_dict(),
        }
        event = _event("model.spend", data, key, "model.spend")
        self.store.reserve(key, charges, audit=event, force=True)
        self.store.finish(key, ok=True)
        self._telemetry.model_spend(
            model, input_tokens, output_tokens, cost, price.currency, scope.key, started_ns
        )
        return cost

    def spent_budget(self, scope: Scope, action: str = MODEL_ACTION) -> str | None:
        """The label of a budget covering ``action`` in ``scope`` that has nothing left in
        its current window, or ``None``."""
        charges = budget_charges(
            action, scope, self.policy, 0.0, self.policy.defaults.currency, self.clock()
        )
        if not charges:
            return None
        snap = self.store.snapshot(
            dial_key="", counter_keys=[c.key for c in charges], call_key=_ephemeral_key()
        )
        for charge in charges:
            if snap.used.get(charge.key, 0.0) >= charge.limit:
                return charge.label
        return None

    # ------------------------------------------------------------------ batches (guard node)

    def decide_batch(self, calls: Sequence[tuple[CallRequest, str]]) -> list[Decision]:
        """Decide several calls together and hold what they need as one reservation: every
        call that goes ahead (allowed, or waiting for approval) fits, or none of them does
        and each is denied with the reason. Replays (the same keys after a resume) hold
        nothing again. Decisions are audited once per key."""
        decided = [(request, key, *self._decide(request, key)) for request, key in calls]
        ahead = [(r, k, d) for r, k, d, _ in decided if d.kind in _GOES_AHEAD]
        if ahead:
            events = [_event("decision", _decision_data(d, k), k, "decision") for _, k, d in ahead]
            down: StoreUnavailable | None = None
            try:
                res = self.store.reserve_many(
                    [(k, d.charges) for _, k, d in ahead], audit=events, now=self.clock()
                )
            except StoreUnavailable as exc:
                down, res = exc, ReserveResult(ok=False)
            if not res.ok:
                out = []
                for request, key, decision, _snap in decided:
                    if decision.kind in _GOES_AHEAD:
                        decision = (
                            _offline(decision, request, down)
                            if down is not None
                            else _batch_denied(decision, res)
                        )
                        self._audit(
                            _event("decision", _decision_data(decision, key), key, "decision")
                        )
                    out.append(decision)
                self._trace_batch(calls, out)
                return out
        for _request, key, decision, _snap in decided:
            if decision.kind not in _GOES_AHEAD:
                self._audit(_event("decision", _decision_data(decision, key), key, "decision"))
        out = [d for _, _, d, _ in decided]
        self._trace_batch(calls, out)
        return out

    def _trace_batch(
        self, calls: Sequence[tuple[CallRequest, str]], decisions: Sequence[Decision]
    ) -> None:
        """Spans for the calls of a batch that stop in the guard node: refusals, drafts, and
        approval requests (once per call: a resumed batch's calls are traced by
        :meth:`resolve` and :meth:`execute`, linked to the span that asked). Allowed calls
        are traced where they run (:meth:`execute`)."""
        for (request, key), decision in zip(calls, decisions, strict=True):
            if decision.kind is DecisionKind.ALLOW:
                continue
            asking = decision.kind is DecisionKind.REQUIRE_APPROVAL
            if asking and self._first_ask(key) is not None:
                continue
            with self._telemetry.call(request, key, current=False) as call:
                call.decided(decision, key, resumed=False)
                if asking:  # reserved just now: its expiry counts from now
                    self._record_ask(self._approval_request(request, decision, key, None), call)

    def approval_request(
        self, request: CallRequest, decision: Decision, key: str
    ) -> ApprovalRequest:
        """What a human is asked about one call waiting for approval. Its expiry counts
        from when the question was first put (the ``approval.requested`` record), as when
        the answer is checked."""
        first = self._first_ask(key)
        asked_at = first.data.get("asked_at") if first is not None else None
        return self._approval_request(request, decision, key, asked_at)

    def resolve(
        self, request: CallRequest, decision: Decision, key: str, answer: ApprovalAnswer
    ) -> tuple[CallRequest, Decision, str]:
        """Apply a human's answer to a call waiting for approval (roles, expiry, allowed
        decisions and edits are checked as for any approval). Returns the call to run
        (edited, and under its own key, after an ``edit``) with an ``allow`` decision, or
        the call with the refusal."""
        step = self._approve(request, decision, key, True, lambda _r: answer, None)
        if isinstance(step, _Ready):
            return step.request, step.decision, step.key
        self._trace_refusal(step, key, answer)
        if step.message is not None:  # the human's words for the model (reject / respond)
            return step.request, replace(step.decision, extra={"response": step.message}), key
        return step.request, step.decision, key

    def withdraw(self, key: str, reason: str) -> None:
        """Release what a call decided earlier (by :meth:`decide_batch`) holds, without
        running it: its batch ended (a kill-switch halted another call of it)."""
        self._release(key, "reservation.released", {"reason": reason})

    def execute(
        self, request: CallRequest, decision: Decision, key: str, body: Body[R]
    ) -> R | GuardrailResult:
        """Run the body of a call already decided and reserved under ``key`` (by
        :meth:`decide_batch` / :meth:`resolve`): mark it started, run, record the end. A
        kill-switch engaged since the decision wins: the call does not run, its hold is
        released and a ``halted`` result comes back."""
        step = _Ready(request, decision, key, True)
        with self._traced_execution(step) as call:
            begun = self._halted_meanwhile(request, decision, key, held_only=True) or (
                self._begin(step)
            )
            if begun is None:
                with self._running(step, call) as run:
                    run.result = body(request.args)
                return run.result  # type: ignore[no-any-return]
            answer: GuardrailResult = self._answer(begun, None, False, call)
            return answer

    async def aexecute(
        self,
        request: CallRequest,
        decision: Decision,
        key: str,
        body: Callable[[Mapping[str, Any]], Awaitable[R]],
    ) -> R | GuardrailResult:
        """The async twin of :meth:`execute`."""
        step = _Ready(request, decision, key, True)
        with self._traced_execution(step) as call:
            begun = self._halted_meanwhile(request, decision, key, held_only=True) or (
                self._begin(step)
            )
            if begun is None:
                with self._running(step, call) as run:
                    run.result = await body(request.args)
                return run.result  # type: ignore[no-any-return]
            answer: GuardrailResult = self._answer(begun, None, False, call)
            return answer

    @contextmanager
    def _traced_execution(self, ready: _Ready) -> Iterator[CallSpan]:
        """The span of a call decided earlier (by a guard node): linked to the span that
        asked for approval, when a human approved it."""
        with self._telemetry.call(ready.request, ready.key) as call:
            decision = ready.decision
            approved = "approved" in decision.reasons or "edited" in decision.reasons
            call.decided(decision, ready.key, resumed=approved)
            if approved:
                call.approved_earlier(
                    "edit" if "edited" in decision.reasons else "approve",
                    str(decision.extra.get("approved_by") or ""),
                    *self._ask_and_wait(ready.key.removesuffix(":edit")),
                )
            yield call

    def _trace_refusal(self, step: _Stop, key: str, answer: ApprovalAnswer) -> None:
        """The span of a batch call a human's answer stopped (rejected, answered, refused)."""
        with self._telemetry.call(step.request, key, current=False) as call:
            call.decided(step.decision, key, resumed=True)
            refused = None if step.status is not None else step.decision.reasons[0]
            call.approved_earlier(answer.type, answer.by, *self._ask_and_wait(key), refused=refused)

    # ------------------------------------------------------------------ the pipeline

    def _prepare(
        self, request: CallRequest, call_key: str | None, ask: Asker | None, call: CallSpan
    ) -> _Ready | _Stop | _Replay:
        """kill-switch -> level -> validators -> caps -> approval; reserve and audit once."""
        if self._backlog:
            self._flush_backlog()
        key = call_key or _ephemeral_key()
        decision, snap = self._decide(request, key)
        prior = snap.call if snap is not None else None
        asked_at = prior.updated_at if prior is not None and prior.state == "reserved" else None
        resumed = asked_at is not None and decision.kind is DecisionKind.REQUIRE_APPROVAL
        call.decided(decision, key, resumed=resumed)
        if prior is not None and prior.state == "finished":
            call.replayed()
            return _Replay(prior)
        trace_ids = call.trace_ids()
        started = False
        if decision.kind in _GOES_AHEAD:
            decision, started = self._reserve(request, decision, key, snap, trace_ids)
        else:
            if prior is not None and prior.state == "reserved":
                self._release(key, "reservation.released", {"reason": decision.kind.value})
            self._audit(
                _event("decision", _decision_data(decision, key, trace_ids), key, "decision")
            )
        if decision.kind is DecisionKind.REQUIRE_APPROVAL:
            return self._approve(request, decision, key, call_key is not None, ask, asked_at, call)
        if decision.kind is DecisionKind.ALLOW:
            return _Ready(request, decision, key, call_key is not None, started=started)
        return _Stop(request, decision)

    def _decide(self, request: CallRequest, key: str) -> tuple[Decision, Snapshot | None]:
        pack = self.policy
        now = self.clock()
        action = pack.action(request.action)
        charges: tuple[Any, ...] = ()
        if action is not None:
            try:
                charges = charges_for(
                    request, action, pack, cost=call_cost(action, request.args), now=now
                )
            except CostError:
                charges = ()  # the engine denies it with the reason
        try:
            snap = self.store.snapshot(
                dial_key=pack.lookup.dial_key(request.scope),
                counter_keys=[c.key for c in charges],
                call_key=key,
            )
        except StoreUnavailable as exc:
            return self._store_down(request, exc, now), None
        used: Mapping[str, float] = snap.used
        if snap.call is not None and snap.call.state == "reserved" and snap.call.charges:
            # This call's own reservation (made before an interrupt) must not count against it.
            own = {c.key: c.amount for c in snap.call.charges}
            used = {k: v - own.get(k, 0.0) for k, v in used.items()}
        level = (
            AutonomyLevel(snap.level)
            if snap.level is not None
            else pack.initial_level(request.scope)
        )
        decision = decide(
            request,
            pack,
            level=level,
            used=used,
            kill_switches=snap.kill_switches,
            now=now,
            charges=charges,
            in_doubt=snap.call is not None and snap.call.state == "started",
        )
        return decision, snap

    def _reserve(
        self,
        request: CallRequest,
        decision: Decision,
        key: str,
        snap: Snapshot | None,
        trace_ids: SpanContext | None = None,
    ) -> tuple[Decision, bool]:
        """Hold the decision's charges atomically; a lost race becomes a denial. An allowed
        call is marked started in the same store step (``True``: it was)."""
        event = _event("decision", _decision_data(decision, key, trace_ids), key, "decision")
        start = _started_event(request, key) if decision.kind is DecisionKind.ALLOW else None
        try:
            res = self.store.reserve(
                key,
                decision.charges,
                audit=event,
                force=bool(decision.extra.get("over_cap")),
                now=self.clock(),
                start=start,
            )
        except StoreUnavailable as exc:
            return self._store_down(request, exc, self.clock()), False
        if res.ok:
            return decision, res.started
        assert res.breach is not None
        used = {**(snap.used if snap is not None else {}), res.breach.key: res.used}
        denied = decide(
            request,
            self.policy,
            level=decision.level,
            used=used,
            now=self.clock(),
            charges=decision.charges,
        )
        self._audit(_event("decision", _decision_data(denied, key, trace_ids), key, "decision"))
        return denied, False

    def _approve(
        self,
        request: CallRequest,
        decision: Decision,
        key: str,
        keep: bool,
        asker: Asker | None,
        asked_at: float | None,
        call: CallSpan | None = None,
    ) -> _Ready | _Stop:
        first = self._first_ask(key)
        # Expiry counts from when the question was first put to a human.
        asked_at = first.data.get("asked_at", asked_at) if first is not None else None
        ask = self._approval_request(request, decision, key, asked_at)
        if first is not None and call is not None:
            call.approval_reasked(first.data)
        asked = self.clock()
        try:
            answer = (asker or self._ask)(ask)
        except BaseException as exc:
            # A graph interrupt puts the question to a human: record it, unless the call
            # only waits behind another call's question (it is put in a later run).
            if first is None and not getattr(exc, "question_pending", False):
                self._record_ask(ask, call, asked)
            raise
        if first is None:
            self._record_ask(ask, call, asked)
        unbound = _unbound(first.data, ask) if first is not None else None
        if answer is None:
            self._release(key, "approval.unavailable", {"reason": "no approver configured"})
            return _Stop(request, decision)
        problem = unbound or self._check_answer(ask, answer)
        if call is not None:
            call.approval_resolved(answer, problem, self.clock() - (asked_at or asked))
        self._audit(
            AuditEvent(
                "approval.resolved",
                {
                    "answer": answer.type,
                    "by": answer.by,
                    "roles": list(answer.roles),
                    "refused": problem,
                    "args_digest": ask.args_digest,
                    "pack_version": ask.pack_version,
                },
                key,
                _dedupe(key, "approval"),
            )
        )
        if problem is not None:
            self._release(key, "approval.refused", {"reason": problem})
            code = problem.split(":", 1)[0]
            refused = replace(
                decision,
                kind=DecisionKind.DENY,
                reasons=(code,),
                message=f"denied: {problem}",
                extra={},
            )
            return _Stop(request, refused)
        halted = self._halted_meanwhile(request, decision, key)
        if halted is not None:
            return halted
        if answer.type == "approve":
            rerun = "in_doubt" in decision.reasons
            return _Ready(request, _resolved(decision, "approved", answer), key, keep, rerun)
        if answer.type == "edit":
            return self._edited(request, decision, key, answer, keep)
        self._release(key, f"approval.{answer.type}", {"message": answer.message})
        status: Status = "rejected" if answer.type == "reject" else "responded"
        return _Stop(request, _resolved(decision, status, answer), status, answer.message or None)

    def _halted_meanwhile(
        self, request: CallRequest, decision: Decision, key: str, *, held_only: bool = False
    ) -> _Stop | None:
        """The kill-switch wins even over a human's answer, or over a guard node's decision
        made a step earlier: look again before running. ``held_only``: a call under ``key``
        that already started or ended is left to :meth:`_begin` (it replays, or is in
        doubt; its hold is not released). An unreachable store is left to :meth:`_begin`
        too, which fails closed."""
        try:
            snap = self.store.snapshot(dial_key="", counter_keys=(), call_key=key)
        except StoreUnavailable:
            return None
        if held_only and snap.call is not None and snap.call.state != "reserved":
            return None
        for switch in snap.kill_switches:
            if switch.matches(request.scope):
                self._release(key, "reservation.released", {"reason": "halt"})
                halted = replace(
                    decision,
                    kind=DecisionKind.HALT,
                    reasons=(f"kill_switch:{switch.key}",),
                    message=f"halted: the kill-switch for {switch.key} was engaged after "
                    "the call was decided and before it could run",
                    extra={},
                )
                self._audit(_event("decision", _decision_data(halted, key), key, "halt"))
                return _Stop(request, halted)
        return None

    def _edited(
        self,
        request: CallRequest,
        decision: Decision,
        key: str,
        answer: ApprovalAnswer,
        keep: bool,
    ) -> _Ready | _Stop:
        """Re-check an edit as a new call; only the approval step is waived."""
        self._release(key, "approval.edited", {"by": answer.by})
        if answer.edited_tool is not None and answer.edited_tool != request.tool:
            refused = replace(
                decision,
                kind=DecisionKind.DENY,
                reasons=("edit_renames_tool",),
                message=(
                    f"denied: the edit renames {request.tool!r} to {answer.edited_tool!r}; "
                    "approve or reject the original call, or call the other tool so it meets "
                    "its own rules"
                ),
            )
            self._audit(_event("decision", _decision_data(refused, key), key, "edit-decision"))
            return _Stop(request, refused)
        edited = replace(request, args=dict(answer.edited_args or {}))
        edit_key = f"{key}:edit"
        checked, snap = self._decide(edited, edit_key)
        if "approval_required:cap_exceeded" in checked.reasons:
            # The human approved the edit, not the breach the edit causes: ask again.
            checked = replace(
                checked,
                kind=DecisionKind.DENY,
                reasons=tuple(r for r in checked.reasons if r.endswith("_exceeded")),
                message=checked.message.replace("needs approval", "denied: the edited call")
                + "; the edit was approved, not this breach: submit it for approval",
            )
        started = False
        if checked.kind in _GOES_AHEAD:
            checked, started = self._reserve(edited, checked, edit_key, snap)
        else:
            self._audit(_event("decision", _decision_data(checked, edit_key), edit_key, "decision"))
        if checked.kind in _GOES_AHEAD:
            resolved = _resolved(checked, "edited", answer)
            return _Ready(edited, resolved, edit_key, keep, started=started)
        return _Stop(edited, checked)

    def _running(self, ready: _Ready, call: CallSpan | None = None) -> _Running:
        """The context around the tool body; see :class:`_Running`."""
        return _Running(self, ready, call)

    # ------------------------------------------------------------------ steps

    def _begin(self, ready: _Ready) -> _Replay | _Stop | None:
        """Mark the call started (``None``: go ahead). A call that already finished under
        this key is replayed; one that started and did not finish is never run again."""
        if ready.started:
            return None
        event = _started_event(ready.request, ready.key)
        if "store_unavailable" in ready.decision.reasons:  # fail_open: record it later
            with self._backlog_lock:
                self._backlog.append(partial(self.store.append_audit, event))
            return None
        try:
            if self.store.start(ready.key, audit=event):
                return None
            record = self.store.call_record(ready.key)
        except StoreUnavailable as exc:
            return _Stop(ready.request, _offline(ready.decision, ready.request, exc))
        if record is not None and record.state == "finished":
            return _Replay(record)
        if ready.rerun and record is not None and record.state == "started":
            self._audit(event)
            return None
        raise CallInDoubt(
            f"call {ready.key} already started elsewhere and has not finished: it was not run "
            "again; see 'agent-guardrails status' for calls in doubt"
        )

    def _end(
        self,
        ready: _Ready,
        *,
        ok: bool,
        result: object = None,
        actual_cost: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        data: dict[str, Any] = {"action": ready.request.action, "ok": ok}
        if ok:
            data["cost"] = ready.decision.cost if actual_cost is None else actual_cost
        else:
            data["error"] = type(error).__name__ if error is not None else "unknown"
        event = AuditEvent(
            "execution.finished" if ok else "execution.failed",
            data,
            ready.key,
            # A failed call may run again (a retried task): its finish is recorded too.
            _dedupe(ready.key, "end" if ok else "failed"),
        )
        stored = _to_json(result) if ok and ready.keep_result else None
        try:
            self.store.finish(ready.key, ok=ok, actual_cost=actual_cost, result=stored, audit=event)
        except StoreUnavailable:  # write it later (the closure is only made when needed)

            def write() -> None:
                self.store.finish(
                    ready.key, ok=ok, actual_cost=actual_cost, result=stored, audit=event
                )

            with self._backlog_lock:
                self._backlog.append(write)

    def _flush_backlog(self) -> None:
        with self._backlog_lock:
            pending, self._backlog = self._backlog, []
        for i, write in enumerate(pending):
            try:
                write()
            except StoreUnavailable:
                with self._backlog_lock:
                    self._backlog[:0] = pending[i:]
                return

    def _answer(
        self,
        step: _Stop | _Replay,
        simulate: Simulator | None,
        raise_on_deny: bool | None,
        call: CallSpan | None = None,
    ) -> Any:
        if isinstance(step, _Replay):
            if call is not None:
                call.replayed()
            return self._replayed(step.record)
        decision = step.decision
        if call is not None:
            call.ended(decision)
        if decision.kind is DecisionKind.SIMULATE:
            result = result_for(decision)
            result["draft"] = (
                simulate(step.request.args)
                if simulate is not None
                else _describe(decision, step.request.args)
            )
            return result
        should_raise = self.raise_on_deny if raise_on_deny is None else raise_on_deny
        if should_raise and step.status != "responded":
            raise error_for(decision)
        return result_for(decision, status=step.status, message=step.message)

    def _replayed(self, record: CallRecord) -> Any:
        return json.loads(record.result) if record.result is not None else None

    def _ask(self, request: ApprovalRequest) -> ApprovalAnswer | None:
        if self.approver is None:
            return None
        return self.approver(request)

    def _check_answer(self, request: ApprovalRequest, answer: ApprovalAnswer) -> str | None:
        if self.clock() > request.expires_at:
            return "approval_expired: the approval request expired; the call must be asked again"
        if answer.type not in request.allowed_decisions:
            return (
                f"decision_not_allowed: {answer.type!r} is not allowed for {request.action}; "
                f"allowed: {', '.join(request.allowed_decisions)}"
            )
        if request.roles and not set(answer.roles) & set(request.roles):
            return (
                f"approver_not_authorized: {answer.by or 'the approver'} has roles "
                f"{list(answer.roles)}; {request.action} needs one of {list(request.roles)}"
            )
        return None

    def _approval_request(
        self, request: CallRequest, decision: Decision, key: str, asked_at: float | None
    ) -> ApprovalRequest:
        """What the human sees. ``asked_at`` is when the call was first held for approval
        (kept across a graph's interrupt and resume), so expiry counts from the first ask."""
        action = self.policy.action(request.action)
        allowed = action.approval.allowed_decisions if action is not None else ("approve", "reject")
        timeout = decision.approval_timeout or 86_400.0
        return ApprovalRequest(
            call_key=key,
            tool=request.tool,
            action=request.action,
            args=request.args,
            description=decision.message,
            level=int(decision.level),
            reasons=decision.reasons,
            roles=decision.approval_roles,
            allowed_decisions=allowed,
            cost=decision.cost,
            currency=decision.currency,
            budget_left=decision.budget_left,
            pack=decision.pack,
            pack_version=decision.pack_version,
            args_digest=args_digest(request.tool, request.args),
            expires_at=(asked_at if asked_at is not None else self.clock()) + timeout,
        )

    def _first_ask(self, key: str) -> AuditRecord | None:
        """The ``approval.requested`` record of the call under ``key``, if it was asked."""
        dedupe = _dedupe(key, "approval.requested")
        try:
            return self.store.find_audit(dedupe) if dedupe is not None else None
        except StoreUnavailable:
            return None  # asking again records nothing twice: appends are de-duplicated

    def _ask_and_wait(self, key: str) -> tuple[Mapping[str, Any] | None, float | None]:
        """The first ask's recorded data (its span ids) and how long ago it was made."""
        first = self._first_ask(key)
        if first is None:
            return None, None
        return first.data, self.clock() - first.ts

    def _record_ask(
        self, ask: ApprovalRequest, call: CallSpan | None, asked_at: float | None = None
    ) -> None:
        """The ``approval.requested`` audit record (with the span's ids) and span event."""
        key = ask.call_key
        data: dict[str, Any] = {
            "asked_at": self.clock() if asked_at is None else asked_at,
            "tool": ask.tool,
            "roles": list(ask.roles),
            "reasons": list(ask.reasons),
            "expires_at": ask.expires_at,
            "args_digest": ask.args_digest,
            "pack_version": ask.pack_version,
        }
        ids = call.trace_ids() if call is not None else None
        if ids is not None:
            data["trace_id"] = f"{ids.trace_id:032x}"
            data["span_id"] = f"{ids.span_id:016x}"
        self._audit(_event("approval.requested", data, key, "approval.requested"))
        if call is not None:
            call.approval_requested(ask)

    def _release(self, key: str, kind: str, data: Mapping[str, Any]) -> None:
        self.store.release(key, audit=_event(kind, dict(data), key, kind))

    def _audit(self, event: AuditEvent) -> None:
        try:
            self.store.append_audit(event)
        except StoreUnavailable:
            with self._backlog_lock:
                self._backlog.append(partial(self.store.append_audit, event))

    def _store_down(self, request: CallRequest, exc: StoreUnavailable, now: float) -> Decision:
        """Fail closed: without the store only ``fail_open`` actions with no caps and no
        approval run, and the decision says so."""
        pack = self.policy
        decision = decide(request, pack, level=pack.initial_level(request.scope), used={}, now=now)
        if decision.kind is DecisionKind.ALLOW and decision.fail_open and not decision.charges:
            return replace(
                decision,
                reasons=("store_unavailable", "fail_open"),
                message=f"allowed without the store (fail_open): {exc}",
            )
        if decision.kind in (DecisionKind.SIMULATE, DecisionKind.DENY):
            return decision
        return _offline(decision, request, exc)


_EPHEMERAL_PREFIX = f"~{uuid.uuid4().hex[:12]}-"
_ephemeral_counter = itertools.count(1)


def raise_if_halted(guard: Guardrails, request: CallRequest, result: object) -> None:
    """For adapters in a graph: a call the kill-switch halted raises ``KillSwitchEngaged``
    where the pack says ``kill_switch: {on_halt: raise}``; otherwise nothing happens and the
    adapter returns the halted result."""
    if (
        guard.policy.kill_switch.on_halt == "raise"
        and is_result(result)
        and result["status"] == "halted"  # type: ignore[index]
    ):
        raise KillSwitchEngaged(guard.check(request))


def _ephemeral_key() -> str:
    """A key for a call made outside a graph: unique, and never retried under the same key,
    so its audit records need no de-duplication."""
    return f"{_EPHEMERAL_PREFIX}{next(_ephemeral_counter)}"


def _dedupe(key: str, tag: str) -> str | None:
    """The de-duplication tag of an audit record; calls with stable keys (from a graph's
    thread, task and tool call) may re-run after an interrupt and must record once."""
    return None if key.startswith("~") else f"{key}:{tag}"


def _event(kind: str, data: Mapping[str, Any], key: str, tag: str) -> AuditEvent:
    return AuditEvent(kind, data, key, _dedupe(key, tag))


def _started_event(request: CallRequest, key: str) -> AuditEvent:
    return AuditEvent(
        "execution.started",
        {"action": request.action, "tool": request.tool},
        key,
        _dedupe(key, "started"),
    )


def _batch_denied(decision: Decision, res: ReserveResult) -> Decision:
    """A call of a batch that did not fit as a whole."""
    breach = res.breach
    what = f"{breach.kind} {breach.label}" if breach is not None else "a cap"
    return replace(
        decision,
        kind=DecisionKind.DENY,
        reasons=(f"{breach.kind}_exceeded" if breach is not None else "batch_exceeded",),
        message=f"denied: the batch of parallel calls does not fit in {what}; "
        "none of them ran (ask for fewer or smaller actions)",
        extra={},
    )


def _offline(decision: Decision, request: CallRequest, exc: StoreUnavailable) -> Decision:
    return replace(
        decision,
        kind=DecisionKind.DENY,
        reasons=("store_unavailable",),
        message=f"denied: the store is unavailable ({exc}); {request.action} fails closed",
        extra={},
    )


def _resolved(decision: Decision, how: str, answer: ApprovalAnswer) -> Decision:
    """The decision after a human answered: ``approved``/``edited`` let it run."""
    kind = DecisionKind.ALLOW if how in ("approved", "edited") else decision.kind
    return replace(
        decision,
        kind=kind,
        reasons=(*decision.reasons, how),
        message=f"{how} by {answer.by or 'an approver'}: {decision.message}",
        extra={**decision.extra, "approved_by": answer.by},
    )


class _DecisionData(Mapping[str, Any]):
    """A decision's audit data, serialised only when a store reads it (the memory store
    reads lazily, so the hot path does not pay for it)."""

    __slots__ = ("_data", "_decision", "_key", "_trace")

    def __init__(self, decision: Decision, key: str, trace: SpanContext | None) -> None:
        self._decision = decision
        self._key = key
        self._trace = trace
        self._data: dict[str, Any] | None = None

    def _materialise(self) -> dict[str, Any]:
        if self._data is None:
            self._data = self._decision.as_dict()
            self._data["call_key"] = self._key
            if self._trace is not None:
                self._data["trace_id"] = f"{self._trace.trace_id:032x}"
                self._data["span_id"] = f"{self._trace.span_id:016x}"
        return self._data

    def __getitem__(self, name: str) -> Any:
        return self._materialise()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._materialise())

    def __len__(self) -> int:
        return len(self._materialise())


def _unbound(first: Mapping[str, Any], ask: ApprovalRequest) -> str | None:
    """Why an answer given to the first ask of a call does not bind to ``ask``: the pack
    version or the arguments changed in between (``None``: they did not)."""
    version = first.get("pack_version")
    if version is not None and version != ask.pack_version:
        return (
            f"approval_stale: the call was put to a human under pack {ask.pack} version "
            f"{version}, and the pack is now version {ask.pack_version}; make the call "
            "again to ask under the new version"
        )
    digest = first.get("args_digest")
    if digest is not None and digest != ask.args_digest:
        return (
            "approval_stale: the call's arguments changed after it was put to a human; "
            "make the call again to ask about these arguments"
        )
    return None


def _decision_data(
    decision: Decision, key: str, trace: SpanContext | None = None
) -> Mapping[str, Any]:
    """The audit data of a decision; ``trace`` (the call span's trace and span id) ties the
    audit record to its trace in Jaeger."""
    return _DecisionData(decision, key, trace)


def _describe(decision: Decision, args: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "intended_action": decision.action,
        "tool": decision.tool,
        "args": dict(args),
        "estimated_cost": decision.cost,
        "currency": decision.currency,
        "note": "what the tool would do; nothing was executed",
    }


def args_digest(tool: str, args: Mapping[str, Any]) -> str:
    """SHA-256 of the tool name and its canonical JSON arguments (what an approval binds)."""
    body = json.dumps({"tool": tool, "args": args}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def _to_json(value: object) -> str | None:
    if isinstance(value, ToolMessage):
        return json.dumps({"tool_message": value.content, "status": value.status}, default=str)
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return json.dumps(repr(value))
