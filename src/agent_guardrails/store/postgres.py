"""``postgresql://...``: the store for many workers on many machines (psycopg 3).

URLs are libpq URLs (``postgresql://user:password@host:5432/dbname?sslmode=require``) plus
one option of ours:

``schema=NAME``
    Keep every table (and the store's functions) in schema ``NAME``, created if missing.
    Without it they go into the connection's current schema (usually ``public``; libpq's
    ``options=-csearch_path%3DNAME`` works too). Several independent stores can share one
    database in different schemas. The test suite gives every test a throw-away schema
    this way and drops it afterwards.

``connect_timeout`` defaults to 10 seconds and ``application_name`` to
``agent-guardrails`` unless the URL sets them. Needs ``pip install
'agent-guardrails[postgres]'``. The tables are the ones described in
:mod:`agent_guardrails.store._sql`. Opening a store creates them, and the PL/pgSQL functions
below, if they are missing or out of date (``ag_meta`` records the schema version and a
digest of the functions), under a transaction-scoped advisory lock, so many processes may
open one database at once.

How it keeps the contract:

- **One connection per thread**, in autocommit mode, opened on first use and closed when
  the thread ends or on :meth:`PostgresStore.close`. A broken connection is dropped and the
  next call opens a new one. (psycopg_pool is not used.)
- **Durable commits.** ``synchronous_commit`` is left as the server has it (``on``): a
  committed reservation or audit record survives a crash of the database server.
- **Each hot-path step is one statement: one round trip, one transaction** (a reservation
  that leaves the fast path below takes two). ``reserve``
  (and ``reserve_many``), ``start``, ``finish``, ``release`` and ``append_audit`` call
  functions the store installs in its schema (``ag_reserve``, ``ag_start``, ``ag_settle``,
  ``ag_append``, which all append through ``ag_chain``), so a transaction that holds a hot
  row lasts one statement plus its commit. ``snapshot`` is one ``SELECT``. The functions
  run with ``plan_cache_mode = force_generic_plan``: re-planning their statements on every
  call cost more than running them.
- **``ag_reserve``**: insert the call row (``ON CONFLICT``: a key already reserved, started
  or finished is a replay and touches nothing else; a failed or released one reserves
  again). Then, on the fast path (every counter charged once), one conditional ``UPDATE
  ... WHERE used + amount <= limit`` per counter, in key order. If a counter is new or a
  charge does not fit, the function raises and the whole statement rolls back. The client
  then runs the general path: create the missing counter rows, lock every counter ``FOR
  UPDATE`` in key order, check every charge against what the batch wants of its counter,
  and raise ``GR001`` naming the first charge that does not fit (the client turns that
  into ``ReserveResult(ok=False, breach=..., used=...)``), or add the amounts. Last, the
  audit records are appended. Nothing is ever read, decided in Python and written back.
- **One audit chain.** ``ag_chain`` locks the chain-head row (``ag_audit_head``) by
  moving it on: a single ``UPDATE`` numbers the record and hashes it. The hash is
  :func:`~agent_guardrails.store.base.chain_hash`'s text
  ``prev|seq|repr(ts)|kind|call_key|data``, with ``repr(ts)`` and the canonical JSON
  computed in Python and passed in. The same statement inserts the record, in the caller's
  transaction. Appends are therefore serialised across every process, and the chain has no
  gaps. Duplicates (``dedupe`` already recorded) are dropped by a check made before any hot
  row is locked; an append whose ``dedupe`` another process committed after that check puts
  the head back and is dropped too. Locks are always taken in the same order (call row,
  counter rows by key, chain head), so two calls never deadlock.
- **Throughput.** The chain head is a second hot row: every call that writes an audit
  record commits through it, whatever its budget. PostgreSQL holds a row lock until the
  commit is flushed, so audited writes run one commit flush at a time (DESIGN §6), and
  more budgets add no throughput. ``python benchmarks/store.py`` measures it.

Errors from the server or the network raise
:class:`~agent_guardrails.errors.StoreUnavailable` with the driver's message. Passwords are
never included: ``store.url`` has them replaced by ``***``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import struct
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from agent_guardrails.decision import Charge
from agent_guardrails.errors import ConfigurationError, StoreUnavailable
from agent_guardrails.scope import Scope
from agent_guardrails.store import _sql
from agent_guardrails.store._sql import (
    AUDIT_COLS,
    CALL_COLS,
    LEVEL_COLS,
    OUTCOME_COLS,
    PACK_COLS,
    SCHEMA_VERSION,
    SWITCH_COLS,
    PerThread,
)
from agent_guardrails.store.base import (
    AuditEvent,
    AuditRecord,
    CallRecord,
    KillSwitch,
    LevelChange,
    Outcome,
    PackVersion,
    ReserveResult,
    Snapshot,
    VerifyResult,
    canonical_json,
    level_data,
    pack_conflict,
)

__all__ = ["PostgresStore", "parse_postgres_url"]

_HINT = "write postgresql://user@host:5432/dbname (optionally ?schema=NAME)"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_DENIED = "GR001"  # raised by ag_reserve when a charge does not fit
_GENERAL = "GR003"  # raised by ag_reserve's fast path: run the general path

# Functions installed in the store's schema. {s} is the quoted schema, {p} the table prefix.
_FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION {s}.ag_chain(
    p_kind text, p_call_key text, p_data text, p_dedupe text, p_ts float8, p_ts_repr text)
RETURNS TABLE (o_seq bigint, o_prev text, o_hash text)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    -- Lock the chain head, move it on and insert the record, in one statement. The lock is
    -- held from here to the commit, so nothing slow may follow.
    WITH h AS (
        UPDATE {p}audit_head h
        SET seq = h.seq + 1, prev = h.hash,
            hash = encode(sha256(convert_to(
                h.hash || '|' || (h.seq + 1)::text || '|' || p_ts_repr || '|' || p_kind || '|'
                || coalesce(p_call_key, '') || '|' || p_data, 'UTF8')), 'hex')
        WHERE h.id = 1
        RETURNING h.seq, h.prev, h.hash
    )
    INSERT INTO {p}audit AS a (seq, ts, kind, call_key, data, prev_hash, hash, dedupe)
    SELECT h.seq, p_ts, p_kind, p_call_key, p_data, h.prev, h.hash, p_dedupe FROM h
    ON CONFLICT (dedupe) DO NOTHING
    RETURNING a.seq, a.prev_hash, a.hash INTO o_seq, o_prev, o_hash;
    IF FOUND THEN
        RETURN NEXT;
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM {p}audit_head h WHERE h.id = 1) THEN
        RAISE EXCEPTION 'the audit chain head row is missing (tampered?); run '
            '''agent-guardrails audit verify''' USING ERRCODE = 'GR002';
    END IF;
    -- Another process committed the same dedupe since the caller checked: this event is a
    -- duplicate. Put the head back where it was (its lock is still ours).
    UPDATE {p}audit_head h
    SET seq = h.seq - 1, hash = h.prev,
        prev = (SELECT a.prev_hash FROM {p}audit a WHERE a.seq = h.seq - 1)
    WHERE h.id = 1;
END
$fn$;

CREATE OR REPLACE FUNCTION {s}.ag_append(
    p_kind text, p_call_key text, p_data text, p_dedupe text, p_ts float8, p_ts_repr text)
RETURNS TABLE (o_seq bigint, o_prev text, o_hash text)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    IF p_dedupe IS NOT NULL
       AND EXISTS (SELECT 1 FROM {p}audit a WHERE a.dedupe = p_dedupe) THEN
        RETURN;  -- a duplicate: dropped
    END IF;
    RETURN QUERY SELECT * FROM {s}.ag_chain(p_kind, p_call_key, p_data, p_dedupe, p_ts, p_ts_repr);
END
$fn$;

CREATE OR REPLACE FUNCTION {s}.ag_reserve(
    p_calls text[], p_call_charges text[], p_owner int[],
    p_keys text[], p_amounts float8[], p_limits float8[], p_expires bigint[],
    p_force boolean, p_fast boolean, p_stamp float8,
    p_kinds text[], p_call_keys text[], p_data text[], p_dedupes text[],
    p_ts float8, p_ts_repr text)
RETURNS int
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    n int := coalesce(array_length(p_keys, 1), 0);
    fresh text[];
    wk text[] := '{}';
    wa float8[] := '{}';
    ks text[];
    us float8[];
    u float8;
    i int;
    j int;
    r record;
BEGIN
    -- New keys, and keys whose last attempt failed or was released, (re)reserve; keys
    -- reserved, started or finished replay and touch nothing.
    IF cardinality(p_calls) = 1 THEN
        INSERT INTO {p}calls AS c (key, state, charges, result, updated_at)
        VALUES (p_calls[1], 'reserved', p_call_charges[1], NULL, p_stamp)
        ON CONFLICT (key) DO UPDATE
        SET state = 'reserved', charges = EXCLUDED.charges, result = NULL,
            updated_at = EXCLUDED.updated_at
        WHERE c.state IN ('failed', 'released');
        IF NOT FOUND THEN
            RETURN 0;
        END IF;
        fresh := p_calls;
    ELSE
        WITH ins AS (
            INSERT INTO {p}calls AS c (key, state, charges, result, updated_at)
            SELECT DISTINCT ON (t.k) t.k, 'reserved', t.ch, NULL, p_stamp
            FROM unnest(p_calls, p_call_charges) WITH ORDINALITY AS t(k, ch, o)
            ORDER BY t.k, t.o DESC
            ON CONFLICT (key) DO UPDATE
            SET state = 'reserved', charges = EXCLUDED.charges, result = NULL,
                updated_at = EXCLUDED.updated_at
            WHERE c.state IN ('failed', 'released')
            RETURNING c.key
        )
        SELECT coalesce(array_agg(ins.key), '{}') INTO fresh FROM ins;
        IF cardinality(fresh) = 0 THEN
            RETURN 0;
        END IF;
    END IF;
    -- Drop the audit events already recorded now, before any hot row is locked.
    FOR i IN 1..coalesce(array_length(p_kinds, 1), 0) LOOP
        IF p_dedupes[i] IS NOT NULL
           AND EXISTS (SELECT 1 FROM {p}audit a WHERE a.dedupe = p_dedupes[i]) THEN
            p_kinds[i] := NULL;
        END IF;
    END LOOP;
    IF p_fast THEN
        -- Every counter is charged once and should exist: one conditional update each, in
        -- key order. Anything else (a new counter, a charge that does not fit) raises
        -- GR003, and the caller runs the general path below.
        FOR r IN
            SELECT t.k, t.a, t.l FROM unnest(p_keys, p_amounts, p_limits, p_owner) AS t(k, a, l, o)
            WHERE p_calls[t.o] = ANY (fresh) ORDER BY t.k
        LOOP
            UPDATE {p}counters x SET used = x.used + r.a, lim = r.l, updated_at = p_stamp
            WHERE x.key = r.k AND x.used + r.a <= r.l + 1e-9::float8;
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'GR003', MESSAGE = 'take the general path';
            END IF;
        END LOOP;
    ELSE
        -- What the fresh calls want of each counter (charges on one counter add up).
        FOR i IN 1..n LOOP
            IF p_calls[p_owner[i]] = ANY (fresh) THEN
                j := array_position(wk, p_keys[i]);
                IF j IS NULL THEN
                    wk := wk || p_keys[i];
                    wa := wa || (0::float8 + p_amounts[i]);
                ELSE
                    wa[j] := wa[j] + p_amounts[i];
                END IF;
            END IF;
        END LOOP;
        IF cardinality(wk) > 0 THEN
            INSERT INTO {p}counters AS c (key, used, lim, expires_at, updated_at)
            SELECT DISTINCT ON (t.k) t.k, 0, t.l, t.e, p_stamp
            FROM unnest(p_keys, p_limits, p_expires) WITH ORDINALITY AS t(k, l, e, o)
            WHERE t.k = ANY (wk)
              AND NOT EXISTS (SELECT 1 FROM {p}counters x WHERE x.key = t.k)
            ORDER BY t.k, t.o
            ON CONFLICT (key) DO NOTHING;
            -- Lock in key order: two reservations never wait for each other in a cycle.
            SELECT array_agg(l.key), array_agg(l.used) INTO ks, us
            FROM (SELECT x.key, x.used FROM {p}counters x WHERE x.key = ANY (wk)
                  ORDER BY x.key FOR UPDATE) l;
            IF NOT p_force THEN
                FOR i IN 1..n LOOP
                    IF p_calls[p_owner[i]] = ANY (fresh) THEN
                        u := us[array_position(ks, p_keys[i])];
                        IF u + wa[array_position(wk, p_keys[i])]
                           > p_limits[i] + 1e-9::float8 THEN
                            RAISE EXCEPTION USING ERRCODE = 'GR001',
                                MESSAGE = 'a charge does not fit',
                                DETAIL = i::text || ' ' || encode(float8send(u), 'hex');
                        END IF;
                    END IF;
                END LOOP;
            END IF;
            FOR j IN 1..cardinality(wk) LOOP
                UPDATE {p}counters x SET used = x.used + wa[j], updated_at = p_stamp
                WHERE x.key = wk[j];
            END LOOP;
        END IF;
    END IF;
    FOR i IN 1..coalesce(array_length(p_kinds, 1), 0) LOOP
        IF p_kinds[i] IS NOT NULL THEN
            PERFORM {s}.ag_chain(
                p_kinds[i], p_call_keys[i], p_data[i], p_dedupes[i], p_ts, p_ts_repr);
        END IF;
    END LOOP;
    RETURN cardinality(fresh);
END
$fn$;

CREATE OR REPLACE FUNCTION {s}.ag_start(
    p_key text, p_now float8,
    p_kind text, p_call_key text, p_data text, p_dedupe text, p_ts_repr text)
RETURNS boolean
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    IF p_dedupe IS NOT NULL
       AND EXISTS (SELECT 1 FROM {p}audit a WHERE a.dedupe = p_dedupe) THEN
        p_kind := NULL;  -- recorded already
    END IF;
    UPDATE {p}calls c SET state = 'started', result = NULL, updated_at = p_now
    WHERE c.key = p_key AND c.state = 'reserved';
    IF NOT FOUND THEN
        INSERT INTO {p}calls AS c (key, state, charges, result, updated_at)
        VALUES (p_key, 'started', '[]', NULL, p_now)
        ON CONFLICT (key) DO NOTHING;
        IF NOT FOUND THEN
            -- the row exists: started by another worker, or reserved by a transaction that
            -- committed while this one waited for it
            UPDATE {p}calls c SET state = 'started', result = NULL, updated_at = p_now
            WHERE c.key = p_key AND c.state = 'reserved';
            IF NOT FOUND THEN
                RETURN false;
            END IF;
        END IF;
    END IF;
    IF p_kind IS NOT NULL THEN
        PERFORM {s}.ag_chain(p_kind, p_call_key, p_data, p_dedupe, p_now, p_ts_repr);
    END IF;
    RETURN true;
END
$fn$;

CREATE OR REPLACE FUNCTION {s}.ag_settle(
    p_key text, p_ok boolean, p_release boolean, p_actual float8, p_result text, p_now float8,
    p_kind text, p_call_key text, p_data text, p_dedupe text, p_ts_repr text)
RETURNS void
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    st text;
    ch text;
    r record;
BEGIN
    IF p_dedupe IS NOT NULL
       AND EXISTS (SELECT 1 FROM {p}audit a WHERE a.dedupe = p_dedupe) THEN
        p_kind := NULL;  -- recorded already
    END IF;
    SELECT c.state, c.charges INTO st, ch FROM {p}calls c WHERE c.key = p_key FOR UPDATE;
    IF FOUND AND st IN ('reserved', 'started') THEN
        IF p_release OR NOT p_ok OR p_actual IS NOT NULL THEN
            FOR r IN
                SELECT e->>'key' AS k, (e->>'amount')::float8 AS a, e->>'kind' AS kind
                FROM json_array_elements(ch::json) WITH ORDINALITY AS t(e, n)
                ORDER BY e->>'key', t.n
            LOOP
                IF p_release OR NOT p_ok THEN
                    UPDATE {p}counters x SET used = x.used - r.a, updated_at = p_now
                    WHERE x.key = r.k;
                ELSIF r.kind = 'budget' THEN
                    UPDATE {p}counters x SET used = x.used + (p_actual - r.a), updated_at = p_now
                    WHERE x.key = r.k;
                END IF;
            END LOOP;
        END IF;
        IF p_release THEN
            UPDATE {p}calls c SET state = 'released', updated_at = p_now WHERE c.key = p_key;
        ELSE
            UPDATE {p}calls c
            SET state = CASE WHEN p_ok THEN 'finished' ELSE 'failed' END,
                result = p_result, updated_at = p_now
            WHERE c.key = p_key;
        END IF;
    END IF;
    IF p_kind IS NOT NULL THEN
        PERFORM {s}.ag_chain(p_kind, p_call_key, p_data, p_dedupe, p_now, p_ts_repr);
    END IF;
END
$fn$;
"""


_FUNCTIONS_DIGEST = hashlib.sha256(_FUNCTIONS.encode()).hexdigest()[:16]


def _quote(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


def parse_postgres_url(url: str) -> tuple[str, str | None]:
    """The libpq URL to connect with (our options removed, defaults added) and the schema."""
    scheme, sep, _rest = url.partition("://")
    if scheme not in ("postgresql", "postgres") or not sep:
        raise ConfigurationError(f"bad PostgreSQL URL {_sql.redact_url(url)!r}: {_HINT}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ConfigurationError(
            f"bad PostgreSQL URL {_sql.redact_url(url)!r}: {exc}; {_HINT}"
        ) from None
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    names = {k for k, _ in pairs}
    if not parts.hostname and not parts.path.strip("/") and not names & {"host", "dbname"}:
        raise ConfigurationError(
            f"PostgreSQL URL {_sql.redact_url(url)!r} names no server and no database: {_HINT}"
        )
    schema: str | None = None
    keep: list[tuple[str, str]] = []
    for key, value in pairs:
        if key == "schema":
            if not _IDENT.match(value):
                raise ConfigurationError(
                    f"bad schema {value!r} in PostgreSQL URL: use letters, digits and "
                    "underscores, starting with a letter or underscore (at most 63)"
                )
            schema = value
        else:
            keep.append((key, value))
    if "connect_timeout" not in names:
        keep.append(("connect_timeout", "10"))
    if "application_name" not in names:
        keep.append(("application_name", "agent-guardrails"))
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(keep), parts.fragment))
    return conninfo, schema


def _message(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class PostgresStore:
    """A :class:`~agent_guardrails.store.base.Store` in a PostgreSQL database.

    >>> store = PostgresStore("postgresql://postgres@127.0.0.1:5432/test?schema=guardrails")
    ... # doctest: +SKIP
    """

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise ConfigurationError(
                "the PostgreSQL store needs psycopg 3: pip install 'agent-guardrails[postgres]'"
            ) from None
        self._pg: Any = psycopg
        self.url = _sql.redact_url(url)
        self._conninfo, schema = parse_postgres_url(url)
        self._conns: PerThread[Any] = PerThread(self._connect, self._close_conn)
        self._scopes: dict[str, Scope] = {}
        try:
            self._open(schema)
        except BaseException:
            self._conns.close_all()
            raise

    def _open(self, schema: str | None) -> None:
        with self._errors():
            if schema is None:
                row = self._conn().execute("SELECT current_schema()").fetchone()
                if row is None or row[0] is None:
                    raise ConfigurationError(
                        f"{self.url}: the connection has no current schema (search_path); "
                        "add ?schema=NAME to the URL"
                    )
                schema = str(row[0])
            self.schema = schema
            self._s = _quote(schema)
            self._p = f"{self._s}.ag_"
            self._prepare_sql()
            self._create_schema()

    # ------------------------------------------------------------------ plumbing

    def _connect(self) -> Any:
        try:
            conn = self._pg.connect(self._conninfo, autocommit=True)
        except self._pg.Error as exc:
            raise StoreUnavailable(f"{self.url}: {_message(exc)}") from exc
        try:
            # Timestamps must come back exactly as written: they are hashed into the chain.
            conn.execute("SET extra_float_digits = 3")
        except self._pg.Error as exc:
            conn.close()
            raise StoreUnavailable(f"{self.url}: {_message(exc)}") from exc
        return conn

    @staticmethod
    def _close_conn(conn: Any) -> None:
        conn.close()

    def _conn(self) -> Any:
        try:
            return self._conns.get()
        except RuntimeError as exc:
            raise StoreUnavailable(f"{self.url}: {exc}") from exc

    def _fail(self, exc: BaseException) -> NoReturn:
        """Raise StoreUnavailable for a driver error; drop this thread's connection if the
        error broke it, so the next call reconnects."""
        conn = self._conns.peek()
        if conn is not None and (conn.closed or conn.broken):
            self._conns.discard()
        raise StoreUnavailable(f"{self.url}: {_message(exc)}") from exc

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Driver errors become StoreUnavailable (see :meth:`_fail`)."""
        try:
            yield
        except self._pg.Error as exc:
            self._fail(exc)

    @contextlib.contextmanager
    def _tx(self, *, serialise: bool = False) -> Iterator[Any]:
        """A transaction on this thread's connection. ``serialise`` locks the chain head
        first, for read-modify-write steps that append to the audit log anyway."""
        with self._errors():
            conn = self._conn()
            with conn.transaction():
                if serialise:
                    conn.execute(self._q_lock_head)
                yield conn

    def _prepare_sql(self) -> None:
        p, s = self._p, self._s
        self._q_lock_head = f"SELECT 1 FROM {p}audit_head WHERE id = 1 FOR UPDATE"
        self._q_append = f"SELECT o_seq, o_prev, o_hash FROM {s}.ag_append(%s, %s, %s, %s, %s, %s)"
        self._q_reserve = (
            f"SELECT {s}.ag_reserve(%s::text[], %s::text[], %s::int4[], %s::text[], "
            "%s::float8[], %s::float8[], %s::int8[], %s, %s, %s, %s::text[], %s::text[], "
            "%s::text[], %s::text[], %s, %s)"
        )
        self._q_start = f"SELECT {s}.ag_start(%s, %s, %s, %s, %s, %s, %s)"
        self._q_settle = f"SELECT {s}.ag_settle(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        self._q_snapshot = (
            f"SELECT (SELECT level FROM {p}levels WHERE dial_key = %(dial)s), "
            f"ARRAY(SELECT scope_key FROM {p}kill_switches WHERE engaged ORDER BY id), "
            f"ARRAY(SELECT key FROM {p}counters WHERE key = ANY(%(keys)s::text[]) ORDER BY key), "
            f"ARRAY(SELECT used FROM {p}counters WHERE key = ANY(%(keys)s::text[]) "
            "ORDER BY key), "
            "c.key, c.state, c.charges, c.result, c.updated_at "
            f"FROM (SELECT 1) AS one LEFT JOIN {p}calls c ON c.key = %(call)s"
        )
        self._q_call = f"SELECT {CALL_COLS} FROM {p}calls WHERE key = %s"

    def _create_schema(self) -> None:
        """Create the schema, tables and functions if they are missing or out of date.

        ``ag_meta`` holds the schema version and a digest of the functions' text, so a new
        release replaces the functions (``CREATE OR REPLACE``) the first time it opens an
        existing database. DDL runs under an advisory lock taken for this schema, so
        processes opening the store at the same time do not race.
        """
        conn = self._conn()
        if self._schema_state(conn) == (SCHEMA_VERSION, _FUNCTIONS_DIGEST):
            return
        with conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"agent_guardrails:{self.schema}",),
            )
            exists = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
            ).fetchone()
            if exists is None:
                conn.execute(f"CREATE SCHEMA {self._s}")
            version, functions = self._schema_state(conn)
            if version != SCHEMA_VERSION:
                for statement in _sql.schema_statements("postgresql", self._p):
                    conn.execute(statement)
            if functions != _FUNCTIONS_DIGEST:
                conn.execute(_FUNCTIONS.replace("{s}", self._s).replace("{p}", self._p))
            conn.execute(
                f"INSERT INTO {self._p}meta (key, value) "
                "VALUES ('schema_version', %s), ('functions', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (str(SCHEMA_VERSION), _FUNCTIONS_DIGEST),
            )

    def _schema_state(self, conn: Any) -> tuple[int | None, str | None]:
        """The schema version and functions digest recorded in ``ag_meta`` (None: absent)."""
        found = conn.execute("SELECT to_regclass(%s)", (f"{self._p}meta",)).fetchone()
        if found is None or found[0] is None:
            return None, None
        meta = dict(conn.execute(f"SELECT key, value FROM {self._p}meta").fetchall())
        version = int(meta["schema_version"]) if "schema_version" in meta else None
        if version is not None and version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"{self.url} (schema {self.schema}) was written by a newer agent-guardrails "
                f"(schema {version}, this one knows {SCHEMA_VERSION}); upgrade agent-guardrails"
            )
        return version, meta.get("functions")

    @staticmethod
    def _audit_args(event: AuditEvent | None, ts: float) -> tuple[Any, ...]:
        """The ``p_kind, p_call_key, p_data, p_dedupe, p_ts_repr`` arguments."""
        if event is None:
            return (None, None, None, None, None)
        text, _data = _sql.audit_payload(event)
        return (event.kind, event.call_key, text, event.dedupe, repr(ts))

    def _append(self, conn: Any, event: AuditEvent, ts: float) -> AuditRecord | None:
        text, data = _sql.audit_payload(event)
        row = conn.execute(
            self._q_append, (event.kind, event.call_key, text, event.dedupe, ts, repr(ts))
        ).fetchone()
        if row is None:
            return None
        seq, prev, digest = row
        return AuditRecord(int(seq), ts, event.kind, event.call_key, data, prev, digest)

    # ------------------------------------------------------------------ hot path

    def snapshot(self, *, dial_key: str, counter_keys: Sequence[str], call_key: str) -> Snapshot:
        keys = list(counter_keys)
        with self._errors():
            row = (
                self._conn()
                .execute(self._q_snapshot, {"dial": dial_key, "keys": keys, "call": call_key})
                .fetchone()
            )
        level, switches, found_keys, found_used, *call = row
        found = dict(zip(found_keys, found_used, strict=True))
        scopes = self._scopes
        return Snapshot(
            level=int(level) if level is not None else None,
            kill_switches=tuple(_sql.parse_scope(k, scopes) for k in switches),
            used={k: float(found.get(k, 0.0)) for k in keys},
            call=_sql.call_record(call) if call[0] is not None else None,
        )

    def reserve(
        self,
        call_key: str,
        charges: Sequence[Charge],
        *,
        audit: AuditEvent | None = None,
        force: bool = False,
        now: float | None = None,
    ) -> ReserveResult:
        audits = (audit,) if audit is not None else ()
        return self.reserve_many([(call_key, charges)], audit=audits, force=force, now=now)

    def reserve_many(
        self,
        items: Sequence[tuple[str, Sequence[Charge]]],
        *,
        audit: Sequence[AuditEvent] = (),
        force: bool = False,
        now: float | None = None,
    ) -> ReserveResult:
        ts = time.time()
        stamp = ts if now is None else now
        flat: list[Charge] = []
        owner: list[int] = []
        for index, (_key, charges) in enumerate(items, 1):
            flat.extend(charges)
            owner.extend([index] * len(charges))
        payloads = [_sql.audit_payload(event)[0] for event in audit]
        keys = [c.key for c in flat]
        # The fast path needs every counter charged once; it hands anything unusual (a new
        # counter, a charge that does not fit) back with GR003, for the general path.
        fast = not force and len(set(keys)) == len(keys)
        params: list[Any] = [
            [key for key, _ in items],
            [_sql.charges_to_json(charges) for _, charges in items],
            owner,
            keys,
            [float(c.amount) for c in flat],
            [float(c.limit) for c in flat],
            [int(c.expires_at) for c in flat],
            force,
            fast,
            stamp,
            [e.kind for e in audit],
            [e.call_key for e in audit],
            payloads,
            [e.dedupe for e in audit],
            ts,
            repr(ts),
        ]
        conn = self._conn()
        while True:
            try:
                row = conn.execute(self._q_reserve, params).fetchone()
                break
            except self._pg.Error as exc:
                state = getattr(exc, "sqlstate", None)
                if state == _GENERAL and params[8]:
                    params[8] = False
                    continue
                if state != _DENIED:
                    self._fail(exc)
                position, used_hex = str(exc.diag.message_detail).split()
                used = struct.unpack(">d", bytes.fromhex(used_hex))[0]
                return ReserveResult(ok=False, breach=flat[int(position) - 1], used=float(used))
        fresh = int(row[0])
        if fresh == 0:
            return ReserveResult(ok=True, replay=True)
        return ReserveResult(ok=True, replay=fresh < len({key for key, _ in items}))

    def start(self, call_key: str, *, audit: AuditEvent | None = None) -> bool:
        now = time.time()
        with self._errors():
            row = (
                self._conn()
                .execute(self._q_start, (call_key, now, *self._audit_args(audit, now)))
                .fetchone()
            )
        return bool(row[0])

    def _settle(
        self,
        call_key: str,
        *,
        ok: bool,
        release: bool,
        actual_cost: float | None,
        result: str | None,
        audit: AuditEvent | None,
    ) -> None:
        now = time.time()
        actual = None if actual_cost is None else float(actual_cost)
        with self._errors():
            self._conn().execute(
                self._q_settle,
                (call_key, ok, release, actual, result, now, *self._audit_args(audit, now)),
            )

    def finish(
        self,
        call_key: str,
        *,
        ok: bool,
        actual_cost: float | None = None,
        result: str | None = None,
        audit: AuditEvent | None = None,
    ) -> None:
        self._settle(
            call_key, ok=ok, release=False, actual_cost=actual_cost, result=result, audit=audit
        )

    def release(self, call_key: str, *, audit: AuditEvent | None = None) -> None:
        self._settle(call_key, ok=False, release=True, actual_cost=None, result=None, audit=audit)

    def append_audit(self, event: AuditEvent) -> AuditRecord | None:
        now = time.time()
        with self._errors():
            return self._append(self._conn(), event, now)

    # ------------------------------------------------------------------ operators

    def call_record(self, call_key: str) -> CallRecord | None:
        with self._errors():
            row = self._conn().execute(self._q_call, (call_key,)).fetchone()
        return _sql.call_record(row) if row is not None else None

    def in_doubt(self) -> list[CallRecord]:
        with self._errors():
            rows = (
                self._conn()
                .execute(
                    f"SELECT {CALL_COLS} FROM {self._p}calls WHERE state = 'started' "
                    "ORDER BY updated_at, key"
                )
                .fetchall()
            )
        return [_sql.call_record(r) for r in rows]

    def counters(self, prefix: str = "") -> dict[str, float]:
        with self._errors():
            rows = (
                self._conn()
                .execute(
                    f"SELECT key, used FROM {self._p}counters WHERE starts_with(key, %s) "
                    "ORDER BY key",
                    (prefix,),
                )
                .fetchall()
            )
        return {str(k): float(v) for k, v in rows}

    def get_level(self, dial_key: str) -> int | None:
        with self._errors():
            row = (
                self._conn()
                .execute(f"SELECT level FROM {self._p}levels WHERE dial_key = %s", (dial_key,))
                .fetchone()
            )
        return int(row[0]) if row is not None else None

    def set_level(
        self,
        dial_key: str,
        level: int,
        *,
        by: str,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
    ) -> LevelChange:
        now = time.time()
        p = self._p
        with self._tx(serialise=True) as conn:
            row = conn.execute(
                f"SELECT level FROM {p}levels WHERE dial_key = %s", (dial_key,)
            ).fetchone()
            change = LevelChange(
                dial_key,
                int(row[0]) if row is not None else None,
                level,
                by,
                reason,
                dict(evidence or {}),
                now,
            )
            conn.execute(
                f"INSERT INTO {p}levels (dial_key, level, updated_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (dial_key) DO UPDATE SET level = EXCLUDED.level, "
                "updated_at = EXCLUDED.updated_at",
                (dial_key, level, now),
            )
            conn.execute(
                f"INSERT INTO {p}level_history ({LEVEL_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    dial_key,
                    change.old_level,
                    level,
                    by,
                    reason,
                    canonical_json(change.evidence),
                    now,
                ),
            )
            self._append(conn, AuditEvent("level.changed", level_data(change)), now)
        return change

    def level_history(self, dial_key: str | None = None) -> list[LevelChange]:
        sql = f"SELECT {LEVEL_COLS} FROM {self._p}level_history"
        with self._errors():
            if dial_key is None:
                rows = self._conn().execute(sql + " ORDER BY id").fetchall()
            else:
                rows = (
                    self._conn()
                    .execute(sql + " WHERE scope_key = %s ORDER BY id", (dial_key,))
                    .fetchall()
                )
        return [_sql.level_change(r) for r in rows]

    def set_kill_switch(self, scope: Scope, engaged: bool, *, by: str, reason: str) -> KillSwitch:
        now = time.time()
        with self._tx(serialise=True) as conn:
            conn.execute(
                f"INSERT INTO {self._p}kill_switches ({SWITCH_COLS}) "
                "VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (scope_key) DO UPDATE SET engaged = EXCLUDED.engaged, "
                "actor = EXCLUDED.actor, reason = EXCLUDED.reason, "
                "changed_at = EXCLUDED.changed_at",
                (scope.key, engaged, by, reason, now),
            )
            self._append(
                conn,
                AuditEvent(
                    "kill_switch.engaged" if engaged else "kill_switch.released",
                    {"scope": scope.key, "by": by, "reason": reason},
                ),
                now,
            )
        return KillSwitch(scope, engaged, by, reason, now)

    def kill_switches(self) -> list[KillSwitch]:
        with self._errors():
            rows = (
                self._conn()
                .execute(f"SELECT {SWITCH_COLS} FROM {self._p}kill_switches ORDER BY id")
                .fetchall()
            )
        return [_sql.kill_switch(r, self._scopes) for r in rows]

    def save_pack(
        self, name: str, version: str, digest: str, source: str, *, by: str
    ) -> PackVersion:
        now = time.time()
        p = self._p
        with self._tx(serialise=True) as conn:
            row = conn.execute(
                f"SELECT {PACK_COLS} FROM {p}packs WHERE name = %s AND version = %s",
                (name, version),
            ).fetchone()
            if row is not None:
                existing = _sql.pack_version(row)
                if existing.digest != digest:
                    raise pack_conflict(name, version)
                return existing
            conn.execute(
                f"INSERT INTO {p}packs ({PACK_COLS}) VALUES (%s, %s, %s, %s, false, %s, %s)",
                (name, version, digest, source, by, now),
            )
            self._append(
                conn,
                AuditEvent(
                    "pack.saved", {"name": name, "version": version, "digest": digest, "by": by}
                ),
                now,
            )
        return PackVersion(name, version, digest, source, False, by, now)

    def activate_pack(self, name: str, version: str, *, by: str, reason: str = "") -> PackVersion:
        now = time.time()
        p = self._p
        with self._tx(serialise=True) as conn:
            row = conn.execute(
                f"SELECT id, {PACK_COLS} FROM {p}packs WHERE name = %s AND version = %s",
                (name, version),
            ).fetchone()
            if row is None:
                raise ConfigurationError(
                    f"no stored version {version} of pack {name}; apply it first "
                    "('agent-guardrails policy apply FILE')"
                )
            conn.execute(f"UPDATE {p}packs SET active = false WHERE active AND id <> %s", (row[0],))
            conn.execute(f"UPDATE {p}packs SET active = true WHERE id = %s", (row[0],))
            self._append(
                conn,
                AuditEvent(
                    "pack.activated", {"name": name, "version": version, "by": by, "reason": reason}
                ),
                now,
            )
        return replace(_sql.pack_version(row[1:]), active=True)

    def active_pack(self) -> PackVersion | None:
        with self._errors():
            row = (
                self._conn()
                .execute(f"SELECT {PACK_COLS} FROM {self._p}packs WHERE active ORDER BY id LIMIT 1")
                .fetchone()
            )
        return _sql.pack_version(row) if row is not None else None

    def pack_versions(self, name: str | None = None) -> list[PackVersion]:
        sql = f"SELECT {PACK_COLS} FROM {self._p}packs"
        with self._errors():
            if name is None:
                rows = self._conn().execute(sql + " ORDER BY id").fetchall()
            else:
                rows = (
                    self._conn().execute(sql + " WHERE name = %s ORDER BY id", (name,)).fetchall()
                )
        return [_sql.pack_version(r) for r in rows]

    def record_outcome(self, outcome: Outcome) -> None:
        now = time.time()
        with self._tx() as conn:
            conn.execute(
                f"INSERT INTO {self._p}outcomes ({OUTCOME_COLS}) VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    outcome.entity,
                    outcome.cohort,
                    outcome.metric,
                    float(outcome.value),
                    float(outcome.at),
                    outcome.scope_key,
                ),
            )
            self._append(conn, _sql.outcome_event(outcome), now)

    def outcomes(self, *, metric: str | None = None, since: float = 0.0) -> list[Outcome]:
        sql = f"SELECT {OUTCOME_COLS} FROM {self._p}outcomes WHERE at >= %s"
        with self._errors():
            if metric is None:
                rows = self._conn().execute(sql + " ORDER BY id", (float(since),)).fetchall()
            else:
                rows = (
                    self._conn()
                    .execute(sql + " AND metric = %s ORDER BY id", (float(since), metric))
                    .fetchall()
                )
        return [_sql.outcome(r) for r in rows]

    def audit_records(self, *, after: int = 0, limit: int | None = None) -> list[AuditRecord]:
        with self._errors():
            rows = (
                self._conn()
                .execute(
                    f"SELECT {AUDIT_COLS} FROM {self._p}audit WHERE seq > %s ORDER BY seq LIMIT %s",
                    (after, limit),
                )
                .fetchall()
            )
        return [_sql.audit_record(r) for r in rows]

    def find_audit(self, dedupe: str) -> AuditRecord | None:
        with self._errors():
            row = (
                self._conn()
                .execute(f"SELECT {AUDIT_COLS} FROM {self._p}audit WHERE dedupe = %s", (dedupe,))
                .fetchone()
            )
        return None if row is None else _sql.audit_record(row)

    def verify_audit(self) -> VerifyResult:
        p = self._p
        cols = ", ".join(f"a.{c.strip()}" for c in AUDIT_COLS.split(","))
        with self._errors():
            # One statement, one snapshot: the head and the records agree.
            rows = (
                self._conn()
                .execute(
                    f"SELECT h.seq, h.hash, {cols} FROM (SELECT 1) AS one "
                    f"LEFT JOIN {p}audit_head h ON h.id = 1 "
                    f"LEFT JOIN {p}audit a ON true ORDER BY a.seq"
                )
                .fetchall()
            )
        records = [_sql.audit_record(r[2:]) for r in rows if r[2] is not None]
        head_seq = rows[0][0] if rows else None
        head_hash = rows[0][1] if rows else None
        return _sql.verify_with_head(
            records,
            int(head_seq) if head_seq is not None else None,
            str(head_hash) if head_hash is not None else None,
        )

    def close(self) -> None:
        self._conns.close_all()

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r})"
