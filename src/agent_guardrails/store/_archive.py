"""Retention: the audit log's archived prefix as JSON Lines files, and their verification.

An archive file holds one audit record per line, in the form ``agent-guardrails audit
export`` writes (:meth:`~.base.AuditRecord.as_dict`), in seq order, then one trailer line::

    {"archive": {"first_seq": 1, "last_seq": 1200, "last_hash": "9f...", "records": 1200}}

carrying the hash the archive ends on. A store's :meth:`~.base.Retention.archive_audit`
(every backend runs :func:`archive_prefix` with its own reads and its own commit):

1. reads the records after where its kept chain starts (``audit_archived_through``), in
   batches, up to the first record *not* older than ``before``: the archived part is always
   a prefix of the chain, so what is kept stays one contiguous chain;
2. writes them and the trailer to the file and syncs it (to a path: a temporary file next
   to it, synced, renamed over the path, the directory synced);
3. then, in one transaction, deletes those records and records ``audit_archived_through =
   (last_seq, last_hash)``, from which ``verify_audit`` checks what is kept.

A crash between 2 and 3 leaves both the file and the rows; running it again writes the
same records again (a file holding the same first record is overwritten; another existing
file is refused, so an earlier archive is never clobbered) and completes. Step 3 checks
the rows it deletes end with the hash the file ends on.

:func:`verify_audit_archive` checks archives in order (the first from the genesis hash,
each next one from where the one before ends) and that the store's kept chain continues
from the last one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from agent_guardrails.store.base import (
    GENESIS,
    ArchiveResult,
    AuditRecord,
    Store,
    VerifyResult,
    verify_chain,
)

__all__ = [
    "BATCH",
    "archive_prefix",
    "check_cutoff",
    "read_archive",
    "verify_audit_archive",
]

#: Records read per batch while archiving (each batch is one read transaction).
BATCH = 5000

Target = IO[str] | str | os.PathLike[str]


def check_cutoff(before: float, what: str = "before") -> float:
    """``before`` as a float; ``ValueError`` (saying what to give) unless it is finite."""
    try:
        value = float(before)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(
            f"{what} must be a finite time in epoch seconds (e.g. 1790812800.0 for "
            f"2026-10-01 UTC), got {before!r}"
        )
    return value


def _line(record: AuditRecord) -> str:
    return json.dumps(record.as_dict(), default=str) + "\n"


def _trailer(first_seq: int, last_seq: int, last_hash: str, records: int) -> str:
    body = {"first_seq": first_seq, "last_seq": last_seq, "last_hash": last_hash}
    return json.dumps({"archive": {**body, "records": records}}) + "\n"


def _first_seq_of(path: Path) -> int | None:
    """The first seq an existing archive file covers (None: not an archive)."""
    try:
        with path.open(encoding="utf-8") as fh:
            first = json.loads(fh.readline())
    except (OSError, ValueError):
        return None
    if not isinstance(first, dict):
        return None
    if "archive" in first and isinstance(first["archive"], dict):
        first = {"seq": first["archive"].get("first_seq")}
    seq = first.get("seq")
    return seq if isinstance(seq, int) else None


def _sync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - not possible on every platform
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write(out: Target, lines: Iterator[str], first_seq: int) -> None:
    """Write ``lines`` to ``out`` and sync them (see the module docstring)."""
    if not isinstance(out, str | os.PathLike):
        for text in lines:
            out.write(text)
        out.flush()
        # Not a real file (StringIO): nothing to sync.
        with contextlib.suppress(AttributeError, OSError, ValueError):
            os.fsync(out.fileno())
        return
    path = Path(out)
    if path.exists():
        found = _first_seq_of(path)
        if found != first_seq:
            held = "is not an audit archive" if found is None else f"starts at record {found}"
            raise ValueError(
                f"{path} exists and {held}, not at record {first_seq}: give a new file name "
                "(an earlier archive is never overwritten)"
            )
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for text in lines:
                fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_dir(path.parent.resolve())


def archive_prefix(
    before: float,
    out: Target,
    start: tuple[int, str],
    batch: Callable[[int], Sequence[AuditRecord]],
    commit: Callable[[int, str], int],
) -> ArchiveResult:
    """The archive algorithm of every store. ``start``: where the kept chain starts;
    ``batch(after)``: the next records after seq ``after``, in seq order (empty at the
    end); ``commit(last_seq, last_hash)``: delete the records up to ``last_seq`` and move
    the start there in one transaction, returning how many rows it deleted."""
    cutoff = check_cutoff(before)
    start_seq, start_hash = start
    at = _Progress(start_seq, start_hash)

    def lines() -> Iterator[str]:
        after = start_seq
        while True:
            records = batch(after)
            for rec in records:
                if rec.ts >= cutoff:
                    return
                if rec.seq != at.seq + 1 or rec.prev_hash != at.hash:
                    raise ValueError(
                        f"the audit log is broken at record {at.seq + 1}; run "
                        "'agent-guardrails audit verify' before archiving"
                    )
                at.seq, at.hash, at.count = rec.seq, rec.hash, at.count + 1
                yield _line(rec)
            if not records:
                return
            after = records[-1].seq

    def with_trailer() -> Iterator[str]:
        yield from lines()
        yield _trailer(start_seq + 1, at.seq, at.hash, at.count)

    _write(out, with_trailer(), start_seq + 1)
    deleted = commit(at.seq, at.hash) if at.count else 0
    return ArchiveResult(at.count, start_seq + 1, at.seq, at.hash, deleted)


class _Progress:
    """Where the archive being written has got to."""

    __slots__ = ("count", "hash", "seq")

    def __init__(self, seq: int, digest: str) -> None:
        self.seq = seq
        self.hash = digest
        self.count = 0


# ---------------------------------------------------------------------------- verification


class _Bad(Exception):
    def __init__(self, result: VerifyResult) -> None:
        super().__init__(result.problem)
        self.result = result


def read_archive(path: str | os.PathLike[str]) -> tuple[list[AuditRecord], dict[str, Any]]:
    """The records and the trailer of one archive file. ``ValueError`` names a line that
    is not a record, or a missing trailer (a truncated file)."""
    records: list[AuditRecord] = []
    trailer: dict[str, Any] | None = None
    with open(path, encoding="utf-8") as fh:
        for number, text in enumerate(fh, 1):
            if not text.strip():
                continue
            if trailer is not None:
                raise ValueError(f"{path}, line {number}: a line after the archive's trailer")
            try:
                item = json.loads(text)
                if "archive" in item:
                    trailer = dict(item["archive"])
                    continue
                records.append(
                    AuditRecord(
                        int(item["seq"]),
                        float(item["ts"]),
                        str(item["kind"]),
                        item["call_key"],
                        dict(item["data"]),
                        str(item["prev_hash"]),
                        str(item["hash"]),
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}, line {number}: not an audit record ({exc})") from None
    if trailer is None:
        raise ValueError(f"{path}: no trailer line (truncated?)")
    return records, trailer


def _check_archive(path: str, prev: tuple[int, str], checked: int) -> tuple[int, str, int]:
    """Check one archive from ``prev`` (seq, hash); returns where it ends and the count."""
    try:
        records, trailer = read_archive(path)
    except (OSError, ValueError) as exc:
        raise _Bad(VerifyResult(False, checked, prev[0] + 1, str(exc))) from None
    first = records[0].seq if records else int(trailer.get("first_seq", prev[0] + 1))
    if first != prev[0] + 1:
        if prev[0] == 0:
            problem = (
                f"{path} starts at record {first}: give the archives before it first, in "
                "order (--from-archive OLDEST ... NEWEST)"
            )
        else:
            problem = f"{path} starts at record {first}, the archive before it ends at {prev[0]}"
        raise _Bad(VerifyResult(False, checked, prev[0] + 1, problem))
    result = verify_chain(records, start_seq=prev[0], start_hash=prev[1])
    if not result.ok:
        problem = f"{path}: {result.problem}"
        raise _Bad(VerifyResult(False, checked + result.checked, result.first_bad_seq, problem))
    last_seq = records[-1].seq if records else prev[0]
    last_hash = records[-1].hash if records else prev[1]
    want = {"first_seq": first, "last_seq": last_seq, "last_hash": last_hash}
    want["records"] = len(records)
    if any(trailer.get(k) != v for k, v in want.items()):
        problem = f"{path}: its trailer does not match its records (edited or truncated)"
        raise _Bad(VerifyResult(False, checked + len(records), last_seq, problem))
    return last_seq, last_hash, checked + len(records)


def verify_audit_archive(
    archives: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], store: Store
) -> VerifyResult:
    """Check ``archives`` (one file or several, oldest first) and ``store`` as one chain:
    each archive's own chain and trailer, each from where the one before ends (the first
    from the genesis hash), then the store's kept chain from where the last one ends.
    ``checked`` counts the records of the archives and the store; ``first_bad_seq`` names
    the first record that does not fit."""
    paths = [archives] if isinstance(archives, str | os.PathLike) else list(archives)
    prev, checked = (0, GENESIS), 0
    try:
        for path in paths:
            seq, digest, checked = _check_archive(os.fspath(path), prev, checked)
            prev = (seq, digest)
    except _Bad as bad:
        return bad.result
    kept = store.verify_audit()
    if not kept.ok:
        return VerifyResult(False, checked + kept.checked, kept.first_bad_seq, kept.problem)
    through_seq, through_hash = store.audit_archived_through()
    if through_seq > prev[0]:
        return VerifyResult(
            False,
            checked,
            prev[0] + 1,
            f"the store's kept log starts after record {through_seq} but the archives end at "
            f"record {prev[0]}: give every archive, oldest first",
        )
    if through_seq == prev[0]:
        ok = through_hash == prev[1]
    else:  # archived but not yet deleted (a crash in between): the store still holds it
        held = store.audit_records(after=prev[0] - 1, limit=1)
        ok = bool(held) and held[0].seq == prev[0] and held[0].hash == prev[1]
    if not ok:
        return VerifyResult(
            False,
            checked,
            prev[0] + 1,
            f"the store's kept log does not continue from the archive's last record "
            f"{prev[0]} (its hash differs)",
        )
    overlap = max(0, prev[0] - through_seq)
    return VerifyResult(True, checked + kept.checked - overlap)
