"""``sqlite:///path.db``: the embedded default store, shared by every thread and process on
one machine.

URLs: ``sqlite:///relative/path.db`` (relative to the working directory) or
``sqlite:////absolute/path.db``; an optional ``?timeout=SECONDS`` sets how long a writer
waits for the database (default 30). The directory must exist; the file and its tables are
created on first open (see :mod:`agent_guardrails.store._sql` for the schema).

How it keeps the contract:

- **WAL mode, ``synchronous=NORMAL``.** Readers never block the writer nor each other; a
  commit is durable once the WAL is synced at a checkpoint (a power loss can lose the last
  commits, a process crash cannot). ``synchronous=FULL`` is about 4x slower.
- **One connection per thread**, opened on first use and closed when the thread ends.
- **Writes are ``BEGIN IMMEDIATE`` transactions**: the write lock is taken at the start, so
  check-then-update inside one is race-free, across threads and processes alike. Every
  atomic step of the contract (check and reserve every charge, the call record and its audit
  record) is one such transaction.
- **Writers queue on a lock file** (``<db>-writer.lock`` next to the database, ``flock``)
  before ``BEGIN IMMEDIATE``. SQLite's own busy handler polls with sleeps of up to 100 ms,
  so under contention the lock sits idle while writers sleep and some wait for seconds
  (unfair, and past Python's default 5 s timeout); the kernel lock hands over at once and
  keeps the worst wait near the queue's length times one transaction. The lock is held only
  around the store's own short transactions, never around a tool. SQLite's busy timeout
  (``?timeout=``, 30 s) still bounds the wait for writers that do not take the lock file
  (other tools, other versions). One caveat: a process *stopped* (SIGSTOP, a debugger)
  while it holds the lock file stalls the other writers until it resumes or dies; a killed
  process releases it at once. ``SQLiteStore(url, queue_writers=False)`` relies on the busy
  timeout alone. Where ``fcntl`` does not exist (Windows) only the busy timeout applies.
- **The audit chain** is appended in the writing transaction: read the head row, hash,
  insert, update the head. The write lock serialises appends, so the chain has no gaps.

Errors from SQLite (locked past the timeout, disk full, not a database) raise
:class:`~agent_guardrails.errors.StoreUnavailable` naming the file and the error.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import IO, Any
from urllib.parse import parse_qsl, unquote

from agent_guardrails.engine.decision import Charge
from agent_guardrails.errors import ConfigurationError, StoreUnavailable
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store import _sql
from agent_guardrails.store._sql import (
    AUDIT_COLS,
    CALL_COLS,
    EPS,
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
    chain_hash,
    check_charges,
    check_finite,
    level_data,
    pack_conflict,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["SQLiteStore"]

_HINT = "write sqlite:///relative/path.db or sqlite:////absolute/path.db"

_NEW_COUNTER = (
    "INSERT INTO ag_counters (key, used, lim, expires_at, updated_at) VALUES (?, ?, ?, ?, ?)"
)
_HELD = ("reserved", "started", "finished")  # a key in these states replays
_RESERVE_CALL = (  # state: 'reserved', or 'started' when reserve(start=...) starts it too
    "INSERT INTO ag_calls (key, state, charges, result, updated_at) "
    "VALUES (?, ?, ?, NULL, ?) ON CONFLICT (key) DO UPDATE SET state = excluded.state, "
    "charges = excluded.charges, result = NULL, updated_at = excluded.updated_at"
)
_END_HELD = (  # only a held call ends
    "UPDATE ag_calls SET state = ?, result = ?, updated_at = ? "
    "WHERE key = ? AND state IN ('reserved', 'started')"
)
_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)  # older SQLite: SELECT, then UPDATE
_ADD_COUNTER = "UPDATE ag_counters SET used = used + ?, updated_at = ? WHERE key = ?"
_APPEND = (
    "INSERT INTO ag_audit (seq, ts, kind, call_key, data, prev_hash, hash, dedupe) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe) DO NOTHING"
)


@functools.cache
def _snapshot_sql(n_keys: int) -> str:
    """The snapshot as one statement (one implicit read transaction, one step through the
    engine): rows tagged 0 level, 1 engaged kill switch (by id), 2 counter, 3 the call,
    4 the active pack's digest."""
    counters = (
        "UNION ALL SELECT 2, 0, key, used, NULL, NULL, NULL FROM ag_counters "
        f"WHERE key IN ({','.join('?' * n_keys)}) "
        if n_keys
        else ""
    )
    return (
        "SELECT 0, 0, level, NULL, NULL, NULL, NULL FROM ag_levels WHERE dial_key = ? "
        "UNION ALL SELECT 1, id, scope_key, NULL, NULL, NULL, NULL FROM ag_kill_switches "
        f"WHERE engaged {counters}"
        f"UNION ALL SELECT 3, 0, {CALL_COLS} FROM ag_calls WHERE key = ? "
        "UNION ALL SELECT 4, 0, digest, NULL, NULL, NULL, NULL FROM ag_packs WHERE active "
        "ORDER BY 1, 2"
    )


def _end_held(
    db: sqlite3.Connection, state: str, result: str | None, now: float, key: str
) -> str | None:
    """End a held call (``reserved`` or ``started``) in the caller's write transaction: the
    charges it held (JSON), or ``None`` when it held nothing (unknown, or already ended)."""
    args = (state, result, now, key)
    if _RETURNING:
        row = db.execute(f"{_END_HELD} RETURNING charges", args).fetchone()
        return None if row is None else str(row[0])
    row = db.execute(
        "SELECT charges FROM ag_calls WHERE key = ? AND state IN ('reserved', 'started')",
        (key,),
    ).fetchone()
    if row is None:
        return None
    db.execute(_END_HELD, args)
    return str(row[0])


def parse_sqlite_url(url: str) -> tuple[str, float]:
    """The file path and busy timeout named by a ``sqlite:///`` URL."""
    scheme, sep, rest = url.partition("://")
    if scheme != "sqlite" or not sep or not rest.startswith("/"):
        raise ConfigurationError(f"bad SQLite URL {url!r}: {_HINT}")
    path, _, query = rest[1:].partition("?")
    path = unquote(path)
    if not path:
        raise ConfigurationError(f"bad SQLite URL {url!r}: no file name; {_HINT}")
    if path == ":memory:" or path.startswith("file:"):
        raise ConfigurationError(
            f"bad SQLite URL {url!r}: use memory:// for a store that lives in this process, "
            f"or {_HINT}"
        )
    timeout = 30.0
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key != "timeout":
            raise ConfigurationError(
                f"unknown option {key!r} in SQLite URL {url!r}: the only option is "
                "?timeout=SECONDS (how long a writer waits for the database)"
            )
        try:
            timeout = float(value)
        except ValueError:
            raise ConfigurationError(
                f"bad timeout {value!r} in SQLite URL {url!r}: write a number of seconds"
            ) from None
        if timeout <= 0:
            raise ConfigurationError(f"timeout in SQLite URL {url!r} must be positive")
    return path, timeout


class _Conn:
    """One thread's connection and its handle on the writers' lock file."""

    __slots__ = ("db", "lockfile")

    def __init__(self, db: sqlite3.Connection, lockfile: IO[bytes] | None) -> None:
        self.db = db
        self.lockfile = lockfile

    def close(self) -> None:
        try:
            self.db.close()
        finally:
            if self.lockfile is not None:
                self.lockfile.close()


class SQLiteStore:
    """A :class:`~agent_guardrails.store.base.Store` in one SQLite file (WAL mode).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "guardrails.db"
    >>> store = SQLiteStore(f"sqlite:///{path}")
    >>> from agent_guardrails.decision import Charge
    >>> store.reserve("call-1", [Charge("budget:b@0", "budget", 2.0, 5.0, 86400, "b")]).ok
    True
    >>> store.counters("budget:")
    {'budget:b@0': 2.0}
    >>> store.close()
    """

    def __init__(self, url: str, *, queue_writers: bool = True) -> None:
        self.url = url
        self.path, self.timeout = parse_sqlite_url(url)
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise ConfigurationError(
                f"cannot open {url}: directory {directory!r} does not exist; create it, or "
                f"point the URL at an existing directory ({_HINT})"
            )
        if os.path.isdir(self.path):
            raise ConfigurationError(f"cannot open {url}: {self.path!r} is a directory")
        self._lock_path = (
            f"{self.path}-writer.lock" if queue_writers and fcntl is not None else None
        )
        self._conns: PerThread[_Conn] = PerThread(self._connect, _Conn.close)
        self._scopes: dict[str, Scope] = {}
        try:
            self._create_schema()
        except BaseException:
            self._conns.close_all()
            raise

    # ------------------------------------------------------------------ plumbing

    def _connect(self) -> _Conn:
        try:
            db = sqlite3.connect(
                self.path,
                timeout=self.timeout,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=256,
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.url}: {exc}") from exc
        try:
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise StoreUnavailable(
                    f"{self.url}: SQLite could not switch to WAL mode (got {mode!r}); "
                    "is the file on a network filesystem?"
                )
            db.execute("PRAGMA synchronous = NORMAL")
            lockfile = open(self._lock_path, "ab") if self._lock_path else None  # noqa: SIM115
        except BaseException as exc:
            db.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreUnavailable(f"{self.url}: {exc}") from exc
            if isinstance(exc, OSError):
                raise StoreUnavailable(f"{self.url}: writer lock file: {exc}") from exc
            raise
        return _Conn(db, lockfile)

    def _conn(self) -> _Conn:
        try:
            return self._conns.get()
        except RuntimeError as exc:
            raise StoreUnavailable(f"{self.url}: {exc}") from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on error."""
        conn = self._conn()
        db = conn.db
        lockfile = conn.lockfile
        if lockfile is not None:
            fcntl.flock(lockfile.fileno(), fcntl.LOCK_EX)
        try:
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"{self.url}: {exc}") from exc
            try:
                yield db
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise StoreUnavailable(f"{self.url}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.url}: {exc}") from exc
        finally:
            if lockfile is not None:
                fcntl.flock(lockfile.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state."""
        db = self._conn().db
        try:
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.url}: {exc}") from exc

    def _create_schema(self) -> None:
        with self._write() as db:
            has_meta = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ag_meta'"
            ).fetchone()
            version = (
                db.execute("SELECT value FROM ag_meta WHERE key = 'schema_version'").fetchone()
                if has_meta
                else None
            )
            if version is not None and int(version[0]) > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"{self.url} was written by a newer agent-guardrails (schema "
                    f"{version[0]}, this one knows {SCHEMA_VERSION}); upgrade agent-guardrails"
                )
            if version is not None and int(version[0]) == SCHEMA_VERSION:
                return
            for statement in _sql.schema_statements("sqlite", "ag_"):
                db.execute(statement)
            db.execute(
                "INSERT INTO ag_meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )

    def _append(self, db: sqlite3.Connection, event: AuditEvent, ts: float) -> AuditRecord | None:
        """Chain ``event`` onto the log inside the caller's write transaction."""
        return self._append_all(db, (event,), ts)[0]

    def _append_all(
        self, db: sqlite3.Connection, events: Sequence[AuditEvent], ts: float
    ) -> list[AuditRecord | None]:
        """Chain ``events`` onto the log, in order, inside the caller's write transaction:
        the head row is read once and written once. ``None`` stands for a duplicate of an
        earlier event (same dedupe), which is dropped."""
        head = db.execute("SELECT seq, hash FROM ag_audit_head WHERE id = 1").fetchone()
        if head is None:
            raise StoreUnavailable(
                f"{self.url}: the audit chain head row is missing (tampered?); run "
                "'agent-guardrails audit verify'"
            )
        first = seq = int(head[0])
        prev = digest = str(head[1])
        out: list[AuditRecord | None] = []
        for event in events:
            text, data = _sql.audit_payload(event)
            h = chain_hash(digest, seq + 1, ts, event.kind, event.call_key, text)
            cur = db.execute(
                _APPEND, (seq + 1, ts, event.kind, event.call_key, text, digest, h, event.dedupe)
            )
            if cur.rowcount == 0:
                out.append(None)
                continue
            seq += 1
            prev, digest = digest, h
            out.append(AuditRecord(seq, ts, event.kind, event.call_key, data, prev, digest))
        if seq != first:  # something was appended
            db.execute(
                "UPDATE ag_audit_head SET seq = ?, hash = ?, prev = ? WHERE id = 1",
                (seq, digest, prev),
            )
        return out

    @staticmethod
    def _settle(db: sqlite3.Connection, adjust: Sequence[tuple[str, float]], now: float) -> None:
        db.executemany(_ADD_COUNTER, [(delta, now, key) for key, delta in adjust])

    # ------------------------------------------------------------------ hot path

    def snapshot(self, *, dial_key: str, counter_keys: Sequence[str], call_key: str) -> Snapshot:
        keys = list(counter_keys)
        sql = _snapshot_sql(len(keys))
        try:
            rows = self._conn().db.execute(sql, (dial_key, *keys, call_key)).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.url}: {exc}") from exc
        level: int | None = None
        switches: list[Scope] = []
        found: dict[str, float] = {}
        call: CallRecord | None = None
        pack: str | None = None
        scopes = self._scopes
        for row in rows:
            tag = row[0]
            if tag == 2:
                found[row[2]] = float(row[3])
            elif tag == 0:
                level = int(row[2])
            elif tag == 1:
                switches.append(_sql.parse_scope(row[2], scopes))
            elif tag == 3:
                call = _sql.call_record(row[2:])
            else:
                pack = row[2]
        return Snapshot(
            level=level,
            kill_switches=tuple(switches),
            used={k: found.get(k, 0.0) for k in keys},
            call=call,
            pack=pack,
        )

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
        audits = (audit,) if audit is not None else ()
        return self._reserve([(call_key, charges)], audits, force, now, start)

    def reserve_many(
        self,
        items: Sequence[tuple[str, Sequence[Charge]]],
        *,
        audit: Sequence[AuditEvent] = (),
        force: bool = False,
        now: float | None = None,
    ) -> ReserveResult:
        return self._reserve(items, audit, force, now, None)

    def _reserve(
        self,
        items: Sequence[tuple[str, Sequence[Charge]]],
        audit: Sequence[AuditEvent],
        force: bool,
        now: float | None,
        start: AuditEvent | None,
    ) -> ReserveResult:
        """Reserve ``items`` in one write transaction; ``start`` (one item only) also marks
        that call started, after its ``audit`` records."""
        for _key, charges in items:
            check_charges(charges)
        ts = time.time()
        stamp = ts if now is None else now
        with self._write() as db:
            fresh = []
            for key, charges in items:
                row = db.execute("SELECT state FROM ag_calls WHERE key = ?", (key,)).fetchone()
                if row is None or row[0] not in _HELD:
                    fresh.append((key, charges))
            if not fresh:
                return ReserveResult(ok=True, replay=True)
            wanted: dict[str, float] = {}
            first: dict[str, Charge] = {}
            for _key, charges in fresh:
                for c in charges:
                    wanted[c.key] = wanted.get(c.key, 0.0) + c.amount
                    first.setdefault(c.key, c)
            if wanted:
                keys = list(wanted)
                marks = ",".join("?" * len(keys))
                used: dict[str, float] = dict(
                    db.execute(
                        f"SELECT key, used FROM ag_counters WHERE key IN ({marks})", keys
                    ).fetchall()
                )
                if not force:
                    for _key, charges in fresh:
                        for c in charges:
                            held = float(used.get(c.key, 0.0))
                            if held + wanted[c.key] > c.limit + EPS:
                                return ReserveResult(ok=False, breach=c, used=held)
                # The write lock is held: what the SELECT saw is still true.
                for key, amount in wanted.items():
                    if key in used:
                        db.execute(_ADD_COUNTER, (amount, stamp, key))
                    else:
                        c = first[key]
                        db.execute(_NEW_COUNTER, (key, amount, c.limit, c.expires_at, stamp))
            state = "reserved" if start is None else "started"
            db.executemany(
                _RESERVE_CALL,
                [(key, state, _sql.charges_to_json(ch), stamp) for key, ch in fresh],
            )
            if start is not None:
                self._append_all(db, (*audit, start), ts)
                return ReserveResult(ok=True, started=True)
            if audit:
                self._append_all(db, audit, ts)
        return ReserveResult(ok=True, replay=len(fresh) < len(items))

    def start(self, call_key: str, *, audit: AuditEvent | None = None) -> bool:
        now = time.time()
        with self._write() as db:
            row = db.execute("SELECT state FROM ag_calls WHERE key = ?", (call_key,)).fetchone()
            if row is None:
                db.execute(
                    f"INSERT INTO ag_calls ({CALL_COLS}) VALUES (?, 'started', '[]', NULL, ?)",
                    (call_key, now),
                )
            elif row[0] == "reserved":
                db.execute(
                    "UPDATE ag_calls SET state = 'started', result = NULL, updated_at = ? "
                    "WHERE key = ?",
                    (now, call_key),
                )
            else:
                return False
            if audit is not None:
                self._append(db, audit, now)
        return True

    def finish(
        self,
        call_key: str,
        *,
        ok: bool,
        actual_cost: float | None = None,
        result: str | None = None,
        audit: AuditEvent | None = None,
    ) -> None:
        if actual_cost is not None:
            check_finite(actual_cost, "actual_cost")
        now = time.time()
        with self._write() as db:
            held = _end_held(db, "finished" if ok else "failed", result, now, call_key)
            if held is not None and not ok:
                charges = _sql.charges_from_json(held)
                self._settle(db, [(c.key, -c.amount) for c in charges], now)
            elif held is not None and actual_cost is not None:
                charges = _sql.charges_from_json(held)
                self._settle(
                    db,
                    [(c.key, actual_cost - c.amount) for c in charges if c.kind == "budget"],
                    now,
                )
            if audit is not None:
                self._append(db, audit, now)

    def release(self, call_key: str, *, audit: AuditEvent | None = None) -> None:
        now = time.time()
        with self._write() as db:
            held = _end_held(db, "released", None, now, call_key)
            if held is not None:
                charges = _sql.charges_from_json(held)
                self._settle(db, [(c.key, -c.amount) for c in charges], now)
            if audit is not None:
                self._append(db, audit, now)

    def append_audit(self, event: AuditEvent) -> AuditRecord | None:
        now = time.time()
        with self._write() as db:
            return self._append(db, event, now)

    # ------------------------------------------------------------------ operators

    def call_record(self, call_key: str) -> CallRecord | None:
        with self._read() as db:
            row = db.execute(
                f"SELECT {CALL_COLS} FROM ag_calls WHERE key = ?", (call_key,)
            ).fetchone()
        return _sql.call_record(row) if row is not None else None

    def in_doubt(self) -> list[CallRecord]:
        with self._read() as db:
            rows = db.execute(
                f"SELECT {CALL_COLS} FROM ag_calls WHERE state = 'started' ORDER BY updated_at, key"
            ).fetchall()
        return [_sql.call_record(r) for r in rows]

    def counters(self, prefix: str = "") -> dict[str, float]:
        with self._read() as db:
            rows = db.execute(
                "SELECT key, used FROM ag_counters WHERE substr(key, 1, ?) = ? ORDER BY key",
                (len(prefix), prefix),
            ).fetchall()
        return {str(k): float(v) for k, v in rows}

    def get_level(self, dial_key: str) -> int | None:
        with self._read() as db:
            row = db.execute(
                "SELECT level FROM ag_levels WHERE dial_key = ?", (dial_key,)
            ).fetchone()
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
        with self._write() as db:
            row = db.execute(
                "SELECT level FROM ag_levels WHERE dial_key = ?", (dial_key,)
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
            db.execute(
                "INSERT INTO ag_levels (dial_key, level, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (dial_key) DO UPDATE SET level = excluded.level, "
                "updated_at = excluded.updated_at",
                (dial_key, level, now),
            )
            db.execute(
                f"INSERT INTO ag_level_history ({LEVEL_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
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
            self._append(db, AuditEvent("level.changed", level_data(change)), now)
        return change

    def level_history(self, dial_key: str | None = None) -> list[LevelChange]:
        with self._read() as db:
            if dial_key is None:
                rows = db.execute(
                    f"SELECT {LEVEL_COLS} FROM ag_level_history ORDER BY id"
                ).fetchall()
            else:
                rows = db.execute(
                    f"SELECT {LEVEL_COLS} FROM ag_level_history WHERE scope_key = ? ORDER BY id",
                    (dial_key,),
                ).fetchall()
        return [_sql.level_change(r) for r in rows]

    def set_kill_switch(self, scope: Scope, engaged: bool, *, by: str, reason: str) -> KillSwitch:
        now = time.time()
        with self._write() as db:
            db.execute(
                f"INSERT INTO ag_kill_switches ({SWITCH_COLS}) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (scope_key) DO UPDATE SET engaged = excluded.engaged, "
                "actor = excluded.actor, reason = excluded.reason, "
                "changed_at = excluded.changed_at",
                (scope.key, engaged, by, reason, now),
            )
            self._append(
                db,
                AuditEvent(
                    "kill_switch.engaged" if engaged else "kill_switch.released",
                    {"scope": scope.key, "by": by, "reason": reason},
                ),
                now,
            )
        return KillSwitch(scope, engaged, by, reason, now)

    def kill_switches(self) -> list[KillSwitch]:
        with self._read() as db:
            rows = db.execute(f"SELECT {SWITCH_COLS} FROM ag_kill_switches ORDER BY id").fetchall()
        return [_sql.kill_switch(r, self._scopes) for r in rows]

    def save_pack(
        self, name: str, version: str, digest: str, source: str, *, by: str
    ) -> PackVersion:
        now = time.time()
        with self._write() as db:
            row = db.execute(
                f"SELECT {PACK_COLS} FROM ag_packs WHERE name = ? AND version = ?",
                (name, version),
            ).fetchone()
            if row is not None:
                existing = _sql.pack_version(row)
                if existing.digest != digest:
                    raise pack_conflict(name, version)
                return existing
            db.execute(
                f"INSERT INTO ag_packs ({PACK_COLS}) VALUES (?, ?, ?, ?, 0, ?, ?)",
                (name, version, digest, source, by, now),
            )
            self._append(
                db,
                AuditEvent(
                    "pack.saved", {"name": name, "version": version, "digest": digest, "by": by}
                ),
                now,
            )
        return PackVersion(name, version, digest, source, False, by, now)

    def activate_pack(self, name: str, version: str, *, by: str, reason: str = "") -> PackVersion:
        now = time.time()
        with self._write() as db:
            row = db.execute(
                f"SELECT id, {PACK_COLS} FROM ag_packs WHERE name = ? AND version = ?",
                (name, version),
            ).fetchone()
            if row is None:
                raise ConfigurationError(
                    f"no stored version {version} of pack {name}; apply it first "
                    "('agent-guardrails policy apply FILE')"
                )
            db.execute("UPDATE ag_packs SET active = 0 WHERE active AND id != ?", (row[0],))
            db.execute("UPDATE ag_packs SET active = 1 WHERE id = ?", (row[0],))
            self._append(
                db,
                AuditEvent(
                    "pack.activated", {"name": name, "version": version, "by": by, "reason": reason}
                ),
                now,
            )
        return replace(_sql.pack_version(row[1:]), active=True)

    def active_pack(self) -> PackVersion | None:
        with self._read() as db:
            row = db.execute(
                f"SELECT {PACK_COLS} FROM ag_packs WHERE active ORDER BY id LIMIT 1"
            ).fetchone()
        return _sql.pack_version(row) if row is not None else None

    def pack_versions(self, name: str | None = None) -> list[PackVersion]:
        with self._read() as db:
            if name is None:
                rows = db.execute(f"SELECT {PACK_COLS} FROM ag_packs ORDER BY id").fetchall()
            else:
                rows = db.execute(
                    f"SELECT {PACK_COLS} FROM ag_packs WHERE name = ? ORDER BY id", (name,)
                ).fetchall()
        return [_sql.pack_version(r) for r in rows]

    def record_outcome(self, outcome: Outcome) -> None:
        check_finite(outcome.value, "outcome value", negative_ok=True)
        now = time.time()
        with self._write() as db:
            db.execute(
                f"INSERT INTO ag_outcomes ({OUTCOME_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    outcome.entity,
                    outcome.cohort,
                    outcome.metric,
                    outcome.value,
                    outcome.at,
                    outcome.scope_key,
                ),
            )
            self._append(db, _sql.outcome_event(outcome), now)

    def outcomes(self, *, metric: str | None = None, since: float = 0.0) -> list[Outcome]:
        with self._read() as db:
            if metric is None:
                rows = db.execute(
                    f"SELECT {OUTCOME_COLS} FROM ag_outcomes WHERE at >= ? ORDER BY id", (since,)
                ).fetchall()
            else:
                rows = db.execute(
                    f"SELECT {OUTCOME_COLS} FROM ag_outcomes WHERE metric = ? AND at >= ? "
                    "ORDER BY id",
                    (metric, since),
                ).fetchall()
        return [_sql.outcome(r) for r in rows]

    def audit_records(self, *, after: int = 0, limit: int | None = None) -> list[AuditRecord]:
        with self._read() as db:
            rows = db.execute(
                f"SELECT {AUDIT_COLS} FROM ag_audit WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, -1 if limit is None else limit),
            ).fetchall()
        return [_sql.audit_record(r) for r in rows]

    def find_audit(self, dedupe: str) -> AuditRecord | None:
        with self._read() as db:
            row = db.execute(
                f"SELECT {AUDIT_COLS} FROM ag_audit WHERE dedupe = ?", (dedupe,)
            ).fetchone()
        return None if row is None else _sql.audit_record(row)

    def verify_audit(self) -> VerifyResult:
        with self._read() as db:
            head = db.execute("SELECT seq, hash FROM ag_audit_head WHERE id = 1").fetchone()
            rows = db.execute(f"SELECT {AUDIT_COLS} FROM ag_audit ORDER BY seq").fetchall()
        records = [_sql.audit_record(r) for r in rows]
        if head is None:
            return _sql.verify_with_head(records, None, None)
        return _sql.verify_with_head(records, int(head[0]), str(head[1]))

    def close(self) -> None:
        self._conns.close_all()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.url!r})"
