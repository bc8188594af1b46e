"""`TenantRegistry`: the Dagster resource for tenants.yaml, which sensors, schedules and assets ask
for the tenants they serve (resources/tenants.py reads and validates the file)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from .tenants import Tenant, TenantConfigError, TenantsFile, load_tenants, shown_id


class TenantRegistry(dg.ConfigurableResource):
    """The tenants dripfeed syncs: their tiers, budgets and token references."""

    tenants_file: str = Field(description="tenants.yaml: the tenants, their tiers, budgets and token references")

    def read(self) -> TenantsFile:
        """tenants.yaml: its valid tenants and its skipped entries. Raises TenantConfigError only when
        the file as a whole cannot be read. Parsed again only when it changed."""
        return load_tenants(self.tenants_file)

    def tenants(self) -> dict[str, Tenant]:
        """The valid tenants of tenants.yaml, by id."""
        return dict(self.read().tenants)

    def tenant(self, tenant_id: str) -> Tenant:
        """The tenant `tenant_id`, or a TenantConfigError saying why it is not one and what to do."""
        tenant = self.read().tenants.get(tenant_id)
        if tenant is None:
            raise TenantConfigError(self.why_not_a_tenant(tenant_id))
        return tenant

    def why_not_a_tenant(self, tenant_id: str) -> str:
        """Why `tenant_id` is not a tenant dripfeed can serve, and what to do about it."""
        skipped = [entry for entry in self.read().skipped if entry.tenant_id == tenant_id]
        if skipped:
            return f"{self.tenants_file} skips tenant {shown_id(tenant_id)}: " + "; ".join(map(str, skipped))
        return f"tenant {shown_id(tenant_id)} is not in {self.tenants_file}; add it there first"
