"""What the SQL stores share besides their SQL: rows -> records, records -> parameters, and
the chain-head check. No I/O here: a sync or an async store can use every function.

Both :mod:`.sqlite` and :mod:`.postgres` keep the same tables (``sql/schema.sql``; every name
starts with ``ag_``; PostgreSQL puts them in one schema, see :mod:`.postgres`):

``ag_meta(key, value)``
    ``schema_version`` (:data:`SCHEMA_VERSION` on SQLite, ``postgres.SCHEMA_VERSION`` on
    PostgreSQL; a store refuses to open a database written by a newer schema) and, on
    PostgreSQL, ``functions``: a digest of the installed functions' text, so a new release
    replaces them when it first opens the database.
``ag_counters(key, used, lim, expires_at, updated_at)``
    The ledger: one row per budget or exposure counter, keyed by :attr:`Charge.key
    <agent_guardrails.engine.decision.Charge.key>`. The key already names the window
    bucket (``budget:daily|USD@1704240000``; see :mod:`agent_guardrails.policy.windows`), so a
    new bucket is a new row starting from zero and nothing is ever reset. ``used`` is what is
    spent or held (double precision), ``lim`` the last limit checked against it,
    ``expires_at`` the bucket's end in Unix seconds: a row whose ``expires_at`` has passed
    can be deleted by a cleanup job without changing any decision.
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
``ag_outcomes(entity, cohort, metric, value, at, scope_key, level, pack_version)``
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
    batch chaining step writes it (see :mod:`.postgres`). :func:`head_verdict` compares
    it with the last record, so deleting the newest records (which leaves a perfectly valid
    shorter chain) or appending a forged record with a well-computed hash is detected too.
    Someone who can rewrite both the log and the head can still forge a consistent history:
    anchor the head elsewhere (export it, sign it) if that matters.
``ag_audit_outbox(id, ts, ts_repr, kind, call_key, data, dedupe)`` (PostgreSQL only)
    Records written by the hot path, waiting to be chained into ``ag_audit`` in id order;
    not tamper-evident until then (see :mod:`.postgres`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agent_guardrails.engine.decision import Charge
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store.base import (
    GENESIS,
    AuditEvent,
    AuditRecord,
    CallRecord,
    ChainCheck,
    KillSwitch,
    LazyData,
    LevelChange,
    Outcome,
    PackVersion,
    VerifyResult,
    canonical_json,
)

__all__ = [
    "EPS",
    "SCHEMA_VERSION",
    "audit_payload",
    "charge_key",
    "audit_record",
    "call_record",
    "charges_from_json",
    "charges_to_json",
    "kill_switch",
    "level_change",
    "outcome",
    "outcome_event",
    "pack_version",
    "parse_scope",
    "pg_float_array",
    "pg_text_array",
    "pg_text_params",
    "archived_through",
    "head_verdict",
]

# SQLite's schema version. 2: ag_outcomes.level and .pack_version (a version 1 database is
# upgraded in place when a store opens it). 3: gate evidence (ag_gate_calls, ag_gate_events,
# an index of outcomes by scope and metric), new tables made by schema.sql. 4: an index of
# the gates' calls by scope and pack version (ag_gate_calls_versions), made by schema.sql.
# 5: an index of reserved calls (ag_calls_reserved, the approvals inbox), made by schema.sql.
SCHEMA_VERSION = 5
EPS = 1e-9  # the same tolerance as MemoryStore: used + amount may exceed limit by this much

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
    entity, cohort, metric, value, at, scope_key, level, pack_version = row
    return Outcome(
        entity,
        cohort,
        metric,
        float(value),
        float(at),
        scope_key,
        None if level is None else int(level),
        pack_version,
    )


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
    return o.event()


# ---------------------------------------------------------------------------- audit


def audit_payload(event: AuditEvent) -> tuple[str, dict[str, Any]]:
    """The canonical JSON text to hash and store for ``event``, and the data it stands for.

    The text is stored as it was hashed; verification rebuilds it with ``canonical_json``
    from the parsed JSON. That round trip is exact for string-keyed data; data with other
    keys (``{1: ...}``) is normalised first (keys become strings, as JSON has them), so the
    record verifies the same after it is read back.
    """
    raw = event.data
    if isinstance(raw, LazyData):  # built by us: string keys, JSON-ready
        data = dict(raw.materialise())
        return canonical_json(data), data
    data = dict(raw)
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


def archived_through(value: str | None) -> tuple[int, str]:
    """The ``audit_archived_through`` meta value (``"SEQ HASH"``) as ``(seq, hash)``;
    ``(0, GENESIS)`` when nothing was archived."""
    if value is None:
        return 0, GENESIS
    seq, _, digest = str(value).partition(" ")
    return int(seq), digest


def head_verdict(check: ChainCheck, head_seq: int | None, head_hash: str | None) -> VerifyResult:
    """The verdict on a chain ``check`` found whole (no failure fed), given the chain head.

    The chain alone cannot see its newest records deleted (what is left is a valid, shorter
    chain) nor a forged record appended with a correctly computed hash. The head row,
    written in the same transaction as every append, can: it must name the last record.
    """
    last_seq, last_hash, checked = check.last_seq, check.last_hash, check.checked
    if head_seq is None or head_hash is None:
        return VerifyResult(
            False, checked, last_seq + 1, "the chain head row is missing (deleted?)"
        )
    if head_seq > last_seq:
        return VerifyResult(
            False,
            checked,
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
    return check.result()


# ---------------------------------------------------------------------------- parameters


def charge_key(charge: Charge) -> str:
    """Sort key of charges: locks are taken in key order (code point order, as COLLATE "C")."""
    return charge.key


def pg_text_params(event: AuditEvent | None) -> tuple[bytes | None, ...]:
    """An audit event's ``kind, call_key, data, dedupe`` parameters, as UTF-8 text (for a
    statement run through libpq with text parameters)."""
    if event is None:
        return (None, None, None, None)
    text, _data = audit_payload(event)
    return (
        event.kind.encode(),
        None if event.call_key is None else event.call_key.encode(),
        text.encode(),
        None if event.dedupe is None else event.dedupe.encode(),
    )


def pg_text_array(values: Sequence[str]) -> bytes:
    """A PostgreSQL ``text[]`` literal: every element quoted, backslashes and quotes escaped."""
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return ("{" + ",".join(quoted) + "}").encode()


def pg_float_array(values: Sequence[float]) -> bytes:
    """A PostgreSQL ``float8[]`` literal; ``repr`` round-trips exactly."""
    return ("{" + ",".join(repr(float(v)) for v in values) + "}").encode()
