"""Our ``execute_tool`` spans inside agents traced by real LangChain instrumentors.

OpenInference (``openinference-instrumentation-langchain``) and OpenLLMetry
(``opentelemetry-instrumentation-langchain``) trace the same agent, each with an explicit
in-memory tracer provider (never the global one) and uninstrumented after each test.

What the instrumentors do, as observed on langchain 1.4 / langgraph 1.2:

- OpenLLMetry attaches each run's span to the OpenTelemetry context as the callbacks fire,
  so the span current when our middleware runs is its ``execute_task tools`` span (the
  LangGraph node's task), and inside a plain ``ToolNode`` it is its own ``execute_tool
  {tool}`` span. Its spans share our span name: they are told apart by instrumentation scope.
- OpenInference parents its spans by LangChain run id and never makes them current, so the
  span current during a tool call is still the one that was current when the graph was
  invoked (none, or the application's). ``CallSpan.__enter__`` therefore asks OpenInference
  for the span of the current LangChain run and starts under it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Annotated, Any, Protocol

import langchain.agents
import openinference.instrumentation.langchain as openinference_langchain
import opentelemetry.instrumentation.langchain as openllmetry_langchain
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.types import Command
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Span, StatusCode
from typing_extensions import TypedDict

from agent_guardrails import Guardrails, PolicyPack, guarded
from agent_guardrails.adapters.middleware import GuardrailsMiddleware
from agent_guardrails.store import MemoryStore
from agent_guardrails.telemetry import attributes as A
from tests.conftest import Clock
from tests.telemetry.conftest import Otel

PACK = """
name: instrumented
version: '1'
defaults: {level: execute}
actions:
  crm.tag: {risk: low}
  email.send: {risk: medium, sensitive: true, approval: {roles: [ops]}}
"""

CFG: Any = {"configurable": {"thread_id": "th-1", "approver": {"id": "ana", "roles": ["ops"]}}}


class Instrumentor(Protocol):
    """What these tests use of an OpenTelemetry ``BaseInstrumentor`` (whose module mypy
    cannot see: it starts with ``# type: ignore``)."""

    @property
    def is_instrumented_by_opentelemetry(self) -> bool: ...

    def instrument(self, **kwargs: Any) -> Any: ...

    def uninstrument(self, **kwargs: Any) -> Any: ...


class NotNested(AssertionError):
    """Our span is not where it belongs in the instrumentor's trace."""


@dataclass(frozen=True)
class Flavor:
    """One instrumentor and the names it gives the spans we nest against."""

    id: str
    module: ModuleType  # the instrumentor's package: its wrap_function_wrapper is recorded
    make: Callable[[], Instrumentor]
    scope: str  # instrumentation scope of its spans
    node: str  # its span for a run of the LangGraph node "tools"
    tool_span: Callable[[str], str]  # its span for one tool's run


OPENINFERENCE = Flavor(
    "openinference",
    openinference_langchain,
    openinference_langchain.LangChainInstrumentor,
    "openinference.instrumentation.langchain",
    "tools",
    lambda name: name,
)
OPENLLMETRY = Flavor(
    "openllmetry",
    openllmetry_langchain,
    openllmetry_langchain.LangchainInstrumentor,
    "opentelemetry.instrumentation.langchain",
    "execute_task tools",
    lambda name: f"execute_tool {name}",
)
FLAVORS = [pytest.param(f, id=f.id) for f in (OPENINFERENCE, OPENLLMETRY)]
NESTING = FLAVORS


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Wraps:
    """Records every wrapt wrap an instrumentor makes, so teardown can undo what its
    ``uninstrument()`` leaves behind. opentelemetry-instrumentation-langchain 0.62.4 leaves
    12 of its 16 wraps in place (``BaseCallbackManager.__init__``, ``Pregel.stream`` and
    ``astream``, ``Command.__init__``, the eight ``AgentMiddleware`` hooks): it calls
    ``unwrap("pkg.module", "Class.method")``, which takes ``pkg`` as the module and
    ``module`` as the object, looks up ``"Class.method"`` as one attribute name, finds nothing
    and returns. Its callback handler would then go on tracing (and making its spans current)
    in every later test, on this test's shut-down provider."""

    def __init__(self, wrap: Callable[..., Any]) -> None:
        self._wrap = wrap
        self.made: list[tuple[Any, str, bool, Any]] = []  # (owner, attribute, existed, value)

    def __call__(self, target: Any, name: str, wrapper: Any) -> Any:
        owner = importlib.import_module(target) if isinstance(target, str) else target
        *path, attribute = name.split(".")
        for part in path:
            owner = getattr(owner, part)
        own = vars(owner)
        self.made.append((owner, attribute, attribute in own, own.get(attribute)))
        return self._wrap(target, name, wrapper)

    def undo(self) -> None:
        for owner, attribute, existed, value in reversed(self.made):
            if existed:
                setattr(owner, attribute, value)
            elif attribute in vars(owner):
                delattr(owner, attribute)


@pytest.fixture
def instrumented(request: pytest.FixtureRequest, otel: Otel) -> Iterator[Flavor]:
    """The parametrized instrumentor, instrumented on the test's provider for the test only."""
    flavor: Flavor = request.param
    instrumentor = flavor.make()
    wraps = Wraps(flavor.module.wrap_function_wrapper)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(flavor.module, "wrap_function_wrapper", wraps)
            instrumentor.instrument(
                tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
            )
        # instrument() only logs when its dependency check fails: make that a failure here
        assert instrumentor.is_instrumented_by_opentelemetry
        assert wraps.made
        yield flavor
    finally:
        instrumentor.uninstrument()
        wraps.undo()


def make_guard(otel: Otel, clock: Clock) -> Guardrails:
    return Guardrails(
        PolicyPack.from_yaml(PACK),
        store=MemoryStore(),
        clock=clock,
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
    )


class ScriptedModel(GenericFakeChatModel):
    """A chat model that answers from a script and ignores tool binding."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedModel:
        return self


# ------------------------------------------------------------------ span helpers


def ours(spans: Sequence[ReadableSpan], tool_name: str | None = None) -> list[ReadableSpan]:
    """Our ``execute_tool`` spans (OpenLLMetry's tool spans have the same name)."""
    return [
        s
        for s in spans
        if scope(s) == A.INSTRUMENTATION_NAME
        and (tool_name is None or s.name == f"execute_tool {tool_name}")
    ]


def theirs(spans: Sequence[ReadableSpan], flavor: Flavor, name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name and scope(s) == flavor.scope]


def the(spans: Sequence[ReadableSpan]) -> ReadableSpan:
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def scope(span: ReadableSpan) -> str | None:
    return span.instrumentation_scope.name if span.instrumentation_scope is not None else None


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def by_id(spans: Sequence[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {span_id(s): s for s in spans}


def assert_one_whole_trace(spans: Sequence[ReadableSpan], outer: Span | None = None) -> int:
    """The spans form one tree in one trace: one root (a child of ``outer`` when given),
    every other span's parent among them, nobody its own parent. Returns the trace id."""
    index = by_id(spans)
    assert len(index) == len(spans), "duplicate span ids"
    traces = {trace_id(s) for s in spans}
    assert len(traces) == 1, sorted(f"{s.name}:{trace_id(s):032x}" for s in spans)
    roots = [s for s in spans if parent_id(s) not in index]
    assert len(roots) == 1, [s.name for s in roots]
    outer_id = outer.get_span_context().span_id if outer is not None else None
    assert parent_id(roots[0]) == outer_id
    for s in spans:
        assert parent_id(s) != span_id(s), f"{s.name} is its own parent"
        assert s.parent is None or s.parent.trace_id == trace_id(s)
    return traces.pop()


def expect_parent(child: ReadableSpan, parent: ReadableSpan) -> None:
    """``child`` is a direct child of ``parent``, in its trace (NotNested otherwise)."""
    if child.parent is None or (child.parent.trace_id, child.parent.span_id) != (
        trace_id(parent),
        span_id(parent),
    ):
        got = f"{child.parent.span_id:016x}" if child.parent is not None else "no parent"
        raise NotNested(f"{child.name} is under {got}, not {parent.name} {span_id(parent):016x}")


# ------------------------------------------------------------------ the agent run


@dataclass
class AgentRun:
    """The two invokes of one approval round trip, with the spans each one exported."""

    first: list[ReadableSpan]
    resumed: list[ReadableSpan]
    ran: list[tuple[str, str]]
    after_first: list[tuple[str, str]]
    interrupts: int
    outer: list[Span] = field(default_factory=list)


def run_agent(otel: Otel, clock: Clock, *, app_span: bool = False) -> AgentRun:
    """A create_agent agent guarded by the middleware; the model calls ``tag_contact``
    (allowed) and ``send_email`` (needs approval) at once, then the resume approves."""
    guard = make_guard(otel, clock)
    ran: list[tuple[str, str]] = []

    @tool
    def tag_contact(contact: str) -> str:
        """Tag a contact."""
        ran.append(("tag_contact", contact))
        return "tagged"

    @tool
    def send_email(to: str) -> str:
        """Send an email."""
        ran.append(("send_email", to))
        return "sent"

    model = ScriptedModel(
        messages=iter(
            [
                AIMessage(
                    content="",
                    tool_calls=[
                        {"name": "tag_contact", "args": {"contact": "c-1"}, "id": "t1"},
                        {"name": "send_email", "args": {"to": "a@example.com"}, "id": "t2"},
                    ],
                ),
                AIMessage(content="done"),
            ]
        )
    )
    # Per call: the allowed call runs while the other asks (the batched default asks
    # first; its spans are checked in tests/test_middleware_batched.py).
    middleware = GuardrailsMiddleware(
        guard, actions={"tag_contact": "crm.tag", "send_email": "email.send"}, interrupt="per_call"
    )
    # looked up now, as an application instrumented at start-up would (OpenLLMetry wraps it)
    agent: Any = langchain.agents.create_agent(
        model, [tag_contact, send_email], middleware=[middleware], checkpointer=InMemorySaver()
    )
    otel.exporter.clear()  # OpenLLMetry traces create_agent itself, in a trace of its own
    tracer = otel.tracer_provider.get_tracer("app")
    outer: list[Span] = []

    def invoke(payload: Any, name: str) -> Any:
        if not app_span:
            return agent.invoke(payload, CFG, version="v2")
        with tracer.start_as_current_span(name) as span:
            outer.append(span)
            return agent.invoke(payload, CFG, version="v2")

    first = invoke({"messages": [("user", "tag and mail")]}, "app.first")
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left attached
    first_spans = [s for s in otel.spans() if s.name not in ("app.first",)]
    after_first = list(ran)
    otel.exporter.clear()
    (pending,) = first.interrupts
    clock.advance(5)
    invoke(Command(resume={pending.id: {"type": "approve"}}), "app.resume")
    assert trace.get_current_span() is trace.INVALID_SPAN
    resumed_spans = [s for s in otel.spans() if s.name not in ("app.resume",)]
    return AgentRun(first_spans, resumed_spans, ran, after_first, len(first.interrupts), outer)


@pytest.mark.parametrize("instrumented", FLAVORS, indirect=True)
def test_instrumented_agent_runs_each_tool_once_and_its_trace_stays_whole(
    otel: Otel, clock: Clock, instrumented: Flavor
) -> None:
    flavor = instrumented
    run = run_agent(otel, clock)
    assert run.interrupts == 1
    assert run.after_first == [("tag_contact", "c-1")]  # send_email waits for a human
    assert run.ran == [("tag_contact", "c-1"), ("send_email", "a@example.com")]

    for spans in (run.first, run.resumed):
        mine = ours(spans)
        assert_one_whole_trace([s for s in spans if s not in mine])  # the instrumentor's trace
        assert all(parent_id(s) != span_id(s) for s in mine)
    # The instrumentor's own structure is untouched by ours: each tool span is a child of
    # the node span of its Send task, never of our span; a task that paused has none.
    for spans, tool_name in ((run.first, "tag_contact"), (run.resumed, "send_email")):
        index = by_id(spans)
        (their_tool,) = theirs(spans, flavor, flavor.tool_span(tool_name))
        node = index[parent_id(their_tool) or 0]
        assert (node.name, scope(node)) == (flavor.node, flavor.scope)
        assert parent_id(their_tool) not in {span_id(s) for s in ours(spans)}
    assert theirs(run.first, flavor, flavor.tool_span("send_email")) == []
    assert len(theirs(run.first, flavor, flavor.node)) == 2  # one task per tool call

    # Our spans: the decision of each call, and the resumed call links to the asking span.
    assert [attrs(s)[A.DECISION] for s in ours(run.first, "tag_contact")] == ["allow"]
    asking = the(ours(run.first, "send_email"))
    assert attrs(asking)[A.DECISION] == "require_approval"
    assert asking.status.status_code is StatusCode.UNSET
    assert ours(run.resumed, "tag_contact") == []  # the finished task does not re-run
    approved = the(ours(run.resumed, "send_email"))
    assert attrs(approved)[A.DECISION] == "allow"
    assert attrs(approved)[A.APPROVAL_DECISION] == "approve"
    (link,) = approved.links
    assert (link.context.trace_id, link.context.span_id) == (trace_id(asking), span_id(asking))
    assert trace_id(approved) != trace_id(asking)  # a resume is a new invoke, a new trace


@pytest.mark.parametrize("app_span", [False, True], ids=["no-app-span", "app-span"])
@pytest.mark.parametrize("instrumented", NESTING, indirect=True)
def test_our_spans_nest_under_the_node_span_beside_the_instrumentors_tool_span(
    otel: Otel, clock: Clock, instrumented: Flavor, app_span: bool
) -> None:
    flavor = instrumented
    run = run_agent(otel, clock, app_span=app_span)
    for n, spans in enumerate((run.first, run.resumed)):
        index = by_id(spans)
        for span in ours(spans):
            node = index.get(parent_id(span) or 0)
            if node is None or (node.name, scope(node)) != (flavor.node, flavor.scope):
                where = f"{node.name} ({scope(node)})" if node else "a span outside the run"
                raise NotNested(f"{span.name} is under {where}, not {flavor.node}")
            expect_parent(span, node)
            # beside the instrumentor's span of the same tool run, when the tool ran
            tool_name = span.name.removeprefix("execute_tool ")
            siblings = [
                s
                for s in theirs(spans, flavor, flavor.tool_span(tool_name))
                if parent_id(s) == span_id(node)
            ]
            assert len(siblings) == (1 if attrs(span)[A.DECISION] == "allow" else 0)
        # ours included: one trace, one root (a child of the app span, if any)
        assert_one_whole_trace(spans, run.outer[n] if app_span else None)
    # each of the first invoke's two tool calls ran in a node span of its own
    assert len({parent_id(s) for s in ours(run.first)}) == 2


# ------------------------------------------------------------------ a plain ToolNode


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


@pytest.mark.parametrize("instrumented", NESTING, indirect=True)
def test_guarded_tool_in_a_plain_tool_node_nests_under_the_instrumentors_tool_span(
    otel: Otel, clock: Clock, instrumented: Flavor
) -> None:
    flavor = instrumented
    guard = make_guard(otel, clock)
    runs: list[str] = []

    def send_email(to: str) -> str:
        """Send an email."""
        runs.append(to)
        return f"sent {to}"

    the_tool: BaseTool = tool(guarded(action="email.send", guardrails=guard)(send_email))
    builder = StateGraph(State)
    builder.add_node("tools", ToolNode([the_tool]))
    builder.add_edge(START, "tools")
    builder.add_edge("tools", END)
    graph: Any = builder.compile(checkpointer=InMemorySaver())
    call = {"name": "send_email", "args": {"to": "c1"}, "id": "k1"}

    first = graph.invoke(
        {"messages": [AIMessage(content="", tool_calls=[call])]}, CFG, version="v2"
    )
    (pending,) = first.interrupts
    assert runs == []
    asked = otel.spans()
    otel.exporter.clear()
    graph.invoke(Command(resume={pending.id: {"type": "approve"}}), CFG, version="v2")
    assert runs == ["c1"]
    resumed = otel.spans()

    for spans, decision in ((asked, "require_approval"), (resumed, "allow")):
        mine = the(ours(spans, "send_email"))
        assert attrs(mine)[A.DECISION] == decision
        their_tool = the(theirs(spans, flavor, flavor.tool_span("send_email")))
        node = by_id(spans)[parent_id(their_tool) or 0]
        assert (node.name, scope(node)) == (flavor.node, flavor.scope)
        expect_parent(mine, their_tool)  # the tool's run is what calls our guard
        assert_one_whole_trace(spans)
    (link,) = the(ours(resumed)).links
    assert link.context.span_id == span_id(the(ours(asked)))


# ------------------------------------------------------------------ no instrumentor


def test_without_an_instrumentor_our_spans_join_the_applications_trace(
    otel: Otel, clock: Clock
) -> None:
    run = run_agent(otel, clock, app_span=True)
    first_app, resume_app = run.outer
    assert run.ran == [("tag_contact", "c-1"), ("send_email", "a@example.com")]
    assert sorted(s.name for s in run.first) == [
        "execute_tool send_email",
        "execute_tool tag_contact",
    ]
    for spans, app in ((run.first, first_app), (run.resumed, resume_app)):
        for span in spans:
            assert span.parent is not None
            assert span.parent.span_id == app.get_span_context().span_id
            assert trace_id(span) == app.get_span_context().trace_id
    approved = the(ours(run.resumed, "send_email"))
    (link,) = approved.links
    assert link.context.span_id == span_id(the(ours(run.first, "send_email")))
    assert link.context.trace_id == first_app.get_span_context().trace_id
