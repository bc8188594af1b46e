"""dripfeed's resources as the code location wires them, for tests, benchmarks and the campaign:
the Tasklane API, the tenant registry over a tenants file, and the shared state of a control store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resources.control.rate_budget import RateBudget
from resources.shared_state import SharedState
from resources.tasklane import TasklaneAPI, TenantClient
from resources.tenant_registry import TenantRegistry


@dataclass
class Resources:
    """The three resources a tick or a sync asks for, and shortcuts a test uses to call Tasklane."""

    tasklane: TasklaneAPI
    registry: TenantRegistry
    state: SharedState

    def client(self, tenant_id: str, *, in_tick: bool = False) -> TenantClient:
        return self.tasklane.client(self.registry.tenant(tenant_id), self.state, in_tick=in_tick)

    @property
    def budget(self) -> RateBudget:
        return self.tasklane.budget(self.state)

    def as_dict(self, **others: Any) -> dict[str, Any]:
        """What definitions.py wires, by resource key, with `others` (warehouse, alerts) beside them."""
        return {"tasklane": self.tasklane, "registry": self.registry, "state": self.state, **others}


def make_api(base_url: str, tenants_file: str | Path, state: str, **settings: Any) -> Resources:
    """The resources over `tenants_file` and the control store at `state` (a path or a postgresql://
    URL); `settings` are TasklaneAPI's (timeouts, attempts)."""
    return Resources(
        TasklaneAPI(base_url=base_url, **settings),
        TenantRegistry(tenants_file=str(tenants_file)),
        SharedState(url=str(state)),
    )


def resources_for(api: Resources, **others: Any) -> dict[str, Any]:
    """The resources by key, as a tick or a materialization takes them."""
    return api.as_dict(**others)
