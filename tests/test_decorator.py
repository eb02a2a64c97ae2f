"""``@guarded`` on functions and LangChain tools, sync and async, in both orders with @tool."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import pytest
from langchain.tools import ToolRuntime
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, InjectedToolCallId, tool
from pydantic import BaseModel

from agent_guardrails import (
    ConfigurationError,
    GuardrailResult,
    Guardrails,
    PolicyPack,
    Scope,
    ValidatorFailed,
    guarded,
    set_default_guardrails,
    use_guardrails,
)
from agent_guardrails.adapters.decorator import _schema
from agent_guardrails.pipeline import edits
from agent_guardrails.store import MemoryStore
from tests.conftest import NOON_WEDNESDAY, pack_text

PACK = pack_text(
    """
    defaults: {level: execute}
    actions:
      email.send:
        risk: low
        cost: 1
        validators:
          - banned_terms: {terms: [free], fields: [subject]}
    levels:
      - {scope: {workflow: drafts}, level: assist}
      - {scope: {channel: sms}, level: assist}
      - {scope: {workflow: drafts, channel: sms}, level: assist}
    budgets:
      - {name: daily, limit: 1000}
    """
)


def make_guard(**kwargs: Any) -> Guardrails:
    return Guardrails(
        PolicyPack.from_yaml(PACK), store=MemoryStore(), clock=lambda: NOON_WEDNESDAY, **kwargs
    )


def calls_seen(guard: Guardrails) -> int:
    """How many calls this guard ran (each also spends 1 of its store's budget)."""
    assert isinstance(guard.store, MemoryStore)
    ran = sum(1 for r in guard.store.audit_records() if r.kind == "execution.finished")
    assert sum(guard.store.counters("budget:").values()) == ran
    return ran


@pytest.fixture(autouse=True)
def _no_default_guardrails() -> Iterator[None]:
    set_default_guardrails(None)
    yield
    set_default_guardrails(None)


# ----------------------------------------------------------------------------- the six shapes

Sent = list[tuple[str, str]]  # (to, subject) of every email the body sent
Shape = tuple[Any, bool, bool]  # (guarded object, is a tool, is async)


def build(shape: str, guard: Guardrails, sent: Sent, **options: Any) -> Shape:
    """The same email tool in one of six shapes, appending to ``sent`` when its body runs."""

    def send_email(to: str, subject: str = "Hello") -> str:
        """Send one marketing email."""
        sent.append((to, subject))
        return f"sent to {to}"

    async def send_email_async(to: str, subject: str = "Hello") -> str:
        """Send one marketing email."""
        await asyncio.sleep(0)
        sent.append((to, subject))
        return f"sent to {to}"

    send_email_async.__name__ = "send_email"
    fn: Callable[..., Any] = send_email_async if shape.endswith("async") else send_email
    guard_it = guarded(action="email.send", guardrails=guard, **options)
    if shape.startswith("function"):
        return guard_it(fn), False, shape.endswith("async")
    if shape.startswith("tool_over_guarded"):
        return tool(guard_it(fn)), True, shape.endswith("async")
    return guard_it(tool(fn)), True, shape.endswith("async")


SHAPES = [
    "function-sync",
    "function-async",
    "tool_over_guarded-sync",
    "tool_over_guarded-async",
    "guarded_over_tool-sync",
    "guarded_over_tool-async",
]


def call(shape: Shape, **args: Any) -> Any:
    target, is_tool, is_async = shape
    if is_tool:
        assert isinstance(target, BaseTool)
        return asyncio.run(target.ainvoke(args)) if is_async else target.invoke(args)
    return asyncio.run(target(**args)) if is_async else target(**args)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_guarded_tool_runs_at_execute(shape: str) -> None:
    guard, sent = make_guard(), Sent()
    assert call(build(shape, guard, sent), to="a@example.com") == "sent to a@example.com"
    assert sent == [("a@example.com", "Hello")]
    assert calls_seen(guard) == 1


@pytest.mark.parametrize("shape", SHAPES)
def test_level_0_never_runs_a_side_effect(shape: str) -> None:
    guard, sent = make_guard(), Sent()
    guard.set_level(Scope(), "assist", by="test", reason="level 0")
    result = call(build(shape, guard, sent), to="a@example.com", subject="Hi")
    assert sent == []
    assert result["status"] == "simulated"
    assert result["level"] == 0
    assert result["draft"]["args"] == {"to": "a@example.com", "subject": "Hi"}
    assert result["draft"]["tool"] == "send_email"
    assert calls_seen(guard) == 0


@pytest.mark.parametrize("shape", SHAPES)
def test_simulate_gives_the_draft(shape: str) -> None:
    guard, sent = make_guard(), Sent()

    def preview(to: str, subject: str = "Hello") -> dict[str, str]:
        return {"preview": f"{subject} -> {to}"}

    target = build(shape, guard, sent, simulate=preview, scope={"workflow": "drafts"})
    result = call(target, to="b@example.com")
    assert result["draft"] == {"preview": "Hello -> b@example.com"}
    assert sent == []


@pytest.mark.parametrize("shape", [s for s in SHAPES if s.endswith("async")])
def test_an_async_simulate_is_awaited_on_the_loop_a_plain_one_runs_off_it(shape: str) -> None:
    """On async paths a plain ``simulate=`` function may block, so it runs on a worker
    thread; an ``async def`` one is awaited on the loop, with no thread hop."""
    guard, sent = make_guard(), Sent()
    threads: list[str] = []

    async def apreview(to: str, subject: str = "Hello") -> dict[str, str]:
        threads.append(threading.current_thread().name)
        await asyncio.sleep(0)
        return {"preview": f"{subject} -> {to}"}

    def preview(to: str, subject: str = "Hello") -> dict[str, str]:
        threads.append(threading.current_thread().name)
        time.sleep(0.001)  # blocking: blockbuster would refuse it on the loop
        return {"preview": f"{subject} -> {to}"}

    for fn in (apreview, preview):
        target = build(shape, guard, sent, simulate=fn, scope={"workflow": "drafts"})
        result = call(target, to="b@example.com")
        assert result["draft"] == {"preview": "Hello -> b@example.com"}
    assert threads[0] == threading.main_thread().name  # asyncio.run's loop is on this thread
    assert threads[1] != threading.main_thread().name
    assert sent == []


@pytest.mark.parametrize("shape", SHAPES)
def test_a_denial_comes_back_as_a_result_or_raises(shape: str) -> None:
    guard, sent = make_guard(), Sent()
    result = call(build(shape, guard, sent), to="c@example.com", subject="free gift")
    assert (result["status"], result["reasons"]) == ("denied", ["validator_failed:banned_terms"])
    with pytest.raises(ValidatorFailed):
        call(build(shape, guard, sent, raise_on_deny=True), to="c", subject="free")
    assert sent == []


@pytest.mark.parametrize("shape", [s for s in SHAPES if not s.startswith("function")])
def test_a_tool_call_from_a_model_gets_a_tool_message(shape: str) -> None:
    guard, sent = make_guard(), Sent()
    target, _, is_async = build(shape, guard, sent)
    assert isinstance(target, BaseTool)

    def invoke(call_id: str) -> ToolMessage:
        tool_call = {"name": "send_email", "args": {"to": "d"}, "id": call_id, "type": "tool_call"}
        message = asyncio.run(target.ainvoke(tool_call)) if is_async else target.invoke(tool_call)
        assert isinstance(message, ToolMessage)
        assert message.tool_call_id == call_id
        return message

    assert invoke("call_1").content == "sent to d"
    guard.set_level(Scope(), "assist", by="test", reason="level 0")
    draft = json.loads(str(invoke("call_2").content))  # the result dict, serialised for the model
    assert (draft["status"], draft["draft"]["args"]) == (
        "simulated",
        {"to": "d", "subject": "Hello"},
    )
    assert sent == [("d", "Hello")]


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.parametrize("order", ["tool_over_guarded", "guarded_over_tool"])
def test_the_tool_looks_the_same_as_its_unguarded_twin(order: str, is_async: bool) -> None:
    guard, sent = make_guard(), Sent()
    shape = f"{order}-{'async' if is_async else 'sync'}"
    guarded_tool, _, _ = build(shape, guard, sent)

    def send_email(to: str, subject: str = "Hello") -> str:
        """Send one marketing email."""
        return to

    async def send_email_async(to: str, subject: str = "Hello") -> str:
        """Send one marketing email."""
        return to

    send_email_async.__name__ = "send_email"
    twin = tool(send_email_async if is_async else send_email)
    assert isinstance(guarded_tool, BaseTool)
    assert guarded_tool.name == twin.name == "send_email"
    assert guarded_tool.description == twin.description == "Send one marketing email."
    assert schema_of(guarded_tool.args_schema) == schema_of(twin.args_schema)
    assert schema_of(guarded_tool.tool_call_schema) == schema_of(twin.tool_call_schema)
    assert schema_of(guarded_tool.args_schema)["required"] == ["to"]
    assert guarded_tool.args == twin.args


def schema_of(model: object) -> dict[str, Any]:
    """The JSON schema of a pydantic model class, as canonical JSON text and back."""
    assert isinstance(model, type)
    assert issubclass(model, BaseModel)
    schema: dict[str, Any] = json.loads(json.dumps(model.model_json_schema(), sort_keys=True))
    return schema


def test_guarded_over_tool_keeps_a_tool_of_the_same_type_and_name_override() -> None:
    guard = make_guard()

    @tool
    def tag_contact(contact: str) -> str:
        """Tag a contact."""
        return contact

    wrapped = guarded(action="email.send", guardrails=guard, name="tagger")(tag_contact)
    assert type(wrapped) is type(tag_contact)
    assert wrapped.name == "tag_contact"  # the model-facing name is unchanged
    assert wrapped is not tag_contact
    assert tag_contact.invoke({"contact": "x"}) == "x"
    guard.set_level(Scope(), 0, by="t", reason="t")
    result = wrapped.invoke({"contact": "c1"})
    assert result["draft"]["tool"] == "tagger"  # the decision uses the name given


# ----------------------------------------------------------------------------- resolution


def test_the_guardrails_are_resolved_explicit_then_current_then_default() -> None:
    explicit, current, default = make_guard(), make_guard(), make_guard()

    @guarded(action="email.send", guardrails=explicit)
    def pinned(to: str) -> str:
        return to

    @guarded(action="email.send")
    def floating(to: str) -> str:
        return to

    set_default_guardrails(default)
    with use_guardrails(current):
        pinned("a")
        floating("b")
    floating("c")
    assert (calls_seen(explicit), calls_seen(current), calls_seen(default)) == (1, 1, 1)


def test_without_any_guardrails_the_call_says_how_to_configure_them() -> None:
    sent: list[str] = []

    @guarded(action="email.send")  # defining the tool needs no Guardrails yet
    def send(to: str) -> None:
        sent.append(to)

    with pytest.raises(ConfigurationError, match="no Guardrails for this @guarded tool") as info:
        send("a")
    for hint in ("guardrails=", "use_guardrails", "set_default_guardrails"):
        assert hint in str(info.value)
    assert sent == []


def test_use_guardrails_reaches_async_tools_too() -> None:
    guard = make_guard()

    @guarded(action="email.send")
    async def send(to: str) -> str:
        return to

    async def main() -> str | GuardrailResult:
        with use_guardrails(guard):
            return await send("a")

    assert asyncio.run(main()) == "a"
    assert calls_seen(guard) == 1


# ----------------------------------------------------------------------------- arguments, scope


def test_arguments_are_bound_like_the_function_would_bind_them() -> None:
    guard, sent = make_guard(), Sent()
    target, _, _ = build("function-sync", guard, sent)
    assert target("a", "Hi") == "sent to a"
    assert target(subject="Yo", to="b") == "sent to b"
    assert sent == [("a", "Hi"), ("b", "Yo")]
    with pytest.raises(TypeError, match="send_email"):
        target()
    with pytest.raises(TypeError, match="send_email"):
        target("a", to="b")
    assert len(sent) == 2


def test_declared_scope_wins_over_arguments() -> None:
    guard = make_guard()
    ran: list[str] = []

    @guarded(action="email.send", guardrails=guard)
    def notify(to: str, channel: str) -> str:
        ran.append(channel)
        return channel

    @guarded(action="email.send", guardrails=guard, scope={"channel": "email"})
    def notify_email(to: str, channel: str) -> str:
        ran.append(channel)
        return channel

    result: Any = notify("a", channel="sms")
    assert result["status"] == "simulated"  # the channel argument puts it at assist
    assert notify("a", channel="email") == "email"
    assert notify_email("a", channel="sms") == "sms"  # the declaration says email: it runs
    assert ran == ["email", "sms"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action": ""}, "needs action="),
        ({"action": "email.send", "scope": {"team": "growth"}}, "unknown dimension"),
    ],
)
def test_bad_decorator_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        guarded(**kwargs)


def test_guarding_twice_or_guarding_a_non_callable_is_an_error() -> None:
    guard = make_guard()

    @guarded(action="email.send", guardrails=guard)
    def send(to: str) -> str:
        return to

    with pytest.raises(ConfigurationError, match="already @guarded"):
        guarded(action="email.send", guardrails=guard)(send)
    with pytest.raises(ConfigurationError, match="applies to functions and LangChain tools"):
        guarded(action="email.send", guardrails=guard)(42)  # type: ignore[call-overload]


# ----------------------------------------------------------------------------- memory store


def test_calls_on_the_memory_store_keep_their_audit_but_no_call_records() -> None:
    guard = make_guard()
    store = guard.store
    assert isinstance(store, MemoryStore)
    in_doubt_while_running: list[list[str]] = []

    @guarded(action="email.send", guardrails=guard)
    def send(to: str, subject: str) -> str:
        in_doubt_while_running.append([r.state for r in store.in_doubt()])
        if subject == "boom":
            raise RuntimeError("the tool failed")
        return to

    for i in range(20):
        assert send(f"c{i}", "hi") == f"c{i}"
    with pytest.raises(RuntimeError):
        send("c20", "boom")
    assert in_doubt_while_running == [["started"]] * 21  # a running call is in doubt
    assert store.in_doubt() == []
    assert store._calls == {}  # calls made outside a graph are not remembered once ended
    assert calls_seen(guard) == 20  # the failed call's budget charge was released
    audit = store.audit_records()
    assert [r.kind for r in audit] == [
        "pack.saved",
        "pack.activated",
        *["decision", "execution.started", "execution.finished"] * 20,
        *["decision", "execution.started", "execution.failed"],
    ]
    assert store.verify_audit().ok


def test_an_edit_is_read_by_the_arguments_a_model_gives() -> None:
    # Parameters LangGraph fills in (a ToolRuntime, an injected tool call id) are not the
    # approver's to give: an edit without them is whole; one without `subject` is not.
    @tool
    def send(to: str, subject: str, runtime: ToolRuntime) -> str:
        """Send."""
        return to

    @tool
    def note(text: str, call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Note."""
        return text

    def plain(to: str, subject: str, call_id: Annotated[str, InjectedToolCallId]) -> str:
        return to

    for schema in (edits.schema_of(send), edits.schema_of(note)):
        assert schema is not None
        assert not set(schema.model_fields) & {"runtime", "call_id"}
    whole = {"to": "a", "subject": "b"}
    assert edits.parse_edit(_schema("plain", plain), whole) == (whole, None)  # call_id: injected
    assert edits.parse_edit(edits.schema_of(send), {"to": "a", "subject": "b"}) == (
        {"to": "a", "subject": "b"},
        None,
    )
    assert edits.parse_edit(edits.schema_of(send), {"to": "a"})[1] == (
        "subject: a required argument is missing (an edit gives them all)"
    )
    assert edits.parse_edit(edits.schema_of(note), {"text": "x"}) == ({"text": "x"}, None)
