"""`TasklaneAPI`: the Dagster resource every Tasklane call goes through, a client per tenant."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg
from pydantic import Field, PrivateAttr

from ..control.deferrals import Deferrals
from ..control.rate_budget import RateBudget
from ..control.store import DEFAULT_STATE, ControlStore
from ..tenants import Tenant, TenantConfigError, TenantsFile, load_tenants, shown_id
from .client import ClientSettings, TenantClient

# A tick must end well within Dagster's 60 s whatever one tenant's answers do: a sensor's calls
# wait at most 5 s for budget or Retry-After, are tried twice, and read an answer for 10 s at most.
TICK_LONGEST_WAIT_SECONDS = 5.0
TICK_ATTEMPTS = 2
TICK_READ_TIMEOUT_SECONDS = 10.0


class TasklaneAPI(dg.ConfigurableResource):
    """Per-tenant, budgeted, retried and counted access to the Tasklane API. `definitions.py` sets
    its fields from the environment (docs/configuration.md)."""

    base_url: str = Field(description="the Tasklane API root, e.g. https://api.tasklane.example")
    tenants_file: str = Field(description="tenants.yaml: the tenants, their tiers, budgets and token references")
    state: str = Field(DEFAULT_STATE, description="the control store: a SQLite path, or a postgresql:// URL")
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 30.0
    max_attempts: int = Field(6, description="attempts per call for transient errors (5xx, timeouts, drops, 429)")
    long_wait_seconds: float = Field(
        60.0, description="a longer wait (Retry-After, budget) is not slept: the run commits its checkpoint and defers"
    )
    max_concurrent: int = Field(8, description="the vendor's cap on concurrent requests per workspace")

    _store: ControlStore | None = PrivateAttr(default=None)
    _clients: dict[tuple[str, bool], TenantClient] = PrivateAttr(default_factory=dict)  # (tenant, in_tick)

    def tenants(self) -> dict[str, Tenant]:
        """The valid tenants of tenants.yaml; `read_tenants()` also says which entries it skipped."""
        return dict(self.read_tenants().tenants)

    def read_tenants(self) -> TenantsFile:
        """tenants.yaml: its valid tenants and its skipped entries. Raises TenantConfigError only
        when the file as a whole cannot be read."""
        return load_tenants(self.tenants_file)

    @property
    def store(self) -> ControlStore:
        if self._store is None:
            self._store = ControlStore(self.state)
        return self._store

    @property
    def deferrals(self) -> Deferrals:
        """Tenants that must wait, and their deferred syncs (shared through the control store)."""
        return Deferrals(self.store)

    @property
    def budget(self) -> RateBudget:
        """Every tenant's call budget, shared through the control store (schedules read it too)."""
        return RateBudget(
            self.store, self.max_concurrent, lease_seconds=self.connect_timeout_seconds + self.read_timeout_seconds + 30
        )

    def client(
        self, tenant_id: str, tenants: dict[str, Tenant] | None = None, *, in_tick: bool = False
    ) -> TenantClient:
        """The tenant's client (one HTTP session per tenant, reused by this process). A caller
        serving many tenants passes `tenants()` read once, rather than have each client read it.
        A sensor's client (`in_tick`) has the tick's limits, so no tenant can use up a tick."""
        key = (tenant_id, in_tick)
        if key not in self._clients:
            tenants = self.tenants() if tenants is None else tenants
            if tenant_id not in tenants:
                raise TenantConfigError(self._not_a_tenant(tenant_id))
            settings = ClientSettings(
                base_url=self.base_url,
                connect_timeout=self.connect_timeout_seconds,
                read_timeout=self.read_timeout_seconds,
                max_attempts=self.max_attempts,
                long_wait_seconds=self.long_wait_seconds,
                max_concurrent=self.max_concurrent,
            )
            if in_tick:
                settings = replace(
                    settings,
                    long_wait_seconds=TICK_LONGEST_WAIT_SECONDS,
                    max_attempts=TICK_ATTEMPTS,
                    read_timeout=min(settings.read_timeout, TICK_READ_TIMEOUT_SECONDS),
                )
            self._clients[key] = TenantClient(
                tenants[tenant_id], settings, self.store, self.budget, dg.get_dagster_logger("dripfeed.tasklane")
            )
        return self._clients[key]

    def _not_a_tenant(self, tenant_id: str) -> str:
        skipped = [entry for entry in self.read_tenants().skipped if entry.tenant_id == tenant_id]
        if skipped:
            return f"{self.tenants_file} skips tenant {shown_id(tenant_id)}: " + "; ".join(map(str, skipped))
        return f"tenant {shown_id(tenant_id)} is not in {self.tenants_file}; add it there first"

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        for client in self._clients.values():
            client.close()
        if self._store is not None:
            self._store.dispose()
