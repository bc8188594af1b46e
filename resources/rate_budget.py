"""Each tenant's call budget for the vendor's current window, shared by every dripfeed process.

Why a fixed-window counter in SQL rather than a token bucket (pyrate-limiter): Tasklane counts
calls in clock-aligned fixed windows and tells us, in every response, how many remain and when
the window resets. A counter keyed on that same window can spend exactly the budget and then
wait for the reset; a bucket refills continuously, so it either spends less than the budget or
drifts out of step with the vendor's reset. A bucket also has no way to be corrected by
`X-RateLimit-Remaining`, which is how the calls of the customer's other clients are taken into
account here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from dripfeed.tenants import Tenant

from .control_store import ControlStore, call_leases, rate_windows

CONTRACT_WINDOW_SECONDS = 3600  # Tasklane's documented window, until the headers teach us another
ROLL_GRACE_SECONDS = 0.5  # after a reset, wait this long so a slightly slow vendor clock has rolled too
PROBE_WAIT_SECONDS = 0.05


@dataclass(frozen=True)
class Grant:
    """Permission for one call; settle it with the response (or the lack of one)."""

    lease_id: str
    window_reset: int
    remaining: int | None


@dataclass(frozen=True)
class Wait:
    """No call may start now; try again after `seconds`."""

    seconds: float
    reason: str


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    try:
        return int(headers[name])
    except (KeyError, TypeError, ValueError):
        return None


class RateBudget:
    def __init__(self, store: ControlStore, max_concurrent: int = 8, lease_seconds: float = 120.0) -> None:
        self.store = store
        self.max_concurrent = max_concurrent
        self.lease_seconds = lease_seconds

    def acquire_call(self, tenant: Tenant, now: float | None = None) -> Grant | Wait:
        """Reserve one call in the tenant's current window, or say how long to wait."""
        now = time.time() if now is None else now
        with self.store.transaction() as conn:
            row = self.store.lock_tenant_row(conn, tenant.id)
            conn.execute(sa.delete(call_leases).where(call_leases.c.expires_at < now))
            in_flight = conn.execute(
                sa.select(sa.func.count()).select_from(call_leases).where(call_leases.c.tenant == tenant.id)
            ).scalar_one()
            window_seconds = row.window_seconds or CONTRACT_WINDOW_SECONDS
            window_reset, spent, vendor_cap = row.window_reset, row.spent, row.vendor_cap
            if window_reset is None or now >= window_reset + ROLL_GRACE_SECONDS:
                window_reset = (int(now) // window_seconds + 1) * window_seconds
                spent, vendor_cap = 0, None
            caps = [c for c in (tenant.calls_per_window(row.vendor_limit, window_seconds), vendor_cap) if c is not None]
            cap = min(caps) if caps else None
            if in_flight >= self.max_concurrent:
                return Wait(PROBE_WAIT_SECONDS, f"{in_flight} calls in flight, the vendor allows {self.max_concurrent}")
            if cap is None and in_flight > 0:
                return Wait(PROBE_WAIT_SECONDS, "waiting for the first response to learn the vendor's limit")
            if cap is not None and spent >= cap:
                return Wait(max(window_reset - now, 0) + ROLL_GRACE_SECONDS, f"window budget of {cap} calls spent")
            lease_id = str(uuid.uuid4())
            conn.execute(
                sa.update(rate_windows)
                .where(rate_windows.c.tenant == tenant.id)
                .values(window_reset=window_reset, spent=spent + 1, vendor_cap=vendor_cap)
            )
            conn.execute(
                sa.insert(call_leases).values(lease_id=lease_id, tenant=tenant.id, expires_at=now + self.lease_seconds)
            )
        return Grant(lease_id, window_reset, None if cap is None else cap - spent - 1)

    def settle_call(
        self,
        conn: sa.Connection,
        tenant: Tenant,
        grant: Grant,
        *,
        counted: bool,
        headers: Mapping[str, str] | None,
        now: float | None = None,
    ) -> None:
        """End the call's lease; refund it if the vendor did not count it; learn from its headers.

        Runs in the caller's transaction, so the ledger row for the same call commits with it."""
        now = time.time() if now is None else now
        row = self.store.lock_tenant_row(conn, tenant.id)
        conn.execute(sa.delete(call_leases).where(call_leases.c.lease_id == grant.lease_id))
        values: dict[str, int | None] = {}
        spent = row.spent
        if not counted and row.window_reset == grant.window_reset and spent > 0:
            spent -= 1
            values["spent"] = spent
        limit = _header_int(headers or {}, "X-RateLimit-Limit")
        remaining = _header_int(headers or {}, "X-RateLimit-Remaining")
        reset = _header_int(headers or {}, "X-RateLimit-Reset")
        if limit is not None and remaining is not None and reset is not None:
            values.update(self._reconcile(conn, tenant, row, spent, limit, remaining, reset, now))
        if values:
            conn.execute(sa.update(rate_windows).where(rate_windows.c.tenant == tenant.id).values(**values))

    def _reconcile(
        self,
        conn: sa.Connection,
        tenant: Tenant,
        row: sa.Row,
        spent: int,
        limit: int,
        remaining: int,
        reset: int,
        now: float,
    ) -> dict[str, int | None]:
        """The vendor's headers correct our view: its window, and what the customer's other clients spent."""
        values: dict[str, int | None] = {"vendor_limit": limit}
        if row.last_reset_seen and reset > row.last_reset_seen:
            gap = reset - row.last_reset_seen
            values["window_seconds"] = min(row.window_seconds or gap, gap)
        if reset >= (row.last_reset_seen or 0):
            values["last_reset_seen"] = reset
        if reset <= now:
            return values  # a late answer from a window that is over
        window_reset, vendor_cap = row.window_reset, row.vendor_cap
        if window_reset != reset:
            window_reset, vendor_cap = reset, None  # our guess of the window was off: adopt the vendor's
            values["window_reset"] = reset
        others_in_flight = conn.execute(
            sa.select(sa.func.count()).select_from(call_leases).where(call_leases.c.tenant == tenant.id)
        ).scalar_one()
        # Calls still in flight are in `spent` but not yet in the vendor's `remaining`.
        estimate = spent + remaining - others_in_flight
        values["vendor_cap"] = estimate if vendor_cap is None else min(vendor_cap, estimate)
        return values

    def window(self, tenant_id: str) -> dict[str, int | None]:
        """The tenant's current window as the control store sees it (for schedules and tests)."""
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(rate_windows).where(rate_windows.c.tenant == tenant_id)).one_or_none()
        return dict(row._mapping) if row else {}
