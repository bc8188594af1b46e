"""Refresh `api_usage`: by default once a day, after midnight UTC closes the day's last hour.

`DRIPFEED_API_USAGE_CRON` changes the cadence; the demo refreshes every five minutes, so the
table shows the first syncs' calls while a new user is still looking.
"""

import dagster as dg

from pipeline_assets.api_usage import api_usage

DEFAULT_CRON = "15 0 * * *"


def api_usage_schedule(cron: str = DEFAULT_CRON) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="api_usage_refresh",
        target=api_usage,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Copies the last 7 days of the call ledger into the warehouse table api_usage ({cron}, UTC).",
    )
