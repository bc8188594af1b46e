"""The job that syncs one tenant: its three assets and their checks, one partition per run."""

import dagster as dg

from .assets import projects, tasks, users
from .partitions import tenant_partitions

sync_tenant = dg.define_asset_job(
    "sync_tenant",
    selection=dg.AssetSelection.assets(users, projects, tasks),  # with their checks
    partitions_def=tenant_partitions,
    description="Sync one tenant's users, projects and tasks (a backfill runs one per tenant).",
)
