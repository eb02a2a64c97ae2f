"""Helpers shared by the store tests (and their worker processes)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from agent_guardrails.store import Store

PG_ENV = "AGENT_GUARDRAILS_TEST_POSTGRES"
PG_SKIP = (
    f"{PG_ENV} not set: set it to a PostgreSQL URL (e.g. "
    "postgresql://postgres@127.0.0.1:5432/test) to run the PostgreSQL store tests"
)


def with_schema(base: str, schema: str) -> str:
    """``base`` with ``schema=<schema>`` added to its query."""
    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    query.append(("schema", schema))
    return urlunsplit(parts._replace(query=urlencode(query)))


def pg_base() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(PG_SKIP)
    return url


def pg_execute(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the test server, outside any store (autocommit)."""
    import psycopg

    with psycopg.connect(pg_base(), autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []


StoreFactory = Callable[[str], Store]


def raw_sql(url: str) -> Callable[..., list[tuple[Any, ...]]]:
    """``run(sql, *params)`` straight on a durable store's database, bypassing the store.

    Table names are written ``{t}audit`` and become ``ag_audit`` (SQLite) or
    ``"schema".ag_audit`` (PostgreSQL). Parameters use ``?``.
    """
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:///")

        def run_sqlite(sql: str, *params: Any) -> list[tuple[Any, ...]]:
            db = sqlite3.connect(path, isolation_level=None)
            try:
                return db.execute(sql.format(t="ag_"), params).fetchall()
            finally:
                db.close()

        return run_sqlite
    schema = dict(parse_qsl(urlsplit(url).query))["schema"]

    def run_pg(sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return pg_execute(sql.format(t=f'"{schema}".ag_').replace("?", "%s"), params)

    return run_pg
