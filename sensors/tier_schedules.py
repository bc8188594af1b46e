"""Two freshness tiers on the same assets: an hourly schedule for dashboard tenants, a daily one
for the rest. Moving a tenant between tiers is its `tier:` line in tenants.yaml.

Each tick requests one run per tenant of its tier, keyed by tier, tenant and tick, so a
repeated tick launches nothing twice. A tenant whose rate window has too little budget left is
skipped for this tick, with the reason in the tick's log, instead of launching a run that would
only wait or collect 429s."""

import os
import time
from datetime import UTC, datetime

import dagster as dg

from pipeline_assets.jobs import TENANT_TAG, TIER_TAG, sync_tenant
from pipeline_assets.partitions import tenant_partitions
from resources.tasklane_api import TasklaneAPI

# One listing call per resource: less than that and a sync cannot even ask what changed.
MIN_CALLS_FOR_A_SYNC = 3
# The tiers' cron strings (UTC); DRIPFEED_HOURLY_CRON / DRIPFEED_DAILY_CRON move them.
TIERS = {
    "hourly": os.environ.get("DRIPFEED_HOURLY_CRON", "0 * * * *"),
    "daily": os.environ.get("DRIPFEED_DAILY_CRON", "0 3 * * *"),
}


def tier_run_requests(
    context: dg.ScheduleEvaluationContext, tasklane: TasklaneAPI, tier: str
) -> list[dg.RunRequest] | dg.SkipReason:
    """A run request per enabled, registered tenant of `tier` that has the budget for a sync."""
    registered = set(context.instance.get_dynamic_partitions(tenant_partitions.name))
    tick = context.scheduled_execution_time.strftime("%Y-%m-%dT%H:%M")
    requests, skipped, budget = [], [], tasklane.budget
    for tenant in sorted(tasklane.tenants().values(), key=lambda t: t.id):
        if not tenant.enabled or tenant.tier != tier:
            continue
        if tenant.id not in registered:
            skipped.append(f"{tenant.id}: not a partition yet (the tenant_registry sensor adds it)")
            continue
        left, reset = budget.calls_left(tenant, time.time())
        if left is not None and left < MIN_CALLS_FOR_A_SYNC:
            until = datetime.fromtimestamp(reset, UTC).isoformat(timespec="seconds")
            skipped.append(f"{tenant.id}: {left} calls left in its rate window until {until}")
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"{tier}:{tenant.id}:{tick}",
                partition_key=tenant.id,
                tags={TENANT_TAG: tenant.id, TIER_TAG: tier},
            )
        )
    for reason in skipped:
        context.log.info(f"skipped {reason}")
    if not requests:
        return dg.SkipReason("; ".join(skipped) or f"no enabled {tier} tenants in tenants.yaml")
    return requests


def tier_schedule(tier: str, cron: str) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=f"{tier}_tenants",
        cron_schedule=cron,
        execution_timezone="UTC",
        job=sync_tenant,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Syncs every {tier} tenant of tenants.yaml, skipping those without rate budget left.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext, tasklane: TasklaneAPI) -> list[dg.RunRequest] | dg.SkipReason:
        return tier_run_requests(context, tasklane, tier)

    return _schedule


tier_schedules = [tier_schedule(tier, cron) for tier, cron in TIERS.items()]
