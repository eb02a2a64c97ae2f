"""Every blocking call the served example's guarded runs make on the event loop, in order.

``langgraph dev`` stops a run at its *first* blocking call (blockbuster raises
``BlockingError``), so the server only ever names one. This survey runs the same graph
in-process, on an asyncio loop, under the same blockbuster set-up the server uses
(``langgraph_runtime_inmem.queue._enable_blockbuster``, a private helper), but records each
blocking call made under ``agent_guardrails`` and lets it go on, so a run reaches its end
and every call is listed: an allowed call, a call that asks for approval, and its approval.

    .venv/bin/python -m tests.served.blocking_survey
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import itertools
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command

import agent_guardrails
from tests.served._server import EXAMPLE

LIBRARY = str(Path(agent_guardrails.__file__).resolve().parent)
ANA = {"identity": "ana", "is_authenticated": True, "permissions": ["marketing_ops"]}


@dataclass(frozen=True)
class BlockingCall:
    """One blocking call: what blocked, the phase, and the library frames that led to it
    (innermost first) as ``function (file:line)``."""

    blocked: str
    phase: str
    frames: tuple[str, ...]

    def describe(self) -> str:
        return f"[{self.phase}] {self.blocked} <- " + " <- ".join(self.frames)


def _library_frames(frame: FrameType | None) -> tuple[str, ...]:
    frames: list[str] = []
    while frame is not None:
        path = frame.f_code.co_filename
        if path.startswith(LIBRARY):
            where = os.path.relpath(path, Path(LIBRARY).parent.parent)
            frames.append(f"{frame.f_code.co_name} ({where}:{frame.f_lineno})")
        frame = frame.f_back
    return tuple(frames)


@contextlib.contextmanager
def recording_blockbuster(calls: list[BlockingCall], phase: list[str]) -> Iterator[None]:
    """The server's blockbuster set-up, recording the library's blocking calls instead of
    raising (calls the server allows, or made outside the library, are let through)."""
    # Untyped and private; importing it makes a .langgraph_api folder in the working folder.
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        queue = importlib.import_module("langgraph_runtime_inmem.queue")
    bb: Any = queue._enable_blockbuster()
    bb.deactivate()
    for name, function in bb.functions.items():

        def record(*_args: Any, _name: str = name, **_kwargs: Any) -> bool:
            frames = _library_frames(inspect.currentframe())
            if frames:
                calls.append(BlockingCall(_name, phase[0], frames))
            return True

        function.can_block_predicate = record
    bb.activate()
    try:
        yield
    finally:
        bb.deactivate()


def load_example(store_url: str) -> ModuleType:
    """``integrations/langgraph-server/guarded_agent.py`` over the store at ``store_url``."""
    spec = importlib.util.spec_from_file_location(
        "served_guarded_agent", EXAMPLE / "guarded_agent.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    before = os.environ.get("AGENT_GUARDRAILS_STORE")
    os.environ["AGENT_GUARDRAILS_STORE"] = store_url  # read once, when the module loads
    try:
        spec.loader.exec_module(module)
    finally:
        if before is None:
            del os.environ["AGENT_GUARDRAILS_STORE"]
        else:
            os.environ["AGENT_GUARDRAILS_STORE"] = before
    return module


async def _runs(graph: Any, phase: list[str]) -> None:
    config: Any = {"configurable": {"thread_id": "survey", "langgraph_auth_user": ANA}}
    phase[0] = "allowed call (tag)"
    await graph.ainvoke({"messages": [("user", "tag c1 vip")]}, config)
    phase[0] = "call asking for approval (email)"
    first = await graph.ainvoke({"messages": [("user", "email c1 Hi")]}, config, version="v2")
    (pending,) = first.interrupts
    phase[0] = "approval resumed (approve)"
    await graph.ainvoke(Command(resume={pending.id: {"type": "approve"}}), config, version="v2")


def survey() -> list[BlockingCall]:
    """Run the example in-process and return the library's blocking calls, in order.

    The loop runs on a thread of its own, as in the server (where the graph is imported on
    another thread than the one running it), so the store opens its connection there."""
    calls: list[BlockingCall] = []
    phase = ["set-up"]
    errors: list[BaseException] = []
    with tempfile.TemporaryDirectory() as folder:
        example = load_example(f"sqlite:///{Path(folder) / 'survey.db'}")
        graph = example.graph.copy(
            update={"checkpointer": InMemorySaver(), "store": InMemoryStore()}
        )

        def run() -> None:
            try:
                asyncio.run(_runs(graph, phase))
            except BaseException as exc:  # reported on the calling thread
                errors.append(exc)

        try:
            with recording_blockbuster(calls, phase):
                loop_thread = threading.Thread(target=run, name="survey-loop")
                loop_thread.start()
                loop_thread.join()
        finally:
            example.guard.close()
    if errors:
        raise errors[0]
    return calls


def report(calls: list[BlockingCall]) -> list[str]:
    """One line per place in the library that blocked, in the order first reached: the
    phase, the store operation the pipeline asked for (the frame under ``effects.py``),
    the innermost library frame, and what blocked there."""
    lines: dict[tuple[str, str], list[str]] = {}
    for call in calls:
        operation = _operation(call.frames)
        key = (f"[{call.phase}] {operation}", call.frames[0])
        blocked = lines.setdefault(key, [])
        if call.blocked not in blocked:
            blocked.append(call.blocked)
    return [f"{where}: {inner} -> {', '.join(what)}" for (where, inner), what in lines.items()]


def _operation(frames: tuple[str, ...]) -> str:
    for inner, outer in itertools.pairwise(frames):
        if "pipeline/effects.py" in outer:
            return inner
    return frames[-1]


def main() -> None:
    calls = survey()
    print(f"{len(calls)} blocking calls under agent_guardrails on the event loop:")
    print("\n".join(report(calls)))


if __name__ == "__main__":
    main()
