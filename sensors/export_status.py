"""The export status sensor: polls the open history exports, launches the load of each finished one.

Per tick, each tenant with a job due costs one listing call (`GET exports?status=queued,running`)
plus one call per job that left that list, and a job is due only once the vendor's
`poll_after_seconds` has passed. Tenants are polled POLL_THREADS at once, the longest waiting first;
a tick starts no poll after TICK_SECONDS, and the tenants it did not reach are polled first next.
Everything it knows lives in the control store, so a restarted
daemon carries on where it stopped; it submits again only a job whose submission was never
answered, under the same idempotency key. What happens to a job is decided by
`pipeline_assets/export_lifecycle.py`: a failed or expired job is submitted again under a new
key, up to three attempts in all; one that fails on its third, or is not done within the timeout,
is abandoned and alerted, and the tenant's next sync reads its history through the listing instead.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from logging import INFO

import dagster as dg

from pipeline_assets.checks import check_name
from pipeline_assets.export_lifecycle import Action, Decision, decide
from pipeline_assets.history_exports import EXPORT_TAG, submit
from pipeline_assets.jobs import sync_tenant
from pipeline_assets.run_tags import onboarding_tags
from resources.alerts import Alerts
from resources.control.deferrals import Deferral
from resources.control.export_jobs import ExportJob, ExportJobs, ExportStatus
from resources.shared_state import SharedState
from resources.tasklane import TasklaneAPI
from resources.tasklane.client import TenantClient
from resources.tasklane.errors import TasklaneFailure, TenantThrottled
from resources.tenant_registry import TenantRegistry

from .tick_report import TickReport

DEFAULT_POLL_SECONDS = 30
DEFAULT_TIMEOUT_HOURS = 6.0
RETRY_TENANT_SECONDS = 300  # after a tenant's poll failed (a revoked token, an outage)
# A tick must end well within Dagster's 60 s: no poll starts after TICK_SECONDS, and each call of a
# tick is bounded too (TasklaneAPI.client(..., in_tick=True): 18 s at most).
TICK_SECONDS = 25.0
POLL_THREADS = 16


def load_request(job: ExportJob) -> dg.RunRequest:
    """The run that loads a succeeded job: only its stream's asset, with the checks that need
    nothing else (the references check waits for the next sync, when every parent has loaded)."""
    asset = dg.AssetKey(job.stream)
    return dg.RunRequest(
        run_key=f"export:{job.export_id}",
        partition_key=job.tenant,
        asset_selection=[asset],
        asset_check_keys=[dg.AssetCheckKey(asset, check_name(job.stream, c)) for c in ("schema_drift", "unique_keys")],
        tags={**onboarding_tags(job.tenant), EXPORT_TAG: job.export_id or ""},
    )


class _Poll:
    """One tick's work on the due jobs of one tenant."""

    def __init__(
        self,
        context: dg.SensorEvaluationContext,
        tasklane: TasklaneAPI,
        registry: TenantRegistry,
        state: SharedState,
        alerts: Alerts,
        timeout: float,
        report: TickReport,
    ) -> None:
        self.context, self.tasklane, self.state, self.alerts = context, tasklane, state, alerts
        self.jobs, self.timeout, self.report = state.export_jobs, timeout, report
        self.tenants = report.read_tenants(registry).tenants  # once per tick: 500 tenants must not mean 500 reads
        self.runs: list[dg.RunRequest] = []

    def tenant(self, tenant: str, due: list[ExportJob], now: float) -> None:
        live = []
        for job in due:  # past their timeout: abandoned without a call
            decision = decide(job, None, now, timeout_seconds=self.timeout)
            if decision.action == Action.ABANDON:
                self.abandon(decision.job, decision.reason)
            else:
                live.append(job)
        if not live:
            return
        if tenant not in self.tenants:
            self.report.leave_out(f"tenant {tenant!r} has open exports but is not a valid tenant of tenants.yaml now")
            return
        left, _ = self.state.budget.calls_left(self.tenants[tenant], now)
        if left is not None and left < 1:
            self.report.leave_out(f"tenant {tenant!r}: no call left in its rate window; polls its exports later", INFO)
            return
        client = self.tasklane.client(self.tenants[tenant], self.state, in_tick=True)
        open_now = {answer.id: answer for answer in client.list_open_exports()}
        for job in live:
            answer = None
            if job.status != ExportStatus.SUBMITTING:  # a job never answered is submitted again, same key
                answer = open_now.get(job.export_id) or client.get_export(job.export_id or "")
            self.act(client, decide(job, answer, now, timeout_seconds=self.timeout))

    def act(self, client: TenantClient, decision: Decision) -> None:
        """Record what the lifecycle decided and do it."""
        job = decision.job
        if decision.action == Action.SUBMIT:
            self.jobs.save(job)  # before the POST: a crash in between submits the same key again
            if decision.reason:
                self.context.log.warning(f"tenant {job.tenant!r}: {decision.reason}; submitting it again")
            submit(client, self.jobs, job)
        elif decision.action == Action.LOAD:
            self.jobs.save(job)
            self.runs.append(load_request(job))
            self.context.log.info(f"tenant {job.tenant!r}: export {job.export_id} ({job.stream}) done; loading it")
        elif decision.action == Action.ABANDON:
            self.abandon(job, decision.reason)
        else:
            self.jobs.save(job)

    def abandon(self, job: ExportJob, reason: str) -> None:
        self.jobs.save(job)
        text = (
            f"dripfeed: tenant {job.tenant}'s {job.stream} history export was abandoned: {reason}. "
            "Its next sync reads the history through the listing instead."
        )
        self.context.log.warning(text)
        self.alerts.post(
            self.context.log,
            text,
            {
                "tenant": job.tenant,
                "asset": job.stream,
                "error_class": "vendor_outage",
                "reason": reason,
                "url": self.alerts.link(f"/assets/{job.stream}"),
            },
        )


def poll_later(jobs: ExportJobs, batch: list[ExportJob], when: float) -> None:
    for job in batch:
        current = jobs.get(job.tenant, job.stream)  # this tick may have changed it before stopping
        if current is not None and not current.status.is_terminal:
            jobs.save(current.but(next_poll_at=when))


def export_status_sensor(
    poll_seconds: int = DEFAULT_POLL_SECONDS, timeout_hours: float = DEFAULT_TIMEOUT_HOURS
) -> dg.SensorDefinition:
    """The sensor, ticking every `poll_seconds`; a job not done `timeout_hours` after its submission
    is abandoned. (definitions.py sets both from the environment.)"""

    @dg.sensor(
        name="export_status",
        job=sync_tenant,
        minimum_interval_seconds=poll_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Polls the open history exports (one listing call per tenant that has any) and loads "
        "finished ones.",
    )
    def export_status(
        context: dg.SensorEvaluationContext,
        tasklane: TasklaneAPI,
        registry: TenantRegistry,
        state: SharedState,
        alerts: Alerts,
    ) -> dg.SensorResult | dg.SkipReason:
        return poll_exports(context, tasklane, registry, state, alerts, timeout_hours * 3600)

    return export_status


def poll_exports(
    context: dg.SensorEvaluationContext,
    tasklane: TasklaneAPI,
    registry: TenantRegistry,
    state: SharedState,
    alerts: Alerts,
    timeout: float,
    tick_seconds: float = TICK_SECONDS,
) -> dg.SensorResult | dg.SkipReason:
    """One tick: each tenant with a due job on its own, so that one tenant's failure stops no other."""
    jobs = state.export_jobs
    now = time.time()
    due = sorted(jobs.due(now, timeout), key=lambda job: job.tenant)
    if not due:
        return dg.SkipReason(f"no export job is due ({jobs.open_count()} open)")
    report = TickReport(context)
    poll = _Poll(context, tasklane, registry, state, alerts, timeout, report)
    started = time.monotonic()
    by_tenant: dict[str, list[ExportJob]] = {}
    for job in sorted(due, key=lambda job: (job.next_poll_at, job.tenant)):  # the longest waiting first
        by_tenant.setdefault(job.tenant, []).append(job)

    def one(tenant: str, batch: list[ExportJob]) -> bool:
        """Poll the tenant's jobs; False when the tick's time was up before it started."""
        if time.monotonic() - started > tick_seconds:
            return False
        try:  # each tenant on its own: whatever happens to it, the others are polled as usual
            poll.tenant(tenant, batch, now)
        except TenantThrottled as throttled:
            if throttled.vendor:  # every caller of the tenant must wait, syncs included
                reason = f"{throttled.reason} (met by the export_status sensor)"
                state.deferrals.defer(Deferral(tenant, throttled.resume_at, reason, now, vendor_block=True))
            report.leave_out(f"{throttled}; its exports are polled again then", INFO)
            poll_later(jobs, batch, throttled.resume_at)
        except TasklaneFailure as failure:
            report.leave_out(
                f"{failure.description.rstrip('.')}; its exports are polled again in {RETRY_TENANT_SECONDS} s"
            )
            poll_later(jobs, batch, now + RETRY_TENANT_SECONDS)
        except Exception as error:  # a malformed answer, a bug: reported, and this tenant waits like a failure
            report.unexpected(tenant, error)
            poll_later(jobs, batch, now + RETRY_TENANT_SECONDS)
        return True

    with ThreadPoolExecutor(max_workers=POLL_THREADS, thread_name_prefix="dripfeed-export-poll") as pool:
        reached = list(pool.map(lambda item: one(*item), by_tenant.items()))
    if not all(reached):
        report.leave_out(f"{reached.count(False)} tenants' exports wait for the next tick: this one is spent", INFO)
    if not poll.runs:
        return dg.SkipReason(report.skip_reason(f"polled {len(due)} export jobs; none finished"))
    return dg.SensorResult(run_requests=poll.runs)
