"""Durations and counting windows for budgets and exposure caps.

Windows are **calendar (fixed) windows in UTC**, not rolling ones: a counter belongs to the
bucket its call falls in and starts from zero in the next bucket.

- ``total``: one bucket forever;
- ``hour``, ``day``: clock hours and days in UTC;
- ``week``: ISO weeks, Monday 00:00 UTC to the next Monday;
- ``month``: calendar months in UTC;
- a duration such as ``"90m"``, ``"6h"``, ``"7d"``, ``"2w"``: fixed buckets of that length
  aligned to the Unix epoch (``"7d"`` buckets start on Thursdays, the epoch's weekday).

Fixed buckets keep check-and-reserve a single atomic counter update in every store; the price
is that a burst straddling a boundary may use up to twice the limit within one window's length.

>>> window_bucket("day", 86_400 * 3 + 5)
(259200, 345600)
"""

from __future__ import annotations

import calendar
import math
import re
from datetime import UTC, datetime

__all__ = ["parse_duration", "validate_window", "window_bucket"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
CALENDAR_WINDOWS = ("total", "hour", "day", "week", "month")
_FOREVER = 2**62


def parse_duration(value: object) -> float:
    """Seconds in ``"90s"``, ``"30m"``, ``"24h"``, ``"7d"``, ``"2w"`` or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}: write e.g. 30m, 24h, 7d or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f"bad duration {value!r}: write e.g. 30m, 24h, 7d or a number of seconds")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration {value!r} must be positive and finite")
    return seconds


MAX_WINDOW = 100 * 365 * 86_400  # seconds: the longest window a pack may name


def validate_window(value: str) -> str:
    """Return ``value`` if it is a window name or a duration, else raise a helpful error."""
    if value in CALENDAR_WINDOWS:
        return value
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ValueError(
            f"bad window {value!r}: use one of {', '.join(CALENDAR_WINDOWS)} "
            "or a duration such as 6h, 7d, 2w"
        ) from None
    if seconds < 1 or seconds != int(seconds):
        # Buckets are whole seconds: "0.5s" would divide by zero, "1.5s" would silently be 1s.
        raise ValueError(
            f"bad window {value!r}: a window is a whole number of seconds, at least 1s"
        )
    if seconds > MAX_WINDOW:
        # A counter's window ends where the stores can count (a 64-bit integer of seconds).
        raise ValueError(
            f"bad window {value!r}: at most 100 years (36500d); use 'total' for a window "
            "that never ends"
        )
    return value


def window_bucket(window: str, now: float) -> tuple[int, int]:
    """The ``[start, end)`` of the bucket holding ``now`` (Unix seconds), as integers."""
    if window == "total":
        return 0, _FOREVER
    if window == "hour":
        size = 3600
    elif window == "day":
        size = 86_400
    elif window == "week":
        # The epoch was a Thursday: shift by 3 days so buckets start on Mondays.
        offset = 3 * 86_400
        start = int((now + offset) // 604_800) * 604_800 - offset
        return start, start + 604_800
    elif window == "month":
        # Whole seconds: fromtimestamp() rounds to the microsecond, which would put an
        # instant a fraction of a microsecond before midnight on the 1st into the next month.
        dt = datetime.fromtimestamp(now // 1, UTC)
        first = datetime(dt.year, dt.month, 1, tzinfo=UTC)
        days = calendar.monthrange(dt.year, dt.month)[1]
        start = int(first.timestamp())
        return start, start + days * 86_400
    else:
        size = int(parse_duration(window))
    start = int(now // size) * size
    return start, start + size
