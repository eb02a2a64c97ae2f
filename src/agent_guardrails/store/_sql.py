"""What the SQL stores share: the schema, row -> record mapping and chain-head verification.

Both :mod:`.sqlite` and :mod:`.postgres` keep the same tables (every name starts with
``ag_``; PostgreSQL puts them in one schema, see :mod:`.postgres`):

``ag_meta(key, value)``
    ``schema_version`` (:data:`SCHEMA_VERSION` on SQLite, ``postgres.SCHEMA_VERSION`` on
    PostgreSQL; a store refuses to open a database written by a newer schema) and, on
    PostgreSQL, ``functions``: a digest of the installed functions' text, so a new release
    replaces them when it first opens the database.
``ag_counters(key, used, lim, expires_at, updated_at)``
    The ledger: one row per budget or exposure counter, keyed by :attr:`Charge.key
    <agent_guardrails.decision.Charge.key>`. The key already names the window bucket
    (``budget:daily|USD@1704240000``; see :mod:`agent_guardrails.windows`), so a new bucket is
    a new row starting from zero and nothing is ever reset. ``used`` is what is spent or held
    (double precision), ``lim`` the last limit checked against it, ``expires_at`` the bucket's
    end in Unix seconds: a row whose ``expires_at`` has passed can be deleted by a cleanup
    job without changing any decision.
``ag_calls(key, state, charges, result, updated_at)``
    One row per call idempotency key: ``reserved`` -> ``started`` -> ``finished`` |
    ``failed``, or ``released``. ``charges`` is the JSON list of the charges held (so
    ``finish`` and ``release`` can settle them), ``result`` the tool's JSON result when kept.
``ag_levels(dial_key, level, updated_at)`` and ``ag_level_history(...)``
    The live level dial per scope key and every change, with who, why and the evidence.
``ag_kill_switches(scope_key, engaged, actor, reason, changed_at)``
    One row per scope ever switched (``Scope.key``; rebuilt with ``Scope.parse``).
``ag_packs(name, version, digest, source, active, applied_by, applied_at)``
    Every saved pack version; a partial unique index keeps at most one ``active`` row.
``ag_outcomes(entity, cohort, metric, value, at, scope_key)``
    KPI outcomes for gates and scorecards.
``ag_audit(seq, ts, kind, call_key, data, prev_hash, hash, dedupe)``
    The hash-chained audit log. ``seq`` is 1, 2, 3, ... with no gaps; ``data`` is the
    canonical JSON text that was hashed (:func:`~agent_guardrails.store.base.canonical_json`);
    ``dedupe`` is unique, so a second append with the same dedupe string is dropped.
    (PostgreSQL adds ``src``, the outbox id a record came from, outside the hash.)
``ag_audit_head(id = 1, seq, hash, prev)``
    The chain head: the last record's seq and hash (and the hash before it), updated in the
    transaction that chains the record. On SQLite, appends lock this row, which serialises
    them into one gap-free chain across every thread and process; on PostgreSQL only the
    batch chaining step writes it (see :mod:`.postgres`). :func:`verify_with_head` compares
    it with the last record, so deleting the newest records (which leaves a perfectly valid
    shorter chain) or appending a forged record with a well-computed hash is detected too.
    Someone who can rewrite both the log and the head can still forge a consistent history:
    anchor the head elsewhere (export it, sign it) if that matters.
``ag_audit_outbox(id, ts, ts_repr, kind, call_key, data, dedupe)`` (PostgreSQL only)
    Records written by the hot path, waiting to be chained into ``ag_audit`` in id order;
    not tamper-evident until then (see :mod:`.postgres`).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from agent_guardrails.engine.decision import Charge
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store.base import (
    GENESIS,
    AuditEvent,
    AuditRecord,
    CallRecord,
    KillSwitch,
    LevelChange,
    Outcome,
    PackVersion,
    VerifyResult,
    canonical_json,
    verify_chain,
)

__all__ = [
    "EPS",
    "PerThread",
    "SCHEMA_VERSION",
    "audit_payload",
    "audit_record",
    "call_record",
    "charges_from_json",
    "charges_to_json",
    "kill_switch",
    "level_change",
    "outcome",
    "outcome_event",
    "pack_version",
    "redact_url",
    "schema_statements",
    "verify_with_head",
]

C = TypeVar("C")

SCHEMA_VERSION = 1
EPS = 1e-9  # the same tolerance as MemoryStore: used + amount may exceed limit by this much

# Column lists, in the order the row mappers below expect.
CALL_COLS = "key, state, charges, result, updated_at"
LEVEL_COLS = "scope_key, old_level, new_level, actor, reason, evidence, changed_at"
SWITCH_COLS = "scope_key, engaged, actor, reason, changed_at"
PACK_COLS = "name, version, digest, source, active, applied_by, applied_at"
OUTCOME_COLS = "entity, cohort, metric, value, at, scope_key"
AUDIT_COLS = "seq, ts, kind, call_key, data, prev_hash, hash"

_DDL = """
CREATE TABLE IF NOT EXISTS {p}meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS {p}counters (
    key TEXT PRIMARY KEY,
    used DOUBLE PRECISION NOT NULL,
    lim DOUBLE PRECISION NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
){without_rowid};
CREATE INDEX IF NOT EXISTS ag_counters_expires ON {p}counters (expires_at);
CREATE TABLE IF NOT EXISTS {p}calls (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    charges TEXT NOT NULL,
    result TEXT,
    updated_at DOUBLE PRECISION NOT NULL
){without_rowid};
CREATE INDEX IF NOT EXISTS ag_calls_started ON {p}calls (updated_at) WHERE state = 'started';
CREATE TABLE IF NOT EXISTS {p}levels (
    dial_key TEXT PRIMARY KEY,
    level INTEGER NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS {p}level_history (
    id {serial},
    scope_key TEXT NOT NULL,
    old_level INTEGER,
    new_level INTEGER NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    evidence TEXT NOT NULL,
    changed_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS ag_level_history_scope ON {p}level_history (scope_key, id);
CREATE TABLE IF NOT EXISTS {p}kill_switches (
    id {serial},
    scope_key TEXT NOT NULL UNIQUE,
    engaged BOOLEAN NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    changed_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS {p}packs (
    id {serial},
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    source TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    applied_by TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL,
    UNIQUE (name, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS ag_packs_one_active ON {p}packs (active) WHERE active;
CREATE TABLE IF NOT EXISTS {p}outcomes (
    id {serial},
    entity TEXT NOT NULL,
    cohort TEXT NOT NULL,
    metric TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    scope_key TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ag_outcomes_metric ON {p}outcomes (metric, at);
CREATE TABLE IF NOT EXISTS {p}audit (
    seq {seq_pk},
    ts DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    call_key TEXT,
    data TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    dedupe TEXT UNIQUE
);
CREATE TABLE IF NOT EXISTS {p}audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    prev TEXT
);
INSERT INTO {p}audit_head (id, seq, hash) VALUES (1, 0, '{genesis}') ON CONFLICT DO NOTHING;
"""


def schema_statements(dialect: str, prefix: str) -> list[str]:
    """The DDL, one statement per item, for ``dialect`` ``"sqlite"`` or ``"postgresql"``.

    ``prefix`` goes before every table name (``ag_`` or ``"schema".ag_``). Every statement
    is idempotent, so opening a store runs them all each time the schema version is new.
    """
    if dialect == "sqlite":
        # INTEGER PRIMARY KEY is SQLite's rowid, the cheapest ordered key; the tables keyed
        # by text are WITHOUT ROWID, so a write touches one b-tree instead of two.
        fill = {
            "serial": "INTEGER PRIMARY KEY",
            "seq_pk": "INTEGER PRIMARY KEY",
            "without_rowid": " WITHOUT ROWID",
        }
    elif dialect == "postgresql":
        fill = {
            "serial": "BIGSERIAL PRIMARY KEY",
            "seq_pk": "BIGINT PRIMARY KEY",
            "without_rowid": "",
        }
    else:  # pragma: no cover - programming error
        raise ValueError(dialect)
    text = _DDL.format(p=prefix, genesis=GENESIS, **fill)
    return [s.strip() for s in text.split(";") if s.strip()]


# ---------------------------------------------------------------------------- rows -> records


def charges_to_json(charges: Sequence[Charge]) -> str:
    return json.dumps(
        [
            {
                "key": c.key,
                "kind": c.kind,
                "amount": c.amount,
                "limit": c.limit,
                "expires_at": c.expires_at,
                "label": c.label,
            }
            for c in charges
        ],
        separators=(",", ":"),
    )


def charges_from_json(text: str) -> tuple[Charge, ...]:
    return tuple(
        Charge(
            key=c["key"],
            kind=c["kind"],
            amount=float(c["amount"]),
            limit=float(c["limit"]),
            expires_at=int(c["expires_at"]),
            label=c["label"],
        )
        for c in json.loads(text)
    )


def call_record(row: Sequence[Any]) -> CallRecord:
    key, state, charges, result, updated_at = row
    return CallRecord(key, state, charges_from_json(charges), result, float(updated_at))


def level_change(row: Sequence[Any]) -> LevelChange:
    scope_key, old, new, actor, reason, evidence, at = row
    return LevelChange(scope_key, old, int(new), actor, reason, json.loads(evidence), float(at))


def kill_switch(row: Sequence[Any], scopes: dict[str, Scope] | None = None) -> KillSwitch:
    scope_key, engaged, actor, reason, at = row
    return KillSwitch(parse_scope(scope_key, scopes), bool(engaged), actor, reason, float(at))


def parse_scope(key: str, cache: dict[str, Scope] | None = None) -> Scope:
    """``Scope.parse`` with an optional cache (the snapshot reads the same keys every call)."""
    if cache is None:
        return Scope.parse(key)
    scope = cache.get(key)
    if scope is None:
        scope = cache[key] = Scope.parse(key)
    return scope


def pack_version(row: Sequence[Any]) -> PackVersion:
    name, version, digest, source, active, by, at = row
    return PackVersion(name, version, digest, source, bool(active), by, float(at))


def outcome(row: Sequence[Any]) -> Outcome:
    entity, cohort, metric, value, at, scope_key = row
    return Outcome(entity, cohort, metric, float(value), float(at), scope_key)


def audit_record(row: Sequence[Any]) -> AuditRecord:
    """An audit row as a record. Data edited into something that is not a JSON object is
    kept as ``{"unreadable": <text>}``, whose hash cannot match: ``verify`` then names the
    record instead of failing on it."""
    seq, ts, kind, call_key, data, prev_hash, digest = row
    try:
        parsed = json.loads(data)
    except (TypeError, ValueError):
        parsed = None
    if not isinstance(parsed, dict):
        parsed = {"unreadable": str(data)}
    return AuditRecord(int(seq), float(ts), kind, call_key, parsed, prev_hash, digest)


def outcome_event(o: Outcome) -> AuditEvent:
    """The audit event of a recorded outcome (the same as MemoryStore's)."""
    return AuditEvent(
        "outcome", {"entity": o.entity, "cohort": o.cohort, "metric": o.metric, "value": o.value}
    )


# ---------------------------------------------------------------------------- audit


def audit_payload(event: AuditEvent) -> tuple[str, dict[str, Any]]:
    """The canonical JSON text to hash and store for ``event``, and the data it stands for.

    The text is stored as it was hashed; verification rebuilds it with ``canonical_json``
    from the parsed JSON. That round trip is exact for string-keyed data; data with other
    keys (``{1: ...}``) is normalised first (keys become strings, as JSON has them), so the
    record verifies the same after it is read back.
    """
    data = dict(event.data)
    text = canonical_json(data)
    if not _str_keys(data):
        data = json.loads(text)
        text = canonical_json(data)
    return text, data


_SCALARS = frozenset((str, int, float, bool, type(None)))


def _str_keys(value: Any) -> bool:
    """True when every mapping key in ``value`` is a string (JSON keeps such data as is)."""
    if type(value) in _SCALARS:
        return True
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return False
            if type(v) not in _SCALARS and not _str_keys(v):
                return False
        return True
    if isinstance(value, list | tuple):
        return all(type(v) in _SCALARS or _str_keys(v) for v in value)
    return True  # anything else is rendered with default=str


def verify_with_head(
    records: Sequence[AuditRecord], head_seq: int | None, head_hash: str | None
) -> VerifyResult:
    """:func:`~agent_guardrails.store.base.verify_chain`, then check the chain head.

    The chain alone cannot see its newest records deleted (what is left is a valid, shorter
    chain) nor a forged record appended with a correctly computed hash. The head row,
    written in the same transaction as every append, can: it must name the last record.
    """
    result = verify_chain(records)
    if not result.ok:
        return result
    last_seq = records[-1].seq if records else 0
    last_hash = records[-1].hash if records else GENESIS
    if head_seq is None or head_hash is None:
        return VerifyResult(
            False, result.checked, last_seq + 1, "the chain head row is missing (deleted?)"
        )
    if head_seq > last_seq:
        return VerifyResult(
            False,
            result.checked,
            last_seq + 1,
            f"record {last_seq + 1} is missing (deleted?): the chain head says the log ends "
            f"at record {head_seq}",
        )
    if head_seq < last_seq:
        return VerifyResult(
            False,
            head_seq,
            head_seq + 1,
            f"record {head_seq + 1} is not in the chain head (inserted?): the head says the "
            f"log ends at record {head_seq}",
        )
    if head_hash != last_hash:
        return VerifyResult(
            False,
            last_seq - 1,
            last_seq,
            f"record {last_seq} does not match the chain head (replaced or edited)",
        )
    return result


# ---------------------------------------------------------------------------- URLs


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


# ---------------------------------------------------------------------------- connections


class _Holder(Generic[C]):
    """Owns one thread's connection and closes it when the thread's locals are dropped."""

    __slots__ = ("__weakref__", "close", "conn")

    def __init__(self, conn: C, close: Callable[[C], None]) -> None:
        self.conn = conn
        self.close = close

    def shut(self) -> None:
        close, self.close = self.close, _noop
        with contextlib.suppress(Exception):
            close(self.conn)

    def __del__(self) -> None:
        self.shut()


def _noop(_conn: Any) -> None:
    return None


class PerThread(Generic[C]):
    """One connection per thread, opened on first use.

    When a thread ends (its ``threading.local`` data is dropped) its connection is parked
    for the next new thread rather than closed: LangGraph runs each tool call on a fresh
    executor thread, and opening a connection per call would cost more than the call.
    Up to :attr:`MAX_IDLE` connections are parked; :meth:`close_all` closes every one.
    :meth:`discard` closes the calling thread's connection (after it broke) so the next call
    opens a new one. A child process made by ``fork`` never uses (nor closes) its parent's
    connections: it opens its own.
    """

    MAX_IDLE = 8

    def __init__(self, connect: Callable[[], C], close: Callable[[C], None]) -> None:
        self._connect = connect
        self._close = close
        self._local = threading.local()
        self._holders: weakref.WeakSet[_Holder[C]] = weakref.WeakSet()
        self._idle: list[C] = []
        self._lock = threading.Lock()
        self.closed = False
        if hasattr(os, "register_at_fork"):
            me = weakref.ref(self)

            def forked() -> None:
                per_thread = me()
                if per_thread is not None:
                    per_thread._forget()

            os.register_at_fork(after_in_child=forked)

    def _forget(self) -> None:
        """In a forked child: abandon the parent's connections without closing them (that
        would end the parent's database sessions); the child opens its own."""
        for holder in list(self._holders):
            holder.close = _noop
        self._holders = weakref.WeakSet()
        self._idle = []
        self._local = threading.local()
        self._lock = threading.Lock()

    def _park(self, conn: C) -> None:
        """The connection of a thread that ended: keep it for another thread."""
        with self._lock:
            if not self.closed and len(self._idle) < self.MAX_IDLE:
                self._idle.append(conn)
                return
        self._close(conn)

    def get(self) -> C:
        if self.closed:
            raise RuntimeError("the store is closed")
        holder: _Holder[C] | None = getattr(self._local, "holder", None)
        if holder is not None:
            return holder.conn
        with self._lock:
            parked = self._idle.pop() if self._idle else None
        conn = parked if parked is not None else self._connect()
        holder = _Holder(conn, self._park)
        with self._lock:
            self._holders.add(holder)
        self._local.holder = holder
        return conn

    def peek(self) -> C | None:
        """The calling thread's connection, if it has one (never opens one)."""
        holder: _Holder[C] | None = getattr(self._local, "holder", None)
        return holder.conn if holder is not None else None

    def discard(self) -> None:
        holder: _Holder[C] | None = getattr(self._local, "holder", None)
        if holder is not None:
            self._local.holder = None
            holder.close = self._close  # broken: close it, never park it
            holder.shut()

    def close_all(self) -> None:
        self.closed = True
        with self._lock:
            holders = list(self._holders)
            self._holders.clear()
            idle, self._idle = self._idle, []
        for holder in holders:
            holder.close = self._close
            holder.shut()
        for conn in idle:
            with contextlib.suppress(Exception):
                self._close(conn)
