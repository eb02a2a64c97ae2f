"""``postgresql://`` URLs: parsing, our options, validation and password redaction.

A store URL is a libpq URL (``postgresql://user:password@host:5432/dbname?sslmode=require``)
plus the options below, which are removed before the URL reaches libpq. Everything is
checked when the store is constructed (no connection is made then): a bad URL raises
:class:`~agent_guardrails.errors.ConfigurationError` saying what to write.

``schema=NAME``
    Keep every table (and the store's functions) in schema ``NAME``, created if missing.
``pool_min=N`` (default 1), ``pool_max=M`` (default 10)
    The connection pool's size: it keeps at least ``N`` connections open and opens up to
    ``M`` when that many threads use the store at once (further threads wait for a free
    one). ``N`` may be 0; ``M`` is at least 1 and at least ``N``.

libpq's ``connect_timeout`` defaults to 10 seconds and ``application_name`` to
``agent-guardrails`` unless the URL sets them. Each connection also waits for a row lock at
most ``connect_timeout`` (``SET lock_timeout``): a lock held elsewhere gives a fail-closed
decision, not a hung run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from agent_guardrails.errors import ConfigurationError

__all__ = ["PostgresURL", "parse_postgres_url", "redact_url"]

HINT = "write postgresql://user@host:5432/dbname (optionally ?schema=NAME&pool_max=10)"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
POOL_MIN, POOL_MAX, CONNECT_TIMEOUT = 1, 10, 10


@dataclass(frozen=True, slots=True)
class PostgresURL:
    """A parsed store URL."""

    #: The libpq URL to connect with: our options removed, defaults added.
    conninfo: str
    #: The schema named by ``?schema=``, or ``None`` (the connection's current schema).
    schema: str | None
    pool_min: int = POOL_MIN
    pool_max: int = POOL_MAX
    #: libpq's ``connect_timeout`` (seconds); also how long an operation waits for a
    #: connection from the pool.
    connect_timeout: float = CONNECT_TIMEOUT


def _pool_size(key: str, value: str, least: int) -> int:
    try:
        size = int(value)
    except ValueError:
        size = -1
    if size < least:
        raise ConfigurationError(
            f"bad {key}={value!r} in PostgreSQL URL: write a whole number of connections "
            f">= {least}, e.g. ?pool_min={POOL_MIN}&pool_max={POOL_MAX}"
        )
    return size


def parse_postgres_url(url: str) -> PostgresURL:
    """Check ``url`` and split it into what libpq gets and what the store keeps."""
    scheme, sep, _rest = url.partition("://")
    if scheme not in ("postgresql", "postgres") or not sep:
        raise ConfigurationError(f"bad PostgreSQL URL {redact_url(url)!r}: {HINT}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ConfigurationError(f"bad PostgreSQL URL {redact_url(url)!r}: {exc}; {HINT}") from None
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    names = {k for k, _ in pairs}
    if not parts.hostname and not parts.path.strip("/") and not names & {"host", "dbname"}:
        raise ConfigurationError(
            f"PostgreSQL URL {redact_url(url)!r} names no server and no database: {HINT}"
        )
    schema: str | None = None
    pool_min, pool_max, timeout = POOL_MIN, POOL_MAX, float(CONNECT_TIMEOUT)
    keep: list[tuple[str, str]] = []
    for key, value in pairs:
        if key == "schema":
            if not _IDENT.match(value):
                raise ConfigurationError(
                    f"bad schema {value!r} in PostgreSQL URL: use letters, digits and "
                    "underscores, starting with a letter or underscore (at most 63)"
                )
            schema = value
        elif key == "pool_min":
            pool_min = _pool_size(key, value, 0)
        elif key == "pool_max":
            pool_max = _pool_size(key, value, 1)
        else:
            if key == "connect_timeout":
                try:
                    timeout = float(value)
                except ValueError:
                    raise ConfigurationError(
                        f"bad connect_timeout={value!r} in PostgreSQL URL: write a whole "
                        "number of seconds, e.g. connect_timeout=10"
                    ) from None
            keep.append((key, value))
    if pool_max < pool_min:
        raise ConfigurationError(
            f"pool_max={pool_max} is less than pool_min={pool_min} in PostgreSQL URL: make "
            "pool_max at least pool_min"
        )
    if "connect_timeout" not in names:
        keep.append(("connect_timeout", str(CONNECT_TIMEOUT)))
    if "application_name" not in names:
        keep.append(("application_name", "agent-guardrails"))
    # (libpq decodes %20, not "+", as a space)
    query = urlencode(keep, quote_via=quote)
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    # libpq: a connect_timeout of 0 (or less) waits for ever; the pool still needs a bound.
    return PostgresURL(conninfo, schema, pool_min, pool_max, timeout if timeout > 0 else 30.0)


def redact_url(url: str) -> str:
    """``url`` with any password (``user:pw@`` or ``?password=``) replaced by ``***``, for
    messages and ``store.url``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("://", 1)[0] + "://***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k == "password" for k, _ in pairs):
            query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
