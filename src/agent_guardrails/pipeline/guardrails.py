"""``Guardrails``: the small facade every adapter and application talks to.

It holds what one guarded agent shares (the store, the live policy, the scope resolver, the
approver, telemetry, the outbox) and runs the pipeline
(:func:`agent_guardrails.pipeline.flow.guarded_call`) under a sync or an async driver.

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

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from agent_guardrails.engine.decision import CallRequest, Decision
from agent_guardrails.errors import ConfigurationError, StoreUnavailable
from agent_guardrails.pipeline import batch, spending
from agent_guardrails.pipeline.approvals import ApprovalAnswer, ApprovalRequest, Approver
from agent_guardrails.pipeline.edits import ArgsSchema, params_of
from agent_guardrails.pipeline.effects import Flow, adrive, drive, for_event_loop
from agent_guardrails.pipeline.events import ephemeral_key
from agent_guardrails.pipeline.flow import (
    Asker,
    Body,
    GuardedCall,
    Simulator,
    decide,
    guarded_call,
    refuse,
)
from agent_guardrails.pipeline.gate_watch import GateWatch
from agent_guardrails.pipeline.live_policy import LivePolicy
from agent_guardrails.pipeline.notify import Notifications, Notifier
from agent_guardrails.pipeline.outbox import Outbox
from agent_guardrails.pipeline.results import GuardrailResult
from agent_guardrails.pipeline.scoping import ScopeResolver, ScopeSources, using_scope
from agent_guardrails.pipeline.spending import report_cost
from agent_guardrails.policy.levels import AutonomyLevel
from agent_guardrails.policy.pack import PolicyPack
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store import Store, open_store
from agent_guardrails.telemetry.content import ContentPolicy, Redactor
from agent_guardrails.telemetry.instruments import Telemetry
from agent_guardrails.telemetry.spans import NO_SPAN

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["Guardrails", "report_cost"]

R = TypeVar("R")
_FLUSH_WAIT = 5.0  # seconds closing waits for a flush of the outbox under way elsewhere


class Guardrails:
    """Runs tool calls through policy, ledger, approvals and audit.

    Args:
        policy: a :class:`PolicyPack` or a path to its YAML file. It bootstraps the store
            (see :mod:`agent_guardrails.pipeline.live_policy`); every call is then decided
            under the store's active pack version, which ``policy apply`` / ``rollback``
            change for every running agent.
        store: a :class:`~agent_guardrails.store.Store` or a URL (``memory://``,
            ``sqlite:///path.db``, ``postgresql://...``); default ``sqlite:///agent_guardrails.db``.
            A store opened from a URL is closed by :meth:`close`.
        approver: called for calls that need approval outside a LangGraph run (see
            :mod:`agent_guardrails.pipeline.approvals`). Without one such calls come back
            ``pending_approval`` and hold nothing. An ``async def`` approver is awaited; a
            plain function, which may block for the human's time, runs on a worker thread
            on async paths (``arun``, ``ainvoke``).
        raise_on_deny: raise :class:`~agent_guardrails.errors.GuardrailError` subclasses
            instead of returning a :class:`~agent_guardrails.pipeline.results.GuardrailResult`.
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
        notifiers: called when a question is put to a human and when it is answered
            (callables or :class:`~agent_guardrails.pipeline.notify.Webhook`), on a
            thread of their own: a slow receiver never delays a call.
        gate_watch: after a call ends, at most once per this many seconds, judge the
            gates' floors and caps on a background thread and apply each demotion
            (:mod:`agent_guardrails.pipeline.gate_watch`); ``None`` turns it off.
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
        notifiers: Sequence[Notifier] = (),
        gate_watch: float | None = 60.0,
    ) -> None:
        pack = policy if isinstance(policy, PolicyPack) else PolicyPack.from_yaml(policy)
        self._owns_store = store is None or isinstance(store, str)
        self.store: Store = open_store(store) if store is None or isinstance(store, str) else store
        self.approver = approver
        self.raise_on_deny = raise_on_deny
        self.scoping = ScopeResolver(scope)
        self.clock = clock
        self.outbox = Outbox()
        self.notifications = Notifications(notifiers)
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
        self.telemetry = Telemetry(
            pack, content, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
        self.live = LivePolicy(pack, self.telemetry.use_pack)
        self.gate_watch = GateWatch(self.store, lambda: self.live.pack, gate_watch)
        # Bootstrap the store now, unless this runs inside an event loop (a graph module a
        # LangGraph server imports): store I/O would block it, so the first call does it.
        # Without the store, calls fail closed and say why; the first that reaches it
        # bootstraps it.
        if not _in_event_loop():
            with contextlib.suppress(StoreUnavailable):
                drive(self.live.bootstrap(pack), self.store)
        # What waits in the outbox is written when this object is closed, dropped or the
        # interpreter exits (a warning counts what still cannot be written).
        self._finalizer = weakref.finalize(self, _write_what_waits, self.outbox, self.store)

    # ------------------------------------------------------------------ state

    @property
    def policy(self) -> PolicyPack:
        """The pack calls are decided under now: the store's active version."""
        return self.live.pack

    @property
    def default_scope(self) -> Scope:
        return self.scoping.default

    # ------------------------------------------------------------------ one call

    def prepare(
        self,
        request: CallRequest,
        *,
        call_key: str | None = None,
        sources: ScopeSources | None = None,
        body: Body | None = None,
        simulate: Simulator | None = None,
        ask: Asker | None = None,
        raise_on_deny: bool | None = None,
        runs_later: bool = False,
        in_graph: bool = False,
        args_schema: ArgsSchema | None = None,
    ) -> GuardedCall:
        """A call ready for the pipeline, its scope resolved (:mod:`~.scoping`). Without
        ``sources``, the request's own scope counts as the run's context."""
        if sources is None:
            sources = ScopeSources(request.scope.as_dict(), {})
        scope = self.scoping.resolve(sources, request.args, params_of(args_schema))
        if scope is not request.scope:  # the shared object: the engine caches by identity
            request = CallRequest(
                request.tool, request.action, request.args, scope, request.call_id
            )
        return GuardedCall(
            request,
            call_key or ephemeral_key(),
            sources,
            body,
            NO_SPAN,
            simulate=simulate,
            ask=ask,
            raise_on_deny=raise_on_deny,
            runs_later=runs_later,
            in_graph=in_graph,
            schema=args_schema,
        )

    def run(
        self,
        request: CallRequest,
        body: Callable[[Mapping[str, Any]], R],
        *,
        simulate: Simulator | None = None,
        call_key: str | None = None,
        raise_on_deny: bool | None = None,
        ask: Asker | None = None,
        sources: ScopeSources | None = None,
        in_graph: bool = False,
        args_schema: ArgsSchema | None = None,
    ) -> R | GuardrailResult:
        """Run one call: decide, maybe ask a human, then run ``body(args)`` or refuse.

        ``call_key`` identifies the call across retries and resumes (adapters derive it
        from the graph's thread, namespace and tool call id); ``ask`` replaces the
        ``approver`` for this call (adapters pass a LangGraph interrupt); ``sources`` are
        the run context's and the tool's declared scope values; ``in_graph`` (adapters in a
        LangGraph run): a halt raises where the pack says ``kill_switch: {on_halt: raise}``."""
        call = self.prepare(
            request,
            call_key=call_key,
            sources=sources,
            body=body,
            simulate=simulate,
            ask=ask,
            raise_on_deny=raise_on_deny,
            in_graph=in_graph,
            args_schema=args_schema,
        )
        with self.telemetry.call(call.request, call_key) as span:
            call.span = span
            if self.outbox.pending:
                self.flush()
            return drive(guarded_call(self, call), self.store)  # type: ignore[no-any-return]

    async def arun(
        self,
        request: CallRequest,
        body: Callable[[Mapping[str, Any]], Awaitable[R]],
        *,
        simulate: Simulator | None = None,
        call_key: str | None = None,
        raise_on_deny: bool | None = None,
        ask: Asker | None = None,
        sources: ScopeSources | None = None,
        in_graph: bool = False,
        args_schema: ArgsSchema | None = None,
    ) -> R | GuardrailResult:
        """The async twin of :meth:`run` (the same pipeline under the async driver)."""
        call = self.prepare(
            request,
            call_key=call_key,
            sources=sources,
            body=body,
            simulate=simulate,
            ask=ask,
            raise_on_deny=raise_on_deny,
            in_graph=in_graph,
            args_schema=args_schema,
        )
        with self.telemetry.call(call.request, call_key) as span:
            call.span = span
            if self.outbox.pending:
                await self.aflush()
            return await adrive(guarded_call(self, call), self.store)

    def _entry(self, flow: Flow[R]) -> Flow[R]:
        """Every way in: first write what the store could not take before."""
        if self.outbox.pending:
            yield from self.outbox.flush()
        return (yield from flow)

    def check(self, request: CallRequest) -> Decision:
        """The decision for ``request`` right now, without reserving or recording anything."""
        call = self.prepare(request)
        decided = drive(decide(self, call), self.store)
        return decided.decision

    def scope(self, **values: str) -> AbstractContextManager[None]:
        """Set scope values (workflow, segment, channel, region, agent) for calls made inside.

        >>> guard = Guardrails(PolicyPack.from_yaml("name: p\\nversion: 1"), store="memory://")
        >>> with guard.scope(workflow="newsletter"):
        ...     pass
        """
        return using_scope(**values)

    def resolve_scope(
        self,
        *,
        declared: Mapping[str, str] | None = None,
        context: Mapping[str, Any] | None = None,
        args: Mapping[str, Any] | None = None,
    ) -> Scope:
        """The scope a call would get (see :mod:`agent_guardrails.pipeline.scoping`)."""
        return self.scoping.resolve(ScopeSources(dict(context or {}), dict(declared or {})), args)

    # ------------------------------------------------------------------ a batch (guard node)

    def decide_batch(self, calls: Sequence[GuardedCall]) -> list[Decision]:
        """Decide a model turn's calls together (see :mod:`agent_guardrails.pipeline.batch`)."""
        return drive(self._entry(batch.decide_batch(self, calls)), self.store)

    def decide_turn(
        self, calls: Sequence[GuardedCall], ask: batch.AskAll
    ) -> list[tuple[GuardedCall, Decision]]:
        """Decide a model turn's calls together and ask about the waiting ones at once
        (:func:`~.batch.turn`): each call with its final decision."""
        return drive(self._entry(batch.turn(self, calls, ask)), self.store)

    async def adecide_turn(
        self, calls: Sequence[GuardedCall], ask: batch.AskAll
    ) -> list[tuple[GuardedCall, Decision]]:
        return await adrive(self._entry(batch.turn(self, calls, ask)), self.store)

    def approval_request(self, call: GuardedCall, decision: Decision) -> ApprovalRequest:
        return drive(batch.approval_request(self, call, decision), self.store)

    def apply_answer(
        self, call: GuardedCall, decision: Decision, answer: ApprovalAnswer
    ) -> tuple[GuardedCall, Decision]:
        """Apply a human's answer to a call of a batch waiting for approval."""
        return drive(batch.resolve(self, call, decision, answer), self.store)

    def refusal(self, call: GuardedCall, decision: Decision) -> GuardrailResult:
        """What the model gets for a call of a batch that does not run (a draft from the
        tool's ``simulate``, a refusal, a human's answer); never raises."""
        call.raise_on_deny = False
        result: GuardrailResult = drive(refuse(self, call, decision), self.store)
        return result

    async def arefusal(self, call: GuardedCall, decision: Decision) -> GuardrailResult:
        call.raise_on_deny = False
        result: GuardrailResult = await adrive(refuse(self, call, decision), self.store)
        return result

    def carry(self, call: GuardedCall, decision: Decision) -> dict[str, Any]:
        """What a call a guard node lets through carries to its tools node."""
        return batch.carry(self, call, decision)

    def carried(self, data: Mapping[str, Any], call: GuardedCall) -> Decision:
        """The guard node's decision, in the tools node."""
        return batch.carried(self, data, call)

    def withdraw(self, key: str, reason: str) -> None:
        drive(batch.withdraw(self, key, reason), self.store)

    def execute(self, call: GuardedCall, decision: Decision) -> Any:
        """Run a call a guard node let through (see :func:`~.batch.run_decided`)."""
        with self.telemetry.call(call.request, call.key) as span:
            call.span = span
            return drive(self._entry(batch.run_decided(self, call, decision)), self.store)

    async def aexecute(self, call: GuardedCall, decision: Decision) -> Any:
        with self.telemetry.call(call.request, call.key) as span:
            call.span = span
            return await adrive(self._entry(batch.run_decided(self, call, decision)), self.store)

    # ------------------------------------------------------------------ model spend

    def model_check(self, scope: Scope) -> str | None:
        """Before a model call: ``None`` to go ahead, else the message the run ends with (a
        spent model budget, or the store unreachable while one applies: fail closed)."""
        return drive(spending.model_check(self, scope), self.store)

    async def amodel_check(self, scope: Scope) -> str | None:
        return await adrive(spending.model_check(self, scope), self.store)

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
        that covers ``model.call`` in ``scope`` (recorded even past a budget's limit: the
        spend happened). Returns the cost (0 for a model the pack does not price). It is
        traced as a ``chat {model}`` span with the tokens and the cost."""
        flow = spending.model_spend(
            self,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            scope=scope,
            key=call_key or ephemeral_key(),
        )
        cost, currency = drive(self._entry(flow), self.store)
        self._trace_model(model, input_tokens, output_tokens, cost, currency, scope, started_ns)
        return cost

    async def arecord_model_spend(
        self,
        *,
        model: str,
        input_tokens: int,
        output_tokens: int,
        scope: Scope,
        call_key: str | None = None,
        started_ns: int | None = None,
    ) -> float:
        flow = spending.model_spend(
            self,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            scope=scope,
            key=call_key or ephemeral_key(),
        )
        cost, currency = await adrive(self._entry(flow), self.store)
        self._trace_model(model, input_tokens, output_tokens, cost, currency, scope, started_ns)
        return cost

    def _trace_model(
        self,
        model: str,
        tokens_in: int,
        tokens_out: int,
        cost: float,
        currency: str,
        scope: Scope,
        started_ns: int | None,
    ) -> None:
        if model in self.policy.model_prices:
            self.telemetry.model_spend(
                model, tokens_in, tokens_out, cost, currency, scope.key, started_ns
            )

    # ------------------------------------------------------------------ operators

    def set_level(
        self,
        scope: Scope,
        level: AutonomyLevel | int | str,
        *,
        by: str,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
        override: bool = False,
    ) -> None:
        """Move the level dial of the rule governing ``scope``, within the pack's ceiling.
        Raising it needs a passing gate, or ``override=True`` with a ``reason`` (see
        :func:`agent_guardrails.ops.operations.set_level`)."""
        from agent_guardrails.ops.operations import set_level

        set_level(
            self.store,
            scope,
            int(AutonomyLevel.parse(level)),
            by=by,
            reason=reason,
            evidence=dict(evidence or {}),
            pack=self.policy,
            override=override,
        )

    def level_of(self, scope: Scope) -> AutonomyLevel:
        """The live level for calls in ``scope`` (the dial, or the pack's starting level)."""
        pack = self.policy
        value = self.store.get_level(pack.dial_scope(scope).key)
        return AutonomyLevel(value) if value is not None else pack.initial_level(scope)

    def kill(self, scope: Scope = Scope(), *, by: str, reason: str) -> None:
        """Engage the kill-switch for ``scope`` (global by default). It is a trip-wire too:
        the level dials it covers whole, where the pack declares a gate into their level,
        go one level down (:func:`agent_guardrails.ops.gates.demote_on_kill`), once per
        engagement."""
        from agent_guardrails.ops.gates import engage_kill_switch

        engage_kill_switch(self.store, self.policy, scope, by=by, reason=reason)

    def unkill(self, scope: Scope = Scope(), *, by: str, reason: str) -> None:
        """Release the kill-switch for ``scope``."""
        self.store.set_kill_switch(scope, False, by=by, reason=reason)

    # ------------------------------------------------------------------ lifecycle

    def flush(self) -> int:
        """Write what the store could not take earlier; returns how many writes still wait.
        Every way in does this first when something waits."""
        if not self.outbox.pending:
            return 0
        return drive(self.outbox.flush(), self.store)

    async def aflush(self) -> int:
        if not self.outbox.pending:
            return 0
        return await adrive(self.outbox.flush(), self.store)

    def close(self) -> None:
        """Write what waits in the outbox (a warning counts what cannot be written), then
        close the store if this object opened it. Also done when the object is dropped and
        at interpreter exit (then without closing the store)."""
        self._finalizer()
        self.notifications.close()
        self.gate_watch.close()
        if self._owns_store:
            self.store.close()

    async def aclose(self) -> None:
        """:meth:`close` for async code: the outbox and the store are written and closed
        with async I/O."""
        if self.outbox.pending:
            await asyncio.to_thread(self.outbox.wait_for_flush, _FLUSH_WAIT)
        await self.aflush()
        self.outbox.warn_if_pending(self.store.url)
        self._finalizer.detach()
        await asyncio.to_thread(self.notifications.close)
        await asyncio.to_thread(self.gate_watch.close)
        if self._owns_store:
            await self.store.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> Guardrails:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Guardrails:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _write_what_waits(outbox: Outbox, store: Store) -> None:
    """The last write of a guard's outbox (on close, when dropped, at exit)."""
    try:
        if outbox.pending:
            if not for_event_loop():  # (a guard dropped on a loop's thread does not wait)
                outbox.wait_for_flush(_FLUSH_WAIT)
            drive(outbox.flush(), store)
        outbox.warn_if_pending(store.url)
    except Exception:  # best effort: never raise from a finalizer
        logging.getLogger("agent_guardrails").exception("writing the outbox failed")
