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

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.prebuilt import ToolNode
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command, Send

from agent_guardrails import _compat
from agent_guardrails.adapters.decorator import inside_adapter
from agent_guardrails.adapters.graph import (
    run_scope,
    with_args,
)
from agent_guardrails.adapters.tools import Bindings
from agent_guardrails.adapters.turns import batch_asker, let_through, turn_calls
from agent_guardrails.engine.decision import Decision, DecisionKind
from agent_guardrails.errors import ConfigurationError
from agent_guardrails.pipeline.flow import GuardedCall
from agent_guardrails.pipeline.guardrails import Guardrails
from agent_guardrails.pipeline.results import refusal_message, tool_message

__all__ = ["GuardNode"]

_KEY = "guardrails"  # where a let-through tool call carries what the tools node needs


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
        self._bindings = Bindings(self.actions)
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
        bindings = [
            self._bindings.of(c["name"], self.tools.get(c["name"]), guard.policy)
            for c in last.tool_calls
        ]
        calls = turn_calls(guard, last.tool_calls, bindings, run_scope(context, config), config)
        outcomes = guard.decide_turn(calls, batch_asker(context, config))
        if any(d.kind is DecisionKind.HALT for _, d in outcomes):
            return self._halt(outcomes)

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

    def _halt(self, outcomes: list[tuple[GuardedCall, Decision]]) -> Command[Any]:
        """A kill-switch halted the turn (the pipeline stopped the whole batch, or raised
        where the pack says ``on_halt: raise``): the run ends with the pack's message."""
        guard = self.guardrails
        replies = [
            refusal_message(guard.refusal(call, decision), call.request.call_id, call.request.tool)
            for call, decision in outcomes
        ]
        end = AIMessage(content=guard.policy.kill_switch.message)
        return Command(update={"messages": [*replies, end]}, goto="__end__")

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
        if not isinstance(carried, Mapping):
            return ToolMessage(
                content="not run: this call did not pass the guard node",
                tool_call_id=tool_call.get("id") or "",
                name=tool_call["name"],
                status="error",
            )
        return let_through(self.guardrails, request, tool_call, carried, self._bindings)

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
