"""The tenant registry sensor: the `tenants` partitions follow the enabled tenants of tenants.yaml.

A tenant that appears gets its partition and its first sync, once its token is there (before, the
tick says which variable or file to set). New tenants come in waves: a tick adds at most as many as
leave the wave's room (`wave` first syncs queued or running at once), so that ten thousand tenants
added at once neither flood the run queue nor keep the daemon busy for minutes with one tick's run
requests, and the tiers' tenants keep their run slots meanwhile; the others are counted in the
tick's log and added by the next ticks, in the order of their ids. One that is removed or disabled
loses its partition, so no schedule or backfill picks it any more. Its rows stay in the warehouse,
and its run history stays in Dagster. A tenant whose entry is merely broken (a typo, its id listed
twice) keeps its partition: every tick names the entry until it is fixed."""

import logging
import time

import dagster as dg

from pipeline_assets.jobs import sync_tenant
from pipeline_assets.partitions import tenant_partitions
from pipeline_assets.run_tags import ONBOARDING, TIER_TAG, onboarding_tags
from resources.control.tenant_checks import Outcome
from resources.shared_state import SharedState
from resources.tenant_registry import TenantRegistry

from .tick_report import TickReport
from .tier_schedules import IN_FLIGHT

DEFAULT_CHECK_SECONDS = 60
DEFAULT_WAVE = 50  # first syncs queued or running at once


def follow_tenants_file(
    context: dg.SensorEvaluationContext, registry: TenantRegistry, state: SharedState, wave: int = DEFAULT_WAVE
) -> dg.SensorResult | dg.SkipReason:
    """The tenant partitions follow tenants.yaml's enabled tenants; a new tenant's first sync is
    requested with them, `wave` at most queued or running at once."""
    report = TickReport(context)
    loaded = report.read_tenants(registry)  # an unreadable file fails the tick with an error naming it
    enabled = {tenant_id: tenant for tenant_id, tenant in loaded.tenants.items() if tenant.enabled}
    current = set(context.instance.get_dynamic_partitions(tenant_partitions.name))
    new = sorted(enabled.keys() - current)
    onboarding = context.instance.get_runs_count(dg.RunsFilter(tags={TIER_TAG: ONBOARDING}, statuses=IN_FLIGHT))
    room = max(0, wave - onboarding)
    added, considered = [], 0
    for tenant_id in new:
        if len(added) >= room:
            break
        considered += 1
        if missing := enabled[tenant_id].missing_token():
            report.leave_out(f"{tenant_id}: not added yet, {missing}")
        else:
            added.append(tenant_id)
    if len(new) > considered:
        report.log.log(
            logging.INFO,
            f"{len(new) - considered} new tenants wait for the next wave ({onboarding} first syncs are queued or "
            f"running, {wave} at most)",
        )
    removed = sorted(current - enabled.keys() - loaded.skipped_ids)
    if not added and not removed:
        waiting = f"; {len(new)} new tenants wait for room in the onboarding wave" if new else ""
        return dg.SkipReason(report.skip_reason(f"the {len(current)} tenant partitions match tenants.yaml{waiting}"))
    generation = int(context.cursor or 0) + 1  # a re-added tenant gets a new first sync; a repeated tick does not
    requests = []
    if added:
        requests.append(tenant_partitions.build_add_request(added))
        context.log.info(f"added tenants: {', '.join(added)}")
        # The tiers leave these to their first syncs (which the daemon creates just after the partitions).
        state.tenant_checks.record(
            [(tenant, Outcome.ONBOARDING, "first sync requested by tenant_registry", None) for tenant in added],
            time.time(),
        )
    if removed:
        requests.append(tenant_partitions.build_delete_request(removed))
        context.log.info(f"removed tenants (gone from tenants.yaml or disabled): {', '.join(removed)}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"first-sync:{tenant_id}:{generation}",
                partition_key=tenant_id,
                tags=onboarding_tags(tenant_id),
            )
            for tenant_id in added
        ],
        dynamic_partitions_requests=requests,
        cursor=str(generation),
    )


def tenant_registry_sensor(check_seconds: int = DEFAULT_CHECK_SECONDS, wave: int = DEFAULT_WAVE) -> dg.SensorDefinition:
    """The sensor, looking at tenants.yaml every `check_seconds` (how long a new tenant waits at most
    when the wave has room), with at most `wave` first syncs queued or running at once."""

    @dg.sensor(
        name="tenant_registry",
        job=sync_tenant,
        minimum_interval_seconds=check_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Keeps the tenant partitions equal to tenants.yaml's enabled tenants; starts new tenants' "
        "first syncs, in waves.",
    )
    def tenant_registry(
        context: dg.SensorEvaluationContext, registry: TenantRegistry, state: SharedState
    ) -> dg.SensorResult | dg.SkipReason:
        return follow_tenants_file(context, registry, state, wave)

    return tenant_registry


tenant_registry = tenant_registry_sensor()
