"""The conformance matrix: each promise written once, run on every adapter x mode x store.

Ids read as a table: ``test_<promise>[<adapter>-<sync|async>-<store>]``. Adapters:
``guarded`` (``@guarded`` tools under a plain ``ToolNode``), ``tool_node``
(``guarded_tool_node``), ``middleware`` (``GuardrailsMiddleware`` in ``create_agent``, its
default batched interrupt), ``middleware_per_call`` (the same, ``interrupt="per_call"``),
``guard_node`` (``GuardNode`` + its tools node). Each cell checks everything its promise
says and lists every expectation it found broken (``Checks``). Cells that cannot apply are
in ``table.NOT_APPLICABLE`` and skip with the reason.
"""

from __future__ import annotations

import time
from typing import Any

from agent_guardrails import Guardrails, PolicyPack, Scope
from agent_guardrails.ops import apply_pack, rollback_pack
from agent_guardrails.store import Store
from tests.conformance import workers
from tests.conformance.conftest import MATRIX, Env
from tests.conformance.harness import (
    BATCHED,
    HUNG,
    USER_CODE,
    Agent,
    Ask,
    Behaviour,
    Checks,
    DownStore,
    Run,
    Runs,
    ToolBox,
    Watch,
    approve,
    no_exception,
    pack_text,
)

ACTIONS = """
actions:
  email.send: {sensitive: true, cost: 1, approval: {roles: [ops]}}
  crm.tag: {risk: low, cost: 30}
  page.publish: {sensitive: true, cost: 2, approval: {roles: [ops]}}
  crm.lookup: {risk: low, kind: read, fail_open: true}
  crm.note: {risk: low}
  data.enrich: {risk: low, cost: 1}
"""
DAILY = "budgets:\n  - {name: daily, limit: 100, window: day}\n"
EXECUTE = pack_text("defaults: {level: execute}\n" + ACTIONS + DAILY)
ASSIST = pack_text("defaults: {level: assist}\n" + ACTIONS + DAILY)

# The cell that also runs the real CLI as a fresh ``python -c`` subprocess, once per
# durable store (every other durable cell runs the CLI's ``main`` in a forked process).
CLI_SUBPROCESS_CELL = ("middleware", "sync")


def must_ask(c: Checks, run: Run, tool: str) -> list[Ask]:
    """The run paused to ask about ``tool``; else the cell fails here (nothing to answer)."""
    asks = [a for a in run.asks if a.name == tool]
    if not asks:
        c.problems.append(f"no approval was asked for {tool}; the model got {dict(_contents(run))}")
        c.verify()
    return asks


def _contents(run: Run) -> list[tuple[str, str]]:
    return [(k, str(m.content)[:300]) for k, m in run.tool_messages().items()]


def status_of(run: Run, call_id: str) -> str | None:
    result = run.result(call_id)
    return None if result is None else str(result.get("status"))


def reasons_of(run: Run, call_id: str) -> list[str]:
    result = run.result(call_id)
    return [] if result is None else [str(r) for r in result.get("reasons") or []]


def records(store: Store, kind: str, action: str | None = None) -> list[dict[str, Any]]:
    """The data of ``store``'s audit records of ``kind`` (about ``action``), oldest first."""
    return [
        dict(r.data)
        for r in store.audit_records()
        if r.kind == kind and (action is None or r.data.get("action") == action)
    ]


def engage_elsewhere(env: Env, pack: str, argv: list[str], *, subprocess: bool) -> None:
    """An operator acts from another process: the CLI (``argv``) in a forked process, or
    as a fresh subprocess. On memory:// (one process) a second ``Guardrails`` over the
    same ``MemoryStore`` object stands in: for ``kill`` only."""
    if not env.durable:
        assert argv[0] == "kill", argv
        other = Guardrails(PolicyPack.from_yaml(pack), store=env.open())
        other.kill(by="ops", reason="from another guard")
        return
    full = [*argv, "--store", env.url]
    if subprocess:
        workers.cli_subprocess(full)
    else:
        workers.cli(full)


# ---------------------------------------------------------------------------- 1


@MATRIX
def test_p01_assist_simulates(env: Env) -> None:
    """Level 0 never runs the body; the tool's simulate= function makes the draft."""
    runs = Runs()
    agent = env.agent(env.guard(ASSIST), ["send_email"], runs=runs)
    c = Checks()
    with no_exception(c, "the run"):
        run = agent.start("t1", ("send_email", {"to": "c1", "subject": "Hi"}))
    result = run.result("call-0")
    c.check(runs.count() == 0, f"the body ran {runs.count()}x at Assist")
    c.check(not run.asks, f"asked for approval at Assist: {run.asks}")
    c.check(status_of(run, "call-0") == "simulated", f"model got {run.content('call-0')!r}")
    draft = None if result is None else result.get("draft")
    c.check(
        draft == {"preview": "To c1: Hi", "by": "simulate"},
        f"draft is not the simulate= function's return value: {draft!r}",
    )
    c.verify()


# ---------------------------------------------------------------------------- 2


def _asked_email(env: Env, runs: Runs, c: Checks) -> tuple[Agent, Run]:
    agent = env.agent(env.guard(EXECUTE), ["send_email"], runs=runs)
    with no_exception(c, "the first run"):
        run = agent.start("t1", ("send_email", {"to": "c1", "subject": "Hi"}))
    must_ask(c, run, "send_email")
    c.check(runs.count() == 0, "the body ran before approval")
    return agent, run


@MATRIX
def test_p02_approve(env: Env) -> None:
    runs, c = Runs(), Checks()
    agent, _ = _asked_email(env, runs, c)
    with no_exception(c, "the resume"):
        run = agent.settle("t1", approve)
    c.check(
        runs.args_of("send_email") == [{"to": "c1", "subject": "Hi"}],
        f"body runs: {runs.all()}",
    )
    c.check(run.content("call-0") == "sent to c1", f"model got {run.content('call-0')!r}")
    c.verify()


@MATRIX
def test_p02_edit(env: Env) -> None:
    runs, c = Runs(), Checks()
    agent, _ = _asked_email(env, runs, c)
    edited = {"to": "c2", "subject": "Hello"}
    with no_exception(c, "the resume"):
        run = agent.settle(
            "t1",
            lambda a: {"type": "edit", "edited_action": {"name": a.name, "args": edited}},
        )
    c.check(runs.args_of("send_email") == [edited], f"body runs: {runs.all()}")
    c.check(run.content("call-0") == "sent to c2", f"model got {run.content('call-0')!r}")
    c.verify()


@MATRIX
def test_p02_edit_read_by_the_tools_schema(env: Env) -> None:
    """An edited value that does not fit the tool's argument (a list for a string) is
    refused with the field named; nothing runs. A value the schema can read is read."""
    runs, c = Runs(), Checks()
    agent, _ = _asked_email(env, runs, c)
    bad = {"to": ["c2", "c3"], "subject": "Hello"}
    with no_exception(c, "the resume"):
        run = agent.settle(
            "t1", lambda a: {"type": "edit", "edited_action": {"name": a.name, "args": bad}}
        )
    c.check(runs.count() == 0, f"an edit that does not fit ran: {runs.all()}")
    c.check(status_of(run, "call-0") == "denied", f"model got {run.content('call-0')!r}")
    c.check(reasons_of(run, "call-0") == ["edit_invalid"], f"reasons: {reasons_of(run, 'call-0')}")
    c.check(
        "edited to:" in run.content("call-0"),
        f"the refusal does not name the field: {run.content('call-0')!r}",
    )
    c.verify()


@MATRIX
def test_p02_edit_with_an_argument_missing_or_unknown(env: Env) -> None:
    """An edit gives the tool's arguments whole: one that drops a required argument, or
    adds one the tool does not take, is refused with the argument named; nothing runs and
    the thread is not left stuck on it."""
    edits = (({"to": "c2"}, "subject"), ({"to": "c2", "subject": "Hi", "cc": "x"}, "cc"))
    for bad, named in edits:
        runs, c = Runs(), Checks()
        agent, _ = _asked_email(env, runs, c)

        def edit(a: Ask, bad: dict[str, str] = bad) -> dict[str, Any]:
            return {"type": "edit", "edited_action": {"name": a.name, "args": bad}}

        with no_exception(c, f"the resume with {bad}"):
            run = agent.settle("t1", edit)
        c.check(runs.count() == 0, f"the edit {bad} ran: {runs.all()}")
        content = run.content("call-0")
        c.check(reasons_of(run, "call-0") == ["edit_invalid"], f"model got {content!r}")
        c.check(named in content, f"{named} not named: {content!r}")
        c.check(not run.asks, f"still waiting after the refusal: {run.asks}")
        c.verify()


@MATRIX
def test_p02_reject(env: Env) -> None:
    runs, c = Runs(), Checks()
    agent, _ = _asked_email(env, runs, c)
    with no_exception(c, "the resume"):
        run = agent.settle("t1", lambda a: {"type": "reject", "message": "Not today, Ana"})
    c.check(runs.count() == 0, f"a rejected call ran: {runs.all()}")
    c.check(
        "Not today, Ana" in run.content("call-0"),
        f"the reviewer's message is not in the ToolMessage: {run.content('call-0')!r}",
    )
    c.verify()


@MATRIX
def test_p02_respond(env: Env) -> None:
    runs, c = Runs(), Checks()
    agent, _ = _asked_email(env, runs, c)
    with no_exception(c, "the resume"):
        run = agent.settle("t1", lambda a: {"type": "respond", "message": "Ana will call."})
    c.check(runs.count() == 0, f"a call answered with respond ran: {runs.all()}")
    c.check(
        "Ana will call." in run.content("call-0"),
        f"the response is not in the ToolMessage: {run.content('call-0')!r}",
    )
    c.verify()


@MATRIX
def test_p02_reject_stands_when_the_level_rises_meanwhile(env: Env) -> None:
    """The dial is raised to Orchestrate (no approval needed any more) while the question
    waits; the human then rejects: the no stands, and is recorded."""
    runs, c = Runs(), Checks()
    pack = pack_text("defaults: {level: execute, ceiling: orchestrate}\n" + ACTIONS + DAILY)
    guard = env.guard(pack)
    agent = env.agent(guard, ["send_email"], runs=runs)
    with no_exception(c, "the first run"):
        run = agent.start("t1", ("send_email", {"to": "c1", "subject": "Hi"}))
    must_ask(c, run, "send_email")
    guard.set_level(Scope(), 3, by="board", reason="trusted now", override=True)
    with no_exception(c, "the resume"):
        run = agent.settle("t1", lambda a: {"type": "reject", "message": "Not this one"})
    c.check(runs.count() == 0, f"a rejected call ran: {runs.all()}")
    c.check("Not this one" in run.content("call-0"), f"model got {run.content('call-0')!r}")
    answers = [r["answer"] for r in records(guard.store, "approval.resolved")]
    c.check(answers == ["reject"], f"the answers recorded: {answers}")
    c.verify()


@MATRIX
def test_p02_batched_answers_bind_to_the_calls_shown(env: Env) -> None:
    """A turn asks about us and eu (apac is allowed at Orchestrate). While the question
    waits, us is raised to Orchestrate and apac lowered to Execute. The human answers what
    was shown, [approve us, reject eu]: eu does not run, us does, and apac, which came to
    need a human after the question was put, is not taken as answered."""
    runs, c = Runs(), Checks()
    regions = "".join(
        f"  - {{scope: {{region: {r}}}, level: {lv}}}\n"
        for r, lv in (("us", "execute"), ("eu", "execute"), ("apac", "orchestrate"))
    )
    pack = (
        pack_text(
            "defaults: {level: execute, ceiling: orchestrate}\n" + ACTIONS + DAILY + "levels:\n"
        )
        + regions
    )
    guard = env.guard(pack)
    agent = env.agent(guard, ["publish_page"], runs=runs)
    calls = [("publish_page", {"region": r, "title": r}) for r in ("us", "eu", "apac")]
    with no_exception(c, "the first run"):
        run = agent.start("t1", *calls)
    shown = [a.args["region"] for a in run.asks]
    c.check(shown == ["us", "eu"], f"asked about {shown}")
    c.verify()
    guard.set_level(Scope(region="us"), 3, by="ops", reason="gate passed", override=True)
    guard.set_level(Scope(region="apac"), 1, by="ops", reason="apac incident")
    answers = {"us": {"type": "approve"}, "eu": {"type": "reject", "message": "not eu"}}
    with no_exception(c, "the resume"):
        run = agent.settle("t1", lambda a: answers[a.args["region"]])
    ran = sorted(str(args["region"]) for _, args in runs.all())
    c.check(ran == ["us"], f"ran: {ran}")
    c.check("not eu" in run.content("call-1"), f"eu's reply: {run.content('call-1')!r}")
    c.check(reasons_of(run, "call-2") == ["approval_not_asked"], f"apac: {run.content('call-2')!r}")
    c.verify()


# ---------------------------------------------------------------------------- 3


def _edit_to_us(env: Env, pack: str, expect: str, prepare: Any = None) -> tuple[Run, Checks]:
    """publish_page(region=eu) asks; the approver edits region to us. First, as a control,
    a direct publish_page(region=us) call must end ``expect`` without running."""
    runs, c = Runs(), Checks()
    guard = env.guard(pack)
    if prepare is not None:
        prepare(guard)
    agent = env.agent(guard, ["publish_page"], runs=runs)
    with no_exception(c, "the control run (region=us)"):
        control = agent.start("direct", ("publish_page", {"region": "us", "title": "Sale"}))
    c.check(
        runs.count() == 0 and status_of(control, "call-0") == expect,
        f"control: a direct region=us call is not {expect} either: "
        f"{control.content('call-0')!r}, asks {control.asks}",
    )
    with no_exception(c, "the first run"):
        run = agent.start("t1", ("publish_page", {"region": "eu", "title": "Sale"}))
    must_ask(c, run, "publish_page")
    edit = {"name": "publish_page", "args": {"region": "us", "title": "Sale"}}
    with no_exception(c, "the resume"):
        run = agent.settle("t1", lambda a: {"type": "edit", "edited_action": edit})
    c.check(runs.count() == 0, f"the edited call (region=us) ran: {runs.all()}")
    return run, c


@MATRIX
def test_p03_edit_rescoped_kill(env: Env) -> None:
    """An edit to region=us meets the kill-switch engaged for region=us."""

    def kill_us(guard: Guardrails) -> None:
        guard.kill(Scope(region="us"), by="ops", reason="us pause")

    run, c = _edit_to_us(env, EXECUTE, "halted", kill_us)
    c.check(
        status_of(run, "call-0") == "halted",
        f"not halted by kill_switch region=us: {run.content('call-0')!r}",
    )
    c.verify()


@MATRIX
def test_p03_edit_rescoped_assist(env: Env) -> None:
    """An edit to region=us meets the pack's Assist level for region=us."""
    pack = pack_text(
        "defaults: {level: execute}\n"
        + ACTIONS
        + "levels:\n  - {scope: {region: us}, level: assist}\n"
    )
    run, c = _edit_to_us(env, pack, "simulated")
    c.check(
        status_of(run, "call-0") == "simulated",
        f"not simulated at Assist for region=us: {run.content('call-0')!r}",
    )
    c.verify()


@MATRIX
def test_p03_edit_rescoped_budget(env: Env) -> None:
    """An edit to region=us meets an exhausted region=us budget (nothing left, cost 2)."""
    pack = pack_text(
        "defaults: {level: execute}\n"
        + ACTIONS
        + "budgets:\n  - {name: us-only, scope: {region: us}, limit: 0, window: day}\n"
    )
    run, c = _edit_to_us(env, pack, "denied")
    c.check(
        status_of(run, "call-0") == "denied" and "budget_exceeded" in reasons_of(run, "call-0"),
        f"not denied by the region=us budget: {run.content('call-0')!r}",
    )
    c.verify()


# ---------------------------------------------------------------------------- 4


@MATRIX
def test_p04_kill_from_another_process(env: Env) -> None:
    """A kill-switch engaged elsewhere halts the running agent's next call: through another
    store handle, and (durable stores) through the CLI in another process."""
    runs, c = Runs(), Checks()
    agent = env.agent(env.guard(EXECUTE), ["note_contact"], runs=runs)
    with no_exception(c, "the run before the kill"):
        agent.start("t0", ("note_contact", {"contact": "c0"}))
    c.check(runs.count() == 1, "the call before the kill did not run")

    # Round 1: another store handle on the same database (memory: another Guardrails).
    if env.durable:
        env.open().set_kill_switch(Scope(), True, by="ops", reason="handle")
    else:
        engage_elsewhere(env, EXECUTE, ["kill"], subprocess=False)
    with no_exception(c, "the run after the kill"):
        run = agent.start("t1", ("note_contact", {"contact": "c1"}))
    c.check(runs.count() == 1, "the call after a kill through another handle ran")
    c.check(status_of(run, "call-0") == "halted", f"model got {run.content('call-0')!r}")
    if not env.durable:
        c.verify()
        return

    # Round 2: released, then engaged by the operator CLI in another process.
    env.open().set_kill_switch(Scope(), False, by="ops", reason="released")
    with no_exception(c, "the run after the release"):
        agent.start("t2", ("note_contact", {"contact": "c2"}))
    c.check(runs.count() == 2, "a call after the switch was released did not run")
    argv = ["kill", "global", "--by", "ops", "--reason", "from the CLI"]
    engage_elsewhere(env, EXECUTE, argv, subprocess=(env.adapter, env.mode) == CLI_SUBPROCESS_CELL)
    with no_exception(c, "the run after the CLI kill"):
        run = agent.start("t3", ("note_contact", {"contact": "c3"}))
    c.check(runs.count() == 2, "the call after a kill by the CLI in another process ran")
    c.check(status_of(run, "call-0") == "halted", f"model got {run.content('call-0')!r}")
    c.verify()


# ---------------------------------------------------------------------------- 5


def _apply_elsewhere(env: Env, text: str) -> None:
    """Apply pack ``text``: the CLI in another process (durable stores), else
    ``apply_pack`` on the same ``MemoryStore``."""
    if not env.durable:
        apply_pack(env.open(), text, by="ana")
        return
    path = env.tmp / "next-pack.yaml"
    path.write_text(text)
    argv = ["policy", "apply", str(path), "--by", "ana", "--store", env.url]
    if (env.adapter, env.mode) == CLI_SUBPROCESS_CELL:
        workers.cli_subprocess(argv)
    else:
        workers.cli(argv)


@MATRIX
def test_p05_policy_apply_and_rollback(env: Env) -> None:
    """``policy apply`` v2 (Assist) governs the running agent's next call; a rollback to v1
    governs the one after."""
    runs, c = Runs(), Checks()
    guard = env.guard(EXECUTE)
    agent = env.agent(guard, ["note_contact"], runs=runs)
    with no_exception(c, "the run under v1"):
        agent.start("t1", ("note_contact", {"contact": "c1"}))
    c.check(runs.count() == 1, "the call under v1 (Execute) did not run")

    _apply_elsewhere(env, ASSIST.replace("version: '1'", "version: '2'"))
    with no_exception(c, "the run after apply"):
        run = agent.start("t2", ("note_contact", {"contact": "c2"}))
    c.check(runs.count() == 1, "the call after v2 (Assist) was applied ran")
    c.check(status_of(run, "call-0") == "simulated", f"under v2 got {run.content('call-0')!r}")
    result = run.result("call-0") or {}
    c.check(result.get("pack_version") == "2", f"result pack_version {result.get('pack_version')}")

    rollback_pack(env.open(), by="ana")
    before = runs.count()
    with no_exception(c, "the run after rollback"):
        run = agent.start("t3", ("note_contact", {"contact": "c3"}))
    c.check(runs.count() == before + 1, "the call after the rollback to v1 (Execute) did not run")
    versions = [d.get("pack_version") for d in records(guard.store, "decision", "crm.note")]
    c.check(versions == ["1", "2", "1"], f"decision records' pack versions: {versions}")
    c.verify()


@MATRIX
def test_p05_stale_approval(env: Env) -> None:
    """A question asked under v1, answered after v2 was applied: refused as approval_stale."""
    runs, c = Runs(), Checks()
    guard = env.guard(EXECUTE)
    agent = env.agent(guard, ["send_email"], runs=runs)
    with no_exception(c, "the first run"):
        run = agent.start("t1", ("send_email", {"to": "c1", "subject": "Hi"}))
    (ask, *_) = must_ask(c, run, "send_email")
    c.check(ask.pack_version == "1", f"asked under pack version {ask.pack_version}")
    v2 = EXECUTE.replace("version: '1'", "version: '2'").replace("limit: 100", "limit: 200")
    _apply_elsewhere(env, v2)
    with no_exception(c, "the resume"):
        run = agent.answer("t1", approve)
    c.check(not run.asks, f"asked again instead of refusing: {run.asks}")
    c.check(runs.count() == 0, f"a stale approval ran the call: {runs.all()}")
    c.check(
        "approval_stale" in run.content("call-0"),
        f"the model got {run.content('call-0')!r}, not approval_stale",
    )
    refused = [str(d.get("refused")) for d in records(guard.store, "approval.resolved")]
    c.check(
        any(r.startswith("approval_stale") for r in refused),
        f"approval.resolved records' refused: {refused}",
    )
    held = {k: v for k, v in guard.store.counters("budget:").items() if v}
    c.check(not held, f"the refused call still holds its reservation: {held}")
    c.verify()


# ---------------------------------------------------------------------------- 6


@MATRIX
def test_p06_report_cost(env: Env) -> None:
    """report_cost(7.0) in the body commits 7.0, not the 1.0 estimate."""
    runs, c = Runs(), Checks()
    guard = env.guard(EXECUTE)
    box = ToolBox(runs, Behaviour(actual_cost=7.0))
    agent = env.agent(guard, ["enrich_contact"], box=box)
    with no_exception(c, "the run"):
        run = agent.start("t1", ("enrich_contact", {"contact": "c1"}))
    c.check(runs.count() == 1, f"body ran {runs.count()}x")
    c.check(run.content("call-0") == "enriched c1", f"model got {run.content('call-0')!r}")
    counters = guard.store.counters("budget:")
    c.check(sum(counters.values()) == 7.0, f"budget counters {counters}, want 7.0")
    c.verify()


# ---------------------------------------------------------------------------- 7

# crm.tag costs 30 against a budget of 100: K = 3 calls fit.
K, COST, LIMIT = 3, 30.0, 100.0


def _spent(store: Store) -> float:
    return sum(store.counters("budget:").values())


@MATRIX
def test_p07_parallel_calls(env: Env) -> None:
    """One AI message with 5 parallel priced calls; the budget fits 3: exactly 3 run, and
    never more than the budget is held. (A guard node reserves a turn's calls as one batch:
    all fit or none runs, so there none of the 5 runs, each denied ``budget_exceeded``. The
    middleware batches only turns in which a call can need a human; these calls never do.)"""
    runs, c = Runs(), Checks()
    guard = env.guard(EXECUTE)
    agent = env.agent(guard, ["tag_contact"], runs=runs)
    calls = [("tag_contact", {"contact": f"c{i}"}) for i in range(5)]
    want = 0 if env.adapter == "guard_node" else K
    with Watch(env.open()) as watch, no_exception(c, "the run"):
        run = agent.start("t1", *calls)
    c.check(runs.count() == want, f"{runs.count()} bodies ran, want exactly {want}")
    c.check(_spent(guard.store) == want * COST, f"spent {_spent(guard.store)}, want {want * COST}")
    c.check(watch.highest <= LIMIT, f"a counter reached {watch.highest} > {LIMIT}")
    denied = [k for k in run.tool_messages() if "budget_exceeded" in reasons_of(run, k)]
    c.check(len(denied) == 5 - want, f"{len(denied)} calls denied budget_exceeded, want {5 - want}")
    c.verify()


@MATRIX
def test_p07_threads(env: Env) -> None:
    """Six conversations at once (threads / concurrent tasks), one priced call each."""
    runs, c = Runs(), Checks()
    guard = env.guard(EXECUTE)
    agent = env.agent(guard, ["tag_contact"], runs=runs)
    conversations = [(f"t{i}", ("tag_contact", {"contact": f"c{i}"})) for i in range(6)]
    with Watch(env.open()) as watch, no_exception(c, "the runs"):
        agent.start_many(conversations)
    c.check(runs.count() == K, f"{runs.count()} bodies ran, want exactly {K}")
    c.check(_spent(guard.store) == K * COST, f"spent {_spent(guard.store)}, want {K * COST}")
    c.check(watch.highest <= LIMIT, f"a counter reached {watch.highest} > {LIMIT}")
    c.verify()


@MATRIX
def test_p07_processes(env: Env) -> None:
    """Three processes, two conversations each, one priced call per conversation."""
    c = Checks()
    path = env.tmp / "runs.jsonl"
    guard = env.guard(EXECUTE)  # creates the tables and activates the pack first
    barrier = workers.CTX.Barrier(3)
    started = [
        workers.Worker(
            workers.budget_run,
            env.adapter,
            env.mode,
            env.url,
            EXECUTE,
            str(path),
            f"p{p}",
            2,
            barrier,
        )
        for p in range(3)
    ]
    with Watch(env.open()) as watch:
        outcomes = [w.result() for w in started]
    c.check(all(code == 0 for code, _ in outcomes), f"workers: {outcomes}")
    ran = Runs(path).count()
    c.check(ran == K, f"{ran} bodies ran across processes, want exactly {K}")
    c.check(_spent(guard.store) == K * COST, f"spent {_spent(guard.store)}, want {K * COST}")
    c.check(watch.highest <= LIMIT, f"a counter reached {watch.highest} > {LIMIT}")
    c.verify()


# ---------------------------------------------------------------------------- 8

STORE_DOWN = pack_text(
    """
defaults: {level: execute}
actions:
  crm.lookup: {risk: low, kind: read, fail_open: true}
  crm.tag: {risk: low, cost: 30}
  email.send: {sensitive: true, approval: {roles: [ops]}}
  crm.note: {risk: low}
budgets:
  - {name: daily, limit: 100, window: day}
"""
)


@MATRIX
def test_p08_store_down(env: Env) -> None:
    """While the store is down a fail_open read runs and says so, capped and sensitive
    calls are denied (store_unavailable); nothing raises; the records reach the audit log
    once the store is back, and the chain verifies."""
    runs, c = Runs(), Checks()
    real = env.open()
    double = DownStore(real)
    guard = env.guard(STORE_DOWN, store=double)
    agent = env.agent(
        guard, ["lookup_contact", "tag_contact", "send_email", "note_contact"], runs=runs
    )
    double.down = True
    with no_exception(c, "the run while the store is down"):
        run = agent.start(
            "down",
            ("lookup_contact", {"contact": "c1"}),
            ("tag_contact", {"contact": "c2"}),
            ("send_email", {"to": "c3", "subject": "Hi"}),
        )
    c.check(runs.args_of("lookup_contact") == [{"contact": "c1"}], "the fail_open read did not run")
    c.check(run.content("call-0") == "contact c1", f"fail_open read got {run.content('call-0')!r}")
    c.check(runs.count("tag_contact") == 0, "a capped call ran while the store was down")
    c.check(runs.count("send_email") == 0, "a sensitive call ran while the store was down")
    c.check(not run.asks, f"asked a human while the store was down: {run.asks}")
    for call_id, what in (("call-1", "capped crm.tag"), ("call-2", "sensitive email.send")):
        c.check(
            "store_unavailable" in reasons_of(run, call_id),
            f"{what} not denied store_unavailable: {run.content(call_id)!r}",
        )
    double.down = False
    with no_exception(c, "the run after the store is back"):
        agent.start("up", ("note_contact", {"contact": "c4"}))
    close = getattr(guard, "close", None)
    if callable(close):
        close()
    reader = env.open()
    lookups = records(reader, "decision", "crm.lookup")
    c.check(
        any("fail_open" in d.get("reasons", []) for d in lookups),
        f"no decision record says fail_open for the read: {lookups}",
    )
    for action in ("crm.tag", "email.send"):
        decided = records(reader, "decision", action)
        c.check(
            any("store_unavailable" in d.get("reasons", []) for d in decided),
            f"no store_unavailable decision record for {action}: {decided}",
        )
    for kind in ("execution.started", "execution.finished"):
        c.check(bool(records(reader, kind, "crm.lookup")), f"no {kind} record for the read")
    verified = reader.verify_audit()
    c.check(verified.ok, f"audit chain: {verified}")
    c.verify()


# ---------------------------------------------------------------------------- 9


@MATRIX
def test_p09_crash_mid_call(env: Env) -> None:
    """A worker dies inside the tool body; the thread, resumed here, asks a human
    (in_doubt) instead of re-running or raising; approving runs the body once more."""
    c = Checks()
    saver_path = env.tmp / "checkpoints.db"
    path = env.tmp / "runs.jsonl"
    env.guard(EXECUTE).store.close()  # the tables and the active pack, before the worker
    code, out = workers.Worker(
        workers.crash_run,
        env.adapter,
        env.mode,
        env.url,
        EXECUTE,
        ["tag_contact"],
        str(saver_path),
        str(path),
        "t1",
        [("tag_contact", {"contact": "c1"})],
    ).result()
    runs = Runs(path)
    assert code == 3, f"harness: the worker did not die in the body: {out}"
    assert runs.count() == 1, f"harness: the worker ran {runs.count()} bodies"

    guard = env.guard(EXECUTE)
    with workers.sqlite_saver(saver_path, env.mode, env.loop) as saver:
        agent = env.agent(guard, ["tag_contact"], runs=runs, saver=saver)
        with no_exception(c, "resuming the thread"):
            run = agent.resume("t1", None)
        c.check(runs.count() == 1, "the body was re-run silently after the crash")
        asks = must_ask(c, run, "tag_contact")
        c.check(
            any("in_doubt" in a.reasons for a in asks),
            f"the question's reasons lack in_doubt: {[a.reasons for a in asks]}",
        )
        with no_exception(c, "approving"):
            run = agent.settle("t1", approve)
        c.check(runs.count() == 2, f"after approval the body ran {runs.count() - 1}x more")
        c.check(run.content("call-0") == "tagged c1", f"model got {run.content('call-0')!r}")
    c.verify()


# ---------------------------------------------------------------------------- 10


def _run_scope(env: Env, pack: str, kill: bool) -> tuple[Runs, dict[str, Run], Checks]:
    """note_contact in three runs: workflow=w1 in configurable, in context=, and none."""
    runs, c = Runs(), Checks()
    guard = env.guard(pack)
    if kill:
        guard.kill(Scope(workflow="w1"), by="ops", reason="w1 pause")
    agent = env.agent(guard, ["note_contact"], runs=runs)
    call = ("note_contact", {"contact": "c1"})
    out: dict[str, Run] = {}
    with no_exception(c, "the run with configurable workflow=w1"):
        out["configurable"] = agent.start("cfg", call, workflow="w1")
    c.check(runs.count() == 0, "the call with configurable workflow=w1 ran")
    with no_exception(c, "the run with context workflow=w1"):
        out["context"] = agent.start("ctx", call, context={"workflow": "w1"})
    c.check(runs.count() == 0, "the call with context workflow=w1 ran")
    before = runs.count()
    with no_exception(c, "the run without a workflow"):
        out["none"] = agent.start("none", call)
    c.check(runs.count() == before + 1, "the control call (no workflow) did not run")
    return runs, out, c


@MATRIX
def test_p10_run_scope_kill(env: Env) -> None:
    """A kill-switch on workflow=w1 halts calls whose run names workflow w1."""
    _, out, c = _run_scope(env, EXECUTE, kill=True)
    for source in ("configurable", "context"):
        run = out[source]
        c.check(
            status_of(run, "call-0") == "halted",
            f"{source}: not halted, model got {run.content('call-0')!r}",
        )
    c.verify()


@MATRIX
def test_p10_run_scope_level(env: Env) -> None:
    """A level rule {workflow: w1} -> assist simulates calls whose run names workflow w1."""
    pack = pack_text(
        "defaults: {level: execute}\n"
        + ACTIONS
        + "levels:\n  - {scope: {workflow: w1}, level: assist}\n"
    )
    _, out, c = _run_scope(env, pack, kill=False)
    for source in ("configurable", "context"):
        run = out[source]
        c.check(
            status_of(run, "call-0") == "simulated",
            f"{source}: not simulated, model got {run.content('call-0')!r}",
        )
    c.verify()


@MATRIX
def test_p10_scope_arguments_the_tool_does_not_take(env: Env) -> None:
    """A model that adds ``region="eu"`` to a tool with no ``region`` parameter does not
    move the call out of its region: the kill-switch on the guard's region halts it."""
    runs, c = Runs(), Checks()
    guard = env.guard(EXECUTE, scope={"region": "us"})
    guard.kill(Scope(region="us"), by="ops", reason="us incident")
    agent = env.agent(guard, ["note_contact"], runs=runs)
    with no_exception(c, "the run naming another region"):
        run = agent.start("t1", ("note_contact", {"contact": "c1", "region": "eu"}))
        c.check(
            status_of(run, "call-0") == "halted",
            f"not halted, model got {run.content('call-0')!r}",
        )
    c.check(runs.count() == 0, f"the body ran: {runs.all()}")
    c.verify()


# ---------------------------------------------------------------------------- 11

MODEL_PRICED = pack_text(
    """
defaults: {level: execute}
actions:
  crm.note: {risk: low}
model_prices:
  ConformanceModel: {input_per_1k: 1.0, output_per_1k: 1.0}
budgets:
  - {name: model-spend, limit: 100, window: day}  # no actions: covers model.call too
"""
)


@MATRIX
def test_p11_model_hooks_fail_closed(env: Env) -> None:
    """With model prices and a budget covering model.call, a down store means the model is
    not called, nothing raises, and the run ends saying the store is unavailable."""
    runs, c = Runs(), Checks()
    double = DownStore(env.open())
    guard = env.guard(MODEL_PRICED, store=double)
    agent = env.agent(guard, ["note_contact"], runs=runs)
    with no_exception(c, "the control run (store up)"):
        agent.start("up", ("note_contact", {"contact": "c1"}))
    spent = _spent(double)
    if not c.check(spent > 0, "the control run charged no model spend (price name unmatched?)"):
        c.verify()
    before = agent.model.calls
    double.down = True
    with no_exception(c, "the run while the store is down"):
        run = agent.start("down", ("note_contact", {"contact": "c2"}))
    c.check(agent.model.calls == before, f"the model was called {agent.model.calls - before}x")
    c.check("unavailable" in run.last_ai(), f"the run ended with {run.last_ai()!r}")
    c.check(runs.count() == 1, f"a tool ran while the store was down: {runs.all()}")
    c.verify()


# ---------------------------------------------------------------------------- 12


@MATRIX
def test_p12_exactly_once_replay(env: Env) -> None:
    """An allowed call and one that asks, in one message: on resume the allowed call is not
    run again, and the model gets both results. (A guard node, and the middleware in its
    default batched mode, run none of a turn before its one question is answered: there
    the allowed call runs once, after the resume.)"""
    runs, c = Runs(), Checks()
    guard = env.guard(EXECUTE)
    agent = env.agent(guard, ["tag_contact", "send_email"], runs=runs)
    with no_exception(c, "the first run"):
        run = agent.start(
            "t1", ("tag_contact", {"contact": "c1"}), ("send_email", {"to": "c2", "subject": "Hi"})
        )
    must_ask(c, run, "send_email")
    first = 0 if env.adapter in BATCHED else 1
    c.check(
        runs.count("tag_contact") == first,
        f"the first run ran the allowed call {runs.count('tag_contact')}x, want {first}",
    )
    with no_exception(c, "the resume"):
        run = agent.settle("t1", approve)
    c.check(
        runs.count("tag_contact") == 1,
        f"after the resume the allowed call has run {runs.count('tag_contact')}x, want 1",
    )
    c.check(runs.count("send_email") == 1, f"approved call ran {runs.count('send_email')}x")
    c.check(run.content("call-0") == "tagged c1", f"call-0 got {run.content('call-0')!r}")
    c.check(run.content("call-1") == "sent to c2", f"call-1 got {run.content('call-1')!r}")
    c.check(_spent(guard.store) == COST + 1, f"spent {_spent(guard.store)}, want {COST + 1}")
    c.verify()


# ---------------------------------------------------------------------------- 13

TRIP_WIRED = pack_text(
    """
defaults: {level: execute}
actions:
  crm.note:
    risk: low
    validators:
      - banned_terms: {terms: [spam], fields: [contact]}
gates:
  - {from: assist, to: execute}
"""
)


@MATRIX
def test_p13_policy_violation_demotes(env: Env) -> None:
    """A validator failing at Execute, where a gate leads into Execute, lowers the scope to
    Assist in the same call (once, recorded as the trip-wire); the next call is a draft."""
    guard = env.guard(TRIP_WIRED)
    runs, c = Runs(), Checks()
    agent = env.agent(guard, ["note_contact"], runs=runs)
    with no_exception(c, "the run"):
        run = agent.start("t1", ("note_contact", {"contact": "spam-1"}))
    c.check(status_of(run, "call-0") == "denied", f"model got {run.content('call-0')!r}")
    c.check(runs.count() == 0, "the violating call ran")
    c.check(guard.store.get_level("global") == 0, "the scope was not lowered to Assist")
    trips = records(guard.store, "trip_wire")
    c.check(len(trips) == 1, f"trip-wire records: {trips}")
    with no_exception(c, "the second run"):
        run = agent.start("t2", ("note_contact", {"contact": "c-2"}))
    c.check(status_of(run, "call-0") == "simulated", f"not a draft: {run.content('call-0')!r}")
    c.check(runs.count() == 0, "a call ran at Assist after the demotion")
    c.verify()


# ---------------------------------------------------------------------------- 14

USER_CHECKED = pack_text(
    """
defaults: {level: execute}
actions:
  crm.note:
    risk: low
    validators:
      - conformance_blocking: {}
      - consent: {check: conformance_consent, entity: contact}
  email.send: {risk: low, kind: orchestrate}
"""
)


@MATRIX
def test_p14_user_code_off_the_loop(env: Env) -> None:
    """The application's own validators, consent checks and ``simulate=`` functions may
    block (they call APIs): on async paths they run on a worker thread, never on the event
    loop nor on a store's own thread; they decide as on the sync paths."""
    runs, c = Runs(), Checks()
    agent = env.agent(env.guard(USER_CHECKED), ["note_contact", "send_email"], runs=runs)
    USER_CODE.clear()
    with no_exception(c, "the runs"):
        ok = agent.start("t1", ("note_contact", {"contact": "c-1"}))
        blocked = agent.start("t2", ("note_contact", {"contact": "blocked-2"}))
        refused = agent.start("t3", ("note_contact", {"contact": "no-consent-3"}))
    c.check(ok.content("call-0") == "noted c-1", f"a passing call: {ok.content('call-0')!r}")
    c.check(runs.args_of("note_contact") == [{"contact": "c-1"}], f"body runs: {runs.all()}")
    c.check(
        reasons_of(blocked, "call-0") == ["validator_failed:conformance_blocking"],
        f"the custom validator's refusal: {blocked.content('call-0')!r}",
    )
    c.check(
        reasons_of(refused, "call-0") == ["validator_failed:consent"],
        f"the consent check's refusal: {refused.content('call-0')!r}",
    )
    with no_exception(c, "the drafted run"):  # orchestrate at Execute: a draft
        draft = agent.start("t4", ("send_email", {"to": "c4", "subject": "Hi"}))
    c.check(status_of(draft, "call-0") == "simulated", f"model got {draft.content('call-0')!r}")
    seen = {what for what, _, _ in USER_CODE.calls}
    c.check(seen == {"validator", "consent", "simulate"}, f"user code that ran: {seen}")
    on_loop = [(what, thread) for what, thread, loop in USER_CODE.calls if loop]
    c.check(not on_loop, f"user code ran on an event loop: {on_loop}")
    store_threads = [
        (what, thread)
        for what, thread, _ in USER_CODE.calls
        # the library's own threads, but for the pool it runs user code on
        if thread.startswith("agent-guardrails") and not thread.startswith("agent-guardrails-user")
    ]
    c.check(not store_threads, f"user code ran on a store's thread: {store_threads}")
    c.verify()


# ---------------------------------------------------------------------------- 15

CHECK_TIMED = pack_text(
    """
defaults: {level: execute, check_timeout: 0.3}
actions:
  crm.note:
    risk: low
    validators:
      - conformance_hangs: {}
levels:
  - {scope: {}, level: execute}
gates:
  - {from: assist, to: execute}
"""
)


@MATRIX
def test_p15_a_hung_check_fails_closed_in_time(env: Env) -> None:
    """An application's check that does not answer within the pack's ``check_timeout``
    fails closed: the call is denied (``validator_error``), its body never runs and the run
    does not hang. That is not a policy violation: no trip-wire lowers the level, and the
    next call is decided as usual."""
    runs, c = Runs(), Checks()
    guard = env.guard(CHECK_TIMED)
    agent = env.agent(guard, ["note_contact"], runs=runs)
    HUNG.clear()
    try:
        began = time.monotonic()
        with no_exception(c, "the run"):
            hung = agent.start("t1", ("note_contact", {"contact": "hang-1"}))
        waited = time.monotonic() - began
    finally:
        HUNG.set()
    c.check(
        reasons_of(hung, "call-0") == ["validator_error:conformance_hangs"],
        f"the hung check's call: {hung.content('call-0')!r}",
    )
    c.check("did not answer within 0.3 s" in hung.content("call-0"), "the reason is not told")
    c.check(runs.count() == 0, "the body of a call whose check hung ran")
    c.check(waited < 10, f"the run waited {waited:.1f} s for a check timed out at 0.3 s")
    c.check(records(guard.store, "trip_wire") == [], "a check that timed out tripped the level")
    with no_exception(c, "the next run"):
        ok = agent.start("t2", ("note_contact", {"contact": "c-2"}))
    c.check(ok.content("call-0") == "noted c-2", f"the next call: {ok.content('call-0')!r}")
    c.verify()
