"""Per-tenant alerts: one message per failed tenant run, to a Slack-compatible webhook.

The message names the tenant, the asset, the error class (auth, config,
schema_drift, vendor_outage, process_died, bug), a one-line reason and the run's URL. Reasons come from
`TasklaneFailure`, whose texts never hold a token, or, for a run whose process died, from whoever
failed the run: sensor dead_run_workers or the code server (Dagster's exit explanation)."""

import dagster as dg

from pipeline_assets.jobs import sync_tenant
from pipeline_assets.run_tags import PARTITION_TAG
from resources.alerts import Alerts

from .dead_run_workers import DEAD_RUN_MESSAGE

# How Dagster's code server explains a run it failed because the run's process exited (killed by
# the OOM killer, say): an engine event just before the run's failure, whose own message is generic.
CRASH_EXPLANATION = "Run execution process for "


def crash_explanation(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """Dagster's explanation of the run's process exiting, when its code server failed the run."""
    latest = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=10, ascending=False
    ).records
    for record in latest:
        message = record.event_log_entry.dagster_event.message or ""
        if CRASH_EXPLANATION in message:  # after the code server's "[DagsterApiServer] "
            return message[message.index(CRASH_EXPLANATION) :]
    return None


def failure_alert(context: dg.RunFailureSensorContext, alerts: Alerts) -> dict[str, str]:
    """The alert's fields, from the run's tags and its first failed step."""
    run = context.dagster_run
    tenant = run.tags.get(PARTITION_TAG, "unknown")
    reason = context.failure_event.message or "the run failed"
    error_class = "process_died" if reason.startswith(DEAD_RUN_MESSAGE) else "bug"
    asset = "the run"
    step_failures = context.get_step_failure_events()
    if step_failures:
        event = step_failures[0]
        failure = event.step_failure_data
        metadata = failure.user_failure_data.metadata if failure and failure.user_failure_data else {}
        asset = event.step_key or asset
        error_class = metadata["error_class"].value if "error_class" in metadata else "bug"
        reason = failure.error.message if failure and failure.error else reason
    elif (crash := crash_explanation(context.instance, run.run_id)) is not None:
        error_class, reason = "process_died", crash
    return {
        "tenant": tenant,
        "asset": asset,
        "error_class": error_class,
        "reason": reason.strip().splitlines()[0][:300] if reason.strip() else "the run failed",
        "run_url": alerts.link(f"/runs/{run.run_id}"),
    }


@dg.run_failure_sensor(
    monitored_jobs=[sync_tenant],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts one alert per failed tenant run to the alert webhook (Slack-compatible JSON).",
)
def tenant_failure_alerts(context: dg.RunFailureSensorContext, alerts: Alerts) -> None:
    alert = failure_alert(context, alerts)
    text = (
        f":red_circle: dripfeed: tenant *{alert['tenant']}*, {alert['asset']} failed "
        f"({alert['error_class']}): {alert['reason']} <{alert['run_url']}|run>"
    )
    alerts.post(context.log, text, alert)
