"""`SharedState`: the Dagster resource for the control store every dripfeed process shares, and what
dripfeed keeps in it (resources/control/): rate budgets, deferrals, export jobs, stream and tenant
checks. Sensors, schedules and assets ask for it when they read or write that state; only calls to
Tasklane go through `TasklaneAPI`."""

from __future__ import annotations

import dagster as dg
from pydantic import Field, PrivateAttr

from .control.deferrals import Deferrals
from .control.export_jobs import ExportJobs
from .control.rate_budget import RateBudget
from .control.store import DEFAULT_STATE, ControlStore
from .control.stream_checks import StreamChecks
from .control.sync_totals import SyncTotals
from .control.tenant_checks import TenantChecks


class SharedState(dg.ConfigurableResource):
    """dripfeed's control store: a SQLite file (embedded) or Postgres (production)."""

    url: str = Field(DEFAULT_STATE, description="the control store: a SQLite path, or a postgresql:// URL")
    reads_only: bool = Field(
        False, description="only reads (the metrics endpoint): on SQLite its reads never take the write lock"
    )

    _store: ControlStore | None = PrivateAttr(default=None)

    @property
    def store(self) -> ControlStore:
        if self._store is None:
            self._store = ControlStore(self.url, reads_only=self.reads_only)
        return self._store

    @property
    def budget(self) -> RateBudget:
        """Every tenant's call budget in its vendor window (what is left; clients spend it)."""
        return RateBudget(self.store)

    @property
    def deferrals(self) -> Deferrals:
        """Tenants that must wait, and their deferred syncs."""
        return Deferrals(self.store)

    @property
    def export_jobs(self) -> ExportJobs:
        return ExportJobs(self.store)

    @property
    def stream_checks(self) -> StreamChecks:
        """Each tenant's streams between syncs: the listing to ask about, when last complete."""
        return StreamChecks(self.store)

    @property
    def sync_totals(self) -> SyncTotals:
        """What dripfeed did, as counters since the store began: for the metrics endpoint."""
        return SyncTotals(self.store)

    @property
    def tenant_checks(self) -> TenantChecks:
        """Each tenant's last check, failure episode, and what Dagster was last told."""
        return TenantChecks(self.store)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._store is not None:
            self._store.dispose()
