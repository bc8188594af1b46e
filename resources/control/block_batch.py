"""Budget blocks reserved for many tenants at once and settled at once: what a tier's tick uses.

A tick probes hundreds of tenants with three conditional requests each. A transaction per tenant to
reserve its block and another to settle it cost the tick more CPU than the requests themselves, so
one transaction reserves every tenant's block (under `RateBudget.exchange`'s rules) and one more
settles every block handed back, with the ledger rows of its calls. A client that needs more calls
than its block (a retry), or that finishes after the batch was settled, exchanges and settles on
its own, as any client does.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import sqlalchemy as sa

from ..tenants import Tenant
from .call_ledger import PendingLedger, write_ledger_rows
from .rate_budget import Grant, RateBudget, Settlement


class BlockBatch:
    """Blocks of `want` calls reserved for `tenants`; `settle()` once, when their clients are done."""

    def __init__(self, budget: RateBudget, tenants: Sequence[Tenant], want: int) -> None:
        self.budget = budget
        self._tenants = {tenant.id: tenant for tenant in tenants}
        decisions = budget.reserve_blocks(tenants, want)
        self._untaken = {tenant: grant for tenant, grant in decisions.items() if isinstance(grant, Grant)}
        self._settlements: list[tuple[Tenant, Settlement]] = []
        self._ledger_rows: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self._settled = False

    def take(self, tenant: str) -> Grant | None:
        """The tenant's block, once; None if it has none (its client asks the budget itself)."""
        with self._lock:
            return None if self._settled else self._untaken.pop(tenant, None)

    def give_back(self, tenant: Tenant, settlement: Settlement | None, ledger: PendingLedger) -> bool:
        """Leave a client's last block and its ledger to `settle()`; False once the batch is settled:
        the client settles them itself."""
        with self._lock:
            if self._settled:
                return False
            if settlement is not None:
                self._settlements.append((tenant, settlement))
            self._ledger_rows.extend(ledger.take_rows())
            return True

    def settle(self) -> None:
        """Settle every block given back, and give back whole every block no client took."""
        with self._lock:
            self._settled = True
            untaken = [(self._tenants[t], Settlement(grant, 0, 0, None)) for t, grant in self._untaken.items()]
            settlements, rows = self._settlements + untaken, self._ledger_rows
            self._untaken, self._settlements, self._ledger_rows = {}, [], []
        if settlements or rows:

            def write_ledger(conn: sa.Connection) -> None:
                write_ledger_rows(conn, self.budget.store, rows)

            self.budget.settle_blocks(settlements, write_ledger)
