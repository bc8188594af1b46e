"""Opaque, signed keyset cursors that expire and are bound to the query that issued them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass


class InvalidCursor(ValueError):
    """Not a cursor this server issued, or issued for other query parameters (a 400)."""


class ExpiredCursor(ValueError):
    """Older than the cursor TTL, or invalidated by the admin API (a 410)."""


@dataclass(frozen=True)
class CursorPosition:
    updated_ms: int
    record_id: str


def query_fingerprint(resource: str, limit: int, since: str | None, include_deleted: bool) -> str:
    raw = f"{resource}|{limit}|{since or ''}|{int(include_deleted)}"
    return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()


class CursorCodec:
    """Issues and reads cursors for one workspace with that workspace's secret."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.epoch = 0

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self.secret, payload, hashlib.sha256).hexdigest()[:24]

    def issue(self, fingerprint: str, position: CursorPosition, issued_at: float) -> str:
        payload = json.dumps(
            [fingerprint, position.updated_ms, position.record_id, self.epoch, round(issued_at, 3)],
            separators=(",", ":"),
        ).encode()
        return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + self._sign(payload)

    def read(self, cursor: str, fingerprint: str, now: float, ttl_seconds: float) -> CursorPosition:
        try:
            encoded, signature = cursor.rsplit(".", 1)
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (ValueError, TypeError) as exc:
            raise InvalidCursor("cursor is malformed") from exc
        if not hmac.compare_digest(self._sign(payload).encode(), signature.encode("utf-8", "replace")):
            raise InvalidCursor("cursor was not issued by this workspace")
        try:
            issued_for, updated_ms, record_id, epoch, issued_at = json.loads(payload)
        except (ValueError, TypeError) as exc:
            raise InvalidCursor("cursor is malformed") from exc
        if issued_for != fingerprint:
            raise InvalidCursor("cursor was issued for other query parameters; send the same ones")
        if epoch != self.epoch or now - issued_at > ttl_seconds:
            raise ExpiredCursor("cursor expired; start again from your last updated_since")
        return CursorPosition(updated_ms, record_id)

    def expire_all(self) -> None:
        self.epoch += 1
