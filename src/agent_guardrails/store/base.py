"""The store contract every backend keeps, and the records it deals in.

A store holds everything that must be shared by every process running the same agents.
The contract is split by concern, one protocol each, so that code can ask for only what it
uses (the engine's snapshot reader needs a :class:`Ledger`, the CLI's pack commands a
:class:`PackRegistry`):

:class:`Ledger`
    Budget and exposure counters with reservations keyed by the call's idempotency key,
    and the call records (reserved / started / finished / failed / released): ``snapshot``,
    ``reserve``, ``reserve_many``, ``start``, ``finish``, ``release``, ``call_record``,
    ``in_doubt``, ``open_calls``, ``counters``.
:class:`Dials`
    The level dial per scope key and its history, and the kill-switches.
:class:`PackRegistry`
    Every saved policy pack version and the active one. The active pack's digest also
    comes with every :class:`Snapshot` (:attr:`Snapshot.pack`), read in the same round
    trip, so the pipeline notices a pack applied or rolled back elsewhere on its next call.
:class:`AuditLog`
    The hash-chained, append-only audit log.
:class:`OutcomeLog`
    KPI outcomes for gates and scorecards.
:class:`Store`
    All of them, plus ``url`` and ``close()``: what :func:`agent_guardrails.store.open_store`
    returns.

Only finite numbers are charged: every backend runs :func:`check_charges` (and
:func:`check_finite` for ``actual_cost`` and outcome values) before it writes anything, and
raises ``ValueError`` naming the field and the charge.

Backends: ``memory://`` (:mod:`.memory`), ``sqlite:///path.db`` (:mod:`.sqlite`) and
``postgresql://...`` (:mod:`.postgres`); :func:`agent_guardrails.store.open_store` picks one
by URL. Every method is synchronous and thread-safe; atomic steps are one transaction.

**Async.** Each protocol has an async twin in :mod:`.async_protocols` (``AsyncLedger``,
``AsyncDials``, ``AsyncPackRegistry``, ``AsyncAuditLog``, ``AsyncOutcomeLog``, and
``AsyncStore``, all of them plus ``url`` and ``aclose()``): for every method ``name``
a coroutine method ``a<name>`` with the same parameters, result, errors and atomicity
(``asnapshot``, ``areserve``, ..., ``aclose``). Every backend is both a :class:`Store` and
an ``AsyncStore``, so one store object serves sync callers (the CLI, sync agents) and
async ones (agents served on an event loop) at once. The async methods never block the
event loop: no database call, socket or file I/O, sleep, or wait for a lock held elsewhere
runs on the loop's thread. A call that must wait (a busy writer lock, a row locked by
another transaction, a full connection pool) waits off the loop, and fails with
:class:`~agent_guardrails.errors.StoreUnavailable` after the store's timeout as the sync
call would. How each backend does it is in its module docstring.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, runtime_checkable

from agent_guardrails.engine.decision import Charge
from agent_guardrails.errors import ConfigurationError
from agent_guardrails.policy.scope import Scope

__all__ = [
    "ArchiveResult",
    "ChainCheck",
    "read_audit",
    "AuditEvent",
    "AuditLog",
    "AuditRecord",
    "CallRecord",
    "Dials",
    "KillSwitch",
    "LazyData",
    "Ledger",
    "LevelChange",
    "Outcome",
    "OutcomeLog",
    "PackRegistry",
    "PackVersion",
    "ReserveResult",
    "Retention",
    "Snapshot",
    "Store",
    "VerifyResult",
    "chain_hash",
    "check_charges",
    "check_finite",
]

GENESIS = "0" * 64
_INF = math.inf

CALL_STATES = ("reserved", "started", "finished", "failed", "released")


@dataclass(slots=True)
class AuditEvent:
    """An audit record to append. ``dedupe`` (optional) makes the append idempotent: a second
    event with the same ``dedupe`` string is dropped, so a resumed graph node that re-runs
    from its start does not record its decision twice."""

    kind: str
    data: Mapping[str, Any]
    call_key: str | None = None
    dedupe: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    ts: float
    kind: str
    call_key: str | None
    data: Mapping[str, Any]
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "call_key": self.call_key,
            "data": dict(self.data),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return str(value)


class LazyData(Mapping[str, Any]):
    """Audit data built only when a store reads it (the memory store keeps events as they
    are, so the hot path does not pay for data nobody reads). :meth:`build` returns a
    JSON-ready ``dict`` whose keys are all strings, at any depth; it is called once."""

    __slots__ = ("_built",)

    def __init__(self) -> None:
        self._built: dict[str, Any] | None = None

    def build(self) -> dict[str, Any]:
        raise NotImplementedError

    def materialise(self) -> dict[str, Any]:
        """The data (built on first use, then kept)."""
        built = self._built
        if built is None:
            built = self._built = self.build()
        return built

    def __getitem__(self, name: str) -> Any:
        return self.materialise()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.materialise())

    def __len__(self) -> int:
        return len(self.materialise())


# One encoder for every record: ``json.dumps`` with these arguments builds an equal one per
# call, which costs more than encoding a small record.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_plain)


def canonical_json(data: Any) -> str:
    """The JSON text that is hashed and stored: sorted keys, no spaces; any ``Mapping``
    (including lazily built audit data) is serialised as an object."""
    if isinstance(data, LazyData):
        data = data.materialise()
    elif isinstance(data, Mapping) and not isinstance(data, dict):
        data = dict(data)
    return _CANONICAL.encode(data)


def chain_hash(
    prev_hash: str, seq: int, ts: float, kind: str, call_key: str | None, data_json: str
) -> str:
    """The hash that chains record ``seq`` to the one before it."""
    body = f"{prev_hash}|{seq}|{ts!r}|{kind}|{call_key or ''}|{data_json}"
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    """What :meth:`Retention.archive_audit` moved: ``records`` records, ``first_seq`` to
    ``last_seq``, the last one's hash ``last_hash`` (where the kept chain now starts), and
    ``deleted``, how many rows this run removed from the store (0 when another run had
    already removed them). With no record to move, ``records`` is 0, ``last_seq`` and
    ``last_hash`` are where the kept chain starts and ``first_seq`` is ``last_seq + 1``."""

    records: int
    first_seq: int
    last_seq: int
    last_hash: str
    deleted: int = 0


@dataclass(slots=True)
class CallRecord:
    """What the store knows of one call (keyed by its idempotency key)."""

    key: str
    state: str
    charges: tuple[Charge, ...] = ()
    result: str | None = None
    updated_at: float = 0.0
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ReserveResult:
    """``ok`` when every charge fitted and is now held. ``replay`` when the key had already
    reserved (the original result is returned). On failure, ``breach`` is the first charge
    that did not fit and ``used`` what its counter held. ``started`` when the call was also
    marked started in the same step (``reserve(..., start=...)``)."""

    ok: bool
    replay: bool = False
    breach: Charge | None = None
    used: float = 0.0
    started: bool = False


@dataclass(slots=True)
class Snapshot:
    """What the engine needs from the store for one call, read in one round trip."""

    level: int | None
    kill_switches: tuple[Scope, ...]
    used: Mapping[str, float]
    call: CallRecord | None
    #: The digest (:attr:`PackVersion.digest`) of the store's active pack, ``None`` when no
    #: pack is active. The pipeline compares it with the pack it holds and reloads on change.
    pack: str | None = None


@dataclass(frozen=True, slots=True)
class KillSwitch:
    scope: Scope
    engaged: bool
    by: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class LevelChange:
    scope_key: str
    old_level: int | None
    new_level: int
    by: str
    reason: str
    evidence: Mapping[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class PackVersion:
    name: str
    version: str
    digest: str
    source: str
    active: bool
    applied_by: str
    applied_at: float


@dataclass(frozen=True, slots=True)
class Outcome:
    """A KPI outcome, attributed: the entity (or call) it is about, the cohort and scope it
    counts for, and the level and pack version the work behind it ran under (``None``
    where that is not known)."""

    entity: str
    cohort: str
    metric: str
    value: float
    at: float
    scope_key: str = "global"
    level: int | None = None
    pack_version: str | None = None

    def event(self) -> AuditEvent:
        """Its audit event (the same on every store)."""
        return AuditEvent(
            "outcome",
            {
                "entity": self.entity,
                "cohort": self.cohort,
                "metric": self.metric,
                "value": self.value,
                "scope": self.scope_key,
                "level": self.level,
                "pack_version": self.pack_version,
            },
        )


@runtime_checkable
class Ledger(Protocol):
    """Budget and exposure counters, with reservations keyed by the call's idempotency key,
    and the call records: the hot path of a guarded call."""

    def snapshot(self, *, dial_key: str, counter_keys: Sequence[str], call_key: str) -> Snapshot:
        """What the engine needs for one call, read in one round trip: the level of
        ``dial_key``, the engaged kill-switches, what ``counter_keys`` hold (0.0 for a
        counter never charged), the call record of ``call_key`` and the active pack's
        digest (:attr:`Snapshot.pack`)."""
        ...

    def reserve(
        self,
        call_key: str,
        charges: Sequence[Charge],
        *,
        audit: AuditEvent | None = None,
        force: bool = False,
        now: float | None = None,
        start: AuditEvent | None = None,
    ) -> ReserveResult:
        """Hold every charge atomically, or none.

        A key whose call is reserved, started or finished replays (``replay=True``, nothing
        held again); a key whose last attempt failed or was released reserves anew (a
        retry). ``now`` (the guard's clock) stamps the call record. With ``start`` (the
        ``execution.started`` audit event), a fresh reservation is also marked started in
        the same step, after ``audit`` (``started=True``): an allowed call then costs one
        transaction instead of two. A replay or a refusal starts nothing.

        Raises ``ValueError`` (:func:`check_charges`), before writing anything, for a charge
        whose amount is negative, NaN or infinite or whose limit is NaN or infinite."""
        ...

    def reserve_many(
        self,
        items: Sequence[tuple[str, Sequence[Charge]]],
        *,
        audit: Sequence[AuditEvent] = (),
        force: bool = False,
        now: float | None = None,
    ) -> ReserveResult:
        """Reserve several calls as one: every charge of every call fits, or nothing is held.
        Keys already reserved, started or finished are skipped (a replay); charges on the
        same counter add up. Used by the guard node for a batch of parallel tool calls.
        Bad numbers raise ``ValueError`` as in :meth:`reserve`."""
        ...

    def start(self, call_key: str, *, audit: AuditEvent | None = None) -> bool:
        """Mark the call started. False if it had already started (never run it twice)."""
        ...

    def finish(
        self,
        call_key: str,
        *,
        ok: bool,
        actual_cost: float | None = None,
        result: str | None = None,
        audit: AuditEvent | None = None,
    ) -> None:
        """Commit (``ok``; budget charges take ``actual_cost`` when given) or release.
        An ``actual_cost`` that is negative, NaN or infinite raises ``ValueError`` and
        changes nothing."""
        ...

    def release(self, call_key: str, *, audit: AuditEvent | None = None) -> None: ...

    def call_record(self, call_key: str) -> CallRecord | None: ...

    def in_doubt(self) -> list[CallRecord]: ...

    def open_calls(self) -> list[CallRecord]:
        """The calls that hold (``reserved``) or run (``started``), oldest first: the only
        ones a question can wait on (the approvals inbox reads these, not the whole log)."""
        ...

    def counters(self, prefix: str = "") -> dict[str, float]: ...


@runtime_checkable
class Dials(Protocol):
    """The live autonomy level per scope key, its history, and the kill-switches."""

    def get_level(self, dial_key: str) -> int | None: ...

    def set_level(
        self,
        dial_key: str,
        level: int,
        *,
        by: str,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
    ) -> LevelChange: ...

    def level_history(self, dial_key: str | None = None) -> list[LevelChange]: ...

    def set_kill_switch(
        self, scope: Scope, engaged: bool, *, by: str, reason: str
    ) -> KillSwitch: ...

    def kill_switches(self) -> list[KillSwitch]: ...


@runtime_checkable
class PackRegistry(Protocol):
    """Every saved policy pack version, and which one is active."""

    def save_pack(
        self, name: str, version: str, digest: str, source: str, *, by: str
    ) -> PackVersion: ...

    def activate_pack(self, name: str, version: str, *, by: str, reason: str = "") -> PackVersion:
        """Make a stored version the active one and record ``pack.activated``; the version
        already active stays so and records nothing (processes starting together, a
        deploy that applies the same pack again: no new gate window, no incident)."""
        ...

    def active_pack(self) -> PackVersion | None: ...

    def pack_versions(self, name: str | None = None) -> list[PackVersion]: ...


@runtime_checkable
class AuditLog(Protocol):
    """The append-only, hash-chained audit log."""

    def append_audit(self, event: AuditEvent) -> AuditRecord | None:
        """Append one record. Returns it, or ``None`` when its ``dedupe`` was already
        recorded (the memory store, which numbers and hashes records lazily, always
        returns ``None``)."""
        ...

    def audit_records(self, *, after: int = 0, limit: int | None = None) -> list[AuditRecord]: ...

    def find_audit(self, dedupe: str) -> AuditRecord | None:
        """The record appended with this ``dedupe`` string, if any (e.g. a call's decision,
        read back on resume to link the resumed call's trace to the one that asked)."""
        ...

    def verify_audit(self) -> VerifyResult: ...


@runtime_checkable
class OutcomeLog(Protocol):
    """KPI outcomes, the evidence for promotion gates and scorecards."""

    def record_outcome(self, outcome: Outcome) -> None:
        """Record ``outcome`` (and its audit record). A value that is NaN or infinite
        raises ``ValueError`` and records nothing."""
        ...

    def outcomes(self, *, metric: str | None = None, since: float = 0.0) -> list[Outcome]: ...


@runtime_checkable
class Retention(Protocol):
    """Keeping the audit log and the call records from growing without bound.

    The archived prefix of the audit log moves to a JSON Lines file
    (:mod:`agent_guardrails.store._archive` describes it) and the store keeps a marker of
    where its chain starts, so :meth:`AuditLog.verify_audit` checks the kept records from
    the archive's last hash, and ``verify_audit_archive`` checks archive and store
    together."""

    def archive_audit(self, before: float, out: IO[str] | str | os.PathLike[str]) -> ArchiveResult:
        """Move every audit record older than ``before`` (epoch seconds), a prefix of the
        chain that stops at the first record not older, to ``out`` (written and synced
        first), then delete them and record where the kept chain starts, in one
        transaction. A crash in between leaves the file and the rows: run it again.
        A ``before`` that is NaN or infinite raises ``ValueError``."""
        ...

    def prune_calls(self, before: float) -> int:
        """Delete the records of calls that ended (finished, failed, released) before
        ``before``; never a reserved or started one. Returns how many. A pruned key no
        longer replays its result: keep calls longer than any thread may resume. A store
        that keeps gate evidence (:mod:`.evidence`) also drops that of calls decided
        before ``before``."""
        ...

    def audit_archived_through(self) -> tuple[int, str]:
        """The seq and hash of the last archived record (``(0, GENESIS)``: none)."""
        ...


@runtime_checkable
class Store(Ledger, Dials, PackRegistry, AuditLog, OutcomeLog, Retention, Protocol):
    """Everything the guard and the operator tools need, from one backend chosen by URL.
    See the module docstring; each concern is its own protocol, for code that needs one."""

    url: str

    def close(self) -> None: ...


# ---------------------------------------------------------------------------- numbers


def check_finite(value: float, what: str, *, negative_ok: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number (and ``>= 0`` unless
    ``negative_ok``). ``what`` names it in the message. Every store runs this before it
    writes anything, so a NaN or an infinity never reaches a counter (NaN compares false
    with everything: a NaN counter would let every later charge through)."""
    try:
        ok = math.isfinite(value) and (negative_ok or value >= 0)
    except TypeError:
        ok = False
    if not ok:
        bound = "" if negative_ok else " >= 0"
        raise ValueError(f"{what} must be a finite number{bound}, got {value!r}")


def check_charges(charges: Iterable[Charge]) -> None:
    """:func:`check_finite` for every charge: the amount (``>= 0``) and the limit.

    On the hot path of every reservation: two comparisons per charge (NaN fails both), and
    the message is only built for a charge that fails them."""
    for c in charges:
        try:
            ok = 0.0 <= c.amount < _INF and -_INF < c.limit < _INF
        except (TypeError, ArithmeticError):
            ok = False
        if not ok:
            check_finite(c.amount, f"charge amount for {c.kind} {c.label}")
            check_finite(c.limit, f"charge limit for {c.kind} {c.label}", negative_ok=True)
            raise ValueError(f"charge for {c.kind} {c.label} has an unusable amount or limit")


AUDIT_PAGE = 5000
"""Records read at a time by :func:`read_audit`."""


def read_audit(store: AuditLog) -> Iterator[AuditRecord]:
    """``store``'s audit log, oldest first, read a page at a time: a log of millions of
    records is never held whole (each page is dropped once passed)."""
    after = 0
    while True:
        page = store.audit_records(after=after, limit=AUDIT_PAGE)
        yield from page
        if len(page) < AUDIT_PAGE:
            return
        after = page[-1].seq


def verify_chain(
    records: Iterable[AuditRecord], *, start_seq: int = 0, start_hash: str = GENESIS
) -> VerifyResult:
    """Check seq continuity and every hash; name the first record that does not fit. The
    chain starts after record ``start_seq`` whose hash is ``start_hash`` (the genesis by
    default; where an archive ends for a log whose prefix was archived)."""
    check = ChainCheck(start_seq, start_hash)
    failed = check.feed(records)
    return failed if failed is not None else check.result()


class ChainCheck:
    """:func:`verify_chain` fed a page of records at a time (a long log is never held
    whole): :meth:`feed` each page in order, then :meth:`result`."""

    __slots__ = ("expected_seq", "failed", "last_hash", "start_seq")

    def __init__(self, start_seq: int = 0, start_hash: str = GENESIS) -> None:
        self.start_seq = start_seq
        self.expected_seq = start_seq + 1
        self.last_hash = start_hash
        self.failed: VerifyResult | None = None  # the first failure: it stands

    @property
    def last_seq(self) -> int:
        """The last record checked (``start_seq`` before any)."""
        return self.expected_seq - 1

    @property
    def checked(self) -> int:
        return self.expected_seq - 1 - self.start_seq

    def feed(self, records: Iterable[AuditRecord]) -> VerifyResult | None:
        """Check the next records; the failure (the first one found, whatever is fed
        after it), or ``None`` while the chain holds."""
        if self.failed is not None:
            return self.failed
        prev, expected_seq = self.last_hash, self.expected_seq
        try:
            for rec in records:
                if rec.seq != expected_seq:
                    what = "missing (deleted?)" if rec.seq > expected_seq else "out of order"
                    problem = f"record {expected_seq} is {what}"
                    return self._failed(expected_seq, expected_seq, problem)
                if rec.prev_hash != prev:
                    return self._failed(
                        expected_seq,
                        rec.seq,
                        f"record {rec.seq} does not link to record {rec.seq - 1} "
                        "(inserted, reordered or edited)",
                    )
                data_json = canonical_json(rec.data)
                if (
                    chain_hash(rec.prev_hash, rec.seq, rec.ts, rec.kind, rec.call_key, data_json)
                    != rec.hash
                ):
                    return self._failed(
                        expected_seq,
                        rec.seq,
                        f"record {rec.seq} was edited (its hash does not match its content)",
                    )
                prev = rec.hash
                expected_seq += 1
        finally:
            self.expected_seq, self.last_hash = expected_seq, prev
        return None

    def _failed(self, expected_seq: int, seq: int, problem: str) -> VerifyResult:
        self.failed = VerifyResult(False, expected_seq - 1 - self.start_seq, seq, problem)
        return self.failed

    def result(self) -> VerifyResult:
        """The verdict on everything fed."""
        return self.failed if self.failed is not None else VerifyResult(True, self.checked)


def level_data(change: LevelChange) -> dict[str, Any]:
    """The audit data of a level change, the same in every store."""
    return {
        "scope": change.scope_key,
        "old": change.old_level,
        "new": change.new_level,
        "by": change.by,
        "reason": change.reason,
        "evidence": dict(change.evidence),
    }


def pack_conflict(name: str, version: str) -> ConfigurationError:
    """The error for saving different content under a stored name and version."""
    return ConfigurationError(
        f"pack {name} version {version} is already stored with different content; "
        "give the new content a new version"
    )
