"""The demo: a campaign agent built with ``create_agent``, walking the rollout playbook.

Run it with ``make demo`` or ``agent-guardrails demo``. A scripted chat model (no API key)
plays the agent; a scripted operator answers its approval interrupts. State lives in a
fresh SQLite store (the embedded default) and a SQLite checkpointer under
``.agent_guardrails/``, so you can inspect it afterwards:
``agent-guardrails status --store sqlite:///.agent_guardrails/demo.db``.

Phases: Assist drafts; Execute runs low-risk steps and waits for approval on sends; Optimize
reallocates budget within the weekly cap; Orchestrate launches a multi-step campaign; then a
kill-switch stops the run. Last, a simulated week earns the newsletter a promotion through
its gate, a policy violation demotes paid media by itself, and the weekly scorecard is
written to ``agent-guardrails-scorecard.html`` (:mod:`.week`). ``--model provider:name``
plays the agent with a real chat model (``langchain.chat_models.init_chat_model``) where
one is configured.

Traces: each phase is one trace, named for what it shows (an ``invoke_agent campaign-bot ·
L1 Execute (newsletter)`` span, say, with a guarded
``execute_tool`` span per tool call). With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set they go to
that collector (Jaeger, see ``integrations/jaeger/``); without it they are written to
``agent-guardrails-trace.json`` (``--trace-file``), which Jaeger's UI opens directly and
``agent-guardrails traces`` prints as a tree.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command
from opentelemetry.trace import NoOpTracerProvider

from agent_guardrails.errors import ConfigurationError
from agent_guardrails.middleware import GuardrailsMiddleware
from agent_guardrails.pipeline.guardrails import Guardrails
from agent_guardrails.policy.pack import PolicyPack
from agent_guardrails.policy.scope import Scope
from agent_guardrails.telemetry import TelemetrySetup, configure_telemetry
from agent_guardrails.telemetry import attributes as A

from . import tools
from .week import earned_autonomy

DEMO_DIR = Path(".agent_guardrails")
DEMO_DB = DEMO_DIR / "demo.db"
CHECKPOINTS = DEMO_DIR / "demo-checkpoints.db"
TRACE_FILE = "agent-guardrails-trace.json"


def pack_path() -> Path:
    """Where the example marketing pack ships inside the package."""
    return Path(str(resources.files("agent_guardrails.ops.demo") / "marketing_pack.yaml"))


class ScriptedModel(GenericFakeChatModel):
    """Plays the agent from a script of AI messages; tool binding is a no-op."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedModel:
        return self


def _call(tool_name: str, call_id: str, /, **args: Any) -> dict[str, Any]:
    return {"name": tool_name, "args": args, "id": call_id}


def _turn(*calls: dict[str, Any]) -> AIMessage:
    return AIMessage(content="", tool_calls=list(calls))


BODY = "Our November picks are in. Manage preferences or unsubscribe at any time."


@dataclass(frozen=True)
class Phase:
    title: str
    workflow: str
    region: str | None
    turns: list[AIMessage]
    answers: dict[str, dict[str, Any]]  # tool name -> the operator's answer if asked
    approver: dict[str, Any]


PHASES = [
    Phase(
        "L0 Assist (newsletter, EU): the agent drafts; nothing is sent",
        "newsletter",
        "eu",
        [
            _turn(
                _call(
                    "send_email", "a1", to=["c-101", "c-102"], subject="November picks", body=BODY
                ),
                _call("reallocate_budget", "a2", source="search", target="social", amount=300.0),
            ),
            _turn(_call("send_email", "a3", to=["c-101"], subject="Guaranteed savings", body=BODY)),
        ],
        {},
        {},
    ),
    Phase(
        "L1 Execute (newsletter): low-risk steps run; sends wait for marketing ops",
        "newsletter",
        None,
        [
            _turn(_call("build_audience", "b1", name="november-active", rule="opened_90d")),
            _turn(
                _call(
                    "send_email",
                    "b2",
                    to=["c-101", "c-102", "c-103"],
                    subject="November picks",
                    body=BODY,
                ),
                _call("publish_page", "b3", title="Winter Sale", html="<h1>Sale</h1>"),
                _call("reallocate_budget", "b4", source="search", target="social", amount=300.0),
            ),
        ],
        {
            "send_email": {"type": "approve"},
            "publish_page": {"type": "reject", "message": "Brand review first."},
        },
        {"id": "ana", "roles": ["marketing_ops"]},
    ),
    Phase(
        "L2 Optimize (paid media): reallocation runs within the weekly cap",
        "paid_media",
        None,
        [
            _turn(
                _call("reallocate_budget", "c1", source="search", target="social", amount=1200.0)
            ),
            _turn(
                _call("reallocate_budget", "c2", source="display", target="social", amount=4500.0)
            ),
            _turn(
                _call("launch_campaign", "c3", name="holiday", steps=["audience", "email", "ads"])
            ),
        ],
        {"reallocate_budget": {"type": "reject", "message": "Keep the Q4 reserve."}},
        {"id": "raj", "roles": ["revenue_ops"]},
    ),
    Phase(
        "L3 Orchestrate (paid media, promoted by the board): a multi-step campaign runs",
        "paid_media",
        None,
        [
            _turn(
                _call("launch_campaign", "d1", name="holiday", steps=["audience", "email", "ads"])
            ),
            _turn(_call("reallocate_budget", "d2", source="search", target="video", amount=800.0)),
        ],
        {"launch_campaign": {"type": "approve"}},
        {"id": "grace", "roles": ["governance_board"]},
    ),
    Phase(
        "Kill-switch: an operator stops paid media mid-run",
        "paid_media",
        None,
        [
            _turn(_call("reallocate_budget", "e1", source="search", target="video", amount=100.0)),
            _turn(_call("reallocate_budget", "e2", source="video", target="social", amount=50.0)),
        ],
        {},
        {},
    ),
]


def demo_tools() -> list[BaseTool]:
    """The marketing tools as LangChain tools (their ``@guarded`` actions are kept)."""
    return [
        tool(tools.send_email),
        tool(tools.build_audience),
        tool(tools.reallocate_budget),
        tool(tools.publish_page),
        tool(tools.launch_campaign),
    ]


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="agent-guardrails demo", description=__doc__)
    parser.add_argument(
        "--store", default=None, help=f"store URL (default: a fresh sqlite:///{DEMO_DB})"
    )
    parser.add_argument("--model", default=None, help="a real chat model, e.g. openai:gpt-4o-mini")
    parser.add_argument(
        "--trace-file",
        default=TRACE_FILE,
        help="where traces go when no OTLP endpoint is set (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    store_url = args.store
    if store_url is None:
        for path in (DEMO_DB, CHECKPOINTS):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        store_url = f"sqlite:///{DEMO_DB}"
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{CHECKPOINTS}{suffix}").unlink(missing_ok=True)

    def say(text: str = "") -> None:
        out.write(text + "\n")

    telemetry = _telemetry(Path(args.trace_file), say)
    pack = PolicyPack.from_yaml(pack_path())
    guard = Guardrails(
        pack,
        store=store_url,
        scope={"agent": "campaign-bot"},
        tracer_provider=telemetry.tracer_provider if telemetry else None,
        meter_provider=telemetry.meter_provider if telemetry else None,
    )
    tracer = (telemetry.tracer_provider if telemetry else NoOpTracerProvider()).get_tracer(
        "agent_guardrails.demo"
    )
    tools.OUTBOX.events.clear()

    say(f"agent-guardrails demo: pack {pack.name} v{pack.version}, store {store_url}")
    with SqliteSaver.from_conn_string(str(CHECKPOINTS)) as saver:
        for n, phase in enumerate(PHASES):
            say(f"\n== {phase.title}")
            if n == 3:
                guard.set_level(
                    Scope(workflow="paid_media"),
                    "orchestrate",
                    by="governance-board",
                    reason="board decision: orchestrate the paid-media campaign this quarter",
                    override=True,
                )
                say("   (the governance board moved paid_media to L3 Orchestrate)")
            model: Any = _model(args.model, phase)
            agent: Any = create_agent(
                model,
                demo_tools(),
                middleware=[GuardrailsMiddleware(guard)],
                checkpointer=saver,
            )
            thread = f"demo-{n}"
            with tracer.start_as_current_span(
                f"invoke_agent campaign-bot · {phase.title.split(':')[0]}",
                attributes={
                    A.GEN_AI_OPERATION_NAME: "invoke_agent",
                    A.GEN_AI_AGENT_NAME: "campaign-bot",
                    A.GEN_AI_CONVERSATION_ID: thread,
                    "agent_guardrails.demo.phase": phase.title,
                },
            ):
                _run_phase(agent, guard, phase, thread, say)
            if phase.title.startswith("Kill-switch"):
                level = guard.level_of(Scope(workflow="paid_media"))
                say(
                    "   (a kill-switch is a trip-wire too: paid media went down to "
                    f"L{int(level)} {level.name.title()})"
                )

    say("\n== Earned autonomy: a week of evidence, a gate, a trip-wire, the scorecard")
    earned_autonomy(guard.store, guard.policy, say, Path.cwd())

    say("\nWhat the tools actually did:")
    for event in tools.OUTBOX.events:
        say(f"  - {event}")
    verdict = guard.store.verify_audit()
    records = len(guard.store.audit_records())
    say(
        f"\nAudit log: {records} records, hash chain "
        + ("verified" if verdict.ok else f"BROKEN: {verdict.problem}")
    )
    if args.store is None:
        say(f"Inspect it: agent-guardrails status --store sqlite:///{DEMO_DB}")
    if telemetry is not None:
        telemetry.shutdown()
        if telemetry.trace_file is not None:
            say(
                f"Traces: {telemetry.trace_file} (Jaeger UI: Search > Upload; or "
                f"agent-guardrails traces {telemetry.trace_file})"
            )
        else:
            say(f"Traces: sent to {telemetry.destination}")
    guard.store.close()
    return 0 if verdict.ok else 1


def _telemetry(trace_file: Path, say: Any) -> TelemetrySetup | None:
    """Traces for the demo: OTLP when an endpoint is configured, else a Jaeger file."""
    trace_file.unlink(missing_ok=True)
    try:
        return configure_telemetry("agent-guardrails-demo", trace_file=trace_file)
    except ConfigurationError as exc:
        say(f"(traces off: {exc})")
        return None


def _model(name: str | None, phase: Phase) -> Any:
    if name is None:
        return ScriptedModel(
            messages=iter([*phase.turns, AIMessage(content="Done for this phase.")])
        )
    from langchain.chat_models import init_chat_model

    return init_chat_model(name)


def _run_phase(agent: Any, guard: Guardrails, phase: Phase, thread: str, say: Any) -> None:
    configurable: dict[str, Any] = {"thread_id": thread, "workflow": phase.workflow}
    if phase.region:
        configurable["region"] = phase.region
    config = {"configurable": configurable}
    request = {"messages": [("user", f"Work on the {phase.workflow} campaign.")]}
    if phase.title.startswith("Kill-switch"):
        _kill_after_first_side_effect(guard)
    result = agent.invoke(request, config, version="v2")
    seen: set[str] = set()
    _print_results(result, seen, say)
    while result.interrupts:
        answers: dict[str, Any] = {}
        for pending in result.interrupts:
            # One question per model turn (the middleware's batched HITLRequest): one
            # decision per action, in order.
            value = pending.value
            decisions = []
            for action, details in zip(value["action_requests"], value["guardrails"], strict=True):
                answer = phase.answers.get(
                    action["name"], {"type": "reject", "message": "Not scripted."}
                )
                who = phase.approver.get("id", "nobody")
                say(
                    f"   ? {action['name']} waits for approval "
                    f"({', '.join(details['reasons'])}; "
                    f"needs {', '.join(details['roles']) or 'anyone'}; "
                    f"cost {details['estimated_cost']:g} "
                    f"{details['currency']}) -> {who} answers {answer['type']}"
                )
                decisions.append(answer)
            answers[pending.id] = {"decisions": decisions}
        resumed = {"configurable": {**configurable, "approver": phase.approver}}
        result = agent.invoke(Command(resume=answers), resumed, version="v2")
        _print_results(result, seen, say)


def _print_results(result: Any, seen: set[str], say: Any) -> None:
    for message in result.value["messages"]:
        if not isinstance(message, ToolMessage) or message.tool_call_id in seen:
            continue
        seen.add(message.tool_call_id)
        say("   " + _story(message))
    last = result.value["messages"][-1]
    if result.interrupts:
        return
    if isinstance(last, AIMessage) and last.content:
        say(f"   agent: {last.content}")


def _story(message: ToolMessage) -> str:
    name = message.name or "tool"
    try:
        body = json.loads(str(message.content))
    except json.JSONDecodeError:
        return f"{name:<18} RAN        {message.content}"
    if not isinstance(body, dict) or "decision" not in body:
        return f"{name:<18} RAN        {message.content}"
    reasons = ", ".join(body["reasons"])
    line = f"{name:<18} {body['status'].upper():<10} {reasons}\n      {body['message']}"
    draft = body.get("draft")
    if isinstance(draft, dict):
        shown = draft.get("preview") or draft.get("recommendation") or draft.get("note")
        line += "\n      draft: " + str(shown).replace("\n", " | ")
    return line


def _kill_after_first_side_effect(guard: Guardrails) -> None:
    """The operator reacts to the first thing the agent does in the kill-switch phase."""

    def on_event(event: str) -> None:
        tools.OUTBOX.listeners.remove(on_event)
        guard.kill(Scope(workflow="paid_media"), by="ops-oncall", reason="spend anomaly")

    tools.OUTBOX.listeners.append(on_event)


if __name__ == "__main__":
    raise SystemExit(main())
