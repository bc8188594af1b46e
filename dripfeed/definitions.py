"""The code location: assembles assets, resources, schedules and sensors, and is the one place where
settings are read from the environment (docs/configuration.md lists them).

Resources get their settings as `dg.EnvVar`s, resolved when a run or tick uses them and shown by
name in the UI's resource page (a secret's value never is). What Dagster must know when it loads
the definitions (how often a sensor ticks, a tier's period) is read here, once. There is no demo
default for where Tasklane is or which tenants to sync: the code location refuses to load without
them, naming the variable (`make dev` sets the demo's in `.env`).
"""

import os

import dagster as dg

from pipeline_assets.api_usage import api_usage
from pipeline_assets.assets import projects, tasks, users
from pipeline_assets.freshness import freshness_checks
from pipeline_assets.jobs import sync_tenant
from pipeline_assets.run_priority import DEFAULT_NICENESS, yield_cpu_if_a_run
from resources.alerts import DEFAULT_WEBSERVER, Alerts
from resources.control.store import DEFAULT_STATE
from resources.shared_state import SharedState
from resources.tasklane import TasklaneAPI
from resources.tenant_registry import TenantRegistry
from resources.warehouse import Warehouse
from resources.warehouse.resource import DEFAULT_WAREHOUSE
from sensors.api_usage_schedule import DEFAULT_CRON, api_usage_schedule
from sensors.dead_run_workers import DEFAULT_CHECK_SECONDS, dead_run_workers_sensor
from sensors.deferred_syncs import deferred_syncs
from sensors.export_status import DEFAULT_POLL_SECONDS, DEFAULT_TIMEOUT_HOURS, export_status_sensor
from sensors.run_retention import DEFAULT_CHECK_SECONDS as RETENTION_SECONDS
from sensors.run_retention import DEFAULT_DAYS as RETENTION_DAYS
from sensors.run_retention import run_retention_sensor
from sensors.tenant_alerts import tenant_failure_alerts
from sensors.tenant_freshness import tenant_freshness_sensor
from sensors.tenant_registry import DEFAULT_CHECK_SECONDS as REGISTRY_SECONDS
from sensors.tenant_registry import DEFAULT_WAVE as ONBOARDING_WAVE
from sensors.tenant_registry import tenant_registry_sensor
from sensors.tier_schedules import tier_schedules

from .settings import configured_tiers, number

REQUIRED = {
    "TASKLANE_BASE_URL": "the Tasklane API root",
    "DRIPFEED_TENANTS_FILE": "the path of tenants.yaml",
}


def required_settings() -> None:
    """Refuse to load without the settings that have no safe default."""
    missing = [f"{name} ({what})" for name, what in REQUIRED.items() if not os.environ.get(name)]
    if missing:
        raise RuntimeError(
            f"dripfeed cannot load: set {', '.join(missing)}. docs/configuration.md lists every setting; "
            "`make dev` sets the demo's in .env."
        )


def env_or(name: str, default: str | None) -> str | dg.EnvVar | None:
    """The variable, when it is set (shown by name in the UI), else the embedded default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def usage_schedule() -> dg.ScheduleDefinition:
    cron = os.environ.get("DRIPFEED_API_USAGE_CRON", DEFAULT_CRON)
    try:
        return api_usage_schedule(cron)
    except dg.DagsterInvalidDefinitionError:
        raise RuntimeError(f"DRIPFEED_API_USAGE_CRON={cron!r} is not a cron schedule, e.g. {DEFAULT_CRON!r}") from None


required_settings()
yield_cpu_if_a_run(int(number("DRIPFEED_RUN_NICENESS", DEFAULT_NICENESS)))
tiers = configured_tiers()

schedules = [*tier_schedules(tiers), usage_schedule()]
sensors = [
    tenant_registry_sensor(
        int(number("DRIPFEED_REGISTRY_CHECK_SECONDS", REGISTRY_SECONDS)),
        int(number("DRIPFEED_ONBOARDING_WAVE", ONBOARDING_WAVE)),
    ),
    export_status_sensor(
        poll_seconds=int(number("DRIPFEED_EXPORT_POLL_SECONDS", DEFAULT_POLL_SECONDS)),
        timeout_hours=number("DRIPFEED_EXPORT_TIMEOUT_HOURS", DEFAULT_TIMEOUT_HOURS),
    ),
    deferred_syncs,
    tenant_failure_alerts,
    tenant_freshness_sensor(tiers),
    dead_run_workers_sensor(int(number("DRIPFEED_DEAD_RUN_CHECK_SECONDS", DEFAULT_CHECK_SECONDS))),
]
retention = run_retention_sensor(
    days=number("DRIPFEED_RETENTION_DAYS", RETENTION_DAYS),
    check_seconds=int(number("DRIPFEED_RETENTION_CHECK_SECONDS", RETENTION_SECONDS)),
    instigators=[instigator.name for instigator in (*schedules, *sensors)] + ["run_retention"],
)

defs = dg.Definitions(
    assets=[users, projects, tasks, api_usage],
    asset_checks=freshness_checks(tiers),
    jobs=[sync_tenant],
    schedules=schedules,
    sensors=[*sensors, retention],
    resources={
        "tasklane": TasklaneAPI(base_url=dg.EnvVar("TASKLANE_BASE_URL")),
        "registry": TenantRegistry(tenants_file=dg.EnvVar("DRIPFEED_TENANTS_FILE")),
        "state": SharedState(url=env_or("DRIPFEED_STATE", DEFAULT_STATE)),
        "warehouse": Warehouse(url=env_or("DRIPFEED_WAREHOUSE", DEFAULT_WAREHOUSE)),
        "alerts": Alerts(
            webhook_url=env_or("DRIPFEED_ALERT_WEBHOOK_URL", None),
            webserver_url=env_or("DRIPFEED_WEBSERVER_URL", DEFAULT_WEBSERVER),
        ),
    },
    # Every run executes in its own process, its steps one after the other: a tenant's sync is I/O
    # and a few SQL statements, and a process per step cost ten times the work (BENCHMARKS.md).
    executor=dg.in_process_executor,
)
