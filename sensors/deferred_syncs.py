"""The deferred syncs sensor: resumes each tenant whose sync ended early, once its wait is over.

A sync that would have waited long (pipeline_assets/deferral.py) ended with a deferral in the
control store. Every tick requests one `sync_tenant` run per deferral whose time has come since
the previous tick (the cursor), keyed by tenant and resume time: a repeated tick launches nothing
twice, and a tenant deferred again gets a new key. The run resumes from the committed checkpoint.
A tenant whose token is missing when its deferral is due is not resumed (the run could only fail):
the tick says so, and its next scheduled sync after the token is set resumes from the checkpoint.
"""

from __future__ import annotations

import logging
import time

import dagster as dg

from pipeline_assets.deferral import RESUMES_TAG, utc
from pipeline_assets.jobs import TENANT_TAG, TIER_TAG, sync_tenant
from pipeline_assets.partitions import tenant_partitions
from resources.tasklane import TasklaneAPI

from .tick_report import TickReport

TICK_SECONDS = 30


@dg.sensor(
    job=sync_tenant,
    minimum_interval_seconds=TICK_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Resumes the syncs that ended early because their tenant had to wait (a long Retry-After, "
    "a lockout, a spent budget), once the wait is over.",
)
def deferred_syncs(context: dg.SensorEvaluationContext, tasklane: TasklaneAPI) -> dg.SensorResult | dg.SkipReason:
    now = time.time()
    after = float(context.cursor) if context.cursor else None
    due = tasklane.deferrals.due(now, after)
    if not due:
        waiting = len(tasklane.deferrals.waiting(now))
        return dg.SensorResult(skip_reason=f"no deferred sync is due ({waiting} tenants waiting)", cursor=str(now))
    report = TickReport(context)
    tenants = report.read_tenants(tasklane).tenants
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
                context.log.info(f"{deferral.tenant}: resuming the sync deferred until {utc(deferral.resume_at)}")
                requests.append(
                    dg.RunRequest(
                        run_key=f"resume:{deferral.tenant}:{deferral.resume_at:.0f}",
                        partition_key=deferral.tenant,
                        tags={TENANT_TAG: deferral.tenant, TIER_TAG: tenant.tier, RESUMES_TAG: deferral.run_id or ""},
                    )
                )
    if not requests:
        return dg.SensorResult(
            skip_reason=report.skip_reason(f"{len(due)} deferred syncs due, none resumed"), cursor=str(now)
        )
    return dg.SensorResult(run_requests=requests, cursor=str(now))
