"""When in its tier's period each tenant is synced: a slot per tenant, spread evenly over the period.

A tier has a period (an hour, a day) cut into ticks (5 or 15 minutes); its schedule ticks once
per tick. Each tenant gets one tick of the period, its slot, so a thousand hourly tenants are a
twelfth of a thousand runs every five minutes instead of a thousand runs at minute 0 (and a
thousand tenants calling Tasklane at the same second).

Slots come from the tenant ids: the tier's tenants are ordered by a hash of their id and laid out
evenly over the ticks, so every tick holds the same number of tenants, give or take one. Adding
or removing a tenant moves the others by at most a tick; the schedule makes up for a tenant whose
slot moved into a tick already past (tier_schedules.py). A tenant's `sync_at` (HH:MM UTC) in
tenants.yaml pins its slot instead: the tick that holds that time of day, within the period.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from resources.tenants import Tenant

MINUTES_PER_DAY = 1440
TICK_CHOICES = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)  # tick lengths a cron can express within an hour


@dataclass(frozen=True)
class Tier:
    name: str
    period_minutes: int
    tick_minutes: int

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


def make_tier(name: str, period_minutes: int, longest_tick: int) -> Tier:
    """A tier syncing each tenant every `period_minutes` (which must divide a day), ticking every
    `longest_tick` minutes, or the longest tick of TICK_CHOICES below it that divides the period."""
    if period_minutes < 1 or MINUTES_PER_DAY % period_minutes:
        raise ValueError(f"a tier's period must be a number of minutes that divides a day (1440), not {period_minutes}")
    tick = max(t for t in TICK_CHOICES if t <= longest_tick and period_minutes % t == 0)
    return Tier(name, period_minutes, tick)


def _rank_key(tenant_id: str) -> str:
    return hashlib.sha256(tenant_id.encode()).hexdigest()


def pinned_tick(tier: Tier, sync_at: str) -> int:
    """The tick that holds `sync_at` (HH:MM UTC) within the tier's period."""
    hours, minutes = (int(part) for part in sync_at.split(":"))
    return ((hours * 60 + minutes) % tier.period_minutes) // tier.tick_minutes


def slots(tier: Tier, tenants: Iterable[Tenant]) -> dict[str, int]:
    """The tick of the period at which each tenant of `tier` is synced, by tenant id."""
    members = [t for t in tenants if t.tier == tier.name and t.enabled]
    placed = {t.id: pinned_tick(tier, t.sync_at) for t in members if t.sync_at}
    spread = sorted((t.id for t in members if not t.sync_at), key=_rank_key)
    for rank, tenant_id in enumerate(spread):
        placed[tenant_id] = rank * tier.ticks // len(spread)
    return placed
