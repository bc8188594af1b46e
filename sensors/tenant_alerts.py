"""Per-tenant alerts: one message per failed tenant run, to a Slack-compatible webhook.

The message names the tenant, the asset, the error class (auth, config,
schema_drift, vendor_outage, bug), a one-line reason and the run's URL. Reasons come from
`TasklaneFailure`, whose texts never hold a token."""

import logging
import os

import dagster as dg
import requests

from pipeline_assets.jobs import sync_tenant

WEBHOOK_ENV = "DRIPFEED_ALERT_WEBHOOK_URL"
WEBSERVER_ENV = "DRIPFEED_WEBSERVER_URL"  # where people open Dagster; the run's link starts with it
DEFAULT_WEBSERVER = "http://localhost:3000"


def webserver_link(path: str) -> str:
    """A link into the Dagster UI, for alerts: $DRIPFEED_WEBSERVER_URL followed by `path`."""
    return os.environ.get(WEBSERVER_ENV, DEFAULT_WEBSERVER).rstrip("/") + path


def failure_alert(context: dg.RunFailureSensorContext) -> dict[str, str]:
    """The alert's fields, from the run's tags and its first failed step."""
    run = context.dagster_run
    tenant = run.tags.get("dagster/partition", "unknown")
    asset, error_class, reason = "the run", "bug", context.failure_event.message or "the run failed"
    for event in context.get_step_failure_events():
        failure = event.step_failure_data
        metadata = failure.user_failure_data.metadata if failure and failure.user_failure_data else {}
        asset = event.step_key or asset
        error_class = metadata["error_class"].value if "error_class" in metadata else "bug"
        reason = failure.error.message if failure and failure.error else reason
        break
    return {
        "tenant": tenant,
        "asset": asset,
        "error_class": error_class,
        "reason": reason.strip().splitlines()[0][:300] if reason.strip() else "the run failed",
        "run_url": webserver_link(f"/runs/{run.run_id}"),
    }


@dg.run_failure_sensor(
    monitored_jobs=[sync_tenant],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Posts one alert per failed tenant run to ${WEBHOOK_ENV} (Slack-compatible JSON).",
)
def tenant_failure_alerts(context: dg.RunFailureSensorContext) -> None:
    alert = failure_alert(context)
    text = (
        f":red_circle: dripfeed: tenant *{alert['tenant']}*, {alert['asset']} failed "
        f"({alert['error_class']}): {alert['reason']} <{alert['run_url']}|run>"
    )
    post_alert(context.log, text, alert)


def post_alert(log: logging.Logger | dg.DagsterLogManager, text: str, fields: dict[str, str]) -> None:
    """POST `{"text": ..., **fields}` to the webhook, or log it when none is configured."""
    url = os.environ.get(WEBHOOK_ENV)
    if not url:
        log.info(f"no alert sent (set {WEBHOOK_ENV}): {text}")
        return
    response = requests.post(url, json={"text": text, **fields}, timeout=10)
    response.raise_for_status()  # a failed post fails the tick, and the tick shows why
