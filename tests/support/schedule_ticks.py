"""Evaluating the tier schedules tick by tick as the daemon does: each run request becomes a run
in the instance (what the schedule reads back at its next tick)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg

from dripfeed.definitions import defs
from resources.tiers import TIERS, Tier
from sensors.tier_schedules import tier_schedule
from tests.support.resources import Resources, resources_for


@dataclass
class Ticks:
    """What a run of ticks requested: every request, how many per tick, and the skip messages."""

    requests: list[dg.RunRequest] = field(default_factory=list)
    per_tick: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def tenants(self) -> list[str]:
        return sorted(r.partition_key for r in self.requests)


def period_start(tier: str, now: datetime | None = None) -> datetime:
    """The start of the tier's period that holds `now` (default: the current one)."""
    return TIERS[tier].period_start(now or datetime.now(UTC))


def launch(instance: dg.DagsterInstance, request: dg.RunRequest, schedule: str) -> None:
    """What the daemon does with a run request: a run of sync_tenant with the request's tags, here
    recorded as done (a tick-by-tick test does not execute it)."""
    tags = {
        **request.tags,
        "dagster/run_key": request.run_key,
        "dagster/partition": request.partition_key,
        "dagster/schedule_name": schedule,
    }
    run_id = str(uuid.uuid4())
    instance.add_run(
        dg.DagsterRun(job_name="sync_tenant", run_id=run_id, tags=tags, status=dg.DagsterRunStatus.SUCCESS)
    )


def schedule_of(tier: str | Tier) -> tuple[dg.ScheduleDefinition, Tier]:
    """The code location's schedule of the tier so named, or the schedule of a tier of the test's own
    (a day shortened to a few hours, say, as DRIPFEED_<TIER>_PERIOD_MINUTES would)."""
    if isinstance(tier, Tier):
        return tier_schedule(tier), tier
    return defs.resolve_schedule_def(f"{tier}_tenants"), TIERS[tier]


def evaluate_ticks(
    instance: dg.DagsterInstance, api: Resources, tier: str | Tier, start: datetime, ticks: int, first: int = 0
) -> Ticks:
    """Ticks `first` .. `first + ticks - 1` of the tier's period beginning at `start`, each launched."""
    schedule, numbers = schedule_of(tier)
    seen = Ticks()
    for tick in range(first, first + ticks):
        when = start + timedelta(minutes=tick * numbers.tick_minutes)
        with dg.build_schedule_context(
            instance=instance,
            resources=resources_for(api),
            scheduled_execution_time=when,
            repository_def=defs.get_repository_def(),
        ) as context:
            result = schedule.evaluate_tick(context)
        requests = list(result.run_requests or [])
        for request in requests:
            launch(instance, request, schedule.name)
        seen.requests.extend(requests)
        seen.per_tick.append(len(requests))
        if result.skip_message:
            seen.skipped.append(result.skip_message)
    return seen


def evaluate_period(
    instance: dg.DagsterInstance, api: Resources, tier: str | Tier, start: datetime | None = None
) -> Ticks:
    """Every tick of one period of the tier (default: the current period)."""
    numbers = schedule_of(tier)[1]
    return evaluate_ticks(instance, api, tier, start or numbers.period_start(datetime.now(UTC)), numbers.ticks)
