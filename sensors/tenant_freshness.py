"""The freshness sensor: which tenants are stale, shown per partition in the UI, alerted once.

Every tick it evaluates `tasks_fresh` for each registered tenant of tenants.yaml and records an
evaluation when a tenant's state changes (and for every tenant on the first tick), so the
asset's check column shows the stale partitions. A tenant that turns stale is alerted once; it
alerts again only after it was fresh in between. A new tenant counts as fresh until its tier's
allowance has passed since the sensor first saw it, so onboarding does not page anyone. A tenant
whose evaluation fails is named in the tick's log and keeps its last state; the others go on."""

import json
import time

import dagster as dg

from pipeline_assets.assets import tasks
from pipeline_assets.deferral import utc
from pipeline_assets.freshness import FRESH_CHECK, freshness
from pipeline_assets.partitions import tenant_partitions
from resources.alerts import Alerts
from resources.tasklane import TasklaneAPI

from .tick_report import TickReport


@dg.sensor(
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates tasks_fresh for every tenant between syncs and alerts once when a tenant turns stale.",
)
def tenant_freshness(context: dg.SensorEvaluationContext, tasklane: TasklaneAPI, alerts: Alerts) -> dg.SensorResult:
    # cursor: tenant -> {"fresh": its state at the last tick, "known_since": when first seen}
    seen: dict[str, dict] = json.loads(context.cursor) if context.cursor else {}
    registered = set(context.instance.get_dynamic_partitions(tenant_partitions.name))
    now, evaluations, state = time.time(), [], {}
    report = TickReport(context)
    tenants = [t for t in report.read_tenants(tasklane).tenants.values() if t.enabled and t.id in registered]
    waiting = tasklane.deferrals.waiting(now)
    for tenant in sorted(tenants, key=lambda t: t.id):
        before = seen.get(tenant.id, {})
        known_since = before.get("known_since", now)
        state[tenant.id] = {**before, "known_since": known_since}  # as it was, should this tenant's part fail
        with report.on_its_own(tenant.id):
            fresh, explanation = freshness(context.instance, tenant.id, tenant.tier, now, known_since)
            if not fresh and tenant.id in waiting:  # stale because it is waiting: say for what, and until when
                deferral = waiting[tenant.id]
                explanation += f"; its sync is deferred until {utc(deferral.resume_at)} ({deferral.reason})"
            if before.get("fresh") != fresh:
                evaluations.append(
                    dg.AssetCheckEvaluation(
                        asset_key=tasks.key,
                        check_name=FRESH_CHECK,
                        passed=fresh,
                        partition=tenant.id,
                        description=explanation,
                        metadata={"tier": tenant.tier},
                    )
                )
                if not fresh:
                    context.log.warning(f"stale: {explanation}")
                    link = alerts.link("/assets/tasks")
                    fields = {"tenant": tenant.id, "asset": "tasks", "error_class": "stale", "reason": explanation}
                    text = f":hourglass: dripfeed: {explanation} <{link}|tasks>"
                    alerts.post(context.log, text, {**fields, "url": link})
            state[tenant.id] = {"fresh": fresh, "known_since": known_since}  # after its alert: a lost one is sent again
    return dg.SensorResult(asset_events=evaluations, cursor=json.dumps(state))
