"""The conformance matrix: every promise x adapter x sync/async x store.

Each test is parametrised with :data:`MATRIX`, so its ids read as a table row:
``test_<promise>[<adapter>-<sync|async>-<store>]``. The ``env`` fixture gives the cell's
store URL, an event loop for async cells, and builders for guards and agents. A cell listed
in :data:`tests.conformance.table.NOT_APPLICABLE` is skipped with its reason (see ``-ra``).

PostgreSQL cells need ``AGENT_GUARDRAILS_TEST_POSTGRES`` (skipped with that reason
otherwise); each such test gets a schema of its own, ``ag_conf_<random>``, through the
store URL's ``?schema=`` option, dropped when the test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from agent_guardrails import Guardrails, PolicyPack
from agent_guardrails.store import MemoryStore, Store, open_store
from tests.conformance.harness import ADAPTERS, MODES, STORES, Agent, Runs, ToolBox
from tests.conformance.table import not_applicable

PG_ENV = "AGENT_GUARDRAILS_TEST_POSTGRES"


def _cell(adapter: str, mode: str, store: str) -> Any:
    marks = [pytest.mark.postgres] if store == "postgres" else []
    return pytest.param(adapter, mode, store, id=f"{adapter}-{mode}-{store}", marks=marks)


MATRIX = pytest.mark.parametrize(
    ("adapter", "mode", "store"),
    [_cell(a, m, s) for a, m, s in itertools.product(ADAPTERS, MODES, STORES)],
)
"""Every adapter x mode x store."""


def _pg_base() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(
            f"{PG_ENV} not set: set it (e.g. postgresql://postgres@127.0.0.1:5432/test) to "
            "run the PostgreSQL cells"
        )
    return url


def _with_schema(base: str, schema: str) -> str:
    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    query.append(("schema", schema))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _drop_schema(base: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@dataclass
class Env:
    """One cell of the matrix."""

    adapter: str
    mode: str
    store_kind: str
    url: str
    tmp: Path
    loop: asyncio.AbstractEventLoop | None
    memory: MemoryStore | None = None
    opened: list[Store] = field(default_factory=list)

    @property
    def durable(self) -> bool:
        return self.store_kind != "memory"

    def open(self) -> Store:
        """A store handle on the cell's database: a new connection for SQLite and
        PostgreSQL; for ``memory://`` the test's one ``MemoryStore`` object."""
        if self.memory is not None:
            return self.memory
        store = open_store(self.url)
        self.opened.append(store)
        return store

    def guard(self, pack: str, store: Store | None = None, **kwargs: Any) -> Guardrails:
        return Guardrails(PolicyPack.from_yaml(pack), store=store or self.open(), **kwargs)

    def agent(
        self,
        guard: Guardrails,
        tools: Sequence[str],
        *,
        runs: Runs | None = None,
        box: ToolBox | None = None,
        saver: Any = None,
    ) -> Agent:
        box = box or ToolBox(runs or Runs())
        return Agent(self.adapter, self.mode, guard, tools, box, saver=saver, loop=self.loop)


@pytest.fixture
def env(
    request: pytest.FixtureRequest, adapter: str, mode: str, store: str, tmp_path: Path
) -> Iterator[Env]:
    promise = request.function.__name__.removeprefix("test_")
    reason = not_applicable(promise, adapter, mode, store)
    if reason is not None:
        pytest.skip(f"N/A: {reason}")
    schema = None
    if store == "memory":
        url = "memory://"
    elif store == "sqlite":
        url = f"sqlite:///{tmp_path / 'guard.db'}"
    else:
        base = _pg_base()
        schema = f"ag_conf_{uuid.uuid4().hex[:12]}"
        url = _with_schema(base, schema)
    loop = asyncio.new_event_loop() if mode == "async" else None
    cell = Env(adapter, mode, store, url, tmp_path, loop)
    if store == "memory":
        cell.memory = MemoryStore()
    try:
        yield cell
    finally:
        for opened in cell.opened:
            with contextlib.suppress(Exception):  # a store a promise left down or closed
                opened.close()
        if loop is not None:
            loop.close()
        if schema is not None:
            _drop_schema(_pg_base(), schema)
