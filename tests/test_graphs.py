"""Hand-built StateGraphs: a guarded ToolNode, and @guarded tools run by a plain ToolNode."""

from __future__ import annotations

import asyncio
import functools
import json
import random
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import pytest
from langchain.tools import ToolRuntime
from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, RetryPolicy
from typing_extensions import TypedDict

from agent_guardrails import Guardrails, PolicyPack, guarded
from agent_guardrails.adapters.tool_node import guarded_tool_node
from agent_guardrails.errors import ConfigurationError, KillSwitchEngaged
from tests.store.store_helpers import pg_base, pg_execute, with_schema

PACK = """
name: graphs
version: 1
defaults: {level: execute}
actions:
  email.send: {sensitive: true, cost: 2, approval: {roles: [ops]}}
  crm.tag: {risk: low}
budgets:
  - {limit: 10, window: day}
"""


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def graph(tools_node: Any, saver: Any = None) -> Any:
    """START -> tools -> END: the state arrives holding the model's AI message."""
    builder = StateGraph(State)
    builder.add_node("tools", tools_node)
    builder.add_edge(START, "tools")
    builder.add_edge("tools", END)
    return builder.compile(checkpointer=saver if saver is not None else InMemorySaver())


def ai(*calls: tuple[str, dict[str, Any], str]) -> dict[str, Any]:
    return {
        "messages": [
            AIMessage(content="", tool_calls=[{"name": n, "args": a, "id": i} for n, a, i in calls])
        ]
    }


CFG: Any = {"configurable": {"thread_id": "g1"}}
OPS: Any = {"configurable": {"thread_id": "g1", "approver": {"id": "ana", "roles": ["ops"]}}}


@pytest.fixture
def guard() -> Guardrails:
    return Guardrails(PolicyPack.from_yaml(PACK), store="memory://")


def results(out: Any) -> dict[str, ToolMessage]:
    return {m.tool_call_id: m for m in out.value["messages"] if isinstance(m, ToolMessage)}


def test_guarded_tool_node_pauses_and_resumes_once(guard: Guardrails) -> None:
    runs: list[str] = []

    @tool
    def send_email(to: str) -> str:
        """Send."""
        runs.append(to)
        return f"sent {to}"

    g = graph(guarded_tool_node([send_email], guard, actions={"send_email": "email.send"}))
    first = g.invoke(ai(("send_email", {"to": "c1"}, "k1")), CFG, version="v2")
    (pending,) = first.interrupts
    assert pending.value["guardrails"]["action"] == "email.send"
    assert runs == []
    out = g.invoke(Command(resume={pending.id: {"type": "approve"}}), OPS, version="v2")
    assert results(out)["k1"].content == "sent c1"
    assert runs == ["c1"]
    assert sum(guard.store.counters("budget:").values()) == 2


@pytest.mark.parametrize("over_tool", [True, False], ids=["guarded-over-tool", "tool-over-guarded"])
def test_guarded_tool_in_a_plain_tool_node_interrupts_and_runs_once(
    guard: Guardrails, over_tool: bool
) -> None:
    runs: list[str] = []

    def send_email(to: str) -> str:
        """Send."""
        runs.append(to)
        return f"sent {to}"

    the_tool: BaseTool = (
        guarded(action="email.send", guardrails=guard)(tool(send_email))
        if over_tool
        else tool(guarded(action="email.send", guardrails=guard)(send_email))
    )
    g = graph(ToolNode([the_tool]))
    first = g.invoke(ai(("send_email", {"to": "c1"}, "k1")), CFG, version="v2")
    (pending,) = first.interrupts
    assert pending.value["type"] == "tool_approval"
    assert pending.value["name"] == "send_email"
    out = g.invoke(Command(resume={pending.id: {"type": "approve"}}), OPS, version="v2")
    assert results(out)["k1"].content == "sent c1"
    assert runs == ["c1"]
    assert [r.kind for r in guard.store.audit_records()].count("decision") == 1
    assert sum(guard.store.counters("budget:").values()) == 2


def test_async_guarded_tool_in_a_plain_tool_node(guard: Guardrails) -> None:
    runs: list[str] = []

    @tool
    @guarded(action="email.send", guardrails=guard)
    async def send_email(to: str) -> str:
        """Send."""
        runs.append(to)
        return f"sent {to}"

    async def scenario() -> None:
        g = graph(ToolNode([send_email]))
        first = await g.ainvoke(ai(("send_email", {"to": "c1"}, "k1")), CFG, version="v2")
        (pending,) = first.interrupts
        out = await g.ainvoke(Command(resume={pending.id: {"type": "reject"}}), OPS, version="v2")
        body = json.loads(str(results(out)["k1"].content))
        assert body["status"] == "rejected"

    asyncio.run(scenario())
    assert runs == []
    assert sum(guard.store.counters("budget:").values()) == 0


def test_refusal_status_plain_tool_node_vs_guarded_tool_node() -> None:
    """The README's caveat: LangChain marks a tool's return value ``success``, so a refusal
    by a ``@guarded`` tool in a plain ``ToolNode`` carries that status; the guarded ToolNode
    builds the message itself and marks it ``error``. Both carry the same JSON result."""
    pack = PACK.replace("  crm.tag:", "  crm.big: {risk: low, cost: 11}\n  crm.tag:")
    guard = Guardrails(PolicyPack.from_yaml(pack), store="memory://")

    @tool
    def big_tag(contact: str) -> str:
        """Tag at a cost the day's budget (10) cannot hold."""
        raise AssertionError("a refused call never runs")

    plain = graph(ToolNode([guarded(action="crm.big", guardrails=guard)(big_tag)]))
    ours = graph(guarded_tool_node([big_tag], guard, actions={"big_tag": "crm.big"}))
    call = ("big_tag", {"contact": "c1"}, "k1")
    answers = [
        results(g.invoke(ai(call), {"configurable": {"thread_id": t}}, version="v2"))["k1"]
        for g, t in ((plain, "p"), (ours, "n"))
    ]
    plain_msg, node_msg = answers
    for message in (plain_msg, node_msg):
        body = json.loads(str(message.content))
        assert (body["status"], body["reasons"]) == ("denied", ["budget_exceeded"])
    assert plain_msg.status == "success"
    assert node_msg.status == "error"
    assert guard.store.counters("budget:") == {}


def _emailer(
    adapter: str, guard: Guardrails, runs: list[str], is_async: bool = False, **options: Any
) -> Any:
    """A tools node (``options`` go to ``ToolNode``) over a send_email tool whose body takes
    a random moment, so the threads (or coroutines) of one task reach the guardrails in a
    different order each run."""
    if is_async:

        async def send_email(to: str) -> str:
            """Send."""
            await asyncio.sleep(random.random() / 200)
            runs.append(to)
            return f"sent {to}"

        fn: Any = send_email
    else:

        def send_email(to: str) -> str:  # type: ignore[misc]
            """Send."""
            time.sleep(random.random() / 200)
            runs.append(to)
            return f"sent {to}"

        fn = send_email
    if adapter == "guarded_tool_node":
        actions = {"send_email": "email.send"}
        return guarded_tool_node([tool(fn)], guard, actions=actions, **options)
    return ToolNode([tool(guarded(action="email.send", guardrails=guard)(fn))], **options)


def _drive(g: Any, first: Any, verdicts: dict[str, str], is_async: bool, thread: str) -> Any:
    """Run the graph, answering each question by the call it shows; returns the last
    output and the order the calls were asked in."""
    cfg = {"configurable": {"thread_id": thread}}
    ops = {"configurable": {"thread_id": thread, "approver": {"id": "ana", "roles": ["ops"]}}}

    # A loop per run, torn down after it: a question never ends a run while a sibling call's
    # body is still going (it would be cancelled mid-body, in doubt, and asked again).

    def invoke(value: Any, config: Any) -> Any:
        if is_async:
            return asyncio.run(g.ainvoke(value, config, version="v2"))
        return g.invoke(value, config, version="v2")

    out = invoke(first, cfg)
    asked: list[str] = []
    while out.interrupts:
        (pending,) = out.interrupts
        to = pending.value["args"]["to"]
        asked.append(to)
        answer = {"type": verdicts[to]}
        if verdicts[to] == "reject":
            answer["message"] = f"not {to}"
        out = invoke(Command(resume={pending.id: answer}), ops)
    return out, asked


@pytest.mark.parametrize(
    "store", ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("adapter", ["guarded_tool_node", "plain ToolNode + @guarded"])
@pytest.mark.parametrize(
    "verdicts",
    [
        {"c1": "approve", "c2": "reject", "c3": "approve"},
        {"c1": "reject", "c2": "approve", "c3": "reject"},
    ],
    ids=["approve-reject-approve", "reject-approve-reject"],
)
def test_parallel_approvals_in_one_tool_node_task_reach_their_own_calls(
    adapter: str,
    is_async: bool,
    verdicts: dict[str, str],
    store: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """A ToolNode runs all calls of one AI message in one task, whose interrupts LangGraph
    answers by position: each answer must still reach the call it was asked about, whatever
    order the threads arrive in and though answered calls replay without asking. (On
    SQLite, async, the calls' pipeline steps between store operations run on the store's
    thread: a call waiting for another call's question must not wait there.)"""
    approved = sorted(to for to, v in verdicts.items() if v == "approve")
    schema = f"ag_graphs_{uuid.uuid4().hex[:12]}"
    for attempt in range(4):
        if store == "postgres":
            url = with_schema(pg_base(), f"{schema}_{attempt}")
            drop = f'DROP SCHEMA IF EXISTS "{schema}_{attempt}" CASCADE'
            request.addfinalizer(functools.partial(pg_execute, drop))
        elif store == "sqlite":
            url = f"sqlite:///{tmp_path / f'{attempt}.db'}"
        else:
            url = "memory://"
        guard = Guardrails(PolicyPack.from_yaml(PACK), store=url)
        request.addfinalizer(guard.close)
        runs: list[str] = []
        g = graph(_emailer(adapter, guard, runs, is_async))
        three = ai(*((("send_email", {"to": to}, f"k-{to}")) for to in ("c1", "c2", "c3")))
        out, asked = _drive(g, three, verdicts, is_async, f"t{attempt}")
        assert sorted(asked) == ["c1", "c2", "c3"], "each call is asked once"
        assert sorted(runs) == approved, f"attempt {attempt}: ran {runs}"
        replies = results(out)
        for to, verdict in verdicts.items():
            content = str(replies[f"k-{to}"].content)
            if verdict == "approve":
                assert content == f"sent {to}"
            else:
                body = json.loads(content)
                assert (body["status"], body["message"]) == ("rejected", f"not {to}")
        assert sum(guard.store.counters("budget:").values()) == 2 * len(approved)


def test_identical_calls_in_a_plain_tool_node_each_run_and_each_is_charged() -> None:
    """A @guarded function cannot see its tool call id; two identical calls in one message
    are still two calls: both run, both are charged, each is asked about on its own."""
    guard = Guardrails(PolicyPack.from_yaml(PACK), store="memory://")
    tags: list[str] = []

    @tool
    @guarded(action="crm.tag", guardrails=guard)
    def tag_contact(contact: str) -> str:
        """Tag."""
        tags.append(contact)
        return f"tagged {contact}"

    g = graph(ToolNode([tag_contact]))
    out = g.invoke(ai(*(("tag_contact", {"contact": "a"}, k) for k in ("k1", "k2"))), CFG)
    assert [m.content for m in out["messages"][1:]] == ["tagged a", "tagged a"]
    assert tags == ["a", "a"]
    assert [r.kind for r in guard.store.audit_records()].count("execution.finished") == 2

    runs: list[str] = []
    emails = graph(_emailer("plain ToolNode + @guarded", guard, runs, False))
    same = ai(*(("send_email", {"to": "c1"}, k) for k in ("k1", "k2")))
    verdicts = iter(["approve", "reject"])
    out = emails.invoke(same, {"configurable": {"thread_id": "same"}}, version="v2")
    while out.interrupts:
        (pending,) = out.interrupts
        answer = {"type": next(verdicts)}
        ops = {"configurable": {"thread_id": "same", "approver": {"id": "a", "roles": ["ops"]}}}
        out = emails.invoke(Command(resume={pending.id: answer}), ops, version="v2")
    assert runs == ["c1"]
    contents = sorted(str(m.content) for m in results(out).values())
    assert contents[0] == "sent c1"
    assert json.loads(contents[1])["status"] == "rejected"


def loop_graph(tools_node: Any, turns: list[AIMessage], before: Any) -> tuple[Any, list[int]]:
    """START -> model -> tools -> model ... -> END, the model scripted by ``turns``;
    ``before(n)`` runs before the model's n-th answer."""
    script = iter([*turns, AIMessage(content="done")])
    asked: list[int] = []

    def model(state: State) -> dict[str, Any]:
        asked.append(len(asked) + 1)
        before(len(asked))
        return {"messages": [next(script)]}

    def route(state: State) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

    builder = StateGraph(State)
    builder.add_node("model", model)
    builder.add_node("tools", tools_node)
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", route, ["tools", END])
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=InMemorySaver()), asked


@pytest.mark.parametrize("on_halt", ["end", "raise"])
@pytest.mark.parametrize("adapter", ["guarded_tool_node", "plain ToolNode + @guarded"])
def test_kill_switch_between_turns_of_a_hand_built_graph(adapter: str, on_halt: str) -> None:
    guard = Guardrails(
        PolicyPack.from_yaml(PACK + f"kill_switch: {{on_halt: {on_halt}}}\n"), store="memory://"
    )
    tags: list[str] = []

    def tag_contact(contact: str) -> str:
        """Tag."""
        tags.append(contact)
        return f"tagged {contact}"

    node = (
        guarded_tool_node([tool(tag_contact)], guard, actions={"tag_contact": "crm.tag"})
        if adapter == "guarded_tool_node"
        else ToolNode([tool(guarded(action="crm.tag", guardrails=guard)(tag_contact))])
    )

    def kill_before_second_turn(n: int) -> None:
        if n == 2:
            guard.kill(by="ops", reason="stop")

    turns = [ai(("tag_contact", {"contact": c}, f"k-{c}"))["messages"][0] for c in "ab"]
    g, asked = loop_graph(node, turns, kill_before_second_turn)
    if on_halt == "raise":
        with pytest.raises(KillSwitchEngaged):
            g.invoke({"messages": [("user", "go")]}, CFG)
        assert asked == [1, 2]
    else:
        out = g.invoke({"messages": [("user", "go")]}, CFG)
        halted = next(m for m in out["messages"] if getattr(m, "tool_call_id", "") == "k-b")
        assert json.loads(str(halted.content))["reasons"] == ["kill_switch:global"]
        # A hand-built graph routes the halt itself: here the model answers it.
        assert out["messages"][-1].content == "done"
    assert tags == ["a"]


@pytest.mark.parametrize("adapter", ["guarded_tool_node", "plain ToolNode + @guarded"])
@pytest.mark.parametrize("case", ["identity in the payload", "expired"])
def test_an_answer_that_does_not_hold_is_refused_in_a_hand_built_graph(
    adapter: str, case: str
) -> None:
    """The approver is read from the resuming caller's context, never from the resume
    payload; and an answer after the approval's timeout is refused."""
    now = [1_700_000_000.0]
    guard = Guardrails(PolicyPack.from_yaml(PACK), store="memory://", clock=lambda: now[0])
    runs: list[str] = []
    g = graph(_emailer(adapter, guard, runs))
    first = g.invoke(ai(("send_email", {"to": "c1"}, "k1")), CFG, version="v2")
    (pending,) = first.interrupts
    if case == "expired":
        now[0] += 86_400 + 1  # approvals expire after a day by default
        answer: dict[str, Any] = {"type": "approve"}
        config = OPS
    else:
        answer = {"type": "approve", "approver": {"id": "boss", "roles": ["ops"]}}
        config = CFG  # nobody is named in the resuming caller's context
    out = g.invoke(Command(resume={pending.id: answer}), config, version="v2")
    body = json.loads(str(results(out)["k1"].content))
    expected = "approval_expired" if case == "expired" else "approver_unknown"
    assert body["reasons"] == [expected]
    assert runs == []
    assert sum(guard.store.counters("budget:").values()) == 0


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_retried_tool_node_task_replays_the_calls_that_finished(is_async: bool) -> None:
    """Under a RetryPolicy LangGraph re-runs the whole task after a transient error: the call
    that had finished replays (runs and is charged once)."""
    guard = Guardrails(PolicyPack.from_yaml(PACK), store="memory://")
    tags: list[str] = []
    tries: list[str] = []

    def tag(contact: str) -> str:
        """Tag."""
        tags.append(contact)
        return f"tagged {contact}"

    def flaky(contact: str) -> str:
        """Tag, failing the first time."""
        tries.append(contact)
        if len(tries) == 1:
            raise ConnectionError("transient")
        return f"flaky ok {contact}"

    async def atag(contact: str) -> str:
        """Tag."""
        return tag(contact)

    async def aflaky(contact: str) -> str:
        """Tag, failing the first time."""
        return flaky(contact)

    fns = (atag, aflaky) if is_async else (tag, flaky)
    names = ("tag", "flaky")

    def guarded_tool(name: str, fn: Any) -> BaseTool:
        wrapped = guarded(action="crm.tag", guardrails=guard)(fn)
        if is_async:
            return StructuredTool.from_function(coroutine=wrapped, name=name)
        return StructuredTool.from_function(wrapped, name=name)

    node = ToolNode([guarded_tool(n, f) for n, f in zip(names, fns, strict=True)])
    builder = StateGraph(State)
    retry = RetryPolicy(max_attempts=3, initial_interval=0.01, retry_on=ConnectionError)
    builder.add_node("tools", node, retry_policy=retry)
    builder.add_edge(START, "tools")
    builder.add_edge("tools", END)
    g: Any = builder.compile(checkpointer=InMemorySaver())
    message = ai(("tag", {"contact": "a"}, "k1"), ("flaky", {"contact": "b"}, "k2"))
    out = asyncio.run(g.ainvoke(message, CFG)) if is_async else g.invoke(message, CFG)
    assert [m.content for m in out["messages"][1:]] == ["tagged a", "flaky ok b"]
    assert tags == ["a"]
    assert len(tries) == 2
    assert [r.kind for r in guard.store.audit_records()].count("execution.finished") == 2


class TwoInboxes(TypedDict):
    ma: Annotated[list[AnyMessage], add_messages]
    mb: Annotated[list[AnyMessage], add_messages]


@pytest.mark.parametrize("adapter", ["guarded_tool_node", "plain ToolNode + @guarded"])
def test_two_interrupted_tool_node_tasks_answered_from_the_first_output(adapter: str) -> None:
    """Two ToolNode tasks in one super-step, two approvals each. Answering one task re-runs
    the other with its question unanswered; that question must stay the one its interrupt id
    showed, so a client may answer the interrupts of an earlier output."""
    guard = Guardrails(PolicyPack.from_yaml(PACK), store="memory://")
    runs: list[str] = []

    builder = StateGraph(TwoInboxes)
    builder.add_node("ta", _emailer(adapter, guard, runs, messages_key="ma"))
    builder.add_node("tb", _emailer(adapter, guard, runs, messages_key="mb"))
    for node in ("ta", "tb"):
        builder.add_edge(START, node)
        builder.add_edge(node, END)
    g: Any = builder.compile(checkpointer=InMemorySaver())
    verdicts = {"a1": "approve", "a2": "reject", "b1": "approve", "b2": "reject"}
    first = {
        inbox: ai(*(("send_email", {"to": f"{p}{i}"}, f"k-{p}{i}") for i in (1, 2)))["messages"]
        for inbox, p in (("ma", "a"), ("mb", "b"))
    }
    out = g.invoke(first, CFG, version="v2")
    shown = list(out.interrupts)
    assert len(shown) == 2
    while shown:
        for pending in shown:  # the questions of the last output, answered one by one
            answer = {"type": verdicts[pending.value["args"]["to"]], "message": "no"}
            out = g.invoke(Command(resume={pending.id: answer}), OPS, version="v2")
        shown = list(out.interrupts)
    assert sorted(runs) == ["a1", "b1"]
    state = g.get_state(CFG).values
    replies = {
        m.tool_call_id: str(m.content)
        for m in state["ma"] + state["mb"]
        if isinstance(m, ToolMessage)
    }
    for to, verdict in verdicts.items():
        if verdict == "approve":
            assert replies[f"k-{to}"] == f"sent {to}"
        else:
            assert json.loads(replies[f"k-{to}"])["status"] == "rejected"


def test_a_waiting_question_binds_to_the_pack_and_clock_of_when_it_is_shown() -> None:
    """The second call of a task waits while the first call's question is open. Its question
    is put later: its approval binds to the pack version and expiry of that moment."""
    now = [1_700_000_000.0]
    pack = PACK.replace("approval: {roles: [ops]}", "approval: {roles: [ops], timeout: 1h}")
    store = Guardrails(PolicyPack.from_yaml(pack), store="memory://").store
    runs: list[str] = []

    def build(version: int) -> tuple[Guardrails, Any]:
        text = pack.replace("version: 1", f"version: {version}")
        guard = Guardrails(PolicyPack.from_yaml(text), store=store, clock=lambda: now[0])
        return guard, graph(_emailer("guarded_tool_node", guard, runs), saver)

    saver = InMemorySaver()
    _guard, g = build(1)
    two = ai(("send_email", {"to": "c1"}, "k1"), ("send_email", {"to": "c2"}, "k2"))
    out = g.invoke(two, CFG, version="v2")
    (pending,) = out.interrupts
    first_to = pending.value["args"]["to"]
    now[0] += 50 * 60  # the first question is answered after 50 minutes
    _guard, g = build(2)  # meanwhile the pack moved to version 2
    store.activate_pack("graphs", "2", by="ops", reason="v2")
    out = g.invoke(Command(resume={pending.id: {"type": "approve"}}), OPS, version="v2")
    (second,) = out.interrupts
    assert second.value["guardrails"]["pack_version"] == "2"
    now[0] += 15 * 60  # 65 minutes after the first question, 15 after this one
    out = g.invoke(Command(resume={second.id: {"type": "approve"}}), OPS, version="v2")
    replies = results(out)
    first_key = "k1" if first_to == "c1" else "k2"
    second_key = "k2" if first_key == "k1" else "k1"
    assert json.loads(str(replies[first_key].content))["reasons"] == ["approval_stale"]
    assert str(replies[second_key].content).startswith("sent")
    assert len(runs) == 1


def test_guarded_tools_of_one_node_must_share_a_store() -> None:
    one = Guardrails(PolicyPack.from_yaml(PACK), store="memory://")
    other = Guardrails(PolicyPack.from_yaml(PACK), store="memory://")

    def tag(contact: str) -> str:
        """Tag."""
        return contact

    node = ToolNode(
        [
            StructuredTool.from_function(
                guarded(action="crm.tag", guardrails=one)(tag), name="tag_one"
            ),
            StructuredTool.from_function(
                guarded(action="crm.tag", guardrails=other)(tag), name="tag_other"
            ),
        ]
    )
    g = graph(node)
    calls = ai(("tag_one", {"contact": "a"}, "k1"), ("tag_other", {"contact": "b"}, "k2"))
    with pytest.raises(ConfigurationError, match="same store"):
        g.invoke(calls, CFG)


def test_a_guarded_tool_with_an_injected_runtime_asks_and_runs_once(guard: Guardrails) -> None:
    """LangChain injects ``runtime``: the guard neither keys, binds nor shows it (a runtime
    in the interrupt payload cannot be checkpointed), and the body still gets it."""
    runs: list[str] = []

    @tool
    @guarded(action="email.send", guardrails=guard)
    def send_email(to: str, runtime: ToolRuntime) -> str:
        """Send."""
        runs.append(f"{to} {runtime.tool_call_id}")
        return f"sent {to}"

    g = graph(ToolNode([send_email]))
    first = g.invoke(ai(("send_email", {"to": "c1"}, "k1")), CFG, version="v2")
    (pending,) = first.interrupts
    assert pending.value["args"] == {"to": "c1"}
    out = g.invoke(Command(resume={pending.id: {"type": "approve"}}), OPS, version="v2")
    assert results(out)["k1"].content == "sent c1"
    assert runs == ["c1 k1"]
