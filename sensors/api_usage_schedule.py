"""Refresh `api_usage` once a day, after midnight UTC closes the day's last hour."""

import dagster as dg

from pipeline_assets.api_usage import api_usage

api_usage_daily = dg.ScheduleDefinition(
    name="api_usage_daily",
    target=api_usage,
    cron_schedule="15 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Copies the last 7 days of the call ledger into the warehouse table api_usage.",
)
