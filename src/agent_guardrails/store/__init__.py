"""Stores chosen by URL: ``memory://``, ``sqlite:///path.db`` (default), ``postgresql://...``."""

from __future__ import annotations

from agent_guardrails.errors import ConfigurationError
from agent_guardrails.store._archive import verify_audit_archive
from agent_guardrails.store.async_protocols import (
    AsyncAuditLog,
    AsyncDials,
    AsyncLedger,
    AsyncOutcomeLog,
    AsyncPackRegistry,
    AsyncStore,
)
from agent_guardrails.store.base import (
    ArchiveResult,
    AuditLog,
    Dials,
    Ledger,
    OutcomeLog,
    PackRegistry,
    Retention,
    Store,
)
from agent_guardrails.store.memory import MemoryStore

__all__ = [
    "DEFAULT_STORE_URL",
    "ArchiveResult",
    "AsyncAuditLog",
    "AsyncDials",
    "AsyncLedger",
    "AsyncOutcomeLog",
    "AsyncPackRegistry",
    "AsyncStore",
    "AuditLog",
    "Dials",
    "Ledger",
    "MemoryStore",
    "OutcomeLog",
    "PackRegistry",
    "Retention",
    "Store",
    "open_store",
    "verify_audit_archive",
]

DEFAULT_STORE_URL = "sqlite:///agent_guardrails.db"


def open_store(url: str | None = None) -> Store:
    """Open the store named by ``url``.

    Every store returned is also an :class:`AsyncStore` (``await store.areserve(...)``,
    ...), usable from sync and async code at once.

    ``memory://`` keeps everything in this process. ``sqlite:///relative.db`` or
    ``sqlite:////absolute/path.db`` is the embedded default (opened, and its tables
    created, at once). ``postgresql://user@host/db`` needs
    ``pip install 'agent-guardrails[postgres]'``; it is only parsed and checked here (a bad
    URL raises ``ConfigurationError`` at once) and connects on its first operation (see
    :mod:`agent_guardrails.store.postgres` for its options: ``schema``, ``pool_min``,
    ``pool_max``).
    """
    url = (url or DEFAULT_STORE_URL).strip()
    scheme, sep, _rest = url.partition("://")
    if not sep:
        raise ConfigurationError(
            f"bad store URL {url!r}: write memory://, sqlite:///path.db or postgresql://host/db"
        )
    if scheme == "memory":
        return MemoryStore(url)
    if scheme == "sqlite":
        from agent_guardrails.store.sqlite import SQLiteStore

        sqlite_store: Store = SQLiteStore(url)
        return sqlite_store
    if scheme in ("postgresql", "postgres"):
        from agent_guardrails.store.postgres import PostgresStore

        pg_store: Store = PostgresStore(url)
        return pg_store
    raise ConfigurationError(
        f"unknown store scheme {scheme!r} in {url!r}: use memory://, sqlite:///path.db "
        "or postgresql://host/db"
    )
