"""Shared helpers for the core tests: pack text, a settable clock and a memory:// guard."""

from __future__ import annotations

import gc
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from blockbuster import blockbuster_ctx

from agent_guardrails import Guardrails, PolicyPack
from agent_guardrails.store import MemoryStore

# 2024-01-03 12:00:00 UTC, a Wednesday: far from day, week and month boundaries.
NOON_WEDNESDAY = 1_704_283_200.0
DAY = 86_400.0


def pack_text(body: str, *, name: str = "test", version: str = "1") -> str:
    """A pack's YAML: ``name`` and ``version`` on lines 1-2, then ``body`` (dedented), so the
    first line of ``body`` is line 3 of the document."""
    return f"name: {name}\nversion: '{version}'\n" + textwrap.dedent(body).lstrip("\n")


class Clock:
    """A settable clock for ``Guardrails(clock=...)``."""

    def __init__(self, now: float = NOON_WEDNESDAY) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


GuardFactory = Callable[..., Guardrails]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memory_guard(clock: Clock) -> GuardFactory:
    """``memory_guard(body_yaml, **guardrails_kwargs)``: a Guardrails over a fresh memory://
    store, with the test's clock. The store is ``guard.store``."""

    def make(body: str, **kwargs: Any) -> Guardrails:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("store", MemoryStore())
        return Guardrails(PolicyPack.from_yaml(pack_text(body)), **kwargs)

    return make


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def every_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store URL of each backend: memory, SQLite, PostgreSQL (its own schema,
    dropped afterwards; skipped with the reason where no server is configured)."""
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'guard.db'}"
    else:
        from tests.store.store_helpers import pg_base, pg_execute, with_schema

        schema = f"ag_test_{uuid.uuid4().hex[:12]}"
        yield with_schema(pg_base(), schema)
        pg_execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(autouse=True, scope="module")
def _collect_what_a_module_left() -> Iterator[None]:
    """Collect the garbage a test module leaves (a store some test did not close keeps a
    psycopg connection pool whose finalizer joins its worker threads) at the module's end,
    with no event loop running and blockbuster off. Left to the collector's own timing, it
    can run inside a later async test, where that join is a blocking call on the loop and
    the unraisable warning fails whichever test happened to be running."""
    yield
    gc.collect()


@pytest.fixture(autouse=True)
def _no_blocking_on_the_loop() -> Iterator[None]:
    """Every test runs with ``blockbuster`` active (the detector ``langgraph dev`` runs):
    a blocking call (sqlite3, a socket, file I/O, ``time.sleep``, a contended lock) made on
    an event loop's thread with agent_guardrails code on the stack raises ``BlockingError``,
    so every async test of the adapters and the pipeline fails if our code blocks its loop.
    Sync code (no running loop on its thread) is not affected."""
    with blockbuster_ctx(scanned_modules=["agent_guardrails"]) as detector:
        # Test doubles whose blocking is the point: a tool body that writes its run to disk
        # before a worker is killed mid-call.
        for function in detector.functions.values():
            function.can_block_in("tests/conformance/harness.py", {"record"})
        yield
