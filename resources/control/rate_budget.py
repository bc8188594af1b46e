"""Each tenant's call budget for the vendor's current window, shared by every dripfeed process.

Why a fixed-window counter in SQL rather than a token bucket (pyrate-limiter): Tasklane counts
calls in clock-aligned fixed windows and tells us, in every response, how many remain and when
the window resets. A counter keyed on that same window can spend exactly the budget and then
wait for the reset; a bucket refills continuously, so it either spends less than the budget or
drifts out of step with the vendor's reset. A bucket also has no way to be corrected by
`X-RateLimit-Remaining`, which is how the calls of the customer's other clients are taken into
account here.

Calls are reserved in small blocks (a lease), spent one at a time by the holder, and settled
together with the holder's ledger rows: one short transaction per block instead of two per call.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from ..tenants import Tenant
from .deferrals import Deferrals
from .store import ControlStore, call_leases, chunks, rate_windows

CONTRACT_WINDOW_SECONDS = 3600  # Tasklane's documented window, until the headers teach us another
ROLL_GRACE_SECONDS = 0.5  # after a reset, wait this long so a slightly slow vendor clock has rolled too
PROBE_WAIT_SECONDS = 0.05
# A tick's block in a window of unknown length holds until its probes are done (a tick waits 15 s).
CONDITIONAL_BLOCK_SECONDS = 20
MAX_BLOCK = 50
# What a settlement may change in a tenant's window row.
WINDOW_VALUES = ("window_reset", "spent", "vendor_cap", "vendor_limit", "window_seconds", "last_reset_seen")


@dataclass(frozen=True)
class Grant:
    """Calls reserved in the tenant's window; settle them, used or not."""

    lease_id: str
    window_reset: int
    calls: int
    left_after: int | None = None  # the window's budget left once these calls are made; None if unknown


@dataclass(frozen=True)
class Wait:
    """No call may start now; try again after `seconds`."""

    seconds: float
    reason: str
    vendor: bool = False  # Tasklane asked for this wait (a Retry-After), not dripfeed's budget


@dataclass(frozen=True)
class Settlement:
    """How a grant was used: calls the vendor counted, calls it did not (304, 429), last headers."""

    grant: Grant
    counted: int
    uncounted: int
    headers: Mapping[str, str] | None


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    try:
        return int(headers[name])
    except (KeyError, TypeError, ValueError):
        return None


class RateBudget:
    def __init__(self, store: ControlStore, max_concurrent: int = 8, lease_seconds: float = 300.0) -> None:
        self.store = store
        self.max_concurrent = max_concurrent
        self.lease_seconds = lease_seconds

    def exchange(
        self,
        tenant: Tenant,
        settlement: Settlement | None,
        *,
        want: int = MAX_BLOCK,
        write_ledger: Callable[[sa.Connection], None] | None = None,
        now: float | None = None,
    ) -> Grant | Wait:
        """Settle the previous grant (if any) and reserve the next calls, in one transaction."""
        now = time.time() if now is None else now
        with self.store.transaction() as conn:
            if settlement is not None:
                self._settle(conn, [(tenant, settlement)], now)
            if write_ledger is not None:
                write_ledger(conn)
            return self._reserve(conn, [tenant], want, now)[tenant.id]

    def settle(
        self, tenant: Tenant, settlement: Settlement, write_ledger: Callable[[sa.Connection], None] | None = None
    ) -> None:
        """Give back what a holder did not use (end of a listing, end of a process)."""
        self.settle_blocks([(tenant, settlement)], write_ledger)

    def reserve_blocks(self, tenants: Sequence[Tenant], want: int, now: float | None = None) -> dict[str, Grant | Wait]:
        """`exchange` without a settlement for many tenants in one transaction (a tick's probes), by
        tenant id: a transaction per tenant costs more CPU than the probe's requests. The probes'
        calls are conditional, so a window of unknown length still gets the whole block (below)."""
        now = time.time() if now is None else now
        if not tenants:
            return {}
        with self.store.transaction() as conn:
            return self._reserve(conn, tenants, want, now, conditional=True)

    def settle_blocks(
        self,
        settlements: Sequence[tuple[Tenant, Settlement]],
        write_ledger: Callable[[sa.Connection], None] | None = None,
    ) -> None:
        """`settle` for many tenants' blocks in one transaction."""
        with self.store.transaction() as conn:
            self._settle(conn, settlements, time.time())
            if write_ledger is not None:
                write_ledger(conn)

    def _write_windows(self, conn: sa.Connection, windows: list[dict[str, object]]) -> None:
        """Each tenant's window row set to these values, as an upsert of multi-row VALUES (psycopg2
        sends an executemany UPDATE row by row)."""
        if not windows:
            return
        columns = [name for name in windows[0] if name != "tenant"]
        self.store.upsert_many(
            conn, rate_windows, windows, ["tenant"], lambda new: {c: new.excluded[c] for c in columns}
        )

    def _reserve(
        self, conn: sa.Connection, tenants: Sequence[Tenant], want: int, now: float, conditional: bool = False
    ) -> dict[str, Grant | Wait]:
        """Each tenant's next block of up to `want` calls, or its wait, by tenant id. `conditional`:
        the calls are conditional requests (a tick's probes)."""
        ids = [tenant.id for tenant in tenants]
        rows = self.store.lock_tenant_rows(conn, ids)
        blocked = Deferrals.vendor_blocks(conn, ids, now)
        conn.execute(sa.delete(call_leases).where(call_leases.c.expires_at < now))
        c = call_leases.c
        count = sa.select(c.tenant, sa.func.count()).group_by(c.tenant)
        holders = {t: n for chunk in chunks(ids) for t, n in conn.execute(count.where(c.tenant.in_(chunk)))}
        decisions: dict[str, Grant | Wait] = {}
        windows, leases = [], []
        for tenant in tenants:
            if (block := blocked.get(tenant.id)) is not None:
                decisions[tenant.id] = Wait(block.resume_at - now, block.reason, vendor=True)
                continue
            decision, window = self._decide(tenant, rows[tenant.id], holders.get(tenant.id, 0), want, now, conditional)
            decisions[tenant.id] = decision
            if isinstance(decision, Grant):
                windows.append({"tenant": tenant.id, **window})
                leases.append(self._lease(tenant.id, decision, now))
        self._write_windows(conn, windows)
        if leases:
            conn.execute(sa.insert(call_leases), leases)
        return decisions

    def _decide(
        self, tenant: Tenant, row: sa.Row, holders: int, want: int, now: float, conditional: bool = False
    ) -> tuple[Grant | Wait, dict[str, int | None]]:
        """The next block for a tenant whose window row is `row` and which has `holders` leases out:
        a grant with the window's new values, or a wait."""
        window_reset, spent, vendor_cap = row.window_reset, row.spent, row.vendor_cap
        if window_reset is None or now >= window_reset + ROLL_GRACE_SECONDS:
            spent, vendor_cap = 0, None
            # Windows are clock-aligned: once their length is known the next reset is arithmetic.
            # Until then do not guess: one probe call asks the vendor (its X-RateLimit-Reset).
            window_reset = (int(now) // row.window_seconds + 1) * row.window_seconds if row.window_seconds else None
        known_window = window_reset is not None and (
            row.window_seconds is not None or window_reset == row.last_reset_seen
        )
        caps = [
            c
            for c in (
                tenant.calls_per_window(row.vendor_limit, row.window_seconds or CONTRACT_WINDOW_SECONDS),
                vendor_cap,
            )
            if c is not None
        ]
        cap = min(caps) if caps else None
        if holders >= self.max_concurrent:
            return Wait(
                PROBE_WAIT_SECONDS, f"{holders} callers active, the vendor allows {self.max_concurrent} at once"
            ), {}
        if not known_window or cap is None:
            if holders > 0:
                return Wait(PROBE_WAIT_SECONDS, "waiting for the vendor's first answer in this window"), {}
            if conditional:
                # A 304 costs nothing and carries no headers, so a quiet tenant never learns its window:
                # one call per block would cost its probe a transaction per request. At most `want`
                # counted calls are risked before an answer's headers tell the window.
                calls, window_reset = want, window_reset or int(now) + CONDITIONAL_BLOCK_SECONDS
            else:
                calls = 1
                window_reset = window_reset or int(now) + 1  # provisional; the probe's answer replaces it
        elif spent >= cap:
            return Wait(max(window_reset - now, 0) + ROLL_GRACE_SECONDS, f"window budget of {cap} calls spent"), {}
        else:
            calls = max(1, min(want, (cap - spent) // 2))  # leave room for other holders
        grant = Grant(str(uuid.uuid4()), window_reset, calls, None if cap is None else max(cap - spent - calls, 0))
        return grant, {"window_reset": window_reset, "spent": spent + calls, "vendor_cap": vendor_cap}

    def _lease(self, tenant: str, grant: Grant, now: float) -> dict[str, object]:
        return {
            "lease_id": grant.lease_id,
            "tenant": tenant,
            "calls": grant.calls,
            "expires_at": now + self.lease_seconds,
        }

    def _settle(self, conn: sa.Connection, settlements: Sequence[tuple[Tenant, Settlement]], now: float) -> None:
        """Give back each settlement's unused calls and learn from its headers (its lease ends)."""
        if not settlements:
            return
        ids = [tenant.id for tenant, _ in settlements]
        rows = self.store.lock_tenant_rows(conn, ids)
        for chunk in chunks([settlement.grant.lease_id for _, settlement in settlements]):
            conn.execute(sa.delete(call_leases).where(call_leases.c.lease_id.in_(chunk)))
        reserved = self._reserved(conn, ids)
        windows = []
        for tenant, settlement in settlements:
            row = rows[tenant.id]
            if values := self._settled(tenant, row, settlement, reserved.get(tenant.id, 0), now):
                windows.append({"tenant": tenant.id} | {k: values.get(k, row._mapping[k]) for k in WINDOW_VALUES})
        self._write_windows(conn, windows)

    def _settled(
        self, tenant: Tenant, row: sa.Row, settlement: Settlement, reserved_by_others: int, now: float
    ) -> dict[str, int | None]:
        """The window's values that change once `settlement` is settled: unused calls given back, and
        what the vendor's last headers teach."""
        values: dict[str, int | None] = {}
        spent = row.spent
        unused = settlement.grant.calls - settlement.counted
        if unused and row.window_reset == settlement.grant.window_reset:
            spent = max(spent - unused, 0)
            values["spent"] = spent
        headers = settlement.headers or {}
        limit = _header_int(headers, "X-RateLimit-Limit")
        remaining = _header_int(headers, "X-RateLimit-Remaining")
        reset = _header_int(headers, "X-RateLimit-Reset")
        if limit is not None and remaining is not None and reset is not None:
            values.update(self._reconcile(row, spent, limit, remaining, reset, reserved_by_others, now))
        return values

    @staticmethod
    def _reserved(conn: sa.Connection, tenants: Iterable[str]) -> dict[str, int]:
        """Calls reserved by the tenants' leases, by tenant."""
        c = call_leases.c
        query = sa.select(c.tenant, sa.func.sum(c.calls)).group_by(c.tenant)
        return {
            tenant: int(calls)
            for chunk in chunks(tenants)
            for tenant, calls in conn.execute(query.where(c.tenant.in_(chunk)))
        }

    def _reconcile(
        self,
        row: sa.Row,
        spent: int,
        limit: int,
        remaining: int,
        reset: int,
        reserved_by_others: int,
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
        # Calls other holders reserved are in `spent`; those not made yet are not in `remaining`.
        estimate = spent + remaining - reserved_by_others
        values["vendor_cap"] = estimate if vendor_cap is None else min(vendor_cap, estimate)
        return values

    def calls_left(
        self, tenant: Tenant, now: float, window: Mapping[str, int | None] | None = None
    ) -> tuple[int | None, int | None]:
        """(calls dripfeed may still make in the tenant's current window, when that window resets),
        from the ledger's count and the vendor's last headers; (None, None) when no window is open.
        `window`: the tenant's row as `windows()` read it, for a caller serving many tenants."""
        window = self.window(tenant.id) if window is None else window
        if not window or not window["window_reset"] or window["window_reset"] <= now:
            return None, None
        budget = tenant.calls_per_window(window["vendor_limit"], window["window_seconds"] or CONTRACT_WINDOW_SECONDS)
        caps = [cap for cap in (budget, window["vendor_cap"]) if cap is not None]
        return (max(0, min(caps) - window["spent"]) if caps else None), window["window_reset"]

    def window(self, tenant_id: str) -> dict[str, int | None]:
        """The tenant's current window as the control store sees it (for schedules and tests)."""
        return self.windows([tenant_id]).get(tenant_id, {})

    def all_windows(self) -> dict[str, dict[str, int | None]]:
        """Every tenant's window, in one query (the metrics endpoint's, for all tenants at once)."""
        with self.store.engine.connect() as conn:
            return {row.tenant: dict(row._mapping) for row in conn.execute(sa.select(rate_windows))}

    def windows(self, tenant_ids: Iterable[str]) -> dict[str, dict[str, int | None]]:
        """The current windows of many tenants, by tenant id (one query per 500 tenants)."""
        found = {}
        with self.store.engine.connect() as conn:
            for chunk in chunks(tenant_ids):
                for row in conn.execute(sa.select(rate_windows).where(rate_windows.c.tenant.in_(chunk))):
                    found[row.tenant] = dict(row._mapping)
        return found
