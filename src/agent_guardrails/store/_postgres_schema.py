"""The PostgreSQL store's schema: its version, creation and in-place upgrade.

Run once per store, by its first operation (sync or async), on a connection of its own (see
:mod:`.postgres`, "Schema versions and upgrades"). Written as steps (:mod:`._steps`), so the
sync and the async connections run the same setup. The SQL is in ``sql/schema.sql``,
``sql/postgres_upgrade_2.sql``, ``sql/postgres_functions.sql`` and ``sql/postgres.sql``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from agent_guardrails.errors import ConfigurationError
from agent_guardrails.store._statements import POSTGRES, functions_digest, read_sql
from agent_guardrails.store._steps import ALL, ONE, Statement, Step, Transaction

__all__ = ["SCHEMA_VERSION", "chain_lock", "create_schema", "current_schema", "quote_ident"]

# PostgreSQL's schema version, recorded in ag_meta (SQLite's is _rows.SCHEMA_VERSION, 1).
# 1: the tables of sql/schema.sql, every append chained at once under the head row's lock.
# 2: adds ag_audit_outbox and ag_audit.src (sql/postgres_upgrade_2.sql): the hot path
#    appends to the outbox and ag_chain_pending chains in batches. Version 1 is upgraded.
# 3: ag_outcomes.level and .pack_version (sql/postgres_upgrade_3.sql).
# 4: gate evidence (ag_gate_calls, ag_gate_events, an index of outcomes by scope and
#    metric): new tables and an index, made by schema.sql on upgrade.
# 5: an index of the gates' calls by scope and pack version (ag_gate_calls_versions), made
#    by schema.sql on upgrade.
# 6: an index of reserved calls (ag_calls_reserved, the approvals inbox), made by
#    schema.sql on upgrade.
SCHEMA_VERSION = 6


def quote_ident(ident: str) -> str:
    """``ident`` as a quoted SQL identifier."""
    return '"' + ident.replace('"', '""') + '"'


def chain_lock(schema: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of ``schema``'s audit chain."""
    digest = hashlib.sha256(f"agent_guardrails:audit:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def current_schema(url: str) -> Step[str]:
    """The connection's current schema (for a URL without ``?schema=``)."""
    row = yield Statement("SELECT current_schema()", None, ONE)
    if row is None or row[0] is None:
        raise ConfigurationError(
            f"{url}: the connection has no current schema (search_path); "
            "add ?schema=NAME to the URL"
        )
    return str(row[0])


def create_schema(
    url: str, schema: str, fill: Mapping[str, str], q: Mapping[str, str]
) -> Step[None]:
    """Create the schema, tables and functions if they are missing or out of date.

    ``ag_meta`` holds the schema version (:data:`SCHEMA_VERSION`) and the functions'
    digest (:func:`~._statements.functions_digest`), so a new release upgrades the tables
    and replaces the functions the first time it uses an existing database, in one
    transaction, under an advisory lock taken for this schema (processes starting at the
    same time do not race). A release that knows an older version refuses the database.
    ``fill`` has the quoted schema (``s``), the table prefix (``p``) and the chain lock's
    key (``lock``); ``q`` the rendered statements of ``sql/postgres.sql``.
    """
    digest = functions_digest()
    if (yield from _schema_state(url, schema, fill, q)) == (SCHEMA_VERSION, digest):
        return
    yield Transaction(_create(url, schema, fill, q, digest))


def _create(
    url: str, schema: str, fill: Mapping[str, str], q: Mapping[str, str], digest: str
) -> Step[None]:
    """:func:`create_schema`'s transaction."""
    yield Statement(q["lock_schema"], (f"agent_guardrails:{schema}",))
    if (yield Statement(q["schema_exists"], (schema,), ONE)) is None:
        yield Statement(f"CREATE SCHEMA {fill['s']}", None)
    version, functions = yield from _schema_state(url, schema, fill, q)
    if version != SCHEMA_VERSION:
        # Every statement is idempotent: a new database gets version 1's tables and then
        # the later versions' additions; an older database gets the additions it lacks.
        for statement in POSTGRES.schema(fill["p"]):
            yield Statement(statement, None)
        yield Statement(POSTGRES.render(read_sql("postgres_upgrade_2.sql"), fill), None)
        yield Statement(POSTGRES.render(read_sql("postgres_upgrade_3.sql"), fill), None)
    if functions != digest or version != SCHEMA_VERSION:
        # Executed as it is, without parameters: no placeholder conversion.
        text = read_sql("postgres_functions.sql")
        for key, value in fill.items():
            text = text.replace("{" + key + "}", value)
        yield Statement(text, None)
    yield Statement(q["put_meta"], (str(SCHEMA_VERSION), digest))


def _schema_state(
    url: str, schema: str, fill: Mapping[str, str], q: Mapping[str, str]
) -> Step[tuple[int | None, str | None]]:
    """The schema version and functions digest recorded in ``ag_meta`` (None: absent)."""
    found = yield Statement(q["meta_exists"], (f"{fill['p']}meta",), ONE)
    if found is None or found[0] is None:
        return None, None
    meta = dict((yield Statement(q["read_meta"], (), ALL)))
    version = int(meta["schema_version"]) if "schema_version" in meta else None
    if version is not None and version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"{url} (schema {schema}) was written by a newer agent-guardrails "
            f"(schema {version}, this one knows {SCHEMA_VERSION}); upgrade agent-guardrails"
        )
    return version, meta.get("functions")
