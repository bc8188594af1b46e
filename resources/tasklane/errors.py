"""What went wrong with a tenant's Tasklane calls, for which tenant, and what to do about it.

These are the client's own errors: it knows no orchestrator. The asset and the sensors decide what
each means to Dagster (a failed step that alerts, a deferred run, a job polled later).
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Literal

from ..utc import utc_text

ErrorClass = Literal["auth", "config", "schema_drift", "vendor_outage", "bug"]  # a throttle is no failure: it defers


class TasklaneError(Exception):
    """Everything the Tasklane client raises: `except TasklaneError` catches each kind below."""


class TasklaneFailure(TasklaneError):
    """A call that failed for good: names the tenant, an error class for alerts, and the fix. Never a
    token. `retryable`: whether running the step again later can help (an outage, not a bad token)."""

    def __init__(
        self,
        tenant: str,
        error_class: ErrorClass,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
    ) -> None:
        self.tenant, self.error_class, self.status, self.retryable = tenant, error_class, status, retryable
        self.description = f"tenant {tenant!r}: {message}"
        super().__init__(self.description)

    @property
    def metadata(self) -> dict[str, str | int]:
        """What an alert reads: the tenant, the error class, the HTTP status."""
        status = self.status if self.status is not None else "none"
        return {"tenant": self.tenant, "error_class": self.error_class, "http_status": status}


class TenantThrottled(TasklaneError):
    """The tenant may not call Tasklane before `resume_at` (Unix seconds), which is too far away to
    wait for in place. Its run defers itself (pipeline_assets/deferral.py); a sensor polls later."""

    def __init__(self, tenant: str, resume_at: float, reason: str, *, vendor: bool) -> None:
        self.tenant, self.resume_at, self.reason, self.vendor = tenant, resume_at, reason, vendor
        super().__init__(f"tenant {tenant!r}: {reason}; it may call Tasklane again at {utc_text(resume_at)}")


class TransientError(TasklaneError):
    """Retrying may help: 5xx, timeouts, dropped connections, cut or undecodable bodies, 429."""

    def __init__(self, what: str, retry_after: float | None = None) -> None:
        super().__init__(what)
        self.retry_after = retry_after


class CursorExpired(TasklaneError):
    """410 cursor_expired: the listing starts again from its updated_since."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as delta-seconds or as an HTTP-date (RFC 9110), in seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(when - (time.time() if now is None else now), 0.0)


def failure_for_status(
    tenant: str, token_source: str, endpoint: str, status: int, vendor_message: str
) -> TasklaneFailure:
    """The answers a retry cannot fix (400, 401, 403, 404, 409, and 410 but for an expired cursor),
    each with what to do about it."""
    said = f" (Tasklane said: {vendor_message})" if vendor_message else ""
    if status == 401:
        return TasklaneFailure(
            tenant,
            "auth",
            f"Tasklane rejected the token from the {token_source}: it is revoked, expired or wrong{said}. "
            f"Issue a new API token for the workspace and put it in the {token_source}.",
            status=status,
        )
    if status == 403:
        return TasklaneFailure(
            tenant,
            "auth",
            f"the token from the {token_source} belongs to another workspace{said}. "
            f"Put workspace {tenant!r}'s own token there.",
            status=status,
        )
    if status == 404:
        return TasklaneFailure(
            tenant,
            "config",
            f"Tasklane has no such workspace or object for {endpoint}{said}. Check the tenant id in tenants.yaml.",
            status=status,
        )
    if status == 409:
        return TasklaneFailure(
            tenant,
            "bug",
            f"an idempotency key was reused with a different request on {endpoint}{said}. "
            "This is a dripfeed bug; report it.",
            status=status,
        )
    if status == 410:
        return TasklaneFailure(
            tenant,
            "vendor_outage",
            f"the export's result expired before it was loaded{said}. The export status sensor submits it again; "
            "nothing to do unless that alerts too.",
            status=status,
        )
    return TasklaneFailure(
        tenant,
        "bug",
        f"Tasklane refused {endpoint} with {status}{said}. dripfeed sent a request the API does not accept; report it.",
        status=status,
    )
