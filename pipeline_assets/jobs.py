"""The job that syncs one tenant: its three assets and the checks evaluated in their steps, one
partition per run (partitioned by tenant through its assets). The freshness checks are left out: they
are evaluated between syncs by the tenant_freshness sensor, and cost no run."""

import dagster as dg

from .assets import projects, tasks, users
from .freshness import FRESHNESS_CHECK_KEYS

sync_tenant = dg.define_asset_job(
    "sync_tenant",
    selection=dg.AssetSelection.assets(users, projects, tasks) - dg.AssetSelection.checks(*FRESHNESS_CHECK_KEYS),
    description="Sync one tenant's users, projects and tasks (a backfill runs one per tenant).",
    # Under the instance's `run_retries` (deploy/dagster.yaml), a run whose process died is retried
    # once and resumes from its checkpoint; a run that failed in a step (a revoked token, a vendor
    # outage) is not: its cause would fail the retry too, and its alert already went out. The retry
    # runs every step (resuming is cheap): Dagster's default, from failure, cannot retry a run whose
    # process died after its last step, and gives up ("No steps needed to be retried").
    tags={
        "dagster/max_retries": "1",
        "dagster/retry_on_asset_or_op_failure": "false",
        "dagster/retry_strategy": "ALL_STEPS",
    },
)
