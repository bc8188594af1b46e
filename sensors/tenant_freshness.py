"""The freshness sensor: every tenant's state, shown in the UI at almost no cost to the instance, and
alerted once when it turns stale or starts failing.

Every tick it reads the control store (a few queries, whatever the number of tenants) and:
- records `tasks_fresh` for a tenant whose state (fresh, stale, failing) changed since the instance
  was last told, or whose `tasks` a run has materialized since (the UI shows a partition's check
  for its latest materialization), and once a day for each tenant as a heartbeat ("last checked
  current at ..."), at most MOST_EVALUATIONS_PER_TICK of them, changes first (the rest follow at
  the next ticks): a quiet tenant checked every hour costs the instance one event a day;
- records one `<tier>_tenants_fresh` evaluation per tier, counting its fresh, stale and failing
  tenants and naming them;
- alerts a tenant that turns stale (again only after it was fresh in between), and a tenant whose
  probe failed (a revoked token, a malformed answer) once per failure episode. A failed sync run
  is alerted by the run failure sensor (tenant_alerts.py) instead.

A new tenant counts as fresh until its tier's allowance has passed since the sensor first saw it, so
onboarding alerts nobody. A tenant whose part of the tick fails is named in the tick's log; the
others go on. The sensor records its evaluations itself (runless_checks.py says why), each before
the state it reports is saved: an evaluation lost to a crash is recorded again by the next tick.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace

import dagster as dg

from pipeline_assets.assets import tasks
from pipeline_assets.freshness import (
    TenantStatus,
    statuses,
    tenant_evaluation,
    tier_evaluation,
)
from pipeline_assets.partitions import tenant_partitions
from resources.alerts import Alerts
from resources.control.tenant_checks import TenantCheck
from resources.shared_state import SharedState
from resources.tenant_registry import TenantRegistry
from resources.tiers import TIERS, Tier
from resources.utc import utc_text

from .runless_checks import latest_materializations, record, targets
from .tick_report import TickReport

HEARTBEAT_SECONDS = 86400.0
MOST_EVALUATIONS_PER_TICK = 500  # each is written on its own by the daemon (~15 ms on Postgres)
MOST_ALERTS_PER_TICK = 50  # the rest are sent by the next ticks
TICK_SECONDS = 300


def report_tenants(
    context: dg.SensorEvaluationContext,
    registry: TenantRegistry,
    state: SharedState,
    alerts: Alerts,
    tiers: Mapping[str, Tier] = TIERS,
) -> dg.SkipReason:
    now = time.time()
    report = TickReport(context)
    report.read_tenants(registry)
    instance = context.instance
    registered = set(instance.get_dynamic_partitions(tenant_partitions.name))
    found = statuses(registry, state, registered, now, tiers)
    checks = state.tenant_checks.of_tenants(s.tenant for s in found)
    latest = latest_materializations(instance, tasks.key)
    due: list[tuple[int, TenantStatus, TenantCheck]] = []
    changed: dict[str, TenantCheck] = {}
    alerts_left = MOST_ALERTS_PER_TICK
    for status in found:
        check = checks.get(status.tenant) or TenantCheck(status.tenant, known_since=now)
        if status.tenant not in checks:
            changed[status.tenant] = check  # first seen now: its allowance for a first sync starts
        if check.failing_since is not None and not check.failure_alerted and alerts_left > 0:
            with report.on_its_own(status.tenant):
                _alert_failure(context, alerts, check)
                alerts_left -= 1
                changed[status.tenant] = check = replace(check, failure_alerted=True)
        if status.state != check.reported_state:
            due.append((0 if status.state == "stale" else 1, status, check))
        elif latest.get(status.tenant) != check.reported_target:  # a run materialized it since
            due.append((2, status, check))
        elif (check.reported_at or 0) <= now - HEARTBEAT_SECONDS:
            due.append((3, status, check))
    chosen = sorted(due, key=lambda item: (item[0], item[1].tenant))[:MOST_EVALUATIONS_PER_TICK]
    targeted = targets(instance, tasks.key, (latest[s.tenant] for _, s, _ in chosen if s.tenant in latest))
    for _, status, check in chosen:
        with report.on_its_own(status.tenant):
            if status.state == "stale" and check.reported_state != "stale":
                context.log.warning(f"stale: {status.explanation}")
                _alert_stale(context, alerts, status)
            record(instance, tenant_evaluation(status, targeted.get(status.tenant)))
            changed[status.tenant] = replace(
                check, reported_state=status.state, reported_at=now, reported_target=latest.get(status.tenant)
            )
    if len(due) > len(chosen):
        context.log.info(f"{len(due) - len(chosen)} tenants' evaluations wait for the next tick")
    newest = max(latest.values(), default=None)
    tier_target = targets(instance, tasks.key, [newest] if newest else []).popitem()[1] if newest else None
    summaries = []
    for tier in tiers:
        evaluation = tier_evaluation(tier, [s for s in found if s.tier == tier], tier_target)
        record(instance, evaluation)
        summaries.append(evaluation.description or "")
    state.tenant_checks.save(changed.values())
    return dg.SkipReason(f"{len(chosen)} tenants' freshness recorded. " + " | ".join(summaries))


def _alert_stale(context: dg.SensorEvaluationContext, alerts: Alerts, status: TenantStatus) -> None:
    link = alerts.link(f"/assets/{tasks.key.path[-1]}")
    fields = {"tenant": status.tenant, "asset": "tasks", "error_class": "stale", "reason": status.explanation}
    alerts.post(context.log, f":hourglass: dripfeed: {status.explanation} <{link}|tasks>", {**fields, "url": link})


def _alert_failure(context: dg.SensorEvaluationContext, alerts: Alerts, check: TenantCheck) -> None:
    """A probe's failure (a run's is alerted by the run failure sensor): once per episode."""
    link = alerts.link(f"/assets/{tasks.key.path[-1]}")
    reason = (check.detail or "its last check failed").splitlines()[0][:300]
    fields = {
        "tenant": check.tenant,
        "asset": "the tier's check",
        "error_class": check.error_class or "bug",
        "reason": reason,
        "url": link,
    }
    text = (
        f":red_circle: dripfeed: tenant *{check.tenant}*, its check at {utc_text(check.checked_at)} failed "
        f"({fields['error_class']}): {reason} <{link}|tasks>"
    )
    alerts.post(context.log, text, fields)


def tenant_freshness_sensor(tiers: Mapping[str, Tier] = TIERS) -> dg.SensorDefinition:
    """The sensor, judging tenants by `tiers` (the code location's, which may be shortened)."""

    @dg.sensor(
        name="tenant_freshness",
        minimum_interval_seconds=TICK_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Records each tenant's freshness when it changes (and daily), one summary per tier, and "
        "alerts once when a tenant turns stale or its check starts failing.",
    )
    def tenant_freshness(
        context: dg.SensorEvaluationContext, registry: TenantRegistry, state: SharedState, alerts: Alerts
    ) -> dg.SkipReason:
        return report_tenants(context, registry, state, alerts, tiers)

    return tenant_freshness


tenant_freshness = tenant_freshness_sensor()  # with the default tiers
