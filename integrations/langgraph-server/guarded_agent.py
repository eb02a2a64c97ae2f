"""A guarded ``create_agent`` agent for ``langgraph dev`` (and any LangGraph server).

- The model is scripted (no API key): it reads the conversation and answers the last human
  message, so any number of runs on any number of threads work. ``email <contact>
  <subject...>`` asks for ``send_email`` (the pack's sensitive ``email.send``: a human with
  role ``marketing_ops`` approves it), ``tag <contact> <tag>`` for ``tag_contact`` (the
  low-risk ``crm.tag``: it just runs). After the tools answered, it repeats what they said,
  so a reviewer's reject message is seen in its last reply.
- ``GuardrailsMiddleware`` runs every tool call through the pack in ``pack.yaml`` over the
  store named by ``AGENT_GUARDRAILS_STORE`` (default: ``.agent_guardrails/served.db`` next to
  this file), the same variable the ``agent-guardrails`` CLI reads.
- The server supplies the checkpointer: the graph is compiled without one.
- The approver of a resume is the server's authenticated user (``dev_auth.py``): the
  library reads ``configurable["langgraph_auth_user"]``, never what a client put in its
  request.
- The tools write what they did to the server's store (namespace ``("outbox", thread_id)``),
  where a client can read it back: ``POST /store/items/search``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware
from langchain.tools import ToolRuntime
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool

from agent_guardrails import Guardrails, PolicyPack
from agent_guardrails.middleware import GuardrailsMiddleware

HERE = Path(__file__).resolve().parent
PACK = HERE / "pack.yaml"
STORE_ENV = "AGENT_GUARDRAILS_STORE"
AUTH_USER = "langgraph_auth_user"  # where the server puts the authenticated user
T = TypeVar("T")
HELP = "Say `email <contact> <subject>` or `tag <contact> <tag>`."


def store_url() -> str:
    """``$AGENT_GUARDRAILS_STORE``, else a SQLite file in ``.agent_guardrails/`` here."""
    url = os.environ.get(STORE_ENV)
    if url:
        return url
    folder = HERE / ".agent_guardrails"
    folder.mkdir(exist_ok=True)
    return f"sqlite:///{folder / 'served.db'}"


# ---------------------------------------------------------------------------- the model


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return " ".join(
        str(part.get("text", "")) if isinstance(part, Mapping) else str(part) for part in content
    )


def next_turn(messages: Sequence[BaseMessage]) -> AIMessage:
    """What the scripted model says next, from the conversation alone."""
    if not messages:
        return AIMessage(content=HELP)
    last = messages[-1]
    if isinstance(last, ToolMessage):
        said = [_text(m) for m in _answered_since_human(messages)]
        return AIMessage(content="Tools said: " + " | ".join(said))
    if not isinstance(last, HumanMessage):
        return AIMessage(content=HELP)
    words = _text(last).split()
    call_id = f"call-{len(messages)}"  # unique within a thread, stable for its turn
    if len(words) >= 3 and words[0].lower() == "email":
        args: dict[str, Any] = {"to": words[1], "subject": " ".join(words[2:])}
        return _call("send_email", args, call_id)
    if len(words) == 3 and words[0].lower() == "tag":
        return _call("tag_contact", {"contact": words[1], "tag": words[2]}, call_id)
    return AIMessage(content=HELP)


def _answered_since_human(messages: Sequence[BaseMessage]) -> list[ToolMessage]:
    answered: list[ToolMessage] = []
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        if isinstance(message, ToolMessage):
            answered.append(message)
    return answered[::-1]


def _call(name: str, args: dict[str, Any], call_id: str) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])


class ScriptedChatModel(GenericFakeChatModel):
    """A tool-calling chat model played from the conversation; binding tools is a no-op.

    Streaming is off: ``GenericFakeChatModel`` streams text only, not tool calls."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=next_turn(messages))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop)


# ---------------------------------------------------------------------------- the tools


async def _record(runtime: ToolRuntime, tool_name: str, args: dict[str, Any]) -> None:
    """Write what a tool did to the server's store, where clients can read it back."""
    store = runtime.store
    thread = str((runtime.config.get("configurable") or {}).get("thread_id", "none"))
    if store is not None:
        value = {"tool": tool_name, "args": args, "tool_call_id": runtime.tool_call_id}
        await store.aput(("outbox", thread), uuid.uuid4().hex, value)


@tool
async def send_email(to: str, subject: str, runtime: ToolRuntime) -> str:
    """Send a marketing email to one contact."""
    await _record(runtime, "send_email", {"to": to, "subject": subject})
    return f"sent to {to}: {subject}"


@tool
async def tag_contact(contact: str, tag: str, runtime: ToolRuntime) -> str:
    """Tag a contact in the CRM."""
    await _record(runtime, "tag_contact", {"contact": contact, "tag": tag})
    return f"tagged {contact} {tag}"


# ---------------------------------------------------------------------------- the graph

guard = Guardrails(PolicyPack.from_yaml(PACK), store=store_url())

# The approver of a resume is the user the server authenticated (dev_auth.py): the library
# reads configurable["langgraph_auth_user"], which clients cannot set.
middleware: list[AgentMiddleware[Any, Any, Any]] = [
    GuardrailsMiddleware(guard, actions={"send_email": "email.send", "tag_contact": "crm.tag"}),
]

graph = create_agent(
    ScriptedChatModel(messages=iter(()), disable_streaming=True),
    [send_email, tag_contact],
    middleware=middleware,
    name="guarded_agent",
)
