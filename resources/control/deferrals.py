"""Tenants that must wait, and the sync runs that ended early because of it.

A sync that would have to wait longer than a short bound (a long `Retry-After`, a lockout, its
budget spent far from the window's reset) commits its checkpoint, records a deferral here and
ends: it holds no run slot, process or core while it waits. The `deferred_syncs` sensor requests
the resumption run once `resume_at` has passed; the tier schedules skip the tenant until then.
A wait the vendor asked for (`vendor_block`) is honoured by every caller of the tenant (the rate
budget refuses calls until `resume_at`); a wait for dripfeed's own budget is decided by the
budget itself, so a raised budget takes effect at once.

One row per tenant: a second deferral of the same tenant keeps the later resume time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

import sqlalchemy as sa

from .store import ControlStore, chunks, deferrals


@dataclass(frozen=True)
class Deferral:
    tenant: str
    resume_at: float
    reason: str
    deferred_at: float
    run_id: str | None = None
    vendor_block: bool = False


class Deferrals:
    """Reads and writes deferrals in the control store."""

    def __init__(self, store: ControlStore) -> None:
        self.store = store

    def defer(self, deferral: Deferral) -> Deferral:
        """Record `deferral`, or keep the tenant's later one; returns what is recorded."""
        with self.store.transaction() as conn:
            current = self._get(conn, deferral.tenant)
            if current is not None and current.resume_at > deferral.resume_at:
                return current
            values = {f.name: getattr(deferral, f.name) for f in fields(deferral)}
            insert = self.store.insert(deferrals).values(**values)
            conn.execute(insert.on_conflict_do_update(index_elements=["tenant"], set_=values))
        return deferral

    def clear(self, tenant: str, run_id: str | None, now: float) -> None:
        """A sync of the tenant completed: deferrals left by other runs are over. A wait the vendor
        asked for stays until its time has passed."""
        c = deferrals.c
        with self.store.transaction() as conn:
            conn.execute(
                sa.delete(deferrals).where(
                    c.tenant == tenant,
                    sa.or_(c.run_id.is_(None), c.run_id != (run_id or "")),
                    sa.or_(sa.not_(c.vendor_block), c.resume_at <= now),
                )
            )

    def due(self, now: float, after: float | None = None, after_tenant: str = "") -> list[Deferral]:
        """Deferred syncs whose time has come, oldest first: each needs a resumption run. With `after`,
        only those after (`after`, `after_tenant`) in that order: what a previous look did not take."""
        c = deferrals.c
        query = sa.select(deferrals).where(c.run_id.is_not(None), c.resume_at <= now).order_by(c.resume_at, c.tenant)
        if after is not None:
            query = query.where(sa.or_(c.resume_at > after, sa.and_(c.resume_at == after, c.tenant > after_tenant)))
        with self.store.engine.connect() as conn:
            return [Deferral(**row) for row in conn.execute(query).mappings()]

    def waiting(self, now: float) -> dict[str, Deferral]:
        """Every tenant that is still waiting, by tenant id."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(deferrals).where(deferrals.c.resume_at > now)).mappings()
            return {row["tenant"]: Deferral(**row) for row in rows}

    @staticmethod
    def vendor_blocks(conn: sa.Connection, tenants: Iterable[str], now: float) -> dict[str, Deferral]:
        """The waits Tasklane asked of these tenants that have not passed yet (inside the caller's
        transaction), by tenant id."""
        c = deferrals.c
        query = sa.select(deferrals).where(c.vendor_block, c.resume_at > now)
        return {
            row["tenant"]: Deferral(**row)
            for chunk in chunks(tenants)
            for row in conn.execute(query.where(c.tenant.in_(chunk))).mappings()
        }

    @staticmethod
    def _get(conn: sa.Connection, tenant: str) -> Deferral | None:
        row = conn.execute(sa.select(deferrals).where(deferrals.c.tenant == tenant)).mappings().one_or_none()
        return Deferral(**row) if row else None
