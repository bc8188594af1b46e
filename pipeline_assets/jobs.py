"""The job that syncs one tenant: its three assets and their checks, one partition per run
(partitioned by tenant through its assets)."""

import dagster as dg

from .assets import projects, tasks, users

TENANT_TAG = "dripfeed/tenant"
TIER_TAG = "dripfeed/tier"  # hourly, daily, or onboarding (a new tenant's first sync)

sync_tenant = dg.define_asset_job(
    "sync_tenant",
    selection=dg.AssetSelection.assets(users, projects, tasks),  # with their checks
    description="Sync one tenant's users, projects and tasks (a backfill runs one per tenant).",
)
