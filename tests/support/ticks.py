"""Evaluating a sensor or schedule tick as the daemon does, and reading back what an operator sees
of it in the UI's tick history: the runs it requested, its skip reason, and its logs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dagster as dg

from dripfeed.definitions import defs

from .tick_logs import log_lines

REPOSITORY = "__repository__"  # the name Dagster gives a code location's Definitions


@dataclass
class Tick:
    """One tick as the UI shows it: requested runs, or a skip reason; and the lines of its logs."""

    run_requests: list[dg.RunRequest]
    skip_reason: str | None
    log: list[str]
    cursor: str | None = None
    partition_requests: list[Any] = field(default_factory=list)
    asset_events: list[Any] = field(default_factory=list)

    @property
    def text(self) -> str:
        """Everything the operator can read of the tick, in one string."""
        return "\n".join([self.skip_reason or "", *self.log])

    @property
    def tenants(self) -> list[str]:
        return sorted(request.partition_key or "" for request in self.run_requests)


def sensor_tick(
    sensor: dg.SensorDefinition, instance: dg.DagsterInstance, resources: Mapping[str, Any], cursor: str | None = None
) -> Tick:
    """One tick of `sensor`, its logs captured by the instance as the daemon's are."""
    with dg.build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        resources=resources,
        cursor=cursor,
        repository_name=REPOSITORY,
        sensor_name=sensor.name,
        definitions=defs,
    ) as context:
        data = sensor.evaluate_tick(context)
    return Tick(
        list(data.run_requests or []),
        data.skip_message,
        log_lines(instance, data.log_key),
        data.cursor,
        list(data.dynamic_partitions_requests or []),
        list(data.asset_events or []),
    )


def schedule_tick(name: str, instance: dg.DagsterInstance, resources: Mapping[str, Any], when: datetime) -> Tick:
    """One tick at `when` of the code location's schedule `name`, its logs captured by the instance
    as the daemon's are."""
    schedule = defs.resolve_schedule_def(name)
    with dg.ScheduleEvaluationContext(
        instance_ref=instance.get_ref(),
        scheduled_execution_time=when,
        repository_name=REPOSITORY,
        schedule_name=name,
        resources=resources,
        repository_def=defs.get_repository_def(),
    ) as context:
        data = schedule.evaluate_tick(context)
    return Tick(list(data.run_requests or []), data.skip_message, log_lines(instance, data.log_key))
