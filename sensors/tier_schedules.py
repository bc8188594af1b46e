"""Two freshness tiers on the same assets: an hourly schedule for dashboard tenants, a daily one
for the rest. Moving a tenant between tiers is its `tier:` line in tenants.yaml.

Each schedule ticks every few minutes (`tier_slots.py`) and requests the tenants whose slot is
this tick, so a tier's runs and calls are spread over its period. A tenant is requested once per
period: its run key names the tier, the period and the tenant, and a tick first reads which keys
of the period exist. A tenant whose slot has passed without a run this period (skipped for
budget or because it was waiting, or moved into an earlier tick by a change to the tier) is
requested at the next tick, unless it has had a run of any kind since the period began (a new
tenant's first sync, a tenant that changed tiers: it follows its new tier from then on).

A tenant that is waiting (a deferred sync, pipeline_assets/deferral.py), whose rate window has
too little budget left, or whose token is missing is skipped for this tick, with the reason in
the tick's log, instead of launching a run that would only end at once, fail or collect 429s. So
is an entry of tenants.yaml that is not valid (`tick_report.py`).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import dagster as dg

from pipeline_assets.jobs import TENANT_TAG, TIER_TAG, sync_tenant
from pipeline_assets.partitions import tenant_partitions
from resources.tasklane import TasklaneAPI
from resources.tenants import Tenant

from .tick_report import TickReport
from .tier_slots import Tier, make_tier, slots

# One listing call per stream: less than that and a sync cannot even ask what changed.
MIN_CALLS_FOR_A_SYNC = 3
RUN_KEY_TAG = "dagster/run_key"
PARTITION_TAG = "dagster/partition"
NOT_FAILED = [s for s in dg.DagsterRunStatus if s not in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)]
TIERS = {"hourly": make_tier("hourly", 60, 5), "daily": make_tier("daily", 1440, 15)}  # definitions.py may shorten them


def run_key(tier: Tier, tick_time: datetime, tenant: str) -> str:
    return f"{tier.name}:{tier.period_label(tick_time)}:{tenant}"


def tier_run_requests(
    context: dg.ScheduleEvaluationContext, tasklane: TasklaneAPI, tier: Tier
) -> list[dg.RunRequest] | dg.SkipReason:
    """A run request per enabled, registered tenant of `tier` whose slot is this tick (or has passed
    without a run this period) and that has the budget for a sync."""
    tick_time = context.scheduled_execution_time.astimezone(UTC)
    tick, period_start = tier.tick_of(tick_time), tier.period_start(tick_time)
    report = TickReport(context)
    tenants = report.read_tenants(tasklane).tenants
    due = {tenant_id for tenant_id, slot in slots(tier, tenants.values()).items() if slot <= tick}
    prefix = run_key(tier, tick_time, "")
    requested = {
        key.removeprefix(prefix) for _, keys in context.instance.get_run_tags([RUN_KEY_TAG], prefix) for key in keys
    }
    registered = set(context.instance.get_dynamic_partitions(tenant_partitions.name))
    now = time.time()
    waiting = tasklane.deferrals.waiting(now)
    candidates = sorted(due - requested)
    ran = _ran_since(context.instance, candidates, period_start)
    requests = []
    for tenant_id in candidates:
        if tenant_id in ran:
            continue
        with report.on_its_own(tenant_id):
            tenant = tenants[tenant_id]
            if reason := _skip_reason(tenant, registered, waiting, tasklane, now):
                report.leave_out(f"{tenant_id}: {reason}", logging.INFO)
            elif missing := tenant.missing_token():
                report.leave_out(f"{tenant_id}: {missing}")
            else:
                requests.append(
                    dg.RunRequest(
                        run_key=run_key(tier, tick_time, tenant_id),
                        partition_key=tenant_id,
                        tags={TENANT_TAG: tenant_id, TIER_TAG: tier.name},
                    )
                )
    if not requests:
        return dg.SkipReason(report.skip_reason(f"no {tier.name} tenant to request at tick {tick} of this period"))
    return requests


def _ran_since(instance: dg.DagsterInstance, tenants: list[str], since: datetime) -> set[str]:
    """Which of `tenants` have had a run since `since` that did not fail, whoever launched it (a
    first sync, a resumption, a backfill, a run of their previous tier): that is their run of the
    period. One query; in a steady period it finds none."""
    if not tenants:
        return set()
    runs = dg.RunsFilter(tags={PARTITION_TAG: tenants}, created_after=since, statuses=NOT_FAILED)
    return {record.dagster_run.tags[PARTITION_TAG] for record in instance.get_run_records(runs)}


def _skip_reason(tenant: Tenant, registered: set[str], waiting: dict, tasklane: TasklaneAPI, now: float) -> str | None:
    if tenant.id not in registered:
        return "not a partition yet (the tenant_registry sensor adds it)"
    if tenant.id in waiting:
        deferral = waiting[tenant.id]
        return f"deferred until {_utc(deferral.resume_at)} ({deferral.reason})"
    left, reset = tasklane.budget.calls_left(tenant, now)
    if left is not None and left < MIN_CALLS_FOR_A_SYNC:
        return f"{left} calls left in its rate window until {_utc(reset)}"
    return None


def _utc(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


def tier_schedule(tier: Tier) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=f"{tier.name}_tenants",
        cron_schedule=tier.cron,
        execution_timezone="UTC",
        job=sync_tenant,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Syncs each {tier.name} tenant of tenants.yaml once every {tier.period_minutes} minutes, at "
        f"its slot: one of the period's {tier.ticks} ticks, spread evenly over the tenants.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext, tasklane: TasklaneAPI) -> list[dg.RunRequest] | dg.SkipReason:
        return tier_run_requests(context, tasklane, tier)

    return _schedule


def tier_schedules(tiers: dict[str, Tier] = TIERS) -> list[dg.ScheduleDefinition]:
    return [tier_schedule(t) for t in tiers.values()]
