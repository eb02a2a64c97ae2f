"""What a guarded call learns from the LangGraph run it is in, and how it asks a human there.

- **Call key**: ``thread_id | checkpoint_ns | tool call id``. LangGraph re-runs an interrupted
  node from its start and keeps its task (so its ``checkpoint_ns``) across the interrupt and
  the resume, in this process or another one reading the same checkpointer; the key is the
  same each time, so reservations, audit records and the tool body happen once. Where the
  tool call id is unknown (a plain function under ``@tool`` run by a ``ToolNode``), a digest
  of the tool name and arguments stands in for it, numbered when identical calls share a
  task.
- **Scope** from the run's context (``context=`` of ``invoke``: a mapping or an object with
  ``workflow``, ``region`` ... attributes, or a ``guardrails_scope`` mapping inside it) and
  from ``configurable``.
- **Approver** identity from the run's context or ``configurable`` under ``approver``:
  ``{"id": "ana", "roles": ["marketing_ops"]}``. It is read when the run resumes, from the
  resuming caller's context: never from the model or the resume payload.
- **Asking**: ``interrupt()`` with LangChain's per-call ``ToolApprovalRequest`` payload
  (``type: "tool_approval"``, ``tool_call_id``, ``name``, ``args``, ``description``) plus a
  ``guardrails`` field with our details, and a ``response_schema`` that LangGraph checks
  the answer against before saving it: a malformed answer is refused with a
  ``pydantic.ValidationError`` and the call stays pending.
  Inside a task, calls ask through the task's slot log
  (:mod:`agent_guardrails.adapters.task_interrupts`), so calls sharing a task get their own answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Annotated, Any, Literal, Union, cast

from langchain.agents.middleware.human_in_the_loop import (
    ApproveDecision,
    RejectDecision,
    RespondDecision,
    ToolApprovalRequest,
)
from langgraph.config import get_config
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import interrupt
from pydantic import Discriminator, create_model
from typing_extensions import TypedDict

from agent_guardrails import _compat
from agent_guardrails.adapters.task_interrupts import TaskInterrupts, for_task
from agent_guardrails.errors import ConfigurationError
from agent_guardrails.pipeline.approvals import ApprovalAnswer, ApprovalRequest
from agent_guardrails.pipeline.effects import Flow
from agent_guardrails.pipeline.scoping import NO_SOURCES, ScopeSources, scope_values
from agent_guardrails.store.base import Store

__all__ = [
    "GuardrailsApprovalRequest",
    "GuardrailsDetails",
    "approval_payload",
    "approver_identity",
    "call_key",
    "current_config",
    "interrupt_asker",
    "run_scope",
    "run_sources",
    "running",
    "task_of",
    "with_args",
]


class GuardrailsDetails(TypedDict):
    """Our extension of the approval payload, under the ``guardrails`` key."""

    call_key: str
    action: str
    level: int
    reasons: list[str]
    estimated_cost: float
    currency: str
    budget_left: float | None
    pack: str
    pack_version: str
    args_digest: str
    roles: list[str]
    allowed_decisions: list[str]
    expires_at: float


class GuardrailsApprovalRequest(ToolApprovalRequest):
    """LangChain's ``ToolApprovalRequest`` with our details: UIs that render the former
    render this unchanged."""

    guardrails: GuardrailsDetails


def with_args(request: ToolCallRequest, args: Mapping[str, Any]) -> ToolCallRequest:
    """The tool call request with these arguments (an approver's edit); unchanged if same."""
    if args is request.tool_call.get("args"):
        return request
    return request.override(tool_call={**request.tool_call, "args": dict(args)})


def task_of(config: Mapping[str, Any] | None, store: Store) -> TaskInterrupts | None:
    """The interrupts shared by the calls of the LangGraph task ``config`` belongs to."""
    return for_task(config, store, slot_schema)


def under_way(task: TaskInterrupts | None) -> AbstractContextManager[None]:
    """Around a guarded call: tells the task a call is under way (``nullcontext`` outside a
    task), so a sibling's question lets it reach its body first."""
    return task.call() if task is not None else nullcontext()


def running(task: TaskInterrupts | None) -> AbstractContextManager[None]:
    """Around a tool body: tells the task a body runs (``nullcontext`` outside a task)."""
    return task.body() if task is not None else nullcontext()


def current_config() -> Mapping[str, Any] | None:
    """The running LangGraph/LangChain config, or ``None`` outside a run."""
    try:
        config: Mapping[str, Any] = get_config()
    except RuntimeError:
        return None
    return config


def call_key(config: Mapping[str, Any] | None, call_id: str) -> str | None:
    """The stable key of one tool call in a checkpointed run (``None`` without a thread)."""
    if not config:
        return None
    configurable = config.get("configurable") or {}
    thread = configurable.get("thread_id")
    if thread is None:
        return None
    return f"{thread}|{configurable.get('checkpoint_ns', '')}|{call_id}"


def _lookup(source: object, name: str) -> object:
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


def run_scope(context: object, config: Mapping[str, Any] | None) -> dict[str, str]:
    """Scope dimensions named by the run: ``configurable`` (and a ``guardrails_scope``
    mapping in it), then the run's ``context`` (and its ``guardrails_scope``), context
    winning. Without ``context``, the run's own (LangGraph's runtime) is read."""
    if context is None:
        context = _compat.runtime_context(config)
    configurable = _compat.configurable(config)
    values: dict[str, str] = {}
    for source in (
        configurable,
        _lookup(configurable, "guardrails_scope"),
        context,
        _lookup(context, "guardrails_scope") if context is not None else None,
    ):
        values.update(scope_values(source))
    return values


def run_sources(
    context: object, config: Mapping[str, Any] | None, declared: Mapping[str, str] | None
) -> ScopeSources:
    """The scope sources of a tool call in a graph run: the run's scope values and the
    tool's declared ones (see :mod:`agent_guardrails.pipeline.scoping`)."""
    run = run_scope(context, config)
    if not run and not declared:
        return NO_SOURCES
    return ScopeSources(run, dict(declared or {}))


def approver_identity(
    context: object, config: Mapping[str, Any] | None
) -> tuple[str, tuple[str, ...]]:
    """``(id, roles)`` of the human resuming the run.

    On a LangGraph server with custom auth, the user it authenticated for the resuming
    request (``configurable["langgraph_auth_user"]``: its ``identity``, and its ``roles``
    field or else its ``permissions``) is the only source: a client cannot name itself
    approver in the request's context or config. A user the server did not authenticate
    (LangGraph Studio's user, when a deployment has custom auth) approves nothing. Without
    a server user (the server has no custom auth, or no server at all), the approver comes
    from the run's ``context`` or ``configurable`` under ``approver``:
    ``{"id": "ana", "roles": ["marketing_ops"]}``."""
    user = _compat.auth_user(config)
    if user is not None:
        if not _lookup(user, "is_authenticated"):
            return "", ()
        roles = _lookup(user, "roles") or _lookup(user, "permissions") or ()
        return str(_lookup(user, "identity") or ""), _roles(roles)
    configurable = _compat.configurable(config)
    for source in (context, configurable):
        if source is None:
            continue
        who = _lookup(source, "approver")
        if who is None:
            continue
        ident = _lookup(who, "id") or _lookup(who, "name")
        return str(ident or ""), _roles(_lookup(who, "roles") or ())
    return "", ()


def _roles(roles: object) -> tuple[str, ...]:
    if not isinstance(roles, list | tuple):
        raise ConfigurationError(
            "approver roles must be a list, e.g. {'id': 'ana', 'roles': ['marketing_ops']}"
        )
    return tuple(str(r) for r in roles)


def approval_payload(request: ApprovalRequest, tool_call_id: str) -> GuardrailsApprovalRequest:
    """The interrupt value for one call, in LangChain's per-call dialect plus our details."""
    return {
        "type": "tool_approval",
        "tool_call_id": tool_call_id,
        "name": request.tool,
        "args": dict(request.args),
        "description": request.description,
        "guardrails": {
            "call_key": request.call_key,
            "action": request.action,
            "level": request.level,
            "reasons": list(request.reasons),
            "estimated_cost": request.cost,
            "currency": request.currency,
            "budget_left": request.budget_left,
            "pack": request.pack,
            "pack_version": request.pack_version,
            "args_digest": request.args_digest,
            "roles": list(request.roles),
            "allowed_decisions": list(request.allowed_decisions),
            "expires_at": request.expires_at,
        },
    }


def decision_schema(allowed: tuple[str, ...], tool: str) -> Any:
    """The answer's type: LangChain's decisions limited to ``allowed``; an edit may change
    the arguments but names this tool (an edit cannot switch tools)."""
    make: Any = create_model  # models built at run time: the tool name is pinned in a Literal
    pinned: Any = Literal.__getitem__(tool)
    edited_action = make("EditedAction", name=(pinned, ...), args=(dict[str, Any], ...))
    edit = make("EditDecision", type=(Literal["edit"], ...), edited_action=(edited_action, ...))
    by_type: dict[str, Any] = {
        "approve": ApproveDecision,
        "edit": edit,
        "reject": RejectDecision,
        "respond": RespondDecision,
    }
    members = tuple(by_type[d] for d in dict.fromkeys(allowed))
    if len(members) == 1:
        return members[0]
    return Annotated[Union[members], Discriminator("type")]  # noqa: UP007


def to_answer(decision: Mapping[str, Any], by: str, roles: tuple[str, ...]) -> ApprovalAnswer:
    """An ``ApprovalAnswer`` from a LangChain decision dict and the resumer's identity."""
    kind = decision["type"]
    if kind == "edit":
        edited = decision["edited_action"]
        if not isinstance(edited, Mapping):
            edited = cast(Any, edited).model_dump()
        return ApprovalAnswer(
            "edit", by=by, roles=roles, edited_args=dict(edited["args"]), edited_tool=edited["name"]
        )
    return ApprovalAnswer(kind, by=by, roles=roles, message=str(decision.get("message") or ""))


def slot_schema(record: Mapping[str, Any]) -> Any:
    """The answer type of the ask an ``approval.slot`` record describes."""
    return decision_schema(tuple(record["allowed"]), str(record["tool"]))


def interrupt_asker(
    tool_call_id: str, context: object, config: Mapping[str, Any] | None, store: Store
) -> Any:
    """An asker that pauses the graph with ``interrupt()`` and returns the human's answer.

    Inside a checkpointed task it asks through the task's
    :class:`~agent_guardrails.adapters.task_interrupts.TaskInterrupts`, so several guarded
    calls of one task (a ``ToolNode`` running an AI message's calls) each get their own
    answer. The asker is a flow (its slot log's store I/O is yielded to the pipeline's
    driver), so an async graph never blocks its loop while asking."""

    def ask(request: ApprovalRequest) -> Flow[ApprovalAnswer]:
        payload = approval_payload(request, tool_call_id)
        task = for_task(config, store, slot_schema)
        if task is None:
            decision = interrupt(
                payload, response_schema=decision_schema(request.allowed_decisions, request.tool)
            )
        else:
            # A call in doubt asks afresh: the answer its first run got is not reused.
            again = "in_doubt" in request.reasons
            decision = yield from task.answer(
                f"{request.call_key}#{'in_doubt' if again else 'ask'}",
                payload,
                {
                    "call_key": request.call_key,
                    "tool": request.tool,
                    "allowed": list(request.allowed_decisions),
                },
            )
        if not isinstance(decision, Mapping):
            decision = cast(Any, decision).model_dump()
        by, roles = approver_identity(context, config)
        return to_answer(decision, by, roles)

    return ask
