"""The deferred syncs sensor: resumes each tenant whose sync ended early, once its wait is over.

A sync that would have waited long (pipeline_assets/deferral.py) ended with a deferral in the
control store. Every tick requests one `sync_tenant` run per deferral whose time has come since
the previous tick (the cursor), keyed by tenant and resume time: a repeated tick launches nothing
twice, and a tenant deferred again gets a new key. The run resumes from the committed checkpoint.
A tenant whose token is missing when its deferral is due is not resumed (the run could only fail):
the tick says so, and its next scheduled sync after the token is set resumes from the checkpoint.
A tick requests at most MOST_RUNS_PER_TICK resumptions (ten thousand tenants deferred until one
window's reset come due together); the rest, the longest waiting first, follow at the next ticks.
"""

from __future__ import annotations

import logging
import time

import dagster as dg

from pipeline_assets.deferral import RESUMES_TAG
from pipeline_assets.jobs import sync_tenant
from pipeline_assets.partitions import tenant_partitions
from pipeline_assets.run_tags import TENANT_TAG, TIER_TAG
from resources.shared_state import SharedState
from resources.tenant_registry import TenantRegistry
from resources.utc import utc_text

from .tick_report import TickReport

TICK_SECONDS = 30
MOST_RUNS_PER_TICK = 200  # the daemon looks up each request's partition: thousands would take minutes


@dg.sensor(
    job=sync_tenant,
    minimum_interval_seconds=TICK_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Resumes the syncs that ended early because their tenant had to wait (a long Retry-After, "
    "a lockout, a spent budget), once the wait is over.",
)
def deferred_syncs(
    context: dg.SensorEvaluationContext, registry: TenantRegistry, state: SharedState
) -> dg.SensorResult | dg.SkipReason:
    now = time.time()
    # cursor: "<resume_at>" (every deferral due until then was taken), or "<resume_at> <tenant>" when a
    # tick took only part of them (every one up to that tenant, in (resume_at, tenant) order).
    after, _, after_tenant = (context.cursor or "").partition(" ")
    due = state.deferrals.due(now, float(after) if after else None, after_tenant)
    if not due:
        waiting = len(state.deferrals.waiting(now))
        return dg.SensorResult(skip_reason=f"no deferred sync is due ({waiting} tenants waiting)", cursor=str(now))
    cursor = str(now)
    if len(due) > MOST_RUNS_PER_TICK:  # oldest first: the next tick goes on from the last one taken
        due = due[:MOST_RUNS_PER_TICK]
        cursor = f"{due[-1].resume_at!r} {due[-1].tenant}"
        context.log.info(f"more deferred syncs are due than a tick requests ({MOST_RUNS_PER_TICK}); the rest follow")
    report = TickReport(context)
    tenants = report.read_tenants(registry).tenants
    registered = set(context.instance.get_dynamic_partitions(tenant_partitions.name))
    requests = []
    for deferral in due:
        with report.on_its_own(deferral.tenant):
            tenant = tenants.get(deferral.tenant)
            if tenant is None or not tenant.enabled or deferral.tenant not in registered:
                report.leave_out(
                    f"{deferral.tenant}: its sync was deferred, but it is not an enabled tenant of tenants.yaml now",
                    logging.INFO,
                )
            elif missing := tenant.missing_token():
                report.leave_out(
                    f"{deferral.tenant}: not resumed, {missing}; its next scheduled sync resumes from the checkpoint"
                )
            else:
                context.log.info(f"{deferral.tenant}: resuming the sync deferred until {utc_text(deferral.resume_at)}")
                requests.append(
                    dg.RunRequest(
                        run_key=f"resume:{deferral.tenant}:{deferral.resume_at:.0f}",
                        partition_key=deferral.tenant,
                        tags={TENANT_TAG: deferral.tenant, TIER_TAG: tenant.tier, RESUMES_TAG: deferral.run_id or ""},
                    )
                )
    if not requests:
        return dg.SensorResult(
            skip_reason=report.skip_reason(f"{len(due)} deferred syncs due, none resumed"), cursor=cursor
        )
    return dg.SensorResult(run_requests=requests, cursor=cursor)
