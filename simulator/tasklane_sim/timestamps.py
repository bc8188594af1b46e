"""RFC 3339 timestamps as the contract writes them, kept internally as integer milliseconds."""

from __future__ import annotations

import functools
import time
from datetime import datetime


class BadTimestamp(ValueError):
    """A client sent a timestamp that is not RFC 3339 with a time zone."""


def now_ms() -> int:
    return int(time.time() * 1000)


DAY_MS = 86_400_000


@functools.lru_cache(maxsize=8192)
def _day(day_number: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day_number * 86_400))


def format_ms(ms: int) -> str:
    """`2026-11-21T10:00:00.123Z`: UTC, millisecond precision, as every response carries."""
    day, rest = divmod(ms, DAY_MS)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{_day(day)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def format_date(ms: int) -> str:
    return _day(ms // DAY_MS)


def parse_ms(text: str) -> int:
    """Parse an RFC 3339 timestamp; a missing offset is an error, not a guess."""
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        raise BadTimestamp(f"{text!r} is not an RFC 3339 timestamp") from exc
    if parsed.tzinfo is None:
        raise BadTimestamp(f"{text!r} has no time zone offset")
    return int(parsed.timestamp() * 1000)
