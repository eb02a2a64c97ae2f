"""``GuardrailsMiddleware``: the whole pipeline for every tool call of a ``create_agent`` agent.

>>> from langchain.agents import create_agent                       # doctest: +SKIP
>>> agent = create_agent(model, tools, middleware=[GuardrailsMiddleware(guard)],
...                      checkpointer=InMemorySaver())                # doctest: +SKIP

Each tool call is decided, reserved, audited and, where the pack says so, paused for a
human with a LangGraph interrupt (LangChain's per-call ``ToolApprovalRequest`` dialect,
extended with a ``guardrails`` field; resume with ``Command(resume={interrupt_id:
{"type": "approve"}})``). Calls that do not run come back to the model as a ``ToolMessage``
whose content is the JSON :class:`~agent_guardrails.pipeline.results.GuardrailResult`.

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
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NotRequired

from langchain.agents.middleware.types import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
    PrivateStateAttr,
)
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

from agent_guardrails.adapters.decorator import inside_adapter
from agent_guardrails.adapters.graph import (
    call_key,
    current_config,
    interrupt_asker,
    run_scope,
    running,
    task_of,
    with_args,
)
from agent_guardrails.adapters.task_interrupts import TaskInterrupts
from agent_guardrails.adapters.tools import binding, unmapped_action
from agent_guardrails.engine.decision import CallRequest
from agent_guardrails.errors import ConfigurationError
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
    """Agent state with the flag a kill-switch halt sets to end the run."""

    guardrails_halted: NotRequired[Annotated[bool, PrivateStateAttr]]


class GuardrailsMiddleware(AgentMiddleware[GuardrailsState, Any, Any]):
    """Guard every tool call (and price every model call) of a ``create_agent`` agent.

    Args:
        guardrails: the :class:`Guardrails` to run calls through.
        actions: tool name -> action name, for tools not decorated with ``@guarded``.
        unmapped: what to do with tools bound to no action: ``"deny"`` (default) or
            ``"allow"`` (run them ungoverned).
    """

    def __init__(
        self,
        guardrails: Guardrails,
        *,
        actions: Mapping[str, str] | None = None,
        unmapped: Literal["deny", "allow"] = "deny",
    ) -> None:
        super().__init__()
        if not isinstance(guardrails, Guardrails):
            raise ConfigurationError(
                f"GuardrailsMiddleware needs a Guardrails object, got {type(guardrails).__name__}"
            )
        if unmapped not in ("deny", "allow"):
            raise ConfigurationError(f"unmapped must be 'deny' or 'allow', got {unmapped!r}")
        self.guardrails = guardrails
        self.actions = dict(actions or {})
        self.unmapped = unmapped
        self.end_on_halt = True  # False where no agent state carries the halt flag

    state_schema = GuardrailsState

    # ------------------------------------------------------------------ tools

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolResult]
    ) -> ToolResult:
        p = self._prepare(request)
        if p is None:
            return handler(request)

        def body(args: Mapping[str, Any]) -> ToolResult:
            with running(p.task):
                return handler(with_args(request, args))

        with inside_adapter(request.tool):
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
        p = self._prepare(request)
        if p is None:
            return await handler(request)

        async def body(args: Mapping[str, Any]) -> ToolResult:
            with running(p.task):
                return await handler(with_args(request, args))

        with inside_adapter(request.tool):
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
        bound = binding(name, request.tool, self.actions, self.guardrails.policy)
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

    def _message(self, request: ToolCallRequest, call: CallRequest, result: object) -> ToolResult:
        if isinstance(result, ToolMessage | Command):
            return result
        if is_result(result):
            return self._refusal(request, call, result)
        tool_call = request.tool_call
        return tool_message(result, tool_call.get("id") or "", tool_call["name"])

    def _refusal(
        self, request: ToolCallRequest, call: CallRequest, result: GuardrailResult
    ) -> ToolResult:
        tool_call = request.tool_call
        message = refusal_message(result, tool_call.get("id") or "", tool_call["name"])
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
        scope, key = self._model_scope()
        stopped = self.guardrails.model_check(scope)
        if stopped is not None:
            return AIMessage(content=stopped)
        started = time.time_ns()
        response = handler(request)
        usage = _usage(request, response)
        if usage is not None:
            self.guardrails.record_model_spend(
                **usage, scope=scope, call_key=key, started_ns=started
            )
        return response

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
        scope, key = self._model_scope()
        stopped = await self.guardrails.amodel_check(scope)
        if stopped is not None:
            return AIMessage(content=stopped)
        started = time.time_ns()
        response = await handler(request)
        usage = _usage(request, response)
        if usage is not None:
            await self.guardrails.arecord_model_spend(
                **usage, scope=scope, call_key=key, started_ns=started
            )
        return response

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

    def _model_scope(self) -> tuple[Scope, str | None]:
        config = current_config()
        scope = self.guardrails.resolve_scope(context=run_scope(None, config))
        return scope, call_key(config, "model")


def _usage(request: ModelRequest, response: ModelResponse) -> dict[str, Any] | None:
    """The model's name and the tokens a response used (``None``: it reported none)."""
    model = request.model
    name = str(
        getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__
    )
    messages = response.result if isinstance(response, ModelResponse) else [response]
    tokens_in = tokens_out = 0
    for message in messages:
        usage = getattr(message, "usage_metadata", None) or {}
        tokens_in += int(usage.get("input_tokens", 0))
        tokens_out += int(usage.get("output_tokens", 0))
    if not tokens_in and not tokens_out:
        return None
    return {"model": name, "input_tokens": tokens_in, "output_tokens": tokens_out}
