"""`TasklaneAPI`: the Dagster resource every Tasklane call goes through, a client per tenant. A caller
hands it the tenant (from the `TenantRegistry` resource) and the `SharedState` resource whose budget
the calls are metered against: it knows how to call Tasklane, nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import dagster as dg
import requests
from pydantic import Field, PrivateAttr

from ..control.block_batch import BlockBatch
from ..control.rate_budget import RateBudget
from ..shared_state import SharedState
from ..tenants import Tenant
from .client import CALL_LOG, ClientSettings, TenantClient
from .transport import new_session

# A tick must end well within Dagster's 60 s whatever one tenant's answers do: a tick's calls wait at
# most 2 s for budget or Retry-After, are tried twice, connect within 3 s and read an answer within
# 5 s, so one call takes at most 18 s. A tick reserves three calls of the budget at a time.
TICK_SETTINGS = {
    "long_wait_seconds": 2.0,
    "max_attempts": 2,
    "connect_timeout": 3.0,
    "read_timeout": 5.0,
    "calls_per_block": 3,
}
TICK_CONNECTIONS = 32  # a tick's clients share one session: connections to the API host are reused across tenants


class TasklaneAPI(dg.ConfigurableResource):
    """Per-tenant, budgeted, retried and counted access to the Tasklane API. `definitions.py` sets
    `base_url` from `TASKLANE_BASE_URL`; the other fields keep their defaults unless a launchpad
    overrides them (docs/configuration.md)."""

    base_url: str = Field(description="the Tasklane API root, e.g. https://api.tasklane.example")
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 30.0
    max_attempts: int = Field(6, description="attempts per call for transient errors (5xx, timeouts, drops, 429)")
    long_wait_seconds: float = Field(
        60.0, description="a longer wait (Retry-After, budget) is not slept: the run commits its checkpoint and defers"
    )
    max_concurrent: int = Field(8, description="the vendor's cap on concurrent requests per workspace")

    _clients: dict[tuple[str, bool], TenantClient] = PrivateAttr(default_factory=dict)  # (tenant, in_tick)
    _tick_session: requests.Session | None = PrivateAttr(default=None)

    def budget(self, state: SharedState) -> RateBudget:
        """Every tenant's call budget in the shared state, with this resource's concurrency and leases."""
        return RateBudget(
            state.store,
            self.max_concurrent,
            lease_seconds=self.connect_timeout_seconds + self.read_timeout_seconds + 30,
        )

    def settings(self, *, in_tick: bool = False) -> ClientSettings:
        settings = ClientSettings(
            base_url=self.base_url,
            connect_timeout=self.connect_timeout_seconds,
            read_timeout=self.read_timeout_seconds,
            max_attempts=self.max_attempts,
            long_wait_seconds=self.long_wait_seconds,
            max_concurrent=self.max_concurrent,
        )
        if not in_tick:
            return settings
        return replace(
            settings,
            long_wait_seconds=min(settings.long_wait_seconds, TICK_SETTINGS["long_wait_seconds"]),
            max_attempts=min(settings.max_attempts, int(TICK_SETTINGS["max_attempts"])),
            connect_timeout=min(settings.connect_timeout, TICK_SETTINGS["connect_timeout"]),
            read_timeout=min(settings.read_timeout, TICK_SETTINGS["read_timeout"]),
            calls_per_block=int(TICK_SETTINGS["calls_per_block"]),
        )

    def client(self, tenant: Tenant, state: SharedState, *, in_tick: bool = False) -> TenantClient:
        """The tenant's client, metered against `state`'s budget (one HTTP session per tenant, reused
        by this process). A tick's client (`in_tick`) has the tick's limits, so no tenant can use up a
        tick."""
        key = (tenant.id, in_tick)
        if key not in self._clients:
            if in_tick:
                self._clients[key] = self.tick_client(tenant, state)
            else:
                self._clients[key] = TenantClient(tenant, self.settings(), state.store, self.budget(state), CALL_LOG)
        return self._clients[key]

    def tick_client(self, tenant: Tenant, state: SharedState, blocks: BlockBatch | None = None) -> TenantClient:
        """A new client of `tenant` with the tick's limits, over the HTTP session this resource's tick
        clients share, its budget blocks from the tick's `blocks` if given; its caller closes it."""
        settings = self.settings(in_tick=True)
        if self._tick_session is None:
            self._tick_session = new_session(settings.base_url, TICK_CONNECTIONS)
        return TenantClient(tenant, settings, state.store, self.budget(state), CALL_LOG, self._tick_session, blocks)

    def tick_blocks(self, tenants: Sequence[Tenant], state: SharedState) -> BlockBatch:
        """Budget blocks for a tick's clients of `tenants`, reserved at once; the tick settles them."""
        return BlockBatch(self.budget(state), tenants, int(TICK_SETTINGS["calls_per_block"]))

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        for client in self._clients.values():
            client.close()
        if self._tick_session is not None:
            self._tick_session.close()
