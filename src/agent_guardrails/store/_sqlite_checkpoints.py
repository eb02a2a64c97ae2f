"""The SQLite store's WAL checkpoints, off the callers' path.

In WAL mode SQLite appends each commit to the write-ahead log and copies the log back into
the database file now and then (a *checkpoint*). By default the commit that leaves the log
over 1,000 pages runs the checkpoint itself, before it returns: that caller waits for the
copy and two ``fsync`` calls (up to ~17 ms on the development machine), which averaged
about 150-200 µs per guarded call (a call writes ~11 pages; ``benchmarks/README.md``,
"SQLite's checkpoints off the call path").

So the store's connections raise that threshold to :data:`BACKSTOP` pages, and a daemon
thread of the store (:class:`Checkpoints`) checkpoints instead, at most every
:data:`INTERVAL` seconds after a commit, in ``PASSIVE`` mode: it neither waits for nor
blocks readers and writers, and copies what it can. The log is started over from its
beginning by the first commit after a checkpoint that copied everything; under a steady
stream of commits that may not happen, and the commit that takes the log past
:data:`BACKSTOP` pages (about 40 MB) checkpoints inline, as SQLite's default does at 1,000,
so the log stays bounded even if the thread falls behind. Nothing about durability changes:
a checkpoint only moves committed pages.

The thread starts with the first commit, ends after :data:`IDLE` seconds without one (and
then empties the log file, unless someone is using it), with
the store's ``close()``, or when the store is garbage-collected unclosed (a store made per
request and dropped keeps no thread). A child process made by ``fork`` starts its own.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from urllib.parse import quote

__all__ = ["BACKSTOP", "IDLE", "INTERVAL", "Checkpoints"]

BACKSTOP = 10_000  # pages: the log size at which a commit checkpoints inline after all
INTERVAL = 0.05  # seconds between checkpoints at most: the commits of a burst share one
IDLE = 10.0  # seconds without a commit after which the thread ends

_log = logging.getLogger(__name__)


class Checkpoints:
    """One store's background WAL checkpointer. :meth:`wrote` after every commit."""

    def __init__(self, path: str, *, interval: float = INTERVAL, idle: float = IDLE) -> None:
        self.path = path
        self.interval = interval
        self.idle = idle
        self.begun = self.runs = 0  # checkpoints begun and ended (tests, diagnostics)
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._due = threading.Event()  # a commit since the last checkpoint began
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def wrote(self) -> None:
        """A commit was made: checkpoint it soon. Cheap when the thread is running."""
        if self._pid != os.getpid():  # a forked child: the parent's thread is not here
            self._reset()
        if not self._due.is_set():
            self._due.set()
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            thread = threading.Thread(
                target=self._run, name=f"agent-guardrails-checkpoints:{self.path}", daemon=True
            )
            self._thread = thread
        thread.start()

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            while True:
                if not self._due.wait(self.idle):
                    with self._lock:  # idle: end, unless a commit came in meanwhile
                        if not self._due.is_set():
                            self._thread = None
                            break
                if self._stop.wait(self.interval):  # gather a burst's commits
                    return
                self._due.clear()
                self.begun += 1
                db = self._checkpoint(db)
                self.runs += 1
            self._truncate(db)  # idle: give the log file's space back
        finally:
            if db is not None:
                db.close()
        if self._due.is_set():  # a commit that saw this thread still running as it ended
            self._start()

    def _checkpoint(self, db: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """One PASSIVE checkpoint; the connection to use next time (``None``: reopen)."""
        try:
            if db is None:  # mode=rw: a store file that was removed is not made anew here
                db = sqlite3.connect(
                    f"file:{quote(self.path)}?mode=rw",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                )
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return db
        except sqlite3.Error as exc:  # the next commit's checkpoint, or the backstop, copies it
            _log.debug("WAL checkpoint of %s failed: %s", self.path, exc)
            if db is not None:
                db.close()
            return None

    @staticmethod
    def _truncate(db: sqlite3.Connection | None) -> None:
        """Empty the log file if no one is reading or writing (it is all copied by now);
        if someone is, leave it: a busy store has no need of it."""
        if db is None:
            return
        try:
            db.execute("PRAGMA busy_timeout = 0")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            _log.debug("WAL truncation failed: %s", exc)

    def settled(self) -> bool:
        """No commit waits for a checkpoint and none is under way: every commit made before
        this call has been checkpointed (as far as readers let it)."""
        return not self._due.is_set() and self.runs == self.begun

    def stop(self) -> threading.Thread | None:
        """Tell the thread to end (after a checkpoint under way) and start no other; the
        thread, if one runs. Also called when the store is garbage-collected unclosed."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._stop.set()
        self._due.set()
        return thread

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait for it to end."""
        thread = self.stop()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
