"""Two freshness tiers on the same assets: an hourly schedule for dashboard tenants, a daily one
for the rest. Moving a tenant between tiers is its `tier:` line in tenants.yaml.

Each schedule ticks every few minutes (`tier_slots.py`) and serves the tenants whose slot is this
tick. It asks Tasklane first (`tenant_probes.py`): a tenant with nothing new costs no run, only
conditional requests that answer `304`; a tenant that changed (or must sync anyway) gets a run of
the streams concerned. A tenant is served once per period: a check or a run of the period settles
it (its run key names the tier, the period and the tenant). A tenant whose slot has passed unserved
(skipped for budget, waiting, not reached in time, or moved into an earlier tick by a change to the
tier) is served at the next tick, before the tenants whose slot it is; a tenant that has had a run
of any kind since the period began (a new tenant's first sync, a tenant that changed tiers) is
settled for the period.

A tenant that is waiting (a deferred sync, pipeline_assets/deferral.py), whose rate window has
too little budget left, or whose token is missing is skipped for this tick, with the reason in
the tick's log, instead of asking or running only to end at once, fail or collect 429s. So is an
entry of tenants.yaml that is not valid (`tick_report.py`). A tenant of tenants.yaml that is not a
partition yet is left to its first sync (tenant_registry adds them in waves). Only what is worth
reading is logged tenant by tenant (runs requested, failures, tenants skipped or not reached);
current tenants are counted, and so are those awaiting their partitions, since ten thousand added
at once wait for hours.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import dagster as dg

from pipeline_assets.checks import CHECKS, check_name
from pipeline_assets.jobs import sync_tenant
from pipeline_assets.partitions import tenant_partitions
from pipeline_assets.run_tags import PARTITION_TAG, RUN_KEY_TAG, TENANT_TAG, TIER_TAG
from resources.control.deferrals import Deferral
from resources.control.tenant_checks import Outcome
from resources.shared_state import SharedState
from resources.streams import STREAMS
from resources.tasklane import TasklaneAPI
from resources.tenant_registry import TenantRegistry
from resources.tenants import Tenant
from resources.tiers import TIERS, Tier
from resources.utc import utc_text

from .tenant_probes import Verdict, plan, probe_all
from .tick_report import TickReport
from .tier_slots import slots

# One listing call per stream: less than that and a sync cannot even ask what changed.
MIN_CALLS_FOR_A_SYNC = 3
WHY_TAG = "dripfeed/why"  # on a tier's run: which streams it syncs, and why (tenant_probes.py's codes)
NOT_FAILED = [s for s in dg.DagsterRunStatus if s not in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)]
# A new tenant's first sync, requested by tenant_registry as it adds the partition, is the registry's:
# the daemon creates the run a moment after the partition, and a tier's tick in between would request
# a second first sync. A first sync that has not even started this long after is the tier's again, and
# so is a tenant onboarded in an earlier period (its first sync is in the instance by then).
FIRST_SYNC_GRACE_SECONDS = 1800
NEWCOMERS_NAMED = 10  # new tenants named in a tick's log line; the others are counted
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def run_key(tier: Tier, tick_time: datetime, tenant: str) -> str:
    return f"{tier.name}:{tier.period_label(tick_time)}:{tenant}"


def tier_run_requests(
    context: dg.ScheduleEvaluationContext,
    tasklane: TasklaneAPI,
    registry: TenantRegistry,
    state: SharedState,
    tier: Tier,
) -> list[dg.RunRequest] | dg.SkipReason:
    """A run request per tenant of `tier` due at this tick (or overdue) whose probe found changes or
    that must sync; every other due tenant checked and recorded."""
    started = time.monotonic()
    tick_time = context.scheduled_execution_time.astimezone(UTC)
    tick, period_start = tier.tick_of(tick_time), tier.period_start(tick_time)
    report = TickReport(context)
    tenants = report.read_tenants(registry).tenants
    placed = slots(tier, tenants.values())
    prefix = run_key(tier, tick_time, "")
    requested = {
        key.removeprefix(prefix) for _, keys in context.instance.get_run_tags([RUN_KEY_TAG], prefix) for key in keys
    }
    due = [t for t, slot in placed.items() if slot <= tick and t not in requested]
    registered = set(context.instance.get_dynamic_partitions(tenant_partitions.name))
    candidates = sorted((t for t in due if t in registered), key=placed.get)
    newcomers = sorted(t for t in due if t not in registered)
    period = prefix.rstrip(":")
    settled = _settled(context.instance, state, candidates, period_start, period)
    now = time.time()
    to_serve = _servable(report, state, [tenants[t] for t in candidates if t not in settled], now)
    ids = [tenant.id for tenant in to_serve]
    checks, exports = state.stream_checks.of_tenants(ids), state.export_jobs.of_tenants(ids)
    ended = {d.tenant: d for d in state.deferrals.due(now)}
    plans = [plan(tenant, checks, exports, ended.get(tenant.id), now) for tenant in to_serve]
    verdicts, unreached = probe_all(tasklane, state, plans, started)
    _record(state, verdicts, now, period)
    requests = [_run_request(tier, tick_time, v) for v in verdicts if v.run]
    state.sync_totals.add_tick(tier.name, probes=len(verdicts), runs_requested=len(requests))
    summary = _log(report, verdicts, unreached, newcomers, tick)
    if not requests:
        return dg.SkipReason(report.skip_reason(summary))
    return requests


def _settled(
    instance: dg.DagsterInstance, state: SharedState, tenants: list[str], since: datetime, period: str
) -> set[str]:
    """Which of `tenants` are done for the `period` that began `since`: checked by a tick of it, or
    with a run since then that did not fail (whoever launched it: a first sync, a resumption, a
    backfill, a run of their previous tier), or with a run queued or under way, or a first sync that
    tenant_registry has just requested."""
    if not tenants:
        return set()
    onboarding_since = max(time.time() - FIRST_SYNC_GRACE_SECONDS, since.timestamp())
    checked = state.tenant_checks.settled(tenants, period, onboarding_since=onboarding_since)
    runs = [
        dg.RunsFilter(tags={PARTITION_TAG: tenants}, created_after=since, statuses=NOT_FAILED),
        dg.RunsFilter(tags={PARTITION_TAG: tenants}, statuses=IN_FLIGHT),
    ]
    ran = {
        record.dagster_run.tags[PARTITION_TAG]
        for runs_filter in runs
        for record in instance.get_run_records(runs_filter)
    }
    return checked | ran


def _servable(report: TickReport, state: SharedState, due: list[Tenant], now: float) -> list[Tenant]:
    """The due tenants that can be served now; each other one is a line in the tick's log."""
    waiting = state.deferrals.waiting(now)
    budget = state.budget
    windows = budget.windows(t.id for t in due)
    servable = []
    for tenant in due:
        with report.on_its_own(tenant.id):
            if tenant.id in waiting:
                deferral = waiting[tenant.id]
                report.leave_out(
                    f"{tenant.id}: deferred until {utc_text(deferral.resume_at)} ({deferral.reason})", logging.INFO
                )
            elif (left := budget.calls_left(tenant, now, windows.get(tenant.id, {})))[0] is not None and (
                left[0] < MIN_CALLS_FOR_A_SYNC
            ):
                report.leave_out(
                    f"{tenant.id}: {left[0]} calls left in its rate window until {utc_text(left[1])}", logging.INFO
                )
            elif missing := tenant.missing_token():
                report.leave_out(f"{tenant.id}: {missing}")
            else:
                servable.append(tenant)
    return servable


def _record(state: SharedState, verdicts: list[Verdict], now: float, period: str) -> None:
    """What the probes found, for every tenant at once: streams found current count as synced now, a
    throttle the vendor asked for makes every caller of the tenant wait."""
    state.stream_checks.record_checked(((v.tenant, stream) for v in verdicts for stream in v.current), now)
    state.tenant_checks.record(((v.tenant, v.outcome, v.detail, v.error_class) for v in verdicts), now, period=period)
    for verdict in verdicts:
        throttled = verdict.throttled
        if throttled is not None and throttled.vendor:
            reason = f"{throttled.reason} (met by a tier's probe)"
            state.deferrals.defer(Deferral(verdict.tenant, throttled.resume_at, reason, now, vendor_block=True))


def _run_request(tier: Tier, tick_time: datetime, verdict: Verdict) -> dg.RunRequest:
    """A run of the verdict's streams (the whole job when every stream runs) with their checks."""
    why = ", ".join(f"{stream}: {code}" for stream, (code, _) in sorted(verdict.run.items()))
    tags = {TENANT_TAG: verdict.tenant, TIER_TAG: tier.name, WHY_TAG: why}
    if set(verdict.run) == set(STREAMS):
        return dg.RunRequest(run_key=run_key(tier, tick_time, verdict.tenant), partition_key=verdict.tenant, tags=tags)
    streams = [stream for stream in STREAMS if stream in verdict.run]
    return dg.RunRequest(
        run_key=run_key(tier, tick_time, verdict.tenant),
        partition_key=verdict.tenant,
        asset_selection=[dg.AssetKey(stream) for stream in streams],
        asset_check_keys=[
            dg.AssetCheckKey(dg.AssetKey(stream), check_name(stream, check))
            for stream in streams
            for check in CHECKS[stream]
        ],
        tags=tags,
    )


def _log(report: TickReport, verdicts: list[Verdict], unreached: list[str], newcomers: list[str], tick: int) -> str:
    """A line per tenant worth reading; the tick's summary, returned. Tenants that are not partitions
    yet are one line: tenant_registry adds them in waves, so ten thousand of them waiting for their
    first syncs cost a tick nothing per tenant."""
    by_outcome: dict[Outcome, list[Verdict]] = {}
    for verdict in verdicts:
        by_outcome.setdefault(verdict.outcome, []).append(verdict)
    for verdict in by_outcome.get(Outcome.CHANGED, []):
        report.log.info(f"{verdict.tenant}: a run, for {verdict.detail}")
    for verdict in by_outcome.get(Outcome.FAILED, []):
        report.leave_out(f"{verdict.tenant}: its check failed: {verdict.detail}", logging.ERROR)
    for verdict in by_outcome.get(Outcome.UNREACHED, []):
        report.leave_out(f"{verdict.tenant}: not checked: {verdict.detail}; the next tick tries again", logging.INFO)
    if unreached:
        names = ", ".join(unreached)
        report.leave_out(
            f"{len(unreached)} tenants not reached before the tick's time was up, first at the next tick: {names}"
        )
    counts = ", ".join(
        f"{len(by_outcome.get(o, []))} {o}"
        for o in (Outcome.CURRENT, Outcome.CHANGED, Outcome.FAILED, Outcome.UNREACHED)
    )
    summary = f"tick {tick} of the period: {len(verdicts)} tenants checked ({counts})"
    if newcomers:
        named = ", ".join(newcomers[:NEWCOMERS_NAMED]) + (", ..." if len(newcomers) > NEWCOMERS_NAMED else "")
        report.log.info(f"not partitions yet, left to tenant_registry's first syncs: {named}")
        summary += f"; {len(newcomers)} not partitions yet, left to their first syncs"
    report.log.info(summary)
    return summary


def tier_schedule(tier: Tier) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=f"{tier.name}_tenants",
        cron_schedule=tier.cron,
        execution_timezone="UTC",
        job=sync_tenant,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Checks each {tier.name} tenant of tenants.yaml once every {tier.period_minutes} minutes, at its "
        f"slot (one of the period's {tier.ticks} ticks), and syncs the streams that changed.",
    )
    def _schedule(
        context: dg.ScheduleEvaluationContext, tasklane: TasklaneAPI, registry: TenantRegistry, state: SharedState
    ) -> list[dg.RunRequest] | dg.SkipReason:
        return tier_run_requests(context, tasklane, registry, state, tier)

    return _schedule


def tier_schedules(tiers: dict[str, Tier] = TIERS) -> list[dg.ScheduleDefinition]:
    return [tier_schedule(t) for t in tiers.values()]
