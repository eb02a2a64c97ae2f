"""The conformance harness: one way to drive every adapter, so a promise is written once.

An :class:`Agent` wraps one of the ways in (``ADAPTERS``) around the same tools, run
with ``invoke`` or ``ainvoke`` (``MODES``):

- ``guarded``: ``@guarded`` tools run by LangGraph's plain ``ToolNode`` in a hand-built
  ``StateGraph`` (model -> tools -> model);
- ``tool_node``: ``guarded_tool_node(tools, guard, actions=...)`` in the same graph;
- ``middleware``: ``GuardrailsMiddleware`` in ``langchain.agents.create_agent`` (its default,
  ``interrupt="batched"``: a turn's calls decided together, one ``HITLRequest``);
- ``middleware_per_call``: the same with ``interrupt="per_call"`` (each call decided and
  asked as it starts, LangChain's ``ToolApprovalRequest``);
- ``guard_node``: ``GuardNode(guard, ...)`` + ``guard_node.tool_node(tools)``
  (model -> guard -> tools -> model).

Every run is one conversation (a LangGraph thread): the user says ``go <thread>``, the
scripted model answers with the tool calls registered for that thread, then ``done`` once it
has seen tool results. The model is stateless (it reads its input), so runs may go on in
parallel. Approvals are answered by the shape of the interrupt payload, not by adapter:
LangChain's per-call ``{"type": "tool_approval", ...}`` is answered by interrupt id with one
decision; the batched ``{"action_requests": [...], ...}`` with ``{"decisions": [...]}`` in
order.

Only public import paths of ``agent_guardrails`` are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.types import Command
from pydantic import PrivateAttr
from typing_extensions import TypedDict

from agent_guardrails import (
    Guardrails,
    StoreUnavailable,
    guarded,
    register_consent_check,
    register_validator,
    report_cost,
)
from agent_guardrails.guard_node import GuardNode
from agent_guardrails.middleware import GuardrailsMiddleware
from agent_guardrails.store import Store
from agent_guardrails.tool_node import guarded_tool_node

ADAPTERS = ("guarded", "tool_node", "middleware", "middleware_per_call", "guard_node")
# Adapters that decide a model turn's calls as one batch and ask once, before any runs.
BATCHED = ("middleware", "guard_node")
MODES = ("sync", "async")
STORES = ("memory", "sqlite", "postgres")

APPROVER: dict[str, Any] = {"id": "ana", "roles": ["ops"]}

# ---------------------------------------------------------------------------- packs

PACK_NAME = "conformance"


def pack_text(body: str, *, version: str = "1") -> str:
    """A pack's YAML: the suite's pack name, ``version``, then ``body`` (YAML, unindented)."""
    return f"name: {PACK_NAME}\nversion: '{version}'\n{body.strip()}\n"


# The actions every tool below is bound to. A pack body lists the ones a promise needs.
ACTIONS: dict[str, str] = {
    "send_email": "email.send",  # sensitive: asks for approval (role ops)
    "tag_contact": "crm.tag",  # low risk, priced
    "publish_page": "page.publish",  # sensitive, takes a region (scope from the arguments)
    "lookup_contact": "crm.lookup",  # a low-risk read, fail_open
    "note_contact": "crm.note",  # low risk, free
    "enrich_contact": "data.enrich",  # low risk, priced at 1.0, reports its actual cost
}


def email_draft(to: str, subject: str) -> dict[str, str]:
    """``send_email``'s ``simulate=`` function: the draft the model gets at Assist. It
    blocks (as a function calling a template service would): under blockbuster, on an event
    loop, that is an error."""
    USER_CODE.ran("simulate")
    return {"preview": f"To {to}: {subject}", "by": "simulate"}


# ---------------------------------------------------------------------------- user code


class UserCode:
    """Where the application's own callbacks ran: ``(what, thread name, on an event loop)``.
    Each one blocks briefly (``time.sleep``), like a check calling an API with a sync
    client: on an event loop's thread blockbuster raises ``BlockingError``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[tuple[str, str, bool]] = []

    def ran(self, what: str) -> None:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        with self._lock:
            self.calls.append((what, threading.current_thread().name, on_loop))
        time.sleep(0.001)

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()


USER_CODE = UserCode()


def _blocking_validator(call: Any, params: Any) -> str | None:
    USER_CODE.ran("validator")
    contact = str(call.args.get("contact", ""))
    return "the contact is on the block list" if contact.startswith("blocked-") else None


def _blocking_consent(contact: str, channel: str | None) -> bool:
    USER_CODE.ran("consent")
    return not contact.startswith("no-consent-")


HUNG = threading.Event()
"""Set: the hanging check answers. A test that clears it sets it again when it ends."""


def _hanging_validator(call: Any, params: Any) -> str | None:
    """Never answers for a ``hang-`` contact while :data:`HUNG` is clear (an API that hangs);
    passes every other call."""
    if str(call.args.get("contact", "")).startswith("hang-"):
        HUNG.wait(30)
    return None


register_validator("conformance_blocking", _blocking_validator)
register_validator("conformance_hangs", _hanging_validator)
register_consent_check("conformance_consent", _blocking_consent)
HUNG.set()


# ---------------------------------------------------------------------------- body runs


class Runs:
    """Every tool body that started, in order: ``(tool, args)``. With ``path`` each run is
    also appended to that file (one JSON line), so runs in other processes are counted."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._runs: list[tuple[str, dict[str, Any]]] = []

    def record(self, tool: str, args: Mapping[str, Any]) -> None:
        with self._lock:
            self._runs.append((tool, dict(args)))
            if self.path is not None:
                with self.path.open("a") as fh:
                    fh.write(json.dumps([tool, dict(args)]) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())

    def all(self) -> list[tuple[str, dict[str, Any]]]:
        if self.path is not None:
            if not self.path.exists():
                return []
            rows = [json.loads(line) for line in self.path.read_text().splitlines() if line]
            return [(str(t), dict(a)) for t, a in rows]
        with self._lock:
            return list(self._runs)

    def count(self, tool: str | None = None) -> int:
        return sum(1 for t, _ in self.all() if tool is None or t == tool)

    def args_of(self, tool: str) -> list[dict[str, Any]]:
        return [a for t, a in self.all() if t == tool]


@dataclass
class Behaviour:
    """What tool bodies do besides recording their run."""

    crash: bool = False  # os._exit(3) inside the body (a worker killed mid-call)
    actual_cost: float | None = None  # report_cost(...) inside enrich_contact's body


class ToolBox:
    """The suite's tools, as ``@guarded`` LangChain tools bound to ``guard``: sync
    functions for ``invoke``, coroutines for ``ainvoke``."""

    def __init__(self, runs: Runs, behaviour: Behaviour | None = None) -> None:
        self.runs = runs
        self.behaviour = behaviour or Behaviour()

    def _body(self, tool: str, args: Mapping[str, Any]) -> None:
        self.runs.record(tool, args)
        if self.behaviour.crash:
            os._exit(3)
        if tool == "enrich_contact" and self.behaviour.actual_cost is not None:
            report_cost(self.behaviour.actual_cost)

    def tools(self, guard: Guardrails, mode: str, names: Sequence[str]) -> list[BaseTool]:
        return [self._tool(guard, mode, name) for name in names]

    def _tool(self, guard: Guardrails, mode: str, name: str) -> BaseTool:
        body = self._body
        fns: dict[str, Callable[..., Any]]
        if mode == "sync":

            def send_email(to: str, subject: str) -> str:
                """Send an email to a contact."""
                body("send_email", {"to": to, "subject": subject})
                return f"sent to {to}"

            def tag_contact(contact: str) -> str:
                """Tag a contact in the CRM."""
                body("tag_contact", {"contact": contact})
                return f"tagged {contact}"

            def publish_page(region: str, title: str) -> str:
                """Publish a page in a region."""
                body("publish_page", {"region": region, "title": title})
                return f"published {title} in {region}"

            def lookup_contact(contact: str) -> str:
                """Read a contact."""
                body("lookup_contact", {"contact": contact})
                return f"contact {contact}"

            def note_contact(contact: str) -> str:
                """Add a note to a contact."""
                body("note_contact", {"contact": contact})
                return f"noted {contact}"

            def enrich_contact(contact: str) -> str:
                """Enrich a contact from a paid data source."""
                body("enrich_contact", {"contact": contact})
                return f"enriched {contact}"

            fns = {
                "send_email": send_email,
                "tag_contact": tag_contact,
                "publish_page": publish_page,
                "lookup_contact": lookup_contact,
                "note_contact": note_contact,
                "enrich_contact": enrich_contact,
            }
        else:

            async def asend_email(to: str, subject: str) -> str:
                """Send an email to a contact."""
                body("send_email", {"to": to, "subject": subject})
                await asyncio.sleep(0)
                return f"sent to {to}"

            async def atag_contact(contact: str) -> str:
                """Tag a contact in the CRM."""
                body("tag_contact", {"contact": contact})
                await asyncio.sleep(0)
                return f"tagged {contact}"

            async def apublish_page(region: str, title: str) -> str:
                """Publish a page in a region."""
                body("publish_page", {"region": region, "title": title})
                await asyncio.sleep(0)
                return f"published {title} in {region}"

            async def alookup_contact(contact: str) -> str:
                """Read a contact."""
                body("lookup_contact", {"contact": contact})
                await asyncio.sleep(0)
                return f"contact {contact}"

            async def anote_contact(contact: str) -> str:
                """Add a note to a contact."""
                body("note_contact", {"contact": contact})
                await asyncio.sleep(0)
                return f"noted {contact}"

            async def aenrich_contact(contact: str) -> str:
                """Enrich a contact from a paid data source."""
                body("enrich_contact", {"contact": contact})
                await asyncio.sleep(0)
                return f"enriched {contact}"

            fns = {
                "send_email": asend_email,
                "tag_contact": atag_contact,
                "publish_page": apublish_page,
                "lookup_contact": alookup_contact,
                "note_contact": anote_contact,
                "enrich_contact": aenrich_contact,
            }
        fn = fns[name]
        simulate = email_draft if name == "send_email" else None
        wrapped = guarded(action=ACTIONS[name], guardrails=guard, simulate=simulate, name=name)(fn)
        description = inspect.getdoc(fn) or name
        if mode == "sync":
            return StructuredTool.from_function(wrapped, name=name, description=description)
        return StructuredTool.from_function(coroutine=wrapped, name=name, description=description)


# ---------------------------------------------------------------------------- the model


def tool_calls(*calls: tuple[str, Mapping[str, Any]]) -> AIMessage:
    """The model's turn: these tool calls, with ids ``call-0``, ``call-1`` ..."""
    return AIMessage(
        content="",
        tool_calls=[
            {"name": n, "args": dict(a), "id": f"call-{i}", "type": "tool_call"}
            for i, (n, a) in enumerate(calls)
        ],
    )


USAGE = {"input_tokens": 100, "output_tokens": 100, "total_tokens": 200}


class ConformanceModel(GenericFakeChatModel):
    """A scripted tool-calling chat model that binding tools does not change. Stateless: it
    answers the last human message ``go <thread>`` with the turn registered for it, and says
    ``done`` once tool results follow. Counts its calls. Its ``model_name`` is its class
    name, so the middleware prices it under that name whichever it reads."""

    model_name: str = "ConformanceModel"
    _turns: dict[str, AIMessage] = PrivateAttr(default_factory=dict)
    _calls: list[str] = PrivateAttr(default_factory=list)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ConformanceModel:
        return self

    def script(self, prompt: str, turn: AIMessage) -> None:
        self._turns[prompt] = turn

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self._calls)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        human = [m for m in messages if isinstance(m, HumanMessage)]
        prompt = str(human[-1].content) if human else ""
        with self._lock:
            self._calls.append(prompt)
        if isinstance(messages[-1], HumanMessage) and prompt in self._turns:
            message = self._turns[prompt].model_copy()
        else:
            message = AIMessage(content="done")
        message.usage_metadata = dict(USAGE)  # type: ignore[assignment]
        return ChatResult(generations=[ChatGeneration(message=message)])


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


# ---------------------------------------------------------------------------- asking


@dataclass(frozen=True)
class Ask:
    """One call a pending interrupt asks a human about."""

    interrupt_id: str
    batched: bool  # part of a batched HITLRequest (answered with {"decisions": [...]})
    name: str
    args: dict[str, Any]
    reasons: tuple[str, ...]
    pack_version: str | None
    tool_call_id: str


Verdict = Callable[[Ask], dict[str, Any]]


def approve(_ask: Ask) -> dict[str, Any]:
    return {"type": "approve"}


def asks_of(interrupts: Sequence[Any]) -> list[Ask]:
    """The calls pending interrupts ask about, whatever the payload's shape."""
    asks: list[Ask] = []
    for pending in interrupts:
        value = pending.value
        if not isinstance(value, Mapping):
            raise AssertionError(f"harness: an interrupt payload it cannot read: {value!r}")
        if "action_requests" in value:
            details = value.get("guardrails") or []
            for i, request in enumerate(value["action_requests"]):
                extra = details[i] if i < len(details) else {}
                asks.append(
                    Ask(
                        pending.id,
                        True,
                        str(request["name"]),
                        dict(request.get("args") or {}),
                        tuple(extra.get("reasons") or ()),
                        extra.get("pack_version"),
                        str(extra.get("tool_call_id") or ""),
                    )
                )
        elif "name" in value and "args" in value:
            extra = value.get("guardrails") or {}
            asks.append(
                Ask(
                    pending.id,
                    False,
                    str(value["name"]),
                    dict(value.get("args") or {}),
                    tuple(extra.get("reasons") or ()),
                    extra.get("pack_version"),
                    str(value.get("tool_call_id") or ""),
                )
            )
        else:
            raise AssertionError(f"harness: an interrupt payload it cannot read: {value!r}")
    return asks


def resume_map(asks: Sequence[Ask], verdict: Verdict) -> dict[str, Any]:
    """``{interrupt_id: answer}`` for the pending asks: one decision per call, or
    ``{"decisions": [...]}`` in order for a batched request."""
    answers: dict[str, Any] = {}
    for ask in asks:
        answer = verdict(ask)
        if ask.batched:
            answers.setdefault(ask.interrupt_id, {"decisions": []})["decisions"].append(answer)
        else:
            answers[ask.interrupt_id] = answer
    return answers


# ---------------------------------------------------------------------------- results


def parse(content: object) -> dict[str, Any] | None:
    """A ToolMessage's content as the guardrails' JSON result, if it is one."""
    if isinstance(content, list):
        content = "".join(
            str(c.get("text", "")) if isinstance(c, dict) else str(c) for c in content
        )
    try:
        value = json.loads(str(content))
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


@dataclass
class Run:
    """Where one conversation stands: the state's messages and the pending asks."""

    messages: list[BaseMessage]
    asks: list[Ask]
    error: BaseException | None = None

    def tool_messages(self) -> dict[str, ToolMessage]:
        return {m.tool_call_id: m for m in self.messages if isinstance(m, ToolMessage)}

    def content(self, call_id: str) -> str:
        message = self.tool_messages().get(call_id)
        return "" if message is None else str(message.content)

    def result(self, call_id: str) -> dict[str, Any] | None:
        message = self.tool_messages().get(call_id)
        return None if message is None else parse(message.content)

    def last_ai(self) -> str:
        ai = [m for m in self.messages if isinstance(m, AIMessage)]
        return str(ai[-1].content) if ai else ""


# ---------------------------------------------------------------------------- the agent


@dataclass
class Agent:
    """One adapter's graph over ``tools``, driven with ``invoke`` or ``ainvoke``.

    ``loop`` is the event loop every async call of a test runs on (one per test, so async
    resources a store or checkpointer opens stay on their loop)."""

    adapter: str
    mode: str
    guard: Guardrails
    tools: Sequence[str]
    box: ToolBox
    saver: Any = None
    loop: asyncio.AbstractEventLoop | None = None
    durability: str | None = None  # LangGraph's: "sync" persists each step before the next
    model: ConformanceModel = field(
        default_factory=lambda: ConformanceModel(messages=iter(()))  # the script is per thread
    )
    graph: Any = field(init=False)

    def __post_init__(self) -> None:
        if self.saver is None:
            self.saver = InMemorySaver()
        tools = self.box.tools(self.guard, self.mode, self.tools)
        actions = {name: ACTIONS[name] for name in self.tools}
        if self.adapter in ("middleware", "middleware_per_call"):
            middleware = GuardrailsMiddleware(
                self.guard,
                actions=actions,
                interrupt="per_call" if self.adapter == "middleware_per_call" else "batched",
            )
            self.graph = create_agent(
                self.model, tools, middleware=[middleware], checkpointer=self.saver
            )
        elif self.adapter == "guard_node":
            self.graph = self._guard_node_graph(tools, actions)
        elif self.adapter == "tool_node":
            self.graph = self._loop_graph(guarded_tool_node(tools, self.guard, actions=actions))
        elif self.adapter == "guarded":
            self.graph = self._loop_graph(ToolNode(tools))
        else:
            raise AssertionError(f"harness: unknown adapter {self.adapter}")

    # -- graphs

    def _model_node(self) -> Any:
        model = self.model
        if self.mode == "sync":

            def call_model(state: State) -> dict[str, Any]:
                return {"messages": [model.invoke(state["messages"])]}

            return call_model

        async def acall_model(state: State) -> dict[str, Any]:
            return {"messages": [await model.ainvoke(state["messages"])]}

        return acall_model

    def _loop_graph(self, tools_node: Any) -> Any:
        def route(state: State) -> str:
            last = state["messages"][-1]
            return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

        builder = StateGraph(State)
        builder.add_node("model", self._model_node())
        builder.add_node("tools", tools_node)
        builder.add_edge(START, "model")
        builder.add_conditional_edges("model", route, ["tools", END])
        builder.add_edge("tools", "model")
        return builder.compile(checkpointer=self.saver)

    def _guard_node_graph(self, tools: list[BaseTool], actions: dict[str, str]) -> Any:
        node = GuardNode(self.guard, actions=actions, tools=tools)
        builder = StateGraph(State)
        builder.add_node("model", self._model_node())
        builder.add_node("guard", node, destinations=("tools", "model", END))
        builder.add_node("tools", node.tool_node(tools))
        builder.add_edge(START, "model")
        builder.add_edge("model", "guard")
        builder.add_edge("tools", "model")
        return builder.compile(checkpointer=self.saver)

    # -- driving

    def _await(self, coro: Any) -> Any:
        assert self.loop is not None, "harness: async mode needs the test's event loop"
        return self.loop.run_until_complete(coro)

    def _invoke(self, value: Any, config: Any, context: Any) -> None:
        kwargs: dict[str, Any] = {"version": "v2"}
        if self.durability is not None:
            kwargs["durability"] = self.durability
        if context is not None:
            kwargs["context"] = context
        if self.mode == "sync":
            self.graph.invoke(value, config, **kwargs)
        else:
            self._await(self.graph.ainvoke(value, config, **kwargs))

    def config(self, thread: str, approver: bool = False, **configurable: Any) -> Any:
        extra = {"approver": dict(APPROVER)} if approver else {}
        return {"configurable": {"thread_id": thread, **configurable, **extra}}

    def state(self, thread: str) -> Run:
        config = self.config(thread)
        if self.mode == "sync":
            snap = self.graph.get_state(config)
        else:
            snap = self._await(self.graph.aget_state(config))
        messages = list((snap.values or {}).get("messages") or [])
        return Run(messages, asks_of(snap.interrupts))

    def start(
        self,
        thread: str,
        *calls: tuple[str, Mapping[str, Any]],
        context: Any = None,
        **configurable: Any,
    ) -> Run:
        """Run one conversation: the model asks for ``calls``; stops at the end or at the
        first pending approval."""
        self.model.script(f"go {thread}", tool_calls(*calls))
        value = {"messages": [HumanMessage(content=f"go {thread}")]}
        self._invoke(value, self.config(thread, **configurable), context)
        return self.state(thread)

    def start_many(
        self, conversations: Sequence[tuple[str, tuple[str, Mapping[str, Any]]]]
    ) -> None:
        """Run one-call conversations at the same time: on threads (``invoke``) or as
        concurrent tasks on the test's loop (``ainvoke``)."""
        for thread, call in conversations:
            self.model.script(f"go {thread}", tool_calls(call))

        def value(thread: str) -> Any:
            return {"messages": [HumanMessage(content=f"go {thread}")]}

        if self.mode == "sync":
            barrier = threading.Barrier(len(conversations))

            def one(thread: str) -> None:
                barrier.wait(timeout=30)
                self.graph.invoke(value(thread), self.config(thread), version="v2")

            with ThreadPoolExecutor(len(conversations)) as pool:
                for done in [pool.submit(one, t) for t, _ in conversations]:
                    done.result()
            return

        async def all_at_once() -> None:
            await asyncio.gather(
                *(
                    self.graph.ainvoke(value(t), self.config(t), version="v2")
                    for t, _ in conversations
                )
            )

        self._await(all_at_once())

    def resume(self, thread: str, value: Any, context: Any = None, **configurable: Any) -> Run:
        """Continue ``thread`` with ``value`` (``None``: re-run what was pending), the
        approver named in the resuming call's config."""
        self._invoke(value, self.config(thread, approver=True, **configurable), context)
        return self.state(thread)

    def answer(
        self, thread: str, verdict: Verdict, context: Any = None, **configurable: Any
    ) -> Run:
        """Answer every pending ask of ``thread`` once, with ``verdict(ask)``."""
        asks = self.state(thread).asks
        assert asks, "harness: nothing to answer"
        return self.resume(
            thread, Command(resume=resume_map(asks, verdict)), context, **configurable
        )

    def settle(
        self, thread: str, verdict: Verdict, context: Any = None, rounds: int = 8, **cfg: Any
    ) -> Run:
        """Answer until nothing is pending (a ToolNode task asks one question per run)."""
        run = self.state(thread)
        for _ in range(rounds):
            if not run.asks:
                return run
            run = self.answer(thread, verdict, context, **cfg)
        raise AssertionError(f"still asking after {rounds} answers: {run.asks}")


# ---------------------------------------------------------------------------- a store going down


class DownStore:
    """A test double for the store protocol: delegates every method to ``real`` and raises
    ``StoreUnavailable("down")`` from each while ``down`` is set."""

    def __init__(self, real: Store) -> None:
        self._real = real
        self.url: str = real.url
        self.down = False

    def _gate(self) -> None:
        if self.down:
            raise StoreUnavailable("down")

    def __getattr__(self, name: str) -> Any:
        # Anything the protocol may grow (async twins ...) is delegated and gated too.
        attr = getattr(self._real, name)
        if name.startswith("_") or not callable(attr):
            return attr
        if inspect.iscoroutinefunction(attr):

            async def gated_async(*args: Any, **kwargs: Any) -> Any:
                self._gate()
                return await attr(*args, **kwargs)

            return gated_async

        def gated(*args: Any, **kwargs: Any) -> Any:
            self._gate()
            return attr(*args, **kwargs)

        return gated

    def snapshot(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.snapshot(*args, **kwargs)

    def reserve(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.reserve(*args, **kwargs)

    def reserve_many(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.reserve_many(*args, **kwargs)

    def start(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.start(*args, **kwargs)

    def finish(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.finish(*args, **kwargs)

    def release(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.release(*args, **kwargs)

    def append_audit(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.append_audit(*args, **kwargs)

    def call_record(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.call_record(*args, **kwargs)

    def in_doubt(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.in_doubt(*args, **kwargs)

    def open_calls(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.open_calls(*args, **kwargs)

    def counters(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.counters(*args, **kwargs)

    def get_level(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.get_level(*args, **kwargs)

    def set_level(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.set_level(*args, **kwargs)

    def level_history(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.level_history(*args, **kwargs)

    def set_kill_switch(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.set_kill_switch(*args, **kwargs)

    def kill_switches(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.kill_switches(*args, **kwargs)

    def save_pack(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.save_pack(*args, **kwargs)

    def activate_pack(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.activate_pack(*args, **kwargs)

    def active_pack(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.active_pack(*args, **kwargs)

    def pack_versions(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.pack_versions(*args, **kwargs)

    def record_outcome(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.record_outcome(*args, **kwargs)

    def outcomes(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.outcomes(*args, **kwargs)

    def audit_records(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.audit_records(*args, **kwargs)

    def find_audit(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.find_audit(*args, **kwargs)

    def verify_audit(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.verify_audit(*args, **kwargs)

    def close(self, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return self._real.close(*args, **kwargs)


# ---------------------------------------------------------------------------- soft checks


class Checks:
    """Collects every broken expectation of a cell, so a failure lists them all."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            self.problems.append(what)
        return ok

    def verify(self) -> None:
        if self.problems:
            raise AssertionError("; ".join(self.problems))


@contextlib.contextmanager
def no_exception(checks: Checks, what: str) -> Iterator[None]:
    """An exception that reaches the caller fails the cell, listed with what else broke."""
    try:
        yield
    except Exception as exc:  # the promise is that none reaches the caller
        checks.problems.append(f"{what} raised {type(exc).__name__}: {exc}"[:600])
        raise AssertionError("; ".join(checks.problems)) from exc


class Watch:
    """Polls ``store``'s budget counters on a thread while the block runs: the highest
    single counter value seen (checks that no moment shows an overspend)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.highest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                values = self.store.counters("budget:").values()
                self.highest = max([self.highest, *values])
            self._stop.wait(0.003)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(Exception):
            self.highest = max([self.highest, *self.store.counters("budget:").values()])
