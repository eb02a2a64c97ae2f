"""The SQLite store's connections: its URL, one connection per thread, the writers' queue
and the read and write transactions. See :mod:`.sqlite` for why each is the way it is."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import IO, Any, Generic, TypeVar
from urllib.parse import parse_qsl, unquote

from agent_guardrails.errors import ConfigurationError, StoreUnavailable

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["HINT", "PerThread", "SQLiteConnections", "parse_sqlite_url"]

C = TypeVar("C")
HINT = "write sqlite:///relative/path.db or sqlite:////absolute/path.db"


def parse_sqlite_url(url: str) -> tuple[str, float]:
    """The file path and busy timeout named by a ``sqlite:///`` URL."""
    scheme, sep, rest = url.partition("://")
    if scheme != "sqlite" or not sep or not rest.startswith("/"):
        raise ConfigurationError(f"bad SQLite URL {url!r}: {HINT}")
    path, _, query = rest[1:].partition("?")
    path = unquote(path)
    if not path:
        raise ConfigurationError(f"bad SQLite URL {url!r}: no file name; {HINT}")
    if path == ":memory:" or path.startswith("file:"):
        raise ConfigurationError(
            f"bad SQLite URL {url!r}: use memory:// for a store that lives in this process, "
            f"or {HINT}"
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


# ---------------------------------------------------------------------------- per thread


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
    A child process made by ``fork`` never uses (nor closes) its parent's connections: it
    opens its own.
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


# ---------------------------------------------------------------------------- connections


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


class SQLiteConnections:
    """The connections of one SQLite store, and its transactions."""

    def __init__(self, url: str, path: str, timeout: float, *, queue_writers: bool) -> None:
        self.url = url
        self.path = path
        self.timeout = timeout
        self._lock_path = f"{path}-writer.lock" if queue_writers and fcntl is not None else None
        self._conns: PerThread[_Conn] = PerThread(self._connect, _Conn.close)

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

    def db(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        return self._conn().db

    def _conn(self) -> _Conn:
        try:
            return self._conns.get()
        except RuntimeError as exc:
            raise StoreUnavailable(f"{self.url}: {exc}") from exc

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction, after the writers' lock file: committed on
        success, rolled back on error."""
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
    def read(self) -> Iterator[sqlite3.Connection]:
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

    def close(self) -> None:
        self._conns.close_all()
