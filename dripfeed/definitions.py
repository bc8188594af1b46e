"""The code location: assembles assets, resources, schedules and sensors; defines nothing itself."""

import dagster as dg

from pipeline_assets.api_usage import api_usage
from pipeline_assets.assets import projects, tasks, users
from pipeline_assets.freshness import tasks_fresh
from pipeline_assets.jobs import sync_tenant
from resources.tasklane_api import TasklaneAPI
from resources.warehouse import Warehouse
from sensors.api_usage_schedule import api_usage_daily
from sensors.deferred_syncs import deferred_syncs
from sensors.export_status import export_status
from sensors.tenant_alerts import tenant_failure_alerts
from sensors.tenant_freshness import tenant_freshness
from sensors.tenant_registry import tenant_registry
from sensors.tier_schedules import tier_schedules

defs = dg.Definitions(
    assets=[users, projects, tasks, api_usage],
    asset_checks=[tasks_fresh],
    jobs=[sync_tenant],
    schedules=[*tier_schedules, api_usage_daily],
    sensors=[tenant_registry, export_status, deferred_syncs, tenant_failure_alerts, tenant_freshness],
    resources={"tasklane": TasklaneAPI(), "warehouse": Warehouse()},
    # Every run executes in its own process, its steps one after the other: a tenant's sync is I/O
    # and a few SQL statements, and a process per step cost ten times the work (BENCHMARKS.md).
    executor=dg.in_process_executor,
)
