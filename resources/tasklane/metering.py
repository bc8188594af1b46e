"""Every call of a tenant metered against its shared budget, booked in the ledger and in `stats`.

Calls are taken from a block reserved in the control store (`rate_budget.py`): a call is made only
while the block has room and the vendor's last answer still showed some; a spent block is settled
and exchanged for the next in one transaction, with the ledger rows of the calls it paid for. A
wait longer than `long_wait_seconds` is not made: it raises `TenantThrottled`.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import NoReturn

from ..control.block_batch import BlockBatch
from ..control.call_ledger import CallOutcome, PendingLedger, error_class
from ..control.rate_budget import MAX_BLOCK, Grant, RateBudget, Settlement
from ..control.store import ControlStore
from ..tenants import Tenant
from .errors import TenantThrottled

RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


class Meter:
    """One tenant's calls in this process; one call at a time."""

    def __init__(
        self,
        tenant: Tenant,
        store: ControlStore,
        budget: RateBudget,
        long_wait_seconds: float,
        log: logging.Logger,
        block: int = MAX_BLOCK,
        blocks: BlockBatch | None = None,
    ) -> None:
        """`block`: the calls to reserve at a time (a probe needs three, a sync many). `blocks`: a
        tick's batch, which holds this client's first block and settles its last."""
        self.tenant, self.store, self.budget, self.long_wait_seconds = tenant, store, budget, long_wait_seconds
        self.log, self.block = log, block
        self.stats: Counter = Counter()
        self.ledger = PendingLedger(store, tenant.id)
        self._grant: Grant | None = None  # calls reserved for this client
        self._counted = 0
        self._uncounted = 0
        self._last_headers: Mapping[str, str] | None = None
        self._blocks = blocks

    def acquire(self) -> tuple[Grant, float]:
        """The next call from this client's block, exchanging the block when it is spent; with the
        seconds waited for it."""
        waited = 0.0
        if self._blocks is not None and self._grant is None:
            self._grant = self._blocks.take(self.tenant.id)
        while True:
            if self._block_has_room():
                assert self._grant is not None
                return self._grant, waited
            decision = self.budget.exchange(
                self.tenant, self._settlement(), want=self.block, write_ledger=self.ledger.write
            )
            self._grant, self._counted, self._uncounted = None, 0, 0
            if isinstance(decision, Grant):
                self._grant = decision
                continue
            if decision.seconds > self.long_wait_seconds:
                why = decision.reason if decision.vendor else f"dripfeed's budget for this tenant: {decision.reason}"
                self.throttled(decision.seconds, why, vendor=decision.vendor)
            time.sleep(decision.seconds)
            waited += decision.seconds

    def record(
        self,
        grant: Grant,
        endpoint: str,
        status: int | None,
        headers: Mapping[str, str] | None,
        attempt: int,
        waited: float,
        started: float,
    ) -> None:
        """Book a call here; the shared budget and the ledger hear of it at the next exchange."""
        counted = status not in (304, 429)
        outcome = CallOutcome(
            counted=counted,
            not_modified=status == 304,
            rate_limited=status == 429,
            retry=attempt > 1,
            error=error_class(status),
            wait_seconds=waited,
        )
        if counted:
            self._counted += 1
        else:
            self._uncounted += 1
        if headers is not None and "X-RateLimit-Remaining" in headers:
            self._last_headers = {k: headers.get(k) for k in RATE_HEADERS}
        self.ledger.add(endpoint, outcome, time.time())
        self.stats.update(
            calls=1,
            counted=int(counted),
            not_modified=int(outcome.not_modified),
            rate_limited=int(outcome.rate_limited),
            retries=int(outcome.retry),
            errors=int(outcome.error is not None),
        )
        self.stats["wait_seconds"] += waited
        if self.log.isEnabledFor(logging.DEBUG):
            used = self._counted + self._uncounted
            line = {
                "tenant": self.tenant.id,
                "endpoint": endpoint,
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                "attempt": attempt,
                "budget_left": None if grant.left_after is None else grant.left_after + grant.calls - used,
                "vendor_remaining": (headers or {}).get("X-RateLimit-Remaining"),
                "wait_s": round(waited, 3),
            }
            self.log.debug("tasklane_call " + json.dumps(line), extra={"dripfeed": line})

    def throttled(self, seconds: float, why: str, *, vendor: bool) -> NoReturn:
        """A wait longer than `long_wait_seconds` is not made here: the caller decides (a run defers
        itself, a sensor looks again later)."""
        self.stats["throttled"] += 1
        raise TenantThrottled(self.tenant.id, time.time() + seconds, why, vendor=vendor)

    def flush(self) -> None:
        """Give back reserved calls not used and write the ledger: the end of every operation."""
        settlement = self._settlement()
        if self._blocks is None or not self._blocks.give_back(self.tenant, settlement, self.ledger):
            if settlement is not None:
                self.budget.settle(self.tenant, settlement, self.ledger.write)
            elif self.ledger.rows:
                with self.store.transaction() as conn:
                    self.ledger.write(conn)
        self._grant, self._counted, self._uncounted = None, 0, 0

    def _block_has_room(self) -> bool:
        grant = self._grant
        if grant is None or self._counted + self._uncounted >= grant.calls or time.time() >= grant.window_reset:
            return False
        headers = self._last_headers or {}
        same_window = headers.get("X-RateLimit-Reset") == str(grant.window_reset)
        return not (same_window and int(headers.get("X-RateLimit-Remaining", 1)) <= 0)

    def _settlement(self) -> Settlement | None:
        if self._grant is None:
            return None
        return Settlement(self._grant, self._counted, self._uncounted, self._last_headers)
