"""A model turn's tool calls, decided together and asked about with one interrupt.

``GuardNode`` and ``GuardrailsMiddleware`` (in its default ``interrupt="batched"``) decide
every tool call of the model's last message as one batch
(:func:`agent_guardrails.pipeline.batch.turn`) and raise **at most one interrupt** for the
calls that need a human, in LangChain's batched ``HITLRequest`` dialect: ``action_requests``
and ``review_configs``, plus a ``guardrails`` list with our details per action, in the same
order. It is answered with ``{"decisions": [...]}``, one LangChain decision per action, in
order (what Agent Chat UI and LangChain's own ``HumanInTheLoopMiddleware`` clients send); a
question about one call also takes a bare decision (``{"type": "approve"}``). The
approver is read from the resuming run (:func:`~agent_guardrails.adapters.graph.approver_identity`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

from langchain.agents.middleware.human_in_the_loop import (
    ActionRequest,
    HITLRequest,
    ReviewConfig,
)
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import interrupt
from pydantic import create_model

from agent_guardrails.adapters.graph import (
    GuardrailsDetails,
    approval_payload,
    approver_identity,
    call_key,
    decision_schema,
    interrupt_asker,
    to_answer,
)
from agent_guardrails.adapters.tools import Bindings, ToolBinding, unmapped_action
from agent_guardrails.engine.decision import CallRequest, Decision
from agent_guardrails.pipeline.approvals import ApprovalAnswer, ApprovalRequest
from agent_guardrails.pipeline.batch import AskAll
from agent_guardrails.pipeline.flow import GuardedCall
from agent_guardrails.pipeline.guardrails import Guardrails
from agent_guardrails.pipeline.scoping import ScopeSources
from agent_guardrails.policy.scope import Scope

__all__ = ["RESOLVED", "BatchedApprovalRequest", "batch_asker", "let_through", "turn_calls"]


class BatchedApprovalRequest(HITLRequest):
    """LangChain's ``HITLRequest`` with our details per action, in the same order."""

    guardrails: list[GuardrailsDetails]


def turn_calls(
    guard: Guardrails,
    tool_calls: Sequence[Mapping[str, Any]],
    bindings: Sequence[ToolBinding],
    run: Mapping[str, Any],
    config: Mapping[str, Any] | None,
) -> list[GuardedCall]:
    """The turn's tool calls, ready to be decided together (``runs_later``: the tools node
    or ``wrap_tool_call`` runs them). A call's key comes from the deciding task's namespace,
    new each turn and kept across the interrupt, so a model that reuses tool call ids in a
    later turn does not replay an earlier call."""
    calls: list[GuardedCall] = []
    for tool_call, bound in zip(tool_calls, bindings, strict=True):
        name = str(tool_call["name"])
        call_id = str(tool_call.get("id") or "")
        request = CallRequest(
            name,
            bound.action or unmapped_action(name),
            tool_call.get("args") or {},
            Scope(),
            call_id,
        )
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
    return calls


RESOLVED = (
    "resolved outside the agent: the question was closed without an answer "
    '("Mark as resolved"), so the call was not run'
)


def batch_asker(
    context: object, config: Mapping[str, Any] | None, *, resolved: bool = False
) -> AskAll:
    """Puts a turn's questions to a human in one interrupt; returns their answers.
    ``resolved``: the question was put before and closed without an answer (see
    :func:`agent_guardrails._compat.unanswered_rerun`): every call is rejected instead."""

    def ask(requests: list[ApprovalRequest]) -> list[ApprovalAnswer]:
        by, roles = approver_identity(context, config)
        if resolved:
            return [
                ApprovalAnswer("reject", by=by, roles=roles, message=RESOLVED) for _ in requests
            ]
        payload: BatchedApprovalRequest = {
            "action_requests": [
                ActionRequest(name=r.tool, args=dict(r.args), description=r.description)
                for r in requests
            ],
            "review_configs": [
                ReviewConfig(action_name=r.tool, allowed_decisions=list(r.allowed_decisions))
                for r in requests
            ],
            "guardrails": [approval_payload(r, "")["guardrails"] for r in requests],
        }
        # Each position takes the decisions its action allows; an edit names its own tool.
        each = [decision_schema(r.allowed_decisions, r.tool) for r in requests]
        make: Any = create_model  # built at run time, one type per position
        batch = make("BatchDecisions", decisions=(tuple.__class_getitem__(tuple(each)), ...))
        # One question: its bare decision (the per-call dialect's answer) is accepted too.
        schema: Any = batch if len(requests) > 1 else Union[batch, each[0]]  # noqa: UP007
        response: Any = interrupt(payload, response_schema=schema)
        answers = _decisions(response)
        return [to_answer(_plain(a), by, roles) for a in answers]

    return ask


def let_through(
    guard: Guardrails,
    request: ToolCallRequest,
    tool_call: Mapping[str, Any],
    carried: Mapping[str, Any],
    bindings: Bindings,
) -> tuple[GuardedCall, Decision, ToolCallRequest]:
    """A call the turn's decision let through, ready to run where tools run: what the
    decision carried (:meth:`Guardrails.carry`, with ``args`` when a human edited them),
    the tool's own binding, and an asker for a call found in doubt (asked per call)."""
    call_id = str(tool_call.get("id") or "")
    name = str(tool_call["name"])
    args = carried.get("args")
    if not isinstance(args, Mapping):
        args = tool_call.get("args") or {}
    clean = request.override(tool_call={**tool_call, "args": dict(args)})  # type: ignore[typeddict-item]
    scope = Scope.from_mapping(carried.get("scope") or {})
    runtime = request.runtime
    config = getattr(runtime, "config", None)
    bound = bindings.of(name, request.tool, guard.policy)
    call = guard.prepare(
        CallRequest(name, str(carried["action"]), args, scope, call_id),
        call_key=str(carried["key"]),
        sources=ScopeSources(scope.as_dict(), bound.declared),
        simulate=bound.simulate,
        ask=interrupt_asker(call_id, getattr(runtime, "context", None), config, guard.store),
        raise_on_deny=False,
        in_graph=True,
        args_schema=bound.schema,
    )
    call.rerun = carried.get("rerun") is True
    return call, guard.carried(carried, call), clean


def _decisions(response: Any) -> list[Any]:
    """The decisions of an answer: ``{"decisions": [...]}`` or one bare decision."""
    if isinstance(response, Mapping):
        return list(response["decisions"]) if "decisions" in response else [response]
    decisions = getattr(response, "decisions", None)
    return list(decisions) if decisions is not None else [response]


def _plain(answer: object) -> Mapping[str, Any]:
    if isinstance(answer, Mapping):
        return answer
    dump: Callable[[], Mapping[str, Any]] = getattr(answer, "model_dump")  # noqa: B009
    return dump()
