"""A sync that must wait long is not kept waiting: it ends, and is resumed after the wait.

Like Airflow's reschedule mode: when a tenant may not call Tasklane for longer than a short bound
(a long `Retry-After`, a lockout, its budget spent far from the window's reset), the sync has
already committed its checkpoint (`incremental_sync.py`); its step records the deferral in the
control store, tags the run `dripfeed/deferred_until`, records an observation of the asset
partition with the reason, and ends without a materialization. The run succeeds: nothing
failed, so nothing alerts, and the tenant's data does not count as fresh. Steps that depend on
a deferred one are skipped. The `deferred_syncs` sensor requests the resumption run once the
time has come.
"""

from __future__ import annotations

import time

import dagster as dg

from resources.control.deferrals import Deferral
from resources.shared_state import SharedState
from resources.tasklane.errors import TenantThrottled
from resources.utc import utc_text

DEFERRED_UNTIL_TAG = "dripfeed/deferred_until"  # on a run that ended early: when its tenant may resume
RESUMES_TAG = "dripfeed/resumes"  # on a resumption run: the run it resumes


def defer_run(
    context: dg.AssetExecutionContext, state: SharedState, stream: str, throttled: TenantThrottled
) -> dg.AssetObservation:
    """Record the deferral, mark the run, and say so; the caller then ends the step."""
    tenant = context.partition_key
    recorded = state.deferrals.defer(
        Deferral(
            tenant=tenant,
            resume_at=throttled.resume_at,
            reason=throttled.reason,
            deferred_at=time.time(),
            run_id=context.run.run_id,
            vendor_block=throttled.vendor,
        )
    )
    until = utc_text(recorded.resume_at)
    context.instance.add_run_tags(context.run.run_id, {DEFERRED_UNTIL_TAG: until})
    context.log.warning(
        f"tenant {tenant!r} {stream}: deferred until {until} ({throttled.reason}). What was fetched is "
        "committed; the run ends now and the deferred_syncs sensor resumes the tenant after that time."
    )
    return dg.AssetObservation(
        asset_key=dg.AssetKey(stream),
        partition=tenant,
        metadata={"deferred_until": until, "reason": throttled.reason},
    )
