"""Fixtures for the store suite: one contract, every backend.

Backends: ``memory://``, ``sqlite:///<tmp>/store.db`` (the contract also runs once more as
``sqlite-3.34``: the code path for SQLite older than 3.35, which has no ``RETURNING``) and
PostgreSQL. The PostgreSQL server
comes from ``AGENT_GUARDRAILS_TEST_POSTGRES`` (CI: ``postgresql://postgres@127.0.0.1:5432/test``);
without it the PostgreSQL parameters are skipped with that reason.

Sync and async: the ``store`` and ``durable`` fixtures (and ``open_api``) come in two
flavours, ``sync`` (the store itself) and ``async`` (an
:class:`~tests.store.async_helpers.AsyncHandle`: the same method names, each run as the
store's async twin, ``a<name>``, on an event loop with ``blockbuster`` active). So every
contract test runs through both APIs on every backend, and any blocking call the async path
makes on the loop fails it.

PostgreSQL isolation: every test gets a schema of its own, ``ag_test_<random>``, through the
store URL's ``?schema=`` option (``PostgresStore`` creates it on open); the fixture drops it,
``CASCADE``, when the test ends. Tests never touch the database's other schemas.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from agent_guardrails.store import Store, open_store
from tests.store.async_helpers import AsyncHandle, LoopThread, watched_loop
from tests.store.store_helpers import StoreFactory, pg_base, pg_execute, with_schema

ALL = ["memory", "sqlite", "sqlite-3.34", pytest.param("postgres", marks=pytest.mark.postgres)]
DURABLE = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema name on the test server, dropped afterwards."""
    pg_base()
    schema = f"ag_test_{uuid.uuid4().hex[:12]}"
    yield schema
    pg_execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_url(pg_schema: str) -> str:
    return with_schema(pg_base(), pg_schema)


def _url_for(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite-3.34":
        monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setattr("agent_guardrails.store.sqlite._RETURNING", False)
        kind = "sqlite"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture(params=ALL)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url_for(request, request.param, tmp_path)


@pytest.fixture(params=DURABLE)
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url_for(request, request.param, tmp_path)


@pytest.fixture
def open_stores() -> Iterator[StoreFactory]:
    """``open_stores(url)``: open a store that is closed when the test ends."""
    opened: list[Store] = []

    def make(url: str) -> Store:
        store = open_store(url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def event_loop_thread() -> Iterator[LoopThread]:
    """An event loop in a thread of its own, with blocking detection on
    (:func:`~tests.store.async_helpers.watched_loop`)."""
    with watched_loop() as loop:
        yield loop


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> str:
    """``sync`` or ``async``: which of the store's APIs a test drives."""
    return str(request.param)


@pytest.fixture
def open_api(api: str, request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    """``open_api(url)``: a store, or its async handle (per ``api``), closed at the end
    (the async one with ``aclose()``, on the loop)."""
    opened: list[Store] = []
    loop: LoopThread | None = None
    if api == "async":
        loop = request.getfixturevalue("event_loop_thread")

    def make(url: str) -> Store:
        store = open_store(url)
        handle = store if loop is None else cast(Store, AsyncHandle(store, loop))
        opened.append(handle)
        return handle

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(store_url: str, open_api: StoreFactory) -> Store:
    return open_api(store_url)


@pytest.fixture
def durable(durable_url: str, open_api: StoreFactory) -> Store:
    return open_api(durable_url)
