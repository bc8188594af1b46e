"""Every schedule and sensor of the code location, evaluated once against a location's instance, the
way the daemon evaluates a tick: a tick that raises is a tick failure. The failure sensor is
evaluated on each failed run, and its alerts go to a webhook receiver on a real socket, whose
payloads the secrets segment scans."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from tests.support.webhook_receiver import receiving_webhooks

from .harness import Location, new_secret

ALERT_PAYLOADS: list[dict[str, Any]] = []  # every alert any receiver got, for the secrets scan


@contextmanager
def webhook_receiver() -> Iterator[str]:
    """A Slack-compatible receiver; yields its URL, whose path is a secret as a Slack hook's is."""
    with receiving_webhooks(f"/hooks/{new_secret('hook')}", into=ALERT_PAYLOADS) as received:
        yield received.url


@dataclass
class Ticks:
    evaluated: int = 0
    failures: list[str] = field(default_factory=list)
    alerts: int = 0


@contextmanager
def location_environment(location: Location) -> Iterator[None]:
    """The location's settings in this process's environment, where the resources' EnvVars read them."""
    keys = [k for k in location.env if k.startswith(("DRIPFEED_", "TASKLANE_", "DAGSTER_HOME"))]
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: location.env[k] for k in keys})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def evaluate_every_tick(location: Location) -> Ticks:
    """One tick of every schedule and sensor, and the failure sensor on every failed run."""
    seen = Ticks()
    with location_environment(location), location.instance() as instance:
        from dripfeed.definitions import defs  # the code location loads only once its settings are set

        repository = defs.get_repository_def()
        resources = dict(defs.resources or {})
        for schedule in repository.schedule_defs:
            seen.evaluated += 1
            try:
                with dg.build_schedule_context(
                    instance=instance,
                    resources=resources,
                    scheduled_execution_time=datetime.now(UTC),
                    repository_def=repository,
                ) as context:
                    schedule.evaluate_tick(context)
            except Exception as error:
                seen.failures.append(f"{schedule.name}: {type(error).__name__}: {str(error)[:300]}")
        for sensor in repository.sensor_defs:
            if isinstance(sensor, dg.RunStatusSensorDefinition):
                continue
            seen.evaluated += 1
            try:
                with dg.build_sensor_context(instance=instance, resources=resources, repository_def=repository) as ctx:
                    sensor.evaluate_tick(ctx)
            except Exception as error:
                seen.failures.append(f"{sensor.name}: {type(error).__name__}: {str(error)[:300]}")
        seen.alerts = alert_failed_runs(instance, repository, resources, seen)
    return seen


def alert_failed_runs(instance: dg.DagsterInstance, repository: Any, resources: dict[str, Any], seen: Ticks) -> int:
    """The failure sensor on each failed run of the job it monitors, as the daemon would evaluate it."""
    sensor = repository.get_sensor_def("tenant_failure_alerts")
    alerts = 0
    failed = dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], job_name="sync_tenant")
    for record in instance.get_run_records(failed):
        failures = instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        if not failures:
            continue
        seen.evaluated += 1
        try:
            context = dg.build_run_status_sensor_context(
                sensor_name=sensor.name,
                dagster_instance=instance,
                dagster_run=record.dagster_run,
                dagster_event=failures[-1].dagster_event,
                resources={"alerts": resources["alerts"]},
            ).for_run_failure()
            sensor(context)
            alerts += 1
        except Exception as error:
            seen.failures.append(f"{sensor.name}: {type(error).__name__}: {str(error)[:300]}")
    return alerts
