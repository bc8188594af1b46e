"""The contract's per-workspace fixed window, abuse lockout and concurrency cap."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from email.utils import formatdate

from .config import Knobs

_WINDOWS_KEPT = 200


@dataclass(frozen=True)
class Admission:
    """The limiter's answer to one request: admitted (and reserved), or a 429 to send."""

    allowed: bool
    reason: str  # "ok" | "window" | "concurrency" | "lockout"
    retry_after: int = 0
    limit: int = 0
    remaining: int = 0
    reset: int = 0

    def headers(self, knobs: Knobs, now: float) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            if knobs.retry_after_format == "http-date":
                headers["Retry-After"] = formatdate(math.ceil(now) + self.retry_after, usegmt=True)
            else:
                headers["Retry-After"] = str(self.retry_after)
        return headers


@dataclass
class FixedWindowLimiter:
    """Counts answered calls per clock-aligned window; 304s are refunded, 429s never counted."""

    window_start: int = 0
    used: int = 0
    rejections: int = 0
    locked_until: float = 0.0
    lockouts: int = 0
    counted_by_window: OrderedDict[int, int] = field(default_factory=OrderedDict)

    def _roll(self, now: float, knobs: Knobs) -> None:
        start = int(now // knobs.window_seconds) * knobs.window_seconds
        if start != self.window_start:
            self.window_start, self.used, self.rejections = start, 0, 0

    def _status(self, knobs: Knobs, allowed: bool, reason: str, retry_after: int = 0) -> Admission:
        return Admission(
            allowed=allowed,
            reason=reason,
            retry_after=retry_after,
            limit=knobs.rate_limit,
            remaining=max(knobs.rate_limit - self.used, 0),
            reset=self.window_start + knobs.window_seconds,
        )

    def admit(self, now: float, in_flight: int, knobs: Knobs) -> Admission:
        """Reserve one call in the current window, or say why not (a 429)."""
        self._roll(now, knobs)
        if now < self.locked_until:
            return self._status(knobs, False, "lockout", knobs.lockout_seconds)
        if in_flight > knobs.max_concurrent:
            return self._reject(now, knobs, "concurrency", 1)
        if self.used >= knobs.rate_limit:
            reset = self.window_start + knobs.window_seconds
            return self._reject(now, knobs, "window", max(1, math.ceil(reset - now)))
        self.spend(now, knobs, 1)
        return self._status(knobs, True, "ok")

    def _reject(self, now: float, knobs: Knobs, reason: str, retry_after: int) -> Admission:
        self.rejections += 1
        if self.rejections > knobs.lockout_threshold:
            self.locked_until = now + knobs.lockout_seconds
            self.lockouts += 1
            return self._status(knobs, False, "lockout", knobs.lockout_seconds)
        return self._status(knobs, False, reason, retry_after)

    def spend(self, now: float, knobs: Knobs, calls: int) -> None:
        """Count calls in the current window (also used for the customer's other clients)."""
        self._roll(now, knobs)
        self.used += calls
        self.counted_by_window[self.window_start] = self.used
        while len(self.counted_by_window) > _WINDOWS_KEPT:
            self.counted_by_window.popitem(last=False)

    def refund(self, now: float, knobs: Knobs) -> None:
        """A 304 does not count against the limit."""
        self._roll(now, knobs)
        if self.used > 0:
            self.used -= 1
            self.counted_by_window[self.window_start] = self.used

    def current(self, now: float, knobs: Knobs) -> Admission:
        self._roll(now, knobs)
        return self._status(knobs, True, "ok")
