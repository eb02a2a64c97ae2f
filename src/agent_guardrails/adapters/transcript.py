"""What the model sees of a guarded turn, and what it reports: the stamp on the model's
message naming each tool's action and scope, the mark on the tool messages
:class:`~agent_guardrails.adapters.middleware.GuardrailsMiddleware` returns, the correction
of tool results a chat client made up for calls that never ran, and the tokens a model
response used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from langchain.agents.middleware.types import (
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
)
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.types import Command

from agent_guardrails.pipeline.results import refusal_message

__all__ = [
    "ANSWERED",
    "STAMP",
    "answered",
    "calls_tools",
    "model_usage",
    "truthful",
    "with_corrections",
]

STAMP = "guardrails_tools"
"""The key, in the model message's ``response_metadata``, of each tool's action and scope."""
ANSWERED = "guardrails_answered"
"""The key, on a tool message the middleware returned (a result or a refusal)."""


def answered(message: ToolMessage) -> ToolMessage:
    """Mark a tool message as the middleware's answer to its call (a result or a refusal)."""
    message.response_metadata = {**(message.response_metadata or {}), ANSWERED: True}
    return message


def truthful(request: ModelRequest) -> tuple[ModelRequest, list[ToolMessage]]:
    """The model's input with no made-up result for a guarded call.

    A chat client that sends a new message while a guarded call waits for a human (Agent
    Chat UI does) adds a tool message of its own for each pending call ("Successfully
    handled tool call."), and the run it starts drops the pending question: the call never
    runs. Each tool message of the last tool-calling turn that answers a guarded call
    (stamped on the model's message) and did not come from this middleware is replaced by
    the truth, for the model and, under the same message id, in the thread's state."""
    messages = request.messages
    turn = next((i for i in range(len(messages) - 1, -1, -1) if calls_tools(messages[i])), None)
    if turn is None:
        return request, []
    ai = cast(AIMessage, messages[turn])
    marks = (ai.response_metadata or {}).get(STAMP)
    if not isinstance(marks, Mapping):
        return request, []  # a turn from before this release, or not from a wrapped model
    guarded = {
        str(c.get("id")): str(marks[c["name"]].get("action"))
        for c in ai.tool_calls
        if isinstance(marks.get(c["name"]), Mapping) and marks[c["name"]].get("action")
    }
    out, corrected = list(messages), []
    for i in range(turn + 1, len(messages)):
        message = messages[i]
        if (
            isinstance(message, ToolMessage)
            and message.tool_call_id in guarded
            and not (message.response_metadata or {}).get(ANSWERED)
        ):
            result = {
                "status": "denied",
                "decision": "deny",
                "action": guarded[message.tool_call_id],
                "reasons": ["not_run"],
                "message": "not run: a new message came while this call waited for a "
                "human's answer, so it was never asked about again nor run; ask for it "
                "again if it is still wanted",
            }
            fixed = answered(refusal_message(result, message.tool_call_id, message.name or ""))  # type: ignore[arg-type]
            fixed.id = message.id
            out[i] = fixed
            corrected.append(fixed)
    if not corrected:
        return request, []
    return request.override(messages=out), corrected


def calls_tools(message: object) -> bool:
    return isinstance(message, AIMessage) and bool(message.tool_calls)


def with_corrections(
    response: ModelResponse | AIMessage | ExtendedModelResponse[Any], corrected: list[ToolMessage]
) -> ModelResponse | AIMessage | ExtendedModelResponse[Any]:
    """The response, with the corrected tool messages written over the made-up ones."""
    if not corrected:
        return response
    if isinstance(response, ExtendedModelResponse):
        return response  # another middleware's command: the model saw the truth regardless
    model_response = (
        response if isinstance(response, ModelResponse) else ModelResponse(result=[response])
    )
    return ExtendedModelResponse(
        model_response=model_response, command=Command(update={"messages": corrected})
    )


def model_usage(request: ModelRequest, response: ModelResponse) -> dict[str, Any] | None:
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
