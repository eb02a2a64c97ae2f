"""GuardrailsMiddleware end to end, in its per-call interrupt mode (``interrupt="per_call"``;
the default batched mode is in test_middleware_batched.py and the conformance matrix).

Every test runs twice, through ``invoke`` and through ``ainvoke`` (the ``mode`` fixture), so
the sync and async hooks are held to the same behaviour."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware.human_in_the_loop import ToolApprovalRequest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from pydantic import TypeAdapter, ValidationError

from agent_guardrails import Guardrails, PolicyPack, Scope, guarded
from agent_guardrails.adapters.middleware import GuardrailsMiddleware
from agent_guardrails.adapters.tools import Bindings
from agent_guardrails.ops.operations import apply_pack

PACK = """
name: mw
version: "7"
defaults: {level: execute}
actions:
  crm.tag: {risk: low, cost: 30}
  email.send:
    sensitive: true
    cost: 1
    approval: {roles: [marketing_ops]}
    validators:
      - banned_terms: {terms: [guaranteed], fields: [subject]}
  page.publish: {risk: high, approval: {roles: [brand], allowed_decisions: [approve, reject]}}
budgets:
  - {name: daily, limit: 100, window: day}
levels:
  - {scope: {workflow: drafts}, level: assist}
"""

OPS = {"approver": {"id": "ana", "roles": ["marketing_ops", "brand"]}}
ASYNC = False  # set for each test by the ``mode`` fixture


@pytest.fixture(autouse=True, params=["sync", "async"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(sys.modules[__name__], "ASYNC", request.param == "async")
    return str(request.param)


class Driven:
    """A compiled agent whose ``invoke`` runs it with ``invoke`` or ``ainvoke``, per mode."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph

    def invoke(self, value: Any, config: Any, **kwargs: Any) -> Any:
        if ASYNC:
            return asyncio.run(self.graph.ainvoke(value, config, **kwargs))
        return self.graph.invoke(value, config, **kwargs)

    def get_state(self, config: Any) -> Any:
        return self.graph.get_state(config)


class ScriptedModel(GenericFakeChatModel):
    """A chat model that answers from a script and ignores tool binding."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedModel:
        return self


def calls(*items: tuple[str, dict[str, Any]]) -> AIMessage:
    return AIMessage(
        content="",
        tool_calls=[{"name": n, "args": a, "id": f"call-{i}"} for i, (n, a) in enumerate(items)],
    )


class Tools:
    """Tools that count their own invocations."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, dict[str, Any]]] = []
        runs = self.runs

        @tool
        def send_email(to: str, subject: str) -> str:
            """Send an email."""
            runs.append(("send_email", {"to": to, "subject": subject}))
            return f"sent to {to}"

        @tool
        def tag_contact(contact: str) -> str:
            """Tag a contact."""
            runs.append(("tag_contact", {"contact": contact}))
            return f"tagged {contact}"

        @tool
        def publish_page(title: str) -> str:
            """Publish a page."""
            runs.append(("publish_page", {"title": title}))
            return f"published {title}"

        self.all: list[BaseTool] = [send_email, tag_contact, publish_page]


ACTIONS = {"send_email": "email.send", "tag_contact": "crm.tag", "publish_page": "page.publish"}


@pytest.fixture
def guard() -> Guardrails:
    return Guardrails(PolicyPack.from_yaml(PACK), store="memory://")


@pytest.fixture
def tools() -> Tools:
    return Tools()


def agent(guard: Guardrails, tools: Tools, *script: AIMessage) -> Any:
    model = ScriptedModel(messages=iter([*script, AIMessage(content="done")]))
    return Driven(
        create_agent(
            model,
            tools.all,
            middleware=[GuardrailsMiddleware(guard, actions=ACTIONS, interrupt="per_call")],
            checkpointer=InMemorySaver(),
        )
    )


def cfg(thread: str, **configurable: Any) -> Any:
    return {"configurable": {"thread_id": thread, **configurable}}


def tool_messages(result: Any) -> dict[str, ToolMessage]:
    messages: list[BaseMessage] = result.value["messages"]
    return {m.tool_call_id: m for m in messages if isinstance(m, ToolMessage)}


def kinds(guard: Guardrails, kind: str) -> list[str | None]:
    return [r.call_key for r in guard.store.audit_records() if r.kind == kind]


def test_allowed_call_runs_once_and_is_charged(guard: Guardrails, tools: Tools) -> None:
    a = agent(guard, tools, calls(("tag_contact", {"contact": "c1"})))
    result = a.invoke({"messages": [("user", "tag c1")]}, cfg("t1"), version="v2")
    assert tool_messages(result)["call-0"].content == "tagged c1"
    assert tools.runs == [("tag_contact", {"contact": "c1"})]
    assert sum(guard.store.counters("budget:").values()) == 30
    assert len(kinds(guard, "execution.finished")) == 1


def test_assist_level_returns_a_draft_and_runs_nothing(guard: Guardrails, tools: Tools) -> None:
    a = agent(guard, tools, calls(("tag_contact", {"contact": "c1"})))
    result = a.invoke({"messages": [("user", "x")]}, cfg("t1", workflow="drafts"), version="v2")
    message = tool_messages(result)["call-0"]
    body = json.loads(str(message.content))
    assert body["status"] == "simulated"
    assert body["draft"]["intended_action"] == "crm.tag"
    assert message.status == "success"
    assert tools.runs == []


def test_validator_denial_comes_back_as_an_error_message(guard: Guardrails, tools: Tools) -> None:
    a = agent(guard, tools, calls(("send_email", {"to": "c1", "subject": "Guaranteed!"})))
    result = a.invoke({"messages": [("user", "x")]}, cfg("t1"), version="v2")
    message = tool_messages(result)["call-0"]
    assert message.status == "error"
    assert json.loads(str(message.content))["reasons"] == ["validator_failed:banned_terms"]
    assert tools.runs == []


def interrupted(
    guard: Guardrails, tools: Tools, *items: tuple[str, dict[str, Any]]
) -> tuple[Any, Any]:
    a = agent(guard, tools, calls(*items))
    first = a.invoke({"messages": [("user", "go")]}, cfg("t1"), version="v2")
    return a, first


def test_interrupt_payload_speaks_langchains_dialect(guard: Guardrails, tools: Tools) -> None:
    _, first = interrupted(guard, tools, ("send_email", {"to": "c1", "subject": "Hi"}))
    (pending,) = first.interrupts
    value = pending.value
    TypeAdapter(ToolApprovalRequest).validate_python(value)
    assert value["type"] == "tool_approval"
    assert (value["tool_call_id"], value["name"], value["args"]) == (
        "call-0",
        "send_email",
        {"to": "c1", "subject": "Hi"},
    )
    details = value["guardrails"]
    assert details["reasons"] == ["approval_required:sensitive"]
    assert (details["level"], details["pack_version"], details["estimated_cost"]) == (1, "7", 1.0)
    assert details["roles"] == ["marketing_ops"]
    assert details["budget_left"] == 99.0


def test_approve_runs_exactly_once_without_double_reservation(
    guard: Guardrails, tools: Tools
) -> None:
    a, first = interrupted(guard, tools, ("send_email", {"to": "c1", "subject": "Hi"}))
    assert tools.runs == []
    (pending,) = first.interrupts
    result = a.invoke(
        Command(resume={pending.id: {"type": "approve"}}), cfg("t1", **OPS), version="v2"
    )
    assert tool_messages(result)["call-0"].content == "sent to c1"
    assert tools.runs == [("send_email", {"to": "c1", "subject": "Hi"})]
    assert sum(guard.store.counters("budget:").values()) == 1.0
    assert len(kinds(guard, "decision")) == 1
    assert len(kinds(guard, "execution.started")) == 1
    resolved = [r.data for r in guard.store.audit_records() if r.kind == "approval.resolved"]
    assert [(d["answer"], d["by"]) for d in resolved] == [("approve", "ana")]
    assert guard.store.verify_audit().ok


@pytest.mark.parametrize(
    ("answer", "status", "content"),
    [
        ({"type": "reject", "message": "not today"}, "error", "not today"),
        ({"type": "respond", "message": "Ana will call them."}, "success", "Ana will call them."),
    ],
)
def test_reject_and_respond_do_not_run_the_tool(
    guard: Guardrails, tools: Tools, answer: dict[str, str], status: str, content: str
) -> None:
    a, first = interrupted(guard, tools, ("send_email", {"to": "c1", "subject": "Hi"}))
    (pending,) = first.interrupts
    result = a.invoke(Command(resume={pending.id: answer}), cfg("t1", **OPS), version="v2")
    message = tool_messages(result)["call-0"]
    assert message.status == status
    assert content in str(message.content)
    assert tools.runs == []
    assert sum(guard.store.counters("budget:").values()) == 0


def test_edit_is_rechecked_and_runs_with_the_edited_args(guard: Guardrails, tools: Tools) -> None:
    a, first = interrupted(guard, tools, ("send_email", {"to": "c1", "subject": "Hi"}))
    (pending,) = first.interrupts
    edit = {
        "type": "edit",
        "edited_action": {"name": "send_email", "args": {"to": "c2", "subject": "Hello"}},
    }
    result = a.invoke(Command(resume={pending.id: edit}), cfg("t1", **OPS), version="v2")
    assert tool_messages(result)["call-0"].content == "sent to c2"
    assert tools.runs == [("send_email", {"to": "c2", "subject": "Hello"})]


def test_an_edit_that_breaks_a_validator_is_denied(guard: Guardrails, tools: Tools) -> None:
    a, first = interrupted(guard, tools, ("send_email", {"to": "c1", "subject": "Hi"}))
    (pending,) = first.interrupts
    edit = {
        "type": "edit",
        "edited_action": {"name": "send_email", "args": {"to": "c1", "subject": "guaranteed"}},
    }
    result = a.invoke(Command(resume={pending.id: edit}), cfg("t1", **OPS), version="v2")
    body = json.loads(str(tool_messages(result)["call-0"].content))
    assert body["reasons"] == ["validator_failed:banned_terms"]
    assert tools.runs == []


def test_an_edit_that_renames_the_tool_is_refused_and_the_call_stays_pending(
    guard: Guardrails, tools: Tools
) -> None:
    a, first = interrupted(guard, tools, ("send_email", {"to": "c1", "subject": "Hi"}))
    (pending,) = first.interrupts
    rename = {"type": "edit", "edited_action": {"name": "tag_contact", "args": {"contact": "c1"}}}
    with pytest.raises(ValidationError):
        a.invoke(Command(resume={pending.id: rename}), cfg("t1", **OPS), version="v2")
    assert tools.runs == []
    state = a.get_state(cfg("t1"))
    assert [i.id for i in state.interrupts] == [pending.id]
    result = a.invoke(
        Command(resume={pending.id: {"type": "approve"}}), cfg("t1", **OPS), version="v2"
    )
    assert tool_messages(result)["call-0"].content == "sent to c1"
    assert len(tools.runs) == 1


@pytest.mark.parametrize(
    "resume",
    [{"type": "maybe"}, {"decisions": [{"type": "approve"}]}, "yes", {"type": "edit"}],
)
def test_malformed_resume_values_are_refused(guard: Guardrails, tools: Tools, resume: Any) -> None:
    a, first = interrupted(guard, tools, ("send_email", {"to": "c1", "subject": "Hi"}))
    (pending,) = first.interrupts
    with pytest.raises(ValidationError):
        a.invoke(Command(resume={pending.id: resume}), cfg("t1", **OPS), version="v2")
    assert tools.runs == []
    assert [i.id for i in a.get_state(cfg("t1")).interrupts] == [pending.id]


def test_a_decision_the_action_does_not_allow_is_refused(guard: Guardrails, tools: Tools) -> None:
    a, first = interrupted(guard, tools, ("publish_page", {"title": "Sale"}))
    (pending,) = first.interrupts
    with pytest.raises(ValidationError):
        a.invoke(
            Command(resume={pending.id: {"type": "respond", "message": "x"}}),
            cfg("t1", **OPS),
            version="v2",
        )
    assert tools.runs == []


@pytest.mark.parametrize(
    "identity",
    [
        {},  # nobody named in the resuming caller's context
        {"approver": {"id": "mallory", "roles": ["intern"]}},
    ],
)
def test_a_forged_or_missing_approver_is_refused(
    guard: Guardrails, tools: Tools, identity: dict[str, Any]
) -> None:
    a, first = interrupted(guard, tools, ("send_email", {"to": "c1", "subject": "Hi"}))
    (pending,) = first.interrupts
    result = a.invoke(
        Command(resume={pending.id: {"type": "approve"}}), cfg("t1", **identity), version="v2"
    )
    body = json.loads(str(tool_messages(result)["call-0"].content))
    want = "approver_not_authorized" if identity else "approver_unknown"
    assert body["reasons"] == [want]
    assert tools.runs == []
    assert sum(guard.store.counters("budget:").values()) == 0


def test_an_answer_given_under_an_older_pack_version_is_refused(
    guard: Guardrails, tools: Tools
) -> None:
    """An approval binds to the pack version it was asked under: a run resumed after the
    pack moved on does not run the call on the old answer."""
    saver = InMemorySaver()

    def build(g: Guardrails, *script: AIMessage) -> Any:
        model = ScriptedModel(messages=iter([*script, AIMessage(content="done")]))
        middleware = [GuardrailsMiddleware(g, actions=ACTIONS, interrupt="per_call")]
        return Driven(create_agent(model, tools.all, middleware=middleware, checkpointer=saver))

    old = build(guard, calls(("send_email", {"to": "c1", "subject": "Hi"})))
    first = old.invoke({"messages": [("user", "go")]}, cfg("t1"), version="v2")
    (pending,) = first.interrupts
    assert pending.value["guardrails"]["pack_version"] == "7"
    newer = Guardrails(PolicyPack.from_yaml(PACK.replace('"7"', '"8"')), store=guard.store)
    result = build(newer).invoke(
        Command(resume={pending.id: {"type": "approve"}}), cfg("t1", **OPS), version="v2"
    )
    message = tool_messages(result)["call-0"]
    body = json.loads(str(message.content))
    assert (message.status, body["reasons"]) == ("error", ["approval_stale"])
    assert "version 7" in body["message"]
    assert "now version 8" in body["message"]
    assert tools.runs == []
    assert sum(guard.store.counters("budget:").values()) == 0
    resolved = [r.data for r in guard.store.audit_records() if r.kind == "approval.resolved"]
    assert [d["refused"].split(":")[0] for d in resolved] == ["approval_stale"]


def test_parallel_calls_with_mixed_decisions_resume_independently(
    guard: Guardrails, tools: Tools
) -> None:
    a, first = interrupted(
        guard,
        tools,
        ("tag_contact", {"contact": "c1"}),
        ("send_email", {"to": "c1", "subject": "Hi"}),
        ("send_email", {"to": "c2", "subject": "guaranteed"}),
        ("publish_page", {"title": "Sale"}),
    )
    names = sorted(i.value["name"] for i in first.interrupts)
    assert names == ["publish_page", "send_email"]
    assert tools.runs == [("tag_contact", {"contact": "c1"})]
    answers = {
        i.id: ({"type": "approve"} if i.value["name"] == "publish_page" else {"type": "reject"})
        for i in first.interrupts
    }
    result = a.invoke(Command(resume=answers), cfg("t1", **OPS), version="v2")
    messages = tool_messages(result)
    assert messages["call-0"].content == "tagged c1"
    assert messages["call-1"].status == "error"
    assert json.loads(str(messages["call-2"].content))["status"] == "denied"
    assert messages["call-3"].content == "published Sale"
    assert sorted(name for name, _ in tools.runs) == ["publish_page", "tag_contact"]
    assert len(kinds(guard, "execution.started")) == 2


def test_parallel_calls_cannot_overspend_the_budget(guard: Guardrails, tools: Tools) -> None:
    a = agent(guard, tools, calls(*[("tag_contact", {"contact": f"c{i}"}) for i in range(5)]))
    result = a.invoke({"messages": [("user", "x")]}, cfg("t1"), version="v2")
    statuses = [m.status for m in tool_messages(result).values()]
    assert statuses.count("success") == 3  # 3 x 30 fits in 100; the 4th would be 120
    assert len(tools.runs) == 3
    assert sum(guard.store.counters("budget:").values()) == 90


def test_kill_switch_engaged_between_calls_ends_the_run(guard: Guardrails, tools: Tools) -> None:
    model_turns: list[int] = []

    @tool
    def tag_and_panic(contact: str) -> str:
        """Tag, then an operator pulls the kill-switch."""
        guard.kill(Scope(), by="ops", reason="test")
        return "tagged"

    script = iter(
        [
            AIMessage(
                content="",
                tool_calls=[{"name": "tag_and_panic", "args": {"contact": "c1"}, "id": "a"}],
            ),
            AIMessage(
                content="",
                tool_calls=[{"name": "tag_contact", "args": {"contact": "c2"}, "id": "b"}],
            ),
            AIMessage(content="should not be reached"),
        ]
    )

    def turns() -> Iterator[AIMessage]:
        for message in script:
            model_turns.append(1)
            yield message

    model = ScriptedModel(messages=turns())
    a = Driven(
        create_agent(
            model,
            [tag_and_panic, *tools.all],
            middleware=[
                GuardrailsMiddleware(
                    guard, actions={**ACTIONS, "tag_and_panic": "crm.tag"}, interrupt="per_call"
                )
            ],
            checkpointer=InMemorySaver(),
        )
    )
    result = a.invoke({"messages": [("user", "go")]}, cfg("t1"), version="v2")
    *_, halted, last = result.value["messages"]
    assert isinstance(halted, ToolMessage)
    assert json.loads(str(halted.content))["reasons"] == ["kill_switch:global"]
    assert last.content == guard.policy.kill_switch.message  # the run ends with a message
    assert tools.runs == []
    assert len(model_turns) == 2  # the model is not asked again after the halt


def test_kill_switch_can_raise_instead(tools: Tools) -> None:
    from agent_guardrails import KillSwitchEngaged

    raising = Guardrails(
        PolicyPack.from_yaml(PACK + "kill_switch: {on_halt: raise}\n"), store="memory://"
    )

    def turns() -> Iterator[AIMessage]:
        yield calls(("tag_contact", {"contact": "c1"}))
        raising.kill(Scope(), by="ops", reason="test")  # between the two tool calls
        yield calls(("tag_contact", {"contact": "c2"}))
        yield AIMessage(content="should not be reached")

    a = Driven(
        create_agent(
            ScriptedModel(messages=turns()),
            tools.all,
            middleware=[GuardrailsMiddleware(raising, actions=ACTIONS, interrupt="per_call")],
            checkpointer=InMemorySaver(),
        )
    )
    with pytest.raises(KillSwitchEngaged):
        a.invoke({"messages": [("user", "x")]}, cfg("t1"), version="v2")
    assert tools.runs == [("tag_contact", {"contact": "c1"})]


def test_guarded_tool_under_the_middleware_is_guarded_once(guard: Guardrails) -> None:
    runs: list[str] = []

    @tool
    @guarded(action="crm.tag", guardrails=guard)
    def tag(contact: str) -> str:
        """Tag a contact."""
        runs.append(contact)
        return "ok"

    model = ScriptedModel(
        messages=iter([calls(("tag", {"contact": "c1"})), AIMessage(content="done")])
    )
    a = Driven(
        create_agent(
            model,
            [tag],
            middleware=[GuardrailsMiddleware(guard, interrupt="per_call")],
            checkpointer=InMemorySaver(),
        )
    )
    a.invoke({"messages": [("user", "x")]}, cfg("t1"), version="v2")
    assert runs == ["c1"]
    assert len(kinds(guard, "decision")) == 1
    assert sum(guard.store.counters("budget:").values()) == 30  # charged once, not twice


def test_a_tool_is_bound_again_under_a_new_pack_or_a_new_tool_object() -> None:
    """An adapter works a tool's binding out once, and again when the pack in force or the
    tool object changes: a tool bound by its name only once the pack has that action."""
    bindings = Bindings({"send_email": "email.send"})
    v1 = PolicyPack.from_yaml(PACK)
    v2 = PolicyPack.from_yaml(PACK.replace("  crm.tag:", "  ping: {}\n  crm.tag:"))
    assert bindings.of("ping", None, v1).action is None
    assert bindings.of("ping", None, v2).action == "ping"
    assert bindings.of("ping", None, v1).action is None

    @tool
    def ping() -> str:
        """Ping."""
        return "pong"

    marked = ping.model_copy(update={"metadata": {"guardrails_action": "crm.tag"}})
    assert bindings.of("ping", ping, v1).action is None
    assert bindings.of("ping", marked, v1).action == "crm.tag"
    assert bindings.of("send_email", marked, v1).action == "email.send"  # the mapping wins


def test_model_calls_are_charged_from_the_call_after_a_priced_pack_takes_effect(
    guard: Guardrails,
) -> None:
    """Without ``model_prices`` a model call is not charged; a pack that prices models,
    applied while the agent runs, is followed at the next tool call, and every model call
    after that is charged (the hook reads the pack in force at each call)."""
    priced = PACK.replace('"7"', '"8"') + (
        "model_prices:\n  ScriptedModel: {input_per_1k: 100, output_per_1k: 100}\n"
    )

    @tool
    def tag_contact(contact: str) -> str:
        """Tag a contact."""
        if contact == "c1":
            apply_pack(guard.store, priced, by="ops")  # from elsewhere, mid-run
        return f"tagged {contact}"

    def turn(i: int) -> AIMessage:
        return AIMessage(
            content="",
            tool_calls=[{"name": "tag_contact", "args": {"contact": f"c{i}"}, "id": f"x{i}"}],
            usage_metadata={"input_tokens": 4, "output_tokens": 2, "total_tokens": 6},
        )

    model = ScriptedModel(messages=iter([turn(1), turn(2), turn(3), AIMessage(content="ok")]))
    middleware = [GuardrailsMiddleware(guard, actions=ACTIONS, interrupt="per_call")]
    a = Driven(create_agent(model, [tag_contact], middleware=middleware))
    a.invoke({"messages": [("user", "x")]}, None, version="v2")
    assert guard.policy.version == "8"
    # Three tool calls (30 each); model calls 1 and 2 ran under the unpriced pack in hand,
    # the second tool call followed the new pack, so model call 3 costs 0.6 (the last
    # answer reports no tokens).
    assert sum(guard.store.counters("budget:").values()) == pytest.approx(90 + 0.6)


def test_model_spend_counts_against_budgets_and_stops_the_run(tools: Tools) -> None:
    pack = PolicyPack.from_yaml(
        PACK.replace(
            "{name: daily, limit: 100, window: day}", "{name: daily, limit: 0.5, window: day}"
        )
        + "model_prices:\n  ScriptedModel: {input_per_1k: 100, output_per_1k: 100}\n"
    )
    g = Guardrails(pack, store="memory://")
    priced = AIMessage(
        content="",
        tool_calls=[{"name": "tag_contact", "args": {"contact": "c1"}, "id": "x"}],
        usage_metadata={"input_tokens": 4, "output_tokens": 2, "total_tokens": 6},
    )
    model = ScriptedModel(messages=iter([priced, AIMessage(content="never")]))
    a = Driven(
        create_agent(
            model,
            tools.all,
            middleware=[GuardrailsMiddleware(g, actions=ACTIONS, interrupt="per_call")],
            checkpointer=InMemorySaver(),
        )
    )
    result = a.invoke({"messages": [("user", "x")]}, cfg("t1"), version="v2")
    assert sum(g.store.counters("budget:").values()) == pytest.approx(0.6)
    final = result.value["messages"][-1]
    assert "budget daily is spent" in str(final.content)
    assert tools.runs == []  # the tool call (30) did not fit in what the model left
