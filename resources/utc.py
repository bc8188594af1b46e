"""Moments as text, in UTC: the contract's form for the wire, the warehouse and the control store
(RFC 3339 with milliseconds), and a shorter one for people (messages, tags, alerts)."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime) -> str:
    """The contract's timestamp form: UTC, milliseconds, `Z` (2026-12-05T10:00:00.000Z)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_text(moment: float | datetime | None, never: str = "never") -> str:
    """A moment (Unix seconds or a datetime) for people: UTC to the second (2026-12-05T10:00:00Z);
    `never` for None."""
    if moment is None:
        return never
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
