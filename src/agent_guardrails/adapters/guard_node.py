"""A guard node for hand-built graphs: decide all tool calls of the model's turn as a batch.

Place it between the model node and the tools node::

    guard_node = GuardNode(guard, actions={"send_email": "email.send"})
    builder.add_node("model", call_model)
    builder.add_node("guard", guard_node)
    builder.add_node("tools", guard_node.tool_node([send_email, tag_contact]))
    builder.add_edge(START, "model")
    builder.add_edge("model", "guard")      # the guard routes on: tools, model or END
    builder.add_edge("tools", "model")

For the last AI message the node decides every tool call, holds what the calls that go
ahead need **as one reservation** (all fit, or none runs), and raises **at most one
interrupt** for the calls that need a human, in LangChain's batched ``HITLRequest`` dialect
(``action_requests`` and ``review_configs``, plus a ``guardrails`` list with our details per
action), answered with ``{"decisions": [...]}`` in the same order. Approved calls go to the
tools node (``Send`` per call); refused, simulated and answered ones come back to the model
as ``ToolMessage``\\s. With no tool calls the graph ends. When a kill-switch halts any call
of the batch, none of the batch runs and the run ends with the pack's kill-switch message
(or raises ``KillSwitchEngaged`` where the pack says ``kill_switch: {on_halt: raise}``).

The tools node from :meth:`GuardNode.tool_node` only runs calls this node let through, once
each, recording how each ended. It looks at the kill-switch again just before each run: a
switch engaged after this node decided (say, while the graph waited at an
``interrupt_before=["tools"]``) halts the call, releases its hold, and the model gets the
``halted`` result; the run then ends at this node (or raises at once, with ``on_halt:
raise``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Union

from langchain.agents.middleware.human_in_the_loop import (
    ActionRequest,
    ApproveDecision,
    EditDecision,
    HITLRequest,
    RejectDecision,
    RespondDecision,
    ReviewConfig,
)
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.prebuilt import ToolNode
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command, Send, interrupt
from pydantic import Discriminator, Field, create_model

from agent_guardrails import _compat
from agent_guardrails.adapters.decorator import inside_adapter
from agent_guardrails.adapters.graph import (
    GuardrailsDetails,
    approval_payload,
    approver_identity,
    call_key,
    interrupt_asker,
    run_scope,
    to_answer,
    with_args,
)
from agent_guardrails.adapters.tools import binding, unmapped_action
from agent_guardrails.engine.decision import CallRequest, Decision, DecisionKind
from agent_guardrails.errors import ConfigurationError
from agent_guardrails.pipeline.flow import GuardedCall
from agent_guardrails.pipeline.guardrails import Guardrails
from agent_guardrails.pipeline.results import refusal_message, tool_message
from agent_guardrails.pipeline.scoping import ScopeSources
from agent_guardrails.policy.scope import Scope

__all__ = ["GuardNode"]

_KEY = "guardrails"  # where a let-through tool call carries what the tools node needs

AnyDecision = Annotated[
    Union[ApproveDecision, EditDecision, RejectDecision, RespondDecision],  # noqa: UP007
    Discriminator("type"),
]


class BatchedApprovalRequest(HITLRequest):
    """LangChain's ``HITLRequest`` with our details per action, in the same order."""

    guardrails: list[GuardrailsDetails]


class GuardNode:
    """Decides the model's tool calls as one batch; see the module docstring.

    Args:
        guardrails: the :class:`Guardrails` to decide with.
        actions: tool name -> action name (``@guarded`` tools need no entry).
        tools: the tools, so their ``@guarded`` action, declared scope and ``simulate``
            apply here (the tools given to :meth:`tool_node` are added too).
        tools_node / model_node: the names of the nodes to route to.
    """

    def __init__(
        self,
        guardrails: Guardrails,
        *,
        actions: Mapping[str, str] | None = None,
        tools: Sequence[BaseTool] = (),
        tools_node: str = "tools",
        model_node: str = "model",
    ) -> None:
        if not isinstance(guardrails, Guardrails):
            raise ConfigurationError("GuardNode needs a Guardrails object")
        self.guardrails = guardrails
        self.actions = dict(actions or {})
        self.tools: dict[str, BaseTool] = {tool.name: tool for tool in tools}
        self.tools_node = tools_node
        self.model_node = model_node

    # ------------------------------------------------------------------ the node

    def __call__(self, state: Any, config: RunnableConfig) -> Command[Any]:
        messages = state.get("messages") or []
        last = messages[-1] if messages else None
        if not isinstance(last, AIMessage) or not last.tool_calls:
            return Command(goto="__end__")
        guard = self.guardrails
        context = _compat.runtime_context(config)
        run = run_scope(context, config)
        calls: list[GuardedCall] = []
        for tool_call in last.tool_calls:
            name = tool_call["name"]
            bound = binding(name, self.tools.get(name), self.actions, guard.policy)
            call_id = tool_call.get("id") or ""
            request = CallRequest(
                name,
                bound.action or unmapped_action(name),
                tool_call.get("args") or {},
                Scope(),
                call_id,
            )
            # The guard task's namespace is new each turn and kept across an interrupt, so a
            # model that reuses tool call ids in a later turn does not replay the earlier one.
            calls.append(
                guard.prepare(
                    request,
                    call_key=call_key(config, call_id) or f"~{uuid.uuid4().hex}",
                    sources=ScopeSources(run, bound.declared),
                    simulate=bound.simulate,
                    raise_on_deny=False,
                    runs_later=True,
                    in_graph=True,
                    args_schema=bound.schema,
                )
            )
        decisions = guard.decide_batch(calls)
        if any(d.kind is DecisionKind.HALT for d in decisions):
            return self._halt(calls, decisions)
        outcomes = self._approvals(calls, decisions, context, config)

        replies: list[ToolMessage] = []
        sends: list[Send] = []
        for tool_call, (call, decision) in zip(last.tool_calls, outcomes, strict=True):
            if decision.kind is DecisionKind.ALLOW:
                carried = guard.carry(call, decision)
                sent = {**tool_call, "args": dict(call.request.args), _KEY: carried}
                sends.append(Send(self.tools_node, _compat.tool_call_send_payload(sent, state)))
            else:
                result = guard.refusal(call, decision)
                replies.append(refusal_message(result, call.request.call_id, call.request.tool))
        return Command(update={"messages": replies}, goto=sends or [self.model_node])

    def _halt(self, calls: list[GuardedCall], decisions: list[Decision]) -> Command[Any]:
        """A kill-switch halted the turn (the pipeline stopped the whole batch, or raised
        where the pack says ``on_halt: raise``): the run ends with the pack's message."""
        guard = self.guardrails
        replies = [
            refusal_message(guard.refusal(call, decision), call.request.call_id, call.request.tool)
            for call, decision in zip(calls, decisions, strict=True)
        ]
        end = AIMessage(content=guard.policy.kill_switch.message)
        return Command(update={"messages": [*replies, end]}, goto="__end__")

    def _approvals(
        self,
        calls: list[GuardedCall],
        decisions: list[Decision],
        context: object,
        config: RunnableConfig,
    ) -> list[tuple[GuardedCall, Decision]]:
        """One interrupt for every call that needs a human; apply the answers in order."""
        guard = self.guardrails
        outcomes = list(zip(calls, decisions, strict=True))
        waiting = [i for i, d in enumerate(decisions) if d.kind is DecisionKind.REQUIRE_APPROVAL]
        if not waiting:
            return outcomes
        asks = [guard.approval_request(*outcomes[i]) for i in waiting]
        payload: BatchedApprovalRequest = {
            "action_requests": [
                ActionRequest(name=a.tool, args=dict(a.args), description=a.description)
                for a in asks
            ],
            "review_configs": [
                ReviewConfig(action_name=a.tool, allowed_decisions=list(a.allowed_decisions))
                for a in asks
            ],
            "guardrails": [
                approval_payload(a, calls[i].request.call_id)["guardrails"]
                for i, a in zip(waiting, asks, strict=True)
            ],
        }
        schema = create_model(
            "BatchDecisions",
            decisions=(list[AnyDecision], Field(min_length=len(asks), max_length=len(asks))),
        )
        response: Any = interrupt(payload, response_schema=schema)
        answers = response["decisions"] if isinstance(response, Mapping) else response.decisions
        by, roles = approver_identity(context, config)
        for i, answer in zip(waiting, answers, strict=True):
            raw = answer if isinstance(answer, Mapping) else answer.model_dump()
            call, decision = outcomes[i]
            outcomes[i] = guard.apply_answer(call, decision, to_answer(raw, by, roles))
        return outcomes

    # ------------------------------------------------------------------ the tools node

    def tool_node(self, tools: Sequence[BaseTool], **tool_node_options: Any) -> ToolNode:
        """The tools node that runs what this guard node let through, once each. Its tools'
        ``@guarded`` declarations apply in this guard node too."""
        for tool in tools:
            self.tools.setdefault(tool.name, tool)
        return ToolNode(
            list(tools),
            wrap_tool_call=self._run,
            awrap_tool_call=self._arun,
            **tool_node_options,
        )

    def _let_through(
        self, request: ToolCallRequest
    ) -> tuple[GuardedCall, Decision, ToolCallRequest] | ToolMessage:
        tool_call: dict[str, Any] = dict(request.tool_call)
        carried = tool_call.pop(_KEY, None)
        call_id = tool_call.get("id") or ""
        if not isinstance(carried, Mapping):
            return ToolMessage(
                content="not run: this call did not pass the guard node",
                tool_call_id=call_id,
                name=tool_call["name"],
                status="error",
            )
        guard = self.guardrails
        policy = guard.policy
        scope = Scope.from_mapping(carried.get("scope") or {})
        clean = request.override(tool_call=tool_call)  # type: ignore[arg-type]
        runtime = request.runtime
        config = getattr(runtime, "config", None)
        bound = binding(tool_call["name"], request.tool, self.actions, policy)
        call = guard.prepare(
            CallRequest(
                tool_call["name"], carried["action"], tool_call.get("args") or {}, scope, call_id
            ),
            call_key=carried["key"],
            sources=ScopeSources(scope.as_dict(), bound.declared),
            simulate=bound.simulate,
            ask=interrupt_asker(call_id, getattr(runtime, "context", None), config, guard.store),
            raise_on_deny=False,
            in_graph=True,
            args_schema=bound.schema,
        )
        decision = guard.carried(carried, call)
        return call, decision, clean

    def _run(self, request: ToolCallRequest, handler: Any) -> Any:
        let = self._let_through(request)
        if isinstance(let, ToolMessage):
            return let
        call, decision, clean = let
        call.body = lambda args: handler(with_args(clean, args))
        with inside_adapter(request.tool):
            result = self.guardrails.execute(call, decision)
        return _as_message(result, clean)

    async def _arun(self, request: ToolCallRequest, handler: Any) -> Any:
        let = self._let_through(request)
        if isinstance(let, ToolMessage):
            return let
        call, decision, clean = let
        call.body = lambda args: handler(with_args(clean, args))
        with inside_adapter(request.tool):
            result = await self.guardrails.aexecute(call, decision)
        return _as_message(result, clean)


def _as_message(result: object, request: ToolCallRequest) -> Any:
    if isinstance(result, ToolMessage | Command):
        return result
    return tool_message(result, request.tool_call.get("id") or "", request.tool_call["name"])
