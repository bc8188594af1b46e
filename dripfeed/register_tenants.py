"""`python -m dripfeed.register_tenants`: make tenants.yaml's enabled tenants partitions of the
Dagster instance in $DAGSTER_HOME, so `dg launch --assets ... --partition <tenant>` works
headless. (The tenant registry sensor keeps them in sync once it is running.) An entry that is
not valid is skipped and named on stderr, and the command exits with status 1 once the others
are registered."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import dagster as dg

from pipeline_assets.partitions import tenant_partitions
from resources.tenants import Tenant, TenantConfigError, load_tenants


def add_tenant_partitions(instance: dg.DagsterInstance, tenants: Mapping[str, Tenant]) -> list[str]:
    """Add the enabled tenants that are not partitions yet; returns the ones added."""
    existing = set(instance.get_dynamic_partitions(tenant_partitions.name))
    added = [tenant_id for tenant_id, tenant in tenants.items() if tenant.enabled and tenant_id not in existing]
    if added:
        instance.add_dynamic_partitions(tenant_partitions.name, added)
    return added


def main() -> None:
    path = os.environ.get("DRIPFEED_TENANTS_FILE")
    if not path:
        raise SystemExit("set DRIPFEED_TENANTS_FILE to tenants.yaml's path (make dev keeps the demo's in .env)")
    try:
        loaded = load_tenants(path)
    except TenantConfigError as error:
        raise SystemExit(str(error)) from None
    with dg.DagsterInstance.get() as instance:
        added = add_tenant_partitions(instance, loaded.tenants)
    print(f"registered {len(added)} new tenant partition(s): {', '.join(added) or 'none'}")
    for entry in loaded.skipped:
        print(f"{loaded.path}: {entry}; skipped", file=sys.stderr)
    if loaded.skipped:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
