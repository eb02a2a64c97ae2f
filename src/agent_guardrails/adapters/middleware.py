"""``GuardrailsMiddleware``: the whole pipeline for every tool call of a ``create_agent`` agent.

>>> from langchain.agents import create_agent                       # doctest: +SKIP
>>> agent = create_agent(model, tools, middleware=[GuardrailsMiddleware(guard)],
...                      checkpointer=InMemorySaver())                # doctest: +SKIP

Each tool call is decided, reserved, audited and, where the pack says so, paused for a
human with a LangGraph interrupt. Two ways to ask, as LangChain's ``HumanInTheLoopMiddleware``:

- ``interrupt="batched"`` (the default): after a model turn in which some call *can* need a
  human (its action asks at some level, or asks on a cap breach:
  :func:`agent_guardrails.engine.rules.may_ask`), the turn's tool calls are decided together
  (:mod:`agent_guardrails.adapters.turns`; what they need is reserved together, all fit or
  none runs) and **one interrupt** asks about every call that needs a human, in LangChain's
  ``HITLRequest`` dialect (``action_requests``, ``review_configs``, plus a ``guardrails``
  list with our details), which Agent Chat UI renders with Approve/Edit/Reject buttons.
  Resume with ``Command(resume={"decisions": [{"type": "approve"}, ...]})``, one decision
  per action, in order. The calls then run where tools run (``wrap_tool_call``), each once.
  A turn whose calls can never ask is decided call by call as each runs, as in
  ``per_call`` mode (one store step fewer per call).
- ``interrupt="per_call"``: each call asks as it starts, in LangChain's per-call
  ``ToolApprovalRequest`` dialect with a ``guardrails`` field; resume with
  ``Command(resume={interrupt_id: {"type": "approve"}})`` (one pending interrupt per call).

Both dialects' answers are read by LangGraph against a schema before they are saved: a
malformed answer is refused and the call stays pending. A call found in doubt after a crash
(its run started and never finished) is asked about per call in either mode.

Calls that do not run come back to the model as a ``ToolMessage`` whose content is the JSON
:class:`~agent_guardrails.pipeline.results.GuardrailResult`.

In batched mode the decision is made in the ``after_model`` hook, which sees tool *names*;
the middleware learns each tool's ``@guarded`` declarations (action, scope, ``simulate``,
argument schema) from the model calls it wraps, and stamps the action and scope it decided
with on the model's message (``response_metadata["guardrails_tools"]``), so a run resumed
by a fresh worker decides its calls as they were. Pass ``tools=`` as well where a resumed
run must draft with a tool's ``simulate`` or read an edit by its schema before the worker
has called the model once.

Which action a tool performs: the ``actions`` mapping given here, else the tool's
``@guarded(action=...)``, else ``tool.metadata["guardrails_action"]``, else the tool's name
if the pack defines an action by that name. Tools with none are denied
(``unknown_action``) unless ``unmapped="allow"``.

Model calls are priced from the pack's ``model_prices`` (by the model's name) and charged to
the budgets that match the run's scope, so a run can be capped in money across model and
tool spend; when a budget is already spent, the model is not called and the run ends with a
message saying so.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal, NotRequired, TypeVar

from langchain.agents.middleware.types import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
    PrivateStateAttr,
    hook_config,
)
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.runtime import Runtime
from langgraph.types import Command

from agent_guardrails import _compat
from agent_guardrails.adapters.decorator import inside_adapter
from agent_guardrails.adapters.graph import (
    call_key,
    current_config,
    interrupt_asker,
    run_scope,
    running,
    task_of,
    under_way,
    with_args,
)
from agent_guardrails.adapters.task_interrupts import TaskInterrupts
from agent_guardrails.adapters.tools import Bindings, ToolBinding, unmapped_action
from agent_guardrails.adapters.transcript import (
    STAMP,
    answered,
    model_usage,
    truthful,
    with_corrections,
)
from agent_guardrails.adapters.turns import batch_asker, let_through, turn_calls
from agent_guardrails.engine.decision import CallRequest, Decision, DecisionKind
from agent_guardrails.engine.rules import may_ask
from agent_guardrails.errors import ConfigurationError
from agent_guardrails.pipeline.batch import AskAll
from agent_guardrails.pipeline.flow import GuardedCall
from agent_guardrails.pipeline.guardrails import Guardrails
from agent_guardrails.pipeline.results import (
    GuardrailResult,
    is_result,
    refusal_message,
    tool_message,
)
from agent_guardrails.pipeline.scoping import ScopeSources
from agent_guardrails.policy.scope import Scope

__all__ = ["GuardrailsMiddleware"]

ToolResult = ToolMessage | Command[Any]
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class _Prepared:
    """One tool call, translated for the guardrails."""

    call: CallRequest
    key: str | None
    ask: Any
    simulate: Any
    sources: ScopeSources
    task: TaskInterrupts | None  # the ToolNode task's shared interrupts, if in one
    schema: Any = None  # the tool's argument schema (reads an approver's edit)


class GuardrailsState(AgentState[Any]):
    """Agent state with the flag a kill-switch halt sets to end the run, and what the
    turn's decision let through (batched mode: tool call id -> carried decision)."""

    guardrails_halted: NotRequired[Annotated[bool, PrivateStateAttr]]
    guardrails_turn: NotRequired[Annotated[dict[str, Any], PrivateStateAttr]]


class GuardrailsMiddleware(AgentMiddleware[GuardrailsState, Any, Any]):
    """Guard every tool call (and price every model call) of a ``create_agent`` agent.

    Args:
        guardrails: the :class:`Guardrails` to run calls through.
        actions: tool name -> action name, for tools not decorated with ``@guarded``.
        unmapped: what to do with tools bound to no action: ``"deny"`` (default) or
            ``"allow"`` (run them ungoverned).
        interrupt: ``"batched"`` (default: one ``HITLRequest`` interrupt per model turn)
            or ``"per_call"`` (one ``ToolApprovalRequest`` interrupt per call).
        tools: the agent's tools, known before its first model call (optional: they are
            learnt from the model calls; see the module docstring).
    """

    def __init__(
        self,
        guardrails: Guardrails,
        *,
        actions: Mapping[str, str] | None = None,
        unmapped: Literal["deny", "allow"] = "deny",
        interrupt: Literal["batched", "per_call"] = "batched",
        tools: Sequence[BaseTool] = (),
    ) -> None:
        super().__init__()
        if not isinstance(guardrails, Guardrails):
            raise ConfigurationError(
                f"GuardrailsMiddleware needs a Guardrails object, got {type(guardrails).__name__}"
            )
        if unmapped not in ("deny", "allow"):
            raise ConfigurationError(f"unmapped must be 'deny' or 'allow', got {unmapped!r}")
        if interrupt not in ("batched", "per_call"):
            raise ConfigurationError(
                f"interrupt must be 'batched' or 'per_call', got {interrupt!r}"
            )
        self.guardrails = guardrails
        self.actions = dict(actions or {})
        self._bindings = Bindings(self.actions)
        self.unmapped = unmapped
        self.interrupt = interrupt
        self._tools: dict[str, BaseTool] = {t.name: t for t in tools}
        self.end_on_halt = True  # False where no agent state carries the halt flag

    state_schema = GuardrailsState

    def __new__(cls, *args: Any, **kwargs: Any) -> GuardrailsMiddleware:
        if cls is GuardrailsMiddleware and kwargs.get("interrupt", "batched") == "batched":
            cls = _TurnMiddleware
        instance: GuardrailsMiddleware = super().__new__(cls)
        return instance

    @property
    def name(self) -> str:
        return "GuardrailsMiddleware"  # the graph's node names, in either mode

    # ------------------------------------------------------------------ tools

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolResult]
    ) -> ToolResult:
        let = self._let_through(request)
        if let is not None:
            call, decision, clean = let
            call.body = lambda args: handler(with_args(clean, args))
            with inside_adapter(request.tool):
                result = self.guardrails.execute(call, decision)
            return self._message(clean, call.request, result)
        p = self._prepare(request)
        if p is None:
            return handler(request)

        def body(args: Mapping[str, Any]) -> ToolResult:
            with running(p.task):
                return handler(with_args(request, args))

        with inside_adapter(request.tool), under_way(p.task):
            result = self.guardrails.run(
                p.call,
                body,
                simulate=p.simulate,
                call_key=p.key,
                ask=p.ask,
                raise_on_deny=False,
                sources=p.sources,
                in_graph=True,
                args_schema=p.schema,
            )
        return self._message(request, p.call, result)

    def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolResult]],
    ) -> Coroutine[Any, Any, ToolResult]:
        # A plain function that returns the coroutine, not an ``async def``. create_agent
        # wraps every wrap_* hook in LangSmith's ``traceable``; for an ``async def`` that
        # wrapper starts and ends its run on a worker thread (two thread hops per call,
        # LangSmith tracing on or off), which cost an async agent more than the whole guarded
        # call (benchmarks/agent_overhead.py). A plain function takes its inline path, and
        # LangChain awaits the coroutine as before. Only where LangSmith tracing is on does
        # anything show: the hook's LangSmith span closes when the coroutine is made (its
        # output reads "<coroutine object ...>"), so the tool run appears beside it rather
        # than inside it. Our OpenTelemetry spans are as they were. The same holds for
        # awrap_model_call.
        return self._awrap_tool_call(request, handler)

    async def _awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolResult]],
    ) -> ToolResult:
        let = self._let_through(request)
        if let is not None:
            call, decision, clean = let
            call.body = lambda args: handler(with_args(clean, args))
            with inside_adapter(request.tool):
                result = await self.guardrails.aexecute(call, decision)
            return self._message(clean, call.request, result)
        p = self._prepare(request)
        if p is None:
            return await handler(request)

        async def body(args: Mapping[str, Any]) -> ToolResult:
            with running(p.task):
                return await handler(with_args(request, args))

        with inside_adapter(request.tool), under_way(p.task):
            result = await self.guardrails.arun(
                p.call,
                body,
                simulate=p.simulate,
                call_key=p.key,
                ask=p.ask,
                raise_on_deny=False,
                sources=p.sources,
                in_graph=True,
                args_schema=p.schema,
            )
        return self._message(request, p.call, result)

    def _prepare(self, request: ToolCallRequest) -> _Prepared | None:
        tool_call = request.tool_call
        name = tool_call["name"]
        bound = self._bindings.of(name, request.tool, self.guardrails.policy)
        action = bound.action
        if action is None:
            if self.unmapped == "allow":
                return None
            action = unmapped_action(name)
        runtime = request.runtime
        config = getattr(runtime, "config", None)
        context = getattr(runtime, "context", None)
        call_id = tool_call.get("id") or ""
        return _Prepared(
            CallRequest(name, action, tool_call.get("args") or {}, Scope(), call_id),
            call_key(config, call_id),
            interrupt_asker(call_id, context, config, self.guardrails.store),
            bound.simulate,
            ScopeSources(run_scope(context, config), bound.declared),
            task_of(config, self.guardrails.store),
            bound.schema,
        )

    def _let_through(
        self, request: ToolCallRequest
    ) -> tuple[GuardedCall, Decision, ToolCallRequest] | None:
        """Batched mode: the call as the turn's decision let it through, if it did."""
        turn = (request.state or {}).get("guardrails_turn") if self.interrupt == "batched" else None
        if not isinstance(turn, Mapping):
            return None
        carried = turn.get(request.tool_call.get("id") or "")
        if not isinstance(carried, Mapping):
            return None
        return let_through(self.guardrails, request, request.tool_call, carried, self._bindings)

    # ------------------------------------------------------------------ the turn (batched)

    def _turn(
        self, state: GuardrailsState, runtime: Runtime[Any], *, resolved: bool = False
    ) -> tuple[list[GuardedCall], AskAll] | None:
        """The guarded calls of the model's last message, ready to decide (batched mode)."""
        if self.interrupt != "batched":
            return None
        messages = state.get("messages") or []
        last = messages[-1] if messages else None
        if not isinstance(last, AIMessage) or not last.tool_calls:
            return None
        stamped = (last.response_metadata or {}).get(STAMP) or {}
        guard = self.guardrails
        tool_calls: list[Mapping[str, Any]] = []
        bindings: list[ToolBinding] = []
        for tool_call in last.tool_calls:
            bound = self._binding(tool_call["name"], stamped)
            if bound.action is None and self.unmapped == "allow":
                continue  # ungoverned: runs as the agent asks
            tool_calls.append(tool_call)
            bindings.append(bound)
        if not any(may_ask(guard.policy, b.action or "") for b in bindings):
            return None  # no call of this turn can need a human: each is decided as it runs
        config = current_config()
        context = getattr(runtime, "context", None)
        calls = turn_calls(guard, tool_calls, bindings, run_scope(context, config), config)
        return calls, batch_asker(context, config, resolved=resolved)

    def _binding(self, name: str, stamped: Mapping[str, Any]) -> ToolBinding:
        bound = self._bindings.of(name, self._tools.get(name), self.guardrails.policy)
        mark = stamped.get(name)
        if isinstance(mark, Mapping) and name not in self._tools:
            # A fresh worker resuming the run: decide as the turn was decided first.
            action = mark.get("action")
            declared = mark.get("scope")
            return replace(
                bound,
                action=action if isinstance(action, str) else bound.action,
                declared=dict(declared) if isinstance(declared, Mapping) else bound.declared,
            )
        return bound

    def _turn_update(
        self,
        outcomes: list[tuple[GuardedCall, Decision]],
        refused: list[tuple[GuardedCall, GuardrailResult]],
    ) -> dict[str, Any]:
        guard = self.guardrails
        replies: list[Any] = [
            answered(refusal_message(result, call.request.call_id, call.request.tool))
            for call, result in refused
        ]
        if any(d.kind is DecisionKind.HALT for _, d in outcomes):
            replies.append(AIMessage(content=guard.policy.kill_switch.message))
            return {"messages": replies, "guardrails_turn": {}, "jump_to": "end"}
        carried = {
            call.request.call_id: {**guard.carry(call, d), "args": dict(call.request.args)}
            for call, d in outcomes
            if d.kind is DecisionKind.ALLOW
        }
        return {"messages": replies, "guardrails_turn": carried}

    def _learn(self, request: ModelRequest) -> None:
        """Remember the agent's tools (batched mode decides by tool name)."""
        for tool in request.tools or ():
            if isinstance(tool, BaseTool) and self._tools.get(tool.name) is not tool:
                self._tools[tool.name] = tool

    def _stamp(self, response: _R) -> _R:
        """Mark the model's tool calls with the action and scope they are decided by."""
        if not isinstance(response, ModelResponse):
            return response
        for message in response.result:
            if isinstance(message, AIMessage) and message.tool_calls:
                marks = {}
                for tool_call in message.tool_calls:
                    bound = self._binding(tool_call["name"], {})
                    marks[tool_call["name"]] = {
                        "action": bound.action,
                        "scope": dict(bound.declared),
                    }
                # On the model's own new message (as tool messages are marked, answered()).
                message.response_metadata = {**(message.response_metadata or {}), STAMP: marks}
        return response

    def _message(self, request: ToolCallRequest, call: CallRequest, result: object) -> ToolResult:
        if isinstance(result, ToolMessage):
            return answered(result)
        if isinstance(result, Command):
            update = result.update
            if isinstance(update, Mapping) and isinstance(update.get("messages"), list):
                for message in update["messages"]:
                    if isinstance(message, ToolMessage):
                        answered(message)
            return result
        if is_result(result):
            return self._refusal(request, call, result)
        tool_call = request.tool_call
        return answered(tool_message(result, tool_call.get("id") or "", tool_call["name"]))

    def _refusal(
        self, request: ToolCallRequest, call: CallRequest, result: GuardrailResult
    ) -> ToolResult:
        tool_call = request.tool_call
        message = answered(refusal_message(result, tool_call.get("id") or "", tool_call["name"]))
        if result["status"] == "halted" and self.end_on_halt:
            return Command(update={"messages": [message], "guardrails_halted": True})
        return message

    # ------------------------------------------------------------------ models

    def wrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], ModelResponse],
    ) -> ModelResponse | AIMessage | ExtendedModelResponse[Any]:
        stop = self._stop(request)
        if stop is not None:
            return stop
        scope = key = None
        if self.guardrails.policy.model_prices:  # else nothing to check (the usual case)
            scope, key = self._model_scope()
            stopped = self.guardrails.model_check(scope)
            if stopped is not None:
                return AIMessage(content=stopped)
        self._learn(request)
        request, corrected = truthful(request)
        started = time.time_ns()
        response = self._stamp(handler(request))
        usage = self._usage(request, response)
        if usage is not None:
            if scope is None:
                scope, key = self._model_scope()
            self.guardrails.record_model_spend(
                **usage, scope=scope, call_key=key, started_ns=started
            )
        return with_corrections(response, corrected)

    def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> Coroutine[Any, Any, ModelResponse | AIMessage | ExtendedModelResponse[Any]]:
        # A plain function that returns the coroutine: see awrap_tool_call.
        return self._awrap_model_call(request, handler)

    async def _awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> ModelResponse | AIMessage | ExtendedModelResponse[Any]:
        stop = self._stop(request)
        if stop is not None:
            return stop
        scope = key = None
        if self.guardrails.policy.model_prices:
            scope, key = self._model_scope()
            stopped = await self.guardrails.amodel_check(scope)
            if stopped is not None:
                return AIMessage(content=stopped)
        self._learn(request)
        request, corrected = truthful(request)
        started = time.time_ns()
        response = self._stamp(await handler(request))
        usage = self._usage(request, response)
        if usage is not None:
            if scope is None:
                scope, key = self._model_scope()
            await self.guardrails.arecord_model_spend(
                **usage, scope=scope, call_key=key, started_ns=started
            )
        return with_corrections(response, corrected)

    def _stop(self, request: ModelRequest) -> ExtendedModelResponse[Any] | None:
        """After a kill-switch halt (``on_halt: end``) the model is not asked again: the run
        ends with the pack's kill-switch message."""
        if not request.state.get("guardrails_halted"):
            return None
        message = AIMessage(content=self.guardrails.policy.kill_switch.message)
        return ExtendedModelResponse(
            model_response=ModelResponse(result=[message]),
            command=Command(update={"guardrails_halted": False}),
        )

    def _usage(self, request: ModelRequest, response: ModelResponse) -> dict[str, Any] | None:
        """What the model call used, to charge, when the pack in force prices models
        (``model_prices``); without prices a model call is neither checked nor charged, and
        the hook reads neither its scope nor its usage."""
        if not self.guardrails.policy.model_prices:
            return None
        return model_usage(request, response)

    def _model_scope(self) -> tuple[Scope, str | None]:
        config = current_config()
        scope = self.guardrails.resolve_scope(context=run_scope(None, config))
        return scope, call_key(config, "model")


class _TurnMiddleware(GuardrailsMiddleware):
    """``GuardrailsMiddleware`` in batched mode: the same, plus the ``after_model`` hook that
    decides a turn and asks once. A class of its own because ``create_agent`` adds a graph
    node for every middleware *class* that defines the hook, and a node costs each model
    turn its run even when it does nothing (``per_call`` instances have none)."""

    # A turn whose question is pending and that runs again with no answer was closed from
    # outside: Agent Chat UI's "Mark as resolved" sends Command(goto=END), which LangGraph
    # turns into a re-run of this paused node (see _compat.unanswered_rerun). The calls that
    # waited for a human are then rejected as resolved elsewhere (nothing of theirs runs;
    # the rejection is recorded as the resuming user's, like any answer), and the turn goes
    # on as after any rejection: the thread is no longer interrupted.

    @hook_config(can_jump_to=["end"])
    def after_model(self, state: GuardrailsState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        turn = self._turn(state, runtime)
        if turn is None:
            return _forget(state)
        resolved = _compat.unanswered_rerun(current_config())
        if resolved:
            turn = self._turn(state, runtime, resolved=True)
            assert turn is not None
        calls, ask = turn
        outcomes = self.guardrails.decide_turn(calls, ask)
        refused = [
            (call, self.guardrails.refusal(call, d))
            for call, d in outcomes
            if d.kind is not DecisionKind.ALLOW
        ]
        return self._turn_update(outcomes, refused)

    @hook_config(can_jump_to=["end"])
    async def aafter_model(
        self, state: GuardrailsState, runtime: Runtime[Any]
    ) -> dict[str, Any] | None:
        turn = self._turn(state, runtime)
        if turn is None:
            return _forget(state)
        resolved = await _compat.aunanswered_rerun(current_config())
        if resolved:
            turn = self._turn(state, runtime, resolved=True)
            assert turn is not None
        calls, ask = turn
        outcomes = await self.guardrails.adecide_turn(calls, ask)
        refused = [
            (call, await self.guardrails.arefusal(call, d))
            for call, d in outcomes
            if d.kind is not DecisionKind.ALLOW
        ]
        return self._turn_update(outcomes, refused)


def _forget(state: GuardrailsState) -> dict[str, Any] | None:
    """A turn that decides nothing here clears what an earlier turn carried: a model may
    reuse a tool call id, and its call must not be taken for the earlier one."""
    return {"guardrails_turn": {}} if state.get("guardrails_turn") else None
