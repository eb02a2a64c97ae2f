"""The SQL of the SQL stores: the ``.sql`` files in ``store/sql/``, and the two dialects.

The files ship with the package and are read once (``importlib.resources``):

``schema.sql``
    The tables and indexes, the same for SQLite and PostgreSQL (see :mod:`._rows`).
``operators.sql``
    Statements the two stores share: operator steps, call and counter reads, audit reads
    (run by :class:`._operators.SQLOperations`).
``sqlite.sql``, ``postgres.sql``
    Each store's own statements (hot path, audit chain, schema bookkeeping).
``postgres_functions.sql``, ``postgres_upgrade_2.sql``
    The PL/pgSQL functions PostgreSQL's hot path calls, and schema version 2's additions.

A statement file is a list of statements, each starting at a ``-- name: NAME`` line; comment
lines are dropped and a final ``;`` is optional. Statements are written once, with ``?``
placeholders and ``{p}`` before every table name. :class:`Dialect` is the one place that
knows how the dialects differ: :meth:`Dialect.render` turns ``?`` into ``%s`` for psycopg
(doubling any other ``%``; ``%b``, a binary parameter, is kept) and fills in the table
prefix (``ag_``, or ``"schema".ag_``) and the other ``{...}`` placeholders; the DDL's column
types and SQLite's ``LIMIT -1`` for "no limit" are in the two :class:`Dialect` values.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources

from agent_guardrails.store.base import GENESIS

__all__ = [
    "POSTGRES",
    "SQLITE",
    "Dialect",
    "functions_digest",
    "preload",
    "read_sql",
    "statements",
]


@functools.cache
def read_sql(name: str) -> str:
    """The text of ``store/sql/<name>``, read once per process."""
    return resources.files("agent_guardrails.store").joinpath("sql", name).read_text("utf-8")


def preload() -> None:
    """Read every ``.sql`` file now (they are kept): file I/O that the async store does on a
    worker thread before its first use, so that none happens on the event loop."""
    for entry in resources.files("agent_guardrails.store").joinpath("sql").iterdir():
        if entry.name.endswith(".sql"):
            _parse(entry.name)


def _without_comments(text: str) -> str:
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return "\n".join(lines).strip().removesuffix(";").strip()


@functools.cache
def _parse(name: str) -> dict[str, str]:
    """The statements of one file, by name, comments dropped."""
    out: dict[str, str] = {}
    current: str | None = None
    body: list[str] = []
    for line in read_sql(name).splitlines():
        if line.startswith("-- name:"):
            if current is not None:
                out[current] = _without_comments("\n".join(body))
            current = line.removeprefix("-- name:").strip()
            body = []
        elif current is not None:
            body.append(line)
    if current is not None:
        out[current] = _without_comments("\n".join(body))
    return out


_PERCENT = re.compile(r"%(?![bs])")


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between SQLite and PostgreSQL, for the statements written once."""

    name: str
    #: ``LIMIT`` value meaning "no limit" (SQLite: -1; PostgreSQL: NULL).
    no_limit: int | None
    #: The DDL's placeholders (``schema.sql``): key column types, ``WITHOUT ROWID``.
    ddl: Mapping[str, str] = field(default_factory=dict)
    #: psycopg's placeholder style: ``%s`` for ``?``, and a literal ``%`` doubled.
    pyformat: bool = False
    #: The statements' dialect words: ``{bytewise}`` after a text expression compares it
    #: byte by byte (PostgreSQL's ``COLLATE "C"``; SQLite's default ``BINARY``): for
    #: ``COUNT(DISTINCT ...)``, whose equality is the same, a sort several times cheaper.
    words: Mapping[str, str] = field(default_factory=dict)

    def render(self, text: str, fill: Mapping[str, str]) -> str:
        """``text`` for this dialect, with ``{name}`` placeholders from ``fill`` (and the
        dialect's :attr:`words`) filled in."""
        for key, value in {**self.words, **fill}.items():
            text = text.replace("{" + key + "}", value)
        if self.pyformat:
            text = _PERCENT.sub("%%", text).replace("?", "%s")
        return text

    def schema(self, prefix: str) -> list[str]:
        """The DDL (``schema.sql``), one statement per item, tables named ``prefix...``.
        Every statement is idempotent, so opening a store may run them all again."""
        fill = {"p": prefix, "genesis": GENESIS, **self.ddl}
        text = _without_comments(read_sql("schema.sql"))
        text = "\n".join(text.splitlines())
        for key, value in fill.items():
            text = text.replace("{" + key + "}", value)
        return [s.strip() for s in text.split(";") if s.strip()]


# INTEGER PRIMARY KEY is SQLite's rowid, the cheapest ordered key; the tables keyed by text
# are WITHOUT ROWID, so a write touches one b-tree instead of two.
SQLITE = Dialect(
    "sqlite",
    no_limit=-1,
    ddl={
        "serial": "INTEGER PRIMARY KEY",
        "seq_pk": "INTEGER PRIMARY KEY",
        "without_rowid": " WITHOUT ROWID",
    },
    words={"bytewise": ""},
)
POSTGRES = Dialect(
    "postgresql",
    no_limit=None,
    ddl={"serial": "BIGSERIAL PRIMARY KEY", "seq_pk": "BIGINT PRIMARY KEY", "without_rowid": ""},
    pyformat=True,
    words={"bytewise": ' COLLATE "C"'},
)


def statements(dialect: Dialect, fill: Mapping[str, str], *files: str) -> dict[str, str]:
    """Every statement of ``files`` (later files may add names, never redefine one),
    rendered for ``dialect``; ``fill`` gives ``{p}`` and any other placeholders."""
    out: dict[str, str] = {}
    for name in files:
        for key, text in _parse(name).items():
            if key in out:  # pragma: no cover - a mistake in the files
                raise ValueError(f"statement {key!r} of {name} is defined twice")
            out[key] = dialect.render(text, fill)
    return out


def functions_digest() -> str:
    """A digest of ``postgres_functions.sql``'s text, recorded in ``ag_meta``: a release
    whose functions differ replaces them the first time it opens a database."""
    return hashlib.sha256(read_sql("postgres_functions.sql").encode()).hexdigest()[:16]
