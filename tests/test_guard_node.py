"""The guard node: a batch decided together, one interrupt, approved calls routed on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from langchain.agents.middleware.human_in_the_loop import HITLRequest
from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command
from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from agent_guardrails import Guardrails, PolicyPack
from agent_guardrails.adapters.guard_node import GuardNode
from agent_guardrails.engine.decision import CallRequest
from agent_guardrails.errors import KillSwitchEngaged
from agent_guardrails.policy.scope import Scope

PACK = """
name: node
version: 3
defaults: {level: execute}
actions:
  crm.tag: {risk: low, cost: 30}
  email.send:
    sensitive: true
    cost: 1
    approval: {roles: [ops]}
    validators:
      - banned_terms: {terms: [guaranteed], fields: [subject]}
budgets:
  - {name: daily, limit: 100, window: day}
levels:
  - {scope: {workflow: drafts}, level: assist}
"""

OPS: Any = {"configurable": {"thread_id": "n1", "approver": {"id": "ana", "roles": ["ops"]}}}
CFG: Any = {"configurable": {"thread_id": "n1"}}


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


class Harness:
    def __init__(
        self,
        *turns: AIMessage,
        store: str = "memory://",
        pack: str = PACK,
        on_model: Callable[[Guardrails, int], None] | None = None,
        interrupt_before: list[str] | None = None,
    ) -> None:
        self.guard = Guardrails(PolicyPack.from_yaml(pack), store=store)
        self.runs: list[tuple[str, dict[str, Any]]] = []
        self.model_calls = 0
        runs = self.runs

        @tool
        def tag_contact(contact: str, region: str = "") -> str:
            """Tag a contact (in a region: the call's scope)."""
            runs.append(("tag_contact", {"contact": contact}))
            return f"tagged {contact}"

        @tool
        def send_email(to: str, subject: str) -> str:
            """Send an email."""
            runs.append(("send_email", {"to": to, "subject": subject}))
            return f"sent to {to}"

        tools: list[BaseTool] = [tag_contact, send_email]
        script: Iterator[AIMessage] = iter([*turns, AIMessage(content="done")])

        def model(state: State) -> dict[str, Any]:
            self.model_calls += 1
            if on_model is not None:
                on_model(self.guard, self.model_calls)
            return {"messages": [next(script)]}

        node = GuardNode(self.guard, actions={"tag_contact": "crm.tag", "send_email": "email.send"})
        builder = StateGraph(State)
        builder.add_node("model", model)
        builder.add_node("guard", node, destinations=("tools", "model", END))
        builder.add_node("tools", node.tool_node(tools))
        builder.add_edge(START, "model")
        builder.add_edge("model", "guard")
        builder.add_edge("tools", "model")
        self.graph: Any = builder.compile(
            checkpointer=InMemorySaver(), interrupt_before=interrupt_before
        )

    def start(self, config: Any = CFG) -> Any:
        return self.graph.invoke({"messages": [("user", "go")]}, config, version="v2")


def turn(*calls: tuple[str, dict[str, Any]]) -> AIMessage:
    return AIMessage(
        content="",
        tool_calls=[{"name": n, "args": a, "id": f"c{i}"} for i, (n, a) in enumerate(calls)],
    )


def tool_results(out: Any) -> dict[str, ToolMessage]:
    return {m.tool_call_id: m for m in out.value["messages"] if isinstance(m, ToolMessage)}


def test_allowed_calls_run_once_and_the_graph_ends() -> None:
    h = Harness(turn(("tag_contact", {"contact": "a"}), ("tag_contact", {"contact": "b"})))
    out = h.start()
    assert sorted(r[1]["contact"] for r in h.runs) == ["a", "b"]
    assert {k: m.content for k, m in tool_results(out).items()} == {
        "c0": "tagged a",
        "c1": "tagged b",
    }
    assert out.value["messages"][-1].content == "done"
    assert sum(h.guard.store.counters("budget:").values()) == 60


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_batch_that_does_not_fit_runs_nothing(backend: str, tmp_path: Path) -> None:
    store = "memory://" if backend == "memory" else f"sqlite:///{tmp_path / 'g.db'}"
    calls = [("tag_contact", {"contact": f"x{i}"}) for i in range(4)]  # 4 x 30 > 100
    h = Harness(turn(*calls), store=store)
    out = h.start()
    assert h.runs == []
    bodies = [json.loads(str(m.content)) for m in tool_results(out).values()]
    assert [b["reasons"] for b in bodies] == [["budget_exceeded"]] * 4
    assert sum(h.guard.store.counters("budget:").values()) == 0


def test_one_interrupt_for_the_batch_in_langchains_dialect() -> None:
    h = Harness(
        turn(
            ("send_email", {"to": "a", "subject": "Hi"}),
            ("tag_contact", {"contact": "a"}),
            ("send_email", {"to": "b", "subject": "Hello"}),
        )
    )
    first = h.start()
    (pending,) = first.interrupts
    TypeAdapter(HITLRequest).validate_python(pending.value)
    assert [a["name"] for a in pending.value["action_requests"]] == ["send_email", "send_email"]
    assert [d["reasons"] for d in pending.value["guardrails"]] == [
        ["approval_required:sensitive"]
    ] * 2
    assert h.runs == []  # nothing runs before the batch's approvals are answered
    out = h.graph.invoke(
        Command(resume={"decisions": [{"type": "approve"}, {"type": "reject", "message": "no"}]}),
        OPS,
        version="v2",
    )
    results = tool_results(out)
    assert results["c0"].content == "sent to a"
    assert results["c1"].content == "tagged a"
    assert results["c2"].status == "error"
    assert sorted(name for name, _ in h.runs) == ["send_email", "tag_contact"]
    kinds = [r.kind for r in h.guard.store.audit_records()]
    assert kinds.count("decision") == 3  # once per call, not again on resume
    assert kinds.count("execution.started") == 2
    assert sum(h.guard.store.counters("budget:").values()) == 31


@pytest.mark.parametrize(
    "resume",
    [
        {"decisions": [{"type": "approve"}]},  # one answer for two calls
        {"decisions": [{"type": "approve"}, {"type": "maybe"}]},
        {"type": "approve"},
    ],
)
def test_malformed_batch_answers_are_refused_and_stay_pending(resume: Any) -> None:
    h = Harness(
        turn(
            ("send_email", {"to": "a", "subject": "Hi"}),
            ("send_email", {"to": "b", "subject": "Yo"}),
        )
    )
    (pending,) = h.start().interrupts
    with pytest.raises(ValidationError):
        h.graph.invoke(Command(resume=resume), OPS, version="v2")
    assert h.runs == []
    assert [i.id for i in h.graph.get_state(CFG).interrupts] == [pending.id]


def test_an_edited_call_runs_with_the_edit_and_a_forged_approver_is_refused() -> None:
    h = Harness(
        turn(
            ("send_email", {"to": "a", "subject": "Hi"}),
            ("send_email", {"to": "b", "subject": "Yo"}),
        )
    )
    h.start()
    edit = {
        "type": "edit",
        "edited_action": {"name": "send_email", "args": {"to": "z", "subject": "Hey"}},
    }
    mallory: Any = {
        "configurable": {"thread_id": "n1", "approver": {"id": "m", "roles": ["intern"]}}
    }
    out = h.graph.invoke(
        Command(resume={"decisions": [edit, {"type": "approve"}]}), mallory, version="v2"
    )
    refused = [json.loads(str(m.content))["reasons"] for m in tool_results(out).values()]
    assert refused == [["approver_not_authorized"]] * 2
    assert h.runs == []


def test_edit_is_applied() -> None:
    h = Harness(turn(("send_email", {"to": "a", "subject": "Hi"})))
    h.start()
    edit = {
        "type": "edit",
        "edited_action": {"name": "send_email", "args": {"to": "z", "subject": "Hey"}},
    }
    out = h.graph.invoke(Command(resume={"decisions": [edit]}), OPS, version="v2")
    assert tool_results(out)["c0"].content == "sent to z"
    assert h.runs == [("send_email", {"to": "z", "subject": "Hey"})]


def test_calls_that_did_not_pass_the_guard_are_not_run() -> None:
    h = Harness()
    node = GuardNode(h.guard)

    @tool
    def tag_contact(contact: str) -> str:
        """Tag."""
        raise AssertionError("must not run")

    builder = StateGraph(State)
    builder.add_node("tools", node.tool_node([tag_contact]))
    builder.add_edge(START, "tools")
    builder.add_edge("tools", END)
    graph: Any = builder.compile()
    out = graph.invoke({"messages": [turn(("tag_contact", {"contact": "a"}))]})
    assert out["messages"][-1].status == "error"
    assert "did not pass the guard node" in out["messages"][-1].content


def test_async_batch() -> None:
    h = Harness(
        turn(("tag_contact", {"contact": "a"}), ("send_email", {"to": "b", "subject": "Hi"}))
    )

    async def scenario() -> None:
        first = await h.graph.ainvoke({"messages": [("user", "go")]}, CFG, version="v2")
        assert len(first.interrupts) == 1
        out = await h.graph.ainvoke(
            Command(resume={"decisions": [{"type": "approve"}]}), OPS, version="v2"
        )
        assert tool_results(out)["c1"].content == "sent to b"

    asyncio.run(scenario())
    assert sorted(name for name, _ in h.runs) == ["send_email", "tag_contact"]


def test_a_tool_call_id_reused_in_a_later_turn_is_a_new_call() -> None:
    """Models number tool calls per turn (``c0``, ``c1``...): the second turn's ``c0`` must
    run with its own arguments, not replay the first turn's result."""
    h = Harness(turn(("tag_contact", {"contact": "a"})), turn(("tag_contact", {"contact": "b"})))
    out = h.start()
    assert h.runs == [("tag_contact", {"contact": "a"}), ("tag_contact", {"contact": "b"})]
    replies = [m.content for m in out.value["messages"] if isinstance(m, ToolMessage)]
    assert replies == ["tagged a", "tagged b"]
    assert sum(h.guard.store.counters("budget:").values()) == 60
    assert h.model_calls == 3


def _kill_before_turn(n: int) -> Callable[[Guardrails, int], None]:
    def on_model(guard: Guardrails, calls: int) -> None:
        if calls == n:
            guard.kill(by="ops", reason="stop the campaign")

    return on_model


def test_kill_switch_engaged_between_turns_ends_the_run_with_its_message() -> None:
    first = turn(("tag_contact", {"contact": "a"}))
    second = turn(("tag_contact", {"contact": "b"}), ("send_email", {"to": "x", "subject": "hi"}))
    h = Harness(first, second, on_model=_kill_before_turn(2))
    out = h.start()
    assert h.runs == [("tag_contact", {"contact": "a"})]  # nothing of the second turn ran
    assert h.model_calls == 2  # the model is not asked again after the halt
    assert out.value["messages"][-1].content == h.guard.policy.kill_switch.message
    assert not out.interrupts  # the email's approval is not asked for either
    replies = [m for m in out.value["messages"] if isinstance(m, ToolMessage)][1:]
    assert {json.loads(str(m.content))["status"] for m in replies} == {"halted"}
    assert sum(h.guard.store.counters("budget:").values()) == 30  # the first turn only
    kinds = [r.kind for r in h.guard.store.audit_records()]
    assert kinds.count("execution.finished") == 1


def test_a_scoped_halt_stops_the_whole_batch() -> None:
    """Only the EU call is halted; the other call of the batch was allowed and held its
    cost, which is released: the run ends and nothing of the turn runs."""
    second = turn(
        ("tag_contact", {"contact": "b"}), ("tag_contact", {"contact": "c", "region": "eu"})
    )

    def kill_eu(guard: Guardrails, calls: int) -> None:
        if calls == 1:
            guard.kill(Scope(region="eu"), by="ops", reason="EU pause")

    h = Harness(second, on_model=kill_eu)
    out = h.start()
    assert h.runs == []
    results = tool_results(out)
    assert json.loads(str(results["c1"].content))["status"] == "halted"
    assert results["c0"].status == "error"
    assert "kill-switch halted tag_contact" in str(results["c0"].content)
    assert sum(h.guard.store.counters("budget:").values()) == 0  # the hold of c0 was released
    assert out.value["messages"][-1].content == h.guard.policy.kill_switch.message


def test_kill_switch_can_raise_from_the_guard_node() -> None:
    pack = PACK + "kill_switch: {on_halt: raise}\n"
    first = turn(("tag_contact", {"contact": "a"}))
    second = turn(("tag_contact", {"contact": "b"}))
    h = Harness(first, second, pack=pack, on_model=_kill_before_turn(2))
    with pytest.raises(KillSwitchEngaged):
        h.start()
    assert h.runs == [("tag_contact", {"contact": "a"})]
    assert sum(h.guard.store.counters("budget:").values()) == 30


def _paused_before_tools(pack: str = PACK) -> Harness:
    """Two allowed calls decided by the guard node; the graph waits before the tools node,
    and the kill-switch is engaged there (after the decision, before the run)."""
    first = turn(("tag_contact", {"contact": "a"}), ("tag_contact", {"contact": "b"}))
    second = turn(("tag_contact", {"contact": "c"}))
    h = Harness(first, second, pack=pack, interrupt_before=["tools"])
    h.start()
    assert sum(h.guard.store.counters("budget:").values()) == 60  # both held
    h.guard.kill(by="ops", reason="stop before the tools run")
    return h


def _halted_before_tools_ran(h: Harness, out: Any) -> None:
    assert h.runs == []
    results = tool_results(out)
    assert {json.loads(str(results[c].content))["status"] for c in ("c0", "c1")} == {"halted"}
    assert sum(h.guard.store.counters("budget:").values()) == 0  # the holds were released
    assert out.value["messages"][-1].content == h.guard.policy.kill_switch.message
    kinds = [r.kind for r in h.guard.store.audit_records()]
    assert "execution.started" not in kinds


def test_the_tools_node_looks_at_the_kill_switch_again_before_running() -> None:
    h = _paused_before_tools()
    out = h.graph.invoke(None, CFG, version="v2")
    _halted_before_tools_ran(h, out)
    assert h.model_calls == 2  # told of the halt; its next tool call ends the run


def test_the_async_tools_node_looks_at_the_kill_switch_again_before_running() -> None:
    h = _paused_before_tools()
    out = asyncio.run(h.graph.ainvoke(None, CFG, version="v2"))
    _halted_before_tools_ran(h, out)


def test_the_tools_node_raises_on_a_halt_where_the_pack_says_so() -> None:
    h = _paused_before_tools(PACK + "kill_switch: {on_halt: raise}\n")
    with pytest.raises(KillSwitchEngaged):
        h.graph.invoke(None, CFG, version="v2")
    assert h.runs == []
    assert sum(h.guard.store.counters("budget:").values()) == 0


def test_a_finished_call_replays_after_the_kill_switch_is_engaged() -> None:
    """The re-check before running leaves a call that already ran alone: it replays."""
    guard = Guardrails(PolicyPack.from_yaml(PACK), store="memory://")
    request = CallRequest("tag_contact", "crm.tag", {"contact": "a"}, Scope(), "c0")
    runs: list[str] = []

    def body(args: Any) -> str:
        runs.append(args["contact"])
        return f"tagged {args['contact']}"

    def call() -> Any:
        return guard.prepare(request, call_key="k-c0", body=body, runs_later=True)

    [decision] = guard.decide_batch([call()])
    assert guard.execute(call(), decision) == "tagged a"
    guard.kill(by="ops", reason="later")
    assert guard.execute(call(), decision) == "tagged a"
    assert runs == ["a"]
    assert sum(guard.store.counters("budget:").values()) == 30  # the spend stays


def test_the_batch_shows_the_expiry_that_is_enforced() -> None:
    """The guard's clock, not the store's wall time, dates the question: the expiry shown in
    the interrupt is the one the answer is checked against."""
    now = [1_000_000.0]
    h = Harness(turn(("send_email", {"to": "a", "subject": "Hi"})))
    h.guard.clock = lambda: now[0]
    (pending,) = h.start().interrupts
    expires_at = pending.value["guardrails"][0]["expires_at"]
    assert expires_at == 1_000_000.0 + 86_400.0  # the pack's default approval timeout
    now[0] = expires_at + 1
    out = h.graph.invoke(Command(resume={"decisions": [{"type": "approve"}]}), OPS, version="v2")
    assert json.loads(str(tool_results(out)["c0"].content))["reasons"] == ["approval_expired"]
    assert h.runs == []


def test_a_pack_applied_after_the_guard_node_decided_stales_the_call() -> None:
    """The guard node decided (and held) under v3; v4 is applied while the graph waits
    before its tools node: the calls do not run under the old decision."""
    from agent_guardrails.ops import apply_pack

    first = turn(("tag_contact", {"contact": "a"}), ("tag_contact", {"contact": "b"}))
    h = Harness(first, AIMessage(content="done"), interrupt_before=["tools"])
    h.start()
    apply_pack(h.guard.store, PACK.replace("version: 3", "version: 4"), by="ana")
    out = h.graph.invoke(None, CFG, version="v2")
    assert h.runs == []
    results = tool_results(out)
    assert {tuple(json.loads(str(results[c].content))["reasons"]) for c in ("c0", "c1")} == {
        ("approval_stale",)
    }
    assert sum(h.guard.store.counters("budget:").values()) == 0  # the holds were released
