"""RFC 3339 timestamps as the contract writes them, kept internally as integer milliseconds."""

from __future__ import annotations

import time
from datetime import datetime


class BadTimestamp(ValueError):
    """A client sent a timestamp that is not RFC 3339 with a time zone."""


def now_ms() -> int:
    return int(time.time() * 1000)


def format_ms(ms: int) -> str:
    """`2026-11-21T10:00:00.123Z`: UTC, millisecond precision, as every response carries."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def format_date(ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms // 1000))


def parse_ms(text: str) -> int:
    """Parse an RFC 3339 timestamp; a missing offset is an error, not a guess."""
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        raise BadTimestamp(f"{text!r} is not an RFC 3339 timestamp") from exc
    if parsed.tzinfo is None:
        raise BadTimestamp(f"{text!r} has no time zone offset")
    return int(parsed.timestamp() * 1000)
