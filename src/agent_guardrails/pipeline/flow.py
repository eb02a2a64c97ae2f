"""The pipeline of one guarded call, written once for every adapter, sync and async.

:func:`guarded_call` is the whole path of a call; each step below it is a generator that
yields the store operations, the tool body and the human's answer it needs as
:mod:`~agent_guardrails.pipeline.effects` (a sync or an async driver performs them):

    scope -> kill-switch -> level -> validators -> caps -> approval -> run -> charge -> record

- the call arrives with its scope resolved (:mod:`~agent_guardrails.pipeline.scoping`);
- :func:`decide` reads what the store knows in one round trip (the live level, engaged
  kill-switches, the counters the call would move, the call's own record, the active pack)
  and asks the pure engine (:func:`agent_guardrails.engine.decide`): kill-switch, level,
  validators, caps, approval, in that order; in a gate's experiment the call's cohort
  (:mod:`~agent_guardrails.engine.cohorts`) decides whether it tries the next level;
- :func:`hold` reserves what an allowed call (or one waiting for a human) needs, atomically,
  with its decision record; an allowed call is marked started in the same store step; a
  policy violation at level 1 or above trips the scope one level down
  (:mod:`~agent_guardrails.pipeline.trip_wires`);
- :func:`~agent_guardrails.pipeline.approvals.approval` asks a human; an edit is re-scoped
  and decided again in full;
- :func:`run` runs the body once (never twice for one key), then commits the actual cost
  (``report_cost``) or releases what it held, and records how it ended;
- :func:`refuse` hands back a draft or a refusal (or raises, when asked to).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import json
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from langchain_core.messages import ToolMessage
from langgraph.errors import GraphBubbleUp

from agent_guardrails.engine import rules
from agent_guardrails.engine.charges import CostError, call_cost, charges_for
from agent_guardrails.engine.cohorts import split
from agent_guardrails.engine.decision import CallRequest, Decision, DecisionKind
from agent_guardrails.errors import KillSwitchEngaged, StoreUnavailable
from agent_guardrails.pipeline import events
from agent_guardrails.pipeline.edits import ArgsSchema, params_of
from agent_guardrails.pipeline.effects import Effect, Flow, StoreOp, user_code, user_threads
from agent_guardrails.pipeline.outbox import write
from agent_guardrails.pipeline.results import error_for, result_for
from agent_guardrails.pipeline.scoping import ScopeSources
from agent_guardrails.pipeline.spending import CostCell, current_cell
from agent_guardrails.pipeline.trip_wires import trip
from agent_guardrails.policy.levels import AutonomyLevel
from agent_guardrails.policy.pack import PolicyPack
from agent_guardrails.store.base import CallRecord, Snapshot

if TYPE_CHECKING:
    from agent_guardrails.pipeline.approvals import ApprovalAnswer, ApprovalRequest
    from agent_guardrails.pipeline.guardrails import Guardrails
    from agent_guardrails.policy.validators import CompiledValidator
    from agent_guardrails.telemetry.spans import CallSpan

__all__ = ["GuardedCall", "decide", "guarded_call", "hold", "refuse", "rescoped", "run"]

Body = Callable[[Mapping[str, Any]], Any]
"""The tool body: called with the (possibly edited) arguments; may return an awaitable."""
Simulator = Callable[[Mapping[str, Any]], Any]
Asker = Callable[["ApprovalRequest"], "ApprovalAnswer | None"]
"""Asks a human about one call: the ``approver`` callable, or a LangGraph interrupt."""

GOES_AHEAD = (DecisionKind.ALLOW, DecisionKind.REQUIRE_APPROVAL)


@dataclass(slots=True)
class GuardedCall:
    """One tool call on its way through the pipeline."""

    request: CallRequest  # tool, action, arguments, resolved scope, tool call id
    key: str  # idempotency key: thread | checkpoint_ns | tool call id, or ephemeral (~...)
    sources: ScopeSources  # what the scope came from, to re-scope an edit
    body: Body | None
    span: CallSpan
    simulate: Simulator | None = None
    ask: Asker | None = None
    raise_on_deny: bool | None = None
    started: bool = False  # the reservation also marked it started (one store step)
    rerun: bool = False  # a human approved running again a call that was in doubt
    retried: bool = False  # decided once more after finding its key taken
    runs_later: bool = False  # decided here, run by another node: reserve, do not start
    in_graph: bool = False  # in a LangGraph run: a halt raises where the pack says on_halt: raise
    schema: ArgsSchema | None = None  # the tool's argument schema: reads an approver's edit

    @property
    def keyed(self) -> bool:
        """A stable key from a graph run: its result is kept for replays."""
        return not self.key.startswith("~")


_NOT_CHECKED: Mapping[int, str | None] = MappingProxyType({})


class Decided(NamedTuple):
    decision: Decision
    prior: CallRecord | None  # what the store knew of this key
    used: Mapping[str, float]  # the counters this call would move, as read
    checked: Mapping[int, str | None] = _NOT_CHECKED  # the application's validators said


def guarded_call(g: Guardrails, call: GuardedCall) -> Flow[Any]:
    """scope -> kill-switch -> level -> validators -> caps -> approval -> run -> charge ->
    record. Returns the body's result, a replayed result, a draft or a refusal."""
    decided = yield from decide(g, call)
    prior = decided.prior
    if prior is not None and prior.state == "finished":
        return replay(call, prior)  # exactly once: this key already ran
    from agent_guardrails.pipeline.approvals import approval, first_ask

    if (
        decided.decision.kind is DecisionKind.ALLOW
        and prior is not None
        and prior.state == "reserved"
        and call.ask is not None
        and (yield from first_ask(call.key)) is not None
    ):
        # Asked in an earlier run and still open: no longer needs a human (a level moved
        # meanwhile), but the answer given stands: a no is a no, a yes is recorded.
        asked = replace(decided.decision, kind=DecisionKind.REQUIRE_APPROVAL)
        decided = decided._replace(decision=asked)
    decision = yield from hold(g, call, decided)
    if decision.kind is DecisionKind.REQUIRE_APPROVAL:
        call, decision = yield from approval(g, call, decision)
    if decision.kind is not DecisionKind.ALLOW:
        return (yield from refuse(g, call, decision))
    return (yield from run(g, call, decision))


# ---------------------------------------------------------------------------- steps


def decide(g: Guardrails, call: GuardedCall) -> Flow[Decided]:
    """Read the store once and ask the engine. A new active pack is loaded first (then the
    call is decided under it); an unreachable store fails closed (:func:`store_down`)."""
    request, key = call.request, call.key
    live = g.live
    for _attempt in range(3):
        pack = live.pack
        now = g.clock()
        charges = _charges(request, pack, now)
        try:
            if not live.bootstrapped:  # built inside an event loop, or the store was down
                yield from live.bootstrap(live.first)
                continue
            snap: Snapshot = yield StoreOp(
                "snapshot",
                dial_key=pack.lookup.dial_key(request.scope),
                counter_keys=[c.key for c in charges],
                call_key=key,
            )
            if snap.pack == live.digest or (snap.pack is None and live.bootstrapped):
                break  # the pack in hand is the active one (the usual case)
            if not (yield from live.follow(snap.pack)):
                break
        except StoreUnavailable as exc:
            checks = user_checks(pack, request)
            checked = _NOT_CHECKED if checks is None else (yield checks)
            decision = store_down(pack, request, exc, now, checked)
            call.span.decided(decision, key, resumed=False)
            return Decided(decision, None, {}, checked)
    prior = snap.call
    used: Mapping[str, float] = snap.used
    if prior is not None and prior.state in ("reserved", "started") and prior.charges:
        # This call's own reservation (made before an interrupt, or held by a run that
        # died mid-call: in doubt) must not count against it.
        own = {c.key: c.amount for c in prior.charges}
        used = {k: v - own.get(k, 0.0) for k, v in used.items()}
    level = (
        AutonomyLevel(snap.level) if snap.level is not None else pack.initial_level(request.scope)
    )
    trial = split(pack, request.scope, level, request.args) if pack.gates else None
    checks = user_checks(pack, request)
    checked = _NOT_CHECKED if checks is None else (yield checks)
    decision = rules.decide(
        request,
        pack,
        level=level if trial is None else trial.level,  # a treatment tries the next level
        used=used,
        kill_switches=snap.kill_switches,
        now=now,
        charges=charges,
        in_doubt=prior is not None and prior.state == "started",
        checked=checked,
    )
    if trial is not None:
        decision.cohort, decision.cohort_entity = trial.cohort, trial.entity
    resumed = (
        prior is not None
        and prior.state == "reserved"
        and decision.kind is DecisionKind.REQUIRE_APPROVAL
    )
    call.span.decided(decision, key, resumed=resumed)
    if prior is not None and prior.state == "finished":
        call.span.replayed()
    return Decided(decision, prior, snap.used, checked)


def user_checks(pack: PolicyPack, request: CallRequest) -> UserChecks | None:
    """The action's validators that are the application's own code (custom validators,
    ``consent``'s check) as one :class:`UserChecks` effect, whose result is the engine's
    ``checked``. ``None`` when there are none (the usual case: no effect, no hand-off); the
    engine runs the built-ins itself."""
    todo = rules.user_validators(pack, request.action)
    return UserChecks(todo, request, pack.defaults.check_timeout) if todo else None


class UserChecks(Effect):
    """The application's checks of one call, each one's answer by its index, bounded by
    the pack's ``defaults.check_timeout``: a check that has not answered by then says
    :class:`~agent_guardrails.engine.rules.CheckError` (the call fails closed; the check
    goes on, on its worker thread, and what it says later is dropped). They run on one of
    the library's worker threads (:class:`~agent_guardrails.pipeline.effects.OffLoop`'s),
    in the caller's :mod:`contextvars` context: on the async paths always (never on the
    event loop nor on a store's thread), on the sync paths when there is a timeout (without
    one, on the caller's thread)."""

    __slots__ = ("request", "timeout", "todo")

    def __init__(
        self,
        todo: tuple[tuple[int, CompiledValidator], ...],
        request: CallRequest,
        timeout: float | None,
    ) -> None:
        self.todo = todo
        self.request = request
        self.timeout = timeout

    def run(self, store: Any) -> dict[int, str | None]:
        said: dict[int, str | None] = {}
        if self.timeout is None:
            return _run_checks(self.todo, self.request, said, None)
        late = threading.Event()
        context = contextvars.copy_context()
        work: concurrent.futures.Future[dict[int, str | None]] = user_threads().submit(
            context.run, _run_checks, self.todo, self.request, said, late
        )
        try:
            return work.result(self.timeout)
        except concurrent.futures.TimeoutError:
            work.cancel()  # not begun at all: it never will
            return self._late(said)
        finally:
            late.set()  # decided (or given up on): the checks not begun yet are not run

    async def arun(self, store: Any) -> dict[int, str | None]:
        said: dict[int, str | None] = {}
        late = threading.Event()
        context = contextvars.copy_context()
        work = asyncio.get_running_loop().run_in_executor(
            user_threads(), context.run, _run_checks, self.todo, self.request, said, late
        )
        try:
            return await asyncio.wait_for(work, self.timeout)
        except TimeoutError:
            return self._late(said)
        finally:
            late.set()  # also when the caller was cancelled: nobody waits for the rest

    def _late(self, said: dict[int, str | None]) -> dict[int, str | None]:
        answered = said.copy()  # one step under the GIL: the worker may still be writing
        late = rules.CheckError(
            f"did not answer within {self.timeout:g} s (the pack's defaults.check_timeout); "
            "the call fails closed"
        )
        return {i: answered.get(i, late) for i, _ in self.todo}


def _run_checks(
    todo: tuple[tuple[int, CompiledValidator], ...],
    request: CallRequest,
    said: dict[int, str | None],
    late: threading.Event | None,
) -> dict[int, str | None]:
    """Each check's answer into ``said``, in order; none begun once ``late`` is set (the
    call was decided without them: the application's code is not run for nothing)."""
    for i, validator in todo:
        if late is not None and late.is_set():
            break
        said[i] = rules.check(validator, request)
    return said


def rescoped(g: Guardrails, call: GuardedCall, args: Mapping[str, Any], key: str) -> GuardedCall:
    """``call`` with new arguments (an approver's edit) under ``key``: its scope resolved
    again from the same sources, so a changed ``region`` argument moves it to that region."""
    request = call.request
    scope = g.scoping.resolve(call.sources, args, params_of(call.schema))
    return replace(
        call,
        request=CallRequest(request.tool, request.action, args, scope, request.call_id),
        key=key,
        started=False,
        rerun=False,
        retried=False,
    )  # runs_later is kept: an edit in a guard node still runs in the tools node


def _charges(request: CallRequest, pack: PolicyPack, now: float) -> tuple[Any, ...]:
    action = pack.action(request.action)
    if action is None:
        return ()
    try:
        return charges_for(request, action, pack, cost=call_cost(action, request.args), now=now)
    except CostError:
        return ()  # the engine denies it with the reason


def hold(g: Guardrails, call: GuardedCall, decided: Decided) -> Flow[Decision]:
    """Reserve what a call going ahead needs, with its decision record, in one atomic
    store step (an allowed call is also marked started); a lost race is a denial. A call
    that stops here is recorded (and what an earlier run of it held is released)."""
    decision, prior, used = decided.decision, decided.prior, decided.used
    key = call.key
    trace = call.span.trace_ids()
    if decision.kind not in GOES_AHEAD:
        if prior is not None and prior.state == "reserved":
            yield from release(g, key, "reservation.released", {"reason": decision.kind.value})
        yield from write(
            StoreOp("append_audit", events.decision_event(decision, key, trace)), g.outbox
        )
        if decision.validators:
            yield from trip(g, call, decision)  # a policy violation lowers the level
        return decision
    if "fail_open" in decision.reasons:  # fail_open without the store: record it later
        g.outbox.keep(StoreOp("append_audit", events.decision_event(decision, key, trace)))
        return decision
    starts = decision.kind is DecisionKind.ALLOW and not call.runs_later
    start = events.started_event(call.request, key) if starts else None
    later = call.request.args if call.runs_later else None
    try:
        res = yield StoreOp(
            "reserve",
            key,
            decision.charges,
            audit=events.decision_event(decision, key, trace, args=later),
            force=bool(decision.extra.get("over_cap")),
            now=g.clock(),
            start=start,
        )
    except StoreUnavailable as exc:
        # Read but not written (another process holds SQLite's write lock): a fail_open
        # action with nothing to hold runs, as when the store cannot be read at all.
        if fails_open(decision) and exc.reason == "store_unavailable":
            decision = without_store(decision, exc)
        else:
            decision = offline(decision, call.request, exc)
        g.outbox.keep(StoreOp("append_audit", events.decision_event(decision, key, trace)))
        return decision
    if res.ok:
        call.started = res.started
        return decision
    assert res.breach is not None
    denied = rules.decide(
        call.request,
        g.policy,
        level=decision.level,
        used={**used, res.breach.key: res.used},
        now=g.clock(),
        charges=decision.charges,
        checked=decided.checked,
    )
    call.span.decided(denied, key, resumed=False)
    yield from write(StoreOp("append_audit", events.decision_event(denied, key, trace)), g.outbox)
    return denied


def run(g: Guardrails, call: GuardedCall, decision: Decision) -> Flow[Any]:
    """Mark the call started (unless its reservation did), run the body once, then commit
    its actual cost or release what it held, and record how it ended. A key that already
    started and never finished is *in doubt*: it is decided again (and so asked about),
    never run silently."""
    if not call.started:
        start = events.started_event(call.request, call.key)
        if "fail_open" in decision.reasons:  # allowed without the store: record it later
            g.outbox.keep(StoreOp("append_audit", start))
        else:
            try:
                began = yield StoreOp("start", call.key, audit=start)
                record = None if began else (yield StoreOp("call_record", call.key))
            except StoreUnavailable as exc:
                return (yield from refuse(g, call, offline(decision, call.request, exc)))
            if not began:
                if record is not None and record.state == "finished":
                    return replay(call, record)
                if call.rerun and record is not None and record.state == "started":
                    yield from write(StoreOp("append_audit", start), g.outbox)
                elif not call.retried:
                    call.retried = True  # started elsewhere, or released meanwhile
                    return (yield from guarded_call(g, call))
                else:
                    return (yield from refuse(g, call, _taken(decision, call.key)))
    call.span.ended(decision)
    cell = CostCell()
    t0 = time.perf_counter()
    ok, result, error = True, None, None
    try:
        result = yield RunBody(call.body, call.request.args, cell)
    except GraphBubbleUp:
        # The tool paused the graph itself (its own interrupt): not an outcome. What it
        # held is released; LangGraph runs it again from the start on resume.
        call.span.ran(time.perf_counter() - t0, ok=False, result=None, cost=None)
        yield from release(g, call.key, "execution.paused", {"reason": "the tool interrupted"})
        raise
    except Exception as exc:
        ok, error = False, exc
    # Anything else (KeyboardInterrupt, a cancelled task, SystemExit) leaves the call started:
    # it is in doubt, and the next run asks a human instead of running it again.
    if ok and isinstance(result, ToolMessage) and result.status == "error":
        ok = False  # a ToolNode that handles tool errors hands the failure back as a message
    call.span.ran(time.perf_counter() - t0, ok=ok, result=result, cost=cell.amount)
    actual = cell.amount if ok else None
    cost = decision.cost if actual is None else actual
    finish = StoreOp(
        "finish",
        call.key,
        ok=ok,
        actual_cost=actual,
        result=events.to_json(result) if ok and call.keyed else None,
        audit=events.finished_event(call.request, call.key, ok=ok, cost=cost, error=error),
    )
    if g.outbox.pending:  # behind what already waits
        g.outbox.keep(finish)
    else:
        try:
            yield finish
        except StoreUnavailable:
            g.outbox.keep(finish)
    g.gate_watch.poke()  # floors and caps judged off the call's path, now and then
    if error is not None:
        raise error
    return result


def refuse(g: Guardrails, call: GuardedCall, decision: Decision) -> Flow[Any]:
    """A call whose body does not run: the draft (at Assist), or the refusal as a
    :class:`~agent_guardrails.pipeline.results.GuardrailResult`, or the typed error when
    the caller asked for exceptions (never for a human's ``respond``). In a graph, a
    kill-switch halt raises ``KillSwitchEngaged`` where the pack says ``on_halt: raise``."""
    call.span.ended(decision)
    halted = decision.kind is DecisionKind.HALT and call.in_graph
    if halted and g.policy.kill_switch.on_halt == "raise":
        raise KillSwitchEngaged(decision)
    result = result_for(decision)
    if decision.kind is DecisionKind.SIMULATE:
        args = call.request.args
        if call.simulate is not None:
            result["draft"] = yield user_code(call.simulate, args)
        else:
            result["draft"] = describe(decision, args)
        return result
    should_raise = g.raise_on_deny if call.raise_on_deny is None else call.raise_on_deny
    if should_raise and result["status"] != "responded":
        raise error_for(decision)
    return result


def replay(call: GuardedCall, record: CallRecord) -> Any:
    """What a call that already finished under this key returned."""
    call.span.replayed()
    return json.loads(record.result) if record.result is not None else None


def release(g: Guardrails, key: str, kind: str, data: Mapping[str, Any]) -> Flow[None]:
    """Release what the call under ``key`` holds, recording why."""
    yield from write(StoreOp("release", key, audit=events.event(kind, dict(data), key)), g.outbox)


def halted_meanwhile(
    g: Guardrails,
    call: GuardedCall,
    decision: Decision,
    *,
    held_only: bool = False,
    pack_digest: str | None = None,
) -> Flow[Decision | None]:
    """The kill-switch wins even over a human's answer, or over a guard node's decision
    made a step earlier: look again just before running. ``held_only``: a key that already
    started or ended is left to :func:`run` (it replays, or is in doubt). An unreachable
    store is left to :func:`run` too, which fails closed. With ``pack_digest`` (the pack a
    guard node decided under), a pack applied or rolled back since stales the decision
    (``approval_stale``): what was decided, and maybe approved, no longer binds."""
    try:
        snap: Snapshot = yield StoreOp("snapshot", dial_key="", counter_keys=(), call_key=call.key)
    except StoreUnavailable:
        return None
    if held_only and snap.call is not None and snap.call.state != "reserved":
        return None
    for switch in snap.kill_switches:
        if switch.matches(call.request.scope):
            return (
                yield from _stop_held(
                    g,
                    call,
                    decision,
                    DecisionKind.HALT,
                    f"kill_switch:{switch.key}",
                    f"halted: the kill-switch for {switch.key} was engaged after the call was "
                    "decided and before it could run",
                )
            )
    if pack_digest is not None and snap.pack is not None and snap.pack != pack_digest:
        return (
            yield from _stop_held(
                g,
                call,
                decision,
                DecisionKind.DENY,
                "approval_stale",
                "denied: approval_stale: the pack changed version after the call was decided "
                "(and maybe approved); make the call again to decide it under the new version",
            )
        )
    return None


def _stop_held(
    g: Guardrails,
    call: GuardedCall,
    decision: Decision,
    kind: DecisionKind,
    reason: str,
    message: str,
) -> Flow[Decision]:
    """Stop a call decided earlier: release what it holds, record why."""
    yield from release(g, call.key, "reservation.released", {"reason": reason})
    stopped = replace(decision, kind=kind, reasons=(reason,), message=message, extra={})
    audit = events.decision_event(stopped, call.key, tag="halt")
    yield from write(StoreOp("append_audit", audit), g.outbox)
    return stopped


# ---------------------------------------------------------------------------- decisions


def store_down(
    pack: PolicyPack,
    request: CallRequest,
    exc: StoreUnavailable,
    now: float,
    checked: Mapping[int, str | None] | None = None,
) -> Decision:
    """Fail closed: without the store (or its active pack) only ``fail_open`` actions with
    no caps and no approval run, and the decision says so."""
    decision = rules.decide(
        request,
        pack,
        level=pack.initial_level(request.scope),
        used={},
        now=now,
        checked=checked,
    )
    if fails_open(decision):
        return without_store(decision, exc)
    if decision.kind in (DecisionKind.SIMULATE, DecisionKind.DENY):
        return decision
    return offline(decision, request, exc)


def fails_open(decision: Decision) -> bool:
    """An allowed ``fail_open`` action with no caps and no approval: it runs without the
    store, its records kept to be written when the store is back."""
    return decision.kind is DecisionKind.ALLOW and decision.fail_open and not decision.charges


def denied(decision: Decision, reason: str, message: str) -> Decision:
    """``decision`` turned into a refusal for ``reason`` alone (what it carried dropped)."""
    return replace(decision, kind=DecisionKind.DENY, reasons=(reason,), message=message, extra={})


def without_store(decision: Decision, exc: StoreUnavailable) -> Decision:
    """A ``fail_open`` call allowed although the store could not be used."""
    return replace(
        decision,
        reasons=(exc.reason, "fail_open"),
        message=f"allowed without the store (fail_open): {exc}",
    )


def offline(decision: Decision, request: CallRequest, exc: StoreUnavailable) -> Decision:
    what = "the store is unavailable" if exc.reason == "store_unavailable" else "no usable pack"
    return denied(decision, exc.reason, f"denied: {what} ({exc}); {request.action} fails closed")


def _taken(decision: Decision, key: str) -> Decision:
    return denied(
        decision,
        "in_doubt",
        f"denied: call {key} started elsewhere and has not finished; it was not run "
        "again (see 'agent-guardrails status' for calls in doubt)",
    )


def describe(decision: Decision, args: Mapping[str, Any]) -> dict[str, Any]:
    """The draft of a simulated call whose tool has no ``simulate`` function."""
    return {
        "intended_action": decision.action,
        "tool": decision.tool,
        "args": dict(args),
        "estimated_cost": decision.cost,
        "currency": decision.currency,
        "note": "what the tool would do; nothing was executed",
    }


# ---------------------------------------------------------------------------- the body


class RunBody(Effect):
    """The tool body, with the call's cost cell current (for ``report_cost``)."""

    __slots__ = ("args", "body", "cell")

    def __init__(self, body: Body | None, args: Mapping[str, Any], cell: CostCell) -> None:
        self.body = body
        self.args = args
        self.cell = cell

    def run(self, store: Any) -> Any:
        assert self.body is not None
        token = current_cell.set(self.cell)
        try:
            return self.body(self.args)
        finally:
            current_cell.reset(token)

    async def arun(self, store: Any) -> Any:
        assert self.body is not None
        token = current_cell.set(self.cell)
        try:
            result = self.body(self.args)
            if isinstance(result, Awaitable):
                result = await result
            return result
        finally:
            current_cell.reset(token)
