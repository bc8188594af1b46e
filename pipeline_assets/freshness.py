"""How fresh each tenant's data is, against its tier: an hourly tenant is stale after 1 h plus
grace, a daily one after 24 h plus grace, counted from its last successful `tasks` sync."""

import time
from datetime import timedelta

import dagster as dg

from resources.tasklane import TasklaneAPI

from .assets import tasks
from .partitions import partitioned_checks, tenant_partitions

FRESH_CHECK = "tasks_fresh"
MAX_AGE = {"hourly": timedelta(hours=1), "daily": timedelta(hours=24)}
GRACE = {"hourly": timedelta(minutes=15), "daily": timedelta(hours=2)}  # a run's own length, and a retry


def last_synced(instance: dg.DagsterInstance, tenant: str) -> float | None:
    """Unix time of the tenant's latest `tasks` materialization, or None if it never synced."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=tasks.key, asset_partitions=[tenant]), limit=1
    ).records
    return records[0].timestamp if records else None


def freshness(
    instance: dg.DagsterInstance, tenant: str, tier: str, now: float, known_since: float | None = None
) -> tuple[bool, str]:
    """(fresh, a one-line explanation naming the age and the allowed age). A tenant that never
    synced is given its tier's allowance from `known_since` (when it was first seen), so a new
    tenant's first sync has time to run before anyone is alerted."""
    allowed = MAX_AGE[tier] + GRACE[tier]
    synced = last_synced(instance, tenant)
    if synced is None:
        waited = timedelta(seconds=int(now - (known_since if known_since is not None else now)))
        verdict = "within" if waited <= allowed else "more than"
        return (
            waited <= allowed,
            f"{tenant!r} has not synced yet, {waited} after onboarding, {verdict} its {tier} tier's {allowed}",
        )
    age = timedelta(seconds=int(now - synced))
    verdict = "within" if age <= allowed else "older than"
    return age <= allowed, f"{tenant!r} last synced {age} ago, {verdict} its {tier} tier's {allowed}"


def _tasks_fresh(context: dg.AssetCheckExecutionContext, tasklane: TasklaneAPI) -> dg.AssetCheckResult:
    tenant = context.partition_key
    configured = tasklane.tenants().get(tenant)
    if configured is None:
        return dg.AssetCheckResult(passed=False, description=f"{tenant!r} is not in tenants.yaml, so it has no tier")
    tier = configured.tier
    fresh, explanation = freshness(context.instance, tenant, tier, time.time())
    return dg.AssetCheckResult(passed=fresh, description=explanation, metadata={"tier": tier})


with partitioned_checks():
    tasks_fresh = dg.asset_check(
        asset=tasks,
        name=FRESH_CHECK,
        partitions_def=tenant_partitions,
        description="Fails when the tenant's last sync is older than its tier allows (1 h or 24 h, plus grace). "
        "Evaluated by the tenant_freshness sensor, between syncs.",
    )(_tasks_fresh)
