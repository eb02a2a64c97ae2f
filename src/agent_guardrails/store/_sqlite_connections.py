"""The SQLite store's connections: its URL, one connection per thread, the writers' queue
(bounded in time) and the read and write transactions. See :mod:`.sqlite` for why each is
the way it is."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, Generic, TypeVar
from urllib.parse import parse_qsl, unquote

from agent_guardrails.errors import ConfigurationError, StoreUnavailable
from agent_guardrails.store._sqlite_checkpoints import BACKSTOP, Checkpoints

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "HINT",
    "AfterCommit",
    "PerThread",
    "SQLiteConnections",
    "WriterLock",
    "parse_sqlite_url",
]

C = TypeVar("C")
#: Told a group's commit (None, or the error its writers got); may return what to do once
#: the group's answers are sent (see SQLiteConnections.after_commit).
AfterCommit = Callable[[StoreUnavailable | None], Callable[[], None] | None]
T = TypeVar("T")
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


# ---------------------------------------------------------------------------- writers' lock


class WriterLock:
    """The writers' queue of one store in this process, bounded in time.

    Writers queue first on a thread lock (this process's writers), then the one at its
    head takes the lock file (``flock``, the queue across processes) on the store's one
    handle on it. The first try does not wait (``LOCK_NB``): the common case costs one
    system call. If another process holds the file, waiting is handed to the store's
    *taker* thread, which sits in the blocking ``flock`` (so the kernel hands the lock
    over the moment it is released, as before) while the writer waits for it on a
    condition with a deadline. A writer whose deadline passes gives up
    (:meth:`acquire` returns False); the taker keeps waiting, and hands the file lock to
    whichever writer of this process is waiting when it gets it, or releases it at once
    if none is. So a holder that never lets go (a process stopped with SIGSTOP) costs each
    writer its timeout, never more, and never leaves more than one thread waiting on it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[bytes] = open(path, "ab")  # noqa: SIM115 - closed by close()
        self._queue = threading.Lock()  # this process's writers
        self._cond = threading.Condition(threading.Lock())  # the taker's state, below
        self._taking = False  # the taker is (or is about to be) in the blocking flock
        self._want = False  # a writer is waiting for the taker
        self._got = False  # the taker holds the file lock for the waiting writer
        self._error: OSError | None = None
        self._taker: threading.Thread | None = None
        self._closed = False
        if hasattr(os, "register_at_fork"):
            me = weakref.ref(self)

            def forked() -> None:
                lock = me()
                if lock is not None:
                    lock._forget()

            os.register_at_fork(after_in_child=forked)

    def _forget(self) -> None:
        """In a forked child: a handle of its own (the inherited one shares the parent's
        lock), fresh state, no taker (threads do not survive ``fork``)."""
        self._file = open(self.path, "ab")  # noqa: SIM115 - the parent's is left alone
        self._queue = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._taking = self._want = self._got = False
        self._error = None
        self._taker = None

    def acquire(self, deadline: float) -> bool:
        """Take the writers' lock by ``deadline`` (``time.monotonic()``); False if not."""
        queue = self._queue
        if not queue.acquire(False) and not queue.acquire(
            timeout=max(deadline - time.monotonic(), 0.0)
        ):
            return False
        if not self._taking:  # the common case: no taker at work, try the file at once
            # (The taker clears _taking only after it let go of the file, and only a writer
            # holding the queue, as this one does, can set it.)
            try:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                pass
            except BaseException:
                queue.release()
                raise
        try:
            if self._take_file(deadline):
                return True
        except BaseException:
            queue.release()
            raise
        queue.release()
        return False

    def release(self) -> None:
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        finally:
            self._queue.release()

    def _take_file(self, deadline: float) -> bool:
        """The file is taken by another process: have the taker wait for it."""
        with self._cond:
            if not self._taking:
                self._taking = True
                if self._taker is None:
                    self._taker = threading.Thread(
                        target=self._take_loop, name="agent-guardrails-sqlite-lock", daemon=True
                    )
                    self._taker.start()
                self._cond.notify_all()
            self._want = True
            try:
                while not self._got:
                    if self._error is not None:
                        error, self._error = self._error, None
                        raise error
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                self._got = False
                return True
            finally:
                self._want = False

    def _take_loop(self) -> None:
        """The taker thread: waits in ``flock`` whenever a writer asks it to."""
        cond = self._cond
        while True:
            with cond:
                while not self._taking and not self._closed:
                    cond.wait()
                if self._closed and not self._taking:
                    self._file.close()
                    return
                fd = self._file.fileno()
            error: OSError | None = None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                error = exc
            with cond:
                if error is not None:
                    self._error = error
                elif self._want:
                    self._got = True
                else:  # the writer gave up: let the others in, before _taking is cleared
                    fcntl.flock(fd, fcntl.LOCK_UN)  # (see acquire())
                self._taking = False
                cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            if self._taker is not None:  # it closes the file when it is done waiting
                self._cond.notify_all()
                return
        self._file.close()


# ---------------------------------------------------------------------------- connections


class SQLiteConnections:
    """The connections of one SQLite store, and its transactions."""

    def __init__(self, url: str, path: str, timeout: float, *, queue_writers: bool) -> None:
        self.url = url
        self.path = path
        self.timeout = timeout
        self._busy_ms = int(timeout * 1000)
        self._writers: WriterLock | None = None
        if queue_writers and fcntl is not None:
            try:
                self._writers = WriterLock(f"{path}-writer.lock")
            except OSError as exc:
                raise StoreUnavailable(f"{url}: writer lock file: {exc}") from exc
        self._conns: PerThread[sqlite3.Connection] = PerThread(self._connect, _close_db)
        # The store thread's second connection: its reads while its group's transaction is
        # open, so that they answer from committed data only (see run_group).
        self._side: PerThread[sqlite3.Connection] = PerThread(self._connect, _close_db)
        self._checkpoints = Checkpoints(path)  # WAL checkpoints off the callers' path
        weakref.finalize(self, self._checkpoints.stop)  # dropped unclosed: no thread stays
        # The deadline of the operation this thread runs for an async caller (set by
        # within(): its wait started when it was called, not when a thread picked it up).
        self._deadline = threading.local()
        self._group = threading.local()  # this thread's run_group, if it is in one

    def _connect(self) -> sqlite3.Connection:
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
            # Commits leave checkpoints to the store's thread (_sqlite_checkpoints), unless
            # the log grows past the backstop.
            db.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP}")
        except BaseException as exc:
            db.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreUnavailable(f"{self.url}: {exc}") from exc
            raise
        return db

    def db(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        try:
            return self._conns.get()
        except RuntimeError as exc:
            raise StoreUnavailable(f"{self.url}: {exc}") from exc

    def in_order(self) -> sqlite3.Connection:
        """The connection for a read that must see every operation queued before it (a
        guarded call's snapshot: a kill-switch or level change queued ahead of it must
        stop it): this thread's. Inside a group whose transaction is open, that is the
        group's, uncommitted writes and all, so this operation's answer then stands only
        if the group commits (it fails with the writers if not)."""
        group: _Group | None = getattr(self._group, "value", None)
        if group is not None and group.db is not None:
            group.depend()
            return group.db
        return self.db()

    def reader(self) -> sqlite3.Connection:
        """The connection for a read outside a transaction: this thread's, or while its
        group's transaction is open, its second one, which sees committed data only."""
        group: _Group | None = getattr(self._group, "value", None)
        if group is None or group.db is None:
            return self.db()
        try:
            return self._side.get()
        except RuntimeError as exc:
            raise StoreUnavailable(f"{self.url}: {exc}") from exc

    def within(self, deadline: float, work: Callable[[], T]) -> T:
        """``work()`` on this thread, its writes waiting for the database until ``deadline``
        (``time.monotonic()``) instead of ``timeout`` seconds from when they start."""
        self._deadline.value = deadline
        try:
            return work()
        finally:
            self._deadline.value = None

    def _locked(self, waited: float) -> StoreUnavailable:
        where = f" (queued on {self._writers.path})" if self._writers is not None else ""
        return StoreUnavailable(
            f"{self.url}: the database is locked by another writer: waited {waited:.3g} s "
            f"for the write lock{where}, the URL's timeout is {self.timeout:g} s "
            "(?timeout=SECONDS); is another process stuck in a write, or stopped?"
        )

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction, after the writers' lock: committed on
        success, rolled back on error. Waits for the database at most ``timeout`` seconds
        in all (or until this thread's :meth:`within` deadline), then raises
        :class:`StoreUnavailable` saying it is locked by another writer.

        Inside :meth:`run_group` the transaction is the group's (opened by its first
        write, committed when the group ends) and this write is a savepoint in it: rolled
        back alone on error."""
        group: _Group | None = getattr(self._group, "value", None)
        if group is not None:
            with self._in_group(group) as db:
                yield db
            return
        db = self.db()
        self._open(db)
        try:
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
            with contextlib.suppress(Exception):  # (committed: a hint to the thread only)
                self._checkpoints.wrote()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.url}: {exc}") from exc
        finally:
            if self._writers is not None:
                self._writers.release()

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state (inside
        :meth:`run_group` too: not the group's writes, which may yet fail to commit)."""
        db = self.reader()
        try:
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.url}: {exc}") from exc

    def run_group(
        self, works: Sequence[Callable[[], Any]]
    ) -> tuple[list[tuple[bool, Any]], Callable[[], None]]:
        """Run ``works`` in turn on this thread, their writes in one transaction: the
        store thread's batch of queued operations (:class:`._offload.StoreThreads`).

        The first write opens the transaction (the writers' lock, then ``BEGIN
        IMMEDIATE``, by that operation's own deadline: one that cannot get it fails as it
        would alone, and the next write tries again); each write is a savepoint in it,
        rolled back alone when its operation fails. Reads answer from committed data (a
        second connection while the transaction is open), never from the group's
        uncommitted writes. The transaction commits when all have run, so the results are
        returned only then: ``(True, value)`` or ``(False, exception)`` each, in order. If
        the commit fails (or the transaction was lost on the way: SQLite rolls one back by
        itself after some I/O errors), every operation that wrote in it (began a write:
        what it decided there may rest on another's lost write) or read it in queue order
        (:meth:`in_order`) fails with :class:`StoreUnavailable` instead; the others keep
        their answers, which only committed data decided. So every answer matches what the
        file holds.

        Also returns ``then``: call it once the answers are sent. It calls, on this
        thread, what :meth:`after_commit` was given meanwhile, with the commit's error or
        ``None`` (a cancelled caller's flow ends there, its own writes committed alone)."""
        group = _Group()
        self._group.value = group
        results: list[tuple[bool, Any]] = []
        error: StoreUnavailable | None = None
        try:
            for work in works:
                group.index = len(results)
                try:
                    results.append((True, work()))
                except BaseException as exc:  # the caller's future gets it, as alone
                    results.append((False, exc))
        finally:
            self._group.value = None
            if group.db is not None:
                error = self._end_group(group)
                if error is not None:
                    for i in group.depends:
                        results[i] = (False, error)
        laters: list[Callable[[], None]] = []
        for callback in group.after:
            try:
                later = callback(error)
            except BaseException:  # each is its own caller's; the rest go on
                continue
            if later is not None:
                laters.append(later)

        def then() -> None:
            for later in laters:
                try:
                    later()
                except BaseException:  # each ends its own flow; the rest go on
                    continue

        return results, then

    def after_commit(self, callback: AfterCommit) -> bool:
        """In a :meth:`run_group` on this thread: call ``callback`` as soon as the group's
        commit is known (before its answers are sent: it must not wait for anything),
        with ``None`` if it committed, else with the error its writers got; what it
        returns, if anything, is called once the answers are sent (``then``). True.
        Outside a group: False (nothing to wait for)."""
        group: _Group | None = getattr(self._group, "value", None)
        if group is None:
            return False
        group.after.append(callback)
        return True

    @contextlib.contextmanager
    def _in_group(self, group: _Group) -> Iterator[sqlite3.Connection]:
        """One operation's write inside the group's transaction: a savepoint."""
        db = group.db
        if db is not None and not db.in_transaction:
            group.broken = True  # lost under it (SQLite rolls back by itself on some errors)
        if group.broken:
            raise StoreUnavailable(f"{self.url}: an earlier write of this group failed")
        if db is None:
            db = self.db()
            self._open(db)
            group.db = db
        try:
            db.execute("SAVEPOINT ag_op")
        except sqlite3.Error as exc:
            group.broken = True
            raise StoreUnavailable(f"{self.url}: {exc}") from exc
        group.wrote = group.index  # what it decides in here rests on the group's
        group.depend()  # uncommitted writes: its answer waits for the commit
        try:
            yield db
        except BaseException as exc:
            try:
                db.execute("ROLLBACK TO ag_op")
                db.execute("RELEASE ag_op")
            except sqlite3.Error:
                group.broken = True  # what it wrote may be in: commit nothing
            if isinstance(exc, sqlite3.Error):
                raise StoreUnavailable(f"{self.url}: {exc}") from exc
            raise
        try:
            db.execute("RELEASE ag_op")
        except sqlite3.Error as exc:
            group.broken = True
            raise StoreUnavailable(f"{self.url}: {exc}") from exc

    def rests_on_commit(self) -> bool:
        """True on a thread running :meth:`run_group` whose current operation wrote or read
        in queue order in it: its answer stands only if the group commits."""
        group: _Group | None = getattr(self._group, "value", None)
        return group is not None and group.rests()

    def holds_uncommitted(self) -> bool:
        """True on a thread running :meth:`run_group` whose current operation has written
        (begun a write) in it: its writes are kept, and what it decided inside the
        transaction stands, only if the group's commit succeeds."""
        group: _Group | None = getattr(self._group, "value", None)
        return group is not None and group.wrote == group.index

    def _end_group(self, group: _Group) -> StoreUnavailable | None:
        """Commit the group's transaction (nothing if a savepoint broke), then let go of
        the writers' lock; the error its operations get if it did not commit."""
        db = group.db
        assert db is not None  # (called only once it opened)
        lost = "nothing written by this batch of queued operations was kept"
        try:
            if group.broken:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                return StoreUnavailable(
                    f"{self.url}: a write failed and could not be undone alone: {lost}"
                )
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            return StoreUnavailable(f"{self.url}: {exc}: {lost}")
        else:
            with contextlib.suppress(Exception):  # (committed: a hint to the thread only)
                self._checkpoints.wrote()
            return None
        finally:
            if self._writers is not None:
                self._writers.release()

    def _open(self, db: sqlite3.Connection) -> None:
        """The writers' lock, then ``BEGIN IMMEDIATE``, by this thread's deadline; on
        failure neither is held."""
        writers = self._writers
        deadline: float | None = getattr(self._deadline, "value", None)
        began = time.monotonic()
        if deadline is None:
            deadline = began + self.timeout
        if writers is not None and not writers.acquire(deadline):
            raise self._locked(time.monotonic() - began)
        try:
            # SQLite's busy handler waits for writers that do not queue on the lock file;
            # when this call has waited already (over 50 ms), only for what is left.
            left = deadline - time.monotonic()
            short = self.timeout - left > 0.05
            try:
                if short:
                    db.execute(f"PRAGMA busy_timeout = {max(int(left * 1000), 0)}")
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise self._locked(time.monotonic() - began) from exc
                raise StoreUnavailable(f"{self.url}: {exc}") from exc
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"{self.url}: {exc}") from exc
            finally:
                if short:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        except BaseException:
            if writers is not None:
                writers.release()
            raise

    def close(self) -> None:
        self._checkpoints.close()
        self._conns.close_all()
        self._side.close_all()
        if self._writers is not None:
            self._writers.close()


class _Group:
    """A :meth:`SQLiteConnections.run_group` under way."""

    __slots__ = ("after", "broken", "db", "depends", "index", "wrote")

    def __init__(self) -> None:
        self.db: sqlite3.Connection | None = None  # set when its transaction begins
        self.broken = False  # a write failed and could not be undone alone: commit nothing
        self.index = 0  # the operation running now
        self.wrote = -1  # the last operation that wrote (began a write) in it
        self.depends: list[int] = []  # every operation that did, or read in queue order
        self.after: list[AfterCommit] = []

    def depend(self) -> None:
        """The running operation's answer stands only if the group commits."""
        if not self.rests():
            self.depends.append(self.index)

    def rests(self) -> bool:
        """Whether the running operation's answer waits for the group's commit."""
        return bool(self.depends) and self.depends[-1] == self.index


def _close_db(db: sqlite3.Connection) -> None:
    db.close()
