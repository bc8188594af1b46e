"""The freshness tiers: how often each tenant of a tier is synced, how its schedule ticks, and how old
its data may be before it is stale. The one home of a tier's numbers: the schedules
(sensors/tier_schedules.py), the slots (sensors/tier_slots.py) and the freshness checks
(pipeline_assets/freshness.py) all read them from a `Tier`, and definitions.py may shorten a period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

TierName = Literal["hourly", "daily"]  # what tenants.yaml's `tier` may say
MINUTES_PER_DAY = 1440
TICK_CHOICES = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)  # tick lengths a cron can express within an hour


@dataclass(frozen=True)
class Tier:
    name: str
    period_minutes: int  # each tenant is synced (or checked unchanged) once per period
    tick_minutes: int  # the schedule ticks this often, each tick serving its share of the tenants
    grace: timedelta  # past the period, before a tenant is stale: a run's own length, and a retry

    @property
    def allowance(self) -> timedelta:
        """How long after its last complete sync a tenant of the tier is still fresh."""
        return timedelta(minutes=self.period_minutes) + self.grace

    @property
    def ticks(self) -> int:
        """How many ticks a period has."""
        return self.period_minutes // self.tick_minutes

    @property
    def cron(self) -> str:
        """Every tick of every period (periods start at midnight UTC and divide the day)."""
        if self.tick_minutes == 60:
            return "0 * * * *"
        return f"*/{self.tick_minutes} * * * *"

    def period_start(self, moment: datetime) -> datetime:
        midnight = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        minutes = int((moment - midnight).total_seconds() // 60)
        return midnight + timedelta(minutes=minutes - minutes % self.period_minutes)

    def tick_of(self, moment: datetime) -> int:
        """Which tick of its period `moment` falls in."""
        elapsed = (moment - self.period_start(moment)).total_seconds() / 60
        return int(elapsed // self.tick_minutes)

    def period_label(self, moment: datetime) -> str:
        return self.period_start(moment).strftime("%Y-%m-%dT%H:%MZ")


def make_tier(name: str, period_minutes: int, longest_tick: int, grace: timedelta) -> Tier:
    """A tier syncing each tenant every `period_minutes` (which must divide a day), ticking every
    `longest_tick` minutes, or the longest tick of TICK_CHOICES below it that divides the period."""
    if period_minutes < 1 or MINUTES_PER_DAY % period_minutes:
        raise ValueError(f"a tier's period must be a number of minutes that divides a day (1440), not {period_minutes}")
    tick = max(t for t in TICK_CHOICES if t <= longest_tick and period_minutes % t == 0)
    return Tier(name, period_minutes, tick, grace)


TIERS: dict[str, Tier] = {  # definitions.py may shorten their periods (DRIPFEED_<TIER>_PERIOD_MINUTES)
    "hourly": make_tier("hourly", 60, 5, grace=timedelta(minutes=15)),
    "daily": make_tier("daily", MINUTES_PER_DAY, 15, grace=timedelta(hours=2)),
}
